//! Finishing a rotation: re-encrypting stored values under the active data
//! key, and re-wrapping the data keys under a new master key.
//!
//! Re-encryption walks each encrypted column by primary key in small pages
//! and rewrites only values under keys older than the active one, each in a
//! transaction of its own that changes the row only if it still holds the
//! ciphertext that was read (compare-and-swap): a customer's concurrent
//! write is never overwritten with older data, it is read again instead.
//! No cursor is kept: a stopped run simply starts again, skipping values
//! already moved (a read, no write), and a fresh scan also catches values a
//! not-yet-refreshed instance wrote behind an earlier run's position.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;

use coffer_store::sql::Value;
use coffer_store::sql_params;

use crate::{key_rows, Requester, Vault, VaultError, INDEX_KEY_ID};

/// Rows read per page of a column walk.
pub const REENCRYPT_BATCH_ROWS: usize = 200;
/// Values between two progress reports (each a chance to stop the run).
pub const REENCRYPT_PROGRESS_ROWS: usize = 50;
/// Times one row is read again when it changed between read and write.
const CONFLICT_RETRIES_MAX: u32 = 5;

/// A column holding vault ciphertexts. Every crate that stores encrypted
/// values lists its columns, and a test checks that the lists name every
/// `_enc` column of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptedColumn {
    pub table: &'static str,
    /// The table's single-column primary key, to page by.
    pub key: &'static str,
    pub column: &'static str,
    /// The purpose the values were encrypted for (their associated data).
    pub context: &'static str,
}

impl EncryptedColumn {
    pub fn name(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }
}

/// Where a re-encryption run is, after each page.
#[derive(Debug, Clone)]
pub struct Progress {
    pub column: EncryptedColumn,
    /// Values looked at so far, over all columns.
    pub scanned: u64,
    pub reencrypted: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReencryptReport {
    /// The data key values were moved to.
    pub target: String,
    pub scanned: u64,
    pub reencrypted: u64,
    /// Rows that changed between read and write and were read again.
    pub conflicts: u64,
    /// The run was stopped before the last column's end.
    pub stopped: bool,
    /// Values still under older keys after the run (a stopped run, or a
    /// write meanwhile by an instance that had not switched keys yet).
    pub remaining: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapReport {
    /// The master key every data key is wrapped by now.
    pub master_key_id: String,
    pub rewrapped: u64,
    /// The master keys they were wrapped by before; no longer needed.
    pub previous: Vec<String>,
}

/// A data key as `coffer keys status` shows it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyView {
    pub id: String,
    pub master_key_id: String,
    pub created_at: i64,
    pub active_from: i64,
    pub retired_at: Option<i64>,
    pub active: bool,
    /// The blind-index key (not a data key; rewrapped, never rotated).
    pub index: bool,
}

/// What a column walk does with one stored value (its row key, its blob):
/// go on, or stop the walk.
type Visit<'a> = dyn FnMut(&Value, &[u8]) -> Result<ControlFlow<()>, VaultError> + 'a;

enum RowOutcome {
    Unchanged,
    Reencrypted {
        conflicts: u64,
    },
    /// Still changing after every retry: left for the next run.
    Contended {
        conflicts: u64,
    },
}

impl Vault {
    /// Every key in `data_keys`, oldest first.
    pub fn data_keys(&self) -> Result<Vec<DataKeyView>, VaultError> {
        let active = self.active_key_id();
        Ok(key_rows(&self.sql)?
            .into_iter()
            .map(|row| DataKeyView {
                active: row.id == active,
                index: row.id == INDEX_KEY_ID,
                id: row.id,
                master_key_id: row.master_key_id,
                created_at: row.created_at,
                active_from: row.active_from,
                retired_at: row.retired_at,
            })
            .collect())
    }

    /// How many values of `columns` each data key encrypts, by key id.
    pub fn census(&self, columns: &[EncryptedColumn]) -> Result<BTreeMap<String, u64>, VaultError> {
        let mut counts = BTreeMap::new();
        for column in columns {
            // Counting never stops the walk: its flow is always Continue.
            let _ = self.walk(column, &mut |_, blob| {
                let id = Vault::key_of(blob).unwrap_or("(malformed)").to_string();
                *counts.entry(id).or_insert(0) += 1;
                Ok(ControlFlow::Continue(()))
            })?;
        }
        Ok(counts)
    }

