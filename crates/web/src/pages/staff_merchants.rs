//! The console's merchant pages: the review queue of merchant applications
//! (`review_merchants`: approve, with an optional discount-rate override,
//! or reject, each with a reason the audit log keeps) and the daily
//! settlements (`settle_merchants`: list, and run a day that has ended).
//! Everything goes through `/v1/staff/merchants*` and
//! `/v1/staff/settlements`.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use coffer_identity::Permission;
use maud::html;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::staff::{console, label, staff_read, staff_submit, Posted, StaffQuery};
use super::{field, Form};
use crate::api::{int, list, text};
use crate::ctx::Ctx;
use crate::layout::{csrf_field, encode, error_box, idempotency_field, list_table};
use crate::WebState;

/// The statuses the queue can show, the review queue first.
const STATUSES: [&str; 3] = ["pending_review", "approved", "rejected"];

/// The most merchants one page lists (the API's own maximum).
const MERCHANTS_PAGE_MAX: i64 = 100;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/staff/merchants", get(queue))
        .route("/staff/merchants/{id}", get(merchant))
        .route("/staff/merchants/{id}/review", post(review))
        .route("/staff/settlements", get(settlements).post(run_settlements))
}

#[derive(Deserialize, Default)]
struct MerchantsQuery {
    notice: Option<String>,
    status: Option<String>,
}

fn status_of(query: &MerchantsQuery) -> &'static str {
    STATUSES
        .into_iter()
        .find(|s| query.status.as_deref() == Some(*s))
        .unwrap_or("pending_review")
}

async fn queue(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<MerchantsQuery>,
) -> Response {
    let status = status_of(&query);
    let path = format!("/v1/staff/merchants?status={status}&limit={MERCHANTS_PAGE_MAX}");
    let (staff, merchants) =
        match staff_read(&ctx, &state, Permission::ReviewMerchants, &path).await {
            Ok(read) => read,
            Err(page) => return page,
        };
    console(
        &ctx,
        &staff,
        "staff.merchants",
        query.notice.as_deref(),
        html! {
            nav.tabs aria-label=(ctx.t("receipt.status")) {
                @for (i, s) in STATUSES.into_iter().enumerate() {
                    @if i > 0 { " · " }
                    a href=(format!("/staff/merchants?status={s}")) aria-current=[(s == status).then_some("page")] { (label(&ctx, "merchant_status", s)) }
                }
            }
            section.card {
                (list_table(
                    &ctx,
                    "merchants",
                    "staff.nothing_pending",
                    &["staff.name", "staff.merchant_city", "staff.merchant_category", "receipt.status", "staff.merchant_applied"],
                    list(&merchants),
                    |m| html! {
                        td { a href=(format!("/staff/merchants/{}", encode(text(m, "id")))) { (text(m, "display_name")) } }
                        td { (text(m, "city")) }
                        td { (text(m, "mcc")) " " (label(&ctx, "category", text(m, "category"))) }
                        td { (label(&ctx, "merchant_status", text(m, "status"))) }
                        td { (ctx.time(text(m, "created_at"))) }
                    },
                ))
            }
        },
    )
}

async fn merchant(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    Query(query): Query<StaffQuery>,
) -> Response {
    merchant_page(&ctx, &state, &id, query.notice.as_deref(), None).await
}

/// One application: what the applicant declared and, while it waits, the
/// review form. The API has no single-merchant read for staff, so the
/// page finds it in the newest list of each status.
async fn merchant_page(
    ctx: &Ctx,
    state: &WebState,
    id: &str,
    notice_key: Option<&str>,
    error: Option<&str>,
) -> Response {
    let path = format!("/v1/staff/merchants/{}", encode(id));
    let (staff, m) = match staff_read(ctx, state, Permission::ReviewMerchants, &path).await {
        Ok(read) => read,
        Err(page) => return page,
    };
    let status = text(&m, "status");
    console(
        ctx,
        &staff,
        "staff.merchant",
        notice_key,
        html! {
            p { a href="/staff/merchants" { (ctx.t("staff.merchants_all")) } }
            section.card {
                h2 { (text(&m, "display_name")) }
                dl.receipt {
                    div.row { dt { (ctx.t("receipt.status")) } dd data-testid="merchant-status" data-status=(status) {
                        span class=(if status == "rejected" { "tag bad" } else { "tag" }) { (label(ctx, "merchant_status", status)) }
                    } }
                    div.row { dt { (ctx.t("staff.merchant_city")) } dd { (text(&m, "city")) } }
                    div.row { dt { (ctx.t("staff.merchant_category")) } dd { (text(&m, "mcc")) " " (label(ctx, "category", text(&m, "category"))) } }
                    div.row { dt { (ctx.t("staff.merchant_rate")) } dd { (format!("{}.{:02}%", int(&m, "discount_rate_bps") / 100, int(&m, "discount_rate_bps") % 100)) } }
                    div.row { dt { (ctx.t("staff.merchant_account")) } dd { code { (text(&m, "settlement_bank_account_id")) } } }
                    div.row { dt { (ctx.t("receipt.reference")) } dd { code { (text(&m, "id")) } } }
                    div.row { dt { (ctx.t("staff.merchant_applied")) } dd { (ctx.time(text(&m, "created_at"))) } }
                    @if !text(&m, "review_note").is_empty() {
                        div.row { dt { (ctx.t("staff.reason")) } dd { (text(&m, "review_note")) } }
                    }
                }
            }
            @if status == "pending_review" {
                section.card aria-labelledby="review-title" {
                    h2 #review-title { (ctx.t("staff.merchant_review")) }
                    p.help { (ctx.t("staff.merchant_review_help")) }
                    (error_box(error))
                    form method="post" action=(format!("/staff/merchants/{}/review", encode(id))) {
                        (csrf_field(ctx))
                        (idempotency_field())
                        label for="review-note" { (ctx.t("staff.reason")) }
                        input #review-note name="note" type="text" required maxlength="500";
                        label for="review-rate" { (ctx.t("staff.merchant_rate_override")) }
                        input #review-rate name="discount_rate_bps" type="text" inputmode="numeric" pattern="[0-9]{1,4}" autocomplete="off";
                        button.primary type="submit" name="decision" value="approve" { (ctx.t("staff.approve")) }
                        " "
                        button.danger type="submit" name="decision" value="reject" { (ctx.t("staff.reject")) }
                    }
                }
            }
        },
    )
}

