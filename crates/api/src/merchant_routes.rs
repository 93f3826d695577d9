//! Merchants over HTTP: onboarding and credentials for the owner
//! (`/v1/me/merchants…`), paying merchants for customers
//! (`/v1/me/merchant-payments…`, `/v1/me/checkouts…`, `/v1/me/payment-codes`),
//! the merchant's own systems with a merchant API key (`/v1/merchant…`), and
//! review and settlement for staff (`/v1/staff/merchants…`,
//! `/v1/staff/settlements`). The work is in `coffer_payments::Merchants`.
//!
//! Merchants' systems authenticate with service API keys whose scope is
//! `merchant:<merchant id>`: what acquirers give merchants (a secret key
//! for server-to-server calls from a shop's back end or a till), where a
//! session (password, second factor, 30-minute idle expiry) would not fit
//! an unattended machine. Keys are shown once and stored as SHA-256.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_core::{Secret, Timestamp};
use coffer_payments::{
    ChargeRequest, ClientKey, MerchantConfirmation as Confirmation, MerchantError,
    MerchantPaymentView as PaymentView, MerchantStatus, MerchantView, NewMerchant, Preview,
    RefundView, SettlementView,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::body::{parse, RawBody};
use crate::customer_routes::{customer_principal, CustomerSession};
use crate::error::ApiError;
use crate::idempotency;
use crate::openapi::params::IdempotencyKey;
use crate::openapi::{BadRequest, BodyTooLarge, Internal};
use crate::path_id::PathId;
use crate::respond::blocking_call;
use crate::respond::{json_response, to_json};
use crate::route_table::RouteTable;
use crate::staff_routes::StaffSession;
use crate::AppState;

/// The scope prefix of a merchant's API keys.
pub const MERCHANT_SCOPE_PREFIX: &str = "merchant:";

pub fn routes() -> RouteTable {
    RouteTable::default()
        .get("/v1/merchant-categories", merchant_categories)
        .post("/v1/me/merchants", apply)
        .get("/v1/me/merchants", my_merchants)
        .get("/v1/me/merchants/{id}", my_merchant)
        .post("/v1/me/merchants/{id}/api-keys", create_merchant_key)
        .post("/v1/me/merchants/{id}/webhook", set_webhook)
        .post("/v1/me/merchant-payments/scan", scan)
        .post("/v1/me/merchant-payments/scan-image", scan_image)
        .post("/v1/me/merchant-payments", pay)
        .get("/v1/me/merchant-payments", my_payments)
        .get("/v1/me/merchant-payments/{id}", my_payment)
        .get("/v1/me/checkouts/{id}", view_checkout)
        .post("/v1/me/checkouts/{id}/confirm", confirm_checkout)
        .post("/v1/me/payment-codes", issue_payment_code)
        .get("/v1/merchant", merchant_profile)
        .get("/v1/merchant/qr", static_qr)
        .post("/v1/merchant/checkouts", create_checkout)
        .post("/v1/merchant/charges", charge_code)
        .get("/v1/merchant/payments", merchant_payments)
        .get("/v1/merchant/payments/{id}", merchant_payment)
        .get("/v1/merchant/payments/{id}/qr", dynamic_qr)
        .post("/v1/merchant/payments/{id}/refunds", refund)
        .get("/v1/merchant/settlements", merchant_settlements)
        .get("/v1/staff/merchants", staff_merchants)
        .get("/v1/staff/merchants/{id}", staff_merchant)
        .post("/v1/staff/merchants/{id}/review", review_merchant)
        .post("/v1/staff/settlements", run_settlements)
        .get("/v1/staff/settlements", staff_settlements)
}

impl From<MerchantError> for ApiError {
    fn from(error: MerchantError) -> ApiError {
        let status = match &error {
            MerchantError::Invalid { .. }
            | MerchantError::KeyReused
            | MerchantError::Qr(_)
            | MerchantError::QrImage(_)
            | MerchantError::QrMismatch
            | MerchantError::CodeInvalid
            | MerchantError::RefundExceedsPayment { .. }
            | MerchantError::LimitExceeded { .. }
            | MerchantError::InsufficientFunds => StatusCode::UNPROCESSABLE_ENTITY,
            MerchantError::NotFound(_) => StatusCode::NOT_FOUND,
            MerchantError::TooMany
            | MerchantError::MerchantNotActive
            | MerchantError::AlreadyReviewed
            | MerchantError::UnderReview
            | MerchantError::NotPayable
            | MerchantError::NotRefundable
            | MerchantError::MerchantFundsInsufficient => StatusCode::CONFLICT,
            MerchantError::CodeThrottled => StatusCode::TOO_MANY_REQUESTS,
            MerchantError::StepUpRequired | MerchantError::RiskBlocked(_) => StatusCode::FORBIDDEN,
            MerchantError::NotHeld => StatusCode::CONFLICT,
            MerchantError::Risk(_) => match error {
                MerchantError::Risk(error) => return error.into(),
                _ => return ApiError::internal("unreachable"),
            },
            MerchantError::Rejected(rejection) => return (*rejection).into(),
            MerchantError::Engine(_) => match error {
                MerchantError::Engine(error) => return error.into(),
                _ => return ApiError::internal("unreachable"),
            },
            MerchantError::Identity(_) => match error {
                MerchantError::Identity(error) => return error.into(),
                _ => return ApiError::internal("unreachable"),
            },
            MerchantError::Funding(_) => match error {
                MerchantError::Funding(error) => return error.into(),
                _ => return ApiError::internal("unreachable"),
            },
            MerchantError::BankAccount(_) => match error {
                MerchantError::BankAccount(error) => return error.into(),
                _ => return ApiError::internal("unreachable"),
            },
            MerchantError::Store(_)
            | MerchantError::Vault(_)
            | MerchantError::Audit(_)
            | MerchantError::Notify(_)
            | MerchantError::Internal(_) => return ApiError::internal(error),
        };
        let api = ApiError::new(status, error.code(), error.to_string());
        match error.field() {
            Some(field) => api.field(field),
            None => api,
        }
    }
}

fn client_key(headers: &HeaderMap, route: &str, body: &[u8]) -> Result<ClientKey, ApiError> {
    let key = idempotency::key(headers)?;
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    Ok(ClientKey {
        key,
        request_hash: hex::encode(hasher.finalize()),
    })
}

fn time(at: i64) -> String {
    Timestamp::from_nanos(at).to_rfc3339()
}

/// A merchant's own system, from `Authorization: Bearer coffer_…` with a
/// `merchant:<id>` scope.
pub struct MerchantCaller {
    pub merchant_id: String,
    principal: Principal,
}

impl FromRequestParts<AppState> for MerchantCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let merchant_id = principal
            .scopes
            .iter()
            .find_map(|s| s.strip_prefix(MERCHANT_SCOPE_PREFIX))
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this API key is not a merchant's key",
                )
            })?;
        Ok(MerchantCaller {
            principal: Principal {
                key_id: format!("merchant:{merchant_id}"),
                scopes: vec!["merchant".into()],
            },
            merchant_id,
        })
    }
}

