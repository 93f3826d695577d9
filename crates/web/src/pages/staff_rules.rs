//! The console's risk rules and blocklist (`manage_risk`): draft a new rule
//! set version from the one in force, see what a draft would have decided
//! over recent traffic (dry run), activate it, and list or add blocklist
//! entries. Everything goes through `/v1/staff/risk/*`; the API validates
//! the rule set and reports every problem with its field path, which the
//! form shows next to the text it keeps.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use coffer_identity::Permission;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::staff::{
    console, forbidden, label, refused, staff, staff_read, staff_submit, with_detail, Posted,
    Staff, StaffQuery,
};
use super::{field, Form};
use crate::api::{int, list, text, ApiFailure};
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD};
use crate::layout::{csrf_field, encode, error_box, idempotency_field, list_table};
use crate::WebState;

/// The outcomes a rule set decides, in the order the dry run lists them.
const OUTCOMES: [&str; 4] = ["allow", "step_up", "review", "block_and_freeze"];

/// The blocklists the API keeps.
const BLOCK_LISTS: [&str; 4] = ["payee", "device", "card", "ip"];

/// How many recent evaluations a dry run replays unless asked (the API's
/// own default), and the choices the page offers (within its 5000).
const DRY_RUN_LIMITS: [i64; 4] = [100, 1000, 2500, 5000];

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/staff/risk/rules", get(rules).post(draft))
        .route("/staff/risk/rules/{version}/dry-run", get(dry_run))
        .route("/staff/risk/rules/{version}/activate", post(activate))
        .route("/staff/risk/blocklist", get(blocklist).post(add_block))
}

/// What the rules page shows besides the versions: a notice, a refusal
/// with each field's problem, and the text the staff member wrote.
#[derive(Default)]
struct RulesView<'a> {
    notice_key: Option<&'a str>,
    error: Option<String>,
    field_errors: Vec<(String, String)>,
    draft: Option<&'a str>,
}

async fn rules(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<StaffQuery>,
) -> Response {
    let view = RulesView {
        notice_key: query.notice.as_deref(),
        ..RulesView::default()
    };
    rules_page(&ctx, &state, &view).await
}

/// The versions (newest first), a draft form prefilled with the version in
/// force, and for each draft its dry run and activation.
async fn rules_page(ctx: &Ctx, state: &WebState, view: &RulesView<'_>) -> Response {
    let (staff, rules) =
        match staff_read(ctx, state, Permission::ManageRisk, "/v1/staff/risk/rules").await {
            Ok(read) => read,
            Err(page) => return page,
        };
    let active = int(&rules, "active");
    let in_force = list(&rules)
        .iter()
        .find(|v| int(v, "version") == active)
        .and_then(|v| v.get("rules"))
        .map(|r| serde_json::to_string_pretty(r).unwrap_or_default())
        .unwrap_or_default();
    console(
        ctx,
        &staff,
        "staff.rules",
        view.notice_key,
        html! {
            section.card aria-labelledby="draft-title" {
                h2 #draft-title { (ctx.t("staff.rules_draft")) }
                p.help { (ctx.t("staff.rules_draft_help")) }
                (error_box(view.error.as_deref()))
                @if !view.field_errors.is_empty() {
                    ul.error #draft-errors data-testid="rule-errors" {
                        @for (path, message) in &view.field_errors {
                            li { code { (path) } ": " (message) }
                        }
                    }
                }
                form method="post" action="/staff/risk/rules" {
                    (csrf_field(ctx))
                    (idempotency_field())
                    label for="document" { (ctx.t("staff.rules_document")) }
                    textarea #document name="rules" rows="20" spellcheck="false" required
                        aria-describedby=[(!view.field_errors.is_empty()).then_some("draft-errors")]
                        aria-invalid=[(view.error.is_some()).then_some("true")] {
                        (view.draft.unwrap_or(&in_force))
                    }
                    button.primary type="submit" { (ctx.t("staff.rules_save_draft")) }
                }
            }
            @for version in list(&rules) {
                @let number = int(version, "version");
                @let state_name = text(version, "state");
                section.card data-testid=(format!("rules-{number}")) {
                    h2 {
                        (ctx.tf("staff.rules_version", &[("version", &number.to_string())]))
                        " "
                        span class=(if number == active { "tag" } else { "tag bad" }) data-state=(state_name) {
                            (label(ctx, "rules_state", state_name))
                        }
                    }
                    p.help {
                        (text(version, "author")) " · " (ctx.time(text(version, "created_at")))
                        @if !text(version, "activated_by").is_empty() {
                            " · " (ctx.tf("staff.rules_activated_by", &[("who", text(version, "activated_by"))]))
                        }
                    }
                    @if state_name == "draft" {
                        div.actions {
                            a.button href=(format!("/staff/risk/rules/{number}/dry-run")) { (ctx.t("staff.rules_dry_run")) }
                            " "
                            (activate_form(ctx, number))
                        }
                    }
                    details {
                        summary { (ctx.t("staff.rules_show")) }
                        pre.document { (serde_json::to_string_pretty(version.get("rules").unwrap_or(&Value::Null)).unwrap_or_default()) }
                    }
                }
            }
        },
    )
}

