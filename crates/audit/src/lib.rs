//! The audit log: an append-only, hash-chained record of every security
//! event and staff action (who, what, when, from where, outcome).
//!
//! Each record's hash is SHA-256(previous record's hash ‖ canonical bytes of
//! the record), the first chaining from 32 zero bytes, exactly like the
//! ledger journal (crates/ledger/src/journal.rs). The canonical bytes cover
//! the record's `seq` as well as every field, so changing a field, deleting a
//! record or swapping two breaks the chain at the first record touched, and
//! [`verify`] names it.
//!
//! Records are appended inside the caller's transaction, so a record exists
//! exactly when the action it describes committed. Sequence numbers are
//! assigned here (previous + 1) through the one-row `audit_head` table: the
//! append's first statement increments it, which on PostgreSQL row-locks it
//! until the caller commits, so concurrent appends queue there and each sees
//! the hash its predecessor committed (SQLite transactions from `SqlStore`
//! are `BEGIN IMMEDIATE` and already one at a time). The head also records
//! the last hash, which is how `verify` notices records cut off the end.
//!
//! What the chain cannot do: someone able to rewrite every record after the
//! one they changed *and* the head goes unnoticed. Anchoring the head hash
//! outside the database (a periodic signed export) closes that; it is not
//! built yet.

use coffer_store::sql::{Row, Sql};
use coffer_store::{sql_params, StoreError};
use sha2::{Digest, Sha256};

pub type AuditHash = [u8; 32];

/// The hash the first record chains from.
pub const GENESIS_HASH: AuditHash = [0; 32];

/// Prefixes every record's canonical bytes: a record hash can never be
/// mistaken for a journal hash or any other SHA-256 in the system.
const DOMAIN: &str = "coffer-audit-v1";

/// The actor of an event caused by someone not signed in.
pub const ACTOR_ANONYMOUS: &str = "anonymous";
/// The actor of an event the system decided on its own (a lock-out).
pub const ACTOR_SYSTEM: &str = "system";

/// Bound on actor, action, subject and ip: ids and names, never prose.
pub const FIELD_BYTES_MAX: usize = 200;
pub const DETAIL_BYTES_MAX: usize = 2_000;
/// Most records one call to [`entries`] returns.
pub const ENTRIES_LIMIT_MAX: usize = 500;
/// Records `verify` reads per query: memory stays flat however long the log.
const VERIFY_PAGE_ROWS: i64 = 1_000;

/// The actor string of a signed-in customer.
pub fn customer_actor(customer_id: &str) -> String {
    format!("customer:{customer_id}")
}

/// The actor string of a member of the bank's staff.
pub fn staff_actor(staff_id: &str) -> String {
    format!("staff:{staff_id}")
}

/// How the action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused by a rule: wrong credentials, not permitted, throttled.
    Refused,
    /// Failed on our side.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// A record to append. `detail` is free text for people, and like every
/// other field it must never hold a secret (password, code, token, contact):
/// the log is kept for years and shown to staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Nanoseconds since the epoch, from the caller's clock.
    pub at: i64,
    /// `customer:<id>`, `staff:<id>`, `anonymous` or `system`.
    pub actor: &'a str,
    /// A stable snake_case verb: `signed_in`, `session_revoked`…
    pub action: &'a str,
    /// What was acted on, when it has an id (a customer, a session…).
    pub subject: Option<&'a str>,
    pub ip: &'a str,
    pub outcome: Outcome,
    pub detail: &'a str,
}

/// A stored record, as the staff viewer shows it. `outcome` is the stored
/// text, so a record that was tampered with can still be displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub ip: String,
    pub outcome: String,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit record field {field} is empty")]
    EmptyField { field: &'static str },
    #[error("audit record field {field} is longer than {max} bytes")]
    FieldTooLong { field: &'static str, max: usize },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The fields that are hashed, borrowed from an `Entry` or a stored row.
struct Fields<'a> {
    seq: i64,
    at: i64,
    actor: &'a str,
    action: &'a str,
    subject: Option<&'a str>,
    ip: &'a str,
    outcome: &'a str,
    detail: &'a str,
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    out.extend_from_slice(&(value.len() as u64).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
}

impl Fields<'_> {
    /// Fixed-width integers and length-prefixed strings: no two different
    /// records share canonical bytes (no separator can be smuggled in).
    fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.detail.len());
        put_str(&mut out, DOMAIN);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.at.to_be_bytes());
        put_str(&mut out, self.actor);
        put_str(&mut out, self.action);
        match self.subject {
            None => out.push(0),
            Some(subject) => {
                out.push(1);
                put_str(&mut out, subject);
            }
        }
        put_str(&mut out, self.ip);
        put_str(&mut out, self.outcome);
        put_str(&mut out, self.detail);
        out
    }

    fn hash(&self, previous: &AuditHash) -> AuditHash {
        let mut hasher = Sha256::new();
        hasher.update(previous);
        hasher.update(self.canonical());
        hasher.finalize().into()
    }
}

