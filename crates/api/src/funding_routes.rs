//! Money in and out of the wallet: linked bank accounts, top-ups from a card
//! or bank account, withdrawals to a bank account (`/v1/me/…`), and the
//! signed callbacks of the card network and the core banking system
//! (`/v1/webhooks/…`). The work is in `coffer_payments::Funding`; handlers
//! parse, call it off the async workers, and map its answer.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use coffer_core::{Secret, Timestamp};
use coffer_payments::{
    BankAccountError, BankAccountView, Callback, ClientKey, ConnectorKind, FundingError,
    FundingKind, FundingView, SignatureError, Source, TopUpRequest, WithdrawalQuote,
    WithdrawalRequest,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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
        .post("/v1/me/bank-accounts", link_bank_account)
        .get("/v1/me/bank-accounts", list_bank_accounts)
        .post("/v1/me/bank-accounts/{id}/remove", remove_bank_account)
        .post("/v1/me/top-ups", create_top_up)
        .get("/v1/me/top-ups", list_top_ups)
        .get("/v1/me/top-ups/{id}", get_top_up)
        .post("/v1/me/top-ups/{id}/authenticate", authenticate_top_up)
        .post("/v1/me/withdrawals", create_withdrawal)
        .get("/v1/me/withdrawals/quote", quote_withdrawal)
        .get("/v1/me/withdrawals", list_withdrawals)
        .get("/v1/me/withdrawals/{id}", get_withdrawal)
        .post("/v1/webhooks/card-network", card_network_webhook)
        .post("/v1/webhooks/core-banking", core_banking_webhook)
}

impl From<BankAccountError> for ApiError {
    fn from(error: BankAccountError) -> ApiError {
        let status = match &error {
            BankAccountError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            BankAccountError::AlreadyLinked | BankAccountError::TooMany => StatusCode::CONFLICT,
            BankAccountError::NotFound => StatusCode::NOT_FOUND,
            BankAccountError::Store(_)
            | BankAccountError::Vault(_)
            | BankAccountError::Audit(_) => return ApiError::internal(error),
        };
        let api = ApiError::new(status, error.code(), error.to_string());
        match error.field() {
            Some(field) => api.field(field),
            None => api,
        }
    }
}

impl From<FundingError> for ApiError {
    fn from(error: FundingError) -> ApiError {
        let status = match error {
            FundingError::Invalid { .. }
            | FundingError::KeyReused
            | FundingError::LimitExceeded { .. }
            | FundingError::InsufficientFunds => StatusCode::UNPROCESSABLE_ENTITY,
            FundingError::FeeChanged { .. } => StatusCode::CONFLICT,
            FundingError::NotFound(_) => StatusCode::NOT_FOUND,
            FundingError::StepUpRequired | FundingError::RiskBlocked(_) => StatusCode::FORBIDDEN,
            FundingError::NotAwaitingAuthentication => StatusCode::CONFLICT,
            FundingError::Connector(_) => StatusCode::SERVICE_UNAVAILABLE,
            FundingError::Rejected(rejection) => return rejection.into(),
            FundingError::Engine(error) => return error.into(),
            FundingError::Identity(error) => return error.into(),
            FundingError::Risk(error) => return error.into(),
            FundingError::Store(_) | FundingError::Audit(_) | FundingError::Internal(_) => {
                return ApiError::internal(error)
            }
        };
        let api = ApiError::new(status, error.code(), error.to_string());
        match error.field() {
            Some(field) => api.field(field),
            None => api,
        }
    }
}

