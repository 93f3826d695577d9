//! Support tickets in the browser. Customers (`/help/requests`): my
//! requests, a new one (from a receipt's "Report a problem", prefilled with
//! that transaction), the thread with a reply form, close. Staff
//! (`/staff/support`, shown only to roles with `handle_support`): the
//! queue by state and a ticket's thread with answer and resolve forms.
//! Every read and write is a call to `/v1/me/support` or
//! `/v1/staff/support`; every form carries the CSRF token and its own
//! Idempotency-Key, and everything works without JavaScript.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use coffer_identity::Permission;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::staff::{console, staff_read, staff_submit, Posted};
use super::{field, Form};
use crate::api::{int, list, text, ApiFailure};
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD};
use crate::layout::{
    csrf_field, encode, error_box, idempotency_field, list_table, message_page, notice, page,
    page_with_status,
};
use crate::WebState;

/// The categories the API accepts, in the order the form offers them.
const CATEGORIES: [&str; 5] = [
    "payment_problem",
    "refund",
    "fraud_report",
    "account",
    "other",
];
/// The states the staff queue can be filtered by ("" = still waiting on
/// someone, the API's default).
const QUEUE_STATES: [&str; 6] = [
    "",
    "open",
    "answered",
    "awaiting_customer",
    "resolved",
    "closed",
];
/// The API's bound (`coffer_support::MESSAGE_CHARS_MAX`), repeated for the
/// browser's own check; the API enforces it.
const MESSAGE_CHARS_MAX: usize = coffer_support::MESSAGE_CHARS_MAX;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/help/requests", get(my_requests).post(open_request))
        .route("/help/requests/new", get(new_request))
        .route("/help/requests/{id}", get(my_request))
        .route("/help/requests/{id}/reply", post(reply))
        .route("/help/requests/{id}/close", post(close))
        .route("/staff/support", get(queue))
        .route("/staff/support/{id}", get(staff_ticket))
        .route("/staff/support/{id}/reply", post(staff_reply))
        .route("/staff/support/{id}/resolve", post(resolve))
}

#[derive(Deserialize, Default)]
pub struct SupportQuery {
    pub notice: Option<String>,
    pub transaction: Option<String>,
    pub state: Option<String>,
}

fn label(ctx: &Ctx, prefix: &str, value: &str) -> String {
    ctx.locale
        .lookup(&format!("{prefix}.{value}"))
        .unwrap_or(value)
        .to_string()
}

/// A refusal's words: a field the form knows gets its own sentence.
fn refusal_text(ctx: &Ctx, failure: &ApiFailure) -> String {
    let by_field = failure
        .field
        .as_deref()
        .filter(|_| failure.code == "invalid_field")
        .and_then(|f| ctx.locale.lookup(&format!("support.invalid.{f}")));
    match by_field {
        Some(text) => text.to_string(),
        None => ctx.error_text(failure),
    }
}

/// A message thread, oldest first; `staff` shows who wrote each message.
fn thread(ctx: &Ctx, messages: &[Value], staff: bool) -> Markup {
    html! {
        ol.thread data-testid="thread" {
            @for m in messages {
                li data-from=(text(m, "from")) {
                    p.meta {
                        strong {
                            @if staff { (text(m, "author")) }
                            @else { (label(ctx, "support.from", text(m, "from"))) }
                        }
                        " · " (ctx.time(text(m, "created_at")))
                    }
                    p.body { (text(m, "text")) }
                }
            }
        }
    }
}

fn message_box(ctx: &Ctx, id: &str, label_key: &str, value: &str, required: bool) -> Markup {
    html! {
        label for=(id) { (ctx.t(label_key)) }
        textarea #(id) name="message" rows="5" maxlength=(MESSAGE_CHARS_MAX) required[required] { (value) }
        p.help { (ctx.tf("support.message_help", &[("max", &MESSAGE_CHARS_MAX.to_string())])) }
    }
}

// ---- the customer's requests --------------------------------------------------------

