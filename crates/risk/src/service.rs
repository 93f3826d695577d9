//! The stateful side of risk: the active rule set (cached, re-read when
//! another instance activates a new version), signals gathered from stored
//! evaluations inside the caller's transaction, evaluations recorded,
//! cases, the blocklist, drafts, dry-runs and activation.

use std::sync::{Arc, RwLock};

use coffer_audit::{Entry, Outcome as AuditOutcome};
use coffer_core::Clock;
use coffer_store::sql::{Row, Sql, SqlStore};
use coffer_store::{sql_params, StoreError};
use coffer_vault::Vault;
use rand::RngCore;
use serde::Serialize;

use crate::rules::{
    self, BlockList, Decision, FieldError, Kind, Outcome, Past, Reason, RuleSet, Signals,
    HISTORY_MAX,
};

/// The audit actor of what risk decides on its own (a freeze).
pub const ACTOR_RISK: &str = "system:risk";
/// How often an instance checks whether another activated a new rule set.
pub const RULES_RECHECK_SECONDS: i64 = 2;
/// A dry-run replays at most this many recent evaluations.
pub const DRY_RUN_EVALUATIONS_MAX: i64 = 5_000;
/// Examples of changed decisions a dry-run reports.
pub const DRY_RUN_EXAMPLES_MAX: usize = 20;
/// Lists return at most this many items.
pub const PAGE_MAX: i64 = 200;
const NANOS_PER_SECOND: i64 = 1_000_000_000;
const DEVICE_PURPOSE: &str = "risk.device";
const IP_PURPOSE: &str = "risk.ip";

#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    #[error("the rule set is invalid")]
    InvalidRules(Vec<FieldError>),
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("this case is {0} and cannot take that action")]
    CaseClosed(String),
    #[error("rule set version {0} is not a draft")]
    NotDraft(i64),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("audit: {0}")]
    Audit(#[from] coffer_audit::AuditError),
    #[error("internal: {0}")]
    Internal(String),
}

impl RiskError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> RiskError {
        RiskError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// What is about to happen, as the payment or sign-in code knows it.
#[derive(Debug, Clone, Default)]
pub struct Attempt<'a> {
    pub customer_id: &'a str,
    pub kind: Option<Kind>,
    /// The payment's id (or the session's), recorded with the evaluation.
    pub subject_id: Option<&'a str>,
    pub amount: Option<i64>,
    pub currency: Option<&'a str>,
    /// The payee's customer id or the merchant's id.
    pub counterparty: Option<&'a str>,
    /// The client's device identifier and IP, as received (hashed here).
    pub device: Option<&'a str>,
    pub ip: Option<&'a str>,
    /// The card's internal id, when a card pays.
    pub card: Option<&'a str>,
    /// A merchant's refunds over payments (basis points, payment count).
    pub merchant_refunds: Option<(i64, i64)>,
    /// For a sign-in: failed attempts since the last successful one.
    pub failed_sign_ins: i64,
}

/// A decision with what it was made from, ready to record.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub id: String,
    pub customer_id: String,
    pub kind: Kind,
    pub subject_id: Option<String>,
    pub counterparty: Option<String>,
    device: Option<String>,
    ip_index: Option<String>,
    pub signals: Signals,
    pub decision: Decision,
    pub rule_version: i64,
}

impl Assessment {
    pub fn outcome(&self) -> Outcome {
        self.decision.outcome
    }

    /// The reasons as one line for audit details and errors.
    pub fn summary(&self) -> String {
        let ids: Vec<&str> = self
            .decision
            .reasons
            .iter()
            .map(|r| r.rule_id.as_str())
            .collect();
        format!(
            "{} score {} [{}]",
            self.decision.outcome.as_str(),
            self.decision.score,
            ids.join(",")
        )
    }
}

struct Active {
    version: i64,
    rules: Arc<RuleSet>,
    checked_at: i64,
}

pub struct Risk {
    sql: Arc<SqlStore>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    active: RwLock<Option<Active>>,
}

/// A stored rule set version.
#[derive(Debug, Clone, Serialize)]
pub struct RuleSetVersion {
    pub version: i64,
    pub state: String,
    pub rules: RuleSet,
    pub author: String,
    pub created_at: i64,
    pub activated_by: Option<String>,
    pub activated_at: Option<i64>,
}

