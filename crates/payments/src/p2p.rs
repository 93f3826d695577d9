//! Person-to-person payments: to a phone number, an e-mail address or a
//! wallet handle, always quoted first (payee's masked name, amount, fee,
//! total, expiry), then confirmed against the quote; payment requests and
//! split bills that payers pay (a P2P payment linked to the request) or
//! decline.
//!
//! A payment is a record (SQL) beside one linked ledger batch (the transfer
//! to the payee and the fee to the bank's fee income, all or nothing). The
//! two cannot commit together, so, as for funding, the record goes first:
//! one SQL transaction consumes the quote, reserves the limit counters and
//! the free-fee quota, consumes the step-up challenge, checks the payee's
//! balance cap and writes the record `pending`. Then the batch runs with ids
//! derived from the payment id (`p2p:<id>`, `p2p:<id>:fee`), so a repeat
//! after a crash gets the original; the record is then set from what the
//! ledger did, and a refused payment gives every reservation back in the
//! same transaction that marks it failed. `resolve_pending` carries forward
//! a record a crash left pending.
//!
//! Payee look-ups show only a masked name (张*明, J*** D**), and reveal
//! that a contact has a wallet exactly as a bank app must to let one pay
//! it; to keep that from becoming a directory, every look-up (a quote and a
//! request's payers count too) spends one of `lookups_per_hour_max` per
//! customer and hour, counted by the same conditional counters as limits.

use std::sync::Arc;

use coffer_app::{Engine, EngineError};
use coffer_audit::{Entry, Outcome as AuditOutcome};
use coffer_core::{Amount, Clock, Code, Currency, Identifier};
use coffer_identity::{
    Contact, Identity, IdentityError, Operation as StepUpOperation, Party, PartyKind,
    ScreeningError, ScreeningSource, Standing,
};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, HoldState, Metadata, Outcome, Rejection,
    TransferCommand, TransferOp,
};
use coffer_notify::alerts::Bilingual;
use coffer_notify::preferences::Category as AlertCategory;
use coffer_store::sql::{Row, Sql, SqlStore};
use coffer_store::{sql_params, LedgerReader, StoreError};
use coffer_vault::{EncryptedColumn, Vault, VaultError};
use rand::RngCore;

use crate::activity::{self, ActivityKind, ActivityStatus, Category, Direction, NewActivity};
use crate::fees::{FeeOperation, FeeQuote, FeeSchedule, FeeUsage, Waiver};
use crate::funding::{wallet_account_id, ClientKey, FUNDING_CURRENCY};
use crate::limits::{self, LimitError, LimitExceeded};
use crate::risk_gate::{Gate, GateError, RiskGate, SUBJECT_P2P};
use coffer_risk::{Assessment, Attempt, Kind as RiskKind, RiskError};

/// The bank's fee income in the wallet currency.
pub const FEE_INCOME_ACCOUNT: &str = "bank:fee-income:cny";
/// A note is at most this many characters.
pub const NOTE_LENGTH_MAX: usize = 140;
/// A payment request names at most this many payers.
pub const REQUEST_PAYERS_MAX: usize = 20;
/// Lists return at most this many items.
pub const P2P_PAGE_MAX: i64 = 100;
/// Handles are this long, in characters.
pub const HANDLE_LENGTH_MIN: usize = 3;
pub const HANDLE_LENGTH_MAX: usize = 30;
/// A pending payment the resolver leaves alone for this long: the request
/// that recorded it is still applying it (see `resolve_pending`).
pub const RESOLVE_GRACE_SECONDS: i64 = 60;
/// How long a payment held for review keeps its money reserved: a case
/// still open then finds the hold expired, and a release fails the payment
/// (`review_hold_expired`) instead of moving money the customer may have
/// been told is free again.
pub const REVIEW_HOLD_TIMEOUT_SECONDS: u64 = 7 * 86_400;
/// Why a held payment failed when its case was rejected (its review hold is
/// released by `carry_rejected`, or by the resolver after a crash).
const REVIEW_REJECTIONS: [&str; 2] = ["rejected_by_risk", "not_authorised_by_customer"];
const NANOS_PER_SECOND: i64 = 1_000_000_000;
const NOTE_CONTEXT: &str = "p2p.note";

/// Where notes are stored encrypted, for re-encryption after a key rotation.
pub const ENCRYPTED_COLUMNS: [EncryptedColumn; 3] = [
    EncryptedColumn {
        table: "p2p_quotes",
        key: "id",
        column: "note_enc",
        context: NOTE_CONTEXT,
    },
    EncryptedColumn {
        table: "p2p_payments",
        key: "id",
        column: "note_enc",
        context: NOTE_CONTEXT,
    },
    EncryptedColumn {
        table: "payment_request_groups",
        key: "id",
        column: "note_enc",
        context: NOTE_CONTEXT,
    },
];

/// Settings, from configuration.
#[derive(Debug, Clone)]
pub struct P2pPolicy {
    pub fees: FeeSchedule,
    /// How long a quote may be confirmed.
    pub quote_ttl_seconds: i64,
    /// Payments of at least this much (minor units) always need a step-up.
    pub step_up_threshold: i64,
    /// Payments up to this much are exempt from step-up (even to a new
    /// payee) while the day's exempt total and count stay within the caps
    /// below (PSD2 RTS Art. 16 style low-value exemption).
    pub exempt_payment_max: i64,
    pub exempt_daily_total_max: i64,
    pub exempt_daily_count_max: i64,
    /// Payee look-ups per customer and hour.
    pub lookups_per_hour_max: i64,
    /// Payee look-ups per client IP address and hour, whoever is signed in:
    /// one scraper with many accounts is still one address.
    pub lookups_per_ip_per_hour_max: i64,
    /// How long a payment request stays payable.
    pub request_ttl_seconds: i64,
    /// Daily limits reset at midnight at this offset from UTC (China: +8 h).
    pub limit_day_utc_offset_seconds: i64,
}

impl Default for P2pPolicy {
    fn default() -> P2pPolicy {
        P2pPolicy {
            fees: FeeSchedule::default(),
            quote_ttl_seconds: 600,
            step_up_threshold: 100_000,
            exempt_payment_max: 20_000,
            exempt_daily_total_max: 80_000,
            exempt_daily_count_max: 5,
            lookups_per_hour_max: 30,
            lookups_per_ip_per_hour_max: 100,
            request_ttl_seconds: 7 * 24 * 3600,
            limit_day_utc_offset_seconds: 8 * 3600,
        }
    }
}

