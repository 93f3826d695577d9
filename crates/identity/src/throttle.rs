//! Failed sign-ins, counted per contact and per IP address in the database
//! (so every server instance sees the same counts). After a few free
//! failures each further one doubles the wait; at the lock threshold the
//! subject is blocked for the lock period. Counts reset after an hour
//! without failures.

use coffer_store::sql::{Sql, SqlStore};
use coffer_store::sql_params;

use crate::{IdentityError, Policy, NANOS_PER_SECOND};

const RESET_AFTER_NANOS: i64 = 3_600 * NANOS_PER_SECOND;

pub(crate) fn check(sql: &SqlStore, subjects: &[String], now: i64) -> Result<(), IdentityError> {
    for subject in subjects {
        let blocked_until = sql
            .run(|db| {
                db.query_opt(
                    "SELECT blocked_until FROM throttles WHERE subject = $1",
                    sql_params![subject.as_str()],
                )
            })?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        if blocked_until > now {
            let seconds = (blocked_until - now + NANOS_PER_SECOND - 1) / NANOS_PER_SECOND;
            return Err(IdentityError::Throttled {
                retry_after_seconds: seconds.max(1),
            });
        }
    }
    Ok(())
}

/// Counts a failure against every subject, in the caller's transaction (the
/// failure's audit record commits with it); true when this one locked the
/// contact (the first subject), so the owner is alerted once.
pub(crate) fn fail(
    db: &mut dyn Sql,
    policy: &Policy,
    subjects: &[String],
    now: i64,
) -> Result<bool, IdentityError> {
    let mut locked = false;
    for (i, subject) in subjects.iter().enumerate() {
        // One atomic statement: concurrent failures are all counted.
        let failures = db
            .query_one(
                "INSERT INTO throttles (subject, failures, last_failure_at, blocked_until) VALUES ($1, 1, $2, 0) \
                 ON CONFLICT (subject) DO UPDATE SET \
                 failures = CASE WHEN throttles.last_failure_at < $3 THEN 1 ELSE throttles.failures + 1 END, \
                 last_failure_at = $2 \
                 RETURNING failures",
                sql_params![subject.as_str(), now, now - RESET_AFTER_NANOS],
            )?
            .int(0)?;
        let is_contact = i == 0;
        let (free, lock_at) = if is_contact {
            (policy.free_failures, policy.lock_after_failures)
        } else {
            (policy.ip_failures_max / 2, policy.ip_failures_max)
        };
        let wait_seconds = if failures >= lock_at {
            locked |= is_contact && failures == lock_at;
            policy.lock_seconds
        } else if failures > free {
            (1i64 << (failures - free - 1).clamp(0, 20)).min(policy.lock_seconds)
        } else {
            0
        };
        if wait_seconds > 0 {
            db.execute(
                "UPDATE throttles SET blocked_until = $2 WHERE subject = $1",
                sql_params![subject.as_str(), now + wait_seconds * NANOS_PER_SECOND],
            )?;
        }
    }
    Ok(locked)
}

pub(crate) fn clear(db: &mut dyn Sql, subject: &str) -> Result<(), IdentityError> {
    db.execute(
        "DELETE FROM throttles WHERE subject = $1",
        sql_params![subject],
    )?;
    Ok(())
}
