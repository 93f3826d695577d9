//! `/v1/ledger`: the ledger for the bank's own systems. Accounts, transfers,
//! linked batches, holds, balances (now and as of a time) and statements.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use coffer_app::Render;
use coffer_core::{Amount, Code, Currency, Identifier, Timestamp};
use coffer_ledger::{
    Account, AccountKind, AccountSpec, BalanceConstraint, Command, Hold, Metadata, Outcome,
    Rejection, Transfer, TransferCommand, TransferOp,
};
use coffer_store::{EntryFilter, PAGE_SIZE_MAX};
use serde::{Deserialize, Serialize};

use crate::auth::{Principal, SCOPE_LEDGER_READ, SCOPE_LEDGER_WRITE};
use crate::body::{parse, RawBody};
use crate::error::ApiError;
use crate::{idempotency, AppState};

/// Most transfers one batch request may carry.
pub const BATCH_TRANSFERS_MAX: usize = 8_000;
/// Default page size of a statement.
pub const PAGE_SIZE_DEFAULT: usize = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/ledger/accounts", post(open_account))
        .route("/v1/ledger/accounts/{id}", get(get_account))
        .route("/v1/ledger/accounts/{id}/close", post(close_account))
        .route("/v1/ledger/accounts/{id}/entries", get(entries))
        .route("/v1/ledger/transfers", post(create_transfer))
        .route("/v1/ledger/transfers/batch", post(create_batch))
        .route("/v1/ledger/transfers/{id}", get(get_transfer))
        .route("/v1/ledger/holds", post(place_hold))
        .route("/v1/ledger/holds/{id}", get(get_hold))
        .route("/v1/ledger/holds/{id}/capture", post(capture_hold))
        .route("/v1/ledger/holds/{id}/release", post(release_hold))
}

// ---- request and response shapes -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenAccountRequest {
    id: String,
    currency: String,
    kind: String,
    #[serde(default)]
    constraint: Option<String>,
    owner: String,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct TransferRequest {
    id: String,
    debit_account_id: String,
    credit_account_id: String,
    amount: i64,
    currency: String,
    code: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// Only for holds.
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    #[serde(default)]
    linked: bool,
    transfers: Vec<TransferRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveRequest {
    /// The id of the capturing or releasing transfer.
    id: String,
    #[serde(default)]
    amount: Option<i64>,
    code: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Serialize)]
pub struct BalancesView {
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
    /// Posted balance on the account's normal side.
    pub posted: i64,
    /// Posted less outgoing holds.
    pub available: i64,
}

