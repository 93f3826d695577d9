//! Paying: a merchant's QR code (camera where the browser can, otherwise a
//! photo decoded on the server, or the payload pasted), my one-time payment
//! code, transfers with the payee's masked name confirmed first, and
//! requests and split bills with who has paid.

use axum::extract::{Multipart, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as AxumForm, Router};
use maud::html;
use serde_json::{json, Value};

use super::stepup::{self, Bound};
use super::{field, Form};
use crate::api::{int, list, text, ApiFailure};
use crate::ctx::{Ctx, CSRF_FIELD, IDEMPOTENCY_FIELD};
use crate::format::{exponent, parse_amount, plain_amount};
use crate::layout::{
    amount_input, csrf_field, encode, error_box, html_response, idempotency_field, notice, page,
    trusted_svg,
};
use crate::WebState;

const CURRENCY: &str = "CNY";
/// The largest photo accepted (the API's own limit).
const PHOTO_BYTES_MAX: usize = 1024 * 1024;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/scan", get(scan_page))
        .route("/scan/image", post(scan_image))
        .route("/scan/payload", post(scan_payload))
        .route("/pay/confirm", post(pay_confirm))
        .route("/paycode", get(pay_code_page).post(pay_code))
        .route("/paycode/qr", post(pay_code_fragment))
        .route("/transfer", get(transfer_page))
        .route("/transfer/review", post(transfer_review))
        .route("/transfer/confirm", post(transfer_confirm))
        .route("/request", get(request_page).post(create_request))
        .route("/requests", get(requests_page))
        .route("/requests/{id}/quote", post(quote_request))
        .route("/requests/pay", post(pay_request))
        .route("/requests/{id}/decline", post(decline_request))
}

// ---- scan a merchant's code ---------------------------------------------------------

async fn scan_page(ctx: Ctx) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    scan_form(&ctx, None)
}

fn scan_form(ctx: &Ctx, error: Option<&str>) -> Response {
    page(
        ctx,
        "scan.title",
        html! {
            h1 { (ctx.t("scan.title")) }
            (error_box(error))
            // Shown by app.js only where the browser can read QR codes from the camera.
            section.card #camera hidden data-csrf=(ctx.csrf_token()) {
                h2 { (ctx.t("scan.camera")) }
                video #camera-video playsinline muted aria-label=(ctx.t("scan.camera")) {}
                button #camera-start type="button" { (ctx.t("scan.camera_start")) }
            }
            section.card {
                h2 { (ctx.t("scan.upload")) }
                p.help { (ctx.t("scan.upload_help")) }
                form method="post" action="/scan/image" enctype="multipart/form-data" {
                    (csrf_field(ctx))
                    label for="photo" { (ctx.t("scan.photo")) }
                    input #photo name="photo" type="file" accept="image/png,image/jpeg" capture="environment" required;
                    button.primary type="submit" { (ctx.t("scan.read")) }
                }
            }
            @if !ctx.simple {
                details.card {
                    summary { (ctx.t("scan.paste")) }
                    form #payload-form method="post" action="/scan/payload" {
                        (csrf_field(ctx))
                        label for="payload" { (ctx.t("scan.payload")) }
                        textarea #payload name="payload" rows="3" required {}
                        button type="submit" { (ctx.t("scan.read")) }
                    }
                }
            }
        },
    )
}

async fn scan_image(ctx: Ctx, State(state): State<WebState>, mut multipart: Multipart) -> Response {
    let (mut csrf, mut photo) = (String::new(), Vec::new());
    loop {
        match multipart.next_field().await {
            Ok(Some(part)) => match part.name().map(str::to_string).as_deref() {
                Some(CSRF_FIELD) => csrf = part.text().await.unwrap_or_default(),
                Some("photo") => match part.bytes().await {
                    Ok(bytes) if bytes.len() <= PHOTO_BYTES_MAX => photo = bytes.to_vec(),
                    _ => return scan_form(&ctx, Some(ctx.t("scan.too_large"))),
                },
                _ => {}
            },
            Ok(None) => break,
            Err(_) => return scan_form(&ctx, Some(ctx.t("scan.too_large"))),
        }
    }
    if let Err(refused) = ctx.check_csrf_value(&csrf) {
        return refused;
    }
    // The API takes PNG or JPEG; the file's own first bytes say which.
    let content_type = if photo.starts_with(&[0x89, b'P', b'N', b'G']) {
        "image/png"
    } else {
        "image/jpeg"
    };
    match state
        .api
        .post_bytes(
            &ctx.caller,
            "/v1/me/merchant-payments/scan-image",
            photo,
            content_type,
        )
        .await
    {
        Ok(answer) => {
            let preview = answer.get("preview").cloned().unwrap_or_default();
            confirm_page(&ctx, text(&answer, "payload"), &preview, "", None)
        }
        Err(failure) => scan_form(&ctx, Some(&ctx.error_text(&failure))),
    }
}

