//! Privacy rights over HTTP: the data export (`/v1/me/privacy/exports`),
//! account erasure (`/v1/me/privacy/erasure`), consents for partners
//! (`/v1/me/privacy/consents`), the access log (`/v1/me/privacy/access-log`)
//! and the partner API that checks consent on every call
//! (`/v1/partner/customers/{id}/…`). The work is in `coffer_privacy`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_core::{Secret, Timestamp};
use coffer_payments::activity::Filter;
use coffer_privacy::{
    AccessEntry, Consent, ConsentScope, Privacy, PrivacyError, Requester, ACCESS_PAGE_ROWS_MAX,
    PARTNER_SCOPE_PREFIX,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::body::{parse, RawBody};
use crate::customer_routes::{customer_principal, Client, CustomerSession};
use crate::error::ApiError;
use crate::idempotency;
use crate::openapi::params::IdempotencyKey;
use crate::openapi::{BadRequest, BodyTooLarge, Internal};
use crate::path_id::PathId;
use crate::respond::{blocking_call, json_response, to_json};
use crate::route_table::RouteTable;
use crate::AppState;

pub fn routes() -> RouteTable {
    RouteTable::default()
        .post("/v1/me/privacy/exports", request_export)
        .get("/v1/me/privacy/exports/{id}", download_export)
        .post("/v1/me/privacy/erasure", erase)
        .get("/v1/me/privacy/consents", list_consents)
        .post("/v1/me/privacy/consents", grant_consent)
        .post("/v1/me/privacy/consents/{id}/revoke", revoke_consent)
        .get("/v1/me/privacy/access-log", access_log)
        .get("/v1/partner/customers/{id}/profile", partner_profile)
        .get("/v1/partner/customers/{id}/balances", partner_balances)
        .get(
            "/v1/partner/customers/{id}/transactions",
            partner_transactions,
        )
}

impl From<PrivacyError> for ApiError {
    fn from(error: PrivacyError) -> ApiError {
        match error {
            PrivacyError::Invalid { field, message } => ApiError::invalid(field, message),
            PrivacyError::BalanceNotZero(_) => ApiError::new(
                StatusCode::CONFLICT,
                "balance_not_zero",
                format!("{error}; withdraw or spend it first"),
            ),
            PrivacyError::PendingOperations(_) => ApiError::new(
                StatusCode::CONFLICT,
                "operations_pending",
                format!("{error}; wait until they finish"),
            ),
            PrivacyError::NotDeletable(_) => ApiError::new(
                StatusCode::CONFLICT,
                "account_not_deletable",
                error.to_string(),
            ),
            PrivacyError::ConsentRequired => {
                ApiError::new(StatusCode::FORBIDDEN, "consent_required", error.to_string())
            }
            PrivacyError::ExportExpired => {
                ApiError::new(StatusCode::GONE, "export_expired", error.to_string())
            }
            PrivacyError::NotFound(what) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such {what}"),
            ),
            PrivacyError::Identity(error) => error.into(),
            other => ApiError::internal(other),
        }
    }
}

fn time(at: i64) -> String {
    Timestamp::from_nanos(at).to_rfc3339()
}

fn requester(session: &CustomerSession) -> Requester {
    Requester {
        customer_id: session.info.customer_id.clone(),
        ip: session.context.ip.clone(),
    }
}

// ---- export and erasure ---------------------------------------------------------

