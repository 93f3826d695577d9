//! Privacy: download a copy of all my data. The API asks for a step-up
//! (operation `data_export`, bound to amount 0 and payee `self`) before it
//! prepares the archive, so the form goes through the step-up flow first,
//! then the archive is handed to the browser as a JSON download.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use maud::html;
use serde_json::json;

use super::stepup::{self, Bound};
use super::{field, Form};
use crate::api::{list, text};
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD};
use crate::layout::{csrf_field, encode, idempotency_field, page};
use crate::WebState;

pub const EXPORT_ACTION: &str = "/privacy/export";
pub const ERASE_ACTION: &str = "/privacy/erase";

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/privacy", get(privacy_page))
        .route(EXPORT_ACTION, post(export))
        .route(ERASE_ACTION, post(erase))
        .route("/privacy/consents", post(grant_consent))
        .route("/privacy/consents/{id}/revoke", post(revoke_consent))
        .route("/privacy/exports/{id}", get(download))
}

async fn privacy_page(ctx: Ctx, State(state): State<WebState>) -> Response {
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let consents = state
        .api
        .get(&ctx.caller, "/v1/me/privacy/consents")
        .await
        .unwrap_or_default();
    let access = state
        .api
        .get(&ctx.caller, "/v1/me/privacy/access-log")
        .await
        .unwrap_or_default();
    page(
        &ctx,
        "privacy.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("privacy.title")) }
                p { (ctx.t("privacy.export_help")) }
                form method="post" action=(EXPORT_ACTION) {
                    (csrf_field(&ctx))
                    (idempotency_field())
                    button.primary type="submit" { (ctx.t("privacy.export")) }
                }
            }
            section.card.narrow aria-labelledby="consents-title" {
                h2 #consents-title { (ctx.t("privacy.consents")) }
                @if list(&consents).is_empty() {
                    p.empty { (ctx.t("privacy.no_consents")) }
                } @else {
                    ul {
                        @for c in list(&consents) {
                            li {
                                strong { (text(c, "partner_id")) }
                                " · "
                                (c.get("scopes").and_then(serde_json::Value::as_array).map(|s| s.iter().filter_map(serde_json::Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default())
                                " · "
                                (ctx.tf("privacy.until", &[("time", &ctx.time(text(c, "expires_at")))]))
                                @if c.get("live").and_then(serde_json::Value::as_bool) == Some(true) {
                                    form.inline method="post" action=(format!("/privacy/consents/{}/revoke", encode(text(c, "id")))) {
                                        (csrf_field(&ctx))
                                        (idempotency_field())
                                        " "
                                        button.link type="submit" { (ctx.t("privacy.revoke")) }
                                    }
                                } @else {
                                    " · " (ctx.t("privacy.ended"))
                                }
                            }
                        }
                    }
                }
                h3 { (ctx.t("privacy.grant")) }
                p.help { (ctx.t("privacy.grant_help")) }
                form method="post" action="/privacy/consents" {
                    (csrf_field(&ctx))
                    (idempotency_field())
                    // The consent's clock starts when the form was shown, so
                    // sending it again is the same request to the API.
                    input type="hidden" name="from" value=(state.app.clock.now().to_rfc3339());
                    label for="partner_id" { (ctx.t("privacy.partner")) }
                    input #partner_id name="partner_id" required maxlength="64" autocomplete="off";
                    fieldset {
                        legend { (ctx.t("privacy.scopes")) }
                        @for scope in CONSENT_SCOPES {
                            div.check {
                                input id=(format!("scope_{scope}")) type="checkbox" name=(format!("scope_{scope}")) value="yes";
                                label for=(format!("scope_{scope}")) { (ctx.t(&format!("privacy.scope.{scope}"))) }
                            }
                        }
                    }
                    label for="days" { (ctx.t("privacy.duration")) }
                    select #days name="days" {
                        @for days in CONSENT_DAYS {
                            option value=(days) selected[days == 90] { (ctx.tf("privacy.days", &[("days", &days.to_string())])) }
                        }
                    }
                    button.primary type="submit" { (ctx.t("privacy.grant_submit")) }
                }
            }
            section.card.narrow aria-labelledby="access-title" {
                h2 #access-title { (ctx.t("privacy.access_log")) }
                p.help { (ctx.t("privacy.access_help")) }
                @if list(&access).is_empty() {
                    p.empty { (ctx.t("privacy.no_access")) }
                } @else {
                    div.table-wrap { table data-testid="access-log" {
                        tbody {
                            @for a in list(&access) {
                                tr {
                                    td { (ctx.time(text(a, "at"))) }
                                    td {
                                        (ctx.locale.lookup(&format!("accessor.{}", text(a, "by"))).unwrap_or(text(a, "by")))
                                        @if !text(a, "role").is_empty() { " (" (ctx.locale.lookup(&format!("role.{}", text(a, "role"))).unwrap_or(text(a, "role"))) ")" }
                                        @if !text(a, "partner_id").is_empty() { " " (text(a, "partner_id")) }
                                    }
                                    td { code { (text(a, "action")) } }
                                }
                            }
                        }
                    } }
                }
            }
            section.card.narrow {
                h2 { (ctx.t("privacy.delete")) }
                p { (ctx.t("privacy.delete_help")) }
                form method="post" action=(ERASE_ACTION) {
                    (csrf_field(&ctx))
                    (idempotency_field())
                    div.check {
                        input #confirm_delete type="checkbox" name="confirm" value="yes" required;
                        label for="confirm_delete" { (ctx.t("privacy.delete_confirm")) }
                    }
                    button.danger type="submit" { (ctx.t("privacy.delete")) }
                }
            }
        },
    )
}

