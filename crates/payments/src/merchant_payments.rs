//! Paying merchants: by scanning their QR code (static: the customer types
//! the amount; dynamic: a checkout's amount and order), by showing a
//! one-time payment code the merchant scans, or by confirming an online
//! checkout; and refunds.
//!
//! A payment is a record (`merchant_payments`) and one ledger transfer
//! `mpay:<id>` from the customer's wallet to the merchant's receivable.
//! Limits (per payment, daily, monthly by KYC tier) are reserved with the
//! funding module's conditional counters in the transaction that moves the
//! record to `pending`, together with the step-up consumption; a payment
//! the ledger refuses gives its reservation back.
//!
//! A refund first claims its amount on the payment with one conditional
//! update (`refunded + amount <= amount`), which the database serializes:
//! concurrent refunds can never together pass what was paid. Then the
//! ledger moves it back (`mref:<id>`, receivable → wallet); a refusal gives
//! the claim back.

use coffer_core::Secret;
use coffer_identity::Operation as StepUpOperation;
use coffer_ledger::{HoldState, Rejection, TransferCommand, TransferOp};
use coffer_store::sql::{Row, Sql};
use coffer_store::{sql_params, StoreError};
use rand::Rng;

use crate::activity::{self, ActivityKind, ActivityStatus, Category, Direction, NewActivity};
use crate::emv::{Initiation, MerchantQr};
use crate::funding::{wallet_account_id, FundingError, FUNDING_CURRENCY};
use crate::limits::{civil_year_month, reserve};
use crate::merchants::{
    audit, order_reference, random_id, receivable_account_id, web_url, ClientKey, MerchantError,
    MerchantView, Merchants, MERCHANT_COUNTRY, MERCHANT_PAGE_MAX, NANOS_PER_MILLI,
    NANOS_PER_SECOND, RETURN_URL_LENGTH_MAX,
};
use crate::risk_gate::{Gate, SUBJECT_MERCHANT_PAYMENT};
use coffer_risk::{Attempt, Kind as RiskKind};

/// Digits of a customer-presented payment code. With the fixed prefix "28"
/// (so tills recognise a Coffer code) 16 are random: about 53 bits. A
/// code lives a minute, one per customer is active, and a merchant may
/// miss at most `payment_code_failures_per_minute_max` a minute, so
/// guessing one is out of reach.
pub const PAYMENT_CODE_DIGITS: usize = 18;
/// A merchant's refund ratio (a risk signal) is over this many of its
/// latest paid payments.
pub const REFUND_RATIO_PAYMENTS: i64 = 200;
const PAYMENT_CODE_PREFIX: &str = "28";
const PAYMENT_CODE_RANDOM_SPACE: u64 = 10_000_000_000_000_000;

/// How a payment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentMethod {
    QrStatic,
    QrDynamic,
    PaymentCode,
    Checkout,
}

impl PaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::QrStatic => "qr_static",
            PaymentMethod::QrDynamic => "qr_dynamic",
            PaymentMethod::PaymentCode => "payment_code",
            PaymentMethod::Checkout => "checkout",
        }
    }

    fn parse(text: &str) -> Option<PaymentMethod> {
        [
            PaymentMethod::QrStatic,
            PaymentMethod::QrDynamic,
            PaymentMethod::PaymentCode,
            PaymentMethod::Checkout,
        ]
        .into_iter()
        .find(|m| m.as_str() == text)
    }
}

/// A payment to a merchant as its payer and its merchant see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentView {
    pub id: String,
    pub merchant_id: String,
    pub merchant_name: String,
    /// The payer; none while a checkout waits for its customer.
    pub customer_id: Option<String>,
    pub method: PaymentMethod,
    pub amount: i64,
    pub currency: String,
    pub order_reference: Option<String>,
    pub return_url: Option<String>,
    /// `awaiting_customer`, `pending`, `succeeded`, `failed`, `expired`,
    /// `refunded` or `partially_refunded`.
    pub status: String,
    pub reason: Option<String>,
    pub refunded: i64,
    pub created_at: i64,
    pub paid_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// A refund as its merchant and the customer see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundView {
    pub id: String,
    pub payment_id: String,
    pub merchant_id: String,
    pub amount: i64,
    pub currency: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub failure: Option<String>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
}

/// What a scanned code will pay, shown before the customer confirms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub merchant_id: String,
    pub merchant_name: String,
    pub city: String,
    pub mcc: String,
    pub category: &'static str,
    pub initiation: Initiation,
    /// Fixed by a dynamic code; the customer enters it for a static one.
    pub amount: Option<i64>,
    pub currency: String,
    pub order_reference: Option<String>,
    /// The checkout a dynamic code pays.
    pub payment_id: Option<String>,
    /// Whether confirming this amount needs a step-up verification.
    pub step_up_required: bool,
}

/// A fresh payment code for the customer's screen.
#[derive(Debug)]
pub struct PaymentCode {
    pub code: Secret<String>,
    pub expires_at: i64,
}

/// A customer's confirmation of a payment.
#[derive(Debug, Clone, Default)]
pub struct Confirmation {
    /// Needed for a static code (and must match a dynamic code's amount).
    pub amount: Option<i64>,
    pub step_up_challenge_id: Option<String>,
}

/// What a merchant asks to charge.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub amount: i64,
    pub currency: String,
    pub order_reference: Option<String>,
}

const SELECT_PAYMENT: &str = "SELECT p.id, p.merchant_id, m.display_name, p.customer_id, p.method, p.amount, p.currency, p.order_reference, p.return_url, \
     p.state, p.reason, p.refunded, p.created_at, p.paid_at, p.expires_at, p.limit_day, p.limit_month, p.creator, p.request_hash \
     FROM merchant_payments p JOIN merchants m ON m.id = p.merchant_id";

pub(crate) struct PaymentRecord {
    pub(crate) view: PaymentView,
    pub(crate) state: String,
    limit_day: Option<i64>,
    limit_month: Option<i64>,
    request_hash: String,
}

fn payment(row: &Row, now: i64) -> Result<PaymentRecord, MerchantError> {
    let state = row.text(9)?;
    let amount = row.int(5)?;
    let refunded = row.int(11)?;
    let expires_at = row.opt_int(14)?;
    let status = match state.as_str() {
        "awaiting_customer" if expires_at.is_some_and(|at| at <= now) => "expired".to_string(),
        "succeeded" if refunded > 0 && refunded >= amount => "refunded".to_string(),
        "succeeded" if refunded > 0 => "partially_refunded".to_string(),
        other => other.to_string(),
    };
    Ok(PaymentRecord {
        view: PaymentView {
            id: row.text(0)?,
            merchant_id: row.text(1)?,
            merchant_name: row.text(2)?,
            customer_id: row.opt_text(3)?,
            method: PaymentMethod::parse(&row.text(4)?)
                .ok_or_else(|| StoreError::Corrupt("payment method".into()))?,
            amount,
            currency: row.text(6)?,
            order_reference: row.opt_text(7)?,
            return_url: row.opt_text(8)?,
            status,
            reason: row.opt_text(10)?,
            refunded,
            created_at: row.int(12)?,
            paid_at: row.opt_int(13)?,
            expires_at,
        },
        state,
        limit_day: row.opt_int(15)?,
        limit_month: row.opt_int(16)?,
        request_hash: row.text(18)?,
    })
}

const SELECT_REFUND: &str = "SELECT id, payment_id, merchant_id, amount, currency, state, failure, reason, created_at, resolved_at, customer_id, request_hash \
     FROM merchant_refunds";

