//! The back-office console: staff sign in with password and authenticator
//! code (`/v1/staff/sessions`); the staff token then lives in an HttpOnly,
//! SameSite=Strict cookie sent only to `/staff` pages, and every page calls
//! `/v1/staff/*` with it. The API enforces each role's permissions; the
//! console reads the same role table (`coffer_identity::permits`) only to
//! show each staff member what their roles may do and nothing else.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use coffer_identity::{Permission, StaffInfo};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{field, Form};
use crate::api::{int, list, text, ApiFailure, Caller};
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD, STAFF_COOKIE};
use crate::layout::{csrf_field, encode, error_box, idempotency_field, list_table, notice, page};
use crate::WebState;

/// The cookie outlives no shift; the API's own idle and absolute limits
/// end the session sooner.
const STAFF_COOKIE_SECONDS: i64 = 12 * 3600;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/staff", get(home))
        .route("/staff/signin", post(sign_in))
        .route("/staff/signout", post(sign_out))
        .route("/staff/customers", get(search))
        .route("/staff/customers/{id}", get(customer))
        .route("/staff/customers/{id}/freeze", post(freeze))
        .route("/staff/customers/{id}/unfreeze", post(propose_unfreeze))
        .route("/staff/approvals", get(approvals))
        .route("/staff/approvals/{id}/decide", post(decide_approval))
        .route("/staff/kyc", get(kyc_queue))
        .route("/staff/kyc/{id}/decide", post(decide_kyc))
        .route("/staff/risk", get(risk_queue))
        .route("/staff/risk/{id}/{action}", post(work_case))
        .route("/staff/compliance", get(compliance_queue))
        .route("/staff/compliance/{id}/decide", post(decide_hit))
        .route("/staff/audit", get(audit))
        .route(
            "/staff/settings/{kind}",
            get(settings).post(propose_settings),
        )
}

#[derive(Deserialize, Default)]
pub struct StaffQuery {
    pub notice: Option<String>,
    pub by: Option<String>,
    pub q: Option<String>,
    pub subject: Option<String>,
}

/// The signed-in staff member: their API caller and who they are.
pub(super) struct Staff {
    pub(super) caller: Caller,
    pub(super) info: StaffInfo,
}

impl Staff {
    pub(super) fn may(&self, permission: Permission) -> bool {
        self.info
            .roles
            .iter()
            .any(|role| coffer_identity::permits(*role, permission))
    }
}

fn sign_in_page(ctx: &Ctx, error: Option<&str>) -> Response {
    page(
        ctx,
        "staff.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("staff.title")) }
                (error_box(error))
                form method="post" action="/staff/signin" {
                    (csrf_field(ctx))
                    label for="username" { (ctx.t("staff.username")) }
                    input #username name="username" type="text" autocomplete="username" required;
                    label for="password" { (ctx.t("field.password")) }
                    input #password name="password" type="password" autocomplete="current-password" required;
                    label for="code" { (ctx.t("staff.code")) }
                    input #code name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required;
                    button.primary type="submit" { (ctx.t("staff.sign_in")) }
                }
            }
        },
    )
}

fn signed_out(ctx: &Ctx, error: Option<&str>) -> Response {
    let mut response = sign_in_page(ctx, error);
    response.headers_mut().append(
        header::SET_COOKIE,
        ctx.scoped_cookie(STAFF_COOKIE, "", "/staff", 0),
    );
    response
}

/// The staff member behind the console's cookie, or the sign-in page.
pub(super) async fn staff(ctx: &Ctx, state: &WebState) -> Result<Staff, Response> {
    let Some(caller) = ctx.staff_caller() else {
        return Err(sign_in_page(ctx, None));
    };
    let token = coffer_core::Secret::new(caller.token.clone().unwrap_or_default());
    let identity = state.app.identity.clone();
    match tokio::task::spawn_blocking(move || identity.authenticate_staff(&token)).await {
        Ok(Ok(info)) => Ok(Staff { caller, info }),
        Ok(Err(_)) => Err(signed_out(ctx, Some(ctx.t("error.unauthenticated")))),
        Err(_) => Err(ctx.failure(&ApiFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal".into(),
            message: String::new(),
            field: None,
        })),
    }
}

/// The start of a console page that shows one staff-API read: signed in,
/// allowed by `permission`, then the read (an ended session signs out).
pub(super) async fn staff_read(
    ctx: &Ctx,
    state: &WebState,
    permission: Permission,
    path: &str,
) -> Result<(Staff, Value), Response> {
    let staff = staff(ctx, state).await?;
    if !staff.may(permission) {
        return Err(forbidden(ctx));
    }
    let read = state
        .api
        .get(&staff.caller, path)
        .await
        .map_err(|failure| refused(ctx, &failure))?;
    Ok((staff, read))
}

/// A refusal of the staff API: an ended session signs the console out.
pub(super) fn refused(ctx: &Ctx, failure: &ApiFailure) -> Response {
    if failure.status == StatusCode::UNAUTHORIZED {
        return signed_out(ctx, Some(&ctx.error_text(failure)));
    }
    ctx.failure(failure)
}

