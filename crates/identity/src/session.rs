//! Sessions: an opaque random token given to the client once; only its
//! SHA-256 is stored (256 random bits need no slow hash). Sessions expire
//! after an idle period and at an absolute limit, and can be revoked one by
//! one or all at once.

use coffer_core::Secret;
use coffer_store::sql::{Sql, SqlStore};
use coffer_store::sql_params;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{random_hex, Context, IdentityError, Policy, NANOS_PER_SECOND};

/// Token prefix: lets secret scanners and log filters recognize one.
pub const TOKEN_PREFIX: &str = "cs_";
/// Sliding the idle expiry costs a write; do it at most this often.
const TOUCH_INTERVAL_NANOS: i64 = 60 * NANOS_PER_SECOND;
const DEVICE_LENGTH_MAX: usize = 120;

/// A new session: the token goes to the client once and is never stored.
#[derive(Debug)]
pub struct NewSession {
    pub session_id: String,
    pub customer_id: String,
    pub token: Secret<String>,
    pub expires_at: i64,
}

/// A live session, as authentication returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub session_id: String,
    pub customer_id: String,
}

/// A signed-in device, for the customer's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub id: String,
    pub device: String,
    pub ip: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub current: bool,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The device label as a session stores it (the client's text, bounded).
pub(crate) fn stored_device(device: &str) -> String {
    device.chars().take(DEVICE_LENGTH_MAX).collect()
}

pub(crate) fn create(
    db: &mut dyn Sql,
    policy: &Policy,
    customer_id: &str,
    context: &Context,
    now: i64,
) -> Result<NewSession, IdentityError> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let session_id = format!("ses_{}", random_hex(8));
    let absolute = now + policy.session_absolute_seconds * NANOS_PER_SECOND;
    let idle = (now + policy.session_idle_seconds * NANOS_PER_SECOND).min(absolute);
    let device = stored_device(&context.device);
    db.execute(
        "INSERT INTO sessions (id, customer_id, token_hash, device, ip, created_at, last_seen_at, idle_expires_at, absolute_expires_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, NULL)",
        sql_params![
            session_id.as_str(),
            customer_id,
            token_hash(&token),
            device,
            context.ip.as_str(),
            now,
            idle,
            absolute
        ],
    )?;
    Ok(NewSession {
        session_id,
        customer_id: customer_id.to_string(),
        token: Secret::new(token),
        expires_at: idle,
    })
}

pub(crate) fn authenticate(
    sql: &SqlStore,
    policy: &Policy,
    token: &Secret<String>,
    now: i64,
) -> Result<SessionInfo, IdentityError> {
    let token = token.expose();
    if !token.starts_with(TOKEN_PREFIX) || token.len() != TOKEN_PREFIX.len() + 64 {
        return Err(IdentityError::Unauthenticated);
    }
    let row = sql
        .run(|db| {
            db.query_opt(
                "SELECT id, customer_id, idle_expires_at, absolute_expires_at, revoked_at, last_seen_at \
                 FROM sessions WHERE token_hash = $1",
                sql_params![token_hash(token)],
            )
        })?
        .ok_or(IdentityError::Unauthenticated)?;
    let (idle, absolute) = (row.int(2)?, row.int(3)?);
    if row.opt_int(4)?.is_some() || idle <= now || absolute <= now {
        return Err(IdentityError::Unauthenticated);
    }
    let info = SessionInfo {
        session_id: row.text(0)?,
        customer_id: row.text(1)?,
    };
    if now - row.int(5)? > TOUCH_INTERVAL_NANOS {
        let idle = (now + policy.session_idle_seconds * NANOS_PER_SECOND).min(absolute);
        sql.run(|db| {
            db.execute(
                "UPDATE sessions SET last_seen_at = $2, idle_expires_at = $3 WHERE id = $1",
                sql_params![info.session_id.as_str(), now, idle],
            )
        })?;
    }
    Ok(info)
}

pub(crate) fn list(
    sql: &SqlStore,
    info: &SessionInfo,
    now: i64,
) -> Result<Vec<SessionView>, IdentityError> {
    let rows = sql.run(|db| {
        db.query(
            "SELECT id, device, ip, created_at, last_seen_at FROM sessions \
             WHERE customer_id = $1 AND revoked_at IS NULL AND idle_expires_at > $2 AND absolute_expires_at > $2 \
             ORDER BY created_at DESC",
            sql_params![info.customer_id.as_str(), now],
        )
    })?;
    rows.iter()
        .map(|r| {
            let id = r.text(0)?;
            Ok(SessionView {
                current: id == info.session_id,
                id,
                device: r.text(1)?,
                ip: r.text(2)?,
                created_at: r.int(3)?,
                last_seen_at: r.int(4)?,
            })
        })
        .collect()
}
