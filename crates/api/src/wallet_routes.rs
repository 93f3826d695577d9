//! What the wallet does beyond funding: bill payment (`/v1/me/billers`,
//! `/v1/me/bill-payments`), wallets in several currencies and conversions
//! between them (`/v1/me/wallets`, `/v1/me/fx/…`), and the customer's
//! history with receipts, a monthly summary and a CSV export
//! (`/v1/me/activity…`). The work is in `coffer_payments` (`Bills`, `Fx`,
//! `Activity`); handlers parse, call it off the async workers, and map.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_core::Timestamp;
use coffer_payments::activity::{ActivityKind, ActivityStatus, Category, Cursor, Filter};
use coffer_payments::bills::BillerInfo;
use coffer_payments::fx::format_rate;
use coffer_payments::{
    ActivityView, BillError, BillPaymentRequest, BillPaymentView, FixedSide, FxError, FxQuoteView,
    WalletView,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::body::{parse, RawBody};
use crate::customer_routes::{customer_principal, CustomerSession};
use crate::error::ApiError;
use crate::funding_routes::client_key;
use crate::idempotency;
use crate::openapi::params::IdempotencyKey;
use crate::openapi::{BadRequest, BodyTooLarge, Internal};
use crate::path_id::PathId;
use crate::respond::blocking_call;
use crate::respond::{json_response, to_json};
use crate::route_table::RouteTable;
use crate::AppState;

pub fn routes() -> RouteTable {
    RouteTable::default()
        .get("/v1/me/billers", list_billers)
        .get("/v1/me/billers/{id}/bill", lookup_bill)
        .post("/v1/me/bill-payments", pay_bill)
        .get("/v1/me/bill-payments/{id}", get_bill_payment)
        .get("/v1/me/wallets", list_wallets)
        .post("/v1/me/wallets", open_wallet)
        .post("/v1/me/fx/quotes", create_quote)
        .get("/v1/me/fx/quotes/{id}", get_quote)
        .post("/v1/me/fx/conversions", convert)
        .get("/v1/me/activity", list_activity)
        .get("/v1/me/activity/summary", activity_summary)
        .get("/v1/me/activity/export", export_activity)
        .get("/v1/me/activity/{id}", get_activity)
        .get("/v1/me/activity/{id}/receipt", receipt)
}

fn with_field(api: ApiError, field: Option<&'static str>) -> ApiError {
    match field {
        Some(field) => api.field(field),
        None => api,
    }
}

impl From<BillError> for ApiError {
    fn from(error: BillError) -> ApiError {
        let status = match error {
            BillError::Invalid { .. }
            | BillError::NoBillDue
            | BillError::AmountMismatch { .. }
            | BillError::KeyReused
            | BillError::LimitExceeded { .. }
            | BillError::InsufficientFunds => StatusCode::UNPROCESSABLE_ENTITY,
            BillError::UnknownBiller | BillError::NotFound => StatusCode::NOT_FOUND,
            BillError::AlreadyPaid => StatusCode::CONFLICT,
            BillError::StepUpRequired => StatusCode::FORBIDDEN,
            BillError::BillerUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            BillError::Rejected(rejection) => return rejection.into(),
            BillError::Engine(error) => return error.into(),
            BillError::Identity(error) => return error.into(),
            BillError::Store(_) | BillError::Audit(_) | BillError::Internal(_) => {
                return ApiError::internal(error)
            }
        };
        with_field(
            ApiError::new(status, error.code(), error.to_string()),
            error.field(),
        )
    }
}

impl From<FxError> for ApiError {
    fn from(error: FxError) -> ApiError {
        let status = match error {
            FxError::Invalid { .. }
            | FxError::CurrencyNotEnabled { .. }
            | FxError::QuoteExpired
            | FxError::InsufficientFunds
            | FxError::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            FxError::QuoteNotFound => StatusCode::NOT_FOUND,
            FxError::QuoteUsed => StatusCode::CONFLICT,
            FxError::RateUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            FxError::Rejected(rejection) => return rejection.into(),
            FxError::Engine(error) => return error.into(),
            FxError::Store(_) | FxError::Audit(_) | FxError::Internal(_) => {
                return ApiError::internal(error)
            }
        };
        with_field(
            ApiError::new(status, error.code(), error.to_string()),
            error.field(),
        )
    }
}

fn rfc3339(at: i64) -> String {
    Timestamp::from_nanos(at).to_rfc3339()
}

// ---- billers and bills ---------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub(crate) struct BillerBody {
    id: String,
    name_zh: String,
    name_en: String,
    /// `electricity`, `water`, `gas`, `phone` or `credit_card`.
    category: &'static str,
    /// What the account reference is (digits; spaces and dashes ignored).
    reference_format: String,
    reference_digits: usize,
    /// Whether less than the amount due may be paid (credit cards).
    partial_payment: bool,
}

