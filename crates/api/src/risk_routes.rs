//! Real-time risk over HTTP. Staff (permission `manage_risk`): cases
//! (list, show, release, reject, escalate), the blocklist, and rule sets
//! (the active one and its versions, drafts validated field by field, a
//! dry-run over recent traffic, activation without a restart). Customers:
//! their cases and the "was this you?" answer.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_core::Timestamp;
use coffer_identity::Permission;
use coffer_payments::risk_cases::CaseError;
use coffer_risk::{BlockEntry, BlockList, Case, DryRun, RiskError, RuleSetVersion};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::body::{parse, RawBody};
use crate::customer_routes::{customer_principal, CustomerSession};
use crate::error::ApiError;
use crate::idempotency;
use crate::openapi::params::IdempotencyKey;
use crate::openapi::{BadRequest, BodyTooLarge, Internal};
use crate::path_id::PathId;
use crate::respond::{blocking_call, json_response, to_json};
use crate::route_table::RouteTable;
use crate::staff_routes::StaffSession;
use crate::AppState;

/// Cases and rule set versions a list returns by default.
const LIST_DEFAULT: i64 = 50;
/// Evaluations a dry-run replays by default.
const DRY_RUN_DEFAULT: i64 = 1_000;

pub fn routes() -> RouteTable {
    RouteTable::default()
        .get("/v1/staff/risk/cases", list_cases)
        .get("/v1/staff/risk/cases/{id}", get_case)
        .post("/v1/staff/risk/cases/{id}/release", release_case)
        .post("/v1/staff/risk/cases/{id}/reject", reject_case)
        .post("/v1/staff/risk/cases/{id}/escalate", escalate_case)
        .get("/v1/staff/risk/rules", list_rule_sets)
        .post("/v1/staff/risk/rules", create_draft)
        .get("/v1/staff/risk/rules/{id}/dry-run", dry_run)
        .post("/v1/staff/risk/rules/{id}/activate", activate)
        .get("/v1/staff/risk/blocklist", list_blocklist)
        .post("/v1/staff/risk/blocklist", add_blocklist)
        .get("/v1/me/risk/cases", my_cases)
        .post("/v1/me/risk/cases/{id}/answer", answer_case)
}

impl From<RiskError> for ApiError {
    fn from(error: RiskError) -> ApiError {
        match &error {
            RiskError::InvalidRules(errors) => {
                let first = errors.first().map(|e| e.field.clone()).unwrap_or_default();
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_rules",
                    errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
                .field(first)
            }
            RiskError::Invalid { field, message } => ApiError::invalid(field, message.clone()),
            RiskError::NotFound(what) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
                    .field(if *what == "case" { "id" } else { "version" })
            }
            RiskError::CaseClosed(_) => {
                ApiError::new(StatusCode::CONFLICT, "case_closed", error.to_string())
            }
            RiskError::NotDraft(_) => {
                ApiError::new(StatusCode::CONFLICT, "not_a_draft", error.to_string())
            }
            RiskError::Store(_) | RiskError::Audit(_) | RiskError::Internal(_) => {
                ApiError::internal(&error)
            }
        }
    }
}

impl From<CaseError> for ApiError {
    fn from(error: CaseError) -> ApiError {
        match error {
            CaseError::Invalid { field, message } => ApiError::invalid(field, message),
            CaseError::FreezeCase => ApiError::new(
                StatusCode::CONFLICT,
                "freeze_case",
                CaseError::FreezeCase.to_string(),
            ),
            CaseError::StepUpRequired => ApiError::new(
                StatusCode::FORBIDDEN,
                "step_up_required",
                CaseError::StepUpRequired.to_string(),
            )
            .field("step_up_challenge_id"),
            CaseError::Risk(e) => e.into(),
            CaseError::P2p(e) => e.into(),
            CaseError::Merchant(e) => e.into(),
            CaseError::Identity(e) => e.into(),
            CaseError::Store(e) => ApiError::internal(e),
        }
    }
}

fn rfc3339(nanos: i64) -> String {
    Timestamp::from_nanos(nanos).to_rfc3339()
}

