//! The one error shape of the API: `{"error": {"code", "message", "field"}}`
//! with the right status. 5xx only for faults on our side.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coffer_app::EngineError;
use coffer_ledger::Rejection;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

/// Every 4xx and 5xx response's body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable machine-readable code, e.g. `insufficient_funds`; never changes once published.
    #[schema(examples("insufficient_funds"))]
    pub code: &'a str,
    /// For people: what went wrong and how to fix it.
    pub message: &'a str,
    /// The offending input by its path (`amount`, `transfers[2].currency`, `Idempotency-Key`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).field(field)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} with this id"),
        )
    }

    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        // The detail goes to the log (with the request id), never to the client.
        tracing::error!(%error, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }

    pub fn body(&self) -> String {
        serde_json::to_string(&ErrorBody {
            error: self.detail(),
        })
        .unwrap_or_else(|_| String::from("{}"))
    }

    pub fn detail(&self) -> ErrorDetail<'_> {
        ErrorDetail {
            code: self.code,
            message: &self.message,
            field: self.field.as_deref(),
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> ApiError {
        let status = match rejection {
            Rejection::ExistsWithDifferentFields | Rejection::LinkedBatchPartiallyExists => {
                StatusCode::CONFLICT
            }
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let error = ApiError::new(status, rejection.code(), rejection.to_string());
        match rejection.field() {
            Some(field) => error.field(field),
            None => error,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> ApiError {
        match error {
            EngineError::TooLarge { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                error.code(),
                error.to_string(),
            )
            .field("transfers"),
            EngineError::Overloaded | EngineError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                error.code(),
                error.to_string(),
            ),
            EngineError::Storage(detail) => {
                tracing::error!(%detail, "ledger storage failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the ledger's storage is unavailable; retry with the same Idempotency-Key",
                )
            }
        }
    }
}

impl From<coffer_store::StoreError> for ApiError {
    fn from(error: coffer_store::StoreError) -> ApiError {
        match error {
            // Reads waiting on a projection that is behind (a stalled disk):
            // a retry will do, it is not a fault in the request.
            coffer_store::StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "ledger read unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the ledger is catching up; retry shortly",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}