#[derive(Serialize)]
pub struct AccountView {
    pub id: String,
    pub currency: String,
    pub kind: &'static str,
    pub constraint: &'static str,
    pub owner: String,
    pub status: &'static str,
    pub balances: BalancesView,
    pub opened_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

#[derive(Serialize)]
pub struct TransferView {
    pub id: String,
    pub kind: &'static str,
    pub debit_account_id: String,
    pub credit_account_id: String,
    pub amount: i64,
    pub currency: String,
    pub code: String,
    pub metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub timestamp: String,
    /// False when this answers a repeat of an earlier identical request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
}

#[derive(Serialize)]
pub struct HoldView {
    pub id: String,
    pub debit_account_id: String,
    pub credit_account_id: String,
    pub amount: i64,
    pub currency: String,
    pub expires_at: String,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured: Option<i64>,
}

#[derive(Serialize)]
struct EntryView {
    transfer: TransferView,
    /// This account's side of the transfer.
    side: &'static str,
    /// The account's posted balance (normal side) just after this entry.
    balance_after: i64,
}

#[derive(Serialize)]
struct Page<T> {
    data: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

pub fn balances_view(account: &Account, balances: coffer_ledger::Balances) -> BalancesView {
    let side = account.spec.kind.normal_side();
    BalancesView {
        debits_posted: balances.debits_posted,
        credits_posted: balances.credits_posted,
        debits_pending: balances.debits_pending,
        credits_pending: balances.credits_pending,
        posted: balances.posted(side),
        available: balances.available(side),
    }
}

pub fn account_view(account: &Account) -> AccountView {
    AccountView {
        id: account.id().to_string(),
        currency: account.spec.currency.as_str().to_string(),
        kind: account.spec.kind.as_str(),
        constraint: account.spec.constraint.as_str(),
        owner: account.spec.owner.to_string(),
        status: match account.status {
            coffer_ledger::AccountStatus::Open => "open",
            coffer_ledger::AccountStatus::Closed => "closed",
        },
        balances: balances_view(account, account.balances),
        opened_at: account.opened_at.to_rfc3339(),
        closed_at: account.closed_at.map(Timestamp::to_rfc3339),
        as_of: None,
    }
}

pub fn transfer_view(transfer: &Transfer, created: Option<bool>) -> TransferView {
    TransferView {
        id: transfer.id.to_string(),
        kind: transfer.kind.as_str(),
        debit_account_id: transfer.debit.to_string(),
        credit_account_id: transfer.credit.to_string(),
        amount: transfer.amount.minor_units(),
        currency: transfer.currency.as_str().to_string(),
        code: transfer.code.as_str().to_string(),
        metadata: transfer.metadata.entries().clone(),
        hold_id: transfer.hold.as_ref().map(ToString::to_string),
        expires_at: transfer.expires_at.map(Timestamp::to_rfc3339),
        timestamp: transfer.timestamp.to_rfc3339(),
        created,
    }
}

fn hold_view(hold: &Hold) -> HoldView {
    HoldView {
        id: hold.id.to_string(),
        debit_account_id: hold.debit.to_string(),
        credit_account_id: hold.credit.to_string(),
        amount: hold.amount.minor_units(),
        currency: hold.currency.as_str().to_string(),
        expires_at: hold.expires_at.to_rfc3339(),
        state: hold.state.as_str(),
        resolved_by: hold.resolved_by.as_ref().map(ToString::to_string),
        captured: hold.captured.map(Amount::minor_units),
    }
}

// ---- validation -------------------------------------------------------------------

fn identifier(field: &str, value: &str) -> Result<Identifier, ApiError> {
    Identifier::parse(value).map_err(|e| ApiError::invalid(field, e.to_string()))
}

fn currency(state: &AppState, value: &str) -> Result<Currency, ApiError> {
    state.currencies.resolve(value).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_currency",
            e.to_string(),
        )
        .field("currency")
    })
}

fn amount(field: &str, value: i64) -> Result<Amount, ApiError> {
    Amount::new(value).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_must_be_positive",
            "amount must be a positive integer of minor units",
        )
        .field(field)
    })
}

fn code(value: &str) -> Result<Code, ApiError> {
    Code::parse(value).map_err(|e| ApiError::invalid("code", e.to_string()))
}

fn metadata(entries: BTreeMap<String, String>) -> Result<Metadata, ApiError> {
    Metadata::new(entries).map_err(|e| ApiError::invalid("metadata", e.to_string()))
}

fn transfer_command(
    state: &AppState,
    request: TransferRequest,
    is_hold: bool,
) -> Result<TransferCommand, ApiError> {
    let id = identifier("id", &request.id)?;
    let debit = identifier("debit_account_id", &request.debit_account_id)?;
    let credit = identifier("credit_account_id", &request.credit_account_id)?;
    let amount = amount("amount", request.amount)?;
    let currency = currency(state, &request.currency)?;
    let op = match (is_hold, request.timeout_ms) {
        (true, Some(timeout_ms)) => TransferOp::Hold {
            debit,
            credit,
            amount,
            currency,
            timeout_ms,
        },
        (true, None) => return Err(ApiError::invalid("timeout_ms", "a hold needs timeout_ms")),
        (false, Some(_)) => {
            return Err(ApiError::invalid(
                "timeout_ms",
                "timeout_ms is only for holds (POST /v1/ledger/holds)",
            ))
        }
        (false, None) => TransferOp::Post {
            debit,
            credit,
            amount,
            currency,
        },
    };
    Ok(TransferCommand {
        id,
        op,
        code: code(&request.code)?,
        metadata: metadata(request.metadata)?,
    })
}

