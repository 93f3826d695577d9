//! Customers' privacy rights (PIPL arts. 44–47, GDPR arts. 15, 17, 20):
//! a machine-readable export of everything the bank holds about them
//! (`export.rs`), erasure that keeps the ledger under a pseudonymous id
//! (`erasure.rs`), consents for partners to read their data and the check
//! every partner read passes (`consents.rs`), and the list of who —
//! which staff role, which partner — read their data (`access.rs`).
//!
//! This crate sits above identity and payments because erasure and export
//! span both: one SQL transaction erases every table that names the
//! customer, and one document gathers them.

mod access;
mod consents;
mod erasure;
mod export;

use std::sync::Arc;

use coffer_core::Clock;
use coffer_identity::{Identity, IdentityError};
use coffer_payments::Fx;
use coffer_store::sql::SqlStore;
use coffer_store::StoreError;
use coffer_vault::{EncryptedColumn, Vault, VaultError};
use rand::RngCore;

pub use access::{AccessEntry, AccessPage, Accessor, ACCESS_PAGE_ROWS_MAX};
pub use consents::{
    valid_partner_id, Consent, ConsentScope, PartnerAccess, CONSENT_DAYS_MAX,
    PARTNER_ID_LENGTH_MAX, PARTNER_SCOPE_PREFIX,
};
pub use erasure::{Erased, ERASED_MARK};
pub use export::{ExportRequest, EXPORT_SCHEMA, EXPORT_WINDOW_SECONDS};

/// Step-up operations (`POST /v1/me/step-up`) that move no money: they are
/// bound to amount 0, currency CNY and payee "self".
pub const OPERATION_DATA_EXPORT: &str = "data_export";
pub const OPERATION_ACCOUNT_DELETION: &str = "account_deletion";
pub const STEP_UP_OPERATIONS: [&str; 2] = [OPERATION_DATA_EXPORT, OPERATION_ACCOUNT_DELETION];

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// A wallet balance that stands in the way of erasure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub currency: String,
    pub exponent: u8,
    pub posted: i64,
    pub available: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("the wallet still holds money: {}", describe(.0))]
    BalanceNotZero(Vec<Balance>),
    #[error("operations are still pending: {}", .0.join(", "))]
    PendingOperations(Vec<String>),
    #[error("this account cannot be deleted while it is {0}; contact the bank")]
    NotDeletable(String),
    #[error("the customer has not consented to this partner reading this data, or the consent was revoked or has expired")]
    ConsentRequired,
    #[error("this export has expired or is not yours; request a new one")]
    ExportExpired,
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("audit log: {0}")]
    Audit(#[from] coffer_audit::AuditError),
    #[error("wallets: {0}")]
    Wallets(String),
    #[error("support tickets: {0}")]
    Support(#[from] coffer_support::SupportError),
}

fn describe(balances: &[Balance]) -> String {
    balances
        .iter()
        .map(|b| {
            format!(
                "{} posted {} available {} (minor units, exponent {})",
                b.currency, b.posted, b.available, b.exponent
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl PrivacyError {
    fn invalid(field: &'static str, message: impl Into<String>) -> PrivacyError {
        PrivacyError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Who asked, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Requester {
    pub customer_id: String,
    pub ip: String,
}

pub struct Privacy {
    sql: Arc<SqlStore>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    identity: Arc<Identity>,
    fx: Arc<Fx>,
}

impl Privacy {
    pub fn new(
        sql: Arc<SqlStore>,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        identity: Arc<Identity>,
        fx: Arc<Fx>,
    ) -> Privacy {
        Privacy {
            sql,
            vault,
            clock,
            identity,
            fx,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    /// The customer's wallets with their balances, from the ledger.
    fn balances(&self, customer_id: &str) -> Result<Vec<Balance>, PrivacyError> {
        let wallets = self
            .fx
            .wallets(customer_id)
            .map_err(|e| PrivacyError::Wallets(e.to_string()))?;
        Ok(wallets
            .into_iter()
            .map(|w| Balance {
                currency: w.currency,
                exponent: w.exponent,
                posted: w.posted,
                available: w.available,
            })
            .collect())
    }
}

/// The vault purpose a column's ciphertexts are bound to, from the lists
/// the owning crates keep (one source of truth with key rotation).
fn context_of(table: &str, column: &str) -> Result<&'static str, PrivacyError> {
    coffer_identity::ENCRYPTED_COLUMNS
        .iter()
        .chain(coffer_notify::ENCRYPTED_COLUMNS.iter())
        .chain(coffer_payments::ENCRYPTED_COLUMNS.iter())
        .find(|c: &&EncryptedColumn| c.table == table && c.column == column)
        .map(|c| c.context)
        .ok_or_else(|| {
            PrivacyError::Wallets(format!("{table}.{column} is not an encrypted column"))
        })
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}
