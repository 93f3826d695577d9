//! Service API keys: `Authorization: Bearer coffer_<id>_<secret>`. Only the
//! SHA-256 of the secret is stored; comparison is constant-time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use coffer_store::service::ApiKeyRecord;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

pub const SCOPE_LEDGER_READ: &str = "ledger:read";
pub const SCOPE_LEDGER_WRITE: &str = "ledger:write";
pub const SCOPES: [&str; 2] = [SCOPE_LEDGER_READ, SCOPE_LEDGER_WRITE];

/// The caller, once its key checked out.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this API key lacks the {scope} scope"),
            ))
        }
    }
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new key: (id, full token to give the caller once, record to store).
pub fn generate(
    name: &str,
    scopes: Vec<String>,
    now: i64,
) -> (String, coffer_store::service::ApiKeyRecord) {
    let mut id_bytes = [0u8; 8];
    let mut secret_bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut id_bytes);
    rand::rng().fill_bytes(&mut secret_bytes);
    let id = hex::encode(id_bytes);
    let secret = hex::encode(secret_bytes);
    let token = format!("coffer_{id}_{secret}");
    let record = coffer_store::service::ApiKeyRecord {
        id,
        name: name.to_string(),
        secret_hash: hash_secret(&secret),
        scopes,
        created_at: now,
        revoked_at: None,
    };
    (token, record)
}

/// How long a key read from the database is trusted before it is read again:
/// a revocation takes effect within this time. Saves a database read on
/// every request.
pub const API_KEY_CACHE_SECONDS: u64 = 10;
const API_KEY_CACHE_ENTRIES_MAX: usize = 10_000;

/// Recently used, unrevoked keys (secret hashes only, as stored).
#[derive(Debug, Default)]
pub struct ApiKeyCache(Mutex<HashMap<String, (ApiKeyRecord, Instant)>>);

impl ApiKeyCache {
    fn get(&self, id: &str) -> Option<ApiKeyRecord> {
        let entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(id)
            .filter(|(_, read)| read.elapsed() < Duration::from_secs(API_KEY_CACHE_SECONDS))
            .map(|(record, _)| record.clone())
    }

    /// Drops a key, so the next request with it reads the database (where
    /// a revocation has just been written).
    pub fn forget(&self, id: &str) {
        let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(id);
    }

    fn put(&self, record: ApiKeyRecord) {
        let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= API_KEY_CACHE_ENTRIES_MAX {
            entries.clear();
        }
        entries.insert(record.id.clone(), (record, Instant::now()));
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid API key is required: Authorization: Bearer coffer_…",
    )
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(unauthorized)?
            .trim();
        let rest = token.strip_prefix("coffer_").ok_or_else(unauthorized)?;
        let (id, secret) = rest.split_once('_').ok_or_else(unauthorized)?;
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unauthorized());
        }
        let record = match state.api_keys.get(id) {
            Some(record) => record,
            None => {
                let service = state.service.clone();
                let key_id = id.to_string();
                let record = tokio::task::spawn_blocking(move || service.api_key(&key_id))
                    .await
                    .map_err(ApiError::internal)??
                    .filter(|r| r.revoked_at.is_none())
                    .ok_or_else(unauthorized)?;
                state.api_keys.put(record.clone());
                record
            }
        };
        if !constant_time_eq(
            hash_secret(secret).as_bytes(),
            record.secret_hash.as_bytes(),
        ) {
            return Err(unauthorized());
        }
        Ok(Principal {
            key_id: record.id,
            scopes: record.scopes,
        })
    }
}