pub(super) fn forbidden(ctx: &Ctx) -> Response {
    crate::layout::message_page(
        ctx,
        StatusCode::FORBIDDEN,
        "error.title",
        ctx.t("error.forbidden"),
    )
}

/// The console's pages: (path, catalogue key, the permissions any one of
/// which shows it; none: every staff member). One table, so a page added
/// in any console module is one line here.
const MENU: [(&str, &str, &[Permission]); 16] = [
    ("/staff", "staff.home", &[]),
    (
        "/staff/customers",
        "staff.customers",
        &[Permission::ViewCustomers],
    ),
    (
        "/staff/approvals",
        "staff.approvals",
        &[Permission::ApproveSensitive, Permission::ProposeSensitive],
    ),
    ("/staff/kyc", "staff.kyc", &[Permission::ReviewKyc]),
    ("/staff/risk", "staff.risk", &[Permission::ManageRisk]),
    (
        "/staff/risk/rules",
        "staff.rules",
        &[Permission::ManageRisk],
    ),
    (
        "/staff/compliance",
        "staff.compliance",
        &[Permission::ManageCompliance],
    ),
    ("/staff/audit", "staff.audit", &[Permission::ReadAudit]),
    (
        "/staff/settings/fees",
        "staff.settings",
        &[
            Permission::ManageSettings,
            Permission::ApproveSensitive,
            Permission::ViewDashboards,
        ],
    ),
    (
        "/staff/risk/blocklist",
        "staff.blocklist",
        &[Permission::ManageRisk],
    ),
    (
        "/staff/merchants",
        "staff.merchants",
        &[Permission::ReviewMerchants],
    ),
    (
        "/staff/settlements",
        "staff.settlements",
        &[Permission::SettleMerchants],
    ),
    (
        "/staff/reconciliation",
        "staff.reconciliation",
        &[Permission::Reconcile],
    ),
    (
        "/staff/campaigns",
        "staff.campaigns",
        &[Permission::ManageCampaigns],
    ),
    (
        "/staff/notifications",
        "staff.dead_letters",
        &[Permission::ManageNotifications],
    ),
    (
        "/staff/support",
        "staff.support",
        &[Permission::HandleSupport],
    ),
];

/// The console's menu: only what the roles may open.
fn menu(ctx: &Ctx, staff: &Staff) -> Markup {
    let shown = |permissions: &[Permission]| {
        permissions.is_empty() || permissions.iter().any(|p| staff.may(*p))
    };
    html! {
        nav.staff-menu aria-label=(ctx.t("staff.menu")) {
            span.who { (staff.info.username) " · "
                @for (i, role) in staff.info.roles.iter().enumerate() {
                    @if i > 0 { ", " }
                    (ctx.locale.lookup(&format!("role.{}", role.as_str())).unwrap_or(role.as_str()))
                }
            }
            ul.links {
                @for (path, key, permissions) in MENU {
                    @if shown(permissions) { li { a href=(path) { (ctx.t(key)) } } }
                }
            }
            form.inline method="post" action="/staff/signout" {
                (csrf_field(ctx))
                button.link type="submit" { (ctx.t("staff.sign_out")) }
            }
        }
    }
}

pub(super) fn console(
    ctx: &Ctx,
    staff: &Staff,
    title_key: &str,
    notice_key: Option<&str>,
    body: Markup,
) -> Response {
    page(
        ctx,
        title_key,
        html! {
            (menu(ctx, staff))
            (notice(ctx, notice_key))
            h1 { (ctx.t(title_key)) }
            (body)
        },
    )
}

async fn sign_in(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let body = json!({
        "username": field(&form, "username"),
        "password": form.get("password").map_or("", String::as_str),
        "code": field(&form, "code"),
    });
    let caller = Caller {
        token: None,
        ..ctx.caller.clone()
    };
    match state
        .api
        .post(&caller, "/v1/staff/sessions", &body, None)
        .await
    {
        Ok(answer) => {
            let token = text(&answer, "token");
            let mut response = Redirect::to("/staff").into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                ctx.scoped_cookie(STAFF_COOKIE, token, "/staff", STAFF_COOKIE_SECONDS),
            );
            response
        }
        Err(failure) if failure.status.is_client_error() => {
            sign_in_page(&ctx, Some(&ctx.error_text(&failure)))
        }
        Err(failure) => ctx.failure(&failure),
    }
}

async fn sign_out(ctx: Ctx, AxumForm(form): AxumForm<Form>) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let mut response = Redirect::to("/staff").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        ctx.scoped_cookie(STAFF_COOKIE, "", "/staff", 0),
    );
    response
}

fn queue_label(ctx: &Ctx, name: &str) -> String {
    ctx.locale
        .lookup(&format!("queue.{name}"))
        .unwrap_or(name)
        .to_string()
}

pub(super) fn label(ctx: &Ctx, prefix: &str, value: &str) -> String {
    ctx.locale
        .lookup(&format!("{prefix}.{value}"))
        .unwrap_or(value)
        .to_string()
}

