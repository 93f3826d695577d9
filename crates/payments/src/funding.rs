//! Top-ups and withdrawals: money in from a card or bank account, money out
//! to a bank account, through ledger holds so that it is never in limbo.
//!
//! A top-up places a hold from the clearing asset account (card network or
//! core banking) to the customer's wallet: the money shows as incoming but
//! cannot be spent until the connector's callback says the charge went
//! through, when the hold is captured; a decline, a timeout or a failed
//! 3-D Secure challenge releases it. A withdrawal places a hold from the
//! wallet to the payout clearing account *before* the bank is asked to pay,
//! so the money is unavailable at once; success captures it, failure
//! releases it back.
//!
//! Each operation is a funding record (SQL) beside its ledger transfers, and
//! two databases transactions cannot be one. So the record is written first,
//! with a `stage` saying how far the work went (`recorded` → `held` →
//! `submitted` → `resolved`), and every step is idempotent: the ledger
//! transfers have ids derived from the funding id (`fund:<id>`,
//! `fund:<id>:capture`, `fund:<id>:release`), and the connector treats our
//! funding id as its merchant reference. A crash between steps leaves a
//! pending record that `resolve_pending` carries forward. The customer-visible
//! `state` follows the ledger, never the other way round: when a capture and
//! a release race (a callback against a timeout), the ledger decides which
//! one won, once, and the record is set from the hold's final state.
//!
//! Limits (per KYC tier) are decided in the SQL transaction that writes the
//! record. Withdrawals reserve their amount in per-day and per-month usage
//! counters with a conditional update (`used + amount <= limit`), which the
//! database serializes: two concurrent withdrawals cannot both squeeze under
//! a limit. A failed withdrawal gives its reservation back. Top-ups take a
//! per-customer lock row, then check posted balance plus every pending
//! top-up plus this one against the balance cap.

use std::sync::Arc;

use coffer_app::{Engine, EngineError};
use coffer_audit::{Entry, Outcome as AuditOutcome};
use coffer_core::{Amount, Clock, Code, Currency, Identifier, Secret};
use coffer_identity::{Identity, IdentityError, Operation as StepUpOperation};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, HoldState, Metadata, Outcome, Rejection,
    TransferCommand, TransferOp,
};
use coffer_store::sql::{Row, Sql, SqlStore};
use coffer_store::{sql_params, LedgerReader, StoreError};
use rand::RngCore;

use crate::bank_accounts::{BankAccountError, BankAccounts};
use crate::cards::{CardError, Cards};
use crate::connectors::{
    CardNetwork, ConnectorError, ConnectorKind, CoreBanking, Instruction, Status, Submission,
};
use crate::fees::{FeeOperation, FeeQuote, FeeSchedule, FeeUsage, Waiver};
use crate::limits::{self, LimitError, LimitExceeded};
// Withdrawal fees go where P2P fees go.
use crate::p2p::FEE_INCOME_ACCOUNT;
use coffer_notify::preferences::Category as AlertCategory;

/// The wallet currency every funding is in, for now.
pub const FUNDING_CURRENCY: &str = "CNY";
/// The bank's receivable from the card network for approved top-ups.
pub const CARD_CLEARING_ACCOUNT: &str = "bank:card-clearing:cny";
/// The bank's settlement account at its core system, for top-ups from bank accounts.
pub const CORE_SETTLEMENT_ACCOUNT: &str = "bank:core-settlement:cny";
/// What the bank owes the core system for payouts on their way out.
pub const PAYOUT_CLEARING_ACCOUNT: &str = "bank:payout-clearing:cny";
/// Funding records handed to the resolver per pass.
pub const RESOLVE_BATCH_MAX: i64 = 100;
/// At most this many records per page of a customer's list.
pub const FUNDINGS_PAGE_MAX: i64 = 100;
const NANOS_PER_MILLI: i64 = 1_000_000;

/// The ledger account of a customer's wallet in `currency`.
pub fn wallet_account_id(customer_id: &str, currency: &str) -> String {
    format!("wallet:{customer_id}:{}", currency.to_lowercase())
}

/// Settings, from configuration.
#[derive(Debug, Clone)]
pub struct FundingPolicy {
    /// Withdrawals of at least this much (minor units) need a step-up
    /// verification bound to the amount and the bank account.
    pub withdrawal_step_up_threshold: i64,
    /// A pending operation with no callback is asked about after this long.
    pub status_query_after_ms: i64,
    /// A pending operation older than this is a reconciliation break.
    pub stuck_after_ms: i64,
    /// Holds live this long at most; far longer than any connector takes.
    pub hold_timeout_ms: u64,
    /// Daily limits reset at midnight at this offset from UTC (China: +8 h).
    pub limit_day_utc_offset_seconds: i64,
    /// The fee schedule; its `withdrawal` rule prices withdrawals (the same
    /// schedule P2P uses, from the `[fees]` configuration).
    pub fees: FeeSchedule,
    /// Per KYC tier (index = tier): whether top-ups count against the
    /// tier's daily and monthly limits (counters `top_up.day`/`.month`),
    /// as money coming into an unverified wallet is capped per period, not
    /// only by the balance cap.
    pub top_ups_limited: [bool; 3],
}

impl Default for FundingPolicy {
    fn default() -> FundingPolicy {
        FundingPolicy {
            withdrawal_step_up_threshold: 200_000,
            status_query_after_ms: 60_000,
            stuck_after_ms: 60 * 60 * 1000,
            hold_timeout_ms: 7 * 24 * 3600 * 1000,
            limit_day_utc_offset_seconds: 8 * 3600,
            fees: FeeSchedule::default(),
            // Off unless the bank's configuration says so (PBoC class II/III
            // style accounts turn it on for the lowest tiers).
            top_ups_limited: [false, false, false],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FundingKind {
    TopUp,
    Withdrawal,
}

impl FundingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FundingKind::TopUp => "top_up",
            FundingKind::Withdrawal => "withdrawal",
        }
    }

    fn parse(text: &str) -> Option<FundingKind> {
        match text {
            "top_up" => Some(FundingKind::TopUp),
            "withdrawal" => Some(FundingKind::Withdrawal),
            _ => None,
        }
    }
}

/// What the customer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FundingState {
    Pending,
    Succeeded,
    Failed,
}

impl FundingState {
    pub fn as_str(self) -> &'static str {
        match self {
            FundingState::Pending => "pending",
            FundingState::Succeeded => "succeeded",
            FundingState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<FundingState> {
        match text {
            "pending" => Some(FundingState::Pending),
            "succeeded" => Some(FundingState::Succeeded),
            "failed" => Some(FundingState::Failed),
            _ => None,
        }
    }
}

/// Where a top-up comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Card(String),
    BankAccount(String),
}

