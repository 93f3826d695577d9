//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`,
//! so a commit that returned has reached the disk. One writer connection (the
//! engine's thread) and a small pool of read-only connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use coffer_core::{Identifier, Timestamp};
use coffer_ledger::{Account, AuditInput, Balances, Hold, Transfer};

use crate::batch_log::{BatchLog, LogEntry};
use crate::convert::{
    self, AccountRow, HoldRow, TransferRow, ACCOUNT_COLUMNS, HOLD_COLUMNS, IDS_PER_QUERY_MAX,
    JOURNAL_COLUMNS, TRANSFER_COLUMNS,
};
use crate::logged::{Backend, Projection, Tables};
use crate::pool::Pool;
use crate::service::{stored_response, StoredKey, StoredResponse};
use crate::{EntryFilter, Head, LedgerReader, StoreError};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/sqlite_0001_ledger.sql")),
    (2, include_str!("migrations/sqlite_0002_service.sql")),
    (3, include_str!("migrations/sqlite_0003_identity.sql")),
    (4, include_str!("migrations/sqlite_0004_factors.sql")),
    (5, include_str!("migrations/sqlite_0005_audit.sql")),
    (6, include_str!("migrations/sqlite_0006_kyc.sql")),
    (7, include_str!("migrations/sqlite_0007_profile.sql")),
    (8, include_str!("migrations/sqlite_0008_staff.sql")),
    (9, include_str!("migrations/sqlite_0009_cards.sql")),
    (10, include_str!("migrations/sqlite_0010_passkeys.sql")),
    (
        11,
        include_str!("migrations/sqlite_0011_step_up_passkeys_and_key_rotation.sql"),
    ),
    (12, include_str!("migrations/sqlite_0012_funding.sql")),
    (13, include_str!("migrations/sqlite_0013_ledger_log.sql")),
    (14, include_str!("migrations/sqlite_0014_p2p.sql")),
    (15, include_str!("migrations/sqlite_0015_merchants.sql")),
    (
        16,
        include_str!("migrations/sqlite_0016_bills_fx_activity.sql"),
    ),
    (
        17,
        include_str!("migrations/sqlite_0017_limit_overrides.sql"),
    ),
    (18, include_str!("migrations/sqlite_0018_risk.sql")),
    (19, include_str!("migrations/sqlite_0019_notifications.sql")),
    (20, include_str!("migrations/sqlite_0020_compliance.sql")),
    (21, include_str!("migrations/sqlite_0021_privacy.sql")),
    (22, include_str!("migrations/sqlite_0022_backoffice.sql")),
    (24, include_str!("migrations/sqlite_0024_payments_gaps.sql")),
    (
        25,
        include_str!("migrations/sqlite_0025_support_tickets.sql"),
    ),
    (26, include_str!("migrations/sqlite_0026_review_holds.sql")),
    (
        27,
        include_str!("migrations/sqlite_0027_ledger_log_uncompressed.sql"),
    ),
];

/// WAL frames (pages) between automatic checkpoints.
pub const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

fn configure(connection: &Connection) -> Result<(), StoreError> {
    // WAL lets readers run beside the writer; FULL syncs the WAL on every
    // commit, which is what makes an acknowledged transfer survive power loss.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "OFF")?;
    connection.pragma_update(None, "cache_size", -65_536)?;
    // A checkpoint copies every page changed since the last one into the
    // database file. Under load the same account and index pages change in
    // almost every batch, so checkpointing rarely (every ~40 MiB of WAL
    // rather than SQLite's default 4 MiB) copies each hot page once instead
    // of dozens of times: measured 1.8× the HTTP transfer throughput.
    connection.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

pub(crate) fn open(path: &Path) -> Result<Connection, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let connection = Connection::open(path)?;
    configure(&connection)?;
    Ok(connection)
}

/// Applies pending migrations; returns the schema version.
pub fn migrate(path: &Path) -> Result<i64, StoreError> {
    let mut connection = open(path)?;
    migrate_connection(&mut connection)
}