async fn home(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<StaffQuery>,
) -> Response {
    let staff = match staff(&ctx, &state).await {
        Ok(staff) => staff,
        Err(page) => return page,
    };
    let dashboards = staff.may(Permission::ViewDashboards);
    let (queues, board) = if dashboards {
        (
            state.api.get(&staff.caller, "/v1/staff/queues").await.ok(),
            state
                .api
                .get(&staff.caller, "/v1/staff/dashboards")
                .await
                .ok(),
        )
    } else {
        (None, None)
    };
    console(
        &ctx,
        &staff,
        "staff.home",
        query.notice.as_deref(),
        html! {
            @if let Some(queues) = &queues {
                section.card aria-labelledby="queues-title" {
                    h2 #queues-title { (ctx.t("staff.queues")) }
                    div.table-wrap { table data-testid="queues" {
                        thead { tr { th scope="col" { (ctx.t("staff.queue")) } th scope="col" { (ctx.t("staff.count")) } th scope="col" { (ctx.t("staff.oldest")) } } }
                        tbody {
                            @for q in list(queues) {
                                tr { td { (queue_label(&ctx, text(q, "name"))) } td { (int(q, "count")) } td { @if !text(q, "oldest").is_empty() { (ctx.time(text(q, "oldest"))) } } }
                            }
                        }
                    } }
                }
            }
            @if let Some(board) = &board {
                @let fraud = board.get("fraud").cloned().unwrap_or_default();
                section.card aria-labelledby="fraud-title" {
                    h2 #fraud-title { (ctx.t("staff.dashboards")) }
                    p.help { (ctx.time(text(board, "from"))) " – " (ctx.time(text(board, "until"))) }
                    dl.receipt {
                        div.row { dt { (ctx.t("staff.frozen_now")) } dd data-testid="frozen-now" { (int(&fraud, "frozen_customers_now")) } }
                        div.row { dt { (ctx.t("staff.freezes")) } dd { (int(&fraud, "freezes")) } }
                        div.row { dt { (ctx.t("staff.step_ups")) } dd { (int(&fraud, "step_ups_verified")) " / " (int(&fraud, "step_ups_started")) } }
                    }
                    h3 { (ctx.t("staff.volumes")) }
                    div.table-wrap { table data-testid="volumes" {
                        thead { tr {
                            th scope="col" { (ctx.t("merchant.date")) }
                            th scope="col" { (ctx.t("staff.operation")) }
                            th scope="col" { (ctx.t("staff.transactions")) }
                            th scope="col" { (ctx.t("receipt.amount")) }
                        } }
                        tbody {
                            @for v in board.get("volumes").and_then(Value::as_array).map_or(&[][..], Vec::as_slice) {
                                tr {
                                    td { (text(v, "day")) }
                                    td { (label(&ctx, "operation", text(v, "operation"))) }
                                    td { (int(v, "count")) }
                                    td { (ctx.money(int(v, "amount"), text(v, "currency"))) }
                                }
                            }
                        }
                    } }
                    h3 { (ctx.t("staff.failures")) }
                    div.table-wrap { table {
                        thead { tr { th scope="col" { (ctx.t("staff.operation")) } th scope="col" { (ctx.t("status.succeeded")) } th scope="col" { (ctx.t("status.failed")) } th scope="col" { (ctx.t("staff.failure_rate")) } } }
                        tbody {
                            @for f in board.get("failures").and_then(Value::as_array).map_or(&[][..], Vec::as_slice) {
                                tr {
                                    td { (label(&ctx, "operation", text(f, "operation"))) }
                                    td { (int(f, "succeeded")) }
                                    td { (int(f, "failed")) }
                                    td { (format!("{}.{:02}%", int(f, "failure_rate_bps") / 100, int(f, "failure_rate_bps") % 100)) }
                                }
                            }
                        }
                    } }
                }
            }
            @if !dashboards {
                p.help { (ctx.t("staff.pick")) }
            }
        },
    )
}

