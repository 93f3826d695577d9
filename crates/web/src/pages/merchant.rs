//! The merchant portal: a till's view of the merchant API. The merchant
//! signs in with one of its API keys (the owner makes them in the wallet
//! app or the API); the key then lives in an HttpOnly, SameSite=Strict
//! cookie sent only to `/merchant` pages, and every page calls
//! `/v1/merchant/*` with it, so the portal can do exactly what the key can.
//! Static and dynamic QR codes to show or print, incoming payments,
//! refunds, settlements with their fees, the webhook delivery log.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{field, Form};
use crate::api::{int, list, text, ApiFailure, Caller};
use crate::ctx::{Ctx, IDEMPOTENCY_FIELD, MERCHANT_COOKIE};
use crate::format::{exponent, parse_amount};
use crate::layout::{
    amount_input, csrf_field, encode, error_box, idempotency_field, notice, page, trusted_svg,
};
use crate::WebState;

/// Marks a portal key the wallet minted for this browser (revoked at sign-out).
const MINTED_COOKIE: &str = "coffer_merchant_minted";

/// A day: the portal is a till, signed in for a working day at most.
const PORTAL_COOKIE_SECONDS: i64 = 12 * 3600;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/merchant", get(portal))
        .route("/merchant/signin", post(sign_in))
        .route("/merchant/signout", post(sign_out))
        .route("/merchant/qr", get(print_qr))
        .route("/merchant/live", get(live))
        .route("/merchant/checkout", post(checkout))
        .route("/merchant/payments/{id}", get(payment))
        .route("/merchant/payments/{id}/refund", post(refund))
        .route("/me/merchants", get(my_merchants))
        .route("/me/merchants/{id}/portal", post(open_portal))
        .route("/me/merchants/{id}/webhook", post(set_webhook))
}

#[derive(Deserialize)]
pub struct PortalQuery {
    pub notice: Option<String>,
}

fn sign_in_page(ctx: &Ctx, error: Option<&str>) -> Response {
    page(
        ctx,
        "merchant.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("merchant.title")) }
                p { (ctx.t("merchant.sign_in_help")) }
                (error_box(error))
                form method="post" action="/merchant/signin" {
                    (csrf_field(ctx))
                    label for="api_key" { (ctx.t("merchant.api_key")) }
                    input #api_key name="api_key" type="password" autocomplete="off" required;
                    button.primary type="submit" { (ctx.t("merchant.sign_in")) }
                }
            }
        },
    )
}

/// The portal's caller, or the portal's sign-in page.
fn merchant(ctx: &Ctx) -> Result<Caller, Response> {
    ctx.merchant_caller().ok_or_else(|| sign_in_page(ctx, None))
}

/// A refusal: a key that no longer works signs the portal out.
fn refused(ctx: &Ctx, failure: &ApiFailure) -> Response {
    if failure.status == axum::http::StatusCode::UNAUTHORIZED
        || (failure.status == axum::http::StatusCode::FORBIDDEN && failure.code == "forbidden")
    {
        let mut response = sign_in_page(ctx, Some(&ctx.error_text(failure)));
        response.headers_mut().append(
            header::SET_COOKIE,
            ctx.scoped_cookie(MERCHANT_COOKIE, "", "/merchant", 0),
        );
        return response;
    }
    ctx.failure(failure)
}

async fn sign_in(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let key = field(&form, "api_key");
    // Cookie-safe keys only (the API's keys are printable ASCII without `;`).
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
    {
        return sign_in_page(&ctx, Some(ctx.t("merchant.key_invalid")));
    }
    let caller = Caller {
        token: Some(key.to_string()),
        ..ctx.caller.clone()
    };
    match state.api.get(&caller, "/v1/merchant").await {
        Ok(_) => {
            let mut response = Redirect::to("/merchant").into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                ctx.scoped_cookie(MERCHANT_COOKIE, key, "/merchant", PORTAL_COOKIE_SECONDS),
            );
            response.headers_mut().append(
                header::SET_COOKIE,
                ctx.scoped_cookie(MINTED_COOKIE, "", "/merchant", 0),
            );
            response
        }
        Err(failure) if failure.status.is_client_error() => {
            sign_in_page(&ctx, Some(ctx.t("merchant.key_invalid")))
        }
        Err(failure) => ctx.failure(&failure),
    }
}

