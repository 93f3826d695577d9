//! Top up from a linked card or bank account and withdraw to a bank
//! account: amount, then a review page showing the fee and total before
//! anything moves, then the operation's status (3-D Secure when the card
//! issuer asks, step-up when the API asks).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use maud::html;
use serde_json::{json, Value};

use super::stepup::{self, Bound};
use super::{field, Form};
use crate::api::{int, list, text};
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD};
use crate::format::{exponent, parse_amount};
use crate::layout::{amount_input, csrf_field, encode, error_box, idempotency_field, page};
use crate::WebState;

const CURRENCY: &str = "CNY";

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/topup", get(top_up_page))
        .route("/topup/review", post(top_up_review))
        .route("/topup/confirm", post(top_up_confirm))
        .route("/topups/{id}", get(top_up_status))
        .route("/topups/{id}/authenticate", post(authenticate))
        .route("/withdraw", get(withdraw_page))
        .route("/withdraw/review", post(withdraw_review))
        .route("/withdraw/confirm", post(withdraw_confirm))
        .route("/withdrawals/{id}", get(withdrawal_status))
        .merge(stepup::routes())
}

/// Linked cards and bank accounts as (value, label) for a choice.
async fn sources(ctx: &Ctx, state: &WebState, cards: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if cards {
        if let Ok(answer) = state.api.get(&ctx.caller, "/v1/me/cards").await {
            for card in list(&answer) {
                out.push((
                    format!("card:{}", text(card, "id")),
                    format!(
                        "{} •• {}",
                        text(card, "brand").to_uppercase(),
                        text(card, "last4")
                    ),
                ));
            }
        }
    }
    if let Ok(answer) = state.api.get(&ctx.caller, "/v1/me/bank-accounts").await {
        for account in list(&answer) {
            out.push((
                format!("bank:{}", text(account, "id")),
                format!(
                    "{} •• {}",
                    text(account, "bank_name"),
                    text(account, "last4")
                ),
            ));
        }
    }
    out
}

fn amount_form(
    ctx: &Ctx,
    title_key: &str,
    action: &str,
    sources: &[(String, String)],
    form: &Form,
    error: Option<&str>,
) -> Response {
    let chosen = field(form, "source");
    page(
        ctx,
        title_key,
        html! {
            section.card.narrow {
                h1 { (ctx.t(title_key)) }
                (error_box(error))
                @if sources.is_empty() {
                    p { (ctx.t("funding.no_sources")) " " a href="/cards" { (ctx.t("action.cards")) } }
                } @else {
                    form method="post" action=(action) {
                        (csrf_field(ctx))
                        fieldset {
                            legend { (ctx.t("funding.source")) }
                            @for (i, (value, label)) in sources.iter().enumerate() {
                                div.check {
                                    input id=(format!("source-{i}")) type="radio" name="source" value=(value)
                                        checked[chosen == value || (chosen.is_empty() && i == 0)];
                                    label for=(format!("source-{i}")) { (label) }
                                }
                            }
                        }
                        (amount_input(ctx, "amount", "field.amount_cny", field(form, "amount")))
                        button.primary type="submit" { (ctx.t("funding.review")) }
                    }
                }
            }
        },
    )
}

fn source_label<'a>(sources: &'a [(String, String)], value: &str) -> Option<&'a str> {
    sources
        .iter()
        .find(|(v, _)| v == value)
        .map(|(_, label)| label.as_str())
}