fn to_json<T: Serialize>(status: StatusCode, value: &T) -> Result<(StatusCode, String), ApiError> {
    serde_json::to_string(value)
        .map(|body| (status, body))
        .map_err(ApiError::internal)
}

/// The command for one transfer, and how its outcome renders: 201 when
/// written, 200 when a repeat.
fn one_transfer(command: TransferCommand) -> (Command, Render) {
    let command = Command::Transfers {
        transfers: vec![command],
        linked: false,
    };
    (command, render(render_one))
}

fn render_one(outcome: &Outcome) -> Result<(StatusCode, String), ApiError> {
    let Outcome::Transfers(results) = outcome else {
        return Err(ApiError::internal("unexpected outcome"));
    };
    let (transfer, created) = results
        .first()
        .ok_or_else(|| ApiError::internal("no result"))?
        .clone()?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    to_json(status, &transfer_view(&transfer, Some(created)))
}

/// Wraps an outcome-to-response function for the engine, which stores what
/// it returns (errors included) as the request's response.
fn render(to_response: fn(&Outcome) -> Result<(StatusCode, String), ApiError>) -> Render {
    Arc::new(move |outcome| match to_response(outcome) {
        Ok((status, body)) => (status.as_u16(), body),
        Err(error) => (error.status.as_u16(), error.body()),
    })
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, coffer_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

// ---- handlers ---------------------------------------------------------------------

async fn open_account(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    idempotency::run_ledger(
        &state,
        &principal,
        SCOPE_LEDGER_WRITE,
        &headers,
        "open_account",
        &body,
        || {
            let request: OpenAccountRequest = parse(&body)?;
            let kind = AccountKind::parse(&request.kind).ok_or_else(|| {
                ApiError::invalid(
                    "kind",
                    "kind is one of asset, liability, equity, income, expense",
                )
            })?;
            let constraint = match request.constraint.as_deref() {
                None => BalanceConstraint::None,
                Some(text) => BalanceConstraint::parse(text).ok_or_else(|| {
                    ApiError::invalid(
                        "constraint",
                        "constraint is one of none, no_overdraft, must_stay_in_debit",
                    )
                })?,
            };
            let spec = AccountSpec {
                id: identifier("id", &request.id)?,
                currency: currency(&state, &request.currency)?,
                kind,
                constraint,
                owner: identifier("owner", &request.owner)?,
            };
            Ok((Command::OpenAccount(spec), render(render_opened)))
        },
    )
    .await
}

fn render_opened(outcome: &Outcome) -> Result<(StatusCode, String), ApiError> {
    match outcome {
        Outcome::Account(Ok((account, created))) => to_json(
            if *created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            &account_view(account),
        ),
        Outcome::Account(Err(rejection)) => Err((*rejection).into()),
        Outcome::Transfers(_) => Err(ApiError::internal("unexpected outcome")),
    }
}

fn render_closed(outcome: &Outcome) -> Result<(StatusCode, String), ApiError> {
    match outcome {
        Outcome::Account(Ok((account, _))) => to_json(StatusCode::OK, &account_view(account)),
        Outcome::Account(Err(Rejection::AccountToCloseNotFound)) => {
            Err(ApiError::not_found("account"))
        }
        Outcome::Account(Err(rejection)) => Err((*rejection).into()),
        Outcome::Transfers(_) => Err(ApiError::internal("unexpected outcome")),
    }
}

async fn close_account(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Response {
    idempotency::run_ledger(
        &state,
        &principal,
        SCOPE_LEDGER_WRITE,
        &headers,
        &format!("close_account:{id}"),
        &body,
        || {
            let id = identifier("id", &id)?;
            Ok((Command::CloseAccount(id), render(render_closed)))
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AsOfQuery {
    as_of: Option<String>,
}

fn timestamp(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(text).ok_or_else(|| {
        ApiError::invalid(
            field,
            "expected an RFC 3339 time such as 2026-11-25T08:00:00Z",
        )
    })
}

async fn get_account(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    query: Result<Query<AsOfQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AccountView>, ApiError> {
    principal.require(SCOPE_LEDGER_READ)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let id = identifier("id", &id)?;
    let as_of = query
        .as_of
        .as_deref()
        .map(|t| timestamp("as_of", t))
        .transpose()?;
    let reader = state.reader.clone();
    let lookup = id.clone();
    let account = blocking(move || reader.account(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    let mut view = account_view(&account);
    if let Some(at) = as_of {
        let reader = state.reader.clone();
        let balances = blocking(move || reader.balances_as_of(&id, at))
            .await?
            .unwrap_or_default();
        view.balances = balances_view(&account, balances);
        view.as_of = Some(at.to_rfc3339());
    }
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesQuery {
    cursor: Option<String>,
    limit: Option<usize>,
    from: Option<String>,
    until: Option<String>,
    code: Option<String>,
}

async fn entries(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    query: Result<Query<EntriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(SCOPE_LEDGER_READ)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let id = identifier("id", &id)?;
    let limit = query.limit.unwrap_or(PAGE_SIZE_DEFAULT);
    if limit == 0 || limit > PAGE_SIZE_MAX {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be between 1 and {PAGE_SIZE_MAX}"),
        ));
    }
    let after = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(
            cursor
                .parse::<i64>()
                .map(Timestamp::from_nanos)
                .map_err(|_| ApiError::invalid("cursor", "not a cursor this API returned"))?,
        ),
    };
    let filter = EntryFilter {
        after,
        from: query
            .from
            .as_deref()
            .map(|t| timestamp("from", t))
            .transpose()?,
        until: query
            .until
            .as_deref()
            .map(|t| timestamp("until", t))
            .transpose()?,
        code: query.code.as_deref().map(code).transpose()?,
        limit: limit + 1,
    };
    let reader = state.reader.clone();
    let lookup = id.clone();
    let account = blocking(move || reader.account(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    let reader = state.reader.clone();
    let lookup = id.clone();
    let mut found = blocking(move || reader.entries(&lookup, &filter)).await?;
    let more = found.len() > limit;
    found.truncate(limit);
    let side = account.spec.kind.normal_side();
    let next_cursor = if more {
        found.last().map(|t| t.timestamp.as_nanos().to_string())
    } else {
        None
    };
    let data = found
        .iter()
        .map(|t| {
            let (entry_side, after) = if t.debit == id {
                ("debit", t.debit_after)
            } else {
                ("credit", t.credit_after)
            };
            EntryView {
                transfer: transfer_view(t, None),
                side: entry_side,
                balance_after: after.posted(side),
            }
        })
        .collect();
    Ok(axum::response::IntoResponse::into_response(Json(Page {
        data,
        next_cursor,
    })))
}

async fn create_transfer(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    post_transfer(state, principal, headers, body, false).await
}

async fn place_hold(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    post_transfer(state, principal, headers, body, true).await
}

/// A posted transfer or a hold: the same body, a hold adds `timeout_ms`.
async fn post_transfer(
    state: AppState,
    principal: Principal,
    headers: HeaderMap,
    body: axum::body::Bytes,
    is_hold: bool,
) -> Response {
    let route = if is_hold {
        "place_hold"
    } else {
        "create_transfer"
    };
    idempotency::run_ledger(
        &state,
        &principal,
        SCOPE_LEDGER_WRITE,
        &headers,
        route,
        &body,
        || {
            let request: TransferRequest = parse(&body)?;
            let command = transfer_command(&state, request, is_hold)?;
            Ok(one_transfer(command))
        },
    )
    .await
}

async fn resolve_hold(
    state: AppState,
    principal: Principal,
    headers: HeaderMap,
    hold: String,
    body: axum::body::Bytes,
    capture: bool,
) -> Response {
    let route = format!("{}:{hold}", if capture { "capture" } else { "release" });
    idempotency::run_ledger(
        &state,
        &principal,
        SCOPE_LEDGER_WRITE,
        &headers,
        &route,
        &body,
        || {
            let request: ResolveRequest = parse(&body)?;
            let hold = identifier("hold_id", &hold)?;
            let op = if capture {
                TransferOp::Capture {
                    hold,
                    amount: request.amount.map(|a| amount("amount", a)).transpose()?,
                }
            } else {
                if request.amount.is_some() {
                    return Err(ApiError::invalid(
                        "amount",
                        "a release frees the whole hold; amount is only for captures",
                    ));
                }
                TransferOp::Release { hold }
            };
            let command = TransferCommand {
                id: identifier("id", &request.id)?,
                op,
                code: code(&request.code)?,
                metadata: metadata(request.metadata)?,
            };
            Ok(one_transfer(command))
        },
    )
    .await
}

async fn capture_hold(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(hold): Path<String>,
    RawBody(body): RawBody,
) -> Response {
    resolve_hold(state, principal, headers, hold, body, true).await
}

async fn release_hold(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(hold): Path<String>,
    RawBody(body): RawBody,
) -> Response {
    resolve_hold(state, principal, headers, hold, body, false).await
}

#[derive(Serialize)]
struct BatchResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer: Option<TransferView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<BatchError>,
}

#[derive(Serialize)]
struct BatchError {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

#[derive(Serialize)]
struct BatchResponse {
    /// True when every member was written (or, for a repeat, had been).
    ok: bool,
    results: Vec<BatchResult>,
}

async fn create_batch(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    idempotency::run_ledger(
        &state,
        &principal,
        SCOPE_LEDGER_WRITE,
        &headers,
        "create_batch",
        &body,
        || {
            let request: BatchRequest = parse(&body)?;
            if request.transfers.is_empty() || request.transfers.len() > BATCH_TRANSFERS_MAX {
                return Err(ApiError::invalid(
                    "transfers",
                    format!("a batch holds 1 to {BATCH_TRANSFERS_MAX} transfers"),
                ));
            }
            let mut commands = Vec::with_capacity(request.transfers.len());
            for (index, transfer) in request.transfers.into_iter().enumerate() {
                let is_hold = transfer.timeout_ms.is_some();
                let command = transfer_command(&state, transfer, is_hold).map_err(|mut e| {
                    e.field = Some(format!(
                        "transfers[{index}].{}",
                        e.field.unwrap_or_default()
                    ));
                    e
                })?;
                commands.push(command);
            }
            let command = Command::Transfers {
                transfers: commands,
                linked: request.linked,
            };
            Ok((command, render(render_batch)))
        },
    )
    .await
}

fn render_batch(outcome: &Outcome) -> Result<(StatusCode, String), ApiError> {
    let Outcome::Transfers(results) = outcome else {
        return Err(ApiError::internal("unexpected outcome"));
    };
    let ok = results.iter().all(Result::is_ok);
    let results = results
        .iter()
        .map(|r| match r {
            Ok((t, created)) => BatchResult {
                transfer: Some(transfer_view(t, Some(*created))),
                error: None,
            },
            Err(rejection) => BatchResult {
                transfer: None,
                error: Some(BatchError {
                    code: rejection.code(),
                    message: rejection.to_string(),
                    field: rejection.field(),
                }),
            },
        })
        .collect();
    to_json(StatusCode::OK, &BatchResponse { ok, results })
}

async fn get_transfer(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<TransferView>, ApiError> {
    principal.require(SCOPE_LEDGER_READ)?;
    let id = identifier("id", &id)?;
    let reader = state.reader.clone();
    let transfer = blocking(move || reader.transfer(&id))
        .await?
        .ok_or_else(|| ApiError::not_found("transfer"))?;
    Ok(Json(transfer_view(&transfer, None)))
}

async fn get_hold(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<HoldView>, ApiError> {
    principal.require(SCOPE_LEDGER_READ)?;
    let id = identifier("id", &id)?;
    let reader = state.reader.clone();
    let hold = blocking(move || reader.hold(&id))
        .await?
        .ok_or_else(|| ApiError::not_found("hold"))?;
    Ok(Json(hold_view(&hold)))
}
