//! Access transparency: who read the customer's data, and when.
//!
//! Read from the audit log, where every staff look at a customer and every
//! partner read is recorded with the customer as subject. Staff appear by
//! role, not by name: the customer learns which function of the bank looked
//! (support, risk, compliance…) without exposing employees; the bank's own
//! audit log keeps the name for investigations. The role shown is the staff
//! member's roles when the list is read (the audit record names the person,
//! not the role they held then).

use coffer_store::sql::Sql;
use coffer_store::sql_params;

use crate::{Privacy, PrivacyError, PARTNER_SCOPE_PREFIX};

/// Most entries one page returns.
pub const ACCESS_PAGE_ROWS_MAX: i64 = 100;

/// Who acted, as the customer is shown it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accessor {
    /// `you`, `staff`, `partner` or `system`.
    pub kind: &'static str,
    /// For staff: their roles, space-separated.
    pub role: Option<String>,
    pub partner_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub seq: i64,
    pub at: i64,
    pub accessor: Accessor,
    pub action: String,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPage {
    pub entries: Vec<AccessEntry>,
    /// The `before` of the next (older) page, when there may be one.
    pub next_before: Option<i64>,
}

/// An audit actor as the customer `customer_id` is shown it.
pub(crate) fn describe_actor(
    db: &mut dyn Sql,
    actor: &str,
    customer_id: &str,
) -> Result<Accessor, PrivacyError> {
    if actor == coffer_audit::customer_actor(customer_id) {
        return Ok(Accessor {
            kind: "you",
            role: None,
            partner_id: None,
        });
    }
    if let Some(username) = actor.strip_prefix("staff:") {
        let role = db
            .query_opt(
                "SELECT roles FROM staff WHERE username = $1",
                sql_params![username],
            )?
            .map(|r| r.text(0))
            .transpose()?
            .unwrap_or_else(|| "staff".to_string());
        return Ok(Accessor {
            kind: "staff",
            role: Some(role.replace(',', " ")),
            partner_id: None,
        });
    }
    if let Some(partner) = actor.strip_prefix(PARTNER_SCOPE_PREFIX) {
        return Ok(Accessor {
            kind: "partner",
            role: None,
            partner_id: Some(partner.to_string()),
        });
    }
    Ok(Accessor {
        kind: "system",
        role: None,
        partner_id: None,
    })
}

impl Privacy {
    /// Staff and partner accesses to the customer's data, newest first,
    /// `limit` at a time, older than seq `before` when given.
    pub fn access_log(
        &self,
        customer_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<AccessPage, PrivacyError> {
        let limit = limit.clamp(1, ACCESS_PAGE_ROWS_MAX);
        self.sql.run(|db| {
            let rows = db.query(
                "SELECT seq, at, actor, action, outcome FROM audit_log \
                 WHERE subject = $1 AND seq < $2 AND (actor LIKE 'staff:%' OR actor LIKE 'partner:%') \
                 ORDER BY seq DESC LIMIT $3",
                sql_params![customer_id, before.unwrap_or(i64::MAX), limit + 1],
            )?;
            let more = rows.len() as i64 > limit;
            let mut entries = Vec::new();
            for row in rows.iter().take(limit as usize) {
                let accessor = describe_actor(db, &row.text(2)?, customer_id)
                    .map_err(|e| coffer_store::StoreError::Corrupt(e.to_string()))?;
                entries.push(AccessEntry {
                    seq: row.int(0)?,
                    at: row.int(1)?,
                    accessor,
                    action: row.text(3)?,
                    outcome: row.text(4)?,
                });
            }
            let next_before = if more {
                entries.last().map(|e| e.seq)
            } else {
                None
            };
            Ok(AccessPage {
                entries,
                next_before,
            })
        })
        .map_err(PrivacyError::from)
    }
}
