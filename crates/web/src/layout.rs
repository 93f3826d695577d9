//! The page shell (head, header, navigation, footer) and the small pieces
//! every form shares: the CSRF and idempotency fields, notices, errors.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::assets;
use crate::ctx::{random_token, Ctx, CSRF_FIELD, IDEMPOTENCY_FIELD};
use crate::i18n::Locale;

/// The policy of every page: nothing inline, nothing from elsewhere.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A whole page. `title_key` names its title in the catalogue.
pub fn page(ctx: &Ctx, title_key: &str, body: Markup) -> Response {
    page_with_status(ctx, StatusCode::OK, title_key, body)
}

pub fn page_with_status(ctx: &Ctx, status: StatusCode, title_key: &str, body: Markup) -> Response {
    let signed_in = ctx.session.is_some();
    let markup = html! {
        (DOCTYPE)
        html lang=(ctx.locale.html_lang()) class=[ctx.simple.then_some("simple")] {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="theme-color" content="#0b5cad";
                title { (ctx.t(title_key)) " · " (ctx.t("app.name")) }
                link rel="stylesheet" href=(assets::path("app.css"));
                link rel="manifest" href="/manifest.webmanifest";
                link rel="icon" href=(assets::path("icon.svg")) type="image/svg+xml";
                script src=(assets::path("app.js")) defer {}
            }
            body {
                a.skip href="#main" { (ctx.t("nav.skip")) }
                header.top {
                    a.brand href="/" { span.logo aria-hidden="true" { "C" } (ctx.t("app.name")) }
                    nav.prefs aria-label=(ctx.t("nav.preferences")) {
                        @for locale in Locale::ALL {
                            @if locale == ctx.locale {
                                span.lang.current aria-current="true" { (locale_name(locale)) }
                            } @else {
                                a.lang href=(format!("/lang/{}?back={}", locale.code(), encode(&ctx.here)))
                                    hreflang=(locale.html_lang()) lang=(locale.html_lang()) { (locale_name(locale)) }
                            }
                        }
                        a.simple-toggle href=(format!("/simple/{}?back={}", if ctx.simple { "off" } else { "on" }, encode(&ctx.here))) {
                            (if ctx.simple { ctx.t("nav.simple_off") } else { ctx.t("nav.simple_on") })
                        }
                        @if signed_in {
                            form.inline method="post" action="/signout" {
                                (csrf_field(ctx))
                                button.link type="submit" { (ctx.t("nav.sign_out")) }
                            }
                        }
                    }
                }
                main #main { (body) }
                @if signed_in {
                    nav.bottom aria-label=(ctx.t("nav.main")) {
                        a href="/" { (ctx.t("nav.home")) }
                        a href="/scan" { (ctx.t("nav.pay")) }
                        a href="/history" { (ctx.t("nav.history")) }
                        a href="/me" { (ctx.t("nav.me")) }
                    }
                }
                footer.foot { p { (ctx.t("footer.text")) } }
            }
        }
    };
    html_response(status, markup.into_string())
}

pub fn html_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn locale_name(locale: Locale) -> &'static str {
    match locale {
        Locale::En => "English",
        Locale::Zh => "中文",
    }
}

/// Percent-encodes a path for a query parameter.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A page with one message: errors, refusals, "not found".
pub fn message_page(ctx: &Ctx, status: StatusCode, title_key: &str, message: &str) -> Response {
    page_with_status(
        ctx,
        status,
        title_key,
        html! {
            section.card {
                h1 { (ctx.t(title_key)) }
                p.error role="alert" { (message) }
                p { a.button href="/" { (ctx.t("nav.back_home")) } }
            }
        },
    )
}

/// A page with one piece of good news and the way home.
pub fn message_page_ok(ctx: &Ctx, title_key: &str, message: &str) -> Response {
    page(
        ctx,
        title_key,
        html! {
            section.card {
                h1 { (ctx.t(title_key)) }
                p.notice role="status" { (message) }
                p { a.button href="/" { (ctx.t("nav.back_home")) } }
            }
        },
    )
}

pub fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(ctx.csrf_token()); }
}

/// A fresh Idempotency-Key for a form that changes something: submitting
/// the same rendered form twice does the thing once.
pub fn idempotency_field() -> Markup {
    html! { input type="hidden" name=(IDEMPOTENCY_FIELD) value=(random_token()); }
}

/// An error above a form, announced to screen readers.
pub fn error_box(message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            p.error role="alert" { (message) }
        }
    }
}

/// A list as a table under its column headings (catalogue keys; "" for a
/// column without one), or the empty message when there is nothing. The
/// one shape of every list in the console and the portal, so headings are
/// always `th scope="col"` for screen readers and wide tables scroll.
pub fn list_table<'a>(
    ctx: &Ctx,
    testid: &str,
    empty_key: &str,
    headings: &[&str],
    items: &'a [serde_json::Value],
    row: impl Fn(&'a serde_json::Value) -> Markup,
) -> Markup {
    html! {
        @if items.is_empty() {
            p.empty { (ctx.t(empty_key)) }
        } @else {
            div.table-wrap { table data-testid=[(!testid.is_empty()).then_some(testid)] {
                thead { tr {
                    @for heading in headings {
                        th scope="col" { @if !heading.is_empty() { (ctx.t(heading)) } }
                    }
                } }
                tbody { @for item in items { tr { (row(item)) } } }
            } }
        }
    }
}

/// A notice after a redirect (`?notice=key`); only catalogue keys under
/// `notice.` are shown, so a link cannot put words in the bank's mouth.
pub fn notice(ctx: &Ctx, key: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = key.filter(|k| k.starts_with("notice.")).and_then(|k| ctx.locale.lookup(k)) {
            p.notice role="status" { (text) }
        }
    }
}

/// An inline SVG produced by our own QR renderer (no script, no style).
pub fn trusted_svg(svg: &str) -> Markup {
    PreEscaped(svg.to_string())
}

/// A labelled amount input (decimal text, parsed exactly on the server).
pub fn amount_input(ctx: &Ctx, name: &str, label_key: &str, value: &str) -> Markup {
    html! {
        label for=(name) { (ctx.t(label_key)) }
        input #(name) name=(name) type="text" inputmode="decimal" autocomplete="off"
            pattern="[0-9]+([.][0-9]{1,2})?" required value=(value)
            placeholder="0.00";
    }
}
