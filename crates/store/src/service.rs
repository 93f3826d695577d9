//! Storage for the service layer: API keys and idempotency keys. Same
//! database as the ledger, separate tables, separate connections.

use rusqlite::{params, OptionalExtension};

use crate::pool::Pool;
use crate::{Database, StoreError};

/// A service API key. The secret itself is never stored, only its SHA-256
/// (the secret is 256 random bits, so a fast hash is enough).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub secret_hash: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// What an idempotency key says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First use: go ahead, then `finish`.
    Started,
    /// Seen before with the same request: answer this.
    Replay { status: u16, body: String },
    /// Seen before with a different request.
    Mismatch,
    /// The first request with this key is still running.
    InFlight,
}

/// The response to a request made under an idempotency key, stored so that a
/// retry gets it back. The ledger writer stores these in the same transaction
/// as the batch they answer, so a response is remembered if and only if its
/// effect is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub principal: String,
    pub key: String,
    pub request_hash: String,
    pub status: u16,
    pub body: String,
    pub created_at: i64,
}

/// An idempotency key as stored: its request hash and, once the request
/// finished, its response (none while a request outside the ledger runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub principal: String,
    pub key: String,
    pub request_hash: String,
    pub response: Option<(u16, String)>,
}

pub trait ServiceStore: Send + Sync {
    fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    fn begin_idempotent(
        &self,
        principal: &str,
        key: &str,
        request_hash: &str,
        now: i64,
    ) -> Result<Begin, StoreError>;
    fn finish_idempotent(
        &self,
        principal: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError>;
    /// What the key says, without claiming it: for writes whose response the
    /// ledger writer records (see `StoredResponse`).
    fn lookup_idempotent(
        &self,
        principal: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Option<Begin>, StoreError>;
    /// Forgets a key whose request failed for a reason on our side, so a retry runs.
    fn abandon_idempotent(&self, principal: &str, key: &str) -> Result<(), StoreError>;
    /// Deletes keys created before `before`; returns how many.
    fn purge_idempotency(&self, before: i64) -> Result<u64, StoreError>;
}

pub fn open(database: &Database, connections: usize) -> Result<Box<dyn ServiceStore>, StoreError> {
    database.migrate()?;
    let location = match database {
        Database::Sqlite(path) => crate::sqlite::location(path),
        Database::Postgres(url) => crate::postgres::location(url),
    };
    let inner: Box<dyn ServiceStore> = match database {
        Database::Sqlite(path) => {
            let path = path.clone();
            Box::new(SqliteService {
                pool: Pool::new(connections, Box::new(move || crate::sqlite::open(&path))),
            })
        }
        Database::Postgres(url) => {
            let url = url.clone();
            Box::new(PostgresService {
                pool: Pool::new(
                    connections,
                    Box::new(move || crate::postgres::connect(&url)),
                ),
            })
        }
    };
    Ok(Box::new(Overlaid { inner, location }))
}

/// Keys the ledger writer stored moments ago may still be in its batch log,
/// not yet in `idempotency_keys`: a key must be looked up there first, or a
/// client reusing it for another request could claim it twice.
struct Overlaid {
    inner: Box<dyn ServiceStore>,
    location: String,
}

impl Overlaid {
    fn logged(&self, principal: &str, key: &str, request_hash: &str) -> Option<Begin> {
        let stored = crate::overlay::find(&self.location)?.response(principal, key)?;
        let (status, body) = match stored.response {
            Some((status, body)) => (Some(i64::from(status)), Some(body)),
            None => (None, None),
        };
        Some(decide(request_hash, stored.request_hash, status, body))
    }
}

impl ServiceStore for Overlaid {
    fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.inner.insert_api_key(key)
    }

    fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.inner.api_key(id)
    }

    fn begin_idempotent(
        &self,
        principal: &str,
        key: &str,
        request_hash: &str,
        now: i64,
    ) -> Result<Begin, StoreError> {
        if let Some(earlier) = self.logged(principal, key, request_hash) {
            return Ok(earlier);
        }
        self.inner
            .begin_idempotent(principal, key, request_hash, now)
    }

    fn finish_idempotent(
        &self,
        principal: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        self.inner.finish_idempotent(principal, key, status, body)
    }

    fn lookup_idempotent(
        &self,
        principal: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Option<Begin>, StoreError> {
        if let Some(earlier) = self.logged(principal, key, request_hash) {
            return Ok(Some(earlier));
        }
        self.inner.lookup_idempotent(principal, key, request_hash)
    }

    fn abandon_idempotent(&self, principal: &str, key: &str) -> Result<(), StoreError> {
        self.inner.abandon_idempotent(principal, key)
    }

    fn purge_idempotency(&self, before: i64) -> Result<u64, StoreError> {
        self.inner.purge_idempotency(before)
    }
}

fn scopes_text(scopes: &[String]) -> String {
    scopes.join(" ")
}

fn scopes_list(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

struct SqliteService {
    pool: Pool<rusqlite::Connection>,
}

impl ServiceStore for SqliteService {
    fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let connection = self.pool.get()?;
        connection.execute(
            "INSERT INTO api_keys (id, name, secret_hash, scopes, created_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key.id, key.name, key.secret_hash, scopes_text(&key.scopes), key.created_at, key.revoked_at],
        )?;
        Ok(())
    }

    fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let connection = self.pool.get()?;
        let found = connection
            .prepare_cached("SELECT id, name, secret_hash, scopes, created_at, revoked_at FROM api_keys WHERE id = ?1")?
            .query_row(params![id], |r| {
                Ok(ApiKeyRecord {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    secret_hash: r.get(2)?,
                    scopes: scopes_list(&r.get::<_, String>(3)?),
                    created_at: r.get(4)?,
                    revoked_at: r.get(5)?,
                })
            })
            .optional()?;
        Ok(found)
    }

