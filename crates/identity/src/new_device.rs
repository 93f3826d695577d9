//! Sign-ins from a device the customer has not used before open their
//! session with a security alert: if someone else got in with a stolen
//! password and code, the customer hears about it at once on their own
//! contact, whatever their alert preferences say.

use coffer_store::sql::Sql;
use coffer_store::sql_params;

use crate::session::{self, NewSession};
use crate::{Context, Identity, IdentityError};

/// How much of the client's device label goes into the alert: it is the
/// client's own text, so it is shortened and stripped of anything but
/// printable characters before it reaches an SMS or an e-mail.
const DEVICE_IN_ALERT_MAX: usize = 60;

impl Identity {
    /// Opens a signed-in session; alerts the customer when the device is
    /// new to their wallet. The very first session (registration) is not a
    /// new device: there is nothing to compare it with.
    pub(crate) fn open_session(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        context: &Context,
        now: i64,
    ) -> Result<NewSession, IdentityError> {
        let history = db.query_opt(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN device = $2 THEN 1 ELSE 0 END), 0) \
             FROM sessions WHERE customer_id = $1",
            sql_params![customer_id, session::stored_device(&context.device)],
        )?;
        let (sessions, on_this_device) = match history {
            Some(row) => (row.int(0)?, row.int(1)?),
            None => (0, 0),
        };
        let opened = session::create(db, &self.policy, customer_id, context, now)?;
        if sessions > 0 && on_this_device == 0 {
            let device = printable(&context.device);
            let ip = printable(&context.ip);
            self.security_alert_in(
                db,
                customer_id,
                "new_device_sign_in",
                format!(
                    "Your Coffer wallet was signed in to from a new device ({device}, {ip}). \
                     If this was not you, change your password and sign out everywhere at once."
                ),
                format!(
                    "您的 Coffer 钱包在新设备上登录（{device}，{ip}）。如非本人操作，请立即修改密码并退出所有设备。"
                ),
            )?;
        }
        Ok(opened)
    }
}

fn printable(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(DEVICE_IN_ALERT_MAX)
        .collect();
    if cleaned.trim().is_empty() {
        "unknown device".to_string()
    } else {
        cleaned
    }
}