impl Entry<'_> {
    fn check(&self) -> Result<(), AuditError> {
        for (field, value) in [("actor", self.actor), ("action", self.action)] {
            if value.is_empty() {
                return Err(AuditError::EmptyField { field });
            }
        }
        let fields = [
            ("actor", self.actor, FIELD_BYTES_MAX),
            ("action", self.action, FIELD_BYTES_MAX),
            ("subject", self.subject.unwrap_or(""), FIELD_BYTES_MAX),
            ("ip", self.ip, FIELD_BYTES_MAX),
            ("detail", self.detail, DETAIL_BYTES_MAX),
        ];
        for (field, value, max) in fields {
            if value.len() > max {
                return Err(AuditError::FieldTooLong { field, max });
            }
        }
        Ok(())
    }
}

/// Appends one record and returns its seq. Call it inside the caller's
/// transaction (`SqlStore::transaction`), never in autocommit, so the record
/// commits with the action or not at all; call it last there, because from
/// its first statement until commit every other append waits.
pub fn append(db: &mut dyn Sql, entry: &Entry<'_>) -> Result<i64, AuditError> {
    entry.check()?;
    let head = db.query_one(
        "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash",
        &[],
    )?;
    let seq = head.int(0)?;
    let previous = stored_hash(&head.bytes(1)?)
        .ok_or_else(|| StoreError::Corrupt("audit_head.hash is not a 32-byte hash".to_string()))?;
    let fields = Fields {
        seq,
        at: entry.at,
        actor: entry.actor,
        action: entry.action,
        subject: entry.subject,
        ip: entry.ip,
        outcome: entry.outcome.as_str(),
        detail: entry.detail,
    };
    let hash = fields.hash(&previous);
    db.execute(
        "INSERT INTO audit_log (seq, at, actor, action, subject, ip, outcome, detail, previous_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        sql_params![
            seq,
            entry.at,
            entry.actor,
            entry.action,
            entry.subject,
            entry.ip,
            entry.outcome.as_str(),
            entry.detail,
            &previous[..],
            &hash[..]
        ],
    )?;
    db.execute(
        "UPDATE audit_head SET hash = $1 WHERE id = 1",
        sql_params![&hash[..]],
    )?;
    Ok(seq)
}

fn stored_hash(bytes: &[u8]) -> Option<AuditHash> {
    AuditHash::try_from(bytes).ok()
}

/// Which records [`entries`] returns: all filters must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter<'a> {
    pub actor: Option<&'a str>,
    pub subject: Option<&'a str>,
    /// Only records older than this seq: the next page of a newest-first list.
    pub before_seq: Option<i64>,
    /// At most this many, capped at [`ENTRIES_LIMIT_MAX`].
    pub limit: usize,
}

impl Default for Filter<'_> {
    fn default() -> Self {
        Filter {
            actor: None,
            subject: None,
            before_seq: None,
            limit: 50,
        }
    }
}

const RECORD_COLUMNS: &str = "seq, at, actor, action, subject, ip, outcome, detail";

fn record(row: &Row) -> Result<Record, StoreError> {
    Ok(Record {
        seq: row.int(0)?,
        at: row.int(1)?,
        actor: row.text(2)?,
        action: row.text(3)?,
        subject: row.opt_text(4)?,
        ip: row.text(5)?,
        outcome: row.text(6)?,
        detail: row.text(7)?,
    })
}