async fn my_requests(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<SupportQuery>,
) -> Response {
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let tickets = match state.api.get(&ctx.caller, "/v1/me/support/tickets").await {
        Ok(tickets) => tickets,
        Err(failure) => return ctx.failure(&failure),
    };
    page(
        &ctx,
        "support.title",
        html! {
            section.card aria-labelledby="requests-title" {
                (notice(&ctx, query.notice.as_deref()))
                h1 #requests-title { (ctx.t("support.title")) }
                p { a.button.primary href="/help/requests/new" data-testid="new-request" { (ctx.t("support.new")) } }
                (list_table(
                    &ctx,
                    "requests",
                    "support.none",
                    &["support.category", "support.state", "support.updated"],
                    list(&tickets),
                    |t| html! {
                        td { a href=(format!("/help/requests/{}", encode(text(t, "id")))) { (label(&ctx, "support.category", text(t, "category"))) } }
                        td data-state=(text(t, "state")) { (label(&ctx, "support.state", text(t, "state"))) }
                        td { (ctx.time(text(t, "updated_at"))) }
                    },
                ))
                p { a href="/help" { (ctx.t("support.back_help")) } }
            }
        },
    )
}

/// What the form keeps when the API refuses it.
struct Draft<'a> {
    category: &'a str,
    transaction: &'a str,
    message: &'a str,
}

async fn request_form(
    ctx: &Ctx,
    state: &WebState,
    status: StatusCode,
    draft: &Draft<'_>,
    error: Option<&str>,
) -> Response {
    // The transaction the request is about, as its receipt says (a wrong
    // id shows nothing here; the API refuses it when sent).
    let receipt = if draft.transaction.is_empty() {
        None
    } else {
        state
            .api
            .get(
                &ctx.caller,
                &format!("/v1/me/activity/{}/receipt", encode(draft.transaction)),
            )
            .await
            .ok()
    };
    page_with_status(
        ctx,
        status,
        "support.new",
        html! {
            section.card.narrow {
                h1 { (ctx.t("support.new")) }
                (error_box(error))
                form method="post" action="/help/requests" {
                    (csrf_field(ctx))
                    (idempotency_field())
                    @if !draft.transaction.is_empty() {
                        input type="hidden" name="transaction_id" value=(draft.transaction);
                        div.about data-testid="about-transaction" {
                            p { (ctx.t("support.about")) }
                            @if let Some(r) = &receipt {
                                p { strong { (text(r, "counterparty")) } " · " (ctx.money(int(r, "amount"), text(r, "currency"))) " · " (ctx.time(text(r, "created_at"))) }
                            } @else {
                                p { code { (draft.transaction) } }
                            }
                        }
                    }
                    label for="category" { (ctx.t("support.category")) }
                    select #category name="category" required {
                        @for c in CATEGORIES {
                            option value=(c) selected[c == draft.category] { (label(ctx, "support.category", c)) }
                        }
                    }
                    (message_box(ctx, "message", "support.message", draft.message, true))
                    button.primary type="submit" { (ctx.t("support.send")) }
                }
                p { a href="/help/requests" { (ctx.t("support.back")) } }
            }
        },
    )
}

async fn new_request(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<SupportQuery>,
) -> Response {
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let transaction = query.transaction.as_deref().unwrap_or("").trim();
    let draft = Draft {
        category: if transaction.is_empty() {
            "other"
        } else {
            "payment_problem"
        },
        transaction,
        message: "",
    };
    request_form(&ctx, &state, StatusCode::OK, &draft, None).await
}

async fn open_request(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let transaction = field(&form, "transaction_id");
    let mut body = json!({
        "category": field(&form, "category"),
        "message": form.get("message").map_or("", String::as_str),
    });
    if !transaction.is_empty() {
        body["transaction_id"] = json!(transaction);
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&ctx.caller, "/v1/me/support/tickets", &body, key)
        .await
    {
        Ok(ticket) => Redirect::to(&format!(
            "/help/requests/{}?notice=notice.support_sent",
            encode(text(&ticket, "id"))
        ))
        .into_response(),
        Err(failure)
            if failure.status.is_client_error() && failure.status != StatusCode::UNAUTHORIZED =>
        {
            let draft = Draft {
                category: field(&form, "category"),
                transaction,
                message: form.get("message").map_or("", String::as_str),
            };
            let status = failure.status;
            request_form(
                &ctx,
                &state,
                status,
                &draft,
                Some(&refusal_text(&ctx, &failure)),
            )
            .await
        }
        Err(failure) => ctx.failure(&failure),
    }
}

async fn my_request(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    Query(query): Query<SupportQuery>,
) -> Response {
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let path = format!("/v1/me/support/tickets/{}", encode(&id));
    let read = match state.api.get(&ctx.caller, &path).await {
        Ok(read) => read,
        Err(failure) => return ctx.failure(&failure),
    };
    customer_thread_page(&ctx, &read, query.notice.as_deref(), None)
}

