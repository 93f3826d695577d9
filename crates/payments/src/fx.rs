//! Multi-currency wallets and conversions between them.
//!
//! A customer holds one wallet per currency (`wallet:<customer>:<ccy>`,
//! opened on request for the currencies the bank enables). A conversion
//! starts with a **quote**: the mid rate from the rate source (a connector
//! trait; `SimulatedRateSource` stands in), the bank's spread in basis
//! points, both amounts, and an expiry (30 s by default). Converting within
//! the quote's life moves money as **two transfers in one linked ledger
//! batch**: customer's sell wallet → the bank's FX position in that
//! currency, and the bank's FX position in the other currency → the
//! customer's buy wallet. Both or neither happen.
//!
//! **Rates are integers**: a mid rate is the price of one major unit of the
//! sell currency in major units of the buy currency, times `RATE_SCALE`
//! (10^8). No float is ever involved.
//!
//! **Rounding rule** (always in the bank's favour, by less than one minor
//! unit): the customer's rate is `mid × (10 000 − spread_bps) / 10 000`,
//! kept as an exact fraction. Selling a fixed amount, the customer receives
//! the exact converted amount rounded **down** to a minor unit of the buy
//! currency; buying a fixed amount, the customer pays the exact cost rounded
//! **up** to a minor unit of the sell currency. The displayed `rate` is the
//! customer's rate truncated to 8 decimals, for reading only; amounts come
//! from the exact fraction.
//!
//! A quote is used at most once: its row moves `open` → `converting` →
//! `converted` (or `failed`) by conditional updates, the conversion's
//! Idempotency-Key is stored with it, and the ledger transfer ids derive
//! from the quote id (`fx:<quote>:sell`, `fx:<quote>:buy`), so a retry
//! after a crash re-runs the same batch and the ledger answers with the
//! original. `resolve_pending` finishes a conversion a crash left behind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use coffer_app::{Engine, EngineError};
use coffer_audit::{Entry, Outcome as AuditOutcome};
use coffer_core::{Amount, Clock, Code, Currency, CurrencyRegistry, Identifier};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, Metadata, Outcome, Rejection,
    TransferCommand, TransferOp,
};
use coffer_store::sql::{Row, SqlStore};
use coffer_store::{sql_params, LedgerReader, StoreError};
use rand::RngCore;

use crate::activity::{self, ActivityKind, ActivityStatus, Category, Direction, FxLeg};
use crate::connectors::ConnectorError;
use crate::funding::{wallet_account_id, ClientKey};

/// Rates carry 8 decimal places: `712_340_000` is 7.1234.
pub const RATE_SCALE: i64 = 100_000_000;
/// 100 % in basis points.
pub const BASIS_POINTS: i64 = 10_000;
/// A spread at or above this is refused as a configuration error (50 %).
pub const SPREAD_BPS_MAX: i64 = 5_000;
/// Largest amount (minor units) a quote is computed for: keeps every
/// intermediate product far inside `i128`.
pub const FX_AMOUNT_MAX: i64 = 1_000_000_000_000_000;
/// A conversion left `converting` this long is finished by the resolver.
pub const CONVERSION_RESUME_AFTER_MS: i64 = 5_000;
const NANOS_PER_MILLI: i64 = 1_000_000;

/// The ledger account of the bank's position in `currency`.
pub fn position_account_id(currency: &str) -> String {
    format!("bank:fx-position:{}", currency.to_lowercase())
}

/// Settings, from configuration.
#[derive(Debug, Clone)]
pub struct FxPolicy {
    /// The bank's margin on the mid rate, in basis points (50 = 0.5 %).
    pub spread_bps: i64,
    /// How long a quote can be converted.
    pub quote_ttl_ms: i64,
    /// Currencies customers may hold (ISO 4217 codes known to the registry).
    pub enabled_currencies: Vec<String>,
}

impl Default for FxPolicy {
    fn default() -> FxPolicy {
        FxPolicy {
            spread_bps: 50,
            quote_ttl_ms: 30_000,
            enabled_currencies: ["CNY", "USD", "HKD", "EUR", "JPY", "GBP"]
                .into_iter()
                .map(str::to_string)
                .collect(),
        }
    }
}

// ---- the arithmetic ----------------------------------------------------------------

/// Why an amount could not be converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionError {
    /// Outside 1..=FX_AMOUNT_MAX, or a rate or spread out of range.
    OutOfRange,
    /// The other side would be less than one minor unit.
    TooSmall,
}

fn pow10(exponent: u8) -> i128 {
    10i128.pow(u32::from(exponent))
}