/// A verified step-up for operation `data_export` (or `account_deletion`),
/// amount 0, currency CNY, payee "self".
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepUpProof {
    challenge_id: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportRequestBody {
    id: String,
    requested_at: String,
    /// The archive can be downloaded until then.
    expires_at: String,
    /// Where to GET the archive (with the same session).
    download: String,
}

#[utoipa::path(
    post,
    path = "/v1/me/privacy/exports",
    tag = "privacy",
    summary = "Request a copy of all my data",
    description = "Needs a verified step-up for operation `data_export`, amount 0, currency CNY, payee `self` (`POST /v1/me/step-up`). Audited; the customer is alerted on their contact. The archive is then downloadable for 15 minutes.",
    params(IdempotencyKey),
    request_body = StepUpProof,
    responses(
        (status = 201, description = "Requested.", body = ExportRequestBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`step_up_required`, `csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn request_export(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let requester = requester(&session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        "privacy_export",
        &body,
        || async {
            let request: StepUpProof = parse(&body)?;
            let privacy = state.privacy.clone();
            let export =
                blocking_call(move || privacy.request_export(&requester, &request.challenge_id))
                    .await?;
            state.dispatcher.nudge();
            to_json(
                StatusCode::CREATED,
                &ExportRequestBody {
                    download: format!("/v1/me/privacy/exports/{}", export.id),
                    id: export.id,
                    requested_at: time(export.requested_at),
                    expires_at: time(export.expires_at),
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/me/privacy/exports/{id}",
    tag = "privacy",
    summary = "Download my data",
    description = "The archive: one JSON document, `schema` `coffer.privacy.export/1` (see README, Privacy): profile, KYC, wallets and balances, activity, P2P payments, cards and bank accounts (last four only), consents, sessions, passkeys and authenticator enrolment, wallet handle, notifications (without their text), support tickets with their messages and the audit events about the customer (staff shown by role). No password hash, authenticator seed, recovery code, token or one-time code. Each download is audited.",
    params(("id" = String, Path, description = "The export request's id.")),
    responses(
        (status = 200, description = "The archive.", body = Object),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 410, description = "`export_expired`: too late, or not this customer's.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn download_export(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let privacy = state.privacy.clone();
    let requester = requester(&session);
    let document = blocking_call(move || privacy.download_export(&requester, &id)).await?;
    let text = serde_json::to_string_pretty(&document).map_err(ApiError::internal)?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"coffer-my-data.json\"",
            ),
        ],
        text,
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErasedBody {
    erased: bool,
    /// The id the bank's retained records (ledger, payments, audit log) stay
    /// under; nothing links it to a person any more.
    pseudonymous_id: String,
    erased_at: String,
}

#[utoipa::path(
    post,
    path = "/v1/me/privacy/erasure",
    tag = "privacy",
    summary = "Delete my account",
    description = "Needs a verified step-up for operation `account_deletion`, amount 0, currency CNY, payee `self`. Refused with `balance_not_zero` (the message lists each wallet's balances) while any wallet holds money, `operations_pending` while a top-up, withdrawal, payment or merchant is open. Then the customer's personal data is erased in one transaction, every session ends, sign-in becomes impossible and the contact may register again as a new customer; the ledger and payment records the bank must keep stay under the pseudonymous id.",
    params(IdempotencyKey),
    request_body = StepUpProof,
    responses(
        (status = 200, description = "Erased.", body = ErasedBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`step_up_required`, `csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`balance_not_zero`, `operations_pending`, `account_not_deletable`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn erase(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let requester = requester(&session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        "privacy_erasure",
        &body,
        || async {
            let request: StepUpProof = parse(&body)?;
            let privacy = state.privacy.clone();
            let erased =
                blocking_call(move || privacy.erase(&requester, &request.challenge_id)).await?;
            to_json(
                StatusCode::OK,
                &ErasedBody {
                    erased: true,
                    pseudonymous_id: erased.pseudonymous_id,
                    erased_at: time(erased.erased_at),
                },
            )
        },
    )
    .await
}

// ---- consents -------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub(crate) struct ConsentBody {
    id: String,
    partner_id: String,
    /// What the partner may read: `profile`, `balance`, `transactions`.
    scopes: Vec<&'static str>,
    granted_at: String,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
    /// Neither revoked nor expired.
    live: bool,
}

fn consent_body(consent: Consent, now: i64) -> ConsentBody {
    ConsentBody {
        live: consent.is_live(now),
        id: consent.id,
        partner_id: consent.partner_id,
        scopes: consent.scopes.iter().map(|s| s.as_str()).collect(),
        granted_at: time(consent.granted_at),
        expires_at: time(consent.expires_at),
        revoked_at: consent.revoked_at.map(time),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ConsentsResponse {
    data: Vec<ConsentBody>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantConsentRequest {
    /// The partner's id (its API key has the scope `partner:<id>`).
    partner_id: String,
    /// One or more of `profile`, `balance`, `transactions`.
    scopes: Vec<String>,
    /// RFC 3339; in the future, at most 365 days away.
    expires_at: String,
}

#[utoipa::path(
    get,
    path = "/v1/me/privacy/consents",
    tag = "privacy",
    summary = "My consents for partners",
    description = "Every consent this customer gave, live and past, newest first.",
    responses(
        (status = 200, description = "The consents.", body = ConsentsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_consents(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Result<Response, ApiError> {
    let privacy = state.privacy.clone();
    let consents = blocking_call(move || privacy.consents(&session.info.customer_id)).await?;
    let now = state.clock.now().as_nanos();
    Ok(json_response(
        StatusCode::OK,
        &ConsentsResponse {
            data: consents.into_iter().map(|c| consent_body(c, now)).collect(),
        },
    ))
}

#[utoipa::path(
    post,
    path = "/v1/me/privacy/consents",
    tag = "privacy",
    summary = "Let a partner read my data",
    description = "Explicit consent for one registered partner to read the listed categories until `expires_at`. Replaces any live consent for the same partner. Audited.",
    params(IdempotencyKey),
    request_body = GrantConsentRequest,
    responses(
        (status = 201, description = "Granted.", body = ConsentBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no partner with this id.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`partner_id`, `scopes`, `expires_at`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn grant_consent(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let requester = requester(&session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        "grant_consent",
        &body,
        || async {
            let request: GrantConsentRequest = parse(&body)?;
            let scopes = request
                .scopes
                .iter()
                .map(|s| {
                    ConsentScope::parse(s).ok_or_else(|| {
                        ApiError::invalid(
                            "scopes",
                            "each scope is profile, balance or transactions",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let expires_at = Timestamp::parse_rfc3339(&request.expires_at)
                .ok_or_else(|| ApiError::invalid("expires_at", "an RFC 3339 time"))?
                .as_nanos();
            let privacy = state.privacy.clone();
            let consent = blocking_call(move || {
                privacy.grant_consent(&requester, &request.partner_id, &scopes, expires_at)
            })
            .await?;
            to_json(
                StatusCode::CREATED,
                &consent_body(consent, state.clock.now().as_nanos()),
            )
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/me/privacy/consents/{id}/revoke",
    tag = "privacy",
    summary = "Revoke a consent",
    description = "The partner's next call is refused (`consent_required`). Revoking a revoked consent answers it unchanged. Audited.",
    params(("id" = String, Path, description = "The consent's id."), IdempotencyKey),
    responses(
        (status = 200, description = "Revoked.", body = ConsentBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 422, description = "`idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn revoke_consent(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let requester = requester(&session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        &format!("revoke_consent:{id}"),
        &body,
        || async {
            let privacy = state.privacy.clone();
            let consent = blocking_call(move || privacy.revoke_consent(&requester, &id)).await?;
            to_json(
                StatusCode::OK,
                &consent_body(consent, state.clock.now().as_nanos()),
            )
        },
    )
    .await
}

// ---- access log -----------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessLogQuery {
    /// From the previous page's `next_cursor`.
    cursor: Option<String>,
    /// 1 to 100; 50 by default.
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AccessBody {
    at: String,
    /// `staff` or `partner`.
    by: &'static str,
    /// For staff: their role(s) (support, risk_analyst, compliance_officer…), never their name.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partner_id: Option<String>,
    /// What was done: `customer_viewed`, `audit_read`, `partner_read_balance`…
    action: String,
    /// `ok`, or `refused` (a partner without a live consent).
    outcome: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AccessLogResponse {
    data: Vec<AccessBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

fn access_body(entry: AccessEntry) -> AccessBody {
    AccessBody {
        at: time(entry.at),
        by: entry.accessor.kind,
        role: entry.accessor.role,
        partner_id: entry.accessor.partner_id,
        action: entry.action,
        outcome: entry.outcome,
    }
}

#[utoipa::path(
    get,
    path = "/v1/me/privacy/access-log",
    tag = "privacy",
    summary = "Who accessed my data",
    description = "Every staff view of this customer (by role) and every partner call about them (allowed or refused), newest first, from the audit log; cursor pages.",
    params(AccessLogQuery),
    responses(
        (status = 200, description = "One page.", body = AccessLogResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`cursor`, `limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn access_log(
    State(state): State<AppState>,
    session: CustomerSession,
    query: Result<Query<AccessLogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let before = query
        .cursor
        .map(|c| c.parse::<i64>().ok().filter(|v| *v > 0))
        .map(|c| c.ok_or_else(|| ApiError::invalid("cursor", "a cursor from a previous page")))
        .transpose()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=ACCESS_PAGE_ROWS_MAX).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("1 to {ACCESS_PAGE_ROWS_MAX}"),
        ));
    }
    let privacy = state.privacy.clone();
    let page =
        blocking_call(move || privacy.access_log(&session.info.customer_id, before, limit)).await?;
    Ok(json_response(
        StatusCode::OK,
        &AccessLogResponse {
            data: page.entries.into_iter().map(access_body).collect(),
            next_cursor: page.next_before.map(|s| s.to_string()),
        },
    ))
}

// ---- the partner API ------------------------------------------------------------

/// A partner's system, from `Authorization: Bearer coffer_…` with a
/// `partner:<id>` scope.
pub struct PartnerCaller {
    pub partner_id: String,
    pub ip: String,
}

impl FromRequestParts<AppState> for PartnerCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Client(context) = Client::from_request_parts(parts, state).await?;
        let principal = Principal::from_request_parts(parts, state).await?;
        let partner_id = principal
            .scopes
            .iter()
            .find_map(|s| s.strip_prefix(PARTNER_SCOPE_PREFIX))
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this API key is not a partner's key",
                )
            })?;
        Ok(PartnerCaller {
            partner_id,
            ip: context.ip,
        })
    }
}

async fn admit(
    privacy: &Arc<Privacy>,
    partner: &PartnerCaller,
    customer_id: &str,
    scope: ConsentScope,
) -> Result<(), ApiError> {
    let (privacy, partner_id, customer_id, ip) = (
        privacy.clone(),
        partner.partner_id.clone(),
        customer_id.to_string(),
        partner.ip.clone(),
    );
    blocking_call(move || privacy.admit_partner(&partner_id, &customer_id, scope, &ip)).await?;
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PartnerProfileBody {
    customer_id: String,
    display_name: String,
    kyc_tier: i64,
    status: String,
}

#[utoipa::path(
    get,
    path = "/v1/partner/customers/{id}/profile",
    tag = "privacy",
    summary = "A customer's profile summary (partner)",
    description = "For a partner's API key (scope `partner:<id>`) holding the customer's live consent with scope `profile`; every call is recorded in the customer's access log.",
    params(("id" = String, Path, description = "The customer's id.")),
    responses(
        (status = 200, description = "The summary.", body = PartnerProfileBody),
        (status = 401, description = "`unauthorized`.", body = crate::error::ErrorBody),
        (status = 403, description = "`consent_required` (none, revoked or expired), `forbidden` (not a partner's key).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn partner_profile(
    State(state): State<AppState>,
    partner: PartnerCaller,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    admit(&state.privacy, &partner, &id, ConsentScope::Profile).await?;
    let identity = state.identity.clone();
    let view = crate::respond::identity_call(move || identity.customer(&id)).await?;
    Ok(json_response(
        StatusCode::OK,
        &PartnerProfileBody {
            customer_id: view.id,
            display_name: Secret::expose(&view.display_name).clone(),
            kyc_tier: view.tier,
            status: view.status,
        },
    ))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PartnerBalanceBody {
    currency: String,
    exponent: u8,
    posted: i64,
    available: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PartnerBalancesResponse {
    data: Vec<PartnerBalanceBody>,
}

#[utoipa::path(
    get,
    path = "/v1/partner/customers/{id}/balances",
    tag = "privacy",
    summary = "A customer's balances (partner)",
    description = "Needs the customer's live consent with scope `balance`; recorded in their access log.",
    params(("id" = String, Path, description = "The customer's id.")),
    responses(
        (status = 200, description = "The balances, in minor units.", body = PartnerBalancesResponse),
        (status = 401, description = "`unauthorized`.", body = crate::error::ErrorBody),
        (status = 403, description = "`consent_required`, `forbidden`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn partner_balances(
    State(state): State<AppState>,
    partner: PartnerCaller,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    admit(&state.privacy, &partner, &id, ConsentScope::Balance).await?;
    let fx = state.fx.clone();
    let wallets = blocking_call(move || fx.wallets(&id)).await?;
    Ok(json_response(
        StatusCode::OK,
        &PartnerBalancesResponse {
            data: wallets
                .into_iter()
                .map(|w| PartnerBalanceBody {
                    currency: w.currency,
                    exponent: w.exponent,
                    posted: w.posted,
                    available: w.available,
                })
                .collect(),
        },
    ))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PartnerTransactionBody {
    id: String,
    kind: String,
    direction: String,
    status: String,
    counterparty: String,
    amount: i64,
    currency: String,
    fee: i64,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PartnerTransactionsResponse {
    data: Vec<PartnerTransactionBody>,
}

/// Transactions a partner receives per call.
const PARTNER_TRANSACTIONS_MAX: i64 = 100;

#[utoipa::path(
    get,
    path = "/v1/partner/customers/{id}/transactions",
    tag = "privacy",
    summary = "A customer's recent transactions (partner)",
    description = "The newest 100 rows of the customer's activity. Needs the customer's live consent with scope `transactions`; recorded in their access log.",
    params(("id" = String, Path, description = "The customer's id.")),
    responses(
        (status = 200, description = "Newest first.", body = PartnerTransactionsResponse),
        (status = 401, description = "`unauthorized`.", body = crate::error::ErrorBody),
        (status = 403, description = "`consent_required`, `forbidden`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn partner_transactions(
    State(state): State<AppState>,
    partner: PartnerCaller,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    admit(&state.privacy, &partner, &id, ConsentScope::Transactions).await?;
    let activity = state.activity.clone();
    let page = blocking_call(move || {
        activity
            .list(&id, &Filter::default(), None, PARTNER_TRANSACTIONS_MAX)
            .map_err(ApiError::internal)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &PartnerTransactionsResponse {
            data: page
                .items
                .into_iter()
                .map(|a| PartnerTransactionBody {
                    id: a.id,
                    kind: a.kind,
                    direction: a.direction,
                    status: a.status,
                    counterparty: a.counterparty,
                    amount: a.amount,
                    currency: a.currency,
                    fee: a.fee,
                    created_at: time(a.created_at),
                })
                .collect(),
        },
    ))
}
