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
                // A missing field is named in the message, below the path of
                // its object; an unknown field's path already ends at it; a
                // wrong type is at the path where it occurred.
                let missing = message
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split('`').next());
                let field = match missing {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[allow(dead_code)] // Only parsed.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Member {
        id: String,
        #[serde(default)]
        metadata: BTreeMap<String, String>,
    }

    #[allow(dead_code)] // Only parsed.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        transfers: Vec<Member>,
    }

    fn field(body: &str) -> Option<String> {
        parse::<Batch>(body.as_bytes()).err().and_then(|e| e.field)
    }

    #[test]
    fn fields_are_named_by_their_path() {
        assert_eq!(
            field(r#"{"transfers":[],"colour":1}"#).as_deref(),
            Some("colour")
        );
        assert_eq!(
            field(r#"{"transfers":[{"id":"a","colour":1}]}"#).as_deref(),
            Some("transfers[0].colour")
        );
        assert_eq!(field("{}").as_deref(), Some("transfers"));
        assert_eq!(
            field(r#"{"transfers":[{"id":"a"},{}]}"#).as_deref(),
            Some("transfers[1].id")
        );
        assert_eq!(
            field(r#"{"transfers":[{"id":1}]}"#).as_deref(),
            Some("transfers[0].id")
        );
        assert_eq!(field("[]").as_deref(), Some("body"));
    }
}
