//! `/v1/ledger`: the ledger for the bank's own systems. Accounts, transfers,
//! linked batches, holds, balances (now and as of a time) and statements.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use coffer_app::Render;
use coffer_core::{Amount, Code, Currency, Identifier, Timestamp};
use coffer_ledger::{
    Account, AccountKind, AccountSpec, BalanceConstraint, Command, Hold, Metadata, Outcome,
    Rejection, Transfer, TransferCommand, TransferOp, HOLD_TIMEOUT_MAX_MS,
};
use coffer_store::{EntryFilter, PAGE_SIZE_MAX};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Principal, SCOPE_LEDGER_READ, SCOPE_LEDGER_WRITE};
use crate::body::{parse, RawBody};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::fields;
use crate::openapi::params::{AccountId, HoldId, IdempotencyKey, TransferId};
use crate::openapi::{BadRequest, BodyTooLarge, Forbidden, Internal, Unauthorized, Unavailable};
use crate::path_id::PathId;
use crate::respond::blocking_call;
use crate::respond::to_json;
use crate::route_table::RouteTable;
use crate::{idempotency, AppState};

/// Most transfers one batch request may carry.
pub const BATCH_TRANSFERS_MAX: usize = 8_000;
/// Default page size of a statement.
pub const PAGE_SIZE_DEFAULT: usize = 100;

pub fn routes() -> RouteTable {
    RouteTable::default()
        .post("/v1/ledger/accounts", open_account)
        .get("/v1/ledger/accounts/{id}", get_account)
        .post("/v1/ledger/accounts/{id}/close", close_account)
        .get("/v1/ledger/accounts/{id}/entries", entries)
        .post("/v1/ledger/transfers", create_transfer)
        .post("/v1/ledger/transfers/batch", create_batch)
        .get("/v1/ledger/transfers/{id}", get_transfer)
        .post("/v1/ledger/holds", place_hold)
        .get("/v1/ledger/holds/{id}", get_hold)
        .post("/v1/ledger/holds/{id}/capture", capture_hold)
        .post("/v1/ledger/holds/{id}/release", release_hold)
}

// ---- request and response shapes -------------------------------------------------
//
// The schemas in the OpenAPI document are derived from these types; field
// constraints come from `openapi::fields`, built from the parsers' own limits.
// The whole-body examples are coherent with each other and name the accounts
// `scripts/fuzz-api` seeds, so the fuzzer's examples phase reaches the ledger.

/// Opens an account in one currency for `owner`, the customer or party it
/// belongs to.
#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"id": "wallet-carol", "currency": "CNY", "kind": "liability",
    "constraint": "no_overdraft", "owner": "customer-carol"})))]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenAccountRequest {
    #[schema(schema_with = fields::identifier)]
    id: String,
    #[schema(schema_with = fields::currency)]
    currency: String,
    #[schema(schema_with = fields::account_kind)]
    kind: String,
    #[serde(default)]
    #[schema(schema_with = fields::optional_balance_constraint)]
    constraint: Option<String>,
    #[schema(schema_with = fields::identifier)]
    owner: String,
}

/// Moves `amount` from the debit account to the credit account at once. `id`
/// names the transfer: a repeat with the same id and fields answers the
/// original; the same id with other fields is 409 `exists_with_different_fields`.
#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"id": "p2p-1001", "debit_account_id": "wallet-alice",
    "credit_account_id": "wallet-bob", "amount": 1500, "currency": "CNY", "code": "p2p",
    "metadata": {"note": "dinner"}})))]
#[serde(deny_unknown_fields)]
pub(crate) struct TransferRequest {
    #[schema(schema_with = fields::identifier)]
    id: String,
    #[schema(schema_with = fields::identifier)]
    debit_account_id: String,
    #[schema(schema_with = fields::identifier)]
    credit_account_id: String,
    #[schema(schema_with = fields::amount)]
    amount: i64,
    #[schema(schema_with = fields::currency)]
    currency: String,
    #[schema(schema_with = fields::code)]
    code: String,
    #[serde(default)]
    #[schema(schema_with = fields::metadata)]
    metadata: BTreeMap<String, String>,
}

