//! A signed-in customer's own profile: the display name, and the contact
//! they sign in with.
//!
//! Moving the sign-in to another number or address needs two codes, one
//! sent to the current contact and one to the new one: a stolen session
//! alone cannot move the account away from its owner, and nobody can claim
//! a number they do not hold. A new contact that already belongs to another
//! wallet gets the same answer (its owner gets a notice instead of a code,
//! so that change can never complete): the flow cannot be used to find out
//! who has a wallet. On success the old contact is told.

use coffer_core::Secret;
use coffer_notify::{enqueue, Message};
use coffer_store::sql::Sql;
use coffer_store::sql_params;

use crate::{
    parse_display_name, random_hex, same, Contact, Context, CustomerView, Identity, IdentityError,
    SessionInfo, CONTACT_CONTEXT, NAME_CONTEXT, NANOS_PER_SECOND,
};

/// How long both codes of a contact change stay valid.
pub const CONTACT_CHANGE_TTL_SECONDS: i64 = 600;
/// Contact changes a customer may start per hour, and that may name one
/// new contact per hour (each sends a message to someone).
pub const CONTACT_CHANGES_PER_HOUR_MAX: i64 = 5;
/// Stored instead of the new contact's code hash when that contact belongs
/// to another customer: not the hash of anything, so no code matches.
const TAKEN: &str = "contact-taken";

/// A contact change waiting for its two codes.
#[derive(Debug, Clone)]
pub struct ContactChange {
    pub change_id: String,
    pub expires_at: i64,
    /// The current contact, masked: where the first code went.
    pub old_sent_to: String,
    /// The new contact, masked: where the second code went.
    pub new_sent_to: String,
}

