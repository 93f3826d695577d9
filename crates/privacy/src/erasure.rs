//! Erasure ("right to be forgotten", PIPL art. 47, GDPR art. 17).
//!
//! Personal data is stored under shared data keys (the vault's design: one
//! active key for every row, rotated bank-wide), so deleting a key would
//! shred every customer at once. Erasure therefore *overwrites*: in one SQL
//! transaction every ciphertext that holds the customer's personal data is
//! emptied, every blind index and keyed hash that could re-identify them is
//! replaced by `erased:<row id>`, and the rows only the customer needed
//! (sessions' devices, factors, passkeys, handles, stored idempotent
//! responses) are deleted. What financial regulation makes the bank keep
//! stays, under the customer id, which nothing links to a person any more
//! (the pseudonymous id): ledger accounts and transfers, payment and funding
//! records with amounts, masked card/bank last fours and KYC tier, the
//! audit log (append-only and hash-chained; it never holds a contact, name
//! or number in clear). On SQLite the pages the old values lived in are
//! zeroed (`secure_delete`) and the WAL is checkpointed and truncated, so no
//! earlier copy survives in the files; on PostgreSQL the touched tables are
//! vacuumed (see ARCHITECTURE.md for what a physical copy may still hold).

use coffer_audit::{Entry, Outcome};
use coffer_identity::Operation;
use coffer_store::sql::Sql;
use coffer_store::sql_params;

use crate::{Balance, Privacy, PrivacyError, Requester, OPERATION_ACCOUNT_DELETION};

/// What replaces a unique blind index or a name: never a valid value.
pub const ERASED_MARK: &str = "erased";

/// The answer to an erasure: the id the retained records stay under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    pub pseudonymous_id: String,
    pub erased_at: i64,
}

const CHECKPOINT_ATTEMPTS_MAX: usize = 50;
const CHECKPOINT_RETRY_MS: u64 = 20;

/// Tables whose old row versions PostgreSQL should reclaim after an erasure.
const TOUCHED_TABLES: [&str; 20] = [
    "customers",
    "registrations",
    "password_resets",
    "contact_changes",
    "throttles",
    "sessions",
    "totp_factors",
    "recovery_codes",
    "challenges",
    "passkeys",
    "passkey_ceremonies",
    "kyc_identities",
    "kyc_reviews",
    "cards",
    "bank_accounts",
    "notifications",
    "wallet_handles",
    "p2p_quotes",
    "p2p_payments",
    "idempotency_keys",
];

impl Privacy {
    /// The step-up operation an erasure must be verified for.
    pub fn erasure_operation() -> Operation {
        Operation {
            kind: OPERATION_ACCOUNT_DELETION.into(),
            amount: 0,
            currency: "CNY".into(),
            payee: "self".into(),
        }
    }

