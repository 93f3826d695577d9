//! Passkey management beyond the registration ceremony (which lives with
//! the other customer routes): removing one.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use serde::Deserialize;
use utoipa::ToSchema;

use crate::body::{parse, RawBody};
use crate::customer_routes::{customer_principal, CustomerSession};
use crate::idempotency;
use crate::openapi::params::IdempotencyKey;
use crate::openapi::{BadRequest, BodyTooLarge, Internal};
use crate::path_id::PathId;
use crate::respond::identity_call;
use crate::route_table::RouteTable;
use crate::AppState;

/// A verified step-up for operation `passkey_change`, amount 0, currency
/// CNY, payee `passkeys` (`POST /v1/me/step-up`): adding or removing a
/// passkey needs one, so a session alone cannot change how the wallet is
/// signed in to.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasskeyStepUp {
    pub(crate) step_up_challenge_id: String,
}

pub fn routes() -> RouteTable {
    RouteTable::default().post("/v1/me/passkeys/{id}/remove", remove_passkey)
}

#[utoipa::path(
    post,
    path = "/v1/me/passkeys/{id}/remove",
    tag = "customers",
    summary = "Remove a passkey",
    description = "Needs a verified step-up for operation `passkey_change`, amount 0, currency CNY, payee `passkeys`. The passkey no longer signs in or answers a step-up, including a challenge issued before. Audited; the customer is alerted.",
    params(("id" = String, Path, description = "The passkey's id (from `GET /v1/me/passkeys`)."), IdempotencyKey),
    request_body = PasskeyStepUp,
    responses(
        (status = 200, description = "Removed."),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`step_up_required`, `csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such passkey of this customer.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`unavailable`.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn remove_passkey(
    State(state): State<AppState>,
    session: CustomerSession,
    headers: HeaderMap,
    PathId(id): PathId,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    let session = Arc::new(session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        &format!("remove_passkey:{id}"),
        &body,
        || async {
            let request: PasskeyStepUp = parse(&body)?;
            let identity = state.identity.clone();
            let session = session.clone();
            identity_call(move || {
                identity.remove_passkey(
                    &session.info,
                    &id,
                    &request.step_up_challenge_id,
                    &session.context,
                )
            })
            .await?;
            state.dispatcher.nudge();
            Ok((StatusCode::OK, r#"{"removed":true}"#.to_string()))
        },
    )
    .await
}