fn staff_principal(session: &StaffSession) -> crate::auth::Principal {
    crate::auth::Principal {
        key_id: session.info.actor(),
        scopes: vec!["staff".into()],
    }
}

// ---- shapes ------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub(crate) struct ReasonBody {
    rule_id: String,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<i64>,
    /// A rule's direct outcome, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CaseBody {
    id: String,
    customer_id: String,
    /// `held_payment` or `freeze`.
    kind: String,
    /// `p2p` or `merchant_payment`, for a held payment.
    subject_kind: Option<String>,
    subject_id: Option<String>,
    /// `open`, `escalated`, `released`, `rejected`.
    state: String,
    /// The customer's "was this you?" answer (`yes` or `no`).
    answer: Option<String>,
    resolved_by: Option<String>,
    note: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
    /// What risk decided: `review` or `block_and_freeze`.
    decision: String,
    score: i64,
    reasons: Vec<ReasonBody>,
    created_at: String,
    updated_at: String,
}

fn reason_bodies(reasons: Vec<coffer_risk::Reason>) -> Vec<ReasonBody> {
    reasons
        .into_iter()
        .map(|r| ReasonBody {
            rule_id: r.rule_id,
            text: r.text,
            score: r.score,
            outcome: r.outcome.map(coffer_risk::Outcome::as_str),
        })
        .collect()
}