fn refund(row: &Row) -> Result<(RefundView, String, String), MerchantError> {
    Ok((
        RefundView {
            id: row.text(0)?,
            payment_id: row.text(1)?,
            merchant_id: row.text(2)?,
            amount: row.int(3)?,
            currency: row.text(4)?,
            status: row.text(5)?,
            failure: row.opt_text(6)?,
            reason: row.opt_text(7)?,
            created_at: row.int(8)?,
            resolved_at: row.opt_int(9)?,
        },
        row.text(10)?,
        row.text(11)?,
    ))
}

/// The principal a record's idempotency key belongs to.
fn customer_creator(customer_id: &str) -> String {
    format!("customer:{customer_id}")
}

fn merchant_creator(merchant_id: &str) -> String {
    format!("merchant:{merchant_id}")
}

fn payment_data(view: &PaymentView) -> serde_json::Value {
    serde_json::json!({
        "payment_id": view.id,
        "amount": view.amount,
        "currency": view.currency,
        "order_reference": view.order_reference,
        "method": view.method.as_str(),
        "status": view.status,
        "refunded": view.refunded,
    })
}

fn check_amount(amount: i64, currency: &str) -> Result<i64, MerchantError> {
    if currency != FUNDING_CURRENCY {
        return Err(MerchantError::invalid(
            "currency",
            format!("merchant payments are in {FUNDING_CURRENCY}"),
        ));
    }
    if amount <= 0 {
        return Err(MerchantError::invalid(
            "amount",
            "a positive amount in minor units",
        ));
    }
    Ok(amount)
}

struct NewPayment<'a> {
    id: &'a str,
    merchant_id: &'a str,
    customer_id: Option<&'a str>,
    method: PaymentMethod,
    amount: i64,
    order_reference: Option<&'a str>,
    return_url: Option<&'a str>,
    state: &'a str,
    creator: &'a str,
    client: &'a ClientKey,
    limits: Option<(i64, i64)>,
    expires_at: Option<i64>,
    now: i64,
}

fn insert_payment(db: &mut dyn Sql, new: &NewPayment<'_>) -> Result<bool, MerchantError> {
    let inserted = db.execute(
        "INSERT INTO merchant_payments (id, merchant_id, customer_id, method, amount, currency, order_reference, return_url, state, reason, refunded, \
         creator, client_key, request_hash, limit_day, limit_month, settlement_id, created_at, updated_at, paid_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, 0, $10, $11, $12, $13, $14, NULL, $15, $15, NULL, $16) ON CONFLICT DO NOTHING",
        sql_params![
            new.id,
            new.merchant_id,
            new.customer_id,
            new.method.as_str(),
            new.amount,
            FUNDING_CURRENCY,
            new.order_reference,
            new.return_url,
            new.state,
            new.creator,
            new.client.key.as_str(),
            new.client.request_hash.as_str(),
            new.limits.map(|l| l.0),
            new.limits.map(|l| l.1),
            new.now,
            new.expires_at
        ],
    )?;
    Ok(inserted == 1)
}

impl Merchants {
    fn limit_periods(&self, now: i64) -> (i64, i64) {
        let day = self.day_of(now);
        let (year, month) = civil_year_month(day);
        (day, year * 12 + month)
    }

    pub(crate) fn load_payment(
        &self,
        payment_id: &str,
    ) -> Result<Option<PaymentRecord>, MerchantError> {
        let now = self.now();
        self.sql
            .run(|db| {
                db.query_opt(
                    &format!("{SELECT_PAYMENT} WHERE p.id = $1"),
                    sql_params![payment_id],
                )
            })?
            .map(|row| payment(&row, now))
            .transpose()
    }

    fn existing_payment(
        &self,
        creator: &str,
        client: &ClientKey,
    ) -> Result<Option<PaymentRecord>, MerchantError> {
        let now = self.now();
        let row = self.sql.run(|db| {
            db.query_opt(
                &format!("{SELECT_PAYMENT} WHERE p.creator = $1 AND p.client_key = $2"),
                sql_params![creator, client.key.as_str()],
            )
        })?;
        let Some(row) = row else { return Ok(None) };
        let record = payment(&row, now)?;
        if record.request_hash != client.request_hash {
            return Err(MerchantError::KeyReused);
        }
        Ok(Some(record))
    }

    /// A payment its payer may see.
    pub fn customer_payment(
        &self,
        customer_id: &str,
        payment_id: &str,
    ) -> Result<PaymentView, MerchantError> {
        match self.load_payment(payment_id)? {
            Some(found) if found.view.customer_id.as_deref() == Some(customer_id) => Ok(found.view),
            _ => Err(MerchantError::NotFound("payment")),
        }
    }

    /// A checkout a signed-in customer is about to confirm (any customer may
    /// look at one that waits for its payer, as at a shop's till).
    pub fn checkout_for_customer(
        &self,
        customer_id: &str,
        payment_id: &str,
    ) -> Result<PaymentView, MerchantError> {
        match self.load_payment(payment_id)? {
            Some(found)
                if found.view.customer_id.as_deref() == Some(customer_id)
                    || (found.view.customer_id.is_none()
                        && found.view.method == PaymentMethod::Checkout) =>
            {
                Ok(found.view)
            }
            _ => Err(MerchantError::NotFound("payment")),
        }
    }

    pub fn merchant_payment(
        &self,
        merchant_id: &str,
        payment_id: &str,
    ) -> Result<PaymentView, MerchantError> {
        match self.load_payment(payment_id)? {
            Some(found) if found.view.merchant_id == merchant_id => Ok(found.view),
            _ => Err(MerchantError::NotFound("payment")),
        }
    }

    pub fn customer_payments(
        &self,
        customer_id: &str,
        limit: i64,
    ) -> Result<Vec<PaymentView>, MerchantError> {
        self.payments_where("p.customer_id = $1", customer_id, limit)
    }

    pub fn merchant_payments(
        &self,
        merchant_id: &str,
        limit: i64,
    ) -> Result<Vec<PaymentView>, MerchantError> {
        self.payments_where("p.merchant_id = $1", merchant_id, limit)
    }

    fn payments_where(
        &self,
        condition: &str,
        value: &str,
        limit: i64,
    ) -> Result<Vec<PaymentView>, MerchantError> {
        let now = self.now();
        let rows = self.sql.run(|db| {
            db.query(
                &format!(
                    "{SELECT_PAYMENT} WHERE {condition} ORDER BY p.created_at DESC, p.id DESC LIMIT $2"
                ),
                sql_params![value, limit.clamp(1, MERCHANT_PAGE_MAX)],
            )
        })?;
        rows.iter().map(|r| Ok(payment(r, now)?.view)).collect()
    }

    // ---- QR codes -------------------------------------------------------------------

    /// The merchant's static code (printed at the till; no amount).
    pub fn static_qr(&self, merchant: &MerchantView) -> Result<String, MerchantError> {
        Ok(MerchantQr {
            initiation: Initiation::Static,
            merchant_id: merchant.id.clone(),
            mcc: merchant.mcc.clone(),
            currency: FUNDING_CURRENCY.into(),
            amount: None,
            country: MERCHANT_COUNTRY.into(),
            name: merchant.display_name.clone(),
            city: merchant.city.clone(),
            bill_number: None,
            reference: None,
        }
        .encode()?)
    }