fn activate_form(ctx: &Ctx, version: i64) -> Markup {
    html! {
        form.inline method="post" action=(format!("/staff/risk/rules/{version}/activate")) {
            (csrf_field(ctx))
            (idempotency_field())
            button.danger type="submit" { (ctx.tf("staff.rules_activate", &[("version", &version.to_string())])) }
        }
    }
}

/// One problem of a refused rule set: its field path and what is wrong.
#[derive(Deserialize)]
struct FieldError {
    field: String,
    message: String,
}

async fn draft(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let staff = match staff(&ctx, &state).await {
        Ok(staff) => staff,
        Err(page) => return page,
    };
    if !staff.may(Permission::ManageRisk) {
        return forbidden(&ctx);
    }
    let draft = form.get("rules").map_or("", String::as_str);
    let Ok(rules) = serde_json::from_str::<Value>(draft) else {
        let view = RulesView {
            error: Some(ctx.t("staff.document_invalid").to_string()),
            draft: Some(draft),
            ..RulesView::default()
        };
        return rules_page(&ctx, &state, &view).await;
    };
    let body = serde_json::to_vec(&json!({ "rules": rules })).unwrap_or_default();
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    // The raw answer: a refused rule set carries every field's problem in
    // `error.errors`, which the one-error shape of `Api::post` leaves out.
    let answer = match state
        .api
        .raw(
            &staff.caller,
            Method::POST,
            "/v1/staff/risk/rules",
            Some((body, "application/json")),
            key,
        )
        .await
    {
        Ok(answer) => answer,
        Err(failure) => return refused(&ctx, &failure),
    };
    let value: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    if answer.status.is_success() {
        return Redirect::to(&format!(
            "/staff/risk/rules/{}/dry-run?notice=notice.rules_drafted",
            int(&value, "version")
        ))
        .into_response();
    }
    let detail = value.get("error").cloned().unwrap_or_default();
    let failure = ApiFailure {
        status: answer.status,
        code: text(&detail, "code").to_string(),
        message: text(&detail, "message").to_string(),
        field: detail
            .get("field")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    if !answer.status.is_client_error() || answer.status == StatusCode::UNAUTHORIZED {
        return refused(&ctx, &failure);
    }
    let field_errors: Vec<(String, String)> = detail
        .get("errors")
        .cloned()
        .and_then(|errors| serde_json::from_value::<Vec<FieldError>>(errors).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.field, e.message))
        .collect();
    let error = if field_errors.is_empty() {
        with_detail(&ctx, &failure)
    } else {
        ctx.tf(
            "staff.rules_invalid",
            &[("count", &field_errors.len().to_string())],
        )
    };
    let view = RulesView {
        error: Some(error),
        field_errors,
        draft: Some(draft),
        ..RulesView::default()
    };
    rules_page(&ctx, &state, &view).await
}

/// A positive version number from the path, or nothing (refused).
fn version_of(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().filter(|v| *v > 0)
}

#[derive(Deserialize, Default)]
struct DryRunQuery {
    notice: Option<String>,
    limit: Option<String>,
}

