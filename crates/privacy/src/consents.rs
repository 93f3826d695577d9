//! Consents for partners to read a customer's data (PIPL art. 23: separate
//! consent to provide personal information to another handler), and the
//! check every partner read passes.
//!
//! A partner is an API client whose key has the scope `partner:<id>`. A
//! consent names one partner, the categories it may read, and an expiry (at
//! most `CONSENT_DAYS_MAX` days); the customer can revoke it at any time.
//! Granting again for the same partner replaces the live consent, so there
//! is at most one per partner. Every partner read — allowed or refused — is
//! appended to the audit log with the customer as subject, in the
//! transaction that checks the consent.

use coffer_audit::{Entry, Outcome};
use coffer_store::sql::{Row, Sql};
use coffer_store::sql_params;

use crate::{random_hex, Privacy, PrivacyError, Requester, NANOS_PER_SECOND};

pub const PARTNER_SCOPE_PREFIX: &str = "partner:";
pub const PARTNER_ID_LENGTH_MAX: usize = 64;
/// The longest a consent may run before the customer must grant it again.
pub const CONSENT_DAYS_MAX: i64 = 365;

/// What a partner may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConsentScope {
    /// Display name, KYC tier, status.
    Profile,
    /// Wallet balances.
    Balance,
    /// The activity feed.
    Transactions,
}