/// A top-up or withdrawal as the customer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundingView {
    pub id: String,
    pub kind: FundingKind,
    /// `card` or `bank_account`.
    pub method: String,
    pub method_id: String,
    /// "visa ••1111", "CMB ••0001".
    pub method_label: String,
    pub amount: i64,
    /// Charged on top of the amount (withdrawals only; 0 for top-ups).
    pub fee: i64,
    /// Why the fee is 0 when the schedule has one (`first_free`, `monthly_free_quota`).
    pub fee_waiver: Option<Waiver>,
    pub currency: String,
    pub state: FundingState,
    /// Why it failed: a stable code (`card_declined`, `insufficient_funds`, `timeout`…).
    pub reason: Option<String>,
    /// `three_d_secure` while the card issuer waits for the cardholder.
    pub next_action: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub resolved_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum FundingError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("this Idempotency-Key was used with a different request")]
    KeyReused,
    #[error("this would exceed your {limit} limit of {max} (minor units); at most {available} more is possible now")]
    LimitExceeded {
        limit: &'static str,
        max: i64,
        available: i64,
    },
    #[error("the wallet has insufficient available funds")]
    InsufficientFunds,
    #[error("this withdrawal needs a step-up verification bound to its amount and bank account")]
    StepUpRequired,
    #[error("this top-up is not waiting for a 3-D Secure answer")]
    NotAwaitingAuthentication,
    #[error("the fee is now {fee} (minor units), not the {expected} quoted (a free withdrawal was used meanwhile); ask for a new quote")]
    FeeChanged { expected: i64, fee: i64 },
    #[error("the ledger refused: {0}")]
    Rejected(Rejection),
    #[error("this withdrawal was blocked and the wallet frozen for your protection; please contact the bank")]
    RiskBlocked(Box<coffer_risk::Assessment>),
    #[error("risk: {0}")]
    Risk(#[from] coffer_risk::RiskError),
    #[error("the ledger: {0}")]
    Engine(#[from] EngineError),
    #[error("identity: {0}")]
    Identity(IdentityError),
    #[error("connector: {0}")]
    Connector(#[from] ConnectorError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("audit: {0}")]
    Audit(#[from] coffer_audit::AuditError),
    #[error("{0}")]
    Internal(String),
}

impl From<IdentityError> for FundingError {
    fn from(error: IdentityError) -> FundingError {
        match error {
            IdentityError::StepUpRequired => FundingError::StepUpRequired,
            IdentityError::Store(e) => FundingError::Store(e),
            other => FundingError::Identity(other),
        }
    }
}

impl From<crate::risk_gate::GateError> for FundingError {
    fn from(error: crate::risk_gate::GateError) -> FundingError {
        match error {
            crate::risk_gate::GateError::Blocked(assessment) => {
                FundingError::RiskBlocked(assessment)
            }
            crate::risk_gate::GateError::Risk(e) => FundingError::Risk(e),
            crate::risk_gate::GateError::Identity(e) => e.into(),
            crate::risk_gate::GateError::Store(e) => FundingError::Store(e),
        }
    }
}

impl From<LimitError> for FundingError {
    fn from(error: LimitError) -> FundingError {
        match error {
            LimitError::Exceeded(LimitExceeded {
                limit,
                max,
                available,
            }) => FundingError::LimitExceeded {
                limit,
                max,
                available,
            },
            LimitError::Store(e) => FundingError::Store(e),
        }
    }
}

impl From<CardError> for FundingError {
    fn from(error: CardError) -> FundingError {
        match error {
            CardError::NotFound => FundingError::NotFound("card"),
            CardError::Store(e) => FundingError::Store(e),
            other => FundingError::Internal(other.to_string()),
        }
    }
}

impl From<BankAccountError> for FundingError {
    fn from(error: BankAccountError) -> FundingError {
        match error {
            BankAccountError::NotFound => FundingError::NotFound("bank account"),
            BankAccountError::Store(e) => FundingError::Store(e),
            other => FundingError::Internal(other.to_string()),
        }
    }
}

impl FundingError {
    fn invalid(field: &'static str, message: impl Into<String>) -> FundingError {
        FundingError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            FundingError::Invalid { .. } => "invalid_field",
            FundingError::NotFound(_) => "not_found",
            FundingError::KeyReused => "idempotency_key_reused",
            FundingError::LimitExceeded { .. } => "limit_exceeded",
            FundingError::InsufficientFunds => "insufficient_funds",
            FundingError::StepUpRequired => "step_up_required",
            FundingError::NotAwaitingAuthentication => "not_awaiting_authentication",
            FundingError::FeeChanged { .. } => "fee_changed",
            FundingError::Rejected(rejection) => rejection.code(),
            FundingError::RiskBlocked(_) => "risk_blocked",
            FundingError::Risk(_) => "internal",
            FundingError::Engine(error) => error.code(),
            FundingError::Identity(error) => error.code(),
            FundingError::Connector(_) => "unavailable",
            FundingError::Store(_) | FundingError::Audit(_) | FundingError::Internal(_) => {
                "internal"
            }
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            FundingError::Invalid { field, .. } => Some(field),
            FundingError::LimitExceeded { .. } | FundingError::InsufficientFunds => Some("amount"),
            FundingError::StepUpRequired => Some("step_up_challenge_id"),
            FundingError::FeeChanged { .. } => Some("fee"),
            FundingError::KeyReused => Some("Idempotency-Key"),
            _ => None,
        }
    }
}

/// The outcome a connector reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Succeeded,
    Failed { reason: String },
}

/// What became of a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// It resolved a pending operation.
    Applied,
    /// This event was received before.
    Duplicate,
    /// The operation was already resolved (by an earlier event or a status query).
    Late,
    /// No operation of ours matches it, or its amount or currency differ
    /// from ours: recorded, changes nothing, shows in reconciliation.
    Ignored,
}

impl CallbackOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackOutcome::Applied => "applied",
            CallbackOutcome::Duplicate => "duplicate",
            CallbackOutcome::Late => "late",
            CallbackOutcome::Ignored => "ignored",
        }
    }
}

/// A new top-up as the customer asks for it.
#[derive(Debug, Clone)]
pub struct TopUpRequest {
    pub source: Source,
    pub amount: i64,
    pub currency: String,
}

/// A new withdrawal as the customer asks for it.
#[derive(Debug, Clone)]
pub struct WithdrawalRequest {
    pub bank_account_id: String,
    pub amount: i64,
    pub currency: String,
    pub step_up_challenge_id: Option<String>,
    /// The fee the customer was shown (`withdrawal_quote`): when given, the
    /// withdrawal goes ahead only at exactly this fee.
    pub expected_fee: Option<i64>,
}

/// What a withdrawal of an amount would cost now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WithdrawalQuote {
    pub amount: i64,
    pub fee: i64,
    pub waiver: Option<Waiver>,
    /// Amount plus fee: what leaves the wallet.
    pub total: i64,
}

/// The request's idempotency key and fingerprint, from the API layer: the
/// record is unique per (customer, kind, key), so a retry whose stored
/// response was lost resumes the same operation instead of starting another.
#[derive(Debug, Clone)]
pub struct ClientKey {
    pub key: String,
    pub request_hash: String,
}

pub struct Funding {
    sql: Arc<SqlStore>,
    engine: Arc<Engine>,
    pub(crate) reader: Arc<dyn LedgerReader>,
    identity: Arc<Identity>,
    cards: Arc<Cards>,
    bank_accounts: Arc<BankAccounts>,
    card_network: Arc<dyn CardNetwork>,
    core_banking: Arc<dyn CoreBanking>,
    clock: Arc<dyn Clock>,
    policy: FundingPolicy,
    risk: Option<Arc<crate::risk_gate::RiskGate>>,
}

const SELECT_FUNDING: &str = "SELECT id, kind, method, method_id, method_label, amount, currency, state, reason, next_action, created_at, updated_at, resolved_at, \
     customer_id, stage, connector, limit_day, limit_month, fee, fee_waiver FROM fundings";

/// A record with what only this module needs besides the view.
struct Record {
    view: FundingView,
    customer_id: String,
    stage: String,
    connector: ConnectorKind,
    limit_day: Option<i64>,
    limit_month: Option<i64>,
}