fn migrate_connection(connection: &mut Connection) -> Result<i64, StoreError> {
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let supported = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let applied: std::collections::HashSet<i64> = {
        let mut statement = transaction.prepare("SELECT version FROM schema_migrations")?;
        let versions = statement
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        versions
    };
    let current = applied.iter().copied().max().unwrap_or(0);
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    // Every version not yet applied, not only those above the highest:
    // migrations written on parallel branches can land out of order.
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
        transaction.execute_batch(sql)?;
        transaction.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, strftime('%s','now'))",
            params![version],
        )?;
    }
    transaction.commit()?;
    Ok(supported)
}

pub(crate) fn account_from_row(row: &Row<'_>) -> Result<Account, StoreError> {
    let (id, currency, kind, constraint, owner, status): (
        String,
        String,
        String,
        String,
        String,
        String,
    ) = (
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    );
    AccountRow {
        id: &id,
        currency: &currency,
        kind: &kind,
        constraint: &constraint,
        owner: &owner,
        status: &status,
        balances: [row.get(6)?, row.get(7)?, row.get(8)?, row.get(9)?],
        opened_at: row.get(10)?,
        closed_at: row.get(11)?,
    }
    .into_account()
}

pub(crate) fn transfer_from_row(row: &Row<'_>) -> Result<Transfer, StoreError> {
    let id: String = row.get(1)?;
    let kind: String = row.get(2)?;
    let debit: String = row.get(3)?;
    let credit: String = row.get(4)?;
    let currency: String = row.get(6)?;
    let code: String = row.get(7)?;
    let metadata: Option<String> = row.get(8)?;
    let hold: Option<String> = row.get(9)?;
    TransferRow {
        timestamp: row.get(0)?,
        id: &id,
        kind: &kind,
        debit: &debit,
        credit: &credit,
        amount: row.get(5)?,
        currency: &currency,
        code: &code,
        metadata: metadata.as_deref(),
        hold: hold.as_deref(),
        expires_at: row.get(10)?,
        debit_after: [row.get(11)?, row.get(12)?, row.get(13)?, row.get(14)?],
        credit_after: [row.get(15)?, row.get(16)?, row.get(17)?, row.get(18)?],
    }
    .into_transfer()
}

fn hold_from_row(row: &Row<'_>) -> Result<Hold, StoreError> {
    let (id, debit, credit, currency, state): (String, String, String, String, String) = (
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(4)?,
        row.get(6)?,
    );
    let resolved_by: Option<String> = row.get(7)?;
    HoldRow {
        id: &id,
        debit: &debit,
        credit: &credit,
        amount: row.get(3)?,
        currency: &currency,
        expires_at: row.get(5)?,
        state: &state,
        resolved_by: resolved_by.as_deref(),
        captured: row.get(8)?,
    }
    .into_hold()
}

/// Runs `SELECT … WHERE key IN (…)` over `ids` in chunks.
fn select_by_ids<T>(
    connection: &Connection,
    select: &str,
    key: &str,
    ids: &[Identifier],
    parse: fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut found = Vec::new();
    for chunk in ids.chunks(IDS_PER_QUERY_MAX) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        let sql = format!("{select} WHERE {key} IN ({placeholders})");
        let mut statement = connection.prepare_cached(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(
            chunk.iter().map(Identifier::as_str),
        ))?;
        while let Some(row) = rows.next()? {
            found.push(parse(row)?);
        }
    }
    Ok(found)
}

