//! The console's operations pages: marketing campaigns (`manage_campaigns`:
//! list, create with a segment, see the opted-in audience and the result,
//! propose sending for a second staff member to approve), the
//! notification dead letters (`manage_notifications`: list, re-queue) and
//! the connectors' reconciliation (`reconcile`).
//! Also the menu entries of every page outside `staff.rs`, so that module's
//! own list stays as it is.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use coffer_identity::Permission;
use maud::{html, Markup};
use serde_json::{json, Map, Value};

use super::staff::{
    console, label, refused, staff, staff_post, staff_read, staff_submit, with_detail, Posted,
    StaffQuery,
};
use super::{field, Form};
use crate::api::{int, list, text};
use crate::ctx::Ctx;
use crate::layout::{csrf_field, encode, error_box, idempotency_field, list_table};
use crate::WebState;

/// The activity categories a campaign can target by spending.
const SPENDING_CATEGORIES: [&str; 9] = [
    "food",
    "transport",
    "shopping",
    "bills",
    "entertainment",
    "health",
    "travel",
    "transfers",
    "other",
];

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/staff/campaigns", get(campaigns).post(create_campaign))
        .route("/staff/campaigns/{id}", get(campaign))
        .route("/staff/campaigns/{id}/send", post(propose_send))
        .route("/staff/notifications", get(dead_letters))
        .route("/staff/notifications/{id}/requeue", post(requeue))
        .route("/staff/reconciliation", get(reconciliation))
}

// ---- campaigns -----------------------------------------------------------------------

async fn campaigns(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<StaffQuery>,
) -> Response {
    campaigns_page(&ctx, &state, query.notice.as_deref(), None, None).await
}

/// A campaign's segment in words ("everyone" when it has none).
fn segment_text(ctx: &Ctx, segment: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(tier) = segment.get("kyc_tier_min").and_then(Value::as_i64) {
        parts.push(ctx.tf("staff.segment_tier", &[("tier", &tier.to_string())]));
    }
    if let Some(days) = segment.get("active_within_days").and_then(Value::as_i64) {
        parts.push(ctx.tf("staff.segment_active", &[("days", &days.to_string())]));
    }
    let category = text(segment, "spending_category");
    if !category.is_empty() {
        let days = segment
            .get("spending_within_days")
            .and_then(Value::as_i64)
            .unwrap_or(30);
        parts.push(ctx.tf(
            "staff.segment_spending",
            &[
                ("category", &label(ctx, "category", category)),
                ("days", &days.to_string()),
            ],
        ));
    }
    if parts.is_empty() {
        ctx.t("staff.segment_everyone").to_string()
    } else {
        parts.join(" · ")
    }
}

async fn campaigns_page(
    ctx: &Ctx,
    state: &WebState,
    notice_key: Option<&str>,
    error: Option<&str>,
    form: Option<&Form>,
) -> Response {
    let (staff, all) = match staff_read(
        ctx,
        state,
        Permission::ManageCampaigns,
        "/v1/staff/campaigns",
    )
    .await
    {
        Ok(read) => read,
        Err(page) => return page,
    };
    console(
        ctx,
        &staff,
        "staff.campaigns",
        notice_key,
        html! {
            section.card aria-labelledby="campaign-title" {
                h2 #campaign-title { (ctx.t("staff.campaign_new")) }
                p.help { (ctx.t("staff.campaign_help")) }
                (error_box(error))
                (campaign_form(ctx, form))
            }
            section.card {
                (list_table(
                    ctx,
                    "campaigns",
                    "staff.campaign_none",
                    &["staff.name", "staff.segment", "staff.audience", "receipt.status", "receipt.time"],
                    list(&all),
                    |c| html! {
                        td { a href=(format!("/staff/campaigns/{}", encode(text(c, "id")))) { (text(c, "name")) } }
                        td { (segment_text(ctx, c.get("segment").unwrap_or(&Value::Null))) }
                        td { (int(c, "audience_now")) }
                        td { (label(ctx, "campaign_state", text(c, "state"))) }
                        td { (ctx.time(text(c, "created_at"))) }
                    },
                ))
            }
        },
    )
}

