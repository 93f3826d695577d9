//! "Download my data" (PIPL art. 45, GDPR arts. 15 and 20).
//!
//! Asking is a write (after a step-up, audited, and the customer alerted on
//! their contact); the archive itself is built when it is downloaded and is
//! never stored, so the database gains no clear copy of what it guards.
//! The archive is one JSON document with a schema version: a customer's
//! data is a few categories of modest size, one document is what a person
//! or a program can open at once, and it needs no archive format on either
//! side. What it leaves out on purpose: password hashes, authenticator
//! seeds, recovery codes, session tokens, one-time codes (message bodies
//! are not included), full card and account numbers (last four only) and
//! the full ID number (last four; the customer holds the document).

use coffer_audit::{Entry, Outcome};
use coffer_core::Timestamp;
use coffer_identity::Operation;
use coffer_store::sql::{Row, Sql, Value as SqlValue};
use coffer_store::sql_params;
use serde_json::{json, Value};

use crate::access::describe_actor;
use crate::{
    context_of, random_hex, Privacy, PrivacyError, Requester, NANOS_PER_SECOND,
    OPERATION_DATA_EXPORT,
};

/// The `schema` field of every archive; bumped when a field changes meaning
/// or goes away (new fields and categories keep the version).
pub const EXPORT_SCHEMA: &str = "coffer.privacy.export/1";
/// How long after the request the archive can be downloaded.
pub const EXPORT_WINDOW_SECONDS: i64 = 15 * 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub id: String,
    pub requested_at: i64,
    pub expires_at: i64,
}

fn time(nanos: i64) -> Value {
    Value::String(Timestamp::from_nanos(nanos).to_rfc3339())
}

fn opt_time(nanos: Option<i64>) -> Value {
    nanos.map_or(Value::Null, time)
}

fn last4(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let keep = chars.len().min(4);
    let hidden = chars.len() - keep;
    "•".repeat(hidden) + &chars[hidden..].iter().collect::<String>()
}

impl Privacy {
    /// The step-up operation an export must be verified for.
    pub fn export_operation() -> Operation {
        Operation {
            kind: OPERATION_DATA_EXPORT.into(),
            amount: 0,
            currency: "CNY".into(),
            payee: "self".into(),
        }
    }