async fn sign_out(
    ctx: Ctx,
    State(state): State<WebState>,
    headers: axum::http::HeaderMap,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    // A key the wallet minted for this browser ("Open the merchant portal")
    // dies with the portal's session; a key typed in belongs to the till
    // and is left alone.
    let minted = crate::ctx::cookies(&headers)
        .get(MINTED_COOKIE)
        .is_some_and(|v| v == "1");
    if let (true, Some(caller), Some(_)) = (minted, ctx.merchant_caller(), &ctx.session) {
        if let Ok(profile) = state.api.get(&caller, "/v1/merchant").await {
            let key_id = ctx
                .merchant_key
                .as_deref()
                .and_then(|k| k.strip_prefix("coffer_"))
                .and_then(|rest| rest.split('_').next())
                .unwrap_or_default();
            let path = format!(
                "/v1/me/merchants/{}/api-keys/{}/revoke",
                encode(text(&profile, "id")),
                encode(key_id)
            );
            let key = crate::ctx::random_token();
            if let Err(failure) = state
                .api
                .post(&ctx.caller, &path, &json!({}), Some(&key))
                .await
            {
                tracing::warn!(code = %failure.code, "the portal's key was not revoked at sign-out");
            }
        }
    }
    let mut response = Redirect::to("/merchant").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        ctx.scoped_cookie(MERCHANT_COOKIE, "", "/merchant", 0),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        ctx.scoped_cookie(MINTED_COOKIE, "", "/merchant", 0),
    );
    response
}

fn status_label(ctx: &Ctx, status: &str) -> String {
    ctx.locale
        .lookup(&format!("status.{status}"))
        .unwrap_or(status)
        .to_string()
}

fn portal_header(ctx: &Ctx, profile: &Value) -> Markup {
    html! {
        div.portal-head {
            h1 data-testid="merchant-name" { (text(profile, "display_name")) }
            p.help { (text(profile, "city")) " · " (ctx.t("merchant.rate")) " "
                (format!("{}.{:02}%", int(profile, "discount_rate_bps") / 100, int(profile, "discount_rate_bps") % 100)) }
            form.inline method="post" action="/merchant/signout" {
                (csrf_field(ctx))
                button.link type="submit" { (ctx.t("merchant.sign_out")) }
            }
        }
    }
}

/// The static code's SVG, drawn by our own renderer from the API's payload.
async fn static_qr_svg(state: &WebState, caller: &Caller) -> Result<String, ApiFailure> {
    let payload = state.api.get(caller, "/v1/merchant/qr").await?;
    qr_svg(text(&payload, "payload"))
}

fn qr_svg(payload: &str) -> Result<String, ApiFailure> {
    coffer_payments::qr_image::svg(payload).map_err(|e| ApiFailure {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal".into(),
        message: e.to_string(),
        field: None,
    })
}

