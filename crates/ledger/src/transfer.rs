//! Transfers (immutable movements between two accounts) and holds (pending
//! transfers that are later captured, released, or expire).

use coffer_core::{Amount, Code, Currency, Identifier, Timestamp};

use crate::account::Balances;
use crate::metadata::Metadata;

/// Longest a hold may stay pending before it expires: 30 days.
pub const HOLD_TIMEOUT_MAX_MS: u64 = 30 * 24 * 3600 * 1000;

/// What a client asks the ledger to do under one transfer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOp {
    /// Move `amount` from debit to credit now.
    Post {
        debit: Identifier,
        credit: Identifier,
        amount: Amount,
        currency: Currency,
    },
    /// Reserve `amount` (it leaves the debit account's available balance at
    /// once) until captured, released, or `timeout_ms` passes.
    Hold {
        debit: Identifier,
        credit: Identifier,
        amount: Amount,
        currency: Currency,
        timeout_ms: u64,
    },
    /// Post all of a pending hold, or part of it (the rest is released).
    Capture {
        hold: Identifier,
        amount: Option<Amount>,
    },
    /// Release a pending hold without moving money.
    Release { hold: Identifier },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferCommand {
    pub id: Identifier,
    pub op: TransferOp,
    pub code: Code,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferKind {
    Posted,
    Hold,
    Capture,
    Release,
    /// Written by the ledger itself when a hold's timeout passes.
    Expire,
}

impl TransferKind {
    pub const ALL: [TransferKind; 5] = [
        TransferKind::Posted,
        TransferKind::Hold,
        TransferKind::Capture,
        TransferKind::Release,
        TransferKind::Expire,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Posted => "posted",
            TransferKind::Hold => "hold",
            TransferKind::Capture => "capture",
            TransferKind::Release => "release",
            TransferKind::Expire => "expire",
        }
    }

    pub fn parse(text: &str) -> Option<TransferKind> {
        TransferKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    pub(crate) fn tag(self) -> u8 {
        match self {
            TransferKind::Posted => 1,
            TransferKind::Hold => 2,
            TransferKind::Capture => 3,
            TransferKind::Release => 4,
            TransferKind::Expire => 5,
        }
    }
}

/// A committed transfer: immutable once written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub id: Identifier,
    pub kind: TransferKind,
    pub debit: Identifier,
    pub credit: Identifier,
    /// For a capture, the amount posted; for a release or expiry, the amount
    /// the hold had reserved.
    pub amount: Amount,
    pub currency: Currency,
    pub code: Code,
    pub metadata: Metadata,
    /// The hold a capture, release or expiry resolves.
    pub hold: Option<Identifier>,
    /// When a hold expires if nothing resolves it first.
    pub expires_at: Option<Timestamp>,
    /// Assigned by the ledger: unique and strictly increasing.
    pub timestamp: Timestamp,
    /// Both accounts' totals just after this transfer: the running balance of
    /// each account's statement, and the answer to "balance as of".
    pub debit_after: Balances,
    pub credit_after: Balances,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldState {
    Pending,
    Captured,
    Released,
    Expired,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Pending => "pending",
            HoldState::Captured => "captured",
            HoldState::Released => "released",
            HoldState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<HoldState> {
        [
            HoldState::Pending,
            HoldState::Captured,
            HoldState::Released,
            HoldState::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A hold and where it stands. `id` is the id of the transfer that placed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: Identifier,
    pub debit: Identifier,
    pub credit: Identifier,
    pub amount: Amount,
    pub currency: Currency,
    pub expires_at: Timestamp,
    pub state: HoldState,
    /// The transfer that captured, released or expired it.
    pub resolved_by: Option<Identifier>,
    /// How much a capture posted (the rest was released).
    pub captured: Option<Amount>,
}

impl TransferCommand {
    /// Whether a committed transfer is what this command would have written:
    /// the ledger's idempotency rule for a repeated id.
    pub fn matches(&self, existing: &Transfer, hold_amount: Option<Amount>) -> bool {
        if self.code != existing.code || self.metadata != existing.metadata {
            return false;
        }
        match &self.op {
            TransferOp::Post {
                debit,
                credit,
                amount,
                currency,
            } => {
                existing.kind == TransferKind::Posted
                    && *debit == existing.debit
                    && *credit == existing.credit
                    && *amount == existing.amount
                    && *currency == existing.currency
            }
            TransferOp::Hold {
                debit,
                credit,
                amount,
                currency,
                timeout_ms,
            } => {
                existing.kind == TransferKind::Hold
                    && *debit == existing.debit
                    && *credit == existing.credit
                    && *amount == existing.amount
                    && *currency == existing.currency
                    && existing.expires_at == Some(existing.timestamp.plus_millis(*timeout_ms))
            }
            TransferOp::Capture { hold, amount } => {
                // "Capture all" and "capture exactly the held amount" are the same request.
                let requested = amount.or(hold_amount);
                existing.kind == TransferKind::Capture
                    && existing.hold.as_ref() == Some(hold)
                    && requested.is_none_or(|a| a == existing.amount)
            }
            TransferOp::Release { hold } => {
                existing.kind == TransferKind::Release && existing.hold.as_ref() == Some(hold)
            }
        }
    }

    /// Ids of the accounts this command names directly.
    pub fn account_ids(&self) -> impl Iterator<Item = &Identifier> {
        let pair = match &self.op {
            TransferOp::Post { debit, credit, .. } | TransferOp::Hold { debit, credit, .. } => {
                Some([debit, credit])
            }
            TransferOp::Capture { .. } | TransferOp::Release { .. } => None,
        };
        pair.into_iter().flatten()
    }

    pub fn hold_id(&self) -> Option<&Identifier> {
        match &self.op {
            TransferOp::Capture { hold, .. } | TransferOp::Release { hold } => Some(hold),
            TransferOp::Post { .. } | TransferOp::Hold { .. } => None,
        }
    }
}
