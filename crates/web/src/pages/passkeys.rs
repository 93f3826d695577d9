//! Passkeys in "Me": the list, adding one and removing one. Both changes
//! need a step-up first (operation `passkey_change`: a stolen session
//! alone must not plant or remove a way to sign in), through the app's
//! one step-up flow. The WebAuthn ceremony needs
//! `navigator.credentials.create()`, so adding is then done by
//! `passkeys.js` (an external file: the page policy allows no inline
//! script) through two JSON endpoints here that pass the API's options and
//! the authenticator's answer through, guarded by the page's CSRF token in
//! a header. Without JavaScript or WebAuthn the add control stays hidden
//! and the page says so. Removing is a plain form.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form as AxumForm, Json, Router};
use maud::{html, Markup};
use serde_json::{json, Value};

use super::stepup::{self, Bound};
use super::{field, Form};
use crate::api::{list, text, ApiFailure};
use crate::assets;
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD};
use crate::layout::{csrf_field, encode, idempotency_field, page};
use crate::WebState;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route(ADD_ACTION, post(add))
        .route("/me/passkeys/start", post(start))
        .route("/me/passkeys/{id}/finish", post(finish))
        .route(REMOVE_ACTION, post(remove))
}

/// Where adding and removing are posted (also step-up continuations).
pub const ADD_ACTION: &str = "/me/passkeys/add";
pub const REMOVE_ACTION: &str = "/me/passkeys/remove";

/// What a passkey change's step-up is bound to (as the API checks it).
fn change_bound() -> Bound<'static> {
    Bound {
        operation: "passkey_change",
        amount: 0,
        currency: "CNY",
        payee: "passkeys",
    }
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
                        form.inline method="post" action=(REMOVE_ACTION) {
                            (csrf_field(ctx))
                            (idempotency_field())
                            input type="hidden" name="passkey_id" value=(text(key, "id"));
                            " "
                            button.link type="submit" { (ctx.t("me.passkey_remove")) }
                        }
                    }
                }
            }
        }
        form method="post" action=(ADD_ACTION) data-testid="passkey-add-start" {
            (csrf_field(ctx))
            button type="submit" { (ctx.t("me.passkey_add")) }
        }
    }
}

/// After the step-up: the control `passkeys.js` drives, carrying the
/// verified challenge the API spends when the ceremony starts.
async fn add(ctx: Ctx, AxumForm(form): AxumForm<Form>) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let Some(challenge) = stepup::challenge(&form) else {
        return stepup::required(&ctx, ADD_ACTION, &change_bound(), &form, None);
    };
    page(
        &ctx,
        "me.passkeys",
        html! {
            section.card.narrow {
                h1 { (ctx.t("me.passkey_add")) }
                p { (ctx.t("me.passkeys_help")) }
                p #passkey-unsupported { (ctx.t("me.passkey_unsupported")) }
                div #passkey-add hidden data-csrf=(ctx.csrf_token()) data-challenge=(challenge) data-failed=(ctx.t("me.passkey_failed")) {
                    label for="passkey_name" { (ctx.t("me.passkey_name")) }
                    input #passkey_name name="passkey_name" maxlength="64" value=(ctx.t("me.passkey_default_name"));
                    button type="button" #passkey-button { (ctx.t("me.passkey_add")) }
                    p.error role="alert" #passkey-error hidden {}
                }
                p { a href="/me" { (ctx.t("nav.back_home")) } }
                script src=(assets::path("passkeys.js")) defer {}
            }
        },
    )
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
async fn start(
    ctx: Ctx,
    State(state): State<WebState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !csrf_ok(&ctx, &headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let challenge = body
        .get("step_up_challenge_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let key = crate::ctx::random_token();
    match state
        .api
        .post(
            &ctx.caller,
            "/v1/me/passkeys/registration",
            &json!({ "step_up_challenge_id": challenge }),
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

/// Remove a passkey (a plain form: works without JavaScript), after the
/// step-up the API asks for.
async fn remove(
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
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    let path = format!(
        "/v1/me/passkeys/{}/remove",
        encode(field(&form, "passkey_id"))
    );
    let body = json!({ "step_up_challenge_id": stepup::challenge(&form).unwrap_or("") });
    match state.api.post(&ctx.caller, &path, &body, key).await {
        Ok(_) => Redirect::to("/me").into_response(),
        Err(failure) if stepup::is_required(&failure) => {
            stepup::required(&ctx, REMOVE_ACTION, &change_bound(), &form, None)
        }
        Err(failure) => ctx.failure(&failure),
    }
}