/// A case for an analyst.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Case {
    pub id: String,
    pub customer_id: String,
    pub evaluation_id: String,
    /// `held_payment` or `freeze`.
    pub kind: String,
    /// `p2p` or `merchant_payment` for a held payment.
    pub subject_kind: Option<String>,
    pub subject_id: Option<String>,
    /// open, escalated, released, rejected, closed.
    pub state: String,
    /// The customer's "was this you?" answer: `yes` or `no`.
    pub answer: Option<String>,
    pub resolved_by: Option<String>,
    pub note: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub decision: String,
    pub score: i64,
    pub reasons: Vec<Reason>,
}

/// A queue of the back office's overview: its name, how many items wait,
/// and when the oldest was created (nanoseconds; none when empty).
pub type QueueSummary = (&'static str, i64, Option<i64>);

/// What a case transition may start from.
pub const CASE_ACTIONABLE: [&str; 2] = ["open", "escalated"];

/// What a draft would have decided over recent traffic.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub version: i64,
    pub evaluations: i64,
    pub since: Option<i64>,
    /// Per outcome: how many the stored decisions had, and the draft would.
    pub decided: Vec<(Outcome, i64)>,
    pub would_decide: Vec<(Outcome, i64)>,
    pub changed: i64,
    pub examples: Vec<DryRunExample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DryRunExample {
    pub evaluation_id: String,
    pub customer_id: String,
    pub kind: Kind,
    pub amount: Option<i64>,
    pub at: i64,
    pub decided: Outcome,
    pub would_decide: Outcome,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockEntry {
    pub list: BlockList,
    pub value: String,
    pub reason: String,
    pub created_by: String,
    pub created_at: i64,
}

fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 10];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

fn audit(
    db: &mut dyn Sql,
    at: i64,
    actor: &str,
    action: &str,
    subject: Option<&str>,
    detail: &str,
) -> Result<(), RiskError> {
    coffer_audit::append(
        db,
        &Entry {
            at,
            actor,
            action,
            subject,
            ip: "",
            outcome: AuditOutcome::Ok,
            detail,
        },
    )?;
    Ok(())
}

fn corrupt(what: &str) -> RiskError {
    RiskError::Store(StoreError::Corrupt(what.to_string()))
}

const SELECT_CASE: &str = "SELECT c.id, c.customer_id, c.evaluation_id, c.kind, c.subject_kind, c.subject_id, c.state, c.answer, c.resolved_by, c.note, c.created_at, c.updated_at, \
     e.amount, e.currency, e.decision, e.score, e.reasons FROM risk_cases c JOIN risk_evaluations e ON e.id = c.evaluation_id";

fn case(row: &Row) -> Result<Case, RiskError> {
    Ok(Case {
        id: row.text(0)?,
        customer_id: row.text(1)?,
        evaluation_id: row.text(2)?,
        kind: row.text(3)?,
        subject_kind: row.opt_text(4)?,
        subject_id: row.opt_text(5)?,
        state: row.text(6)?,
        answer: row.opt_text(7)?,
        resolved_by: row.opt_text(8)?,
        note: row.opt_text(9)?,
        created_at: row.int(10)?,
        updated_at: row.int(11)?,
        amount: row.opt_int(12)?,
        currency: row.opt_text(13)?,
        decision: row.text(14)?,
        score: row.int(15)?,
        reasons: serde_json::from_str(&row.text(16)?).map_err(|_| corrupt("risk reasons"))?,
    })
}

impl Risk {
    pub fn new(sql: Arc<SqlStore>, vault: Arc<Vault>, clock: Arc<dyn Clock>) -> Risk {
        Risk {
            sql,
            vault,
            clock,
            active: RwLock::new(None),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    /// Stores the shipped rule set as active version 1 when there is no
    /// rule set at all (first start); idempotent.
    pub fn seed_default(&self) -> Result<(), RiskError> {
        let now = self.now();
        let body = serde_json::to_string(&rules::default_rule_set())
            .map_err(|e| RiskError::Internal(e.to_string()))?;
        self.sql.transaction(|db| -> Result<(), RiskError> {
            let inserted = db.execute(
                "INSERT INTO risk_rule_sets (version, state, body, author, created_at, activated_by, activated_at) \
                 VALUES (1, 'active', $1, $2, $3, $2, $3) ON CONFLICT DO NOTHING",
                sql_params![body.as_str(), ACTOR_RISK, now],
            )?;
            if inserted == 1 {
                audit(db, now, ACTOR_RISK, "risk_rules_seeded", Some("1"), "the shipped default rule set")?;
            }
            Ok(())
        })
    }

    /// The active rule set: cached, re-read when its version changed (so an
    /// activation on any instance takes effect within seconds, no restart).
    pub fn active_rules(&self) -> Result<(i64, Arc<RuleSet>), RiskError> {
        let now = self.now();
        if let Ok(guard) = self.active.read() {
            if let Some(active) = guard.as_ref() {
                if now.saturating_sub(active.checked_at) < RULES_RECHECK_SECONDS * NANOS_PER_SECOND
                {
                    return Ok((active.version, active.rules.clone()));
                }
            }
        }
        let version = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT version FROM risk_rule_sets WHERE state = 'active'",
                    &[],
                )
            })?
            .map(|r| r.int(0))
            .transpose()?;
        let Some(version) = version else {
            return Err(RiskError::NotFound("active rule set (run the seed)"));
        };
        let cached = self.active.read().ok().and_then(|g| {
            g.as_ref()
                .filter(|a| a.version == version)
                .map(|a| a.rules.clone())
        });
        let rules = match cached {
            Some(rules) => rules,
            None => Arc::new(self.rule_set(version)?.rules),
        };
        if let Ok(mut guard) = self.active.write() {
            *guard = Some(Active {
                version,
                rules: rules.clone(),
                checked_at: now,
            });
        }
        Ok((version, rules))
    }

    /// Gathers the signals inside the caller's transaction and decides.
    /// Nothing is written: `record` stores it with the payment, or
    /// `Risk::record` in a transaction of its own after a block.
    pub fn assess(&self, db: &mut dyn Sql, attempt: &Attempt<'_>) -> Result<Assessment, RiskError> {
        let (rule_version, rule_set) = self.active_rules()?;
        let kind = attempt
            .kind
            .ok_or_else(|| RiskError::Internal("an attempt without a kind".into()))?;
        let now = self.now();
        let device = attempt
            .device
            .filter(|d| !d.is_empty())
            .map(|d| self.vault.blind_index(DEVICE_PURPOSE, d));
        let ip_index = attempt
            .ip
            .filter(|ip| !ip.is_empty())
            .map(|ip| self.vault.blind_index(IP_PURPOSE, ip));
        let customer = attempt.customer_id;
        let mut signals = Signals {
            kind: Some(kind),
            amount: attempt.amount,
            currency: attempt.currency.map(str::to_string),
            at: now,
            merchant_refund_bps: attempt.merchant_refunds.map(|(bps, _)| bps),
            merchant_payment_count: attempt.merchant_refunds.map(|(_, count)| count),
            failed_sign_ins: attempt.failed_sign_ins,
            ..Signals::default()
        };
        let flags = gather(
            db,
            &mut signals,
            Lookup {
                customer,
                counterparty: attempt.counterparty,
                device: device.as_deref(),
                ip_index: ip_index.as_deref(),
                card: attempt.card,
            },
        )?;
        if attempt.counterparty.is_some() {
            signals.new_payee = flags & SEEN_PAYEE == 0;
        }
        if device.is_some() {
            signals.new_device = flags & SEEN_DEVICE == 0;
        }
        if ip_index.is_some() {
            signals.new_ip = flags & SEEN_IP == 0;
        }
        for (bit, list) in BLOCKED {
            if flags & bit != 0 {
                signals.blocklisted.push(list);
            }
        }
        let decision = rules::evaluate(&rule_set, &signals);
        Ok(Assessment {
            id: new_id("rev"),
            customer_id: customer.to_string(),
            kind,
            subject_id: attempt.subject_id.map(str::to_string),
            counterparty: attempt.counterparty.map(str::to_string),
            device,
            ip_index,
            signals,
            decision,
            rule_version,
        })
    }

    /// Stores an evaluation in the caller's transaction (with the payment
    /// it decided, so a rolled-back payment leaves no evaluation behind).
    pub fn record(&self, db: &mut dyn Sql, assessment: &Assessment) -> Result<(), RiskError> {
        let signals = serde_json::to_string(&assessment.signals)
            .map_err(|e| RiskError::Internal(e.to_string()))?;
        let reasons = serde_json::to_string(&assessment.decision.reasons)
            .map_err(|e| RiskError::Internal(e.to_string()))?;
        db.execute(
            "INSERT INTO risk_evaluations (id, customer_id, kind, subject_id, amount, currency, counterparty, device, ip_index, \
             decision, score, reasons, signals, rule_version, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            sql_params![
                assessment.id.as_str(),
                assessment.customer_id.as_str(),
                assessment.kind.as_str(),
                assessment.subject_id.as_deref(),
                assessment.signals.amount,
                assessment.signals.currency.as_deref(),
                assessment.counterparty.as_deref(),
                assessment.device.as_deref(),
                assessment.ip_index.as_deref(),
                assessment.decision.outcome.as_str(),
                assessment.decision.score,
                reasons,
                signals,
                assessment.rule_version,
                assessment.signals.at
            ],
        )?;
        Ok(())
    }

    /// Opens a case for an evaluation in the caller's transaction, audited.
    pub fn open_case(
        &self,
        db: &mut dyn Sql,
        assessment: &Assessment,
        kind: &str,
        subject: Option<(&str, &str)>,
    ) -> Result<String, RiskError> {
        let now = self.now();
        let id = new_id("rcase");
        db.execute(
            "INSERT INTO risk_cases (id, customer_id, evaluation_id, kind, subject_kind, subject_id, state, answer, resolved_by, note, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'open', NULL, NULL, NULL, $7, $7)",
            sql_params![
                id.as_str(),
                assessment.customer_id.as_str(),
                assessment.id.as_str(),
                kind,
                subject.map(|s| s.0),
                subject.map(|s| s.1),
                now
            ],
        )?;
        audit(
            db,
            now,
            ACTOR_RISK,
            "risk_case_opened",
            Some(&assessment.customer_id),
            &format!("{id} {kind} {}", assessment.summary()),
        )?;
        Ok(id)
    }

    /// The risk side of the back office's queues overview: (queue, count,
    /// oldest item's creation time) for open and for escalated cases.
    pub fn queue_summaries(&self) -> Result<Vec<QueueSummary>, RiskError> {
        let mut queues = Vec::new();
        for (name, state) in [
            ("risk_cases", "open"),
            ("risk_cases_escalated", "escalated"),
        ] {
            let row = self.sql.run(|db| {
                db.query_one(
                    "SELECT COUNT(*), MIN(created_at) FROM risk_cases WHERE state = $1",
                    sql_params![state],
                )
            })?;
            queues.push((name, row.int(0)?, row.opt_int(1)?));
        }
        Ok(queues)
    }

    /// Closes the open cases about one payment in the caller's transaction
    /// (the payment ended without a decision: e.g. its money was gone).
    pub fn close_subject_cases(
        &self,
        db: &mut dyn Sql,
        subject_kind: &str,
        subject_id: &str,
        note: &str,
    ) -> Result<(), RiskError> {
        let now = self.now();
        let rows = db.query(
            "UPDATE risk_cases SET state = 'closed', resolved_by = $3, note = $4, updated_at = $5 \
             WHERE subject_kind = $1 AND subject_id = $2 AND state IN ('open', 'escalated') RETURNING id, customer_id",
            sql_params![subject_kind, subject_id, ACTOR_RISK, note, now],
        )?;
        for row in &rows {
            let (id, customer) = (row.text(0)?, row.text(1)?);
            audit(
                db,
                now,
                ACTOR_RISK,
                "risk_case_closed",
                Some(&customer),
                &format!("{id} {note}"),
            )?;
        }
        Ok(())
    }

    pub fn case(&self, case_id: &str) -> Result<Case, RiskError> {
        self.sql
            .run(|db| {
                db.query_opt(
                    &format!("{SELECT_CASE} WHERE c.id = $1"),
                    sql_params![case_id],
                )
            })?
            .map(|r| case(&r))
            .transpose()?
            .ok_or(RiskError::NotFound("case"))
    }

    /// Cases, newest first, optionally in one state or of one customer.
    pub fn cases(
        &self,
        state: Option<&str>,
        customer_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Case>, RiskError> {
        let rows = self.sql.run(|db| {
            db.query(
                &format!(
                    "{SELECT_CASE} WHERE (CAST($1 AS TEXT) IS NULL OR c.state = $1) AND (CAST($2 AS TEXT) IS NULL OR c.customer_id = $2) \
                     ORDER BY c.created_at DESC, c.id LIMIT $3"
                ),
                sql_params![state, customer_id, limit.clamp(1, PAGE_MAX)],
            )
        })?;
        rows.iter().map(case).collect()
    }

    /// Moves a case from an actionable state to `to`, in the caller's
    /// transaction and audited with `actor`; refuses a settled case (two
    /// analysts, or an analyst and the customer, racing: one wins).
    pub fn transition(
        &self,
        db: &mut dyn Sql,
        case_id: &str,
        to: &str,
        actor: &str,
        answer: Option<&str>,
        note: &str,
    ) -> Result<Case, RiskError> {
        let now = self.now();
        let current = db
            .query_opt(
                &format!("{SELECT_CASE} WHERE c.id = $1"),
                sql_params![case_id],
            )?
            .map(|r| case(&r))
            .transpose()?
            .ok_or(RiskError::NotFound("case"))?;
        let changed = db.execute(
            "UPDATE risk_cases SET state = $2, resolved_by = $3, note = $4, answer = COALESCE($5, answer), updated_at = $6 \
             WHERE id = $1 AND state IN ('open', 'escalated') AND ($2 <> 'escalated' OR state = 'open')",
            sql_params![case_id, to, actor, note, answer, now],
        )?;
        if changed != 1 {
            return Err(RiskError::CaseClosed(current.state));
        }
        audit(
            db,
            now,
            actor,
            &format!("risk_case_{to}"),
            Some(&current.customer_id),
            &format!("{case_id} {note}"),
        )?;
        db.query_one(
            &format!("{SELECT_CASE} WHERE c.id = $1"),
            sql_params![case_id],
        )
        .map_err(RiskError::from)
        .and_then(|r| case(&r))
    }

    // ---- rule sets ------------------------------------------------------------------

    pub fn rule_set(&self, version: i64) -> Result<RuleSetVersion, RiskError> {
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT version, state, body, author, created_at, activated_by, activated_at FROM risk_rule_sets WHERE version = $1",
                    sql_params![version],
                )
            })?
            .ok_or(RiskError::NotFound("rule set"))?;
        rule_set_version(&row)
    }

    pub fn rule_sets(&self, limit: i64) -> Result<Vec<RuleSetVersion>, RiskError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT version, state, body, author, created_at, activated_by, activated_at FROM risk_rule_sets ORDER BY version DESC LIMIT $1",
                sql_params![limit.clamp(1, PAGE_MAX)],
            )
        })?;
        rows.iter().map(rule_set_version).collect()
    }

    /// Stores a validated draft as the next version; audited.
    pub fn create_draft(&self, author: &str, json: &str) -> Result<RuleSetVersion, RiskError> {
        let rule_set = rules::parse(json).map_err(RiskError::InvalidRules)?;
        let body =
            serde_json::to_string(&rule_set).map_err(|e| RiskError::Internal(e.to_string()))?;
        let now = self.now();
        let version = self.sql.transaction(|db| -> Result<i64, RiskError> {
            // The audit head serializes concurrent drafts; the primary key
            // refuses a duplicate version if two raced anyway.
            let next = db
                .query_one("SELECT COALESCE(MAX(version), 0) + 1 FROM risk_rule_sets", &[])?
                .int(0)?;
            db.execute(
                "INSERT INTO risk_rule_sets (version, state, body, author, created_at, activated_by, activated_at) \
                 VALUES ($1, 'draft', $2, $3, $4, NULL, NULL)",
                sql_params![next, body.as_str(), author, now],
            )?;
            audit(db, now, author, "risk_rules_drafted", Some(&next.to_string()), &format!("{} rules", rule_set.rules.len()))?;
            Ok(next)
        })?;
        self.rule_set(version)
    }

    /// Makes a draft the active set (the previous one retired) in one
    /// transaction, audited; this instance uses it at once, others within
    /// `RULES_RECHECK_SECONDS`.
    pub fn activate(&self, actor: &str, version: i64) -> Result<RuleSetVersion, RiskError> {
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), RiskError> {
            let state = db
                .query_opt(
                    "SELECT state FROM risk_rule_sets WHERE version = $1",
                    sql_params![version],
                )?
                .ok_or(RiskError::NotFound("rule set"))?
                .text(0)?;
            if state != "draft" {
                return Err(RiskError::NotDraft(version));
            }
            let previous = db
                .query_opt("SELECT version FROM risk_rule_sets WHERE state = 'active'", &[])?
                .map(|r| r.int(0))
                .transpose()?;
            db.execute(
                "UPDATE risk_rule_sets SET state = 'retired' WHERE state = 'active'",
                &[],
            )?;
            let changed = db.execute(
                "UPDATE risk_rule_sets SET state = 'active', activated_by = $2, activated_at = $3 WHERE version = $1 AND state = 'draft'",
                sql_params![version, actor, now],
            )?;
            if changed != 1 {
                return Err(RiskError::NotDraft(version));
            }
            audit(
                db,
                now,
                actor,
                "risk_rules_activated",
                Some(&version.to_string()),
                &format!("replaces version {}", previous.map_or("none".into(), |v| v.to_string())),
            )
        })?;
        let activated = self.rule_set(version)?;
        if let Ok(mut guard) = self.active.write() {
            *guard = Some(Active {
                version,
                rules: Arc::new(activated.rules.clone()),
                checked_at: now,
            });
        }
        Ok(activated)
    }

    /// Replays the most recent stored evaluations (at most `limit`) against
    /// a rule set version: their stored inputs, their history rebuilt as it
    /// was at the time, and reports what would have changed.
    pub fn dry_run(&self, version: i64, limit: i64) -> Result<DryRun, RiskError> {
        let draft = self.rule_set(version)?.rules;
        let limit = limit.clamp(1, DRY_RUN_EVALUATIONS_MAX);
        let mut decided = [0i64; 4];
        let mut would = [0i64; 4];
        let mut changed = 0;
        let mut examples = Vec::new();
        let mut since = None;
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT id, customer_id, decision, signals, created_at FROM risk_evaluations ORDER BY created_at DESC LIMIT $1",
                sql_params![limit],
            )
        })?;
        for row in &rows {
            let customer = row.text(1)?;
            let was = Outcome::parse(&row.text(2)?).ok_or_else(|| corrupt("risk decision"))?;
            let mut signals: Signals =
                serde_json::from_str(&row.text(3)?).map_err(|_| corrupt("risk signals"))?;
            signals.at = row.int(4)?;
            since = Some(signals.at);
            self.sql.run(|db| {
                // Only the history is rebuilt: the flags were stored with it.
                let lookup = Lookup {
                    customer: &customer,
                    counterparty: None,
                    device: None,
                    ip_index: None,
                    card: None,
                };
                gather(db, &mut signals, lookup)
                    .map(drop)
                    .map_err(|e| match e {
                        RiskError::Store(e) => e,
                        other => StoreError::Corrupt(other.to_string()),
                    })
            })?;
            let decision = rules::evaluate(&draft, &signals);
            decided[was as usize] += 1;
            would[decision.outcome as usize] += 1;
            if decision.outcome != was {
                changed += 1;
                if examples.len() < DRY_RUN_EXAMPLES_MAX {
                    examples.push(DryRunExample {
                        evaluation_id: row.text(0)?,
                        customer_id: customer,
                        kind: signals.kind.ok_or_else(|| corrupt("risk kind"))?,
                        amount: signals.amount,
                        at: signals.at,
                        decided: was,
                        would_decide: decision.outcome,
                        reasons: decision.reasons,
                    });
                }
            }
        }
        Ok(DryRun {
            version,
            evaluations: i64::try_from(rows.len()).unwrap_or(i64::MAX),
            since,
            decided: Outcome::ALL
                .iter()
                .map(|o| (*o, decided[*o as usize]))
                .collect(),
            would_decide: Outcome::ALL
                .iter()
                .map(|o| (*o, would[*o as usize]))
                .collect(),
            changed,
            examples,
        })
    }

    // ---- blocklist ------------------------------------------------------------------

    /// The stored form of a listed value: devices and IPs as keyed hashes.
    fn block_value(&self, list: BlockList, value: &str) -> String {
        match list {
            BlockList::Device => self.vault.blind_index(DEVICE_PURPOSE, value),
            BlockList::Ip => self.vault.blind_index(IP_PURPOSE, value),
            BlockList::Payee | BlockList::Card => value.to_string(),
        }
    }

    pub fn block(
        &self,
        actor: &str,
        list: BlockList,
        value: &str,
        reason: &str,
    ) -> Result<BlockEntry, RiskError> {
        let value = value.trim();
        if value.is_empty() || value.len() > 200 {
            return Err(RiskError::invalid("value", "1 to 200 characters"));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 300 {
            return Err(RiskError::invalid(
                "reason",
                "say why, in at most 300 characters",
            ));
        }
        let stored = self.block_value(list, value);
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), RiskError> {
            db.execute(
                "INSERT INTO risk_blocklist (kind, value, reason, created_by, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT DO NOTHING",
                sql_params![list.as_str(), stored.as_str(), reason, actor, now],
            )?;
            audit(db, now, actor, "risk_blocklisted", None, &format!("{} {stored} {reason}", list.as_str()))
        })?;
        Ok(BlockEntry {
            list,
            value: stored,
            reason: reason.to_string(),
            created_by: actor.to_string(),
            created_at: now,
        })
    }

    pub fn unblock(&self, actor: &str, list: BlockList, value: &str) -> Result<(), RiskError> {
        let stored = self.block_value(list, value.trim());
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), RiskError> {
            let removed = db.execute(
                "DELETE FROM risk_blocklist WHERE kind = $1 AND value = $2",
                sql_params![list.as_str(), stored.as_str()],
            )?;
            if removed != 1 {
                return Err(RiskError::NotFound("blocklist entry"));
            }
            audit(
                db,
                now,
                actor,
                "risk_unblocked",
                None,
                &format!("{} {stored}", list.as_str()),
            )
        })
    }

    pub fn blocklist(&self, limit: i64) -> Result<Vec<BlockEntry>, RiskError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT kind, value, reason, created_by, created_at FROM risk_blocklist ORDER BY created_at DESC LIMIT $1",
                sql_params![limit.clamp(1, PAGE_MAX)],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(BlockEntry {
                    list: BlockList::parse(&r.text(0)?).ok_or_else(|| corrupt("blocklist kind"))?,
                    value: r.text(1)?,
                    reason: r.text(2)?,
                    created_by: r.text(3)?,
                    created_at: r.int(4)?,
                })
            })
            .collect()
    }

    /// A customer's evaluations, newest first (the back office's risk history).
    pub fn evaluations_of(
        &self,
        customer_id: &str,
        limit: i64,
    ) -> Result<Vec<EvaluationSummary>, RiskError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT id, kind, amount, decision, score, created_at, reasons FROM risk_evaluations WHERE customer_id = $1 ORDER BY created_at DESC LIMIT $2",
                sql_params![customer_id, limit.clamp(1, PAGE_MAX)],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(EvaluationSummary {
                    id: r.text(0)?,
                    kind: r.text(1)?,
                    amount: r.opt_int(2)?,
                    decision: r.text(3)?,
                    score: r.int(4)?,
                    at: r.int(5)?,
                    reasons: serde_json::from_str(&r.text(6)?)
                        .map_err(|_| corrupt("risk reasons"))?,
                })
            })
            .collect()
    }
}

