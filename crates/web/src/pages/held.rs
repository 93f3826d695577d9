//! "Was this you?": payments the bank's risk checks held for review, shown
//! to the customer who made them. "Yes" releases the payment after a
//! step-up bound to the held amount (so a thief holding the session alone
//! cannot release it); "No" declines it and freezes the wallet at once.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use maud::html;
use serde_json::{json, Value};

use super::auth::NoticeQuery;
use super::stepup::{self, Bound};
use super::{field, Form};
use crate::api::{int, list, text};
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD};
use crate::layout::{csrf_field, encode, idempotency_field, message_page_ok, notice, page};
use crate::WebState;

/// Where the answer is posted (also a step-up continuation).
pub const ANSWER_ACTION: &str = "/held/answer";
/// The step-up operation the API binds a release to.
const RELEASE_OPERATION: &str = "risk_case_release";

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/held", get(held))
        .route(ANSWER_ACTION, post(answer))
}

/// The customer's held payments that wait for an answer: open cases about
/// a payment that nobody has answered yet.
pub fn waiting(cases: &Value) -> Vec<&Value> {
    list(cases)
        .iter()
        .filter(|c| {
            text(c, "kind") == "held_payment"
                && matches!(text(c, "state"), "open" | "escalated")
                && text(c, "answer").is_empty()
        })
        .collect()
}

async fn held(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let cases = match state.api.get(&ctx.caller, "/v1/me/risk/cases").await {
        Ok(cases) => cases,
        Err(failure) => return ctx.failure(&failure),
    };
    let waiting = waiting(&cases);
    let answered: Vec<&Value> = list(&cases)
        .iter()
        .filter(|c| text(c, "kind") == "held_payment" && !waiting.contains(c))
        .collect();
    page(
        &ctx,
        "held.title",
        html! {
            (notice(&ctx, query.notice.as_deref()))
            h1 { (ctx.t("held.title")) }
            @if waiting.is_empty() {
                p.empty { (ctx.t("held.none")) }
            } @else {
                p { (ctx.t("held.explain")) }
                ul.plain data-testid="held-payments" {
                    @for case in &waiting {
                        @let amount = ctx.money(int(case, "amount"), text(case, "currency"));
                        li.card {
                            h2 { (ctx.tf("held.payment", &[("amount", &amount)])) }
                            p.help { (ctx.time(text(case, "created_at"))) }
                            p { (ctx.t("held.question")) }
                            div.answers {
                                form method="post" action=(ANSWER_ACTION) {
                                    (csrf_field(&ctx))
                                    (idempotency_field())
                                    input type="hidden" name="case_id" value=(text(case, "id"));
                                    input type="hidden" name="was_me" value="yes";
                                    button.primary type="submit" { (ctx.t("held.yes")) }
                                }
                                form method="post" action=(ANSWER_ACTION) {
                                    (csrf_field(&ctx))
                                    (idempotency_field())
                                    input type="hidden" name="case_id" value=(text(case, "id"));
                                    input type="hidden" name="was_me" value="no";
                                    button.danger type="submit" { (ctx.t("held.no")) }
                                }
                            }
                            p.help { (ctx.t("held.no_explain")) }
                        }
                    }
                }
            }
            @if !answered.is_empty() {
                h2 { (ctx.t("held.earlier")) }
                ul.plain data-testid="held-answered" {
                    @for case in &answered {
                        li {
                            (ctx.money(int(case, "amount"), text(case, "currency"))) " · "
                            (ctx.t(&format!("held.state_{}", text(case, "state")))) " · "
                            (ctx.time(text(case, "updated_at")))
                        }
                    }
                }
            }
        },
    )
}

async fn answer(
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
    let case_id = field(&form, "case_id");
    let was_me = field(&form, "was_me") == "yes";
    let mut body = json!({ "was_me": was_me });
    if let Some(challenge) = stepup::challenge(&form) {
        body["step_up_challenge_id"] = json!(challenge);
    }
    let path = format!("/v1/me/risk/cases/{}/answer", encode(case_id));
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state.api.post(&ctx.caller, &path, &body, key).await {
        Ok(_) if was_me => Redirect::to("/held?notice=notice.held_released").into_response(),
        // The wallet is frozen now and this session with it: say so here,
        // a redirect would only meet the sign-in page.
        Ok(_) => message_page_ok(&ctx, "held.title", ctx.t("held.declined")),
        Err(failure) if stepup::is_required(&failure) => {
            // The challenge is bound to the held amount: read it from the
            // case, not from the form.
            let cases = match state.api.get(&ctx.caller, "/v1/me/risk/cases").await {
                Ok(cases) => cases,
                Err(failure) => return ctx.failure(&failure),
            };
            let Some(case) = list(&cases).iter().find(|c| text(c, "id") == case_id) else {
                return ctx.failure(&failure);
            };
            let payee = format!("case:{case_id}");
            stepup::required(
                &ctx,
                ANSWER_ACTION,
                &Bound {
                    operation: RELEASE_OPERATION,
                    amount: int(case, "amount"),
                    currency: text(case, "currency"),
                    payee: &payee,
                },
                &form,
                None,
            )
        }
        Err(failure) => ctx.failure(&failure),
    }
}