/// The exact rate as a fraction (numerator, denominator) of minor units of
/// the buy currency per minor unit of the sell currency, spread included.
fn customer_fraction(
    mid_scaled: i64,
    spread_bps: i64,
    sell_exponent: u8,
    buy_exponent: u8,
) -> Result<(i128, i128), ConversionError> {
    if mid_scaled <= 0 || !(0..SPREAD_BPS_MAX).contains(&spread_bps) {
        return Err(ConversionError::OutOfRange);
    }
    let numerator = i128::from(mid_scaled)
        .checked_mul(i128::from(BASIS_POINTS - spread_bps))
        .and_then(|n| n.checked_mul(pow10(buy_exponent)))
        .ok_or(ConversionError::OutOfRange)?;
    let denominator = i128::from(RATE_SCALE)
        .checked_mul(i128::from(BASIS_POINTS))
        .and_then(|d| d.checked_mul(pow10(sell_exponent)))
        .ok_or(ConversionError::OutOfRange)?;
    Ok((numerator, denominator))
}

/// What the customer receives (buy minor units) for `sell` minor units:
/// the exact value rounded down.
pub fn buy_for_sell(
    sell: i64,
    mid_scaled: i64,
    spread_bps: i64,
    sell_exponent: u8,
    buy_exponent: u8,
) -> Result<i64, ConversionError> {
    if !(1..=FX_AMOUNT_MAX).contains(&sell) {
        return Err(ConversionError::OutOfRange);
    }
    let (numerator, denominator) =
        customer_fraction(mid_scaled, spread_bps, sell_exponent, buy_exponent)?;
    let product = i128::from(sell)
        .checked_mul(numerator)
        .ok_or(ConversionError::OutOfRange)?;
    // Both positive: integer division is the floor.
    let buy = product / denominator;
    match i64::try_from(buy) {
        Ok(0) => Err(ConversionError::TooSmall),
        Ok(buy) if buy <= FX_AMOUNT_MAX => Ok(buy),
        _ => Err(ConversionError::OutOfRange),
    }
}

/// What the customer pays (sell minor units) to receive `buy` minor units:
/// the exact cost rounded up.
pub fn sell_for_buy(
    buy: i64,
    mid_scaled: i64,
    spread_bps: i64,
    sell_exponent: u8,
    buy_exponent: u8,
) -> Result<i64, ConversionError> {
    if !(1..=FX_AMOUNT_MAX).contains(&buy) {
        return Err(ConversionError::OutOfRange);
    }
    let (numerator, denominator) =
        customer_fraction(mid_scaled, spread_bps, sell_exponent, buy_exponent)?;
    let product = i128::from(buy)
        .checked_mul(denominator)
        .ok_or(ConversionError::OutOfRange)?;
    // Ceiling of a positive quotient.
    let sell = (product + numerator - 1) / numerator;
    match i64::try_from(sell) {
        Ok(sell) if (1..=FX_AMOUNT_MAX).contains(&sell) => Ok(sell),
        _ => Err(ConversionError::OutOfRange),
    }
}

/// The customer's rate (spread applied) at `RATE_SCALE`, truncated: for display.
pub fn customer_rate_scaled(mid_scaled: i64, spread_bps: i64) -> i64 {
    let rate =
        i128::from(mid_scaled) * i128::from(BASIS_POINTS - spread_bps) / i128::from(BASIS_POINTS);
    i64::try_from(rate).unwrap_or(i64::MAX)
}

/// `712_340_000` → "7.12340000".
pub fn format_rate(scaled: i64) -> String {
    format!("{}.{:08}", scaled / RATE_SCALE, scaled % RATE_SCALE)
}

// ---- the rate source ---------------------------------------------------------------

/// Where mid rates come from: a market-data feed or the bank's treasury.
pub trait RateSource: Send + Sync {
    /// The mid price of one unit of `sell` in units of `buy`, at `RATE_SCALE`.
    fn mid_rate(&self, sell: Currency, buy: Currency) -> Result<i64, ConnectorError>;
}

/// A rate source with fixed mid rates against CNY (cross rates through
/// CNY, rounded to the nearest 10^-8), that can be switched off to test
/// what happens when the feed is down.
pub struct SimulatedRateSource {
    in_cny: BTreeMap<&'static str, i64>,
    available: AtomicBool,
}

/// The simulator's mid rates: one unit of each currency in CNY, at `RATE_SCALE`.
pub const SIMULATED_RATES_IN_CNY: [(&str, i64); 6] = [
    ("CNY", 100_000_000),
    ("USD", 712_340_000),
    ("HKD", 91_230_000),
    ("EUR", 774_560_000),
    ("JPY", 4_712_300),
    ("GBP", 903_120_000),
];

impl Default for SimulatedRateSource {
    fn default() -> SimulatedRateSource {
        SimulatedRateSource {
            in_cny: SIMULATED_RATES_IN_CNY.into_iter().collect(),
            available: AtomicBool::new(true),
        }
    }
}