async fn scan_payload(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let payload = field(&form, "payload");
    match state
        .api
        .post(
            &ctx.caller,
            "/v1/me/merchant-payments/scan",
            &json!({ "payload": payload }),
            None,
        )
        .await
    {
        Ok(preview) => confirm_page(&ctx, payload, &preview, "", None),
        Err(failure) => scan_form(&ctx, Some(&ctx.error_text(&failure))),
    }
}

/// The merchant as the bank knows it, and the amount, before paying.
fn confirm_page(
    ctx: &Ctx,
    payload: &str,
    preview: &Value,
    amount: &str,
    error: Option<&str>,
) -> Response {
    let fixed = preview.get("amount").and_then(Value::as_i64);
    let currency = Some(text(preview, "currency"))
        .filter(|c| !c.is_empty())
        .unwrap_or(CURRENCY);
    page(
        ctx,
        "pay.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("pay.title")) }
                p.merchant data-testid="merchant-name" { strong { (text(preview, "merchant_name")) } }
                p.help { (text(preview, "city")) " · " (ctx.locale.lookup(&format!("category.{}", text(preview, "category"))).unwrap_or(text(preview, "category"))) }
                (error_box(error))
                form method="post" action="/pay/confirm" {
                    (csrf_field(ctx))
                    (idempotency_field())
                    input type="hidden" name="payload" value=(payload);
                    input type="hidden" name="merchant_id" value=(text(preview, "merchant_id"));
                    input type="hidden" name="merchant_name" value=(text(preview, "merchant_name"));
                    @if let Some(fixed) = fixed {
                        dl.review {
                            div.row { dt { (ctx.t("receipt.amount")) } dd { (ctx.money(fixed, currency)) } }
                            @if !text(preview, "order_reference").is_empty() {
                                div.row { dt { (ctx.t("receipt.reference")) } dd { (text(preview, "order_reference")) } }
                            }
                        }
                        input type="hidden" name="amount" value=(plain_amount(fixed, currency));
                    } @else {
                        (amount_input(ctx, "amount", "field.amount_cny", amount))
                    }
                    p.help { (ctx.t("pay.no_fee")) }
                    button.primary type="submit" { (ctx.t("pay.confirm")) }
                }
                p { a href="/" { (ctx.t("funding.cancel")) } }
            }
        },
    )
}

async fn pay_confirm(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let payload = field(&form, "payload");
    let Some(amount) = parse_amount(field(&form, "amount"), exponent(CURRENCY)) else {
        return retry_confirm(
            &ctx,
            &state,
            payload,
            field(&form, "amount"),
            ctx.t("funding.invalid_amount"),
        )
        .await;
    };
    let mut body = json!({ "payload": payload, "amount": amount });
    if let Some(challenge) = stepup::challenge(&form) {
        body["step_up_challenge_id"] = json!(challenge);
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&ctx.caller, "/v1/me/merchant-payments", &body, key)
        .await
    {
        Ok(payment) => done_page(
            &ctx,
            "pay.done",
            &ctx.tf(
                "pay.paid",
                &[
                    (
                        "amount",
                        &ctx.money(int(&payment, "amount"), text(&payment, "currency")),
                    ),
                    ("merchant", field(&form, "merchant_name")),
                ],
            ),
        ),
        Err(failure) if stepup::is_required(&failure) => {
            let payee = format!("merchant:{}", field(&form, "merchant_id"));
            stepup::required(
                &ctx,
                "/pay/confirm",
                &Bound {
                    operation: "merchant_payment",
                    amount,
                    currency: CURRENCY,
                    payee: &payee,
                },
                &form,
                None,
            )
        }
        Err(failure) => {
            retry_confirm(
                &ctx,
                &state,
                payload,
                field(&form, "amount"),
                &ctx.error_text(&failure),
            )
            .await
        }
    }
}