async fn search(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<StaffQuery>,
) -> Response {
    let staff = match staff(&ctx, &state).await {
        Ok(staff) => staff,
        Err(page) => return page,
    };
    if !staff.may(Permission::ViewCustomers) {
        return forbidden(&ctx);
    }
    let by = query
        .by
        .as_deref()
        .filter(|by| matches!(*by, "contact" | "name" | "id" | "card_last4"))
        .unwrap_or("contact");
    let q = query.q.as_deref().map(str::trim).unwrap_or("");
    let (results, error) = if q.is_empty() {
        (None, None)
    } else {
        let path = format!("/v1/staff/customer-search?{by}={}", encode_query(q));
        match state.api.get(&staff.caller, &path).await {
            Ok(found) => (Some(found), None),
            Err(failure) if failure.status == StatusCode::UNAUTHORIZED => {
                return refused(&ctx, &failure)
            }
            Err(failure) => (None, Some(ctx.error_text(&failure))),
        }
    };
    console(
        &ctx,
        &staff,
        "staff.customers",
        query.notice.as_deref(),
        html! {
            section.card {
                form method="get" action="/staff/customers" role="search" {
                    label for="by" { (ctx.t("staff.search_by")) }
                    select #by name="by" {
                        @for option in ["contact", "name", "id", "card_last4"] {
                            option value=(option) selected[option == by] { (ctx.t(&format!("staff.by_{option}"))) }
                        }
                    }
                    label for="q" { (ctx.t("staff.search_for")) }
                    input #q name="q" type="search" value=(q) required;
                    button.primary type="submit" { (ctx.t("staff.search")) }
                }
                (error_box(error.as_deref()))
            }
            @if let Some(results) = &results {
                section.card {
                    @if list(results).is_empty() {
                        p.empty { (ctx.t("staff.no_customers")) }
                    } @else {
                        div.table-wrap { table data-testid="search-results" {
                            thead { tr {
                                th scope="col" { (ctx.t("staff.name")) }
                                th scope="col" { (ctx.t("staff.contact")) }
                                th scope="col" { (ctx.t("me.kyc_tier")) }
                                th scope="col" { (ctx.t("receipt.status")) }
                            } }
                            tbody {
                                @for c in list(results) {
                                    tr {
                                        td { a href=(format!("/staff/customers/{}", encode(text(c, "id")))) { (text(c, "name")) } }
                                        td { (text(c, "contact")) }
                                        td { (int(c, "kyc_tier")) }
                                        td { (label(&ctx, "customer_status", text(c, "status"))) }
                                    }
                                }
                            }
                        } }
                    }
                }
            }
        },
    )
}

