//! The ledger writer both backends share: commits go to the batch log, a
//! projector thread applies them to the tables, and the overlay covers the
//! gap (see `batch_log.rs` for why).
//!
//! Invariants:
//! - A commit returns only after its record is durable in the log.
//! - The tables' projection point (`ledger_projection.seq`) moves in the same
//!   transaction as the rows it covers, and every projection skips entries at
//!   or below it, so replaying the log (after a crash, or by two processes at
//!   once) applies each entry exactly once.
//! - Log records are pruned only once their projection is durable (synced).
//! - Opening a writer first projects whatever the log holds beyond the
//!   tables, so the tables are complete before the engine loads anything.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use coffer_core::{Identifier, Timestamp};
use coffer_ledger::{
    Account, AuditInput, Balances, Event, Hold, HoldChange, HoldState, JournalEntry, SealedBatch,
    Transfer,
};

use crate::batch_log::{self, BatchLog, LogEntry};
use crate::id_filter::IdFilter;
use crate::overlay::{self, Overlay, Pace};
use crate::service::{StoredKey, StoredResponse};
use crate::{Commit, EntryFilter, Head, LedgerReader, LedgerWriter, StoreError};

/// Rows (events and responses) the projector applies in one transaction at
/// most: large enough that hot pages are written once for many batches,
/// small enough that other writers of the database wait only briefly.
const PROJECTION_ROWS_MAX: usize = 50_000;
/// The projector waits for a full round's rows or this long before a round
/// (unless a reader is waiting for it). Rounds are large on purpose: every
/// transfer inserts into three randomly placed index pages, and a page is
/// written to the WAL once per round however many rows it gained, so the
/// projection's disk writes fall with the round length (measured in the
/// latency shape: 2.3 GB written at 50 ms rounds, 1.1–1.4 GB at 1 s). Those
/// writes share the disk with the log's syncs, which is what the p99 of a
/// commit waits on (14 ms at 50 ms rounds, 4–5 ms at 1 s). Reads never wait
/// for the pace: the overlay answers them, and a statement that needs the
/// tables makes the projector go at once.
const PROJECTION_PACE: Pace = Pace {
    rows: PROJECTION_ROWS_MAX,
    delay: Duration::from_secs(1),
};
/// Unprojected rows beyond which commits wait for the projector; bounds the
/// overlay's memory (about 0.5 KiB per row).
const BACKLOG_ROWS_MAX: usize = 400_000;
/// How long a commit or a read waits for the projector before giving up.
const PROJECTION_WAIT: Duration = Duration::from_secs(30);
/// Projected records are pruned from the log in steps of this many.
const PRUNE_EVERY: u64 = 256;
/// The projector's nice value (0 is normal; higher yields to others).
const PROJECTOR_NICE: i32 = 10;
/// Entries of at least this many rows are indexed in the overlay while the
/// log appends them (a thread per append: worth it only for large batches).
const PARALLEL_STAGE_ROWS: usize = 1_024;
/// Log records read per step when recovering.
const RECOVERY_RECORDS: usize = 512;

/// The indexed tables of one backend, as the writer and projector use them.
pub(crate) trait Tables: Send {
    fn head(&mut self) -> Result<Head, StoreError>;
    fn pending_holds(&mut self) -> Result<Vec<Hold>, StoreError>;
    fn accounts(&mut self, ids: &[Identifier]) -> Result<Vec<Account>, StoreError>;
    fn holds(&mut self, ids: &[Identifier]) -> Result<Vec<Hold>, StoreError>;
    fn transfers(&mut self, ids: &[Identifier]) -> Result<Vec<Transfer>, StoreError>;
    /// How many transfers the tables hold (to size the id filter).
    fn transfer_count(&mut self) -> Result<u64, StoreError>;
    /// Every stored transfer id, in no particular order.
    fn scan_transfer_ids(&mut self, visit: &mut dyn FnMut(&str)) -> Result<(), StoreError>;
    fn responses(&mut self, keys: &[(String, String)]) -> Result<Vec<StoredKey>, StoreError>;
    /// The log sequence number the tables are projected through.
    fn projected(&mut self) -> Result<u64, StoreError>;
    /// Applies the entries above the stored projection point, and moves the
    /// point, in one transaction; returns the new point.
    fn project(&mut self, entries: &[Arc<LogEntry>]) -> Result<u64, StoreError>;
    /// The projection point known to survive power loss: log records at or
    /// below it may be pruned. It may lag `project`'s answer when the
    /// tables' commits are not synced one by one (the log is the durable
    /// copy until then).
    fn durable(&mut self) -> Result<u64, StoreError>;
}