    /// Rows in `columns` (for a progress bar's length).
    pub fn count_rows(&self, columns: &[EncryptedColumn]) -> Result<u64, VaultError> {
        let mut total = 0u64;
        for column in columns {
            let row = self.sql.run(|db| {
                db.query_one(
                    &format!(
                        "SELECT COUNT(*) FROM {} WHERE {} IS NOT NULL",
                        column.table, column.column
                    ),
                    &[],
                )
            })?;
            total += u64::try_from(row.int(0)?).unwrap_or(0);
        }
        Ok(total)
    }

    /// Calls `visit` with each non-null value of `column` and its row key,
    /// a page of `REENCRYPT_BATCH_ROWS` at a time, until it breaks.
    fn walk(
        &self,
        column: &EncryptedColumn,
        visit: &mut Visit<'_>,
    ) -> Result<ControlFlow<()>, VaultError> {
        let limit = i64::try_from(REENCRYPT_BATCH_ROWS).unwrap_or(i64::MAX);
        let mut after: Option<Value> = None;
        loop {
            let rows = self.sql.run(|db| match &after {
                None => db.query(
                    &format!(
                        "SELECT {key}, {col} FROM {table} ORDER BY {key} LIMIT $1",
                        key = column.key,
                        col = column.column,
                        table = column.table
                    ),
                    sql_params![limit],
                ),
                Some(after) => db.query(
                    &format!(
                        "SELECT {key}, {col} FROM {table} WHERE {key} > $1 ORDER BY {key} LIMIT $2",
                        key = column.key,
                        col = column.column,
                        table = column.table
                    ),
                    &[after.clone(), Value::Int(limit)],
                ),
            })?;
            for row in &rows {
                let key = row.value(0)?;
                if let Some(blob) = row.opt_bytes(1)? {
                    if visit(&key, &blob)?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                after = Some(key);
            }
            if rows.len() < REENCRYPT_BATCH_ROWS {
                return Ok(ControlFlow::Continue(()));
            }
        }
    }

    /// Moves every value of `columns` that is under a data key older than
    /// the active one to the active key. Safe while services run: each row
    /// is rewritten in its own transaction only if it still holds what was
    /// read. `progress` is told after every page and may stop the run;
    /// running again resumes (values already moved are skipped). Audited.
    pub fn reencrypt(
        &self,
        columns: &[EncryptedColumn],
        now: i64,
        requester: Requester<'_>,
        progress: &mut dyn FnMut(&Progress) -> ControlFlow<()>,
    ) -> Result<ReencryptReport, VaultError> {
        // Learn keys rotated since this vault was opened, so that the
        // target is the key every instance writes with now.
        self.refresh(now)?;
        let (target, older) = {
            let keys = self.read_keys();
            (keys.active.clone(), keys.older_than_active())
        };
        let mut report = ReencryptReport {
            target: target.clone(),
            scanned: 0,
            reencrypted: 0,
            conflicts: 0,
            stopped: false,
            remaining: 0,
        };
        'columns: for column in columns {
            let mut since_report = 0usize;
            let flow = self.walk(column, &mut |key, blob| {
                report.scanned += 1;
                match self.reencrypt_row(column, key, blob, &older)? {
                    RowOutcome::Unchanged => {}
                    RowOutcome::Reencrypted { conflicts } => {
                        report.reencrypted += 1;
                        report.conflicts += conflicts;
                    }
                    RowOutcome::Contended { conflicts } => report.conflicts += conflicts,
                }
                since_report += 1;
                if since_report == REENCRYPT_PROGRESS_ROWS {
                    since_report = 0;
                    return Ok(progress(&Progress {
                        column: *column,
                        scanned: report.scanned,
                        reencrypted: report.reencrypted,
                    }));
                }
                Ok(ControlFlow::Continue(()))
            })?;
            if flow.is_break() {
                report.stopped = true;
                break 'columns;
            }
            if progress(&Progress {
                column: *column,
                scanned: report.scanned,
                reencrypted: report.reencrypted,
            })
            .is_break()
            {
                report.stopped = true;
                break 'columns;
            }
        }
        report.remaining = self
            .census(columns)?
            .iter()
            .filter(|(id, _)| older.contains(*id))
            .map(|(_, count)| count)
            .sum();
        self.sql.transaction(|db| -> Result<(), VaultError> {
            coffer_audit::append(
                db,
                &coffer_audit::Entry {
                    at: now,
                    actor: requester.actor,
                    action: "values_reencrypted",
                    subject: Some(&target),
                    ip: requester.ip,
                    outcome: coffer_audit::Outcome::Ok,
                    detail: &format!(
                        "{} of {} values moved to {target}; {} left under older keys{}",
                        report.reencrypted,
                        report.scanned,
                        report.remaining,
                        if report.stopped {
                            "; stopped early"
                        } else {
                            ""
                        }
                    ),
                },
            )?;
            Ok(())
        })?;
        Ok(report)
    }