fn read_head(connection: &Connection) -> Result<Head, StoreError> {
    let row = connection
        .query_row(
            "SELECT batch, hash, last_timestamp FROM journal ORDER BY batch DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )
        .optional()?;
    match row {
        None => Ok(Head::default()),
        Some((batch, hash, last)) => Ok(Head {
            batch: u64::try_from(batch)
                .map_err(|_| StoreError::Corrupt("negative batch".into()))?,
            hash: convert::hash(&hash)?,
            last_timestamp: Timestamp::from_nanos(last),
        }),
    }
}

pub struct SqliteTables {
    connection: Connection,
    checkpointer: Option<Checkpointer>,
    /// Set on the projector's connection: its commits are not synced one by
    /// one (see `durable`).
    relaxed: Option<RelaxedSync>,
    projected: u64,
}

/// The projector's commits run with `synchronous=NORMAL`: written to the WAL
/// but not synced. Its rows are a copy of the batch log, which is synced on
/// every append and pruned only up to `durable`, so a power loss can only
/// lose projection work that the next open redoes from the log. Syncing the
/// WAL every `RELAXED_SYNC_INTERVAL` instead of on each projection commit
/// (tens of megabytes a second under load) keeps those large syncs from
/// queueing in front of the log's small ones on the same disk.
struct RelaxedSync {
    wal: std::path::PathBuf,
    last: std::time::Instant,
    durable: u64,
}

/// (About one sync per projection round: see `PROJECTION_PACE`.)
const RELAXED_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// …or once this many log records are projected but not synced, which
/// bounds how far pruning can lag behind the projection (the log keeps at
/// most about this many records plus a pruning step), whatever the pace.
const RELAXED_SYNC_RECORDS: u64 = 128;

impl SqliteTables {
    fn open(path: &Path, checkpoints: bool) -> Result<SqliteTables, StoreError> {
        let mut connection = open(path)?;
        migrate_connection(&mut connection)?;
        // The writer never checkpoints itself: a checkpoint copies and syncs
        // megabytes, and in the writer it would stall every request of the
        // batch behind it (the p99). A thread of its own does it beside.
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = if checkpoints {
            Some(Checkpointer::start(path)?)
        } else {
            None
        };
        // The projector's connection is the one that checkpoints.
        let relaxed = if checkpoints {
            connection.pragma_update(None, "synchronous", "NORMAL")?;
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            Some(RelaxedSync {
                wal: wal.into(),
                last: std::time::Instant::now(),
                durable: projected_seq(&connection)?,
            })
        } else {
            None
        };
        Ok(SqliteTables {
            connection,
            checkpointer,
            relaxed,
            projected: 0,
        })
    }

    /// After a long stall of the checkpointer the WAL may have grown; past
    /// `WAL_PAGES_MAX` the writer checkpoints itself rather than let it grow.
    fn bound_wal(&self) -> Result<(), StoreError> {
        let frames = self
            .checkpointer
            .as_ref()
            .map_or(0, |c| c.frames.load(std::sync::atomic::Ordering::Relaxed));
        if frames > WAL_PAGES_MAX {
            self.connection
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        }
        Ok(())
    }
}

/// WAL pages beyond which the writer checkpoints itself (~400 MiB).
const WAL_PAGES_MAX: i64 = 100_000;

/// Checkpoints the WAL from its own connection and thread, every
/// `CHECKPOINT_INTERVAL` once it holds `WAL_AUTOCHECKPOINT_PAGES` pages.
struct Checkpointer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    frames: std::sync::Arc<std::sync::atomic::AtomicI64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1000);

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
        let connection = open(path)?;
        // Checkpointing copies WAL frames to the file; it needs no page cache.
        connection.pragma_update(None, "cache_size", -1024)?;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let frames = std::sync::Arc::new(AtomicI64::new(0));
        let (flag, seen) = (stop.clone(), frames.clone());
        let thread = std::thread::Builder::new()
            .name("coffer-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(CHECKPOINT_INTERVAL);
                    // (busy, frames in the WAL, frames checkpointed)
                    let checkpoint = |mode: &str| {
                        connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                        })
                    };
                    // A zero-cost probe first: PASSIVE with nothing new to copy.
                    match checkpoint("PASSIVE") {
                        Ok((log, done)) => {
                            seen.store(log - done, Ordering::Relaxed);
                        }
                        Err(error) => tracing::warn!(%error, "WAL checkpoint failed"),
                    }
                }
            })
            .map_err(StoreError::Io)?;
        Ok(Checkpointer {
            stop,
            frames,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Tables for SqliteTables {
    fn head(&mut self) -> Result<Head, StoreError> {
        read_head(&self.connection)
    }

    fn pending_holds(&mut self) -> Result<Vec<Hold>, StoreError> {
        let mut statement = self.connection.prepare(&format!(
            "SELECT {HOLD_COLUMNS} FROM holds WHERE state = 'pending' ORDER BY expires_at"
        ))?;
        let mut rows = statement.query([])?;
        let mut holds = Vec::new();
        while let Some(row) = rows.next()? {
            holds.push(hold_from_row(row)?);
        }
        Ok(holds)
    }

    fn accounts(&mut self, ids: &[Identifier]) -> Result<Vec<Account>, StoreError> {
        select_by_ids(
            &self.connection,
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts"),
            "id",
            ids,
            account_from_row,
        )
    }

    fn holds(&mut self, ids: &[Identifier]) -> Result<Vec<Hold>, StoreError> {
        select_by_ids(
            &self.connection,
            &format!("SELECT {HOLD_COLUMNS} FROM holds"),
            "id",
            ids,
            hold_from_row,
        )
    }

    fn transfers(&mut self, ids: &[Identifier]) -> Result<Vec<Transfer>, StoreError> {
        select_by_ids(
            &self.connection,
            &format!("SELECT {TRANSFER_COLUMNS} FROM transfers"),
            "id",
            ids,
            transfer_from_row,
        )
    }

    fn transfer_count(&mut self) -> Result<u64, StoreError> {
        let count: i64 = self
            .connection
            .query_row("SELECT COUNT(*) FROM transfers", [], |r| r.get(0))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn scan_transfer_ids(&mut self, visit: &mut dyn FnMut(&str)) -> Result<(), StoreError> {
        let mut statement = self.connection.prepare("SELECT id FROM transfers")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            visit(&id);
        }
        Ok(())
    }

    fn projected(&mut self) -> Result<u64, StoreError> {
        projected_seq(&self.connection)
    }

    fn durable(&mut self) -> Result<u64, StoreError> {
        let Some(relaxed) = self.relaxed.as_mut() else {
            return Ok(self.projected);
        };
        let behind = self.projected.saturating_sub(relaxed.durable);
        if behind > 0
            && (relaxed.last.elapsed() >= RELAXED_SYNC_INTERVAL || behind >= RELAXED_SYNC_RECORDS)
        {
            // Every commit before this point is in the WAL file or, if a
            // checkpoint moved it, in the database file, which the (FULL)
            // checkpointer synced before the WAL could be reused.
            std::fs::File::open(&relaxed.wal)?.sync_data()?;
            relaxed.durable = self.projected;
            relaxed.last = std::time::Instant::now();
        }
        Ok(relaxed.durable)
    }

    fn project(&mut self, entries: &[Arc<LogEntry>]) -> Result<u64, StoreError> {
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done = projected_seq(&transaction)?;
        let Some(p) = Projection::of(entries, done) else {
            self.projected = done;
            return Ok(done);
        };
        {
            let mut insert_account = transaction.prepare_cached(&format!(
                "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, 0, 0, ?7, NULL)"
            ))?;
            for account in &p.opened {
                let spec = &account.spec;
                insert_account.execute(params![
                    spec.id.as_str(),
                    spec.currency.as_str(),
                    spec.kind.as_str(),
                    spec.constraint.as_str(),
                    spec.owner.as_str(),
                    convert::status_str(account.status),
                    account.opened_at.as_nanos(),
                ])?;
            }
            // No `ON CONFLICT`: the writer refused duplicate ids before they
            // reached the log, so one here is a fault to stop at, not skip.
            let mut insert_transfer = transaction.prepare_cached(&format!(
                "INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
            ))?;
            for t in &p.transfers {
                let [dp, dc, dq, dr] = convert::balances_array(&t.debit_after);
                let [cp, cc, cq, cr] = convert::balances_array(&t.credit_after);
                let metadata = convert::metadata_json(&t.metadata);
                insert_transfer.execute(params![
                    t.timestamp.as_nanos(),
                    t.id.as_str(),
                    t.kind.as_str(),
                    t.debit.as_str(),
                    t.credit.as_str(),
                    t.amount.minor_units(),
                    t.currency.as_str(),
                    t.code.as_str(),
                    metadata,
                    t.hold.as_ref().map(Identifier::as_str),
                    t.expires_at.map(Timestamp::as_nanos),
                    dp,
                    dc,
                    dq,
                    dr,
                    cp,
                    cc,
                    cq,
                    cr,
                ])?;
            }
            let mut update_account = transaction.prepare_cached(
                "UPDATE accounts SET debits_posted = ?2, credits_posted = ?3, debits_pending = ?4, credits_pending = ?5, \
                 status = ?6, closed_at = ?7 WHERE id = ?1",
            )?;
            for account in &p.accounts {
                let [dp, cp, dq, cq] = convert::balances_array(&account.balances);
                update_account.execute(params![
                    account.id().as_str(),
                    dp,
                    cp,
                    dq,
                    cq,
                    convert::status_str(account.status),
                    account.closed_at.map(Timestamp::as_nanos),
                ])?;
            }
            let mut insert_hold = transaction.prepare_cached(&format!(
                "INSERT INTO holds ({HOLD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?;
            for h in &p.placed {
                insert_hold.execute(params![
                    h.id.as_str(),
                    h.debit.as_str(),
                    h.credit.as_str(),
                    h.amount.minor_units(),
                    h.currency.as_str(),
                    h.expires_at.as_nanos(),
                    h.state.as_str(),
                    h.resolved_by.as_ref().map(Identifier::as_str),
                    h.captured.map(|a| a.minor_units()),
                ])?;
            }
            let mut resolve_hold = transaction.prepare_cached(
                "UPDATE holds SET state = ?2, resolved_by = ?3, captured = ?4 WHERE id = ?1",
            )?;
            for h in &p.resolved {
                resolve_hold.execute(params![
                    h.id.as_str(),
                    h.state.as_str(),
                    h.resolved_by.as_ref().map(Identifier::as_str),
                    h.captured.map(|a| a.minor_units()),
                ])?;
            }
            let mut insert_journal = transaction.prepare_cached(&format!(
                "INSERT INTO journal ({JOURNAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?;
            for j in &p.journal {
                insert_journal.execute(params![
                    i64::try_from(j.batch)
                        .map_err(|_| StoreError::Corrupt("batch number overflow".into()))?,
                    j.first_timestamp.as_nanos(),
                    j.last_timestamp.as_nanos(),
                    j.event_count as i64,
                    &j.previous_hash[..],
                    &j.hash[..],
                ])?;
            }
            let responses: Vec<StoredResponse> = p.responses.iter().map(|r| (*r).clone()).collect();
            insert_responses(&transaction, &responses)?;
            transaction.execute(
                "UPDATE ledger_projection SET seq = ?1 WHERE id = 1",
                params![seq_param(p.through)?],
            )?;
        }
        transaction.commit()?;
        self.projected = p.through;
        self.bound_wal()?;
        Ok(p.through)
    }

    fn responses(&mut self, keys: &[(String, String)]) -> Result<Vec<StoredKey>, StoreError> {
        let mut select = self.connection.prepare_cached(
            "SELECT request_hash, status, body FROM idempotency_keys WHERE principal = ?1 AND key = ?2",
        )?;
        let mut found = Vec::new();
        for (principal, key) in keys {
            let row: Option<(String, Option<i64>, Option<String>)> = select
                .query_row(params![principal, key], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            if let Some((request_hash, status, body)) = row {
                found.push(StoredKey {
                    principal: principal.clone(),
                    key: key.clone(),
                    request_hash,
                    response: stored_response(status, body),
                });
            }
        }
        Ok(found)
    }
}

fn projected_seq(connection: &Connection) -> Result<u64, StoreError> {
    let seq: i64 =
        connection.query_row("SELECT seq FROM ledger_projection WHERE id = 1", [], |r| {
            r.get(0)
        })?;
    u64::try_from(seq).map_err(|_| StoreError::Corrupt("negative projection point".into()))
}

fn seq_param(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt("log sequence overflow".into()))
}

/// The batch log of a SQLite database: a file of its own beside it
/// (`<database>.ledger-log`), so appending to it never waits for the
/// projector's transactions on the main file (SQLite has one writer per file).
pub fn log_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".ledger-log");
    PathBuf::from(name)
}

struct SqliteLog {
    connection: Connection,
    _checkpointer: Checkpointer,
}

impl SqliteLog {
    fn open(path: &Path) -> Result<SqliteLog, StoreError> {
        let log = log_path(path);
        let connection = open(&log)?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS ledger_log (seq INTEGER PRIMARY KEY, record BLOB NOT NULL)",
        )?;
        // As for the tables: checkpoints run beside, never in the commit path.
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Checkpointer::start(&log)?;
        Ok(SqliteLog {
            connection,
            _checkpointer: checkpointer,
        })
    }
}

impl BatchLog for SqliteLog {
    fn last_seq(&mut self) -> Result<u64, StoreError> {
        let seq: i64 =
            self.connection
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM ledger_log", [], |r| {
                    r.get(0)
                })?;
        u64::try_from(seq).map_err(|_| StoreError::Corrupt("negative log sequence".into()))
    }

    fn append(&mut self, seq: u64, record: &[u8], prune_through: u64) -> Result<(), StoreError> {
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        transaction
            .prepare_cached("INSERT INTO ledger_log (seq, record) VALUES (?1, ?2)")?
            .execute(params![seq_param(seq)?, record])?;
        if prune_through > 0 {
            transaction
                .prepare_cached("DELETE FROM ledger_log WHERE seq <= ?1")?
                .execute(params![seq_param(prune_through)?])?;
        }
        transaction.commit()?;
        Ok(())
    }

    fn read_after(&mut self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT seq, record FROM ledger_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let mut rows = statement.query(params![seq_param(after)?, limit as i64])?;
        let mut found = Vec::new();
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            found.push((
                u64::try_from(seq)
                    .map_err(|_| StoreError::Corrupt("negative log sequence".into()))?,
                row.get(1)?,
            ));
        }
        Ok(found)
    }
}

