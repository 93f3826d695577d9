//! The ledger's rules, as a pure state machine.
//!
//! `Ledger` holds the state the rules need (accounts with balances, pending
//! holds, the journal head) and executes commands against it. It never touches
//! storage: the engine above loads what a batch refers to, executes it here,
//! writes the sealed batch in one database transaction, and then confirms or
//! rolls back. Every effect is recorded in an undo log so that a failed linked
//! batch, or a failed commit, leaves the state exactly as it was.

pub mod account;
pub mod audit;
pub mod journal;
pub mod ledger;
pub mod metadata;
pub mod rejection;
pub mod transfer;

pub use account::{
    Account, AccountKind, AccountSpec, AccountStatus, BalanceConstraint, Balances, Side,
};
pub use audit::{audit, AuditInput, AuditReport, Auditor, Violation};
pub use journal::{Event, JournalEntry, JournalHash, JournalHasher, GENESIS_HASH};
pub use ledger::{Command, HoldChange, Known, Ledger, Outcome, SealedBatch, BATCH_EVENTS_MAX};
pub use metadata::{Metadata, MetadataError};
pub use rejection::Rejection;
pub use transfer::{
    Hold, HoldState, Transfer, TransferCommand, TransferKind, TransferOp, HOLD_TIMEOUT_MAX_MS,
};
