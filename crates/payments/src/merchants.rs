//! Merchants: onboarding and staff review, and the shared pieces of paying
//! them (`merchant_payments.rs`: QR, payment codes, checkout, refunds;
//! `settlement.rs`: daily settlement).
//!
//! A merchant is a business with its own id (`mer_…`) and two ledger
//! accounts: its *receivable* `merchant:<id>:cny`, where customers' payments
//! land and refunds come from, and its *settlement wallet*
//! `wallet:<id>:cny`, where each day's net is moved and from which it is
//! paid out to the settlement bank account through the same hold → core
//! banking → callback path as a withdrawal. The settlement bank account is
//! a linked bank account owned by the merchant id (`bank_accounts.rs`),
//! stored only encrypted.
//!
//! Like funding, each money movement is a record (SQL) beside a ledger
//! transfer whose id derives from the record's id (`mpay:<id>`,
//! `mref:<id>`, `stl:<id>:<attempt>:…`); the record is written first, the
//! ledger decides, and the record's final state is set from what the ledger
//! did. A retry carries a record forward; it never moves money twice.

use std::sync::Arc;

use coffer_app::{Engine, EngineError};
use coffer_audit::{Entry, Outcome as AuditOutcome};
use coffer_core::{Amount, Clock, Code, Currency, Identifier, Secret};
use coffer_identity::{
    Identity, IdentityError, Party, PartyKind, ScreeningError, ScreeningSource, StaffInfo, Standing,
};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, Metadata, Outcome, Rejection,
    TransferCommand, TransferOp,
};
use coffer_store::sql::{Row, Sql, SqlStore};
use coffer_store::{sql_params, StoreError};
use coffer_vault::{EncryptedColumn, Vault, VaultError};
use rand::RngCore;

use crate::bank_accounts::{BankAccountError, BankAccounts};
use crate::emv::{QrError, MERCHANT_CITY_LENGTH_MAX, MERCHANT_NAME_LENGTH_MAX};
use crate::funding::{Funding, FundingError, FUNDING_CURRENCY};
use crate::mcc;
use crate::qr_image::QrImageError;

/// Where the bank's merchant discount fees are booked.
pub const MERCHANT_FEE_INCOME_ACCOUNT: &str = "bank:fee-income:merchant-discount:cny";
/// The country printed on Coffer's merchant QR codes.
pub const MERCHANT_COUNTRY: &str = "CN";
pub const MERCHANTS_PER_OWNER_MAX: i64 = 5;
/// At most this many rows per page of any merchant list.
pub const MERCHANT_PAGE_MAX: i64 = 100;
pub const ORDER_REFERENCE_LENGTH_MAX: usize = 25;
pub const RETURN_URL_LENGTH_MAX: usize = 500;
pub const WEBHOOK_URL_LENGTH_MAX: usize = 500;
pub const REVIEW_NOTE_LENGTH_MAX: usize = 500;
const WEBHOOK_SECRET_CONTEXT: &str = "merchant.webhook_secret";
pub(crate) const NANOS_PER_MILLI: i64 = 1_000_000;
pub(crate) const NANOS_PER_SECOND: i64 = 1_000_000_000;
pub(crate) const SECONDS_PER_DAY: i64 = 86_400;

/// What the re-encryption job must rewrite after a key rotation.
pub const ENCRYPTED_COLUMNS: [EncryptedColumn; 1] = [EncryptedColumn {
    table: "merchants",
    key: "id",
    column: "webhook_secret_enc",
    context: WEBHOOK_SECRET_CONTEXT,
}];

/// The receivable a merchant's payments land in.
pub fn receivable_account_id(merchant_id: &str) -> String {
    format!("merchant:{merchant_id}:{}", FUNDING_CURRENCY.to_lowercase())
}

/// Settings, from configuration.
#[derive(Debug, Clone)]
pub struct MerchantPolicy {
    /// Payments of at least this much (minor units) need a step-up bound to
    /// the amount and the merchant; payment codes cannot charge this much.
    pub payment_step_up_threshold: i64,
    /// An online checkout (or dynamic QR) can be paid for this long.
    pub checkout_lifetime_ms: i64,
    /// A customer-presented payment code lives this long.
    pub payment_code_lifetime_ms: i64,
    /// Wrong payment codes a merchant may submit per minute.
    pub payment_code_failures_per_minute_max: i64,
    /// Days (limits, settlement) start at midnight at this offset from UTC.
    pub day_utc_offset_seconds: i64,
    /// A payment or refund still `pending` this long after its last change
    /// was left by a crash between its record and its transfer: the
    /// resolver carries it forward.
    pub resolve_after_ms: i64,
    /// The fee schedule: its merchant discount rules (per merchant or MCC,
    /// basis points, minimum and maximum) price settlements.
    pub fees: crate::fees::FeeSchedule,
    /// A failed settlement payout is retried after this long, doubling
    /// with each further failure (at most a day).
    pub payout_retry_base_ms: i64,
    /// After this many failed payouts a settlement is `payout_failed`.
    pub payout_attempts_max: i64,
    /// Webhook endpoints may be `http://` on a literal loopback host
    /// (development and tests only; `webhooks::check_destination`).
    pub webhook_allow_loopback: bool,
}