/// Reserves `amount` on the debit account until it is captured, released or
/// expires after `timeout_ms`. `id` names the hold (and the transfer that
/// places it).
#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"id": "hold-1002", "debit_account_id": "wallet-alice",
    "credit_account_id": "wallet-bob", "amount": 500, "currency": "CNY", "code": "card.auth",
    "timeout_ms": 3_600_000})))]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldRequest {
    #[schema(schema_with = fields::identifier)]
    id: String,
    #[schema(schema_with = fields::identifier)]
    debit_account_id: String,
    #[schema(schema_with = fields::identifier)]
    credit_account_id: String,
    #[schema(schema_with = fields::amount)]
    amount: i64,
    #[schema(schema_with = fields::currency)]
    currency: String,
    #[schema(schema_with = fields::code)]
    code: String,
    #[serde(default)]
    #[schema(schema_with = fields::metadata)]
    metadata: BTreeMap<String, String>,
    #[schema(schema_with = fields::hold_timeout_ms)]
    timeout_ms: u64,
}

/// One member of a batch: a posted transfer, or a hold when `timeout_ms` is present.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchTransferRequest {
    #[schema(schema_with = fields::identifier)]
    id: String,
    #[schema(schema_with = fields::identifier)]
    debit_account_id: String,
    #[schema(schema_with = fields::identifier)]
    credit_account_id: String,
    #[schema(schema_with = fields::amount)]
    amount: i64,
    #[schema(schema_with = fields::currency)]
    currency: String,
    #[schema(schema_with = fields::code)]
    code: String,
    #[serde(default)]
    #[schema(schema_with = fields::metadata)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    #[schema(schema_with = fields::optional_hold_timeout_ms)]
    timeout_ms: Option<u64>,
}

impl From<TransferRequest> for BatchTransferRequest {
    fn from(request: TransferRequest) -> BatchTransferRequest {
        BatchTransferRequest {
            id: request.id,
            debit_account_id: request.debit_account_id,
            credit_account_id: request.credit_account_id,
            amount: request.amount,
            currency: request.currency,
            code: request.code,
            metadata: request.metadata,
            timeout_ms: None,
        }
    }
}

impl From<HoldRequest> for BatchTransferRequest {
    fn from(request: HoldRequest) -> BatchTransferRequest {
        BatchTransferRequest {
            id: request.id,
            debit_account_id: request.debit_account_id,
            credit_account_id: request.credit_account_id,
            amount: request.amount,
            currency: request.currency,
            code: request.code,
            metadata: request.metadata,
            timeout_ms: Some(request.timeout_ms),
        }
    }
}

/// Up to `BATCH_TRANSFERS_MAX` transfers and holds in one request.
#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"linked": true, "transfers": [
    {"id": "order-77-pay", "debit_account_id": "wallet-alice", "credit_account_id": "wallet-bob",
     "amount": 2000, "currency": "CNY", "code": "purchase"},
    {"id": "order-77-fee", "debit_account_id": "wallet-bob", "credit_account_id": "bank-settlement",
     "amount": 20, "currency": "CNY", "code": "fee"}]})))]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchRequest {
    /// All or nothing: when one member fails, none is written and the others
    /// fail with `linked_transfer_failed`.
    #[serde(default)]
    linked: bool,
    #[schema(schema_with = fields::batch_transfers)]
    transfers: Vec<BatchTransferRequest>,
}

/// Captures a pending hold, wholly or in part; the rest is freed. `id` names
/// the capturing transfer.
#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"id": "capture-1001", "amount": 300, "code": "card.capture"})))]
#[serde(deny_unknown_fields)]
pub(crate) struct CaptureRequest {
    #[schema(schema_with = fields::identifier)]
    id: String,
    #[serde(default)]
    #[schema(schema_with = fields::optional_amount)]
    amount: Option<i64>,
    #[schema(schema_with = fields::code)]
    code: String,
    #[serde(default)]
    #[schema(schema_with = fields::metadata)]
    metadata: BTreeMap<String, String>,
}

impl From<ReleaseRequest> for CaptureRequest {
    fn from(request: ReleaseRequest) -> CaptureRequest {
        CaptureRequest {
            id: request.id,
            amount: None,
            code: request.code,
            metadata: request.metadata,
        }
    }
}

/// Releases a pending hold: its whole amount is freed. `id` names the
/// releasing transfer.
#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"id": "release-1001", "code": "card.release"})))]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseRequest {
    #[schema(schema_with = fields::identifier)]
    id: String,
    #[schema(schema_with = fields::code)]
    code: String,
    #[serde(default)]
    #[schema(schema_with = fields::metadata)]
    metadata: BTreeMap<String, String>,
}