    fn begin_idempotent(
        &self,
        principal: &str,
        key: &str,
        request_hash: &str,
        now: i64,
    ) -> Result<Begin, StoreError> {
        let connection = self.pool.get()?;
        let inserted = connection.prepare_cached(
            "INSERT INTO idempotency_keys (principal, key, request_hash, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![principal, key, request_hash, now])?;
        if inserted == 1 {
            return Ok(Begin::Started);
        }
        let (hash, status, body): (String, Option<i64>, Option<String>) = connection
            .prepare_cached("SELECT request_hash, status, body FROM idempotency_keys WHERE principal = ?1 AND key = ?2")?
            .query_row(params![principal, key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(decide(request_hash, hash, status, body))
    }

    fn lookup_idempotent(
        &self,
        principal: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Option<Begin>, StoreError> {
        let connection = self.pool.get()?;
        let found: Option<(String, Option<i64>, Option<String>)> = connection
            .prepare_cached("SELECT request_hash, status, body FROM idempotency_keys WHERE principal = ?1 AND key = ?2")?
            .query_row(params![principal, key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        Ok(found.map(|(hash, status, body)| decide(request_hash, hash, status, body)))
    }

    fn finish_idempotent(
        &self,
        principal: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        let connection = self.pool.get()?;
        connection
            .prepare_cached("UPDATE idempotency_keys SET status = ?3, body = ?4 WHERE principal = ?1 AND key = ?2")?
            .execute(params![principal, key, i64::from(status), body])?;
        Ok(())
    }

    fn abandon_idempotent(&self, principal: &str, key: &str) -> Result<(), StoreError> {
        let connection = self.pool.get()?;
        connection
            .prepare_cached(
                "DELETE FROM idempotency_keys WHERE principal = ?1 AND key = ?2 AND status IS NULL",
            )?
            .execute(params![principal, key])?;
        Ok(())
    }

    fn purge_idempotency(&self, before: i64) -> Result<u64, StoreError> {
        let connection = self.pool.get()?;
        Ok(connection.execute(
            "DELETE FROM idempotency_keys WHERE created_at < ?1",
            params![before],
        )? as u64)
    }
}

/// A stored (status, body) pair, when the request has finished.
pub(crate) fn stored_response(status: Option<i64>, body: Option<String>) -> Option<(u16, String)> {
    match (status, body) {
        (Some(status), Some(body)) => Some((u16::try_from(status).unwrap_or(500), body)),
        _ => None,
    }
}

fn decide(
    request_hash: &str,
    stored_hash: String,
    status: Option<i64>,
    body: Option<String>,
) -> Begin {
    if stored_hash != request_hash {
        return Begin::Mismatch;
    }
    match (status, body) {
        (Some(status), Some(body)) => Begin::Replay {
            status: u16::try_from(status).unwrap_or(500),
            body,
        },
        _ => Begin::InFlight,
    }
}

struct PostgresService {
    pool: Pool<postgres::Client>,
}

impl ServiceStore for PostgresService {
    fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut client = self.pool.get()?;
        client.execute(
            "INSERT INTO api_keys (id, name, secret_hash, scopes, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&key.id, &key.name, &key.secret_hash, &scopes_text(&key.scopes), &key.created_at, &key.revoked_at],
        )?;
        Ok(())
    }

    fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let mut client = self.pool.get()?;
        let row = client.query_opt("SELECT id, name, secret_hash, scopes, created_at, revoked_at FROM api_keys WHERE id = $1", &[&id])?;
        Ok(row.map(|r| ApiKeyRecord {
            id: r.get(0),
            name: r.get(1),
            secret_hash: r.get(2),
            scopes: scopes_list(r.get(3)),
            created_at: r.get(4),
            revoked_at: r.get(5),
        }))
    }

    fn begin_idempotent(
        &self,
        principal: &str,
        key: &str,
        request_hash: &str,
        now: i64,
    ) -> Result<Begin, StoreError> {
        let mut client = self.pool.get()?;
        let inserted = client.execute(
            "INSERT INTO idempotency_keys (principal, key, request_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&principal, &key, &request_hash, &now],
        )?;
        if inserted == 1 {
            return Ok(Begin::Started);
        }
        let row = client.query_one("SELECT request_hash, status, body FROM idempotency_keys WHERE principal = $1 AND key = $2", &[&principal, &key])?;
        Ok(decide(request_hash, row.get(0), row.get(1), row.get(2)))
    }

    fn lookup_idempotent(
        &self,
        principal: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Option<Begin>, StoreError> {
        let mut client = self.pool.get()?;
        let row = client.query_opt("SELECT request_hash, status, body FROM idempotency_keys WHERE principal = $1 AND key = $2", &[&principal, &key])?;
        Ok(row.map(|row| decide(request_hash, row.get(0), row.get(1), row.get(2))))
    }

    fn finish_idempotent(
        &self,
        principal: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get()?;
        client.execute(
            "UPDATE idempotency_keys SET status = $3, body = $4 WHERE principal = $1 AND key = $2",
            &[&principal, &key, &i64::from(status), &body],
        )?;
        Ok(())
    }

    fn abandon_idempotent(&self, principal: &str, key: &str) -> Result<(), StoreError> {
        let mut client = self.pool.get()?;
        client.execute(
            "DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND status IS NULL",
            &[&principal, &key],
        )?;
        Ok(())
    }

    fn purge_idempotency(&self, before: i64) -> Result<u64, StoreError> {
        let mut client = self.pool.get()?;
        Ok(client.execute(
            "DELETE FROM idempotency_keys WHERE created_at < $1",
            &[&before],
        )?)
    }
}