impl Default for MerchantPolicy {
    fn default() -> MerchantPolicy {
        MerchantPolicy {
            payment_step_up_threshold: 50_000,
            checkout_lifetime_ms: 15 * 60 * 1000,
            payment_code_lifetime_ms: 60 * 1000,
            payment_code_failures_per_minute_max: 10,
            day_utc_offset_seconds: 8 * 3600,
            resolve_after_ms: 30_000,
            fees: crate::fees::FeeSchedule::default(),
            payout_retry_base_ms: 5 * 60 * 1000,
            payout_attempts_max: 6,
            webhook_allow_loopback: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MerchantError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("this Idempotency-Key was used with a different request")]
    KeyReused,
    #[error("at most {MERCHANTS_PER_OWNER_MAX} merchants per customer")]
    TooMany,
    #[error("this merchant is not approved to take payments")]
    MerchantNotActive,
    #[error("this merchant was already reviewed")]
    AlreadyReviewed,
    /// A watch-list hit on the merchant waits for (or was confirmed by) compliance.
    #[error("this merchant cannot be approved while compliance reviews a watch-list hit on it")]
    UnderReview,
    #[error("{0}")]
    Qr(#[from] QrError),
    #[error("{0}")]
    QrImage(#[from] QrImageError),
    #[error("this QR code does not match the payment it names")]
    QrMismatch,
    #[error("this payment can no longer be paid (paid, failed or expired)")]
    NotPayable,
    #[error("the payment code is invalid, used or expired")]
    CodeInvalid,
    #[error("too many wrong payment codes; wait a minute")]
    CodeThrottled,
    #[error("a refund can take at most {available} more (minor units) of this payment")]
    RefundExceedsPayment { available: i64 },
    #[error("only a succeeded payment can be refunded")]
    NotRefundable,
    #[error("the merchant's unsettled funds do not cover this refund")]
    MerchantFundsInsufficient,
    #[error("this would exceed your {limit} limit of {max} (minor units); at most {available} more is possible now")]
    LimitExceeded {
        limit: &'static str,
        max: i64,
        available: i64,
    },
    #[error("the wallet has insufficient available funds")]
    InsufficientFunds,
    #[error("this payment needs a step-up verification bound to its amount and merchant")]
    StepUpRequired,
    #[error("the ledger refused: {0}")]
    Rejected(Rejection),
    #[error("this payment was blocked and the wallet frozen for your protection; please contact the bank")]
    RiskBlocked(Box<coffer_risk::Assessment>),
    #[error("this payment is not held for review")]
    NotHeld,
    #[error("risk: {0}")]
    Risk(#[from] coffer_risk::RiskError),
    #[error("the ledger: {0}")]
    Engine(#[from] EngineError),
    #[error("identity: {0}")]
    Identity(IdentityError),
    #[error("{0}")]
    Funding(FundingError),
    #[error("{0}")]
    BankAccount(BankAccountError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("audit: {0}")]
    Audit(#[from] coffer_audit::AuditError),
    #[error("outbox: {0}")]
    Notify(#[from] coffer_notify::NotifyError),
    #[error("{0}")]
    Internal(String),
}

impl From<IdentityError> for MerchantError {
    fn from(error: IdentityError) -> MerchantError {
        match error {
            IdentityError::StepUpRequired => MerchantError::StepUpRequired,
            IdentityError::Store(e) => MerchantError::Store(e),
            other => MerchantError::Identity(other),
        }
    }
}

impl From<crate::risk_gate::GateError> for MerchantError {
    fn from(error: crate::risk_gate::GateError) -> MerchantError {
        match error {
            crate::risk_gate::GateError::Blocked(assessment) => {
                MerchantError::RiskBlocked(assessment)
            }
            crate::risk_gate::GateError::Risk(e) => MerchantError::Risk(e),
            crate::risk_gate::GateError::Identity(e) => e.into(),
            crate::risk_gate::GateError::Store(e) => MerchantError::Store(e),
        }
    }
}

impl From<FundingError> for MerchantError {
    fn from(error: FundingError) -> MerchantError {
        match error {
            FundingError::LimitExceeded {
                limit,
                max,
                available,
            } => MerchantError::LimitExceeded {
                limit,
                max,
                available,
            },
            FundingError::Store(e) => MerchantError::Store(e),
            other => MerchantError::Funding(other),
        }
    }
}

impl From<BankAccountError> for MerchantError {
    fn from(error: BankAccountError) -> MerchantError {
        match error {
            BankAccountError::Store(e) => MerchantError::Store(e),
            other => MerchantError::BankAccount(other),
        }
    }
}

impl MerchantError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> MerchantError {
        MerchantError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            MerchantError::Invalid { .. } => "invalid_field",
            MerchantError::NotFound(_) => "not_found",
            MerchantError::KeyReused => "idempotency_key_reused",
            MerchantError::TooMany => "too_many_merchants",
            MerchantError::MerchantNotActive => "merchant_not_active",
            MerchantError::AlreadyReviewed => "already_reviewed",
            MerchantError::UnderReview => "merchant_under_review",
            MerchantError::Qr(error) => error.code(),
            MerchantError::QrImage(error) => error.code(),
            MerchantError::QrMismatch => "qr_mismatch",
            MerchantError::NotPayable => "payment_not_payable",
            MerchantError::CodeInvalid => "payment_code_invalid",
            MerchantError::CodeThrottled => "too_many_attempts",
            MerchantError::RefundExceedsPayment { .. } => "refund_exceeds_payment",
            MerchantError::NotRefundable => "payment_not_refundable",
            MerchantError::MerchantFundsInsufficient => "merchant_funds_insufficient",
            MerchantError::LimitExceeded { .. } => "limit_exceeded",
            MerchantError::InsufficientFunds => "insufficient_funds",
            MerchantError::StepUpRequired => "step_up_required",
            MerchantError::Rejected(rejection) => rejection.code(),
            MerchantError::RiskBlocked(_) => "risk_blocked",
            MerchantError::NotHeld => "not_held",
            MerchantError::Risk(_) => "internal",
            MerchantError::Engine(error) => error.code(),
            MerchantError::Identity(error) => error.code(),
            MerchantError::Funding(error) => error.code(),
            MerchantError::BankAccount(error) => error.code(),
            MerchantError::Store(_)
            | MerchantError::Vault(_)
            | MerchantError::Audit(_)
            | MerchantError::Notify(_)
            | MerchantError::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            MerchantError::Invalid { field, .. } => Some(field),
            MerchantError::KeyReused => Some("Idempotency-Key"),
            MerchantError::Qr(_) | MerchantError::QrMismatch => Some("payload"),
            MerchantError::QrImage(_) => Some("image"),
            MerchantError::CodeInvalid | MerchantError::CodeThrottled => Some("code"),
            MerchantError::RefundExceedsPayment { .. }
            | MerchantError::LimitExceeded { .. }
            | MerchantError::InsufficientFunds
            | MerchantError::MerchantFundsInsufficient => Some("amount"),
            MerchantError::StepUpRequired => Some("step_up_challenge_id"),
            MerchantError::Funding(error) => error.field(),
            MerchantError::BankAccount(error) => error.field(),
            _ => None,
        }
    }
}

/// A merchant's review status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MerchantStatus {
    PendingReview,
    Approved,
    Rejected,
}

impl MerchantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MerchantStatus::PendingReview => "pending_review",
            MerchantStatus::Approved => "approved",
            MerchantStatus::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<MerchantStatus> {
        [
            MerchantStatus::PendingReview,
            MerchantStatus::Approved,
            MerchantStatus::Rejected,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A merchant as its owner and staff see it: never the account number or
/// the webhook secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantView {
    pub id: String,
    pub owner_customer_id: String,
    pub display_name: String,
    pub city: String,
    pub mcc: String,
    /// The customer-facing spending category of the MCC.
    pub category: &'static str,
    /// The discount rate charged at settlement (the rate staff set at review,
    /// else the fee schedule's for this merchant or its MCC).
    pub discount_rate_bps: u32,
    /// The whole rule settlement applies: that rate within the schedule's
    /// minimum and maximum per settlement.
    pub discount: crate::fees::DiscountRule,
    pub status: MerchantStatus,
    pub settlement_bank_account_id: String,
    pub webhook_url: Option<String>,
    pub review_note: Option<String>,
    pub reviewed_at: Option<i64>,
    pub created_at: i64,
}

/// A new merchant as its owner applies for it.
#[derive(Debug)]
pub struct NewMerchant {
    pub display_name: String,
    pub city: String,
    pub mcc: String,
    pub bank_code: String,
    pub account_number: Secret<String>,
}

const SELECT_MERCHANT: &str = "SELECT id, owner_customer_id, display_name, city, mcc, discount_rate_bps, status, settlement_bank_account_id, \
     webhook_url, review_note, reviewed_at, created_at FROM merchants";

fn merchant(row: &Row, fees: &crate::fees::FeeSchedule) -> Result<MerchantView, MerchantError> {
    let corrupt = |what: &str| MerchantError::Store(StoreError::Corrupt(what.to_string()));
    let id = row.text(0)?;
    let mcc_code = row.text(4)?;
    let category = mcc::category(&mcc_code).ok_or_else(|| corrupt("merchant category code"))?;
    let mut discount = fees.merchant_discount(&id, &mcc_code);
    if let Some(rate) = row.opt_int(5)? {
        discount.percent_bps = rate;
    }
    let discount_rate_bps =
        u32::try_from(discount.percent_bps).map_err(|_| corrupt("discount rate"))?;
    Ok(MerchantView {
        id,
        owner_customer_id: row.text(1)?,
        display_name: row.text(2)?,
        city: row.text(3)?,
        mcc: mcc_code,
        category: category.category,
        discount_rate_bps,
        discount,
        status: MerchantStatus::parse(&row.text(6)?).ok_or_else(|| corrupt("merchant status"))?,
        settlement_bank_account_id: row.text(7)?,
        webhook_url: row.opt_text(8)?,
        review_note: row.opt_text(9)?,
        reviewed_at: row.opt_int(10)?,
        created_at: row.int(11)?,
    })
}

/// The request's idempotency key and fingerprint (as in funding): records
/// are unique per (principal, key), so a retry whose stored response was
/// lost resumes the same operation instead of starting another.
pub use crate::funding::ClientKey;

pub struct Merchants {
    pub(crate) sql: Arc<SqlStore>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) identity: Arc<Identity>,
    pub(crate) vault: Arc<Vault>,
    pub(crate) bank_accounts: Arc<BankAccounts>,
    pub(crate) funding: Arc<Funding>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) policy: MerchantPolicy,
    pub(crate) risk: Option<Arc<crate::risk_gate::RiskGate>>,
}

pub(crate) fn id(text: &str) -> Result<Identifier, MerchantError> {
    Identifier::parse(text).map_err(|e| MerchantError::Internal(format!("identifier {text}: {e}")))
}

pub(crate) fn code(text: &str) -> Result<Code, MerchantError> {
    Code::parse(text).map_err(|e| MerchantError::Internal(format!("code {text}: {e}")))
}

pub(crate) fn currency() -> Result<Currency, MerchantError> {
    Currency::parse(FUNDING_CURRENCY).map_err(|e| MerchantError::Internal(e.to_string()))
}

pub(crate) fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// Text a person typed, for names on QR codes and receipts: trimmed, 1 to
/// `max` characters, no control characters.
pub(crate) fn printable(
    field: &'static str,
    text: &str,
    max: usize,
) -> Result<String, MerchantError> {
    let trimmed = text.trim();
    let count = trimmed.chars().count();
    if count == 0 || count > max || trimmed.chars().any(char::is_control) {
        return Err(MerchantError::invalid(
            field,
            format!("1 to {max} characters, no control characters"),
        ));
    }
    Ok(trimmed.to_string())
}

/// An order reference: 1 to 25 printable ASCII characters (it goes into
/// the QR code's bill number and the merchant's webhooks).
pub(crate) fn order_reference(text: &str) -> Result<String, MerchantError> {
    if text.is_empty()
        || text.len() > ORDER_REFERENCE_LENGTH_MAX
        || !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(MerchantError::invalid(
            "order_reference",
            format!("1 to {ORDER_REFERENCE_LENGTH_MAX} printable ASCII characters"),
        ));
    }
    Ok(text.to_string())
}

/// A URL Coffer will send customers or webhooks to: https, or http to the
/// local machine (development and tests); no credentials, no fragments.
pub(crate) fn web_url(
    field: &'static str,
    text: &str,
    max: usize,
) -> Result<String, MerchantError> {
    let bad = || {
        MerchantError::invalid(
            field,
            format!("an https:// URL of at most {max} characters (http:// only for localhost)"),
        )
    };
    if text.len() > max || !text.bytes().all(|b| b.is_ascii_graphic()) || text.contains('#') {
        return Err(bad());
    }
    let rest = if let Some(rest) = text.strip_prefix("https://") {
        rest
    } else if let Some(rest) = text.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if !matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
            return Err(bad());
        }
        rest
    } else {
        return Err(bad());
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    Ok(text.to_string())
}

impl Merchants {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sql: Arc<SqlStore>,
        engine: Arc<Engine>,
        identity: Arc<Identity>,
        vault: Arc<Vault>,
        bank_accounts: Arc<BankAccounts>,
        funding: Arc<Funding>,
        clock: Arc<dyn Clock>,
        policy: MerchantPolicy,
    ) -> Merchants {
        Merchants {
            sql,
            engine,
            identity,
            vault,
            bank_accounts,
            funding,
            clock,
            policy,
            risk: None,
        }
    }