/// The SQLite pieces of the logged writer.
pub(crate) struct SqliteBackend {
    path: PathBuf,
}

impl SqliteBackend {
    pub(crate) fn new(path: &Path) -> Result<SqliteBackend, StoreError> {
        migrate(path)?;
        Ok(SqliteBackend {
            path: path.to_path_buf(),
        })
    }
}

/// The name the overlay registry knows a SQLite database by: its canonical
/// path, so `./x.db` and `/abs/x.db` meet.
pub(crate) fn location(path: &Path) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("sqlite:{}", canonical.display())
}

impl Backend for SqliteBackend {
    fn location(&self) -> String {
        location(&self.path)
    }

    fn open_log(&self) -> Result<Box<dyn BatchLog>, StoreError> {
        Ok(Box::new(SqliteLog::open(&self.path)?))
    }

    fn open_tables(&self, checkpoints: bool) -> Result<Box<dyn Tables>, StoreError> {
        Ok(Box::new(SqliteTables::open(&self.path, checkpoints)?))
    }
}

/// A key already stored belongs to a request that won a race on another
/// process; its response stays the one the client saw first.
fn insert_responses(
    transaction: &rusqlite::Transaction<'_>,
    responses: &[StoredResponse],
) -> Result<(), StoreError> {
    let mut insert = transaction.prepare_cached(
        "INSERT INTO idempotency_keys (principal, key, request_hash, status, body, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
    )?;
    for r in responses {
        insert.execute(params![
            r.principal,
            r.key,
            r.request_hash,
            i64::from(r.status),
            r.body,
            r.created_at
        ])?;
    }
    Ok(())
}