impl SimulatedRateSource {
    /// Switches the feed off (every request fails) or back on.
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }
}

impl RateSource for SimulatedRateSource {
    fn mid_rate(&self, sell: Currency, buy: Currency) -> Result<i64, ConnectorError> {
        if !self.available.load(Ordering::SeqCst) {
            return Err(ConnectorError("rate source unavailable".into()));
        }
        let sell_cny = self.in_cny.get(sell.as_str()).copied();
        let buy_cny = self.in_cny.get(buy.as_str()).copied();
        let (Some(sell_cny), Some(buy_cny)) = (sell_cny, buy_cny) else {
            return Err(ConnectorError(format!("no rate for {sell}/{buy}")));
        };
        let scaled = i128::from(sell_cny) * i128::from(RATE_SCALE);
        let half = i128::from(buy_cny) / 2;
        i64::try_from((scaled + half) / i128::from(buy_cny))
            .map_err(|_| ConnectorError("rate out of range".into()))
    }
}

// ---- the service -------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum FxError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{currency} is not a currency this bank's wallets hold")]
    CurrencyNotEnabled {
        currency: String,
        field: &'static str,
    },
    #[error("no such quote")]
    QuoteNotFound,
    #[error("this quote has expired; ask for a new one")]
    QuoteExpired,
    #[error("this quote was already used")]
    QuoteUsed,
    #[error("the wallet has insufficient available funds")]
    InsufficientFunds,
    #[error("the exchange rate source is unavailable; try again shortly")]
    RateUnavailable(ConnectorError),
    #[error("this Idempotency-Key was used with a different request")]
    KeyReused,
    #[error("the ledger refused: {0}")]
    Rejected(Rejection),
    #[error("the ledger: {0}")]
    Engine(#[from] EngineError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("audit: {0}")]
    Audit(#[from] coffer_audit::AuditError),
    #[error("{0}")]
    Internal(String),
}

impl FxError {
    fn invalid(field: &'static str, message: impl Into<String>) -> FxError {
        FxError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            FxError::Invalid { .. } => "invalid_field",
            FxError::CurrencyNotEnabled { .. } => "currency_not_enabled",
            FxError::QuoteNotFound => "not_found",
            FxError::QuoteExpired => "quote_expired",
            FxError::QuoteUsed => "quote_already_used",
            FxError::InsufficientFunds => "insufficient_funds",
            FxError::RateUnavailable(_) => "rate_unavailable",
            FxError::KeyReused => "idempotency_key_reused",
            FxError::Rejected(rejection) => rejection.code(),
            FxError::Engine(error) => error.code(),
            FxError::Store(_) | FxError::Audit(_) | FxError::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            FxError::Invalid { field, .. } => Some(field),
            FxError::CurrencyNotEnabled { field, .. } => Some(field),
            FxError::QuoteNotFound | FxError::QuoteExpired | FxError::QuoteUsed => Some("quote_id"),
            FxError::InsufficientFunds => Some("sell_amount"),
            FxError::KeyReused => Some("Idempotency-Key"),
            _ => None,
        }
    }
}

/// A wallet and its balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletView {
    pub account_id: String,
    pub currency: String,
    /// ISO 4217 minor-unit exponent: 2 for CNY, 0 for JPY.
    pub exponent: u8,
    pub posted: i64,
    pub available: i64,
}