fn biller_body(info: &BillerInfo) -> BillerBody {
    BillerBody {
        id: info.id.to_string(),
        name_zh: info.name_zh.to_string(),
        name_en: info.name_en.to_string(),
        category: info.category.as_str(),
        reference_format: info.reference_format.to_string(),
        reference_digits: info.reference_digits,
        partial_payment: info.partial_payment,
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BillersResponse {
    data: Vec<BillerBody>,
}

#[utoipa::path(
    get,
    path = "/v1/me/billers",
    tag = "bills",
    summary = "Billers",
    description = "The catalogue of billers a customer can pay: electricity, water, gas, phone and credit card, with names in Chinese and English and the format of their account references.",
    responses(
        (status = 200, description = "The catalogue.", body = BillersResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_billers(
    State(state): State<AppState>,
    _session: CustomerSession,
) -> Result<Response, ApiError> {
    // The catalogue in force: staff add and disable billers at runtime.
    let bills = state.bills.clone();
    let catalogue = blocking_call(move || bills.catalogue()).await?;
    Ok(json_response(
        StatusCode::OK,
        &BillersResponse {
            data: catalogue
                .iter()
                .filter(|e| e.enabled)
                .map(|e| biller_body(&e.info))
                .collect(),
        },
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct BillQuery {
    /// The account at the biller (customer number, mobile number, card number).
    account_reference: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BillBody {
    biller_id: String,
    /// Only its last four digits.
    account_reference: String,
    /// `due` or `paid`.
    status: &'static str,
    /// Minor units of `currency`; 0 once paid.
    amount_due: i64,
    currency: &'static str,
    /// `YYYY-MM-DD`.
    due_date: String,
    /// The account holder's name as the biller masks it: check it before paying.
    holder_name: String,
}

#[utoipa::path(
    get,
    path = "/v1/me/billers/{id}/bill",
    tag = "bills",
    summary = "Look up a bill",
    description = "Asks the biller what is due on an account: amount, due date and the holder's masked name. Simulator test references (last four digits): `0000` no bill, `0001` already paid, `0503` biller down, `0504` the payment times out; anything else has a bill due.",
    params(("id" = String, Path, description = "The biller's id."), BillQuery),
    responses(
        (status = 200, description = "The bill.", body = BillBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`unknown_biller`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`account_reference`), `no_bill_due`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`biller_unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn lookup_bill(
    State(state): State<AppState>,
    _session: CustomerSession,
    PathId(id): PathId,
    query: Result<Query<BillQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("account_reference", e.body_text()))?;
    let reference = query
        .account_reference
        .ok_or_else(|| ApiError::invalid("account_reference", "required"))?;
    let bills = state.bills.clone();
    let lookup_reference = reference.clone();
    let (info, bill) = blocking_call(move || {
        let info = bills.enabled_biller(&id)?;
        let bill = bills.lookup(&info.id, &lookup_reference)?;
        Ok::<_, BillError>((info, bill))
    })
    .await?;
    let digits = info.parse_reference(&reference).unwrap_or_default();
    Ok(json_response(
        StatusCode::OK,
        &BillBody {
            biller_id: info.id.to_string(),
            account_reference: coffer_payments::bills::mask_reference(&digits),
            status: if bill.paid { "paid" } else { "due" },
            amount_due: bill.amount_due,
            currency: coffer_payments::bills::BILL_CURRENCY,
            due_date: bill.due_date,
            holder_name: bill.holder_masked,
        },
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PayBillBody {
    biller_id: String,
    account_reference: String,
    /// Minor units (fen): the amount due (credit cards: up to it).
    amount: i64,
    /// CNY.
    currency: String,
    /// Needed at or above the step-up threshold: a verified challenge for
    /// operation `bill_payment`, this amount and currency, and payee
    /// `biller:<biller_id>:<account reference digits>`.
    #[serde(default)]
    step_up_challenge_id: Option<String>,
}

/// A bill payment.
#[derive(Serialize, ToSchema)]
pub(crate) struct BillPaymentBody {
    id: String,
    biller_id: String,
    /// Only its last four digits.
    account_reference: String,
    holder_name: String,
    amount: i64,
    currency: String,
    /// `pending` (the biller has not answered; the amount is held), `succeeded` or `failed`.
    status: &'static str,
    /// Why it failed: `insufficient_funds`, `timeout`, `bill_already_paid`, `amount_mismatch`…
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The biller's confirmation number, once paid.
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmation_number: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_at: Option<String>,
}

fn bill_payment_body(view: BillPaymentView) -> BillPaymentBody {
    BillPaymentBody {
        id: view.id,
        biller_id: view.biller_id,
        account_reference: view.account_reference_masked,
        holder_name: view.holder_masked,
        amount: view.amount,
        currency: view.currency,
        status: view.state.as_str(),
        reason: view.reason,
        confirmation_number: view.confirmation,
        created_at: rfc3339(view.created_at),
        resolved_at: view.resolved_at.map(rfc3339),
    }
}

#[utoipa::path(
    post,
    path = "/v1/me/bill-payments",
    tag = "bills",
    summary = "Pay a bill",
    description = "Looks the bill up, holds the amount in the wallet, pays the biller and captures the hold with the biller's confirmation number (or releases it when the biller refuses). A biller that does not answer leaves the payment `pending` until the resolver asks it. At or above the step-up threshold it needs a verified step-up challenge.",
    params(IdempotencyKey),
    request_body = PayBillBody,
    responses(
        (status = 201, description = "Paid (`succeeded`), refused (`failed`) or `pending`.", body = BillPaymentBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`step_up_required`, `csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`unknown_biller`.", body = crate::error::ErrorBody),
        (status = 409, description = "`bill_already_paid`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`, `no_bill_due`, `amount_mismatch`, `limit_exceeded`, `insufficient_funds`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`biller_unavailable`, `overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn pay_bill(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        "bill_payment",
        &body,
        || async {
            let client = client_key(&headers, "bill_payment", &body)?;
            let request: PayBillBody = parse(&body)?;
            let bills = state.bills.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                bills.pay(
                    &session.info.customer_id,
                    &client,
                    &BillPaymentRequest {
                        biller_id: request.biller_id,
                        account_reference: request.account_reference,
                        amount: request.amount,
                        currency: request.currency,
                        step_up_challenge_id: request.step_up_challenge_id,
                    },
                    &session.context.ip,
                )
            })
            .await?;
            to_json(StatusCode::CREATED, &bill_payment_body(view))
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/me/bill-payments/{id}",
    tag = "bills",
    summary = "A bill payment",
    params(("id" = String, Path, description = "The payment id (`bil_…`).")),
    responses(
        (status = 200, description = "The payment and its status.", body = BillPaymentBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn get_bill_payment(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let bills = state.bills.clone();
    let view = blocking_call(move || bills.get(&session.info.customer_id, &id)).await?;
    Ok(json_response(StatusCode::OK, &bill_payment_body(view)))
}

// ---- wallets and FX ----------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub(crate) struct CurrencyWalletBody {
    account_id: String,
    currency: String,
    /// Digits after the decimal point (ISO 4217): 2 for CNY, 0 for JPY.
    exponent: u8,
    /// Minor units.
    posted: i64,
    /// Minor units: posted net of held payments.
    available: i64,
}

fn wallet_body(view: WalletView) -> CurrencyWalletBody {
    CurrencyWalletBody {
        account_id: view.account_id,
        currency: view.currency,
        exponent: view.exponent,
        posted: view.posted,
        available: view.available,
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WalletsResponse {
    data: Vec<CurrencyWalletBody>,
    /// Currencies this bank's wallets can hold.
    enabled_currencies: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/v1/me/wallets",
    tag = "fx",
    summary = "Wallets",
    description = "This customer's wallets, one per currency, with balances in minor units.",
    responses(
        (status = 200, description = "The wallets.", body = WalletsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_wallets(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Result<Response, ApiError> {
    let fx = state.fx.clone();
    let wallets = blocking_call(move || fx.wallets(&session.info.customer_id)).await?;
    Ok(json_response(
        StatusCode::OK,
        &WalletsResponse {
            data: wallets.into_iter().map(wallet_body).collect(),
            enabled_currencies: state.fx.policy().enabled_currencies.clone(),
        },
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenWalletBody {
    /// An enabled ISO 4217 code: CNY, USD, HKD, EUR, JPY, GBP by default.
    currency: String,
}

#[utoipa::path(
    post,
    path = "/v1/me/wallets",
    tag = "fx",
    summary = "Open a wallet in another currency",
    description = "Opens (idempotently) this customer's wallet in an enabled currency.",
    params(IdempotencyKey),
    request_body = OpenWalletBody,
    responses(
        (status = 201, description = "Open.", body = CurrencyWalletBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`, `currency_not_enabled`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn open_wallet(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        "open_wallet",
        &body,
        || async {
            let request: OpenWalletBody = parse(&body)?;
            let fx = state.fx.clone();
            let session = session.clone();
            let view =
                blocking_call(move || fx.open_wallet(&session.info.customer_id, &request.currency))
                    .await?;
            to_json(StatusCode::CREATED, &wallet_body(view))
        },
    )
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuoteRequest {
    /// The currency the customer pays with.
    sell_currency: String,
    /// The currency the customer receives.
    buy_currency: String,
    /// Minor units of `sell_currency` to sell; give this or `buy_amount`.
    #[serde(default)]
    sell_amount: Option<i64>,
    /// Minor units of `buy_currency` to receive; give this or `sell_amount`.
    #[serde(default)]
    buy_amount: Option<i64>,
}

/// A quote, and the state of the conversion that uses it.
#[derive(Serialize, ToSchema)]
pub(crate) struct QuoteBody {
    id: String,
    sell_currency: String,
    buy_currency: String,
    /// Minor units the customer pays (rounded up when `buy_amount` was fixed).
    sell_amount: i64,
    /// Minor units the customer receives (rounded down when `sell_amount` was fixed).
    buy_amount: i64,
    /// Units of `buy_currency` per unit of `sell_currency`, 8 decimals: the market's mid rate.
    mid_rate: String,
    /// The customer's rate (mid rate less the spread), truncated to 8 decimals for display.
    rate: String,
    /// The bank's margin in basis points.
    spread_bps: i64,
    /// `open`, `converting`, `converted` or `failed`.
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    created_at: String,
    /// Convert before this.
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    converted_at: Option<String>,
}

fn quote_body(view: FxQuoteView) -> QuoteBody {
    QuoteBody {
        rate: format_rate(view.rate()),
        mid_rate: format_rate(view.mid_rate),
        id: view.id,
        sell_currency: view.sell_currency,
        buy_currency: view.buy_currency,
        sell_amount: view.sell_amount,
        buy_amount: view.buy_amount,
        spread_bps: view.spread_bps,
        status: view.state,
        reason: view.reason,
        created_at: rfc3339(view.created_at),
        expires_at: rfc3339(view.expires_at),
        converted_at: view.converted_at.map(rfc3339),
    }
}

#[utoipa::path(
    post,
    path = "/v1/me/fx/quotes",
    tag = "fx",
    summary = "Quote a conversion",
    description = "Prices a conversion between two enabled currencies: mid rate from the rate source, the bank's spread, both amounts, and an expiry (30 s by default). Rounding is always in the bank's favour by less than one minor unit: a fixed sell amount buys the exact value rounded down; a fixed buy amount costs the exact price rounded up.",
    params(IdempotencyKey),
    request_body = QuoteRequest,
    responses(
        (status = 201, description = "The quote.", body = QuoteBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`, `currency_not_enabled`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`rate_unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn create_quote(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        "fx_quote",
        &body,
        || async {
            let request: QuoteRequest = parse(&body)?;
            let fixed = match (request.sell_amount, request.buy_amount) {
                (Some(amount), None) => FixedSide::Sell(amount),
                (None, Some(amount)) => FixedSide::Buy(amount),
                _ => {
                    return Err(ApiError::invalid(
                        "sell_amount",
                        "give exactly one of sell_amount and buy_amount",
                    ))
                }
            };
            let fx = state.fx.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                fx.quote(
                    &session.info.customer_id,
                    &request.sell_currency,
                    &request.buy_currency,
                    fixed,
                )
            })
            .await?;
            to_json(StatusCode::CREATED, &quote_body(view))
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/me/fx/quotes/{id}",
    tag = "fx",
    summary = "A quote",
    params(("id" = String, Path, description = "The quote id (`fxq_…`).")),
    responses(
        (status = 200, description = "The quote and its conversion's state.", body = QuoteBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn get_quote(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let fx = state.fx.clone();
    let view = blocking_call(move || fx.get(&session.info.customer_id, &id)).await?;
    Ok(json_response(StatusCode::OK, &quote_body(view)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConvertBody {
    /// An open quote of this customer's, before its expiry.
    quote_id: String,
}

#[utoipa::path(
    post,
    path = "/v1/me/fx/conversions",
    tag = "fx",
    summary = "Convert at a quote",
    description = "Converts at the quote's price, within its life, once: two transfers in one linked ledger batch (sell wallet → the bank's FX position; the bank's FX position in the other currency → buy wallet), both or neither. The buy wallet is opened if needed.",
    params(IdempotencyKey),
    request_body = ConvertBody,
    responses(
        (status = 201, description = "Converted.", body = QuoteBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such quote.", body = crate::error::ErrorBody),
        (status = 409, description = "`quote_already_used`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`quote_expired`, `insufficient_funds`, `currency_not_enabled`, `invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn convert(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        "fx_conversion",
        &body,
        || async {
            let client = client_key(&headers, "fx_conversion", &body)?;
            let request: ConvertBody = parse(&body)?;
            let fx = state.fx.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                fx.convert(
                    &session.info.customer_id,
                    &client,
                    &request.quote_id,
                    &session.context.ip,
                )
            })
            .await?;
            to_json(StatusCode::CREATED, &quote_body(view))
        },
    )
    .await
}

// ---- history -----------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub(crate) struct FxBody {
    /// Minor units of `currency` on the other side.
    amount: i64,
    currency: String,
    /// The customer's rate, 8 decimals.
    rate: String,
}

/// One thing the wallet did.
#[derive(Serialize, ToSchema)]
pub(crate) struct ActivityBody {
    id: String,
    /// `top_up`, `withdrawal`, `bill_payment`, `fx_conversion`, `p2p_transfer`, `merchant_payment`, `refund`.
    #[serde(rename = "type")]
    kind: String,
    /// The id of the top-up, payment or quote it describes.
    source_id: String,
    /// `in`, `out` or `exchange`.
    direction: String,
    /// `pending`, `succeeded`, `failed`, `refunded`, `partially_refunded`.
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    counterparty: String,
    category: String,
    reference: String,
    /// Minor units.
    amount: i64,
    currency: String,
    /// Minor units of `currency`.
    fee: i64,
    /// Minor units of `currency` given back so far.
    refunded: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    fx: Option<FxBody>,
    created_at: String,
    updated_at: String,
}

fn activity_body(view: ActivityView) -> ActivityBody {
    ActivityBody {
        id: view.id,
        kind: view.kind,
        source_id: view.source_id,
        direction: view.direction,
        status: view.status,
        reason: view.reason,
        counterparty: view.counterparty,
        category: view.category,
        reference: view.reference,
        amount: view.amount,
        currency: view.currency,
        fee: view.fee,
        refunded: view.refunded,
        fx: view.fx.map(|fx| FxBody {
            amount: fx.amount,
            currency: fx.currency,
            rate: fx.rate,
        }),
        created_at: rfc3339(view.created_at),
        updated_at: rfc3339(view.updated_at),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ActivityPage {
    data: Vec<ActivityBody>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Filters of the history and its export (all optional). Values arrive as
/// text so that a bad one is this API's `invalid_field`, naming it.
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActivityQuery {
    /// Created at or after (RFC 3339).
    from: Option<String>,
    /// Created before (RFC 3339).
    until: Option<String>,
    /// `top_up`, `withdrawal`, `bill_payment`, `fx_conversion`, `p2p_transfer`, `merchant_payment`, `refund`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// `food`, `transport`, `shopping`, `bills`, `transfers`, `top_up`, `withdrawal`, `exchange`…
    category: Option<String>,
    /// `pending`, `succeeded`, `failed`, `refunded`, `partially_refunded`.
    status: Option<String>,
    /// ISO 4217 code.
    currency: Option<String>,
    /// The counterparty contains this (case-insensitive).
    counterparty: Option<String>,
    /// At least this many minor units.
    #[param(value_type = Option<i64>, minimum = 0)]
    amount_min: Option<String>,
    /// At most this many minor units.
    #[param(value_type = Option<i64>, minimum = 0)]
    amount_max: Option<String>,
    /// Free text: type, counterparty, category, reference or id contains it.
    q: Option<String>,
    /// From `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 100 (default 20); not used by the export.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::invalid(field, message)
}

fn text_filter(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(text) if text.chars().count() > coffer_payments::activity::SEARCH_LENGTH_MAX => {
            Err(invalid(field, "at most 100 characters"))
        }
        Some(text) if text.is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn parse_filter(query: ActivityQuery) -> Result<(Filter, Option<Cursor>, i64), ApiError> {
    let time = |field: &str, text: Option<String>| -> Result<Option<i64>, ApiError> {
        text.map(|t| {
            Timestamp::parse_rfc3339(&t)
                .map(Timestamp::as_nanos)
                .ok_or_else(|| invalid(field, "an RFC 3339 time, e.g. 2026-11-01T00:00:00+08:00"))
        })
        .transpose()
    };
    let amount = |field: &str, text: Option<String>| -> Result<Option<i64>, ApiError> {
        text.map(|t| {
            t.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| invalid(field, "a non-negative integer of minor units"))
        })
        .transpose()
    };
    let filter = Filter {
        from: time("from", query.from)?,
        until: time("until", query.until)?,
        kind: query
            .kind
            .map(|t| ActivityKind::parse(&t).ok_or_else(|| invalid("type", "an activity type")))
            .transpose()?,
        category: query
            .category
            .map(|t| Category::parse(&t).ok_or_else(|| invalid("category", "a category")))
            .transpose()?,
        status: query
            .status
            .map(|t| ActivityStatus::parse(&t).ok_or_else(|| invalid("status", "a status")))
            .transpose()?,
        currency: text_filter("currency", query.currency)?,
        counterparty: text_filter("counterparty", query.counterparty)?,
        amount_min: amount("amount_min", query.amount_min)?,
        amount_max: amount("amount_max", query.amount_max)?,
        search: text_filter("q", query.q)?,
    };
    let cursor = query
        .cursor
        .map(|t| {
            Cursor::decode(&t)
                .ok_or_else(|| invalid("cursor", "a next_cursor from a previous page"))
        })
        .transpose()?;
    let limit = match query.limit {
        None => 20,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| invalid("limit", "an integer from 1 to 100"))?,
    };
    Ok((filter, cursor, limit))
}

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn query_or_invalid<T>(query: QueryResult<T>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::invalid("query", e.body_text()))
}

#[utoipa::path(
    get,
    path = "/v1/me/activity",
    tag = "history",
    summary = "Transaction history",
    description = "Everything the wallet did, newest first, each with its status as it is now: top-ups, withdrawals, bill payments, conversions (and P2P and merchant payments as they arrive). Filters combine; `q` searches type, counterparty, category and reference; pages follow `next_cursor`.",
    params(ActivityQuery),
    responses(
        (status = 200, description = "A page.", body = ActivityPage),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` naming the filter.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_activity(
    State(state): State<AppState>,
    session: CustomerSession,
    query: QueryResult<ActivityQuery>,
) -> Result<Response, ApiError> {
    let (filter, cursor, limit) = parse_filter(query_or_invalid(query)?)?;
    let activity = state.activity.clone();
    let page = blocking_call(move || {
        activity.list(&session.info.customer_id, &filter, cursor.as_ref(), limit)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &ActivityPage {
            data: page.items.into_iter().map(activity_body).collect(),
            next_cursor: page.next_cursor.map(|c| c.encode()),
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/me/activity/{id}",
    tag = "history",
    summary = "One transaction",
    description = "Details with fee and FX.",
    params(("id" = String, Path, description = "The activity id (`act_…`).")),
    responses(
        (status = 200, description = "The transaction.", body = ActivityBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn get_activity(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let activity = state.activity.clone();
    let found = blocking_call(move || activity.get(&session.info.customer_id, &id)).await?;
    let view = found.ok_or_else(|| ApiError::not_found("transaction"))?;
    Ok(json_response(StatusCode::OK, &activity_body(view)))
}

/// A receipt for one transaction.
#[derive(Serialize, ToSchema)]
pub(crate) struct ReceiptBody {
    /// The activity id.
    receipt_number: String,
    issued_at: String,
    #[serde(rename = "type")]
    kind: String,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Who was paid (or paid the wallet).
    counterparty: String,
    reference: String,
    /// Minor units.
    amount: i64,
    fee: i64,
    /// amount + fee, minor units.
    total: i64,
    currency: String,
    refunded: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    fx: Option<FxBody>,
    /// The biller's confirmation number, for a paid bill.
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmation_number: Option<String>,
    /// The bill's account holder as the biller masks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    account_holder: Option<String>,
    created_at: String,
}

#[utoipa::path(
    get,
    path = "/v1/me/activity/{id}/receipt",
    tag = "history",
    summary = "A receipt",
    description = "A receipt for any transaction: amount, fee, total, FX, the counterparty and, for a bill, the biller's confirmation number.",
    params(("id" = String, Path, description = "The activity id (`act_…`).")),
    responses(
        (status = 200, description = "The receipt.", body = ReceiptBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`), `amount_out_of_range`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn receipt(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let (activity, bills, now) = (
        state.activity.clone(),
        state.bills.clone(),
        state.clock.now().as_nanos(),
    );
    let customer_id = session.info.customer_id.clone();
    let (view, bill) = blocking_call(move || -> Result<_, ApiError> {
        let view = activity
            .get(&customer_id, &id)?
            .ok_or_else(|| ApiError::not_found("transaction"))?;
        let bill = if view.kind == ActivityKind::BillPayment.as_str() {
            Some(bills.get(&customer_id, &view.source_id)?)
        } else {
            None
        };
        Ok((view, bill))
    })
    .await?;
    let total = view.amount.checked_add(view.fee).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_out_of_range",
            "amount and fee overflow",
        )
    })?;
    Ok(json_response(
        StatusCode::OK,
        &ReceiptBody {
            receipt_number: view.id,
            issued_at: rfc3339(now),
            kind: view.kind,
            status: view.status,
            reason: view.reason,
            counterparty: view.counterparty,
            reference: view.reference,
            amount: view.amount,
            fee: view.fee,
            total,
            currency: view.currency,
            refunded: view.refunded,
            fx: view.fx.map(|fx| FxBody {
                amount: fx.amount,
                currency: fx.currency,
                rate: fx.rate,
            }),
            confirmation_number: bill.as_ref().and_then(|b| b.confirmation.clone()),
            account_holder: bill.map(|b| b.holder_masked),
            created_at: rfc3339(view.created_at),
        },
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SummaryQuery {
    /// `YYYY-MM` in the bank's time zone (China time); default this month.
    month: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CategoryTotalBody {
    category: String,
    currency: String,
    /// Minor units, net of refunds.
    amount: i64,
    count: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SummaryBody {
    month: String,
    /// Money out by category and currency: succeeded payments net of
    /// refunds; withdrawals to one's own account and conversions are not spending.
    categories: Vec<CategoryTotalBody>,
}

#[utoipa::path(
    get,
    path = "/v1/me/activity/summary",
    tag = "history",
    summary = "Monthly spending by category",
    params(SummaryQuery),
    responses(
        (status = 200, description = "The month's spending.", body = SummaryBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`month`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn activity_summary(
    State(state): State<AppState>,
    session: CustomerSession,
    query: QueryResult<SummaryQuery>,
) -> Result<Response, ApiError> {
    let query = query_or_invalid(query)?;
    let (year, month) = match query.month {
        Some(text) => {
            let parsed = text
                .split_once('-')
                .filter(|(y, m)| y.len() == 4 && m.len() == 2)
                .and_then(|(y, m)| Some((y.parse::<i64>().ok()?, m.parse::<i64>().ok()?)));
            parsed.ok_or_else(|| invalid("month", "YYYY-MM"))?
        }
        None => {
            let offset = state.funding.policy().limit_day_utc_offset_seconds;
            let seconds = state.clock.now().as_nanos() / 1_000_000_000 + offset;
            let (y, m, _) = coffer_core::time::civil_from_days(seconds.div_euclid(86_400));
            (y, m)
        }
    };
    let activity = state.activity.clone();
    let totals =
        blocking_call(move || activity.monthly_summary(&session.info.customer_id, year, month))
            .await?
            .ok_or_else(|| invalid("month", "YYYY-MM with a month 01 to 12, from 1970"))?;
    Ok(json_response(
        StatusCode::OK,
        &SummaryBody {
            month: format!("{year:04}-{month:02}"),
            categories: totals
                .into_iter()
                .map(|t| CategoryTotalBody {
                    category: t.category,
                    currency: t.currency,
                    amount: t.amount,
                    count: t.count,
                })
                .collect(),
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/me/activity/export",
    tag = "history",
    summary = "Export history as CSV",
    description = "The filtered history (up to 10,000 rows, newest first) as RFC 4180 CSV with decimal amounts. Cells a spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`) get a leading `'`.",
    params(ActivityQuery),
    responses(
        (status = 200, description = "The CSV file.", content_type = "text/csv", body = String),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` naming the filter.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn export_activity(
    State(state): State<AppState>,
    session: CustomerSession,
    query: QueryResult<ActivityQuery>,
) -> Result<Response, ApiError> {
    let (filter, _, _) = parse_filter(query_or_invalid(query)?)?;
    let activity = state.activity.clone();
    let csv =
        blocking_call(move || activity.export_csv(&session.info.customer_id, &filter)).await?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"coffer-history.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}
