//! Sign up with a one-time code, sign in with password and second factor,
//! sign out, and the KYC step.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form as AxumForm;
use maud::{html, Markup};
use serde_json::json;

use super::{field, Form};
use crate::api::{int, text, ApiFailure};
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD, SESSION_COOKIE};
use crate::layout::{csrf_field, error_box, idempotency_field, notice, page};
use crate::WebState;

fn signed_in(ctx: &Ctx, state: &WebState, token: &str, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        ctx.cookie(
            SESSION_COOKIE,
            token,
            state.app.identity.policy().session_absolute_seconds,
        ),
    );
    response
}

// ---- sign in ----------------------------------------------------------------------

#[derive(serde::Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

pub async fn sign_in_page(
    ctx: Ctx,
    axum::extract::Query(query): axum::extract::Query<NoticeQuery>,
) -> Response {
    sign_in_form(&ctx, "", None, query.notice.as_deref())
}

fn sign_in_form(
    ctx: &Ctx,
    contact: &str,
    error: Option<&str>,
    notice_key: Option<&str>,
) -> Response {
    page(
        ctx,
        "signin.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("signin.title")) }
                (notice(ctx, notice_key))
                (error_box(error))
                form method="post" action="/signin" {
                    (csrf_field(ctx))
                    label for="contact" { (ctx.t("field.contact")) }
                    input #contact name="contact" type="text" autocomplete="username" required value=(contact)
                        placeholder="+8613800138000";
                    label for="password" { (ctx.t("field.password")) }
                    input #password name="password" type="password" autocomplete="current-password" required;
                    button.primary type="submit" { (ctx.t("signin.submit")) }
                }
                p { (ctx.t("signin.no_wallet")) " " a href="/signup" { (ctx.t("signup.title")) } }
            }
        },
    )
}

pub async fn sign_in(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let contact = field(&form, "contact");
    let body = json!({
        "contact": contact,
        "password": form.get("password").map_or("", String::as_str),
    });
    match state
        .api
        .post(&ctx.caller, "/v1/auth/sessions", &body, None)
        .await
    {
        Ok(answer) if answer.get("second_factor_required").is_some() => {
            second_factor_form(&ctx, text(&answer, "challenge_id"), None)
        }
        Ok(answer) => signed_in(&ctx, &state, text(&answer, "token"), "/"),
        Err(failure) => sign_in_form(&ctx, contact, Some(&ctx.error_text(&failure)), None),
    }
}

fn second_factor_form(ctx: &Ctx, challenge_id: &str, error: Option<&str>) -> Response {
    page(
        ctx,
        "signin.second_factor",
        html! {
            section.card.narrow {
                h1 { (ctx.t("signin.second_factor")) }
                p { (ctx.t("signin.second_factor_help")) }
                (error_box(error))
                form method="post" action="/signin/verify" {
                    (csrf_field(ctx))
                    input type="hidden" name="challenge_id" value=(challenge_id);
                    label for="code" { (ctx.t("field.code")) }
                    input #code name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required;
                    button.primary type="submit" { (ctx.t("signin.submit")) }
                }
            }
        },
    )
}

pub async fn verify_sign_in(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let challenge_id = field(&form, "challenge_id");
    let path = format!(
        "/v1/auth/challenges/{}/verify",
        crate::layout::encode(challenge_id)
    );
    let body = json!({ "code": field(&form, "code") });
    match state.api.post(&ctx.caller, &path, &body, None).await {
        Ok(answer) => signed_in(&ctx, &state, text(&answer, "token"), "/"),
        Err(failure) => second_factor_form(&ctx, challenge_id, Some(&ctx.error_text(&failure))),
    }
}

pub async fn sign_out(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    // Signed out on the server whatever the answer (an expired session is out already).
    let _ = state
        .api
        .delete(&ctx.caller, "/v1/auth/sessions/current")
        .await;
    let mut response = Redirect::to("/signin?notice=notice.signed_out").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, ctx.cookie(SESSION_COOKIE, "", 0));
    response
}

// ---- sign up ----------------------------------------------------------------------

pub async fn sign_up_page(ctx: Ctx) -> Response {
    sign_up_form(&ctx, "", None)
}

fn sign_up_form(ctx: &Ctx, contact: &str, error: Option<&str>) -> Response {
    page(
        ctx,
        "signup.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("signup.title")) }
                (steps(ctx, 1))
                p { (ctx.t("signup.intro")) }
                (error_box(error))
                form method="post" action="/signup" {
                    (csrf_field(ctx))
                    (idempotency_field())
                    label for="contact" { (ctx.t("field.contact")) }
                    input #contact name="contact" type="text" autocomplete="tel" required value=(contact)
                        placeholder="+8613800138000" aria-describedby="contact-help";
                    p.help #contact-help { (ctx.t("signup.contact_help")) }
                    button.primary type="submit" { (ctx.t("signup.send_code")) }
                }
                p { (ctx.t("signup.have_wallet")) " " a href="/signin" { (ctx.t("signin.title")) } }
            }
        },
    )
}

/// The three steps of opening a wallet, the current one marked.
fn steps(ctx: &Ctx, current: u8) -> Markup {
    html! {
        ol.steps aria-label=(ctx.t("signup.steps")) {
            @for (n, key) in [(1u8, "signup.step_contact"), (2, "signup.step_code"), (3, "signup.step_kyc")] {
                li aria-current=[(n == current).then_some("step")] class=[(n == current).then_some("current")] { (ctx.t(key)) }
            }
        }
    }
}