/// The new-campaign form, keeping what was typed after a refusal.
fn campaign_form(ctx: &Ctx, form: Option<&Form>) -> Markup {
    let kept = |name: &str| form.map_or("", |f| field(f, name)).to_string();
    let tier = kept("kyc_tier_min");
    let category = kept("spending_category");
    html! {
        form method="post" action="/staff/campaigns" {
            (csrf_field(ctx))
            (idempotency_field())
            label for="campaign-name" { (ctx.t("staff.campaign_name")) }
            input #campaign-name name="name" type="text" required maxlength="100" value=(kept("name"));
            fieldset {
                legend { (ctx.t("staff.segment")) }
                p.help { (ctx.t("staff.segment_help")) }
                label for="segment-tier" { (ctx.t("staff.segment_tier_label")) }
                select #segment-tier name="kyc_tier_min" {
                    option value="" selected[tier.is_empty()] { (ctx.t("staff.segment_any")) }
                    @for t in ["0", "1", "2"] {
                        option value=(t) selected[tier == t] { (t) }
                    }
                }
                label for="segment-active" { (ctx.t("staff.segment_active_label")) }
                input #segment-active name="active_within_days" type="text" inputmode="numeric" pattern="[0-9]{1,3}" autocomplete="off" value=(kept("active_within_days"));
                label for="segment-category" { (ctx.t("staff.segment_category_label")) }
                select #segment-category name="spending_category" {
                    option value="" selected[category.is_empty()] { (ctx.t("staff.segment_any")) }
                    @for c in SPENDING_CATEGORIES {
                        option value=(c) selected[category == c] { (label(ctx, "category", c)) }
                    }
                }
                label for="segment-spending-days" { (ctx.t("staff.segment_spending_days_label")) }
                input #segment-spending-days name="spending_within_days" type="text" inputmode="numeric" pattern="[0-9]{1,3}" autocomplete="off" value=(kept("spending_within_days"));
            }
            fieldset lang="en" {
                legend { "English" }
                label for="en-title" { (ctx.t("staff.campaign_title")) }
                input #en-title name="en_title" type="text" required maxlength="100" value=(kept("en_title"));
                label for="en-body" { (ctx.t("staff.campaign_body")) }
                textarea #en-body name="en_body" rows="3" required maxlength="500" { (kept("en_body")) }
            }
            fieldset lang="zh-CN" {
                legend { "中文" }
                label for="zh-title" { (ctx.t("staff.campaign_title")) }
                input #zh-title name="zh_title" type="text" required maxlength="100" value=(kept("zh_title"));
                label for="zh-body" { (ctx.t("staff.campaign_body")) }
                textarea #zh-body name="zh_body" rows="3" required maxlength="500" { (kept("zh_body")) }
            }
            button.primary type="submit" { (ctx.t("staff.campaign_create")) }
        }
    }
}

/// A whole number of the form as JSON; anything else as typed, for the
/// API to refuse with the field's name.
fn number_or_text(text: &str) -> Value {
    text.parse::<i64>()
        .map_or_else(|_| json!(text), |n| json!(n))
}

async fn create_campaign(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let mut segment = Map::new();
    for name in ["kyc_tier_min", "active_within_days", "spending_within_days"] {
        let value = field(&form, name);
        if !value.is_empty() {
            segment.insert(name.into(), number_or_text(value));
        }
    }
    let category = field(&form, "spending_category");
    if !category.is_empty() {
        segment.insert("spending_category".into(), json!(category));
    }
    let body = json!({
        "name": field(&form, "name"),
        "segment": segment,
        "en_title": field(&form, "en_title"),
        "en_body": field(&form, "en_body"),
        "zh_title": field(&form, "zh_title"),
        "zh_body": field(&form, "zh_body"),
    });
    match staff_submit(&ctx, &state, &form, "/v1/staff/campaigns", &body).await {
        Ok(Posted::Done(created)) => Redirect::to(&format!(
            "/staff/campaigns/{}?notice=notice.campaign_created",
            encode(text(&created, "id"))
        ))
        .into_response(),
        Ok(Posted::Refused(_, error)) => {
            campaigns_page(&ctx, &state, None, Some(&error), Some(&form)).await
        }
        Err(page) => page,
    }
}