    /// The dynamic code of a checkout (its amount, order and id).
    pub fn dynamic_qr(&self, merchant_id: &str, payment_id: &str) -> Result<String, MerchantError> {
        let merchant = self.get(merchant_id)?;
        let view = self.merchant_payment(merchant_id, payment_id)?;
        Ok(MerchantQr {
            initiation: Initiation::Dynamic,
            merchant_id: merchant.id,
            mcc: merchant.mcc,
            currency: view.currency,
            amount: Some(view.amount),
            country: MERCHANT_COUNTRY.into(),
            name: merchant.display_name,
            city: merchant.city,
            bill_number: view.order_reference,
            reference: Some(view.id),
        }
        .encode()?)
    }

    /// What a scanned payload will pay: checked (structure, CRC), its
    /// merchant active, a dynamic code's checkout still payable and equal
    /// to what the code says.
    pub fn preview(&self, payload: &str) -> Result<Preview, MerchantError> {
        let qr = MerchantQr::parse(payload)?;
        let merchant = self.active(&qr.merchant_id)?;
        if qr.currency != FUNDING_CURRENCY {
            return Err(crate::emv::QrError::UnsupportedCurrency(qr.currency).into());
        }
        let (amount, order, payment_id) = match qr.initiation {
            Initiation::Static => (qr.amount, None, None),
            Initiation::Dynamic => {
                let reference = qr.reference.clone().ok_or(MerchantError::QrMismatch)?;
                let found = self
                    .load_payment(&reference)?
                    .filter(|p| p.view.merchant_id == merchant.id)
                    .ok_or(MerchantError::QrMismatch)?;
                if Some(found.view.amount) != qr.amount
                    || found.view.order_reference != qr.bill_number
                {
                    return Err(MerchantError::QrMismatch);
                }
                if found.view.status != "awaiting_customer" {
                    return Err(MerchantError::NotPayable);
                }
                (
                    Some(found.view.amount),
                    found.view.order_reference,
                    Some(found.view.id),
                )
            }
        };
        Ok(Preview {
            step_up_required: amount.is_some_and(|a| a >= self.policy.payment_step_up_threshold),
            merchant_id: merchant.id,
            merchant_name: merchant.display_name,
            city: merchant.city,
            mcc: merchant.mcc,
            category: merchant.category,
            initiation: qr.initiation,
            amount,
            currency: FUNDING_CURRENCY.into(),
            order_reference: order,
            payment_id,
        })
    }

    /// Pays a scanned code: a static one with the amount the customer
    /// typed, a dynamic one by confirming its checkout.
    pub fn pay_qr(
        &self,
        customer_id: &str,
        client: &ClientKey,
        payload: &str,
        confirmation: &Confirmation,
        ip: &str,
    ) -> Result<PaymentView, MerchantError> {
        let creator = customer_creator(customer_id);
        if let Some(existing) = self.existing_payment(&creator, client)? {
            return self.carry(existing);
        }
        let qr = MerchantQr::parse(payload)?;
        if let (Initiation::Dynamic, Some(reference)) = (qr.initiation, &qr.reference) {
            // Confirmed by this customer before (a retry): carry it on.
            if let Some(found) = self.load_payment(reference)? {
                if found.view.customer_id.as_deref() == Some(customer_id)
                    && found.view.merchant_id == qr.merchant_id
                {
                    return self.carry(found);
                }
            }
        }
        let preview = self.preview(payload)?;
        if let Some(payment_id) = &preview.payment_id {
            if confirmation
                .amount
                .is_some_and(|a| Some(a) != preview.amount)
            {
                return Err(MerchantError::invalid(
                    "amount",
                    "a dynamic code fixes the amount; leave it out or repeat it",
                ));
            }
            return self.confirm_checkout(customer_id, payment_id, confirmation, ip);
        }
        let amount = match (preview.amount, confirmation.amount) {
            (Some(fixed), None) => fixed,
            (Some(fixed), Some(typed)) if fixed == typed => fixed,
            (Some(_), Some(_)) => {
                return Err(MerchantError::invalid(
                    "amount",
                    "this code fixes the amount; leave it out or repeat it",
                ))
            }
            (None, Some(typed)) => check_amount(typed, FUNDING_CURRENCY)?,
            (None, None) => {
                return Err(MerchantError::invalid(
                    "amount",
                    "a static code needs the amount to pay",
                ))
            }
        };
        let payment_id = random_id("mpy");
        self.start_payment(
            customer_id,
            &preview.merchant_id,
            &payment_id,
            amount,
            confirmation.step_up_challenge_id.as_deref(),
            ip,
            |db, limits, now| {
                insert_payment(
                    db,
                    &NewPayment {
                        id: &payment_id,
                        merchant_id: &preview.merchant_id,
                        customer_id: Some(customer_id),
                        method: PaymentMethod::QrStatic,
                        amount,
                        order_reference: None,
                        return_url: None,
                        state: "pending",
                        creator: &creator,
                        client,
                        limits: Some(limits),
                        expires_at: None,
                        now,
                    },
                )
            },
        )?;
        let record = self
            .existing_payment(&creator, client)?
            .ok_or(MerchantError::NotFound("payment"))?;
        self.carry(record)
    }

    /// The common start of every payment: the payer's tier limits and, at
    /// or above the threshold, a step-up bound to amount and merchant,
    /// reserved and consumed in the transaction that writes the record
    /// (`write` inserts it or moves it to `pending`; false when the same
    /// request got there first, which rolls everything back).
    #[allow(clippy::too_many_arguments)]
    fn start_payment(
        &self,
        customer_id: &str,
        merchant_id: &str,
        payment_id: &str,
        amount: i64,
        step_up_challenge_id: Option<&str>,
        ip: &str,
        write: impl FnOnce(&mut dyn Sql, (i64, i64), i64) -> Result<bool, MerchantError>,
    ) -> Result<bool, MerchantError> {
        let tier = self.identity.customer(customer_id)?.tier;
        let limits = self.identity.limits_for(customer_id, tier)?;
        if amount > limits.per_payment {
            return Err(MerchantError::LimitExceeded {
                limit: "per_payment",
                max: limits.per_payment,
                available: limits.per_payment,
            });
        }
        let merchant = self.get(merchant_id)?;
        let category = Category::from_mcc(merchant.mcc.parse().unwrap_or(0));
        let now = self.now();
        let (day, month) = self.limit_periods(now);
        let refunds = match &self.risk {
            Some(_) => Some(self.refund_ratio(merchant_id)?),
            None => None,
        };
        let result = self.sql.transaction(|db| -> Result<bool, MerchantError> {
            let gate = match &self.risk {
                Some(risk) => Some(risk.check(
                    db,
                    &Attempt {
                        customer_id,
                        kind: Some(RiskKind::MerchantPayment),
                        subject_id: Some(payment_id),
                        amount: Some(amount),
                        currency: Some(FUNDING_CURRENCY),
                        counterparty: Some(merchant_id),
                        ip: Some(ip),
                        merchant_refunds: refunds,
                        ..Attempt::default()
                    },
                )?),
                None => None,
            };
            let risk_step_up = matches!(gate, Some((Gate::StepUp, _)));
            if amount >= self.policy.payment_step_up_threshold || risk_step_up {
                self.identity.consume_step_up(
                    db,
                    customer_id,
                    step_up_challenge_id.unwrap_or(""),
                    &StepUpOperation {
                        kind: "merchant_payment".into(),
                        amount,
                        currency: FUNDING_CURRENCY.into(),
                        payee: format!("merchant:{merchant_id}"),
                    },
                )?;
            }
            reserve(
                db,
                customer_id,
                "merchant_payment.day",
                day,
                amount,
                limits.daily,
                "daily",
            )
            .map_err(FundingError::from)?;
            reserve(
                db,
                customer_id,
                "merchant_payment.month",
                month,
                amount,
                limits.monthly,
                "monthly",
            )
            .map_err(FundingError::from)?;
            if !write(db, (day, month), now)? {
                // Rolls back the reservations and the step-up consumption.
                return Err(MerchantError::KeyReused);
            }
            // The customer's history shows it at once, pending, in the
            // transaction that made it theirs.
            let order = db
                .query_one(
                    "SELECT order_reference FROM merchant_payments WHERE id = $1",
                    sql_params![payment_id],
                )?
                .opt_text(0)?;
            activity::record(
                db,
                &NewActivity {
                    customer_id,
                    kind: ActivityKind::MerchantPayment,
                    source_id: payment_id,
                    direction: Direction::Out,
                    status: ActivityStatus::Pending,
                    reason: None,
                    counterparty: &merchant.display_name,
                    category,
                    reference: order.as_deref().unwrap_or(payment_id),
                    amount,
                    currency: FUNDING_CURRENCY,
                    fee: 0,
                    fx: None,
                    at: now,
                },
            )?;
            if let (Some(risk), Some((Gate::Hold, assessment))) = (&self.risk, &gate) {
                db.execute(
                    "UPDATE merchant_payments SET state = 'held', updated_at = $2 WHERE id = $1 AND state = 'pending'",
                    sql_params![payment_id, now],
                )?;
                risk.hold(db, assessment, SUBJECT_MERCHANT_PAYMENT, payment_id)?;
            }
            audit(
                db,
                now,
                &coffer_audit::customer_actor(customer_id),
                customer_id,
                ip,
                "merchant_payment_started",
                &format!("{payment_id} {merchant_id} {amount}"),
            )?;
            Ok(true)
        });
        match result {
            Ok(_) => Ok(true),
            // The same key raced in from another request: the caller reloads it.
            Err(MerchantError::KeyReused) => Ok(false),
            Err(MerchantError::RiskBlocked(assessment)) => {
                if let Some(risk) = &self.risk {
                    risk.block(&assessment)?;
                }
                Err(MerchantError::RiskBlocked(assessment))
            }
            Err(other) => Err(other),
        }
    }

