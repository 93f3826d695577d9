//! Bill payment: a catalogue of billers (electricity, water, gas, phone,
//! credit card), bill look-up by account reference and payment, through a
//! `Biller` connector (the bank's bill-payment network, which reaches every
//! biller) that a real connector implements and `BillerSimulator` stands in
//! for.
//!
//! Payment follows funding's pattern (`funding.rs`): the bill payment
//! record and its activity row are written first (`stage` `recorded`), a
//! ledger hold moves the amount from the wallet towards the biller
//! settlement account (`held`), the biller is asked (`submitted`), and its
//! answer captures the hold (with the biller's confirmation number) or
//! releases it. Ledger ids derive from the payment id (`bill:<id>`,
//! `bill:<id>:capture`, `bill:<id>:release`) and the biller sees the payment
//! id as its merchant reference, so every step can be repeated; a biller that
//! does not answer leaves the payment `pending` until `resolve_pending` asks
//! it by reference. The record's final state is set from what the ledger did.
//!
//! Simulator test references (by their last four digits, any biller):
//!
//! | last four | look-up | payment |
//! |---|---|---|
//! | `0000` | no bill due (`no_bill_due`) | refused before anything moves |
//! | `0001` | the bill is already paid | refused: `bill_already_paid` |
//! | `0503` | the biller is down (`biller_unavailable`) | refused before anything moves |
//! | `0504` | a bill due | times out: `pending`, then `failed` (`timeout`) by the resolver |
//! | anything else | a bill due (amount from the reference) | paid, with a confirmation number |

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_app::{Engine, EngineError};
use coffer_audit::{Entry, Outcome as AuditOutcome};
use coffer_core::{Amount, Clock, Code, Currency, Identifier};
use coffer_identity::{Identity, IdentityError, Operation as StepUpOperation};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, HoldState, Metadata, Outcome, Rejection,
    TransferCommand, TransferOp,
};
use coffer_store::sql::{Row, SqlStore};
use coffer_store::{sql_params, LedgerReader, StoreError};
use rand::RngCore;

use crate::activity::{self, ActivityKind, ActivityStatus, Category, Direction};
use crate::connectors::ConnectorError;
use crate::funding::{wallet_account_id, ClientKey};

/// Bills are paid in the wallet's home currency.
pub const BILL_CURRENCY: &str = "CNY";
/// What the bank owes billers for bills paid, until it settles with them.
pub const BILLER_SETTLEMENT_ACCOUNT: &str = "bank:biller-settlement:cny";
const NANOS_PER_MILLI: i64 = 1_000_000;
const NANOS_PER_SECOND: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillerCategory {
    Electricity,
    Water,
    Gas,
    Phone,
    CreditCard,
}

impl BillerCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            BillerCategory::Electricity => "electricity",
            BillerCategory::Water => "water",
            BillerCategory::Gas => "gas",
            BillerCategory::Phone => "phone",
            BillerCategory::CreditCard => "credit_card",
        }
    }

    pub fn parse(text: &str) -> Option<BillerCategory> {
        [
            BillerCategory::Electricity,
            BillerCategory::Water,
            BillerCategory::Gas,
            BillerCategory::Phone,
            BillerCategory::CreditCard,
        ]
        .into_iter()
        .find(|c| c.as_str() == text)
    }
}

/// One biller of the catalogue (shipped ones borrow their text; ones staff
/// add at runtime own it: `biller_catalogue.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillerInfo {
    pub id: Cow<'static, str>,
    pub name_zh: Cow<'static, str>,
    pub name_en: Cow<'static, str>,
    pub category: BillerCategory,
    /// Digits in an account reference (spaces and dashes are ignored).
    pub reference_digits: usize,
    /// The first digit a reference must have, if any (mobile numbers start with 1).
    pub reference_prefix: Option<char>,
    /// For people: what the reference is and where to find it.
    pub reference_format: Cow<'static, str>,
    /// Whether less than the amount due may be paid (credit cards).
    pub partial_payment: bool,
}

