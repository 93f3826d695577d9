//! Person-to-person payments (`/v1/me/p2p/…`), wallet handles, payment
//! requests and split bills (`/v1/me/payment-requests…`,
//! `/v1/me/incoming-payment-requests…`). The work is in
//! `coffer_payments::P2p`; handlers parse, call it off the async workers,
//! and map its answer.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use coffer_core::Timestamp;
use coffer_payments::{
    ClientKey, Confirmation, GroupView, NewRequest, P2pError, PaymentView, QuoteFor, QuoteView,
    RequestView, Shares,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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
use crate::AppState;

pub fn routes() -> RouteTable {
    RouteTable::default()
        .post("/v1/me/handle", set_handle)
        .get("/v1/me/handle", get_handle)
        .post("/v1/me/p2p/lookups", lookup_payee)
        .post("/v1/me/p2p/quotes", create_quote)
        .post("/v1/me/p2p/payments", create_payment)
        .get("/v1/me/p2p/payments", list_payments)
        .get("/v1/me/p2p/payments/{id}", get_payment)
        .post("/v1/me/payment-requests", create_request)
        .get("/v1/me/payment-requests", list_requests)
        .get("/v1/me/payment-requests/{id}", get_request)
        .get("/v1/me/incoming-payment-requests", list_incoming)
        .post(
            "/v1/me/incoming-payment-requests/{id}/decline",
            decline_request,
        )
}

impl From<P2pError> for ApiError {
    fn from(error: P2pError) -> ApiError {
        let status = match error {
            P2pError::Invalid { .. }
            | P2pError::KeyReused
            | P2pError::LimitExceeded { .. }
            | P2pError::InsufficientFunds
            | P2pError::SelfPayment
            | P2pError::QuoteMismatch(_)
            | P2pError::QuoteExpired => StatusCode::UNPROCESSABLE_ENTITY,
            P2pError::NotFound(_) | P2pError::PayeeNotFound => StatusCode::NOT_FOUND,
            P2pError::TooManyLookups => StatusCode::TOO_MANY_REQUESTS,
            P2pError::StepUpRequired | P2pError::RiskBlocked(_) => StatusCode::FORBIDDEN,
            P2pError::NotHeld => StatusCode::CONFLICT,
            P2pError::QuoteUsed
            | P2pError::QuoteChanged
            | P2pError::RequestNotOpen(_)
            | P2pError::HandleAlreadySet(_)
            | P2pError::HandleTaken
            | P2pError::PayeeUnderReview => StatusCode::CONFLICT,
            P2pError::Rejected(rejection) => return rejection.into(),
            P2pError::Engine(error) => return error.into(),
            P2pError::Identity(error) => return error.into(),
            P2pError::Risk(error) => return error.into(),
            P2pError::Store(_)
            | P2pError::Vault(_)
            | P2pError::Audit(_)
            | P2pError::Internal(_) => return ApiError::internal(error),
        };
        let api = ApiError::new(status, error.code(), error.to_string());
        match error.field() {
            Some(field) => api.field(field),
            None => api,
        }
    }
}

/// The Idempotency-Key and a keyed hash of the request, for the record
/// itself (the second line behind the API's stored responses). Keyed, not
/// plain SHA-256: bodies here name phone numbers and e-mail addresses.
fn client_key(
    state: &AppState,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
) -> Result<ClientKey, ApiError> {
    let key = idempotency::key(headers)?;
    let request_hash = state.vault.keyed_hash(
        "p2p.request",
        &format!("{route}\u{1f}{}", hex::encode(body)),
    );
    Ok(ClientKey { key, request_hash })
}

fn rfc3339(nanos: i64) -> String {
    Timestamp::from_nanos(nanos).to_rfc3339()
}

// ---- shapes ------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HandleRequest {
    /// 3 to 30 letters, digits, `_` or `.`, starting with a letter; unique
    /// without regard to case (kept lowercase). Set once.
    handle: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct HandleBody {
    /// The wallet handle others can pay as `@handle`; null when none is set.
    handle: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LookupRequest {
    /// `+8613800138000`, `name@example.com` or `@handle`.
    payee: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PayeeBody {
    /// The payee's name as the bank shows it before paying: 张*明, J*** D**.
    name_masked: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuoteRequest {
    /// Who to pay: `+86…`, an e-mail address or `@handle`. Give this with
    /// `amount` and `currency`, or `request_id` alone.
    #[serde(default)]
    payee: Option<String>,
    /// Minor units (fen), positive.
    #[serde(default)]
    amount: Option<i64>,
    /// CNY, the wallet's currency.
    #[serde(default)]
    currency: Option<String>,
    /// Up to 140 characters, shown to both sides; stored encrypted.
    #[serde(default)]
    note: Option<String>,
    /// A payment request addressed to you (`prq_…`): the quote pays it.
    #[serde(default)]
    request_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StepUpBody {
    /// Always `p2p`.
    operation: &'static str,
    amount: i64,
    currency: String,
    /// `quote:<quote id>`.
    payee: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct QuoteBody {
    id: String,
    payee_name_masked: String,
    /// What the payee receives.
    amount: i64,
    /// The fee, on top of the amount.
    fee: i64,
    /// Why the fee is 0: `first_free` or `monthly_free_quota`.
    #[serde(skip_serializing_if = "Option::is_none")]
    fee_waiver: Option<&'static str>,
    /// amount + fee: what leaves your wallet.
    total: i64,
    currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    /// Whether the confirmation will need `step_up_challenge_id` (a
    /// prediction: the day's low-value exemption may be used up meanwhile).
    step_up_required: bool,
    /// The operation to ask a step-up challenge for (POST /v1/me/step-up).
    step_up: StepUpBody,
    expires_at: String,
}

fn quote_body(quote: QuoteView) -> QuoteBody {
    QuoteBody {
        step_up: StepUpBody {
            operation: "p2p",
            amount: quote.amount,
            currency: quote.currency.clone(),
            payee: quote.step_up_payee(),
        },
        id: quote.id,
        payee_name_masked: quote.payee_name_masked,
        amount: quote.amount,
        fee: quote.fee,
        fee_waiver: quote.waiver.map(|w| w.as_str()),
        total: quote.total,
        currency: quote.currency,
        request_id: quote.request_id,
        step_up_required: quote.step_up_required,
        expires_at: rfc3339(quote.expires_at),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PaymentRequestBody {
    /// The quote to confirm (`quo_…`).
    quote_id: String,
    /// Must equal the quote's amount.
    amount: i64,
    /// Must equal the quote's fee.
    fee: i64,
    /// Must equal the quote's currency.
    currency: String,
    /// When the quote says `step_up_required`: a verified challenge from
    /// POST /v1/me/step-up for the quote's `step_up` operation.
    #[serde(default)]
    step_up_challenge_id: Option<String>,
}

/// A P2P payment as one of its two sides sees it.
#[derive(Serialize, ToSchema)]
pub(crate) struct PaymentBody {
    id: String,
    /// `sent` or `received`.
    direction: &'static str,
    counterparty_name_masked: String,
    amount: i64,
    /// The fee the payer paid (0 for the payee).
    fee: i64,
    currency: String,
    /// `pending`, `succeeded` or `failed`.
    status: &'static str,
    /// Why it failed (`insufficient_funds`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_at: Option<String>,
}

fn payment_body(view: PaymentView) -> PaymentBody {
    PaymentBody {
        id: view.id,
        direction: view.direction,
        counterparty_name_masked: view.counterparty_name_masked,
        amount: view.amount,
        fee: view.fee,
        currency: view.currency,
        status: view.state.as_str(),
        reason: view.reason,
        note: view.note,
        request_id: view.request_id,
        created_at: rfc3339(view.created_at),
        resolved_at: view.resolved_at.map(rfc3339),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PaymentsResponse {
    data: Vec<PaymentBody>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PayerShare {
    /// `+86…`, an e-mail address or `@handle`.
    payer: String,
    /// This payer's share (minor units): required without `split` and with
    /// `split: custom`; not given with `split: equal`.
    #[serde(default)]
    amount: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRequestBody {
    /// CNY.
    currency: String,
    /// 1 to 20 payers, each named once, never yourself.
    payers: Vec<PayerShare>,
    /// `equal` or `custom` to split `total`; absent: request each payer's `amount`.
    #[serde(default)]
    split: Option<String>,
    /// The bill to split (minor units); required with `split`.
    #[serde(default)]
    total: Option<i64>,
    /// `split: equal`: count yourself as one of the sharers (your share is
    /// the last, so the remainder goes to the payers first, in the order given).
    #[serde(default)]
    include_me: Option<bool>,
    /// `split: custom`: your own share; the payers' amounts plus this must equal `total` exactly.
    #[serde(default)]
    my_share: Option<i64>,
    /// Up to 140 characters; stored encrypted.
    #[serde(default)]
    note: Option<String>,
    /// 60 s up to the configured maximum (7 days by default, which is also the default).
    #[serde(default)]
    expires_in_seconds: Option<i64>,
}

/// One payer's request.
#[derive(Serialize, ToSchema)]
pub(crate) struct RequestBody {
    id: String,
    group_id: String,
    organizer_name_masked: String,
    payer_name_masked: String,
    amount: i64,
    currency: String,
    /// `open`, `paying` (a payment is being applied), `paid`, `declined` or `expired`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    expires_at: String,
    created_at: String,
}

fn request_body(view: RequestView) -> RequestBody {
    RequestBody {
        id: view.id,
        group_id: view.group_id,
        organizer_name_masked: view.organizer_name_masked,
        payer_name_masked: view.payer_name_masked,
        amount: view.amount,
        currency: view.currency,
        status: view.state.as_str(),
        payment_id: view.payment_id,
        note: view.note,
        expires_at: rfc3339(view.expires_at),
        created_at: rfc3339(view.created_at),
    }
}

/// A request or split bill as its organizer sees it.
#[derive(Serialize, ToSchema)]
pub(crate) struct GroupBody {
    id: String,
    /// `each` (request money), `equal` or `custom` (split bills).
    mode: String,
    total: i64,
    currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// One per payer, in the order given: who has paid.
    requests: Vec<RequestBody>,
    paid_count: usize,
    paid_amount: i64,
    expires_at: String,
    created_at: String,
}

fn group_body(view: GroupView) -> GroupBody {
    GroupBody {
        id: view.id,
        mode: view.mode,
        total: view.total,
        currency: view.currency,
        note: view.note,
        requests: view.requests.into_iter().map(request_body).collect(),
        paid_count: view.paid_count,
        paid_amount: view.paid_amount,
        expires_at: rfc3339(view.expires_at),
        created_at: rfc3339(view.created_at),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct GroupsResponse {
    data: Vec<GroupBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RequestsResponse {
    data: Vec<RequestBody>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct P2pListQuery {
    /// At most this many, newest first (1 to 100; default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

fn list_limit(
    query: Result<Query<P2pListQuery>, axum::extract::rejection::QueryRejection>,
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

// ---- handles -----------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/me/handle",
    tag = "p2p",
    summary = "Set your wallet handle",
    description = "A handle others can pay as `@handle` instead of your phone number or e-mail. Set once; unique without regard to case.",
    params(IdempotencyKey),
    request_body = HandleRequest,
    responses(
        (status = 200, description = "Set (or already this one).", body = HandleBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`handle_taken`, `handle_already_set`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`handle`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn set_handle(
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
        "set_handle",
        &body,
        || async {
            let request: HandleRequest = parse(&body)?;
            let p2p = state.p2p.clone();
            let session = session.clone();
            let handle = blocking_call(move || {
                p2p.set_handle(
                    &session.info.customer_id,
                    &request.handle,
                    &session.context.ip,
                )
            })
            .await?;
            to_json(
                StatusCode::OK,
                &HandleBody {
                    handle: Some(handle),
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/me/handle",
    tag = "p2p",
    summary = "Your wallet handle",
    responses(
        (status = 200, description = "The handle, or null.", body = HandleBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn get_handle(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Result<Response, ApiError> {
    let p2p = state.p2p.clone();
    let handle = blocking_call(move || p2p.handle(&session.info.customer_id)).await?;
    Ok(json_response(StatusCode::OK, &HandleBody { handle }))
}

// ---- look-ups and quotes -----------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/me/p2p/lookups",
    tag = "p2p",
    summary = "Look up a payee",
    description = "The payee's masked name (张*明, J*** D**), to check before paying. Changes nothing but the look-up allowance: each look-up (and each quote or request payer) spends one of the customer's hourly allowance (30 by default); beyond it 429 `too_many_lookups`. A frozen wallet is not found. A replay of the same Idempotency-Key answers from storage without spending another look-up.",
    params(IdempotencyKey),
    request_body = LookupRequest,
    responses(
        (status = 200, description = "The payee.", body = PayeeBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`payee_not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`payee`), `self_payment`.", body = crate::error::ErrorBody),
        (status = 429, description = "`too_many_lookups`, `rate_limited`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn lookup_payee(
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
        "p2p_lookup",
        &body,
        || async {
            let request: LookupRequest = parse(&body)?;
            let p2p = state.p2p.clone();
            let session = session.clone();
            let payee = blocking_call(move || {
                p2p.spend_ip_lookups(&session.context.ip, 1)?;
                p2p.lookup(&session.info.customer_id, &request.payee)
            })
            .await?;
            to_json(
                StatusCode::OK,
                &PayeeBody {
                    name_masked: payee.name_masked,
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/me/p2p/quotes",
    tag = "p2p",
    summary = "Quote a P2P payment",
    description = "Prices a payment to a payee (or of a payment request addressed to you): the payee's masked name, amount, fee (from the fee schedule, with any waiver), total and expiry (10 minutes by default), and whether the confirmation will need a step-up. Nothing moves. Checked against your per-payment limit.",
    params(IdempotencyKey),
    request_body = QuoteRequest,
    responses(
        (status = 201, description = "The quote.", body = QuoteBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`payee_not_found`, `not_found` (the request).", body = crate::error::ErrorBody),
        (status = 409, description = "`request_not_open`, `payee_under_review` (a watch-list hit on the payee waits for compliance), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`payee`, `amount`, `currency`, `note`, `request_id`), `self_payment`, `limit_exceeded` (`per_payment`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 429, description = "`too_many_lookups`, `rate_limited`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
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
    idempotency::run_private(
        &state,
        &principal,
        "customer",
        &headers,
        "p2p_quote",
        &body,
        || async {
            let request: QuoteRequest = parse(&body)?;
            let what = match request {
                QuoteRequest {
                    request_id: Some(request_id),
                    payee: None,
                    amount: None,
                    currency: None,
                    note: None,
                } => QuoteFor::Request { request_id },
                QuoteRequest {
                    request_id: None,
                    payee: Some(payee),
                    amount: Some(amount),
                    currency: Some(currency),
                    note,
                } => QuoteFor::Payee {
                    payee,
                    amount,
                    currency,
                    note,
                },
                _ => return Err(ApiError::invalid(
                    "payee",
                    "give payee, amount and currency (and a note if you like), or request_id alone",
                )),
            };
            let p2p = state.p2p.clone();
            let session = session.clone();
            let quote = blocking_call(move || {
                // A quote to a payee looks the payee up.
                if matches!(what, QuoteFor::Payee { .. }) {
                    p2p.spend_ip_lookups(&session.context.ip, 1)?;
                }
                p2p.quote(&session.info.customer_id, &what)
            })
            .await?;
            to_json(StatusCode::CREATED, &quote_body(quote))
        },
    )
    .await
}

// ---- payments ----------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/me/p2p/payments",
    tag = "p2p",
    summary = "Pay: confirm a quote",
    description = "The answer leaves out the note (the stored replay of it must not hold the note in clear); GET the payment to see it. Confirms a quote, repeating its amount, fee and currency (any difference is refused). The payment and its fee move at once as one linked ledger batch (payer → payee, payer → the bank's fee income), or not at all. Checked atomically against your daily and monthly P2P limits and the payee's balance cap. Needs a step-up challenge for the quote's `step_up` operation at or above the step-up threshold, and for a new payee unless the payment is small enough for the day's low-value exemption.",
    params(IdempotencyKey),
    request_body = PaymentRequestBody,
    responses(
        (status = 201, description = "Paid: `succeeded`.", body = PaymentBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`step_up_required` (missing, wrong, used or for another operation; risk may ask for one even where the quote did not), `risk_blocked` (the payment was refused and the wallet frozen), `csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such quote of yours.", body = crate::error::ErrorBody),
        (status = 409, description = "`quote_used`, `quote_changed` (a free payment was used meanwhile: quote again), `request_not_open`, `payee_under_review` (a watch-list hit on the payee waits for compliance: nothing moved), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`quote_mismatch` (`amount`, `fee`, `currency`), `quote_expired`, `limit_exceeded` (`per_payment`, `daily`, `monthly`, `payee_balance_cap`), `insufficient_funds`, `invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn create_payment(
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
        "p2p_payment",
        &body,
        || async {
            let client = client_key(&state, &headers, "p2p_payment", &body)?;
            let request: PaymentRequestBody = parse(&body)?;
            let p2p = state.p2p.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                p2p.pay(
                    &session.info.customer_id,
                    &client,
                    &Confirmation {
                        quote_id: request.quote_id,
                        amount: request.amount,
                        fee: request.fee,
                        currency: request.currency,
                        step_up_challenge_id: request.step_up_challenge_id,
                    },
                    &session.context.ip,
                )
            })
            .await?;
            // The stored idempotent response must not hold the note in
            // clear (it is encrypted everywhere else): GET shows it.
            let mut body = payment_body(view);
            body.note = None;
            to_json(StatusCode::CREATED, &body)
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/me/p2p/payments",
    tag = "p2p",
    summary = "P2P payments",
    description = "Payments you sent (any status) and received (succeeded), newest first.",
    params(P2pListQuery),
    responses(
        (status = 200, description = "The payments.", body = PaymentsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_payments(
    State(state): State<AppState>,
    session: CustomerSession,
    query: Result<Query<P2pListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = list_limit(query)?;
    let p2p = state.p2p.clone();
    let list = blocking_call(move || p2p.payments(&session.info.customer_id, limit)).await?;
    Ok(json_response(
        StatusCode::OK,
        &PaymentsResponse {
            data: list.into_iter().map(payment_body).collect(),
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/me/p2p/payments/{id}",
    tag = "p2p",
    summary = "A P2P payment",
    params(("id" = String, Path, description = "The payment id (`p2p_…`).")),
    responses(
        (status = 200, description = "The payment, as its payer or payee sees it.", body = PaymentBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn get_payment(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let p2p = state.p2p.clone();
    let view = blocking_call(move || p2p.view_for(&session.info.customer_id, &id)).await?;
    Ok(json_response(StatusCode::OK, &payment_body(view)))
}

// ---- payment requests and split bills ----------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/me/payment-requests",
    tag = "p2p",
    summary = "Request money or split a bill",
    description = "Asks one or more customers for money: each payer's `amount` as given; or splits `total` among them, `equal` (the remainder's minor units go one each to the first payers, in the order given) or `custom` (the shares, plus `my_share`, must sum to `total` exactly). Each payer gets a request (and a message) to pay (quote it with `request_id`) or decline. Requests expire (7 days by default).",
    params(IdempotencyKey),
    request_body = NewRequestBody,
    responses(
        (status = 201, description = "Sent.", body = GroupBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`payee_not_found` (a payer).", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`payers`, `amount`, `total`, `shares`, `split`, `my_share`, `currency`, `note`, `expires_in_seconds`), `self_payment`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 429, description = "`too_many_lookups`, `rate_limited`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn create_request(
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
        "payment_request",
        &body,
        || async {
            let client = client_key(&state, &headers, "payment_request", &body)?;
            let request: NewRequestBody = parse(&body)?;
            let new = new_request(request)?;
            let p2p = state.p2p.clone();
            let session = session.clone();
            let group = blocking_call(move || {
                p2p.request(
                    &session.info.customer_id,
                    &client,
                    &new,
                    &session.context.ip,
                )
            })
            .await?;
            // As for payments: no note in the stored response; GET shows it.
            let mut body = group_body(group);
            body.note = None;
            for request in &mut body.requests {
                request.note = None;
            }
            to_json(StatusCode::CREATED, &body)
        },
    )
    .await
}

fn new_request(body: NewRequestBody) -> Result<NewRequest, ApiError> {
    let amounts = |payers: Vec<PayerShare>| {
        payers
            .into_iter()
            .map(|p| match p.amount {
                Some(amount) => Ok((p.payer, amount)),
                None => Err(ApiError::invalid("amount", "each payer needs an amount")),
            })
            .collect::<Result<Vec<_>, ApiError>>()
    };
    let shares = match (body.split.as_deref(), body.total) {
        (None, None) => {
            if body.include_me.is_some() || body.my_share.is_some() {
                return Err(ApiError::invalid(
                    "split",
                    "include_me and my_share go with a split",
                ));
            }
            Shares::Each(amounts(body.payers)?)
        }
        (Some("equal"), Some(total)) => {
            if body.payers.iter().any(|p| p.amount.is_some()) || body.my_share.is_some() {
                return Err(ApiError::invalid(
                    "amount",
                    "an equal split takes no amounts and no my_share",
                ));
            }
            Shares::Equal {
                total,
                payers: body.payers.into_iter().map(|p| p.payer).collect(),
                include_me: body.include_me.unwrap_or(false),
            }
        }
        (Some("custom"), Some(total)) => {
            if body.include_me.is_some() {
                return Err(ApiError::invalid(
                    "include_me",
                    "a custom split takes my_share instead",
                ));
            }
            Shares::Custom {
                total,
                shares: amounts(body.payers)?,
                my_share: body.my_share.unwrap_or(0),
            }
        }
        (Some("equal" | "custom"), None) => {
            return Err(ApiError::invalid("total", "a split needs the total"))
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "split",
                "a total needs split: equal or custom",
            ))
        }
        (Some(_), _) => return Err(ApiError::invalid("split", "equal or custom")),
    };
    Ok(NewRequest {
        currency: body.currency,
        note: body.note,
        shares,
        expires_in_seconds: body.expires_in_seconds,
    })
}

#[utoipa::path(
    get,
    path = "/v1/me/payment-requests",
    tag = "p2p",
    summary = "Requests and splits you sent",
    description = "Newest first, each with every payer's status: who has paid.",
    params(P2pListQuery),
    responses(
        (status = 200, description = "The requests.", body = GroupsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_requests(
    State(state): State<AppState>,
    session: CustomerSession,
    query: Result<Query<P2pListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = list_limit(query)?;
    let p2p = state.p2p.clone();
    let list = blocking_call(move || p2p.groups(&session.info.customer_id, limit)).await?;
    Ok(json_response(
        StatusCode::OK,
        &GroupsResponse {
            data: list.into_iter().map(group_body).collect(),
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/me/payment-requests/{id}",
    tag = "p2p",
    summary = "A request or split you sent",
    params(("id" = String, Path, description = "The request's id (`prg_…`).")),
    responses(
        (status = 200, description = "The request with every payer's status.", body = GroupBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn get_request(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let p2p = state.p2p.clone();
    let view = blocking_call(move || p2p.group(&session.info.customer_id, &id)).await?;
    Ok(json_response(StatusCode::OK, &group_body(view)))
}

#[utoipa::path(
    get,
    path = "/v1/me/incoming-payment-requests",
    tag = "p2p",
    summary = "Requests addressed to you",
    description = "Newest first. Pay one by quoting it (`request_id`) and confirming the quote; an open request past its expiry shows `expired`.",
    params(P2pListQuery),
    responses(
        (status = 200, description = "The requests.", body = RequestsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_incoming(
    State(state): State<AppState>,
    session: CustomerSession,
    query: Result<Query<P2pListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = list_limit(query)?;
    let p2p = state.p2p.clone();
    let list = blocking_call(move || p2p.incoming(&session.info.customer_id, limit)).await?;
    Ok(json_response(
        StatusCode::OK,
        &RequestsResponse {
            data: list.into_iter().map(request_body).collect(),
        },
    ))
}

#[utoipa::path(
    post,
    path = "/v1/me/incoming-payment-requests/{id}/decline",
    tag = "p2p",
    summary = "Decline a request",
    params(("id" = String, Path, description = "The request's id (`prq_…`)."), IdempotencyKey),
    responses(
        (status = 200, description = "Declined (or already declined).", body = RequestBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`request_not_open` (paid, being paid or expired), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`id`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn decline_request(
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
        &format!("decline_request:{id}"),
        &body,
        || async {
            let p2p = state.p2p.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                p2p.decline(&session.info.customer_id, &id, &session.context.ip)
            })
            .await?;
            let mut body = request_body(view);
            body.note = None;
            to_json(StatusCode::OK, &body)
        },
    )
    .await
}

/// Runs forever: every `interval`, carries forward P2P payments a crash
/// left between their record and their ledger batch.
pub async fn run_resolver(p2p: Arc<coffer_payments::P2p>, interval: std::time::Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let p2p = p2p.clone();
        match tokio::task::spawn_blocking(move || p2p.resolve_pending()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "P2P resolver"),
            Err(error) => tracing::warn!(%error, "P2P resolver task failed"),
        }
    }
}