/// One stored evaluation as the back office lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationSummary {
    pub id: String,
    pub kind: String,
    /// Minor units of the rule set's currency; none for a sign-in.
    pub amount: Option<i64>,
    pub decision: String,
    pub score: i64,
    /// Nanoseconds since the epoch.
    pub at: i64,
    /// Why: the rules that matched.
    pub reasons: Vec<Reason>,
}

/// The customer's payments before `signals.at` (newest first) and the
/// largest ever: two index range reads on (customer_id, created_at) and
/// (customer_id, amount).
/// What `gather` looks up, as stored (device and IP as blind indexes).
struct Lookup<'a> {
    customer: &'a str,
    counterparty: Option<&'a str>,
    device: Option<&'a str>,
    ip_index: Option<&'a str>,
    card: Option<&'a str>,
}

const SEEN_PAYEE: i64 = 1;
const SEEN_DEVICE: i64 = 2;
const SEEN_IP: i64 = 4;
const BLOCKED: [(i64, BlockList); 4] = [
    (8, BlockList::Payee),
    (16, BlockList::Device),
    (32, BlockList::Card),
    (64, BlockList::Ip),
];

/// Every stored signal in ONE statement: a payment waits for this, and on
/// PostgreSQL each statement is a network round trip (six separate reads
/// put the p99 at 2.2 ms, over the 1 ms budget). The first row (tag 0)
/// carries the largest earlier payment and the seen/blocklisted flags as
/// bits; the rows after it (tag 1) are the recent history. Earlier
/// evaluations that were blocked do not count as usual behaviour.
const GATHER: &str = "SELECT CAST(0 AS BIGINT), \
       (SELECT MAX(amount) FROM risk_evaluations WHERE customer_id = $1 AND created_at < $2 \
        AND amount IS NOT NULL AND currency = $3 AND decision <> 'block_and_freeze'), \
       CAST((CASE WHEN EXISTS (SELECT 1 FROM risk_evaluations WHERE customer_id = $1 AND counterparty = $5 AND decision <> 'block_and_freeze') THEN 1 ELSE 0 END) \
       + (CASE WHEN EXISTS (SELECT 1 FROM risk_evaluations WHERE customer_id = $1 AND device = $6 AND decision <> 'block_and_freeze') THEN 2 ELSE 0 END) \
       + (CASE WHEN EXISTS (SELECT 1 FROM risk_evaluations WHERE customer_id = $1 AND ip_index = $7 AND decision <> 'block_and_freeze') THEN 4 ELSE 0 END) \
       + (CASE WHEN EXISTS (SELECT 1 FROM risk_blocklist WHERE kind = 'payee' AND value = $5) THEN 8 ELSE 0 END) \
       + (CASE WHEN EXISTS (SELECT 1 FROM risk_blocklist WHERE kind = 'device' AND value = $6) THEN 16 ELSE 0 END) \
       + (CASE WHEN EXISTS (SELECT 1 FROM risk_blocklist WHERE kind = 'card' AND value = $8) THEN 32 ELSE 0 END) \
       + (CASE WHEN EXISTS (SELECT 1 FROM risk_blocklist WHERE kind = 'ip' AND value = $7) THEN 64 ELSE 0 END) AS BIGINT) \
     UNION ALL \
     SELECT CAST(1 AS BIGINT), h.created_at, h.amount FROM ( \
       SELECT created_at, amount FROM risk_evaluations WHERE customer_id = $1 AND created_at < $2 \
       AND amount IS NOT NULL AND currency = $3 AND decision <> 'block_and_freeze' ORDER BY created_at DESC LIMIT $4) h";