/// The catalogue.
pub const BILLERS: [BillerInfo; 6] = [
    BillerInfo {
        id: Cow::Borrowed("state-grid-electricity"),
        name_zh: Cow::Borrowed("国家电网 电费"),
        name_en: Cow::Borrowed("State Grid electricity"),
        category: BillerCategory::Electricity,
        reference_digits: 10,
        reference_prefix: None,
        reference_format: Cow::Borrowed("10-digit customer number (户号) on the electricity bill"),
        partial_payment: false,
    },
    BillerInfo {
        id: Cow::Borrowed("beijing-water"),
        name_zh: Cow::Borrowed("北京自来水"),
        name_en: Cow::Borrowed("Beijing Waterworks"),
        category: BillerCategory::Water,
        reference_digits: 8,
        reference_prefix: None,
        reference_format: Cow::Borrowed("8-digit account number on the water bill"),
        partial_payment: false,
    },
    BillerInfo {
        id: Cow::Borrowed("beijing-gas"),
        name_zh: Cow::Borrowed("北京燃气"),
        name_en: Cow::Borrowed("Beijing Gas"),
        category: BillerCategory::Gas,
        reference_digits: 10,
        reference_prefix: None,
        reference_format: Cow::Borrowed("10-digit gas account number (燃气户号)"),
        partial_payment: false,
    },
    BillerInfo {
        id: Cow::Borrowed("china-mobile"),
        name_zh: Cow::Borrowed("中国移动 话费"),
        name_en: Cow::Borrowed("China Mobile"),
        category: BillerCategory::Phone,
        reference_digits: 11,
        reference_prefix: Some('1'),
        reference_format: Cow::Borrowed("11-digit mobile number starting with 1"),
        partial_payment: false,
    },
    BillerInfo {
        id: Cow::Borrowed("china-unicom"),
        name_zh: Cow::Borrowed("中国联通 话费"),
        name_en: Cow::Borrowed("China Unicom"),
        category: BillerCategory::Phone,
        reference_digits: 11,
        reference_prefix: Some('1'),
        reference_format: Cow::Borrowed("11-digit mobile number starting with 1"),
        partial_payment: false,
    },
    BillerInfo {
        id: Cow::Borrowed("cmb-credit-card"),
        name_zh: Cow::Borrowed("招商银行信用卡还款"),
        name_en: Cow::Borrowed("CMB credit card repayment"),
        category: BillerCategory::CreditCard,
        reference_digits: 16,
        reference_prefix: None,
        reference_format: Cow::Borrowed("16-digit credit card number"),
        partial_payment: true,
    },
];

/// A biller of the shipped catalogue by id (the catalogue in force, which
/// staff change at runtime, is `biller_catalogue::current`).
pub fn biller(id: &str) -> Option<&'static BillerInfo> {
    BILLERS.iter().find(|b| b.id == id)
}

impl BillerInfo {
    /// The reference as digits, or why it is not one of this biller's.
    pub fn parse_reference(&self, text: &str) -> Result<String, String> {
        let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let valid = digits.len() == self.reference_digits
            && digits.bytes().all(|b| b.is_ascii_digit())
            && self
                .reference_prefix
                .is_none_or(|prefix| digits.starts_with(prefix));
        if valid {
            Ok(digits)
        } else {
            Err(format!("{}: {}", self.name_en, self.reference_format))
        }
    }

    /// "国家电网 电费 State Grid electricity": what history shows as counterparty.
    pub fn display_name(&self) -> String {
        format!("{} {}", self.name_zh, self.name_en)
    }
}

/// The reference as shown: only its last four digits.
pub fn mask_reference(reference: &str) -> String {
    let last4 = reference
        .get(reference.len().saturating_sub(4)..)
        .unwrap_or("");
    format!("••{last4}")
}

// ---- the connector -----------------------------------------------------------------

/// A bill as the biller reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bill {
    /// Minor units of `BILL_CURRENCY`; 0 when paid.
    pub amount_due: i64,
    /// `YYYY-MM-DD`.
    pub due_date: String,
    /// The account holder's name, masked by the biller ("张*伟").
    pub holder_masked: String,
    pub paid: bool,
}

/// A biller's answer to a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentAnswer {
    Paid { confirmation: String },
    Refused { reason: String },
}

/// What the biller knows of a payment, by our reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentStatus {
    Paid {
        confirmation: String,
    },
    /// Never received (or refused): nothing was paid.
    Unknown,
}

/// The bill-payment network. `ConnectorError` means no answer (down or
/// timed out): for `pay`, whether it arrived is then unknown.
pub trait Biller: Send + Sync {
    /// The bill due on an account; `None` when nothing is due.
    fn lookup(&self, biller_id: &str, reference: &str) -> Result<Option<Bill>, ConnectorError>;
    /// Pays a bill; a repeated `merchant_reference` is the same payment.
    fn pay(
        &self,
        biller_id: &str,
        reference: &str,
        merchant_reference: &str,
        amount: Amount,
    ) -> Result<PaymentAnswer, ConnectorError>;
    fn status(&self, merchant_reference: &str) -> Result<PaymentStatus, ConnectorError>;
}

/// Simulated billers keeping their books in `biller_simulations`.
pub struct BillerSimulator {
    sql: Arc<SqlStore>,
    clock: Arc<dyn Clock>,
}

const HOLDERS: [&str; 6] = ["张*伟", "李*", "王*芳", "刘*强", "陈*", "S** Wang"];

impl BillerSimulator {
    pub fn new(sql: Arc<SqlStore>, clock: Arc<dyn Clock>) -> BillerSimulator {
        BillerSimulator { sql, clock }
    }

    fn last4(reference: &str) -> &str {
        reference
            .get(reference.len().saturating_sub(4)..)
            .unwrap_or("")
    }

    fn seed(reference: &str) -> i64 {
        reference
            .bytes()
            .fold(0i64, |acc, b| (acc * 31 + i64::from(b)) % 1_000_003)
    }

    fn paid(&self, biller_id: &str, reference: &str) -> Result<Option<Row>, ConnectorError> {
        self.sql
            .run(|db| {
                db.query_opt(
                    "SELECT merchant_reference, confirmation, amount FROM biller_simulations WHERE biller_id = $1 AND account_reference = $2",
                    sql_params![biller_id, reference],
                )
            })
            .map_err(|e| ConnectorError(e.to_string()))
    }
}

