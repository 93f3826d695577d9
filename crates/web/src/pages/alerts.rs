//! The alerts inbox: the in-app messages the bank sent (payments, security,
//! requests), newest first, unread ones marked; "mark all as read".

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use maud::html;
use serde_json::json;

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
        },
    )
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
