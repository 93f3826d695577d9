//! Compliance: sanctions and watch-list screening of customers (at KYC),
//! payees (before a P2P payment) and merchants (at onboarding); the queue
//! of possible matches that compliance officers clear or confirm; and the
//! regulatory reports (large-value and suspicious transactions) generated
//! by rules from the payment records, reviewed and exported.
//!
//! Layering: identity defines the `Screening` trait that KYC, P2P and
//! merchant onboarding call; this crate implements it (`Screener`) and
//! sits above identity and payments, which it calls to freeze a customer
//! or block a merchant (inside the transaction that confirms a hit) and to
//! read completed payments (`coffer_payments::movements`).
//!
//! Every staff view and action is audited with the customer as subject.

pub mod matching;
mod queue;
mod reports;
mod screener;
pub mod watchlist;

use coffer_identity::IdentityError;
use coffer_store::StoreError;
use coffer_vault::{EncryptedColumn, VaultError};

pub use queue::{Compliance, Decision, HitDetail, HitState, HitView};
pub use reports::{
    evaluate, ExportFormat, ExportRow, Finding, LocalDate, ReportKind, ReportRun, ReportSettings,
    ReportState, ReportView, EXPORT_COLUMNS,
};
pub use screener::{
    ListVersion, Screener, ScreeningMatch, DEFAULT_THRESHOLD_BPS, THRESHOLD_MIN_BPS,
};

pub(crate) const SCREENED_NAME_CONTEXT: &str = "compliance.screened_name";
pub(crate) const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// Where compliance keeps ciphertexts (the names that were screened).
pub const ENCRYPTED_COLUMNS: [EncryptedColumn; 1] = [EncryptedColumn {
    table: "screening_hits",
    key: "id",
    column: "name_enc",
    context: SCREENED_NAME_CONTEXT,
}];

#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("the watch list was refused at {0}")]
    List(#[from] watchlist::ListError),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("not permitted: {0}")]
    Forbidden(&'static str),
    #[error("identity: {0}")]
    Identity(IdentityError),
    #[error("merchants: {0}")]
    Merchant(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("audit: {0}")]
    Audit(#[from] coffer_audit::AuditError),
    #[error("{0}")]
    Internal(String),
}

impl From<IdentityError> for ComplianceError {
    fn from(error: IdentityError) -> ComplianceError {
        match error {
            IdentityError::Forbidden(what) => ComplianceError::Forbidden(what),
            IdentityError::Store(e) => ComplianceError::Store(e),
            other => ComplianceError::Identity(other),
        }
    }
}

impl ComplianceError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> ComplianceError {
        ComplianceError::Invalid {
            field,
            message: message.into(),
        }
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            ComplianceError::Invalid { .. } => "invalid_field",
            ComplianceError::List(_) => "watchlist_invalid",
            ComplianceError::NotFound(_) => "not_found",
            ComplianceError::Conflict(_) => "already_decided",
            ComplianceError::Forbidden(_) => "forbidden",
            ComplianceError::Identity(error) => error.code(),
            ComplianceError::Merchant(_)
            | ComplianceError::Store(_)
            | ComplianceError::Vault(_)
            | ComplianceError::Audit(_)
            | ComplianceError::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            ComplianceError::Invalid { field, .. } => Some(field),
            ComplianceError::List(_) => Some("list"),
            _ => None,
        }
    }
}