/// How to open a backend's pieces (again, after a failure).
pub(crate) trait Backend: Send + Sync + 'static {
    /// Where the overlay registry files this database.
    fn location(&self) -> String;
    fn open_log(&self) -> Result<Box<dyn BatchLog>, StoreError>;
    /// `checkpoints`: whether this connection also runs the background WAL
    /// checkpointer (one per process is enough).
    fn open_tables(&self, checkpoints: bool) -> Result<Box<dyn Tables>, StoreError>;
}

/// Projects everything the log holds beyond the tables; returns the point.
pub(crate) fn recover(log: &mut dyn BatchLog, tables: &mut dyn Tables) -> Result<u64, StoreError> {
    let mut projected = tables.projected()?;
    loop {
        let records = log.read_after(projected, RECOVERY_RECORDS)?;
        if records.is_empty() {
            break;
        }
        let entries = records
            .iter()
            .map(|(seq, bytes)| batch_log::decode(*seq, bytes).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        projected = tables.project(&entries)?;
        tracing::info!(through = projected, "ledger log projected");
    }
    Ok(projected.max(log.last_seq()?))
}

/// The writer the engine uses, on either backend.
pub(crate) struct LoggedWriter {
    log: Box<dyn BatchLog>,
    tables: Box<dyn Tables>,
    overlay: Arc<Overlay>,
    /// Every transfer id committed (tables and log): lets `commit` skip the
    /// duplicate lookup for ids it proves new.
    committed_ids: IdFilter,
    seq: u64,
    pruned: u64,
    projector: Option<JoinHandle<()>>,
}

impl LoggedWriter {
    pub(crate) fn open(backend: Arc<dyn Backend>) -> Result<LoggedWriter, StoreError> {
        let mut log = backend.open_log()?;
        let mut tables = backend.open_tables(false)?;
        let seq = recover(log.as_mut(), tables.as_mut())?;
        // After recovery the tables hold every committed transfer.
        let mut committed_ids = IdFilter::with_capacity(tables.transfer_count()?);
        tables.scan_transfer_ids(&mut |id| committed_ids.insert(id))?;
        let overlay = Arc::new(Overlay::new(seq));
        overlay::register(&backend.location(), &overlay);
        let projector_tables = backend.open_tables(true)?;
        let projector = {
            let overlay = overlay.clone();
            std::thread::Builder::new()
                .name("coffer-projector".into())
                .spawn(move || project_forever(&overlay, backend, projector_tables))?
        };
        Ok(LoggedWriter {
            log,
            tables,
            overlay,
            committed_ids,
            seq,
            pruned: 0,
            projector: Some(projector),
        })
    }

    /// The committed transfers among `ids`. An id the filter proves new is
    /// in neither the overlay nor the tables, so only the rest are looked
    /// up (the engine also asks about every refused transfer's id).
    fn committed_transfers<'a>(
        &mut self,
        ids: impl Iterator<Item = &'a Identifier>,
    ) -> Result<Vec<Transfer>, StoreError> {
        let maybe: Vec<Identifier> = ids
            .filter(|id| self.committed_ids.may_contain(id.as_str()))
            .cloned()
            .collect();
        if maybe.is_empty() {
            return Ok(Vec::new());
        }
        let (mut found, rest) = split(&maybe, |id| self.overlay.transfer(id));
        if !rest.is_empty() {
            found.extend(self.tables.transfers(&rest)?);
        }
        Ok(found)
    }

    fn append(
        &mut self,
        batch: Option<SealedBatch>,
        responses: Vec<StoredResponse>,
    ) -> Result<(), StoreError> {
        self.overlay
            .wait_for_room(BACKLOG_ROWS_MAX, PROJECTION_WAIT)?;
        let seq = self.seq + 1;
        let entry = LogEntry {
            seq,
            batch,
            responses,
        };
        let record = batch_log::encode(&entry);
        let durable = self.overlay.durable();
        let prune = if durable >= self.pruned + PRUNE_EVERY {
            durable
        } else {
            0
        };
        let entry = Arc::new(entry);
        if entry.weight() >= PARALLEL_STAGE_ROWS {
            // Index the entry in the overlay while the log writes and syncs
            // it, on another thread: for a large batch the two take about as
            // long as each other, and the writer would otherwise do them one
            // after the other. The entry stays invisible until published.
            let (log, overlay) = (&mut self.log, &self.overlay);
            std::thread::scope(|scope| -> Result<(), StoreError> {
                let append = std::thread::Builder::new()
                    .name("coffer-log-append".into())
                    .spawn_scoped(scope, || log.append(seq, &record, prune))?;
                overlay.stage(&entry);
                append
                    .join()
                    .map_err(|_| StoreError::Corrupt("the log append thread panicked".into()))?
            })?;
            self.overlay.publish(entry);
        } else {
            self.log.append(seq, &record, prune)?;
            self.overlay.push(entry);
        }
        self.seq = seq;
        if prune > 0 {
            self.pruned = prune;
        }
        Ok(())
    }
}