pub async fn sign_up(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let contact = field(&form, "contact");
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(
            &ctx.caller,
            "/v1/auth/registrations",
            &json!({ "contact": contact }),
            key,
        )
        .await
    {
        Ok(answer) => code_form(
            &ctx,
            text(&answer, "registration_id"),
            text(&answer, "sent_to"),
            "",
            None,
        ),
        Err(failure) => sign_up_form(&ctx, contact, Some(&ctx.error_text(&failure))),
    }
}

fn code_form(
    ctx: &Ctx,
    registration_id: &str,
    sent_to: &str,
    display_name: &str,
    error: Option<&str>,
) -> Response {
    page(
        ctx,
        "signup.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("signup.title")) }
                (steps(ctx, 2))
                @if !sent_to.is_empty() {
                    p role="status" { (ctx.tf("signup.code_sent", &[("to", sent_to)])) }
                }
                (error_box(error))
                form method="post" action="/signup/complete" {
                    (csrf_field(ctx))
                    input type="hidden" name="registration_id" value=(registration_id);
                    input type="hidden" name="sent_to" value=(sent_to);
                    label for="code" { (ctx.t("field.code")) }
                    input #code name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required;
                    label for="display_name" { (ctx.t("field.display_name")) }
                    input #display_name name="display_name" type="text" autocomplete="name" required maxlength="64" value=(display_name);
                    label for="password" { (ctx.t("field.new_password")) }
                    input #password name="password" type="password" autocomplete="new-password" required minlength="8" aria-describedby="password-help";
                    p.help #password-help { (ctx.t("signup.password_help")) }
                    div.check {
                        input #accept_terms name="accept_terms" type="checkbox" value=(coffer_identity::TERMS_VERSION) required;
                        label for="accept_terms" { (ctx.tf("signup.accept_terms", &[("version", coffer_identity::TERMS_VERSION)])) }
                    }
                    button.primary type="submit" { (ctx.t("signup.create")) }
                }
            }
        },
    )
}

pub async fn complete_sign_up(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let registration_id = field(&form, "registration_id");
    let body = json!({
        "code": field(&form, "code"),
        "password": form.get("password").map_or("", String::as_str),
        "display_name": field(&form, "display_name"),
        "accept_terms": field(&form, "accept_terms"),
    });
    let path = format!(
        "/v1/auth/registrations/{}/complete",
        crate::layout::encode(registration_id)
    );
    match state.api.post(&ctx.caller, &path, &body, None).await {
        Ok(answer) => {
            let token = answer
                .get("session")
                .map_or("", |session| text(session, "token"));
            signed_in(&ctx, &state, token, "/kyc?notice=notice.welcome")
        }
        Err(failure) => code_form(
            &ctx,
            registration_id,
            field(&form, "sent_to"),
            field(&form, "display_name"),
            Some(&ctx.error_text(&failure)),
        ),
    }
}

// ---- KYC ----------------------------------------------------------------------------

pub async fn kyc_page(
    ctx: Ctx,
    State(state): State<WebState>,
    axum::extract::Query(query): axum::extract::Query<NoticeQuery>,
) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    match state.api.get(&ctx.caller, "/v1/me/profile").await {
        Ok(profile) => kyc_form(&ctx, &profile, query.notice.as_deref(), None, &Form::new()),
        Err(failure) => ctx.failure(&failure),
    }
}

fn kyc_form(
    ctx: &Ctx,
    profile: &serde_json::Value,
    notice_key: Option<&str>,
    error: Option<&ApiFailure>,
    form: &Form,
) -> Response {
    let customer = profile.get("customer").cloned().unwrap_or_default();
    let tier = int(&customer, "kyc_tier");
    page(
        ctx,
        "kyc.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("kyc.title")) }
                (steps(ctx, 3))
                (notice(ctx, notice_key))
                p { (ctx.tf("kyc.current_tier", &[("tier", &tier.to_string())])) }
                @if tier >= 1 {
                    p role="status" { (ctx.t("kyc.verified")) }
                    p { a.button.primary href="/" { (ctx.t("nav.back_home")) } }
                } @else {
                    p { (ctx.t("kyc.intro")) }
                    (error_box(error.map(|f| ctx.error_text(f)).as_deref()))
                    form method="post" action="/kyc" {
                        (csrf_field(ctx))
                        (idempotency_field())
                        label for="full_name" { (ctx.t("field.full_name")) }
                        input #full_name name="full_name" type="text" autocomplete="name" required value=(field(form, "full_name"));
                        label for="id_type" { (ctx.t("field.id_type")) }
                        select #id_type name="id_type" {
                            option value="cn_resident" selected[field(form, "id_type") != "passport"] { (ctx.t("kyc.id_cn_resident")) }
                            option value="passport" selected[field(form, "id_type") == "passport"] { (ctx.t("kyc.id_passport")) }
                        }
                        label for="id_number" { (ctx.t("field.id_number")) }
                        input #id_number name="id_number" type="text" autocomplete="off" required value=(field(form, "id_number"));
                        button.primary type="submit" { (ctx.t("kyc.submit")) }
                    }
                    p { a href="/" { (ctx.t("kyc.later")) } }
                }
            }
        },
    )
}

pub async fn kyc(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    let body = json!({
        "full_name": field(&form, "full_name"),
        "id_type": field(&form, "id_type"),
        "id_number": field(&form, "id_number"),
    });
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&ctx.caller, "/v1/me/kyc/identity", &body, key)
        .await
    {
        Ok(answer) if text(&answer, "status") == "verified" => {
            Redirect::to("/?notice=notice.kyc_verified").into_response()
        }
        Ok(_) => Redirect::to("/?notice=notice.kyc_in_review").into_response(),
        Err(failure) => match state.api.get(&ctx.caller, "/v1/me/profile").await {
            Ok(profile) => kyc_form(&ctx, &profile, None, Some(&failure), &form),
            Err(_) => ctx.failure(&failure),
        },
    }
}