impl Biller for BillerSimulator {
    fn lookup(&self, biller_id: &str, reference: &str) -> Result<Option<Bill>, ConnectorError> {
        let seed = Self::seed(reference);
        let holder_masked = HOLDERS[(seed % HOLDERS.len() as i64) as usize].to_string();
        // Due ten days from now, as a date.
        let due_seconds = self.clock.now().as_nanos() / NANOS_PER_SECOND + 10 * 86_400;
        let (y, m, d) = coffer_core::time::civil_from_days(due_seconds.div_euclid(86_400));
        let due_date = format!("{y:04}-{m:02}-{d:02}");
        let paid = |holder_masked| Bill {
            amount_due: 0,
            due_date: due_date.clone(),
            holder_masked,
            paid: true,
        };
        match Self::last4(reference) {
            "0000" => return Ok(None),
            "0001" => return Ok(Some(paid(holder_masked))),
            "0503" => return Err(ConnectorError("biller unavailable".into())),
            _ => {}
        }
        if self.paid(biller_id, reference)?.is_some() {
            return Ok(Some(paid(holder_masked)));
        }
        Ok(Some(Bill {
            // 50.00 to 499.99.
            amount_due: 5_000 + seed % 45_000,
            due_date: due_date.clone(),
            holder_masked,
            paid: false,
        }))
    }

    fn pay(
        &self,
        biller_id: &str,
        reference: &str,
        merchant_reference: &str,
        amount: Amount,
    ) -> Result<PaymentAnswer, ConnectorError> {
        let storage = |e: StoreError| ConnectorError(e.to_string());
        // The same payment again: the same answer.
        if let Some(row) = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT confirmation FROM biller_simulations WHERE merchant_reference = $1",
                    sql_params![merchant_reference],
                )
            })
            .map_err(storage)?
        {
            return Ok(PaymentAnswer::Paid {
                confirmation: row.text(0).map_err(storage)?,
            });
        }
        if Self::last4(reference) == "0504" {
            return Err(ConnectorError("biller timed out".into()));
        }
        let Some(bill) = self.lookup(biller_id, reference)? else {
            return Ok(PaymentAnswer::Refused {
                reason: "no_bill_due".into(),
            });
        };
        if bill.paid {
            return Ok(PaymentAnswer::Refused {
                reason: "bill_already_paid".into(),
            });
        }
        let partial = self
            .sql
            .run(|db| crate::biller_catalogue::current(db))
            .map_err(|e| ConnectorError(e.to_string()))?
            .1
            .iter()
            .any(|e| e.info.id == biller_id && e.info.partial_payment);
        let minor = amount.minor_units();
        if minor > bill.amount_due || (!partial && minor != bill.amount_due) {
            return Ok(PaymentAnswer::Refused {
                reason: "amount_mismatch".into(),
            });
        }
        let confirmation = {
            let mut bytes = [0u8; 6];
            rand::rng().fill_bytes(&mut bytes);
            format!("BP{}", hex::encode_upper(bytes))
        };
        let now = self.clock.now().as_nanos();
        let inserted = self
            .sql
            .run(|db| {
                db.execute(
                    "INSERT INTO biller_simulations (biller_id, account_reference, merchant_reference, amount, confirmation, paid_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    sql_params![biller_id, reference, merchant_reference, minor, confirmation.as_str(), now],
                )
            })
            .map_err(storage)?;
        if inserted == 1 {
            Ok(PaymentAnswer::Paid { confirmation })
        } else {
            // Someone paid this bill a moment ago (or this very payment, racing).
            self.pay(biller_id, reference, merchant_reference, amount)
                .or_else(|_| {
                    Ok(PaymentAnswer::Refused {
                        reason: "bill_already_paid".into(),
                    })
                })
        }
    }

    fn status(&self, merchant_reference: &str) -> Result<PaymentStatus, ConnectorError> {
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT confirmation FROM biller_simulations WHERE merchant_reference = $1",
                    sql_params![merchant_reference],
                )
            })
            .map_err(|e| ConnectorError(e.to_string()))?;
        Ok(match row {
            Some(row) => PaymentStatus::Paid {
                confirmation: row.text(0).map_err(|e| ConnectorError(e.to_string()))?,
            },
            None => PaymentStatus::Unknown,
        })
    }
}

// ---- the service -------------------------------------------------------------------

/// Settings, from configuration.
#[derive(Debug, Clone)]
pub struct BillPolicy {
    /// Payments of at least this much (minor units) need a step-up bound to
    /// the amount and `biller:<id>:<reference>`.
    pub step_up_threshold: i64,
    /// A payment the biller did not answer is asked about after this long.
    pub status_query_after_ms: i64,
    /// Holds live this long at most; far longer than a biller takes.
    pub hold_timeout_ms: u64,
    /// Daily limits reset at midnight at this offset from UTC (China: +8 h).
    pub limit_day_utc_offset_seconds: i64,
}

