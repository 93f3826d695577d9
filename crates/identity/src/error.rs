//! The identity layer's one error type.

use coffer_audit::AuditError;
use coffer_notify::NotifyError;
use coffer_store::StoreError;
use coffer_vault::VaultError;

use crate::Weakness;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("password refused: {}", .0.message())]
    WeakPassword(Weakness),
    /// Wrong, expired, used or unknown: one answer for all, so none can be probed.
    #[error("the code is wrong or has expired; request a new one")]
    CodeInvalid,
    #[error("the contact or the password is wrong")]
    InvalidCredentials,
    /// A signed-in customer confirming a change typed a wrong password.
    #[error("the current password is wrong")]
    CurrentPasswordWrong,
    /// A password reset for a wallet with an authenticator app needs a code
    /// from it too: the SMS or e-mail code alone would let a SIM swap in.
    #[error(
        "this wallet has an authenticator app: give a current code from it, or a recovery code"
    )]
    SecondFactorRequired,
    #[error("the authenticator or recovery code is wrong or was already used")]
    SecondFactorInvalid,
    #[error("too many attempts; try again in {retry_after_seconds} s")]
    Throttled { retry_after_seconds: i64 },
    #[error("sign in first")]
    Unauthenticated,
    /// Unknown, expired, used up or someone else's: one answer for all.
    #[error("this challenge is not valid (expired, used, or not yours); start a new one")]
    ChallengeInvalid,
    #[error("this operation needs a verified step-up challenge for exactly this amount and payee")]
    StepUpRequired,
    #[error("{0}")]
    Conflict(&'static str),
    /// A staff member without the permission this needs.
    #[error("not permitted: {0}")]
    Forbidden(&'static str),
    /// An outside service (identity provider) did not answer; retry later.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("storage: {0}")]
    Store(StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("notifications: {0}")]
    Notify(#[from] NotifyError),
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    #[error("internal: {0}")]
    Internal(String),
}

impl IdentityError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> IdentityError {
        IdentityError::InvalidField {
            field,
            message: message.into(),
        }
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::InvalidField { .. } => "invalid_field",
            IdentityError::WeakPassword(_) => "weak_password",
            IdentityError::CodeInvalid => "code_invalid",
            IdentityError::InvalidCredentials => "invalid_credentials",
            IdentityError::CurrentPasswordWrong => "current_password_wrong",
            IdentityError::SecondFactorRequired => "second_factor_required",
            IdentityError::SecondFactorInvalid => "second_factor_invalid",
            IdentityError::Throttled { .. } => "too_many_attempts",
            IdentityError::Unauthenticated => "unauthenticated",
            IdentityError::ChallengeInvalid => "challenge_invalid",
            IdentityError::StepUpRequired => "step_up_required",
            IdentityError::Conflict(_) => "conflict",
            IdentityError::Forbidden(_) => "forbidden",
            IdentityError::Unavailable(_) => "unavailable",
            IdentityError::NotFound(_) => "not_found",
            IdentityError::Store(_)
            | IdentityError::Vault(_)
            | IdentityError::Notify(_)
            | IdentityError::Audit(_)
            | IdentityError::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            IdentityError::InvalidField { field, .. } => Some(field),
            IdentityError::WeakPassword(_) => Some("password"),
            IdentityError::CodeInvalid => Some("code"),
            IdentityError::CurrentPasswordWrong => Some("current_password"),
            IdentityError::SecondFactorRequired | IdentityError::SecondFactorInvalid => {
                Some("totp_code")
            }
            _ => None,
        }
    }
}

impl From<StoreError> for IdentityError {
    /// Two requests racing for one unique value (a contact claimed by a
    /// registration and a contact change at once) are a conflict the client
    /// can retry, not a fault: the database's unique index decided.
    fn from(error: StoreError) -> IdentityError {
        if error.is_unique_violation() {
            IdentityError::Conflict("someone else just took this; check and retry")
        } else {
            IdentityError::Store(error)
        }
    }
}
