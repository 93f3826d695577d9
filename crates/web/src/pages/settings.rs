//! "Me": profile, security (authenticator app with its QR code, signed-in
//! devices, sign out everywhere), linked cards and bank accounts (masked),
//! and links to what exists for privacy.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use maud::html;
use serde_json::json;

use super::auth::NoticeQuery;
use super::{field, Form};
use crate::api::{int, list, text};
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD, SESSION_COOKIE};
use crate::layout::{csrf_field, encode, error_box, idempotency_field, notice, page, trusted_svg};
use crate::WebState;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/me", get(me))
        .route("/me/totp", post(enrol_totp))
        .route("/me/totp/confirm", post(confirm_totp))
        .route("/me/sessions/{id}/revoke", post(revoke_session))
        .route("/me/sessions/revoke-all", post(revoke_all))
        .route("/cards", get(cards))
        .route("/cards/link", post(link_card))
        .route("/bank-accounts/link", post(link_bank_account))
}

async fn me(ctx: Ctx, State(state): State<WebState>, Query(query): Query<NoticeQuery>) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    let profile = match state.api.get(&ctx.caller, "/v1/me").await {
        Ok(profile) => profile,
        Err(failure) => return ctx.failure(&failure),
    };
    let sessions = state
        .api
        .get(&ctx.caller, "/v1/me/sessions")
        .await
        .unwrap_or_default();
    let handle = state
        .api
        .get(&ctx.caller, "/v1/me/handle")
        .await
        .unwrap_or_default();
    let passkeys = super::passkeys::section(&ctx, &state).await;
    let customer = profile.get("customer").cloned().unwrap_or_default();
    let limits = profile.get("limits").cloned().unwrap_or_default();
    let limit_currency = text(&limits, "currency");
    page(
        &ctx,
        "me.title",
        html! {
            (notice(&ctx, query.notice.as_deref()))
            h1 { (ctx.t("me.title")) }
            section.card aria-labelledby="profile-title" {
                h2 #profile-title { (ctx.t("me.profile")) }
                dl.review {
                    div.row { dt { (ctx.t("field.display_name")) } dd { (text(&customer, "display_name")) } }
                    div.row { dt { (ctx.t("field.contact")) } dd { (text(&customer, "contact")) } }
                    @if !text(&handle, "handle").is_empty() {
                        div.row { dt { (ctx.t("me.handle")) } dd { "@" (text(&handle, "handle")) } }
                    }
                    div.row { dt { (ctx.t("me.kyc_tier")) } dd { (int(&customer, "kyc_tier")) " " a href="/kyc" { (ctx.t("me.kyc_link")) } } }
                    div.row { dt { (ctx.t("me.daily_limit")) } dd { (ctx.money(int(&limits, "daily"), limit_currency)) } }
                    div.row { dt { (ctx.t("me.balance_cap")) } dd { (ctx.money(int(&limits, "balance_cap"), limit_currency)) } }
                }
            }
            section.card aria-labelledby="security-title" {
                h2 #security-title { (ctx.t("me.security")) }
                h3 { (ctx.t("me.totp")) }
                p { (ctx.t("me.totp_help")) }
                form method="post" action="/me/totp" {
                    (csrf_field(&ctx))
                    button type="submit" { (ctx.t("me.totp_enrol")) }
                }
                (passkeys)
                h3 { (ctx.t("me.devices")) }
                ul.devices {
                    @for session in list(&sessions) {
                        li {
                            span.device { (text(session, "device")) }
                            span.when { (ctx.tf("me.last_seen", &[("time", &ctx.time(text(session, "last_seen_at")))])) }
                            @if session.get("current").and_then(serde_json::Value::as_bool) == Some(true) {
                                span.badge { (ctx.t("me.this_device")) }
                            } @else {
                                form.inline method="post" action=(format!("/me/sessions/{}/revoke", encode(text(session, "id")))) {
                                    (csrf_field(&ctx))
                                    (idempotency_field())
                                    button.link type="submit" { (ctx.t("me.revoke")) }
                                }
                            }
                        }
                    }
                }
                form method="post" action="/me/sessions/revoke-all" {
                    (csrf_field(&ctx))
                    (idempotency_field())
                    button.danger type="submit" { (ctx.t("me.sign_out_everywhere")) }
                }
            }
            section.card aria-labelledby="more-title" {
                h2 #more-title { (ctx.t("me.more")) }
                ul.links {
                    li { a href="/cards" { (ctx.t("action.cards")) } }
                    li { a href="/requests" { (ctx.t("requests.title")) } }
                    li { a href="/history" { (ctx.t("history.title")) } }
                    li { a href="/alerts" { (ctx.t("alerts.title")) } }
                    li { a href="/privacy" { (ctx.t("privacy.title")) } }
                    li { a href="/help" { (ctx.t("help.title")) } }
                    li { a href="/me/merchants" { (ctx.t("merchant.mine")) } }
                    li { a href="/merchant" { (ctx.t("merchant.title")) } }
                    li { a href="/docs" { (ctx.t("me.api_docs")) } }
                }
                p.help { (ctx.t("me.privacy_note")) }
            }
        },
    )
}

