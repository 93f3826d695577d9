//! The JSON API, called in-process: every page reads and writes through the
//! same routes (validation, idempotency, limits, step-up, audit) that apps
//! use, so the web adds no second path to money. The session token from the
//! cookie travels as a bearer token; the peer address and user agent of the
//! browser's request go along for throttling and the security log.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Larger answers than this are not read (an export is the largest).
const RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct Api {
    router: Router,
}

/// An error answer of the API: its stable code drives the page's message.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl ApiFailure {
    fn internal(message: impl std::fmt::Display) -> ApiFailure {
        ApiFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal".into(),
            message: message.to_string(),
            field: None,
        }
    }
}

/// Who is calling: the browser's session token, address and user agent.
#[derive(Clone, Default)]
pub struct Caller {
    pub token: Option<String>,
    pub peer: Option<SocketAddr>,
    pub user_agent: Option<HeaderValue>,
}

/// A raw answer (for CSV and images).
pub struct RawAnswer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub content_disposition: Option<HeaderValue>,
    pub body: Vec<u8>,
}

impl Api {
    pub fn new(router: Router) -> Api {
        Api { router }
    }

    pub async fn get(&self, caller: &Caller, path: &str) -> Result<Value, ApiFailure> {
        self.json(caller, Method::GET, path, None, None).await
    }

    /// POST `body` as JSON; `key` is the Idempotency-Key (the form's own,
    /// so a double submit returns the first answer).
    pub async fn post(
        &self,
        caller: &Caller,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Result<Value, ApiFailure> {
        let bytes = serde_json::to_vec(body).map_err(ApiFailure::internal)?;
        self.json(
            caller,
            Method::POST,
            path,
            Some((bytes, "application/json")),
            key,
        )
        .await
    }

    pub async fn post_bytes(
        &self,
        caller: &Caller,
        path: &str,
        bytes: Vec<u8>,
        content_type: &'static str,
    ) -> Result<Value, ApiFailure> {
        self.json(
            caller,
            Method::POST,
            path,
            Some((bytes, content_type)),
            None,
        )
        .await
    }

    pub async fn delete(&self, caller: &Caller, path: &str) -> Result<Value, ApiFailure> {
        self.json(caller, Method::DELETE, path, None, None).await
    }

    async fn json(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
        key: Option<&str>,
    ) -> Result<Value, ApiFailure> {
        let answer = self.raw(caller, method, path, body, key).await?;
        let value: Value = if answer.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&answer.body).map_err(ApiFailure::internal)?
        };
        if answer.status.is_success() {
            Ok(value)
        } else {
            // The API's one error shape: `{"error": {"code", "message", "field"}}`.
            let detail = value.get("error").unwrap_or(&Value::Null);
            let text = |name: &str| detail.get(name).and_then(Value::as_str).map(str::to_string);
            Err(ApiFailure {
                status: answer.status,
                code: text("code").unwrap_or_else(|| "internal".into()),
                message: text("message").unwrap_or_default(),
                field: text("field"),
            })
        }
    }

    pub async fn raw(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
        key: Option<&str>,
    ) -> Result<RawAnswer, ApiFailure> {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = &caller.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(agent) = &caller.user_agent {
            request = request.header(header::USER_AGENT, agent.clone());
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let body = match body {
            Some((bytes, content_type)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let mut request = request.body(body).map_err(ApiFailure::internal)?;
        if let Some(peer) = caller.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(ApiFailure::internal)?;
        let (parts, body) = response.into_parts();
        let bytes = http_body_util::Limited::new(body, RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(ApiFailure::internal)?
            .to_bytes();
        Ok(RawAnswer {
            status: parts.status,
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            content_disposition: parts.headers.get(header::CONTENT_DISPOSITION).cloned(),
            body: bytes.to_vec(),
        })
    }
}

/// Reads a string field of an API answer ("" when absent).
pub fn text<'a>(value: &'a Value, name: &str) -> &'a str {
    value.get(name).and_then(Value::as_str).unwrap_or("")
}

/// Reads an integer field of an API answer (0 when absent).
pub fn int(value: &Value, name: &str) -> i64 {
    value.get(name).and_then(Value::as_i64).unwrap_or(0)
}

/// The `data` list of an API answer.
pub fn list(value: &Value) -> &[Value] {
    value
        .get("data")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}