async fn retry_confirm(
    ctx: &Ctx,
    state: &WebState,
    payload: &str,
    amount: &str,
    error: &str,
) -> Response {
    match state
        .api
        .post(
            &ctx.caller,
            "/v1/me/merchant-payments/scan",
            &json!({ "payload": payload }),
            None,
        )
        .await
    {
        Ok(preview) => confirm_page(ctx, payload, &preview, amount, Some(error)),
        Err(failure) => scan_form(ctx, Some(&ctx.error_text(&failure))),
    }
}

pub(super) fn done_page(ctx: &Ctx, title_key: &str, message: &str) -> Response {
    page(
        ctx,
        title_key,
        html! {
            section.card.narrow.done {
                h1 { (ctx.t(title_key)) }
                p role="status" data-testid="done" { (message) }
                p { a.button.primary href="/" { (ctx.t("nav.back_home")) } " " a href="/history" { (ctx.t("history.title")) } }
            }
        },
    )
}

// ---- my payment code ----------------------------------------------------------------

async fn pay_code_page(ctx: Ctx) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    pay_code_view(&ctx, None)
}

fn pay_code_view(ctx: &Ctx, code: Option<&Value>) -> Response {
    page(
        ctx,
        "paycode.title",
        html! {
            section.card.narrow.paycode {
                h1 { (ctx.t("paycode.title")) }
                p.help { (ctx.t("paycode.help")) }
                div #paycode data-csrf=(ctx.csrf_token()) aria-live="polite" {
                    @if let Some(code) = code {
                        (pay_code_markup(ctx, code))
                    }
                }
                form method="post" action="/paycode" {
                    (csrf_field(ctx))
                    button.primary type="submit" { (if code.is_some() { ctx.t("paycode.refresh") } else { ctx.t("paycode.show") }) }
                }
            }
        },
    )
}

fn pay_code_markup(ctx: &Ctx, code: &Value) -> maud::Markup {
    let digits = text(code, "code");
    let grouped: Vec<String> = digits
        .as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect();
    html! {
        figure.qr { (trusted_svg(text(code, "qr_svg"))) }
        p.digits { (grouped.join(" ")) }
        p.help { (ctx.tf("paycode.expires", &[("time", &ctx.time(text(code, "expires_at")))])) }
    }
}

async fn issue_code(ctx: &Ctx, state: &WebState) -> Result<Value, ApiFailure> {
    let key = crate::ctx::random_token();
    state
        .api
        .post(&ctx.caller, "/v1/me/payment-codes", &json!({}), Some(&key))
        .await
}

async fn pay_code(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    match issue_code(&ctx, &state).await {
        Ok(code) => pay_code_view(&ctx, Some(&code)),
        Err(failure) => ctx.failure(&failure),
    }
}

/// A fresh code as an HTML fragment, for the page's script to swap in
/// before the old one expires. The CSRF token comes in a header.
async fn pay_code_fragment(
    ctx: Ctx,
    State(state): State<WebState>,
    headers: axum::http::HeaderMap,
) -> Response {
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctx.check_csrf_value(token).is_err() {
        return StatusCode::FORBIDDEN.into_response();
    }
    match issue_code(&ctx, &state).await {
        Ok(code) => html_response(StatusCode::OK, pay_code_markup(&ctx, &code).into_string()),
        Err(failure) => (failure.status, [(header::CACHE_CONTROL, "no-store")], "").into_response(),
    }
}

// ---- transfer -----------------------------------------------------------------------

async fn transfer_page(ctx: Ctx) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    transfer_form(&ctx, &Form::new(), None)
}