/// The Idempotency-Key and a fingerprint of the request, for the funding
/// record itself (the second line behind the API's stored responses).
pub(crate) fn client_key(
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
) -> Result<ClientKey, ApiError> {
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

// ---- shapes ------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkBankAccountRequest {
    /// The bank, by code: ICBC, CCB, ABC, BOC, BOCOM, CMB or PSBC.
    bank_code: String,
    /// 8 to 30 digits (spaces and dashes ignored). Stored only encrypted.
    account_number: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BankAccountBody {
    id: String,
    bank_code: &'static str,
    bank_name: &'static str,
    /// The last four digits: all of the number that is ever shown.
    last4: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BankAccountsResponse {
    data: Vec<BankAccountBody>,
}

fn bank_account_body(account: BankAccountView) -> BankAccountBody {
    BankAccountBody {
        id: account.id,
        bank_code: account.bank_code,
        bank_name: account.bank_name,
        last4: account.last4,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopUpBody {
    /// Minor units (fen), positive.
    amount: i64,
    /// CNY, the wallet's currency.
    currency: String,
    /// A linked card (`card_…`); give this or `bank_account_id`.
    #[serde(default)]
    card_id: Option<String>,
    /// A linked bank account (`bac_…`); give this or `card_id`.
    #[serde(default)]
    bank_account_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WithdrawalBody {
    /// Minor units (fen), positive.
    amount: i64,
    /// CNY, the wallet's currency.
    currency: String,
    /// The linked bank account (`bac_…`) to pay out to.
    bank_account_id: String,
    /// Needed at or above the step-up threshold: a verified challenge from
    /// POST /v1/me/step-up for operation `withdrawal`, this amount and
    /// currency, and payee `bank_account:<bank_account_id>`.
    #[serde(default)]
    step_up_challenge_id: Option<String>,
    /// The fee from GET /v1/me/withdrawals/quote that the customer saw and
    /// agreed to (0 when waived): required, so no withdrawal goes ahead
    /// without its fee shown; it goes ahead only at exactly this fee
    /// (otherwise `fee_changed`, nothing moves).
    fee: i64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct WithdrawalQuoteQuery {
    /// Minor units (fen), positive.
    #[param(value_type = i64, minimum = 1)]
    amount: String,
    /// CNY, the wallet's currency.
    currency: String,
}

/// What a withdrawal would cost now.
#[derive(Serialize, ToSchema)]
pub(crate) struct WithdrawalQuoteBody {
    amount: i64,
    /// Charged on top of the amount, to the bank's fee income.
    fee: i64,
    /// Why the fee is 0 although the schedule has one: `first_free` or `monthly_free_quota`.
    #[serde(skip_serializing_if = "Option::is_none")]
    fee_waiver: Option<&'static str>,
    /// Amount plus fee: what leaves the wallet.
    total: i64,
    currency: String,
}

fn quote_body(quote: WithdrawalQuote, currency: String) -> WithdrawalQuoteBody {
    WithdrawalQuoteBody {
        amount: quote.amount,
        fee: quote.fee,
        fee_waiver: quote.waiver.map(|w| w.as_str()),
        total: quote.total,
        currency,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthenticateBody {
    /// What the cardholder typed on the card issuer's 3-D Secure page.
    answer: String,
}

/// A top-up or a withdrawal.
#[derive(Serialize, ToSchema)]
pub(crate) struct FundingBody {
    id: String,
    /// `top_up` or `withdrawal`.
    kind: &'static str,
    /// `pending`, `succeeded` or `failed`.
    status: &'static str,
    /// Why it failed: `card_declined`, `account_closed`, `insufficient_funds`, `timeout`, `authentication_failed`, `authentication_timeout`…
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// `three_d_secure`: the card issuer wants the cardholder to authenticate (POST …/authenticate).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_action: Option<String>,
    amount: i64,
    /// Charged on top of the amount (withdrawals; 0 for top-ups).
    fee: i64,
    /// Why the fee is 0 although the schedule has one: `first_free` or `monthly_free_quota`.
    #[serde(skip_serializing_if = "Option::is_none")]
    fee_waiver: Option<&'static str>,
    currency: String,
    /// `card` or `bank_account`.
    method: String,
    method_id: String,
    /// The card or account as shown: "visa ••1111", "CMB ••0001".
    method_label: String,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct FundingsResponse {
    data: Vec<FundingBody>,
}

fn funding_body(view: FundingView) -> FundingBody {
    FundingBody {
        id: view.id,
        kind: view.kind.as_str(),
        status: view.state.as_str(),
        reason: view.reason,
        next_action: view.next_action,
        amount: view.amount,
        fee: view.fee,
        fee_waiver: view.fee_waiver.map(|w| w.as_str()),
        currency: view.currency,
        method: view.method,
        method_id: view.method_id,
        method_label: view.method_label,
        created_at: Timestamp::from_nanos(view.created_at).to_rfc3339(),
        updated_at: Timestamp::from_nanos(view.updated_at).to_rfc3339(),
        resolved_at: view
            .resolved_at
            .map(|at| Timestamp::from_nanos(at).to_rfc3339()),
    }
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

#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookAnswer {
    received: bool,
    /// `applied` (it resolved an operation), `duplicate` (seen before), `late` (the operation was already resolved) or `ignored` (no matching operation; kept for reconciliation).
    outcome: &'static str,
}

// ---- bank accounts -----------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/me/bank-accounts",
    tag = "funding",
    summary = "Link a bank account",
    description = "A bank account to withdraw to and top up from. The number is stored only encrypted and shown only as its last four digits; the idempotency fingerprint of this request is a keyed hash (the body holds the number).",
    params(IdempotencyKey),
    request_body = LinkBankAccountRequest,
    responses(
        (status = 201, description = "Linked.", body = BankAccountBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`bank_account_already_linked`, `too_many_bank_accounts`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`bank_code`, `account_number`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn link_bank_account(
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
        "link_bank_account",
        &body,
        || async {
            let request: LinkBankAccountRequest = parse(&body)?;
            let accounts = state.bank_accounts.clone();
            let now = state.clock.now().as_nanos();
            let session = session.clone();
            let account = blocking_call(move || {
                accounts.link(
                    &session.info.customer_id,
                    &request.bank_code,
                    &Secret::new(request.account_number),
                    &session.context.ip,
                    now,
                )
            })
            .await?;
            to_json(StatusCode::CREATED, &bank_account_body(account))
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/me/bank-accounts",
    tag = "funding",
    summary = "Linked bank accounts",
    description = "Bank and last four digits of each active linked account.",
    responses(
        (status = 200, description = "The accounts.", body = BankAccountsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_bank_accounts(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Result<Response, ApiError> {
    let accounts = state.bank_accounts.clone();
    let list = blocking_call(move || accounts.list(&session.info.customer_id)).await?;
    Ok(json_response(
        StatusCode::OK,
        &BankAccountsResponse {
            data: list.into_iter().map(bank_account_body).collect(),
        },
    ))
}

#[utoipa::path(
    post,
    path = "/v1/me/bank-accounts/{id}/remove",
    tag = "funding",
    summary = "Remove a bank account",
    params(("id" = String, Path, description = "The bank account id."), IdempotencyKey),
    responses(
        (status = 200, description = "Removed."),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn remove_bank_account(
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
        &format!("remove_bank_account:{id}"),
        &body,
        || async {
            let accounts = state.bank_accounts.clone();
            let now = state.clock.now().as_nanos();
            let session = session.clone();
            blocking_call(move || {
                accounts.remove(&session.info.customer_id, &id, &session.context.ip, now)
            })
            .await?;
            Ok((StatusCode::OK, r#"{"removed":true}"#.to_string()))
        },
    )
    .await
}

// ---- top-ups -----------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/me/top-ups",
    tag = "funding",
    summary = "Top up the wallet",
    description = "From a linked card (card network) or bank account (core banking). The answer is at once and says where it stands: `pending` while the connector works (the amount shows as incoming, not yet spendable), then `succeeded` or `failed` with a reason once its signed callback arrives. With `next_action: three_d_secure` the card issuer wants the cardholder to authenticate first. Refused when it would take the balance, with every pending top-up, past the KYC tier's balance cap.",
    params(IdempotencyKey),
    request_body = TopUpBody,
    responses(
        (status = 201, description = "Started: `pending` (or `failed` when the ledger refused it).", body = FundingBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such card or bank account.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`amount`, `currency`, `card_id`), `limit_exceeded` (balance cap), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`, `overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn create_top_up(
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
        "top_up",
        &body,
        || async {
            let client = client_key(&headers, "top_up", &body)?;
            let request: TopUpBody = parse(&body)?;
            let source = match (request.card_id, request.bank_account_id) {
                (Some(card), None) => Source::Card(card),
                (None, Some(account)) => Source::BankAccount(account),
                _ => {
                    return Err(ApiError::invalid(
                        "card_id",
                        "give exactly one of card_id and bank_account_id",
                    ))
                }
            };
            let funding = state.funding.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                funding.top_up(
                    &session.info.customer_id,
                    &client,
                    &TopUpRequest {
                        source,
                        amount: request.amount,
                        currency: request.currency,
                    },
                    &session.context.ip,
                )
            })
            .await?;
            to_json(StatusCode::CREATED, &funding_body(view))
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/me/top-ups",
    tag = "funding",
    summary = "Top-ups",
    description = "This customer's top-ups, newest first, each with its status.",
    params(ListQuery),
    responses(
        (status = 200, description = "The top-ups.", body = FundingsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_top_ups(
    State(state): State<AppState>,
    session: CustomerSession,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    list(state, session, FundingKind::TopUp, list_limit(query)?).await
}

async fn list(
    state: AppState,
    session: CustomerSession,
    kind: FundingKind,
    limit: i64,
) -> Result<Response, ApiError> {
    let funding = state.funding.clone();
    let list = blocking_call(move || funding.list(&session.info.customer_id, kind, limit)).await?;
    Ok(json_response(
        StatusCode::OK,
        &FundingsResponse {
            data: list.into_iter().map(funding_body).collect(),
        },
    ))
}

async fn one(
    state: AppState,
    session: CustomerSession,
    kind: FundingKind,
    id: String,
) -> Result<Response, ApiError> {
    let funding = state.funding.clone();
    let view = blocking_call(move || funding.get(&session.info.customer_id, &id)).await?;
    if view.kind != kind {
        return Err(ApiError::not_found(kind.as_str()));
    }
    Ok(json_response(StatusCode::OK, &funding_body(view)))
}

#[utoipa::path(
    get,
    path = "/v1/me/top-ups/{id}",
    tag = "funding",
    summary = "A top-up",
    params(("id" = String, Path, description = "The top-up id (`fnd_…`).")),
    responses(
        (status = 200, description = "The top-up and its status.", body = FundingBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn get_top_up(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    one(state, session, FundingKind::TopUp, id).await
}

#[utoipa::path(
    post,
    path = "/v1/me/top-ups/{id}/authenticate",
    tag = "funding",
    summary = "Answer the card issuer's 3-D Secure challenge",
    description = "For a top-up whose `next_action` is `three_d_secure`: the cardholder's answer goes to the card network; the outcome comes by callback (status stays `pending` until then). The simulated issuer accepts `123456`.",
    params(("id" = String, Path, description = "The top-up id."), IdempotencyKey),
    request_body = AuthenticateBody,
    responses(
        (status = 200, description = "Passed on; still `pending` until the callback.", body = FundingBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`not_awaiting_authentication`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`: the card network did not answer; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn authenticate_top_up(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let session = Arc::new(session);
    idempotency::run_private(
        &state,
        &principal,
        "customer",
        &headers,
        &format!("authenticate_top_up:{id}"),
        &body,
        || async {
            let request: AuthenticateBody = parse(&body)?;
            let funding = state.funding.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                funding.authenticate(&session.info.customer_id, &id, &Secret::new(request.answer))
            })
            .await?;
            to_json(StatusCode::OK, &funding_body(view))
        },
    )
    .await
}

// ---- withdrawals -------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/me/withdrawals",
    tag = "funding",
    summary = "Withdraw to a bank account",
    description = "Holds the amount and its fee (the fee schedule's `withdrawal` rule, waivers counted; see GET /v1/me/withdrawals/quote) in the wallet at once, in one linked batch (neither is available any more), then asks the core banking system to pay the amount out; `succeeded` (the fee goes to the bank's fee income) or `failed` with a reason follows by callback, and a failure gives amount and fee back. `fee` is required: the quoted fee the customer agreed to; it goes ahead only at that fee. Checked against the KYC tier's per-payment, daily and monthly limits (atomically: concurrent withdrawals cannot together pass a limit). At or above the step-up threshold it needs a verified step-up challenge bound to the amount and the account.",
    params(IdempotencyKey),
    request_body = WithdrawalBody,
    responses(
        (status = 201, description = "Started: `pending`.", body = FundingBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`step_up_required`, `csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such bank account.", body = crate::error::ErrorBody),
        (status = 409, description = "`fee_changed` (the fee differs from `fee`: quote again), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`amount`, `currency`, `fee` missing), `limit_exceeded` (per payment, daily, monthly), `insufficient_funds` (for amount plus fee), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`, `overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn create_withdrawal(
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
        "withdrawal",
        &body,
        || async {
            let client = client_key(&headers, "withdrawal", &body)?;
            let request: WithdrawalBody = parse(&body)?;
            let funding = state.funding.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                funding.withdraw(
                    &session.info.customer_id,
                    &client,
                    &WithdrawalRequest {
                        bank_account_id: request.bank_account_id,
                        amount: request.amount,
                        currency: request.currency,
                        step_up_challenge_id: request.step_up_challenge_id,
                        expected_fee: Some(request.fee),
                    },
                    &session.context.ip,
                )
            })
            .await?;
            to_json(StatusCode::CREATED, &funding_body(view))
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/me/withdrawals/quote",
    tag = "funding",
    summary = "Quote a withdrawal",
    description = "The fee a withdrawal of this amount carries now (fixed plus percentage, bounded, or waived: the first withdrawals each month may be free) and the total leaving the wallet. Confirm with POST /v1/me/withdrawals and `fee` set to the quoted fee.",
    params(WithdrawalQuoteQuery),
    responses(
        (status = 200, description = "The fee and total.", body = WithdrawalQuoteBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`amount`, `currency`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn quote_withdrawal(
    State(state): State<AppState>,
    session: CustomerSession,
    query: Result<Query<WithdrawalQuoteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("amount", e.body_text()))?;
    let amount = query
        .amount
        .parse::<i64>()
        .map_err(|_| ApiError::invalid("amount", "a positive integer of minor units"))?;
    let funding = state.funding.clone();
    let currency = query.currency.clone();
    let quote = blocking_call(move || {
        funding.withdrawal_quote(&session.info.customer_id, amount, &currency)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &quote_body(quote, query.currency),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/me/withdrawals",
    tag = "funding",
    summary = "Withdrawals",
    description = "This customer's withdrawals, newest first, each with its status.",
    params(ListQuery),
    responses(
        (status = 200, description = "The withdrawals.", body = FundingsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_withdrawals(
    State(state): State<AppState>,
    session: CustomerSession,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    list(state, session, FundingKind::Withdrawal, list_limit(query)?).await
}

#[utoipa::path(
    get,
    path = "/v1/me/withdrawals/{id}",
    tag = "funding",
    summary = "A withdrawal",
    params(("id" = String, Path, description = "The withdrawal id (`fnd_…`).")),
    responses(
        (status = 200, description = "The withdrawal and its status.", body = FundingBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn get_withdrawal(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    one(state, session, FundingKind::Withdrawal, id).await
}

// ---- webhooks ----------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/webhooks/card-network",
    tag = "webhooks",
    summary = "Card network callback",
    description = "The outcome of an authorization, sent by the card network. Signed: `Coffer-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">` with the connector's secret, within 300 seconds. A duplicate or late callback changes nothing and is answered 200 all the same.",
    params(("Coffer-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256>`.")),
    request_body = CallbackSchema,
    responses(
        (status = 200, description = "Received.", body = WebhookAnswer),
        (status = 400, response = BadRequest),
        (status = 401, description = "`signature_invalid`: missing, wrong or outside the time window; nothing was changed.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`: a signed body of the wrong shape.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: send it again later.", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn card_network_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    webhook(state, ConnectorKind::CardNetwork, &headers, &body).await
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/core-banking",
    tag = "webhooks",
    summary = "Core banking callback",
    description = "The outcome of a collection (top-up from a bank account) or a payout (withdrawal), sent by the bank's core system. Signed like the card network's callbacks, with the core system's own secret.",
    params(("Coffer-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256>`.")),
    request_body = CallbackSchema,
    responses(
        (status = 200, description = "Received.", body = WebhookAnswer),
        (status = 400, response = BadRequest),
        (status = 401, description = "`signature_invalid`: missing, wrong or outside the time window; nothing was changed.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`: a signed body of the wrong shape.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: send it again later.", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn core_banking_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    webhook(state, ConnectorKind::CoreBanking, &headers, &body).await
}

/// A callback's body (documentation only; `coffer_payments::Callback` parses it).
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the shape; never built.
pub(crate) struct CallbackSchema {
    event_id: String,
    /// `authorization`, `collection` or `payout`.
    operation: String,
    /// The connector's reference.
    reference: String,
    /// Our funding id.
    merchant_reference: String,
    /// `succeeded` or `failed`.
    status: String,
    reason: Option<String>,
    amount: i64,
    currency: String,
}

async fn webhook(
    state: AppState,
    kind: ConnectorKind,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let now_seconds = state.clock.now().as_nanos() / 1_000_000_000;
    let signature = headers
        .get(coffer_payments::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(SignatureError::Malformed);
    // Verified before the body is even parsed: nothing unsigned goes further.
    if let Err(error) = signature.and_then(|header| {
        state
            .connectors
            .secret(kind)
            .verify(header, body, now_seconds)
    }) {
        tracing::warn!(connector = kind.as_str(), %error, "callback refused");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "signature_invalid",
            error.to_string(),
        )
        .field("Coffer-Signature"));
    }
    let callback: Callback = parse(body)?;
    let funding = state.funding.clone();
    let outcome = blocking_call(move || funding.apply_callback(kind, &callback)).await?;
    Ok(json_response(
        StatusCode::OK,
        &WebhookAnswer {
            received: true,
            outcome: outcome.as_str(),
        },
    ))
}