    /// Every customer payment passes this risk gate before it is recorded.
    pub fn with_risk(mut self, gate: Arc<crate::risk_gate::RiskGate>) -> Merchants {
        self.risk = Some(gate);
        self
    }

    pub fn policy(&self) -> &MerchantPolicy {
        &self.policy
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    /// The day (since 1970-01-01, in the bank's time zone) of `at` (ns).
    pub fn day_of(&self, at: i64) -> i64 {
        (at.div_euclid(NANOS_PER_SECOND) + self.policy.day_utc_offset_seconds)
            .div_euclid(SECONDS_PER_DAY)
    }

    /// The first nanosecond after `day` ends.
    pub(crate) fn day_end(&self, day: i64) -> i64 {
        ((day + 1) * SECONDS_PER_DAY - self.policy.day_utc_offset_seconds) * NANOS_PER_SECOND
    }

    pub(crate) fn open(&self, spec: AccountSpec) -> Result<(), MerchantError> {
        match self.engine.execute_blocking(Command::OpenAccount(spec))? {
            Outcome::Account(Ok(_)) => Ok(()),
            Outcome::Account(Err(rejection)) => Err(MerchantError::Rejected(rejection)),
            Outcome::Transfers(_) => Err(MerchantError::Internal("unexpected outcome".into())),
        }
    }

    /// Opens the fee income account (idempotent); call once at start.
    pub fn open_accounts(&self) -> Result<(), MerchantError> {
        self.open(AccountSpec {
            id: id(MERCHANT_FEE_INCOME_ACCOUNT)?,
            currency: currency()?,
            kind: AccountKind::Income,
            constraint: BalanceConstraint::None,
            owner: id("bank")?,
        })
    }

    fn open_merchant_accounts(&self, merchant_id: &str) -> Result<(), MerchantError> {
        for account in [
            receivable_account_id(merchant_id),
            crate::funding::wallet_account_id(merchant_id, FUNDING_CURRENCY),
        ] {
            self.open(AccountSpec {
                id: id(&account)?,
                currency: currency()?,
                kind: AccountKind::Liability,
                constraint: BalanceConstraint::NoOverdraft,
                owner: id(merchant_id)?,
            })?;
        }
        Ok(())
    }

    /// One transfer through the engine; the inner error is the ledger's refusal.
    pub(crate) fn transfer(
        &self,
        transfers: Vec<TransferCommand>,
    ) -> Result<Result<(), Rejection>, MerchantError> {
        let linked = transfers.len() > 1;
        match self
            .engine
            .execute_blocking(Command::Transfers { transfers, linked })?
        {
            Outcome::Transfers(results) => {
                for result in results {
                    if let Err(rejection) = result {
                        return Ok(Err(rejection));
                    }
                }
                Ok(Ok(()))
            }
            Outcome::Account(_) => Err(MerchantError::Internal("unexpected outcome".into())),
        }
    }

    pub(crate) fn post(
        transfer_id: &str,
        debit: &str,
        credit: &str,
        amount: i64,
        transfer_code: &str,
        metadata: &[(&str, &str)],
    ) -> Result<TransferCommand, MerchantError> {
        let mut entries = std::collections::BTreeMap::new();
        for (key, value) in metadata {
            entries.insert(key.to_string(), value.to_string());
        }
        Ok(TransferCommand {
            id: id(transfer_id)?,
            op: TransferOp::Post {
                debit: id(debit)?,
                credit: id(credit)?,
                amount: Amount::new(amount).map_err(|e| MerchantError::Internal(e.to_string()))?,
                currency: currency()?,
            },
            code: code(transfer_code)?,
            metadata: Metadata::new(entries).map_err(|e| MerchantError::Internal(e.to_string()))?,
        })
    }

    // ---- onboarding -----------------------------------------------------------------

    /// A customer applies to accept payments as a merchant; staff review it.
    pub fn apply(
        &self,
        owner_customer_id: &str,
        request: &NewMerchant,
        ip: &str,
    ) -> Result<MerchantView, MerchantError> {
        let display_name = printable(
            "display_name",
            &request.display_name,
            MERCHANT_NAME_LENGTH_MAX,
        )?;
        let city = printable("city", &request.city, MERCHANT_CITY_LENGTH_MAX)?;
        if mcc::category(&request.mcc).is_none() {
            return Err(MerchantError::invalid(
                "mcc",
                "a merchant category code (ISO 18245) from GET /v1/merchant-categories",
            ));
        }
        let owned = self.sql.run(|db| {
            db.query_one(
                "SELECT COUNT(*) FROM merchants WHERE owner_customer_id = $1 AND status <> 'rejected'",
                sql_params![owner_customer_id],
            )
        })?;
        if owned.int(0)? >= MERCHANTS_PER_OWNER_MAX {
            return Err(MerchantError::TooMany);
        }
        let merchant_id = random_id("mer");
        let now = self.now();
        // The settlement account belongs to the merchant, not its owner: a
        // payout can only ever reach the account staff reviewed. Linked in
        // its own transaction first; if the merchant's insert then fails, the
        // link names a merchant that does not exist and is never used.
        let account = self.bank_accounts.link(
            &merchant_id,
            &request.bank_code,
            &request.account_number,
            ip,
            now,
        )?;
        self.sql.transaction(|db| -> Result<(), MerchantError> {
            db.execute(
                "INSERT INTO merchants (id, owner_customer_id, display_name, city, mcc, discount_rate_bps, status, settlement_bank_account_id, \
                 webhook_url, webhook_secret_enc, review_note, reviewed_by, reviewed_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, NULL, 'pending_review', $6, NULL, NULL, NULL, NULL, NULL, $7, $7)",
                sql_params![
                    merchant_id.as_str(),
                    owner_customer_id,
                    display_name.as_str(),
                    city.as_str(),
                    request.mcc.as_str(),
                    account.id.as_str(),
                    now
                ],
            )?;
            audit(
                db,
                now,
                &coffer_audit::customer_actor(owner_customer_id),
                &merchant_id,
                ip,
                "merchant_applied",
                &format!("{} {}", request.mcc, account.label()),
            )
        })?;
        // After the application commits (a hit is kept either way); a hit
        // keeps the merchant from being approved until compliance decides.
        if let Some(screening) = self.identity.screening() {
            screening
                .screen(
                    Party {
                        kind: PartyKind::Merchant,
                        id: &merchant_id,
                        customer_id: owner_customer_id,
                    },
                    &display_name,
                    ScreeningSource::MerchantOnboarding,
                )
                .map_err(|e| match e {
                    ScreeningError::Store(e) => MerchantError::Store(e),
                    other => MerchantError::Internal(other.to_string()),
                })?;
        }
        self.get(&merchant_id)
    }

    /// Stops a merchant taking payments, inside the caller's transaction: a
    /// compliance officer confirming a watch-list hit on it. `false` when it
    /// was already rejected.
    pub fn block_within(
        &self,
        db: &mut dyn Sql,
        actor: &str,
        merchant_id: &str,
        reason: &str,
        ip: &str,
    ) -> Result<bool, MerchantError> {
        let now = self.now();
        let changed = db.execute(
            "UPDATE merchants SET status = 'rejected', review_note = $2, updated_at = $3 WHERE id = $1 AND status <> 'rejected'",
            sql_params![merchant_id, reason, now],
        )?;
        if changed != 1 {
            return Ok(false);
        }
        audit(db, now, actor, merchant_id, ip, "merchant_blocked", reason)?;
        Ok(true)
    }

    /// The fee schedule in force (staff change it at runtime): the
    /// merchant discount rules a view and its settlement use.
    fn fee_schedule(&self) -> Result<crate::fees::FeeSchedule, MerchantError> {
        Ok(self
            .sql
            .run(|db| crate::fees::current(db, &self.policy.fees))?
            .1)
    }

    pub fn get(&self, merchant_id: &str) -> Result<MerchantView, MerchantError> {
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    &format!("{SELECT_MERCHANT} WHERE id = $1"),
                    sql_params![merchant_id],
                )
            })?
            .ok_or(MerchantError::NotFound("merchant"))?;
        merchant(&row, &self.fee_schedule()?)
    }

    /// A merchant its owner may manage (another customer's is "not found").
    pub fn owned(&self, owner: &str, merchant_id: &str) -> Result<MerchantView, MerchantError> {
        match self.get(merchant_id) {
            Ok(view) if view.owner_customer_id == owner => Ok(view),
            Ok(_) | Err(MerchantError::NotFound(_)) => Err(MerchantError::NotFound("merchant")),
            Err(other) => Err(other),
        }
    }

    /// An approved merchant (taking payments).
    pub fn active(&self, merchant_id: &str) -> Result<MerchantView, MerchantError> {
        let view = self.get(merchant_id)?;
        if view.status != MerchantStatus::Approved {
            return Err(MerchantError::MerchantNotActive);
        }
        Ok(view)
    }

    pub fn list_owned(&self, owner: &str) -> Result<Vec<MerchantView>, MerchantError> {
        let rows = self.sql.run(|db| {
            db.query(
                &format!("{SELECT_MERCHANT} WHERE owner_customer_id = $1 ORDER BY created_at, id"),
                sql_params![owner],
            )
        })?;
        let fees = self.fee_schedule()?;
        rows.iter().map(|r| merchant(r, &fees)).collect()
    }

    /// Merchants for staff, by status, oldest first (a review queue).
    pub fn list_by_status(
        &self,
        status: Option<MerchantStatus>,
        limit: i64,
    ) -> Result<Vec<MerchantView>, MerchantError> {
        let rows = self.sql.run(|db| {
            db.query(
                &format!(
                    "{SELECT_MERCHANT} WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) ORDER BY created_at, id LIMIT $2"
                ),
                sql_params![status.map(MerchantStatus::as_str), limit.clamp(1, MERCHANT_PAGE_MAX)],
            )
        })?;
        let fees = self.fee_schedule()?;
        rows.iter().map(|r| merchant(r, &fees)).collect()
    }

    /// Every approved merchant's id (for the settlement run).
    pub fn approved_ids(&self) -> Result<Vec<String>, MerchantError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT id FROM merchants WHERE status = 'approved' ORDER BY id",
                sql_params![],
            )
        })?;
        rows.iter().map(|r| Ok(r.text(0)?)).collect()
    }

    /// Staff approve (opening the merchant's ledger accounts) or reject an
    /// application, once; `discount_rate_bps` overrides the MCC's rate.
    pub fn review(
        &self,
        staff: &StaffInfo,
        merchant_id: &str,
        approve: bool,
        discount_rate_bps: Option<u32>,
        note: &str,
        ip: &str,
    ) -> Result<MerchantView, MerchantError> {
        if note.chars().count() > REVIEW_NOTE_LENGTH_MAX || note.chars().any(char::is_control) {
            return Err(MerchantError::invalid(
                "note",
                format!("at most {REVIEW_NOTE_LENGTH_MAX} characters"),
            ));
        }
        if discount_rate_bps.is_some_and(|bps| bps > 1_000) {
            return Err(MerchantError::invalid(
                "discount_rate_bps",
                "0 to 1000 basis points",
            ));
        }
        let current = self.get(merchant_id)?;
        if current.status != MerchantStatus::PendingReview {
            return Err(MerchantError::AlreadyReviewed);
        }
        if approve {
            // Before the status changes: an approved merchant always has
            // its accounts (opening is idempotent if this is retried).
            self.open_merchant_accounts(merchant_id)?;
        }
        let status = if approve {
            MerchantStatus::Approved
        } else {
            MerchantStatus::Rejected
        };
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), MerchantError> {
            if let (true, Some(screening)) = (approve, self.identity.screening()) {
                if screening.standing(db, PartyKind::Merchant, merchant_id)? != Standing::Clear {
                    return Err(MerchantError::UnderReview);
                }
            }
            let changed = db.execute(
                "UPDATE merchants SET status = $2, discount_rate_bps = $3, review_note = $4, reviewed_by = $5, reviewed_at = $6, updated_at = $6 \
                 WHERE id = $1 AND status = 'pending_review'",
                sql_params![
                    merchant_id,
                    status.as_str(),
                    discount_rate_bps.map(i64::from),
                    note,
                    staff.staff_id.as_str(),
                    now
                ],
            )?;
            if changed != 1 {
                return Err(MerchantError::AlreadyReviewed);
            }
            audit(
                db,
                now,
                &coffer_audit::staff_actor(&staff.staff_id),
                merchant_id,
                ip,
                if approve {
                    "merchant_approved"
                } else {
                    "merchant_rejected"
                },
                note,
            )
        })?;
        self.get(merchant_id)
    }

    /// Sets the merchant's webhook endpoint with a fresh signing secret,
    /// returned this once (stored only encrypted; a new call rotates it).
    pub fn set_webhook(
        &self,
        owner: &str,
        merchant_id: &str,
        url: &str,
        ip: &str,
    ) -> Result<(MerchantView, Secret<String>), MerchantError> {
        self.owned(owner, merchant_id)?;
        if url.len() > WEBHOOK_URL_LENGTH_MAX
            || !url.bytes().all(|b| b.is_ascii_graphic())
            || url.contains('#')
        {
            return Err(MerchantError::invalid(
                "url",
                format!("an https:// URL of at most {WEBHOOK_URL_LENGTH_MAX} characters"),
            ));
        }
        crate::webhooks::check_destination(url, self.policy.webhook_allow_loopback).map_err(
            |why| MerchantError::invalid("url", format!("not a webhook destination: {why}")),
        )?;
        let url = url.to_string();
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = Secret::new(format!("whsec_{}", hex::encode(bytes)));
        let encrypted = self
            .vault
            .encrypt_text(WEBHOOK_SECRET_CONTEXT, secret.expose())?;
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), MerchantError> {
            db.execute(
                "UPDATE merchants SET webhook_url = $2, webhook_secret_enc = $3, updated_at = $4 WHERE id = $1",
                sql_params![merchant_id, url.as_str(), encrypted, now],
            )?;
            audit(
                db,
                now,
                &coffer_audit::customer_actor(owner),
                merchant_id,
                ip,
                "merchant_webhook_set",
                &url,
            )
        })?;
        Ok((self.get(merchant_id)?, secret))
    }

    /// Queues a signed webhook for the merchant (if it set an endpoint) in
    /// the caller's transaction: sent exactly when the change commits.
    pub(crate) fn enqueue_webhook(
        &self,
        db: &mut dyn Sql,
        merchant_id: &str,
        event_type: &'static str,
        data: serde_json::Value,
        now: i64,
    ) -> Result<(), MerchantError> {
        let row = db.query_opt(
            "SELECT webhook_url FROM merchants WHERE id = $1",
            sql_params![merchant_id],
        )?;
        let Some(url) = row.map(|r| r.opt_text(0)).transpose()?.flatten() else {
            return Ok(());
        };
        let event = serde_json::json!({
            "id": random_id("evt"),
            "type": event_type,
            "created_at": coffer_core::Timestamp::from_nanos(now).to_rfc3339(),
            "data": data,
        });
        let host = url
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split(['/', '?'])
            .next()
            .unwrap_or("");
        coffer_notify::enqueue(
            db,
            &self.vault,
            &coffer_notify::Message {
                channel: coffer_notify::Channel::Webhook,
                recipient: Secret::new(url.clone()),
                recipient_masked: host.to_string(),
                customer_id: None,
                template: event_type,
                // The webhook transport signs with this merchant's secret.
                subject: merchant_id.to_string(),
                body: Secret::new(event.to_string()),
            },
            now,
        )?;
        Ok(())
    }
}