impl P2pPolicy {
    /// Checks the settings' relations (each value's range is checked where
    /// it is parsed); the error names the setting.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.quote_ttl_seconds < 10 || self.quote_ttl_seconds > 3600 {
            return Err(("quote_ttl_seconds", "from 10 to 3600 seconds".into()));
        }
        if self.step_up_threshold < 1 {
            return Err(("step_up_threshold", "a positive amount".into()));
        }
        if self.exempt_payment_max < 0 || self.exempt_payment_max >= self.step_up_threshold {
            return Err((
                "exempt_payment_max",
                "from 0 to below step_up_threshold".into(),
            ));
        }
        if self.exempt_daily_total_max < self.exempt_payment_max {
            return Err((
                "exempt_daily_total_max",
                "at least exempt_payment_max".into(),
            ));
        }
        if !(0..=100).contains(&self.exempt_daily_count_max) {
            return Err(("exempt_daily_count_max", "from 0 to 100".into()));
        }
        if !(1..=10_000).contains(&self.lookups_per_hour_max) {
            return Err(("lookups_per_hour_max", "from 1 to 10000".into()));
        }
        if !(1..=100_000).contains(&self.lookups_per_ip_per_hour_max) {
            return Err(("lookups_per_ip_per_hour_max", "from 1 to 100000".into()));
        }
        if !(60..=90 * 24 * 3600).contains(&self.request_ttl_seconds) {
            return Err(("request_ttl_seconds", "from 60 s to 90 days".into()));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("no wallet can be paid at this phone number, e-mail or handle")]
    PayeeNotFound,
    /// A watch-list hit on the payee waits for a compliance officer.
    #[error("this payee cannot be paid while the bank reviews it; try again later")]
    PayeeUnderReview,
    #[error("you cannot pay or request money from yourself")]
    SelfPayment,
    #[error("too many payee look-ups; try again within the hour")]
    TooManyLookups,
    #[error("this Idempotency-Key was used with a different request")]
    KeyReused,
    #[error("this would exceed the {limit} limit of {max} (minor units); at most {available} more is possible now")]
    LimitExceeded {
        limit: &'static str,
        max: i64,
        available: i64,
    },
    #[error("the wallet has insufficient available funds for the amount and the fee")]
    InsufficientFunds,
    #[error("this payment needs a step-up verification for operation p2p, its amount and currency, and payee quote:<quote_id>")]
    StepUpRequired,
    #[error("the confirmation does not match the quote ({0}); confirm exactly what was quoted")]
    QuoteMismatch(&'static str),
    #[error("the quote has expired; ask for a new one")]
    QuoteExpired,
    #[error("the quote was already used for a payment")]
    QuoteUsed,
    #[error(
        "the fee changed since the quote (a free payment was used meanwhile); ask for a new quote"
    )]
    QuoteChanged,
    #[error("this payment request is {0} and can no longer be paid or declined")]
    RequestNotOpen(&'static str),
    #[error("you already have the handle @{0}; a handle cannot be changed")]
    HandleAlreadySet(String),
    #[error("this handle is taken")]
    HandleTaken,
    #[error("the ledger refused: {0}")]
    Rejected(Rejection),
    #[error("this payment was blocked and the wallet frozen for your protection; please contact the bank")]
    RiskBlocked(Box<Assessment>),
    #[error("this payment is not held for review")]
    NotHeld,
    #[error("risk: {0}")]
    Risk(#[from] RiskError),
    #[error("the ledger: {0}")]
    Engine(#[from] EngineError),
    #[error("identity: {0}")]
    Identity(IdentityError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("audit: {0}")]
    Audit(#[from] coffer_audit::AuditError),
    #[error("{0}")]
    Internal(String),
}

impl From<IdentityError> for P2pError {
    fn from(error: IdentityError) -> P2pError {
        match error {
            IdentityError::StepUpRequired => P2pError::StepUpRequired,
            IdentityError::Store(e) => P2pError::Store(e),
            other => P2pError::Identity(other),
        }
    }
}

impl From<GateError> for P2pError {
    fn from(error: GateError) -> P2pError {
        match error {
            GateError::Blocked(assessment) => P2pError::RiskBlocked(assessment),
            GateError::Risk(e) => P2pError::Risk(e),
            GateError::Identity(e) => e.into(),
            GateError::Store(e) => P2pError::Store(e),
        }
    }
}

impl From<LimitError> for P2pError {
    fn from(error: LimitError) -> P2pError {
        match error {
            LimitError::Exceeded(exceeded) => exceeded.into(),
            LimitError::Store(e) => P2pError::Store(e),
        }
    }
}

impl From<LimitExceeded> for P2pError {
    fn from(e: LimitExceeded) -> P2pError {
        P2pError::LimitExceeded {
            limit: e.limit,
            max: e.max,
            available: e.available,
        }
    }
}

impl P2pError {
    fn invalid(field: &'static str, message: impl Into<String>) -> P2pError {
        P2pError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            P2pError::Invalid { .. } => "invalid_field",
            P2pError::NotFound(_) => "not_found",
            P2pError::PayeeNotFound => "payee_not_found",
            P2pError::PayeeUnderReview => "payee_under_review",
            P2pError::SelfPayment => "self_payment",
            P2pError::TooManyLookups => "too_many_lookups",
            P2pError::KeyReused => "idempotency_key_reused",
            P2pError::LimitExceeded { .. } => "limit_exceeded",
            P2pError::InsufficientFunds => "insufficient_funds",
            P2pError::StepUpRequired => "step_up_required",
            P2pError::QuoteMismatch(_) => "quote_mismatch",
            P2pError::QuoteExpired => "quote_expired",
            P2pError::QuoteUsed => "quote_used",
            P2pError::QuoteChanged => "quote_changed",
            P2pError::RequestNotOpen(_) => "request_not_open",
            P2pError::HandleAlreadySet(_) => "handle_already_set",
            P2pError::HandleTaken => "handle_taken",
            P2pError::Rejected(rejection) => rejection.code(),
            P2pError::RiskBlocked(_) => "risk_blocked",
            P2pError::NotHeld => "not_held",
            P2pError::Risk(_) => "internal",
            P2pError::Engine(error) => error.code(),
            P2pError::Identity(error) => error.code(),
            P2pError::Store(_)
            | P2pError::Vault(_)
            | P2pError::Audit(_)
            | P2pError::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            P2pError::Invalid { field, .. } => Some(field),
            P2pError::PayeeNotFound | P2pError::SelfPayment | P2pError::PayeeUnderReview => {
                Some("payee")
            }
            P2pError::LimitExceeded { .. } | P2pError::InsufficientFunds => Some("amount"),
            P2pError::StepUpRequired => Some("step_up_challenge_id"),
            P2pError::QuoteMismatch(field) => Some(field),
            P2pError::QuoteExpired | P2pError::QuoteUsed | P2pError::QuoteChanged => {
                Some("quote_id")
            }
            P2pError::HandleAlreadySet(_) | P2pError::HandleTaken => Some("handle"),
            P2pError::KeyReused => Some("Idempotency-Key"),
            _ => None,
        }
    }
}

/// A payee as typed: `+8613800138000`, `name@example.com` or `@handle`
/// (a bare handle works too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayeeRef {
    Contact(Contact),
    Handle(String),
}

impl PayeeRef {
    pub fn parse(text: &str) -> Result<PayeeRef, P2pError> {
        let text = text.trim();
        let invalid = || {
            P2pError::invalid(
                "payee",
                "a phone number (+86…), an e-mail address or a wallet handle (@name)",
            )
        };
        if let Some(handle) = text.strip_prefix('@') {
            return parse_handle(handle)
                .map(PayeeRef::Handle)
                .map_err(|_| invalid());
        }
        if text.starts_with('+') || text.contains('@') {
            return Contact::parse(text)
                .map(PayeeRef::Contact)
                .ok_or_else(invalid);
        }
        parse_handle(text)
            .map(PayeeRef::Handle)
            .map_err(|_| invalid())
    }
}

/// A handle, normalized to lowercase: 3 to 30 of a–z, 0–9, `_` and `.`,
/// starting with a letter (so it can never look like a phone number).
pub fn parse_handle(text: &str) -> Result<String, P2pError> {
    let handle = text.trim().to_ascii_lowercase();
    let length = handle.chars().count();
    let valid = (HANDLE_LENGTH_MIN..=HANDLE_LENGTH_MAX).contains(&length)
        && handle.starts_with(|c: char| c.is_ascii_lowercase())
        && handle
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if valid {
        Ok(handle)
    } else {
        Err(P2pError::invalid(
            "handle",
            format!("{HANDLE_LENGTH_MIN} to {HANDLE_LENGTH_MAX} letters, digits, '_' or '.', starting with a letter"),
        ))
    }
}

/// A name as shown to someone about to pay its owner: enough to recognise a
/// friend, not enough to learn a stranger's name. A name of Latin words
/// keeps each word's first letter (John Doe → J*** D**); a name in one
/// word of CJK characters keeps the first and, from three characters, the
/// last (张小明 → 张*明, 欧阳小明 → 欧**明, 张伟 → 张*).
pub fn mask_name(name: &str) -> String {
    let words: Vec<&str> = name.split_whitespace().collect();
    if words.is_empty() {
        return "*".into();
    }
    if words.len() == 1 && !name.is_ascii() {
        let chars: Vec<char> = words[0].chars().collect();
        return match chars.len() {
            1 => "*".into(),
            2 => format!("{}*", chars[0]),
            n => format!("{}{}{}", chars[0], "*".repeat(n - 2), chars[n - 1]),
        };
    }
    words
        .iter()
        .map(|word| {
            let mut chars = word.chars();
            let first = chars.next().unwrap_or('*');
            format!("{first}{}", "*".repeat(chars.count()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Shares of `total` among `count`: equal, the remainder's minor units
/// going one each to the first shares (deterministic: the order given).
pub fn split_equal(total: i64, count: usize) -> Option<Vec<i64>> {
    let n = i64::try_from(count).ok().filter(|n| *n > 0)?;
    let (base, remainder) = (total / n, total % n);
    (base > 0).then(|| {
        (0..n)
            .map(|i| if i < remainder { base + 1 } else { base })
            .collect()
    })
}

/// A payee as the payer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayeeView {
    pub name_masked: String,
}

/// A quote as the payer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteView {
    pub id: String,
    pub payee_name_masked: String,
    pub amount: i64,
    pub fee: i64,
    pub waiver: Option<Waiver>,
    pub total: i64,
    pub currency: String,
    pub request_id: Option<String>,
    pub step_up_required: bool,
    pub expires_at: i64,
}

impl QuoteView {
    /// The step-up operation's payee for this quote's payment: the quote
    /// pins exactly one payee, amount and fee, so a challenge bound to it is
    /// bound to all of them.
    pub fn step_up_payee(&self) -> String {
        format!("quote:{}", self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    Pending,
    /// Held for a risk review: nothing moved yet; released (then pending
    /// and carried out) or rejected (failed) by an analyst or the customer.
    Held,
    Succeeded,
    Failed,
}

impl PaymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Pending => "pending",
            PaymentState::Held => "held",
            PaymentState::Succeeded => "succeeded",
            PaymentState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<PaymentState> {
        match text {
            "pending" => Some(PaymentState::Pending),
            "held" => Some(PaymentState::Held),
            "succeeded" => Some(PaymentState::Succeeded),
            "failed" => Some(PaymentState::Failed),
            _ => None,
        }
    }
}

/// A payment as one of its two sides sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentView {
    pub id: String,
    /// `sent` or `received`.
    pub direction: &'static str,
    pub counterparty_name_masked: String,
    pub amount: i64,
    /// Only the payer sees the fee (0 for the payee).
    pub fee: i64,
    pub currency: String,
    pub state: PaymentState,
    pub reason: Option<String>,
    pub note: Option<String>,
    pub request_id: Option<String>,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
}

/// What the payer confirms: the quote and, again, what it said.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub quote_id: String,
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
    pub step_up_challenge_id: Option<String>,
}

/// What a quote is for.
#[derive(Debug, Clone)]
pub enum QuoteFor {
    Payee {
        payee: String,
        amount: i64,
        currency: String,
        note: Option<String>,
    },
    Request {
        request_id: String,
    },
}

/// How a payment request's amounts are given.
#[derive(Debug, Clone)]
pub enum Shares {
    /// Each payer's amount as given (request money).
    Each(Vec<(String, i64)>),
    /// `total` split equally among the payers (and the organizer when
    /// `include_me`: the organizer's share is the last, so the remainder
    /// goes to the payers first in the order given).
    Equal {
        total: i64,
        payers: Vec<String>,
        include_me: bool,
    },
    /// Custom shares that, with the organizer's own share, sum to `total` exactly.
    Custom {
        total: i64,
        shares: Vec<(String, i64)>,
        my_share: i64,
    },
}

#[derive(Debug, Clone)]
pub struct NewRequest {
    pub currency: String,
    pub note: Option<String>,
    pub shares: Shares,
    /// Defaults to the policy's `request_ttl_seconds`.
    pub expires_in_seconds: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Open,
    /// A payment for it is being applied.
    Paying,
    Paid,
    Declined,
    Expired,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Open => "open",
            RequestState::Paying => "paying",
            RequestState::Paid => "paid",
            RequestState::Declined => "declined",
            RequestState::Expired => "expired",
        }
    }

    /// The state as seen at `now`: an open request past its expiry is
    /// expired (lazy expiry: nothing needs to sweep it, and every write that
    /// pays or declines checks the expiry in its own condition).
    fn seen(stored: &str, expires_at: i64, now: i64) -> RequestState {
        match stored {
            "open" if expires_at <= now => RequestState::Expired,
            "open" => RequestState::Open,
            "paying" => RequestState::Paying,
            "paid" => RequestState::Paid,
            _ => RequestState::Declined,
        }
    }
}

/// One payer's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    pub id: String,
    pub group_id: String,
    pub organizer_name_masked: String,
    pub payer_name_masked: String,
    pub amount: i64,
    pub currency: String,
    pub state: RequestState,
    pub payment_id: Option<String>,
    pub note: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
}

/// A request or split bill as its organizer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub id: String,
    /// `each`, `equal` or `custom`.
    pub mode: String,
    pub total: i64,
    pub currency: String,
    pub note: Option<String>,
    pub requests: Vec<RequestView>,
    pub paid_count: usize,
    pub paid_amount: i64,
    pub expires_at: i64,
    pub created_at: i64,
}

struct Quote {
    view: QuoteView,
    customer_id: String,
    payee_id: String,
    payment_id: Option<String>,
    note_enc: Option<Vec<u8>>,
}

struct Record {
    id: String,
    payer_id: String,
    payee_id: String,
    request_id: Option<String>,
    amount: i64,
    fee: i64,
    waiver: Option<Waiver>,
    state: PaymentState,
    step_up: String,
    limit_day: i64,
    limit_month: i64,
    request_hash: String,
}

const SELECT_RECORD: &str = "SELECT id, customer_id, payee_id, request_id, amount, fee, waiver, state, step_up, limit_day, limit_month, request_hash FROM p2p_payments";

fn record(row: &Row) -> Result<Record, P2pError> {
    Ok(Record {
        id: row.text(0)?,
        payer_id: row.text(1)?,
        payee_id: row.text(2)?,
        request_id: row.opt_text(3)?,
        amount: row.int(4)?,
        fee: row.int(5)?,
        waiver: row.opt_text(6)?.as_deref().and_then(Waiver::parse),
        state: PaymentState::parse(&row.text(7)?)
            .ok_or_else(|| P2pError::Store(StoreError::Corrupt("payment state".into())))?,
        step_up: row.text(8)?,
        limit_day: row.int(9)?,
        limit_month: row.int(10)?,
        request_hash: row.text(11)?,
    })
}

