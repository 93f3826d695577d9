//! Delivers due outbox messages, with retries, back-off with jitter and a
//! dead-letter state; every attempt is logged (`notification_attempts`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use coffer_audit::{Entry, Outcome};
use coffer_core::Clock;
use coffer_store::sql::{Row, Sql, SqlStore};
use coffer_store::sql_params;
use coffer_vault::Vault;
use rand::Rng;

use crate::{Channel, NotifyError, Transport, BODY_CONTEXT, RECIPIENT_CONTEXT};

/// Deliveries tried before a message is dead-lettered (the default policy).
pub const ATTEMPTS_MAX: i64 = 8;
const BATCH: i64 = 100;
/// A message claimed by a dispatcher that died is retried after this. It
/// must outlast the slowest transport's own timeout (SMTP 30 s, webhooks
/// 10 s), or a live dispatcher's send could be repeated by another.
pub const CLAIM_TIMEOUT_SECONDS: i64 = 60;
const CLAIM_TIMEOUT_NANOS: i64 = CLAIM_TIMEOUT_SECONDS * 1_000_000_000;
const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before the message is dead-lettered.
    pub attempts_max: i64,
    /// The wait after the first failure; doubles per failure.
    pub base_seconds: i64,
    /// No wait is longer than this.
    pub cap_seconds: i64,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts_max: ATTEMPTS_MAX,
            base_seconds: 1,
            cap_seconds: 3_600,
        }
    }
}

/// Back-off after `failures` failed attempts: base·2^(failures-1), capped,
/// then "equal jitter" (a uniformly random point in the upper half), so
/// messages that failed together (an SMTP relay down) do not all come back
/// in the same instant, and no retry comes sooner than half its step.
pub fn backoff_nanos(policy: &RetryPolicy, failures: i64, random: &mut impl Rng) -> i64 {
    let exponent = u32::try_from((failures - 1).clamp(0, 30)).unwrap_or(30);
    let step = policy
        .base_seconds
        .max(1)
        .saturating_mul(1i64 << exponent)
        .min(policy.cap_seconds.max(1))
        .saturating_mul(NANOS_PER_SECOND);
    let half = step / 2;
    half + random.random_range(0..=half)
}

pub struct Dispatcher {
    sql: Arc<SqlStore>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    transports: HashMap<Channel, Arc<dyn Transport>>,
    policy: RetryPolicy,
    wake: Mutex<bool>,
    woken: Condvar,
    stop: AtomicBool,
}