    /// Erases the customer's personal data after checking that their
    /// wallets are empty and nothing is pending. Refusals change nothing
    /// (the step-up stays unused for a retry once the balance is paid out).
    pub fn erase(&self, requester: &Requester, challenge_id: &str) -> Result<Erased, PrivacyError> {
        let customer_id = requester.customer_id.as_str();
        let balances: Vec<Balance> = self
            .balances(customer_id)?
            .into_iter()
            .filter(|b| b.posted != 0 || b.available != 0)
            .collect();
        if !balances.is_empty() {
            return Err(PrivacyError::BalanceNotZero(balances));
        }
        let now = self.now();
        let erased = self.sql.transaction(|db| -> Result<Erased, PrivacyError> {
            let status = db
                .query_opt(
                    "SELECT status, contact_index FROM customers WHERE id = $1",
                    sql_params![customer_id],
                )?
                .ok_or(PrivacyError::NotFound("customer"))?;
            let (status, contact_index) = (status.text(0)?, status.text(1)?);
            if status != "active" {
                return Err(PrivacyError::NotDeletable(status));
            }
            let pending = pending_operations(db, customer_id)?;
            if !pending.is_empty() {
                return Err(PrivacyError::PendingOperations(pending));
            }
            self.identity.consume_step_up(
                db,
                customer_id,
                challenge_id,
                &Privacy::erasure_operation(),
            )?;
            if self.sql.backend_name() == "sqlite" {
                // Freed and overwritten cell space is zeroed, not left as garbage
                // in the page for a file scan to find.
                db.query("PRAGMA secure_delete = ON", &[])?;
            }
            erase_identity(db, customer_id, &contact_index, now)?;
            erase_payments(db, customer_id)?;
            coffer_support::erase(db, customer_id, now)?;
            db.execute(
                "UPDATE privacy_consents SET revoked_at = $2 WHERE customer_id = $1 AND revoked_at IS NULL",
                sql_params![customer_id, now],
            )?;
            db.execute(
                "DELETE FROM privacy_exports WHERE customer_id = $1",
                sql_params![customer_id],
            )?;
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: &coffer_audit::customer_actor(customer_id),
                    action: "customer_erased",
                    subject: Some(customer_id),
                    ip: &requester.ip,
                    outcome: Outcome::Ok,
                    detail: "personal data erased at the customer's request; ledger and payment records kept under this id",
                },
            )?;
            Ok(Erased {
                pseudonymous_id: customer_id.to_string(),
                erased_at: now,
            })
        })?;
        self.purge_old_copies();
        Ok(erased)
    }

    /// Best effort: an erasure that committed stays committed; a checkpoint
    /// that a long reader blocks is retried by SQLite's next checkpoint.
    fn purge_old_copies(&self) {
        let _ = self.sql.run(|db| {
            if self.sql.backend_name() == "sqlite" {
                // A reader in the middle of a query makes the checkpoint
                // answer busy (first column 1): try again briefly.
                for _ in 0..CHECKPOINT_ATTEMPTS_MAX {
                    let result = db.query_one("PRAGMA wal_checkpoint(TRUNCATE)", &[])?;
                    if result.int(0)? == 0 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(CHECKPOINT_RETRY_MS));
                }
            } else {
                for table in TOUCHED_TABLES.iter().chain(&coffer_support::ERASED_TABLES) {
                    db.execute(&format!("VACUUM {table}"), &[])?;
                }
            }
            Ok(())
        });
    }
}

/// What must finish before an account can go: money in flight both ways,
/// and a merchant the customer still runs.
fn pending_operations(db: &mut dyn Sql, customer_id: &str) -> Result<Vec<String>, PrivacyError> {
    let checks: [(&str, &str); 5] = [
        (
            "top-ups or withdrawals",
            "SELECT COUNT(*) FROM fundings WHERE customer_id = $1 AND stage <> 'resolved'",
        ),
        (
            "person-to-person payments",
            "SELECT COUNT(*) FROM p2p_payments WHERE (customer_id = $1 OR payee_id = $1) AND state = 'pending'",
        ),
        (
            "bill payments",
            "SELECT COUNT(*) FROM bill_payments WHERE customer_id = $1 AND stage <> 'resolved'",
        ),
        (
            "merchant payments",
            "SELECT COUNT(*) FROM merchant_payments WHERE customer_id = $1 AND state = 'pending'",
        ),
        (
            "merchants (close them first)",
            "SELECT COUNT(*) FROM merchants WHERE owner_customer_id = $1 AND status IN ('approved', 'pending_review')",
        ),
    ];
    let mut pending = Vec::new();
    for (what, query) in checks {
        let count = db.query_one(query, sql_params![customer_id])?.int(0)?;
        if count > 0 {
            pending.push(format!("{count} {what}"));
        }
    }
    Ok(pending)
}

