//! Every reason the ledger refuses a command: a stable code, a sentence, and
//! the field at fault. The variants are listed in the order they are checked.

use crate::account::Side;

/// Why a command was refused. Checks run in this order for a transfer:
///
/// 1. `exists_with_different_fields`: the id was used before for something else
///    (an identical repeat is not a rejection: it returns the original);
/// 2. `same_account`;
/// 3. `invalid_timeout` (holds);
/// 4. `account_not_found` (debit, then credit);
/// 5. `currency_mismatch` (debit, then credit);
/// 6. `account_closed` (debit, then credit);
/// 7. `hold_not_found`, `hold_not_pending`, `hold_expired`, `capture_exceeds_hold`
///    (captures and releases);
/// 8. `overflow` (debit, then credit);
/// 9. `insufficient_funds` (debit side of a `no_overdraft` account) and
///    `exceeds_debits` (credit side of a `must_stay_in_debit` account).
///
/// In a linked batch, the first member that fails reports its own reason and
/// every other member reports `linked_transfer_failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    #[error("this id was already used with different fields")]
    ExistsWithDifferentFields,
    #[error("debit and credit accounts are the same")]
    SameAccount,
    #[error("hold timeout must be between 1 ms and 30 days")]
    InvalidTimeout,
    #[error("the {} account does not exist", .0.as_str())]
    AccountNotFound(Side),
    #[error("the {} account holds a different currency", .0.as_str())]
    CurrencyMismatch(Side),
    #[error("the {} account is closed", .0.as_str())]
    AccountClosed(Side),
    #[error("no hold with this id")]
    HoldNotFound,
    #[error("the hold was already captured or released")]
    HoldNotPending,
    #[error("the hold has expired")]
    HoldExpired,
    #[error("the capture is larger than the hold")]
    CaptureExceedsHold,
    #[error("the {} account's totals would overflow", .0.as_str())]
    Overflow(Side),
    #[error("the debit account has insufficient available funds")]
    InsufficientFunds,
    #[error("the credit account must stay in debit")]
    ExceedsDebits,
    #[error("another transfer in the linked batch failed")]
    LinkedTransferFailed,
    #[error("some transfers of this linked batch were committed before and some were not")]
    LinkedBatchPartiallyExists,
    #[error("an account can be closed only with a zero balance and no pending holds")]
    AccountNotEmpty,
    #[error("the account is already closed")]
    AccountAlreadyClosed,
    #[error("account not found")]
    AccountToCloseNotFound,
}

impl Rejection {
    /// The stable machine code. Never change one once published.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::ExistsWithDifferentFields => "exists_with_different_fields",
            Rejection::SameAccount => "same_account",
            Rejection::InvalidTimeout => "invalid_timeout",
            Rejection::AccountNotFound(_) | Rejection::AccountToCloseNotFound => {
                "account_not_found"
            }
            Rejection::CurrencyMismatch(_) => "currency_mismatch",
            Rejection::AccountClosed(_) => "account_closed",
            Rejection::HoldNotFound => "hold_not_found",
            Rejection::HoldNotPending => "hold_not_pending",
            Rejection::HoldExpired => "hold_expired",
            Rejection::CaptureExceedsHold => "capture_exceeds_hold",
            Rejection::Overflow(_) => "overflow",
            Rejection::InsufficientFunds => "insufficient_funds",
            Rejection::ExceedsDebits => "exceeds_debits",
            Rejection::LinkedTransferFailed => "linked_transfer_failed",
            Rejection::LinkedBatchPartiallyExists => "linked_batch_partially_exists",
            Rejection::AccountNotEmpty => "account_not_empty",
            Rejection::AccountAlreadyClosed => "account_closed",
        }
    }

    /// The request field at fault, as the API names it.
    pub fn field(self) -> Option<&'static str> {
        match self {
            Rejection::ExistsWithDifferentFields | Rejection::LinkedBatchPartiallyExists => {
                Some("id")
            }
            Rejection::SameAccount => Some("credit_account_id"),
            Rejection::InvalidTimeout => Some("timeout_ms"),
            Rejection::AccountNotFound(side)
            | Rejection::CurrencyMismatch(side)
            | Rejection::AccountClosed(side)
            | Rejection::Overflow(side) => Some(match side {
                Side::Debit => "debit_account_id",
                Side::Credit => "credit_account_id",
            }),
            Rejection::HoldNotFound | Rejection::HoldNotPending | Rejection::HoldExpired => {
                Some("hold_id")
            }
            Rejection::CaptureExceedsHold
            | Rejection::InsufficientFunds
            | Rejection::ExceedsDebits => Some("amount"),
            Rejection::AccountNotEmpty
            | Rejection::AccountAlreadyClosed
            | Rejection::AccountToCloseNotFound => Some("account_id"),
            Rejection::LinkedTransferFailed => None,
        }
    }
}