impl Dispatcher {
    pub fn new(
        sql: Arc<SqlStore>,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        transports: Vec<Arc<dyn Transport>>,
    ) -> Dispatcher {
        Dispatcher {
            sql,
            vault,
            clock,
            transports: transports.into_iter().map(|t| (t.channel(), t)).collect(),
            policy: RetryPolicy::default(),
            wake: Mutex::new(false),
            woken: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Dispatcher {
        self.policy = policy;
        self
    }

    /// Adds (or replaces) the transport for its channel, e.g. a webhook
    /// transport built after the stores it reads.
    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> Dispatcher {
        self.transports.insert(transport.channel(), transport);
        self
    }

    /// Delivers every due message once; returns how many were delivered.
    pub fn run_once(&self) -> Result<usize, NotifyError> {
        let now = self.clock.now().as_nanos();
        let due = self.sql.run(|db| {
            db.query(
                "SELECT seq, channel, recipient_enc, body_enc, attempts, notification_key FROM notifications \
                 WHERE (state = 'pending' AND next_attempt_at <= $1) OR (state = 'sending' AND next_attempt_at <= $2) \
                 ORDER BY seq LIMIT $3",
                sql_params![now, now - CLAIM_TIMEOUT_NANOS, BATCH],
            )
        })?;
        let mut delivered = 0;
        for row in due {
            let (seq, attempts) = (row.int(0)?, row.int(4)?);
            // Claim it, so a second dispatcher does not send it too.
            let claimed = self.sql.run(|db| {
                db.execute(
                    "UPDATE notifications SET state = 'sending', next_attempt_at = $2 \
                     WHERE seq = $1 AND state IN ('pending', 'sending') AND attempts = $3",
                    sql_params![seq, now, attempts],
                )
            })?;
            if claimed != 1 {
                continue;
            }
            let key = row.opt_text(5)?;
            let outcome = self.deliver(
                &row.text(1)?,
                key.as_deref(),
                &row.bytes(2)?,
                row.opt_bytes(3)?,
            );
            let attempts = attempts + 1;
            match outcome {
                Ok(()) => {
                    delivered += 1;
                    self.sql.transaction(|db| -> Result<(), NotifyError> {
                        db.execute(
                            "UPDATE notifications SET state = 'sent', sent_at = $2, attempts = $3, body_enc = NULL, last_error = NULL WHERE seq = $1",
                            sql_params![seq, now, attempts],
                        )?;
                        log_attempt(db, seq, attempts, now, None)
                    })?;
                }
                Err(error) => {
                    let state = if attempts >= self.policy.attempts_max {
                        "dead"
                    } else {
                        "pending"
                    };
                    tracing::warn!(seq, attempts, state, %error, "notification delivery failed");
                    let next = now + backoff_nanos(&self.policy, attempts, &mut rand::rng());
                    self.sql.transaction(|db| -> Result<(), NotifyError> {
                        db.execute(
                            "UPDATE notifications SET state = $2, attempts = $3, next_attempt_at = $4, last_error = $5 WHERE seq = $1",
                            sql_params![seq, state, attempts, next, error.as_str()],
                        )?;
                        log_attempt(db, seq, attempts, now, Some(&error))
                    })?;
                }
            }
        }
        Ok(delivered)
    }

    fn deliver(
        &self,
        channel: &str,
        key: Option<&str>,
        recipient: &[u8],
        body: Option<Vec<u8>>,
    ) -> Result<(), String> {
        let channel =
            Channel::parse(channel).ok_or_else(|| format!("unknown channel {channel}"))?;
        let transport = self
            .transports
            .get(&channel)
            .ok_or_else(|| format!("no {} transport configured", channel.as_str()))?;
        let recipient = self
            .vault
            .decrypt_text(RECIPIENT_CONTEXT, recipient)
            .map_err(|e| e.to_string())?;
        let body = body.ok_or("the message body is gone")?;
        let text = self
            .vault
            .decrypt_text(BODY_CONTEXT, &body)
            .map_err(|e| e.to_string())?;
        let (subject, body) = text
            .expose()
            .split_once('\n')
            .unwrap_or(("", text.expose()));
        transport
            .deliver_keyed(key, recipient.expose(), subject, body)
            .map_err(|e| e.0)
    }

    /// Asks the background loop to look now (after an enqueue commits).
    pub fn nudge(&self) {
        *self.wake.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.woken.notify_one();
    }

    /// Runs until `stop`: delivers when nudged, and at least every `interval`.
    pub fn run(
        self: Arc<Self>,
        interval: Duration,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("coffer-notify".into())
            .spawn(move || {
                while !self.stop.load(Ordering::SeqCst) {
                    if let Err(error) = self.run_once() {
                        tracing::error!(%error, "notification dispatcher");
                    }
                    let mut woken = self.wake.lock().unwrap_or_else(|e| e.into_inner());
                    if !*woken {
                        woken = self
                            .woken
                            .wait_timeout(woken, interval)
                            .map(|(guard, _)| guard)
                            .unwrap_or_else(|e| e.into_inner().0);
                    }
                    *woken = false;
                }
            })
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.nudge();
    }
}

fn log_attempt(
    db: &mut dyn Sql,
    seq: i64,
    attempt: i64,
    at: i64,
    error: Option<&str>,
) -> Result<(), NotifyError> {
    let outcome = if error.is_some() { "failed" } else { "sent" };
    db.execute(
        "INSERT INTO notification_attempts (seq, attempt, at, outcome, error) VALUES ($1, $2, $3, $4, $5)",
        sql_params![seq, attempt, at, outcome, error],
    )?;
    Ok(())
}

/// One delivery attempt of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub attempt: i64,
    pub at: i64,
    /// `sent` or `failed`.
    pub outcome: String,
    pub error: Option<String>,
}

/// The attempts of message `seq`, oldest first.
pub fn attempts(db: &mut dyn Sql, seq: i64) -> Result<Vec<Attempt>, NotifyError> {
    db.query(
        "SELECT attempt, at, outcome, error FROM notification_attempts WHERE seq = $1 ORDER BY id",
        sql_params![seq],
    )?
    .iter()
    .map(|r| {
        Ok(Attempt {
            attempt: r.int(0)?,
            at: r.int(1)?,
            outcome: r.text(2)?,
            error: r.opt_text(3)?,
        })
    })
    .collect()
}

/// A dead-lettered message as staff see it (no recipient, no body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub seq: i64,
    pub channel: String,
    pub recipient_masked: String,
    pub customer_id: Option<String>,
    pub template: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// Dead letters after `after` (a seq cursor), oldest first.
pub fn dead_letters(
    db: &mut dyn Sql,
    after: i64,
    limit: i64,
) -> Result<Vec<DeadLetter>, NotifyError> {
    db.query(
        "SELECT seq, channel, recipient_masked, customer_id, template, attempts, last_error, created_at \
         FROM notifications WHERE state = 'dead' AND seq > $1 ORDER BY seq LIMIT $2",
        sql_params![after, limit],
    )?
    .iter()
    .map(|r| {
        Ok(DeadLetter {
            seq: r.int(0)?,
            channel: r.text(1)?,
            recipient_masked: r.text(2)?,
            customer_id: r.opt_text(3)?,
            template: r.text(4)?,
            attempts: r.int(5)?,
            last_error: r.opt_text(6)?,
            created_at: r.int(7)?,
        })
    })
    .collect()
}

/// Puts a dead letter back in the queue, due now, with a fresh attempt
/// budget, and audits who did it, in one transaction. `Ok(false)` when the
/// message is not (or no longer) dead: a repeat of the same request.
pub fn requeue(
    db: &mut dyn Sql,
    seq: i64,
    actor: &str,
    ip: &str,
    now: i64,
) -> Result<bool, NotifyError> {
    let changed = db.execute(
        "UPDATE notifications SET state = 'pending', attempts = 0, next_attempt_at = $2 WHERE seq = $1 AND state = 'dead'",
        sql_params![seq, now],
    )?;
    if changed == 0 {
        let exists = db
            .query_opt(
                "SELECT 1 FROM notifications WHERE seq = $1",
                sql_params![seq],
            )?
            .is_some();
        return if exists {
            Ok(false)
        } else {
            Err(NotifyError::NotFound("dead letter"))
        };
    }
    coffer_audit::append(
        db,
        &Entry {
            at: now,
            actor,
            action: "notification_requeued",
            subject: None,
            ip,
            outcome: Outcome::Ok,
            detail: &seq.to_string(),
        },
    )?;
    Ok(true)
}

/// One message to an endpoint and its attempts: a merchant's delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    /// The event type (`payment.succeeded`…).
    pub template: String,
    /// The endpoint's host.
    pub endpoint: String,
    /// `pending`, `sending`, `sent` or `dead`.
    pub state: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub attempts: Vec<Attempt>,
}

/// The webhooks sent to `owner`'s endpoints, newest first, before `before`
/// (a seq cursor; `i64::MAX` for the newest).
pub fn deliveries_for_owner(
    db: &mut dyn Sql,
    owner: &str,
    before: i64,
    limit: i64,
) -> Result<Vec<Delivery>, NotifyError> {
    let rows: Vec<Row> = db.query(
        "SELECT seq, template, recipient_masked, state, created_at, sent_at FROM notifications \
         WHERE endpoint_owner = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        sql_params![owner, before, limit],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let seq = r.int(0)?;
        out.push(Delivery {
            seq,
            template: r.text(1)?,
            endpoint: r.text(2)?,
            state: r.text(3)?,
            created_at: r.int(4)?,
            sent_at: r.opt_int(5)?,
            attempts: attempts(db, seq)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_within_jitter_and_is_capped() {
        let policy = RetryPolicy::default();
        let mut random = rand::rng();
        for failures in 1..=20 {
            let step = (1i64 << (failures - 1).min(30)).min(3_600) * NANOS_PER_SECOND;
            for _ in 0..50 {
                let wait = backoff_nanos(&policy, failures, &mut random);
                assert!(wait >= step / 2 && wait <= step, "{failures}: {wait}");
            }
        }
    }
}