fn transfer_form(ctx: &Ctx, form: &Form, error: Option<&str>) -> Response {
    page(
        ctx,
        "transfer.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("transfer.title")) }
                (error_box(error))
                form method="post" action="/transfer/review" {
                    (csrf_field(ctx))
                    label for="payee" { (ctx.t("transfer.payee")) }
                    input #payee name="payee" type="text" required value=(field(form, "payee")) placeholder="@lina · +8613900139000" aria-describedby="payee-help";
                    p.help #payee-help { (ctx.t("transfer.payee_help")) }
                    (amount_input(ctx, "amount", "field.amount_cny", field(form, "amount")))
                    label for="note" { (ctx.t("transfer.note")) }
                    input #note name="note" type="text" maxlength="140" value=(field(form, "note"));
                    button.primary type="submit" { (ctx.t("funding.review")) }
                }
            }
        },
    )
}

async fn transfer_review(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let Some(amount) = parse_amount(field(&form, "amount"), exponent(CURRENCY)) else {
        return transfer_form(&ctx, &form, Some(ctx.t("funding.invalid_amount")));
    };
    let mut body =
        json!({ "payee": field(&form, "payee"), "amount": amount, "currency": CURRENCY });
    if !field(&form, "note").is_empty() {
        body["note"] = json!(field(&form, "note"));
    }
    // A quote moves nothing: a fresh key per review (the API wants one on
    // every POST); the confirmation carries the form's own key.
    let key = crate::ctx::random_token();
    match state
        .api
        .post(&ctx.caller, "/v1/me/p2p/quotes", &body, Some(&key))
        .await
    {
        Ok(quote) => quote_page(&ctx, &quote, "/transfer/confirm"),
        Err(failure) => transfer_form(&ctx, &form, Some(&ctx.error_text(&failure))),
    }
}

/// Who will be paid (masked, as the bank knows them), the fee and total.
fn quote_page(ctx: &Ctx, quote: &Value, action: &str) -> Response {
    let currency = text(quote, "currency");
    page(
        ctx,
        "transfer.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("transfer.confirm_title")) }
                dl.review {
                    div.row { dt { (ctx.t("transfer.payee")) } dd data-testid="payee-name" { (text(quote, "payee_name_masked")) } }
                    div.row { dt { (ctx.t("receipt.amount")) } dd { (ctx.money(int(quote, "amount"), currency)) } }
                    div.row { dt { (ctx.t("receipt.fee")) } dd data-testid="fee" {
                        (ctx.money(int(quote, "fee"), currency))
                        @if !text(quote, "fee_waiver").is_empty() {
                            " (" (ctx.locale.lookup(&format!("waiver.{}", text(quote, "fee_waiver"))).unwrap_or(text(quote, "fee_waiver"))) ")"
                        }
                    } }
                    div.row.total { dt { (ctx.t("receipt.total")) } dd { (ctx.money(int(quote, "total"), currency)) } }
                }
                p.help { (ctx.t("transfer.check_name")) }
                form method="post" action=(action) {
                    (csrf_field(ctx))
                    (idempotency_field())
                    input type="hidden" name="quote_id" value=(text(quote, "id"));
                    input type="hidden" name="amount" value=(int(quote, "amount"));
                    input type="hidden" name="fee" value=(int(quote, "fee"));
                    input type="hidden" name="currency" value=(currency);
                    input type="hidden" name="payee_name" value=(text(quote, "payee_name_masked"));
                    button.primary type="submit" { (ctx.t("transfer.send")) }
                }
                p { a href="/" { (ctx.t("funding.cancel")) } }
            }
        },
    )
}

async fn confirm_quote(ctx: &Ctx, state: &WebState, form: &Form, action: &str) -> Response {
    let amount: i64 = field(form, "amount").parse().unwrap_or(0);
    let mut body = json!({
        "quote_id": field(form, "quote_id"),
        "amount": amount,
        "fee": field(form, "fee").parse::<i64>().unwrap_or(0),
        "currency": field(form, "currency"),
    });
    if let Some(challenge) = stepup::challenge(form) {
        body["step_up_challenge_id"] = json!(challenge);
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&ctx.caller, "/v1/me/p2p/payments", &body, key)
        .await
    {
        Ok(payment) => done_page(
            ctx,
            "transfer.done",
            &ctx.tf(
                "transfer.sent",
                &[
                    (
                        "amount",
                        &ctx.money(int(&payment, "amount"), text(&payment, "currency")),
                    ),
                    ("payee", text(&payment, "counterparty_name_masked")),
                ],
            ),
        ),
        Err(failure) if stepup::is_required(&failure) => {
            let payee = format!("quote:{}", field(form, "quote_id"));
            stepup::required(
                ctx,
                action,
                &Bound {
                    operation: "p2p",
                    amount,
                    currency: field(form, "currency"),
                    payee: &payee,
                },
                form,
                None,
            )
        }
        Err(failure) => ctx.failure(&failure),
    }
}

