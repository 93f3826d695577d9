//! `/v1/staff/compliance`: the compliance officer's API (permission
//! `manage_compliance`): the queue of watch-list hits (list, open, clear or
//! confirm), watch-list versions (load a new one, list them), and
//! regulatory reports (run the rules over a day, list, open, approve or
//! dismiss, export as CSV or JSON). Every view and action is audited in
//! `coffer_compliance` with the customer as subject.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_compliance::{
    ComplianceError, Decision, ExportFormat, HitState, HitView, LocalDate, ReportKind, ReportRun,
    ReportState, ReportView,
};
use coffer_core::Timestamp;
use coffer_identity::Permission;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::body::{parse, RawBody};
use crate::error::ApiError;
use crate::idempotency;
use crate::openapi::params::IdempotencyKey;
use crate::openapi::{BadRequest, BodyTooLarge, Internal};
use crate::path_id::PathId;
use crate::respond::{blocking_call, json_response, to_json};
use crate::route_table::RouteTable;
use crate::staff_routes::StaffSession;
use crate::AppState;

pub fn routes() -> RouteTable {
    RouteTable::default()
        .get("/v1/staff/compliance/hits", list_hits)
        .get("/v1/staff/compliance/hits/{id}", get_hit)
        .post("/v1/staff/compliance/hits/{id}/decide", decide_hit)
        .get("/v1/staff/compliance/watchlists", list_watchlists)
        .post("/v1/staff/compliance/watchlists", load_watchlist)
        .post("/v1/staff/compliance/report-runs", run_reports)
        .get("/v1/staff/compliance/reports", list_reports)
        .get("/v1/staff/compliance/reports/{id}", get_report)
        .post("/v1/staff/compliance/reports/{id}/review", review_report)
        .get("/v1/staff/compliance/report-exports", export_reports)
}

impl From<ComplianceError> for ApiError {
    fn from(error: ComplianceError) -> ApiError {
        let status = match &error {
            ComplianceError::Invalid { .. } | ComplianceError::List(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ComplianceError::NotFound(_) => StatusCode::NOT_FOUND,
            ComplianceError::Conflict(_) => StatusCode::CONFLICT,
            ComplianceError::Forbidden(_) => StatusCode::FORBIDDEN,
            ComplianceError::Identity(_) => match error {
                ComplianceError::Identity(error) => return error.into(),
                _ => return ApiError::internal("unreachable"),
            },
            ComplianceError::Merchant(_)
            | ComplianceError::Store(_)
            | ComplianceError::Vault(_)
            | ComplianceError::Audit(_)
            | ComplianceError::Internal(_) => return ApiError::internal(error),
        };
        let api = ApiError::new(status, error.code(), error.to_string());
        match error.field() {
            Some(field) => api.field(field),
            None => api,
        }
    }
}

fn principal(session: &StaffSession) -> Principal {
    Principal {
        key_id: session.info.actor(),
        scopes: vec!["staff".into()],
    }
}

fn require(session: &StaffSession) -> Result<(), ApiError> {
    Ok(session.info.require(Permission::ManageCompliance)?)
}

fn utc(at: i64) -> String {
    Timestamp::from_nanos(at).to_rfc3339()
}

// ---- shapes ------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub(crate) struct HitBody {
    id: String,
    /// `customer` or `merchant`.
    party_kind: String,
    party_id: String,
    /// The customer the hit is about (a merchant's owner).
    customer_id: String,
    /// `kyc`, `payee` or `merchant_onboarding`.
    source: String,
    list_version: i64,
    entry_id: String,
    /// Similarity in basis points (10000 = identical).
    score_bps: i64,
    threshold_bps: i64,
    /// `pending`, `cleared` or `confirmed`.
    state: &'static str,
    decided_by: Option<String>,
    decided_at: Option<String>,
    note: Option<String>,
    created_at: String,
}

