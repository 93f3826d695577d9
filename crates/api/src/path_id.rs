//! The `{id}` of a path, extracted so that a path axum cannot decode (invalid
//! UTF-8 after percent-decoding) gets the API's one error shape, not axum's
//! plain-text rejection.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use crate::error::ApiError;

pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(PathId(id)),
            Err(rejection) => Err(ApiError::invalid("id", rejection.body_text())),
        }
    }
}