/// A merchant's webhook signing secret (for the webhook transport).
pub fn webhook_secret(
    sql: &SqlStore,
    vault: &Vault,
    merchant_id: &str,
) -> Result<Option<crate::connectors::WebhookSecret>, MerchantError> {
    let row = sql.run(|db| {
        db.query_opt(
            "SELECT webhook_secret_enc FROM merchants WHERE id = $1",
            sql_params![merchant_id],
        )
    })?;
    let Some(blob) = row.map(|r| r.opt_bytes(0)).transpose()?.flatten() else {
        return Ok(None);
    };
    let secret = vault.decrypt_text(WEBHOOK_SECRET_CONTEXT, &blob)?;
    Ok(Some(crate::connectors::WebhookSecret::new(
        secret.expose().as_bytes().to_vec(),
    )))
}

pub(crate) fn audit(
    db: &mut dyn Sql,
    now: i64,
    actor: &str,
    subject: &str,
    ip: &str,
    action: &str,
    detail: &str,
) -> Result<(), MerchantError> {
    coffer_audit::append(
        db,
        &Entry {
            at: now,
            actor,
            action,
            subject: Some(subject),
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
    fn urls_are_https_or_local() {
        assert!(web_url("url", "https://shop.example.com/hooks?x=1", 500).is_ok());
        assert!(web_url("url", "http://127.0.0.1:8080/hook", 500).is_ok());
        assert!(web_url("url", "http://localhost/hook", 500).is_ok());
        for bad in [
            "http://shop.example.com/hook",
            "ftp://x",
            "https://",
            "https://user:pw@shop.example.com/",
            "https://shop.example.com/#frag",
            "javascript:alert(1)",
            "https://shop example.com",
        ] {
            assert!(web_url("url", bad, 500).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_references_are_bounded_and_printable() {
        assert_eq!(
            printable("n", "  Lotus Coffee ", 25).ok().as_deref(),
            Some("Lotus Coffee")
        );
        assert!(printable("n", "", 25).is_err());
        assert!(printable("n", "a\u{7}b", 25).is_err());
        assert!(printable("n", &"x".repeat(26), 25).is_err());
        assert!(order_reference("A-1001").is_ok());
        assert!(order_reference("订单").is_err());
        assert!(order_reference(&"x".repeat(26)).is_err());
    }
}
