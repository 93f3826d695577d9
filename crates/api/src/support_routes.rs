//! Customer support over HTTP: a customer's tickets (`/v1/me/support/…`:
//! open one, optionally about one of their transactions; list; read the
//! thread; reply; close) and the support queue (`/v1/staff/support/…`,
//! permission `handle_support`: list by state, read, reply, resolve). The
//! work is in `coffer_support`; every staff read and action is audited
//! there with the customer as subject. Write responses never repeat the
//! message (they are stored with the Idempotency-Key, in clear).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_core::Timestamp;
use coffer_identity::Permission;
use coffer_support::{
    AuthorKind, NewTicket, Requester, StaffReply, SupportError, Thread, Ticket, TicketCategory,
    TicketState, MESSAGE_CHARS_MAX, QUEUE_PAGE_MAX,
};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
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

pub fn routes() -> RouteTable {
    RouteTable::default()
        .post("/v1/me/support/tickets", open_ticket)
        .get("/v1/me/support/tickets", my_tickets)
        .get("/v1/me/support/tickets/{id}", my_ticket)
        .post("/v1/me/support/tickets/{id}/messages", customer_reply)
        .post("/v1/me/support/tickets/{id}/close", close_ticket)
        .get("/v1/staff/support/tickets", support_queue)
        .get("/v1/staff/support/tickets/{id}", staff_ticket)
        .post("/v1/staff/support/tickets/{id}/messages", staff_reply)
        .post("/v1/staff/support/tickets/{id}/resolve", resolve_ticket)
}

impl From<SupportError> for ApiError {
    fn from(error: SupportError) -> ApiError {
        let status = match &error {
            SupportError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            SupportError::NotFound(_) => StatusCode::NOT_FOUND,
            SupportError::Closed
            | SupportError::AlreadyResolved
            | SupportError::Full
            | SupportError::TooManyOpen => StatusCode::CONFLICT,
            SupportError::Identity(_) => match error {
                SupportError::Identity(error) => return error.into(),
                _ => return ApiError::internal("unreachable"),
            },
            SupportError::Store(_)
            | SupportError::Vault(_)
            | SupportError::Audit(_)
            | SupportError::Notify(_) => return ApiError::internal(error),
        };
        let api = ApiError::new(status, error.code(), error.to_string());
        match error.field() {
            Some(field) => api.field(field),
            None => api,
        }
    }
}

fn utc(at: i64) -> String {
    Timestamp::from_nanos(at).to_rfc3339()
}

fn staff_principal(session: &StaffSession) -> Principal {
    Principal {
        key_id: session.info.actor(),
        scopes: vec!["staff".into()],
    }
}

fn require(session: &StaffSession) -> Result<(), ApiError> {
    Ok(session.info.require(Permission::HandleSupport)?)
}

fn requester(session: &CustomerSession) -> Requester {
    Requester {
        customer_id: session.info.customer_id.clone(),
        ip: session.context.ip.clone(),
    }
}

// ---- shapes ------------------------------------------------------------------------

fn message_text() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MESSAGE_CHARS_MAX))
        .description(Some(format!(
            "What you write: 1 to {MESSAGE_CHARS_MAX} characters after trimming, no control characters except line breaks and tabs, and never a full card number (the last four digits are enough)."
        )))
        .build()
}

fn category_schema() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(TicketCategory::ALL.iter().map(|c| c.as_str())))
        .build()
}