/// The fixed side of a quote request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixedSide {
    /// The customer sells exactly this much (minor units of the sell currency).
    Sell(i64),
    /// The customer receives exactly this much (minor units of the buy currency).
    Buy(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteView {
    pub id: String,
    pub sell_currency: String,
    pub buy_currency: String,
    pub sell_amount: i64,
    pub buy_amount: i64,
    pub mid_rate: i64,
    pub spread_bps: i64,
    /// `open`, `converting`, `converted`, `failed`.
    pub state: String,
    pub reason: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub converted_at: Option<i64>,
}

impl QuoteView {
    /// The customer's rate at `RATE_SCALE` (display only).
    pub fn rate(&self) -> i64 {
        customer_rate_scaled(self.mid_rate, self.spread_bps)
    }
}

const SELECT_QUOTE: &str = "SELECT id, sell_currency, buy_currency, sell_amount, buy_amount, mid_rate, spread_bps, state, reason, created_at, expires_at, converted_at, \
     customer_id, conversion_key, conversion_hash FROM fx_quotes";

struct QuoteRecord {
    view: QuoteView,
    customer_id: String,
    conversion_key: Option<String>,
    conversion_hash: Option<String>,
}

fn quote_record(row: &Row) -> Result<QuoteRecord, StoreError> {
    Ok(QuoteRecord {
        view: QuoteView {
            id: row.text(0)?,
            sell_currency: row.text(1)?,
            buy_currency: row.text(2)?,
            sell_amount: row.int(3)?,
            buy_amount: row.int(4)?,
            mid_rate: row.int(5)?,
            spread_bps: row.int(6)?,
            state: row.text(7)?,
            reason: row.opt_text(8)?,
            created_at: row.int(9)?,
            expires_at: row.int(10)?,
            converted_at: row.opt_int(11)?,
        },
        customer_id: row.text(12)?,
        conversion_key: row.opt_text(13)?,
        conversion_hash: row.opt_text(14)?,
    })
}

fn internal(error: impl std::fmt::Display) -> FxError {
    FxError::Internal(error.to_string())
}

fn ident(text: &str) -> Result<Identifier, FxError> {
    Identifier::parse(text).map_err(|e| internal(format!("identifier {text}: {e}")))
}

/// Opens a customer's wallet in `currency` (idempotent: an open wallet is
/// answered as opened).
pub fn open_wallet(
    engine: &Engine,
    customer_id: &str,
    currency: Currency,
) -> Result<Identifier, EngineOrRejection> {
    let wallet = Identifier::parse(&wallet_account_id(customer_id, currency.as_str()))
        .map_err(|e| EngineOrRejection::Internal(e.to_string()))?;
    let owner =
        Identifier::parse(customer_id).map_err(|e| EngineOrRejection::Internal(e.to_string()))?;
    match engine.execute_blocking(Command::OpenAccount(AccountSpec {
        id: wallet.clone(),
        currency,
        kind: AccountKind::Liability,
        constraint: BalanceConstraint::NoOverdraft,
        owner,
    }))? {
        Outcome::Account(Ok(_)) => Ok(wallet),
        Outcome::Account(Err(rejection)) => Err(EngineOrRejection::Rejected(rejection)),
        Outcome::Transfers(_) => Err(EngineOrRejection::Internal("unexpected outcome".into())),
    }
}

/// What opening an account can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineOrRejection {
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Rejected(Rejection),
    #[error("{0}")]
    Internal(String),
}

impl From<EngineOrRejection> for FxError {
    fn from(error: EngineOrRejection) -> FxError {
        match error {
            EngineOrRejection::Engine(e) => FxError::Engine(e),
            EngineOrRejection::Rejected(r) => FxError::Rejected(r),
            EngineOrRejection::Internal(e) => FxError::Internal(e),
        }
    }
}

pub struct Fx {
    sql: Arc<SqlStore>,
    engine: Arc<Engine>,
    reader: Arc<dyn LedgerReader>,
    currencies: Arc<CurrencyRegistry>,
    rates: Arc<dyn RateSource>,
    clock: Arc<dyn Clock>,
    policy: FxPolicy,
    /// Whom to alert of a conversion (`with_alerts`); none in tests of the
    /// arithmetic alone.
    identity: Option<Arc<coffer_identity::Identity>>,
}

impl Fx {
    pub fn new(
        sql: Arc<SqlStore>,
        engine: Arc<Engine>,
        reader: Arc<dyn LedgerReader>,
        currencies: Arc<CurrencyRegistry>,
        rates: Arc<dyn RateSource>,
        clock: Arc<dyn Clock>,
        policy: FxPolicy,
    ) -> Fx {
        Fx {
            sql,
            engine,
            reader,
            currencies,
            rates,
            clock,
            policy,
            identity: None,
        }
    }

    /// Alerts the customer of each conversion, in the transaction that
    /// marks it converted.
    pub fn with_alerts(mut self, identity: Arc<coffer_identity::Identity>) -> Fx {
        self.identity = Some(identity);
        self
    }

    pub fn policy(&self) -> &FxPolicy {
        &self.policy
    }

    fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    /// Opens the bank's FX position account in every enabled currency
    /// (idempotent); call once at start.
    pub fn open_accounts(&self) -> Result<(), FxError> {
        if !(0..SPREAD_BPS_MAX).contains(&self.policy.spread_bps) {
            return Err(internal(format!(
                "fx spread {} bps is outside 0..{SPREAD_BPS_MAX}",
                self.policy.spread_bps
            )));
        }
        for code in &self.policy.enabled_currencies {
            let currency = self.enabled(code)?;
            let spec = AccountSpec {
                id: ident(&position_account_id(code))?,
                currency,
                // The bank's position: credited with what it buys, debited
                // with what it sells; either sign is a normal state.
                kind: AccountKind::Equity,
                constraint: BalanceConstraint::None,
                owner: ident("bank")?,
            };
            match self.engine.execute_blocking(Command::OpenAccount(spec))? {
                Outcome::Account(Ok(_)) => {}
                Outcome::Account(Err(rejection)) => return Err(FxError::Rejected(rejection)),
                Outcome::Transfers(_) => return Err(internal("unexpected outcome")),
            }
        }
        Ok(())
    }

