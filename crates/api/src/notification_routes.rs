//! Notifications over HTTP: the customer's in-app inbox and alert
//! preferences (`/v1/me/notifications…`, `/v1/me/notification-preferences`),
//! the staff dead-letter list (`/v1/staff/notifications/dead-letters…`) and
//! a merchant's webhook delivery log (`/v1/merchant/webhook-deliveries`).
//! The work is in `coffer_notify`; handlers parse, run it in one SQL
//! transaction off the async workers, and map its answer.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_core::Timestamp;
use coffer_notify::alerts::Bilingual;
use coffer_notify::preferences::{self, Category, Language, Update};
use coffer_notify::{inbox, NotifyError};
use coffer_payments::{CampaignError, CampaignView, Segment};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::body::{parse, RawBody};
use crate::customer_routes::{customer_principal, CustomerSession};
use crate::error::ApiError;
use crate::idempotency;
use crate::merchant_routes::MerchantCaller;
use crate::openapi::params::IdempotencyKey;
use crate::openapi::{BadRequest, BodyTooLarge, Internal};
use crate::path_id::PathId;
use crate::respond::{blocking_call, json_response, to_json};
use crate::route_table::RouteTable;
use crate::staff_routes::StaffSession;
use crate::AppState;

pub fn routes() -> RouteTable {
    RouteTable::default()
        .get("/v1/me/notifications", list_notifications)
        .get("/v1/me/notifications/unread-count", unread_count)
        .post("/v1/me/notifications/{id}/read", mark_read)
        .post("/v1/me/notifications/read-all", mark_all_read)
        .get("/v1/me/notification-preferences", get_preferences)
        .post("/v1/me/notification-preferences", update_preferences)
        .get("/v1/staff/notifications/dead-letters", list_dead_letters)
        .post(
            "/v1/staff/notifications/dead-letters/{id}/requeue",
            requeue_dead_letter,
        )
        .get("/v1/merchant/webhook-deliveries", webhook_deliveries)
        .post("/v1/staff/campaigns", create_campaign)
        .get("/v1/staff/campaigns", list_campaigns)
        .get("/v1/staff/campaigns/{id}", get_campaign)
}

impl From<CampaignError> for ApiError {
    fn from(error: CampaignError) -> ApiError {
        match error {
            CampaignError::Invalid { field, message } => ApiError::invalid(field, message),
            CampaignError::NotFound => ApiError::not_found("campaign"),
            CampaignError::AlreadySent => ApiError::new(
                StatusCode::CONFLICT,
                "campaign_already_sent",
                "the campaign was sent already",
            ),
            CampaignError::Identity(error) => error.into(),
            CampaignError::Notify(error) => error.into(),
            CampaignError::Store(_) | CampaignError::Vault(_) | CampaignError::Audit(_) => {
                ApiError::internal(error)
            }
        }
    }
}

impl From<NotifyError> for ApiError {
    fn from(error: NotifyError) -> ApiError {
        match error {
            NotifyError::Invalid(field, message) => ApiError::invalid(field, message),
            NotifyError::NotFound(what) => ApiError::not_found(what),
            NotifyError::Store(_) | NotifyError::Vault(_) | NotifyError::Audit(_) => {
                ApiError::internal(error)
            }
        }
    }
}

fn rfc3339(nanos: i64) -> String {
    Timestamp::from_nanos(nanos).to_rfc3339()
}

/// A positive integer query value within `1..=max`, or the default.
fn bounded(field: &str, text: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match text {
        None => Ok(default),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::invalid(field, format!("an integer from 1 to {max}"))),
    }
}

/// A notification id (a positive integer) from the path.
fn notification_id(PathId(text): PathId) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found("notification"))
}