    /// The merchant's refunds over its last `REFUND_RATIO_PAYMENTS` paid
    /// payments, in basis points, and how many payments that is: a bounded
    /// read on (merchant_id, created_at).
    fn refund_ratio(&self, merchant_id: &str) -> Result<(i64, i64), MerchantError> {
        let row = self.sql.run(|db| {
            db.query_one(
                "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT), CAST(COALESCE(SUM(refunded), 0) AS BIGINT) FROM \
                 (SELECT amount, refunded FROM merchant_payments WHERE merchant_id = $1 AND state = 'succeeded' \
                 ORDER BY created_at DESC LIMIT $2) recent",
                sql_params![merchant_id, REFUND_RATIO_PAYMENTS],
            )
        })?;
        let (count, paid, refunded) = (row.int(0)?, row.int(1)?, row.int(2)?);
        let bps = if paid > 0 {
            i64::try_from(i128::from(refunded) * 10_000 / i128::from(paid)).unwrap_or(i64::MAX)
        } else {
            0
        };
        Ok((bps, count))
    }

    /// The payment's ledger transfer (wallet → the merchant's receivable),
    /// posted as it stands or turned into its review hold or capture.
    fn payment_transfer(
        &self,
        record: &PaymentRecord,
        transfer_id: &str,
    ) -> Result<TransferCommand, MerchantError> {
        let view = &record.view;
        let customer_id = view
            .customer_id
            .clone()
            .ok_or_else(|| MerchantError::Internal("a payment without payer".into()))?;
        Self::post(
            transfer_id,
            &wallet_account_id(&customer_id, FUNDING_CURRENCY),
            &receivable_account_id(&view.merchant_id),
            view.amount,
            "merchant.payment",
            &[("payment_id", &view.id), ("merchant", &view.merchant_name)],
        )
    }

    fn review_hold_state(&self, payment_id: &str) -> Result<Option<HoldState>, MerchantError> {
        let hold = crate::merchants::id(&review_hold_id(payment_id))?;
        Ok(self.funding.reader.hold(&hold)?.map(|h| h.state))
    }