    /// The currency, if the bank enables it and the registry knows it.
    pub fn enabled(&self, code: &str) -> Result<Currency, FxError> {
        let refused = || FxError::CurrencyNotEnabled {
            currency: code.chars().take(12).collect(),
            field: "currency",
        };
        if !self.policy.enabled_currencies.iter().any(|c| c == code) {
            return Err(refused());
        }
        self.currencies.resolve(code).map_err(|_| refused())
    }

    fn exponent(&self, currency: Currency) -> Result<u8, FxError> {
        self.currencies
            .exponent(currency)
            .ok_or_else(|| internal(format!("no exponent for {currency}")))
    }

    /// Opens this customer's wallet in `code`.
    pub fn open_wallet(&self, customer_id: &str, code: &str) -> Result<WalletView, FxError> {
        let currency = self.enabled(code)?;
        open_wallet(&self.engine, customer_id, currency)?;
        self.wallet(customer_id, currency)?
            .ok_or_else(|| internal("wallet vanished"))
    }

    fn wallet(&self, customer_id: &str, currency: Currency) -> Result<Option<WalletView>, FxError> {
        let id = ident(&wallet_account_id(customer_id, currency.as_str()))?;
        let Some(account) = self.reader.account(&id)? else {
            return Ok(None);
        };
        Ok(Some(WalletView {
            account_id: id.to_string(),
            currency: currency.as_str().to_string(),
            exponent: self.exponent(currency)?,
            posted: account.posted(),
            available: account.available(),
        }))
    }

    /// The customer's open wallets, in the order the bank lists its currencies.
    pub fn wallets(&self, customer_id: &str) -> Result<Vec<WalletView>, FxError> {
        let mut wallets = Vec::new();
        for code in &self.policy.enabled_currencies {
            if let Some(wallet) = self.wallet(customer_id, self.enabled(code)?)? {
                wallets.push(wallet);
            }
        }
        Ok(wallets)
    }