fn record(row: &Row) -> Result<Record, FundingError> {
    let corrupt = |what: &str| FundingError::Store(StoreError::Corrupt(what.to_string()));
    Ok(Record {
        view: FundingView {
            id: row.text(0)?,
            kind: FundingKind::parse(&row.text(1)?).ok_or_else(|| corrupt("funding kind"))?,
            method: row.text(2)?,
            method_id: row.text(3)?,
            method_label: row.text(4)?,
            amount: row.int(5)?,
            fee: row.int(18)?,
            fee_waiver: match row.opt_text(19)? {
                Some(text) => Some(Waiver::parse(&text).ok_or_else(|| corrupt("fee waiver"))?),
                None => None,
            },
            currency: row.text(6)?,
            state: FundingState::parse(&row.text(7)?).ok_or_else(|| corrupt("funding state"))?,
            reason: row.opt_text(8)?,
            next_action: row.opt_text(9)?,
            created_at: row.int(10)?,
            updated_at: row.int(11)?,
            resolved_at: row.opt_int(12)?,
        },
        customer_id: row.text(13)?,
        stage: row.text(14)?,
        connector: ConnectorKind::parse(&row.text(15)?).ok_or_else(|| corrupt("connector"))?,
        limit_day: row.opt_int(16)?,
        limit_month: row.opt_int(17)?,
    })
}

fn id(text: &str) -> Result<Identifier, FundingError> {
    Identifier::parse(text).map_err(|e| FundingError::Internal(format!("identifier {text}: {e}")))
}

fn code(text: &str) -> Result<Code, FundingError> {
    Code::parse(text).map_err(|e| FundingError::Internal(format!("code {text}: {e}")))
}

fn currency() -> Result<Currency, FundingError> {
    Currency::parse(FUNDING_CURRENCY).map_err(|e| FundingError::Internal(e.to_string()))
}

fn hold_id(funding_id: &str) -> Result<Identifier, FundingError> {
    id(&format!("fund:{funding_id}"))
}

/// The hold of a withdrawal's fee, placed, captured and released in the same
/// linked batch as the amount's hold.
fn fee_hold_id(funding_id: &str) -> Result<Identifier, FundingError> {
    id(&format!("fund:{funding_id}:fee"))
}

/// The ledger transfer that captured a funding's hold.
pub fn capture_id(funding_id: &str) -> String {
    format!("fund:{funding_id}:capture")
}