async fn portal(
    ctx: Ctx,
    State(state): State<WebState>,
    Query(query): Query<PortalQuery>,
) -> Response {
    let caller = match merchant(&ctx) {
        Ok(caller) => caller,
        Err(page) => return page,
    };
    let profile = match state.api.get(&caller, "/v1/merchant").await {
        Ok(profile) => profile,
        Err(failure) => return refused(&ctx, &failure),
    };
    let qr = static_qr_svg(&state, &caller).await.ok();
    let payments = state
        .api
        .get(&caller, "/v1/merchant/payments?limit=50")
        .await
        .unwrap_or_default();
    let settlements = state
        .api
        .get(&caller, "/v1/merchant/settlements")
        .await
        .unwrap_or_default();
    let deliveries = state
        .api
        .get(&caller, "/v1/merchant/webhook-deliveries")
        .await
        .unwrap_or_default();
    page(
        &ctx,
        "merchant.title",
        html! {
            (notice(&ctx, query.notice.as_deref()))
            (portal_header(&ctx, &profile))
            section.card aria-labelledby="qr-title" {
                h2 #qr-title { (ctx.t("merchant.static_qr")) }
                @if let Some(svg) = &qr {
                    figure.qr data-testid="static-qr" { (trusted_svg(svg)) }
                    p { a.button href="/merchant/qr" { (ctx.t("merchant.print")) } }
                } @else {
                    p.help { (ctx.t("merchant.qr_unavailable")) }
                }
            }
            section.card aria-labelledby="checkout-title" {
                h2 #checkout-title { (ctx.t("merchant.dynamic_qr")) }
                p.help { (ctx.t("merchant.dynamic_help")) }
                form method="post" action="/merchant/checkout" {
                    (csrf_field(&ctx))
                    (idempotency_field())
                    (amount_input(&ctx, "amount", "field.amount_cny", ""))
                    label for="order_reference" { (ctx.t("merchant.order_reference")) }
                    input #order_reference name="order_reference" type="text" maxlength="64";
                    button.primary type="submit" { (ctx.t("merchant.make_qr")) }
                }
            }
            section.card aria-labelledby="payments-title" {
                h2 #payments-title { (ctx.t("merchant.payments")) }
                p { a href="/merchant/live" { (ctx.t("merchant.live")) } }
                (payments_table(&ctx, list(&payments)))
            }
            section.card aria-labelledby="settlements-title" {
                h2 #settlements-title { (ctx.t("merchant.settlements")) }
                (settlements_table(&ctx, list(&settlements)))
            }
            section.card aria-labelledby="webhook-title" {
                h2 #webhook-title { (ctx.t("merchant.webhooks")) }
                p.help {
                    (ctx.t("merchant.webhook_url")) ": "
                    @if text(&profile, "webhook_url").is_empty() { (ctx.t("merchant.webhook_none")) }
                    @else { code { (text(&profile, "webhook_url")) } }
                }
                p.help { (ctx.t("merchant.webhook_help")) }
                (deliveries_table(&ctx, list(&deliveries)))
            }
        },
    )
}

