//! Passkeys in "Me": the list, adding one and removing one. The WebAuthn
//! ceremony needs `navigator.credentials.create()`, so adding is done by
//! `passkeys.js` (an external file: the page policy allows no inline
//! script) through two JSON endpoints here that pass the API's options and the authenticator's
//! answer through, guarded by the page's CSRF token in a header. Without
//! JavaScript or WebAuthn the add control stays hidden. Removing is a
//! plain form.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form as AxumForm, Json, Router};
use maud::{html, Markup};
use serde_json::{json, Value};

use super::Form;
use crate::api::{list, text, ApiFailure};
use crate::assets;
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD};
use crate::layout::{csrf_field, encode, idempotency_field};
use crate::WebState;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/me/passkeys/start", post(start))
        .route("/me/passkeys/{id}/finish", post(finish))
        .route("/me/passkeys/{id}/remove", post(remove))
}

/// The passkeys section of "Me".
pub async fn section(ctx: &Ctx, state: &WebState) -> Markup {
    let passkeys = state
        .api
        .get(&ctx.caller, "/v1/me/passkeys")
        .await
        .unwrap_or_default();
    html! {
        h3 { (ctx.t("me.passkeys")) }
        p { (ctx.t("me.passkeys_help")) }
        @if list(&passkeys).is_empty() {
            p.empty data-testid="no-passkeys" { (ctx.t("me.no_passkeys")) }
        } @else {
            ul.devices data-testid="passkeys" {
                @for key in list(&passkeys) {
                    li {
                        span.device { (text(key, "name")) }
                        span.when { (ctx.tf("me.passkey_added", &[("time", &ctx.time(text(key, "created_at")))])) }
                        @if !text(key, "last_used_at").is_empty() {
                            " · " span.when { (ctx.tf("me.last_seen", &[("time", &ctx.time(text(key, "last_used_at")))])) }
                        }
                        form.inline method="post" action=(format!("/me/passkeys/{}/remove", encode(text(key, "id")))) {
                            (csrf_field(ctx))
                            (idempotency_field())
                            " "
                            button.link type="submit" { (ctx.t("me.passkey_remove")) }
                        }
                    }
                }
            }
        }
        div #passkey-add hidden data-csrf=(ctx.csrf_token()) data-failed=(ctx.t("me.passkey_failed")) {
            label for="passkey_name" { (ctx.t("me.passkey_name")) }
            input #passkey_name name="passkey_name" maxlength="64" value=(ctx.t("me.passkey_default_name"));
            button type="button" #passkey-button { (ctx.t("me.passkey_add")) }
            p.error role="alert" #passkey-error hidden {}
        }
        script src=(assets::path("passkeys.js")) defer {}
    }
}

fn csrf_ok(ctx: &Ctx, headers: &HeaderMap) -> bool {
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ctx.check_csrf_value(token).is_ok() && ctx.require_session().is_ok()
}

fn refused(failure: &ApiFailure) -> Response {
    (
        failure.status,
        Json(json!({ "error": { "code": failure.code } })),
    )
        .into_response()
}

/// The options for `navigator.credentials.create()`, from the API.
async fn start(ctx: Ctx, State(state): State<WebState>, headers: HeaderMap) -> Response {
    if !csrf_ok(&ctx, &headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let key = crate::ctx::random_token();
    match state
        .api
        .post(
            &ctx.caller,
            "/v1/me/passkeys/registration",
            &json!({}),
            Some(&key),
        )
        .await
    {
        Ok(ceremony) => Json(ceremony).into_response(),
        Err(failure) => refused(&failure),
    }
}

/// The authenticator's answer (`{name, credential}`), verified by the API.
/// The ceremony id keys the request: a retried answer is the same answer.
async fn finish(
    ctx: Ctx,
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if !csrf_ok(&ctx, &headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let request = json!({
        "name": body.get("name").and_then(Value::as_str).unwrap_or(""),
        "credential": body.get("credential").cloned().unwrap_or(Value::Null),
    });
    let path = format!("/v1/me/passkeys/registration/{}/finish", encode(&id));
    let key = format!("passkey-finish-{id}");
    match state
        .api
        .post(&ctx.caller, &path, &request, Some(&key))
        .await
    {
        Ok(passkey) => (StatusCode::CREATED, Json(passkey)).into_response(),
        Err(failure) => refused(&failure),
    }
}

/// Remove a passkey (a plain form: works without JavaScript).
async fn remove(
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
    let path = format!("/v1/me/passkeys/{}/remove", encode(&id));
    match state.api.post(&ctx.caller, &path, &json!({}), key).await {
        Ok(_) => Redirect::to("/me").into_response(),
        Err(failure) => ctx.failure(&failure),
    }
}