async fn campaign(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    Query(query): Query<StaffQuery>,
) -> Response {
    let path = format!("/v1/staff/campaigns/{}", encode(&id));
    let (staff, c) = match staff_read(&ctx, &state, Permission::ManageCampaigns, &path).await {
        Ok(read) => read,
        Err(page) => return page,
    };
    let campaign_state = text(&c, "state");
    console(
        &ctx,
        &staff,
        "staff.campaign",
        query.notice.as_deref(),
        html! {
            p { a href="/staff/campaigns" { (ctx.t("staff.campaigns_all")) } }
            section.card {
                h2 { (text(&c, "name")) }
                dl.receipt {
                    div.row { dt { (ctx.t("receipt.status")) } dd data-testid="campaign-state" data-state=(campaign_state) { (label(&ctx, "campaign_state", campaign_state)) } }
                    div.row { dt { (ctx.t("staff.segment")) } dd { (segment_text(&ctx, c.get("segment").unwrap_or(&Value::Null))) } }
                    div.row { dt { (ctx.t("staff.audience")) } dd data-testid="audience" { (int(&c, "audience_now")) } }
                    @if let Some(sent) = c.get("sent_to").and_then(Value::as_i64) {
                        div.row { dt { (ctx.t("staff.campaign_sent_to")) } dd data-testid="sent-to" { (sent) } }
                    }
                    @if !text(&c, "sent_at").is_empty() {
                        div.row { dt { (ctx.t("staff.campaign_sent_at")) } dd { (ctx.time(text(&c, "sent_at"))) } }
                    }
                    div.row { dt { (ctx.t("staff.maker")) } dd { (text(&c, "created_by")) } }
                    @if !text(&c, "approved_by").is_empty() {
                        div.row { dt { (ctx.t("staff.checker")) } dd { (text(&c, "approved_by")) } }
                    }
                    div.row { dt { (ctx.t("receipt.reference")) } dd { code { (text(&c, "id")) } } }
                }
                p.help { (ctx.t("staff.audience_help")) }
            }
            @if campaign_state == "draft" && staff.may(Permission::ProposeSensitive) {
                section.card aria-labelledby="send-title" {
                    h2 #send-title { (ctx.t("staff.campaign_send")) }
                    p.help { (ctx.t("staff.campaign_send_help")) }
                    form method="post" action=(format!("/staff/campaigns/{}/send", encode(&id))) {
                        (csrf_field(&ctx))
                        (idempotency_field())
                        label for="send-reason" { (ctx.t("staff.reason")) }
                        input #send-reason name="reason" type="text" required maxlength="200";
                        button.primary type="submit" { (ctx.t("staff.propose")) }
                    }
                }
            }
        },
    )
}

async fn propose_send(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let body =
        json!({ "action": "send_campaign", "subject": id, "reason": field(&form, "reason") });
    match staff_post(&ctx, &state, &form, "/v1/staff/approvals", &body).await {
        Ok(_) => Redirect::to(&format!(
            "/staff/campaigns/{}?notice=notice.campaign_proposed",
            encode(&id)
        ))
        .into_response(),
        Err(page) => page,
    }
}

// ---- dead letters ----------------------------------------------------------------------