fn customer_thread_page(
    ctx: &Ctx,
    read: &Value,
    notice_key: Option<&str>,
    error: Option<&str>,
) -> Response {
    let ticket = read.get("ticket").cloned().unwrap_or_default();
    let id = text(&ticket, "id");
    let open = text(&ticket, "state") != "closed";
    let messages = read
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    page(
        ctx,
        "support.request",
        html! {
            section.card {
                (notice(ctx, notice_key))
                h1 { (label(ctx, "support.category", text(&ticket, "category"))) }
                p {
                    (ctx.t("support.state")) ": "
                    strong data-testid="state" data-state=(text(&ticket, "state")) { (label(ctx, "support.state", text(&ticket, "state"))) }
                    @if !text(&ticket, "transaction_id").is_empty() {
                        " · " a href=(format!("/history/{}", encode(text(&ticket, "transaction_id")))) { (ctx.t("support.see_transaction")) }
                    }
                }
                (thread(ctx, messages, false))
                @if open {
                    (error_box(error))
                    form method="post" action=(format!("/help/requests/{}/reply", encode(id))) {
                        (csrf_field(ctx))
                        (idempotency_field())
                        (message_box(ctx, "reply", "support.reply", "", true))
                        button.primary type="submit" { (ctx.t("support.send")) }
                    }
                    form method="post" action=(format!("/help/requests/{}/close", encode(id))) {
                        (csrf_field(ctx))
                        (idempotency_field())
                        button type="submit" { (ctx.t("support.close")) }
                    }
                } @else {
                    p.empty { (ctx.t("support.closed_help")) }
                }
                p { a href="/help/requests" { (ctx.t("support.back")) } }
            }
        },
    )
}

async fn reply(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    let path = format!("/v1/me/support/tickets/{}", encode(&id));
    let body = json!({ "message": form.get("message").map_or("", String::as_str) });
    match state
        .api
        .post(&ctx.caller, &format!("{path}/messages"), &body, key)
        .await
    {
        Ok(_) => Redirect::to(&format!(
            "/help/requests/{}?notice=notice.support_sent",
            encode(&id)
        ))
        .into_response(),
        Err(failure) if failure.code == "invalid_field" => {
            // The thread again, with the refusal above the reply form.
            match state.api.get(&ctx.caller, &path).await {
                Ok(read) => {
                    let mut response = customer_thread_page(
                        &ctx,
                        &read,
                        None,
                        Some(&refusal_text(&ctx, &failure)),
                    );
                    *response.status_mut() = failure.status;
                    response
                }
                Err(failure) => ctx.failure(&failure),
            }
        }
        Err(failure) => ctx.failure(&failure),
    }
}

async fn close(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    let path = format!("/v1/me/support/tickets/{}/close", encode(&id));
    match state.api.post(&ctx.caller, &path, &json!({}), key).await {
        Ok(_) => Redirect::to(&format!(
            "/help/requests/{}?notice=notice.support_closed",
            encode(&id)
        ))
        .into_response(),
        Err(failure) => ctx.failure(&failure),
    }
}

// ---- the support queue --------------------------------------------------------------

async fn queue(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<SupportQuery>,
) -> Response {
    let wanted = query
        .state
        .as_deref()
        .filter(|s| QUEUE_STATES.contains(s))
        .unwrap_or("");
    let path = if wanted.is_empty() {
        "/v1/staff/support/tickets".to_string()
    } else {
        format!("/v1/staff/support/tickets?state={wanted}")
    };
    let (staff, tickets) = match staff_read(&ctx, &state, Permission::HandleSupport, &path).await {
        Ok(read) => read,
        Err(page) => return page,
    };
    console(
        &ctx,
        &staff,
        "staff.support",
        query.notice.as_deref(),
        html! {
            section.card {
                form method="get" action="/staff/support" {
                    label for="state" { (ctx.t("support.state")) }
                    select #state name="state" {
                        @for s in QUEUE_STATES {
                            option value=(s) selected[s == wanted] {
                                @if s.is_empty() { (ctx.t("support.waiting")) } @else { (label(&ctx, "support.state", s)) }
                            }
                        }
                    }
                    button type="submit" { (ctx.t("support.filter")) }
                }
                (list_table(
                    &ctx,
                    "support-queue",
                    "staff.nothing_pending",
                    &["support.ticket", "staff.subject", "support.category", "support.state", "support.updated"],
                    list(&tickets),
                    |t| html! {
                        td { a href=(format!("/staff/support/{}", encode(text(t, "id")))) { code { (text(t, "id")) } } }
                        td { code { (text(t, "customer_id")) } }
                        td { (label(&ctx, "support.category", text(t, "category"))) }
                        td data-state=(text(t, "state")) { (label(&ctx, "support.state", text(t, "state"))) }
                        td { (ctx.time(text(t, "updated_at"))) }
                    },
                ))
            }
        },
    )
}