/// The review step: what leaves, the fee, the total, then "confirm".
#[allow(clippy::too_many_arguments)]
fn review(
    ctx: &Ctx,
    title_key: &str,
    action: &str,
    source: &str,
    label: &str,
    amount: i64,
    fee: i64,
    note_key: &str,
) -> Response {
    page(
        ctx,
        title_key,
        html! {
            section.card.narrow {
                h1 { (ctx.t(title_key)) }
                dl.review {
                    div.row { dt { (ctx.t("funding.source")) } dd { (label) } }
                    div.row { dt { (ctx.t("receipt.amount")) } dd { (ctx.money(amount, CURRENCY)) } }
                    div.row { dt { (ctx.t("receipt.fee")) } dd data-testid="fee" { (ctx.money(fee, CURRENCY)) } }
                    div.row.total { dt { (ctx.t("receipt.total")) } dd { (ctx.money(amount + fee, CURRENCY)) } }
                }
                p.help { (ctx.t(note_key)) }
                form method="post" action=(action) {
                    (csrf_field(ctx))
                    (idempotency_field())
                    input type="hidden" name="source" value=(source);
                    input type="hidden" name="amount" value=(amount);
                    // The fee shown is the fee confirmed: the API refuses
                    // a withdrawal at any other (`fee_changed`).
                    input type="hidden" name="fee" value=(fee);
                    button.primary type="submit" { (ctx.t("funding.confirm")) }
                }
                p { a href="/" { (ctx.t("funding.cancel")) } }
            }
        },
    )
}

// ---- top up -------------------------------------------------------------------------

async fn top_up_page(ctx: Ctx, State(state): State<WebState>) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    let sources = sources(&ctx, &state, true).await;
    amount_form(
        &ctx,
        "topup.title",
        "/topup/review",
        &sources,
        &Form::new(),
        None,
    )
}

async fn top_up_review(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let sources = sources(&ctx, &state, true).await;
    let source = field(&form, "source");
    let (Some(amount), Some(label)) = (
        parse_amount(field(&form, "amount"), exponent(CURRENCY)),
        source_label(&sources, source),
    ) else {
        return amount_form(
            &ctx,
            "topup.title",
            "/topup/review",
            &sources,
            &form,
            Some(ctx.t("funding.invalid_amount")),
        );
    };
    // Top-ups carry no fee in the bank's funding policy; the review says so
    // before anything moves.
    review(
        &ctx,
        "topup.title",
        "/topup/confirm",
        source,
        label,
        amount,
        0,
        "topup.fee_note",
    )
}

fn source_body(source: &str, amount: i64) -> Value {
    match source.split_once(':') {
        Some(("card", id)) => json!({ "amount": amount, "currency": CURRENCY, "card_id": id }),
        Some(("bank", id)) => {
            json!({ "amount": amount, "currency": CURRENCY, "bank_account_id": id })
        }
        _ => json!({ "amount": amount, "currency": CURRENCY }),
    }
}

async fn top_up_confirm(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let amount: i64 = field(&form, "amount").parse().unwrap_or(0);
    let body = source_body(field(&form, "source"), amount);
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&ctx.caller, "/v1/me/top-ups", &body, key)
        .await
    {
        Ok(funding) => {
            Redirect::to(&format!("/topups/{}", encode(text(&funding, "id")))).into_response()
        }
        Err(failure) => ctx.failure(&failure),
    }
}

fn status_page(
    ctx: &Ctx,
    title_key: &str,
    funding: &Value,
    authenticate: Option<String>,
) -> Response {
    let status = text(funding, "status");
    page(
        ctx,
        title_key,
        html! {
            @if status == "pending" && authenticate.is_none() {
                // Refreshes while the bank answers; no script needed.
                meta http-equiv="refresh" content="2";
            }
            section.card.narrow {
                h1 { (ctx.t(title_key)) }
                p.status-line role="status" data-status=(status) {
                    (ctx.locale.lookup(&format!("status.{status}")).unwrap_or(status))
                }
                dl.review {
                    div.row { dt { (ctx.t("funding.source")) } dd { (text(funding, "method_label")) } }
                    div.row { dt { (ctx.t("receipt.amount")) } dd { (ctx.money(int(funding, "amount"), text(funding, "currency"))) } }
                    div.row { dt { (ctx.t("receipt.time")) } dd { (ctx.time(text(funding, "created_at"))) } }
                    @if !text(funding, "reason").is_empty() {
                        div.row { dt { (ctx.t("funding.reason")) } dd { (ctx.locale.lookup(&format!("reason.{}", text(funding, "reason"))).unwrap_or(text(funding, "reason"))) } }
                    }
                }
                @if let Some(action) = authenticate {
                    p { (ctx.t("topup.three_d_secure")) }
                    form method="post" action=(action) {
                        (csrf_field(ctx))
                        label for="answer" { (ctx.t("topup.three_d_secure_answer")) }
                        input #answer name="answer" type="text" inputmode="numeric" autocomplete="one-time-code" required;
                        button.primary type="submit" { (ctx.t("funding.confirm")) }
                    }
                }
                p { a.button href="/" { (ctx.t("nav.back_home")) } }
            }
        },
    )
}