impl Default for BillPolicy {
    fn default() -> BillPolicy {
        BillPolicy {
            step_up_threshold: 200_000,
            status_query_after_ms: 60_000,
            hold_timeout_ms: 7 * 24 * 3600 * 1000,
            limit_day_utc_offset_seconds: 8 * 3600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillState {
    Pending,
    Succeeded,
    Failed,
}

impl BillState {
    pub fn as_str(self) -> &'static str {
        match self {
            BillState::Pending => "pending",
            BillState::Succeeded => "succeeded",
            BillState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<BillState> {
        match text {
            "pending" => Some(BillState::Pending),
            "succeeded" => Some(BillState::Succeeded),
            "failed" => Some(BillState::Failed),
            _ => None,
        }
    }

    fn activity(self) -> ActivityStatus {
        match self {
            BillState::Pending => ActivityStatus::Pending,
            BillState::Succeeded => ActivityStatus::Succeeded,
            BillState::Failed => ActivityStatus::Failed,
        }
    }
}

/// A bill payment as the customer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillPaymentView {
    pub id: String,
    pub biller_id: String,
    /// Only the last four digits.
    pub account_reference_masked: String,
    pub holder_masked: String,
    pub amount: i64,
    pub currency: String,
    pub state: BillState,
    pub reason: Option<String>,
    /// The biller's confirmation number, once paid.
    pub confirmation: Option<String>,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BillError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no biller with this id; see GET /v1/me/billers")]
    UnknownBiller,
    #[error("no bill is due on this account")]
    NoBillDue,
    #[error("this bill is already paid")]
    AlreadyPaid,
    #[error("the amount must be {expected} (the amount due){}", if *.partial { " or less" } else { "" })]
    AmountMismatch { expected: i64, partial: bool },
    #[error("no such bill payment")]
    NotFound,
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
    #[error("this payment needs a step-up verification bound to its amount and bill")]
    StepUpRequired,
    #[error("the biller is unavailable; try again shortly")]
    BillerUnavailable(ConnectorError),
    #[error("the ledger refused: {0}")]
    Rejected(Rejection),
    #[error("the ledger: {0}")]
    Engine(#[from] EngineError),
    #[error("identity: {0}")]
    Identity(IdentityError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("audit: {0}")]
    Audit(#[from] coffer_audit::AuditError),
    #[error("{0}")]
    Internal(String),
}

impl From<IdentityError> for BillError {
    fn from(error: IdentityError) -> BillError {
        match error {
            IdentityError::StepUpRequired => BillError::StepUpRequired,
            IdentityError::Store(e) => BillError::Store(e),
            other => BillError::Identity(other),
        }
    }
}

impl BillError {
    pub fn code(&self) -> &'static str {
        match self {
            BillError::Invalid { .. } => "invalid_field",
            BillError::UnknownBiller => "unknown_biller",
            BillError::NoBillDue => "no_bill_due",
            BillError::AlreadyPaid => "bill_already_paid",
            BillError::AmountMismatch { .. } => "amount_mismatch",
            BillError::NotFound => "not_found",
            BillError::KeyReused => "idempotency_key_reused",
            BillError::LimitExceeded { .. } => "limit_exceeded",
            BillError::InsufficientFunds => "insufficient_funds",
            BillError::StepUpRequired => "step_up_required",
            BillError::BillerUnavailable(_) => "biller_unavailable",
            BillError::Rejected(rejection) => rejection.code(),
            BillError::Engine(error) => error.code(),
            BillError::Identity(error) => error.code(),
            BillError::Store(_) | BillError::Audit(_) | BillError::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            BillError::Invalid { field, .. } => Some(field),
            BillError::UnknownBiller => Some("biller_id"),
            BillError::NoBillDue | BillError::AlreadyPaid => Some("account_reference"),
            BillError::AmountMismatch { .. }
            | BillError::LimitExceeded { .. }
            | BillError::InsufficientFunds => Some("amount"),
            BillError::StepUpRequired => Some("step_up_challenge_id"),
            BillError::KeyReused => Some("Idempotency-Key"),
            _ => None,
        }
    }
}

/// A payment as the customer asks for it.
#[derive(Debug, Clone)]
pub struct BillPaymentRequest {
    pub biller_id: String,
    pub account_reference: String,
    pub amount: i64,
    pub currency: String,
    pub step_up_challenge_id: Option<String>,
}

const SELECT_PAYMENT: &str = "SELECT id, biller_id, account_reference, holder_masked, amount, currency, state, reason, confirmation, created_at, resolved_at, \
     customer_id, stage, request_hash, limit_day, limit_month FROM bill_payments";

struct Record {
    view: BillPaymentView,
    reference: String,
    customer_id: String,
    stage: String,
    request_hash: String,
    limit_day: Option<i64>,
    limit_month: Option<i64>,
}

fn record(row: &Row) -> Result<Record, BillError> {
    let reference = row.text(2)?;
    Ok(Record {
        view: BillPaymentView {
            id: row.text(0)?,
            biller_id: row.text(1)?,
            account_reference_masked: mask_reference(&reference),
            holder_masked: row.text(3)?,
            amount: row.int(4)?,
            currency: row.text(5)?,
            state: BillState::parse(&row.text(6)?)
                .ok_or_else(|| BillError::Store(StoreError::Corrupt("bill state".into())))?,
            reason: row.opt_text(7)?,
            confirmation: row.opt_text(8)?,
            created_at: row.int(9)?,
            resolved_at: row.opt_int(10)?,
        },
        reference,
        customer_id: row.text(11)?,
        stage: row.text(12)?,
        request_hash: row.text(13)?,
        limit_day: row.opt_int(14)?,
        limit_month: row.opt_int(15)?,
    })
}

fn internal(error: impl std::fmt::Display) -> BillError {
    BillError::Internal(error.to_string())
}

fn ident(text: &str) -> Result<Identifier, BillError> {
    Identifier::parse(text).map_err(|e| internal(format!("identifier {text}: {e}")))
}

fn currency() -> Result<Currency, BillError> {
    Currency::parse(BILL_CURRENCY).map_err(internal)
}

pub struct Bills {
    sql: Arc<SqlStore>,
    engine: Arc<Engine>,
    reader: Arc<dyn LedgerReader>,
    identity: Arc<Identity>,
    biller: Arc<dyn Biller>,
    clock: Arc<dyn Clock>,
    policy: BillPolicy,
}

impl Bills {
    pub fn new(
        sql: Arc<SqlStore>,
        engine: Arc<Engine>,
        reader: Arc<dyn LedgerReader>,
        identity: Arc<Identity>,
        biller: Arc<dyn Biller>,
        clock: Arc<dyn Clock>,
        policy: BillPolicy,
    ) -> Bills {
        Bills {
            sql,
            engine,
            reader,
            identity,
            biller,
            clock,
            policy,
        }
    }

    pub fn policy(&self) -> &BillPolicy {
        &self.policy
    }

    fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    /// Opens the biller settlement account (idempotent); call once at start.
    pub fn open_accounts(&self) -> Result<(), BillError> {
        let spec = AccountSpec {
            id: ident(BILLER_SETTLEMENT_ACCOUNT)?,
            currency: currency()?,
            kind: AccountKind::Liability,
            constraint: BalanceConstraint::None,
            owner: ident("bank")?,
        };
        match self.engine.execute_blocking(Command::OpenAccount(spec))? {
            Outcome::Account(Ok(_)) => Ok(()),
            Outcome::Account(Err(rejection)) => Err(BillError::Rejected(rejection)),
            Outcome::Transfers(_) => Err(internal("unexpected outcome")),
        }
    }

    /// An enabled biller of the catalogue in force and the reference as
    /// its digits.
    fn parse(&self, biller_id: &str, reference: &str) -> Result<(BillerInfo, String), BillError> {
        let info = self
            .sql
            .run(|db| crate::biller_catalogue::enabled(db, biller_id))?
            .ok_or(BillError::UnknownBiller)?;
        let reference = info
            .parse_reference(reference)
            .map_err(|message| BillError::Invalid {
                field: "account_reference",
                message,
            })?;
        Ok((info, reference))
    }

    /// The catalogue in force, disabled billers included (staff view).
    pub fn catalogue(&self) -> Result<Vec<crate::biller_catalogue::CatalogueEntry>, BillError> {
        Ok(self.sql.run(|db| crate::biller_catalogue::current(db))?.1)
    }

    /// An enabled biller of the catalogue in force.
    pub fn enabled_biller(&self, biller_id: &str) -> Result<BillerInfo, BillError> {
        self.sql
            .run(|db| crate::biller_catalogue::enabled(db, biller_id))?
            .ok_or(BillError::UnknownBiller)
    }

    /// The bill due on an account.
    pub fn lookup(&self, biller_id: &str, reference: &str) -> Result<Bill, BillError> {
        let (info, reference) = self.parse(biller_id, reference)?;
        self.biller
            .lookup(&info.id, &reference)
            .map_err(BillError::BillerUnavailable)?
            .ok_or(BillError::NoBillDue)
    }

    fn load(&self, payment_id: &str) -> Result<Option<Record>, BillError> {
        self.sql
            .run(|db| {
                db.query_opt(
                    &format!("{SELECT_PAYMENT} WHERE id = $1"),
                    sql_params![payment_id],
                )
            })?
            .map(|row| record(&row))
            .transpose()
    }

    fn reload(&self, payment_id: &str) -> Result<Record, BillError> {
        self.load(payment_id)?.ok_or(BillError::NotFound)
    }

    /// A customer's bill payment.
    pub fn get(&self, customer_id: &str, payment_id: &str) -> Result<BillPaymentView, BillError> {
        match self.load(payment_id)? {
            Some(found) if found.customer_id == customer_id => Ok(found.view),
            _ => Err(BillError::NotFound),
        }
    }

    fn existing(&self, customer_id: &str, client: &ClientKey) -> Result<Option<Record>, BillError> {
        let Some(row) = self.sql.run(|db| {
            db.query_opt(
                &format!("{SELECT_PAYMENT} WHERE customer_id = $1 AND client_key = $2"),
                sql_params![customer_id, client.key.as_str()],
            )
        })?
        else {
            return Ok(None);
        };
        let found = record(&row)?;
        if found.request_hash != client.request_hash {
            return Err(BillError::KeyReused);
        }
        Ok(Some(found))
    }

    /// Pays a bill: succeeded with the biller's confirmation number, failed
    /// with a reason, or pending while the biller has not answered.
    pub fn pay(
        &self,
        customer_id: &str,
        client: &ClientKey,
        request: &BillPaymentRequest,
        ip: &str,
    ) -> Result<BillPaymentView, BillError> {
        if let Some(existing) = self.existing(customer_id, client)? {
            return self.answer(self.advance(existing)?);
        }
        let (info, reference) = self.parse(&request.biller_id, &request.account_reference)?;
        if request.currency != BILL_CURRENCY {
            return Err(BillError::Invalid {
                field: "currency",
                message: format!("bills are paid in {BILL_CURRENCY}"),
            });
        }
        let amount = Amount::new(request.amount).map_err(|_| BillError::Invalid {
            field: "amount",
            message: "a positive amount in minor units".into(),
        })?;
        let minor = amount.minor_units();
        let tier = self.identity.customer(customer_id)?.tier;
        let limits = self.identity.limits_for(customer_id, tier)?;
        if minor > limits.per_payment {
            return Err(BillError::LimitExceeded {
                limit: "per_payment",
                max: limits.per_payment,
                available: limits.per_payment,
            });
        }
        // Ask the biller first: nothing is recorded or held for a bill that
        // is not due, already paid, or of another amount.
        let bill = self
            .biller
            .lookup(&info.id, &reference)
            .map_err(BillError::BillerUnavailable)?
            .ok_or(BillError::NoBillDue)?;
        if bill.paid {
            return Err(BillError::AlreadyPaid);
        }
        if minor > bill.amount_due || (!info.partial_payment && minor != bill.amount_due) {
            return Err(BillError::AmountMismatch {
                expected: bill.amount_due,
                partial: info.partial_payment,
            });
        }
        crate::fx::open_wallet(&self.engine, customer_id, currency()?).map_err(|e| match e {
            crate::fx::EngineOrRejection::Engine(e) => BillError::Engine(e),
            crate::fx::EngineOrRejection::Rejected(r) => BillError::Rejected(r),
            crate::fx::EngineOrRejection::Internal(e) => BillError::Internal(e),
        })?;
        let now = self.now();
        let periods = crate::limits::periods(now, self.policy.limit_day_utc_offset_seconds);
        let payment_id = {
            let mut bytes = [0u8; 8];
            rand::rng().fill_bytes(&mut bytes);
            format!("bil_{}", hex::encode(bytes))
        };
        let counterparty = info.display_name();
        let masked = mask_reference(&reference);
        let inserted = self.sql.transaction(|db| -> Result<bool, BillError> {
            if minor >= self.policy.step_up_threshold {
                self.identity.consume_step_up(
                    db,
                    customer_id,
                    request.step_up_challenge_id.as_deref().unwrap_or(""),
                    &StepUpOperation {
                        kind: "bill_payment".into(),
                        amount: minor,
                        currency: BILL_CURRENCY.into(),
                        payee: format!("biller:{}:{reference}", info.id),
                    },
                )?;
            }
            // Bills count against the tier's daily and monthly limits like
            // every other payment, reserved by conditional update here.
            for (span, period, max, name) in [
                ("bill_payment.day", periods.day, limits.daily, "daily"),
                ("bill_payment.month", periods.month, limits.monthly, "monthly"),
            ] {
                crate::limits::reserve(db, customer_id, span, period, minor, max, name).map_err(
                    |e| match e {
                        crate::limits::LimitError::Exceeded(e) => BillError::LimitExceeded {
                            limit: e.limit,
                            max: e.max,
                            available: e.available,
                        },
                        crate::limits::LimitError::Store(e) => BillError::Store(e),
                    },
                )?;
            }
            let inserted = db.execute(
                "INSERT INTO bill_payments (id, customer_id, client_key, request_hash, biller_id, account_reference, holder_masked, amount, currency, \
                 state, stage, reason, confirmation, created_at, updated_at, resolved_at, check_at, limit_day, limit_month) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 'recorded', NULL, NULL, $10, $10, NULL, $11, $12, $13) ON CONFLICT DO NOTHING",
                sql_params![
                    payment_id.as_str(),
                    customer_id,
                    client.key.as_str(),
                    client.request_hash.as_str(),
                    &*info.id,
                    reference.as_str(),
                    bill.holder_masked.as_str(),
                    minor,
                    BILL_CURRENCY,
                    now,
                    now + self.policy.status_query_after_ms * NANOS_PER_MILLI,
                    periods.day,
                    periods.month
                ],
            )?;
            if inserted != 1 {
                // Rolls back the step-up consumption and the reservations.
                return Err(BillError::KeyReused);
            }
            activity::record(
                db,
                &activity::NewActivity {
                    customer_id,
                    kind: ActivityKind::BillPayment,
                    source_id: &payment_id,
                    direction: Direction::Out,
                    status: ActivityStatus::Pending,
                    reason: None,
                    counterparty: &counterparty,
                    category: Category::Bills,
                    reference: &format!("{} {masked}", info.category.as_str()),
                    amount: minor,
                    currency: BILL_CURRENCY,
                    fee: 0,
                    fx: None,
                    at: now,
                },
            )?;
            let actor = coffer_audit::customer_actor(customer_id);
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: &actor,
                    action: "bill_payment_started",
                    subject: Some(customer_id),
                    ip,
                    outcome: AuditOutcome::Ok,
                    detail: &format!("{payment_id} {minor} {} {masked}", info.id),
                },
            )?;
            Ok(true)
        });
        match inserted {
            Ok(_) => {}
            Err(BillError::KeyReused) => {
                // The same key raced in from another request: answer with that one.
                let existing = self
                    .existing(customer_id, client)?
                    .ok_or(BillError::NotFound)?;
                return self.answer(self.advance(existing)?);
            }
            Err(error) => return Err(error),
        }
        self.answer(self.advance(self.reload(&payment_id)?)?)
    }

    /// Refused for want of money: an error, as a withdrawal's is (the failed
    /// record stays in history).
    fn answer(&self, current: Record) -> Result<BillPaymentView, BillError> {
        if current.view.state == BillState::Failed
            && current.view.reason.as_deref() == Some("insufficient_funds")
        {
            return Err(BillError::InsufficientFunds);
        }
        Ok(current.view)
    }

    /// Carries a pending payment as far as it goes now. Safe to repeat.
    fn advance(&self, mut current: Record) -> Result<Record, BillError> {
        if current.view.state != BillState::Pending {
            return Ok(current);
        }
        let id = current.view.id.clone();
        if current.stage == "recorded" {
            match self.place_hold(&current)? {
                Ok(()) => self.set_stage(&id, "recorded", "held")?,
                Err(rejection) => {
                    let reason = match rejection {
                        Rejection::InsufficientFunds => "insufficient_funds",
                        other => other.code(),
                    };
                    self.finish(&current, BillState::Failed, Some(reason), None)?;
                }
            }
            current = self.reload(&id)?;
        }
        if current.stage == "held" && current.view.state == BillState::Pending {
            // Marked before asking: after a crash the resolver asks the
            // biller by reference instead of paying twice.
            self.set_stage(&id, "held", "submitted")?;
            let amount = Amount::new(current.view.amount).map_err(internal)?;
            match self
                .biller
                .pay(&current.view.biller_id, &current.reference, &id, amount)
            {
                Ok(PaymentAnswer::Paid { confirmation }) => {
                    self.settle(&id, Ok(&confirmation))?;
                }
                Ok(PaymentAnswer::Refused { reason }) => {
                    self.settle(&id, Err(&reason))?;
                }
                Err(error) => {
                    tracing::warn!(payment = %id, %error, "biller did not answer; the resolver will ask");
                }
            }
            current = self.reload(&id)?;
        }
        Ok(current)
    }

    fn set_stage(&self, payment_id: &str, from: &str, to: &str) -> Result<(), BillError> {
        let now = self.now();
        self.sql.run(|db| {
            db.execute(
                "UPDATE bill_payments SET stage = $3, updated_at = $4 WHERE id = $1 AND stage = $2",
                sql_params![payment_id, from, to, now],
            )
        })?;
        Ok(())
    }

    fn execute_one(&self, command: TransferCommand) -> Result<Result<(), Rejection>, BillError> {
        match self.engine.execute_blocking(Command::Transfers {
            transfers: vec![command],
            linked: false,
        })? {
            Outcome::Transfers(results) => match results.into_iter().next() {
                Some(Ok(_)) => Ok(Ok(())),
                Some(Err(rejection)) => Ok(Err(rejection)),
                None => Err(internal("no result")),
            },
            Outcome::Account(_) => Err(internal("unexpected outcome")),
        }
    }

    fn metadata(current: &Record) -> Result<Metadata, BillError> {
        let mut entries = BTreeMap::new();
        entries.insert("bill_payment_id".to_string(), current.view.id.clone());
        entries.insert("biller".to_string(), current.view.biller_id.clone());
        Metadata::new(entries).map_err(internal)
    }

    fn place_hold(&self, current: &Record) -> Result<Result<(), Rejection>, BillError> {
        self.execute_one(TransferCommand {
            id: ident(&format!("bill:{}", current.view.id))?,
            op: TransferOp::Hold {
                debit: ident(&wallet_account_id(&current.customer_id, BILL_CURRENCY))?,
                credit: ident(BILLER_SETTLEMENT_ACCOUNT)?,
                amount: Amount::new(current.view.amount).map_err(internal)?,
                currency: currency()?,
                timeout_ms: self.policy.hold_timeout_ms,
            },
            code: Code::parse("bill.payment").map_err(internal)?,
            metadata: Self::metadata(current)?,
        })
    }

    /// Resolves a submitted payment with the biller's answer (`Ok`:
    /// confirmation number; `Err`: refusal reason): captures or releases
    /// the hold, then sets the record from what the ledger did.
    fn settle(&self, payment_id: &str, answer: Result<&str, &str>) -> Result<(), BillError> {
        let current = self.reload(payment_id)?;
        if current.view.state != BillState::Pending {
            return Ok(());
        }
        let hold = ident(&format!("bill:{payment_id}"))?;
        let (suffix, op, code) = match answer {
            Ok(_) => (
                "capture",
                TransferOp::Capture {
                    hold: hold.clone(),
                    amount: None,
                },
                "bill.capture",
            ),
            Err(_) => (
                "release",
                TransferOp::Release { hold: hold.clone() },
                "bill.release",
            ),
        };
        let result = self.execute_one(TransferCommand {
            id: ident(&format!("bill:{payment_id}:{suffix}"))?,
            op,
            code: Code::parse(code).map_err(internal)?,
            metadata: Self::metadata(&current)?,
        })?;
        let (state, reason, confirmation) = match (result, answer) {
            (Ok(()), Ok(confirmation)) => (BillState::Succeeded, None, Some(confirmation)),
            (Ok(()), Err(reason)) => (BillState::Failed, Some(reason.to_string()), None),
            // Resolved before (a racing resolver, or the hold's expiry): the
            // hold's final state is the truth.
            (Err(Rejection::HoldNotPending | Rejection::HoldExpired), _) => {
                match self.reader.hold(&hold)?.map(|h| h.state) {
                    Some(HoldState::Captured) => (BillState::Succeeded, None, answer.ok()),
                    Some(HoldState::Released) => {
                        (BillState::Failed, Some("released".to_string()), None)
                    }
                    Some(HoldState::Expired) => {
                        (BillState::Failed, Some("expired".to_string()), None)
                    }
                    Some(HoldState::Pending) | None => {
                        return Err(internal(format!(
                            "hold {hold} neither pending nor resolved"
                        )))
                    }
                }
            }
            (Err(rejection), _) => return Err(BillError::Rejected(rejection)),
        };
        self.finish(&current, state, reason.as_deref(), confirmation)
    }

    /// Writes the final state once, with its activity row and an audit record.
    fn finish(
        &self,
        current: &Record,
        state: BillState,
        reason: Option<&str>,
        confirmation: Option<&str>,
    ) -> Result<(), BillError> {
        let now = self.now();
        let view = &current.view;
        self.sql.transaction(|db| -> Result<(), BillError> {
            let changed = db.execute(
                "UPDATE bill_payments SET state = $2, stage = 'resolved', reason = $3, confirmation = $4, resolved_at = $5, updated_at = $5 \
                 WHERE id = $1 AND state = 'pending'",
                sql_params![view.id.as_str(), state.as_str(), reason, confirmation, now],
            )?;
            if changed != 1 {
                return Ok(());
            }
            activity::set_status(
                db,
                ActivityKind::BillPayment,
                &view.id,
                state.activity(),
                reason,
                now,
            )?;
            if state == BillState::Failed {
                for (span, period) in [
                    ("bill_payment.day", current.limit_day),
                    ("bill_payment.month", current.limit_month),
                ] {
                    if let Some(period) = period {
                        crate::limits::release(db, &current.customer_id, span, period, view.amount)?;
                    }
                }
            }
            if state == BillState::Succeeded {
                let amount = crate::alerts::minor(view.amount, &view.currency);
                let account = &view.account_reference_masked;
                let biller = &view.biller_id;
                crate::alerts::send(
                    &self.identity,
                    db,
                    &current.customer_id,
                    crate::alerts::Moved {
                        template: "bill_payment",
                        category: coffer_notify::preferences::Category::PaymentSent,
                        source_id: &view.id,
                        en: (
                            "Bill paid",
                            format!("You paid {amount} to {biller} for account {account}."),
                        ),
                        zh: (
                            "缴费成功",
                            format!("您已为账户 {account} 向 {biller} 缴费 {amount}。"),
                        ),
                    },
                )?;
            }
            let action = format!("bill_payment_{}", state.as_str());
            let detail = format!("{} {}", view.id, reason.or(confirmation).unwrap_or(""));
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
            Ok(())
        })
    }

    /// One pass of the resolver: carries forward payments a crash left
    /// between steps and asks the biller about those it did not answer.
    pub fn resolve_pending(&self) -> Result<usize, BillError> {
        let now = self.now();
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT id FROM bill_payments WHERE state = 'pending' AND check_at <= $1 ORDER BY check_at, id LIMIT 100",
                sql_params![now],
            )
        })?;
        for row in &rows {
            let payment_id = row.text(0)?;
            if let Err(error) = self.resolve_one(&payment_id) {
                tracing::warn!(payment = %payment_id, %error, "could not resolve yet");
            }
            let next = now + self.policy.status_query_after_ms * NANOS_PER_MILLI;
            self.sql.run(|db| {
                db.execute(
                    "UPDATE bill_payments SET check_at = $2 WHERE id = $1 AND state = 'pending'",
                    sql_params![payment_id.as_str(), next],
                )
            })?;
        }
        Ok(rows.len())
    }

    fn resolve_one(&self, payment_id: &str) -> Result<(), BillError> {
        let current = self.reload(payment_id)?;
        if current.view.state != BillState::Pending {
            return Ok(());
        }
        if current.stage != "submitted" {
            self.advance(current)?;
            return Ok(());
        }
        match self
            .biller
            .status(payment_id)
            .map_err(BillError::BillerUnavailable)?
        {
            PaymentStatus::Paid { confirmation } => self.settle(payment_id, Ok(&confirmation)),
            // The biller never got it (or timed out before taking it).
            PaymentStatus::Unknown => self.settle(payment_id, Err("timeout")),
        }
    }
}