/// Percent-encodes a query value (`+86…`, e-mail addresses, names).
pub(super) fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn customer(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    Query(query): Query<StaffQuery>,
) -> Response {
    let path = format!("/v1/staff/customers/{}/360", encode(&id));
    let (staff, view) = match staff_read(&ctx, &state, Permission::ViewCustomers, &path).await {
        Ok(read) => read,
        Err(page) => return page,
    };
    let profile = view.get("profile").cloned().unwrap_or_default();
    let kyc = view.get("kyc").cloned().unwrap_or_default();
    let status = text(&profile, "status");
    let array = |name: &str| {
        view.get(name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    console(
        &ctx,
        &staff,
        "staff.customer",
        query.notice.as_deref(),
        html! {
            section.card {
                h2 { (text(&profile, "display_name")) }
                dl.receipt {
                    div.row { dt { (ctx.t("staff.contact")) } dd { (text(&profile, "contact")) } }
                    div.row { dt { (ctx.t("receipt.status")) } dd data-testid="customer-status" data-status=(status) {
                        span class=(if status == "active" { "tag" } else { "tag bad" }) { (label(&ctx, "customer_status", status)) }
                    } }
                    div.row { dt { (ctx.t("me.kyc_tier")) } dd { (int(&kyc, "tier")) } }
                    div.row { dt { (ctx.t("receipt.reference")) } dd { code { (text(&profile, "id")) } } }
                    div.row { dt { (ctx.t("staff.since")) } dd { (ctx.time(text(&profile, "created_at"))) } }
                }
                @if status == "active" && staff.may(Permission::FreezeCustomers) {
                    form method="post" action=(format!("/staff/customers/{}/freeze", encode(&id))) {
                        (csrf_field(&ctx))
                        (idempotency_field())
                        label for="freeze-reason" { (ctx.t("staff.reason")) }
                        input #freeze-reason name="reason" type="text" required maxlength="200";
                        button.danger type="submit" { (ctx.t("staff.freeze")) }
                    }
                }
                @if status == "frozen" && staff.may(Permission::ProposeSensitive) {
                    form method="post" action=(format!("/staff/customers/{}/unfreeze", encode(&id))) {
                        (csrf_field(&ctx))
                        (idempotency_field())
                        label for="unfreeze-reason" { (ctx.t("staff.reason")) }
                        input #unfreeze-reason name="reason" type="text" required maxlength="200";
                        button type="submit" { (ctx.t("staff.propose_unfreeze")) }
                    }
                }
            }
            section.card {
                h2 { (ctx.t("home.balances")) }
                ul {
                    @for w in array("wallets") {
                        li { (ctx.money(int(&w, "available"), text(&w, "currency"))) }
                    }
                }
            }
            section.card {
                h2 { (ctx.t("home.recent")) }
                div.table-wrap { table {
                    tbody {
                        @for a in array("recent_activity") {
                            tr {
                                td { (ctx.time(text(&a, "created_at"))) }
                                td { (label(&ctx, "kind", text(&a, "kind"))) }
                                td { (text(&a, "counterparty")) }
                                td { (match text(&a, "direction") { "in" => "+", "out" => "−", _ => "" }) (ctx.money(int(&a, "amount"), text(&a, "currency"))) }
                                td { (label(&ctx, "status", text(&a, "status"))) }
                            }
                        }
                    }
                } }
            }
            section.card {
                h2 { (ctx.t("staff.history")) }
                div.table-wrap { table {
                    tbody {
                        @for h in array("history") {
                            tr {
                                td { (ctx.time(text(&h, "at"))) }
                                td { (text(&h, "actor")) }
                                td { code { (text(&h, "action")) } }
                                td { (text(&h, "outcome")) }
                            }
                        }
                    }
                } }
                @if staff.may(Permission::ReadAudit) {
                    p { a href=(format!("/staff/audit?subject={}", encode_query(&id))) { (ctx.t("staff.audit")) } }
                }
            }
        },
    )
}

/// A POST of the console with its reason: CSRF, the staff member, the
/// form's Idempotency-Key.
pub(super) async fn staff_post(
    ctx: &Ctx,
    state: &WebState,
    form: &Form,
    path: &str,
    body: &Value,
) -> Result<Value, Response> {
    ctx.check_csrf(form)?;
    let staff = staff(ctx, state).await?;
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    state
        .api
        .post(&staff.caller, path, body, key)
        .await
        .map_err(|failure| refused(ctx, &failure))
}

/// How a console form's API call ended when the page stays on the form.
pub(super) enum Posted {
    Done(Value),
    /// Refused for the form's own sake (a 4xx other than a lost sign-in):
    /// the reason with the API's detail, to show next to the form.
    Refused(StatusCode, String),
}

/// The start of every console form that re-renders itself when refused:
/// CSRF, the staff member, the API call under the form's Idempotency-Key.
/// The error is a whole page already (bad CSRF, signed out, server fault).
pub(super) async fn staff_submit(
    ctx: &Ctx,
    state: &WebState,
    form: &Form,
    path: &str,
    body: &Value,
) -> Result<Posted, Response> {
    ctx.check_csrf(form)?;
    let staff = staff(ctx, state).await?;
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state.api.post(&staff.caller, path, body, key).await {
        Ok(answer) => Ok(Posted::Done(answer)),
        Err(failure)
            if failure.status.is_client_error() && failure.status != StatusCode::UNAUTHORIZED =>
        {
            Ok(Posted::Refused(failure.status, with_detail(ctx, &failure)))
        }
        Err(failure) => Err(refused(ctx, &failure)),
    }
}

/// A refusal in the staff member's language with the API's own words and
/// field after it, so nothing the API said is lost.
pub(super) fn with_detail(ctx: &Ctx, failure: &ApiFailure) -> String {
    let mut message = ctx.error_text(failure);
    let said = match (&failure.field, failure.message.is_empty()) {
        (Some(field), false) => format!("{field}: {}", failure.message),
        (None, false) => failure.message.clone(),
        (Some(field), true) => field.clone(),
        (None, true) => String::new(),
    };
    if !said.is_empty() && said != message {
        message.push_str(&format!(" ({said})"));
    }
    message
}

async fn freeze(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let path = format!("/v1/staff/customers/{}/freeze", encode(&id));
    let body = json!({ "reason": field(&form, "reason") });
    match staff_post(&ctx, &state, &form, &path, &body).await {
        Ok(_) => Redirect::to(&format!(
            "/staff/customers/{}?notice=notice.frozen",
            encode(&id)
        ))
        .into_response(),
        Err(page) => page,
    }
}

async fn propose_unfreeze(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let body = json!({ "action": "unfreeze", "subject": id, "reason": field(&form, "reason") });
    match staff_post(&ctx, &state, &form, "/v1/staff/approvals", &body).await {
        Ok(_) => Redirect::to(&format!(
            "/staff/customers/{}?notice=notice.unfreeze_proposed",
            encode(&id)
        ))
        .into_response(),
        Err(page) => page,
    }
}

fn decide_forms(ctx: &Ctx, action: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(ctx))
            (idempotency_field())
            input type="hidden" name="approve" value="true";
            button type="submit" { (ctx.t("staff.approve")) }
        }
        " "
        form.inline method="post" action=(action) {
            (csrf_field(ctx))
            (idempotency_field())
            input type="hidden" name="approve" value="false";
            button.danger type="submit" { (ctx.t("staff.reject")) }
        }
    }
}

async fn approvals(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<StaffQuery>,
) -> Response {
    let staff = match staff(&ctx, &state).await {
        Ok(staff) => staff,
        Err(page) => return page,
    };
    if !(staff.may(Permission::ApproveSensitive) || staff.may(Permission::ProposeSensitive)) {
        return forbidden(&ctx);
    }
    let pending = match state.api.get(&staff.caller, "/v1/staff/approvals").await {
        Ok(pending) => pending,
        Err(failure) => return refused(&ctx, &failure),
    };
    let checker = staff.may(Permission::ApproveSensitive);
    let me = staff.info.username.clone();
    console(
        &ctx,
        &staff,
        "staff.approvals",
        query.notice.as_deref(),
        html! {
            section.card {
                (list_table(
                    &ctx,
                    "approvals",
                    "staff.nothing_pending",
                    &["staff.action", "staff.subject", "staff.reason", "staff.maker", ""],
                    list(&pending),
                    |a| html! {
                        td { (label(&ctx, "sensitive", text(a, "action"))) }
                        td {
                            @match subject_href(&staff, text(a, "action"), text(a, "subject")) {
                                Some(href) => a href=(href) { code { (text(a, "subject")) } },
                                None => code { (text(a, "subject")) },
                            }
                        }
                        td { (text(a, "reason")) }
                        td { (text(a, "maker")) }
                        td {
                            // The API refuses a maker's own proposal; the console does not offer it.
                            @if checker && text(a, "maker") != me {
                                (decide_forms(&ctx, &format!("/staff/approvals/{}/decide", encode(text(a, "id")))))
                            }
                        }
                    },
                ))
            }
        },
    )
}