impl Funding {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sql: Arc<SqlStore>,
        engine: Arc<Engine>,
        reader: Arc<dyn LedgerReader>,
        identity: Arc<Identity>,
        cards: Arc<Cards>,
        bank_accounts: Arc<BankAccounts>,
        card_network: Arc<dyn CardNetwork>,
        core_banking: Arc<dyn CoreBanking>,
        clock: Arc<dyn Clock>,
        policy: FundingPolicy,
    ) -> Funding {
        Funding {
            sql,
            engine,
            reader,
            identity,
            cards,
            bank_accounts,
            card_network,
            core_banking,
            clock,
            policy,
            risk: None,
        }
    }

    /// Every withdrawal passes this risk gate before it is recorded.
    pub fn with_risk(mut self, gate: Arc<crate::risk_gate::RiskGate>) -> Funding {
        self.risk = Some(gate);
        self
    }

    pub fn policy(&self) -> &FundingPolicy {
        &self.policy
    }

    fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    /// Opens the bank's clearing accounts (idempotent); call once at start.
    pub fn open_accounts(&self) -> Result<(), FundingError> {
        for (account, kind) in [
            (CARD_CLEARING_ACCOUNT, AccountKind::Asset),
            (CORE_SETTLEMENT_ACCOUNT, AccountKind::Asset),
            (PAYOUT_CLEARING_ACCOUNT, AccountKind::Liability),
            (FEE_INCOME_ACCOUNT, AccountKind::Income),
        ] {
            self.open(AccountSpec {
                id: id(account)?,
                currency: currency()?,
                kind,
                constraint: BalanceConstraint::None,
                owner: id("bank")?,
            })?;
        }
        Ok(())
    }

    fn open(&self, spec: AccountSpec) -> Result<(), FundingError> {
        match self.engine.execute_blocking(Command::OpenAccount(spec))? {
            Outcome::Account(Ok(_)) => Ok(()),
            Outcome::Account(Err(rejection)) => Err(FundingError::Rejected(rejection)),
            Outcome::Transfers(_) => Err(FundingError::Internal("unexpected outcome".into())),
        }
    }

    fn open_wallet(&self, customer_id: &str) -> Result<Identifier, FundingError> {
        let wallet = id(&wallet_account_id(customer_id, FUNDING_CURRENCY))?;
        self.open(AccountSpec {
            id: wallet.clone(),
            currency: currency()?,
            kind: AccountKind::Liability,
            constraint: BalanceConstraint::NoOverdraft,
            owner: id(customer_id)?,
        })?;
        Ok(wallet)
    }

    fn parse_amount(amount: i64, currency_text: &str) -> Result<Amount, FundingError> {
        if currency_text != FUNDING_CURRENCY {
            return Err(FundingError::invalid(
                "currency",
                format!("top-ups and withdrawals are in {FUNDING_CURRENCY}, the wallet's currency"),
            ));
        }
        Amount::new(amount)
            .map_err(|_| FundingError::invalid("amount", "a positive amount in minor units"))
    }

    fn existing(
        &self,
        customer_id: &str,
        kind: FundingKind,
        client: &ClientKey,
    ) -> Result<Option<Record>, FundingError> {
        let row = self.sql.run(|db| {
            db.query_opt(
                &format!(
                    "{SELECT_FUNDING} WHERE customer_id = $1 AND kind = $2 AND client_key = $3"
                ),
                sql_params![customer_id, kind.as_str(), client.key.as_str()],
            )
        })?;
        let Some(row) = row else { return Ok(None) };
        let hash = self.sql.run(|db| {
            db.query_one(
                "SELECT request_hash FROM fundings WHERE customer_id = $1 AND kind = $2 AND client_key = $3",
                sql_params![customer_id, kind.as_str(), client.key.as_str()],
            )
        })?;
        if hash.text(0)? != client.request_hash {
            return Err(FundingError::KeyReused);
        }
        Ok(Some(record(&row)?))
    }

    fn load(&self, funding_id: &str) -> Result<Option<Record>, FundingError> {
        self.sql
            .run(|db| {
                db.query_opt(
                    &format!("{SELECT_FUNDING} WHERE id = $1"),
                    sql_params![funding_id],
                )
            })?
            .map(|row| record(&row))
            .transpose()
    }

    /// A customer's top-up or withdrawal.
    pub fn get(&self, customer_id: &str, funding_id: &str) -> Result<FundingView, FundingError> {
        match self.load(funding_id)? {
            Some(found) if found.customer_id == customer_id => Ok(found.view),
            _ => Err(FundingError::NotFound("funding")),
        }
    }

    /// A customer's top-ups or withdrawals, newest first.
    pub fn list(
        &self,
        customer_id: &str,
        kind: FundingKind,
        limit: i64,
    ) -> Result<Vec<FundingView>, FundingError> {
        let rows = self.sql.run(|db| {
            db.query(
                &format!("{SELECT_FUNDING} WHERE customer_id = $1 AND kind = $2 ORDER BY created_at DESC, id DESC LIMIT $3"),
                sql_params![customer_id, kind.as_str(), limit.clamp(1, FUNDINGS_PAGE_MAX)],
            )
        })?;
        rows.iter().map(|r| Ok(record(r)?.view)).collect()
    }

    fn new_id() -> String {
        let mut bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut bytes);
        format!("fnd_{}", hex::encode(bytes))
    }

    fn limit_periods(&self, now: i64) -> (i64, i64) {
        let periods = limits::periods(now, self.policy.limit_day_utc_offset_seconds);
        (periods.day, periods.month)
    }

    /// Starts a top-up; returns it pending (or failed when refused at once).
    pub fn top_up(
        &self,
        customer_id: &str,
        client: &ClientKey,
        request: &TopUpRequest,
        ip: &str,
    ) -> Result<FundingView, FundingError> {
        let amount = Self::parse_amount(request.amount, &request.currency)?;
        if let Some(existing) = self.existing(customer_id, FundingKind::TopUp, client)? {
            return self.advance(existing).map(|r| r.view);
        }
        let (method, method_id, label, connector) = match &request.source {
            Source::Card(card_id) => {
                let card = self.cards.get(customer_id, card_id)?;
                (
                    "card",
                    card.id.clone(),
                    format!("{} ••{}", card.brand, card.last4),
                    ConnectorKind::CardNetwork,
                )
            }
            Source::BankAccount(account_id) => {
                let account = self.bank_accounts.get(customer_id, account_id)?;
                (
                    "bank_account",
                    account.id.clone(),
                    account.label(),
                    ConnectorKind::CoreBanking,
                )
            }
        };
        let tier = self.identity.customer(customer_id)?.tier;
        let limits = self.identity.limits_for(customer_id, tier)?;
        let cap = limits.balance_cap;
        let limited = usize::try_from(tier)
            .ok()
            .and_then(|t| self.policy.top_ups_limited.get(t).copied())
            .unwrap_or(false);
        let minor = amount.minor_units();
        let wallet = self.open_wallet(customer_id)?;
        let now = self.now();
        let (day, month) = self.limit_periods(now);
        let funding_id = Self::new_id();
        let inserted = self.sql.transaction(|db| -> Result<bool, FundingError> {
            // Serializes this customer's top-ups until commit (a row lock on
            // PostgreSQL; SQLite's writer lock does it already).
            limits::lock_customer(db, customer_id)?;
            // Pending top-ups and P2P payments on their way in count too.
            let reserved = limits::incoming_pending(db, customer_id)?;
            // Read after the pending sum: a capture posts in the ledger
            // before its record leaves `pending`, so in between it is
            // counted twice, never not at all.
            let posted = self
                .reader
                .account(&wallet)?
                .map_or(0, |account| account.posted());
            limits::balance_cap_check(cap, posted, reserved, amount.minor_units())
                .map_err(|e| FundingError::from(LimitError::Exceeded(e)))?;
            if limited {
                // In this transaction, by conditional update: two top-ups
                // at once cannot both squeeze under the limit.
                limits::reserve(
                    db,
                    customer_id,
                    "top_up.day",
                    day,
                    minor,
                    limits.daily,
                    "daily",
                )?;
                limits::reserve(
                    db,
                    customer_id,
                    "top_up.month",
                    month,
                    minor,
                    limits.monthly,
                    "monthly",
                )?;
            }
            let inserted = insert_record(
                db,
                &NewRecord {
                    id: &funding_id,
                    customer_id,
                    kind: FundingKind::TopUp,
                    client,
                    method,
                    method_id: &method_id,
                    label: &label,
                    connector,
                    amount: amount.minor_units(),
                    fee: NO_FEE,
                    limit_periods: limited.then_some((day, month)),
                    now,
                    check_at: now + self.policy.status_query_after_ms * NANOS_PER_MILLI,
                },
            )?;
            if !inserted {
                // Rolls back the limit reservation.
                return Err(FundingError::KeyReused);
            }
            audit(
                db,
                now,
                customer_id,
                ip,
                "top_up_started",
                &format!("{funding_id} {} {label}", amount.minor_units()),
            )?;
            Ok(true)
        });
        let inserted = match inserted {
            Ok(inserted) => inserted,
            Err(FundingError::KeyReused) => false,
            Err(error) => return Err(error),
        };
        if !inserted {
            // The same key raced in from another request: that one is ours.
            let existing = self
                .existing(customer_id, FundingKind::TopUp, client)?
                .ok_or(FundingError::NotFound("funding"))?;
            return self.advance(existing).map(|r| r.view);
        }
        let created = self
            .load(&funding_id)?
            .ok_or(FundingError::NotFound("funding"))?;
        self.advance(created).map(|r| r.view)
    }

    /// What the customer has used that bears on the withdrawal fee.
    fn fee_usage(db: &mut dyn Sql, customer_id: &str, month: i64) -> Result<FeeUsage, StoreError> {
        let op = FeeOperation::Withdrawal;
        Ok(FeeUsage {
            free_used_this_month: limits::used(db, customer_id, &op.free_span(), month)?,
            first_used: limits::used(db, customer_id, &op.first_span(), 0)? > 0,
        })
    }

    /// The fee a withdrawal of `amount` would carry now (waivers counted):
    /// what the customer is shown before confirming.
    pub fn withdrawal_quote(
        &self,
        customer_id: &str,
        amount: i64,
        currency_text: &str,
    ) -> Result<WithdrawalQuote, FundingError> {
        let amount = Self::parse_amount(amount, currency_text)?.minor_units();
        let (_, month) = self.limit_periods(self.now());
        // The schedule in force (staff change it at runtime), as the
        // withdrawal's own transaction will read it.
        let (rule, usage) = self.sql.run(|db| {
            let rule = crate::fees::current(db, &self.policy.fees)?
                .1
                .rule(FeeOperation::Withdrawal);
            Ok((rule, Self::fee_usage(db, customer_id, month)?))
        })?;
        let FeeQuote { fee, waiver } = rule.quote(amount, usage);
        Ok(WithdrawalQuote {
            amount,
            fee,
            waiver,
            total: amount.checked_add(fee).ok_or_else(|| {
                FundingError::invalid("amount", "the amount and fee are too large")
            })?,
        })
    }

    /// Decides the fee inside the withdrawal's transaction and reserves the
    /// waiver it uses, so two withdrawals cannot both take the last free one.
    fn reserve_fee(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        amount: i64,
        month: i64,
    ) -> Result<FeeQuote, FundingError> {
        let op = FeeOperation::Withdrawal;
        let rule = crate::fees::current(db, &self.policy.fees)?.1.rule(op);
        let quote = rule.quote(amount, Self::fee_usage(db, customer_id, month)?);
        let reserved = match quote.waiver {
            Some(Waiver::First) => {
                limits::reserve(db, customer_id, &op.first_span(), 0, 1, 1, "first_free")
            }
            Some(Waiver::MonthlyQuota) => limits::reserve(
                db,
                customer_id,
                &op.free_span(),
                month,
                1,
                rule.free_per_month,
                "free_per_month",
            ),
            None => Ok(()),
        };
        match reserved {
            Ok(()) => Ok(quote),
            // A concurrent withdrawal took the free one between the read
            // and the reservation: this one pays.
            Err(LimitError::Exceeded(_)) => Ok(FeeQuote {
                fee: rule.charge(amount),
                waiver: None,
            }),
            Err(LimitError::Store(e)) => Err(FundingError::Store(e)),
        }
    }

    /// Starts a withdrawal; returns it pending, or an error when a limit, the
    /// step-up or the balance refuses it (nothing then moves).
    pub fn withdraw(
        &self,
        customer_id: &str,
        client: &ClientKey,
        request: &WithdrawalRequest,
        ip: &str,
    ) -> Result<FundingView, FundingError> {
        let amount = Self::parse_amount(request.amount, &request.currency)?;
        if let Some(existing) = self.existing(customer_id, FundingKind::Withdrawal, client)? {
            return self.advance(existing).map(|r| r.view);
        }
        let account = self
            .bank_accounts
            .get(customer_id, &request.bank_account_id)?;
        let tier = self.identity.customer(customer_id)?.tier;
        let limits = self.identity.limits_for(customer_id, tier)?;
        let minor = amount.minor_units();
        if minor > limits.per_payment {
            return Err(FundingError::LimitExceeded {
                limit: "per_payment",
                max: limits.per_payment,
                available: limits.per_payment,
            });
        }
        self.open_wallet(customer_id)?;
        let now = self.now();
        let (day, month) = self.limit_periods(now);
        let funding_id = Self::new_id();
        let label = account.label();
        let inserted = self.sql.transaction(|db| -> Result<bool, FundingError> {
            // Risk first. A withdrawal has no held stage (its record drives
            // a connector), so a review is answered with the strongest
            // check available before money leaves: a step-up.
            let gate = match &self.risk {
                Some(risk) => Some(risk.check(
                    db,
                    &coffer_risk::Attempt {
                        customer_id,
                        kind: Some(coffer_risk::Kind::Withdrawal),
                        subject_id: Some(funding_id.as_str()),
                        amount: Some(minor),
                        currency: Some(FUNDING_CURRENCY),
                        counterparty: Some(account.id.as_str()),
                        ip: Some(ip),
                        ..coffer_risk::Attempt::default()
                    },
                )?),
                None => None,
            };
            let risk_step_up = gate.as_ref().is_some_and(|(g, _)| {
                matches!(
                    g,
                    crate::risk_gate::Gate::StepUp | crate::risk_gate::Gate::Hold
                )
            });
            if minor >= self.policy.withdrawal_step_up_threshold || risk_step_up {
                let challenge = request.step_up_challenge_id.as_deref().unwrap_or("");
                self.identity.consume_step_up(
                    db,
                    customer_id,
                    challenge,
                    &StepUpOperation {
                        kind: "withdrawal".into(),
                        amount: minor,
                        currency: FUNDING_CURRENCY.into(),
                        payee: format!("bank_account:{}", account.id),
                    },
                )?;
            }
            limits::reserve(
                db,
                customer_id,
                "withdrawal.day",
                day,
                minor,
                limits.daily,
                "daily",
            )?;
            limits::reserve(
                db,
                customer_id,
                "withdrawal.month",
                month,
                minor,
                limits.monthly,
                "monthly",
            )?;
            let fee = self.reserve_fee(db, customer_id, minor, month)?;
            if let Some(expected) = request.expected_fee {
                if expected != fee.fee {
                    // Rolls back every reservation above.
                    return Err(FundingError::FeeChanged {
                        expected,
                        fee: fee.fee,
                    });
                }
            }
            let inserted = insert_record(
                db,
                &NewRecord {
                    id: &funding_id,
                    customer_id,
                    kind: FundingKind::Withdrawal,
                    client,
                    method: "bank_account",
                    method_id: &account.id,
                    label: &label,
                    connector: ConnectorKind::CoreBanking,
                    amount: minor,
                    fee,
                    limit_periods: Some((day, month)),
                    now,
                    check_at: now + self.policy.status_query_after_ms * NANOS_PER_MILLI,
                },
            )?;
            if !inserted {
                // Rolls back the reservation and the step-up consumption.
                return Err(FundingError::KeyReused);
            }
            audit(
                db,
                now,
                customer_id,
                ip,
                "withdrawal_started",
                &format!("{funding_id} {minor} fee {} {label}", fee.fee),
            )?;
            Ok(true)
        });
        match inserted {
            Ok(_) => {}
            Err(FundingError::RiskBlocked(assessment)) => {
                if let Some(risk) = &self.risk {
                    risk.block(&assessment)?;
                }
                return Err(FundingError::RiskBlocked(assessment));
            }
            Err(FundingError::KeyReused) => {
                // The same key raced in from another request: answer with that one.
                let existing = self
                    .existing(customer_id, FundingKind::Withdrawal, client)?
                    .ok_or(FundingError::NotFound("funding"))?;
                return self.advance(existing).map(|r| r.view);
            }
            Err(error) => return Err(error),
        }
        let created = self
            .load(&funding_id)?
            .ok_or(FundingError::NotFound("funding"))?;
        let advanced = self.advance(created)?;
        if advanced.view.state == FundingState::Failed
            && advanced.view.reason.as_deref() == Some("insufficient_funds")
        {
            return Err(FundingError::InsufficientFunds);
        }
        Ok(advanced.view)
    }

    /// Pays a merchant's settlement out of its own settlement wallet
    /// (`wallet:<merchant id>:…`) to its settlement bank account: the same
    /// hold → core banking payout → callback path as a withdrawal, without
    /// a customer's tier limits or step-up (the bank itself initiates it).
    /// Idempotent per `client` (one payout per settlement).
    pub fn settlement_payout(
        &self,
        merchant_id: &str,
        client: &ClientKey,
        bank_account_id: &str,
        amount: i64,
    ) -> Result<FundingView, FundingError> {
        let amount = Self::parse_amount(amount, FUNDING_CURRENCY)?;
        if let Some(existing) = self.existing(merchant_id, FundingKind::Withdrawal, client)? {
            return self.advance(existing).map(|r| r.view);
        }
        let account = self.bank_accounts.get(merchant_id, bank_account_id)?;
        self.open_wallet(merchant_id)?;
        let now = self.now();
        let funding_id = Self::new_id();
        let label = account.label();
        self.sql.transaction(|db| -> Result<(), FundingError> {
            insert_record(
                db,
                &NewRecord {
                    id: &funding_id,
                    customer_id: merchant_id,
                    kind: FundingKind::Withdrawal,
                    client,
                    method: "bank_account",
                    method_id: &account.id,
                    label: &label,
                    connector: ConnectorKind::CoreBanking,
                    amount: amount.minor_units(),
                    fee: NO_FEE,
                    limit_periods: None,
                    now,
                    check_at: now + self.policy.status_query_after_ms * NANOS_PER_MILLI,
                },
            )?;
            Ok(())
        })?;
        let created = self
            .existing(merchant_id, FundingKind::Withdrawal, client)?
            .ok_or(FundingError::NotFound("funding"))?;
        self.advance(created).map(|r| r.view)
    }

    /// Passes the cardholder's 3-D Secure answer to the card network.
    pub fn authenticate(
        &self,
        customer_id: &str,
        funding_id: &str,
        answer: &Secret<String>,
    ) -> Result<FundingView, FundingError> {
        let found = match self.load(funding_id)? {
            Some(found) if found.customer_id == customer_id => found,
            _ => return Err(FundingError::NotFound("top-up")),
        };
        if found.view.state != FundingState::Pending
            || found.view.next_action.as_deref() != Some("three_d_secure")
        {
            return Err(FundingError::NotAwaitingAuthentication);
        }
        self.card_network.complete_challenge(funding_id, answer)?;
        let now = self.now();
        self.sql.run(|db| {
            db.execute(
                "UPDATE fundings SET next_action = NULL, updated_at = $2 WHERE id = $1 AND state = 'pending'",
                sql_params![funding_id, now],
            )
        })?;
        self.get(customer_id, funding_id)
    }

    /// Carries a pending record one or more steps forward, as far as it can
    /// go now: places its hold, submits it to the connector. Safe to repeat.
    fn advance(&self, mut current: Record) -> Result<Record, FundingError> {
        if current.view.state != FundingState::Pending {
            return Ok(current);
        }
        if current.stage == "recorded" {
            match self.place_hold(&current)? {
                Ok(()) => self.set_stage(&current.view.id, "recorded", "held", None)?,
                Err(rejection) => {
                    let reason = match rejection {
                        Rejection::InsufficientFunds => "insufficient_funds",
                        other => other.code(),
                    };
                    self.finish(&current, FundingState::Failed, Some(reason))?;
                }
            }
            current = self.reload(&current.view.id)?;
        }
        if current.stage == "held" && current.view.state == FundingState::Pending {
            match self.submit(&current) {
                Ok(submission) => {
                    let next_action = matches!(submission, Submission::ChallengeRequired { .. })
                        .then_some("three_d_secure");
                    let now = self.now();
                    self.sql.run(|db| {
                        db.execute(
                            "UPDATE fundings SET stage = 'submitted', connector_reference = $2, next_action = $3, updated_at = $4 \
                             WHERE id = $1 AND stage = 'held'",
                            sql_params![current.view.id.as_str(), submission.reference(), next_action, now],
                        )
                    })?;
                }
                Err(FundingError::Connector(error)) => {
                    // We cannot tell whether it arrived: stay pending; the
                    // resolver asks again (the merchant reference makes a
                    // second submission the same request).
                    tracing::warn!(funding = %current.view.id, %error, "connector unavailable; will retry");
                }
                Err(other) => return Err(other),
            }
            current = self.reload(&current.view.id)?;
        }
        Ok(current)
    }

    fn reload(&self, funding_id: &str) -> Result<Record, FundingError> {
        self.load(funding_id)?
            .ok_or(FundingError::NotFound("funding"))
    }

    fn set_stage(
        &self,
        funding_id: &str,
        from: &str,
        to: &str,
        reference: Option<&str>,
    ) -> Result<(), FundingError> {
        let now = self.now();
        self.sql.run(|db| {
            db.execute(
                "UPDATE fundings SET stage = $3, connector_reference = COALESCE($4, connector_reference), updated_at = $5 WHERE id = $1 AND stage = $2",
                sql_params![funding_id, from, to, reference, now],
            )
        })?;
        Ok(())
    }

    /// Places the funding's hold; the inner error is the ledger's refusal.
    fn place_hold(&self, current: &Record) -> Result<Result<(), Rejection>, FundingError> {
        let wallet = id(&wallet_account_id(&current.customer_id, FUNDING_CURRENCY))?;
        let (debit, credit, transfer_code) = match (current.view.kind, current.connector) {
            (FundingKind::TopUp, ConnectorKind::CardNetwork) => {
                (id(CARD_CLEARING_ACCOUNT)?, wallet, "topup.card")
            }
            (FundingKind::TopUp, ConnectorKind::CoreBanking) => {
                (id(CORE_SETTLEMENT_ACCOUNT)?, wallet, "topup.bank_account")
            }
            (FundingKind::Withdrawal, _) => (wallet, id(PAYOUT_CLEARING_ACCOUNT)?, "withdrawal"),
        };
        let amount =
            Amount::new(current.view.amount).map_err(|e| FundingError::Internal(e.to_string()))?;
        let mut transfers = vec![TransferCommand {
            id: hold_id(&current.view.id)?,
            op: TransferOp::Hold {
                debit: debit.clone(),
                credit,
                amount,
                currency: currency()?,
                timeout_ms: self.policy.hold_timeout_ms,
            },
            code: code(transfer_code)?,
            metadata: funding_metadata(&current.view)?,
        }];
        if current.view.fee > 0 {
            // Both holds or neither: the amount cannot leave without its fee.
            transfers.push(TransferCommand {
                id: fee_hold_id(&current.view.id)?,
                op: TransferOp::Hold {
                    debit,
                    credit: id(FEE_INCOME_ACCOUNT)?,
                    amount: Amount::new(current.view.fee)
                        .map_err(|e| FundingError::Internal(e.to_string()))?,
                    currency: currency()?,
                    timeout_ms: self.policy.hold_timeout_ms,
                },
                code: code("fee.withdrawal")?,
                metadata: funding_metadata(&current.view)?,
            });
        }
        let linked = transfers.len() > 1;
        match self
            .engine
            .execute_blocking(Command::Transfers { transfers, linked })?
        {
            // The first refusal is the cause; a linked partner says only
            // `linked_transfer_failed`.
            Outcome::Transfers(results) => {
                if results.is_empty() {
                    return Err(FundingError::Internal("no result".into()));
                }
                let errors: Vec<Rejection> = results.into_iter().filter_map(Result::err).collect();
                Ok(
                    match errors
                        .iter()
                        .find(|r| **r != Rejection::LinkedTransferFailed)
                        .or(errors.first())
                    {
                        Some(rejection) => Err(*rejection),
                        None => Ok(()),
                    },
                )
            }
            Outcome::Account(_) => Err(FundingError::Internal("unexpected outcome".into())),
        }
    }

    /// Captures or releases a withdrawal's fee hold the way its amount's hold
    /// went; a no-op when it went that way already (the linked batch moved both).
    fn follow_fee_hold(&self, current: &Record, captured: bool) -> Result<(), FundingError> {
        if current.view.fee == 0 {
            return Ok(());
        }
        let hold = fee_hold_id(&current.view.id)?;
        let command = TransferCommand {
            id: id(&format!(
                "fund:{}:fee:{}",
                current.view.id,
                if captured { "capture" } else { "release" }
            ))?,
            op: if captured {
                TransferOp::Capture { hold, amount: None }
            } else {
                TransferOp::Release { hold }
            },
            code: code(if captured {
                "fee.withdrawal"
            } else {
                "funding.release"
            })?,
            metadata: funding_metadata(&current.view)?,
        };
        match self.engine.execute_blocking(Command::Transfers {
            transfers: vec![command],
            linked: false,
        })? {
            Outcome::Transfers(results) => match results.into_iter().next() {
                Some(Ok(_))
                | Some(Err(Rejection::HoldNotPending | Rejection::HoldExpired))
                // Never placed: the amount's hold was refused with it.
                | Some(Err(Rejection::HoldNotFound)) => Ok(()),
                Some(Err(rejection)) => Err(FundingError::Rejected(rejection)),
                None => Err(FundingError::Internal("no result".into())),
            },
            Outcome::Account(_) => Err(FundingError::Internal("unexpected outcome".into())),
        }
    }

    fn submit(&self, current: &Record) -> Result<Submission, FundingError> {
        let amount =
            Amount::new(current.view.amount).map_err(|e| FundingError::Internal(e.to_string()))?;
        let instrument = match current.view.method.as_str() {
            "card" => self
                .cards
                .number(&current.customer_id, &current.view.method_id)?,
            _ => self
                .bank_accounts
                .number(&current.customer_id, &current.view.method_id)?,
        };
        let instruction = Instruction {
            merchant_reference: &current.view.id,
            instrument: &instrument,
            amount,
            currency: currency()?,
        };
        Ok(match (current.view.kind, current.connector) {
            (FundingKind::TopUp, ConnectorKind::CardNetwork) => {
                self.card_network.authorize(&instruction)?
            }
            (FundingKind::TopUp, ConnectorKind::CoreBanking) => {
                self.core_banking.collect(&instruction)?
            }
            (FundingKind::Withdrawal, _) => self.core_banking.pay_out(&instruction)?,
        })
    }

    /// Resolves a pending funding with the connector's verdict: captures or
    /// releases its hold, then sets the record from what the ledger did.
    /// Returns whether this call resolved it (false: it was resolved before).
    pub fn settle(&self, funding_id: &str, verdict: &Verdict) -> Result<bool, FundingError> {
        let current = self.reload(funding_id)?;
        if current.view.state != FundingState::Pending {
            return Ok(false);
        }
        if current.stage == "recorded" {
            // Never held, so never submitted: nothing at the connector to follow.
            return self.finish(&current, FundingState::Failed, Some("not_submitted"));
        }
        let hold = hold_id(funding_id)?;
        let (transfer_id, op) = match verdict {
            Verdict::Succeeded => (
                capture_id(funding_id),
                TransferOp::Capture {
                    hold: hold.clone(),
                    amount: None,
                },
            ),
            Verdict::Failed { .. } => (
                format!("fund:{funding_id}:release"),
                TransferOp::Release { hold: hold.clone() },
            ),
        };
        let mut transfers = vec![TransferCommand {
            id: id(&transfer_id)?,
            op,
            code: code(match verdict {
                Verdict::Succeeded => "funding.capture",
                Verdict::Failed { .. } => "funding.release",
            })?,
            metadata: funding_metadata(&current.view)?,
        }];
        if current.view.fee > 0 {
            // The fee is captured or released with the amount, in one batch.
            let fee_hold = fee_hold_id(funding_id)?;
            let succeeded = matches!(verdict, Verdict::Succeeded);
            transfers.push(TransferCommand {
                id: id(&format!(
                    "fund:{funding_id}:fee:{}",
                    if succeeded { "capture" } else { "release" }
                ))?,
                op: if succeeded {
                    TransferOp::Capture {
                        hold: fee_hold,
                        amount: None,
                    }
                } else {
                    TransferOp::Release { hold: fee_hold }
                },
                code: code(if succeeded {
                    "fee.withdrawal"
                } else {
                    "funding.release"
                })?,
                metadata: funding_metadata(&current.view)?,
            });
        }
        let linked = transfers.len() > 1;
        let result = match self
            .engine
            .execute_blocking(Command::Transfers { transfers, linked })?
        {
            Outcome::Transfers(results) => results
                .into_iter()
                .next()
                .ok_or_else(|| FundingError::Internal("no result".into()))?,
            Outcome::Account(_) => return Err(FundingError::Internal("unexpected outcome".into())),
        };
        let (state, reason) = match (result, verdict) {
            (Ok(_), Verdict::Succeeded) => (FundingState::Succeeded, None),
            (Ok(_), Verdict::Failed { reason }) => (FundingState::Failed, Some(reason.clone())),
            // Someone resolved the hold first (a racing callback or status
            // query, or its expiry): the ledger's answer is the truth.
            (Err(Rejection::HoldNotPending | Rejection::HoldExpired), _) => {
                match self.reader.hold(&hold)?.map(|h| h.state) {
                    Some(HoldState::Captured) => (FundingState::Succeeded, None),
                    Some(HoldState::Released) => (FundingState::Failed, Some("released".into())),
                    Some(HoldState::Expired) => (FundingState::Failed, Some("expired".into())),
                    Some(HoldState::Pending) | None => {
                        return Err(FundingError::Internal(format!(
                            "hold {hold} neither pending nor resolved"
                        )))
                    }
                }
            }
            (Err(rejection), _) => return Err(FundingError::Rejected(rejection)),
        };
        // When someone else resolved the amount's hold, they moved the fee
        // with it; this only makes sure (an expiry moves both too).
        self.follow_fee_hold(&current, state == FundingState::Succeeded)?;
        self.finish(&current, state, reason.as_deref())
    }

    /// Writes a final state once (the first writer wins; every writer writes
    /// the ledger's truth); a failed withdrawal gives its limit usage back.
    fn finish(
        &self,
        current: &Record,
        state: FundingState,
        reason: Option<&str>,
    ) -> Result<bool, FundingError> {
        let now = self.now();
        let view = &current.view;
        self.sql.transaction(|db| -> Result<bool, FundingError> {
            let changed = db.execute(
                "UPDATE fundings SET state = $2, stage = 'resolved', reason = $3, next_action = NULL, resolved_at = $4, updated_at = $4 \
                 WHERE id = $1 AND state = 'pending'",
                sql_params![view.id.as_str(), state.as_str(), reason, now],
            )?;
            if changed != 1 {
                return Ok(false);
            }
            crate::activity::set_status(
                db,
                match view.kind {
                    FundingKind::TopUp => crate::activity::ActivityKind::TopUp,
                    FundingKind::Withdrawal => crate::activity::ActivityKind::Withdrawal,
                },
                &view.id,
                match state {
                    FundingState::Pending => crate::activity::ActivityStatus::Pending,
                    FundingState::Succeeded => crate::activity::ActivityStatus::Succeeded,
                    FundingState::Failed => crate::activity::ActivityStatus::Failed,
                },
                reason,
                now,
            )?;
            if state == FundingState::Failed {
                let (day_span, month_span) = match view.kind {
                    FundingKind::Withdrawal => ("withdrawal.day", "withdrawal.month"),
                    FundingKind::TopUp => ("top_up.day", "top_up.month"),
                };
                for (span, period) in [
                    (day_span, current.limit_day),
                    (month_span, current.limit_month),
                ] {
                    if let Some(period) = period {
                        limits::release(db, &current.customer_id, span, period, view.amount)?;
                    }
                }
                let op = FeeOperation::Withdrawal;
                match (view.fee_waiver, current.limit_month) {
                    (Some(Waiver::First), _) => {
                        limits::release(db, &current.customer_id, &op.first_span(), 0, 1)?
                    }
                    (Some(Waiver::MonthlyQuota), Some(month)) => {
                        limits::release(db, &current.customer_id, &op.free_span(), month, 1)?
                    }
                    _ => {}
                }
            }
            if state == FundingState::Succeeded {
                let amount = crate::alerts::minor(view.amount, &view.currency);
                let label = &view.method_label;
                let moved = match view.kind {
                    FundingKind::TopUp => crate::alerts::Moved {
                        template: "top_up",
                        category: AlertCategory::PaymentReceived,
                        source_id: &view.id,
                        en: (
                            "Top-up received",
                            format!("{amount} from {label} is now in your Coffer wallet."),
                        ),
                        zh: (
                            "充值到账",
                            format!("来自 {label} 的 {amount} 已存入您的 Coffer 钱包。"),
                        ),
                    },
                    FundingKind::Withdrawal => {
                        let fee = crate::alerts::minor(view.fee, &view.currency);
                        crate::alerts::Moved {
                            template: "withdrawal",
                            category: AlertCategory::PaymentSent,
                            source_id: &view.id,
                            en: (
                                "Withdrawal paid out",
                                format!("{amount} was paid out to {label} (fee {fee})."),
                            ),
                            zh: (
                                "提现到账",
                                format!("{amount} 已提现至 {label}（手续费 {fee}）。"),
                            ),
                        }
                    }
                };
                crate::alerts::send(&self.identity, db, &current.customer_id, moved)?;
                if view.kind == FundingKind::Withdrawal {
                    // Large only: a withdrawal is the customer moving their own
                    // money home, and its balance fell when it was requested.
                    crate::alerts::large_outflow(
                        &self.identity,
                        db,
                        &crate::alerts::Outflow {
                            customer_id: &current.customer_id,
                            source_id: &view.id,
                            amount: view.amount.saturating_add(view.fee),
                            currency: &view.currency,
                            to: label,
                        },
                    )?;
                }
            }
            let action = format!("{}_{}", view.kind.as_str(), state.as_str());
            let detail = format!("{} {}", view.id, reason.unwrap_or(""));
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: coffer_audit::ACTOR_SYSTEM,
                    action: &action,
                    subject: Some(&current.customer_id),
                    ip: "",
                    outcome: AuditOutcome::Ok,
                    detail: detail.trim_end(),
                },
            )?;
            Ok(true)
        })
    }

    /// Applies a callback whose signature the caller has verified.
    pub fn apply_callback(
        &self,
        connector: ConnectorKind,
        callback: &crate::connectors::Callback,
    ) -> Result<CallbackOutcome, FundingError> {
        let seen = self.sql.run(|db| {
            db.query_opt(
                "SELECT outcome FROM funding_events WHERE connector = $1 AND event_id = $2",
                sql_params![connector.as_str(), callback.event_id.as_str()],
            )
        })?;
        if seen.is_some() {
            return Ok(CallbackOutcome::Duplicate);
        }
        let found = self
            .load(&callback.merchant_reference)?
            .filter(|r| r.connector == connector);
        let outcome = match found {
            None => CallbackOutcome::Ignored,
            Some(found)
                if found.view.amount != callback.amount
                    || found.view.currency != callback.currency =>
            {
                tracing::warn!(funding = %found.view.id, event = %callback.event_id, "callback amount or currency differs from ours; ignored");
                CallbackOutcome::Ignored
            }
            Some(found) if found.view.state != FundingState::Pending => CallbackOutcome::Late,
            Some(found) => {
                let verdict = match callback.status.as_str() {
                    "succeeded" => Some(Verdict::Succeeded),
                    "failed" => Some(Verdict::Failed {
                        reason: callback.reason.clone().unwrap_or_else(|| "failed".into()),
                    }),
                    _ => None,
                };
                match verdict {
                    Some(verdict) => {
                        if self.settle(&found.view.id, &verdict)? {
                            CallbackOutcome::Applied
                        } else {
                            CallbackOutcome::Late
                        }
                    }
                    None => CallbackOutcome::Ignored,
                }
            }
        };
        let now = self.now();
        let recorded = self.sql.run(|db| {
            db.execute(
                "INSERT INTO funding_events (connector, event_id, funding_id, status, outcome, received_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT DO NOTHING",
                sql_params![
                    connector.as_str(),
                    callback.event_id.as_str(),
                    callback.merchant_reference.as_str(),
                    callback.status.as_str(),
                    outcome.as_str(),
                    now
                ],
            )
        })?;
        Ok(if recorded == 1 {
            outcome
        } else {
            CallbackOutcome::Duplicate
        })
    }

    /// Reconciles a connector's settlement report for submissions in
    /// `[from, until)` against the records and the ledger.
    pub fn reconcile(
        &self,
        connector: ConnectorKind,
        from: i64,
        until: i64,
    ) -> Result<crate::reconcile::Reconciliation, FundingError> {
        let lines = match connector {
            ConnectorKind::CardNetwork => self.card_network.settlement_report(from, until)?,
            ConnectorKind::CoreBanking => self.core_banking.settlement_report(from, until)?,
        };
        let stuck_before = self.now() - self.policy.stuck_after_ms * NANOS_PER_MILLI;
        Ok(crate::reconcile::reconcile(
            &self.sql,
            self.reader.as_ref(),
            connector,
            &lines,
            (from, until),
            stuck_before,
        )?)
    }

    /// One pass of the resolver: moves records stuck between steps forward
    /// and asks the connector about those whose callback is overdue.
    /// Returns how many records it looked at.
    pub fn resolve_pending(&self) -> Result<usize, FundingError> {
        let now = self.now();
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT id FROM fundings WHERE state = 'pending' AND check_at <= $1 ORDER BY check_at, id LIMIT $2",
                sql_params![now, RESOLVE_BATCH_MAX],
            )
        })?;
        for row in &rows {
            let funding_id = row.text(0)?;
            if let Err(error) = self.resolve_one(&funding_id) {
                tracing::warn!(funding = %funding_id, %error, "could not resolve yet");
            }
            // Whatever happened, look again later rather than every pass.
            let next = now + self.policy.status_query_after_ms * NANOS_PER_MILLI;
            self.sql.run(|db| {
                db.execute(
                    "UPDATE fundings SET check_at = $2 WHERE id = $1 AND state = 'pending'",
                    sql_params![funding_id.as_str(), next],
                )
            })?;
        }
        Ok(rows.len())
    }

    fn resolve_one(&self, funding_id: &str) -> Result<(), FundingError> {
        let current = self.advance(self.reload(funding_id)?)?;
        if current.view.state != FundingState::Pending || current.stage != "submitted" {
            return Ok(());
        }
        let status = match current.connector {
            ConnectorKind::CardNetwork => self.card_network.status(funding_id)?,
            ConnectorKind::CoreBanking => self.core_banking.status(funding_id)?,
        };
        match status {
            Status::Pending => Ok(()),
            Status::Succeeded => self.settle(funding_id, &Verdict::Succeeded).map(|_| ()),
            Status::Failed { reason } => self
                .settle(funding_id, &Verdict::Failed { reason })
                .map(|_| ()),
            Status::Unknown => self
                .settle(
                    funding_id,
                    &Verdict::Failed {
                        reason: "unknown_at_connector".into(),
                    },
                )
                .map(|_| ()),
        }
    }
}

