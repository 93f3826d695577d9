//! Built-in simulators of the card network and the core banking system, so
//! that everything runs on one machine. They implement the same traits a
//! real connector does and behave like one: they keep their own books
//! (table `connector_simulations`), answer at once with "accepted" (or a
//! 3-D Secure challenge), decide the outcome by the test number, and send the
//! outcome later as a signed callback; they can send a callback twice and
//! send one late; a status query resolves an operation that never answered.
//!
//! Test numbers decide by their last four digits (the README lists them):
//!
//! | last four | outcome |
//! |---|---|
//! | `0002` | declined (`card_declined`, or `account_closed` for a bank account) |
//! | `9995` | `insufficient_funds` |
//! | `0069` | no answer at all; a status query resolves it as failed (`timeout`) |
//! | `3220` | cards: 3-D Secure challenge first; answer `123456` passes, anything else fails (`authentication_failed`) |
//! | anything else | succeeds |

use std::sync::Arc;

use coffer_core::{Clock, Secret};
use coffer_store::sql::{Sql, SqlStore};
use coffer_store::{sql_params, StoreError};
use rand::RngCore;

use crate::connectors::{
    Callback, CardNetwork, ConnectorError, ConnectorKind, CoreBanking, Instruction, Operation,
    SettlementLine, Status, Submission, WebhookSecret,
};

/// The answer the simulated issuer's 3-D Secure page accepts.
pub const CHALLENGE_ANSWER: &str = "123456";
const NANOS_PER_MILLI: i64 = 1_000_000;
const NANOS_PER_SECOND: i64 = 1_000_000_000;
/// Callbacks handed to the courier per call.
pub const CALLBACKS_PER_TAKE_MAX: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Succeed,
    Decline,
    InsufficientFunds,
    Timeout,
    Challenge,
}

impl Behaviour {
    fn of(kind: ConnectorKind, instrument: &str) -> Behaviour {
        let last4 = instrument
            .get(instrument.len().saturating_sub(4)..)
            .unwrap_or("");
        match last4 {
            "0002" => Behaviour::Decline,
            "9995" => Behaviour::InsufficientFunds,
            "0069" => Behaviour::Timeout,
            "3220" if kind == ConnectorKind::CardNetwork => Behaviour::Challenge,
            _ => Behaviour::Succeed,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Behaviour::Succeed => "succeed",
            Behaviour::Decline => "decline",
            Behaviour::InsufficientFunds => "insufficient_funds",
            Behaviour::Timeout => "timeout",
            Behaviour::Challenge => "challenge",
        }
    }
}

/// How the simulated network behaves beyond the test numbers.
#[derive(Debug, Clone)]
pub struct SimulatorSettings {
    /// How long after the outcome its callback is due.
    pub callback_delay_ms: i64,
    /// Send every callback twice (the same event id), as a network does when
    /// it did not see the first acknowledgement.
    pub duplicate_callbacks: bool,
    /// After a status query resolved an operation that never answered, send
    /// its callback anyway, late.
    pub late_callbacks: bool,
    /// A 3-D Secure challenge nobody answers fails after this long.
    pub challenge_timeout_ms: i64,
}

impl Default for SimulatorSettings {
    fn default() -> SimulatorSettings {
        SimulatorSettings {
            callback_delay_ms: 500,
            duplicate_callbacks: true,
            late_callbacks: true,
            challenge_timeout_ms: 10 * 60 * 1000,
        }
    }
}

/// A callback ready to send: the body and its signature header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCallback {
    pub connector: ConnectorKind,
    pub body: String,
    pub signature: String,
}

/// One simulated connector (a card network or a core banking system).
pub struct Simulator {
    kind: ConnectorKind,
    sql: Arc<SqlStore>,
    clock: Arc<dyn Clock>,
    secret: WebhookSecret,
    settings: SimulatorSettings,
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

fn storage(error: StoreError) -> ConnectorError {
    ConnectorError(error.to_string())
}

impl Simulator {
    pub fn new(
        kind: ConnectorKind,
        sql: Arc<SqlStore>,
        clock: Arc<dyn Clock>,
        secret: WebhookSecret,
        settings: SimulatorSettings,
    ) -> Simulator {
        Simulator {
            kind,
            sql,
            clock,
            secret,
            settings,
        }
    }

    pub fn kind(&self) -> ConnectorKind {
        self.kind
    }

    fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    fn submit(
        &self,
        operation: Operation,
        instruction: &Instruction<'_>,
    ) -> Result<Submission, ConnectorError> {
        let behaviour = Behaviour::of(self.kind, instruction.instrument.expose());
        let now = self.now();
        let amount = instruction.amount.minor_units();
        let currency = instruction.currency.as_str().to_string();
        self.sql
            .transaction(|db| -> Result<Submission, StoreError> {
                let existing = db.query_opt(
                    "SELECT reference, status, amount FROM connector_simulations WHERE connector = $1 AND merchant_reference = $2",
                    sql_params![self.kind.as_str(), instruction.merchant_reference],
                )?;
                if let Some(row) = existing {
                    // The same merchant reference is the same request (a retry).
                    let reference = row.text(0)?;
                    return Ok(if row.text(1)? == "challenge" {
                        Submission::ChallengeRequired { reference }
                    } else {
                        Submission::Accepted { reference }
                    });
                }
                let reference = format!("{}_{}", self.prefix(), random_hex(10));
                let (status, reason) = match behaviour {
                    Behaviour::Succeed => ("succeeded", None),
                    Behaviour::Decline => ("failed", Some(self.decline_reason(operation))),
                    Behaviour::InsufficientFunds => ("failed", Some("insufficient_funds")),
                    Behaviour::Timeout => ("pending", None),
                    Behaviour::Challenge => ("challenge", None),
                };
                let resolved = matches!(status, "succeeded" | "failed");
                db.execute(
                    "INSERT INTO connector_simulations (connector, reference, merchant_reference, operation, behaviour, amount, currency, status, reason, created_at, resolved_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    sql_params![
                        self.kind.as_str(),
                        reference.as_str(),
                        instruction.merchant_reference,
                        operation.as_str(),
                        behaviour.as_str(),
                        amount,
                        currency.as_str(),
                        status,
                        reason,
                        now,
                        resolved.then_some(now)
                    ],
                )?;
                if resolved {
                    self.schedule(db, &reference, now)?;
                }
                Ok(if behaviour == Behaviour::Challenge {
                    Submission::ChallengeRequired { reference }
                } else {
                    Submission::Accepted { reference }
                })
            })
            .map_err(storage)
    }

