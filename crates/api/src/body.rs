//! Request bodies: read with a named size limit, parsed strictly (unknown
//! fields, wrong types and overflowing numbers are client errors).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest request body the API reads.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// The raw body, within `BODY_LIMIT_BYTES`.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("request bodies are limited to {BODY_LIMIT_BYTES} bytes"),
                ))
            }
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                rejection.body_text(),
            )),
        }
    }
}

/// Parses JSON: syntax errors are 400 `malformed_json`; a well-formed body
/// with a wrong, missing or unknown field is 422 `invalid_field`, naming the
/// field by its path (`amount`, `transfers[2].currency`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    if value.is_ok() {
        // Trailing bytes after the JSON value.
        deserializer.end().map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
    }
    value.map_err(|error| {
        use serde_json::error::Category;
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
            ),
            Category::Data => {
                let message = inner.to_string();
                // An unknown or missing field is named in the message; a wrong
                // type at the path where it occurred.
                let named = message.split('`').nth(1).filter(|_| {
                    message.starts_with("unknown field") || message.starts_with("missing field")
                });
                let field = match named {
                    Some(name) if path == "." => name.to_string(),
                    Some(name) => format!("{path}.{name}"),
                    None if path == "." => "body".to_string(),
                    None => path,
                };
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
                    .field(field)
            }
        }
    })
}