impl Drop for LoggedWriter {
    fn drop(&mut self) {
        // The projector drains what is queued before it stops, so a clean
        // shutdown leaves the tables complete.
        self.overlay.stop();
        if let Some(projector) = self.projector.take() {
            let _ = projector.join();
        }
    }
}

/// The projector thread: applies queued entries until stopped and drained.
fn project_forever(overlay: &Overlay, backend: Arc<dyn Backend>, tables: Box<dyn Tables>) {
    // Commits come first: at a lower priority the projector works in the
    // gaps, absorbing a burst at the speed of the log; if it falls too far
    // behind, `BACKLOG_ROWS_MAX` pauses commits and it gets the CPU. (On
    // Linux the nice value is per thread; elsewhere this may fail: harmless.)
    if let Err(error) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), PROJECTOR_NICE)
    {
        tracing::debug!(%error, "could not lower the projector's priority");
    }
    let mut tables = Some(tables);
    let mut failures = 0u32;
    while let Some(chunk) = overlay.next_chunk(PROJECTION_ROWS_MAX, PROJECTION_PACE) {
        let result = match tables.as_mut() {
            Some(t) => t.project(&chunk),
            None => backend.open_tables(true).and_then(|mut t| {
                let result = t.project(&chunk);
                tables = Some(t);
                result
            }),
        };
        match result {
            Ok(through) => {
                failures = 0;
                overlay.projected_through(through);
                if let Some(t) = tables.as_mut() {
                    match t.durable() {
                        Ok(durable) => overlay.durable_through(durable),
                        Err(error) => {
                            tracing::error!(%error, "syncing the ledger projection failed");
                            tables = None;
                        }
                    }
                }
            }
            Err(error) => {
                failures += 1;
                tracing::error!(%error, failures, "ledger projection failed; retrying");
                // The connection may be what broke: open a fresh one next time.
                tables = None;
                if failures >= 20 && overlay.is_stopping() {
                    // Shutting down: the log keeps the entries, and the next
                    // open projects them.
                    return;
                }
                std::thread::sleep(Duration::from_millis(50 * u64::from(failures.min(40))));
            }
        }
    }
}

impl LedgerWriter for LoggedWriter {
    fn head(&mut self) -> Result<Head, StoreError> {
        match self.overlay.last_journal() {
            Some(journal) => Ok(head_of(&journal)),
            None => self.tables.head(),
        }
    }