fn state_schema() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(TicketState::ALL.iter().map(|s| s.as_str())))
        .description(Some(
            "`open` (waiting for the bank), `answered` and `awaiting_customer` (waiting for the customer), `resolved` (the customer may reopen it by replying), `closed` (final).",
        ))
        .build()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenTicketRequest {
    #[schema(schema_with = category_schema)]
    category: String,
    /// One of the customer's own transactions (an activity id, `act_…`),
    /// when the question is about it.
    #[serde(default)]
    transaction_id: Option<String>,
    #[schema(schema_with = message_text)]
    message: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomerReplyRequest {
    #[schema(schema_with = message_text)]
    message: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaffReplyRequest {
    #[schema(schema_with = message_text)]
    message: String,
    /// True when the bank needs something from the customer (state
    /// `awaiting_customer`); otherwise the ticket is `answered`.
    #[serde(default)]
    awaiting_customer: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResolveRequest {
    /// A last message to the customer (optional).
    #[serde(default)]
    #[schema(schema_with = message_text)]
    message: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmptyRequest {}

#[derive(Serialize, ToSchema)]
pub(crate) struct TicketBody {
    id: String,
    #[schema(schema_with = category_schema)]
    category: &'static str,
    #[schema(schema_with = state_schema)]
    state: &'static str,
    /// The transaction the ticket is about (an activity id), if any.
    transaction_id: Option<String>,
    /// How many messages the thread holds.
    messages: i64,
    created_at: String,
    updated_at: String,
    closed_at: Option<String>,
}

fn ticket_body(t: &Ticket) -> TicketBody {
    TicketBody {
        id: t.id.clone(),
        category: t.category.as_str(),
        state: t.state.as_str(),
        transaction_id: t.activity_id.clone(),
        messages: t.messages,
        created_at: utc(t.created_at),
        updated_at: utc(t.updated_at),
        closed_at: t.closed_at.map(utc),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StaffTicketBody {
    id: String,
    customer_id: String,
    #[schema(schema_with = category_schema)]
    category: &'static str,
    #[schema(schema_with = state_schema)]
    state: &'static str,
    transaction_id: Option<String>,
    /// The staff member who last answered (`staff:<username>`).
    assigned_to: Option<String>,
    messages: i64,
    created_at: String,
    updated_at: String,
    closed_at: Option<String>,
}

fn staff_ticket_body(t: &Ticket) -> StaffTicketBody {
    StaffTicketBody {
        id: t.id.clone(),
        customer_id: t.customer_id.clone(),
        category: t.category.as_str(),
        state: t.state.as_str(),
        transaction_id: t.activity_id.clone(),
        assigned_to: t.assigned_to.clone(),
        messages: t.messages,
        created_at: utc(t.created_at),
        updated_at: utc(t.updated_at),
        closed_at: t.closed_at.map(utc),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TicketsBody {
    data: Vec<TicketBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StaffTicketsBody {
    data: Vec<StaffTicketBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MessageBody {
    id: String,
    /// `you` or `bank` for the customer; `customer` or `staff` for staff.
    from: &'static str,
    /// For staff: who wrote it (`customer:<id>` or `staff:<username>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<String>,
    text: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ThreadBody {
    ticket: TicketBody,
    messages: Vec<MessageBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StaffThreadBody {
    ticket: StaffTicketBody,
    messages: Vec<MessageBody>,
}

fn customer_thread(thread: Thread) -> ThreadBody {
    ThreadBody {
        ticket: ticket_body(&thread.ticket),
        messages: thread
            .messages
            .into_iter()
            .map(|m| MessageBody {
                id: m.id,
                // Staff are "the bank" to customers, never a name.
                from: match m.author_kind {
                    AuthorKind::Customer => "you",
                    AuthorKind::Staff => "bank",
                },
                author: None,
                text: m.body,
                created_at: utc(m.created_at),
            })
            .collect(),
    }
}

fn staff_thread_body(thread: Thread) -> StaffThreadBody {
    StaffThreadBody {
        ticket: staff_ticket_body(&thread.ticket),
        messages: thread
            .messages
            .into_iter()
            .map(|m| MessageBody {
                id: m.id,
                from: m.author_kind.as_str(),
                author: Some(m.author),
                text: m.body,
                created_at: utc(m.created_at),
            })
            .collect(),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueueQuery {
    /// One state (`open`, `answered`, `awaiting_customer`, `resolved`,
    /// `closed`); without it, every ticket still waiting on someone.
    state: Option<String>,
    /// 1 to 200 (default 100).
    limit: Option<String>,
}

// ---- the customer's tickets ---------------------------------------------------------

#[utoipa::path(post, path = "/v1/me/support/tickets", tag = "support", summary = "Open a support ticket",
    description = "A question or a problem for the bank, optionally about one of the customer's own transactions (`transaction_id`, an activity id from the history; someone else's is refused). The first message is stored encrypted; the answer does not repeat it. At most 20 tickets may wait at once (`too_many_open_tickets`).",
    params(IdempotencyKey),
    request_body = OpenTicketRequest,
    responses(
        (status = 201, description = "Opened.", body = TicketBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 409, description = "`too_many_open_tickets`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`category`, `transaction_id`, `message`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = [])))]
pub(crate) async fn open_ticket(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let requester = requester(&session);
    idempotency::run_private(
        &state,
        &principal,
        "customer",
        &headers,
        "support_open",
        &body,
        || async {
            let request: OpenTicketRequest = parse(&body)?;
            let category = TicketCategory::parse(&request.category).ok_or_else(|| {
                ApiError::invalid(
                    "category",
                    "payment_problem, refund, fraud_report, account or other",
                )
            })?;
            let new = NewTicket {
                category,
                activity_id: request.transaction_id.filter(|t| !t.trim().is_empty()),
                body: request.message,
            };
            let support = state.support.clone();
            let ticket = blocking_call(move || support.open(&requester, &new)).await?;
            to_json(StatusCode::CREATED, &ticket_body(&ticket))
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/me/support/tickets", tag = "support", summary = "My support tickets",
    description = "The customer's tickets, newest first (at most 100).",
    responses(
        (status = 200, description = "The tickets.", body = TicketsBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = [])))]
pub(crate) async fn my_tickets(
    State(state): State<AppState>,
    session: CustomerSession,
) -> Result<Response, ApiError> {
    let support = state.support.clone();
    let customer_id = session.info.customer_id.clone();
    let tickets = blocking_call(move || support.tickets_of(&customer_id)).await?;
    Ok(json_response(
        StatusCode::OK,
        &TicketsBody {
            data: tickets.iter().map(ticket_body).collect(),
        },
    ))
}

#[utoipa::path(get, path = "/v1/me/support/tickets/{id}", tag = "support", summary = "One of my tickets",
    description = "The ticket and its messages, oldest first; the bank's messages are from `bank` (never a staff member's name).",
    params(("id" = String, Path, description = "The ticket id (`tkt_…`).")),
    responses(
        (status = 200, description = "The thread.", body = ThreadBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found` (also for someone else's ticket).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = [])))]
pub(crate) async fn my_ticket(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let support = state.support.clone();
    let customer_id = session.info.customer_id.clone();
    let thread = blocking_call(move || support.thread_of(&customer_id, &id)).await?;
    Ok(json_response(StatusCode::OK, &customer_thread(thread)))
}

#[utoipa::path(post, path = "/v1/me/support/tickets/{id}/messages", tag = "support", summary = "Reply in my ticket",
    description = "Adds the customer's message; the ticket waits for the bank again (`open`), a resolved one is reopened. A closed ticket is refused.",
    params(("id" = String, Path, description = "The ticket id."), IdempotencyKey),
    request_body = CustomerReplyRequest,
    responses(
        (status = 200, description = "Added.", body = TicketBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`ticket_closed`, `ticket_full` (200 messages at most: open a new ticket), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`message`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = [])))]
pub(crate) async fn customer_reply(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let requester = requester(&session);
    idempotency::run_private(
        &state,
        &principal,
        "customer",
        &headers,
        &format!("support_reply:{id}"),
        &body,
        || async {
            let request: CustomerReplyRequest = parse(&body)?;
            let support = state.support.clone();
            let ticket =
                blocking_call(move || support.reply_as_customer(&requester, &id, &request.message))
                    .await?;
            to_json(StatusCode::OK, &ticket_body(&ticket))
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/me/support/tickets/{id}/close", tag = "support", summary = "Close my ticket",
    description = "Final: a new question is a new ticket. Closing a closed ticket is `ticket_closed`.",
    params(("id" = String, Path, description = "The ticket id."), IdempotencyKey),
    request_body = EmptyRequest,
    responses(
        (status = 200, description = "Closed.", body = TicketBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`ticket_closed`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = [])))]
pub(crate) async fn close_ticket(
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
        &format!("support_close:{id}"),
        &body,
        || async {
            if !body.is_empty() {
                let _: EmptyRequest = parse(&body)?;
            }
            let support = state.support.clone();
            let ticket = blocking_call(move || support.close(&requester, &id)).await?;
            to_json(StatusCode::OK, &ticket_body(&ticket))
        },
    )
    .await
}

// ---- the support queue --------------------------------------------------------------

#[utoipa::path(get, path = "/v1/staff/support/tickets", tag = "support", summary = "The support queue",
    description = "Tickets oldest-updated first, without any customer text: by `state`, or by default every ticket waiting on someone (`open`, `answered`, `awaiting_customer`). Needs `handle_support`. Audited.",
    params(QueueQuery),
    responses(
        (status = 200, description = "The tickets.", body = StaffTicketsBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`state`, `limit`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn support_queue(
    State(state): State<AppState>,
    session: StaffSession,
    query: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require(&session)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("state", e.body_text()))?;
    let ticket_state = query
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            TicketState::parse(s).ok_or_else(|| {
                ApiError::invalid(
                    "state",
                    "open, answered, awaiting_customer, resolved or closed",
                )
            })
        })
        .transpose()?;
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=QUEUE_PAGE_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    "limit",
                    format!("a whole number from 1 to {QUEUE_PAGE_MAX}"),
                )
            })?,
    };
    let support = state.support.clone();
    let tickets =
        blocking_call(move || support.queue(&session.info, ticket_state, limit, &session.context))
            .await?;
    Ok(json_response(
        StatusCode::OK,
        &StaffTicketsBody {
            data: tickets.iter().map(staff_ticket_body).collect(),
        },
    ))
}

#[utoipa::path(get, path = "/v1/staff/support/tickets/{id}", tag = "support", summary = "A ticket, for staff",
    description = "The ticket and every message with its author. Needs `handle_support`. Audited with the customer as subject (it appears in the customer's access log).",
    params(("id" = String, Path, description = "The ticket id.")),
    responses(
        (status = 200, description = "The thread.", body = StaffThreadBody),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("staff" = [])))]
pub(crate) async fn staff_ticket(
    State(state): State<AppState>,
    session: StaffSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    require(&session)?;
    let support = state.support.clone();
    let thread =
        blocking_call(move || support.staff_thread(&session.info, &id, &session.context)).await?;
    Ok(json_response(StatusCode::OK, &staff_thread_body(thread)))
}

#[utoipa::path(post, path = "/v1/staff/support/tickets/{id}/messages", tag = "support", summary = "Answer a ticket",
    description = "Adds the bank's message; the ticket becomes `answered` (or `awaiting_customer`), and the customer gets an in-app alert (which does not repeat the text) in the same transaction. Needs `handle_support`. Audited with the customer as subject.",
    params(("id" = String, Path, description = "The ticket id."), IdempotencyKey),
    request_body = StaffReplyRequest,
    responses(
        (status = 200, description = "Answered.", body = StaffTicketBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`ticket_closed`, `ticket_full` (200 messages at most), `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`message`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn staff_reply(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = require(&session) {
        return error.into_response();
    }
    let principal = staff_principal(&session);
    let session = Arc::new(session);
    idempotency::run_private(
        &state,
        &principal,
        "staff",
        &headers,
        &format!("support_staff_reply:{id}"),
        &body,
        || async {
            let request: StaffReplyRequest = parse(&body)?;
            let reply = if request.awaiting_customer {
                StaffReply::AskCustomer
            } else {
                StaffReply::Answer
            };
            let support = state.support.clone();
            let session = session.clone();
            let ticket = blocking_call(move || {
                support.reply_as_staff(
                    &session.info,
                    &id,
                    &request.message,
                    reply,
                    &session.context,
                )
            })
            .await?;
            to_json(StatusCode::OK, &staff_ticket_body(&ticket))
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/staff/support/tickets/{id}/resolve", tag = "support", summary = "Resolve a ticket",
    description = "Marks the ticket `resolved`, with a last message if one is given; the customer is alerted in the app and may reopen it by replying. Needs `handle_support`. Audited with the customer as subject.",
    params(("id" = String, Path, description = "The ticket id."), IdempotencyKey),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "Resolved.", body = StaffTicketBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`forbidden`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`.", body = crate::error::ErrorBody),
        (status = 409, description = "`ticket_resolved`, `ticket_closed`, `ticket_full`, `idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`message`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("staff" = [])))]
pub(crate) async fn resolve_ticket(
    State(state): State<AppState>,
    session: StaffSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    if let Err(error) = require(&session) {
        return error.into_response();
    }
    let principal = staff_principal(&session);
    let session = Arc::new(session);
    idempotency::run_private(
        &state,
        &principal,
        "staff",
        &headers,
        &format!("support_resolve:{id}"),
        &body,
        || async {
            // The body is required as documented (`{}` when there is no
            // last message): a missing one is a client's mistake, not a default.
            let request: ResolveRequest = parse(&body)?;
            let support = state.support.clone();
            let session = session.clone();
            let ticket = blocking_call(move || {
                support.resolve(
                    &session.info,
                    &id,
                    request.message.as_deref(),
                    &session.context,
                )
            })
            .await?;
            to_json(StatusCode::OK, &staff_ticket_body(&ticket))
        },
    )
    .await
}
