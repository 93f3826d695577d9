//! Delivers due outbox messages, with retries and a dead-letter state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use coffer_core::Clock;
use coffer_store::sql::SqlStore;
use coffer_store::sql_params;
use coffer_vault::Vault;

use crate::{Channel, NotifyError, Transport, BODY_CONTEXT, RECIPIENT_CONTEXT};

/// Deliveries tried before a message is dead-lettered.
pub const ATTEMPTS_MAX: i64 = 8;
const BATCH: i64 = 100;
/// A message claimed by a dispatcher that died is retried after this.
const CLAIM_TIMEOUT_NANOS: i64 = 5 * 60 * 1_000_000_000;

pub struct Dispatcher {
    sql: Arc<SqlStore>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    transports: HashMap<Channel, Arc<dyn Transport>>,
    wake: Mutex<bool>,
    woken: Condvar,
    stop: AtomicBool,
}

/// Back-off before attempt `n + 1`: 1 s, 2 s, 4 s … capped at one hour.
fn backoff_nanos(attempts: i64) -> i64 {
    let seconds = 1i64 << attempts.clamp(0, 12);
    seconds.min(3_600) * 1_000_000_000
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
            wake: Mutex::new(false),
            woken: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    /// Delivers every due message once; returns how many were delivered.
    pub fn run_once(&self) -> Result<usize, NotifyError> {
        let now = self.clock.now().as_nanos();
        let due = self.sql.run(|db| {
            db.query(
                "SELECT seq, channel, recipient_enc, body_enc, attempts FROM notifications \
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
            let outcome = self.deliver(&row.text(1)?, &row.bytes(2)?, row.opt_bytes(3)?);
            let attempts = attempts + 1;
            match outcome {
                Ok(()) => {
                    delivered += 1;
                    self.sql.run(|db| {
                        db.execute(
                            "UPDATE notifications SET state = 'sent', sent_at = $2, attempts = $3, body_enc = NULL, last_error = NULL WHERE seq = $1",
                            sql_params![seq, now, attempts],
                        )
                    })?;
                }
                Err(error) => {
                    let state = if attempts >= ATTEMPTS_MAX {
                        "dead"
                    } else {
                        "pending"
                    };
                    tracing::warn!(seq, attempts, state, %error, "notification delivery failed");
                    self.sql.run(|db| {
                        db.execute(
                            "UPDATE notifications SET state = $2, attempts = $3, next_attempt_at = $4, last_error = $5 WHERE seq = $1",
                            sql_params![seq, state, attempts, now + backoff_nanos(attempts - 1), error],
                        )
                    })?;
                }
            }
        }
        Ok(delivered)
    }

    fn deliver(
        &self,
        channel: &str,
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
            .deliver(recipient.expose(), subject, body)
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