fn case_body(case: Case) -> CaseBody {
    CaseBody {
        id: case.id,
        customer_id: case.customer_id,
        kind: case.kind,
        subject_kind: case.subject_kind,
        subject_id: case.subject_id,
        state: case.state,
        answer: case.answer,
        resolved_by: case.resolved_by,
        note: case.note,
        amount: case.amount,
        currency: case.currency,
        decision: case.decision,
        score: case.score,
        reasons: reason_bodies(case.reasons),
        created_at: rfc3339(case.created_at),
        updated_at: rfc3339(case.updated_at),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CasesBody {
    data: Vec<CaseBody>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct CasesQuery {
    /// `open`, `escalated`, `released` or `rejected`.
    state: Option<String>,
    customer_id: Option<String>,
    /// At most 200 (default 50).
    limit: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteRequest {
    /// Why (at most 500 characters); kept with the case and in the audit log.
    #[serde(default)]
    note: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RuleSetBody {
    version: i64,
    /// `draft`, `active` or `retired`.
    state: String,
    /// The rule set as stored (see `POST /v1/staff/risk/rules`).
    #[schema(value_type = Object)]
    rules: serde_json::Value,
    author: String,
    created_at: String,
    activated_by: Option<String>,
    activated_at: Option<String>,
}

fn rule_set_body(version: RuleSetVersion) -> Result<RuleSetBody, ApiError> {
    Ok(RuleSetBody {
        version: version.version,
        state: version.state,
        rules: serde_json::to_value(&version.rules).map_err(ApiError::internal)?,
        author: version.author,
        created_at: rfc3339(version.created_at),
        activated_by: version.activated_by,
        activated_at: version.activated_at.map(rfc3339),
    })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RuleSetsBody {
    /// The version in force now.
    active: Option<i64>,
    data: Vec<RuleSetBody>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DraftRequest {
    /// `{"currency", "utc_offset_seconds", "thresholds": {"step_up", "review", "block_and_freeze"}, "rules": [{"id", "description", "kinds"?, "when": {<condition>: {...}}, "score" | "outcome"}]}`; conditions: `velocity`, `velocity_amount`, `amount_vs_median`, `above_usual_max`, `amount_at_least`, `new_device`, `new_ip`, `new_payee`, `first_large_payment`, `unusual_hour`, `blocklisted`, `merchant_refund_ratio`.
    #[schema(value_type = Object)]
    rules: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct FieldErrorBody {
    field: String,
    message: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct InvalidRulesBody {
    error: InvalidRulesDetail,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct InvalidRulesDetail {
    /// `invalid_rules`.
    code: &'static str,
    message: String,
    /// The first offending field.
    field: String,
    /// Every problem, each with its field path (`rules[2].when.velocity.window_seconds`).
    errors: Vec<FieldErrorBody>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DryRunQuery {
    /// How many of the most recent evaluations to replay (at most 5000, default 1000).
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OutcomeCount {
    outcome: &'static str,
    count: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DryRunExampleBody {
    evaluation_id: String,
    customer_id: String,
    kind: &'static str,
    amount: Option<i64>,
    at: String,
    decided: &'static str,
    would_decide: &'static str,
    reasons: Vec<ReasonBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DryRunBody {
    version: i64,
    /// Evaluations replayed, and the time of the oldest.
    evaluations: i64,
    since: Option<String>,
    decided: Vec<OutcomeCount>,
    would_decide: Vec<OutcomeCount>,
    /// How many would have been decided differently.
    changed: i64,
    examples: Vec<DryRunExampleBody>,
}

fn dry_run_body(run: DryRun) -> DryRunBody {
    let counts = |list: Vec<(coffer_risk::Outcome, i64)>| {
        list.into_iter()
            .map(|(outcome, count)| OutcomeCount {
                outcome: outcome.as_str(),
                count,
            })
            .collect()
    };
    DryRunBody {
        version: run.version,
        evaluations: run.evaluations,
        since: run.since.map(rfc3339),
        decided: counts(run.decided),
        would_decide: counts(run.would_decide),
        changed: run.changed,
        examples: run
            .examples
            .into_iter()
            .map(|e| DryRunExampleBody {
                evaluation_id: e.evaluation_id,
                customer_id: e.customer_id,
                kind: e.kind.as_str(),
                amount: e.amount,
                at: rfc3339(e.at),
                decided: e.decided.as_str(),
                would_decide: e.would_decide.as_str(),
                reasons: reason_bodies(e.reasons),
            })
            .collect(),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlockRequest {
    /// `payee` (a customer or merchant id), `device`, `card` (a card id) or `ip`.
    list: String,
    value: String,
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BlockBody {
    list: &'static str,
    /// Devices and IP addresses as stored: keyed hashes, never the clear value.
    value: String,
    reason: String,
    created_by: String,
    created_at: String,
}

fn block_body(entry: BlockEntry) -> BlockBody {
    BlockBody {
        list: entry.list.as_str(),
        value: entry.value,
        reason: entry.reason,
        created_by: entry.created_by,
        created_at: rfc3339(entry.created_at),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BlocklistBody {
    data: Vec<BlockBody>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnswerRequest {
    /// True: "yes, this was me" (needs a step-up for operation `risk_case_release`, the held amount and currency, payee `case:<id>`); false: "no", the payment is declined and the wallet frozen at once.
    was_me: bool,
    step_up_challenge_id: Option<String>,
}

// ---- staff: cases --------------------------------------------------------------------

#[utoipa::path(get, path = "/v1/staff/risk/cases", tag = "risk", summary = "Risk cases",
    description = "Held payments and freezes for a risk analyst, newest first, with the decision and its reasons. Needs `manage_risk`.",
    params(CasesQuery),
    responses(
        (status = 200, description = "The cases.", body = CasesBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`state`, `limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn list_cases(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<CasesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session.info.require(Permission::ManageRisk)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("state", e.body_text()))?;
    if let Some(wanted) = &query.state {
        if !["open", "escalated", "released", "rejected"].contains(&wanted.as_str()) {
            return Err(ApiError::invalid(
                "state",
                "open, escalated, released or rejected",
            ));
        }
    }
    let limit = query.limit.unwrap_or(LIST_DEFAULT);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "from 1 to 200"));
    }
    let risk = state.risk.risk.clone();
    let cases = blocking_call(move || {
        risk.cases(query.state.as_deref(), query.customer_id.as_deref(), limit)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &CasesBody {
            data: cases.into_iter().map(case_body).collect(),
        },
    ))
}

#[utoipa::path(get, path = "/v1/staff/risk/cases/{id}", tag = "risk", summary = "A risk case",
    description = "Needs `manage_risk`.",
    params(("id" = String, Path, description = "The case id (`rcase_…`).")),
    responses(
        (status = 200, description = "The case.", body = CaseBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn get_case(
    State(state): State<AppState>,
    session: StaffSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    session.info.require(Permission::ManageRisk)?;
    let risk = state.risk.risk.clone();
    let case = blocking_call(move || risk.case(&id)).await?;
    Ok(json_response(StatusCode::OK, &case_body(case)))
}

/// What an analyst does to a case.
#[derive(Clone, Copy)]
enum Action {
    Release,
    Reject,
    Escalate,
}

async fn act(
    state: AppState,
    session: StaffSession,
    headers: HeaderMap,
    id: String,
    body: Vec<u8>,
    action: Action,
) -> Response {
    if let Err(error) = session.info.require(Permission::ManageRisk) {
        return ApiError::from(error).into_response();
    }
    let principal = staff_principal(&session);
    let route = match action {
        Action::Release => "risk_case_release",
        Action::Reject => "risk_case_reject",
        Action::Escalate => "risk_case_escalate",
    };
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        &format!("{route}:{id}"),
        &body,
        || async {
            let request: NoteRequest = parse(&body)?;
            let cases = state.risk_cases.clone();
            let actor = session.info.actor();
            let case = blocking_call(move || match action {
                Action::Release => cases.release(&id, &actor, &request.note),
                Action::Reject => cases.reject(&id, &actor, &request.note),
                Action::Escalate => cases.escalate(&id, &actor, &request.note),
            })
            .await?;
            state.dispatcher.nudge();
            to_json(StatusCode::OK, &case_body(case))
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/staff/risk/cases/{id}/release", tag = "risk", summary = "Release a held payment",
    description = "The held payment is carried out now (it may still fail for want of funds). Needs `manage_risk`; audited with the analyst. A freeze case cannot be released (unfreezing is a maker-checker approval).",
    params(("id" = String, Path, description = "The case id."), IdempotencyKey),
    request_body = NoteRequest,
    responses(
        (status = 200, description = "Released.", body = CaseBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`case_closed`, `freeze_case`, `not_held`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`note`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn release_case(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    act(state, session, headers, id, body.to_vec(), Action::Release).await
}

#[utoipa::path(post, path = "/v1/staff/risk/cases/{id}/reject", tag = "risk", summary = "Reject a held payment",
    description = "The held payment fails (`rejected_by_risk`); nothing had moved and every limit reservation is given back; the customer is told. On a freeze case: the freeze is confirmed. Needs `manage_risk`; audited.",
    params(("id" = String, Path, description = "The case id."), IdempotencyKey),
    request_body = NoteRequest,
    responses(
        (status = 200, description = "Rejected.", body = CaseBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`case_closed`, `not_held`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`note`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn reject_case(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    act(state, session, headers, id, body.to_vec(), Action::Reject).await
}

#[utoipa::path(post, path = "/v1/staff/risk/cases/{id}/escalate", tag = "risk", summary = "Escalate a case",
    description = "Hands an open case to a senior analyst; it stays actionable. Needs `manage_risk`; audited.",
    params(("id" = String, Path, description = "The case id."), IdempotencyKey),
    request_body = NoteRequest,
    responses(
        (status = 200, description = "Escalated.", body = CaseBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`case_closed` (also when already escalated), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`note`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn escalate_case(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    act(state, session, headers, id, body.to_vec(), Action::Escalate).await
}

// ---- staff: rule sets ----------------------------------------------------------------

#[utoipa::path(get, path = "/v1/staff/risk/rules", tag = "risk", summary = "Risk rule sets",
    description = "The version in force and the latest versions (drafts, active, retired), newest first. Needs `manage_risk`.",
    responses(
        (status = 200, description = "The versions.", body = RuleSetsBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn list_rule_sets(
    State(state): State<AppState>,
    session: StaffSession,
) -> Result<Response, ApiError> {
    session.info.require(Permission::ManageRisk)?;
    let risk = state.risk.risk.clone();
    let versions = blocking_call(move || risk.rule_sets(LIST_DEFAULT)).await?;
    let active = versions
        .iter()
        .find(|v| v.state == "active")
        .map(|v| v.version);
    Ok(json_response(
        StatusCode::OK,
        &RuleSetsBody {
            active,
            data: versions
                .into_iter()
                .map(rule_set_body)
                .collect::<Result<_, _>>()?,
        },
    ))
}

#[utoipa::path(post, path = "/v1/staff/risk/rules", tag = "risk", summary = "Draft a rule set",
    description = "Validated in full: every problem comes back at once with its field path. Stored as the next version, a draft (not in force until activated). Needs `manage_risk`; audited.",
    params(IdempotencyKey),
    request_body = DraftRequest,
    responses(
        (status = 201, description = "The draft.", body = RuleSetBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_rules` (with `errors`: each field and its problem), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn create_draft(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session.info.require(Permission::ManageRisk) {
        return ApiError::from(error).into_response();
    }
    let principal = staff_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        "risk_rules_draft",
        &body,
        || async {
            let request: DraftRequest = parse(&body)?;
            let json = request.rules.to_string();
            let risk = state.risk.risk.clone();
            let author = session.info.actor();
            let created = blocking_call(move || match risk.create_draft(&author, &json) {
                Err(RiskError::InvalidRules(errors)) => Ok(Err(errors)),
                other => other.map(Ok),
            })
            .await?;
            match created {
                Ok(version) => to_json(StatusCode::CREATED, &rule_set_body(version)?),
                Err(errors) => {
                    let summary = ApiError::from(RiskError::InvalidRules(errors.clone()));
                    to_json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &InvalidRulesBody {
                            error: InvalidRulesDetail {
                                code: "invalid_rules",
                                message: summary.message,
                                field: summary.field.unwrap_or_default(),
                                errors: errors
                                    .into_iter()
                                    .map(|e| FieldErrorBody {
                                        field: e.field,
                                        message: e.message,
                                    })
                                    .collect(),
                            },
                        },
                    )
                }
            }
        },
    )
    .await
}

fn version_of(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::invalid("id", "a rule set version number"))
}

#[utoipa::path(get, path = "/v1/staff/risk/rules/{id}/dry-run", tag = "risk", summary = "Dry-run a rule set",
    description = "Replays the most recent stored evaluations (their inputs, and the customer's history as it was then) against this version and reports what it would have decided against what was decided: counts per outcome, how many changed, and examples. Changes nothing. Needs `manage_risk`.",
    params(("id" = i64, Path, description = "The rule set version."), DryRunQuery),
    responses(
        (status = 200, description = "The comparison.", body = DryRunBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`, `limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn dry_run(
    State(state): State<AppState>,
    session: StaffSession,
    PathId(id): PathId,
    query: Result<Query<DryRunQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session.info.require(Permission::ManageRisk)?;
    let version = version_of(&id)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("limit", e.body_text()))?;
    let limit = query.limit.unwrap_or(DRY_RUN_DEFAULT);
    if !(1..=coffer_risk::service::DRY_RUN_EVALUATIONS_MAX).contains(&limit) {
        return Err(ApiError::invalid("limit", "from 1 to 5000"));
    }
    let risk = state.risk.risk.clone();
    let run = blocking_call(move || risk.dry_run(version, limit)).await?;
    Ok(json_response(StatusCode::OK, &dry_run_body(run)))
}

#[utoipa::path(post, path = "/v1/staff/risk/rules/{id}/activate", tag = "risk", summary = "Activate a rule set",
    description = "The draft becomes the rule set in force (the previous one retired) with no restart: this instance at once, others within two seconds. Needs `manage_risk`; audited.",
    params(("id" = i64, Path, description = "The draft's version."), IdempotencyKey),
    responses(
        (status = 200, description = "Active.", body = RuleSetBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`not_a_draft`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn activate(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session.info.require(Permission::ManageRisk) {
        return ApiError::from(error).into_response();
    }
    let principal = staff_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        &format!("risk_rules_activate:{id}"),
        &body,
        || async {
            let version = version_of(&id)?;
            let risk = state.risk.risk.clone();
            let actor = session.info.actor();
            let activated = blocking_call(move || risk.activate(&actor, version)).await?;
            to_json(StatusCode::OK, &rule_set_body(activated)?)
        },
    )
    .await
}

// ---- staff: blocklist ----------------------------------------------------------------

#[utoipa::path(get, path = "/v1/staff/risk/blocklist", tag = "risk", summary = "The blocklist",
    description = "Needs `manage_risk`.",
    responses(
        (status = 200, description = "The entries, newest first.", body = BlocklistBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn list_blocklist(
    State(state): State<AppState>,
    session: StaffSession,
) -> Result<Response, ApiError> {
    session.info.require(Permission::ManageRisk)?;
    let risk = state.risk.risk.clone();
    let entries = blocking_call(move || risk.blocklist(200)).await?;
    Ok(json_response(
        StatusCode::OK,
        &BlocklistBody {
            data: entries.into_iter().map(block_body).collect(),
        },
    ))
}

#[utoipa::path(post, path = "/v1/staff/risk/blocklist", tag = "risk", summary = "Blocklist a payee, device, card or IP",
    description = "What the shipped rules do with a hit: block the payment and freeze the payer. Needs `manage_risk`; audited.",
    params(IdempotencyKey),
    request_body = BlockRequest,
    responses(
        (status = 201, description = "Listed.", body = BlockBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`list`, `value`, `reason`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn add_blocklist(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session.info.require(Permission::ManageRisk) {
        return ApiError::from(error).into_response();
    }
    let principal = staff_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        "risk_blocklist",
        &body,
        || async {
            let request: BlockRequest = parse(&body)?;
            let list = BlockList::parse(&request.list)
                .ok_or_else(|| ApiError::invalid("list", "payee, device, card or ip"))?;
            let risk = state.risk.risk.clone();
            let actor = session.info.actor();
            let entry =
                blocking_call(move || risk.block(&actor, list, &request.value, &request.reason))
                    .await?;
            to_json(StatusCode::CREATED, &block_body(entry))
        },
    )
    .await
}

// ---- customers -----------------------------------------------------------------------

#[utoipa::path(get, path = "/v1/me/risk/cases", tag = "risk", summary = "My held payments",
    description = "The customer's risk cases, newest first: an `open` held payment waits for the \"was this you?\" answer.",
    responses(
        (status = 200, description = "The cases.", body = CasesBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = [])))]
pub(crate) async fn my_cases(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Result<Response, ApiError> {
    let risk = state.risk.risk.clone();
    let customer = session.info.customer_id.clone();
    let cases = blocking_call(move || risk.cases(None, Some(&customer), LIST_DEFAULT)).await?;
    Ok(json_response(
        StatusCode::OK,
        &CasesBody {
            data: cases.into_iter().map(case_body).collect(),
        },
    ))
}

#[utoipa::path(post, path = "/v1/me/risk/cases/{id}/answer", tag = "risk", summary = "Was this you?",
    description = "`was_me: true` (with a step-up for operation `risk_case_release`, the held amount and currency, payee `case:<id>`) releases the held payment at once; `was_me: false` declines it and freezes the wallet at once (the customer is signed out everywhere and alerted).",
    params(("id" = String, Path, description = "The case id."), IdempotencyKey),
    request_body = AnswerRequest,
    responses(
        (status = 200, description = "Answered.", body = CaseBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`step_up_required`, `csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`case_closed`, `freeze_case`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = [])))]
pub(crate) async fn answer_case(
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
        &format!("risk_case_answer:{id}"),
        &body,
        || async {
            let request: AnswerRequest = parse(&body)?;
            let cases = state.risk_cases.clone();
            let customer = session.info.customer_id.clone();
            let case = blocking_call(move || {
                cases.answer(
                    &customer,
                    &id,
                    request.was_me,
                    request.step_up_challenge_id.as_deref(),
                )
            })
            .await?;
            state.dispatcher.nudge();
            to_json(StatusCode::OK, &case_body(case))
        },
    )
    .await
}
