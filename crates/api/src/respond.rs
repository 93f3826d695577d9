//! Small pieces every route module uses to answer: JSON bodies, and
//! identity-layer calls run off the async workers.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_identity::IdentityError;
use serde::Serialize;

use crate::error::ApiError;

/// A JSON response; a serialization failure is a fault on our side.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => (status, [(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

/// Status and JSON text, as the idempotent-write paths store them.
pub fn to_json<T: Serialize>(
    status: StatusCode,
    value: &T,
) -> Result<(StatusCode, String), ApiError> {
    serde_json::to_string(value)
        .map(|body| (status, body))
        .map_err(ApiError::internal)
}

/// An identity call on a blocking thread (Argon2 and the database take
/// milliseconds), its error mapped to the API's.
pub async fn identity_call<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, IdentityError> + Send + 'static,
) -> Result<T, ApiError> {
    blocking_call(work).await
}

/// Runs a synchronous domain call (database, ledger writer) on a blocking
/// thread, its error mapped to the API's: the one place every route module
/// uses for that.
pub(crate) async fn blocking_call<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
        .map_err(Into::into)
}