// ---- shapes ------------------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct InboxQuery {
    /// Items older than this one: the `next_cursor` of the previous page.
    #[param(value_type = Option<i64>, minimum = 1)]
    before: Option<String>,
    /// At most this many, newest first (1 to 100; default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `true`: unread items only.
    #[param(value_type = Option<bool>)]
    unread: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct NotificationBody {
    id: i64,
    /// `payment_received`, `payment_sent`, `payment_request`, `low_balance`,
    /// `marketing`, `security` or `support` (the bank answered a ticket).
    category: String,
    /// What kind of alert (`p2p_received`, `large_payment`, `account_locked`…).
    template: String,
    /// `en` or `zh-CN`: the customer's language when they look.
    language: &'static str,
    title: String,
    body: String,
    created_at: String,
    /// Null while unread.
    read_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct InboxResponse {
    data: Vec<NotificationBody>,
    /// Pass as `before` for the next (older) page; null at the end.
    next_cursor: Option<i64>,
    unread_count: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct UnreadBody {
    unread_count: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MarkedBody {
    /// Items this request marked read (0 for a repeat).
    marked: u64,
    unread_count: i64,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreferenceBody {
    /// `payment_received`, `payment_sent`, `payment_request`, `low_balance`
    /// or `marketing` (security alerts cannot be switched off).
    category: String,
    /// `inbox`, `sms` or `email`.
    channel: String,
    enabled: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MarketingConsentRequest {
    /// `true` to receive marketing (explicit opt-in), `false` to withdraw.
    opt_in: bool,
    /// Where the customer decided: `app`, `web`, `branch`… (1 to 32 of
    /// letters, digits, `-`, `_`).
    source: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreferencesRequest {
    /// `en` or `zh-CN`.
    #[serde(default)]
    language: Option<String>,
    /// The switches to set; those not named stay as they are.
    #[serde(default)]
    preferences: Vec<PreferenceBody>,
    #[serde(default)]
    marketing: Option<MarketingConsentRequest>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PreferencesResponse {
    language: &'static str,
    /// Marketing only with this explicit consent (off by default).
    marketing_opt_in: bool,
    marketing_source: Option<String>,
    marketing_changed_at: Option<String>,
    /// Every category × channel a customer can switch.
    preferences: Vec<PreferenceBody>,
    /// Alerts sent whatever the preferences say: new device, lock-out,
    /// large payment, freeze, password or contact change.
    always_sent: Vec<&'static str>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeadLetterQuery {
    /// Dead letters after this id (the last id of the previous page).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
    /// At most this many, oldest first (1 to 100; default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeadLetterBody {
    id: i64,
    /// `sms`, `email` or `webhook`.
    channel: String,
    recipient_masked: String,
    customer_id: Option<String>,
    template: String,
    attempts: i64,
    last_error: Option<String>,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeadLettersResponse {
    data: Vec<DeadLetterBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RequeuedBody {
    id: i64,
    /// `false` when it was not dead any more (a repeat): nothing changed.
    requeued: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveriesQuery {
    /// Deliveries older than this id (the `next_cursor` of the previous page).
    #[param(value_type = Option<i64>, minimum = 1)]
    before: Option<String>,
    /// At most this many, newest first (1 to 100; default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AttemptBody {
    attempt: i64,
    at: String,
    /// `sent` (your endpoint answered 2xx) or `failed`.
    outcome: String,
    /// Why it failed: the status your endpoint answered, a timeout…
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryBody {
    id: i64,
    /// The event type (`payment.succeeded`, `refund.succeeded`…).
    event_type: String,
    /// The endpoint's host.
    endpoint: String,
    /// `pending`, `sending`, `sent` or `dead` (no more retries).
    state: String,
    created_at: String,
    sent_at: Option<String>,
    attempts: Vec<AttemptBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveriesResponse {
    data: Vec<DeliveryBody>,
    next_cursor: Option<i64>,
}

fn preferences_body(settings: preferences::Settings) -> PreferencesResponse {
    PreferencesResponse {
        language: settings.language.as_str(),
        marketing_opt_in: settings.marketing_opt_in,
        marketing_source: settings.marketing_source,
        marketing_changed_at: settings.marketing_changed_at.map(rfc3339),
        preferences: settings
            .preferences
            .into_iter()
            .map(|p| PreferenceBody {
                category: p.category.as_str().to_string(),
                channel: p.channel.to_string(),
                enabled: p.enabled,
            })
            .collect(),
        always_sent: vec![
            "new_device",
            "account_locked",
            "large_payment",
            "account_frozen",
            "password_changed",
            "contact_changed",
        ],
    }
}

// ---- the inbox ---------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/v1/me/notifications",
    tag = "notifications",
    summary = "Your notifications",
    description = "The in-app inbox, newest first, in your language (`en` or `zh-CN`, from your preferences), with the unread count. Page with `before` = the previous page's `next_cursor`.",
    params(InboxQuery),
    responses(
        (status = 200, description = "A page of notifications.", body = InboxResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`before`, `limit`, `unread`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_notifications(
    State(state): State<AppState>,
    session: CustomerSession,
    query: Result<Query<InboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("limit", e.body_text()))?;
    let limit = bounded("limit", query.limit.as_deref(), 20, inbox::PAGE_MAX)?;
    let before = match query.before.as_deref() {
        None => None,
        Some(text) => Some(bounded("before", Some(text), 1, i64::MAX)?),
    };
    let unread = match query.unread.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("unread", "true or false")),
    };
    let (sql, vault) = (state.sql.clone(), state.vault.clone());
    let customer = session.info.customer_id.clone();
    let page = blocking_call(move || {
        sql.transaction(|db| inbox::list(db, &vault, &customer, before, limit, unread))
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &InboxResponse {
            data: page
                .items
                .into_iter()
                .map(|i| NotificationBody {
                    id: i.id,
                    category: i.category,
                    template: i.template,
                    language: i.language.as_str(),
                    title: i.title,
                    body: i.body,
                    created_at: rfc3339(i.created_at),
                    read_at: i.read_at.map(rfc3339),
                })
                .collect(),
            next_cursor: page.next_cursor,
            unread_count: page.unread,
        },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/me/notifications/unread-count",
    tag = "notifications",
    summary = "Unread notifications",
    description = "How many inbox items are unread (for a badge).",
    responses(
        (status = 200, description = "The count.", body = UnreadBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn unread_count(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Result<Response, ApiError> {
    let sql = state.sql.clone();
    let customer = session.info.customer_id.clone();
    let unread_count =
        blocking_call(move || sql.transaction(|db| inbox::unread_count(db, &customer))).await?;
    Ok(json_response(StatusCode::OK, &UnreadBody { unread_count }))
}

#[utoipa::path(
    post,
    path = "/v1/me/notifications/{id}/read",
    tag = "notifications",
    summary = "Mark a notification read",
    description = "Marks one inbox item read; marking it again changes nothing.",
    params(("id" = i64, Path, description = "The notification id."), IdempotencyKey),
    responses(
        (status = 200, description = "Read.", body = MarkedBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such notification of yours.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn mark_read(
    State(state): State<AppState>,
    session: CustomerSession,
    id: PathId,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let route = format!("mark_notification_read:{}", id.0);
    let id = notification_id(id);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        &route,
        &body,
        || async {
            let id = id?;
            let sql = state.sql.clone();
            let customer = session.info.customer_id.clone();
            let now = state.clock.now().as_nanos();
            let unread_count = blocking_call(move || {
                sql.transaction(|db| {
                    let before = inbox::unread_count(db, &customer)?;
                    inbox::mark_read(db, &customer, id, now)?;
                    let after = inbox::unread_count(db, &customer)?;
                    Ok::<_, NotifyError>((before - after, after))
                })
            })
            .await?;
            to_json(
                StatusCode::OK,
                &MarkedBody {
                    marked: u64::try_from(unread_count.0).unwrap_or(0),
                    unread_count: unread_count.1,
                },
            )
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/me/notifications/read-all",
    tag = "notifications",
    summary = "Mark every notification read",
    params(IdempotencyKey),
    responses(
        (status = 200, description = "Read.", body = MarkedBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn mark_all_read(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        "mark_all_notifications_read",
        &body,
        || async {
            let sql = state.sql.clone();
            let customer = session.info.customer_id.clone();
            let now = state.clock.now().as_nanos();
            let marked = blocking_call(move || {
                sql.transaction(|db| inbox::mark_all_read(db, &customer, now))
            })
            .await?;
            to_json(
                StatusCode::OK,
                &MarkedBody {
                    marked,
                    unread_count: 0,
                },
            )
        },
    )
    .await
}

// ---- preferences -------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/v1/me/notification-preferences",
    tag = "notifications",
    summary = "Your alert preferences",
    description = "Your language, your marketing consent, and which alerts you get on which channel. Security alerts always go out.",
    responses(
        (status = 200, description = "The preferences.", body = PreferencesResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn get_preferences(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Result<Response, ApiError> {
    let sql = state.sql.clone();
    let customer = session.info.customer_id.clone();
    let settings =
        blocking_call(move || sql.transaction(|db| preferences::settings(db, &customer))).await?;
    Ok(json_response(StatusCode::OK, &preferences_body(settings)))
}

#[utoipa::path(
    post,
    path = "/v1/me/notification-preferences",
    tag = "notifications",
    summary = "Change your alert preferences",
    description = "Sets the language, the switches named (others stay) and, with `marketing`, records an explicit marketing consent or its withdrawal (with its time and source; audited). Setting a value to what it is changes nothing. Security alerts cannot be switched off (`invalid_field`).",
    params(IdempotencyKey),
    request_body = PreferencesRequest,
    responses(
        (status = 200, description = "The preferences now.", body = PreferencesResponse),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`language`, `preferences`, `source`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn update_preferences(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        "update_notification_preferences",
        &body,
        || async {
            let request: PreferencesRequest = parse(&body)?;
            let language = match request.language.as_deref() {
                None => None,
                Some(text) => Some(
                    Language::parse(text)
                        .ok_or_else(|| ApiError::invalid("language", "en or zh-CN"))?,
                ),
            };
            let mut switches = Vec::new();
            for p in request.preferences {
                let category = Category::parse(&p.category).ok_or_else(|| {
                    ApiError::invalid("preferences", format!("unknown category {:?}", p.category))
                })?;
                switches.push((category, p.channel, p.enabled));
            }
            let update = Update {
                language,
                preferences: switches,
            };
            preferences::check(&update)?;
            let sql = state.sql.clone();
            let customer = session.info.customer_id.clone();
            let now = state.clock.now().as_nanos();
            let marketing = request.marketing;
            let settings = blocking_call(move || {
                sql.transaction(|db| {
                    preferences::update(db, &customer, &update, now)?;
                    if let Some(m) = &marketing {
                        preferences::set_marketing_consent(
                            db, &customer, m.opt_in, &m.source, now,
                        )?;
                    }
                    preferences::settings(db, &customer)
                })
            })
            .await?;
            to_json(StatusCode::OK, &preferences_body(settings))
        },
    )
    .await
}

// ---- staff: dead letters -----------------------------------------------------------

#[utoipa::path(
    get,
    path = "/v1/staff/notifications/dead-letters",
    tag = "staff",
    summary = "Dead-lettered notifications",
    description = "Permission `manage_notifications`. Messages whose every delivery attempt failed, oldest first, with the last error; no recipient or body is shown.",
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "The dead letters.", body = DeadLettersResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`after`, `limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = []))
)]
pub(crate) async fn list_dead_letters(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    session
        .info
        .require(coffer_identity::Permission::ManageNotifications)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("limit", e.body_text()))?;
    let limit = bounded("limit", query.limit.as_deref(), 50, 100)?;
    let after = match query.after.as_deref() {
        None | Some("0") => 0,
        Some(text) => bounded("after", Some(text), 1, i64::MAX)?,
    };
    let sql = state.sql.clone();
    let list =
        blocking_call(move || sql.transaction(|db| coffer_notify::dead_letters(db, after, limit)))
            .await?;
    Ok(json_response(
        StatusCode::OK,
        &DeadLettersResponse {
            data: list
                .into_iter()
                .map(|d| DeadLetterBody {
                    id: d.seq,
                    channel: d.channel,
                    recipient_masked: d.recipient_masked,
                    customer_id: d.customer_id,
                    template: d.template,
                    attempts: d.attempts,
                    last_error: d.last_error,
                    created_at: rfc3339(d.created_at),
                })
                .collect(),
        },
    ))
}

#[utoipa::path(
    post,
    path = "/v1/staff/notifications/dead-letters/{id}/requeue",
    tag = "staff",
    summary = "Re-queue a dead letter",
    description = "Permission `manage_notifications`. Puts the message back in the outbox, due now, with a fresh attempt budget (after the cause, e.g. a merchant's endpoint, is fixed); audited as `notification_requeued`. `requeued` is false when it was not dead any more.",
    params(("id" = i64, Path, description = "The dead letter's id."), IdempotencyKey),
    responses(
        (status = 200, description = "Re-queued.", body = RequeuedBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("staff" = []))
)]
pub(crate) async fn requeue_dead_letter(
    State(state): State<AppState>,
    session: StaffSession,
    id: PathId,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session
        .info
        .require(coffer_identity::Permission::ManageNotifications)
    {
        return ApiError::from(error).into_response();
    }
    let principal = Principal {
        key_id: session.info.actor(),
        scopes: vec!["staff".into()],
    };
    let route = format!("requeue_dead_letter:{}", id.0);
    let id = id.0.parse::<i64>().ok().filter(|n| *n > 0);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "staff",
        &headers,
        &route,
        &body,
        || async {
            let id = id.ok_or_else(|| ApiError::not_found("dead letter"))?;
            let sql = state.sql.clone();
            let (actor, ip) = (session.info.actor(), session.context.ip.clone());
            let now = state.clock.now().as_nanos();
            let requeued = blocking_call(move || {
                sql.transaction(|db| coffer_notify::requeue(db, id, &actor, &ip, now))
            })
            .await?;
            if requeued {
                state.dispatcher.nudge();
            }
            to_json(StatusCode::OK, &RequeuedBody { id, requeued })
        },
    )
    .await
}

// ---- merchants: the webhook delivery log -------------------------------------------

#[utoipa::path(
    get,
    path = "/v1/merchant/webhook-deliveries",
    tag = "merchants",
    summary = "Webhook deliveries",
    description = "Every webhook sent to your endpoint, newest first, with each attempt (time, outcome, why it failed). A delivery retries with exponential back-off and jitter up to 8 attempts, then is `dead`; ask the bank to re-queue it once your endpoint is fixed.",
    params(DeliveriesQuery),
    responses(
        (status = 200, description = "The deliveries.", body = DeliveriesResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`: not a merchant's key.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`before`, `limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn webhook_deliveries(
    State(state): State<AppState>,
    caller: MerchantCaller,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("limit", e.body_text()))?;
    let limit = bounded("limit", query.limit.as_deref(), 20, 100)?;
    let before = match query.before.as_deref() {
        None => i64::MAX,
        Some(text) => bounded("before", Some(text), 1, i64::MAX)?,
    };
    let sql = state.sql.clone();
    let merchant = caller.merchant_id.clone();
    let list = blocking_call(move || {
        sql.transaction(|db| coffer_notify::deliveries_for_owner(db, &merchant, before, limit + 1))
    })
    .await?;
    let more = list.len() > usize::try_from(limit).unwrap_or(0);
    let data: Vec<DeliveryBody> = list
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|d| DeliveryBody {
            id: d.seq,
            event_type: d.template,
            endpoint: d.endpoint,
            state: d.state,
            created_at: rfc3339(d.created_at),
            sent_at: d.sent_at.map(rfc3339),
            attempts: d
                .attempts
                .into_iter()
                .map(|a| AttemptBody {
                    attempt: a.attempt,
                    at: rfc3339(a.at),
                    outcome: a.outcome,
                    error: a.error,
                })
                .collect(),
        })
        .collect();
    let next_cursor = if more {
        data.last().map(|d| d.id)
    } else {
        None
    };
    Ok(json_response(
        StatusCode::OK,
        &DeliveriesResponse { data, next_cursor },
    ))
}

// ---- staff: marketing campaigns ----------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SegmentBody {
    /// KYC tier at least this (0, 1 or 2).
    #[serde(default)]
    kyc_tier_min: Option<i64>,
    /// Some wallet activity in the last N days (1 to 366).
    #[serde(default)]
    active_within_days: Option<i64>,
    /// Spent in this activity category (`food`, `shopping`, `bills`…) …
    #[serde(default)]
    spending_category: Option<String>,
    /// … in the last N days (1 to 366; default 30).
    #[serde(default)]
    spending_within_days: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SegmentView {
    kyc_tier_min: Option<i64>,
    active_within_days: Option<i64>,
    spending_category: Option<String>,
    spending_within_days: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CampaignRequest {
    /// For staff: 1 to 100 characters.
    name: String,
    #[serde(default)]
    segment: Option<SegmentBody>,
    en_title: String,
    en_body: String,
    zh_title: String,
    zh_body: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignBody {
    id: String,
    name: String,
    segment: SegmentView,
    /// `draft`, `sending` or `sent`.
    state: String,
    created_by: String,
    approved_by: Option<String>,
    /// Opted-in customers it would reach if sent now (the preview).
    audience_now: i64,
    /// Customers it was sent to.
    sent_to: Option<i64>,
    created_at: String,
    sent_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignsResponse {
    data: Vec<CampaignBody>,
}

fn campaign_body(view: CampaignView, audience_now: i64) -> CampaignBody {
    CampaignBody {
        id: view.id,
        name: view.name,
        segment: SegmentView {
            kyc_tier_min: view.segment.kyc_tier_min,
            active_within_days: view.segment.active_within_days,
            spending_category: view.segment.spending_category,
            spending_within_days: view.segment.spending_within_days,
        },
        state: view.state,
        created_by: view.created_by,
        approved_by: view.approved_by,
        audience_now,
        sent_to: view.sent_to,
        created_at: rfc3339(view.created_at),
        sent_at: view.sent_at.map(rfc3339),
    }
}

#[utoipa::path(
    post,
    path = "/v1/staff/campaigns",
    tag = "staff",
    summary = "Create a marketing campaign",
    description = "Permission `manage_campaigns`. A draft with its text in English and Chinese and a segment (KYC tier, activity in the last N days, spending category); the answer previews how many opted-in customers it reaches. Audited. To send it, propose `send_campaign` with the campaign id as subject (POST /v1/staff/approvals); a second staff member's approval sends it, through the outbox, only to customers who opted in, each message saying how to unsubscribe.",
    params(IdempotencyKey),
    request_body = CampaignRequest,
    responses(
        (status = 201, description = "The draft and its audience now.", body = CampaignBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`name`, `segment`, `en_title`, `en_body`, `zh_title`, `zh_body`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("staff" = []))
)]
pub(crate) async fn create_campaign(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = session
        .info
        .require(coffer_identity::Permission::ManageCampaigns)
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
        "create_campaign",
        &body,
        || async {
            let request: CampaignRequest = parse(&body)?;
            let segment = request.segment.map_or_else(Segment::default, |s| Segment {
                kyc_tier_min: s.kyc_tier_min,
                active_within_days: s.active_within_days,
                spending_category: s.spending_category,
                spending_within_days: s.spending_within_days,
            });
            let text = Bilingual::new(
                request.en_title,
                request.en_body,
                request.zh_title,
                request.zh_body,
            );
            let campaigns = state.campaigns.clone();
            let (actor, ip) = (session.info.actor(), session.context.ip.clone());
            let (view, audience) = blocking_call(move || {
                let view = campaigns.create(&actor, &ip, &request.name, &segment, &text)?;
                let audience = campaigns.preview(&view.id)?;
                Ok::<_, CampaignError>((view, audience))
            })
            .await?;
            to_json(StatusCode::CREATED, &campaign_body(view, audience))
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/staff/campaigns",
    tag = "staff",
    summary = "Marketing campaigns",
    description = "Permission `manage_campaigns`. Newest first, each with the audience it would reach now.",
    responses(
        (status = 200, description = "The campaigns.", body = CampaignsResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = []))
)]
pub(crate) async fn list_campaigns(
    State(state): State<AppState>,
    session: StaffSession,
) -> Result<Response, ApiError> {
    session
        .info
        .require(coffer_identity::Permission::ManageCampaigns)?;
    let campaigns = state.campaigns.clone();
    let list = blocking_call(move || {
        campaigns
            .list(100)?
            .into_iter()
            .map(|view| {
                let audience = campaigns.preview(&view.id)?;
                Ok(campaign_body(view, audience))
            })
            .collect::<Result<Vec<_>, CampaignError>>()
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &CampaignsResponse { data: list },
    ))
}

#[utoipa::path(
    get,
    path = "/v1/staff/campaigns/{id}",
    tag = "staff",
    summary = "A marketing campaign and its audience preview",
    description = "Permission `manage_campaigns`. `audience_now`: opted-in, active customers the segment matches at this moment.",
    params(("id" = String, Path, description = "The campaign id (`cmp_…`).")),
    responses(
        (status = 200, description = "The campaign.", body = CampaignBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = []))
)]
pub(crate) async fn get_campaign(
    State(state): State<AppState>,
    session: StaffSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    session
        .info
        .require(coffer_identity::Permission::ManageCampaigns)?;
    let campaigns = state.campaigns.clone();
    let (view, audience) = blocking_call(move || {
        let view = campaigns.get(&id)?;
        let audience = campaigns.preview(&view.id)?;
        Ok::<_, CampaignError>((view, audience))
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &campaign_body(view, audience),
    ))
}