    fn pending_holds(&mut self) -> Result<Vec<Hold>, StoreError> {
        let changed = self.overlay.holds();
        let changed_ids: HashSet<&Identifier> = changed.iter().map(|h| &h.id).collect();
        let mut holds: Vec<Hold> = self
            .tables
            .pending_holds()?
            .into_iter()
            .filter(|h| !changed_ids.contains(&h.id))
            .collect();
        holds.extend(
            changed
                .iter()
                .filter(|h| h.state == HoldState::Pending)
                .cloned(),
        );
        holds.sort_by_key(|h| h.expires_at);
        Ok(holds)
    }

    fn accounts(&mut self, ids: &[Identifier]) -> Result<Vec<Account>, StoreError> {
        let (mut found, rest) = split(ids, |id| self.overlay.account(id));
        found.extend(self.tables.accounts(&rest)?);
        Ok(found)
    }

    fn holds(&mut self, ids: &[Identifier]) -> Result<Vec<Hold>, StoreError> {
        let (mut found, rest) = split(ids, |id| self.overlay.hold(id));
        found.extend(self.tables.holds(&rest)?);
        Ok(found)
    }

    fn transfers(&mut self, ids: &[Identifier]) -> Result<Vec<Transfer>, StoreError> {
        self.committed_transfers(ids.iter())
    }

    fn commit(
        &mut self,
        batch: SealedBatch,
        responses: Vec<StoredResponse>,
    ) -> Result<Commit, StoreError> {
        // The tables' unique index used to refuse an id committed by an
        // earlier batch; the log has no index, so the writer asks first. It
        // is the only writer of transfers, so nothing can slip in between.
        let ids = batch.events.iter().filter_map(|e| match e {
            Event::Transfer(t) => Some(&t.id),
            _ => None,
        });
        let duplicates: Vec<Identifier> = self
            .committed_transfers(ids)?
            .into_iter()
            .map(|t| t.id)
            .collect();
        if !duplicates.is_empty() {
            return Ok(Commit::Duplicates(duplicates));
        }
        for event in &batch.events {
            if let Event::Transfer(t) = event {
                self.committed_ids.insert(t.id.as_str());
            }
        }
        // Inserted before the append: if the append fails the filter only
        // holds a few ids too many, which costs lookups, never correctness.
        self.append(Some(batch), responses)?;
        Ok(Commit::Committed)
    }

    fn responses(&mut self, keys: &[(String, String)]) -> Result<Vec<StoredKey>, StoreError> {
        let mut found = Vec::new();
        let mut rest = Vec::new();
        for (principal, key) in keys {
            match self.overlay.response(principal, key) {
                Some(stored) => found.push(stored),
                None => rest.push((principal.clone(), key.clone())),
            }
        }
        if !rest.is_empty() {
            found.extend(self.tables.responses(&rest)?);
        }
        Ok(found)
    }

    fn record(&mut self, responses: &[StoredResponse]) -> Result<(), StoreError> {
        if responses.is_empty() {
            return Ok(());
        }
        self.append(None, responses.to_vec())
    }
}

fn head_of(journal: &JournalEntry) -> Head {
    Head {
        batch: journal.batch,
        hash: journal.hash,
        last_timestamp: journal.last_timestamp,
    }
}

/// Splits ids into those the overlay answers and the rest.
fn split<T>(
    ids: &[Identifier],
    lookup: impl Fn(&Identifier) -> Option<T>,
) -> (Vec<T>, Vec<Identifier>) {
    let mut found = Vec::new();
    let mut rest = Vec::new();
    for id in ids {
        match lookup(id) {
            Some(value) => found.push(value),
            None => rest.push(id.clone()),
        }
    }
    (found, rest)
}

/// What one projection transaction writes, merged over several log entries:
/// inserts before updates, and each account's last state only.
pub(crate) struct Projection<'a> {
    pub through: u64,
    pub opened: Vec<&'a Account>,
    pub transfers: Vec<&'a Transfer>,
    pub accounts: Vec<&'a Account>,
    pub placed: Vec<&'a Hold>,
    pub resolved: Vec<&'a Hold>,
    pub journal: Vec<&'a JournalEntry>,
    pub responses: Vec<&'a StoredResponse>,
}

