//! What every page handler starts from: the visitor's language and display
//! mode, their session cookie, the CSRF token of their forms, and the
//! caller identity handed to the in-process API.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::api::{ApiFailure, Caller};
use crate::i18n::Locale;
use crate::WebState;

pub const SESSION_COOKIE: &str = coffer_api::customer_routes::SESSION_COOKIE;
pub const CSRF_COOKIE: &str = "coffer_csrf";
pub const LANG_COOKIE: &str = "coffer_lang";
pub const SIMPLE_COOKIE: &str = "coffer_simple";
/// The merchant portal's credential: the merchant's API key, HttpOnly and
/// sent only to `/merchant` pages (the portal calls `/v1/merchant/*` with it).
pub const MERCHANT_COOKIE: &str = "coffer_merchant";
/// The back-office console's staff session token, sent only to `/staff`.
pub const STAFF_COOKIE: &str = "coffer_staff";
/// The hidden field of every form that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The hidden field that carries a form's Idempotency-Key.
pub const IDEMPOTENCY_FIELD: &str = "idem";
/// A year: language and display mode are preferences, not secrets.
const PREFERENCE_MAX_AGE_SECONDS: i64 = 365 * 86_400;

/// The CSRF cookie value a middleware made for a request that had none.
#[derive(Clone)]
pub struct FreshCsrf(pub String);

pub struct Ctx {
    pub locale: Locale,
    pub simple: bool,
    pub csrf_cookie: String,
    pub session: Option<String>,
    pub caller: Caller,
    /// Path and query of the page, for "switch language and come back".
    pub here: String,
    pub secure_cookies: bool,
    /// The merchant portal's API key, if signed in there.
    pub merchant_key: Option<String>,
    /// The back-office console's staff session, if signed in there.
    pub staff_session: Option<String>,
}

pub fn cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<WebState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Ctx, Response> {
        let jar = cookies(&parts.headers);
        let locale = jar
            .get(LANG_COOKIE)
            .and_then(|code| Locale::parse(code))
            .unwrap_or_else(|| {
                Locale::from_accept_language(
                    parts
                        .headers
                        .get(header::ACCEPT_LANGUAGE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                )
            });
        let csrf_cookie = parts
            .extensions
            .get::<FreshCsrf>()
            .map(|fresh| fresh.0.clone())
            .or_else(|| jar.get(CSRF_COOKIE).cloned())
            .unwrap_or_default();
        let session = jar
            .get(SESSION_COOKIE)
            .filter(|token| !token.is_empty())
            .cloned();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let here = parts
            .uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        Ok(Ctx {
            locale,
            simple: jar.get(SIMPLE_COOKIE).is_some_and(|v| v == "1"),
            csrf_cookie,
            caller: Caller {
                token: session.clone(),
                peer,
                user_agent: parts.headers.get(header::USER_AGENT).cloned(),
            },
            session,
            here,
            secure_cookies: state.secure_cookies,
            merchant_key: jar.get(MERCHANT_COOKIE).filter(|k| !k.is_empty()).cloned(),
            staff_session: jar.get(STAFF_COOKIE).filter(|k| !k.is_empty()).cloned(),
        })
    }
}

impl Ctx {
    pub fn t(&self, key: &str) -> &'static str {
        self.locale.t(key)
    }

    pub fn tf(&self, key: &str, values: &[(&str, &str)]) -> String {
        self.locale.tf(key, values)
    }

    pub fn money(&self, minor: i64, currency: &str) -> String {
        crate::format::money(minor, currency, self.locale)
    }

    pub fn time(&self, rfc3339: &str) -> String {
        crate::format::api_time(rfc3339, self.locale)
    }

    /// The token every form carries: bound to the browser's CSRF cookie and,
    /// once signed in, to the session, so a token seen before sign-in is
    /// worthless after it and one site cannot forge another's.
    pub fn csrf_token(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"coffer-web-csrf\0");
        hash.update(self.csrf_cookie.as_bytes());
        hash.update(b"\0");
        hash.update(self.session.as_deref().unwrap_or("").as_bytes());
        hex::encode(&hash.finalize()[..16])
    }

    /// Checks a POSTed form's token; a page explaining the refusal otherwise.
    pub fn check_csrf(&self, form: &HashMap<String, String>) -> Result<(), Response> {
        let given = form.get(CSRF_FIELD).map(String::as_str).unwrap_or("");
        self.check_csrf_value(given)
    }

    pub fn check_csrf_value(&self, given: &str) -> Result<(), Response> {
        if !self.csrf_cookie.is_empty()
            && constant_time_eq(given.as_bytes(), self.csrf_token().as_bytes())
        {
            Ok(())
        } else {
            Err(crate::layout::message_page(
                self,
                StatusCode::FORBIDDEN,
                "error.title",
                self.t("error.csrf"),
            ))
        }
    }

    /// The caller for `/v1/merchant/*`: the portal's API key as the bearer.
    pub fn merchant_caller(&self) -> Option<Caller> {
        self.merchant_key.as_ref().map(|key| Caller {
            token: Some(key.clone()),
            ..self.caller.clone()
        })
    }

    /// The caller for `/v1/staff/*`: the console's staff session token.
    pub fn staff_caller(&self) -> Option<Caller> {
        self.staff_session.as_ref().map(|token| Caller {
            token: Some(token.clone()),
            ..self.caller.clone()
        })
    }

    /// `Set-Cookie` for a credential cookie restricted to `path`
    /// (SameSite=Strict: never sent on a link from another site).
    pub fn scoped_cookie(
        &self,
        name: &str,
        value: &str,
        path: &str,
        max_age_seconds: i64,
    ) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("coffer_invalid=; Path=/; Max-Age=0"))
    }

    /// A signed-in visitor's session, or the sign-in page.
    pub fn require_session(&self) -> Result<(), Response> {
        match self.session {
            Some(_) => Ok(()),
            None => Err(Redirect::to("/signin").into_response()),
        }
    }

    /// `Set-Cookie` for a cookie of ours: HttpOnly, SameSite=Lax, Secure
    /// whenever the service speaks TLS.
    pub fn cookie(&self, name: &str, value: &str, max_age_seconds: i64) -> HeaderValue {
        cookie(name, value, max_age_seconds, self.secure_cookies)
    }

    pub fn preference_cookie(&self, name: &str, value: &str) -> HeaderValue {
        self.cookie(name, value, PREFERENCE_MAX_AGE_SECONDS)
    }

    /// The page for an API refusal: the sign-in page when the session is
    /// gone, otherwise the message in the visitor's language.
    pub fn failure(&self, failure: &ApiFailure) -> Response {
        if failure.status == StatusCode::UNAUTHORIZED && failure.code == "unauthenticated" {
            let mut response = Redirect::to("/signin").into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, self.cookie(SESSION_COOKIE, "", 0));
            return response;
        }
        let status = if failure.status.is_server_error() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            failure.status
        };
        crate::layout::message_page(self, status, "error.title", &self.error_text(failure))
    }

    /// A refusal's message in the visitor's language, by its stable code.
    pub fn error_text(&self, failure: &ApiFailure) -> String {
        match self.locale.lookup(&format!("error.{}", failure.code)) {
            Some(text) => text.to_string(),
            // No translation of this code yet: the API's own (English) words.
            None if !failure.message.is_empty() => failure.message.clone(),
            None => self.t("error.generic").to_string(),
        }
    }
}

pub fn cookie(name: &str, value: &str, max_age_seconds: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("coffer_invalid=; Path=/; Max-Age=0"))
}