    /// Records an export request once the step-up checks out; the customer
    /// is told on their own contact (someone with the session alone cannot
    /// take the data unnoticed).
    pub fn request_export(
        &self,
        requester: &Requester,
        challenge_id: &str,
    ) -> Result<ExportRequest, PrivacyError> {
        let customer_id = requester.customer_id.as_str();
        let now = self.now();
        let request = ExportRequest {
            id: format!("exp_{}", random_hex(12)),
            requested_at: now,
            expires_at: now + EXPORT_WINDOW_SECONDS * NANOS_PER_SECOND,
        };
        self.sql.transaction(|db| -> Result<(), PrivacyError> {
            self.identity.consume_step_up(
                db,
                customer_id,
                challenge_id,
                &Privacy::export_operation(),
            )?;
            db.execute(
                "INSERT INTO privacy_exports (id, customer_id, requested_at, expires_at, downloads) VALUES ($1, $2, $3, $4, 0)",
                sql_params![request.id.as_str(), customer_id, now, request.expires_at],
            )?;
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: &coffer_audit::customer_actor(customer_id),
                    action: "data_export_requested",
                    subject: Some(customer_id),
                    ip: &requester.ip,
                    outcome: Outcome::Ok,
                    detail: &request.id,
                },
            )?;
            // A security alert: sent whatever the customer's preferences say.
            self.identity.alert_customer(
                db,
                customer_id,
                "data_export_requested",
                "A copy of all your Coffer data was requested and can be downloaded for the next 15 minutes. \
                 If this was not you, change your password and contact the bank. \
                 有人申请下载您在 Coffer 的全部个人数据（15 分钟内有效）；如非本人操作，请立即修改密码并联系银行。",
            )?;
            Ok(())
        })?;
        Ok(request)
    }

    /// Builds the archive for a live export request of this customer; each
    /// download is audited.
    pub fn download_export(
        &self,
        requester: &Requester,
        export_id: &str,
    ) -> Result<Value, PrivacyError> {
        let customer_id = requester.customer_id.as_str();
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), PrivacyError> {
            let claimed = db.execute(
                "UPDATE privacy_exports SET downloads = downloads + 1 WHERE id = $1 AND customer_id = $2 AND expires_at > $3",
                sql_params![export_id, customer_id, now],
            )?;
            if claimed != 1 {
                return Err(PrivacyError::ExportExpired);
            }
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: &coffer_audit::customer_actor(customer_id),
                    action: "data_exported",
                    subject: Some(customer_id),
                    ip: &requester.ip,
                    outcome: Outcome::Ok,
                    detail: export_id,
                },
            )?;
            Ok(())
        })?;
        let wallets = self.balances(customer_id)?;
        let mut document = self.sql.run(|db| Ok(self.collect(db, customer_id)))??;
        document["generated_at"] = time(now);
        document["wallets"] = wallets
            .into_iter()
            .map(|w| {
                json!({
                    "currency": w.currency,
                    "exponent": w.exponent,
                    "posted": w.posted,
                    "available": w.available,
                })
            })
            .collect();
        Ok(document)
    }

    fn decrypt(&self, table: &str, column: &str, blob: &[u8]) -> Result<String, PrivacyError> {
        if blob.is_empty() {
            return Ok(String::new());
        }
        let text = self.vault.decrypt_text(context_of(table, column)?, blob)?;
        Ok(text.expose().clone())
    }

    fn collect(&self, db: &mut dyn Sql, customer_id: &str) -> Result<Value, PrivacyError> {
        let id_param = [SqlValue::from(customer_id)];
        let id = &id_param[..];
        let customer = db
            .query_opt(
                "SELECT contact_kind, contact_enc, display_name_enc, tier, status, terms_version, created_at, updated_at \
                 FROM customers WHERE id = $1",
                id,
            )?
            .ok_or(PrivacyError::NotFound("customer"))?;
        let profile = json!({
            "display_name": self.decrypt("customers", "display_name_enc", &customer.bytes(2)?)?,
            "contact_kind": customer.text(0)?,
            "contact": self.decrypt("customers", "contact_enc", &customer.bytes(1)?)?,
            "kyc_tier": customer.int(3)?,
            "status": customer.text(4)?,
            "terms_version": customer.text(5)?,
            "created_at": time(customer.int(6)?),
            "updated_at": time(customer.int(7)?),
        });
        let identity = match db.query_opt(
            "SELECT id_type, id_number_enc, full_name_enc, verified_at, provider_reference FROM kyc_identities WHERE customer_id = $1",
            id,
        )? {
            Some(row) => json!({
                "id_type": row.text(0)?,
                "id_number_masked": last4(&self.decrypt("kyc_identities", "id_number_enc", &row.bytes(1)?)?),
                "full_name": self.decrypt("kyc_identities", "full_name_enc", &row.bytes(2)?)?,
                "verified_at": time(row.int(3)?),
                "provider_reference": row.text(4)?,
            }),
            None => Value::Null,
        };
        let reviews = rows(
            db,
            "SELECT id, target_tier, reason, state, created_at, decided_at FROM kyc_reviews WHERE customer_id = $1 ORDER BY created_at",
            customer_id,
            |r| {
                Ok(json!({
                    "id": r.text(0)?, "target_tier": r.int(1)?, "reason": r.text(2)?, "state": r.text(3)?,
                    "submitted_at": time(r.int(4)?), "decided_at": opt_time(r.opt_int(5)?),
                }))
            },
        )?;
        let activity = rows(
            db,
            "SELECT id, kind, direction, status, reason, counterparty, category, reference, amount, currency, fee, refunded, \
             fx_amount, fx_currency, fx_rate, created_at, updated_at FROM activity WHERE customer_id = $1 ORDER BY created_at, id",
            customer_id,
            |r| {
                Ok(json!({
                    "id": r.text(0)?, "kind": r.text(1)?, "direction": r.text(2)?, "status": r.text(3)?,
                    "reason": r.opt_text(4)?, "counterparty": r.text(5)?, "category": r.text(6)?,
                    "reference": r.text(7)?, "amount": r.int(8)?, "currency": r.text(9)?, "fee": r.int(10)?,
                    "refunded": r.int(11)?, "fx_amount": r.opt_int(12)?, "fx_currency": r.opt_text(13)?,
                    "fx_rate": r.opt_text(14)?, "created_at": time(r.int(15)?), "updated_at": time(r.int(16)?),
                }))
            },
        )?;
        let p2p = rows(
            db,
            "SELECT id, CASE WHEN customer_id = $1 THEN 'out' ELSE 'in' END, amount, fee, currency, payer_name_masked, \
             payee_name_masked, state, created_at FROM p2p_payments WHERE customer_id = $1 OR payee_id = $1 ORDER BY created_at, id",
            customer_id,
            |r| {
                Ok(json!({
                    "id": r.text(0)?, "direction": r.text(1)?, "amount": r.int(2)?, "fee": r.int(3)?,
                    "currency": r.text(4)?, "payer": r.text(5)?, "payee": r.text(6)?, "state": r.text(7)?,
                    "created_at": time(r.int(8)?),
                }))
            },
        )?;
        let cards = rows(
            db,
            "SELECT id, brand, funding, last4, expiry_month, expiry_year, status, created_at FROM cards WHERE customer_id = $1 ORDER BY created_at",
            customer_id,
            |r| {
                Ok(json!({
                    "id": r.text(0)?, "brand": r.text(1)?, "funding": r.text(2)?, "last4": r.text(3)?,
                    "expiry_month": r.int(4)?, "expiry_year": r.int(5)?, "status": r.text(6)?,
                    "linked_at": time(r.int(7)?),
                }))
            },
        )?;
        let bank_accounts = rows(
            db,
            "SELECT id, bank_code, last4, status, created_at FROM bank_accounts WHERE customer_id = $1 ORDER BY created_at",
            customer_id,
            |r| {
                Ok(json!({
                    "id": r.text(0)?, "bank_code": r.text(1)?, "last4": r.text(2)?, "status": r.text(3)?,
                    "linked_at": time(r.int(4)?),
                }))
            },
        )?;
        let consents = rows(
            db,
            "SELECT id, partner_id, scopes, granted_at, expires_at, revoked_at FROM privacy_consents WHERE customer_id = $1 ORDER BY granted_at",
            customer_id,
            |r| {
                Ok(json!({
                    "id": r.text(0)?, "partner_id": r.text(1)?,
                    "scopes": r.text(2)?.split(' ').map(str::to_string).collect::<Vec<_>>(),
                    "granted_at": time(r.int(3)?), "expires_at": time(r.int(4)?), "revoked_at": opt_time(r.opt_int(5)?),
                }))
            },
        )?;
        let sessions = rows(
            db,
            "SELECT id, device, ip, created_at, last_seen_at, revoked_at FROM sessions WHERE customer_id = $1 ORDER BY created_at",
            customer_id,
            |r| {
                Ok(json!({
                    "id": r.text(0)?, "device": r.text(1)?, "ip": r.text(2)?, "created_at": time(r.int(3)?),
                    "last_seen_at": time(r.int(4)?), "ended_at": opt_time(r.opt_int(5)?),
                }))
            },
        )?;
        let passkeys = rows(
            db,
            "SELECT name, created_at, last_used_at FROM passkeys WHERE customer_id = $1 ORDER BY created_at",
            customer_id,
            |r| {
                Ok(json!({
                    "name": r.text(0)?, "registered_at": time(r.int(1)?), "last_used_at": opt_time(r.opt_int(2)?),
                }))
            },
        )?;
        let authenticator = db
            .query_opt(
                "SELECT confirmed_at FROM totp_factors WHERE customer_id = $1",
                id,
            )?
            .map(|r| r.opt_int(0))
            .transpose()?
            .flatten();
        let handle = db
            .query_opt(
                "SELECT handle FROM wallet_handles WHERE customer_id = $1",
                id,
            )?
            .map(|r| r.text(0))
            .transpose()?;
        let notifications = rows(
            db,
            "SELECT channel, template, recipient_masked, state, created_at, sent_at FROM notifications WHERE customer_id = $1 ORDER BY seq",
            customer_id,
            |r| {
                Ok(json!({
                    "channel": r.text(0)?, "kind": r.text(1)?, "to": r.text(2)?, "state": r.text(3)?,
                    "created_at": time(r.int(4)?), "sent_at": opt_time(r.opt_int(5)?),
                }))
            },
        )?;
        let audit = db.query(
            "SELECT seq, at, actor, action, ip, outcome, detail FROM audit_log WHERE subject = $1 ORDER BY seq",
            id,
        )?;
        let mut security_events = Vec::with_capacity(audit.len());
        for r in &audit {
            let actor = describe_actor(db, &r.text(2)?, customer_id)?;
            security_events.push(json!({
                "seq": r.int(0)?, "at": time(r.int(1)?), "by": actor.kind, "role": actor.role,
                "partner_id": actor.partner_id, "action": r.text(3)?, "ip": r.text(4)?,
                "outcome": r.text(5)?, "detail": r.text(6)?,
            }));
        }
        let support_tickets: Vec<Value> = coffer_support::export(db, &self.vault, customer_id)?
            .into_iter()
            .map(|thread| {
                let t = thread.ticket;
                json!({
                    "id": t.id, "category": t.category.as_str(), "state": t.state.as_str(),
                    "transaction_id": t.activity_id, "created_at": time(t.created_at),
                    "updated_at": time(t.updated_at), "closed_at": opt_time(t.closed_at),
                    // Staff appear as "bank", as in the app.
                    "messages": thread.messages.into_iter().map(|m| json!({
                        "from": match m.author_kind {
                            coffer_support::AuthorKind::Customer => "you",
                            coffer_support::AuthorKind::Staff => "bank",
                        },
                        "text": m.body, "at": time(m.created_at),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json!({
            "schema": EXPORT_SCHEMA,
            "customer_id": customer_id,
            "profile": profile,
            "kyc": {"identity": identity, "reviews": reviews},
            "wallets": [],
            "activity": activity,
            "p2p_payments": p2p,
            "cards": cards,
            "bank_accounts": bank_accounts,
            "consents": consents,
            "devices": {
                "sessions": sessions,
                "passkeys": passkeys,
                "authenticator_app": {"enrolled": authenticator.is_some(), "confirmed_at": opt_time(authenticator)},
            },
            "wallet_handle": handle,
            "notifications": notifications,
            "support_tickets": support_tickets,
            "security_events": security_events,
        }))
    }
}

fn rows(
    db: &mut dyn Sql,
    query: &str,
    customer_id: &str,
    map: impl Fn(&Row) -> Result<Value, PrivacyError>,
) -> Result<Vec<Value>, PrivacyError> {
    db.query(query, sql_params![customer_id])?
        .iter()
        .map(map)
        .collect()
}