impl ConsentScope {
    pub const ALL: [ConsentScope; 3] = [
        ConsentScope::Profile,
        ConsentScope::Balance,
        ConsentScope::Transactions,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConsentScope::Profile => "profile",
            ConsentScope::Balance => "balance",
            ConsentScope::Transactions => "transactions",
        }
    }

    pub fn parse(text: &str) -> Option<ConsentScope> {
        ConsentScope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub id: String,
    pub partner_id: String,
    pub scopes: Vec<ConsentScope>,
    pub granted_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl Consent {
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// A partner read admitted by a live consent.
#[derive(Debug, Clone)]
pub struct PartnerAccess {
    pub partner_id: String,
    pub customer_id: String,
    pub consent_id: String,
}

/// A partner id as it appears after `partner:` in a key's scope.
pub fn valid_partner_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= PARTNER_ID_LENGTH_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

const CONSENT_COLUMNS: &str = "id, partner_id, scopes, granted_at, expires_at, revoked_at";

fn consent(row: &Row) -> Result<Consent, PrivacyError> {
    Ok(Consent {
        id: row.text(0)?,
        partner_id: row.text(1)?,
        scopes: row
            .text(2)?
            .split(' ')
            .filter_map(ConsentScope::parse)
            .collect(),
        granted_at: row.int(3)?,
        expires_at: row.int(4)?,
        revoked_at: row.opt_int(5)?,
    })
}

impl Privacy {
    /// Grants `partner_id` reading `scopes` until `expires_at`, replacing
    /// any live consent for that partner. The partner must hold an
    /// unrevoked API key.
    pub fn grant_consent(
        &self,
        requester: &Requester,
        partner_id: &str,
        scopes: &[ConsentScope],
        expires_at: i64,
    ) -> Result<Consent, PrivacyError> {
        let now = self.now();
        if !valid_partner_id(partner_id) {
            return Err(PrivacyError::invalid(
                "partner_id",
                format!("a partner id: 1 to {PARTNER_ID_LENGTH_MAX} of a-z, 0-9, - and _"),
            ));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(PrivacyError::invalid(
                "scopes",
                "name at least one of profile, balance, transactions",
            ));
        }
        if expires_at <= now || expires_at > now + CONSENT_DAYS_MAX * 86_400 * NANOS_PER_SECOND {
            return Err(PrivacyError::invalid(
                "expires_at",
                format!("a time in the future, at most {CONSENT_DAYS_MAX} days away"),
            ));
        }
        let customer_id = requester.customer_id.as_str();
        let scopes_text = scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let granted = Consent {
            id: format!("cst_{}", random_hex(10)),
            partner_id: partner_id.to_string(),
            scopes,
            granted_at: now,
            expires_at,
            revoked_at: None,
        };
        self.sql.transaction(|db| -> Result<(), PrivacyError> {
            if !partner_registered(db, partner_id)? {
                return Err(PrivacyError::NotFound("partner"));
            }
            db.execute(
                "UPDATE privacy_consents SET revoked_at = $3 WHERE customer_id = $1 AND partner_id = $2 AND revoked_at IS NULL",
                sql_params![customer_id, partner_id, now],
            )?;
            db.execute(
                "INSERT INTO privacy_consents (id, customer_id, partner_id, scopes, granted_at, expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL)",
                sql_params![granted.id.as_str(), customer_id, partner_id, scopes_text.as_str(), now, expires_at],
            )?;
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: &coffer_audit::customer_actor(customer_id),
                    action: "consent_granted",
                    subject: Some(customer_id),
                    ip: &requester.ip,
                    outcome: Outcome::Ok,
                    detail: &format!("{} partner:{partner_id} {scopes_text}", granted.id),
                },
            )?;
            Ok(())
        })?;
        Ok(granted)
    }

    /// The customer's consents, live and past, newest first.
    pub fn consents(&self, customer_id: &str) -> Result<Vec<Consent>, PrivacyError> {
        let rows = self.sql.run(|db| {
            db.query(
                &format!("SELECT {CONSENT_COLUMNS} FROM privacy_consents WHERE customer_id = $1 ORDER BY granted_at DESC, id"),
                sql_params![customer_id],
            )
        })?;
        rows.iter().map(consent).collect()
    }

    /// Revokes a consent; revoking one already revoked answers it as it is.
    pub fn revoke_consent(
        &self,
        requester: &Requester,
        consent_id: &str,
    ) -> Result<Consent, PrivacyError> {
        let customer_id = requester.customer_id.as_str();
        let now = self.now();
        self.sql.transaction(|db| -> Result<Consent, PrivacyError> {
            let revoked = db.execute(
                "UPDATE privacy_consents SET revoked_at = $3 WHERE id = $1 AND customer_id = $2 AND revoked_at IS NULL",
                sql_params![consent_id, customer_id, now],
            )?;
            let row = db
                .query_opt(
                    &format!("SELECT {CONSENT_COLUMNS} FROM privacy_consents WHERE id = $1 AND customer_id = $2"),
                    sql_params![consent_id, customer_id],
                )?
                .ok_or(PrivacyError::NotFound("consent"))?;
            if revoked == 1 {
                coffer_audit::append(
                    db,
                    &Entry {
                        at: now,
                        actor: &coffer_audit::customer_actor(customer_id),
                        action: "consent_revoked",
                        subject: Some(customer_id),
                        ip: &requester.ip,
                        outcome: Outcome::Ok,
                        detail: consent_id,
                    },
                )?;
            }
            consent(&row)
        })
    }

    /// Admits one partner read of `scope` about `customer_id` if a live
    /// consent allows it; either way the attempt is audited. A refusal
    /// does not say whether the customer exists.
    pub fn admit_partner(
        &self,
        partner_id: &str,
        customer_id: &str,
        scope: ConsentScope,
        ip: &str,
    ) -> Result<PartnerAccess, PrivacyError> {
        let now = self.now();
        let admitted = self.sql.transaction(|db| -> Result<Option<String>, PrivacyError> {
            let rows = db.query(
                &format!(
                    "SELECT {CONSENT_COLUMNS} FROM privacy_consents WHERE partner_id = $1 AND customer_id = $2 \
                     AND revoked_at IS NULL AND expires_at > $3"
                ),
                sql_params![partner_id, customer_id, now],
            )?;
            let mut live = None;
            for row in &rows {
                let found = consent(row)?;
                if found.scopes.contains(&scope) {
                    live = Some(found.id);
                }
            }
            let customer_active = db
                .query_opt(
                    "SELECT 1 FROM customers WHERE id = $1 AND status = 'active'",
                    sql_params![customer_id],
                )?
                .is_some();
            let live = live.filter(|_| customer_active);
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: &format!("{PARTNER_SCOPE_PREFIX}{partner_id}"),
                    action: &format!("partner_read_{}", scope.as_str()),
                    subject: Some(customer_id),
                    ip,
                    outcome: if live.is_some() {
                        Outcome::Ok
                    } else {
                        Outcome::Refused
                    },
                    detail: live.as_deref().unwrap_or("no live consent"),
                },
            )?;
            Ok(live)
        })?;
        match admitted {
            Some(consent_id) => Ok(PartnerAccess {
                partner_id: partner_id.to_string(),
                customer_id: customer_id.to_string(),
                consent_id,
            }),
            None => Err(PrivacyError::ConsentRequired),
        }
    }
}

/// True when an unrevoked API key carries the scope `partner:<id>`.
fn partner_registered(db: &mut dyn Sql, partner_id: &str) -> Result<bool, PrivacyError> {
    let scope = format!("{PARTNER_SCOPE_PREFIX}{partner_id}");
    let rows = db.query(
        "SELECT scopes FROM api_keys WHERE revoked_at IS NULL AND scopes LIKE $1",
        sql_params![format!("%{scope}%")],
    )?;
    for row in &rows {
        if row.text(0)?.split([',', ' ']).any(|s| s.trim() == scope) {
            return Ok(true);
        }
    }
    Ok(false)
}
