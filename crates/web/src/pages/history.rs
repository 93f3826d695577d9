//! History: the activity feed with filters and search, a monthly spending
//! chart drawn as SVG on the server, CSV export and receipts.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use crate::api::{int, list, text};
use crate::ctx::Ctx;
use crate::format::{bank_civil, month_label};
use crate::layout::{encode, message_page, page};
use crate::WebState;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/history", get(history))
        .route("/history/export.csv", get(export))
        .route("/history/{id}", get(receipt))
}

pub const KINDS: [&str; 7] = [
    "top_up",
    "withdrawal",
    "bill_payment",
    "fx_conversion",
    "p2p_transfer",
    "merchant_payment",
    "refund",
];
pub const CATEGORIES: [&str; 12] = [
    "food",
    "transport",
    "shopping",
    "bills",
    "entertainment",
    "health",
    "travel",
    "transfers",
    "top_up",
    "withdrawal",
    "exchange",
    "other",
];
/// Months the chart shows, this one included.
const CHART_MONTHS: i64 = 6;

/// The feed's entries as a list; each links to its receipt.
pub fn activity_list(ctx: &Ctx, entries: &[Value]) -> Markup {
    html! {
        @if entries.is_empty() {
            p.empty { (ctx.t("history.empty")) }
        } @else {
            ul.activity {
                @for entry in entries {
                    @let currency = text(entry, "currency");
                    @let direction = text(entry, "direction");
                    @let amount = int(entry, "amount");
                    li class=(format!("entry {direction} {}", text(entry, "status"))) {
                        a href=(format!("/history/{}", encode(text(entry, "id")))) {
                            span.what {
                                span.kind { (kind_label(ctx, text(entry, "type"))) }
                                span.who { (text(entry, "counterparty")) }
                                span.when { (ctx.time(text(entry, "created_at"))) }
                            }
                            span.how-much {
                                span.amount {
                                    (match direction { "in" => "+", "out" => "−", _ => "" })
                                    (ctx.money(amount, currency))
                                }
                                @if text(entry, "status") != "succeeded" {
                                    span.status { (status_label(ctx, text(entry, "status"))) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn kind_label(ctx: &Ctx, kind: &str) -> String {
    ctx.locale
        .lookup(&format!("kind.{kind}"))
        .unwrap_or(kind)
        .to_string()
}

fn status_label(ctx: &Ctx, status: &str) -> String {
    ctx.locale
        .lookup(&format!("status.{status}"))
        .unwrap_or(status)
        .to_string()
}

fn category_label(ctx: &Ctx, category: &str) -> String {
    ctx.locale
        .lookup(&format!("category.{category}"))
        .unwrap_or(category)
        .to_string()
}

#[derive(Deserialize, Default)]
pub struct Filters {
    q: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    category: Option<String>,
    status: Option<String>,
    month: Option<String>,
    cursor: Option<String>,
}

impl Filters {
    /// The API's query string for these filters (empty ones left out).
    fn api_query(&self) -> String {
        let mut pairs = Vec::new();
        for (name, value) in [
            ("q", &self.q),
            ("type", &self.kind),
            ("category", &self.category),
            ("status", &self.status),
            ("cursor", &self.cursor),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                pairs.push(format!("{name}={}", encode(value.trim())));
            }
        }
        if let Some((from, until)) = self.month.as_deref().and_then(month_range) {
            pairs.push(format!("from={}", encode(&from)));
            pairs.push(format!("until={}", encode(&until)));
        }
        pairs.join("&")
    }
}

/// `YYYY-MM` as the RFC 3339 bounds of that month in China time.
fn month_range(month: &str) -> Option<(String, String)> {
    let (year, month) = month.split_once('-')?;
    let (year, month): (i64, i64) = (year.parse().ok()?, month.parse().ok()?);
    if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
        return None;
    }
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    Some((
        format!("{year:04}-{month:02}-01T00:00:00+08:00"),
        format!("{next_year:04}-{next_month:02}-01T00:00:00+08:00"),
    ))
}

pub async fn history(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(filters): Query<Filters>,
) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    let query = filters.api_query();
    let feed = match state
        .api
        .get(&ctx.caller, &format!("/v1/me/activity?limit=50&{query}"))
        .await
    {
        Ok(feed) => feed,
        Err(failure) => return ctx.failure(&failure),
    };
    let months = chart_months(state.app.clock.now().as_nanos());
    let mut totals = Vec::new();
    let mut this_month = Vec::new();
    for (i, (year, month)) in months.iter().enumerate() {
        let summary = state
            .api
            .get(
                &ctx.caller,
                &format!("/v1/me/activity/summary?month={year:04}-{month:02}"),
            )
            .await
            .unwrap_or_default();
        let categories: Vec<Value> = summary
            .get("categories")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let total: i64 = categories
            .iter()
            .filter(|c| text(c, "currency") == "CNY")
            .map(|c| int(c, "amount"))
            .fold(0i64, i64::saturating_add);
        totals.push((*year, *month, total));
        if i + 1 == months.len() {
            this_month = categories;
        }
    }
    let next_cursor = text(&feed, "next_cursor");
    let selected = |value: &Option<String>, option: &str| value.as_deref() == Some(option);
    page(
        &ctx,
        "history.title",
        html! {
            h1 { (ctx.t("history.title")) }
            section.card aria-labelledby="chart-title" {
                h2 #chart-title { (ctx.t("history.chart_title")) }
                (spending_chart(&ctx, &totals))
                @if !this_month.is_empty() {
                    h3 { (ctx.t("history.by_category")) }
                    ul.categories {
                        @for category in &this_month {
                            li {
                                span { (category_label(&ctx, text(category, "category"))) }
                                span.amount { (ctx.money(int(category, "amount"), text(category, "currency"))) }
                            }
                        }
                    }
                }
            }
            form.filters method="get" action="/history" role="search" {
                label for="q" { (ctx.t("history.search")) }
                input #q name="q" type="search" value=(filters.q.clone().unwrap_or_default());
                @if !ctx.simple {
                    label for="type" { (ctx.t("history.type")) }
                    select #type name="type" {
                        option value="" { (ctx.t("history.any")) }
                        @for kind in KINDS {
                            option value=(kind) selected[selected(&filters.kind, kind)] { (kind_label(&ctx, kind)) }
                        }
                    }
                    label for="category" { (ctx.t("history.category")) }
                    select #category name="category" {
                        option value="" { (ctx.t("history.any")) }
                        @for category in CATEGORIES {
                            option value=(category) selected[selected(&filters.category, category)] { (category_label(&ctx, category)) }
                        }
                    }
                    label for="status" { (ctx.t("history.status")) }
                    select #status name="status" {
                        option value="" { (ctx.t("history.any")) }
                        @for status in ["succeeded", "pending", "failed", "refunded", "partially_refunded"] {
                            option value=(status) selected[selected(&filters.status, status)] { (status_label(&ctx, status)) }
                        }
                    }
                    label for="month" { (ctx.t("history.month")) }
                    input #month name="month" type="month" value=(filters.month.clone().unwrap_or_default());
                }
                button type="submit" { (ctx.t("history.apply")) }
            }
            p.export {
                a href=(format!("/history/export.csv?{query}")) download { (ctx.t("history.export")) }
            }
            (activity_list(&ctx, list(&feed)))
            @if !next_cursor.is_empty() {
                p { a href=(format!("/history?{}&cursor={}", strip_cursor(&query), encode(next_cursor))) { (ctx.t("history.more")) } }
            }
        },
    )
}

fn strip_cursor(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.starts_with("cursor=") && !pair.is_empty())
        .collect::<Vec<_>>()
        .join("&")
}

/// The last `CHART_MONTHS` months, oldest first, in China time.
fn chart_months(now_nanos: i64) -> Vec<(i64, i64)> {
    let (year, month, ..) = bank_civil(now_nanos);
    let index = year * 12 + (month - 1);
    (0..CHART_MONTHS)
        .rev()
        .map(|back| {
            let i = index - back;
            (i.div_euclid(12), i.rem_euclid(12) + 1)
        })
        .collect()
}

/// Bars of CNY spending per month, scaled to the largest; integer geometry
/// only. Each bar has a text equivalent for screen readers.
pub fn spending_chart(ctx: &Ctx, totals: &[(i64, i64, i64)]) -> Markup {
    const WIDTH: i64 = 320;
    const HEIGHT: i64 = 160;
    const BASE: i64 = 130;
    const BAR_AREA: i64 = 110;
    let max = totals.iter().map(|t| t.2).max().unwrap_or(0).max(1);
    let slot = WIDTH / i64::try_from(totals.len().max(1)).unwrap_or(1);
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-labelledby="chart-desc" xmlns="http://www.w3.org/2000/svg" {
            title #chart-desc { (ctx.t("history.chart_title")) }
            line x1="0" y1=(BASE) x2=(WIDTH) y2=(BASE) class="axis" {}
            @for (i, (year, month, total)) in totals.iter().enumerate() {
                @let i = i64::try_from(i).unwrap_or(0);
                // Scaled with integer division: the bar heights are pixels, not money.
                @let height = (i128::from(*total) * i128::from(BAR_AREA) / i128::from(max)) as i64;
                @let x = i * slot + slot / 4;
                g {
                    title { (month_label(*year, *month, ctx.locale)) ": " (ctx.money(*total, "CNY")) }
                    rect x=(x) y=(BASE - height) width=(slot / 2) height=(height) class="bar" {}
                    text x=(x + slot / 4) y=(BASE + 16) text-anchor="middle" class="label" { (month_short(*month, ctx)) }
                }
            }
        }
        table.sr-only {
            caption { (ctx.t("history.chart_title")) }
            @for (year, month, total) in totals {
                tr { th scope="row" { (month_label(*year, *month, ctx.locale)) } td { (ctx.money(*total, "CNY")) } }
            }
        }
    }
}

fn month_short(month: i64, ctx: &Ctx) -> String {
    match ctx.locale {
        crate::i18n::Locale::Zh => format!("{month}月"),
        crate::i18n::Locale::En => month_label(2000, month, ctx.locale)
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string(),
    }
}

pub async fn export(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(filters): Query<Filters>,
) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    let path = format!("/v1/me/activity/export?{}", filters.api_query());
    match state
        .api
        .raw(&ctx.caller, Method::GET, &path, None, None)
        .await
    {
        Ok(answer) if answer.status.is_success() => {
            let mut response = (StatusCode::OK, answer.body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                answer
                    .content_type
                    .unwrap_or(HeaderValue::from_static("text/csv; charset=utf-8")),
            );
            headers.insert(
                header::CONTENT_DISPOSITION,
                answer
                    .content_disposition
                    .unwrap_or(HeaderValue::from_static(
                        "attachment; filename=\"coffer-history.csv\"",
                    )),
            );
            response
        }
        _ => message_page(
            &ctx,
            StatusCode::BAD_GATEWAY,
            "error.title",
            ctx.t("error.generic"),
        ),
    }
}

pub async fn receipt(ctx: Ctx, State(state): State<WebState>, Path(id): Path<String>) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    let receipt = match state
        .api
        .get(
            &ctx.caller,
            &format!("/v1/me/activity/{}/receipt", encode(&id)),
        )
        .await
    {
        Ok(receipt) => receipt,
        Err(failure) => return ctx.failure(&failure),
    };
    let currency = text(&receipt, "currency");
    let row = |key: &str, value: String| {
        html! { div.row { dt { (ctx.t(key)) } dd { (value) } } }
    };
    page(
        &ctx,
        "receipt.title",
        html! {
            section.card.receipt {
                h1 { (ctx.t("receipt.title")) }
                dl {
                    (row("receipt.type", kind_label(&ctx, text(&receipt, "type"))))
                    (row("receipt.status", status_label(&ctx, text(&receipt, "status"))))
                    (row("receipt.counterparty", text(&receipt, "counterparty").to_string()))
                    (row("receipt.amount", ctx.money(int(&receipt, "amount"), currency)))
                    (row("receipt.fee", ctx.money(int(&receipt, "fee"), currency)))
                    (row("receipt.total", ctx.money(int(&receipt, "total"), currency)))
                    @if int(&receipt, "refunded") > 0 {
                        (row("receipt.refunded", ctx.money(int(&receipt, "refunded"), currency)))
                    }
                    @if !text(&receipt, "reference").is_empty() {
                        (row("receipt.reference", text(&receipt, "reference").to_string()))
                    }
                    @if !text(&receipt, "confirmation_number").is_empty() {
                        (row("receipt.confirmation", text(&receipt, "confirmation_number").to_string()))
                    }
                    (row("receipt.time", ctx.time(text(&receipt, "created_at"))))
                    (row("receipt.number", text(&receipt, "receipt_number").to_string()))
                }
                p { a href=(format!("/help/requests/new?transaction={}", encode(&id))) data-testid="report-problem" { (ctx.t("receipt.report")) } }
                p { a href="/history" { (ctx.t("receipt.back")) } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_roll_over_the_year() {
        let nanos = coffer_core::Timestamp::parse_rfc3339("2027-02-10T00:00:00Z")
            .expect("time")
            .as_nanos();
        assert_eq!(
            chart_months(nanos),
            vec![
                (2026, 9),
                (2026, 10),
                (2026, 11),
                (2026, 12),
                (2027, 1),
                (2027, 2)
            ]
        );
        assert_eq!(
            month_range("2026-12"),
            Some((
                "2026-12-01T00:00:00+08:00".into(),
                "2027-01-01T00:00:00+08:00".into()
            ))
        );
        assert_eq!(month_range("2026-13"), None);
    }
}
