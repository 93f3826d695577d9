//! Step-up verification when the API asks for it: one flow for every
//! payment kind. The original form's fields ride along (hidden, prefixed
//! `f_`) through "send a code" and "enter the code"; once verified, the
//! customer confirms the original form again with the challenge attached.

use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::{Form as AxumForm, Router};
use maud::{html, Markup};
use serde_json::json;

use super::{field, Form};
use crate::api::text;
use crate::ctx::{Ctx, CSRF_FIELD, IDEMPOTENCY_FIELD};
use crate::layout::{csrf_field, error_box, idempotency_field, page};
use crate::WebState;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/stepup/start", post(start))
        .route("/stepup/verify", post(verify))
}

/// What the challenge is bound to.
pub struct Bound<'a> {
    pub operation: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub payee: &'a str,
}

/// Paths a verified step-up may continue to.
const ACTIONS: [&str; 10] = [
    "/withdraw/confirm",
    "/pay/confirm",
    "/transfer/confirm",
    "/requests/pay",
    super::privacy::EXPORT_ACTION,
    super::privacy::ERASE_ACTION,
    super::held::ANSWER_ACTION,
    super::bills::PAY_ACTION,
    super::passkeys::ADD_ACTION,
    super::passkeys::REMOVE_ACTION,
];

fn passthrough(form: &Form) -> Markup {
    html! {
        @for (name, value) in form {
            @if name != CSRF_FIELD && !name.starts_with('_') && name != "method" && name != "code" && name != "challenge_id" {
                @let name = name.strip_prefix("f_").unwrap_or(name);
                input type="hidden" name=(format!("f_{name}")) value=(value);
            }
        }
    }
}

fn bound_fields(action: &str, bound: &Bound) -> Markup {
    html! {
        input type="hidden" name="_action" value=(action);
        input type="hidden" name="_operation" value=(bound.operation);
        input type="hidden" name="_amount" value=(bound.amount);
        input type="hidden" name="_currency" value=(bound.currency);
        input type="hidden" name="_payee" value=(bound.payee);
    }
}

/// The page that says a step-up is needed and offers the methods.
pub fn required(
    ctx: &Ctx,
    action: &str,
    bound: &Bound,
    form: &Form,
    error: Option<&str>,
) -> Response {
    page(
        ctx,
        "stepup.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("stepup.title")) }
                @if bound.amount == 0 {
                    p { (ctx.t("stepup.why_account")) }
                } @else {
                    p { (ctx.tf("stepup.why", &[("amount", &ctx.money(bound.amount, bound.currency))])) }
                }
                (error_box(error))
                form method="post" action="/stepup/start" {
                    (csrf_field(ctx))
                    (bound_fields(action, bound))
                    (passthrough(form))
                    fieldset {
                        legend { (ctx.t("stepup.method")) }
                        div.check {
                            input #m-code type="radio" name="method" value="code" checked;
                            label for="m-code" { (ctx.t("stepup.method_code")) }
                        }
                        div.check {
                            input #m-totp type="radio" name="method" value="totp";
                            label for="m-totp" { (ctx.t("stepup.method_totp")) }
                        }
                    }
                    button.primary type="submit" { (ctx.t("stepup.send")) }
                }
            }
        },
    )
}

fn bound_from(form: &Form) -> Option<(String, Bound<'_>)> {
    let action = field(form, "_action");
    if !ACTIONS.contains(&action) {
        return None;
    }
    Some((
        action.to_string(),
        Bound {
            operation: field(form, "_operation"),
            amount: field(form, "_amount").parse().ok()?,
            currency: field(form, "_currency"),
            payee: field(form, "_payee"),
        },
    ))
}

async fn start(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let Some((action, bound)) = bound_from(&form) else {
        return ctx.failure(&crate::api::ApiFailure {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field".into(),
            message: String::new(),
            field: None,
        });
    };
    let body = json!({
        "operation": bound.operation,
        "amount": bound.amount,
        "currency": bound.currency,
        "payee": bound.payee,
        "method": field(&form, "method"),
    });
    let key = crate::ctx::random_token();
    match state
        .api
        .post(&ctx.caller, "/v1/me/step-up", &body, Some(&key))
        .await
    {
        Ok(challenge) => code_form(
            &ctx,
            &action,
            &bound,
            &form,
            text(&challenge, "challenge_id"),
            text(&challenge, "method"),
            None,
        ),
        Err(failure) => required(
            &ctx,
            &action,
            &bound,
            &form,
            Some(&ctx.error_text(&failure)),
        ),
    }
}

fn code_form(
    ctx: &Ctx,
    action: &str,
    bound: &Bound,
    form: &Form,
    challenge_id: &str,
    method: &str,
    error: Option<&str>,
) -> Response {
    page(
        ctx,
        "stepup.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("stepup.title")) }
                p { (if method == "totp" { ctx.t("stepup.enter_totp") } else { ctx.t("stepup.enter_code") }) }
                (error_box(error))
                form method="post" action="/stepup/verify" {
                    (csrf_field(ctx))
                    (bound_fields(action, bound))
                    (passthrough(form))
                    input type="hidden" name="challenge_id" value=(challenge_id);
                    input type="hidden" name="method" value=(method);
                    label for="code" { (ctx.t("field.code")) }
                    input #code name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required;
                    button.primary type="submit" { (ctx.t("stepup.verify")) }
                }
            }
        },
    )
}

async fn verify(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let Some((action, bound)) = bound_from(&form) else {
        return ctx.failure(&crate::api::ApiFailure {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field".into(),
            message: String::new(),
            field: None,
        });
    };
    let challenge_id = field(&form, "challenge_id");
    let path = format!(
        "/v1/me/step-up/{}/verify",
        crate::layout::encode(challenge_id)
    );
    let key = crate::ctx::random_token();
    match state
        .api
        .post(
            &ctx.caller,
            &path,
            &json!({ "code": field(&form, "code") }),
            Some(&key),
        )
        .await
    {
        Ok(_) => page(
            &ctx,
            "stepup.title",
            html! {
                section.card.narrow {
                    h1 { (ctx.t("stepup.verified")) }
                    @if bound.amount == 0 {
                        p { (ctx.t("stepup.continue_account")) }
                    } @else {
                        p { (ctx.tf("stepup.continue_help", &[("amount", &ctx.money(bound.amount, bound.currency))])) }
                    }
                    form method="post" action=(action) {
                        (csrf_field(&ctx))
                        @for (name, value) in &form {
                            @if let Some(name) = name.strip_prefix("f_") {
                                // A fresh key: the first one holds the refusal that asked for the step-up.
                                @if name != CSRF_FIELD && name != IDEMPOTENCY_FIELD {
                                    input type="hidden" name=(name) value=(value);
                                }
                            }
                        }
                        input type="hidden" name="step_up_challenge_id" value=(challenge_id);
                        (idempotency_field())
                        button.primary type="submit" {
                            (if bound.amount == 0 { ctx.t("stepup.continue_plain") } else { ctx.t("stepup.continue") })
                        }
                    }
                }
            },
        ),
        Err(failure) => code_form(
            &ctx,
            &action,
            &bound,
            &form,
            challenge_id,
            field(&form, "method"),
            Some(&ctx.error_text(&failure)),
        ),
    }
}

/// The step-up challenge a confirmed form carries, for the API body.
pub fn challenge(form: &Form) -> Option<&str> {
    Some(field(form, "step_up_challenge_id")).filter(|id| !id.is_empty())
}

/// Whether an API refusal asks for a step-up.
pub fn is_required(failure: &crate::api::ApiFailure) -> bool {
    failure.code == "step_up_required"
}