async fn top_up_status(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    match state
        .api
        .get(&ctx.caller, &format!("/v1/me/top-ups/{}", encode(&id)))
        .await
    {
        Ok(funding) => {
            let authenticate = (text(&funding, "next_action") == "three_d_secure")
                .then(|| format!("/topups/{}/authenticate", encode(&id)));
            status_page(&ctx, "topup.title", &funding, authenticate)
        }
        Err(failure) => ctx.failure(&failure),
    }
}

async fn authenticate(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let path = format!("/v1/me/top-ups/{}/authenticate", encode(&id));
    let key = crate::ctx::random_token();
    match state
        .api
        .post(
            &ctx.caller,
            &path,
            &json!({ "answer": field(&form, "answer") }),
            Some(&key),
        )
        .await
    {
        Ok(_) => Redirect::to(&format!("/topups/{}", encode(&id))).into_response(),
        Err(failure) => ctx.failure(&failure),
    }
}

// ---- withdraw -----------------------------------------------------------------------

async fn withdraw_page(ctx: Ctx, State(state): State<WebState>) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    let sources = sources(&ctx, &state, false).await;
    amount_form(
        &ctx,
        "withdraw.title",
        "/withdraw/review",
        &sources,
        &Form::new(),
        None,
    )
}

async fn withdraw_review(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let sources = sources(&ctx, &state, false).await;
    let source = field(&form, "source");
    let (Some(amount), Some(label)) = (
        parse_amount(field(&form, "amount"), exponent(CURRENCY)),
        source_label(&sources, source),
    ) else {
        return amount_form(
            &ctx,
            "withdraw.title",
            "/withdraw/review",
            &sources,
            &form,
            Some(ctx.t("funding.invalid_amount")),
        );
    };
    // The fee the bank charges now (waivers counted), from the API's quote.
    let quote = state
        .api
        .get(
            &ctx.caller,
            &format!("/v1/me/withdrawals/quote?amount={amount}&currency={CURRENCY}"),
        )
        .await;
    let fee = match quote {
        Ok(quote) => quote["fee"].as_i64().unwrap_or(0),
        Err(failure) => return ctx.failure(&failure),
    };
    review(
        &ctx,
        "withdraw.title",
        "/withdraw/confirm",
        source,
        label,
        amount,
        fee,
        "withdraw.fee_note",
    )
}

async fn withdraw_confirm(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let amount: i64 = field(&form, "amount").parse().unwrap_or(0);
    let account = field(&form, "source").strip_prefix("bank:").unwrap_or("");
    let fee: i64 = field(&form, "fee").parse().unwrap_or(0);
    let mut body =
        json!({ "amount": amount, "currency": CURRENCY, "bank_account_id": account, "fee": fee });
    if let Some(challenge) = stepup::challenge(&form) {
        body["step_up_challenge_id"] = json!(challenge);
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&ctx.caller, "/v1/me/withdrawals", &body, key)
        .await
    {
        Ok(funding) => {
            Redirect::to(&format!("/withdrawals/{}", encode(text(&funding, "id")))).into_response()
        }
        Err(failure) if stepup::is_required(&failure) => {
            let payee = format!("bank_account:{account}");
            stepup::required(
                &ctx,
                "/withdraw/confirm",
                &Bound {
                    operation: "withdrawal",
                    amount,
                    currency: CURRENCY,
                    payee: &payee,
                },
                &form,
                None,
            )
        }
        Err(failure) => ctx.failure(&failure),
    }
}

async fn withdrawal_status(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    match state
        .api
        .get(&ctx.caller, &format!("/v1/me/withdrawals/{}", encode(&id)))
        .await
    {
        Ok(funding) => status_page(&ctx, "withdraw.title", &funding, None),
        Err(failure) => ctx.failure(&failure),
    }
}