async fn dead_letters(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<StaffQuery>,
) -> Response {
    let (staff, dead) = match staff_read(
        &ctx,
        &state,
        Permission::ManageNotifications,
        "/v1/staff/notifications/dead-letters?limit=100",
    )
    .await
    {
        Ok(read) => read,
        Err(page) => return page,
    };
    console(
        &ctx,
        &staff,
        "staff.dead_letters",
        query.notice.as_deref(),
        html! {
            section.card {
                p.help { (ctx.t("staff.dead_letters_help")) }
                @if list(&dead).is_empty() {
                    p.empty { (ctx.t("staff.nothing_pending")) }
                } @else {
                    div.table-wrap { table data-testid="dead-letters" {
                        thead { tr {
                            th scope="col" { "#" }
                            th scope="col" { (ctx.t("staff.channel")) }
                            th scope="col" { (ctx.t("staff.recipient")) }
                            th scope="col" { (ctx.t("staff.template")) }
                            th scope="col" { (ctx.t("staff.attempts")) }
                            th scope="col" { (ctx.t("staff.last_error")) }
                            th scope="col" { (ctx.t("receipt.time")) }
                            th scope="col" {}
                        } }
                        tbody {
                            @for d in list(&dead) {
                                @let id = int(d, "id");
                                tr data-id=(id) {
                                    td { (id) }
                                    td { (label(&ctx, "channel", text(d, "channel"))) }
                                    td { (text(d, "recipient_masked")) }
                                    td { code { (text(d, "template")) } }
                                    td { (int(d, "attempts")) }
                                    td { (text(d, "last_error")) }
                                    td { (ctx.time(text(d, "created_at"))) }
                                    td {
                                        form.inline method="post" action=(format!("/staff/notifications/{id}/requeue")) {
                                            (csrf_field(&ctx))
                                            (idempotency_field())
                                            button type="submit" aria-label=(ctx.tf("staff.requeue_one", &[("id", &id.to_string())])) { (ctx.t("staff.requeue")) }
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

async fn requeue(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let Some(id) = id.parse::<i64>().ok().filter(|n| *n > 0) else {
        return super::staff::forbidden(&ctx);
    };
    let path = format!("/v1/staff/notifications/dead-letters/{id}/requeue");
    match staff_post(&ctx, &state, &form, &path, &json!({})).await {
        Ok(answer) if answer.get("requeued") == Some(&Value::Bool(false)) => {
            Redirect::to("/staff/notifications?notice=notice.not_dead").into_response()
        }
        Ok(_) => Redirect::to("/staff/notifications?notice=notice.requeued").into_response(),
        Err(page) => page,
    }
}

// ---- reconciliation --------------------------------------------------------------------

/// The connectors the API reconciles against.
const CONNECTORS: [&str; 2] = ["card_network", "core_banking"];

#[derive(serde::Deserialize, Default)]
struct ReconcileQuery {
    connector: Option<String>,
    from: Option<String>,
    until: Option<String>,
}

/// A day picked in the form (YYYY-MM-DD) as the start of that day in China
/// time, the zone every date of the console is shown in; anything else as
/// typed, for the API to refuse with the field's name.
fn day_start(day: &str) -> String {
    let shaped = day.len() == 10
        && day.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if shaped {
        format!("{day}T00:00:00+08:00")
    } else {
        day.to_string()
    }
}

/// The form, and once a connector is chosen, its report matched against
/// the ledger (each run is audited by the API, so a plain visit runs none).
async fn reconciliation(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<ReconcileQuery>,
) -> Response {
    let staff = match staff(&ctx, &state).await {
        Ok(staff) => staff,
        Err(page) => return page,
    };
    if !staff.may(Permission::Reconcile) {
        return super::staff::forbidden(&ctx);
    }
    let connector = query
        .connector
        .as_deref()
        .and_then(|c| CONNECTORS.into_iter().find(|k| *k == c));
    let from = query.from.as_deref().map(str::trim).unwrap_or("");
    let until = query.until.as_deref().map(str::trim).unwrap_or("");
    let (report, error) = match connector {
        None => (None, None),
        Some(connector) => {
            let mut path = format!("/v1/staff/reconciliation?connector={connector}");
            for (name, day) in [("from", from), ("until", until)] {
                if !day.is_empty() {
                    path.push_str(&format!(
                        "&{name}={}",
                        super::staff::encode_query(&day_start(day))
                    ));
                }
            }
            match state.api.get(&staff.caller, &path).await {
                Ok(report) => (Some(report), None),
                Err(failure) if failure.status == StatusCode::UNAUTHORIZED => {
                    return refused(&ctx, &failure)
                }
                Err(failure) => (None, Some(with_detail(&ctx, &failure))),
            }
        }
    };
    let breaks = report
        .as_ref()
        .and_then(|r| r.get("breaks"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    console(
        &ctx,
        &staff,
        "staff.reconciliation",
        None,
        html! {
            section.card {
                p.help { (ctx.t("staff.reconcile_help")) }
                (error_box(error.as_deref()))
                form method="get" action="/staff/reconciliation" {
                    label for="connector" { (ctx.t("staff.connector")) }
                    select #connector name="connector" required {
                        @for c in CONNECTORS {
                            option value=(c) selected[connector == Some(c)] { (label(&ctx, "connector", c)) }
                        }
                    }
                    label for="reconcile-from" { (ctx.t("staff.reconcile_from")) }
                    input #reconcile-from name="from" type="date" value=(from);
                    label for="reconcile-until" { (ctx.t("staff.reconcile_until")) }
                    input #reconcile-until name="until" type="date" value=(until);
                    button.primary type="submit" { (ctx.t("staff.reconcile_run")) }
                }
            }
            @if let Some(report) = &report {
                section.card aria-labelledby="report-title" {
                    h2 #report-title { (label(&ctx, "connector", text(report, "connector"))) }
                    p.help { (ctx.time(text(report, "from"))) " – " (ctx.time(text(report, "until"))) }
                    dl.receipt {
                        div.row { dt { (ctx.t("staff.report_lines")) } dd data-testid="report-lines" { (int(report, "report_lines")) } }
                        div.row { dt { (ctx.t("staff.matched")) } dd data-testid="matched" { (int(report, "matched")) } }
                        div.row { dt { (ctx.t("staff.breaks")) } dd data-testid="breaks" { (breaks.len()) } }
                    }
                    @if !breaks.is_empty() {
                        div.table-wrap { table data-testid="reconciliation-breaks" {
                            thead { tr {
                                th scope="col" { (ctx.t("staff.kind")) }
                                th scope="col" { (ctx.t("receipt.reference")) }
                                th scope="col" { (ctx.t("staff.ours")) }
                                th scope="col" { (ctx.t("staff.theirs")) }
                                th scope="col" { (ctx.t("staff.detail")) }
                            } }
                            tbody {
                                @for b in &breaks {
                                    tr {
                                        td { (label(&ctx, "break", text(b, "kind"))) }
                                        td { code { (text(b, "funding_id")) } " " code { (text(b, "connector_reference")) } }
                                        td.amount { (break_amount(ctx.locale, b, "ours")) }
                                        td.amount { (break_amount(ctx.locale, b, "theirs")) }
                                        td { (text(b, "detail")) }
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

/// One side of a reconciliation break: the amount in its currency, or
/// nothing when that side has no record.
fn break_amount(locale: crate::i18n::Locale, b: &Value, side: &str) -> String {
    let minor = b.get(side).and_then(Value::as_i64);
    let currency = b.get(format!("{side}_currency")).and_then(Value::as_str);
    match (minor, currency) {
        (Some(minor), Some(currency)) => crate::format::money(minor, currency, locale),
        (Some(minor), None) => minor.to_string(),
        (None, _) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Locale;

    #[test]
    fn a_break_shows_each_side_in_its_own_currency() {
        let mismatch = json!({
            "kind": "amount_mismatch",
            "ours": 123_456, "ours_currency": "CNY",
            "theirs": 1_000, "theirs_currency": "JPY",
        });
        assert_eq!(break_amount(Locale::Zh, &mismatch, "ours"), "¥1,234.56");
        assert_eq!(break_amount(Locale::En, &mismatch, "theirs"), "JP¥1,000");
        let missing = json!({"kind": "missing_in_ledger", "ours": null, "theirs": 5, "theirs_currency": "USD"});
        assert_eq!(break_amount(Locale::En, &missing, "ours"), "");
        assert_eq!(break_amount(Locale::En, &missing, "theirs"), "$0.05");
    }
}