    /// Reserves a held payment's amount with a ledger hold (as P2P does:
    /// `p2p::REVIEW_HOLD_TIMEOUT_SECONDS`); idempotent by its derived id.
    /// When the money is not there the payment fails now and its case closes.
    fn hold_for_review(&self, record: &PaymentRecord) -> Result<(), MerchantError> {
        let view = &record.view;
        if record.state != "held" || self.review_hold_state(&view.id)?.is_some() {
            return Ok(());
        }
        let mut transfer = self.payment_transfer(record, &review_hold_id(&view.id))?;
        if let TransferOp::Post {
            debit,
            credit,
            amount,
            currency,
        } = transfer.op
        {
            transfer.op = TransferOp::Hold {
                debit,
                credit,
                amount,
                currency,
                timeout_ms: crate::p2p::REVIEW_HOLD_TIMEOUT_SECONDS * 1000,
            };
        }
        let rejection = match self.transfer(vec![transfer])? {
            Ok(()) => return Ok(()),
            Err(rejection) => rejection,
        };
        let reason = match rejection {
            Rejection::InsufficientFunds | Rejection::AccountNotFound(_) => "insufficient_funds",
            other => other.code(),
        };
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), MerchantError> {
            let changed = db.execute(
                "UPDATE merchant_payments SET state = 'failed', reason = $2, updated_at = $3 WHERE id = $1 AND state = 'held'",
                sql_params![view.id.as_str(), reason, now],
            )?;
            if changed != 1 {
                return Ok(());
            }
            if let Some(customer_id) = &view.customer_id {
                release_limits(db, customer_id, record, view.amount)?;
            }
            activity::set_status(
                db,
                ActivityKind::MerchantPayment,
                &view.id,
                ActivityStatus::Failed,
                Some(reason),
                now,
            )?;
            if let Some(risk) = &self.risk {
                risk.risk.close_subject_cases(
                    db,
                    SUBJECT_MERCHANT_PAYMENT,
                    &view.id,
                    "the held amount is not available",
                )?;
            }
            Ok(())
        })
    }

    /// After a held payment was rejected: its review hold released.
    pub fn carry_rejected(&self, payment_id: &str) -> Result<(), MerchantError> {
        let record = self
            .load_payment(payment_id)?
            .ok_or(MerchantError::NotFound("payment"))?;
        if record.state != "failed"
            || self.review_hold_state(payment_id)? != Some(HoldState::Pending)
        {
            return Ok(());
        }
        let mut transfer =
            self.payment_transfer(&record, &format!("{}:void", review_hold_id(payment_id)))?;
        transfer.op = TransferOp::Release {
            hold: crate::merchants::id(&review_hold_id(payment_id))?,
        };
        if let Err(rejection) = self.transfer(vec![transfer])? {
            if self.review_hold_state(payment_id)? == Some(HoldState::Pending) {
                return Err(MerchantError::Internal(format!(
                    "review hold of {payment_id} not released: {}",
                    rejection.code()
                )));
            }
        }
        Ok(())
    }

    /// Releases a held payment inside the caller's transaction (its case
    /// was released); `carry_released` then runs it through the ledger.
    pub fn release_held_in(&self, db: &mut dyn Sql, payment_id: &str) -> Result<(), MerchantError> {
        let changed = db.execute(
            "UPDATE merchant_payments SET state = 'pending', updated_at = $2 WHERE id = $1 AND state = 'held'",
            sql_params![payment_id, self.now()],
        )?;
        if changed != 1 {
            return Err(MerchantError::NotHeld);
        }
        Ok(())
    }

    /// After `release_held_in` committed: the ledger transfer, now.
    pub fn carry_released(&self, payment_id: &str) -> Result<String, MerchantError> {
        let record = self
            .load_payment(payment_id)?
            .ok_or(MerchantError::NotFound("payment"))?;
        match self.carry(record) {
            Ok(view) => Ok(view.status),
            Err(MerchantError::InsufficientFunds) => Ok("failed".into()),
            Err(other) => Err(other),
        }
    }

    /// Rejects a held payment inside the caller's transaction: failed with
    /// `reason` and the limits given back (no money had moved).
    pub fn reject_held_in(
        &self,
        db: &mut dyn Sql,
        payment_id: &str,
        reason: &str,
    ) -> Result<(), MerchantError> {
        let record = self
            .load_payment(payment_id)?
            .ok_or(MerchantError::NotFound("payment"))?;
        let now = self.now();
        let changed = db.execute(
            "UPDATE merchant_payments SET state = 'failed', reason = $2, updated_at = $3 WHERE id = $1 AND state = 'held'",
            sql_params![payment_id, reason, now],
        )?;
        if changed != 1 {
            return Err(MerchantError::NotHeld);
        }
        if let Some(customer_id) = &record.view.customer_id {
            release_limits(db, customer_id, &record, record.view.amount)?;
        }
        Ok(())
    }

    /// Carries a pending payment through the ledger and sets its final
    /// state from the ledger's answer. Safe to repeat (the transfer id is
    /// the payment's). A refusal for want of funds is the caller's error.
    pub(crate) fn carry(&self, record: PaymentRecord) -> Result<PaymentView, MerchantError> {
        if record.state == "held" {
            // Held for review: its money reserved now (or the payment fails).
            self.hold_for_review(&record)?;
            let reloaded = self
                .load_payment(&record.view.id)?
                .ok_or(MerchantError::NotFound("payment"))?;
            return finished(reloaded.view);
        }
        if record.state != "pending" {
            return finished(record.view);
        }
        let view = &record.view;
        let customer_id = view
            .customer_id
            .clone()
            .ok_or_else(|| MerchantError::Internal("a pending payment without payer".into()))?;
        let mut transfer = self.payment_transfer(&record, &format!("mpay:{}", view.id))?;
        // Released from review: capture its hold under the id a direct post
        // would use (the money moves once); a hold gone stale fails it.
        let outcome = match self.review_hold_state(&view.id)? {
            None => Some(self.transfer(vec![transfer])?),
            Some(HoldState::Pending | HoldState::Captured) => {
                transfer.op = TransferOp::Capture {
                    hold: crate::merchants::id(&review_hold_id(&view.id))?,
                    amount: None,
                };
                Some(self.transfer(vec![transfer])?)
            }
            Some(HoldState::Released | HoldState::Expired) => None,
        };
        let (state, reason) = match outcome {
            None => ("failed", Some("review_hold_expired")),
            Some(Ok(())) => ("succeeded", None),
            // No wallet yet is no money yet.
            Some(Err(Rejection::InsufficientFunds | Rejection::AccountNotFound(_))) => {
                ("failed", Some("insufficient_funds"))
            }
            Some(Err(rejection)) => ("failed", Some(rejection.code())),
        };
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), MerchantError> {
            let changed = db.execute(
                "UPDATE merchant_payments SET state = $2, reason = $3, paid_at = $5, updated_at = $4 \
                 WHERE id = $1 AND state = 'pending'",
                sql_params![
                    view.id.as_str(),
                    state,
                    reason,
                    now,
                    (state == "succeeded").then_some(now)
                ],
            )?;
            if changed != 1 {
                return Ok(());
            }
            if state == "failed" {
                release_limits(db, &customer_id, &record, view.amount)?;
            }
            activity::set_status(
                db,
                ActivityKind::MerchantPayment,
                &view.id,
                if state == "succeeded" {
                    ActivityStatus::Succeeded
                } else {
                    ActivityStatus::Failed
                },
                reason,
                now,
            )?;
            coffer_audit::append(
                db,
                &coffer_audit::Entry {
                    at: now,
                    actor: coffer_audit::ACTOR_SYSTEM,
                    action: if state == "succeeded" {
                        "merchant_payment_succeeded"
                    } else {
                        "merchant_payment_failed"
                    },
                    subject: Some(&customer_id),
                    ip: "",
                    outcome: coffer_audit::Outcome::Ok,
                    detail: &view.id,
                },
            )?;
            if state == "succeeded" {
                self.alert_paid(db, &customer_id, view)?;
                let mut paid = view.clone();
                paid.status = "succeeded".into();
                self.enqueue_webhook(
                    db,
                    &view.merchant_id,
                    "payment.succeeded",
                    payment_data(&paid),
                    now,
                )?;
            }
            Ok(())
        })?;
        let reloaded = self
            .load_payment(&view.id)?
            .ok_or(MerchantError::NotFound("payment"))?;
        finished(reloaded.view)
    }

    /// A payment's alerts, in the transaction that marks it succeeded:
    /// the payer's, and the merchant owner's (the merchant itself also
    /// gets its signed webhook).
    fn alert_paid(
        &self,
        db: &mut dyn Sql,
        payer_id: &str,
        view: &PaymentView,
    ) -> Result<(), MerchantError> {
        use coffer_notify::preferences::Category as AlertCategory;
        let amount = crate::alerts::minor(view.amount, &view.currency);
        let merchant = &view.merchant_name;
        crate::alerts::send(
            &self.identity,
            db,
            payer_id,
            crate::alerts::Moved {
                template: "merchant_payment",
                category: AlertCategory::PaymentSent,
                source_id: &view.id,
                en: (
                    "Payment sent",
                    format!("You paid {amount} to {merchant} from your Coffer wallet."),
                ),
                zh: (
                    "付款通知",
                    format!("您已从 Coffer 钱包向 {merchant} 支付 {amount}。"),
                ),
            },
        )?;
        crate::alerts::outflow(
            &self.identity,
            db,
            self.funding.reader.as_ref(),
            &crate::alerts::Outflow {
                customer_id: payer_id,
                source_id: &view.id,
                amount: view.amount,
                currency: &view.currency,
                to: merchant,
            },
        )?;
        let (owner, _) = merchant_parties(db, &view.merchant_id)?;
        crate::alerts::send(
            &self.identity,
            db,
            &owner,
            crate::alerts::Moved {
                template: "merchant_received",
                category: AlertCategory::PaymentReceived,
                source_id: &view.id,
                en: (
                    "Payment received",
                    format!("{merchant} received a payment of {amount}."),
                ),
                zh: ("收款通知", format!("{merchant} 收到一笔 {amount} 的付款。")),
            },
        )?;
        Ok(())
    }

    // ---- online checkout ------------------------------------------------------------

    /// The merchant creates a payment for the customer to confirm (online,
    /// or at the till as a dynamic QR code).
    pub fn create_checkout(
        &self,
        merchant_id: &str,
        client: &ClientKey,
        request: &ChargeRequest,
        return_url: Option<&str>,
    ) -> Result<PaymentView, MerchantError> {
        let creator = merchant_creator(merchant_id);
        if let Some(existing) = self.existing_payment(&creator, client)? {
            return Ok(existing.view);
        }
        self.active(merchant_id)?;
        let amount = check_amount(request.amount, &request.currency)?;
        let order = request
            .order_reference
            .as_deref()
            .map(order_reference)
            .transpose()?;
        let return_url = return_url
            .map(|u| web_url("return_url", u, RETURN_URL_LENGTH_MAX))
            .transpose()?;
        let now = self.now();
        let payment_id = random_id("mpy");
        self.sql.run(|db| {
            insert_payment(
                db,
                &NewPayment {
                    id: &payment_id,
                    merchant_id,
                    customer_id: None,
                    method: PaymentMethod::Checkout,
                    amount,
                    order_reference: order.as_deref(),
                    return_url: return_url.as_deref(),
                    state: "awaiting_customer",
                    creator: &creator,
                    client,
                    limits: None,
                    expires_at: Some(now + self.policy.checkout_lifetime_ms * NANOS_PER_MILLI),
                    now,
                },
            )
            .map_err(|e| match e {
                MerchantError::Store(e) => e,
                other => StoreError::Corrupt(other.to_string()),
            })
        })?;
        Ok(self
            .existing_payment(&creator, client)?
            .ok_or(MerchantError::NotFound("payment"))?
            .view)
    }

    /// The customer confirms a checkout: it becomes theirs (once) and the
    /// money moves; the merchant gets a signed webhook.
    /// (Its idempotency is the payment's own: one payer, one transfer id.)
    pub fn confirm_checkout(
        &self,
        customer_id: &str,
        payment_id: &str,
        confirmation: &Confirmation,
        ip: &str,
    ) -> Result<PaymentView, MerchantError> {
        let found = self
            .load_payment(payment_id)?
            .ok_or(MerchantError::NotFound("payment"))?;
        if found.view.customer_id.as_deref() == Some(customer_id) {
            // Confirmed before (a retry): carry it on.
            return self.carry(found);
        }
        if found.view.method != PaymentMethod::Checkout {
            return Err(MerchantError::NotFound("payment"));
        }
        if found.view.customer_id.is_some() || found.view.status != "awaiting_customer" {
            return Err(MerchantError::NotPayable);
        }
        if confirmation.amount.is_some_and(|a| a != found.view.amount) {
            return Err(MerchantError::invalid(
                "amount",
                "the checkout fixes the amount; leave it out or repeat it",
            ));
        }
        self.active(&found.view.merchant_id)?;
        let amount = found.view.amount;
        let claimed = self.start_payment(
            customer_id,
            &found.view.merchant_id,
            payment_id,
            amount,
            confirmation.step_up_challenge_id.as_deref(),
            ip,
            |db, limits, now| {
                let changed = db.execute(
                    "UPDATE merchant_payments SET customer_id = $2, state = 'pending', limit_day = $3, limit_month = $4, updated_at = $5 \
                     WHERE id = $1 AND state = 'awaiting_customer' AND customer_id IS NULL AND expires_at > $5",
                    sql_params![payment_id, customer_id, limits.0, limits.1, now],
                )?;
                Ok(changed == 1)
            },
        )?;
        let current = self
            .load_payment(payment_id)?
            .ok_or(MerchantError::NotFound("payment"))?;
        if !claimed && current.view.customer_id.as_deref() != Some(customer_id) {
            // Someone else paid it, or it expired, between our look and our claim.
            return Err(MerchantError::NotPayable);
        }
        self.carry(current)
    }

    // ---- customer-presented payment codes -------------------------------------------

    /// A fresh single-use code bound to the customer's wallet; any earlier
    /// one stops working. Only its keyed hash is stored.
    pub fn issue_code(&self, customer_id: &str) -> Result<PaymentCode, MerchantError> {
        let random = rand::rng().random_range(0..PAYMENT_CODE_RANDOM_SPACE);
        let code = Secret::new(format!("{PAYMENT_CODE_PREFIX}{random:016}"));
        let hash = self.vault.keyed_hash("payment_code", code.expose());
        let now = self.now();
        let expires_at = now + self.policy.payment_code_lifetime_ms * NANOS_PER_MILLI;
        self.sql.transaction(|db| -> Result<(), MerchantError> {
            db.execute(
                "UPDATE payment_codes SET state = 'replaced' WHERE customer_id = $1 AND state = 'active'",
                sql_params![customer_id],
            )?;
            db.execute(
                "INSERT INTO payment_codes (code_hash, customer_id, state, created_at, expires_at, used_at, payment_id) \
                 VALUES ($1, $2, 'active', $3, $4, NULL, NULL)",
                sql_params![hash.as_str(), customer_id, now, expires_at],
            )?;
            Ok(())
        })?;
        Ok(PaymentCode { code, expires_at })
    }

    /// The merchant charges a customer's payment code: valid, unexpired and
    /// unused, or refused with one answer for all three; wrong codes are
    /// counted per merchant and minute and refused past the limit.
    pub fn charge_code(
        &self,
        merchant_id: &str,
        client: &ClientKey,
        code_text: &Secret<String>,
        request: &ChargeRequest,
        ip: &str,
    ) -> Result<PaymentView, MerchantError> {
        let creator = merchant_creator(merchant_id);
        if let Some(existing) = self.existing_payment(&creator, client)? {
            return self.carry(existing);
        }
        self.active(merchant_id)?;
        let amount = check_amount(request.amount, &request.currency)?;
        if amount >= self.policy.payment_step_up_threshold {
            return Err(MerchantError::invalid(
                "amount",
                format!(
                    "a payment code can pay less than {} (minor units); larger payments need the customer's confirmation",
                    self.policy.payment_step_up_threshold
                ),
            ));
        }
        let order = request
            .order_reference
            .as_deref()
            .map(order_reference)
            .transpose()?;
        let now = self.now();
        let minute = now.div_euclid(60 * NANOS_PER_SECOND);
        // Every attempt takes a slot of the minute's failure budget first,
        // by one conditional update, and a right code gives it back: a
        // burst of concurrent guesses cannot all pass a read of the count
        // (the budget could be overshot by the number in flight).
        let slot = self.sql.transaction(|db| -> Result<u64, MerchantError> {
            db.execute(
                "INSERT INTO payment_code_failures (merchant_id, period, failures) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
                sql_params![merchant_id, minute],
            )?;
            Ok(db.execute(
                "UPDATE payment_code_failures SET failures = failures + 1 WHERE merchant_id = $1 AND period = $2 AND failures < $3",
                sql_params![
                    merchant_id,
                    minute,
                    self.policy.payment_code_failures_per_minute_max
                ],
            )?)
        })?;
        if slot != 1 {
            return Err(MerchantError::CodeThrottled);
        }
        let text = code_text.expose();
        let well_formed = text.len() == PAYMENT_CODE_DIGITS
            && text.starts_with(PAYMENT_CODE_PREFIX)
            && text.bytes().all(|b| b.is_ascii_digit());
        let hash = self.vault.keyed_hash("payment_code", text);
        let payment_id = random_id("mpy");
        let owner = if well_formed {
            self.sql.transaction(|db| -> Result<Option<String>, MerchantError> {
                let row = db.query_opt(
                    "SELECT customer_id FROM payment_codes WHERE code_hash = $1 AND state = 'active' AND expires_at > $2",
                    sql_params![hash.as_str(), now],
                )?;
                let Some(row) = row else { return Ok(None) };
                // Single use: only one charge can move it out of `active`.
                let used = db.execute(
                    "UPDATE payment_codes SET state = 'used', used_at = $2, payment_id = $3 WHERE code_hash = $1 AND state = 'active' AND expires_at > $2",
                    sql_params![hash.as_str(), now, payment_id.as_str()],
                )?;
                Ok((used == 1).then(|| row.text(0)).transpose()?)
            })?
        } else {
            None
        };
        let Some(customer_id) = owner else {
            // The slot taken above is this failure.
            return Err(MerchantError::CodeInvalid);
        };
        self.sql.run(|db| {
            db.execute(
                "UPDATE payment_code_failures SET failures = failures - 1 WHERE merchant_id = $1 AND period = $2 AND failures > 0",
                sql_params![merchant_id, minute],
            )
        })?;
        // The code is spent from here on, whatever the limits say: a
        // customer whose payment is refused shows a new code.
        self.start_payment(
            &customer_id,
            merchant_id,
            &payment_id,
            amount,
            None,
            ip,
            |db, limits, now| {
                insert_payment(
                    db,
                    &NewPayment {
                        id: &payment_id,
                        merchant_id,
                        customer_id: Some(&customer_id),
                        method: PaymentMethod::PaymentCode,
                        amount,
                        order_reference: order.as_deref(),
                        return_url: None,
                        state: "pending",
                        creator: &creator,
                        client,
                        limits: Some(limits),
                        expires_at: None,
                        now,
                    },
                )
            },
        )?;
        let record = self
            .existing_payment(&creator, client)?
            .ok_or(MerchantError::NotFound("payment"))?;
        self.carry(record)
    }

    // ---- refunds --------------------------------------------------------------------

    pub fn refund(
        &self,
        merchant_id: &str,
        client: &ClientKey,
        payment_id: &str,
        amount: i64,
        reason: Option<&str>,
    ) -> Result<RefundView, MerchantError> {
        if let Some(existing) = self.existing_refund(merchant_id, client)? {
            return self.carry_refund(existing);
        }
        if amount <= 0 {
            return Err(MerchantError::invalid(
                "amount",
                "a positive amount in minor units",
            ));
        }
        if let Some(reason) = reason {
            crate::merchants::printable("reason", reason, 200)?;
        }
        let found = self
            .load_payment(payment_id)?
            .filter(|p| p.view.merchant_id == merchant_id)
            .ok_or(MerchantError::NotFound("payment"))?;
        let customer_id = found
            .view
            .customer_id
            .clone()
            .ok_or(MerchantError::NotRefundable)?;
        let refund_id = random_id("mrf");
        let now = self.now();
        let inserted = self.sql.transaction(|db| -> Result<(), MerchantError> {
            // The claim: one conditional update, serialized by the database.
            let claimed = db.execute(
                "UPDATE merchant_payments SET refunded = refunded + $3, updated_at = $4 \
                 WHERE id = $1 AND merchant_id = $2 AND state = 'succeeded' AND refunded <= amount - $3",
                sql_params![payment_id, merchant_id, amount, now],
            )?;
            if claimed != 1 {
                let row = db.query_one(
                    "SELECT state, amount, refunded FROM merchant_payments WHERE id = $1",
                    sql_params![payment_id],
                )?;
                if row.text(0)? != "succeeded" {
                    return Err(MerchantError::NotRefundable);
                }
                return Err(MerchantError::RefundExceedsPayment {
                    available: row.int(1)? - row.int(2)?,
                });
            }
            let inserted = db.execute(
                "INSERT INTO merchant_refunds (id, payment_id, merchant_id, customer_id, amount, currency, reason, state, failure, client_key, request_hash, \
                 settlement_id, created_at, updated_at, resolved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', NULL, $8, $9, NULL, $10, $10, NULL) \
                 ON CONFLICT DO NOTHING",
                sql_params![
                    refund_id.as_str(),
                    payment_id,
                    merchant_id,
                    customer_id.as_str(),
                    amount,
                    FUNDING_CURRENCY,
                    reason,
                    client.key.as_str(),
                    client.request_hash.as_str(),
                    now
                ],
            )?;
            if inserted != 1 {
                // The same key raced in: roll our claim back.
                return Err(MerchantError::KeyReused);
            }
            let category =
                Category::parse(&refund_category(db, payment_id)?).unwrap_or(Category::Other);
            activity::record(
                db,
                &NewActivity {
                    customer_id: &customer_id,
                    kind: ActivityKind::Refund,
                    source_id: &refund_id,
                    direction: Direction::In,
                    status: ActivityStatus::Pending,
                    reason: None,
                    counterparty: &found.view.merchant_name,
                    category,
                    reference: payment_id,
                    amount,
                    currency: FUNDING_CURRENCY,
                    fee: 0,
                    fx: None,
                    at: now,
                },
            )?;
            audit(
                db,
                now,
                &format!("merchant:{merchant_id}"),
                &customer_id,
                "",
                "merchant_refund_started",
                &format!("{refund_id} {payment_id} {amount}"),
            )
        });
        match inserted {
            Ok(()) => {}
            Err(MerchantError::KeyReused) => {
                let existing = self
                    .existing_refund(merchant_id, client)?
                    .ok_or(MerchantError::KeyReused)?;
                return self.carry_refund(existing);
            }
            Err(other) => return Err(other),
        }
        let created = self
            .existing_refund(merchant_id, client)?
            .ok_or(MerchantError::NotFound("refund"))?;
        self.carry_refund(created)
    }

    fn existing_refund(
        &self,
        merchant_id: &str,
        client: &ClientKey,
    ) -> Result<Option<(RefundView, String)>, MerchantError> {
        let row = self.sql.run(|db| {
            db.query_opt(
                &format!("{SELECT_REFUND} WHERE merchant_id = $1 AND client_key = $2"),
                sql_params![merchant_id, client.key.as_str()],
            )
        })?;
        let Some(row) = row else { return Ok(None) };
        let (view, customer_id, hash) = refund(&row)?;
        if hash != client.request_hash {
            return Err(MerchantError::KeyReused);
        }
        Ok(Some((view, customer_id)))
    }

    fn carry_refund(
        &self,
        (view, customer_id): (RefundView, String),
    ) -> Result<RefundView, MerchantError> {
        if view.status != "pending" {
            return finished_refund(view);
        }
        let transfer = Self::post(
            &format!("mref:{}", view.id),
            &receivable_account_id(&view.merchant_id),
            &wallet_account_id(&customer_id, FUNDING_CURRENCY),
            view.amount,
            "merchant.refund",
            &[("refund_id", &view.id), ("payment_id", &view.payment_id)],
        )?;
        let (state, failure) = match self.transfer(vec![transfer])? {
            Ok(()) => ("succeeded", None),
            Err(Rejection::InsufficientFunds) => ("failed", Some("merchant_funds_insufficient")),
            Err(rejection) => ("failed", Some(rejection.code())),
        };
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), MerchantError> {
            let changed = db.execute(
                "UPDATE merchant_refunds SET state = $2, failure = $3, resolved_at = $4, updated_at = $4 WHERE id = $1 AND state = 'pending'",
                sql_params![view.id.as_str(), state, failure, now],
            )?;
            if changed != 1 {
                return Ok(());
            }
            activity::set_status(
                db,
                ActivityKind::Refund,
                &view.id,
                if state == "succeeded" {
                    ActivityStatus::Succeeded
                } else {
                    ActivityStatus::Failed
                },
                failure,
                now,
            )?;
            if state == "failed" {
                // The money did not move: give the claim back.
                db.execute(
                    "UPDATE merchant_payments SET refunded = refunded - $2 WHERE id = $1 AND refunded >= $2",
                    sql_params![view.payment_id.as_str(), view.amount],
                )?;
            } else {
                // The payment's own row: partially refunded, or refunded.
                activity::add_refund(
                    db,
                    ActivityKind::MerchantPayment,
                    &view.payment_id,
                    view.amount,
                    now,
                )?;
                let amount = crate::alerts::minor(view.amount, &view.currency);
                let (_, merchant) = merchant_parties(db, &view.merchant_id)?;
                crate::alerts::send(
                    &self.identity,
                    db,
                    &customer_id,
                    crate::alerts::Moved {
                        template: "refund",
                        category: coffer_notify::preferences::Category::PaymentReceived,
                        source_id: &view.id,
                        en: (
                            "Refund received",
                            format!("{merchant} refunded {amount} to your Coffer wallet."),
                        ),
                        zh: (
                            "退款到账",
                            format!("{merchant} 已退款 {amount} 至您的 Coffer 钱包。"),
                        ),
                    },
                )?;
                self.enqueue_webhook(
                    db,
                    &view.merchant_id,
                    "refund.succeeded",
                    serde_json::json!({
                        "refund_id": view.id,
                        "payment_id": view.payment_id,
                        "amount": view.amount,
                        "currency": view.currency,
                    }),
                    now,
                )?;
            }
            coffer_audit::append(
                db,
                &coffer_audit::Entry {
                    at: now,
                    actor: coffer_audit::ACTOR_SYSTEM,
                    action: if state == "succeeded" {
                        "merchant_refund_succeeded"
                    } else {
                        "merchant_refund_failed"
                    },
                    subject: Some(&customer_id),
                    ip: "",
                    outcome: coffer_audit::Outcome::Ok,
                    detail: &view.id,
                },
            )?;
            Ok(())
        })?;
        let row = self.sql.run(|db| {
            db.query_one(
                &format!("{SELECT_REFUND} WHERE id = $1"),
                sql_params![view.id.as_str()],
            )
        })?;
        finished_refund(refund(&row)?.0)
    }

    /// One pass of the resolver: carries forward payments and refunds left
    /// `pending` (their record committed, the process gone before the
    /// ledger answered). Each step is idempotent (the transfer id is the
    /// record's), so racing a live request is harmless. Returns how many
    /// records it looked at.
    pub fn resolve_pending(&self) -> Result<usize, MerchantError> {
        let before = self.now() - self.policy.resolve_after_ms * NANOS_PER_MILLI;
        let payments = self.sql.run(|db| {
            db.query(
                "SELECT id FROM merchant_payments WHERE state = 'pending' AND updated_at <= $1 ORDER BY updated_at, id LIMIT $2",
                sql_params![before, MERCHANT_PAGE_MAX],
            )
        })?;
        for row in &payments {
            let id = row.text(0)?;
            let Some(record) = self.load_payment(&id)? else {
                continue;
            };
            match self.carry(record) {
                Ok(_) | Err(MerchantError::InsufficientFunds) => {}
                Err(error) => tracing::warn!(payment = %id, %error, "could not resolve yet"),
            }
        }
        // Review holds a crash left unplaced (held) or unreleased (rejected).
        let since = self.now()
            - i64::try_from(crate::p2p::REVIEW_HOLD_TIMEOUT_SECONDS).unwrap_or(i64::MAX)
                * NANOS_PER_SECOND;
        // Two range reads on (state, updated_at) (migration 0026).
        let mut review = self.sql.run(|db| {
            db.query(
                "SELECT id, state FROM merchant_payments WHERE state = 'held' AND updated_at <= $1 \
                 ORDER BY updated_at, id LIMIT $2",
                sql_params![before, MERCHANT_PAGE_MAX],
            )
        })?;
        review.extend(self.sql.run(|db| {
            db.query(
                "SELECT id, state FROM merchant_payments WHERE state = 'failed' AND updated_at > $2 AND updated_at <= $1 \
                 AND reason IN ('rejected_by_risk', 'not_authorised_by_customer') ORDER BY updated_at, id LIMIT $3",
                sql_params![before, since, MERCHANT_PAGE_MAX],
            )
        })?);
        for row in &review {
            let id = row.text(0)?;
            let done = if row.text(1)? == "held" {
                match self.load_payment(&id)? {
                    Some(record) => self.hold_for_review(&record),
                    None => Ok(()),
                }
            } else {
                self.carry_rejected(&id)
            };
            if let Err(error) = done {
                tracing::warn!(payment = %id, %error, "could not settle a review hold yet");
            }
        }
        let refunds = self.sql.run(|db| {
            db.query(
                &format!("{SELECT_REFUND} WHERE state = 'pending' AND updated_at <= $1 ORDER BY updated_at, id LIMIT $2"),
                sql_params![before, MERCHANT_PAGE_MAX],
            )
        })?;
        for row in &refunds {
            let (view, customer_id, _) = refund(row)?;
            let id = view.id.clone();
            match self.carry_refund((view, customer_id)) {
                Ok(_) | Err(MerchantError::MerchantFundsInsufficient) => {}
                Err(error) => tracing::warn!(refund = %id, %error, "could not resolve yet"),
            }
        }
        Ok(payments.len() + refunds.len())
    }

    /// The refunds of a payment, oldest first.
    pub fn refunds_of(&self, payment_id: &str) -> Result<Vec<RefundView>, MerchantError> {
        let rows = self.sql.run(|db| {
            db.query(
                &format!("{SELECT_REFUND} WHERE payment_id = $1 ORDER BY created_at, id LIMIT $2"),
                sql_params![payment_id, MERCHANT_PAGE_MAX],
            )
        })?;
        rows.iter().map(|r| Ok(refund(r)?.0)).collect()
    }
}

