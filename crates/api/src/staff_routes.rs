//! `/v1/staff`: the back office's API. Staff sign in with a password and an
//! authenticator code; every route checks one permission of the role matrix
//! (`coffer_identity::permits`); sensitive actions go through maker-checker
//! approvals; everything staff see and do is in the audit log.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_core::{Amount, Code, Currency, Identifier, Secret, Timestamp};
use coffer_identity::{Context, IdentityError, SensitiveAction, StaffInfo};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, Metadata, Outcome, TransferCommand,
    TransferOp,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::body::{parse, RawBody};
use crate::customer_routes::{wallet_account, Client, DEFAULT_WALLET_CURRENCY};
use crate::error::ApiError;
use crate::idempotency;
use crate::openapi::params::IdempotencyKey;
use crate::openapi::{BadRequest, BodyTooLarge, Internal};
use crate::path_id::PathId;
use crate::respond::{blocking_call, identity_call, json_response, to_json};
use crate::route_table::RouteTable;
use crate::AppState;

pub fn routes() -> RouteTable {
    RouteTable::default()
        .post("/v1/staff/sessions", staff_sign_in)
        .get("/v1/staff/customers", find_customer)
        .get("/v1/staff/customers/{id}", view_customer)
        .post("/v1/staff/customers/{id}/freeze", freeze_customer)
        .post("/v1/staff/customers/{id}/unlock", unlock_customer)
        .get("/v1/staff/kyc/reviews", kyc_queue)
        .post("/v1/staff/kyc/reviews/{id}/decide", decide_kyc)
        .get("/v1/staff/audit", read_audit)
        .post("/v1/staff/approvals", propose)
        .get("/v1/staff/approvals", list_approvals)
        .post("/v1/staff/approvals/{id}/decide", decide_approval)
        .get("/v1/staff/reconciliation", reconciliation)
}

/// A signed-in staff member, from `Authorization: Bearer ss_…`.
pub struct StaffSession {
    pub info: StaffInfo,
    pub context: Context,
}

impl FromRequestParts<AppState> for StaffSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Client(context) = Client::from_request_parts(parts, state).await?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| Secret::new(t.trim().to_string()))
            .ok_or_else(|| ApiError::from(IdentityError::Unauthenticated))?;
        let identity = state.identity.clone();
        let info = tokio::task::spawn_blocking(move || identity.authenticate_staff(&token))
            .await
            .map_err(ApiError::internal)??;
        Ok(StaffSession { info, context })
    }
}

fn staff_principal(session: &StaffSession) -> crate::auth::Principal {
    crate::auth::Principal {
        key_id: session.info.actor(),
        scopes: vec!["staff".into()],
    }
}