async fn staff_ticket(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    Query(query): Query<SupportQuery>,
) -> Response {
    let path = format!("/v1/staff/support/tickets/{}", encode(&id));
    let (staff, read) = match staff_read(&ctx, &state, Permission::HandleSupport, &path).await {
        Ok(read) => read,
        Err(page) => return page,
    };
    let ticket = read.get("ticket").cloned().unwrap_or_default();
    let ticket_state = text(&ticket, "state");
    let messages = read
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let action = |what: &str| format!("/staff/support/{}/{what}", encode(&id));
    console(
        &ctx,
        &staff,
        "staff.support",
        query.notice.as_deref(),
        html! {
            h2 { (label(&ctx, "support.category", text(&ticket, "category"))) " · " code { (text(&ticket, "id")) } }
            section.card {
                dl {
                    div.row { dt { (ctx.t("staff.subject")) } dd { code { (text(&ticket, "customer_id")) } } }
                    div.row { dt { (ctx.t("support.state")) } dd data-testid="state" data-state=(ticket_state) { (label(&ctx, "support.state", ticket_state)) } }
                    @if !text(&ticket, "transaction_id").is_empty() {
                        div.row { dt { (ctx.t("support.transaction")) } dd { code { (text(&ticket, "transaction_id")) } } }
                    }
                    @if !text(&ticket, "assigned_to").is_empty() {
                        div.row { dt { (ctx.t("support.assigned")) } dd { (text(&ticket, "assigned_to")) } }
                    }
                }
                (thread(&ctx, messages, true))
                @if ticket_state != "closed" {
                    form method="post" action=(action("reply")) {
                        (csrf_field(&ctx))
                        (idempotency_field())
                        (message_box(&ctx, "answer", "support.answer", "", true))
                        div.check {
                            input #awaiting type="checkbox" name="awaiting_customer" value="yes";
                            label for="awaiting" { (ctx.t("support.ask_customer")) }
                        }
                        button.primary type="submit" { (ctx.t("support.send")) }
                    }
                }
                @if ticket_state != "closed" && ticket_state != "resolved" {
                    form method="post" action=(action("resolve")) {
                        (csrf_field(&ctx))
                        (idempotency_field())
                        (message_box(&ctx, "closing", "support.resolve_message", "", false))
                        button type="submit" { (ctx.t("support.resolve")) }
                    }
                }
                p { a href="/staff/support" { (ctx.t("support.back_queue")) } }
            }
        },
    )
}

/// A POST of the queue (CSRF, the staff member, the form's key): back to
/// the ticket with a notice, or the API's refusal on a page of its own.
async fn staff_write(
    ctx: &Ctx,
    state: &WebState,
    form: &Form,
    (id, what): (&str, &str),
    body: &Value,
    notice_key: &str,
) -> Response {
    let path = format!("/v1/staff/support/tickets/{}/{what}", encode(id));
    match staff_submit(ctx, state, form, &path, body).await {
        Ok(Posted::Done(_)) => Redirect::to(&format!(
            "/staff/support/{}?notice={notice_key}",
            encode(id)
        ))
        .into_response(),
        Ok(Posted::Refused(status, error)) => message_page(ctx, status, "error.title", &error),
        Err(page) => page,
    }
}

async fn staff_reply(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let body = json!({
        "message": form.get("message").map_or("", String::as_str),
        "awaiting_customer": field(&form, "awaiting_customer") == "yes",
    });
    staff_write(
        &ctx,
        &state,
        &form,
        (&id, "messages"),
        &body,
        "notice.support_answered",
    )
    .await
}

async fn resolve(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let message = form.get("message").map_or("", String::as_str);
    let body = if message.trim().is_empty() {
        json!({})
    } else {
        json!({ "message": message })
    };
    staff_write(
        &ctx,
        &state,
        &form,
        (&id, "resolve"),
        &body,
        "notice.support_resolved",
    )
    .await
}