async fn export(
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
    let bound = Bound {
        operation: "data_export",
        amount: 0,
        currency: "CNY",
        payee: "self",
    };
    // The API always wants a verified step-up here: ask for it first.
    let Some(challenge) = stepup::challenge(&form) else {
        return stepup::required(&ctx, EXPORT_ACTION, &bound, &form, None);
    };
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(
            &ctx.caller,
            "/v1/me/privacy/exports",
            &json!({ "challenge_id": challenge }),
            key,
        )
        .await
    {
        Ok(export) => page(
            &ctx,
            "privacy.title",
            html! {
                section.card.narrow {
                    h1 { (ctx.t("privacy.ready")) }
                    p { (ctx.tf("privacy.ready_help", &[("time", &ctx.time(text(&export, "expires_at")))])) }
                    p { a.button.primary href=(format!("/privacy/exports/{}", encode(text(&export, "id")))) download="coffer-my-data.json" data-testid="download" { (ctx.t("privacy.download")) } }
                }
            },
        ),
        Err(failure) if stepup::is_required(&failure) => {
            stepup::required(&ctx, EXPORT_ACTION, &bound, &form, None)
        }
        Err(failure) => ctx.failure(&failure),
    }
}

async fn download(ctx: Ctx, State(state): State<WebState>, Path(id): Path<String>) -> Response {
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let path = format!("/v1/me/privacy/exports/{}", encode(&id));
    let answer = match state
        .api
        .raw(&ctx.caller, Method::GET, &path, None, None)
        .await
    {
        Ok(answer) => answer,
        Err(failure) => return ctx.failure(&failure),
    };
    if !answer.status.is_success() {
        let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let detail = value.get("error").cloned().unwrap_or_default();
        return ctx.failure(&crate::api::ApiFailure {
            status: answer.status,
            code: text(&detail, "code").to_string(),
            message: text(&detail, "message").to_string(),
            field: None,
        });
    }
    let mut response = (StatusCode::OK, answer.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"coffer-my-data.json\""),
    );
    response
}

/// Delete my account: refused while money or operations remain (the API
/// says which); after it every session has ended, this one too.
async fn erase(
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
    let bound = Bound {
        operation: "account_deletion",
        amount: 0,
        currency: "CNY",
        payee: "self",
    };
    let Some(challenge) = stepup::challenge(&form) else {
        return stepup::required(&ctx, ERASE_ACTION, &bound, &form, None);
    };
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(
            &ctx.caller,
            "/v1/me/privacy/erasure",
            &json!({ "challenge_id": challenge }),
            key,
        )
        .await
    {
        Ok(_) => {
            let mut response = crate::layout::message_page_ok(
                &ctx,
                "privacy.deleted",
                ctx.t("privacy.deleted_help"),
            );
            response.headers_mut().append(
                header::SET_COOKIE,
                ctx.cookie(crate::ctx::SESSION_COOKIE, "", 0),
            );
            response
        }
        Err(failure) if stepup::is_required(&failure) => {
            stepup::required(&ctx, ERASE_ACTION, &bound, &form, None)
        }
        Err(failure) => ctx.failure(&failure),
    }
}

/// What a partner may be allowed to read (the API's consent scopes).
const CONSENT_SCOPES: [&str; 3] = ["profile", "balance", "transactions"];
/// Offered lengths of a consent; the API allows at most 365 days.
const CONSENT_DAYS: [u64; 4] = [30, 90, 180, 365];

/// Allow a partner: the checked scopes for the chosen number of days from
/// now. The API validates the partner and the scopes; its refusal is shown.
async fn grant_consent(
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
    let scopes: Vec<&str> = CONSENT_SCOPES
        .into_iter()
        .filter(|scope| field(&form, &format!("scope_{scope}")) == "yes")
        .collect();
    let days = field(&form, "days")
        .parse::<u64>()
        .ok()
        .filter(|d| CONSENT_DAYS.contains(d))
        .unwrap_or(90);
    let from = coffer_core::Timestamp::parse_rfc3339(field(&form, "from"))
        .unwrap_or_else(|| state.app.clock.now());
    let expires_at = from.plus_millis(days * 86_400 * 1_000).to_rfc3339();
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    let body = json!({
        "partner_id": field(&form, "partner_id"),
        "scopes": scopes,
        "expires_at": expires_at,
    });
    match state
        .api
        .post(&ctx.caller, "/v1/me/privacy/consents", &body, key)
        .await
    {
        Ok(_) => axum::response::Redirect::to("/privacy").into_response(),
        Err(failure) => ctx.failure(&failure),
    }
}

async fn revoke_consent(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    let path = format!("/v1/me/privacy/consents/{}/revoke", encode(&id));
    match state.api.post(&ctx.caller, &path, &json!({}), key).await {
        Ok(_) => axum::response::Redirect::to("/privacy").into_response(),
        Err(failure) => ctx.failure(&failure),
    }
}
