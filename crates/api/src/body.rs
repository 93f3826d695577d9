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
/// with a wrong, missing or unknown field is 422 `invalid_field`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| {
        use serde_json::error::Category;
        match error.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {error}"),
            ),
            Category::Data => {
                let message = error.to_string();
                let field = message.split('`').nth(1).unwrap_or("body").to_string();
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
                    .field(field)
            }
        }
    })
}