    /// Prices a conversion and keeps the price for `quote_ttl_ms`.
    pub fn quote(
        &self,
        customer_id: &str,
        sell_code: &str,
        buy_code: &str,
        fixed: FixedSide,
    ) -> Result<QuoteView, FxError> {
        let for_field = |field: &'static str| {
            move |error: FxError| match error {
                FxError::CurrencyNotEnabled { currency, .. } => {
                    FxError::CurrencyNotEnabled { currency, field }
                }
                other => other,
            }
        };
        let sell = self
            .enabled(sell_code)
            .map_err(for_field("sell_currency"))?;
        let buy = self.enabled(buy_code).map_err(for_field("buy_currency"))?;
        if sell == buy {
            return Err(FxError::invalid(
                "buy_currency",
                "buy and sell currencies must differ",
            ));
        }
        let mid = self
            .rates
            .mid_rate(sell, buy)
            .map_err(FxError::RateUnavailable)?;
        let (sell_exponent, buy_exponent) = (self.exponent(sell)?, self.exponent(buy)?);
        let spread = self.policy.spread_bps;
        let explain = |field: &'static str, error: ConversionError| match error {
            ConversionError::OutOfRange => FxError::invalid(
                field,
                format!("a positive amount in minor units, at most {FX_AMOUNT_MAX}"),
            ),
            ConversionError::TooSmall => FxError::invalid(
                field,
                "too small: the other side would be less than one minor unit",
            ),
        };
        let (sell_amount, buy_amount) = match fixed {
            FixedSide::Sell(amount) => (
                amount,
                buy_for_sell(amount, mid, spread, sell_exponent, buy_exponent)
                    .map_err(|e| explain("sell_amount", e))?,
            ),
            FixedSide::Buy(amount) => (
                sell_for_buy(amount, mid, spread, sell_exponent, buy_exponent)
                    .map_err(|e| explain("buy_amount", e))?,
                amount,
            ),
        };
        let now = self.now();
        let id = {
            let mut bytes = [0u8; 8];
            rand::rng().fill_bytes(&mut bytes);
            format!("fxq_{}", hex::encode(bytes))
        };
        let expires_at =
            now.saturating_add(self.policy.quote_ttl_ms.saturating_mul(NANOS_PER_MILLI));
        self.sql.run(|db| {
            db.execute(
                "INSERT INTO fx_quotes (id, customer_id, sell_currency, buy_currency, sell_amount, buy_amount, mid_rate, spread_bps, \
                 created_at, expires_at, state, conversion_key, conversion_hash, reason, converted_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'open', NULL, NULL, NULL, NULL)",
                sql_params![
                    id.as_str(),
                    customer_id,
                    sell.as_str(),
                    buy.as_str(),
                    sell_amount,
                    buy_amount,
                    mid,
                    spread,
                    now,
                    expires_at
                ],
            )
        })?;
        Ok(self.load(&id)?.ok_or(FxError::QuoteNotFound)?.view)
    }

    fn load(&self, quote_id: &str) -> Result<Option<QuoteRecord>, FxError> {
        Ok(self
            .sql
            .run(|db| {
                db.query_opt(
                    &format!("{SELECT_QUOTE} WHERE id = $1"),
                    sql_params![quote_id],
                )
            })?
            .map(|row| quote_record(&row))
            .transpose()?)
    }

    /// A customer's quote (and its conversion's state).
    pub fn get(&self, customer_id: &str, quote_id: &str) -> Result<QuoteView, FxError> {
        match self.load(quote_id)? {
            Some(found) if found.customer_id == customer_id => Ok(found.view),
            _ => Err(FxError::QuoteNotFound),
        }
    }

    /// Converts at a quote's price, within its life, once.
    pub fn convert(
        &self,
        customer_id: &str,
        client: &ClientKey,
        quote_id: &str,
        ip: &str,
    ) -> Result<QuoteView, FxError> {
        let found = match self.load(quote_id)? {
            Some(found) if found.customer_id == customer_id => found,
            _ => return Err(FxError::QuoteNotFound),
        };
        if found.view.state != "open" {
            return self.resume_own(found, client);
        }
        let now = self.now();
        if now >= found.view.expires_at {
            return Err(FxError::QuoteExpired);
        }
        let sell = self.enabled(&found.view.sell_currency)?;
        let buy = self.enabled(&found.view.buy_currency)?;
        open_wallet(&self.engine, customer_id, sell)?;
        open_wallet(&self.engine, customer_id, buy)?;
        let view = &found.view;
        let claimed = self.sql.transaction(|db| -> Result<bool, FxError> {
            let claimed = db.execute(
                "UPDATE fx_quotes SET state = 'converting', conversion_key = $2, conversion_hash = $3, converted_at = $4 \
                 WHERE id = $1 AND state = 'open' AND expires_at > $4",
                sql_params![quote_id, client.key.as_str(), client.request_hash.as_str(), now],
            )?;
            if claimed != 1 {
                return Ok(false);
            }
            let counterparty = format!("{} → {}", view.sell_currency, view.buy_currency);
            activity::record(
                db,
                &activity::NewActivity {
                    customer_id,
                    kind: ActivityKind::FxConversion,
                    source_id: quote_id,
                    direction: Direction::Exchange,
                    status: ActivityStatus::Pending,
                    reason: None,
                    counterparty: &counterparty,
                    category: Category::Exchange,
                    reference: quote_id,
                    amount: view.sell_amount,
                    currency: &view.sell_currency,
                    fee: 0,
                    fx: Some(FxLeg {
                        amount: view.buy_amount,
                        currency: view.buy_currency.clone(),
                        rate: format_rate(view.rate()),
                    }),
                    at: now,
                },
            )?;
            let actor = coffer_audit::customer_actor(customer_id);
            let detail = format!(
                "{quote_id} {} {} -> {} {}",
                view.sell_amount, view.sell_currency, view.buy_amount, view.buy_currency
            );
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: &actor,
                    action: "fx_conversion_started",
                    subject: Some(customer_id),
                    ip,
                    outcome: AuditOutcome::Ok,
                    detail: &detail,
                },
            )?;
            Ok(true)
        })?;
        let current = self.load(quote_id)?.ok_or(FxError::QuoteNotFound)?;
        if !claimed {
            // Another request took it meanwhile, or it just expired.
            if current.view.state == "open" {
                return Err(FxError::QuoteExpired);
            }
            return self.resume_own(current, client);
        }
        self.execute(current)
    }

    /// A quote no longer open: the same conversion request retried gets its
    /// answer (finishing it if a crash interrupted it); anything else is refused.
    fn resume_own(&self, found: QuoteRecord, client: &ClientKey) -> Result<QuoteView, FxError> {
        if found.conversion_key.as_deref() != Some(client.key.as_str()) {
            return Err(FxError::QuoteUsed);
        }
        if found.conversion_hash.as_deref() != Some(client.request_hash.as_str()) {
            return Err(FxError::KeyReused);
        }
        match found.view.state.as_str() {
            "converting" => self.execute(found),
            "failed" if found.view.reason.as_deref() == Some("insufficient_funds") => {
                Err(FxError::InsufficientFunds)
            }
            _ => Ok(found.view),
        }
    }

    /// Runs the conversion's linked batch (again, harmlessly, after a crash)
    /// and records its outcome.
    fn execute(&self, current: QuoteRecord) -> Result<QuoteView, FxError> {
        let view = &current.view;
        let sell = self.enabled(&view.sell_currency)?;
        let buy = self.enabled(&view.buy_currency)?;
        let amount = |minor: i64| Amount::new(minor).map_err(internal);
        let mut entries = BTreeMap::new();
        entries.insert("quote_id".to_string(), view.id.clone());
        entries.insert("rate".to_string(), format_rate(view.rate()));
        let metadata = Metadata::new(entries).map_err(internal)?;
        let code = Code::parse("fx.conversion").map_err(internal)?;
        let transfers = vec![
            TransferCommand {
                id: ident(&format!("fx:{}:sell", view.id))?,
                op: TransferOp::Post {
                    debit: ident(&wallet_account_id(&current.customer_id, sell.as_str()))?,
                    credit: ident(&position_account_id(sell.as_str()))?,
                    amount: amount(view.sell_amount)?,
                    currency: sell,
                },
                code: code.clone(),
                metadata: metadata.clone(),
            },
            TransferCommand {
                id: ident(&format!("fx:{}:buy", view.id))?,
                op: TransferOp::Post {
                    debit: ident(&position_account_id(buy.as_str()))?,
                    credit: ident(&wallet_account_id(&current.customer_id, buy.as_str()))?,
                    amount: amount(view.buy_amount)?,
                    currency: buy,
                },
                code,
                metadata,
            },
        ];
        let results = match self.engine.execute_blocking(Command::Transfers {
            transfers,
            linked: true,
        })? {
            Outcome::Transfers(results) => results,
            Outcome::Account(_) => return Err(internal("unexpected outcome")),
        };
        // A linked batch fails as a whole; the first refusal says why.
        let refusal = results.iter().find_map(|r| match r {
            Err(Rejection::LinkedTransferFailed) => None,
            Err(rejection) => Some(*rejection),
            Ok(_) => None,
        });
        let (state, status, reason) = match refusal {
            None => ("converted", ActivityStatus::Succeeded, None),
            Some(Rejection::InsufficientFunds) => (
                "failed",
                ActivityStatus::Failed,
                Some("insufficient_funds".to_string()),
            ),
            Some(rejection) => (
                "failed",
                ActivityStatus::Failed,
                Some(rejection.code().to_string()),
            ),
        };
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), FxError> {
            let changed = db.execute(
                "UPDATE fx_quotes SET state = $2, reason = $3, converted_at = $4 WHERE id = $1 AND state = 'converting'",
                sql_params![view.id.as_str(), state, reason.as_deref(), now],
            )?;
            if changed == 1 {
                activity::set_status(
                    db,
                    ActivityKind::FxConversion,
                    &view.id,
                    status,
                    reason.as_deref(),
                    now,
                )?;
                if let (Some(identity), ActivityStatus::Succeeded) = (&self.identity, status) {
                    alert_converted(identity, db, &current.customer_id, view)?;
                }
            }
            Ok(())
        })?;
        let done = self.load(&view.id)?.ok_or(FxError::QuoteNotFound)?;
        match done.view.reason.as_deref() {
            Some("insufficient_funds") => Err(FxError::InsufficientFunds),
            _ => Ok(done.view),
        }
    }

    /// Finishes conversions a crash left `converting`; returns how many.
    pub fn resolve_pending(&self) -> Result<usize, FxError> {
        let before = self.now() - CONVERSION_RESUME_AFTER_MS * NANOS_PER_MILLI;
        let rows = self.sql.run(|db| {
            db.query(
                &format!("{SELECT_QUOTE} WHERE state = 'converting' AND converted_at <= $1 ORDER BY created_at LIMIT 100"),
                sql_params![before],
            )
        })?;
        for row in &rows {
            let record = quote_record(row)?;
            let id = record.view.id.clone();
            match self.execute(record) {
                Ok(_) | Err(FxError::InsufficientFunds) => {}
                Err(error) => {
                    tracing::warn!(quote = %id, %error, "could not finish the conversion yet")
                }
            }
        }
        Ok(rows.len())
    }
}

