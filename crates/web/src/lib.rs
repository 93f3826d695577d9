//! Coffer's web app: the customer wallet, rendered by the server with maud
//! (templates checked by the compiler), small hand-written progressive
//! enhancement in `assets/app.js`, our own CSS, all embedded in the binary.
//!
//! Every page reads and writes through the JSON API in-process (`api`), so
//! the browser gets exactly the validation, idempotency, limits, step-up and
//! audit of the API. Forms POST and redirect; each carries a CSRF token
//! (`ctx`) and, when it changes something, its own Idempotency-Key.
//! Pages are bilingual (`i18n`), amounts and dates formatted for the locale
//! (`format`), and served under a strict Content-Security-Policy.

// Guards (CSRF, session, portal key) answer with the page to show instead:
// their error is a whole `Response`, returned once per request, by design.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod assets;
pub mod ctx;
pub mod format;
pub mod i18n;
pub mod layout;
mod pages;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use coffer_api::AppState;
use serde::Deserialize;

use crate::api::Api;
use crate::ctx::{cookies, random_token, Ctx, FreshCsrf, CSRF_COOKIE, LANG_COOKIE, SIMPLE_COOKIE};

/// How the web app is served.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Mark cookies `Secure` (the service speaks TLS, or sits behind a
    /// proxy that does).
    pub secure_cookies: bool,
}

#[derive(Clone)]
pub struct WebState {
    pub app: AppState,
    pub api: Api,
    pub secure_cookies: bool,
}

/// The web app's routes, to merge into the API's router (inside its
/// security-header, logging and rate-limit layers).
pub fn routes(app: AppState, config: &WebConfig) -> Router<AppState> {
    // The API without its outer layers (the outer request passed them),
    // but still with its rate limits: sign-in through a page counts like
    // sign-in through the API.
    let api_router = coffer_api::routes()
        .into_router()
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            coffer_api::rate_limit::limit,
        ))
        .with_state(app.clone());
    let state = WebState {
        app,
        api: Api::new(api_router),
        secure_cookies: config.secure_cookies,
    };
    Router::new()
        .route("/lang/{code}", get(set_language))
        .route("/simple/{mode}", get(set_simple))
        .merge(pages::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), prepare))
        .route("/assets/{hash}/{name}", get(assets::serve))
        .route("/sw.js", get(assets::service_worker))
        .route("/manifest.webmanifest", get(assets::manifest))
        .with_state(state)
}

/// Pages: a CSRF cookie for visitors who have none yet, the page policy,
/// and no caching anywhere (pages show balances and personal data).
async fn prepare(State(state): State<WebState>, mut request: Request, next: Next) -> Response {
    let fresh = if cookies(request.headers()).contains_key(CSRF_COOKIE) {
        None
    } else {
        let token = random_token();
        request.extensions_mut().insert(FreshCsrf(token.clone()));
        Some(token)
    };
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Some(token) = fresh {
        headers.append(
            header::SET_COOKIE,
            ctx::cookie(CSRF_COOKIE, &token, 86_400 * 30, state.secure_cookies),
        );
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(layout::PAGE_CSP),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
struct Back {
    back: Option<String>,
}

/// Only our own paths: `//evil.example` and `https://…` go home instead.
fn safe_back(back: Option<String>) -> String {
    back.filter(|b| b.starts_with('/') && !b.starts_with("//") && !b.contains('\\'))
        .unwrap_or_else(|| "/".into())
}

async fn set_language(ctx: Ctx, Path(code): Path<String>, Query(back): Query<Back>) -> Response {
    let mut response = Redirect::to(&safe_back(back.back)).into_response();
    if let Some(locale) = i18n::Locale::parse(&code) {
        response.headers_mut().append(
            header::SET_COOKIE,
            ctx.preference_cookie(LANG_COOKIE, locale.code()),
        );
    }
    response
}

async fn set_simple(ctx: Ctx, Path(mode): Path<String>, Query(back): Query<Back>) -> Response {
    let mut response = Redirect::to(&safe_back(back.back)).into_response();
    let value = if mode == "on" { "1" } else { "0" };
    response.headers_mut().append(
        header::SET_COOKIE,
        ctx.preference_cookie(SIMPLE_COOKIE, value),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_links_stay_on_this_site() {
        assert_eq!(safe_back(Some("/history?q=1".into())), "/history?q=1");
        assert_eq!(safe_back(Some("//evil.example/".into())), "/");
        assert_eq!(safe_back(Some("https://evil.example/".into())), "/");
        assert_eq!(safe_back(Some("/\\evil.example".into())), "/");
        assert_eq!(safe_back(None), "/");
    }
}