async fn dry_run(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(version): Path<String>,
    Query(query): Query<DryRunQuery>,
) -> Response {
    let Some(version) = version_of(&version) else {
        return forbidden(&ctx);
    };
    let limit = query
        .limit
        .as_deref()
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| DRY_RUN_LIMITS.contains(l))
        .unwrap_or(1000);
    let (staff, rules) =
        match staff_read(&ctx, &state, Permission::ManageRisk, "/v1/staff/risk/rules").await {
            Ok(read) => read,
            Err(page) => return page,
        };
    let run = match state
        .api
        .get(
            &staff.caller,
            &format!("/v1/staff/risk/rules/{version}/dry-run?limit={limit}"),
        )
        .await
    {
        Ok(run) => run,
        Err(failure) => return refused(&ctx, &failure),
    };
    let this = list(&rules)
        .iter()
        .find(|v| int(v, "version") == version)
        .cloned()
        .unwrap_or_default();
    let currency = this
        .get("rules")
        .map(|r| text(r, "currency").to_string())
        .unwrap_or_default();
    dry_run_page(&ctx, &staff, &query, version, limit, &this, &currency, &run)
}

/// The count of `outcome` in one of the dry run's lists (0 when absent).
fn count_of(run: &Value, list_name: &str, outcome: &str) -> i64 {
    run.get(list_name)
        .and_then(Value::as_array)
        .and_then(|l| l.iter().find(|c| text(c, "outcome") == outcome))
        .map_or(0, |c| int(c, "count"))
}