// ---- shapes ------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaffSignInRequest {
    username: String,
    password: String,
    /// The current code of the staff member's authenticator app.
    code: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StaffSessionResponse {
    /// Shown once; send it as `Authorization: Bearer ss_…`.
    token: String,
    username: String,
    roles: Vec<&'static str>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindQuery {
    /// A phone number (+86…) or e-mail address.
    contact: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct FoundResponse {
    customer_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StaffCustomerView {
    id: String,
    display_name: String,
    contact: String,
    kyc_tier: i64,
    status: String,
    created_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonRequest {
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReviewView {
    id: String,
    customer_id: String,
    target_tier: i64,
    reason: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReviewsResponse {
    data: Vec<ReviewView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionRequest {
    approve: bool,
    #[serde(default)]
    note: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Only records about this subject (a customer id, an approval id…).
    subject: Option<String>,
    /// At most this many, newest first (1 to 500; default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditRecordView {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    subject: Option<String>,
    ip: String,
    outcome: String,
    detail: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditResponse {
    data: Vec<AuditRecordView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProposalRequest {
    /// `unfreeze`, `adjust_balance`, `override_limit` or `send_campaign`.
    action: String,
    /// The customer id the action is for (for `send_campaign`: the campaign id).
    subject: String,
    /// For `adjust_balance`: `{"amount": 1000, "direction": "credit"}` (minor units of CNY;
    /// `credit` adds to the wallet, `debit` takes from it). For `override_limit`:
    /// `{"daily": 5000000}`. Empty for `unfreeze`.
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ApprovalView {
    id: String,
    action: &'static str,
    subject: String,
    params: String,
    reason: String,
    maker: String,
    state: String,
    checker: Option<String>,
    result: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ApprovalsResponse {
    data: Vec<ApprovalView>,
}

fn approval_view(a: coffer_identity::Approval) -> ApprovalView {
    ApprovalView {
        id: a.id,
        action: a.action.as_str(),
        subject: a.subject,
        params: a.params,
        reason: a.reason,
        maker: a.maker,
        state: a.state,
        checker: a.checker,
        result: a.result,
    }
}

// ---- handlers ----------------------------------------------------------------------

#[utoipa::path(post, path = "/v1/staff/sessions", tag = "staff", summary = "Staff sign-in",
    description = "Username, password and the authenticator code — always all three. Throttled and audited. Not replayed by Idempotency-Key (the answer carries a token).",
    request_body = StaffSignInRequest,
    responses(
        (status = 201, description = "Signed in.", body = StaffSessionResponse),
        (status = 400, response = BadRequest),
        (status = 401, description = "`invalid_credentials`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ))]
pub(crate) async fn staff_sign_in(
    State(state): State<AppState>,
    Client(context): Client,
    RawBody(body): RawBody,
) -> Response {
    let request: StaffSignInRequest = match parse(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let identity = state.identity.clone();
    let signed_in = identity_call(move || {
        identity.staff_sign_in(
            &request.username,
            &Secret::new(request.password),
            &Secret::new(request.code),
            &context,
        )
    })
    .await;
    match signed_in {
        Ok((info, token)) => json_response(
            StatusCode::CREATED,
            &StaffSessionResponse {
                token: token.into_inner(),
                username: info.username,
                roles: info.roles.iter().map(|r| r.as_str()).collect(),
            },
        ),
        Err(error) => error.into_response(),
    }
}

#[utoipa::path(get, path = "/v1/staff/customers", tag = "staff", summary = "Find a customer by contact",
    description = "Looks the contact up through its blind index (nothing is decrypted to search). Needs `view_customers`. Audited.",
    params(FindQuery),
    responses(
        (status = 200, description = "The customer id, or null.", body = FoundResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`: the role lacks the permission.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn find_customer(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<FindQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("contact", e.body_text()))?;
    let identity = state.identity.clone();
    let found = identity_call(move || {
        identity.staff_find_customer(&session.info, &query.contact, &session.context)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &FoundResponse { customer_id: found },
    ))
}

#[utoipa::path(get, path = "/v1/staff/customers/{id}", tag = "staff", summary = "A customer's profile",
    description = "Name, masked contact, KYC tier and status. Needs `view_customers`. Audited.",
    params(("id" = String, Path, description = "The customer id.")),
    responses(
        (status = 200, description = "The customer.", body = StaffCustomerView),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn view_customer(
    State(state): State<AppState>,
    session: StaffSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let identity = state.identity.clone();
    let customer =
        identity_call(move || identity.staff_view_customer(&session.info, &id, &session.context))
            .await?;
    Ok(json_response(
        StatusCode::OK,
        &StaffCustomerView {
            id: customer.id,
            display_name: customer.display_name.into_inner(),
            contact: customer.contact_masked,
            kyc_tier: customer.tier,
            status: customer.status,
            created_at: Timestamp::from_nanos(customer.created_at).to_rfc3339(),
        },
    ))
}

#[utoipa::path(post, path = "/v1/staff/customers/{id}/freeze", tag = "staff", summary = "Freeze a customer",
    description = "At once: no sign-in, every session ended, the customer alerted. Needs `freeze_customers`. Unfreezing needs a second staff member (an approval).",
    params(("id" = String, Path, description = "The customer id."), IdempotencyKey),
    request_body = ReasonRequest,
    responses(
        (status = 200, description = "Frozen."),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no active customer with this id.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn freeze_customer(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session
        .info
        .require(coffer_identity::Permission::FreezeCustomers)
    {
        return ApiError::from(error).into_response();
    }
    let principal = staff_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        &format!("freeze:{id}"),
        &body,
        || async {
            let request: ReasonRequest = parse(&body)?;
            let identity = state.identity.clone();
            let session = session.clone();
            identity_call(move || {
                identity.freeze_customer(&session.info, &id, &request.reason, &session.context)
            })
            .await?;
            state.dispatcher.nudge();
            Ok((StatusCode::OK, r#"{"frozen":true}"#.to_string()))
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/staff/customers/{id}/unlock", tag = "staff", summary = "Lift a sign-in lock-out",
    description = "For a customer locked out by too many failed sign-ins who called the bank and was identified. The failures are forgotten and the customer alerted. Needs `unlock_customers`. Does not unfreeze (that needs an approval).",
    params(("id" = String, Path, description = "The customer id."), IdempotencyKey),
    request_body = ReasonRequest,
    responses(
        (status = 200, description = "Unlocked."),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no customer with this id.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn unlock_customer(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session
        .info
        .require(coffer_identity::Permission::UnlockCustomers)
    {
        return ApiError::from(error).into_response();
    }
    let principal = staff_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        &format!("unlock:{id}"),
        &body,
        || async {
            let request: ReasonRequest = parse(&body)?;
            let identity = state.identity.clone();
            let session = session.clone();
            identity_call(move || {
                identity.unlock_customer(&session.info, &id, &request.reason, &session.context)
            })
            .await?;
            state.dispatcher.nudge();
            Ok((StatusCode::OK, r#"{"unlocked":true}"#.to_string()))
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/staff/kyc/reviews", tag = "staff", summary = "KYC review queue",
    description = "Pending reviews, oldest first. Needs `review_kyc`.",
    responses(
        (status = 200, description = "The queue.", body = ReviewsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn kyc_queue(
    State(state): State<AppState>,
    session: StaffSession,
) -> Result<Response, ApiError> {
    session
        .info
        .require(coffer_identity::Permission::ReviewKyc)?;
    let identity = state.identity.clone();
    let reviews = identity_call(move || identity.pending_reviews(200)).await?;
    Ok(json_response(
        StatusCode::OK,
        &ReviewsResponse {
            data: reviews
                .into_iter()
                .map(|r| ReviewView {
                    id: r.id,
                    customer_id: r.customer_id,
                    target_tier: r.target_tier,
                    reason: r.reason,
                    created_at: Timestamp::from_nanos(r.created_at).to_rfc3339(),
                })
                .collect(),
        },
    ))
}

#[utoipa::path(post, path = "/v1/staff/kyc/reviews/{id}/decide", tag = "staff", summary = "Decide a KYC review",
    description = "Approval raises the customer to the review's tier. Needs `review_kyc`.",
    params(("id" = String, Path, description = "The review id."), IdempotencyKey),
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "Decided."),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no pending review with this id.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn decide_kyc(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session.info.require(coffer_identity::Permission::ReviewKyc) {
        return ApiError::from(error).into_response();
    }
    let principal = staff_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        &format!("kyc_decide:{id}"),
        &body,
        || async {
            let request: DecisionRequest = parse(&body)?;
            let identity = state.identity.clone();
            let session = session.clone();
            identity_call(move || {
                identity.staff_decide_review(
                    &session.info,
                    &id,
                    request.approve,
                    &request.note,
                    &session.context,
                )
            })
            .await?;
            Ok((
                StatusCode::OK,
                format!(r#"{{"approved":{}}}"#, request.approve),
            ))
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/staff/audit", tag = "staff", summary = "Read the audit log",
    description = "Newest first, optionally about one subject. Needs `read_audit`; the reading is itself audited.",
    params(AuditQuery),
    responses(
        (status = 200, description = "Records.", body = AuditResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn read_audit(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    // Parsed by hand: an empty `limit=` must be refused, not read as absent.
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "limit is a whole number from 1 to 500"))?,
    };
    let identity = state.identity.clone();
    let records = identity_call(move || {
        identity.staff_audit_log(
            &session.info,
            query.subject.as_deref(),
            limit,
            &session.context,
        )
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &AuditResponse {
            data: records
                .into_iter()
                .map(|r| AuditRecordView {
                    seq: r.seq,
                    at: Timestamp::from_nanos(r.at).to_rfc3339(),
                    actor: r.actor,
                    action: r.action,
                    subject: r.subject,
                    ip: r.ip,
                    outcome: r.outcome,
                    detail: r.detail,
                })
                .collect(),
        },
    ))
}

#[utoipa::path(post, path = "/v1/staff/approvals", tag = "staff", summary = "Propose a sensitive action",
    description = "Maker-checker: unfreezing a customer, a manual balance adjustment or a limit override takes effect only when a second staff member approves. Needs `propose_sensitive`.",
    params(IdempotencyKey),
    request_body = ProposalRequest,
    responses(
        (status = 201, description = "Proposed.", body = ApprovalView),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`action`, `subject`, `params`, `reason`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn propose(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session
        .info
        .require(coffer_identity::Permission::ProposeSensitive)
    {
        return ApiError::from(error).into_response();
    }
    let principal = staff_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        "propose",
        &body,
        || async {
            let request: ProposalRequest = parse(&body)?;
            let action = SensitiveAction::parse(&request.action)
                .filter(|a| *a != SensitiveAction::ChangeSettings)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "action",
                        "unfreeze, adjust_balance, override_limit or send_campaign (settings changes: /v1/staff/settings/{kind}/proposals)",
                    )
                })?;
            if action == SensitiveAction::AdjustBalance {
                adjustment(&request.params)?;
            }
            if action == SensitiveAction::OverrideLimit {
                coffer_identity::limit_override_fields(
                    &serde_json::Value::Object(request.params.clone()).to_string(),
                )?;
            }
            Identifier::parse(&request.subject)
                .map_err(|_| ApiError::invalid("subject", "a customer id"))?;
            if action == SensitiveAction::SendCampaign {
                // The subject is the campaign: it must exist and be unsent.
                let campaigns = state.campaigns.clone();
                let id = request.subject.clone();
                let campaign = blocking_call(move || campaigns.get(&id)).await?;
                if campaign.state == "sent" {
                    return Err(coffer_payments::CampaignError::AlreadySent.into());
                }
            }
            let params = serde_json::Value::Object(request.params).to_string();
            let identity = state.identity.clone();
            let session = session.clone();
            let approval = identity_call(move || {
                let id = identity.propose(
                    &session.info,
                    action,
                    &request.subject,
                    &params,
                    &request.reason,
                    &session.context,
                )?;
                identity.approval(&id)
            })
            .await?;
            to_json(StatusCode::CREATED, &approval_view(approval))
        },
    )
    .await
}

/// Who proposed and approved a manual adjustment, and why, on the ledger
/// transfer itself: the books explain every adjustment without the
/// approvals table.
fn adjustment_metadata(approval: &coffer_identity::Approval) -> Result<Metadata, ApiError> {
    let mut reason: String = approval
        .reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    while reason.len() > coffer_ledger::metadata::METADATA_VALUE_LENGTH_MAX {
        reason.pop();
    }
    Metadata::new(
        [
            ("approval_id", approval.id.clone()),
            ("maker", approval.maker.clone()),
            ("checker", approval.checker.clone().unwrap_or_default()),
            ("reason", reason),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    )
    .map_err(ApiError::internal)
}

/// (amount, credit?) of an `adjust_balance` proposal.
fn adjustment(
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<(Amount, bool), ApiError> {
    let amount = params
        .get("amount")
        .and_then(serde_json::Value::as_i64)
        .and_then(|a| Amount::new(a).ok())
        .ok_or_else(|| {
            ApiError::invalid("params.amount", "a positive whole number of minor units")
        })?;
    let credit = match params.get("direction").and_then(serde_json::Value::as_str) {
        Some("credit") => true,
        Some("debit") => false,
        _ => return Err(ApiError::invalid("params.direction", "credit or debit")),
    };
    Ok((amount, credit))
}

#[utoipa::path(get, path = "/v1/staff/approvals", tag = "staff", summary = "Pending approvals",
    description = "Proposals waiting for a checker. Needs `propose_sensitive` or `approve_sensitive`.",
    responses(
        (status = 200, description = "Pending proposals.", body = ApprovalsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn list_approvals(
    State(state): State<AppState>,
    session: StaffSession,
) -> Result<Response, ApiError> {
    let identity = state.identity.clone();
    let pending = identity_call(move || identity.pending_approvals(&session.info)).await?;
    Ok(json_response(
        StatusCode::OK,
        &ApprovalsResponse {
            data: pending.into_iter().map(approval_view).collect(),
        },
    ))
}

#[utoipa::path(post, path = "/v1/staff/approvals/{id}/decide", tag = "staff", summary = "Approve or reject a proposal",
    description = "By a second staff member with `approve_sensitive` — never the maker. An approval executes the action at once (a balance adjustment is a ledger transfer with id `adj:<approval id>`, so it happens once).",
    params(("id" = String, Path, description = "The approval id."), IdempotencyKey),
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "Decided, and executed when approved.", body = ApprovalView),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden` (the role, or checking one's own proposal).", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`conflict` (already decided), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn decide_approval(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session
        .info
        .require(coffer_identity::Permission::ApproveSensitive)
    {
        return ApiError::from(error).into_response();
    }
    let principal = staff_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        &format!("decide:{id}"),
        &body,
        || async {
            let request: DecisionRequest = parse(&body)?;
            let identity = state.identity.clone();
            let (session2, id2) = (session.clone(), id.clone());
            let approval = identity_call(move || {
                identity.decide_approval(&session2.info, &id2, request.approve, &session2.context)
            })
            .await?;
            if request.approve {
                let result = execute(&state, &approval, &session.context).await;
                let (ok, text) = match &result {
                    Ok(text) => (true, text.clone()),
                    Err(error) => (false, error.message.clone()),
                };
                let identity = state.identity.clone();
                let id = approval.id.clone();
                identity_call(move || identity.finish_approval(&id, &text, ok)).await?;
                result?;
            }
            let identity = state.identity.clone();
            let approval = identity_call(move || identity.approval(&id)).await?;
            to_json(StatusCode::OK, &approval_view(approval))
        },
    )
    .await
}

/// Carries out an approved action.
async fn execute(
    state: &AppState,
    approval: &coffer_identity::Approval,
    context: &Context,
) -> Result<String, ApiError> {
    match approval.action {
        SensitiveAction::Unfreeze => {
            let identity = state.identity.clone();
            let (approval, context) = (approval.clone(), context.clone());
            identity_call(move || identity.unfreeze_customer(&approval, &context)).await?;
            Ok("unfrozen".into())
        }
        SensitiveAction::OverrideLimit => {
            let identity = state.identity.clone();
            let (approval, context) = (approval.clone(), context.clone());
            identity_call(move || identity.apply_limit_override(&approval, &context)).await?;
            Ok("limits overridden".into())
        }
        SensitiveAction::ChangeSettings => {
            crate::backoffice_routes::apply_settings_change(state, approval, context).await
        }
        SensitiveAction::AdjustBalance => {
            let params: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&approval.params).map_err(ApiError::internal)?;
            let (amount, credit) = adjustment(&params)?;
            let currency = Currency::parse(DEFAULT_WALLET_CURRENCY).map_err(ApiError::internal)?;
            let wallet = wallet_account(&approval.subject, DEFAULT_WALLET_CURRENCY)?;
            let adjustments =
                Identifier::parse("bank:adjustments:cny").map_err(ApiError::internal)?;
            let opened = state
                .engine
                .execute(Command::OpenAccount(AccountSpec {
                    id: adjustments.clone(),
                    currency,
                    kind: AccountKind::Equity,
                    constraint: BalanceConstraint::None,
                    owner: Identifier::parse("bank").map_err(ApiError::internal)?,
                }))
                .await?;
            if let Outcome::Account(Err(rejection)) = opened {
                return Err(ApiError::internal(rejection));
            }
            let (debit, credit_account) = if credit {
                (adjustments, wallet)
            } else {
                (wallet, adjustments)
            };
            let transfer = TransferCommand {
                id: Identifier::parse(&format!("adj:{}", approval.id))
                    .map_err(ApiError::internal)?,
                op: TransferOp::Post {
                    debit,
                    credit: credit_account,
                    amount,
                    currency,
                },
                code: Code::parse("adjustment.manual").map_err(ApiError::internal)?,
                metadata: adjustment_metadata(approval)?,
            };
            let outcome = state
                .engine
                .execute(Command::Transfers {
                    transfers: vec![transfer],
                    linked: false,
                })
                .await?;
            match outcome {
                Outcome::Transfers(results) => match results.into_iter().next() {
                    Some(Ok((transfer, _))) => Ok(format!("transfer {}", transfer.id)),
                    Some(Err(rejection)) => Err(rejection.into()),
                    None => Err(ApiError::internal("no result")),
                },
                Outcome::Account(_) => Err(ApiError::internal("unexpected outcome")),
            }
        }
        SensitiveAction::SendCampaign => {
            let campaigns = state.campaigns.clone();
            let checker = format!("staff:{}", approval.checker.clone().unwrap_or_default());
            let (id, ip) = (approval.subject.clone(), context.ip.clone());
            let reached = blocking_call(move || campaigns.send(&id, &checker, &ip)).await?;
            state.dispatcher.nudge();
            Ok(format!("sent to {reached} customers"))
        }
    }
}

// ---- reconciliation ----------------------------------------------------------------

/// The longest window one reconciliation covers.
const RECONCILIATION_WINDOW_MAX_NANOS: i64 = 31 * 24 * 3_600 * 1_000_000_000;
const DAY_NANOS: i64 = 24 * 3_600 * 1_000_000_000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReconciliationQuery {
    /// `card_network` or `core_banking`.
    connector: String,
    /// Start of the window of submissions (RFC 3339; default 24 hours before `until`).
    from: Option<String>,
    /// End of the window, exclusive (RFC 3339; default now). At most 31 days after `from`.
    until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BreakView {
    /// `missing_in_ledger`, `missing_at_connector`, `amount_mismatch` or `stuck_pending`.
    kind: &'static str,
    funding_id: Option<String>,
    connector_reference: Option<String>,
    /// Minor units on our side…
    ours: Option<i64>,
    /// …in this currency (ISO 4217; with `ours`).
    ours_currency: Option<String>,
    /// Minor units in the connector's report…
    theirs: Option<i64>,
    /// …in this currency (with `theirs`).
    theirs_currency: Option<String>,
    detail: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReconciliationView {
    connector: &'static str,
    from: String,
    until: String,
    report_lines: usize,
    matched: usize,
    breaks: Vec<BreakView>,
}

pub(crate) fn reconciliation_view(r: coffer_payments::Reconciliation) -> ReconciliationView {
    ReconciliationView {
        connector: r.connector.as_str(),
        from: Timestamp::from_nanos(r.from).to_rfc3339(),
        until: Timestamp::from_nanos(r.until).to_rfc3339(),
        report_lines: r.report_lines,
        matched: r.matched,
        breaks: r
            .breaks
            .into_iter()
            .map(|b| BreakView {
                kind: b.kind.as_str(),
                funding_id: b.funding_id,
                connector_reference: b.connector_reference,
                ours: b.ours,
                ours_currency: b.ours_currency,
                theirs: b.theirs,
                theirs_currency: b.theirs_currency,
                detail: b.detail,
            })
            .collect(),
    }
}

#[utoipa::path(get, path = "/v1/staff/reconciliation", tag = "staff", summary = "Reconcile a connector",
    description = "Fetches the connector's settlement report for submissions in the window and matches it against the funding records and the ledger; lists every break (`missing_in_ledger`, `missing_at_connector`, `amount_mismatch`, `stuck_pending`). Changes nothing. Needs `reconcile`. Audited.",
    params(ReconciliationQuery),
    responses(
        (status = 200, description = "The matches and breaks.", body = ReconciliationView),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`connector`, `from`, `until`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`: the connector did not answer.", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn reconciliation(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<ReconciliationQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session
        .info
        .require(coffer_identity::Permission::Reconcile)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("connector", e.body_text()))?;
    let connector = coffer_payments::ConnectorKind::parse(&query.connector)
        .ok_or_else(|| ApiError::invalid("connector", "card_network or core_banking"))?;
    let time = |field: &str, text: Option<&str>, default: i64| -> Result<i64, ApiError> {
        match text {
            None => Ok(default),
            Some(text) => Timestamp::parse_rfc3339(text)
                .map(|t| t.as_nanos())
                .ok_or_else(|| {
                    ApiError::invalid(field, "an RFC 3339 time such as 2026-11-25T00:00:00Z")
                }),
        }
    };
    let now = state.clock.now().as_nanos();
    let until = time("until", query.until.as_deref(), now)?;
    let from = time(
        "from",
        query.from.as_deref(),
        until.saturating_sub(DAY_NANOS),
    )?;
    if from >= until || until.saturating_sub(from) > RECONCILIATION_WINDOW_MAX_NANOS {
        return Err(ApiError::invalid(
            "from",
            "from must be before until, at most 31 days apart",
        ));
    }
    let funding = state.funding.clone();
    let report = tokio::task::spawn_blocking(move || funding.reconcile(connector, from, until))
        .await
        .map_err(ApiError::internal)??;
    let actor = session.info.actor();
    let detail = format!(
        "{} {} lines, {} matched, {} breaks",
        connector.as_str(),
        report.report_lines,
        report.matched,
        report.breaks.len()
    );
    let (sql, ip) = (state.sql.clone(), session.context.ip.clone());
    tokio::task::spawn_blocking(move || {
        sql.transaction(|db| {
            coffer_audit::append(
                db,
                &coffer_audit::Entry {
                    at: now,
                    actor: &actor,
                    action: "reconciliation_run",
                    subject: None,
                    ip: &ip,
                    outcome: coffer_audit::Outcome::Ok,
                    detail: &detail,
                },
            )
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(json_response(StatusCode::OK, &reconciliation_view(report)))
}