/// An account's totals, in minor units of its currency. `posted` is the posted
/// balance on the account's normal side; `available` is that less outgoing holds.
#[derive(Serialize, ToSchema)]
pub struct BalancesView {
    #[schema(schema_with = fields::minor_units)]
    pub debits_posted: i64,
    #[schema(schema_with = fields::minor_units)]
    pub credits_posted: i64,
    #[schema(schema_with = fields::minor_units)]
    pub debits_pending: i64,
    #[schema(schema_with = fields::minor_units)]
    pub credits_pending: i64,
    #[schema(schema_with = fields::minor_units)]
    pub posted: i64,
    #[schema(schema_with = fields::minor_units)]
    pub available: i64,
}

/// An account and its balances; `as_of` is present when the balances are
/// those of a past time (`?as_of=`).
#[derive(Serialize, ToSchema)]
pub struct AccountView {
    #[schema(schema_with = fields::identifier)]
    pub id: String,
    #[schema(schema_with = fields::currency)]
    pub currency: String,
    #[schema(schema_with = fields::account_kind)]
    pub kind: &'static str,
    #[schema(schema_with = fields::balance_constraint)]
    pub constraint: &'static str,
    #[schema(schema_with = fields::identifier)]
    pub owner: String,
    #[schema(schema_with = fields::account_status)]
    pub status: &'static str,
    pub balances: BalancesView,
    #[schema(schema_with = fields::timestamp)]
    pub opened_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::optional_timestamp)]
    pub closed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::optional_timestamp)]
    pub as_of: Option<String>,
}

/// A transfer. `timestamp` is when the ledger committed it: unique and
/// increasing, so also its order. `expires_at` is when a hold expires if not
/// resolved first.
#[derive(Serialize, ToSchema)]
pub struct TransferView {
    #[schema(schema_with = fields::stored_identifier)]
    pub id: String,
    #[schema(schema_with = fields::transfer_kind)]
    pub kind: &'static str,
    #[schema(schema_with = fields::identifier)]
    pub debit_account_id: String,
    #[schema(schema_with = fields::identifier)]
    pub credit_account_id: String,
    #[schema(schema_with = fields::amount)]
    pub amount: i64,
    #[schema(schema_with = fields::currency)]
    pub currency: String,
    #[schema(schema_with = fields::code)]
    pub code: String,
    #[schema(schema_with = fields::metadata)]
    pub metadata: BTreeMap<String, String>,
    /// The hold a capture, release or expiry resolves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::optional_timestamp)]
    pub expires_at: Option<String>,
    #[schema(schema_with = fields::timestamp)]
    pub timestamp: String,
    /// On a write: true when this request wrote it, false when it answers a
    /// repeat of an earlier identical request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
}

/// A hold and where it stands.
#[derive(Serialize, ToSchema)]
pub struct HoldView {
    #[schema(schema_with = fields::identifier)]
    pub id: String,
    #[schema(schema_with = fields::identifier)]
    pub debit_account_id: String,
    #[schema(schema_with = fields::identifier)]
    pub credit_account_id: String,
    #[schema(schema_with = fields::amount)]
    pub amount: i64,
    #[schema(schema_with = fields::currency)]
    pub currency: String,
    #[schema(schema_with = fields::timestamp)]
    pub expires_at: String,
    #[schema(schema_with = fields::hold_state)]
    pub state: &'static str,
    /// The transfer that captured, released or expired it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// Minor units captured, when captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured: Option<i64>,
}

/// One line of an account's statement: the transfer, this account's side of
/// it, and `balance_after`, the account's posted balance (normal side) just
/// after it.
#[derive(Serialize, ToSchema)]
pub(crate) struct EntryView {
    transfer: TransferView,
    #[schema(schema_with = fields::side)]
    side: &'static str,
    #[schema(schema_with = fields::minor_units)]
    balance_after: i64,
}

/// A page of an account's statement, oldest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct EntryPage {
    data: Vec<EntryView>,
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

/// Checked here as well as in the ledger so that a batch member with a bad
/// timeout fails the request (like a bad amount) instead of being reported
/// as a rejected member of an accepted batch; the code stays the ledger's.
fn hold_timeout(timeout_ms: u64) -> Result<u64, ApiError> {
    if timeout_ms == 0 || timeout_ms > HOLD_TIMEOUT_MAX_MS {
        return Err(Rejection::InvalidTimeout.into());
    }
    Ok(timeout_ms)
}