#[allow(clippy::too_many_arguments)]
fn dry_run_page(
    ctx: &Ctx,
    staff: &Staff,
    query: &DryRunQuery,
    version: i64,
    limit: i64,
    this: &Value,
    currency: &str,
    run: &Value,
) -> Response {
    let examples = run
        .get("examples")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    console(
        ctx,
        staff,
        "staff.rules_dry_run",
        query.notice.as_deref(),
        html! {
            p { a href="/staff/risk/rules" { (ctx.t("staff.rules_back")) } }
            section.card aria-labelledby="run-title" {
                h2 #run-title {
                    (ctx.tf("staff.rules_version", &[("version", &version.to_string())]))
                    " "
                    span.tag data-state=(text(this, "state")) { (label(ctx, "rules_state", text(this, "state"))) }
                }
                form method="get" action=(format!("/staff/risk/rules/{version}/dry-run")) {
                    label for="limit" { (ctx.t("staff.rules_replay")) }
                    select #limit name="limit" {
                        @for choice in DRY_RUN_LIMITS {
                            option value=(choice) selected[choice == limit] { (choice) }
                        }
                    }
                    button type="submit" { (ctx.t("staff.rules_rerun")) }
                }
                dl.receipt {
                    div.row { dt { (ctx.t("staff.rules_evaluations")) } dd data-testid="evaluations" { (int(run, "evaluations")) } }
                    @if !text(run, "since").is_empty() {
                        div.row { dt { (ctx.t("staff.rules_since")) } dd { (ctx.time(text(run, "since"))) } }
                    }
                    div.row { dt { (ctx.t("staff.rules_changed")) } dd data-testid="changed" { (int(run, "changed")) } }
                }
                div.table-wrap { table data-testid="dry-run-counts" {
                    caption { (ctx.t("staff.rules_counts")) }
                    thead { tr {
                        th scope="col" { (ctx.t("staff.outcome")) }
                        th scope="col" { (ctx.t("staff.rules_before")) }
                        th scope="col" { (ctx.t("staff.rules_after")) }
                    } }
                    tbody {
                        @for outcome in OUTCOMES {
                            tr data-outcome=(outcome) {
                                th scope="row" { (label(ctx, "risk_outcome", outcome)) }
                                td { (count_of(run, "decided", outcome)) }
                                td { (count_of(run, "would_decide", outcome)) }
                            }
                        }
                    }
                } }
                @if text(this, "state") == "draft" {
                    div.actions { (activate_form(ctx, version)) }
                }
            }
            section.card aria-labelledby="examples-title" {
                h2 #examples-title { (ctx.t("staff.rules_examples")) }
                @if examples.is_empty() {
                    p.empty { (ctx.t("staff.rules_no_examples")) }
                } @else {
                    div.table-wrap { table data-testid="dry-run-examples" {
                        thead { tr {
                            th scope="col" { (ctx.t("receipt.time")) }
                            th scope="col" { (ctx.t("staff.subject")) }
                            th scope="col" { (ctx.t("staff.kind")) }
                            th scope="col" { (ctx.t("receipt.amount")) }
                            th scope="col" { (ctx.t("staff.rules_before")) }
                            th scope="col" { (ctx.t("staff.rules_after")) }
                            th scope="col" { (ctx.t("staff.reason")) }
                        } }
                        tbody {
                            @for e in examples {
                                tr {
                                    td { (ctx.time(text(e, "at"))) }
                                    td { a href=(format!("/staff/customers/{}", encode(text(e, "customer_id")))) { code { (text(e, "customer_id")) } } }
                                    td { (label(ctx, "operation", text(e, "kind"))) }
                                    td { @if e.get("amount").is_some_and(Value::is_i64) && !currency.is_empty() { (ctx.money(int(e, "amount"), currency)) } }
                                    td { (label(ctx, "risk_outcome", text(e, "decided"))) }
                                    td { (label(ctx, "risk_outcome", text(e, "would_decide"))) }
                                    td {
                                        @for r in e.get("reasons").and_then(Value::as_array).map_or(&[][..], Vec::as_slice) {
                                            code { (text(r, "rule_id")) } " " (text(r, "text")) br;
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
        },
    )
}

async fn activate(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(version): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let Some(version) = version_of(&version) else {
        return forbidden(&ctx);
    };
    let path = format!("/v1/staff/risk/rules/{version}/activate");
    match staff_submit(&ctx, &state, &form, &path, &json!({})).await {
        Ok(Posted::Done(_)) => {
            Redirect::to("/staff/risk/rules?notice=notice.rules_activated").into_response()
        }
        // Refused (already active or retired, not allowed): the rules page
        // again, with the API's reason on top.
        Ok(Posted::Refused(_, error)) => {
            let view = RulesView {
                error: Some(error),
                ..RulesView::default()
            };
            rules_page(&ctx, &state, &view).await
        }
        Err(page) => page,
    }
}

// ---- the blocklist -------------------------------------------------------------------

async fn blocklist(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<StaffQuery>,
) -> Response {
    blocklist_page(&ctx, &state, query.notice.as_deref(), None, None).await
}

async fn blocklist_page(
    ctx: &Ctx,
    state: &WebState,
    notice_key: Option<&str>,
    error: Option<&str>,
    form: Option<&Form>,
) -> Response {
    let (staff, entries) = match staff_read(
        ctx,
        state,
        Permission::ManageRisk,
        "/v1/staff/risk/blocklist",
    )
    .await
    {
        Ok(read) => read,
        Err(page) => return page,
    };
    let kept = |name: &str| form.map_or("", |f| field(f, name)).to_string();
    let chosen = kept("list");
    console(
        ctx,
        &staff,
        "staff.blocklist",
        notice_key,
        html! {
            section.card aria-labelledby="block-title" {
                h2 #block-title { (ctx.t("staff.block_add")) }
                p.help { (ctx.t("staff.block_help")) }
                (error_box(error))
                form method="post" action="/staff/risk/blocklist" {
                    (csrf_field(ctx))
                    (idempotency_field())
                    label for="block-list" { (ctx.t("staff.block_list")) }
                    select #block-list name="list" required {
                        @for name in BLOCK_LISTS {
                            option value=(name) selected[name == chosen] { (label(ctx, "block_list", name)) }
                        }
                    }
                    label for="block-value" { (ctx.t("staff.block_value")) }
                    input #block-value name="value" type="text" required maxlength="200" value=(kept("value"));
                    label for="block-reason" { (ctx.t("staff.reason")) }
                    input #block-reason name="reason" type="text" required maxlength="200" value=(kept("reason"));
                    button.danger type="submit" { (ctx.t("staff.block_submit")) }
                }
            }
            section.card {
                (list_table(
                    ctx,
                    "blocklist",
                    "staff.block_empty",
                    &["staff.block_list", "staff.block_value", "staff.reason", "staff.actor", "receipt.time"],
                    list(&entries),
                    |b| html! {
                        td { (label(ctx, "block_list", text(b, "list"))) }
                        td { code { (text(b, "value")) } }
                        td { (text(b, "reason")) }
                        td { (text(b, "created_by")) }
                        td { (ctx.time(text(b, "created_at"))) }
                    },
                ))
            }
        },
    )
}

async fn add_block(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let body = json!({
        "list": field(&form, "list"),
        "value": field(&form, "value"),
        "reason": field(&form, "reason"),
    });
    match staff_submit(&ctx, &state, &form, "/v1/staff/risk/blocklist", &body).await {
        Ok(Posted::Done(_)) => {
            Redirect::to("/staff/risk/blocklist?notice=notice.blocked").into_response()
        }
        Ok(Posted::Refused(_, error)) => {
            blocklist_page(&ctx, &state, None, Some(&error), Some(&form)).await
        }
        Err(page) => page,
    }
}