/// One leg of a payment's linked batch: (transfer id, debit, credit,
/// amount, transfer code).
type Leg = (String, Identifier, Identifier, Amount, &'static str);

/// The review hold of a leg whose transfer id is `base`.
fn review_hold_id(base: &str) -> String {
    format!("{base}:review")
}

/// The payee's activity row of a payment (the payer's has the payment's id:
/// rows are unique per kind and source).
pub fn received_source_id(payment_id: &str) -> String {
    format!("{payment_id}:received")
}

fn id(text: &str) -> Result<Identifier, P2pError> {
    Identifier::parse(text).map_err(|e| P2pError::Internal(format!("identifier {text}: {e}")))
}

fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

fn check_amount(amount: i64, currency: &str) -> Result<(), P2pError> {
    if currency != FUNDING_CURRENCY {
        return Err(P2pError::invalid(
            "currency",
            format!("P2P payments are in {FUNDING_CURRENCY}, the wallet's currency"),
        ));
    }
    if amount <= 0 {
        return Err(P2pError::invalid(
            "amount",
            "a positive amount in minor units",
        ));
    }
    Ok(())
}

fn parse_note(note: Option<&str>) -> Result<Option<String>, P2pError> {
    let Some(note) = note.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if note.chars().count() > NOTE_LENGTH_MAX || note.chars().any(char::is_control) {
        return Err(P2pError::invalid(
            "note",
            format!("at most {NOTE_LENGTH_MAX} characters, no control characters"),
        ));
    }
    Ok(Some(note.to_string()))
}

pub struct P2p {
    sql: Arc<SqlStore>,
    engine: Arc<Engine>,
    reader: Arc<dyn LedgerReader>,
    identity: Arc<Identity>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    policy: P2pPolicy,
    risk: Option<Arc<RiskGate>>,
}

impl P2p {
    pub fn new(
        sql: Arc<SqlStore>,
        engine: Arc<Engine>,
        reader: Arc<dyn LedgerReader>,
        identity: Arc<Identity>,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        policy: P2pPolicy,
    ) -> P2p {
        P2p {
            sql,
            engine,
            reader,
            identity,
            vault,
            clock,
            policy,
            risk: None,
        }
    }

    /// Every payment passes this risk gate before it is recorded.
    pub fn with_risk(mut self, gate: Arc<RiskGate>) -> P2p {
        self.risk = Some(gate);
        self
    }

    pub fn policy(&self) -> &P2pPolicy {
        &self.policy
    }

    fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    fn periods(&self, now: i64) -> limits::Periods {
        limits::periods(now, self.policy.limit_day_utc_offset_seconds)
    }

    /// Opens the bank's fee income account (idempotent); call once at start.
    pub fn open_accounts(&self) -> Result<(), P2pError> {
        self.open(AccountSpec {
            id: id(FEE_INCOME_ACCOUNT)?,
            currency: currency()?,
            kind: AccountKind::Income,
            constraint: BalanceConstraint::None,
            owner: id("bank")?,
        })
    }

    fn open(&self, spec: AccountSpec) -> Result<(), P2pError> {
        match self.engine.execute_blocking(Command::OpenAccount(spec))? {
            Outcome::Account(Ok(_)) => Ok(()),
            Outcome::Account(Err(rejection)) => Err(P2pError::Rejected(rejection)),
            Outcome::Transfers(_) => Err(P2pError::Internal("unexpected outcome".into())),
        }
    }

    /// The customer's wallet, opened if it is not yet (a customer who never
    /// topped up can still receive).
    fn open_wallet(&self, customer_id: &str) -> Result<Identifier, P2pError> {
        let wallet = id(&wallet_account_id(customer_id, FUNDING_CURRENCY))?;
        // Most wallets exist: a read spares the ledger writer a command.
        if self.reader.account(&wallet)?.is_some() {
            return Ok(wallet);
        }
        self.open(AccountSpec {
            id: wallet.clone(),
            currency: currency()?,
            kind: AccountKind::Liability,
            constraint: BalanceConstraint::NoOverdraft,
            owner: id(customer_id)?,
        })?;
        Ok(wallet)
    }

    fn encrypt_note(&self, note: Option<&str>) -> Result<Option<Vec<u8>>, P2pError> {
        note.map(|n| self.vault.encrypt_text(NOTE_CONTEXT, n))
            .transpose()
            .map_err(P2pError::from)
    }

    fn decrypt_note(&self, blob: Option<Vec<u8>>) -> Result<Option<String>, P2pError> {
        blob.map(|b| {
            self.vault
                .decrypt_text(NOTE_CONTEXT, &b)
                .map(|s| s.expose().clone())
        })
        .transpose()
        .map_err(P2pError::from)
    }

    fn masked_name(&self, customer_id: &str) -> Result<String, P2pError> {
        let customer = self.identity.customer(customer_id)?;
        Ok(mask_name(customer.display_name.expose()))
    }

    /// Screens the payee against the watch list (a no-op when the name and
    /// list were screened before); a pending or confirmed hit refuses the
    /// payment before anything is reserved.
    fn screen_payee(&self, payee_id: &str) -> Result<(), P2pError> {
        let Some(screening) = self.identity.screening() else {
            return Ok(());
        };
        let name = self.identity.screening_name(payee_id)?;
        let standing = screening
            .screen(
                Party::customer(payee_id),
                name.expose(),
                ScreeningSource::Payee,
            )
            .map_err(|e| match e {
                ScreeningError::Store(e) => P2pError::Store(e),
                other => P2pError::Internal(other.to_string()),
            })?;
        match standing {
            Standing::Clear => Ok(()),
            Standing::UnderReview | Standing::Confirmed => Err(P2pError::PayeeUnderReview),
        }
    }

    // ---- handles ------------------------------------------------------------------

    /// Sets the customer's wallet handle, once.
    pub fn set_handle(&self, customer_id: &str, text: &str, ip: &str) -> Result<String, P2pError> {
        let handle = parse_handle(text)?;
        if let Some(existing) = self.handle(customer_id)? {
            return if existing == handle {
                Ok(existing)
            } else {
                Err(P2pError::HandleAlreadySet(existing))
            };
        }
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), P2pError> {
            let inserted = db.execute(
                "INSERT INTO wallet_handles (handle, customer_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                sql_params![handle.as_str(), customer_id, now],
            )?;
            if inserted != 1 {
                return Err(P2pError::HandleTaken);
            }
            audit(db, now, customer_id, ip, "handle_set", &handle)
        })?;
        Ok(handle)
    }

    pub fn handle(&self, customer_id: &str) -> Result<Option<String>, P2pError> {
        Ok(self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT handle FROM wallet_handles WHERE customer_id = $1",
                    sql_params![customer_id],
                )
            })?
            .map(|r| r.text(0))
            .transpose()?)
    }

    // ---- look-ups -----------------------------------------------------------------

    /// Counts one look-up against the hourly allowance, in a transaction of
    /// its own: it stays counted whatever the look-up finds.
    fn spend_lookups(&self, customer_id: &str, count: i64) -> Result<(), P2pError> {
        let hour = self.periods(self.now()).hour;
        let max = self.policy.lookups_per_hour_max;
        self.sql
            .transaction(|db| {
                limits::reserve(
                    db,
                    customer_id,
                    "p2p.lookup",
                    hour,
                    count,
                    max,
                    "lookups_per_hour",
                )
            })
            .map_err(|e| match e {
                LimitError::Exceeded(_) => P2pError::TooManyLookups,
                LimitError::Store(e) => P2pError::Store(e),
            })
    }

    /// Spends `count` of the client address's hourly look-ups (the address
    /// is kept only as a keyed hash). The API calls it before every
    /// look-up, quote to a payee and split, beside the per-customer count.
    pub fn spend_ip_lookups(&self, ip: &str, count: i64) -> Result<(), P2pError> {
        if ip.is_empty() {
            return Ok(());
        }
        let key = format!("ip:{}", self.vault.keyed_hash("p2p_lookup_ip", ip));
        let hour = self.periods(self.now()).hour;
        let max = self.policy.lookups_per_ip_per_hour_max;
        self.sql
            .transaction(|db| {
                limits::reserve(
                    db,
                    &key,
                    "p2p.lookup.ip",
                    hour,
                    count,
                    max,
                    "lookups_per_ip_per_hour",
                )
            })
            .map_err(|e| match e {
                LimitError::Exceeded(_) => P2pError::TooManyLookups,
                LimitError::Store(e) => P2pError::Store(e),
            })
    }

    /// The payee's customer id, without spending a look-up.
    fn resolve(&self, payer_id: &str, payee: &PayeeRef) -> Result<String, P2pError> {
        let found = match payee {
            PayeeRef::Contact(contact) => self.identity.find_active_by_contact(contact)?,
            PayeeRef::Handle(handle) => self
                .sql
                .run(|db| {
                    db.query_opt(
                        "SELECT h.customer_id FROM wallet_handles h JOIN customers c ON c.id = h.customer_id \
                         WHERE h.handle = $1 AND c.status = 'active'",
                        sql_params![handle.as_str()],
                    )
                })?
                .map(|r| r.text(0))
                .transpose()?,
        };
        let payee_id = found.ok_or(P2pError::PayeeNotFound)?;
        if payee_id == payer_id {
            return Err(P2pError::SelfPayment);
        }
        Ok(payee_id)
    }

    /// Who would be paid: the masked name only (anti-scam check before paying).
    pub fn lookup(&self, payer_id: &str, payee: &str) -> Result<PayeeView, P2pError> {
        let payee = PayeeRef::parse(payee)?;
        self.spend_lookups(payer_id, 1)?;
        let payee_id = self.resolve(payer_id, &payee)?;
        Ok(PayeeView {
            name_masked: self.masked_name(&payee_id)?,
        })
    }

    // ---- quotes -------------------------------------------------------------------

    fn fee_usage(
        &self,
        db: &mut dyn Sql,
        payer_id: &str,
        month: i64,
    ) -> Result<FeeUsage, P2pError> {
        let op = FeeOperation::P2p;
        Ok(FeeUsage {
            free_used_this_month: limits::used(db, payer_id, &op.free_span(), month)?,
            first_used: limits::used(db, payer_id, &op.first_span(), 0)? > 0,
        })
    }

    /// Whether a payment to `payee_id` of `amount` needs a step-up: always
    /// at the threshold; below the exemption maximum only when the day's
    /// exempt total or count is used up; otherwise only for a new payee.
    /// `reserve` spends the exemption (inside the payment's transaction);
    /// without it this only predicts (for the quote).
    fn step_up_decision(
        &self,
        db: &mut dyn Sql,
        payer_id: &str,
        payee_id: &str,
        amount: i64,
        day: i64,
        reserve: bool,
    ) -> Result<StepUp, P2pError> {
        let policy = &self.policy;
        if amount >= policy.step_up_threshold {
            return Ok(StepUp::Required);
        }
        if amount <= policy.exempt_payment_max {
            let fits = if reserve {
                let total = limits::reserve(
                    db,
                    payer_id,
                    "p2p.exempt.total",
                    day,
                    amount,
                    policy.exempt_daily_total_max,
                    "exempt_total",
                );
                match total {
                    Ok(()) => match limits::reserve(
                        db,
                        payer_id,
                        "p2p.exempt.count",
                        day,
                        1,
                        policy.exempt_daily_count_max,
                        "exempt_count",
                    ) {
                        Ok(()) => true,
                        Err(LimitError::Exceeded(_)) => {
                            // The transaction goes on towards a step-up:
                            // this payment is not exempt, so give the total back.
                            limits::release(db, payer_id, "p2p.exempt.total", day, amount)?;
                            false
                        }
                        Err(LimitError::Store(e)) => return Err(e.into()),
                    },
                    Err(LimitError::Exceeded(_)) => false,
                    Err(LimitError::Store(e)) => return Err(e.into()),
                }
            } else {
                let total = limits::used(db, payer_id, "p2p.exempt.total", day)?;
                let count = limits::used(db, payer_id, "p2p.exempt.count", day)?;
                i128::from(total) + i128::from(amount) <= i128::from(policy.exempt_daily_total_max)
                    && count < policy.exempt_daily_count_max
            };
            if fits {
                return Ok(StepUp::Exempt);
            }
            return Ok(StepUp::Required);
        }
        let known = db
            .query_opt(
                "SELECT 1 FROM p2p_payments WHERE customer_id = $1 AND payee_id = $2 AND state = 'succeeded' LIMIT 1",
                sql_params![payer_id, payee_id],
            )?
            .is_some();
        Ok(if known {
            StepUp::NotNeeded
        } else {
            StepUp::Required
        })
    }

    /// Prices a payment: to a payee, or of a payment request addressed to
    /// the payer. Nothing moves; the quote is valid `quote_ttl_seconds`.
    pub fn quote(&self, payer_id: &str, what: &QuoteFor) -> Result<QuoteView, P2pError> {
        let now = self.now();
        let (payee_id, amount, currency, note, request_id) = match what {
            QuoteFor::Payee {
                payee,
                amount,
                currency,
                note,
            } => {
                check_amount(*amount, currency)?;
                let note = parse_note(note.as_deref())?;
                let payee = PayeeRef::parse(payee)?;
                self.spend_lookups(payer_id, 1)?;
                let payee_id = self.resolve(payer_id, &payee)?;
                (payee_id, *amount, currency.clone(), note, None)
            }
            QuoteFor::Request { request_id } => {
                let request = self.request_row(request_id)?;
                if request.payer_id != payer_id {
                    return Err(P2pError::NotFound("payment request"));
                }
                let state = RequestState::seen(&request.state, request.expires_at, now);
                if state != RequestState::Open {
                    return Err(P2pError::RequestNotOpen(state.as_str()));
                }
                (
                    request.organizer_id,
                    request.amount,
                    request.currency,
                    request.note,
                    Some(request_id.clone()),
                )
            }
        };
        self.screen_payee(&payee_id)?;
        let limits = self
            .identity
            .limits_for(payer_id, self.identity.customer(payer_id)?.tier)?;
        if amount > limits.per_payment {
            return Err(LimitExceeded {
                limit: "per_payment",
                max: limits.per_payment,
                available: limits.per_payment,
            }
            .into());
        }
        let payee_name = self.masked_name(&payee_id)?;
        let periods = self.periods(now);
        let quote_id = new_id("quo");
        let expires_at = now + self.policy.quote_ttl_seconds * NANOS_PER_SECOND;
        let note_enc = self.encrypt_note(note.as_deref())?;
        let (FeeQuote { fee, waiver }, step_up) =
            self.sql.transaction(|db| -> Result<_, P2pError> {
                // The schedule in force now (staff may have changed it).
                let rule = crate::fees::current(db, &self.policy.fees)?
                    .1
                    .rule(FeeOperation::P2p);
                let usage = self.fee_usage(db, payer_id, periods.month)?;
                let fee = rule.quote(amount, usage);
                let step_up =
                    self.step_up_decision(db, payer_id, &payee_id, amount, periods.day, false)?;
                db.execute(
                    "INSERT INTO p2p_quotes (id, customer_id, payee_id, payee_name_masked, amount, fee, waiver, currency, request_id, note_enc, expires_at, payment_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12)",
                    sql_params![
                        quote_id.as_str(),
                        payer_id,
                        payee_id.as_str(),
                        payee_name.as_str(),
                        amount,
                        fee.fee,
                        fee.waiver.map(Waiver::as_str),
                        currency.as_str(),
                        request_id.as_deref(),
                        note_enc.clone(),
                        expires_at,
                        now
                    ],
                )?;
                Ok((fee, step_up))
            })?;
        let total = amount
            .checked_add(fee)
            .ok_or_else(|| P2pError::invalid("amount", "the amount and fee are too large"))?;
        Ok(QuoteView {
            id: quote_id,
            payee_name_masked: payee_name,
            amount,
            fee,
            waiver,
            total,
            currency,
            request_id,
            step_up_required: step_up == StepUp::Required,
            expires_at,
        })
    }

    fn load_quote(&self, quote_id: &str) -> Result<Option<Quote>, P2pError> {
        let row = self.sql.run(|db| {
            db.query_opt(
                "SELECT id, customer_id, payee_id, payee_name_masked, amount, fee, waiver, currency, request_id, note_enc, expires_at, payment_id FROM p2p_quotes WHERE id = $1",
                sql_params![quote_id],
            )
        })?;
        let Some(row) = row else { return Ok(None) };
        let (amount, fee) = (row.int(4)?, row.int(5)?);
        Ok(Some(Quote {
            view: QuoteView {
                id: row.text(0)?,
                payee_name_masked: row.text(3)?,
                amount,
                fee,
                waiver: row.opt_text(6)?.as_deref().and_then(Waiver::parse),
                total: amount.saturating_add(fee),
                currency: row.text(7)?,
                request_id: row.opt_text(8)?,
                step_up_required: false,
                expires_at: row.int(10)?,
            },
            customer_id: row.text(1)?,
            payee_id: row.text(2)?,
            note_enc: row.opt_bytes(9)?,
            payment_id: row.opt_text(11)?,
        }))
    }

    // ---- payments -----------------------------------------------------------------

    fn existing(&self, payer_id: &str, client: &ClientKey) -> Result<Option<Record>, P2pError> {
        let row = self.sql.run(|db| {
            db.query_opt(
                &format!("{SELECT_RECORD} WHERE customer_id = $1 AND client_key = $2"),
                sql_params![payer_id, client.key.as_str()],
            )
        })?;
        let Some(row) = row else { return Ok(None) };
        let found = record(&row)?;
        if found.request_hash != client.request_hash {
            return Err(P2pError::KeyReused);
        }
        Ok(Some(found))
    }

    fn load(&self, payment_id: &str) -> Result<Option<Record>, P2pError> {
        self.sql
            .run(|db| {
                db.query_opt(
                    &format!("{SELECT_RECORD} WHERE id = $1"),
                    sql_params![payment_id],
                )
            })?
            .map(|row| record(&row))
            .transpose()
    }

    /// Confirms a quote: the payment happens now (or is refused and nothing
    /// moves). Repeating it with the same key answers the same payment.
    pub fn pay(
        &self,
        payer_id: &str,
        client: &ClientKey,
        confirmation: &Confirmation,
        ip: &str,
    ) -> Result<PaymentView, P2pError> {
        if let Some(existing) = self.existing(payer_id, client)? {
            let applied = self.apply(existing)?;
            return self.view_for(payer_id, &applied.id);
        }
        let quote = match self.load_quote(&confirmation.quote_id)? {
            Some(quote) if quote.customer_id == payer_id => quote,
            _ => return Err(P2pError::NotFound("quote")),
        };
        if confirmation.amount != quote.view.amount {
            return Err(P2pError::QuoteMismatch("amount"));
        }
        if confirmation.fee != quote.view.fee {
            return Err(P2pError::QuoteMismatch("fee"));
        }
        if confirmation.currency != quote.view.currency {
            return Err(P2pError::QuoteMismatch("currency"));
        }
        if quote.payment_id.is_some() {
            return Err(P2pError::QuoteUsed);
        }
        let now = self.now();
        if quote.view.expires_at <= now {
            return Err(P2pError::QuoteExpired);
        }
        let payer = self.identity.customer(payer_id)?;
        let payer_limits = self.identity.limits_for(payer_id, payer.tier)?;
        let payee_cap = self
            .identity
            .limits_for(
                &quote.payee_id,
                self.identity.customer(&quote.payee_id)?.tier,
            )?
            .balance_cap;
        let amount = quote.view.amount;
        if amount > payer_limits.per_payment {
            return Err(LimitExceeded {
                limit: "per_payment",
                max: payer_limits.per_payment,
                available: payer_limits.per_payment,
            }
            .into());
        }
        self.screen_payee(&quote.payee_id)?;
        self.open_wallet(payer_id)?;
        let payee_wallet = self.open_wallet(&quote.payee_id)?;
        let periods = self.periods(now);
        let payment_id = new_id("p2p");
        let payer_name = mask_name(payer.display_name.expose());
        let fee_op = FeeOperation::P2p;
        let written = self.sql.transaction(|db| -> Result<(), P2pError> {
            // A hit queued since the screening above (another payment, a
            // new list) is seen here, in the transaction that would pay.
            if let Some(screening) = self.identity.screening() {
                if screening.standing(db, PartyKind::Customer, &quote.payee_id)? != Standing::Clear {
                    return Err(P2pError::PayeeUnderReview);
                }
            }
            // The quote, once: a second confirmation finds it taken.
            let taken = db.execute(
                "UPDATE p2p_quotes SET payment_id = $2 WHERE id = $1 AND payment_id IS NULL AND expires_at > $3",
                sql_params![quote.view.id.as_str(), payment_id.as_str(), now],
            )?;
            if taken != 1 {
                return Err(P2pError::QuoteUsed);
            }
            if let Some(request_id) = &quote.view.request_id {
                let claimed = db.execute(
                    "UPDATE payment_requests SET state = 'paying', payment_id = $3, updated_at = $4 \
                     WHERE id = $1 AND payer_id = $2 AND state = 'open' AND expires_at > $4",
                    sql_params![request_id.as_str(), payer_id, payment_id.as_str(), now],
                )?;
                if claimed != 1 {
                    let row = db.query_one(
                        "SELECT state, expires_at FROM payment_requests WHERE id = $1",
                        sql_params![request_id.as_str()],
                    )?;
                    let seen = RequestState::seen(&row.text(0)?, row.int(1)?, now);
                    return Err(P2pError::RequestNotOpen(seen.as_str()));
                }
            }
            // The waiver the quote promised, reserved now: if another
            // payment used it meanwhile, the fee would differ from the quote.
            match quote.view.waiver {
                Some(Waiver::First) => {
                    limits::reserve(db, payer_id, &fee_op.first_span(), 0, 1, 1, "first_free")
                        .map_err(quote_changed)?;
                }
                Some(Waiver::MonthlyQuota) => {
                    let rule = crate::fees::current(db, &self.policy.fees)?.1.rule(fee_op);
                    limits::reserve(
                        db,
                        payer_id,
                        &fee_op.free_span(),
                        periods.month,
                        1,
                        rule.free_per_month,
                        "free_per_month",
                    )
                    .map_err(quote_changed)?;
                }
                None => {}
            }
            let step_up = self.step_up_decision(
                db,
                payer_id,
                &quote.payee_id,
                amount,
                periods.day,
                true,
            )?;
            // Risk decides before anything is reserved for good: a block
            // rolls all of this back; a step-up it asks for is the same
            // challenge the payment's own policy would ask.
            let gate = match &self.risk {
                Some(risk) => Some(risk.check(
                    db,
                    &Attempt {
                        customer_id: payer_id,
                        kind: Some(RiskKind::P2p),
                        subject_id: Some(payment_id.as_str()),
                        amount: Some(amount),
                        currency: Some(quote.view.currency.as_str()),
                        counterparty: Some(quote.payee_id.as_str()),
                        ip: Some(ip),
                        ..Attempt::default()
                    },
                )?),
                None => None,
            };
            let risk_step_up = matches!(gate, Some((Gate::StepUp, _)));
            if step_up == StepUp::Required || risk_step_up {
                let challenge = confirmation.step_up_challenge_id.as_deref().unwrap_or("");
                self.identity.consume_step_up(
                    db,
                    payer_id,
                    challenge,
                    &StepUpOperation {
                        kind: "p2p".into(),
                        amount,
                        currency: quote.view.currency.clone(),
                        payee: quote.view.step_up_payee(),
                    },
                )?;
            }
            limits::reserve(
                db,
                payer_id,
                "p2p.day",
                periods.day,
                amount,
                payer_limits.daily,
                "daily",
            )?;
            limits::reserve(
                db,
                payer_id,
                "p2p.month",
                periods.month,
                amount,
                payer_limits.monthly,
                "monthly",
            )?;
            // The payee's balance cap, under the payee's lock: with the
            // payments and top-ups on their way in.
            limits::lock_customer(db, &quote.payee_id)?;
            let pending = limits::incoming_pending(db, &quote.payee_id)?;
            let posted = self
                .reader
                .account(&payee_wallet)?
                .map_or(0, |account| account.posted());
            limits::balance_cap_check(payee_cap, posted, pending, amount).map_err(|mut e| {
                e.limit = "payee_balance_cap";
                P2pError::from(e)
            })?;
            let inserted = db.execute(
                "INSERT INTO p2p_payments (id, customer_id, payee_id, client_key, request_hash, quote_id, request_id, amount, fee, waiver, currency, note_enc, \
                 payer_name_masked, payee_name_masked, state, reason, step_up, limit_day, limit_month, created_at, updated_at, resolved_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'pending', NULL, $15, $16, $17, $18, $18, NULL) \
                 ON CONFLICT DO NOTHING",
                sql_params![
                    payment_id.as_str(),
                    payer_id,
                    quote.payee_id.as_str(),
                    client.key.as_str(),
                    client.request_hash.as_str(),
                    quote.view.id.as_str(),
                    quote.view.request_id.as_deref(),
                    amount,
                    quote.view.fee,
                    quote.view.waiver.map(Waiver::as_str),
                    quote.view.currency.as_str(),
                    quote.note_enc.clone(),
                    payer_name.as_str(),
                    quote.view.payee_name_masked.as_str(),
                    step_up.as_str(),
                    periods.day,
                    periods.month,
                    now
                ],
            )?;
            if inserted != 1 {
                // The same key raced in from another request; everything
                // above rolls back with this.
                return Err(P2pError::KeyReused);
            }
            // The payer's history shows it at once, pending.
            activity::record(
                db,
                &NewActivity {
                    customer_id: payer_id,
                    kind: ActivityKind::P2pTransfer,
                    source_id: &payment_id,
                    direction: Direction::Out,
                    status: ActivityStatus::Pending,
                    reason: None,
                    counterparty: &quote.view.payee_name_masked,
                    category: Category::Transfers,
                    reference: quote.view.request_id.as_deref().unwrap_or(&payment_id),
                    amount,
                    currency: &quote.view.currency,
                    fee: quote.view.fee,
                    fx: None,
                    at: now,
                },
            )?;
            if let (Some(risk), Some((Gate::Hold, assessment))) = (&self.risk, &gate) {
                db.execute(
                    "UPDATE p2p_payments SET state = 'held' WHERE id = $1 AND state = 'pending'",
                    sql_params![payment_id.as_str()],
                )?;
                risk.hold(db, assessment, SUBJECT_P2P, &payment_id)?;
            }
            audit(
                db,
                now,
                payer_id,
                ip,
                "p2p_payment_started",
                &format!("{payment_id} {amount} fee {}", quote.view.fee),
            )
        });
        match written {
            Ok(()) => {}
            Err(P2pError::KeyReused) => {
                let existing = self
                    .existing(payer_id, client)?
                    .ok_or(P2pError::QuoteUsed)?;
                let applied = self.apply(existing)?;
                return self.view_for(payer_id, &applied.id);
            }
            Err(P2pError::RiskBlocked(assessment)) => {
                if let Some(risk) = &self.risk {
                    risk.block(&assessment)?;
                }
                return Err(P2pError::RiskBlocked(assessment));
            }
            Err(error) => return Err(error),
        }
        let created = self
            .load(&payment_id)?
            .ok_or(P2pError::NotFound("payment"))?;
        let created = if created.state == PaymentState::Held {
            self.hold_for_review(&created)?;
            self.load(&payment_id)?
                .ok_or(P2pError::NotFound("payment"))?
        } else {
            created
        };
        let applied = self.apply(created)?;
        if applied.state == PaymentState::Failed {
            return Err(P2pError::InsufficientFunds);
        }
        self.view_for(payer_id, &applied.id)
    }

    /// Runs a pending payment's ledger batch (again: its ids make a repeat
    /// answer the original) and sets the record from the ledger's answer.
    fn apply(&self, current: Record) -> Result<Record, P2pError> {
        if current.state != PaymentState::Pending {
            return Ok(current);
        }
        let metadata = payment_metadata(&current)?;
        // A payment released from review captures its hold (a capture
        // repeated after a crash is a duplicate, answered as the original);
        // one never held posts directly. Both use the same transfer ids, so
        // the money can move only once.
        let transfers = match self.review_hold_state(&current)? {
            None => self
                .legs(&current)?
                .into_iter()
                .map(|(base, debit, credit, amount, label)| {
                    Ok(TransferCommand {
                        id: id(&base)?,
                        op: TransferOp::Post {
                            debit,
                            credit,
                            amount,
                            currency: currency()?,
                        },
                        code: code(label)?,
                        metadata: metadata.clone(),
                    })
                })
                .collect::<Result<Vec<_>, P2pError>>()?,
            Some(HoldState::Pending | HoldState::Captured) => self
                .legs(&current)?
                .into_iter()
                .map(|(base, _, _, _, label)| {
                    Ok(TransferCommand {
                        id: id(&base)?,
                        op: TransferOp::Capture {
                            hold: id(&review_hold_id(&base))?,
                            amount: None,
                        },
                        code: code(label)?,
                        metadata: metadata.clone(),
                    })
                })
                .collect::<Result<Vec<_>, P2pError>>()?,
            Some(HoldState::Released | HoldState::Expired) => {
                self.finish(&current, Err("review_hold_expired"))?;
                return self.load(&current.id)?.ok_or(P2pError::NotFound("payment"));
            }
        };
        let refusal = self.run_linked(transfers)?;
        match refusal {
            None => self.finish(&current, Ok(()))?,
            Some(Rejection::InsufficientFunds) => {
                self.finish(&current, Err("insufficient_funds"))?
            }
            Some(rejection) => {
                // Not a verdict on this payment (e.g. a closed account):
                // recorded as failed with the ledger's code.
                self.finish(&current, Err(rejection.code()))?
            }
        };
        self.load(&current.id)?.ok_or(P2pError::NotFound("payment"))
    }

    /// The payment's ledger legs: the amount, and the fee when there is one.
    fn legs(&self, current: &Record) -> Result<Vec<Leg>, P2pError> {
        let payer_wallet = id(&wallet_account_id(&current.payer_id, FUNDING_CURRENCY))?;
        let payee_wallet = id(&wallet_account_id(&current.payee_id, FUNDING_CURRENCY))?;
        let amount = |minor: i64| Amount::new(minor).map_err(|e| P2pError::Internal(e.to_string()));
        let mut legs = vec![(
            format!("p2p:{}", current.id),
            payer_wallet.clone(),
            payee_wallet,
            amount(current.amount)?,
            "p2p",
        )];
        if current.fee > 0 {
            legs.push((
                format!("p2p:{}:fee", current.id),
                payer_wallet,
                id(FEE_INCOME_ACCOUNT)?,
                amount(current.fee)?,
                "fee.p2p",
            ));
        }
        Ok(legs)
    }

    /// Runs a linked batch; `None` when every transfer succeeded, else the
    /// first refusal (linked: none of them happened).
    fn run_linked(&self, transfers: Vec<TransferCommand>) -> Result<Option<Rejection>, P2pError> {
        let results = match self.engine.execute_blocking(Command::Transfers {
            transfers,
            linked: true,
        })? {
            Outcome::Transfers(results) => results,
            Outcome::Account(_) => return Err(P2pError::Internal("unexpected outcome".into())),
        };
        let refusal = results.iter().find_map(|r| match r {
            Err(Rejection::LinkedTransferFailed) | Ok(_) => None,
            Err(rejection) => Some(*rejection),
        });
        if refusal.is_none() && !results.iter().all(Result::is_ok) {
            return Err(P2pError::Internal(
                "a linked batch failed without a reason".into(),
            ));
        }
        Ok(refusal)
    }

    /// The state of the payment's review hold (of its amount leg), if any.
    fn review_hold_state(&self, current: &Record) -> Result<Option<HoldState>, P2pError> {
        let hold = id(&review_hold_id(&format!("p2p:{}", current.id)))?;
        Ok(self.reader.hold(&hold)?.map(|h| h.state))
    }

    /// Reserves a held payment's amount and fee in the ledger (two-phase:
    /// a linked hold per leg, so `available` shows them while the case is
    /// open). Idempotent (derived ids); the resolver repeats it after a
    /// crash. When the money is not there the payment fails at once and
    /// its case is closed: there is nothing left to review.
    fn hold_for_review(&self, current: &Record) -> Result<(), P2pError> {
        if current.state != PaymentState::Held || self.review_hold_state(current)?.is_some() {
            return Ok(());
        }
        let metadata = payment_metadata(current)?;
        let transfers = self
            .legs(current)?
            .into_iter()
            .map(|(base, debit, credit, amount, label)| {
                Ok(TransferCommand {
                    id: id(&review_hold_id(&base))?,
                    op: TransferOp::Hold {
                        debit,
                        credit,
                        amount,
                        currency: currency()?,
                        timeout_ms: REVIEW_HOLD_TIMEOUT_SECONDS * 1000,
                    },
                    code: code(label)?,
                    metadata: metadata.clone(),
                })
            })
            .collect::<Result<Vec<_>, P2pError>>()?;
        let Some(rejection) = self.run_linked(transfers)? else {
            return Ok(());
        };
        let reason = match rejection {
            Rejection::InsufficientFunds => "insufficient_funds",
            other => other.code(),
        };
        let payer_name = self.masked_name(&current.payer_id)?;
        self.sql.transaction(|db| -> Result<(), P2pError> {
            if self.finish_in(
                db,
                current,
                Err(reason),
                PaymentState::Held,
                (&payer_name, ""),
            )? {
                if let Some(risk) = &self.risk {
                    risk.risk.close_subject_cases(
                        db,
                        SUBJECT_P2P,
                        &current.id,
                        "the held amount is not available",
                    )?;
                }
            }
            Ok(())
        })
    }

    /// After a held payment was rejected: its review hold released, so the
    /// money is available again (a hold never placed has nothing to do).
    pub fn carry_rejected(&self, payment_id: &str) -> Result<(), P2pError> {
        let current = self
            .load(payment_id)?
            .ok_or(P2pError::NotFound("payment"))?;
        if current.state != PaymentState::Failed
            || self.review_hold_state(&current)? != Some(HoldState::Pending)
        {
            return Ok(());
        }
        let metadata = payment_metadata(&current)?;
        let transfers = self
            .legs(&current)?
            .into_iter()
            .map(|(base, _, _, _, label)| {
                Ok(TransferCommand {
                    id: id(&format!("{}:void", review_hold_id(&base)))?,
                    op: TransferOp::Release {
                        hold: id(&review_hold_id(&base))?,
                    },
                    code: code(label)?,
                    metadata: metadata.clone(),
                })
            })
            .collect::<Result<Vec<_>, P2pError>>()?;
        if let Some(rejection) = self.run_linked(transfers)? {
            // Expired meanwhile (released by the ledger itself) is fine.
            if self.review_hold_state(&current)? == Some(HoldState::Pending) {
                return Err(P2pError::Internal(format!(
                    "review hold of {payment_id} not released: {}",
                    rejection.code()
                )));
            }
        }
        Ok(())
    }

    /// Writes the final state once; a failure gives back every reservation
    /// and reopens the request it was paying.
    fn finish(&self, current: &Record, outcome: Result<(), &str>) -> Result<(), P2pError> {
        let payer_name = self.masked_name(&current.payer_id)?;
        let payee_name = self.masked_name(&current.payee_id)?;
        self.sql.transaction(|db| {
            self.finish_in(
                db,
                current,
                outcome,
                PaymentState::Pending,
                (&payer_name, &payee_name),
            )
            .map(|_| ())
        })
    }

    /// `finish` inside the caller's transaction, from state `from`; false
    /// when the payment was no longer in it.
    fn finish_in(
        &self,
        db: &mut dyn Sql,
        current: &Record,
        outcome: Result<(), &str>,
        from: PaymentState,
        (payer_name, payee_name): (&str, &str),
    ) -> Result<bool, P2pError> {
        let now = self.now();
        let (state, reason) = match outcome {
            Ok(()) => (PaymentState::Succeeded, None),
            Err(reason) => (PaymentState::Failed, Some(reason)),
        };
        {
            let changed = db.execute(
                "UPDATE p2p_payments SET state = $2, reason = $3, resolved_at = $4, updated_at = $4 WHERE id = $1 AND state = $5",
                sql_params![current.id.as_str(), state.as_str(), reason, now, from.as_str()],
            )?;
            if changed != 1 {
                return Ok(false);
            }
            let payer = current.payer_id.as_str();
            activity::set_status(
                db,
                ActivityKind::P2pTransfer,
                &current.id,
                match state {
                    PaymentState::Succeeded => ActivityStatus::Succeeded,
                    PaymentState::Failed => ActivityStatus::Failed,
                    // Not a final state: finish_in writes only the two above.
                    PaymentState::Pending | PaymentState::Held => ActivityStatus::Pending,
                },
                reason,
                now,
            )?;
            match state {
                PaymentState::Succeeded => {
                    // The payee sees it once the money is theirs.
                    activity::record(
                        db,
                        &NewActivity {
                            customer_id: &current.payee_id,
                            kind: ActivityKind::P2pTransfer,
                            source_id: &received_source_id(&current.id),
                            direction: Direction::In,
                            status: ActivityStatus::Succeeded,
                            reason: None,
                            counterparty: payer_name,
                            category: Category::Transfers,
                            reference: current.request_id.as_deref().unwrap_or(&current.id),
                            amount: current.amount,
                            currency: FUNDING_CURRENCY,
                            fee: 0,
                            fx: None,
                            at: now,
                        },
                    )?;
                    if let Some(request_id) = &current.request_id {
                        db.execute(
                            "UPDATE payment_requests SET state = 'paid', updated_at = $3 WHERE id = $1 AND payment_id = $2",
                            sql_params![request_id.as_str(), current.id.as_str(), now],
                        )?;
                    }
                    self.notify_succeeded(db, current, payer_name, payee_name)?;
                }
                PaymentState::Failed | PaymentState::Pending | PaymentState::Held => {
                    limits::release(db, payer, "p2p.day", current.limit_day, current.amount)?;
                    limits::release(db, payer, "p2p.month", current.limit_month, current.amount)?;
                    if current.step_up == "exempt" {
                        limits::release(
                            db,
                            payer,
                            "p2p.exempt.total",
                            current.limit_day,
                            current.amount,
                        )?;
                        limits::release(db, payer, "p2p.exempt.count", current.limit_day, 1)?;
                    }
                    let op = FeeOperation::P2p;
                    match current.waiver {
                        Some(Waiver::First) => limits::release(db, payer, &op.first_span(), 0, 1)?,
                        Some(Waiver::MonthlyQuota) => {
                            limits::release(db, payer, &op.free_span(), current.limit_month, 1)?
                        }
                        None => {}
                    }
                    if let Some(request_id) = &current.request_id {
                        db.execute(
                            "UPDATE payment_requests SET state = 'open', payment_id = NULL, updated_at = $3 WHERE id = $1 AND payment_id = $2 AND state = 'paying'",
                            sql_params![request_id.as_str(), current.id.as_str(), now],
                        )?;
                    }
                }
            }
            let action = format!("p2p_payment_{}", state.as_str());
            let detail = format!("{} {}", current.id, reason.unwrap_or(""));
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: coffer_audit::ACTOR_SYSTEM,
                    action: &action,
                    subject: Some(payer),
                    ip: "",
                    outcome: AuditOutcome::Ok,
                    detail: detail.trim_end(),
                },
            )?;
        }
        Ok(true)
    }

    /// Releases a held payment inside the caller's transaction (a case
    /// released by an analyst or the customer): it becomes pending, and
    /// `carry_released` then runs it through the ledger.
    pub fn release_held_in(&self, db: &mut dyn Sql, payment_id: &str) -> Result<(), P2pError> {
        let changed = db.execute(
            "UPDATE p2p_payments SET state = 'pending', updated_at = $2 WHERE id = $1 AND state = 'held'",
            sql_params![payment_id, self.now()],
        )?;
        if changed != 1 {
            return Err(P2pError::NotHeld);
        }
        Ok(())
    }

    /// After `release_held_in` committed: the ledger batch, now (the
    /// resolver carries it on if this fails half-way).
    pub fn carry_released(&self, payment_id: &str) -> Result<PaymentState, P2pError> {
        let found = self
            .load(payment_id)?
            .ok_or(P2pError::NotFound("payment"))?;
        Ok(self.apply(found)?.state)
    }

    /// Rejects a held payment inside the caller's transaction: failed with
    /// `reason`, every reservation given back (no money had moved).
    pub fn reject_held_in(
        &self,
        db: &mut dyn Sql,
        payment_id: &str,
        reason: &str,
    ) -> Result<(), P2pError> {
        let row = db
            .query_opt(
                &format!("{SELECT_RECORD} WHERE id = $1"),
                sql_params![payment_id],
            )?
            .ok_or(P2pError::NotFound("payment"))?;
        let current = record(&row)?;
        let payer_name = mask_name(
            self.identity
                .customer(&current.payer_id)?
                .display_name
                .expose(),
        );
        // A rejected payment tells no payee anything: the name is unused.
        if !self.finish_in(
            db,
            &current,
            Err(reason),
            PaymentState::Held,
            (&payer_name, ""),
        )? {
            return Err(P2pError::NotHeld);
        }
        Ok(())
    }

    /// The alerts of a payment that succeeded, written in the transaction
    /// that records its final state (so never for a refused or rolled-back
    /// payment), each keyed by the payment id (so a resolver finishing it
    /// after a crash cannot alert twice).
    fn notify_succeeded(
        &self,
        db: &mut dyn Sql,
        current: &Record,
        payer_name: &str,
        payee_name: &str,
    ) -> Result<(), P2pError> {
        let amount = format_minor(current.amount);
        self.identity.notify_customer(
            db,
            &current.payee_id,
            &format!("p2p:{}:received", current.id),
            AlertCategory::PaymentReceived,
            "p2p_received",
            Bilingual::new(
                "Money received",
                format!("You received CNY {amount} from {payer_name} in your Coffer wallet."),
                "收款通知",
                format!("您的 Coffer 钱包收到 {payer_name} 转来的 CNY {amount}。"),
            ),
        )?;
        self.identity.notify_customer(
            db,
            &current.payer_id,
            &format!("p2p:{}:sent", current.id),
            AlertCategory::PaymentSent,
            "p2p_sent",
            Bilingual::new(
                "Payment sent",
                format!("You paid CNY {amount} to {payee_name} from your Coffer wallet."),
                "付款通知",
                format!("您已从 Coffer 钱包向 {payee_name} 支付 CNY {amount}。"),
            ),
        )?;
        crate::alerts::outflow(
            &self.identity,
            db,
            self.reader.as_ref(),
            &crate::alerts::Outflow {
                customer_id: &current.payer_id,
                source_id: &current.id,
                amount: current.amount.saturating_add(current.fee),
                currency: "CNY",
                to: payee_name,
            },
        )?;
        Ok(())
    }

    /// Carries forward payments a crash left pending between their record
    /// and their ledger batch. Only those untouched for
    /// `RESOLVE_GRACE_SECONDS`: a younger one belongs to a request still
    /// applying it, and two appliers could see the ledger refuse one run
    /// (insufficient funds) and accept the other after a top-up.
    pub fn resolve_pending(&self) -> Result<usize, P2pError> {
        let before = self.now() - RESOLVE_GRACE_SECONDS * NANOS_PER_SECOND;
        let rows = self.sql.run(|db| {
            db.query(
                &format!("{SELECT_RECORD} WHERE state = 'pending' AND updated_at <= $1 ORDER BY updated_at, id LIMIT 100"),
                sql_params![before],
            )
        })?;
        for row in &rows {
            let found = record(row)?;
            let payment = found.id.clone();
            if let Err(error) = self.apply(found) {
                tracing::warn!(payment = %payment, %error, "could not resolve a P2P payment yet");
            }
        }
        // Review holds a crash left unplaced (held) or unreleased (rejected).
        let since = self.now()
            - i64::try_from(REVIEW_HOLD_TIMEOUT_SECONDS).unwrap_or(i64::MAX) * NANOS_PER_SECOND;
        // Two range reads on (state, updated_at), not one OR the planner
        // could only answer by scanning.
        let mut review = self.sql.run(|db| {
            db.query(
                &format!("{SELECT_RECORD} WHERE state = 'held' AND updated_at <= $1 ORDER BY updated_at, id LIMIT 100"),
                sql_params![before],
            )
        })?;
        review.extend(self.sql.run(|db| {
            db.query(
                &format!("{SELECT_RECORD} WHERE state = 'failed' AND updated_at > $2 AND updated_at <= $1 \
                          AND reason IN ($3, $4) ORDER BY updated_at, id LIMIT 100"),
                sql_params![before, since, REVIEW_REJECTIONS[0], REVIEW_REJECTIONS[1]],
            )
        })?);
        for row in &review {
            let found = record(row)?;
            let payment = found.id.clone();
            let done = if found.state == PaymentState::Held {
                self.hold_for_review(&found)
            } else {
                self.carry_rejected(&payment)
            };
            if let Err(error) = done {
                tracing::warn!(payment = %payment, %error, "could not settle a P2P review hold yet");
            }
        }
        Ok(rows.len() + review.len())
    }

    /// A payment as `customer_id` (its payer or payee) sees it.
    pub fn view_for(&self, customer_id: &str, payment_id: &str) -> Result<PaymentView, P2pError> {
        let row = self.sql.run(|db| {
            db.query_opt(
                &format!("{SELECT_VIEW} WHERE id = $1 AND (customer_id = $2 OR payee_id = $2)"),
                sql_params![payment_id, customer_id],
            )
        })?;
        let row = row.ok_or(P2pError::NotFound("payment"))?;
        self.view(customer_id, &row)
    }

    /// The customer's payments, sent and received, newest first.
    pub fn payments(&self, customer_id: &str, limit: i64) -> Result<Vec<PaymentView>, P2pError> {
        let rows = self.sql.run(|db| {
            db.query(
                &format!("{SELECT_VIEW} WHERE customer_id = $1 OR (payee_id = $1 AND state = 'succeeded') ORDER BY created_at DESC, id DESC LIMIT $2"),
                sql_params![customer_id, limit.clamp(1, P2P_PAGE_MAX)],
            )
        })?;
        rows.iter().map(|row| self.view(customer_id, row)).collect()
    }

    fn view(&self, customer_id: &str, row: &Row) -> Result<PaymentView, P2pError> {
        let sent = row.text(1)? == customer_id;
        Ok(PaymentView {
            id: row.text(0)?,
            direction: if sent { "sent" } else { "received" },
            counterparty_name_masked: if sent { row.text(4)? } else { row.text(3)? },
            amount: row.int(5)?,
            fee: if sent { row.int(6)? } else { 0 },
            currency: row.text(7)?,
            state: PaymentState::parse(&row.text(8)?)
                .ok_or_else(|| P2pError::Store(StoreError::Corrupt("payment state".into())))?,
            reason: row.opt_text(9)?,
            note: self.decrypt_note(row.opt_bytes(10)?)?,
            request_id: row.opt_text(11)?,
            created_at: row.int(12)?,
            resolved_at: row.opt_int(13)?,
        })
    }

    // ---- payment requests and split bills -----------------------------------------

    /// Requests money from one or more customers, or splits a bill; each
    /// payer gets a request (and a message) they can pay or decline.
    pub fn request(
        &self,
        organizer_id: &str,
        client: &ClientKey,
        new: &NewRequest,
        ip: &str,
    ) -> Result<GroupView, P2pError> {
        if let Some(group_id) = self.existing_group(organizer_id, client)? {
            return self.group(organizer_id, &group_id);
        }
        if new.currency != FUNDING_CURRENCY {
            return Err(P2pError::invalid(
                "currency",
                format!("requests are in {FUNDING_CURRENCY}, the wallet's currency"),
            ));
        }
        let note = parse_note(new.note.as_deref())?;
        let (mode, total, shares) = plan_shares(&new.shares)?;
        let ttl = new
            .expires_in_seconds
            .unwrap_or(self.policy.request_ttl_seconds);
        if !(60..=self.policy.request_ttl_seconds).contains(&ttl) {
            return Err(P2pError::invalid(
                "expires_in_seconds",
                format!("from 60 to {} seconds", self.policy.request_ttl_seconds),
            ));
        }
        let payees = shares
            .iter()
            .map(|(payee, _)| PayeeRef::parse(payee))
            .collect::<Result<Vec<_>, _>>()?;
        let count = i64::try_from(payees.len()).unwrap_or(i64::MAX);
        self.spend_lookups(organizer_id, count)?;
        self.spend_ip_lookups(ip, count)?;
        let mut payers = Vec::with_capacity(payees.len());
        for payee in &payees {
            let payer_id = self.resolve(organizer_id, payee)?;
            if payers
                .iter()
                .any(|(p, _): &(String, String)| *p == payer_id)
            {
                return Err(P2pError::invalid("payers", "each payer may be named once"));
            }
            let name = self.masked_name(&payer_id)?;
            payers.push((payer_id, name));
        }
        let organizer_name = self.masked_name(organizer_id)?;
        let now = self.now();
        let expires_at = now + ttl * NANOS_PER_SECOND;
        let group_id = new_id("prg");
        let note_enc = self.encrypt_note(note.as_deref())?;
        let written = self.sql.transaction(|db| -> Result<(), P2pError> {
            let inserted = db.execute(
                "INSERT INTO payment_request_groups (id, organizer_id, client_key, request_hash, mode, total, currency, note_enc, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                sql_params![
                    group_id.as_str(),
                    organizer_id,
                    client.key.as_str(),
                    client.request_hash.as_str(),
                    mode,
                    total,
                    new.currency.as_str(),
                    note_enc.clone(),
                    expires_at,
                    now
                ],
            )?;
            if inserted != 1 {
                return Err(P2pError::KeyReused);
            }
            for (position, ((payer_id, payer_name), (_, amount))) in
                payers.iter().zip(&shares).enumerate()
            {
                let position = i64::try_from(position).unwrap_or(i64::MAX);
                db.execute(
                    "INSERT INTO payment_requests (id, group_id, position, organizer_id, payer_id, organizer_name_masked, payer_name_masked, amount, currency, state, payment_id, expires_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open', NULL, $10, $11, $11)",
                    sql_params![
                        new_id("prq").as_str(),
                        group_id.as_str(),
                        position,
                        organizer_id,
                        payer_id.as_str(),
                        organizer_name.as_str(),
                        payer_name.as_str(),
                        *amount,
                        new.currency.as_str(),
                        expires_at,
                        now
                    ],
                )?;
                let amount_text = format_minor(*amount);
                self.identity.notify_customer(
                    db,
                    payer_id,
                    &format!("prq:{group_id}:{position}"),
                    AlertCategory::PaymentRequest,
                    "payment_requested",
                    Bilingual::new(
                        "Payment request",
                        format!("{organizer_name} asks you to pay CNY {amount_text} in Coffer. Open the app to pay or decline."),
                        "付款请求",
                        format!("{organizer_name} 请您通过 Coffer 支付 CNY {amount_text}。请打开应用付款或拒绝。"),
                    ),
                )?;
            }
            audit(
                db,
                now,
                organizer_id,
                ip,
                "payment_requested",
                &format!("{group_id} {mode} {total} {}", payers.len()),
            )
        });
        match written {
            Ok(()) => self.group(organizer_id, &group_id),
            Err(P2pError::KeyReused) => {
                let group_id = self
                    .existing_group(organizer_id, client)?
                    .ok_or(P2pError::KeyReused)?;
                self.group(organizer_id, &group_id)
            }
            Err(error) => Err(error),
        }
    }

    fn existing_group(
        &self,
        organizer_id: &str,
        client: &ClientKey,
    ) -> Result<Option<String>, P2pError> {
        let row = self.sql.run(|db| {
            db.query_opt(
                "SELECT id, request_hash FROM payment_request_groups WHERE organizer_id = $1 AND client_key = $2",
                sql_params![organizer_id, client.key.as_str()],
            )
        })?;
        let Some(row) = row else { return Ok(None) };
        if row.text(1)? != client.request_hash {
            return Err(P2pError::KeyReused);
        }
        Ok(Some(row.text(0)?))
    }

    fn request_row(&self, request_id: &str) -> Result<RequestRow, P2pError> {
        let row = self.sql.run(|db| {
            db.query_opt(
                &format!("{SELECT_REQUEST} WHERE r.id = $1"),
                sql_params![request_id],
            )
        })?;
        let row = row.ok_or(P2pError::NotFound("payment request"))?;
        self.request_from(&row)
    }

    fn request_from(&self, row: &Row) -> Result<RequestRow, P2pError> {
        Ok(RequestRow {
            id: row.text(0)?,
            group_id: row.text(1)?,
            organizer_id: row.text(2)?,
            payer_id: row.text(3)?,
            organizer_name: row.text(4)?,
            payer_name: row.text(5)?,
            amount: row.int(6)?,
            currency: row.text(7)?,
            state: row.text(8)?,
            payment_id: row.opt_text(9)?,
            expires_at: row.int(10)?,
            created_at: row.int(11)?,
            note: self.decrypt_note(row.opt_bytes(12)?)?,
        })
    }

    fn request_view(&self, row: RequestRow, now: i64) -> RequestView {
        RequestView {
            state: RequestState::seen(&row.state, row.expires_at, now),
            id: row.id,
            group_id: row.group_id,
            organizer_name_masked: row.organizer_name,
            payer_name_masked: row.payer_name,
            amount: row.amount,
            currency: row.currency,
            payment_id: row.payment_id,
            note: row.note,
            expires_at: row.expires_at,
            created_at: row.created_at,
        }
    }

    /// A request or split as its organizer sees it: who has paid.
    pub fn group(&self, organizer_id: &str, group_id: &str) -> Result<GroupView, P2pError> {
        let now = self.now();
        let group = self.sql.run(|db| {
            db.query_opt(
                "SELECT id, mode, total, currency, note_enc, expires_at, created_at FROM payment_request_groups WHERE id = $1 AND organizer_id = $2",
                sql_params![group_id, organizer_id],
            )
        })?;
        let group = group.ok_or(P2pError::NotFound("payment request"))?;
        let rows = self.sql.run(|db| {
            db.query(
                &format!("{SELECT_REQUEST} WHERE r.group_id = $1 ORDER BY r.position"),
                sql_params![group_id],
            )
        })?;
        let requests = rows
            .iter()
            .map(|row| Ok(self.request_view(self.request_from(row)?, now)))
            .collect::<Result<Vec<_>, P2pError>>()?;
        let paid: Vec<&RequestView> = requests
            .iter()
            .filter(|r| r.state == RequestState::Paid)
            .collect();
        let paid_amount = paid
            .iter()
            .try_fold(0i64, |sum, r| sum.checked_add(r.amount));
        Ok(GroupView {
            id: group.text(0)?,
            mode: group.text(1)?,
            total: group.int(2)?,
            currency: group.text(3)?,
            note: self.decrypt_note(group.opt_bytes(4)?)?,
            paid_count: paid.len(),
            paid_amount: paid_amount
                .ok_or_else(|| P2pError::Internal("paid amounts overflow".into()))?,
            expires_at: group.int(5)?,
            created_at: group.int(6)?,
            requests,
        })
    }

    /// The organizer's requests and splits, newest first.
    pub fn groups(&self, organizer_id: &str, limit: i64) -> Result<Vec<GroupView>, P2pError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT id FROM payment_request_groups WHERE organizer_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                sql_params![organizer_id, limit.clamp(1, P2P_PAGE_MAX)],
            )
        })?;
        rows.iter()
            .map(|row| self.group(organizer_id, &row.text(0)?))
            .collect()
    }

    /// Requests addressed to the payer, newest first.
    pub fn incoming(&self, payer_id: &str, limit: i64) -> Result<Vec<RequestView>, P2pError> {
        let now = self.now();
        let rows = self.sql.run(|db| {
            db.query(
                &format!("{SELECT_REQUEST} WHERE r.payer_id = $1 ORDER BY r.created_at DESC, r.id DESC LIMIT $2"),
                sql_params![payer_id, limit.clamp(1, P2P_PAGE_MAX)],
            )
        })?;
        rows.iter()
            .map(|row| Ok(self.request_view(self.request_from(row)?, now)))
            .collect()
    }

    /// Declines a request addressed to the payer (open and not expired).
    pub fn decline(
        &self,
        payer_id: &str,
        request_id: &str,
        ip: &str,
    ) -> Result<RequestView, P2pError> {
        let found = self.request_row(request_id)?;
        if found.payer_id != payer_id {
            return Err(P2pError::NotFound("payment request"));
        }
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), P2pError> {
            let changed = db.execute(
                "UPDATE payment_requests SET state = 'declined', updated_at = $3 WHERE id = $1 AND payer_id = $2 AND state = 'open' AND expires_at > $3",
                sql_params![request_id, payer_id, now],
            )?;
            if changed != 1 {
                let seen = RequestState::seen(&found.state, found.expires_at, now);
                // Declining twice is a no-op, not an error.
                if seen == RequestState::Declined {
                    return Ok(());
                }
                return Err(P2pError::RequestNotOpen(seen.as_str()));
            }
            audit(db, now, payer_id, ip, "payment_request_declined", request_id)
        })?;
        let row = self.request_row(request_id)?;
        Ok(self.request_view(row, now))
    }
}