async fn review(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let mut body = Map::new();
    body.insert(
        "approve".into(),
        json!(field(&form, "decision") == "approve"),
    );
    body.insert("note".into(), json!(field(&form, "note")));
    let rate = field(&form, "discount_rate_bps");
    if !rate.is_empty() {
        // Not a number: the API names the field (a string is not a rate).
        let value = rate
            .parse::<u32>()
            .map_or_else(|_| json!(rate), |n| json!(n));
        body.insert("discount_rate_bps".into(), value);
    }
    let path = format!("/v1/staff/merchants/{}/review", encode(&id));
    match staff_submit(&ctx, &state, &form, &path, &Value::Object(body)).await {
        Ok(Posted::Done(_)) => Redirect::to(&format!(
            "/staff/merchants/{}?notice=notice.decided",
            encode(&id)
        ))
        .into_response(),
        Ok(Posted::Refused(_, error)) => merchant_page(&ctx, &state, &id, None, Some(&error)).await,
        Err(page) => page,
    }
}

// ---- settlements ---------------------------------------------------------------------

async fn settlements(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<StaffQuery>,
) -> Response {
    settlements_page(&ctx, &state, query.notice.as_deref(), None).await
}

async fn settlements_page(
    ctx: &Ctx,
    state: &WebState,
    notice_key: Option<&str>,
    error: Option<&str>,
) -> Response {
    let (staff, settled) = match staff_read(
        ctx,
        state,
        Permission::SettleMerchants,
        "/v1/staff/settlements?limit=100",
    )
    .await
    {
        Ok(read) => read,
        Err(page) => return page,
    };
    console(
        ctx,
        &staff,
        "staff.settlements",
        notice_key,
        html! {
            section.card aria-labelledby="run-title" {
                h2 #run-title { (ctx.t("staff.settle_run")) }
                p.help { (ctx.t("staff.settle_help")) }
                (error_box(error))
                form method="post" action="/staff/settlements" {
                    (csrf_field(ctx))
                    (idempotency_field())
                    label for="settle-date" { (ctx.t("staff.settle_date")) }
                    input #settle-date name="date" type="date";
                    button.primary type="submit" { (ctx.t("staff.settle_submit")) }
                }
            }
            section.card {
                (list_table(
                    ctx,
                    "settlements",
                    "merchant.no_settlements",
                    &["merchant.date", "staff.merchant", "staff.settle_gross", "staff.settle_refunds", "staff.settle_fee", "staff.settle_net", "receipt.status"],
                    list(&settled),
                    |s| html! {
                        @let currency = text(s, "currency");
                            td { (text(s, "date")) }
                            td { code { (text(s, "merchant_id")) } }
                            td { (ctx.money(int(s, "gross"), currency)) " (" (int(s, "payment_count")) ")" }
                            td { (ctx.money(int(s, "refunds"), currency)) " (" (int(s, "refund_count")) ")" }
                            td { (ctx.money(int(s, "fee"), currency)) }
                            td { (ctx.money(int(s, "net"), currency)) }
                            td {
                                (label(ctx, "settlement_status", text(s, "status")))
                                @if !text(s, "reason").is_empty() { br; small { (text(s, "reason")) } }
                            }
                    },
                ))
            }
        },
    )
}

async fn run_settlements(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    let date = field(&form, "date");
    let body = if date.is_empty() {
        json!({})
    } else {
        json!({ "date": date })
    };
    match staff_submit(&ctx, &state, &form, "/v1/staff/settlements", &body).await {
        Ok(Posted::Done(_)) => {
            Redirect::to("/staff/settlements?notice=notice.settled").into_response()
        }
        Ok(Posted::Refused(_, error)) => settlements_page(&ctx, &state, None, Some(&error)).await,
        Err(page) => page,
    }
}