/// Where an approval's subject can be looked at, by its action: a
/// customer, a campaign or a settings page; none when this staff member
/// may not open that page (a link to a 403 helps no one).
fn subject_href(staff: &Staff, action: &str, subject: &str) -> Option<String> {
    match action {
        "unfreeze" | "adjust_balance" | "override_limit"
            if staff.may(Permission::ViewCustomers) =>
        {
            Some(format!("/staff/customers/{}", encode(subject)))
        }
        "send_campaign" if staff.may(Permission::ManageCampaigns) => {
            Some(format!("/staff/campaigns/{}", encode(subject)))
        }
        "change_settings" if staff.may(Permission::ManageSettings) => {
            settings_kind(subject).map(|kind| format!("/staff/settings/{kind}"))
        }
        _ => None,
    }
}

async fn decide_approval(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let path = format!("/v1/staff/approvals/{}/decide", encode(&id));
    let body = json!({ "approve": field(&form, "approve") == "true" });
    match staff_post(&ctx, &state, &form, &path, &body).await {
        Ok(_) => Redirect::to("/staff/approvals?notice=notice.decided").into_response(),
        Err(page) => page,
    }
}

async fn kyc_queue(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<StaffQuery>,
) -> Response {
    let (staff, reviews) =
        match staff_read(&ctx, &state, Permission::ReviewKyc, "/v1/staff/kyc/reviews").await {
            Ok(read) => read,
            Err(page) => return page,
        };
    console(
        &ctx,
        &staff,
        "staff.kyc",
        query.notice.as_deref(),
        html! {
            section.card {
                (list_table(
                    &ctx,
                    "",
                    "staff.nothing_pending",
                    &["staff.subject", "me.kyc_tier", "staff.reason", "receipt.time", ""],
                    list(&reviews),
                    |r| html! {
                        td { code { (text(r, "customer_id")) } }
                        td { (int(r, "target_tier")) }
                        td { (text(r, "reason")) }
                        td { (ctx.time(text(r, "created_at"))) }
                        td { (decide_forms(&ctx, &format!("/staff/kyc/{}/decide", encode(text(r, "id"))))) }
                    },
                ))
            }
        },
    )
}

async fn decide_kyc(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let path = format!("/v1/staff/kyc/reviews/{}/decide", encode(&id));
    let body = json!({ "approve": field(&form, "approve") == "true" });
    match staff_post(&ctx, &state, &form, &path, &body).await {
        Ok(_) => Redirect::to("/staff/kyc?notice=notice.decided").into_response(),
        Err(page) => page,
    }
}

async fn risk_queue(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<StaffQuery>,
) -> Response {
    let (staff, cases) =
        match staff_read(&ctx, &state, Permission::ManageRisk, "/v1/staff/risk/cases").await {
            Ok(read) => read,
            Err(page) => return page,
        };
    console(
        &ctx,
        &staff,
        "staff.risk",
        query.notice.as_deref(),
        html! {
            section.card {
                (list_table(
                    &ctx,
                    "",
                    "staff.nothing_pending",
                    &["staff.subject", "staff.kind", "receipt.amount", "receipt.status", ""],
                    list(&cases),
                    |c| html! {
                        td { a href=(format!("/staff/customers/{}", encode(text(c, "customer_id")))) { code { (text(c, "customer_id")) } } }
                        td { (text(c, "kind")) " " (text(c, "subject_kind")) }
                        td { @if !text(c, "currency").is_empty() { (ctx.money(int(c, "amount"), text(c, "currency"))) } }
                        td { (label(&ctx, "case_state", text(c, "state"))) }
                        td {
                            @if matches!(text(c, "state"), "open" | "escalated") {
                                @for (action, key) in [("release", "staff.release"), ("reject", "staff.reject"), ("escalate", "staff.escalate")] {
                                    @if action != "escalate" || text(c, "state") == "open" {
                                        form.inline method="post" action=(format!("/staff/risk/{}/{action}", encode(text(c, "id")))) {
                                            (csrf_field(&ctx))
                                            (idempotency_field())
                                            button type="submit" { (ctx.t(key)) }
                                        }
                                        " "
                                    }
                                }
                            }
                        }
                    },
                ))
            }
        },
    )
}

