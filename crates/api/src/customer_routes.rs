//! `/v1/auth` and `/v1/me`: customers register with a one-time code, sign in,
//! see their wallet and manage their signed-in devices.
//!
//! Sessions travel as a bearer token (`Authorization: Bearer cs_…`, for
//! apps) or in an HttpOnly, Secure, SameSite=Strict cookie (for the web).
//! A state-changing request authenticated by cookie must come from our own
//! origin (CSRF). Responses that carry a session token are never stored
//! for idempotent replay (that would put the token in the database): those
//! two endpoints are safe to retry by construction instead (a registration
//! completes once; a sign-in only creates another session).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_core::{Currency, Identifier, Secret, Timestamp};
use coffer_identity::{
    Context, IdentityError, Method as FactorMethod, Operation, SessionInfo, SignIn,
};
use coffer_ledger::{AccountKind, AccountSpec, BalanceConstraint, Command, Outcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::openapi::params::IdempotencyKey;
use crate::openapi::{BadRequest, BodyTooLarge, Internal};

use crate::body::{parse, RawBody};
use crate::error::ApiError;
use crate::idempotency;
use crate::ledger_routes::{balances_view, BalancesView};
use crate::path_id::PathId;
use crate::respond::{identity_call, json_response, to_json};
use crate::route_table::RouteTable;
use crate::AppState;

pub const SESSION_COOKIE: &str = "coffer_session";
/// The currency every new customer gets a wallet in.
pub const DEFAULT_WALLET_CURRENCY: &str = "CNY";

pub fn routes() -> RouteTable {
    RouteTable::default()
        .post("/v1/auth/registrations", start_registration)
        .post(
            "/v1/auth/registrations/{id}/complete",
            complete_registration,
        )
        .post("/v1/auth/sessions", sign_in)
        .delete("/v1/auth/sessions/current", sign_out)
        .post("/v1/auth/challenges/{id}/verify", verify_sign_in)
        .get("/v1/me", me)
        .get("/v1/me/sessions", my_sessions)
        .post("/v1/me/sessions/{id}/revoke", revoke_session)
        .post("/v1/me/sessions/revoke-all", revoke_all)
        .post("/v1/me/factors/totp", enroll_totp)
        .post("/v1/me/factors/totp/confirm", confirm_totp)
        .post("/v1/me/factors/totp/disable", disable_totp)
        .post("/v1/me/step-up", start_step_up)
        .post("/v1/me/step-up/{id}/verify", verify_step_up)
        .get("/v1/me/profile", profile)
        .post("/v1/me/profile", update_profile)
        .post("/v1/me/contact/change", start_contact_change)
        .post("/v1/me/contact/change/{id}/confirm", confirm_contact_change)
        .post("/v1/me/password", change_password)
        .post("/v1/auth/password-reset", start_password_reset)
        .post(
            "/v1/auth/password-reset/{id}/complete",
            complete_password_reset,
        )
        .post("/v1/me/kyc/identity", verify_identity)
        .post("/v1/me/kyc/documents", submit_documents)
        .post("/v1/me/cards", link_card)
        .get("/v1/me/cards", list_cards)
        .post("/v1/me/cards/{id}/remove", remove_card)
        .post("/v1/me/passkeys/registration", start_passkey_registration)
        .post(
            "/v1/me/passkeys/registration/{id}/finish",
            finish_passkey_registration,
        )
        .get("/v1/me/passkeys", list_passkeys)
        .post("/v1/auth/passkeys/challenges", start_passkey_sign_in)
        .post(
            "/v1/auth/passkeys/challenges/{id}/verify",
            verify_passkey_sign_in,
        )
}

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> ApiError {
        let status = match &error {
            IdentityError::InvalidField { .. } | IdentityError::WeakPassword(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            IdentityError::CodeInvalid
            | IdentityError::ChallengeInvalid
            | IdentityError::CurrentPasswordWrong
            | IdentityError::SecondFactorRequired
            | IdentityError::SecondFactorInvalid => StatusCode::UNPROCESSABLE_ENTITY,
            IdentityError::StepUpRequired | IdentityError::Forbidden(_) => StatusCode::FORBIDDEN,
            IdentityError::Conflict(_) => StatusCode::CONFLICT,
            IdentityError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            IdentityError::InvalidCredentials | IdentityError::Unauthenticated => {
                StatusCode::UNAUTHORIZED
            }
            IdentityError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            IdentityError::NotFound(_) => StatusCode::NOT_FOUND,
            IdentityError::Store(_)
            | IdentityError::Vault(_)
            | IdentityError::Notify(_)
            | IdentityError::Audit(_)
            | IdentityError::Internal(_) => return ApiError::internal(error),
        };
        let api = ApiError::new(status, error.code(), error.to_string());
        match error.field() {
            Some(field) => api.field(field),
            None => api,
        }
    }
}

/// An identity call on a blocking thread (Argon2 takes tens of milliseconds).
async fn blocking_identity<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, IdentityError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(IdentityError::Throttled {
            retry_after_seconds,
        })) => {
            let mut response = ApiError::from(IdentityError::Throttled {
                retry_after_seconds,
            })
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Err(response)
        }
        Ok(Err(error)) => Err(ApiError::from(error).into_response()),
        Err(error) => Err(ApiError::internal(error).into_response()),
    }
}

/// Where the request comes from: peer address and a device label.
pub struct Client(pub Context);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
        let device = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown device")
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect();
        Ok(Client(Context { ip, device }))
    }
}

/// A signed-in customer.
pub struct CustomerSession {
    pub info: SessionInfo,
    pub context: Context,
}

fn session_token(headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some((token.trim().to_string(), false));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| (value.to_string(), true))
}

/// A cookie-authenticated write must come from a page of ours: browsers
/// send `Origin` (or `Sec-Fetch-Site`) on cross-site requests.
fn same_origin(parts: &Parts) -> bool {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if let Some(site) = parts
        .headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
    {
        return site == "same-origin" || site == "none";
    }
    match (
        parts
            .headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok()),
        host,
    ) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .map(|(_, rest)| rest)
            .is_some_and(|rest| rest == host),
        // No Origin at all: not a browser's cross-site form or fetch.
        (None, _) => true,
        (Some(_), None) => false,
    }
}

impl FromRequestParts<AppState> for CustomerSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Client(context) = Client::from_request_parts(parts, state).await?;
        let unauthenticated = || ApiError::from(IdentityError::Unauthenticated);
        let (token, from_cookie) = session_token(&parts.headers).ok_or_else(unauthenticated)?;
        let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if from_cookie && unsafe_method && !same_origin(parts) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_rejected",
                "a cookie-authenticated change must come from this site",
            ));
        }
        let identity = state.identity.clone();
        let token = Secret::new(token);
        let info = tokio::task::spawn_blocking(move || identity.authenticate(&token))
            .await
            .map_err(ApiError::internal)??;
        Ok(CustomerSession { info, context })
    }
}

fn session_cookie(token: &str, max_age_seconds: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_seconds}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("coffer_session=; Path=/; Max-Age=0"))
}

