//! Pay a bill: choose the biller and enter the account, see what the
//! biller says is due and whose account it is (masked), then confirm; a
//! step-up when the API asks, and the biller's confirmation number or its
//! refusal at the end.

use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use maud::html;
use serde::Deserialize;
use serde_json::{json, Value};

use super::pay::done_page;
use super::stepup::{self, Bound};
use super::{field, Form};
use crate::api::{int, list, text, ApiFailure};
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD};
use crate::format::{exponent, parse_amount};
use crate::layout::{amount_input, csrf_field, encode, error_box, idempotency_field, page};
use crate::WebState;

/// Where a bill payment is confirmed (also a step-up continuation).
pub const PAY_ACTION: &str = "/bills/pay";
const CURRENCY: &str = "CNY";

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/bills", get(billers))
        .route("/bills/lookup", get(lookup))
        .route(PAY_ACTION, post(pay))
}

#[derive(Deserialize)]
pub struct LookupQuery {
    biller: Option<String>,
    reference: Option<String>,
}

/// The biller's name in the reader's language.
fn biller_name<'a>(ctx: &Ctx, biller: &'a Value) -> &'a str {
    if ctx.locale.code().starts_with("zh") {
        text(biller, "name_zh")
    } else {
        text(biller, "name_en")
    }
}

async fn billers(ctx: Ctx, State(state): State<WebState>) -> Response {
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    billers_page(&ctx, &state, "", "", None).await
}

async fn billers_page(
    ctx: &Ctx,
    state: &WebState,
    chosen: &str,
    reference: &str,
    error: Option<&str>,
) -> Response {
    let catalogue = match state.api.get(&ctx.caller, "/v1/me/billers").await {
        Ok(catalogue) => catalogue,
        Err(failure) => return ctx.failure(&failure),
    };
    page(
        ctx,
        "bills.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("bills.title")) }
                (error_box(error))
                form method="get" action="/bills/lookup" {
                    label for="biller" { (ctx.t("bills.biller")) }
                    select #biller name="biller" required {
                        @for b in list(&catalogue) {
                            option value=(text(b, "id")) selected[text(b, "id") == chosen] {
                                (ctx.t(&format!("bills.category_{}", text(b, "category")))) " · " (biller_name(ctx, b))
                            }
                        }
                    }
                    label for="reference" { (ctx.t("bills.reference")) }
                    input #reference name="reference" type="text" inputmode="numeric" autocomplete="off"
                        required maxlength="40" value=(reference);
                    p.help { (ctx.t("bills.reference_help")) }
                    button.primary type="submit" { (ctx.t("bills.look_up")) }
                }
            }
        },
    )
}

/// What the biller says is due, with the confirm form.
async fn lookup(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<LookupQuery>,
) -> Response {
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let biller_id = query.biller.as_deref().unwrap_or("").trim();
    let reference = query.reference.as_deref().unwrap_or("").trim();
    match look_up(&ctx, &state, biller_id, reference).await {
        Ok((biller, bill)) => confirm_page(&ctx, &biller, &bill, reference, "", None),
        Err(error) => billers_page(&ctx, &state, biller_id, reference, Some(&error)).await,
    }
}

/// The biller (from the catalogue) and its bill for `reference`, or what
/// to tell the customer.
async fn look_up(
    ctx: &Ctx,
    state: &WebState,
    biller_id: &str,
    reference: &str,
) -> Result<(Value, Value), String> {
    let catalogue = state
        .api
        .get(&ctx.caller, "/v1/me/billers")
        .await
        .map_err(|failure| ctx.error_text(&failure))?;
    let biller = list(&catalogue)
        .iter()
        .find(|b| text(b, "id") == biller_id)
        .cloned()
        .ok_or_else(|| ctx.t("bills.unknown_biller").to_string())?;
    let path = format!(
        "/v1/me/billers/{}/bill?account_reference={}",
        encode(biller_id),
        encode(reference)
    );
    let bill = state
        .api
        .get(&ctx.caller, &path)
        .await
        .map_err(|failure| ctx.error_text(&failure))?;
    if text(&bill, "status") == "paid" || int(&bill, "amount_due") <= 0 {
        return Err(ctx.t("bills.nothing_due").to_string());
    }
    Ok((biller, bill))
}