fn funding_metadata(view: &FundingView) -> Result<Metadata, FundingError> {
    let mut entries = std::collections::BTreeMap::new();
    entries.insert("funding_id".to_string(), view.id.clone());
    entries.insert("method".to_string(), view.method_label.clone());
    Metadata::new(entries).map_err(|e| FundingError::Internal(e.to_string()))
}

const NO_FEE: FeeQuote = FeeQuote {
    fee: 0,
    waiver: None,
};

struct NewRecord<'a> {
    id: &'a str,
    customer_id: &'a str,
    kind: FundingKind,
    client: &'a ClientKey,
    method: &'a str,
    method_id: &'a str,
    label: &'a str,
    connector: ConnectorKind,
    amount: i64,
    fee: FeeQuote,
    limit_periods: Option<(i64, i64)>,
    now: i64,
    check_at: i64,
}

/// Inserts a pending record; false when the client key was taken meanwhile.
fn insert_record(db: &mut dyn Sql, new: &NewRecord<'_>) -> Result<bool, FundingError> {
    let inserted = db.execute(
        "INSERT INTO fundings (id, customer_id, kind, client_key, request_hash, method, method_id, method_label, connector, amount, currency, \
         state, stage, reason, next_action, connector_reference, limit_day, limit_month, created_at, updated_at, resolved_at, check_at, fee, fee_waiver) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', 'recorded', NULL, NULL, NULL, $12, $13, $14, $14, NULL, $15, $16, $17) \
         ON CONFLICT DO NOTHING",
        sql_params![
            new.id,
            new.customer_id,
            new.kind.as_str(),
            new.client.key.as_str(),
            new.client.request_hash.as_str(),
            new.method,
            new.method_id,
            new.label,
            new.connector.as_str(),
            new.amount,
            FUNDING_CURRENCY,
            new.limit_periods.map(|p| p.0),
            new.limit_periods.map(|p| p.1),
            new.now,
            new.check_at,
            new.fee.fee,
            new.fee.waiver.map(Waiver::as_str)
        ],
    )?;
    if inserted == 1 {
        // The customer's history shows it at once, in the same transaction.
        let (kind, direction, category) = match new.kind {
            FundingKind::TopUp => (
                crate::activity::ActivityKind::TopUp,
                crate::activity::Direction::In,
                crate::activity::Category::TopUp,
            ),
            FundingKind::Withdrawal => (
                crate::activity::ActivityKind::Withdrawal,
                crate::activity::Direction::Out,
                crate::activity::Category::Withdrawal,
            ),
        };
        crate::activity::record(
            db,
            &crate::activity::NewActivity {
                customer_id: new.customer_id,
                kind,
                source_id: new.id,
                direction,
                status: crate::activity::ActivityStatus::Pending,
                reason: None,
                counterparty: new.label,
                category,
                reference: new.id,
                amount: new.amount,
                currency: FUNDING_CURRENCY,
                fee: new.fee.fee,
                fx: None,
                at: new.now,
            },
        )?;
    }
    Ok(inserted == 1)
}

fn audit(
    db: &mut dyn Sql,
    now: i64,
    customer_id: &str,
    ip: &str,
    action: &str,
    detail: &str,
) -> Result<(), FundingError> {
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