async fn enrol_totp(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    match state
        .api
        .post(&ctx.caller, "/v1/me/factors/totp", &json!({}), None)
        .await
    {
        Ok(enrolment) => totp_confirm_page(&ctx, &enrolment, None),
        Err(failure) => ctx.failure(&failure),
    }
}

fn totp_confirm_page(ctx: &Ctx, enrolment: &serde_json::Value, error: Option<&str>) -> Response {
    page(
        ctx,
        "me.totp",
        html! {
            section.card.narrow {
                h1 { (ctx.t("me.totp")) }
                p { (ctx.t("me.totp_scan")) }
                @if !text(enrolment, "qr_svg").is_empty() {
                    figure.qr { (trusted_svg(text(enrolment, "qr_svg"))) }
                }
                @if !text(enrolment, "secret").is_empty() {
                    p { (ctx.t("me.totp_manual")) " " code.secret { (text(enrolment, "secret")) } }
                }
                (error_box(error))
                form method="post" action="/me/totp/confirm" {
                    (csrf_field(ctx))
                    label for="code" { (ctx.t("field.code")) }
                    input #code name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required;
                    button.primary type="submit" { (ctx.t("me.totp_confirm")) }
                }
            }
        },
    )
}

async fn confirm_totp(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    match state
        .api
        .post(
            &ctx.caller,
            "/v1/me/factors/totp/confirm",
            &json!({ "code": field(&form, "code") }),
            None,
        )
        .await
    {
        Ok(answer) => {
            let codes: Vec<String> = answer
                .get("recovery_codes")
                .and_then(serde_json::Value::as_array)
                .map(|codes| {
                    codes
                        .iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            page(
                &ctx,
                "me.totp",
                html! {
                    section.card.narrow {
                        h1 { (ctx.t("me.totp_done")) }
                        p { (ctx.t("me.recovery_help")) }
                        ul.recovery { @for code in &codes { li { code { (code) } } } }
                        p { a.button href="/me" { (ctx.t("me.title")) } }
                    }
                },
            )
        }
        Err(failure) => totp_confirm_page(&ctx, &json!({}), Some(&ctx.error_text(&failure))),
    }
}

async fn revoke_session(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    let path = format!("/v1/me/sessions/{}/revoke", encode(&id));
    match state.api.post(&ctx.caller, &path, &json!({}), key).await {
        Ok(_) => Redirect::to("/me?notice=notice.device_signed_out").into_response(),
        Err(failure) => ctx.failure(&failure),
    }
}

async fn revoke_all(
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
        .post(&ctx.caller, "/v1/me/sessions/revoke-all", &json!({}), key)
        .await
    {
        Ok(_) => {
            let mut response =
                Redirect::to("/signin?notice=notice.signed_out_everywhere").into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, ctx.cookie(SESSION_COOKIE, "", 0));
            response
        }
        Err(failure) => ctx.failure(&failure),
    }
}

// ---- cards and bank accounts --------------------------------------------------------

async fn cards(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    cards_page(&ctx, &state, query.notice.as_deref(), None).await
}

async fn cards_page(
    ctx: &Ctx,
    state: &WebState,
    notice_key: Option<&str>,
    error: Option<&str>,
) -> Response {
    let cards = match state.api.get(&ctx.caller, "/v1/me/cards").await {
        Ok(cards) => cards,
        Err(failure) => return ctx.failure(&failure),
    };
    let accounts = state
        .api
        .get(&ctx.caller, "/v1/me/bank-accounts")
        .await
        .unwrap_or_default();
    let banks: Vec<(&str, &str)> = coffer_payments::BANKS
        .iter()
        .map(|bank| match ctx.locale {
            crate::i18n::Locale::Zh => (bank.0, bank.2),
            crate::i18n::Locale::En => (bank.0, bank.1),
        })
        .collect();
    page(
        ctx,
        "cards.title",
        html! {
            (notice(ctx, notice_key))
            h1 { (ctx.t("cards.title")) }
            (error_box(error))
            section.card aria-labelledby="cards-title" {
                h2 #cards-title { (ctx.t("cards.cards")) }
                ul.instruments {
                    @for card in list(&cards) {
                        li { span.brand { (text(card, "brand").to_uppercase()) } " •••• " (text(card, "last4"))
                             span.meta { (format!(" {:02}/{}", int(card, "expiry_month"), int(card, "expiry_year") % 100)) " · " (text(card, "funding")) } }
                    }
                }
                @if !ctx.simple {
                    details {
                        summary { (ctx.t("cards.link_card")) }
                        form method="post" action="/cards/link" {
                            (csrf_field(ctx))
                            (idempotency_field())
                            label for="number" { (ctx.t("cards.number")) }
                            input #number name="number" type="text" inputmode="numeric" autocomplete="cc-number" required;
                            div.pair {
                                div { label for="expiry_month" { (ctx.t("cards.expiry_month")) }
                                      input #expiry_month name="expiry_month" type="text" inputmode="numeric" autocomplete="cc-exp-month" required; }
                                div { label for="expiry_year" { (ctx.t("cards.expiry_year")) }
                                      input #expiry_year name="expiry_year" type="text" inputmode="numeric" autocomplete="cc-exp-year" required; }
                            }
                            label for="cvv" { (ctx.t("cards.cvv")) }
                            input #cvv name="cvv" type="password" inputmode="numeric" autocomplete="cc-csc" required;
                            label for="funding" { (ctx.t("cards.funding")) }
                            select #funding name="funding" {
                                option value="debit" { (ctx.t("cards.debit")) }
                                option value="credit" { (ctx.t("cards.credit")) }
                            }
                            button.primary type="submit" { (ctx.t("cards.link")) }
                        }
                    }
                }
            }
            section.card aria-labelledby="accounts-title" {
                h2 #accounts-title { (ctx.t("cards.accounts")) }
                ul.instruments {
                    @for account in list(&accounts) {
                        li { (text(account, "bank_name")) " •••• " (text(account, "last4")) }
                    }
                }
                @if !ctx.simple {
                    details {
                        summary { (ctx.t("cards.link_account")) }
                        form method="post" action="/bank-accounts/link" {
                            (csrf_field(ctx))
                            (idempotency_field())
                            label for="bank_code" { (ctx.t("cards.bank")) }
                            select #bank_code name="bank_code" {
                                @for (code, name) in &banks { option value=(code) { (name) } }
                            }
                            label for="account_number" { (ctx.t("cards.account_number")) }
                            input #account_number name="account_number" type="text" inputmode="numeric" autocomplete="off" required;
                            button.primary type="submit" { (ctx.t("cards.link")) }
                        }
                    }
                }
            }
        },
    )
}

async fn link_card(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let body = json!({
        "number": field(&form, "number").replace(' ', ""),
        "expiry_month": field(&form, "expiry_month").parse::<i64>().unwrap_or(0),
        "expiry_year": field(&form, "expiry_year").parse::<i64>().map(|y| if y < 100 { y + 2000 } else { y }).unwrap_or(0),
        "cvv": field(&form, "cvv"),
        "funding": field(&form, "funding"),
    });
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&ctx.caller, "/v1/me/cards", &body, key)
        .await
    {
        Ok(_) => Redirect::to("/cards?notice=notice.card_linked").into_response(),
        Err(failure) => cards_page(&ctx, &state, None, Some(&ctx.error_text(&failure))).await,
    }
}

async fn link_bank_account(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let body = json!({
        "bank_code": field(&form, "bank_code"),
        "account_number": field(&form, "account_number").replace(' ', ""),
    });
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&ctx.caller, "/v1/me/bank-accounts", &body, key)
        .await
    {
        Ok(_) => Redirect::to("/cards?notice=notice.account_linked").into_response(),
        Err(failure) => cards_page(&ctx, &state, None, Some(&ctx.error_text(&failure))).await,
    }
}