fn code(value: &str) -> Result<Code, ApiError> {
    Code::parse(value).map_err(|e| ApiError::invalid("code", e.to_string()))
}

fn metadata(entries: BTreeMap<String, String>) -> Result<Metadata, ApiError> {
    Metadata::new(entries).map_err(|e| ApiError::invalid("metadata", e.to_string()))
}

fn transfer_command(
    state: &AppState,
    request: BatchTransferRequest,
) -> Result<TransferCommand, ApiError> {
    let id = identifier("id", &request.id)?;
    let debit = identifier("debit_account_id", &request.debit_account_id)?;
    let credit = identifier("credit_account_id", &request.credit_account_id)?;
    let amount = amount("amount", request.amount)?;
    let currency = currency(state, &request.currency)?;
    let op = match request.timeout_ms {
        Some(timeout_ms) => TransferOp::Hold {
            debit,
            credit,
            amount,
            currency,
            timeout_ms: hold_timeout(timeout_ms)?,
        },
        None => TransferOp::Post {
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

// ---- handlers ---------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/ledger/accounts",
    tag = "ledger",
    summary = "Open an account",
    description = "Opens an account in one currency with a balance constraint. Repeating the request with the same id and fields answers 200 with the account as it stands.",
    params(IdempotencyKey),
    request_body = OpenAccountRequest,
    responses(
        (status = 201, description = "Opened.", body = AccountView, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same Idempotency-Key."))),
        (status = 200, description = "An account with this id and these fields exists already.", body = AccountView, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same Idempotency-Key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, description = "`exists_with_different_fields`: the id is taken by an account with other fields; `idempotency_key_in_flight`.", body = ErrorBody),
        (status = 422, description = "`invalid_field` (a field is missing, unknown, mistyped or malformed: see `field`), `unknown_currency`, `idempotency_key_reused`.", body = ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("api_key" = ["ledger:write"]))
)]
pub(crate) async fn open_account(
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

#[utoipa::path(
    post,
    path = "/v1/ledger/accounts/{id}/close",
    tag = "ledger",
    summary = "Close an account",
    description = "Closes an account whose balance is zero and that has no pending hold. The request takes no body.",
    params(AccountId, IdempotencyKey),
    responses(
        (status = 200, description = "Closed.", body = AccountView, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same Idempotency-Key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no account with this id.", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = ErrorBody),
        (status = 422, description = "`account_not_empty`, `account_closed` (already closed), `invalid_field` (a malformed id), `idempotency_key_reused`.", body = ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("api_key" = ["ledger:write"]))
)]
pub(crate) async fn close_account(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    PathId(id): PathId,
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
pub(crate) struct AsOfQuery {
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

#[utoipa::path(
    get,
    path = "/v1/ledger/accounts/{id}",
    tag = "ledger",
    summary = "Read an account and its balances",
    description = "The account with its balances now, or as they stood at `as_of`.",
    params(AccountId, AsOfQuery),
    responses(
        (status = 200, description = "The account.", body = AccountView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no account with this id.", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a malformed id (`id`), time (`as_of`) or query string (`query`).", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = ["ledger:read"]))
)]
pub(crate) async fn get_account(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
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
    let account = blocking_call(move || reader.account(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    let mut view = account_view(&account);
    if let Some(at) = as_of {
        let reader = state.reader.clone();
        let balances = blocking_call(move || reader.balances_as_of(&id, at))
            .await?
            .unwrap_or_default();
        view.balances = balances_view(&account, balances);
        view.as_of = Some(at.to_rfc3339());
    }
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntriesQuery {
    cursor: Option<String>,
    limit: Option<usize>,
    from: Option<String>,
    until: Option<String>,
    code: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/ledger/accounts/{id}/entries",
    tag = "ledger",
    summary = "An account's statement",
    description = "The transfers that touched the account, oldest first, each with the account's side and its posted balance just after. Paged with `cursor` and `limit`; filtered by time and reason code.",
    params(AccountId, EntriesQuery),
    responses(
        (status = 200, description = "One page of entries.", body = EntryPage),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no account with this id.", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a malformed id, `cursor`, `limit`, `from`, `until`, `code` or query string.", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = ["ledger:read"]))
)]
pub(crate) async fn entries(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
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
    let account = blocking_call(move || reader.account(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    let reader = state.reader.clone();
    let lookup = id.clone();
    let mut found = blocking_call(move || reader.entries(&lookup, &filter)).await?;
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
    Ok(axum::response::IntoResponse::into_response(Json(
        EntryPage { data, next_cursor },
    )))
}

#[utoipa::path(
    post,
    path = "/v1/ledger/transfers",
    tag = "ledger",
    summary = "Post a transfer",
    description = "Moves `amount` from the debit account to the credit account, both in `currency`, at once and for good. Repeating the request with the same id and fields answers 200 with the original.",
    params(IdempotencyKey),
    request_body = TransferRequest,
    responses(
        (status = 201, description = "Posted.", body = TransferView, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same Idempotency-Key."))),
        (status = 200, description = "A transfer with this id and these fields was posted already.", body = TransferView, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same Idempotency-Key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, description = "`exists_with_different_fields`: the id is taken by a transfer with other fields; `idempotency_key_in_flight`.", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `amount_must_be_positive`, `unknown_currency`, `same_account`, `account_not_found`, `currency_mismatch`, `account_closed`, `insufficient_funds`, `exceeds_debits`, `overflow`, `idempotency_key_reused`; `field` names the input at fault.", body = ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("api_key" = ["ledger:write"]))
)]
pub(crate) async fn create_transfer(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    post_transfer(state, principal, headers, body, false).await
}

#[utoipa::path(
    post,
    path = "/v1/ledger/holds",
    tag = "ledger",
    summary = "Place a hold",
    description = "Reserves `amount` on the debit account (it stops being available) until the hold is captured, released, or expires after `timeout_ms`. Repeating the request with the same id and fields answers 200 with the original.",
    params(IdempotencyKey),
    request_body = HoldRequest,
    responses(
        (status = 201, description = "Placed: the transfer of kind `hold`.", body = TransferView, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same Idempotency-Key."))),
        (status = 200, description = "A hold with this id and these fields was placed already.", body = TransferView, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same Idempotency-Key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, description = "`exists_with_different_fields`; `idempotency_key_in_flight`.", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `amount_must_be_positive`, `unknown_currency`, `invalid_timeout`, `same_account`, `account_not_found`, `currency_mismatch`, `account_closed`, `insufficient_funds`, `exceeds_debits`, `overflow`, `idempotency_key_reused`.", body = ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("api_key" = ["ledger:write"]))
)]
pub(crate) async fn place_hold(
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
            // Each route has its own body type, so that an unknown field (a
            // `timeout_ms` on a transfer) is rejected by name.
            let request: BatchTransferRequest = if is_hold {
                parse::<HoldRequest>(&body)?.into()
            } else {
                parse::<TransferRequest>(&body)?.into()
            };
            let command = transfer_command(&state, request)?;
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
            // A release takes no `amount`: its body type rejects one by name.
            let request = if capture {
                parse::<CaptureRequest>(&body)?
            } else {
                parse::<ReleaseRequest>(&body)?.into()
            };
            let hold = identifier("hold_id", &hold)?;
            let op = if capture {
                TransferOp::Capture {
                    hold,
                    amount: request.amount.map(|a| amount("amount", a)).transpose()?,
                }
            } else {
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

#[utoipa::path(
    post,
    path = "/v1/ledger/holds/{id}/capture",
    tag = "ledger",
    summary = "Capture a hold",
    description = "Posts `amount` (default: all) of a pending hold from its debit to its credit account; the rest is freed.",
    params(HoldId, IdempotencyKey),
    request_body = CaptureRequest,
    responses(
        (status = 201, description = "Captured: the transfer of kind `capture`.", body = TransferView, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same Idempotency-Key."))),
        (status = 200, description = "A capture with this id and these fields was made already.", body = TransferView, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same Idempotency-Key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, description = "`exists_with_different_fields`; `idempotency_key_in_flight`.", body = ErrorBody),
        (status = 422, description = "`hold_not_found`, `hold_not_pending`, `hold_expired`, `capture_exceeds_hold`, `invalid_field`, `amount_must_be_positive`, `account_closed`, `overflow`, `idempotency_key_reused`.", body = ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("api_key" = ["ledger:write"]))
)]
pub(crate) async fn capture_hold(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    PathId(hold): PathId,
    RawBody(body): RawBody,
) -> Response {
    resolve_hold(state, principal, headers, hold, body, true).await
}

#[utoipa::path(
    post,
    path = "/v1/ledger/holds/{id}/release",
    tag = "ledger",
    summary = "Release a hold",
    description = "Frees the whole amount of a pending hold; nothing moves.",
    params(HoldId, IdempotencyKey),
    request_body = ReleaseRequest,
    responses(
        (status = 201, description = "Released: the transfer of kind `release`.", body = TransferView, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same Idempotency-Key."))),
        (status = 200, description = "A release with this id and these fields was made already.", body = TransferView, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same Idempotency-Key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, description = "`exists_with_different_fields`; `idempotency_key_in_flight`.", body = ErrorBody),
        (status = 422, description = "`hold_not_found`, `hold_not_pending`, `hold_expired`, `invalid_field`, `idempotency_key_reused`.", body = ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("api_key" = ["ledger:write"]))
)]
pub(crate) async fn release_hold(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    PathId(hold): PathId,
    RawBody(body): RawBody,
) -> Response {
    resolve_hold(state, principal, headers, hold, body, false).await
}

/// One member's outcome, in request order: `transfer` when it was written
/// (or, for a repeat, had been), `error` when it was rejected.
#[derive(Serialize, ToSchema)]
pub(crate) struct BatchResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer: Option<TransferView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<BatchError>,
}

/// Why one member was rejected; the same fields as an error response's `error`.
#[derive(Serialize, ToSchema)]
pub(crate) struct BatchError {
    /// Stable machine-readable code, e.g. `insufficient_funds` or `linked_transfer_failed`.
    code: &'static str,
    message: String,
    /// The member's field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BatchResponse {
    /// True when every member was written (or, for a repeat, had been).
    ok: bool,
    results: Vec<BatchResult>,
}

#[utoipa::path(
    post,
    path = "/v1/ledger/transfers/batch",
    tag = "ledger",
    summary = "Post a batch of transfers and holds",
    description = "Executes up to 8000 (BATCH_TRANSFERS_MAX) transfers and holds in order, in one commit. Each member succeeds or fails on its own, unless `linked` makes the batch all or nothing. Members that fail validation reject the whole request (422, `field` names the member, e.g. `transfers[2].amount`); members the ledger rejects are reported in `results` with 200.",
    params(IdempotencyKey),
    request_body = BatchRequest,
    responses(
        (status = 200, description = "Executed: one result per member, in order; `ok` is false when any member failed.", body = BatchResponse, headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored response to an earlier request with the same Idempotency-Key."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, description = "`idempotency_key_in_flight`.", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `amount_must_be_positive`, `unknown_currency`, `invalid_timeout` for a member (see `field`), `batch_too_large`, `idempotency_key_reused`.", body = ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
    security(("api_key" = ["ledger:write"]))
)]
pub(crate) async fn create_batch(
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
                let command = transfer_command(&state, transfer).map_err(|mut e| {
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

#[utoipa::path(
    get,
    path = "/v1/ledger/transfers/{id}",
    tag = "ledger",
    summary = "Read a transfer",
    params(TransferId),
    responses(
        (status = 200, description = "The transfer.", body = TransferView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no transfer with this id.", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a malformed id.", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = ["ledger:read"]))
)]
pub(crate) async fn get_transfer(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<TransferView>, ApiError> {
    principal.require(SCOPE_LEDGER_READ)?;
    let id = identifier("id", &id)?;
    let reader = state.reader.clone();
    let transfer = blocking_call(move || reader.transfer(&id))
        .await?
        .ok_or_else(|| ApiError::not_found("transfer"))?;
    Ok(Json(transfer_view(&transfer, None)))
}

#[utoipa::path(
    get,
    path = "/v1/ledger/holds/{id}",
    tag = "ledger",
    summary = "Read a hold",
    params(HoldId),
    responses(
        (status = 200, description = "The hold and where it stands.", body = HoldView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no hold with this id.", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a malformed id.", body = ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = ["ledger:read"]))
)]
pub(crate) async fn get_hold(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<HoldView>, ApiError> {
    principal.require(SCOPE_LEDGER_READ)?;
    let id = identifier("id", &id)?;
    let reader = state.reader.clone();
    let hold = blocking_call(move || reader.hold(&id))
        .await?
        .ok_or_else(|| ApiError::not_found("hold"))?;
    Ok(Json(hold_view(&hold)))
}