fn hit_body(h: HitView) -> HitBody {
    HitBody {
        id: h.id,
        party_kind: h.party_kind,
        party_id: h.party_id,
        customer_id: h.customer_id,
        source: h.source,
        list_version: h.list_version,
        entry_id: h.entry_id,
        score_bps: h.score_bps,
        threshold_bps: h.threshold_bps,
        state: h.state.as_str(),
        decided_by: h.decided_by,
        decided_at: h.decided_at.map(utc),
        note: h.note,
        created_at: utc(h.created_at),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct HitsBody {
    data: Vec<HitBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EntryBody {
    entry_id: String,
    name: String,
    aliases: Vec<String>,
    list_source: String,
    /// `person` or `entity`.
    kind: &'static str,
    country: Option<String>,
    date_of_birth: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct HitDetailBody {
    hit: HitBody,
    /// The name as it was screened (shown to compliance officers only).
    screened_name: String,
    /// The list entry as it stood in the hit's list version.
    entry: Option<EntryBody>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HitsQuery {
    /// `pending`, `cleared` or `confirmed`; all when absent.
    state: Option<String>,
    /// At most this many, oldest first (1 to 200; default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HitDecisionRequest {
    /// `clear` (a false positive) or `confirm` (freezes the customer, blocks the merchant).
    decision: String,
    /// Why: required, kept in the audit log.
    note: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatchlistRequest {
    /// `json` or `csv`.
    format: String,
    /// The whole list: a JSON array of entries (or `{"entries": [...]}`), or CSV
    /// with the header `entry_id,name,aliases,list_source,kind,country,date_of_birth`.
    content: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WatchlistVersionBody {
    version: i64,
    source: String,
    format: String,
    sha256: String,
    entry_count: i64,
    loaded_by: String,
    loaded_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WatchlistVersionsBody {
    data: Vec<WatchlistVersionBody>,
}

fn version_body(v: coffer_compliance::ListVersion) -> WatchlistVersionBody {
    WatchlistVersionBody {
        version: v.version,
        source: v.source,
        format: v.format,
        sha256: v.sha256,
        entry_count: v.entry_count,
        loaded_by: v.loaded_by,
        loaded_at: utc(v.loaded_at),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportRunRequest {
    /// The day to report, `YYYY-MM-DD` in the bank's time zone; it must have ended.
    date: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReportBody {
    id: String,
    /// `large_value` or `suspicious`.
    kind: &'static str,
    /// `large_value_daily`, `structuring`, `rapid_in_out` or `many_counterparties`.
    rule: String,
    date: String,
    customer_id: String,
    currency: String,
    /// `in`, `out` or `both`.
    direction: String,
    /// Minor units.
    total_amount: i64,
    transaction_count: i64,
    transaction_ids: Vec<String>,
    first_at: String,
    last_at: String,
    /// `pending_review`, `approved` (for filing) or `dismissed`.
    state: &'static str,
    reviewer: Option<String>,
    reviewed_at: Option<String>,
    review_note: Option<String>,
    created_at: String,
}

fn report_body(r: ReportView) -> ReportBody {
    ReportBody {
        id: r.id,
        kind: r.kind.as_str(),
        rule: r.rule,
        date: r.date.to_string(),
        customer_id: r.customer_id,
        currency: r.currency,
        direction: r.direction,
        total_amount: r.total_amount,
        transaction_count: r.transaction_count,
        transaction_ids: r.transaction_ids,
        first_at: utc(r.first_at),
        last_at: utc(r.last_at),
        state: r.state.as_str(),
        reviewer: r.reviewer,
        reviewed_at: r.reviewed_at.map(utc),
        review_note: r.review_note,
        created_at: utc(r.created_at),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReportsBody {
    data: Vec<ReportBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReportRunBody {
    date: String,
    /// Completed payments the rules read.
    movements: usize,
    /// Reports this run added.
    created: usize,
    /// Findings an earlier run of the day had already stored.
    already_there: usize,
    reports: Vec<ReportBody>,
}

fn run_body(run: ReportRun) -> ReportRunBody {
    ReportRunBody {
        date: run.date.to_string(),
        movements: run.movements,
        created: run.created,
        already_there: run.already_there,
        reports: run.reports.into_iter().map(report_body).collect(),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportsQuery {
    /// `YYYY-MM-DD`.
    date: Option<String>,
    /// `pending_review`, `approved` or `dismissed`.
    state: Option<String>,
    /// `large_value` or `suspicious`.
    kind: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportReviewRequest {
    /// `true`: approved for filing; `false`: dismissed (a `note` is then required).
    approve: bool,
    #[serde(default)]
    note: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    /// `YYYY-MM-DD`.
    date: String,
    /// `csv` or `json`.
    format: String,
    /// Only reports in this state (e.g. `approved` for filing).
    state: Option<String>,
}

fn date(field: &str, text: &str) -> Result<LocalDate, ApiError> {
    LocalDate::parse(text).ok_or_else(|| ApiError::invalid(field, "a date as YYYY-MM-DD"))
}

fn report_state(text: Option<&str>) -> Result<Option<ReportState>, ApiError> {
    text.map(|t| {
        ReportState::parse(t)
            .ok_or_else(|| ApiError::invalid("state", "pending_review, approved or dismissed"))
    })
    .transpose()
}

// ---- handlers ----------------------------------------------------------------------

#[utoipa::path(get, path = "/v1/staff/compliance/hits", tag = "compliance", summary = "The compliance queue",
    description = "Watch-list hits, oldest first. Needs `manage_compliance`. Audited (one record per customer shown).",
    params(HitsQuery),
    responses(
        (status = 200, description = "The hits.", body = HitsBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`state`, `limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry (with the same Idempotency-Key for a write).", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn list_hits(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<HitsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require(&session)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("state", e.body_text()))?;
    let hit_state = query
        .state
        .as_deref()
        .map(|s| {
            HitState::parse(s)
                .ok_or_else(|| ApiError::invalid("state", "pending, cleared or confirmed"))
        })
        .transpose()?;
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "a whole number from 1 to 200"))?,
    };
    let compliance = state.compliance.clone();
    let hits = blocking_call(move || {
        compliance.staff_hits(&session.info, hit_state, limit, &session.context)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &HitsBody {
            data: hits.into_iter().map(hit_body).collect(),
        },
    ))
}

#[utoipa::path(get, path = "/v1/staff/compliance/hits/{id}", tag = "compliance", summary = "One hit",
    description = "The name as screened, the list entry it matched and the score. Needs `manage_compliance`. Audited with the customer as subject.",
    params(("id" = String, Path, description = "The hit id.")),
    responses(
        (status = 200, description = "The hit.", body = HitDetailBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry (with the same Idempotency-Key for a write).", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn get_hit(
    State(state): State<AppState>,
    session: StaffSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    require(&session)?;
    let compliance = state.compliance.clone();
    let detail =
        blocking_call(move || compliance.staff_hit(&session.info, &id, &session.context)).await?;
    Ok(json_response(
        StatusCode::OK,
        &HitDetailBody {
            hit: hit_body(detail.hit),
            screened_name: detail.screened_name,
            entry: detail.entry.map(|e| EntryBody {
                entry_id: e.entry_id,
                name: e.name,
                aliases: e.aliases,
                list_source: e.list_source,
                kind: e.kind.as_str(),
                country: e.country,
                date_of_birth: e.date_of_birth,
            }),
        },
    ))
}

#[utoipa::path(post, path = "/v1/staff/compliance/hits/{id}/decide", tag = "compliance", summary = "Clear or confirm a hit",
    description = "Once per hit. `clear`: a false positive — the party may be paid again, and the same entry is not raised again for the same name. `confirm`: the customer is frozen (sessions ended, alerted) or the merchant blocked, in the same transaction. Needs `manage_compliance`. Audited with the customer as subject.",
    params(("id" = String, Path, description = "The hit id."), IdempotencyKey),
    request_body = HitDecisionRequest,
    responses(
        (status = 200, description = "Decided.", body = HitBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`already_decided`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`decision`, `note`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry (with the same Idempotency-Key for a write).", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn decide_hit(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = require(&session) {
        return error.into_response();
    }
    let principal = principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        &format!("compliance_hit_decide:{id}"),
        &body,
        || async {
            let request: HitDecisionRequest = parse(&body)?;
            let decision = match request.decision.as_str() {
                "clear" => Decision::Clear,
                "confirm" => Decision::Confirm,
                _ => return Err(ApiError::invalid("decision", "clear or confirm")),
            };
            let compliance = state.compliance.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                compliance.staff_decide_hit(
                    &session.info,
                    &id,
                    decision,
                    &request.note,
                    &session.context,
                )
            })
            .await?;
            state.dispatcher.nudge();
            to_json(StatusCode::OK, &hit_body(view))
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/staff/compliance/watchlists", tag = "compliance", summary = "Watch-list versions",
    description = "Every stored version, newest first (the newest is the one screening uses). Needs `manage_compliance`. Audited.",
    responses(
        (status = 200, description = "The versions.", body = WatchlistVersionsBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry (with the same Idempotency-Key for a write).", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn list_watchlists(
    State(state): State<AppState>,
    session: StaffSession,
) -> Result<Response, ApiError> {
    require(&session)?;
    let compliance = state.compliance.clone();
    let versions =
        blocking_call(move || compliance.staff_list_versions(&session.info, &session.context))
            .await?;
    Ok(json_response(
        StatusCode::OK,
        &WatchlistVersionsBody {
            data: versions.into_iter().map(version_body).collect(),
        },
    ))
}

#[utoipa::path(post, path = "/v1/staff/compliance/watchlists", tag = "compliance", summary = "Replace the watch list",
    description = "Checks the whole list (every bad entry is refused by its position, nothing is half-loaded) and stores it as the next version, which screening uses from then on; the same list as the active one stores nothing. Needs `manage_compliance`. Audited.",
    params(IdempotencyKey),
    request_body = WatchlistRequest,
    responses(
        (status = 201, description = "The active version.", body = WatchlistVersionBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 409, description = "`already_decided` (another list was stored at the same moment), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`watchlist_invalid` (the message names the entry or line), `invalid_field` (`format`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry (with the same Idempotency-Key for a write).", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn load_watchlist(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = require(&session) {
        return error.into_response();
    }
    let principal = principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        "compliance_watchlist",
        &body,
        || async {
            let request: WatchlistRequest = parse(&body)?;
            let format = coffer_compliance::watchlist::ListFormat::parse(&request.format)
                .ok_or_else(|| ApiError::invalid("format", "json or csv"))?;
            let compliance = state.compliance.clone();
            let session = session.clone();
            let version = blocking_call(move || {
                compliance.staff_load_list(
                    &session.info,
                    format,
                    &request.content,
                    &session.context,
                )
            })
            .await?;
            to_json(StatusCode::CREATED, &version_body(version))
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/staff/compliance/report-runs", tag = "compliance", summary = "Run the report rules over a day",
    description = "Large-value (single or same-day aggregate at or above the currency's threshold, CNY 50,000.00 by default) and suspicious-transaction rules (`structuring`, `rapid_in_out`, `many_counterparties`) over the day's completed payments; each finding becomes a report pending review. Idempotent per day: a rerun adds nothing already there. The day must have ended. Needs `manage_compliance`. Audited.",
    params(IdempotencyKey),
    request_body = ReportRunRequest,
    responses(
        (status = 200, description = "What the run found; every report of the day.", body = ReportRunBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`date`: malformed or not ended), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry (with the same Idempotency-Key for a write).", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn run_reports(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = require(&session) {
        return error.into_response();
    }
    let principal = principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        "compliance_report_run",
        &body,
        || async {
            let request: ReportRunRequest = parse(&body)?;
            let day = date("date", &request.date)?;
            let compliance = state.compliance.clone();
            let session = session.clone();
            let run = blocking_call(move || {
                compliance.staff_generate(&session.info, day, &session.context)
            })
            .await?;
            to_json(StatusCode::OK, &run_body(run))
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/staff/compliance/reports", tag = "compliance", summary = "Regulatory reports",
    description = "By date, state and kind. Needs `manage_compliance`. Audited (one record per customer shown).",
    params(ReportsQuery),
    responses(
        (status = 200, description = "The reports.", body = ReportsBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`date`, `state`, `kind`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry (with the same Idempotency-Key for a write).", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn list_reports(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<ReportsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require(&session)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("date", e.body_text()))?;
    let day = query.date.as_deref().map(|d| date("date", d)).transpose()?;
    let report_state = report_state(query.state.as_deref())?;
    let kind = query
        .kind
        .as_deref()
        .map(|k| {
            ReportKind::parse(k)
                .ok_or_else(|| ApiError::invalid("kind", "large_value or suspicious"))
        })
        .transpose()?;
    let compliance = state.compliance.clone();
    let reports = blocking_call(move || {
        compliance.staff_reports(&session.info, day, report_state, kind, &session.context)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &ReportsBody {
            data: reports.into_iter().map(report_body).collect(),
        },
    ))
}

#[utoipa::path(get, path = "/v1/staff/compliance/reports/{id}", tag = "compliance", summary = "One report",
    description = "Needs `manage_compliance`. Audited with the customer as subject.",
    params(("id" = String, Path, description = "The report id.")),
    responses(
        (status = 200, description = "The report.", body = ReportBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry (with the same Idempotency-Key for a write).", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn get_report(
    State(state): State<AppState>,
    session: StaffSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    require(&session)?;
    let compliance = state.compliance.clone();
    let report =
        blocking_call(move || compliance.staff_report(&session.info, &id, &session.context))
            .await?;
    Ok(json_response(StatusCode::OK, &report_body(report)))
}

#[utoipa::path(post, path = "/v1/staff/compliance/reports/{id}/review", tag = "compliance", summary = "Approve or dismiss a report",
    description = "Once per report: approved for filing, or dismissed with a reason. Needs `manage_compliance`. Audited with the customer as subject.",
    params(("id" = String, Path, description = "The report id."), IdempotencyKey),
    request_body = ReportReviewRequest,
    responses(
        (status = 200, description = "Reviewed.", body = ReportBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`already_decided`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`note`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry (with the same Idempotency-Key for a write).", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn review_report(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = require(&session) {
        return error.into_response();
    }
    let principal = principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        &format!("compliance_report_review:{id}"),
        &body,
        || async {
            let request: ReportReviewRequest = parse(&body)?;
            let compliance = state.compliance.clone();
            let session = session.clone();
            let view = blocking_call(move || {
                compliance.staff_review_report(
                    &session.info,
                    &id,
                    request.approve,
                    &request.note,
                    &session.context,
                )
            })
            .await?;
            to_json(StatusCode::OK, &report_body(view))
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/staff/compliance/report-exports", tag = "compliance", summary = "Export a day's reports",
    description = "CSV (`text/csv`, RFC 4180, cells never read as formulas) or JSON, with the fields `report_id, report_type, rule, status, report_date, customer_id, customer_name_masked, id_type, id_number_masked, currency, currency_exponent, direction, total_amount_minor, total_amount, transaction_count, transaction_ids, first_transaction_at_utc, last_transaction_at_utc, generated_at_utc, reviewer, reviewed_at_utc, review_note`. The customer is the pseudonymous id; name and ID number only masked. Needs `manage_compliance`. Audited per customer exported.",
    params(ExportQuery),
    responses(
        (status = 200, description = "The export.", content_type = "text/csv", body = String),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`date`, `format`, `state`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry (with the same Idempotency-Key for a write).", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn export_reports(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require(&session)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("date", e.body_text()))?;
    let day = date("date", &query.date)?;
    let (format, content_type) = match query.format.as_str() {
        "csv" => (ExportFormat::Csv, "text/csv; charset=utf-8"),
        "json" => (ExportFormat::Json, "application/json"),
        _ => return Err(ApiError::invalid("format", "csv or json")),
    };
    let report_state = report_state(query.state.as_deref())?;
    let compliance = state.compliance.clone();
    let text = blocking_call(move || {
        compliance.staff_export(&session.info, day, report_state, format, &session.context)
    })
    .await?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"coffer-reports-{day}.{}\"",
                    query.format
                ),
            ),
        ],
        text,
    )
        .into_response())
}
