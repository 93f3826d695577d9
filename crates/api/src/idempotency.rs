//! `Idempotency-Key` on every state-changing POST: the first request runs and
//! its response is stored; a replay gets that response back; the same key with
//! a different body is 422 `idempotency_key_reused`; a concurrent duplicate is
//! 409 `idempotency_key_in_flight` and never runs twice. Keys are kept 24 h
//! at least (purged after `IDEMPOTENCY_RETENTION_HOURS`).

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_app::{Recorded, Recording, Render};
use coffer_ledger::Command;
use coffer_store::service::Begin;
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

pub const IDEMPOTENCY_RETENTION_HOURS: i64 = 48;
pub const IDEMPOTENCY_KEY_LENGTH_MAX: usize = 255;

/// The header's value, validated.
pub fn key(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers.get("idempotency-key").ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
            "this request needs an Idempotency-Key header",
        )
        .field("Idempotency-Key")
    })?;
    let text = value.to_str().ok().filter(|t| {
        !t.is_empty()
            && t.len() <= IDEMPOTENCY_KEY_LENGTH_MAX
            && t.bytes().all(|b| b.is_ascii_graphic())
    });
    text.map(str::to_string).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_idempotency_key", format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} printable ASCII characters"))
            .field("Idempotency-Key")
    })
}

/// Checks the caller holds `scope`, then runs `work` at most once per
/// (caller, key); `work` returns status and JSON body. For writes outside the
/// ledger: the key is claimed in the database before `work` runs and the
/// response stored after it.
pub async fn run<F, Fut>(
    state: &AppState,
    principal: &Principal,
    scope: &str,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
    work: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, String), ApiError>>,
{
    let (key, request_hash) = match admit(principal, scope, headers, route, body) {
        Ok(admitted) => admitted,
        Err(error) => return error.into_response(),
    };
    let service = state.service.clone();
    let (principal_id, key_clone) = (principal.key_id.clone(), key.clone());
    let now = state.clock.now().as_nanos();
    let begin = tokio::task::spawn_blocking(move || {
        service.begin_idempotent(&principal_id, &key_clone, &request_hash, now)
    })
    .await;
    match begin {
        Ok(Ok(Begin::Started)) => {}
        Ok(Ok(earlier)) => return answer_earlier(earlier),
        Ok(Err(error)) => return ApiError::internal(error).into_response(),
        Err(error) => return ApiError::internal(error).into_response(),
    }
    let (status, body) = match work().await {
        Ok(done) => done,
        Err(error) => (error.status, error.body()),
    };
    let service = state.service.clone();
    let principal_id = principal.key_id.clone();
    let stored_body = body.clone();
    // Faults on our side are not remembered: the client's retry must run again.
    let remember = !status.is_server_error();
    let stored = tokio::task::spawn_blocking(move || {
        if remember {
            service.finish_idempotent(&principal_id, &key, status.as_u16(), &stored_body)
        } else {
            service.abandon_idempotent(&principal_id, &key)
        }
    })
    .await;
    if let Ok(Err(error)) | Err(error) =
        stored.map_err(|e| coffer_store::StoreError::Corrupt(e.to_string()))
    {
        tracing::error!(%error, "could not record an idempotent response");
    }
    json(status, body, false)
}

/// `run` for a request whose body carries a password, a code or personal
/// data (a contact, an ID number). The request hash stored with the key is
/// taken over a keyed hash of the body instead of the body itself: a plain
/// SHA-256 of `{"contact":"+86…"}` or of a password could be searched by
/// hashing guesses, so a copy of the database would give them away.
pub async fn run_private<F, Fut>(
    state: &AppState,
    principal: &Principal,
    scope: &str,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
    work: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, String), ApiError>>,
{
    let digest = state
        .vault
        .keyed_hash("idempotency.request", &hex::encode(body));
    run(
        state,
        principal,
        scope,
        headers,
        route,
        digest.as_bytes(),
        work,
    )
    .await
}

/// `run` for writes that go through the ledger engine: `prepare` validates
/// the request into a command and the function that renders its outcome.
/// The engine's writer looks the key up and, for a new key, stores the
/// rendered response in the same transaction as the command's effect: one
/// database round trip per batch instead of three per request, no window
/// where the effect is durable but the response is not, and no claim to
/// lose when a client disconnects (the writer orders a retry after its
/// first request). Requests refused before reaching the ledger (an invalid
/// body) are not stored: the same body gets the same refusal again.
pub async fn run_ledger<P>(
    state: &AppState,
    principal: &Principal,
    scope: &str,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
    prepare: P,
) -> Response
where
    P: FnOnce() -> Result<(Command, Render), ApiError>,
{
    let (key, request_hash) = match admit(principal, scope, headers, route, body) {
        Ok(admitted) => admitted,
        Err(error) => return error.into_response(),
    };
    let (command, render) = match prepare() {
        Ok(prepared) => prepared,
        Err(error) => return error.into_response(),
    };
    let recording = Recording {
        principal: principal.key_id.clone(),
        key,
        request_hash,
        render,
    };
    match state.engine.execute_recorded(command, recording).await {
        Ok(Recorded::Executed { status, body, .. }) => json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
            false,
        ),
        Ok(Recorded::Replayed { status, body }) => answer_earlier(Begin::Replay { status, body }),
        Ok(Recorded::KeyReused) => answer_earlier(Begin::Mismatch),
        Ok(Recorded::InFlight) => answer_earlier(Begin::InFlight),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// Scope, then key, then the hash that tells a replay from a reuse.
fn admit(
    principal: &Principal,
    scope: &str,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
) -> Result<(String, String), ApiError> {
    principal.require(scope)?;
    let key = key(headers)?;
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    Ok((key, hex::encode(hasher.finalize())))
}

fn answer_earlier(earlier: Begin) -> Response {
    match earlier {
        Begin::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json(status, body, true)
        }
        Begin::Mismatch => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        )
        .field("Idempotency-Key")
        .into_response(),
        Begin::InFlight | Begin::Started => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_flight",
            "a request with this Idempotency-Key is still running; retry shortly",
        )
        .field("Idempotency-Key")
        .into_response(),
    }
}

fn json(status: StatusCode, body: String, replayed: bool) -> Response {
    let mut response = (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}