fn alert_converted(
    identity: &coffer_identity::Identity,
    db: &mut dyn coffer_store::sql::Sql,
    customer_id: &str,
    view: &QuoteView,
) -> Result<(), FxError> {
    let sold = crate::alerts::minor(view.sell_amount, &view.sell_currency);
    let bought = crate::alerts::minor(view.buy_amount, &view.buy_currency);
    crate::alerts::send(
        identity,
        db,
        customer_id,
        crate::alerts::Moved {
            template: "fx_conversion",
            category: coffer_notify::preferences::Category::PaymentSent,
            source_id: &view.id,
            en: (
                "Currency converted",
                format!("You converted {sold} into {bought} in your Coffer wallet."),
            ),
            zh: (
                "换汇成功",
                format!("您已在 Coffer 钱包中将 {sold} 兑换为 {bought}。"),
            ),
        },
    )
    .map_err(|e| internal(format!("conversion alert: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn selling_rounds_what_the_customer_gets_down() {
        // 100.00 CNY at mid 0.14038 USD/CNY (scaled 14_038_000), 50 bps:
        // exact 10000 × 0.14038 × 0.995 = 1396.781 cents → 1396.
        assert_eq!(buy_for_sell(10_000, 14_038_000, 50, 2, 2), Ok(1_396));
        // No spread and an exact result: nothing is lost.
        assert_eq!(buy_for_sell(10_000, 712_340_000, 0, 2, 2), Ok(71_234));
        // Into JPY (exponent 0): 1.00 USD at 150.12345678 → 150 yen at 0 bps.
        assert_eq!(buy_for_sell(100, 15_012_345_678, 0, 2, 0), Ok(150));
        // Out of JPY: 1 yen at 0.0066 USD is less than a cent.
        assert_eq!(
            buy_for_sell(1, 660_000, 0, 0, 2),
            Err(ConversionError::TooSmall)
        );
        assert_eq!(
            buy_for_sell(0, 712_340_000, 50, 2, 2),
            Err(ConversionError::OutOfRange)
        );
        assert_eq!(
            buy_for_sell(10, 712_340_000, SPREAD_BPS_MAX, 2, 2),
            Err(ConversionError::OutOfRange)
        );
    }

    #[test]
    fn buying_rounds_what_the_customer_pays_up() {
        // Buying 100.00 USD with CNY at mid 0.1403824 USD per CNY, 50 bps.
        let mid = 14_038_240;
        assert_eq!(sell_for_buy(10_000, mid, 50, 2, 2), Ok(71_592));
        let sell = sell_for_buy(10_000, mid, 50, 2, 2).expect("sell");
        // What that sells for must cover the 100.00 USD; one fen less must not.
        assert!(buy_for_sell(sell, mid, 50, 2, 2).expect("buy") >= 10_000);
        assert!(buy_for_sell(sell - 1, mid, 50, 2, 2).expect("buy") < 10_000);
    }

    /// The rule, checked exactly against the fraction for random inputs:
    /// the customer never gets more than the exact value, nor a whole
    /// minor unit less; never pays less than the exact cost, nor a whole
    /// minor unit more.
    #[test]
    fn rounding_favours_the_bank_by_less_than_one_minor_unit() {
        let mut rng = StdRng::seed_from_u64(0x5eed_f00d);
        for _ in 0..20_000 {
            let mid = rng.random_range(1_000..100_000_000_000i64);
            let spread = rng.random_range(0..500i64);
            let (es, eb) = (rng.random_range(0..=3u8), rng.random_range(0..=3u8));
            let amount = rng.random_range(1..10_000_000_000i64);
            let (n, d) = customer_fraction(mid, spread, es, eb).expect("fraction");
            if let Ok(buy) = buy_for_sell(amount, mid, spread, es, eb) {
                // buy ≤ amount × n / d < buy + 1
                let exact = i128::from(amount) * n;
                assert!(i128::from(buy) * d <= exact, "{amount} {mid} {spread}");
                assert!(exact < (i128::from(buy) + 1) * d, "{amount} {mid} {spread}");
            }
            if let Ok(sell) = sell_for_buy(amount, mid, spread, es, eb) {
                // sell − 1 < amount × d / n ≤ sell
                let exact = i128::from(amount) * d;
                assert!(i128::from(sell) * n >= exact, "{amount} {mid} {spread}");
                assert!(
                    (i128::from(sell) - 1) * n < exact,
                    "{amount} {mid} {spread}"
                );
            }
        }
    }

    #[test]
    fn rates_format_with_eight_decimals() {
        assert_eq!(format_rate(712_340_000), "7.12340000");
        assert_eq!(format_rate(4_712_300), "0.04712300");
        assert_eq!(customer_rate_scaled(712_340_000, 50), 708_778_300);
    }

    #[test]
    fn the_simulated_source_crosses_through_cny() {
        let source = SimulatedRateSource::default();
        let parse = |c| Currency::parse(c).expect("currency");
        assert_eq!(source.mid_rate(parse("USD"), parse("CNY")), Ok(712_340_000));
        // 1 / 7.1234 = 0.14038240 (nearest)
        assert_eq!(source.mid_rate(parse("CNY"), parse("USD")), Ok(14_038_240));
        assert!(source.mid_rate(parse("CNY"), parse("CHF")).is_err());
        source.set_available(false);
        assert!(source.mid_rate(parse("USD"), parse("CNY")).is_err());
    }
}