impl Identity {
    /// Changes the display name (validated like at registration).
    pub fn update_profile(
        &self,
        info: &SessionInfo,
        display_name: &str,
        context: &Context,
    ) -> Result<CustomerView, IdentityError> {
        let display_name = parse_display_name(display_name)?;
        let name_enc = self.vault.encrypt_text(NAME_CONTEXT, display_name)?;
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let updated = db.execute(
                "UPDATE customers SET display_name_enc = $2, updated_at = $3 WHERE id = $1",
                sql_params![info.customer_id.as_str(), name_enc, now],
            )?;
            if updated != 1 {
                return Err(IdentityError::NotFound("customer"));
            }
            self.index_name(
                db,
                &info.customer_id,
                crate::backoffice::DISPLAY_NAME_SOURCE,
                display_name,
            )?;
            // Which field changed, never its value.
            self.event(
                db,
                Some(&info.customer_id),
                "profile_updated",
                context,
                "display_name",
            )
        })?;
        self.customer(&info.customer_id)
    }

    /// Step one of a contact change: a code to the current contact and one
    /// to `new_contact` (or, if that contact has a wallet of its own, a
    /// notice to it instead); the same answer either way.
    pub fn start_contact_change(
        &self,
        info: &SessionInfo,
        new_contact: &str,
        context: &Context,
    ) -> Result<ContactChange, IdentityError> {
        let new_contact = Contact::parse(new_contact).ok_or_else(|| {
            IdentityError::invalid(
                "new_contact",
                "expected a mobile number in international form (+8613800138000) or an e-mail address",
            )
        })?;
        let now = self.now();
        let new_index = self.vault.blind_index("contact", new_contact.as_str());
        let new_enc = self
            .vault
            .encrypt_text(CONTACT_CONTEXT, new_contact.as_str())?;
        let change_id = format!("chg_{}", random_hex(12));
        let expires_at = now + CONTACT_CHANGE_TTL_SECONDS * NANOS_PER_SECOND;
        let (old_code, new_code) = (crate::one_time_code(), crate::one_time_code());
        let customer_id = info.customer_id.as_str();
        let old_contact = self.sql.transaction(|db| -> Result<Contact, IdentityError> {
            let old_contact = self.contact_of(db, customer_id)?;
            if old_contact == new_contact {
                return Err(IdentityError::invalid(
                    "new_contact",
                    "this is already the contact you sign in with",
                ));
            }
            let recent = db
                .query_one(
                    "SELECT COUNT(*) FROM contact_changes WHERE (customer_id = $1 OR new_contact_index = $2) AND created_at > $3",
                    sql_params![customer_id, new_index.as_str(), now - 3_600 * NANOS_PER_SECOND],
                )?
                .int(0)?;
            if recent >= CONTACT_CHANGES_PER_HOUR_MAX {
                return Err(IdentityError::Throttled {
                    retry_after_seconds: 3_600,
                });
            }
            let owner = db
                .query_opt(
                    "SELECT id FROM customers WHERE contact_index = $1",
                    sql_params![new_index.as_str()],
                )?
                .map(|r| r.text(0))
                .transpose()?;
            let old_index = self.vault.blind_index("contact", old_contact.as_str());
            let new_code_hash = match &owner {
                None => self.change_code_hash(&change_id, "new", &new_code),
                Some(_) => TAKEN.to_string(),
            };
            db.execute(
                "INSERT INTO contact_changes (id, customer_id, old_contact_index, new_contact_index, new_contact_enc, \
                 old_code_hash, new_code_hash, attempts, expires_at, completed_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, NULL, $9)",
                sql_params![
                    change_id.as_str(),
                    customer_id,
                    old_index,
                    new_index.as_str(),
                    new_enc.clone(),
                    self.change_code_hash(&change_id, "old", &old_code),
                    new_code_hash,
                    expires_at,
                    now
                ],
            )?;
            let minutes = CONTACT_CHANGE_TTL_SECONDS / 60;
            self.send_to(
                db,
                &old_contact,
                customer_id,
                "contact_change_old",
                format!(
                    "Your Coffer code to move your sign-in to {new} is {old_code}. It expires in {minutes} minutes. \
                     If you did not ask for this, someone may be using your wallet: contact the bank. \
                     您正在将 Coffer 登录账号更换为 {new}，验证码 {old_code}，{minutes} 分钟内有效；如非本人操作，请立即联系银行。",
                    new = new_contact.masked(),
                ),
            )?;
            // The notice names no wallet and carries no code.
            let to_new = match &owner {
                None => format!(
                    "Your Coffer code to make this your sign-in is {new_code}. It expires in {minutes} minutes. Never share it. \
                     您的 Coffer 登录账号更换验证码是 {new_code}，{minutes} 分钟内有效，请勿告诉他人。"
                ),
                Some(_) => "Someone asked to move a Coffer wallet's sign-in to your number or address, which already has \
                            a wallet of its own. Nothing will change. If it was not you, you can ignore this. \
                            有人申请将 Coffer 钱包的登录账号更换为您的号码或地址；该号码已有钱包，不会有任何变更。如非本人操作，请忽略。"
                    .to_string(),
            };
            // A notice concerns the wallet that owns the contact.
            let recipient_customer = owner.as_deref().unwrap_or(customer_id);
            self.send_to(
                db,
                &new_contact,
                recipient_customer,
                "contact_change_new",
                to_new,
            )?;
            self.event(
                db,
                Some(customer_id),
                "contact_change_started",
                context,
                &change_id,
            )?;
            Ok(old_contact)
        })?;
        tracing::info!(customer = %customer_id, change = %change_id, "contact change started");
        Ok(ContactChange {
            change_id,
            expires_at,
            old_sent_to: old_contact.masked(),
            new_sent_to: new_contact.masked(),
        })
    }

    /// Step two: both codes. Moves the sign-in to the new contact and tells
    /// the old one. Single-use, expires, and dies after a few wrong tries;
    /// refused as well when the current contact is no longer the one the
    /// first code went to (another change completed meanwhile).
    pub fn confirm_contact_change(
        &self,
        info: &SessionInfo,
        change_id: &str,
        old_code: &Secret<String>,
        new_code: &Secret<String>,
        context: &Context,
    ) -> Result<CustomerView, IdentityError> {
        let now = self.now();
        let customer_id = info.customer_id.as_str();
        let result = self.sql.transaction(|db| -> Result<(), IdentityError> {
            let row = db
                .query_opt(
                    "SELECT old_contact_index, new_contact_index, new_contact_enc, old_code_hash, new_code_hash, \
                     attempts, expires_at, completed_at FROM contact_changes WHERE id = $1 AND customer_id = $2",
                    sql_params![change_id, customer_id],
                )?
                .ok_or(IdentityError::CodeInvalid)?;
            let usable = row.opt_int(7)?.is_none()
                && row.int(6)? > now
                && row.int(5)? < self.policy.code_attempts_max;
            // Both compared always, so the time taken does not say which was wrong.
            let old_right = same(
                &self.change_code_hash(change_id, "old", old_code.expose().trim()),
                &row.text(3)?,
            );
            let new_right = same(
                &self.change_code_hash(change_id, "new", new_code.expose().trim()),
                &row.text(4)?,
            );
            if !usable || !(old_right & new_right) {
                return Err(IdentityError::CodeInvalid);
            }
            let old_index = row.text(0)?;
            let new_index = row.text(1)?;
            let claimed = db.execute(
                "UPDATE contact_changes SET completed_at = $2 WHERE id = $1 AND completed_at IS NULL",
                sql_params![change_id, now],
            )?;
            if claimed != 1 {
                return Err(IdentityError::CodeInvalid);
            }
            let new_contact_text = self.vault.decrypt_text(CONTACT_CONTEXT, &row.bytes(2)?)?;
            let new_contact = Contact::parse(new_contact_text.expose())
                .ok_or_else(|| IdentityError::Internal("stored contact does not parse".into()))?;
            // Told before the swap, while the customer's contact is still the old one.
            self.security_alert(
                db,
                customer_id,
                "contact_changed",
                &format!(
                    "The sign-in of your Coffer wallet was moved to {new}; this number or address no longer signs in. \
                     If this was not you, contact the bank at once. \
                     您的 Coffer 钱包登录账号已更换为 {new}，本号码或地址将无法再登录；如非本人操作，请立即联系银行。",
                    new = new_contact.masked()
                ),
            )?;
            // Guarded: the contact is still the one the first code went to,
            // and the new one has not been taken by a registration since.
            let swapped = db.execute(
                "UPDATE customers SET contact_kind = $3, contact_index = $4, contact_enc = $5, contact_masked = $6, updated_at = $7 \
                 WHERE id = $1 AND contact_index = $2 \
                 AND NOT EXISTS (SELECT 1 FROM customers AS other WHERE other.contact_index = $4)",
                sql_params![
                    customer_id,
                    old_index.as_str(),
                    new_contact.kind().as_str(),
                    new_index.as_str(),
                    self.vault.encrypt_text(CONTACT_CONTEXT, new_contact.as_str())?,
                    new_contact.masked(),
                    now
                ],
            )?;
            if swapped != 1 {
                return Err(IdentityError::CodeInvalid);
            }
            self.event(db, Some(customer_id), "contact_changed", context, change_id)
        });
        match result {
            Ok(()) => {
                tracing::info!(customer = %customer_id, change = %change_id, "contact changed");
                self.customer(customer_id)
            }
            Err(IdentityError::CodeInvalid) => {
                self.count_change_attempt(customer_id, change_id, context)?;
                Err(IdentityError::CodeInvalid)
            }
            Err(error) => Err(error),
        }
    }

    fn change_code_hash(&self, change_id: &str, side: &str, code: &str) -> String {
        self.vault
            .keyed_hash("contact_change", &format!("{change_id}:{side}:{code}"))
    }

    /// Counts a wrong pair of codes against the change and audits it.
    fn count_change_attempt(
        &self,
        customer_id: &str,
        change_id: &str,
        context: &Context,
    ) -> Result<(), IdentityError> {
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let counted = db.execute(
                "UPDATE contact_changes SET attempts = attempts + 1 WHERE id = $1 AND customer_id = $2",
                sql_params![change_id, customer_id],
            )?;
            if counted != 1 {
                // No such change of this customer's: nothing to count.
                return Ok(());
            }
            let actor = coffer_audit::customer_actor(customer_id);
            self.append(
                db,
                &coffer_audit::Entry {
                    at: now,
                    actor: &actor,
                    action: "contact_change_failed",
                    subject: Some(customer_id),
                    ip: &context.ip,
                    outcome: coffer_audit::Outcome::Refused,
                    detail: change_id,
                },
            )
        })
    }

    /// A message to a contact that is not (or not yet) the customer's own.
    pub(crate) fn send_to(
        &self,
        db: &mut dyn Sql,
        contact: &Contact,
        customer_id: &str,
        template: &'static str,
        body: String,
    ) -> Result<(), IdentityError> {
        enqueue(
            db,
            &self.vault,
            &Message {
                channel: contact.kind().channel(),
                recipient: Secret::new(contact.as_str().to_string()),
                recipient_masked: contact.masked(),
                customer_id: Some(customer_id),
                template,
                subject: "Coffer".into(),
                body: Secret::new(body),
            },
            self.now(),
        )?;
        Ok(())
    }
}