async fn compliance_queue(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<StaffQuery>,
) -> Response {
    let staff = match staff(&ctx, &state).await {
        Ok(staff) => staff,
        Err(page) => return page,
    };
    if !staff.may(Permission::ManageCompliance) {
        return forbidden(&ctx);
    }
    let hits = match state
        .api
        .get(&staff.caller, "/v1/staff/compliance/hits")
        .await
    {
        Ok(hits) => hits,
        Err(failure) => return refused(&ctx, &failure),
    };
    console(
        &ctx,
        &staff,
        "staff.compliance",
        query.notice.as_deref(),
        html! {
            section.card {
                (list_table(
                    &ctx,
                    "",
                    "staff.nothing_pending",
                    &["staff.subject", "staff.source", "staff.score", "receipt.status", ""],
                    list(&hits),
                    |h| html! {
                        td { a href=(format!("/staff/customers/{}", encode(text(h, "customer_id")))) { code { (text(h, "customer_id")) } } }
                        td { (text(h, "source")) }
                        td { (format!("{}.{:02}%", int(h, "score_bps") / 100, int(h, "score_bps") % 100)) }
                        td { (label(&ctx, "hit_state", text(h, "state"))) }
                        td {
                            @if text(h, "state") == "pending" {
                                form method="post" action=(format!("/staff/compliance/{}/decide", encode(text(h, "id")))) {
                                    (csrf_field(&ctx))
                                    (idempotency_field())
                                    label for=(format!("note-{}", text(h, "id"))) { (ctx.t("staff.reason")) }
                                    input id=(format!("note-{}", text(h, "id"))) name="note" type="text" required maxlength="200";
                                    button type="submit" name="decision" value="clear" { (ctx.t("staff.clear")) }
                                    " "
                                    button.danger type="submit" name="decision" value="confirm" { (ctx.t("staff.confirm_hit")) }
                                }
                            }
                        }
                    },
                ))
            }
        },
    )
}

async fn audit(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<StaffQuery>,
) -> Response {
    let staff = match staff(&ctx, &state).await {
        Ok(staff) => staff,
        Err(page) => return page,
    };
    if !staff.may(Permission::ReadAudit) {
        return forbidden(&ctx);
    }
    let subject = query.subject.as_deref().map(str::trim).unwrap_or("");
    let path = if subject.is_empty() {
        "/v1/staff/audit?limit=100".to_string()
    } else {
        format!(
            "/v1/staff/audit?limit=100&subject={}",
            encode_query(subject)
        )
    };
    let records = match state.api.get(&staff.caller, &path).await {
        Ok(records) => records,
        Err(failure) => return refused(&ctx, &failure),
    };
    console(
        &ctx,
        &staff,
        "staff.audit",
        query.notice.as_deref(),
        html! {
            section.card {
                form method="get" action="/staff/audit" role="search" {
                    label for="subject" { (ctx.t("staff.subject")) }
                    input #subject name="subject" type="search" value=(subject);
                    button type="submit" { (ctx.t("staff.search")) }
                }
            }
            section.card {
                div.table-wrap { table data-testid="audit" {
                    thead { tr {
                        th scope="col" { "#" }
                        th scope="col" { (ctx.t("receipt.time")) }
                        th scope="col" { (ctx.t("staff.actor")) }
                        th scope="col" { (ctx.t("staff.action")) }
                        th scope="col" { (ctx.t("staff.subject")) }
                        th scope="col" { (ctx.t("staff.outcome")) }
                    } }
                    tbody {
                        @for r in list(&records) {
                            tr {
                                td { (int(r, "seq")) }
                                td { (ctx.time(text(r, "at"))) }
                                td { (text(r, "actor")) }
                                td { code { (text(r, "action")) } }
                                td { (text(r, "subject")) }
                                td { (text(r, "outcome")) }
                            }
                        }
                    }
                } }
            }
        },
    )
}

async fn work_case(
    ctx: Ctx,
    State(state): State<WebState>,
    Path((id, action)): Path<(String, String)>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if !matches!(action.as_str(), "release" | "reject" | "escalate") {
        return forbidden(&ctx);
    }
    let path = format!("/v1/staff/risk/cases/{}/{action}", encode(&id));
    let body = json!({ "note": field(&form, "note") });
    match staff_post(&ctx, &state, &form, &path, &body).await {
        Ok(_) => Redirect::to("/staff/risk?notice=notice.decided").into_response(),
        Err(page) => page,
    }
}

async fn decide_hit(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let path = format!("/v1/staff/compliance/hits/{}/decide", encode(&id));
    let body = json!({ "decision": field(&form, "decision"), "note": field(&form, "note") });
    match staff_post(&ctx, &state, &form, &path, &body).await {
        Ok(_) => Redirect::to("/staff/compliance?notice=notice.decided").into_response(),
        Err(page) => page,
    }
}

fn settings_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "fees" => Some("fees"),
        "tier_limits" => Some("tier_limits"),
        _ => None,
    }
}