/// Identity's tables: the contact, name, password, factors, sessions, KYC.
fn erase_identity(
    db: &mut dyn Sql,
    customer_id: &str,
    contact_index: &str,
    now: i64,
) -> Result<(), PrivacyError> {
    let empty: Vec<u8> = Vec::new();
    // The contact's blind index goes, so the contact can register again as a
    // new customer and nothing can find this row from a phone or e-mail;
    // an impossible password hash and the status keep every sign-in out.
    db.execute(
        "UPDATE customers SET contact_index = $2, contact_enc = $3, contact_masked = $4, display_name_enc = $3, \
         password_hash = $4, status = 'erased', updated_at = $5 WHERE id = $1",
        sql_params![
            customer_id,
            format!("{ERASED_MARK}:{customer_id}"),
            empty.clone(),
            ERASED_MARK,
            now
        ],
    )?;
    db.execute(
        "DELETE FROM registrations WHERE contact_index = $1",
        sql_params![contact_index],
    )?;
    db.execute(
        "DELETE FROM password_resets WHERE customer_id = $1 OR contact_index = $2",
        sql_params![customer_id, contact_index],
    )?;
    db.execute(
        "DELETE FROM throttles WHERE subject = $1",
        sql_params![format!("contact:{contact_index}")],
    )?;
    for table in [
        "contact_changes",
        "totp_factors",
        "recovery_codes",
        "challenges",
        "passkeys",
        "passkey_ceremonies",
    ] {
        db.execute(
            &format!("DELETE FROM {table} WHERE customer_id = $1"),
            sql_params![customer_id],
        )?;
    }
    // Sessions end; the rows stay (their ids appear in the audit log) but
    // the device and address they came from go.
    db.execute(
        "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2), device = $3, ip = $3 WHERE customer_id = $1",
        sql_params![customer_id, now, ERASED_MARK],
    )?;
    // KYC: the tier, when and through which provider reference it was
    // verified stay (AML record keeping: the provider holds the verification
    // under that reference); the name, ID number and evidence go.
    db.execute(
        "UPDATE kyc_identities SET id_index = $2, id_number_enc = $3, full_name_enc = $3 WHERE customer_id = $1",
        sql_params![
            customer_id,
            format!("{ERASED_MARK}:{customer_id}"),
            empty.clone()
        ],
    )?;
    db.execute(
        "UPDATE kyc_reviews SET evidence_enc = $2, note = NULL WHERE customer_id = $1",
        sql_params![customer_id, empty.clone()],
    )?;
    // Messages: the address and text go; queued ones are never sent.
    db.execute(
        "UPDATE notifications SET recipient_enc = $2, recipient_masked = $3, body_enc = NULL, \
         state = CASE WHEN state IN ('pending', 'sending') THEN 'cancelled' ELSE state END WHERE customer_id = $1",
        sql_params![customer_id, empty, ERASED_MARK],
    )?;
    // Stored answers to the customer's own requests may repeat what they
    // typed (a name, a contact); the request in flight (no status yet) is
    // this erasure's own, whose answer holds no personal data.
    db.execute(
        "DELETE FROM idempotency_keys WHERE principal = $1 AND status IS NOT NULL",
        sql_params![coffer_audit::customer_actor(customer_id)],
    )?;
    Ok(())
}

/// Payments' tables: card and account numbers, the wallet handle, notes
/// and the masked names P2P records show for this customer.
fn erase_payments(db: &mut dyn Sql, customer_id: &str) -> Result<(), PrivacyError> {
    let empty: Vec<u8> = Vec::new();
    db.execute(
        "UPDATE cards SET pan_enc = $2, pan_index = 'erased:' || id, status = 'removed' WHERE customer_id = $1",
        sql_params![customer_id, empty.clone()],
    )?;
    db.execute(
        "UPDATE bank_accounts SET number_enc = $2, number_index = 'erased:' || id, status = 'removed' WHERE customer_id = $1",
        sql_params![customer_id, empty],
    )?;
    for query in [
        "DELETE FROM wallet_handles WHERE customer_id = $1",
        "UPDATE p2p_quotes SET note_enc = NULL WHERE customer_id = $1",
        "UPDATE payment_request_groups SET note_enc = NULL WHERE organizer_id = $1",
        "UPDATE payment_codes SET state = 'replaced' WHERE customer_id = $1 AND state = 'active'",
    ] {
        db.execute(query, sql_params![customer_id])?;
    }
    for query in [
        "UPDATE p2p_quotes SET payee_name_masked = $2 WHERE payee_id = $1",
        "UPDATE p2p_payments SET note_enc = NULL, payer_name_masked = $2 WHERE customer_id = $1",
        "UPDATE p2p_payments SET note_enc = NULL, payee_name_masked = $2 WHERE payee_id = $1",
    ] {
        db.execute(query, sql_params![customer_id, ERASED_MARK])?;
    }
    Ok(())
}
