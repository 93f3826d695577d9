//! The alerts inbox: the in-app messages the bank sent (payments, security,
//! requests), newest first, unread ones marked; "mark all as read".

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use maud::{html, Markup};
use serde_json::{json, Value};

use super::auth::NoticeQuery;
use super::Form;
use crate::api::{list, text};
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD};
use crate::layout::{csrf_field, idempotency_field, notice, page};
use crate::WebState;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/alerts", get(inbox))
        .route("/alerts/read-all", post(read_all))
        .route("/alerts/preferences", post(save_preferences))
}

async fn inbox(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let messages = match state
        .api
        .get(&ctx.caller, "/v1/me/notifications?limit=50")
        .await
    {
        Ok(messages) => messages,
        Err(failure) => return ctx.failure(&failure),
    };
    let preferences = match state
        .api
        .get(&ctx.caller, "/v1/me/notification-preferences")
        .await
    {
        Ok(preferences) => preferences,
        Err(failure) => return ctx.failure(&failure),
    };
    let unread = list(&messages)
        .iter()
        .any(|m| text(m, "read_at").is_empty());
    page(
        &ctx,
        "alerts.title",
        html! {
            (notice(&ctx, query.notice.as_deref()))
            h1 { (ctx.t("alerts.title")) }
            @if list(&messages).is_empty() {
                p.empty { (ctx.t("alerts.empty")) }
            } @else {
                @if unread {
                    form method="post" action="/alerts/read-all" {
                        (csrf_field(&ctx))
                        (idempotency_field())
                        button type="submit" { (ctx.t("alerts.read_all")) }
                    }
                }
                ul.alerts data-testid="alerts" {
                    @for m in list(&messages) {
                        li class=(if text(m, "read_at").is_empty() { "alert unread" } else { "alert" }) {
                            h2 { (text(m, "title")) }
                            p { (text(m, "body")) }
                            p.help { (ctx.time(text(m, "created_at"))) }
                        }
                    }
                }
            }
            (preferences_form(&ctx, &preferences))
        },
    )
}

/// The switches as a grid (category × channel), the marketing consent on
/// its own (it is a consent, recorded with where it was given), and the
/// security alerts that no switch turns off.
fn preferences_form(ctx: &Ctx, preferences: &Value) -> Markup {
    let switches = switches(preferences);
    let mut categories: Vec<&str> = Vec::new();
    let mut channels: Vec<&str> = Vec::new();
    for (category, channel, _) in &switches {
        if !categories.contains(category) {
            categories.push(category);
        }
        if !channels.contains(channel) {
            channels.push(channel);
        }
    }
    let enabled = |category: &str, channel: &str| {
        switches
            .iter()
            .any(|(c, ch, on)| *c == category && *ch == channel && *on)
    };
    html! {
        section.card aria-labelledby="prefs-title" {
            h2 #prefs-title { (ctx.t("prefs.title")) }
            form method="post" action="/alerts/preferences" data-testid="alert-preferences" {
                (csrf_field(ctx))
                (idempotency_field())
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { (ctx.t("prefs.category")) }
                        @for channel in &channels {
                            th scope="col" { (ctx.t(&format!("prefs.channel_{channel}"))) }
                        }
                    } }
                    tbody {
                        @for category in &categories {
                            tr {
                                th scope="row" { (ctx.t(&format!("prefs.category_{category}"))) }
                                @for channel in &channels {
                                    @let name = format!("pref:{category}:{channel}");
                                    td {
                                        input type="checkbox" id=(name) name=(name) value="on" checked[enabled(category, channel)]
                                            aria-label=(format!("{} · {}", ctx.t(&format!("prefs.category_{category}")), ctx.t(&format!("prefs.channel_{channel}"))));
                                    }
                                }
                            }
                        }
                    }
                } }
                div.check {
                    input #marketing_opt_in type="checkbox" name="marketing_opt_in" value="on"
                        checked[preferences.get("marketing_opt_in").and_then(Value::as_bool).unwrap_or(false)];
                    label for="marketing_opt_in" { (ctx.t("prefs.marketing_consent")) }
                }
                p.help { (ctx.t("prefs.always_sent")) }
                button.primary type="submit" { (ctx.t("prefs.save")) }
            }
        }
    }
}

/// (category, channel, enabled) as the API lists them.
fn switches(preferences: &Value) -> Vec<(&str, &str, bool)> {
    preferences
        .get("preferences")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                text(p, "category"),
                text(p, "channel"),
                p.get("enabled").and_then(Value::as_bool).unwrap_or(false),
            )
        })
        .collect()
}

/// Every switch the API knows is sent: a box left unticked is "off"
/// (browsers send nothing for it). The marketing consent is sent only
/// when it changes, so saving other switches does not re-date it.
async fn save_preferences(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let current = match state
        .api
        .get(&ctx.caller, "/v1/me/notification-preferences")
        .await
    {
        Ok(current) => current,
        Err(failure) => return ctx.failure(&failure),
    };
    let preferences: Vec<Value> = switches(&current)
        .into_iter()
        .map(|(category, channel, _)| {
            json!({
                "category": category,
                "channel": channel,
                "enabled": form.contains_key(&format!("pref:{category}:{channel}")),
            })
        })
        .collect();
    let mut body = json!({ "preferences": preferences });
    let opt_in = form.contains_key("marketing_opt_in");
    if current.get("marketing_opt_in").and_then(Value::as_bool) != Some(opt_in) {
        body["marketing"] = json!({ "opt_in": opt_in, "source": "web" });
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&ctx.caller, "/v1/me/notification-preferences", &body, key)
        .await
    {
        Ok(_) => Redirect::to("/alerts?notice=notice.preferences_saved").into_response(),
        Err(failure) => ctx.failure(&failure),
    }
}

async fn read_all(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(
            &ctx.caller,
            "/v1/me/notifications/read-all",
            &json!({}),
            key,
        )
        .await
    {
        Ok(_) => Redirect::to("/alerts").into_response(),
        Err(failure) => ctx.failure(&failure),
    }
}