// ---- shapes ------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRegistrationRequest {
    contact: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StartRegistrationResponse {
    registration_id: String,
    sent_to: String,
    expires_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteRegistrationRequest {
    code: String,
    password: String,
    display_name: String,
    /// The version of the terms accepted; must be the current one.
    accept_terms: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignInRequest {
    contact: String,
    password: String,
    #[serde(default)]
    device_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionResponse {
    session_id: String,
    customer_id: String,
    /// Shown once; send it as `Authorization: Bearer …` (apps) or rely on the cookie (web).
    token: String,
    expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerBody {
    id: String,
    display_name: String,
    contact: String,
    contact_kind: &'static str,
    kyc_tier: i64,
    status: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RegisteredResponse {
    customer: CustomerBody,
    session: SessionResponse,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WalletBody {
    account_id: String,
    currency: String,
    balances: BalancesView,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MeResponse {
    customer: CustomerBody,
    wallets: Vec<WalletBody>,
    /// What the customer's KYC tier allows, in minor units of CNY.
    limits: LimitsBody,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LimitsBody {
    currency: &'static str,
    balance_cap: i64,
    per_payment: i64,
    daily: i64,
    monthly: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionBody {
    id: String,
    device: String,
    ip: String,
    created_at: String,
    last_seen_at: String,
    current: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionsResponse {
    data: Vec<SessionBody>,
}

fn customer_body(customer: &coffer_identity::CustomerView) -> CustomerBody {
    CustomerBody {
        id: customer.id.clone(),
        display_name: customer.display_name.expose().clone(),
        contact: customer.contact_masked.clone(),
        contact_kind: customer.contact_kind.as_str(),
        kyc_tier: customer.tier,
        status: customer.status.clone(),
        created_at: Timestamp::from_nanos(customer.created_at).to_rfc3339(),
    }
}

fn session_response(session: &coffer_identity::NewSession) -> SessionResponse {
    SessionResponse {
        session_id: session.session_id.clone(),
        customer_id: session.customer_id.clone(),
        token: session.token.expose().clone(),
        expires_at: Timestamp::from_nanos(session.expires_at).to_rfc3339(),
    }
}

/// The ledger account of a customer's wallet in `currency`.
pub fn wallet_account(customer_id: &str, currency: &str) -> Result<Identifier, ApiError> {
    Identifier::parse(&format!("wallet:{customer_id}:{}", currency.to_lowercase()))
        .map_err(ApiError::internal)
}

/// Opens the customer's wallet if it is not open yet (idempotent).
async fn ensure_wallet(state: &AppState, customer_id: &str) -> Result<Identifier, ApiError> {
    let id = wallet_account(customer_id, DEFAULT_WALLET_CURRENCY)?;
    let spec = AccountSpec {
        id: id.clone(),
        currency: Currency::parse(DEFAULT_WALLET_CURRENCY).map_err(ApiError::internal)?,
        kind: AccountKind::Liability,
        constraint: BalanceConstraint::NoOverdraft,
        owner: Identifier::parse(customer_id).map_err(ApiError::internal)?,
    };
    match state.engine.execute(Command::OpenAccount(spec)).await? {
        Outcome::Account(Ok(_)) => Ok(id),
        Outcome::Account(Err(rejection)) => Err(ApiError::internal(rejection)),
        Outcome::Transfers(_) => Err(ApiError::internal("unexpected outcome")),
    }
}

// ---- handlers ----------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/auth/registrations",
    tag = "customers",
    summary = "Start registration",
    description = "Sends a one-time code to a mobile number (E.164) or e-mail address. The answer is the same whether or not the contact already has a wallet (its owner then gets a warning instead of a code).",
    params(IdempotencyKey),
    request_body = StartRegistrationRequest,
    responses(
        (status = 202, description = "A code is on its way.", body = StartRegistrationResponse),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 422, description = "`invalid_field` (`contact`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many registrations for this contact; see Retry-After.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn start_registration(
    State(state): State<AppState>,
    Client(context): Client,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = anonymous_principal(&context);
    idempotency::run_private(
        &state,
        &principal,
        "public",
        &headers,
        "start_registration",
        &body,
        || async {
            let request: StartRegistrationRequest = parse(&body)?;
            let identity = state.identity.clone();
            let started = match identity_call(move || {
                identity.start_registration(&request.contact, &context)
            })
            .await
            {
                Ok(started) => started,
                Err(error) => return Err(error),
            };
            state.dispatcher.nudge();
            to_json(
                StatusCode::ACCEPTED,
                &StartRegistrationResponse {
                    registration_id: started.registration_id,
                    sent_to: started.sent_to,
                    expires_at: Timestamp::from_nanos(started.expires_at).to_rfc3339(),
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/auth/registrations/{id}/complete",
    tag = "customers",
    summary = "Complete registration",
    description = "The code, a password (NIST SP 800-63B: 8 to 128 characters, not common or breached), a display name and the accepted terms version. Creates the customer and a CNY wallet and signs in. Not replayed by Idempotency-Key, because the answer carries a session token; a registration completes once.",
    params(("id" = String, Path, description = "The registration id.")),
    request_body = CompleteRegistrationRequest,
    responses(
        (status = 201, description = "Registered and signed in; also sets the `coffer_session` cookie.", body = RegisteredResponse),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 422, description = "`code_invalid` (wrong, expired or used code), `weak_password`, `invalid_field` (`display_name`, `accept_terms`).", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn complete_registration(
    State(state): State<AppState>,
    Client(context): Client,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    let request: CompleteRegistrationRequest = match parse(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let identity = state.identity.clone();
    let done = blocking_identity(move || {
        identity.complete_registration(
            &id,
            &Secret::new(request.code),
            &Secret::new(request.password),
            &request.display_name,
            &request.accept_terms,
            &context,
        )
    })
    .await;
    let (customer, session) = match done {
        Ok(done) => done,
        Err(response) => return response,
    };
    if let Err(error) = ensure_wallet(&state, &customer.id).await {
        // The customer exists; the wallet opens on their next visit to /v1/me.
        tracing::warn!(customer = %customer.id, error = %error.message, "wallet not opened yet");
    }
    let mut response = json_response(
        StatusCode::CREATED,
        &RegisteredResponse {
            customer: customer_body(&customer),
            session: session_response(&session),
        },
    );
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(
            session.token.expose(),
            state.identity.policy().session_absolute_seconds,
        ),
    );
    response
}

#[utoipa::path(
    post,
    path = "/v1/auth/sessions",
    tag = "customers",
    summary = "Sign in",
    description = "Contact and password. Unknown contact and wrong password give the same answer. With an authenticator app enrolled, the answer is 202 with a challenge to verify. Not replayed by Idempotency-Key (the answer carries a token); a retry only creates another session.",
    request_body = SignInRequest,
    responses(
        (status = 201, description = "Signed in; also sets the `coffer_session` cookie.", body = SessionResponse),
        (status = 202, description = "Password verified; answer the second-factor challenge.", body = ChallengeResponse),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 401, description = "`invalid_credentials`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field`.", body = crate::error::ErrorBody),
        (status = 429, description = "`too_many_attempts`: back-off or lock-out; see Retry-After.", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    Client(mut context): Client,
    RawBody(body): RawBody,
) -> Response {
    let request: SignInRequest = match parse(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    if let Some(name) = request.device_name.filter(|n| !n.trim().is_empty()) {
        context.device = name.chars().filter(|c| !c.is_control()).take(120).collect();
    }
    let identity = state.identity.clone();
    let password = Secret::new(request.password);
    let signed_in =
        blocking_identity(move || identity.login(&request.contact, &password, &context)).await;
    state.dispatcher.nudge();
    match signed_in {
        Ok(SignIn::Session(session)) => session_created(&state, &session),
        Ok(SignIn::SecondFactor(challenge)) => json_response(
            StatusCode::ACCEPTED,
            &ChallengeResponse {
                second_factor_required: true,
                challenge_id: challenge.id,
                method: challenge.method.as_str(),
                expires_at: Timestamp::from_nanos(challenge.expires_at).to_rfc3339(),
            },
        ),
        Err(response) => response,
    }
}

/// 201 with the session, and the cookie for browsers.
fn session_created(state: &AppState, session: &coffer_identity::NewSession) -> Response {
    let mut response = json_response(StatusCode::CREATED, &session_response(session));
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(
            session.token.expose(),
            state.identity.policy().session_absolute_seconds,
        ),
    );
    response
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ChallengeResponse {
    second_factor_required: bool,
    challenge_id: String,
    method: &'static str,
    expires_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeRequest {
    /// A 6-digit code from the authenticator app, SMS or e-mail, or a recovery code.
    code: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/challenges/{id}/verify",
    tag = "customers",
    summary = "Answer a sign-in challenge",
    description = "A code from the authenticator app, or a recovery code. A challenge is single-use, lives five minutes and dies after five wrong answers.",
    params(("id" = String, Path, description = "The challenge id.")),
    request_body = CodeRequest,
    responses(
        (status = 201, description = "Signed in.", body = SessionResponse),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 422, description = "`code_invalid`, `challenge_invalid`, `invalid_field`.", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn verify_sign_in(
    State(state): State<AppState>,
    Client(context): Client,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    let request: CodeRequest = match parse(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let identity = state.identity.clone();
    let code = Secret::new(request.code);
    match blocking_identity(move || identity.complete_sign_in(&id, &code, &context)).await {
        Ok(session) => session_created(&state, &session),
        Err(response) => response,
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EnrollmentResponse {
    /// Base32 seed, for typing into an authenticator app by hand; shown once.
    secret: String,
    otpauth_url: String,
    /// The otpauth URL as a QR code to scan.
    qr_svg: String,
}

#[utoipa::path(
    post,
    path = "/v1/me/factors/totp",
    tag = "customers",
    summary = "Enrol an authenticator app",
    description = "Returns a new TOTP seed (RFC 6238, SHA-1, 6 digits, 30 s) as base32, an otpauth URL and a QR code (SVG), shown once; confirm with a first code. Not replayed by Idempotency-Key (the answer carries the seed).",
    responses(
        (status = 201, description = "Scan the QR code, then confirm.", body = EnrollmentResponse),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`: a cookie-authenticated change from another site.", body = crate::error::ErrorBody),
        (status = 409, description = "`conflict`: an app is already enrolled.", body = crate::error::ErrorBody),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn enroll_totp(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Response {
    let identity = state.identity.clone();
    match blocking_identity(move || identity.enroll_totp(&session.info)).await {
        Ok(enrolment) => json_response(
            StatusCode::CREATED,
            &EnrollmentResponse {
                secret: enrolment.secret_base32.expose().clone(),
                otpauth_url: enrolment.otpauth_url.expose().clone(),
                qr_svg: enrolment.qr_svg.expose().clone(),
            },
        ),
        Err(response) => response,
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RecoveryCodesResponse {
    /// Each works once in place of an authenticator code; shown only now.
    recovery_codes: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/v1/me/factors/totp/confirm",
    tag = "customers",
    summary = "Confirm the authenticator app",
    description = "A first code proves the app works; returns ten single-use recovery codes, shown once. Not replayed by Idempotency-Key (the answer carries the codes).",
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Enrolled.", body = RecoveryCodesResponse),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`: a cookie-authenticated change from another site.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no enrolment started.", body = crate::error::ErrorBody),
        (status = 409, description = "`conflict`: already confirmed.", body = crate::error::ErrorBody),
        (status = 422, description = "`code_invalid`, `invalid_field`.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn confirm_totp(
    State(state): State<AppState>,
    session: CustomerSession,
    RawBody(body): RawBody,
) -> Response {
    let request: CodeRequest = match parse(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let identity = state.identity.clone();
    let code = Secret::new(request.code);
    let confirmed =
        blocking_identity(move || identity.confirm_totp(&session.info, &code, &session.context))
            .await;
    state.dispatcher.nudge();
    match confirmed {
        Ok(codes) => json_response(
            StatusCode::OK,
            &RecoveryCodesResponse {
                recovery_codes: codes.into_iter().map(Secret::into_inner).collect(),
            },
        ),
        Err(response) => response,
    }
}

#[utoipa::path(
    post,
    path = "/v1/me/factors/totp/disable",
    tag = "customers",
    summary = "Remove the authenticator app",
    description = "Needs a current code or a recovery code.",
    params(IdempotencyKey),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Removed."),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`: a cookie-authenticated change from another site.", body = crate::error::ErrorBody),
        (status = 422, description = "`code_invalid`, `invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn disable_totp(
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
        "disable_totp",
        &body,
        || async {
            let request: CodeRequest = parse(&body)?;
            let identity = state.identity.clone();
            let session = session.clone();
            identity_call(move || {
                identity.disable_totp(&session.info, &Secret::new(request.code), &session.context)
            })
            .await?;
            state.dispatcher.nudge();
            Ok((StatusCode::OK, r#"{"disabled":true}"#.to_string()))
        },
    )
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepUpRequest {
    /// What is being confirmed, e.g. "payment", "transfer", "withdrawal".
    operation: String,
    amount: i64,
    currency: String,
    payee: String,
    /// "totp" (authenticator app), "code" (SMS or e-mail) or "passkey" (a
    /// registered passkey, with fingerprint, face or PIN).
    method: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StepUpResponse {
    challenge_id: String,
    method: &'static str,
    expires_at: String,
    /// Method "passkey" only: pass to `navigator.credentials.get()` as is
    /// (names the customer's passkeys; user verification required), and send
    /// the result to /v1/me/step-up/{id}/verify as `credential`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    passkey_options: Option<serde_json::Value>,
}

/// The answer to a step-up challenge: exactly one of the two.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepUpAnswerRequest {
    /// Methods "totp" and "code": a 6-digit code from the authenticator app,
    /// SMS or e-mail, or a recovery code.
    #[serde(default)]
    code: Option<String>,
    /// Method "passkey": the `PublicKeyCredential` that
    /// `navigator.credentials.get()` returned, as JSON.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    credential: Option<serde_json::Value>,
}

#[utoipa::path(
    post,
    path = "/v1/me/step-up",
    tag = "customers",
    summary = "Start a step-up verification",
    description = "Strong customer authentication for one operation: the challenge is bound to the operation, amount (minor units), currency and payee, and lets only exactly that through, once, within five minutes. Method `totp` (authenticator app), `code` (sent by SMS or e-mail) or `passkey` (the response carries `passkey_options` for `navigator.credentials.get()`: the customer's passkeys, user verification required).",
    params(IdempotencyKey),
    request_body = StepUpRequest,
    responses(
        (status = 201, description = "Answer it with /v1/me/step-up/{id}/verify.", body = StepUpResponse),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`: a cookie-authenticated change from another site.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`method`: unknown, or no authenticator app or passkey to answer with; `amount`, `currency`, `operation`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn start_step_up(
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
        "start_step_up",
        &body,
        || async {
            let request: StepUpRequest = parse(&body)?;
            let method = FactorMethod::parse(&request.method).ok_or_else(|| {
                ApiError::invalid("method", "method is \"totp\", \"code\" or \"passkey\"")
            })?;
            // Privacy and passkey operations move no money: bound to amount 0.
            let non_monetary = coffer_privacy::STEP_UP_OPERATIONS
                .contains(&request.operation.as_str())
                || request.operation == coffer_identity::OPERATION_PASSKEY_CHANGE;
            if request.amount < 0 || (request.amount == 0 && !non_monetary) {
                return Err(ApiError::invalid(
                    "amount",
                    "amount must be positive (minor units)",
                ));
            }
            let currency = Currency::parse(&request.currency)
                .map_err(|e| ApiError::invalid("currency", e.to_string()))?;
            if request.operation.is_empty() || request.payee.is_empty() {
                return Err(ApiError::invalid(
                    "operation",
                    "operation and payee are required",
                ));
            }
            let operation = Operation {
                kind: request.operation,
                amount: request.amount,
                currency: currency.as_str().to_string(),
                payee: request.payee,
            };
            let identity = state.identity.clone();
            let session = session.clone();
            let challenge =
                identity_call(move || identity.start_step_up(&session.info, &operation, method))
                    .await?;
            state.dispatcher.nudge();
            let passkey_options = challenge
                .passkey_options
                .as_ref()
                .map(serde_json::to_value)
                .transpose()
                .map_err(ApiError::internal)?;
            to_json(
                StatusCode::CREATED,
                &StepUpResponse {
                    challenge_id: challenge.id,
                    method: challenge.method.as_str(),
                    expires_at: Timestamp::from_nanos(challenge.expires_at).to_rfc3339(),
                    passkey_options,
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/me/step-up/{id}/verify",
    tag = "customers",
    summary = "Answer a step-up challenge",
    description = "The answer for the challenge: `code` for methods `totp` and `code`, `credential` (the passkey's signed assertion) for method `passkey`. On success the bound operation may proceed once. Wrong answers count: after five the challenge is dead.",
    params(("id" = String, Path, description = "The challenge id."), IdempotencyKey),
    request_body = StepUpAnswerRequest,
    responses(
        (status = 200, description = "Verified."),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`: a cookie-authenticated change from another site.", body = crate::error::ErrorBody),
        (status = 422, description = "`code_invalid`, `challenge_invalid`, `invalid_field` (`credential`: the passkey's answer did not verify; `code`: neither or both given), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn verify_step_up(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let session = Arc::new(session);
    // The body holds a one-time code: its fingerprint is a keyed hash, so a
    // six-digit code cannot be recovered from the idempotency table.
    idempotency::run_private(
        &state,
        &principal,
        "customer",
        &headers,
        &format!("verify_step_up:{id}"),
        &body,
        || async {
            let request: StepUpAnswerRequest = parse(&body)?;
            let identity = state.identity.clone();
            let session = session.clone();
            match (request.code, request.credential) {
                (Some(code), None) => {
                    identity_call(move || {
                        identity.verify_step_up(
                            &session.info,
                            &id,
                            &Secret::new(code),
                            &session.context,
                        )
                    })
                    .await?
                }
                (None, Some(credential)) => {
                    let assertion: coffer_identity::webauthn::PublicKeyCredential =
                        self::credential(credential)?;
                    identity_call(move || {
                        identity.verify_step_up_passkey(
                            &session.info,
                            &id,
                            &assertion,
                            &session.context,
                        )
                    })
                    .await?
                }
                _ => {
                    return Err(ApiError::invalid(
                        "code",
                        "give either code (methods totp and code) or credential (method passkey)",
                    ))
                }
            }
            Ok((StatusCode::OK, r#"{"verified":true}"#.to_string()))
        },
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/v1/auth/sessions/current",
    tag = "customers",
    summary = "Sign out",
    description = "Ends this session and clears the cookie.",
    responses(
        (status = 204, description = "Signed out."),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`: a cookie-authenticated change from another site.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn sign_out(State(state): State<AppState>, session: CustomerSession) -> Response {
    let identity = state.identity.clone();
    let id = session.info.session_id.clone();
    match blocking_identity(move || identity.revoke_session(&session.info, &id, &session.context))
        .await
    {
        Ok(()) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session_cookie("", 0));
            response
        }
        Err(response) => response,
    }
}

#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "customers",
    summary = "The signed-in customer",
    description = "Profile (name, masked contact, KYC tier) and the balances, in minor units, of every wallet the customer has: CNY first, then each other currency's wallet opened (POST /v1/me/wallets).",
    responses(
        (status = 200, description = "The customer and their wallets.", body = MeResponse),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn me(State(state): State<AppState>, session: CustomerSession) -> Response {
    let identity = state.identity.clone();
    let customer_id = session.info.customer_id.clone();
    let customer = match blocking_identity(move || identity.customer(&customer_id)).await {
        Ok(customer) => customer,
        Err(response) => return response,
    };
    let wallet = match ensure_wallet(&state, &customer.id).await {
        Ok(wallet) => wallet,
        Err(error) => return error.into_response(),
    };
    // The CNY wallet first (always there), then one per other currency the
    // customer has opened, in the bank's order of enabled currencies.
    let reader = state.reader.clone();
    let ids: Vec<Identifier> = std::iter::once(wallet)
        .chain(
            state
                .fx
                .policy()
                .enabled_currencies
                .iter()
                .filter(|code| code.as_str() != DEFAULT_WALLET_CURRENCY)
                .filter_map(|code| wallet_account(&customer.id, code).ok()),
        )
        .collect();
    let accounts = match tokio::task::spawn_blocking(move || {
        let mut accounts = Vec::new();
        for id in &ids {
            if let Some(account) = reader.account(id)? {
                accounts.push(account);
            }
        }
        Ok::<_, coffer_store::StoreError>(accounts)
    })
    .await
    {
        Ok(Ok(accounts)) if !accounts.is_empty() => accounts,
        Ok(Ok(_)) => return ApiError::internal("wallet vanished").into_response(),
        Ok(Err(error)) => return ApiError::from(error).into_response(),
        Err(error) => return ApiError::internal(error).into_response(),
    };
    json_response(
        StatusCode::OK,
        &MeResponse {
            customer: customer_body(&customer),
            wallets: accounts
                .iter()
                .map(|account| WalletBody {
                    account_id: account.id().to_string(),
                    currency: account.spec.currency.as_str().to_string(),
                    balances: balances_view(account, account.balances),
                })
                .collect(),
            limits: {
                let limits = state.identity.policy().tiers.limits(customer.tier);
                LimitsBody {
                    currency: DEFAULT_WALLET_CURRENCY,
                    balance_cap: limits.balance_cap,
                    per_payment: limits.per_payment,
                    daily: limits.daily,
                    monthly: limits.monthly,
                }
            },
        },
    )
}

#[utoipa::path(
    get,
    path = "/v1/me/sessions",
    tag = "customers",
    summary = "Signed-in devices",
    description = "Live sessions of this customer; `current` marks this one.",
    responses(
        (status = 200, description = "The sessions.", body = SessionsResponse),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn my_sessions(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Response {
    let identity = state.identity.clone();
    match blocking_identity(move || identity.sessions(&session.info)).await {
        Ok(list) => json_response(
            StatusCode::OK,
            &SessionsResponse {
                data: list
                    .into_iter()
                    .map(|s| SessionBody {
                        id: s.id,
                        device: s.device,
                        ip: s.ip,
                        created_at: Timestamp::from_nanos(s.created_at).to_rfc3339(),
                        last_seen_at: Timestamp::from_nanos(s.last_seen_at).to_rfc3339(),
                        current: s.current,
                    })
                    .collect(),
            },
        ),
        Err(response) => response,
    }
}

pub(crate) fn customer_principal(session: &CustomerSession) -> crate::auth::Principal {
    crate::auth::Principal {
        key_id: format!("customer:{}", session.info.customer_id),
        scopes: vec!["customer".into()],
    }
}

#[utoipa::path(
    post,
    path = "/v1/me/sessions/{id}/revoke",
    tag = "customers",
    summary = "Sign out a device",
    description = "Revokes one session of this customer.",
    params(("id" = String, Path, description = "The session id."), IdempotencyKey),
    responses(
        (status = 200, description = "Revoked."),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`: a cookie-authenticated change from another site.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no live session with this id.", body = crate::error::ErrorBody),
        (status = 422, description = "`idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn revoke_session(
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
        &format!("revoke_session:{id}"),
        &body,
        || async {
            let identity = state.identity.clone();
            let session = session.clone();
            identity_call(move || identity.revoke_session(&session.info, &id, &session.context))
                .await?;
            Ok((StatusCode::OK, r#"{"revoked":true}"#.to_string()))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/me/sessions/revoke-all",
    tag = "customers",
    summary = "Sign out everywhere",
    description = "Revokes every session of this customer, this one included.",
    params(IdempotencyKey),
    responses(
        (status = 200, description = "Revoked; `revoked` counts them."),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 500, response = Internal),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`: a cookie-authenticated change from another site.", body = crate::error::ErrorBody),
        (status = 422, description = "`idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 503, description = "`unavailable`: a dependency is down; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn revoke_all(
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
        "revoke_all_sessions",
        &body,
        || async {
            let identity = state.identity.clone();
            let session = session.clone();
            let revoked = identity_call(move || {
                identity.revoke_all_sessions(&session.info, &session.context)
            })
            .await?;
            Ok((StatusCode::OK, format!(r#"{{"revoked":{revoked}}}"#)))
        },
    )
    .await
}

// ---- profile and credentials -------------------------------------------------------

/// Like `identity_call`, for requests that name a field differently from
/// the identity layer (`new_password` where it says `password`); `None`
/// drops the field.
async fn identity_call_renaming<T: Send + 'static>(
    renames: &'static [(&'static str, Option<&'static str>)],
    work: impl FnOnce() -> Result<T, IdentityError> + Send + 'static,
) -> Result<T, ApiError> {
    identity_call(work).await.map_err(|mut error| {
        if let Some((_, to)) = renames
            .iter()
            .find(|(from, _)| error.field.as_deref() == Some(*from))
        {
            error.field = to.map(str::to_string);
        }
        error
    })
}

const NEW_PASSWORD_FIELD: &[(&str, Option<&str>)] = &[("password", Some("new_password"))];

#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileResponse {
    customer: CustomerBody,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileRequest {
    /// 1 to 64 characters, as at registration.
    display_name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactChangeRequest {
    /// The new mobile number (E.164, `+8613800138000`) or e-mail address to sign in with.
    new_contact: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ContactChangeResponse {
    change_id: String,
    /// The current contact, masked: where the first code went.
    old_sent_to: String,
    /// The new contact, masked: where the second code went.
    new_sent_to: String,
    expires_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactChangeConfirmRequest {
    /// The code sent to the current contact.
    old_code: String,
    /// The code sent to the new contact.
    new_code: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ContactChangedResponse {
    /// The contact now signed in with, masked.
    contact: String,
    contact_kind: &'static str,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChangeRequest {
    current_password: String,
    /// NIST SP 800-63B: 8 to 128 characters, not common or breached, not the contact.
    new_password: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PasswordChangedResponse {
    changed: bool,
    /// Sessions on other devices that were signed out.
    other_sessions_revoked: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordResetRequest {
    /// The mobile number (E.164) or e-mail address the wallet signs in with.
    contact: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PasswordResetResponse {
    reset_id: String,
    sent_to: String,
    expires_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordResetCompleteRequest {
    /// The code sent to the contact.
    code: String,
    /// NIST SP 800-63B: 8 to 128 characters, not common or breached, not the contact.
    new_password: String,
    /// Required when the wallet has an authenticator app: a current code from it, or a recovery code.
    #[serde(default)]
    totp_code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PasswordResetDoneResponse {
    reset: bool,
    /// Every session was signed out; sign in with the new password.
    sessions_revoked: u64,
}

#[utoipa::path(
    get,
    path = "/v1/me/profile",
    tag = "customers",
    summary = "The profile",
    description = "Display name, masked contact, KYC tier and status of the signed-in customer.",
    responses(
        (status = 200, description = "The profile.", body = ProfileResponse),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn profile(State(state): State<AppState>, session: CustomerSession) -> Response {
    let identity = state.identity.clone();
    let customer_id = session.info.customer_id.clone();
    match blocking_identity(move || identity.customer(&customer_id)).await {
        Ok(customer) => json_response(
            StatusCode::OK,
            &ProfileResponse {
                customer: customer_body(&customer),
            },
        ),
        Err(response) => response,
    }
}

#[utoipa::path(
    post,
    path = "/v1/me/profile",
    tag = "customers",
    summary = "Edit the profile",
    description = "Sets the display name (1 to 64 characters, as at registration). The answer carries no personal data, because it is kept for replay under the Idempotency-Key; read the profile back with GET /v1/me/profile.",
    params(IdempotencyKey),
    request_body = ProfileRequest,
    responses(
        (status = 200, description = "Updated."),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`: a cookie-authenticated change from another site.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`display_name`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`: a dependency is down; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn update_profile(
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
        "update_profile",
        &body,
        || async {
            let request: ProfileRequest = parse(&body)?;
            let identity = state.identity.clone();
            let session = session.clone();
            identity_call(move || {
                identity.update_profile(&session.info, &request.display_name, &session.context)
            })
            .await?;
            Ok((StatusCode::OK, r#"{"updated":true}"#.to_string()))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/me/contact/change",
    tag = "customers",
    summary = "Start a contact change",
    description = "Moving the sign-in to another mobile number or e-mail address needs two codes: one is sent to the current contact, one to the new one; confirm with both within ten minutes. If the new contact already has a wallet, the answer is the same (its owner gets a notice instead of a code, and the change can never complete).",
    params(IdempotencyKey),
    request_body = ContactChangeRequest,
    responses(
        (status = 202, description = "The two codes are on their way.", body = ContactChangeResponse),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`: a cookie-authenticated change from another site.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`new_contact`: malformed, or already this customer's), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`: a dependency is down; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn start_contact_change(
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
        "start_contact_change",
        &body,
        || async {
            let request: ContactChangeRequest = parse(&body)?;
            let identity = state.identity.clone();
            let session = session.clone();
            let change = identity_call(move || {
                identity.start_contact_change(&session.info, &request.new_contact, &session.context)
            })
            .await?;
            state.dispatcher.nudge();
            to_json(
                StatusCode::ACCEPTED,
                &ContactChangeResponse {
                    change_id: change.change_id,
                    old_sent_to: change.old_sent_to,
                    new_sent_to: change.new_sent_to,
                    expires_at: Timestamp::from_nanos(change.expires_at).to_rfc3339(),
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/me/contact/change/{id}/confirm",
    tag = "customers",
    summary = "Confirm a contact change",
    description = "Both codes. The customer then signs in with the new contact only, and the old one is told. A change is single-use, lives ten minutes and dies after five wrong tries; a wrong answer does not say which code was wrong.",
    params(("id" = String, Path, description = "The change id."), IdempotencyKey),
    request_body = ContactChangeConfirmRequest,
    responses(
        (status = 200, description = "The contact was changed.", body = ContactChangedResponse),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`: a cookie-authenticated change from another site.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`code_invalid` (a code is wrong, or the change expired, was used or is not yours), `invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`: a dependency is down; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn confirm_contact_change(
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
        &format!("confirm_contact_change:{id}"),
        &body,
        || async {
            let request: ContactChangeConfirmRequest = parse(&body)?;
            let identity = state.identity.clone();
            let session = session.clone();
            // Deliberately not saying which of the two codes was wrong.
            let customer = identity_call_renaming(&[("code", None)], move || {
                identity.confirm_contact_change(
                    &session.info,
                    &id,
                    &Secret::new(request.old_code),
                    &Secret::new(request.new_code),
                    &session.context,
                )
            })
            .await?;
            state.dispatcher.nudge();
            to_json(
                StatusCode::OK,
                &ContactChangedResponse {
                    contact: customer.contact_masked,
                    contact_kind: customer.contact_kind.as_str(),
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/me/password",
    tag = "customers",
    summary = "Change the password",
    description = "The current password and a new one (NIST SP 800-63B). Signs out every other device and tells the customer. Wrong current passwords count against the same budget as sign-in, with the same back-off and lock-out.",
    params(IdempotencyKey),
    request_body = PasswordChangeRequest,
    responses(
        (status = 200, description = "Changed; this session stays signed in.", body = PasswordChangedResponse),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`: no live session (bearer `cs_…` token or `coffer_session` cookie).", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`: a cookie-authenticated change from another site.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`current_password_wrong` (`current_password`), `weak_password` (`new_password`), `invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`: a dependency is down; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn change_password(
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
        "change_password",
        &body,
        || async {
            let request: PasswordChangeRequest = parse(&body)?;
            let identity = state.identity.clone();
            let session = session.clone();
            let revoked = identity_call_renaming(NEW_PASSWORD_FIELD, move || {
                identity.change_password(
                    &session.info,
                    &Secret::new(request.current_password),
                    &Secret::new(request.new_password),
                    &session.context,
                )
            })
            .await?;
            state.dispatcher.nudge();
            to_json(
                StatusCode::OK,
                &PasswordChangedResponse {
                    changed: true,
                    other_sessions_revoked: revoked,
                },
            )
        },
    )
    .await
}

/// Anonymous callers share a key space per address; keys should be UUIDs.
fn anonymous_principal(context: &Context) -> crate::auth::Principal {
    crate::auth::Principal {
        key_id: format!("anonymous:{}", context.ip),
        scopes: vec!["public".into()],
    }
}

#[utoipa::path(
    post,
    path = "/v1/auth/password-reset",
    tag = "customers",
    summary = "Start a password reset",
    description = "Sends a code to the mobile number or e-mail address if it has a wallet, and nothing otherwise; the answer is the same either way. Works while sign-in is locked: completing the reset lifts the lock.",
    params(IdempotencyKey),
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "If the contact has a wallet, a code is on its way.", body = PasswordResetResponse),
        (status = 400, response = BadRequest),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`contact`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many resets for this contact; see Retry-After.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`: a dependency is down; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn start_password_reset(
    State(state): State<AppState>,
    Client(context): Client,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = anonymous_principal(&context);
    idempotency::run_private(
        &state,
        &principal,
        "public",
        &headers,
        "start_password_reset",
        &body,
        || async {
            let request: PasswordResetRequest = parse(&body)?;
            let identity = state.identity.clone();
            let reset =
                identity_call(move || identity.start_password_reset(&request.contact, &context))
                    .await?;
            state.dispatcher.nudge();
            to_json(
                StatusCode::ACCEPTED,
                &PasswordResetResponse {
                    reset_id: reset.reset_id,
                    sent_to: reset.sent_to,
                    expires_at: Timestamp::from_nanos(reset.expires_at).to_rfc3339(),
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/auth/password-reset/{id}/complete",
    tag = "customers",
    summary = "Complete a password reset",
    description = "The code and a new password (NIST SP 800-63B); for a wallet with an authenticator app also `totp_code`, a current code from it or a recovery code, because the code by SMS alone is what a SIM swap gets. Sets the password, signs out every session, lifts the sign-in lock of the contact and tells the customer. Does not sign in.",
    params(("id" = String, Path, description = "The reset id."), IdempotencyKey),
    request_body = PasswordResetCompleteRequest,
    responses(
        (status = 200, description = "The password was reset; sign in with it.", body = PasswordResetDoneResponse),
        (status = 400, response = BadRequest),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`code_invalid` (wrong, expired or used code), `weak_password` (`new_password`), `second_factor_required` or `second_factor_invalid` (`totp_code`), `invalid_field`, `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`: a dependency is down; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn complete_password_reset(
    State(state): State<AppState>,
    Client(context): Client,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    let principal = anonymous_principal(&context);
    idempotency::run_private(
        &state,
        &principal,
        "public",
        &headers,
        &format!("complete_password_reset:{id}"),
        &body,
        || async {
            let request: PasswordResetCompleteRequest = parse(&body)?;
            let identity = state.identity.clone();
            let revoked = identity_call_renaming(NEW_PASSWORD_FIELD, move || {
                identity.complete_password_reset(
                    &id,
                    &Secret::new(request.code),
                    &Secret::new(request.new_password),
                    request.totp_code.map(Secret::new).as_ref(),
                    &context,
                )
            })
            .await?;
            state.dispatcher.nudge();
            to_json(
                StatusCode::OK,
                &PasswordResetDoneResponse {
                    reset: true,
                    sessions_revoked: revoked,
                },
            )
        },
    )
    .await
}

// ---- know your customer ------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentityRequest {
    /// The name exactly as on the ID.
    full_name: String,
    /// `cn_resident` (居民身份证, 18 characters with its check character) or `passport`.
    id_type: String,
    id_number: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocumentsRequest {
    /// `passport`, `cn_resident` or `residence_permit`.
    document_type: String,
    document_number: String,
    /// The stored selfie's reference, from the upload step of the app.
    selfie_reference: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct KycResponse {
    /// `verified` or `in_review`.
    status: &'static str,
    kyc_tier: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    review_id: Option<String>,
}

fn kyc_answer(outcome: coffer_identity::KycOutcome, tier: i64) -> (StatusCode, String) {
    let (status, body) = match outcome {
        coffer_identity::KycOutcome::Verified { tier } => (
            StatusCode::OK,
            KycResponse {
                status: "verified",
                kyc_tier: tier,
                review_id: None,
            },
        ),
        coffer_identity::KycOutcome::InReview { review_id } => (
            StatusCode::ACCEPTED,
            KycResponse {
                status: "in_review",
                kyc_tier: tier,
                review_id: Some(review_id),
            },
        ),
    };
    (
        status,
        serde_json::to_string(&body).unwrap_or_else(|_| "{}".into()),
    )
}

#[utoipa::path(
    post,
    path = "/v1/me/kyc/identity",
    tag = "customers",
    summary = "Verify identity (KYC tier 1)",
    description = "Name and national ID number, checked with the identity provider: 200 `verified` raises the wallet to tier 1; 202 `in_review` queues it for staff; a mismatch is 422. One identity backs one wallet.",
    params(IdempotencyKey),
    request_body = IdentityRequest,
    responses(
        (status = 200, description = "Verified: tier 1.", body = KycResponse),
        (status = 202, description = "Queued for staff review.", body = KycResponse),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`conflict` (identity already backs another wallet, or a review is pending), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`full_name`, `id_type`, `id_number`: malformed or not verified), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`: the identity provider did not answer; retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn verify_identity(
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
        "kyc_identity",
        &body,
        || async {
            let request: IdentityRequest = parse(&body)?;
            let id_type = coffer_identity::IdType::parse(&request.id_type).ok_or_else(|| {
                ApiError::invalid("id_type", "id_type is cn_resident or passport")
            })?;
            let identity = state.identity.clone();
            let provider = state.provider.clone();
            let session = session.clone();
            let (outcome, tier) = identity_call(move || {
                let outcome = identity.verify_identity(
                    &session.info,
                    provider.as_ref(),
                    &Secret::new(request.full_name),
                    id_type,
                    &Secret::new(request.id_number),
                    &session.context,
                )?;
                let tier = identity.customer(&session.info.customer_id)?.tier;
                Ok((outcome, tier))
            })
            .await?;
            Ok(kyc_answer(outcome, tier))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/me/kyc/documents",
    tag = "customers",
    summary = "Submit documents (KYC tier 2)",
    description = "A document and a selfie for staff to review; needs tier 1. Answers 202 `in_review`.",
    params(IdempotencyKey),
    request_body = DocumentsRequest,
    responses(
        (status = 202, description = "Queued for staff review.", body = KycResponse),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`conflict` (a review is pending), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`tier`, `document_type`, `document_number`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn submit_documents(
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
        "kyc_documents",
        &body,
        || async {
            let request: DocumentsRequest = parse(&body)?;
            let identity = state.identity.clone();
            let session = session.clone();
            let (outcome, tier) = identity_call(move || {
                let outcome = identity.submit_documents(
                    &session.info,
                    &request.document_type,
                    &Secret::new(request.document_number),
                    &request.selfie_reference,
                    &session.context,
                )?;
                let tier = identity.customer(&session.info.customer_id)?.tier;
                Ok((outcome, tier))
            })
            .await?;
            Ok(kyc_answer(outcome, tier))
        },
    )
    .await
}

// ---- linked cards ----------------------------------------------------------------

impl From<coffer_payments::CardError> for ApiError {
    fn from(error: coffer_payments::CardError) -> ApiError {
        use coffer_payments::CardError;
        let status = match &error {
            CardError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            CardError::AlreadyLinked | CardError::TooMany => StatusCode::CONFLICT,
            CardError::NotFound => StatusCode::NOT_FOUND,
            CardError::Store(_) | CardError::Vault(_) | CardError::Audit(_) => {
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkCardRequest {
    /// The card number (12 to 19 digits, Luhn-checked). Stored only encrypted.
    number: String,
    expiry_month: i64,
    expiry_year: i64,
    /// Checked with the issuer when linking; never stored anywhere.
    cvv: String,
    /// debit, credit, prepaid or gift.
    funding: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CardBody {
    id: String,
    brand: &'static str,
    funding: String,
    /// The last four digits: all of the number that is ever shown.
    last4: String,
    expiry_month: i64,
    expiry_year: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CardsResponse {
    data: Vec<CardBody>,
}

fn card_body(card: coffer_payments::CardView) -> CardBody {
    CardBody {
        id: card.id,
        brand: card.brand,
        funding: card.funding,
        last4: card.last4,
        expiry_month: card.expiry_month,
        expiry_year: card.expiry_year,
    }
}

/// (year, month) today, for expiry checks.
fn year_month(nanos: i64) -> (i64, i64) {
    let text = Timestamp::from_nanos(nanos).to_rfc3339();
    let year = text.get(0..4).and_then(|y| y.parse().ok()).unwrap_or(1970);
    let month = text.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    (year, month)
}

#[utoipa::path(
    post,
    path = "/v1/me/cards",
    tag = "customers",
    summary = "Link a card",
    description = "Debit, credit, prepaid or gift card. The number is Luhn-checked, stored only encrypted, and shown only as brand and last four; the CVV is checked at linking and never stored. The idempotency fingerprint of this request is a keyed hash (the body holds the card number).",
    params(IdempotencyKey),
    request_body = LinkCardRequest,
    responses(
        (status = 201, description = "Linked.", body = CardBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`card_already_linked`, `too_many_cards`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`number`, `expiry_month`, `expiry_year`, `cvv`, `funding`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn link_card(
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
        "link_card",
        &body,
        || async {
            let request: LinkCardRequest = parse(&body)?;
            let cards = state.cards.clone();
            let now = state.clock.now().as_nanos();
            let session = session.clone();
            let card = tokio::task::spawn_blocking(move || {
                cards.link(
                    &session.info.customer_id,
                    coffer_payments::NewCard {
                        number: Secret::new(request.number),
                        expiry_month: request.expiry_month,
                        expiry_year: request.expiry_year,
                        cvv: Secret::new(request.cvv),
                        funding: request.funding,
                    },
                    year_month(now),
                    &session.context.ip,
                    now,
                )
            })
            .await
            .map_err(ApiError::internal)??;
            to_json(StatusCode::CREATED, &card_body(card))
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/me/cards",
    tag = "customers",
    summary = "Linked cards",
    description = "Brand, funding, last four and expiry of each active card.",
    responses(
        (status = 200, description = "The cards.", body = CardsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_cards(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Response {
    let cards = state.cards.clone();
    match tokio::task::spawn_blocking(move || cards.list(&session.info.customer_id)).await {
        Ok(Ok(list)) => json_response(
            StatusCode::OK,
            &CardsResponse {
                data: list.into_iter().map(card_body).collect(),
            },
        ),
        Ok(Err(error)) => ApiError::from(error).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

#[utoipa::path(
    post,
    path = "/v1/me/cards/{id}/remove",
    tag = "customers",
    summary = "Remove a card",
    params(("id" = String, Path, description = "The card id."), IdempotencyKey),
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
pub(crate) async fn remove_card(
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
        &format!("remove_card:{id}"),
        &body,
        || async {
            let cards = state.cards.clone();
            let now = state.clock.now().as_nanos();
            let session = session.clone();
            tokio::task::spawn_blocking(move || {
                cards.remove(&session.info.customer_id, &id, &session.context.ip, now)
            })
            .await
            .map_err(ApiError::internal)??;
            Ok((StatusCode::OK, r#"{"removed":true}"#.to_string()))
        },
    )
    .await
}

// ---- passkeys --------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub(crate) struct CeremonyResponse {
    ceremony_id: String,
    /// Pass to `navigator.credentials.create()` / `.get()` as is.
    #[schema(value_type = Object)]
    options: serde_json::Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FinishRegistrationRequest {
    /// The `PublicKeyCredential` the browser returned, as JSON.
    #[schema(value_type = Object)]
    credential: serde_json::Value,
    /// A name for the device, e.g. "My phone".
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasskeyAssertionRequest {
    /// The `PublicKeyCredential` the browser returned, as JSON.
    #[schema(value_type = Object)]
    credential: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PasskeyBody {
    id: String,
    name: String,
    created_at: String,
    last_used_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PasskeysResponse {
    data: Vec<PasskeyBody>,
}

fn passkey_body(view: coffer_identity::PasskeyView) -> PasskeyBody {
    PasskeyBody {
        id: view.id,
        name: view.name,
        created_at: Timestamp::from_nanos(view.created_at).to_rfc3339(),
        last_used_at: view
            .last_used_at
            .map(|t| Timestamp::from_nanos(t).to_rfc3339()),
    }
}

fn credential<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::invalid("credential", format!("not a WebAuthn credential: {e}")))
}

#[utoipa::path(
    post,
    path = "/v1/me/passkeys/registration",
    tag = "customers",
    summary = "Start adding a passkey",
    description = "Needs a verified step-up for operation `passkey_change`, amount 0, currency CNY, payee `passkeys` (spent here: one step-up, one ceremony). Options for `navigator.credentials.create()`; user verification (fingerprint, face, PIN) is required. Answer within five minutes.",
    params(IdempotencyKey),
    request_body = crate::passkey_routes::PasskeyStepUp,
    responses(
        (status = 201, description = "The ceremony.", body = CeremonyResponse),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`step_up_required`, `csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`conflict` (too many passkeys), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn start_passkey_registration(
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
        "passkey_registration",
        &body,
        || async {
            let request: crate::passkey_routes::PasskeyStepUp = parse(&body)?;
            let identity = state.identity.clone();
            let session = session.clone();
            let (ceremony_id, options) = identity_call(move || {
                identity.start_passkey_registration(&session.info, &request.step_up_challenge_id)
            })
            .await?;
            let options = serde_json::to_value(&options).map_err(ApiError::internal)?;
            to_json(
                StatusCode::CREATED,
                &CeremonyResponse {
                    ceremony_id,
                    options,
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/me/passkeys/registration/{id}/finish",
    tag = "customers",
    summary = "Finish adding a passkey",
    description = "The authenticator's answer; verified (origin, challenge, signature) before the passkey is stored. The customer is alerted.",
    params(("id" = String, Path, description = "The ceremony id."), IdempotencyKey),
    request_body = FinishRegistrationRequest,
    responses(
        (status = 201, description = "Added.", body = PasskeyBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`conflict` (already registered), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`challenge_invalid` (expired or used), `invalid_field` (`credential`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn finish_passkey_registration(
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
        &format!("passkey_finish:{id}"),
        &body,
        || async {
            let request: FinishRegistrationRequest = parse(&body)?;
            let credential: coffer_identity::webauthn::RegisterPublicKeyCredential =
                credential(request.credential)?;
            let identity = state.identity.clone();
            let session = session.clone();
            let view = identity_call(move || {
                identity.finish_passkey_registration(
                    &session.info,
                    &id,
                    &credential,
                    &request.name,
                    &session.context,
                )
            })
            .await?;
            state.dispatcher.nudge();
            to_json(StatusCode::CREATED, &passkey_body(view))
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/me/passkeys",
    tag = "customers",
    summary = "Registered passkeys",
    responses(
        (status = 200, description = "The passkeys.", body = PasskeysResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_passkeys(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Response {
    let identity = state.identity.clone();
    match blocking_identity(move || identity.passkeys(&session.info)).await {
        Ok(list) => json_response(
            StatusCode::OK,
            &PasskeysResponse {
                data: list.into_iter().map(passkey_body).collect(),
            },
        ),
        Err(response) => response,
    }
}

#[utoipa::path(
    post,
    path = "/v1/auth/passkeys/challenges",
    tag = "customers",
    summary = "Start a passkey sign-in",
    description = "Options for `navigator.credentials.get()`. Names no account: the device offers its passkey and the server finds whose it is.",
    params(IdempotencyKey),
    responses(
        (status = 201, description = "The ceremony.", body = CeremonyResponse),
        (status = 400, response = BadRequest),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn start_passkey_sign_in(
    State(state): State<AppState>,
    Client(context): Client,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = crate::auth::Principal {
        key_id: format!("anonymous:{}", context.ip),
        scopes: vec!["public".into()],
    };
    idempotency::run(
        &state,
        &principal,
        "public",
        &headers,
        "passkey_sign_in",
        &body,
        || async {
            let identity = state.identity.clone();
            let (ceremony_id, options) =
                identity_call(move || identity.start_passkey_sign_in()).await?;
            let options = serde_json::to_value(&options).map_err(ApiError::internal)?;
            to_json(
                StatusCode::CREATED,
                &CeremonyResponse {
                    ceremony_id,
                    options,
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/auth/passkeys/challenges/{id}/verify",
    tag = "customers",
    summary = "Sign in with a passkey",
    description = "The device's signed answer. A passkey with user verification is possession and biometrics together, so no second factor is asked. Not replayed by Idempotency-Key (the answer carries a session token); a ceremony verifies once.",
    params(("id" = String, Path, description = "The ceremony id.")),
    request_body = PasskeyAssertionRequest,
    responses(
        (status = 201, description = "Signed in; also sets the `coffer_session` cookie.", body = SessionResponse),
        (status = 400, response = BadRequest),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`challenge_invalid`, `invalid_field` (`credential`: did not verify).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    )
)]
pub(crate) async fn verify_passkey_sign_in(
    State(state): State<AppState>,
    Client(context): Client,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    let request: PasskeyAssertionRequest = match parse(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let assertion: coffer_identity::webauthn::PublicKeyCredential =
        match credential(request.credential) {
            Ok(assertion) => assertion,
            Err(error) => return error.into_response(),
        };
    let identity = state.identity.clone();
    match blocking_identity(move || identity.finish_passkey_sign_in(&id, &assertion, &context))
        .await
    {
        Ok(session) => session_created(&state, &session),
        Err(response) => response,
    }
}