async fn transfer_confirm(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    confirm_quote(&ctx, &state, &form, "/transfer/confirm").await
}

// ---- request money and split bills --------------------------------------------------

async fn request_page(ctx: Ctx) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    request_form(&ctx, &Form::new(), None)
}

fn request_form(ctx: &Ctx, form: &Form, error: Option<&str>) -> Response {
    let mode = Some(field(form, "mode"))
        .filter(|m| !m.is_empty())
        .unwrap_or("equal");
    page(
        ctx,
        "request.title",
        html! {
            section.card.narrow {
                h1 { (ctx.t("request.title")) }
                (error_box(error))
                form method="post" action="/request" {
                    (csrf_field(ctx))
                    (idempotency_field())
                    fieldset {
                        legend { (ctx.t("request.mode")) }
                        div.check {
                            input #mode-equal type="radio" name="mode" value="equal" checked[mode == "equal"];
                            label for="mode-equal" { (ctx.t("request.mode_split")) }
                        }
                        div.check {
                            input #mode-each type="radio" name="mode" value="each" checked[mode == "each"];
                            label for="mode-each" { (ctx.t("request.mode_each")) }
                        }
                    }
                    label for="payers" { (ctx.t("request.payers")) }
                    textarea #payers name="payers" rows="3" required aria-describedby="payers-help" { (field(form, "payers")) }
                    p.help #payers-help { (ctx.t("request.payers_help")) }
                    (amount_input(ctx, "amount", "request.amount", field(form, "amount")))
                    p.help { (ctx.t("request.amount_help")) }
                    div.check {
                        input #include_me type="checkbox" name="include_me" value="1" checked[field(form, "include_me") == "1" || form.is_empty()];
                        label for="include_me" { (ctx.t("request.include_me")) }
                    }
                    label for="note" { (ctx.t("transfer.note")) }
                    input #note name="note" type="text" maxlength="140" value=(field(form, "note"));
                    button.primary type="submit" { (ctx.t("request.send")) }
                }
            }
        },
    )
}