/// Records matching `filter`, newest first.
pub fn entries(db: &mut dyn Sql, filter: &Filter<'_>) -> Result<Vec<Record>, AuditError> {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    for (column, value) in [("actor", filter.actor), ("subject", filter.subject)] {
        if let Some(value) = value {
            params.push(value.into());
            conditions.push(format!("{column} = ${}", params.len()));
        }
    }
    if let Some(before) = filter.before_seq {
        params.push(before.into());
        conditions.push(format!("seq < ${}", params.len()));
    }
    let limit = filter.limit.clamp(1, ENTRIES_LIMIT_MAX);
    params.push((limit as i64).into());
    let limit_param = params.len();
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let rows = db.query(
        &format!(
            "SELECT {RECORD_COLUMNS} FROM audit_log{filter_sql} ORDER BY seq DESC LIMIT ${limit_param}"
        ),
        &params,
    )?;
    Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
}

/// The seq of the last record appended (0 for an empty log): a progress
/// bar's total for [`verify`].
pub fn head_seq(db: &mut dyn Sql) -> Result<i64, AuditError> {
    Ok(db
        .query_opt("SELECT seq FROM audit_head WHERE id = 1", &[])?
        .map(|row| row.int(0))
        .transpose()?
        .unwrap_or(0))
}

/// What is wrong at the first broken seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No record with this seq, though later ones (or the head) exist:
    /// deleted, or renumbered.
    Missing,
    /// A seq that cannot follow the previous record (zero or negative).
    OutOfSequence,
    /// The record's previous hash is not the hash of the record before it.
    PreviousHashMismatch,
    /// The record's fields do not hash to its stored hash: changed.
    HashMismatch,
    /// A column holds something no append writes (wrong type, wrong size).
    Unreadable(String),
    /// The last record is not the one the head names.
    HeadMismatch,
    /// Records beyond the head's seq: inserted past the appender.
    BeyondHead,
    /// The head row is gone: records after this seq may have been cut off.
    HeadMissing,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing => write!(f, "record missing (deleted or renumbered)"),
            Problem::OutOfSequence => write!(f, "record out of sequence"),
            Problem::PreviousHashMismatch => write!(
                f,
                "previous hash does not match the record before (reordered or replaced)"
            ),
            Problem::HashMismatch => write!(f, "hash does not match the record's fields (changed)"),
            Problem::Unreadable(why) => write!(f, "record unreadable: {why}"),
            Problem::HeadMismatch => write!(f, "the chain's head names a different last record"),
            Problem::BeyondHead => write!(f, "records exist beyond the chain's head (inserted)"),
            Problem::HeadMissing => write!(f, "the chain's head is missing"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub seq: i64,
    pub problem: Problem,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq {}: {}", self.seq, self.problem)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Records read (those up to the head when verification started).
    pub entries: u64,
    /// The head's seq when verification started.
    pub head_seq: i64,
    /// The first break in the chain, if any.
    pub broken: Option<Break>,
}

impl AuditReport {
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }

    fn flag(&mut self, seq: i64, problem: Problem) {
        if self.broken.is_none() {
            self.broken = Some(Break { seq, problem });
        }
    }
}

/// One stored row, read without trusting it.
struct Stored {
    record: Record,
    previous_hash: Vec<u8>,
    hash: Vec<u8>,
}

fn stored(row: &Row) -> Result<Stored, StoreError> {
    Ok(Stored {
        record: record(row)?,
        previous_hash: row.bytes(8)?,
        hash: row.bytes(9)?,
    })
}

/// Recomputes the chain from the stored rows and reports the first break.
/// Safe to run beside live appends: it checks the records up to the head as
/// it was when it started (appends commit a record and the head together).
/// `progress` is called with the number of records read so far.
pub fn verify(db: &mut dyn Sql, progress: &mut dyn FnMut(u64)) -> Result<AuditReport, AuditError> {
    let mut report = AuditReport::default();
    let head = db.query_opt("SELECT seq, hash FROM audit_head WHERE id = 1", &[])?;
    let head = match head {
        Some(row) => Some((row.int(0)?, row.bytes(1)?)),
        None => None,
    };
    let last_seq_checked = head.as_ref().map_or(i64::MAX, |(seq, _)| *seq);
    report.head_seq = head.as_ref().map_or(0, |(seq, _)| *seq);
    let mut previous_seq = 0i64;
    let mut previous_hash = GENESIS_HASH.to_vec();
    let mut after = i64::MIN;
    loop {
        let rows = db.query(
            &format!(
                "SELECT {RECORD_COLUMNS}, previous_hash, hash FROM audit_log \
                 WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
            ),
            sql_params![after, last_seq_checked, VERIFY_PAGE_ROWS],
        )?;
        let Some(last) = rows.last() else { break };
        after = last.int(0)?;
        for row in &rows {
            report.entries += 1;
            let seq = row.int(0)?;
            check_row(&mut report, row, seq, previous_seq, &previous_hash);
            previous_seq = seq;
            previous_hash = row.bytes(9).unwrap_or_default();
        }
        progress(report.entries);
    }
    progress(report.entries);
    match head {
        None => report.flag(previous_seq + 1, Problem::HeadMissing),
        Some((head_seq, head_hash)) => {
            if previous_seq < head_seq {
                report.flag(previous_seq + 1, Problem::Missing);
            } else if previous_hash != head_hash {
                report.flag(head_seq, Problem::HeadMismatch);
            }
            // Read the newest record before the head: every committed record
            // is at or below any head read after it.
            let newest = db
                .query_one("SELECT MAX(seq) FROM audit_log", &[])?
                .opt_int(0)?;
            let head_now = head_seq_now(db)?;
            if let (Some(newest), Some(head_now)) = (newest, head_now) {
                if newest > head_now {
                    report.flag(head_now + 1, Problem::BeyondHead);
                }
            }
        }
    }
    Ok(report)
}