// ---- shapes ------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub(crate) struct CategoryBody {
    /// ISO 18245 merchant category code.
    mcc: &'static str,
    description: &'static str,
    /// The spending category customers see: food, transport, shopping…
    category: &'static str,
    /// The default merchant discount rate, in basis points (1/100 of a percent).
    discount_rate_bps: u32,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CategoriesResponse {
    data: Vec<CategoryBody>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyRequest {
    /// The name printed on QR codes and receipts, 1 to 25 characters.
    display_name: String,
    /// 1 to 15 characters.
    city: String,
    /// An ISO 18245 code from GET /v1/merchant-categories.
    mcc: String,
    /// The settlement bank account's bank: ICBC, CCB, ABC, BOC, BOCOM, CMB or PSBC.
    bank_code: String,
    /// 8 to 30 digits; stored only encrypted.
    account_number: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MerchantBody {
    id: String,
    display_name: String,
    city: String,
    mcc: String,
    category: &'static str,
    discount_rate_bps: u32,
    /// `pending_review`, `approved` or `rejected`.
    status: &'static str,
    settlement_bank_account_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    review_note: Option<String>,
    created_at: String,
}

fn merchant_body(view: MerchantView) -> MerchantBody {
    MerchantBody {
        id: view.id,
        display_name: view.display_name,
        city: view.city,
        mcc: view.mcc,
        category: view.category,
        discount_rate_bps: view.discount_rate_bps,
        status: view.status.as_str(),
        settlement_bank_account_id: view.settlement_bank_account_id,
        webhook_url: view.webhook_url,
        review_note: view.review_note,
        created_at: time(view.created_at),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MerchantsResponse {
    data: Vec<MerchantBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MerchantKeyResponse {
    /// `Authorization: Bearer <this>` for the merchant's systems; shown only now.
    api_key: String,
    /// The key's scope: `merchant:<merchant id>`.
    scope: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookRequest {
    /// An HTTPS URL (plain HTTP only for localhost), at most 500 characters.
    url: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookResponse {
    url: String,
    /// Verifies `Coffer-Signature` on every webhook (see the README); shown
    /// only now. Setting the URL again rotates it.
    secret: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScanRequest {
    /// The scanned EMVCo merchant-presented QR payload.
    payload: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PreviewBody {
    merchant_id: String,
    merchant_name: String,
    city: String,
    mcc: String,
    category: &'static str,
    /// `static` (enter the amount) or `dynamic` (amount fixed).
    initiation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<i64>,
    currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_id: Option<String>,
    /// True when this amount needs a step-up (operation `merchant_payment`, payee `merchant:<merchant_id>`).
    step_up_required: bool,
}

fn preview_body(preview: Preview) -> PreviewBody {
    PreviewBody {
        merchant_id: preview.merchant_id,
        merchant_name: preview.merchant_name,
        city: preview.city,
        mcc: preview.mcc,
        category: preview.category,
        initiation: preview.initiation.as_str(),
        amount: preview.amount,
        currency: preview.currency,
        order_reference: preview.order_reference,
        payment_id: preview.payment_id,
        step_up_required: preview.step_up_required,
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ScanImageResponse {
    /// The payload decoded from the image.
    payload: String,
    preview: PreviewBody,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PayRequest {
    /// The scanned payload (it is checked again).
    payload: String,
    /// Minor units: needed for a static code; a dynamic code fixes it.
    #[serde(default)]
    amount: Option<i64>,
    /// At or above the step-up threshold: a verified challenge for operation
    /// `merchant_payment`, this amount, CNY and payee `merchant:<merchant id>`.
    #[serde(default)]
    step_up_challenge_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfirmRequest {
    #[serde(default)]
    step_up_challenge_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RefundBody {
    id: String,
    payment_id: String,
    amount: i64,
    currency: String,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    created_at: String,
}

fn refund_body(view: RefundView) -> RefundBody {
    RefundBody {
        id: view.id,
        payment_id: view.payment_id,
        amount: view.amount,
        currency: view.currency,
        status: view.status,
        failure: view.failure,
        reason: view.reason,
        created_at: time(view.created_at),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PaymentBody {
    id: String,
    merchant_id: String,
    merchant_name: String,
    /// `qr_static`, `qr_dynamic`, `payment_code` or `checkout`.
    method: &'static str,
    amount: i64,
    currency: String,
    /// `awaiting_customer`, `pending`, `succeeded`, `failed`, `expired`, `partially_refunded` or `refunded`.
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// What refunds have taken of it so far.
    refunded: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    return_url: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    paid_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refunds: Option<Vec<RefundBody>>,
}

fn payment_body(view: PaymentView) -> PaymentBody {
    PaymentBody {
        id: view.id,
        merchant_id: view.merchant_id,
        merchant_name: view.merchant_name,
        method: view.method.as_str(),
        amount: view.amount,
        currency: view.currency,
        status: view.status,
        reason: view.reason,
        refunded: view.refunded,
        order_reference: view.order_reference,
        return_url: view.return_url,
        created_at: time(view.created_at),
        paid_at: view.paid_at.map(time),
        expires_at: view.expires_at.map(time),
        refunds: None,
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PaymentsResponse {
    data: Vec<PaymentBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PaymentCodeResponse {
    /// 18 digits; single use; shown only now.
    code: String,
    expires_at: String,
    /// The code as a QR code (SVG) for the merchant's scanner.
    qr_svg: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckoutRequest {
    /// Minor units, positive.
    amount: i64,
    /// CNY.
    currency: String,
    /// The merchant's order number, 1 to 25 printable ASCII characters.
    #[serde(default)]
    order_reference: Option<String>,
    /// Where the customer's app returns after confirming (https).
    #[serde(default)]
    return_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CheckoutResponse {
    payment: PaymentBody,
    /// The dynamic EMVCo QR payload of this checkout (show it at the till).
    qr_payload: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChargeRequestBody {
    /// The customer's payment code as scanned (18 digits).
    code: String,
    amount: i64,
    currency: String,
    #[serde(default)]
    order_reference: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefundRequest {
    /// Minor units: all or part of what is left to refund.
    amount: i64,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SettlementBody {
    id: String,
    merchant_id: String,
    /// The settled day (YYYY-MM-DD, the bank's time zone).
    date: String,
    attempt: i64,
    /// Payments taken by this settlement.
    gross: i64,
    refunds: i64,
    /// The merchant discount fee (gross × rate / 10 000, rounded half up, within the fee schedule's minimum and maximum for the merchant).
    fee: i64,
    /// Paid out: gross − refunds − fee.
    net: i64,
    currency: String,
    discount_rate_bps: i64,
    payment_count: i64,
    refund_count: i64,
    /// `paying` (a payout in flight), `paid`, `payout_retrying` (the last payout failed; the next is due at `next_payout_at`), `payout_failed` (retries used up: staff must act), `settled` (nothing to pay out), `empty`, `carried_forward`, `failed` (or `recorded`/`moved` while in progress).
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The payout to the settlement bank account (`fnd_…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    payout_id: Option<String>,
    /// The payout's own status: `pending`, `succeeded` or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    payout_status: Option<&'static str>,
    /// Payouts tried so far.
    payout_attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_payout_at: Option<String>,
}

fn settlement_body(view: SettlementView, payout: Option<&'static str>) -> SettlementBody {
    SettlementBody {
        date: coffer_payments::settlement::date_of_day(view.day),
        id: view.id,
        merchant_id: view.merchant_id,
        attempt: view.attempt,
        gross: view.gross,
        refunds: view.refunds,
        fee: view.fee,
        net: view.net,
        currency: view.currency,
        discount_rate_bps: view.discount_rate_bps,
        payment_count: view.payment_count,
        refund_count: view.refund_count,
        status: view.status,
        reason: view.reason,
        payout_id: view.funding_id,
        payout_status: payout,
        payout_attempts: view.payout_attempts,
        next_payout_at: view
            .next_payout_at
            .map(|at| Timestamp::from_nanos(at).to_rfc3339()),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SettlementsResponse {
    data: Vec<SettlementBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SettlementRunResponse {
    data: Vec<SettlementBody>,
    /// Merchants whose settlement could not run now (retry the run).
    failures: Vec<SettlementFailure>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SettlementFailure {
    merchant_id: String,
    code: &'static str,
    message: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettlementRunRequest {
    /// The day to settle (YYYY-MM-DD, bank time zone); yesterday by default.
    #[serde(default)]
    date: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewRequest {
    approve: bool,
    /// Why (kept in the audit log), at most 500 characters.
    #[serde(default)]
    note: Option<String>,
    /// Overrides the category's discount rate for this merchant (0 to 1000).
    #[serde(default)]
    discount_rate_bps: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// At most this many, newest first (1 to 100; default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

fn list_limit(
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<i64, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("limit", e.body_text()))?;
    match query.limit {
        None => Ok(20),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "an integer from 1 to 100")),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct QrQuery {
    /// `payload` (default: the EMVCo string as JSON), `svg` or `png`.
    #[param(value_type = Option<String>)]
    format: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct QrPayloadResponse {
    payload: String,
}

fn qr_response(
    query: Result<Query<QrQuery>, axum::extract::rejection::QueryRejection>,
    payload: String,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("format", e.body_text()))?;
    match query.format.as_deref() {
        None | Some("payload") => Ok(json_response(
            StatusCode::OK,
            &QrPayloadResponse { payload },
        )),
        Some("svg") => {
            let svg = coffer_payments::qr_image::svg(&payload).map_err(MerchantError::from)?;
            Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
        }
        Some("png") => {
            let png = coffer_payments::qr_image::png(&payload).map_err(MerchantError::from)?;
            Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
        }
        Some(_) => Err(ApiError::invalid("format", "payload, svg or png")),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaffMerchantsQuery {
    /// `pending_review` (the review queue), `approved` or `rejected`; all by default.
    status: Option<String>,
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaffSettlementsQuery {
    /// One merchant's settlements; all merchants' by default.
    merchant_id: Option<String>,
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

// ---- public ------------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/v1/merchant-categories",
    tag = "merchants",
    summary = "Merchant category codes",
    description = "The ISO 18245 codes a merchant can be onboarded with, each with its spending category and default discount rate.",
    responses((status = 200, description = "The table.", body = CategoriesResponse))
)]
pub(crate) async fn merchant_categories() -> Response {
    json_response(
        StatusCode::OK,
        &CategoriesResponse {
            data: coffer_payments::mcc::MERCHANT_CATEGORIES
                .iter()
                .map(|(mcc, description, category, bps)| CategoryBody {
                    mcc,
                    description,
                    category,
                    discount_rate_bps: *bps,
                })
                .collect(),
        },
    )
}

// ---- owners ------------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/me/merchants",
    tag = "merchants",
    summary = "Apply to become a merchant",
    description = "The signed-in customer applies for a merchant (a business) with a name, city, category code and settlement bank account (stored only encrypted, owned by the merchant). Staff review it; once approved it has its ledger accounts and can take payments. The idempotency fingerprint is a keyed hash (the body holds the account number).",
    params(IdempotencyKey),
    request_body = ApplyRequest,
    responses(
        (status = 201, description = "Applied: `pending_review`.", body = MerchantBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`too_many_merchants`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`display_name`, `city`, `mcc`, `bank_code`, `account_number`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`, `overloaded`.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn apply(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let session = Arc::new(session);
    idempotency::run_private(
        &state,
        &principal,
        "customer",
        &headers,
        "merchant_apply",
        &body,
        || async {
            let request: ApplyRequest = parse(&body)?;
            let merchants = state.merchants.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                merchants.apply(
                    &session.info.customer_id,
                    &NewMerchant {
                        display_name: request.display_name,
                        city: request.city,
                        mcc: request.mcc,
                        bank_code: request.bank_code,
                        account_number: Secret::new(request.account_number),
                    },
                    &session.context.ip,
                )
            })
            .await?;
            to_json(StatusCode::CREATED, &merchant_body(view))
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/me/merchants",
    tag = "merchants",
    summary = "My merchants",
    responses(
        (status = 200, description = "The customer's merchants.", body = MerchantsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn my_merchants(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Result<Response, ApiError> {
    let merchants = state.merchants.clone();
    let list = blocking_call(move || merchants.list_owned(&session.info.customer_id)).await?;
    Ok(json_response(
        StatusCode::OK,
        &MerchantsResponse {
            data: list.into_iter().map(merchant_body).collect(),
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/me/merchants/{id}",
    tag = "merchants",
    summary = "One of my merchants",
    params(("id" = String, Path, description = "The merchant id (`mer_…`).")),
    responses(
        (status = 200, description = "The merchant and its review status.", body = MerchantBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn my_merchant(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let merchants = state.merchants.clone();
    let view = blocking_call(move || merchants.owned(&session.info.customer_id, &id)).await?;
    Ok(json_response(StatusCode::OK, &merchant_body(view)))
}

#[utoipa::path(
    post,
    path = "/v1/me/merchants/{id}/api-keys",
    tag = "merchants",
    summary = "Issue an API key for the merchant's systems",
    description = "For an approved merchant: a service API key with scope `merchant:<id>`, for the shop's back end or till (`Authorization: Bearer coffer_…`). Shown once, stored as SHA-256; not replayed by Idempotency-Key (the answer carries the key).",
    params(("id" = String, Path, description = "The merchant id.")),
    responses(
        (status = 201, description = "The key, once.", body = MerchantKeyResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`merchant_not_active`: not approved.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn create_merchant_key(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let merchants = state.merchants.clone();
    let owner = session.info.customer_id.clone();
    let merchant_id = id.clone();
    let view = blocking_call(move || merchants.owned(&owner, &merchant_id)).await?;
    if view.status != MerchantStatus::Approved {
        return Err(MerchantError::MerchantNotActive.into());
    }
    let scope = format!("{MERCHANT_SCOPE_PREFIX}{}", view.id);
    let now = state.clock.now().as_nanos();
    let (token, record) = crate::auth::generate(
        &format!("merchant {}", view.display_name),
        vec![scope.clone()],
        now,
    );
    let (service, sql) = (state.service.clone(), state.sql.clone());
    let (customer_id, ip, key_id) = (
        session.info.customer_id.clone(),
        session.context.ip.clone(),
        record.id.clone(),
    );
    tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        service.insert_api_key(&record)?;
        sql.transaction(|db| {
            coffer_audit::append(
                db,
                &coffer_audit::Entry {
                    at: now,
                    actor: &coffer_audit::customer_actor(&customer_id),
                    action: "merchant_api_key_created",
                    subject: Some(&id),
                    ip: &ip,
                    outcome: coffer_audit::Outcome::Ok,
                    detail: &key_id,
                },
            )
        })
        .map_err(ApiError::internal)?;
        Ok(())
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(json_response(
        StatusCode::CREATED,
        &MerchantKeyResponse {
            api_key: token,
            scope,
        },
    ))
}

#[utoipa::path(
    post,
    path = "/v1/me/merchants/{id}/webhook",
    tag = "merchants",
    summary = "Set the merchant's webhook endpoint",
    description = "Events (`payment.succeeded`, `refund.succeeded`) are POSTed there, signed `Coffer-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">` with the secret returned here once; retried with back-off until a 2xx. Setting it again rotates the secret. Not replayed by Idempotency-Key.",
    params(("id" = String, Path, description = "The merchant id.")),
    request_body = WebhookRequest,
    responses(
        (status = 200, description = "Set; the signing secret, once.", body = WebhookResponse),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`url`, `id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn set_webhook(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let request: WebhookRequest = parse(&body)?;
    let merchants = state.merchants.clone();
    let (view, secret) = blocking_call(move || {
        merchants.set_webhook(
            &session.info.customer_id,
            &id,
            &request.url,
            &session.context.ip,
        )
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &WebhookResponse {
            url: view.webhook_url.unwrap_or_default(),
            secret: secret.expose().clone(),
        },
    ))
}

// ---- customers paying --------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/me/merchant-payments/scan",
    tag = "merchants",
    summary = "Preview a scanned merchant QR code",
    description = "Checks the EMVCo payload (structure, CRC-16) and shows what it pays: the merchant's name, city and category, and the amount of a dynamic code. Changes nothing.",
    request_body = ScanRequest,
    responses(
        (status = 200, description = "What confirming would pay.", body = PreviewBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such merchant.", body = crate::error::ErrorBody),
        (status = 409, description = "`merchant_not_active`, `payment_not_payable` (a dynamic code already paid or expired).", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`qr_malformed`, `qr_checksum_mismatch`, `qr_field_missing`, `qr_not_coffer`, `qr_currency_unsupported`, `qr_mismatch`, `invalid_field`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn scan(
    State(state): State<AppState>,
    _session: CustomerSession,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let request: ScanRequest = parse(&body)?;
    let merchants = state.merchants.clone();
    let preview = blocking_call(move || merchants.preview(&request.payload)).await?;
    Ok(json_response(StatusCode::OK, &preview_body(preview)))
}

#[utoipa::path(
    post,
    path = "/v1/me/merchant-payments/scan-image",
    tag = "merchants",
    summary = "Read a merchant QR code from a photo",
    description = "For when the camera is unavailable: the body is a PNG or JPEG image (at most 1 MiB) holding the merchant's QR code; it is decoded server-side, then checked and previewed like a scanned payload. Changes nothing.",
    request_body(content = Vec<u8>, content_type = "image/png", description = "A PNG or JPEG image."),
    responses(
        (status = 200, description = "The decoded payload and its preview.", body = ScanImageResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such merchant.", body = crate::error::ErrorBody),
        (status = 409, description = "`merchant_not_active`, `payment_not_payable`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`image_unreadable`, `image_too_large`, `qr_not_found`, and the payload errors of /scan.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn scan_image(
    State(state): State<AppState>,
    _session: CustomerSession,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let merchants = state.merchants.clone();
    let (payload, preview) = blocking_call(move || {
        let payload = coffer_payments::qr_image::decode(&body)?;
        let preview = merchants.preview(&payload)?;
        Ok::<_, MerchantError>((payload, preview))
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &ScanImageResponse {
            payload,
            preview: preview_body(preview),
        },
    ))
}

#[utoipa::path(
    post,
    path = "/v1/me/merchant-payments",
    tag = "merchants",
    summary = "Pay a merchant's QR code",
    description = "Moves the money from the wallet to the merchant at once (one ledger transfer). A static code needs `amount`; a dynamic code pays its checkout. Checked against the KYC tier's per-payment, daily and monthly limits (atomically). At or above the step-up threshold it needs a verified step-up for operation `merchant_payment`, this amount and payee `merchant:<merchant id>`.",
    params(IdempotencyKey),
    request_body = PayRequest,
    responses(
        (status = 201, description = "Paid: `succeeded`.", body = PaymentBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`step_up_required`, `csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`merchant_not_active`, `payment_not_payable`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`insufficient_funds`, `limit_exceeded`, `invalid_field` (`amount`), the payload errors of /scan, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn pay(
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
        "merchant_payment",
        &body,
        || async {
            let client = client_key(&headers, "merchant_payment", &body)?;
            let request: PayRequest = parse(&body)?;
            let merchants = state.merchants.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                merchants.pay_qr(
                    &session.info.customer_id,
                    &client,
                    &request.payload,
                    &Confirmation {
                        amount: request.amount,
                        step_up_challenge_id: request.step_up_challenge_id,
                    },
                    &session.context.ip,
                )
            })
            .await?;
            to_json(StatusCode::CREATED, &payment_body(view))
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/me/merchant-payments",
    tag = "merchants",
    summary = "My payments to merchants",
    params(ListQuery),
    responses(
        (status = 200, description = "Newest first.", body = PaymentsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn my_payments(
    State(state): State<AppState>,
    session: CustomerSession,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = list_limit(query)?;
    let merchants = state.merchants.clone();
    let list = blocking_call(move || merchants.customer_payments(&session.info.customer_id, limit))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &PaymentsResponse {
            data: list.into_iter().map(payment_body).collect(),
        },
    ))
}

async fn with_refunds(state: &AppState, view: PaymentView) -> Result<PaymentBody, ApiError> {
    let merchants = state.merchants.clone();
    let id = view.id.clone();
    let refunds = blocking_call(move || merchants.refunds_of(&id)).await?;
    let mut body = payment_body(view);
    body.refunds = Some(refunds.into_iter().map(refund_body).collect());
    Ok(body)
}

#[utoipa::path(
    get,
    path = "/v1/me/merchant-payments/{id}",
    tag = "merchants",
    summary = "One of my payments to a merchant, with its refunds",
    params(("id" = String, Path, description = "The payment id (`mpy_…`).")),
    responses(
        (status = 200, description = "The payment.", body = PaymentBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn my_payment(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let merchants = state.merchants.clone();
    let view =
        blocking_call(move || merchants.customer_payment(&session.info.customer_id, &id)).await?;
    Ok(json_response(
        StatusCode::OK,
        &with_refunds(&state, view).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/v1/me/checkouts/{id}",
    tag = "merchants",
    summary = "A checkout to confirm",
    description = "The merchant's name, the amount and the order of a checkout waiting for its customer (or one this customer paid).",
    params(("id" = String, Path, description = "The payment id (`mpy_…`).")),
    responses(
        (status = 200, description = "The checkout.", body = PaymentBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn view_checkout(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let merchants = state.merchants.clone();
    let view =
        blocking_call(move || merchants.checkout_for_customer(&session.info.customer_id, &id))
            .await?;
    Ok(json_response(StatusCode::OK, &payment_body(view)))
}

#[utoipa::path(
    post,
    path = "/v1/me/checkouts/{id}/confirm",
    tag = "merchants",
    summary = "Confirm a checkout",
    description = "Pays the merchant's checkout from the wallet at once; the merchant gets a signed `payment.succeeded` webhook. Limits and step-up as for QR payments. Confirming again returns the payment.",
    params(("id" = String, Path, description = "The payment id."), IdempotencyKey),
    request_body = ConfirmRequest,
    responses(
        (status = 200, description = "Paid: `succeeded`.", body = PaymentBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`step_up_required`, `csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`payment_not_payable` (paid by someone else, or expired), `merchant_not_active`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`insufficient_funds`, `limit_exceeded`, `invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn confirm_checkout(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        &format!("confirm_checkout:{id}"),
        &body,
        || async {
            let request: ConfirmRequest = parse(&body)?;
            let merchants = state.merchants.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                merchants.confirm_checkout(
                    &session.info.customer_id,
                    &id,
                    &Confirmation {
                        amount: None,
                        step_up_challenge_id: request.step_up_challenge_id,
                    },
                    &session.context.ip,
                )
            })
            .await?;
            to_json(StatusCode::OK, &payment_body(view))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/me/payment-codes",
    tag = "merchants",
    summary = "Show a payment code",
    description = "A fresh 18-digit single-use code (and its QR code) bound to the wallet, for a merchant to scan and charge; it lives 60 seconds and replaces any earlier code (the app refreshes it). Only a keyed hash is stored. Payments by code stay below the step-up threshold. Not replayed by Idempotency-Key (the answer carries the code).",
    responses(
        (status = 201, description = "The code, once.", body = PaymentCodeResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn issue_payment_code(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Result<Response, ApiError> {
    let merchants = state.merchants.clone();
    let code = blocking_call(move || merchants.issue_code(&session.info.customer_id)).await?;
    let qr_svg = coffer_payments::qr_image::svg(code.code.expose()).map_err(MerchantError::from)?;
    Ok(json_response(
        StatusCode::CREATED,
        &PaymentCodeResponse {
            code: code.code.expose().clone(),
            expires_at: time(code.expires_at),
            qr_svg,
        },
    ))
}

// ---- merchants' systems ------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/v1/merchant",
    tag = "merchants",
    summary = "The calling merchant",
    responses(
        (status = 200, description = "The merchant.", body = MerchantBody),
        (status = 401, description = "`unauthorized`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`: not a merchant key.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn merchant_profile(
    State(state): State<AppState>,
    caller: MerchantCaller,
) -> Result<Response, ApiError> {
    let merchants = state.merchants.clone();
    let view = blocking_call(move || merchants.get(&caller.merchant_id)).await?;
    Ok(json_response(StatusCode::OK, &merchant_body(view)))
}

#[utoipa::path(
    get,
    path = "/v1/merchant/qr",
    tag = "merchants",
    summary = "The merchant's static QR code",
    description = "The EMVCo merchant-presented code to print at the till (point of initiation 11, no amount): as the payload string, SVG or PNG.",
    params(QrQuery),
    responses(
        (status = 200, description = "The code.", body = QrPayloadResponse, content_type = "application/json"),
        (status = 401, description = "`unauthorized`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`: not a merchant key.", body = crate::error::ErrorBody),
        (status = 409, description = "`merchant_not_active`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`format`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn static_qr(
    State(state): State<AppState>,
    caller: MerchantCaller,
    query: Result<Query<QrQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let merchants = state.merchants.clone();
    let payload = blocking_call(move || {
        let merchant = merchants.active(&caller.merchant_id)?;
        merchants.static_qr(&merchant)
    })
    .await?;
    qr_response(query, payload)
}

#[utoipa::path(
    post,
    path = "/v1/merchant/checkouts",
    tag = "merchants",
    summary = "Create a checkout",
    description = "A payment for the customer to confirm in the wallet (online, or at the till through its dynamic QR code), valid for 15 minutes. When it is paid the merchant gets a signed `payment.succeeded` webhook.",
    params(IdempotencyKey),
    request_body = CheckoutRequest,
    responses(
        (status = 201, description = "Created: `awaiting_customer`.", body = CheckoutResponse),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthorized`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`: not a merchant key.", body = crate::error::ErrorBody),
        (status = 409, description = "`merchant_not_active`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`amount`, `currency`, `order_reference`, `return_url`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn create_checkout(
    State(state): State<AppState>,
    caller: MerchantCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let caller = Arc::new(caller);
    idempotency::run(
        &state,
        &caller.principal,
        "merchant",
        &headers,
        "merchant_checkout",
        &body,
        || async {
            let client = client_key(&headers, "merchant_checkout", &body)?;
            let request: CheckoutRequest = parse(&body)?;
            let merchants = state.merchants.clone();
            let merchant_id = caller.merchant_id.clone();
            let (view, payload) = blocking_call(move || {
                let view = merchants.create_checkout(
                    &merchant_id,
                    &client,
                    &ChargeRequest {
                        amount: request.amount,
                        currency: request.currency,
                        order_reference: request.order_reference,
                    },
                    request.return_url.as_deref(),
                )?;
                let payload = merchants.dynamic_qr(&merchant_id, &view.id)?;
                Ok::<_, MerchantError>((view, payload))
            })
            .await?;
            to_json(
                StatusCode::CREATED,
                &CheckoutResponse {
                    payment: payment_body(view),
                    qr_payload: payload,
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/merchant/charges",
    tag = "merchants",
    summary = "Charge a customer's payment code",
    description = "The till scanned the customer's code: the amount moves from the customer's wallet at once. A code is single use and lives 60 seconds; an unknown, used or expired code gets one answer (`payment_code_invalid`), and more than 10 wrong codes a minute are refused (`too_many_attempts`). The fingerprint is a keyed hash (the body holds the code).",
    params(IdempotencyKey),
    request_body = ChargeRequestBody,
    responses(
        (status = 201, description = "Paid: `succeeded`.", body = PaymentBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthorized`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`: not a merchant key.", body = crate::error::ErrorBody),
        (status = 409, description = "`merchant_not_active`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`payment_code_invalid`, `insufficient_funds`, `limit_exceeded`, `invalid_field` (`amount`, `currency`, `order_reference`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 429, description = "`too_many_attempts`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn charge_code(
    State(state): State<AppState>,
    caller: MerchantCaller,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let caller = Arc::new(caller);
    idempotency::run_private(
        &state,
        &caller.principal,
        "merchant",
        &headers,
        "merchant_charge",
        &body,
        || async {
            // The record's fingerprint is keyed too: the body holds the code.
            let key = idempotency::key(&headers)?;
            let client = ClientKey {
                key,
                request_hash: state
                    .vault
                    .keyed_hash("merchant.charge", &hex::encode(&body)),
            };
            let request: ChargeRequestBody = parse(&body)?;
            let merchants = state.merchants.clone();
            let merchant_id = caller.merchant_id.clone();
            let view = blocking_call(move || {
                merchants.charge_code(
                    &merchant_id,
                    &client,
                    &Secret::new(request.code),
                    &ChargeRequest {
                        amount: request.amount,
                        currency: request.currency,
                        order_reference: request.order_reference,
                    },
                    "",
                )
            })
            .await?;
            to_json(StatusCode::CREATED, &payment_body(view))
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/merchant/payments",
    tag = "merchants",
    summary = "The merchant's payments",
    params(ListQuery),
    responses(
        (status = 200, description = "Newest first.", body = PaymentsResponse),
        (status = 401, description = "`unauthorized`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`: not a merchant key.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn merchant_payments(
    State(state): State<AppState>,
    caller: MerchantCaller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = list_limit(query)?;
    let merchants = state.merchants.clone();
    let list =
        blocking_call(move || merchants.merchant_payments(&caller.merchant_id, limit)).await?;
    Ok(json_response(
        StatusCode::OK,
        &PaymentsResponse {
            data: list.into_iter().map(payment_body).collect(),
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/merchant/payments/{id}",
    tag = "merchants",
    summary = "One of the merchant's payments, with its refunds",
    params(("id" = String, Path, description = "The payment id (`mpy_…`).")),
    responses(
        (status = 200, description = "The payment.", body = PaymentBody),
        (status = 401, description = "`unauthorized`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`: not a merchant key.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn merchant_payment(
    State(state): State<AppState>,
    caller: MerchantCaller,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let merchants = state.merchants.clone();
    let view = blocking_call(move || merchants.merchant_payment(&caller.merchant_id, &id)).await?;
    Ok(json_response(
        StatusCode::OK,
        &with_refunds(&state, view).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/v1/merchant/payments/{id}/qr",
    tag = "merchants",
    summary = "A checkout's dynamic QR code",
    description = "The EMVCo code of one checkout (point of initiation 12, with its amount, order reference and payment id), as the payload string, SVG or PNG.",
    params(("id" = String, Path, description = "The payment id."), QrQuery),
    responses(
        (status = 200, description = "The code.", body = QrPayloadResponse, content_type = "application/json"),
        (status = 401, description = "`unauthorized`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`: not a merchant key.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`format`, `id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn dynamic_qr(
    State(state): State<AppState>,
    caller: MerchantCaller,
    PathId(id): PathId,
    query: Result<Query<QrQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let merchants = state.merchants.clone();
    let payload = blocking_call(move || merchants.dynamic_qr(&caller.merchant_id, &id)).await?;
    qr_response(query, payload)
}

#[utoipa::path(
    post,
    path = "/v1/merchant/payments/{id}/refunds",
    tag = "merchants",
    summary = "Refund a payment",
    description = "All or part of a succeeded payment goes back to the customer's wallet at once, from the merchant's unsettled funds. Refunds together never exceed the payment (enforced atomically, also under concurrent requests). The merchant gets a `refund.succeeded` webhook.",
    params(("id" = String, Path, description = "The payment id."), IdempotencyKey),
    request_body = RefundRequest,
    responses(
        (status = 201, description = "Refunded: `succeeded`.", body = RefundBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthorized`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`: not a merchant key.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`payment_not_refundable`, `merchant_funds_insufficient`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`refund_exceeds_payment`, `invalid_field` (`amount`, `reason`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn refund(
    State(state): State<AppState>,
    caller: MerchantCaller,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    let caller = Arc::new(caller);
    let route = format!("merchant_refund:{id}");
    idempotency::run(
        &state,
        &caller.principal,
        "merchant",
        &headers,
        &route,
        &body,
        || async {
            let client = client_key(&headers, &route, &body)?;
            let request: RefundRequest = parse(&body)?;
            let merchants = state.merchants.clone();
            let merchant_id = caller.merchant_id.clone();
            let view = blocking_call(move || {
                merchants.refund(
                    &merchant_id,
                    &client,
                    &id,
                    request.amount,
                    request.reason.as_deref(),
                )
            })
            .await?;
            to_json(StatusCode::CREATED, &refund_body(view))
        },
    )
    .await
}

async fn settlement_bodies(
    state: &AppState,
    list: Vec<SettlementView>,
) -> Result<Vec<SettlementBody>, ApiError> {
    let merchants = state.merchants.clone();
    blocking_call(move || {
        list.into_iter()
            .map(|view| {
                let payout = merchants
                    .settlement_payout(&view)?
                    .map(|f| f.state.as_str());
                Ok::<_, MerchantError>(settlement_body(view, payout))
            })
            .collect()
    })
    .await
}

#[utoipa::path(
    get,
    path = "/v1/merchant/settlements",
    tag = "merchants",
    summary = "The merchant's settlements",
    params(ListQuery),
    responses(
        (status = 200, description = "Newest day first.", body = SettlementsResponse),
        (status = 401, description = "`unauthorized`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`: not a merchant key.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn merchant_settlements(
    State(state): State<AppState>,
    caller: MerchantCaller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = list_limit(query)?;
    let merchants = state.merchants.clone();
    let list =
        blocking_call(move || merchants.settlements(Some(&caller.merchant_id), limit)).await?;
    Ok(json_response(
        StatusCode::OK,
        &SettlementsResponse {
            data: settlement_bodies(&state, list).await?,
        },
    ))
}

// ---- staff -------------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/v1/staff/merchants",
    tag = "staff",
    summary = "Merchants (the review queue)",
    description = "Permission `review_merchants`. Oldest first.",
    params(StaffMerchantsQuery),
    responses(
        (status = 200, description = "The merchants.", body = MerchantsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`status`, `limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = []))
)]
pub(crate) async fn staff_merchants(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<StaffMerchantsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session
        .info
        .require(coffer_identity::Permission::ReviewMerchants)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("status", e.body_text()))?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            MerchantStatus::parse(s)
                .ok_or_else(|| ApiError::invalid("status", "pending_review, approved or rejected"))
        })
        .transpose()?;
    let limit = list_limit(Ok(Query(ListQuery { limit: query.limit })))?;
    let merchants = state.merchants.clone();
    let list = blocking_call(move || merchants.list_by_status(status, limit)).await?;
    Ok(json_response(
        StatusCode::OK,
        &MerchantsResponse {
            data: list.into_iter().map(merchant_body).collect(),
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/staff/merchants/{id}",
    tag = "staff",
    summary = "A merchant",
    description = "Permission `review_merchants`. One merchant whatever its status, for the review page.",
    params(("id" = String, Path, description = "The merchant's id.")),
    responses(
        (status = 200, description = "The merchant.", body = MerchantBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = []))
)]
pub(crate) async fn staff_merchant(
    State(state): State<AppState>,
    session: StaffSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    session
        .info
        .require(coffer_identity::Permission::ReviewMerchants)?;
    let merchants = state.merchants.clone();
    let view = blocking_call(move || merchants.get(&id)).await?;
    Ok(json_response(StatusCode::OK, &merchant_body(view)))
}

#[utoipa::path(
    post,
    path = "/v1/staff/merchants/{id}/review",
    tag = "staff",
    summary = "Approve or reject a merchant",
    description = "Permission `review_merchants`. Once per merchant; approving opens its ledger accounts. Audited with the staff member as actor.",
    params(("id" = String, Path, description = "The merchant id."), IdempotencyKey),
    request_body = ReviewRequest,
    responses(
        (status = 200, description = "Reviewed.", body = MerchantBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`already_reviewed`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`note`, `discount_rate_bps`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("staff" = []))
)]
pub(crate) async fn review_merchant(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session
        .info
        .require(coffer_identity::Permission::ReviewMerchants)
    {
        return ApiError::from(error).into_response();
    }
    let principal = Principal {
        key_id: session.info.actor(),
        scopes: vec!["staff".into()],
    };
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        &format!("review_merchant:{id}"),
        &body,
        || async {
            let request: ReviewRequest = parse(&body)?;
            let merchants = state.merchants.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                merchants.review(
                    &session.info,
                    &id,
                    request.approve,
                    request.discount_rate_bps,
                    request.note.as_deref().unwrap_or(""),
                    &session.context.ip,
                )
            })
            .await?;
            to_json(StatusCode::OK, &merchant_body(view))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/staff/settlements",
    tag = "staff",
    summary = "Run the daily settlement",
    description = "Permission `settle_merchants`. Settles every approved merchant's day (yesterday by default): payments minus refunds minus the discount fee, paid out to each settlement bank account. Idempotent per merchant and day: running it again finishes what is unfinished and changes nothing else.",
    params(IdempotencyKey),
    request_body = SettlementRunRequest,
    responses(
        (status = 200, description = "The day's settlements.", body = SettlementRunResponse),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`date`: a day that has ended), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("staff" = []))
)]
pub(crate) async fn run_settlements(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session
        .info
        .require(coffer_identity::Permission::SettleMerchants)
    {
        return ApiError::from(error).into_response();
    }
    let principal = Principal {
        key_id: session.info.actor(),
        scopes: vec!["staff".into()],
    };
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        "run_settlements",
        &body,
        || async {
            let request: SettlementRunRequest = parse(&body)?;
            let merchants = state.merchants.clone();
            let today = merchants.day_of(state.clock.now().as_nanos());
            let day = match request.date.as_deref() {
                None => today - 1,
                Some(text) => coffer_payments::settlement::day_of_date(text)
                    .filter(|day| *day < today)
                    .ok_or_else(|| {
                        ApiError::invalid("date", "a day that has ended, as YYYY-MM-DD")
                    })?,
            };
            let (sql, actor, ip) = (
                state.sql.clone(),
                session.info.actor(),
                session.context.ip.clone(),
            );
            let now = state.clock.now().as_nanos();
            let results = blocking_call(move || {
                let results = merchants.settle_all(day)?;
                sql.transaction(|db| {
                    coffer_audit::append(
                        db,
                        &coffer_audit::Entry {
                            at: now,
                            actor: &actor,
                            action: "settlement_run",
                            subject: None,
                            ip: &ip,
                            outcome: coffer_audit::Outcome::Ok,
                            detail: &format!(
                                "{} {} merchants",
                                coffer_payments::settlement::date_of_day(day),
                                results.len()
                            ),
                        },
                    )
                })?;
                Ok::<_, MerchantError>(results)
            })
            .await?;
            let mut done = Vec::new();
            let mut failures = Vec::new();
            for result in results {
                match result {
                    Ok(view) => done.push(view),
                    Err((merchant_id, error)) => failures.push(SettlementFailure {
                        merchant_id,
                        code: error.code(),
                        message: error.to_string(),
                    }),
                }
            }
            to_json(
                StatusCode::OK,
                &SettlementRunResponse {
                    data: settlement_bodies(&state, done).await?,
                    failures,
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/staff/settlements",
    tag = "staff",
    summary = "Settlements",
    description = "Permission `settle_merchants`. Newest day first.",
    params(StaffSettlementsQuery),
    responses(
        (status = 200, description = "The settlements.", body = SettlementsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`merchant_id`, `limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = []))
)]
pub(crate) async fn staff_settlements(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<StaffSettlementsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session
        .info
        .require(coffer_identity::Permission::SettleMerchants)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("merchant_id", e.body_text()))?;
    let limit = list_limit(Ok(Query(ListQuery { limit: query.limit })))?;
    let merchants = state.merchants.clone();
    let merchant_id = query.merchant_id;
    let list = blocking_call(move || merchants.settlements(merchant_id.as_deref(), limit)).await?;
    Ok(json_response(
        StatusCode::OK,
        &SettlementsResponse {
            data: settlement_bodies(&state, list).await?,
        },
    ))
}

/// Runs forever inside `coffer serve`, every `interval`: carries forward
/// merchant payments and refunds a crash left pending, and once a day has
/// ended settles it for every approved merchant (idempotent, so several
/// instances or a manual run through POST /v1/staff/settlements do no harm).
pub async fn run_merchant_tasks(
    merchants: Arc<coffer_payments::Merchants>,
    clock: Arc<dyn coffer_core::Clock>,
    interval: std::time::Duration,
) {
    let mut settled_through: Option<i64> = None;
    loop {
        tokio::time::sleep(interval).await;
        let worker = merchants.clone();
        match tokio::task::spawn_blocking(move || worker.resolve_pending()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "merchant resolver pass failed"),
            Err(error) => tracing::warn!(%error, "merchant resolver task failed"),
        }
        // Payouts in flight: paid, or retried with back-off when they failed.
        let worker = merchants.clone();
        match tokio::task::spawn_blocking(move || worker.follow_payouts()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "settlement payout pass failed"),
            Err(error) => tracing::warn!(%error, "settlement payout task failed"),
        }
        let yesterday = merchants.day_of(clock.now().as_nanos()) - 1;
        if settled_through.is_some_and(|day| day >= yesterday) {
            continue;
        }
        let worker = merchants.clone();
        match tokio::task::spawn_blocking(move || worker.settle_all(yesterday)).await {
            Ok(Ok(results)) => {
                let failed = results.iter().filter(|r| r.is_err()).count();
                for (merchant_id, error) in results.iter().filter_map(|r| r.as_ref().err()) {
                    tracing::warn!(merchant = %merchant_id, %error, "settlement failed; will retry");
                }
                if failed == 0 {
                    settled_through = Some(yesterday);
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "settlement run failed"),
            Err(error) => tracing::warn!(%error, "settlement task failed"),
        }
    }
}