fn confirm_page(
    ctx: &Ctx,
    biller: &Value,
    bill: &Value,
    reference: &str,
    amount: &str,
    error: Option<&str>,
) -> Response {
    let due = int(bill, "amount_due");
    let partial = biller.get("partial_payment").and_then(Value::as_bool) == Some(true);
    page(
        ctx,
        "bills.title",
        html! {
            section.card.narrow {
                h1 { (biller_name(ctx, biller)) }
                (error_box(error))
                dl.review data-testid="bill" {
                    div.row { dt { (ctx.t("bills.holder")) } dd data-testid="holder" { (text(bill, "holder_name")) } }
                    div.row { dt { (ctx.t("bills.reference")) } dd { (text(bill, "account_reference")) } }
                    div.row { dt { (ctx.t("bills.amount_due")) } dd data-testid="amount-due" { (ctx.money(due, text(bill, "currency"))) } }
                    div.row { dt { (ctx.t("bills.due_date")) } dd { (text(bill, "due_date")) } }
                }
                p.help { (ctx.t("bills.check_holder")) }
                form method="post" action=(PAY_ACTION) {
                    (csrf_field(ctx))
                    (idempotency_field())
                    input type="hidden" name="biller" value=(text(biller, "id"));
                    input type="hidden" name="reference" value=(reference);
                    @if partial {
                        (amount_input(ctx, "amount", "bills.amount", amount))
                        p.help { (ctx.tf("bills.partial_help", &[("amount", &ctx.money(due, CURRENCY))])) }
                    } @else {
                        input type="hidden" name="amount" value=(due);
                        input type="hidden" name="amount_minor" value="yes";
                    }
                    button.primary type="submit" { (ctx.t("bills.pay")) }
                }
                p { a href="/bills" { (ctx.t("bills.other")) } }
            }
        },
    )
}

async fn pay(ctx: Ctx, State(state): State<WebState>, AxumForm(form): AxumForm<Form>) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let biller_id = field(&form, "biller");
    let reference = field(&form, "reference");
    // The amount due rides as minor units; a typed one is parsed exactly.
    let amount = if field(&form, "amount_minor") == "yes" {
        field(&form, "amount")
            .parse::<i64>()
            .ok()
            .filter(|a| *a > 0)
    } else {
        parse_amount(field(&form, "amount"), exponent(CURRENCY))
    };
    let Some(amount) = amount else {
        return match look_up(&ctx, &state, biller_id, reference).await {
            Ok((biller, bill)) => confirm_page(
                &ctx,
                &biller,
                &bill,
                reference,
                field(&form, "amount"),
                Some(ctx.t("funding.invalid_amount")),
            ),
            Err(error) => billers_page(&ctx, &state, biller_id, reference, Some(&error)).await,
        };
    };
    let mut body = json!({
        "biller_id": biller_id,
        "account_reference": reference,
        "amount": amount,
        "currency": CURRENCY,
    });
    if let Some(challenge) = stepup::challenge(&form) {
        body["step_up_challenge_id"] = json!(challenge);
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&ctx.caller, "/v1/me/bill-payments", &body, key)
        .await
    {
        Ok(payment) => paid_page(&ctx, &payment),
        Err(failure) if stepup::is_required(&failure) => {
            // Bound to this biller and account, as the API checks it.
            let digits: String = reference.chars().filter(char::is_ascii_digit).collect();
            let payee = format!("biller:{biller_id}:{digits}");
            stepup::required(
                &ctx,
                PAY_ACTION,
                &Bound {
                    operation: "bill_payment",
                    amount,
                    currency: CURRENCY,
                    payee: &payee,
                },
                &form,
                None,
            )
        }
        Err(failure) => refused(&ctx, &state, &form, &failure).await,
    }
}

/// A refusal the customer can act on is shown on the bill again; one
/// that ended the session or the service's own fault is a page of its own.
async fn refused(ctx: &Ctx, state: &WebState, form: &Form, failure: &ApiFailure) -> Response {
    if !failure.status.is_client_error() || failure.status.as_u16() == 401 {
        return ctx.failure(failure);
    }
    let (biller_id, reference) = (field(form, "biller"), field(form, "reference"));
    match look_up(ctx, state, biller_id, reference).await {
        Ok((biller, bill)) => confirm_page(
            ctx,
            &biller,
            &bill,
            reference,
            field(form, "amount"),
            Some(&ctx.error_text(failure)),
        ),
        Err(error) => billers_page(ctx, state, biller_id, reference, Some(&error)).await,
    }
}

fn paid_page(ctx: &Ctx, payment: &Value) -> Response {
    let amount = ctx.money(int(payment, "amount"), text(payment, "currency"));
    match text(payment, "status") {
        "succeeded" => done_page(
            ctx,
            "bills.paid_title",
            &ctx.tf(
                "bills.paid",
                &[
                    ("amount", &amount),
                    ("confirmation", text(payment, "confirmation_number")),
                ],
            ),
        ),
        "pending" => done_page(
            ctx,
            "bills.pending_title",
            &ctx.tf("bills.pending", &[("amount", &amount)]),
        ),
        _ => done_page(
            ctx,
            "bills.failed_title",
            &ctx.tf(
                "bills.failed",
                &[(
                    "reason",
                    ctx.locale
                        .lookup(&format!("bills.reason_{}", text(payment, "reason")))
                        .unwrap_or(ctx.t("bills.reason_other")),
                )],
            ),
        ),
    }
}