/// A failed payment for want of money is the request's error (nothing moved).
/// A refund is filed under its payment's category (so a month's spending
/// nets out), or `other` when the payment has no row.
fn refund_category(db: &mut dyn Sql, payment_id: &str) -> Result<String, StoreError> {
    Ok(db
        .query_opt(
            "SELECT category FROM activity WHERE kind = $1 AND source_id = $2",
            sql_params![ActivityKind::MerchantPayment.as_str(), payment_id],
        )?
        .map(|row| row.text(0))
        .transpose()?
        .unwrap_or_else(|| Category::Other.as_str().to_string()))
}

/// The review hold of a held merchant payment.
fn review_hold_id(payment_id: &str) -> String {
    format!("mpay:{payment_id}:review")
}

fn finished(view: PaymentView) -> Result<PaymentView, MerchantError> {
    if view.status == "failed" && view.reason.as_deref() == Some("insufficient_funds") {
        return Err(MerchantError::InsufficientFunds);
    }
    Ok(view)
}

fn finished_refund(view: RefundView) -> Result<RefundView, MerchantError> {
    if view.status == "failed" && view.failure.as_deref() == Some("merchant_funds_insufficient") {
        return Err(MerchantError::MerchantFundsInsufficient);
    }
    Ok(view)
}

fn release_limits(
    db: &mut dyn Sql,
    customer_id: &str,
    record: &PaymentRecord,
    amount: i64,
) -> Result<(), MerchantError> {
    for (span, period) in [
        ("merchant_payment.day", record.limit_day),
        ("merchant_payment.month", record.limit_month),
    ] {
        if let Some(period) = period {
            db.execute(
                "UPDATE payment_usage SET used = used - $4 WHERE customer_id = $1 AND span = $2 AND period = $3 AND used >= $4",
                sql_params![customer_id, span, period, amount],
            )?;
        }
    }
    Ok(())
}

/// A merchant's owner (a customer) and display name, read in the caller's
/// transaction.
fn merchant_parties(
    db: &mut dyn Sql,
    merchant_id: &str,
) -> Result<(String, String), MerchantError> {
    let row = db
        .query_opt(
            "SELECT owner_customer_id, display_name FROM merchants WHERE id = $1",
            sql_params![merchant_id],
        )?
        .ok_or(MerchantError::NotFound("merchant"))?;
    Ok((row.text(0)?, row.text(1)?))
}