    fn prefix(&self) -> &'static str {
        match self.kind {
            ConnectorKind::CardNetwork => "cn",
            ConnectorKind::CoreBanking => "cb",
        }
    }

    fn decline_reason(&self, operation: Operation) -> &'static str {
        match operation {
            Operation::Authorization => "card_declined",
            Operation::Collection | Operation::Payout => "account_closed",
        }
    }

    /// Queues the callback of a resolved operation (twice when duplicates are on).
    fn schedule(&self, db: &mut dyn Sql, reference: &str, now: i64) -> Result<(), StoreError> {
        let row = db.query_one(
            "SELECT merchant_reference, operation, status, reason, amount, currency FROM connector_simulations WHERE connector = $1 AND reference = $2",
            sql_params![self.kind.as_str(), reference],
        )?;
        let event_id = format!("evt_{}", random_hex(10));
        let callback = Callback {
            event_id: event_id.clone(),
            operation: row.text(1)?,
            reference: reference.to_string(),
            merchant_reference: row.text(0)?,
            status: row.text(2)?,
            reason: row.opt_text(3)?,
            amount: row.int(4)?,
            currency: row.text(5)?,
        };
        let body = serde_json::to_string(&callback)
            .map_err(|e| StoreError::Corrupt(format!("callback: {e}")))?;
        let due = now + self.settings.callback_delay_ms * NANOS_PER_MILLI;
        let attempts = if self.settings.duplicate_callbacks {
            2
        } else {
            1
        };
        for attempt in 0..attempts {
            db.execute(
                "INSERT INTO connector_callbacks (connector, event_id, attempt, body, due_at, delivered_at) VALUES ($1, $2, $3, $4, $5, NULL)",
                sql_params![self.kind.as_str(), event_id.as_str(), attempt, body.as_str(), due + attempt * NANOS_PER_MILLI],
            )?;
        }
        Ok(())
    }

    /// Callbacks due by `due_by`, signed now; each is handed out once.
    pub fn take_due(&self, due_by: i64) -> Result<Vec<SignedCallback>, ConnectorError> {
        let now = self.now();
        let rows = self
            .sql
            .transaction(|db| -> Result<Vec<coffer_store::sql::Row>, StoreError> {
                let rows = db.query(
                    "SELECT event_id, attempt, body FROM connector_callbacks WHERE connector = $1 AND delivered_at IS NULL AND due_at <= $2 \
                     ORDER BY due_at, event_id, attempt LIMIT $3",
                    sql_params![self.kind.as_str(), due_by, CALLBACKS_PER_TAKE_MAX],
                )?;
                for row in &rows {
                    db.execute(
                        "UPDATE connector_callbacks SET delivered_at = $4 WHERE connector = $1 AND event_id = $2 AND attempt = $3",
                        sql_params![self.kind.as_str(), row.text(0)?, row.int(1)?, now],
                    )?;
                }
                Ok(rows)
            })
            .map_err(storage)?;
        rows.iter()
            .map(|row| {
                let body = row.text(2).map_err(storage)?;
                Ok(SignedCallback {
                    connector: self.kind,
                    signature: self.secret.sign(now / NANOS_PER_SECOND, body.as_bytes()),
                    body,
                })
            })
            .collect()
    }

    /// Signs any body with this connector's secret at `timestamp` (unix
    /// seconds), as its callbacks are signed: for tests that replay or forge.
    pub fn sign(&self, timestamp: i64, body: &str) -> String {
        self.secret.sign(timestamp, body.as_bytes())
    }

    fn status_of(&self, merchant_reference: &str) -> Result<Status, ConnectorError> {
        let now = self.now();
        self.sql
            .transaction(|db| -> Result<Status, StoreError> {
                let Some(row) = db.query_opt(
                    "SELECT reference, status, reason, created_at FROM connector_simulations WHERE connector = $1 AND merchant_reference = $2",
                    sql_params![self.kind.as_str(), merchant_reference],
                )?
                else {
                    return Ok(Status::Unknown);
                };
                let reference = row.text(0)?;
                let status = row.text(1)?;
                let age = now - row.int(3)?;
                // An operation that never answered is given up at the first
                // query; a challenge nobody answered, once it times out.
                let given_up = match status.as_str() {
                    "pending" => Some("timeout"),
                    "challenge" if age >= self.settings.challenge_timeout_ms * NANOS_PER_MILLI => {
                        Some("authentication_timeout")
                    }
                    _ => None,
                };
                if let Some(reason) = given_up {
                    db.execute(
                        "UPDATE connector_simulations SET status = 'failed', reason = $3, resolved_at = $4 WHERE connector = $1 AND reference = $2",
                        sql_params![self.kind.as_str(), reference.as_str(), reason, now],
                    )?;
                    if self.settings.late_callbacks {
                        self.schedule(db, &reference, now)?;
                    }
                    return Ok(Status::Failed {
                        reason: reason.to_string(),
                    });
                }
                Ok(match status.as_str() {
                    "succeeded" => Status::Succeeded,
                    "failed" => Status::Failed {
                        reason: row.opt_text(2)?.unwrap_or_else(|| "failed".into()),
                    },
                    _ => Status::Pending,
                })
            })
            .map_err(storage)
    }

    fn report(&self, from: i64, until: i64) -> Result<Vec<SettlementLine>, ConnectorError> {
        let rows = self
            .sql
            .run(|db| {
                db.query(
                    "SELECT reference, merchant_reference, operation, amount, currency, created_at FROM connector_simulations \
                     WHERE connector = $1 AND status = 'succeeded' AND created_at >= $2 AND created_at < $3 ORDER BY created_at, reference",
                    sql_params![self.kind.as_str(), from, until],
                )
            })
            .map_err(storage)?;
        rows.iter()
            .map(|row| -> Result<SettlementLine, StoreError> {
                let operation = row.text(2)?;
                Ok(SettlementLine {
                    reference: row.text(0)?,
                    merchant_reference: row.text(1)?,
                    operation: Operation::parse(&operation)
                        .ok_or_else(|| StoreError::Corrupt(format!("operation {operation:?}")))?,
                    amount: row.int(3)?,
                    currency: row.text(4)?,
                    submitted_at: row.int(5)?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(storage)
    }
}

impl CardNetwork for Simulator {
    fn authorize(&self, instruction: &Instruction<'_>) -> Result<Submission, ConnectorError> {
        self.submit(Operation::Authorization, instruction)
    }

    fn complete_challenge(
        &self,
        merchant_reference: &str,
        answer: &Secret<String>,
    ) -> Result<(), ConnectorError> {
        let now = self.now();
        let passed = answer.expose() == CHALLENGE_ANSWER;
        self.sql
            .transaction(|db| -> Result<(), StoreError> {
                let Some(row) = db.query_opt(
                    "SELECT reference FROM connector_simulations WHERE connector = $1 AND merchant_reference = $2 AND status = 'challenge'",
                    sql_params![self.kind.as_str(), merchant_reference],
                )?
                else {
                    // Answered before (or never challenged): nothing more to do.
                    return Ok(());
                };
                let reference = row.text(0)?;
                let (status, reason) = if passed {
                    ("succeeded", None)
                } else {
                    ("failed", Some("authentication_failed"))
                };
                db.execute(
                    "UPDATE connector_simulations SET status = $3, reason = $4, resolved_at = $5 WHERE connector = $1 AND reference = $2",
                    sql_params![self.kind.as_str(), reference.as_str(), status, reason, now],
                )?;
                self.schedule(db, &reference, now)
            })
            .map_err(storage)
    }

    fn status(&self, merchant_reference: &str) -> Result<Status, ConnectorError> {
        self.status_of(merchant_reference)
    }

    fn settlement_report(
        &self,
        from: i64,
        until: i64,
    ) -> Result<Vec<SettlementLine>, ConnectorError> {
        self.report(from, until)
    }
}

impl CoreBanking for Simulator {
    fn collect(&self, instruction: &Instruction<'_>) -> Result<Submission, ConnectorError> {
        self.submit(Operation::Collection, instruction)
    }

    fn pay_out(&self, instruction: &Instruction<'_>) -> Result<Submission, ConnectorError> {
        self.submit(Operation::Payout, instruction)
    }

    fn status(&self, merchant_reference: &str) -> Result<Status, ConnectorError> {
        self.status_of(merchant_reference)
    }

    fn settlement_report(
        &self,
        from: i64,
        until: i64,
    ) -> Result<Vec<SettlementLine>, ConnectorError> {
        self.report(from, until)
    }
}
