//! A merchant owner's API keys: list them and revoke one
//! (`/v1/me/merchants/{id}/api-keys…`; issuing is in `merchant_routes`).
//! A key leaked from a till or a shop's back end must be stoppable at once:
//! the revocation and its audit record are one transaction, and this
//! instance's key cache forgets the key before answering, so the next
//! request with it is refused. (Other instances of `coffer serve` re-read a
//! key at most `auth::API_KEY_CACHE_SECONDS` after their last read.)

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use coffer_core::Timestamp;
use coffer_store::sql_params;
use serde::Serialize;
use utoipa::ToSchema;

use crate::body::RawBody;
use crate::customer_routes::{customer_principal, CustomerSession};
use crate::error::ApiError;
use crate::idempotency;
use crate::merchant_routes::MERCHANT_SCOPE_PREFIX;
use crate::openapi::params::IdempotencyKey;
use crate::openapi::{BadRequest, BodyTooLarge, Internal};
use crate::path_id::PathId;
use crate::respond::{blocking_call, json_response, to_json};
use crate::route_table::RouteTable;
use crate::AppState;

pub fn routes() -> RouteTable {
    RouteTable::default()
        .get("/v1/me/merchants/{id}/api-keys", list_merchant_keys)
        .post(
            "/v1/me/merchants/{id}/api-keys/{key_id}/revoke",
            revoke_merchant_key,
        )
}

/// An API key as its owner sees it: never the secret.
#[derive(Serialize, ToSchema)]
pub(crate) struct MerchantKeyBody {
    /// The key's id: the 16 hex digits after `coffer_` in the key.
    id: String,
    name: String,
    created_at: String,
    /// When it was revoked; absent while it works.
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MerchantKeysResponse {
    data: Vec<MerchantKeyBody>,
}

fn key_body(row: &coffer_store::sql::Row) -> Result<MerchantKeyBody, ApiError> {
    let at = |nanos: i64| Timestamp::from_nanos(nanos).to_rfc3339();
    Ok(MerchantKeyBody {
        id: row.text(0).map_err(ApiError::internal)?,
        name: row.text(1).map_err(ApiError::internal)?,
        created_at: at(row.int(2).map_err(ApiError::internal)?),
        revoked_at: row.opt_int(3).map_err(ApiError::internal)?.map(at),
    })
}

const SELECT_KEYS: &str = "SELECT id, name, created_at, revoked_at FROM api_keys";

#[utoipa::path(
    get,
    path = "/v1/me/merchants/{id}/api-keys",
    tag = "merchants",
    summary = "The merchant's API keys",
    description = "Every key issued for this merchant, newest first, revoked ones included (with `revoked_at`). Secrets are never shown again.",
    params(("id" = String, Path, description = "The merchant id.")),
    responses(
        (status = 200, description = "The keys.", body = MerchantKeysResponse),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such merchant of yours.", body = crate::error::ErrorBody),
        (status = 422, description = "`invalid_field` (`id`).", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
    ),
    security(("session" = []))
)]
pub(crate) async fn list_merchant_keys(
    State(state): State<AppState>,
    session: CustomerSession,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let merchants = state.merchants.clone();
    let owner = session.info.customer_id.clone();
    let view = blocking_call(move || merchants.owned(&owner, &id)).await?;
    let sql = state.sql.clone();
    let scope = format!("{MERCHANT_SCOPE_PREFIX}{}", view.id);
    let rows = tokio::task::spawn_blocking(move || {
        sql.run(|db| {
            db.query(
                &format!("{SELECT_KEYS} WHERE scopes = $1 ORDER BY created_at DESC, id DESC"),
                sql_params![scope.as_str()],
            )
        })
    })
    .await
    .map_err(ApiError::internal)??;
    let data = rows.iter().map(key_body).collect::<Result<Vec<_>, _>>()?;
    Ok(json_response(
        StatusCode::OK,
        &MerchantKeysResponse { data },
    ))
}

#[utoipa::path(
    post,
    path = "/v1/me/merchants/{id}/api-keys/{key_id}/revoke",
    tag = "merchants",
    summary = "Revoke one of the merchant's API keys",
    description = "The key stops working at once (this instance refuses it from the next request; other instances within seconds). Audited (`merchant_api_key_revoked`). Revoking a revoked key changes nothing and answers the same.",
    params(
        ("id" = String, Path, description = "The merchant id."),
        ("key_id" = String, Path, description = "The key's id (16 hex digits)."),
        IdempotencyKey,
    ),
    responses(
        (status = 200, description = "Revoked.", body = MerchantKeyBody),
        (status = 400, response = BadRequest),
        (status = 401, description = "`unauthenticated`.", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_rejected`.", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such merchant of yours, or no such key of it.", body = crate::error::ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`.", body = crate::error::ErrorBody),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`invalid_field` (`id`), `idempotency_key_reused`.", body = crate::error::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, description = "`overloaded`, `storage_unavailable`: retry with the same Idempotency-Key.", body = crate::error::ErrorBody),
    ),
    security(("session" = []))
)]
pub(crate) async fn revoke_merchant_key(
    State(state): State<AppState>,
    session: CustomerSession,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let principal = customer_principal(&session);
    idempotency::run(
        &state,
        &principal,
        "customer",
        &headers,
        "revoke_merchant_key",
        &body,
        || revoke(&state, &session, path),
    )
    .await
}

async fn revoke(
    state: &AppState,
    session: &CustomerSession,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<(StatusCode, String), ApiError> {
    let Path((merchant_id, key_id)) = path.map_err(|e| ApiError::invalid("id", e.body_text()))?;
    let merchants = state.merchants.clone();
    let owner = session.info.customer_id.clone();
    let view = blocking_call(move || merchants.owned(&owner, &merchant_id)).await?;
    let scope = format!("{MERCHANT_SCOPE_PREFIX}{}", view.id);
    let now = state.clock.now().as_nanos();
    let (sql, customer_id, ip) = (
        state.sql.clone(),
        session.info.customer_id.clone(),
        session.context.ip.clone(),
    );
    let forget = key_id.clone();
    let row = tokio::task::spawn_blocking(move || {
        sql.transaction(|db| -> Result<_, ApiError> {
            let revoked = db.execute(
                "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND scopes = $2 AND revoked_at IS NULL",
                sql_params![key_id.as_str(), scope.as_str(), now],
            )?;
            let row = db
                .query_opt(
                    &format!("{SELECT_KEYS} WHERE id = $1 AND scopes = $2"),
                    sql_params![key_id.as_str(), scope.as_str()],
                )?
                .ok_or_else(|| ApiError::not_found("API key"))?;
            if revoked == 1 {
                coffer_audit::append(
                    db,
                    &coffer_audit::Entry {
                        at: now,
                        actor: &coffer_audit::customer_actor(&customer_id),
                        action: "merchant_api_key_revoked",
                        subject: Some(&view.id),
                        ip: &ip,
                        outcome: coffer_audit::Outcome::Ok,
                        detail: &key_id,
                    },
                )
                .map_err(ApiError::internal)?;
            }
            Ok(row)
        })
    })
    .await
    .map_err(ApiError::internal)??;
    state.api_keys.forget(&forget);
    to_json(StatusCode::OK, &key_body(&row)?)
}