const SELECT_VIEW: &str = "SELECT id, customer_id, payee_id, payer_name_masked, payee_name_masked, amount, fee, currency, state, reason, note_enc, request_id, created_at, resolved_at FROM p2p_payments";

const SELECT_REQUEST: &str = "SELECT r.id, r.group_id, r.organizer_id, r.payer_id, r.organizer_name_masked, r.payer_name_masked, r.amount, r.currency, r.state, r.payment_id, r.expires_at, r.created_at, g.note_enc \
     FROM payment_requests r JOIN payment_request_groups g ON g.id = r.group_id";

struct RequestRow {
    id: String,
    group_id: String,
    organizer_id: String,
    payer_id: String,
    organizer_name: String,
    payer_name: String,
    amount: i64,
    currency: String,
    state: String,
    payment_id: Option<String>,
    expires_at: i64,
    created_at: i64,
    note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepUp {
    Required,
    Exempt,
    NotNeeded,
}

impl StepUp {
    fn as_str(self) -> &'static str {
        match self {
            StepUp::Required => "verified",
            StepUp::Exempt => "exempt",
            StepUp::NotNeeded => "known_payee",
        }
    }
}

/// (mode, total, [(payer, amount)]) of a request, validated: positive
/// shares, 1 to `REQUEST_PAYERS_MAX` payers, sums exact, no overflow.
/// A request's mode, total and each payer's share.
type Plan = (&'static str, i64, Vec<(String, i64)>);

fn plan_shares(shares: &Shares) -> Result<Plan, P2pError> {
    let count_ok = |n: usize| {
        if (1..=REQUEST_PAYERS_MAX).contains(&n) {
            Ok(())
        } else {
            Err(P2pError::invalid(
                "payers",
                format!("from 1 to {REQUEST_PAYERS_MAX} payers"),
            ))
        }
    };
    let positive = |amount: i64| {
        if amount > 0 {
            Ok(())
        } else {
            Err(P2pError::invalid(
                "amount",
                "each share must be a positive amount in minor units",
            ))
        }
    };
    let sum = |shares: &[(String, i64)]| {
        shares
            .iter()
            .try_fold(0i64, |sum, (_, amount)| sum.checked_add(*amount))
            .ok_or_else(|| P2pError::invalid("amount", "the shares are too large"))
    };
    match shares {
        Shares::Each(each) => {
            count_ok(each.len())?;
            for (_, amount) in each {
                positive(*amount)?;
            }
            Ok(("each", sum(each)?, each.clone()))
        }
        Shares::Equal {
            total,
            payers,
            include_me,
        } => {
            count_ok(payers.len())?;
            positive(*total)?;
            let parts =
                split_equal(*total, payers.len() + usize::from(*include_me)).ok_or_else(|| {
                    P2pError::invalid(
                        "total",
                        "too small to give everyone at least one minor unit",
                    )
                })?;
            Ok(("equal", *total, payers.iter().cloned().zip(parts).collect()))
        }
        Shares::Custom {
            total,
            shares,
            my_share,
        } => {
            count_ok(shares.len())?;
            positive(*total)?;
            for (_, amount) in shares {
                positive(*amount)?;
            }
            if *my_share < 0 {
                return Err(P2pError::invalid("my_share", "zero or a positive amount"));
            }
            let requested = sum(shares)?;
            if requested.checked_add(*my_share) != Some(*total) {
                return Err(P2pError::invalid(
                    "shares",
                    format!("the shares ({requested}) and my_share ({my_share}) must sum to the total ({total}) exactly"),
                ));
            }
            Ok(("custom", *total, shares.clone()))
        }
    }
}

/// A free quota the quote counted on is gone: the fee would differ.
fn quote_changed(error: LimitError) -> P2pError {
    match error {
        LimitError::Exceeded(_) => P2pError::QuoteChanged,
        LimitError::Store(e) => P2pError::Store(e),
    }
}

fn currency() -> Result<Currency, P2pError> {
    Currency::parse(FUNDING_CURRENCY).map_err(|e| P2pError::Internal(e.to_string()))
}

fn code(text: &str) -> Result<Code, P2pError> {
    Code::parse(text).map_err(|e| P2pError::Internal(format!("code {text}: {e}")))
}

/// Ledger metadata: ids only. The note and names stay out of the ledger,
/// whose rows are never re-encrypted or erased.
fn payment_metadata(current: &Record) -> Result<Metadata, P2pError> {
    let mut entries = std::collections::BTreeMap::new();
    entries.insert("p2p_payment_id".to_string(), current.id.clone());
    if let Some(request_id) = &current.request_id {
        entries.insert("payment_request_id".to_string(), request_id.clone());
    }
    Metadata::new(entries).map_err(|e| P2pError::Internal(e.to_string()))
}

/// 12345 → "123.45" (CNY has two decimals).
fn format_minor(amount: i64) -> String {
    format!("{}.{:02}", amount / 100, (amount % 100).abs())
}

fn audit(
    db: &mut dyn Sql,
    now: i64,
    customer_id: &str,
    ip: &str,
    action: &str,
    detail: &str,
) -> Result<(), P2pError> {
    let actor = coffer_audit::customer_actor(customer_id);
    coffer_audit::append(
        db,
        &Entry {
            at: now,
            actor: &actor,
            action,
            subject: Some(customer_id),
            ip,
            outcome: AuditOutcome::Ok,
            detail,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_masked() {
        assert_eq!(mask_name("张小明"), "张*明");
        assert_eq!(mask_name("欧阳小明"), "欧**明");
        assert_eq!(mask_name("张伟"), "张*");
        assert_eq!(mask_name("John Doe"), "J*** D**");
        assert_eq!(mask_name("  Li  "), "L*");
        assert_eq!(mask_name(""), "*");
    }

    #[test]
    fn equal_splits_give_the_remainder_to_the_first_shares() {
        assert_eq!(split_equal(10_000, 3), Some(vec![3_334, 3_333, 3_333]));
        assert_eq!(split_equal(10_001, 3), Some(vec![3_334, 3_334, 3_333]));
        assert_eq!(split_equal(9, 3), Some(vec![3, 3, 3]));
        assert_eq!(split_equal(2, 3), None);
        assert_eq!(split_equal(5, 0), None);
        for total in [1i64, 7, 100, 99_999, i64::MAX] {
            for n in 1..=7usize {
                if let Some(parts) = split_equal(total, n) {
                    assert_eq!(
                        parts.iter().map(|p| i128::from(*p)).sum::<i128>(),
                        i128::from(total)
                    );
                }
            }
        }
    }

    #[test]
    fn payees_parse_by_shape() {
        assert!(matches!(
            PayeeRef::parse("+86 138 0013 8000"),
            Ok(PayeeRef::Contact(_))
        ));
        assert!(matches!(
            PayeeRef::parse("Li@Example.com"),
            Ok(PayeeRef::Contact(_))
        ));
        assert_eq!(
            PayeeRef::parse("@Zhang.Wei").ok(),
            Some(PayeeRef::Handle("zhang.wei".into()))
        );
        assert_eq!(
            PayeeRef::parse("zhangwei").ok(),
            Some(PayeeRef::Handle("zhangwei".into()))
        );
        for bad in ["", "@", "@1abc", "ab", "13800138000", "a b", "@x-y"] {
            assert!(PayeeRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn custom_shares_must_sum_exactly() {
        let custom = |shares: Vec<i64>, my_share, total| Shares::Custom {
            total,
            shares: shares.into_iter().map(|a| ("@x".to_string(), a)).collect(),
            my_share,
        };
        assert!(plan_shares(&custom(vec![300, 700], 0, 1_000)).is_ok());
        assert!(plan_shares(&custom(vec![300, 600], 100, 1_000)).is_ok());
        assert!(plan_shares(&custom(vec![300, 600], 0, 1_000)).is_err());
        assert!(plan_shares(&custom(vec![i64::MAX, 1], 0, 1_000)).is_err());
        assert!(plan_shares(&custom(vec![0, 1_000], 0, 1_000)).is_err());
        assert!(plan_shares(&Shares::Each(vec![])).is_err());
        assert_eq!(format_minor(12_345), "123.45");
        assert_eq!(format_minor(5), "0.05");
    }
}