fn head_seq_now(db: &mut dyn Sql) -> Result<Option<i64>, StoreError> {
    db.query_opt("SELECT seq FROM audit_head WHERE id = 1", &[])?
        .map(|row| row.int(0))
        .transpose()
}

fn check_row(
    report: &mut AuditReport,
    row: &Row,
    seq: i64,
    previous_seq: i64,
    previous_hash: &[u8],
) {
    if seq <= previous_seq {
        report.flag(seq, Problem::OutOfSequence);
        return;
    }
    if seq > previous_seq + 1 {
        report.flag(previous_seq + 1, Problem::Missing);
        return;
    }
    let stored = match stored(row) {
        Ok(stored) => stored,
        Err(error) => {
            report.flag(seq, Problem::Unreadable(error.to_string()));
            return;
        }
    };
    if stored.previous_hash != previous_hash {
        report.flag(seq, Problem::PreviousHashMismatch);
        return;
    }
    let Some(previous) = stored_hash(&stored.previous_hash) else {
        report.flag(
            seq,
            Problem::Unreadable("previous hash is not 32 bytes".into()),
        );
        return;
    };
    let r = &stored.record;
    let recomputed = Fields {
        seq,
        at: r.at,
        actor: &r.actor,
        action: &r.action,
        subject: r.subject.as_deref(),
        ip: &r.ip,
        outcome: &r.outcome,
        detail: &r.detail,
    }
    .hash(&previous);
    if stored.hash != recomputed {
        report.flag(seq, Problem::HashMismatch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(seq: i64, detail: &'a str, subject: Option<&'a str>) -> Fields<'a> {
        Fields {
            seq,
            at: 7,
            actor: "customer:cus_1",
            action: "signed_in",
            subject,
            ip: "203.0.113.7",
            outcome: "ok",
            detail,
        }
    }

    #[test]
    fn every_field_and_the_previous_hash_change_the_hash() {
        let base = fields(1, "", None).hash(&GENESIS_HASH);
        assert_ne!(base, fields(2, "", None).hash(&GENESIS_HASH));
        assert_ne!(base, fields(1, "x", None).hash(&GENESIS_HASH));
        assert_ne!(base, fields(1, "", Some("")).hash(&GENESIS_HASH));
        assert_ne!(base, fields(1, "", None).hash(&[1; 32]));
    }

    #[test]
    fn length_prefixes_keep_field_boundaries() {
        // "ab" + "c" and "a" + "bc" must not hash alike.
        let mut one = fields(1, "c", None);
        one.ip = "ab";
        let mut two = fields(1, "bc", None);
        two.ip = "a";
        assert_ne!(one.canonical(), two.canonical());
    }

    #[test]
    fn entries_are_checked_before_anything_is_written() {
        let long = "x".repeat(DETAIL_BYTES_MAX + 1);
        let entry = Entry {
            at: 0,
            actor: "system",
            action: "",
            subject: None,
            ip: "",
            outcome: Outcome::Ok,
            detail: "",
        };
        assert!(matches!(
            entry.check(),
            Err(AuditError::EmptyField { field: "action" })
        ));
        let entry = Entry {
            action: "noted",
            detail: &long,
            ..entry
        };
        assert!(matches!(
            entry.check(),
            Err(AuditError::FieldTooLong {
                field: "detail",
                ..
            })
        ));
    }
}