async fn create_request(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let Some(amount) = parse_amount(field(&form, "amount"), exponent(CURRENCY)) else {
        return request_form(&ctx, &form, Some(ctx.t("funding.invalid_amount")));
    };
    let payers: Vec<&str> = field(&form, "payers")
        .split(|c: char| c == ',' || c == '\n' || c == '，' || c.is_whitespace())
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut body = if field(&form, "mode") == "each" {
        json!({
            "currency": CURRENCY,
            "payers": payers.iter().map(|p| json!({ "payer": p, "amount": amount })).collect::<Vec<_>>(),
        })
    } else {
        json!({
            "currency": CURRENCY,
            "split": "equal",
            "total": amount,
            "include_me": field(&form, "include_me") == "1",
            "payers": payers.iter().map(|p| json!({ "payer": p })).collect::<Vec<_>>(),
        })
    };
    if !field(&form, "note").is_empty() {
        body["note"] = json!(field(&form, "note"));
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    match state
        .api
        .post(&ctx.caller, "/v1/me/payment-requests", &body, key)
        .await
    {
        Ok(_) => Redirect::to("/requests?notice=notice.request_sent").into_response(),
        Err(failure) => request_form(&ctx, &form, Some(&ctx.error_text(&failure))),
    }
}

async fn requests_page(
    ctx: Ctx,
    State(state): State<WebState>,
    axum::extract::Query(query): axum::extract::Query<super::auth::NoticeQuery>,
) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    let mine = match state.api.get(&ctx.caller, "/v1/me/payment-requests").await {
        Ok(mine) => mine,
        Err(failure) => return ctx.failure(&failure),
    };
    let incoming = state
        .api
        .get(&ctx.caller, "/v1/me/incoming-payment-requests")
        .await
        .unwrap_or_default();
    let status = |s: &str| {
        ctx.locale
            .lookup(&format!("request_status.{s}"))
            .unwrap_or(s)
            .to_string()
    };
    page(
        &ctx,
        "requests.title",
        html! {
            (notice(&ctx, query.notice.as_deref()))
            h1 { (ctx.t("requests.title")) }
            p { a.button href="/request" { (ctx.t("request.title")) } }
            section.card aria-labelledby="incoming-title" {
                h2 #incoming-title { (ctx.t("requests.incoming")) }
                @if list(&incoming).is_empty() { p.empty { (ctx.t("requests.none")) } }
                ul.requests {
                    @for request in list(&incoming) {
                        li {
                            span.who { (text(request, "organizer_name_masked")) }
                            span.amount { (ctx.money(int(request, "amount"), text(request, "currency"))) }
                            @if !text(request, "note").is_empty() { span.note { (text(request, "note")) } }
                            span.status { (status(text(request, "status"))) }
                            @if text(request, "status") == "open" {
                                form.inline method="post" action=(format!("/requests/{}/quote", encode(text(request, "id")))) {
                                    (csrf_field(&ctx))
                                    button.primary type="submit" { (ctx.t("requests.pay")) }
                                }
                                form.inline method="post" action=(format!("/requests/{}/decline", encode(text(request, "id")))) {
                                    (csrf_field(&ctx))
                                    (idempotency_field())
                                    button.link type="submit" { (ctx.t("requests.decline")) }
                                }
                            }
                        }
                    }
                }
            }
            section.card aria-labelledby="sent-title" {
                h2 #sent-title { (ctx.t("requests.sent")) }
                @if list(&mine).is_empty() { p.empty { (ctx.t("requests.none")) } }
                @for group in list(&mine) {
                    article.group data-testid="request-group" {
                        h3 {
                            (ctx.money(int(group, "total"), text(group, "currency")))
                            @if !text(group, "note").is_empty() { " · " (text(group, "note")) }
                        }
                        p.help {
                            (ctx.tf("requests.paid_count", &[
                                ("paid", &int(group, "paid_count").to_string()),
                                ("count", &group.get("requests").and_then(Value::as_array).map_or(0, Vec::len).to_string()),
                                ("amount", &ctx.money(int(group, "paid_amount"), text(group, "currency"))),
                            ]))
                        }
                        ul.payers {
                            @for request in group.get("requests").and_then(Value::as_array).map_or(&[][..], Vec::as_slice) {
                                li class=(format!("payer {}", text(request, "status"))) {
                                    span.who { (text(request, "payer_name_masked")) }
                                    span.amount { (ctx.money(int(request, "amount"), text(request, "currency"))) }
                                    span.status { (status(text(request, "status"))) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

async fn quote_request(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    match state
        .api
        .post(
            &ctx.caller,
            "/v1/me/p2p/quotes",
            &json!({ "request_id": id }),
            Some(&crate::ctx::random_token()),
        )
        .await
    {
        Ok(quote) => quote_page(&ctx, &quote, "/requests/pay"),
        Err(failure) => ctx.failure(&failure),
    }
}

async fn pay_request(
    ctx: Ctx,
    State(state): State<WebState>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    confirm_quote(&ctx, &state, &form, "/requests/pay").await
}

async fn decline_request(
    ctx: Ctx,
    State(state): State<WebState>,
    Path(id): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    if let Err(refused) = ctx.check_csrf(&form) {
        return refused;
    }
    let key = form.get(IDEMPOTENCY_FIELD).map(String::as_str);
    let path = format!("/v1/me/incoming-payment-requests/{}/decline", encode(&id));
    match state.api.post(&ctx.caller, &path, &json!({}), key).await {
        Ok(_) => Redirect::to("/requests?notice=notice.request_declined").into_response(),
        Err(failure) => ctx.failure(&failure),
    }
}