    fn reencrypt_row(
        &self,
        column: &EncryptedColumn,
        key: &Value,
        blob: &[u8],
        older: &HashSet<String>,
    ) -> Result<RowOutcome, VaultError> {
        let stored_error = |source: VaultError| VaultError::Stored {
            table: column.table,
            column: column.column,
            row: match key {
                Value::Int(v) => v.to_string(),
                Value::Text(v) => v.clone(),
                _ => "?".to_string(),
            },
            source: Box::new(source),
        };
        let mut current = blob.to_vec();
        let mut conflicts = 0u64;
        loop {
            if !Vault::key_of(&current).is_some_and(|id| older.contains(id)) {
                return Ok(if conflicts == 0 {
                    RowOutcome::Unchanged
                } else {
                    // Rewritten meanwhile, by a writer already on a current key.
                    RowOutcome::Reencrypted { conflicts }
                });
            }
            let plaintext = self
                .decrypt(column.context, &current)
                .map_err(stored_error)?;
            let fresh = self.encrypt(column.context, plaintext.expose())?;
            let swapped = self.sql.transaction(|db| {
                db.execute(
                    &format!(
                        "UPDATE {table} SET {col} = $1 WHERE {key} = $2 AND {col} = $3",
                        table = column.table,
                        col = column.column,
                        key = column.key
                    ),
                    &[
                        Value::Bytes(fresh),
                        key.clone(),
                        Value::Bytes(current.clone()),
                    ],
                )
            })?;
            if swapped == 1 {
                return Ok(RowOutcome::Reencrypted { conflicts });
            }
            // Changed (or erased) since it was read: decide again on what is there now.
            conflicts += 1;
            if conflicts > u64::from(CONFLICT_RETRIES_MAX) {
                return Ok(RowOutcome::Contended { conflicts });
            }
            let now_stored = self.sql.run(|db| {
                db.query_opt(
                    &format!(
                        "SELECT {col} FROM {table} WHERE {key} = $1",
                        table = column.table,
                        col = column.column,
                        key = column.key
                    ),
                    std::slice::from_ref(key),
                )
            })?;
            match now_stored
                .map(|row| row.opt_bytes(0))
                .transpose()?
                .flatten()
            {
                Some(value) => current = value,
                None => return Ok(RowOutcome::Unchanged),
            }
        }
    }

    /// Re-wraps every data key (and the blind-index key) not wrapped by the
    /// current master key, in one transaction with its audit record. After
    /// it, the previous master keys are no longer needed.
    pub fn rewrap(&self, now: i64, requester: Requester<'_>) -> Result<RewrapReport, VaultError> {
        let current = self.provider.master_key_id().to_string();
        let rows = key_rows(&self.sql)?;
        let mut updates = Vec::new();
        let mut previous: Vec<String> = Vec::new();
        for row in rows.iter().filter(|r| r.master_key_id != current) {
            let key = self.provider.unwrap(&row.master_key_id, &row.wrapped)?;
            updates.push((
                row.id.clone(),
                row.master_key_id.clone(),
                self.provider.wrap(key.expose())?,
            ));
            if !previous.contains(&row.master_key_id) {
                previous.push(row.master_key_id.clone());
            }
        }
        let mut rewrapped = 0u64;
        self.sql.transaction(|db| -> Result<(), VaultError> {
            for (id, old_master, wrapped) in &updates {
                // Only if still wrapped by the key read: a concurrent rewrap wins once.
                rewrapped += db.execute(
                    "UPDATE data_keys SET wrapped = $1, master_key_id = $2 WHERE id = $3 AND master_key_id = $4",
                    sql_params![wrapped.clone(), current.as_str(), id.as_str(), old_master.as_str()],
                )?;
            }
            coffer_audit::append(
                db,
                &coffer_audit::Entry {
                    at: now,
                    actor: requester.actor,
                    action: "master_key_rewrapped",
                    subject: Some(&current),
                    ip: requester.ip,
                    outcome: coffer_audit::Outcome::Ok,
                    detail: &format!(
                        "{rewrapped} data keys re-wrapped from {}",
                        if previous.is_empty() {
                            "(none: all were already under it)".to_string()
                        } else {
                            previous.join(", ")
                        }
                    ),
                },
            )?;
            Ok(())
        })?;
        Ok(RewrapReport {
            master_key_id: current,
            rewrapped,
            previous,
        })
    }
}