pub struct SqliteReader {
    pool: Pool<Connection>,
}

impl SqliteReader {
    pub fn open(path: &Path, connections: usize) -> Result<SqliteReader, StoreError> {
        // Make sure the file and schema exist before read-only connections open it.
        migrate(path)?;
        let path = path.to_path_buf();
        let pool = Pool::new(
            connections,
            Box::new(move || {
                let connection = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )?;
                connection.busy_timeout(std::time::Duration::from_secs(10))?;
                connection.pragma_update(None, "cache_size", -16_384)?;
                Ok(connection)
            }),
        );
        Ok(SqliteReader { pool })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let connection = self.pool.get()?;
        f(&connection)
    }
}

fn one<T>(
    connection: &Connection,
    sql: &str,
    id: &Identifier,
    parse: fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query(params![id.as_str()])?;
    match rows.next()? {
        Some(row) => parse(row).map(Some),
        None => Ok(None),
    }
}

impl LedgerReader for SqliteReader {
    fn pool_usage(&self) -> (usize, usize) {
        self.pool.usage()
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| {
            let version: i64 = c.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )?;
            if version < MIGRATIONS.last().map_or(0, |(v, _)| *v) {
                return Err(StoreError::Corrupt("migrations not applied".into()));
            }
            Ok(())
        })
    }

    fn account(&self, id: &Identifier) -> Result<Option<Account>, StoreError> {
        self.with(|c| {
            one(
                c,
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
                id,
                account_from_row,
            )
        })
    }

    fn transfer(&self, id: &Identifier) -> Result<Option<Transfer>, StoreError> {
        self.with(|c| {
            one(
                c,
                &format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?1"),
                id,
                transfer_from_row,
            )
        })
    }

    fn hold(&self, id: &Identifier) -> Result<Option<Hold>, StoreError> {
        self.with(|c| {
            one(
                c,
                &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?1"),
                id,
                hold_from_row,
            )
        })
    }

    fn balances_as_of(
        &self,
        id: &Identifier,
        at: Timestamp,
    ) -> Result<Option<Balances>, StoreError> {
        self.with(|c| {
            let exists = c.prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?.exists(params![id.as_str()])?;
            if !exists {
                return Ok(None);
            }
            // The latest transfer on either side at or before `at` carries the totals.
            let sql = "SELECT * FROM ( \
                 SELECT timestamp, debit_debits_posted, debit_credits_posted, debit_debits_pending, debit_credits_pending \
                   FROM transfers WHERE debit_account_id = ?1 AND timestamp <= ?2 ORDER BY timestamp DESC LIMIT 1) \
               UNION ALL SELECT * FROM ( \
                 SELECT timestamp, credit_debits_posted, credit_credits_posted, credit_debits_pending, credit_credits_pending \
                   FROM transfers WHERE credit_account_id = ?1 AND timestamp <= ?2 ORDER BY timestamp DESC LIMIT 1) \
               ORDER BY timestamp DESC LIMIT 1";
            let row = c
                .prepare_cached(sql)?
                .query_row(params![id.as_str(), at.as_nanos()], |r| Ok([r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?]))
                .optional()?;
            row.map_or(Ok(Balances::default()), convert::balances).map(Some)
        })
    }

    fn entries(&self, id: &Identifier, filter: &EntryFilter) -> Result<Vec<Transfer>, StoreError> {
        self.with(|c| {
            let lower = filter.after.map_or(i64::MIN, Timestamp::as_nanos).max(filter.from.map_or(i64::MIN, |t| t.as_nanos().saturating_sub(1)));
            let upper = filter.until.map_or(i64::MAX, Timestamp::as_nanos);
            let sql = format!(
                "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE timestamp IN ( \
                   SELECT timestamp FROM transfers WHERE debit_account_id = ?1 AND timestamp > ?2 AND timestamp <= ?3 \
                   UNION SELECT timestamp FROM transfers WHERE credit_account_id = ?1 AND timestamp > ?2 AND timestamp <= ?3) \
                 AND (?4 IS NULL OR code = ?4) ORDER BY timestamp LIMIT ?5"
            );
            let mut statement = c.prepare_cached(&sql)?;
            let limit = filter.limit.clamp(1, crate::ENTRY_ROWS_MAX) as i64;
            let mut rows = statement.query(params![id.as_str(), lower, upper, filter.code.as_ref().map(|c| c.as_str()), limit])?;
            let mut found = Vec::new();
            while let Some(row) = rows.next()? {
                found.push(transfer_from_row(row)?);
            }
            Ok(found)
        })
    }

    fn audit_input(&self) -> Result<AuditInput, StoreError> {
        self.with(|c| {
            let mut accounts = Vec::new();
            let mut statement = c.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY opened_at"
            ))?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                accounts.push(account_from_row(row)?);
            }
            let mut holds = Vec::new();
            let mut statement = c.prepare(&format!("SELECT {HOLD_COLUMNS} FROM holds"))?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                holds.push(hold_from_row(row)?);
            }
            let mut journal = Vec::new();
            let mut statement = c.prepare(&format!(
                "SELECT {JOURNAL_COLUMNS} FROM journal ORDER BY batch"
            ))?;
            let mut rows = statement.query([])?;
            while let Some(r) = rows.next()? {
                let previous: Vec<u8> = r.get(4)?;
                let hash: Vec<u8> = r.get(5)?;
                journal.push(convert::journal_entry(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    &previous,
                    &hash,
                )?);
            }
            Ok(AuditInput {
                accounts,
                holds,
                journal,
            })
        })
    }

    fn scan_transfers(&self, visit: &mut dyn FnMut(Transfer)) -> Result<(), StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY timestamp"
            ))?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                visit(transfer_from_row(row)?);
            }
            Ok(())
        })
    }

    fn counts(&self) -> Result<(u64, u64), StoreError> {
        self.with(|c| {
            let accounts: i64 = c.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
            let transfers: i64 = c.query_row("SELECT COUNT(*) FROM transfers", [], |r| r.get(0))?;
            Ok((accounts as u64, transfers as u64))
        })
    }
}