impl<'a> Projection<'a> {
    /// The entries above `done`, merged; `None` when there are none.
    pub(crate) fn of(entries: &'a [Arc<LogEntry>], done: u64) -> Option<Projection<'a>> {
        let fresh: Vec<&LogEntry> = entries
            .iter()
            .map(|e| e.as_ref())
            .filter(|e| e.seq > done)
            .collect();
        let through = fresh.iter().map(|e| e.seq).max()?;
        let mut p = Projection {
            through,
            opened: Vec::new(),
            transfers: Vec::new(),
            accounts: Vec::new(),
            placed: Vec::new(),
            resolved: Vec::new(),
            journal: Vec::new(),
            responses: Vec::new(),
        };
        let mut last_state: std::collections::HashMap<&Identifier, usize> =
            std::collections::HashMap::new();
        for entry in fresh {
            if let Some(batch) = &entry.batch {
                for event in &batch.events {
                    match event {
                        Event::AccountOpened(account) => p.opened.push(account),
                        Event::AccountClosed { .. } => {}
                        Event::Transfer(t) => p.transfers.push(t),
                    }
                }
                for account in &batch.accounts {
                    match last_state.get(account.id()) {
                        Some(&at) => p.accounts[at] = account,
                        None => {
                            last_state.insert(account.id(), p.accounts.len());
                            p.accounts.push(account);
                        }
                    }
                }
                for change in &batch.hold_changes {
                    match change {
                        HoldChange::Placed(h) => p.placed.push(h),
                        HoldChange::Resolved(h) => p.resolved.push(h),
                    }
                }
                p.journal.push(&batch.journal);
            }
            p.responses.extend(entry.responses.iter());
        }
        Some(p)
    }
}

/// A reader that sees acknowledged data at once: single rows come from the
/// overlay when it holds them; scans and statements wait until the tables
/// have caught up with everything committed when the read began.
pub(crate) struct FencedReader {
    pub inner: Arc<dyn LedgerReader>,
    pub location: String,
}

impl FencedReader {
    fn fence(&self) -> Result<(), StoreError> {
        if let Some(overlay) = overlay::find(&self.location) {
            overlay.wait_projected(overlay.appended(), PROJECTION_WAIT)?;
        }
        Ok(())
    }

    fn overlay(&self) -> Option<Arc<Overlay>> {
        overlay::find(&self.location)
    }
}

impl LedgerReader for FencedReader {
    fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping()
    }

    fn account(&self, id: &Identifier) -> Result<Option<Account>, StoreError> {
        if let Some(account) = self.overlay().and_then(|o| o.account(id)) {
            return Ok(Some(account));
        }
        self.inner.account(id)
    }

    fn transfer(&self, id: &Identifier) -> Result<Option<Transfer>, StoreError> {
        if let Some(transfer) = self.overlay().and_then(|o| o.transfer(id)) {
            return Ok(Some(transfer));
        }
        self.inner.transfer(id)
    }

    fn hold(&self, id: &Identifier) -> Result<Option<Hold>, StoreError> {
        if let Some(hold) = self.overlay().and_then(|o| o.hold(id)) {
            return Ok(Some(hold));
        }
        self.inner.hold(id)
    }

    fn balances_as_of(
        &self,
        id: &Identifier,
        at: Timestamp,
    ) -> Result<Option<Balances>, StoreError> {
        self.fence()?;
        self.inner.balances_as_of(id, at)
    }

    fn entries(&self, id: &Identifier, filter: &EntryFilter) -> Result<Vec<Transfer>, StoreError> {
        self.fence()?;
        self.inner.entries(id, filter)
    }

    fn audit_input(&self) -> Result<AuditInput, StoreError> {
        self.fence()?;
        self.inner.audit_input()
    }

    fn scan_transfers(&self, visit: &mut dyn FnMut(Transfer)) -> Result<(), StoreError> {
        self.fence()?;
        self.inner.scan_transfers(visit)
    }

    fn counts(&self) -> Result<(u64, u64), StoreError> {
        self.fence()?;
        self.inner.counts()
    }

    fn pool_usage(&self) -> (usize, usize) {
        self.inner.pool_usage()
    }
}