async fn settings(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(kind): Path<String>,
    Query(query): Query<StaffQuery>,
) -> Response {
    let staff = match staff(&ctx, &state).await {
        Ok(staff) => staff,
        Err(page) => return page,
    };
    let view = SettingsView {
        kind: &kind,
        notice_key: query.notice.as_deref(),
        error: None,
        draft: None,
    };
    settings_page(&ctx, &state, &staff, &view).await
}

struct SettingsView<'a> {
    kind: &'a str,
    notice_key: Option<&'a str>,
    error: Option<&'a str>,
    draft: Option<&'a str>,
}

/// The document in force (version, history) and, for a `manage_settings`
/// role, a form to propose the whole new document: a second staff member
/// approves it under Approvals.
async fn settings_page(
    ctx: &Ctx,
    state: &WebState,
    staff: &Staff,
    view: &SettingsView<'_>,
) -> Response {
    let Some(kind) = settings_kind(view.kind) else {
        return forbidden(ctx);
    };
    let current = match state
        .api
        .get(&staff.caller, &format!("/v1/staff/settings/{kind}"))
        .await
    {
        Ok(current) => current,
        Err(failure) => return refused(ctx, &failure),
    };
    let document = current.get("settings").cloned().unwrap_or_default();
    let pretty = serde_json::to_string_pretty(&document).unwrap_or_default();
    let history = current
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    console(
        ctx,
        staff,
        "staff.settings",
        view.notice_key,
        html! {
            nav.tabs {
                a href="/staff/settings/fees" aria-current=[(kind == "fees").then_some("page")] { (ctx.t("staff.fees")) }
                " · "
                a href="/staff/settings/tier_limits" aria-current=[(kind == "tier_limits").then_some("page")] { (ctx.t("staff.tier_limits")) }
            }
            section.card {
                h2 { (ctx.tf("staff.version", &[("version", &int(&current, "version").to_string())])) }
                pre.document data-testid="settings" { (pretty) }
            }
            @if staff.may(Permission::ManageSettings) {
                section.card {
                    h2 { (ctx.t("staff.propose_change")) }
                    p.help { (ctx.t("staff.propose_help")) }
                    (error_box(view.error))
                    form method="post" action=(format!("/staff/settings/{kind}")) {
                        (csrf_field(ctx))
                        (idempotency_field())
                        input type="hidden" name="base_version" value=(int(&current, "version"));
                        label for="document" { (ctx.t("staff.document")) }
                        textarea #document name="document" rows="16" spellcheck="false" required { (view.draft.unwrap_or(&pretty)) }
                        label for="settings-reason" { (ctx.t("staff.reason")) }
                        input #settings-reason name="reason" type="text" required maxlength="200";
                        button.primary type="submit" { (ctx.t("staff.propose")) }
                    }
                }
            }
            @if !history.is_empty() {
                section.card {
                    h2 { (ctx.t("staff.versions")) }
                    div.table-wrap { table {
                        thead { tr {
                            th scope="col" { "#" }
                            th scope="col" { (ctx.t("staff.maker")) }
                            th scope="col" { (ctx.t("staff.checker")) }
                            th scope="col" { (ctx.t("receipt.time")) }
                        } }
                        tbody {
                            @for v in &history {
                                tr {
                                    td { (int(v, "version")) }
                                    td { (text(v, "maker")) }
                                    td { (text(v, "checker")) }
                                    td { (ctx.time(text(v, "created_at"))) }
                                }
                            }
                        }
                    } }
                }
            }
        },
    )
}

async fn propose_settings(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(kind): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let staff = match staff(&ctx, &state).await {
        Ok(staff) => staff,
        Err(page) => return page,
    };
    let Some(kind) = settings_kind(&kind) else {
        return forbidden(&ctx);
    };
    let draft = form.get("document").map_or("", String::as_str);
    let Ok(document) = serde_json::from_str::<Value>(draft) else {
        let view = SettingsView {
            kind,
            notice_key: None,
            error: Some(ctx.t("staff.document_invalid")),
            draft: Some(draft),
        };
        return settings_page(&ctx, &state, &staff, &view).await;
    };
    let body = json!({
        "base_version": field(&form, "base_version").parse::<i64>().unwrap_or(-1),
        "settings": document,
        "reason": field(&form, "reason"),
    });
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    let path = format!("/v1/staff/settings/{kind}/proposals");
    match state.api.post(&staff.caller, &path, &body, key).await {
        Ok(_) => Redirect::to("/staff/approvals?notice=notice.settings_proposed").into_response(),
        Err(failure)
            if failure.status.is_client_error() && failure.status != StatusCode::UNAUTHORIZED =>
        {
            // The API names the field that is wrong: show it with its words.
            let message = match &failure.field {
                Some(field) => format!(
                    "{} ({field}: {})",
                    ctx.error_text(&failure),
                    failure.message
                ),
                None => ctx.error_text(&failure),
            };
            let view = SettingsView {
                kind,
                notice_key: None,
                error: Some(&message),
                draft: Some(draft),
            };
            settings_page(&ctx, &state, &staff, &view).await
        }
        Err(failure) => refused(&ctx, &failure),
    }
}