fn payments_table(ctx: &Ctx, payments: &[Value]) -> Markup {
    html! {
        @if payments.is_empty() {
            p.empty { (ctx.t("merchant.no_payments")) }
        } @else {
            ul.activity data-testid="merchant-payments" {
                @for payment in payments {
                    @let currency = text(payment, "currency");
                    li class=(format!("entry in {}", text(payment, "status"))) {
                        a href=(format!("/merchant/payments/{}", encode(text(payment, "id")))) {
                            span.what {
                                span.kind { (ctx.locale.lookup(&format!("method.{}", text(payment, "method"))).unwrap_or(text(payment, "method"))) }
                                span.who { (text(payment, "order_reference")) }
                                span.when { (ctx.time(text(payment, "created_at"))) }
                            }
                            span.how-much {
                                span.amount { (ctx.money(int(payment, "amount"), currency)) }
                                span.status { (status_label(ctx, text(payment, "status"))) }
                                @if int(payment, "refunded") > 0 {
                                    span.status { (ctx.tf("merchant.refunded", &[("amount", &ctx.money(int(payment, "refunded"), currency))])) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn settlements_table(ctx: &Ctx, settlements: &[Value]) -> Markup {
    html! {
        @if settlements.is_empty() {
            p.empty { (ctx.t("merchant.no_settlements")) }
        } @else {
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { (ctx.t("merchant.date")) }
                        th scope="col" { (ctx.t("merchant.gross")) }
                        th scope="col" { (ctx.t("merchant.refunds")) }
                        th scope="col" { (ctx.t("receipt.fee")) }
                        th scope="col" { (ctx.t("merchant.net")) }
                        th scope="col" { (ctx.t("receipt.status")) }
                    } }
                    tbody {
                        @for s in settlements {
                            @let currency = text(s, "currency");
                            tr {
                                td { (text(s, "date")) }
                                td { (ctx.money(int(s, "gross"), currency)) }
                                td { (ctx.money(int(s, "refunds"), currency)) }
                                td { (ctx.money(int(s, "fee"), currency)) }
                                td { (ctx.money(int(s, "net"), currency)) }
                                td { (status_label(ctx, text(s, "status"))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn deliveries_table(ctx: &Ctx, deliveries: &[Value]) -> Markup {
    html! {
        @if deliveries.is_empty() {
            p.empty { (ctx.t("merchant.no_deliveries")) }
        } @else {
            div.table-wrap {
                table {
                    thead { tr {
                        th scope="col" { (ctx.t("merchant.event")) }
                        th scope="col" { (ctx.t("merchant.endpoint")) }
                        th scope="col" { (ctx.t("receipt.status")) }
                        th scope="col" { (ctx.t("merchant.attempts")) }
                        th scope="col" { (ctx.t("receipt.time")) }
                    } }
                    tbody {
                        @for d in deliveries {
                            @let attempts = d.get("attempts").and_then(Value::as_array).map_or(0, Vec::len);
                            tr {
                                td { code { (text(d, "event_type")) } }
                                td { (text(d, "endpoint")) }
                                td { (status_label(ctx, text(d, "state"))) }
                                td { (attempts) }
                                td { (ctx.time(text(d, "created_at"))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The static code alone, large, for printing (the print stylesheet hides
/// the page's chrome).
async fn print_qr(ctx: Ctx, State(state): State<WebState>) -> Response {
    let caller = match merchant(&ctx) {
        Ok(caller) => caller,
        Err(page) => return page,
    };
    let profile = match state.api.get(&caller, "/v1/merchant").await {
        Ok(profile) => profile,
        Err(failure) => return refused(&ctx, &failure),
    };
    match static_qr_svg(&state, &caller).await {
        Ok(svg) => page(
            &ctx,
            "merchant.static_qr",
            html! {
                section.card.print-qr {
                    h1 { (text(&profile, "display_name")) }
                    figure.qr.large { (trusted_svg(&svg)) }
                    p { (ctx.t("merchant.scan_to_pay")) }
                    p.no-print { a href="/merchant" { (ctx.t("merchant.back")) } }
                }
            },
        ),
        Err(failure) => refused(&ctx, &failure),
    }
}

async fn checkout(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let caller = match merchant(&ctx) {
        Ok(caller) => caller,
        Err(page) => return page,
    };
    let currency = "CNY";
    let Some(amount) = parse_amount(field(&form, "amount"), exponent(currency)) else {
        return crate::layout::message_page(
            &ctx,
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "merchant.dynamic_qr",
            ctx.t("funding.invalid_amount"),
        );
    };
    let mut body = json!({ "amount": amount, "currency": currency });
    if !field(&form, "order_reference").is_empty() {
        body["order_reference"] = json!(field(&form, "order_reference"));
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&caller, "/v1/merchant/checkouts", &body, key)
        .await
    {
        Ok(answer) => match qr_svg(text(&answer, "qr_payload")) {
            Ok(svg) => {
                let payment = answer.get("payment").cloned().unwrap_or_default();
                page(
                    &ctx,
                    "merchant.dynamic_qr",
                    html! {
                        section.card.print-qr {
                            h1 { (ctx.money(int(&payment, "amount"), text(&payment, "currency"))) }
                            figure.qr.large data-testid="dynamic-qr" { (trusted_svg(&svg)) }
                            p { (ctx.t("merchant.scan_to_pay")) }
                            p.no-print {
                                a href=(format!("/merchant/payments/{}", encode(text(&payment, "id")))) { (ctx.t("merchant.see_payment")) }
                                " · "
                                a href="/merchant" { (ctx.t("merchant.back")) }
                            }
                        }
                    },
                )
            }
            Err(failure) => ctx.failure(&failure),
        },
        Err(failure) => refused(&ctx, &failure),
    }
}

fn payment_page(
    ctx: &Ctx,
    payment: &Value,
    notice_key: Option<&str>,
    error: Option<&str>,
) -> Response {
    let currency = text(payment, "currency");
    let refundable = int(payment, "amount") - int(payment, "refunded");
    let refunds: &[Value] = payment
        .get("refunds")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    page(
        ctx,
        "merchant.payment",
        html! {
            (notice(ctx, notice_key))
            section.card {
                h1 { (ctx.t("merchant.payment")) }
                dl.receipt {
                    div.row { dt { (ctx.t("receipt.amount")) } dd data-testid="payment-amount" { (ctx.money(int(payment, "amount"), currency)) } }
                    div.row { dt { (ctx.t("receipt.status")) } dd data-status=(text(payment, "status")) { (status_label(ctx, text(payment, "status"))) } }
                    div.row { dt { (ctx.t("merchant.refunded_total")) } dd data-testid="refunded" { (ctx.money(int(payment, "refunded"), currency)) } }
                    @if !text(payment, "order_reference").is_empty() {
                        div.row { dt { (ctx.t("merchant.order_reference")) } dd { (text(payment, "order_reference")) } }
                    }
                    div.row { dt { (ctx.t("receipt.time")) } dd { (ctx.time(text(payment, "created_at"))) } }
                    div.row { dt { (ctx.t("receipt.reference")) } dd { code { (text(payment, "id")) } } }
                }
                @if !refunds.is_empty() {
                    h2 { (ctx.t("merchant.refunds")) }
                    ul {
                        @for r in refunds {
                            li { (ctx.money(int(r, "amount"), text(r, "currency"))) " · " (status_label(ctx, text(r, "status"))) " · " (text(r, "reason")) }
                        }
                    }
                }
                @if matches!(text(payment, "status"), "succeeded" | "partially_refunded") && refundable > 0 {
                    h2 { (ctx.t("merchant.refund")) }
                    (error_box(error))
                    form method="post" action=(format!("/merchant/payments/{}/refund", encode(text(payment, "id")))) {
                        (csrf_field(ctx))
                        (idempotency_field())
                        (amount_input(ctx, "amount", "field.amount_cny", &crate::format::plain_amount(refundable, currency)))
                        label for="reason" { (ctx.t("merchant.reason")) }
                        input #reason name="reason" type="text" maxlength="140";
                        button.primary type="submit" { (ctx.t("merchant.refund")) }
                    }
                }
                p { a href="/merchant" { (ctx.t("merchant.back")) } }
            }
        },
    )
}

async fn payment(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    Query(query): Query<PortalQuery>,
) -> Response {
    let caller = match merchant(&ctx) {
        Ok(caller) => caller,
        Err(page) => return page,
    };
    let path = format!("/v1/merchant/payments/{}", encode(&id));
    match state.api.get(&caller, &path).await {
        Ok(payment) => payment_page(&ctx, &payment, query.notice.as_deref(), None),
        Err(failure) => refused(&ctx, &failure),
    }
}

async fn refund(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let caller = match merchant(&ctx) {
        Ok(caller) => caller,
        Err(page) => return page,
    };
    let path = format!("/v1/merchant/payments/{}", encode(&id));
    let payment = match state.api.get(&caller, &path).await {
        Ok(payment) => payment,
        Err(failure) => return refused(&ctx, &failure),
    };
    let Some(amount) = parse_amount(field(&form, "amount"), exponent(text(&payment, "currency")))
    else {
        return payment_page(&ctx, &payment, None, Some(ctx.t("funding.invalid_amount")));
    };
    let mut body = json!({ "amount": amount });
    if !field(&form, "reason").is_empty() {
        body["reason"] = json!(field(&form, "reason"));
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&caller, &format!("{path}/refunds"), &body, key)
        .await
    {
        Ok(_) => Redirect::to(&format!(
            "/merchant/payments/{}?notice=notice.refunded",
            encode(&id)
        ))
        .into_response(),
        Err(failure) if failure.status.is_client_error() && failure.status.as_u16() != 401 => {
            payment_page(&ctx, &payment, None, Some(&ctx.error_text(&failure)))
        }
        Err(failure) => refused(&ctx, &failure),
    }
}

// ---- the owner's side, in the wallet ------------------------------------------------

/// The merchants the signed-in customer owns: open the portal (a new API key
/// for this browser), set the webhook endpoint.
async fn my_merchants(ctx: Ctx, State(state): State<WebState>) -> Response {
    if let Err(signin) = ctx.require_session() {
        return signin;
    }
    let mine = match state.api.get(&ctx.caller, "/v1/me/merchants").await {
        Ok(mine) => mine,
        Err(failure) => return ctx.failure(&failure),
    };
    page(
        &ctx,
        "merchant.mine",
        html! {
            h1 { (ctx.t("merchant.mine")) }
            @if list(&mine).is_empty() {
                section.card { p.empty { (ctx.t("merchant.none")) } }
            }
            @for m in list(&mine) {
                @let id = encode(text(m, "id"));
                section.card {
                    h2 { (text(m, "display_name")) }
                    p.help { (text(m, "city")) " · " (label_status(&ctx, text(m, "status"))) }
                    @if text(m, "status") == "approved" {
                        form method="post" action=(format!("/me/merchants/{id}/portal")) {
                            (csrf_field(&ctx))
                            (idempotency_field())
                            button.primary type="submit" { (ctx.t("merchant.open_portal")) }
                        }
                        form method="post" action=(format!("/me/merchants/{id}/webhook")) {
                            (csrf_field(&ctx))
                            (idempotency_field())
                            label for=(format!("webhook-{id}")) { (ctx.t("merchant.webhook_url")) }
                            input id=(format!("webhook-{id}")) name="url" type="url" required
                                value=(text(m, "webhook_url")) placeholder="https://";
                            button type="submit" { (ctx.t("merchant.set_webhook")) }
                        }
                    }
                }
            }
        },
    )
}

fn label_status(ctx: &Ctx, status: &str) -> String {
    ctx.locale
        .lookup(&format!("merchant_status.{status}"))
        .unwrap_or(status)
        .to_string()
}

async fn open_portal(
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
    let path = format!("/v1/me/merchants/{}/api-keys", encode(&id));
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state.api.post(&ctx.caller, &path, &json!({}), key).await {
        Ok(answer) => {
            let mut response = Redirect::to("/merchant").into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                ctx.scoped_cookie(
                    MERCHANT_COOKIE,
                    text(&answer, "api_key"),
                    "/merchant",
                    PORTAL_COOKIE_SECONDS,
                ),
            );
            response.headers_mut().append(
                header::SET_COOKIE,
                ctx.scoped_cookie(MINTED_COOKIE, "1", "/merchant", PORTAL_COOKIE_SECONDS),
            );
            response
        }
        Err(failure) => ctx.failure(&failure),
    }
}

async fn set_webhook(
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
    let path = format!("/v1/me/merchants/{}/webhook", encode(&id));
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(
            &ctx.caller,
            &path,
            &json!({ "url": field(&form, "url") }),
            key,
        )
        .await
    {
        // The signing secret is shown this once, as the API hands it over.
        Ok(answer) => page(
            &ctx,
            "merchant.webhooks",
            html! {
                section.card.narrow {
                    h1 { (ctx.t("merchant.webhook_set")) }
                    p { code { (text(&answer, "url")) } }
                    p { (ctx.t("merchant.webhook_secret_help")) }
                    p { code data-testid="webhook-secret" { (text(&answer, "secret")) } }
                    p { a href="/me/merchants" { (ctx.t("merchant.mine")) } }
                }
            },
        ),
        Err(failure) => ctx.failure(&failure),
    }
}

/// Incoming payments for the till's screen: the page reloads itself every
/// few seconds (a `Refresh` header: no script needed), newest first.
async fn live(ctx: Ctx, State(state): State<WebState>) -> Response {
    let caller = match merchant(&ctx) {
        Ok(caller) => caller,
        Err(page) => return page,
    };
    let payments = match state
        .api
        .get(&caller, "/v1/merchant/payments?limit=20")
        .await
    {
        Ok(payments) => payments,
        Err(failure) => return refused(&ctx, &failure),
    };
    let mut response = page(
        &ctx,
        "merchant.live",
        html! {
            h1 { (ctx.t("merchant.live")) }
            p.help { (ctx.t("merchant.live_help")) }
            section.card aria-live="polite" {
                (payments_table(&ctx, list(&payments)))
            }
            p { a href="/merchant" { (ctx.t("merchant.back")) } }
        },
    );
    response
        .headers_mut()
        .insert("refresh", axum::http::HeaderValue::from_static("5"));
    response
}