/// Fills `history` and `largest_before` (for a payment with a currency)
/// and returns the flags row's bits.
fn gather(db: &mut dyn Sql, signals: &mut Signals, lookup: Lookup<'_>) -> Result<i64, RiskError> {
    let limit = i64::try_from(HISTORY_MAX).unwrap_or(100);
    let rows = db.query(
        GATHER,
        sql_params![
            lookup.customer,
            signals.at,
            signals.currency.as_deref(),
            limit,
            lookup.counterparty,
            lookup.device,
            lookup.ip_index,
            lookup.card
        ],
    )?;
    let mut flags = None;
    for row in &rows {
        if row.int(0)? == 0 {
            signals.largest_before = row.opt_int(1)?;
            flags = Some(row.int(2)?);
        } else {
            signals.history.push(Past {
                at: row.int(1)?,
                amount: row.int(2)?,
            });
        }
    }
    // A UNION does not promise the subquery's order: newest first again.
    signals.history.sort_by_key(|p| std::cmp::Reverse(p.at));
    flags.ok_or_else(|| corrupt("risk signals without their flags row"))
}

fn rule_set_version(row: &Row) -> Result<RuleSetVersion, RiskError> {
    Ok(RuleSetVersion {
        version: row.int(0)?,
        state: row.text(1)?,
        rules: serde_json::from_str(&row.text(2)?).map_err(|_| corrupt("risk rule set body"))?,
        author: row.text(3)?,
        created_at: row.int(4)?,
        activated_by: row.opt_text(5)?,
        activated_at: row.opt_int(6)?,
    })
}
