//! Exchange between my wallets: the amount to sell, then the bank's quote
//! (rate, both amounts, the spread and how long it holds) before anything
//! moves, then the conversion at exactly that quote.

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use maud::html;
use serde_json::{json, Value};

use super::pay::done_page;
use super::{field, Form};
use crate::api::{int, list, text};
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD};
use crate::format::{exponent, parse_amount};
use crate::layout::{csrf_field, error_box, idempotency_field, page};
use crate::WebState;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/exchange", get(exchange))
        .route("/exchange/quote", post(quote))
        .route("/exchange/convert", post(convert))
}

async fn exchange(ctx: Ctx, State(state): State<WebState>) -> Response {
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    exchange_page(&ctx, &state, &Form::new(), None).await
}

async fn exchange_page(ctx: &Ctx, state: &WebState, form: &Form, error: Option<&str>) -> Response {
    let wallets = match state.api.get(&ctx.caller, "/v1/me/wallets").await {
        Ok(wallets) => wallets,
        Err(failure) => return ctx.failure(&failure),
    };
    let currencies: Vec<&str> = wallets
        .get("enabled_currencies")
        .and_then(Value::as_array)
        .map(|all| all.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let sell = Some(field(form, "sell"))
        .filter(|s| !s.is_empty())
        .unwrap_or("CNY");
    let buy = Some(field(form, "buy"))
        .filter(|s| !s.is_empty())
        .or_else(|| currencies.iter().copied().find(|c| *c != sell))
        .unwrap_or("");
    page(
        ctx,
        "fx.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("fx.title")) }
                ul.wallets data-testid="fx-wallets" {
                    @for w in list(&wallets) {
                        li.wallet {
                            span.currency { (text(w, "currency")) }
                            span.amount { (ctx.money(int(w, "available"), text(w, "currency"))) }
                        }
                    }
                }
                (error_box(error))
                form method="post" action="/exchange/quote" {
                    (csrf_field(ctx))
                    (idempotency_field())
                    label for="sell" { (ctx.t("fx.sell")) }
                    select #sell name="sell" {
                        @for c in &currencies { option value=(c) selected[*c == sell] { (c) } }
                    }
                    label for="amount" { (ctx.t("fx.sell_amount")) }
                    input #amount name="amount" type="text" inputmode="decimal" autocomplete="off"
                        required value=(field(form, "amount")) placeholder="0.00";
                    label for="buy" { (ctx.t("fx.buy")) }
                    select #buy name="buy" {
                        @for c in &currencies { option value=(c) selected[*c == buy] { (c) } }
                    }
                    button.primary type="submit" { (ctx.t("fx.get_quote")) }
                }
            }
        },
    )
}

/// The bank's price for the conversion, shown before anything moves.
async fn quote(
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
    let (sell, buy) = (field(&form, "sell"), field(&form, "buy"));
    if sell == buy {
        return exchange_page(&ctx, &state, &form, Some(ctx.t("fx.same_currency"))).await;
    }
    let Some(amount) = parse_amount(field(&form, "amount"), exponent(sell)) else {
        return exchange_page(&ctx, &state, &form, Some(ctx.t("funding.invalid_amount"))).await;
    };
    let body = json!({ "sell_currency": sell, "buy_currency": buy, "sell_amount": amount });
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    let quote = match state
        .api
        .post(&ctx.caller, "/v1/me/fx/quotes", &body, key)
        .await
    {
        Ok(quote) => quote,
        Err(failure) if failure.status.is_client_error() && failure.status.as_u16() != 401 => {
            return exchange_page(&ctx, &state, &form, Some(&ctx.error_text(&failure))).await
        }
        Err(failure) => return ctx.failure(&failure),
    };
    let (sell, buy) = (text(&quote, "sell_currency"), text(&quote, "buy_currency"));
    page(
        &ctx,
        "fx.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("fx.review")) }
                dl.review data-testid="fx-quote" {
                    div.row { dt { (ctx.t("fx.you_sell")) } dd { (ctx.money(int(&quote, "sell_amount"), sell)) } }
                    div.row { dt { (ctx.t("fx.you_get")) } dd data-testid="fx-buy" { (ctx.money(int(&quote, "buy_amount"), buy)) } }
                    div.row { dt { (ctx.t("fx.rate")) } dd { "1 " (sell) " = " (text(&quote, "rate")) " " (buy) } }
                    div.row { dt { (ctx.t("fx.mid_rate")) } dd { (text(&quote, "mid_rate")) } }
                    div.row { dt { (ctx.t("fx.spread")) } dd { (ctx.tf("fx.spread_bps", &[("bps", &int(&quote, "spread_bps").to_string())])) } }
                    div.row { dt { (ctx.t("fx.expires")) } dd { (ctx.time(text(&quote, "expires_at"))) } }
                }
                p.help { (ctx.t("fx.quote_help")) }
                form method="post" action="/exchange/convert" {
                    (csrf_field(&ctx))
                    (idempotency_field())
                    input type="hidden" name="quote_id" value=(text(&quote, "id"));
                    button.primary type="submit" { (ctx.t("fx.convert")) }
                }
                p { a href="/exchange" { (ctx.t("fx.again")) } }
            }
        },
    )
}

async fn convert(
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
    let body = json!({ "quote_id": field(&form, "quote_id") });
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&ctx.caller, "/v1/me/fx/conversions", &body, key)
        .await
    {
        Ok(done) => done_page(
            &ctx,
            "fx.done_title",
            &ctx.tf(
                "fx.done",
                &[
                    (
                        "sold",
                        &ctx.money(int(&done, "sell_amount"), text(&done, "sell_currency")),
                    ),
                    (
                        "got",
                        &ctx.money(int(&done, "buy_amount"), text(&done, "buy_currency")),
                    ),
                ],
            ),
        ),
        // An expired or used quote, or not enough money: start again.
        Err(failure) if failure.status.is_client_error() && failure.status.as_u16() != 401 => {
            exchange_page(&ctx, &state, &Form::new(), Some(&ctx.error_text(&failure))).await
        }
        Err(failure) => ctx.failure(&failure),
    }
}
