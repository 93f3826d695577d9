//! What is committed but not yet projected into the tables.
//!
//! A commit is durable once its record is in the batch log; the tables catch
//! up a moment later. In between, the overlay holds the batch in memory: the
//! projector takes its work from here, the writer checks it for duplicate
//! ids and stored responses, and every reader in the process consults it (or
//! waits for the projection) so that an acknowledged transfer is always
//! visible. Readers find the overlay of their database through a registry,
//! because readers are opened independently of the engine that writes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use parking_lot::{Condvar, Mutex as StateLock, MutexGuard};
use std::time::{Duration, Instant};

use coffer_core::Identifier;
use coffer_ledger::{Account, Event, Hold, HoldChange, JournalEntry, Transfer};

use crate::batch_log::LogEntry;
use crate::service::{stored_response, StoredKey, StoredResponse};
use crate::StoreError;

type Key = (String, String);

/// Where in a queued entry a row lives. The overlay points into the entries
/// it queues rather than cloning each transfer and account: the clones (and
/// their drops) were about a fifth of the writer thread's CPU under load.
#[derive(Clone, Copy)]
enum Place {
    Event(usize),
    Account(usize),
    Hold(usize),
}

type At = (Arc<LogEntry>, Place);

/// A row's newest state in the overlay. While that state's entry is still
/// being appended to the log (`seq` above `appended`), readers get the
/// state it replaced (`prev`), or the tables' when there was none: nothing
/// is visible before it is durable.
struct Slot {
    seq: u64,
    at: At,
    prev: Option<(u64, At)>,
}

impl Slot {
    fn visible(&self, appended: u64) -> Option<&At> {
        if self.seq <= appended {
            Some(&self.at)
        } else {
            self.prev.as_ref().map(|(_, at)| at)
        }
    }
}

/// Sets `key`'s newest state, keeping the visible one while it is pending.
fn put(map: &mut HashMap<Identifier, Slot>, key: &Identifier, seq: u64, at: At, appended: u64) {
    match map.get_mut(key) {
        Some(slot) => {
            let prev = if slot.seq <= appended {
                Some((slot.seq, std::mem::replace(&mut slot.at, at)))
            } else {
                slot.at = at;
                slot.prev.take()
            };
            slot.seq = seq;
            slot.prev = prev;
        }
        None => {
            map.insert(
                key.clone(),
                Slot {
                    seq,
                    at,
                    prev: None,
                },
            );
        }
    }
}

/// Forgets what entry `seq` put at `key`, once the tables hold it.
fn remove_slot(map: &mut HashMap<Identifier, Slot>, key: &Identifier, seq: u64) {
    let Some(slot) = map.get_mut(key) else {
        return;
    };
    if slot.seq == seq {
        map.remove(key);
    } else if slot.prev.as_ref().is_some_and(|(s, _)| *s == seq) {
        slot.prev = None;
    }
}

fn event_at(entry: &LogEntry, place: Place) -> Option<&Event> {
    match place {
        Place::Event(i) => entry.batch.as_ref()?.events.get(i),
        _ => None,
    }
}

fn transfer_at(entry: &LogEntry, place: Place) -> Option<Transfer> {
    match event_at(entry, place)? {
        Event::Transfer(t) => Some(t.clone()),
        _ => None,
    }
}

fn account_at(entry: &LogEntry, place: Place) -> Option<Account> {
    match place {
        Place::Account(i) => entry.batch.as_ref()?.accounts.get(i).cloned(),
        Place::Event(_) => match event_at(entry, place)? {
            Event::AccountOpened(account) | Event::AccountClosed { account } => {
                Some(account.clone())
            }
            Event::Transfer(_) => None,
        },
        Place::Hold(_) => None,
    }
}

fn hold_at(entry: &LogEntry, place: Place) -> Option<Hold> {
    match place {
        Place::Hold(i) => match entry.batch.as_ref()?.hold_changes.get(i)? {
            HoldChange::Placed(hold) | HoldChange::Resolved(hold) => Some(hold.clone()),
        },
        _ => None,
    }
}

/// Rows the projector removes from the overlay per hold of its lock.
const SWEEP_STEP_ROWS: usize = 1_024;

#[derive(Default)]
struct State {
    appended: u64,
    projected: u64,
    /// Projected and synced to disk (at most `projected`).
    durable: u64,
    /// Durable entries the projector has not applied yet, oldest first.
    queue: VecDeque<Arc<LogEntry>>,
    queued_weight: usize,
    accounts: HashMap<Identifier, Slot>,
    transfers: HashMap<Identifier, Slot>,
    holds: HashMap<Identifier, Slot>,
    responses: HashMap<Key, (u64, StoredResponse)>,
    last_journal: Option<JournalEntry>,
    /// When the oldest entry still queued arrived (about).
    oldest_at: Option<Instant>,
    /// Readers waiting for the projection: the projector goes at once.
    urgent: usize,
    stopping: bool,
}

/// When the projector takes a chunk. Waiting a little lets many batches share
/// one projection transaction (each hot page written once, one sync) instead
/// of following every commit with a small one; anyone who waits on the
/// projection makes it go at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Go once this many rows are queued…
    pub rows: usize,
    /// …or the oldest has waited this long.
    pub delay: Duration,
}

pub(crate) struct Overlay {
    state: StateLock<State>,
    changed: Condvar,
}

impl Overlay {
    /// An empty overlay over tables projected (and a log appended) up to `seq`.
    pub(crate) fn new(seq: u64) -> Overlay {
        Overlay {
            state: StateLock::new(State {
                appended: seq,
                projected: seq,
                durable: seq,
                ..State::default()
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain maps behind,
        // still consistent enough to read: this lock never poisons.
        self.state.lock()
    }

    pub(crate) fn appended(&self) -> u64 {
        self.lock().appended
    }

    /// How far the tables' projection is known to be synced to disk.
    pub(crate) fn durable(&self) -> u64 {
        self.lock().durable
    }

    /// The tables' projection through `through` is synced: its log records
    /// may go.
    pub(crate) fn durable_through(&self, through: u64) {
        let mut state = self.lock();
        state.durable = state.durable.max(through);
    }

    /// Adds a durably appended entry.
    pub(crate) fn push(&self, entry: Arc<LogEntry>) {
        self.stage(&entry);
        self.publish(entry);
    }

    /// Indexes an entry whose append is still under way, so that the
    /// costly part of `push` can run beside the log's write and sync;
    /// readers do not see it until `publish`. At most one entry is staged
    /// at a time, and a failed append is never published: the writer that
    /// staged it is dropped and its overlay with it.
    pub(crate) fn stage(&self, entry: &Arc<LogEntry>) {
        let Some(batch) = &entry.batch else {
            return;
        };
        let mut state = self.lock();
        let state = &mut *state;
        let (seq, appended) = (entry.seq, state.appended);
        for (i, event) in batch.events.iter().enumerate() {
            let at = (entry.clone(), Place::Event(i));
            match event {
                Event::Transfer(t) => put(&mut state.transfers, &t.id, seq, at, appended),
                // A new account's state; `accounts` below overrides it
                // when the batch also moved money on it.
                Event::AccountOpened(account) | Event::AccountClosed { account } => {
                    put(&mut state.accounts, account.id(), seq, at, appended)
                }
            }
        }
        for (i, account) in batch.accounts.iter().enumerate() {
            let at = (entry.clone(), Place::Account(i));
            put(&mut state.accounts, account.id(), seq, at, appended);
        }
        for (i, change) in batch.hold_changes.iter().enumerate() {
            let (HoldChange::Placed(hold) | HoldChange::Resolved(hold)) = change;
            let at = (entry.clone(), Place::Hold(i));
            put(&mut state.holds, &hold.id, seq, at, appended);
        }
    }

    /// Makes a staged entry visible (it is durable now) and queues it for
    /// the projector.
    pub(crate) fn publish(&self, entry: Arc<LogEntry>) {
        let mut state = self.lock();
        let seq = entry.seq;
        if let Some(batch) = &entry.batch {
            state.last_journal = Some(batch.journal.clone());
        }
        for r in &entry.responses {
            state
                .responses
                .insert((r.principal.clone(), r.key.clone()), (seq, r.clone()));
        }
        state.appended = seq;
        state.queued_weight += entry.weight();
        state.queue.push_back(entry);
        if state.oldest_at.is_none() {
            state.oldest_at = Some(Instant::now());
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Blocks until there is work worth a projection (see `Pace`), and
    /// returns the oldest entries up to about `max_weight` rows (at least
    /// one). `None` once stopping and drained.
    pub(crate) fn next_chunk(&self, max_weight: usize, pace: Pace) -> Option<Vec<Arc<LogEntry>>> {
        let mut state = self.lock();
        loop {
            if !state.queue.is_empty() {
                let age = state.oldest_at.map_or(Duration::MAX, |at| at.elapsed());
                let due = state.stopping
                    || state.urgent > 0
                    || state.queued_weight >= pace.rows
                    || age >= pace.delay;
                if due {
                    let mut chunk = Vec::new();
                    let mut weight = 0;
                    for entry in &state.queue {
                        if !chunk.is_empty() && weight + entry.weight() > max_weight {
                            break;
                        }
                        weight += entry.weight();
                        chunk.push(entry.clone());
                    }
                    return Some(chunk);
                }
                self.changed
                    .wait_for(&mut state, pace.delay.saturating_sub(age));
                continue;
            }
            if state.stopping {
                return None;
            }
            self.changed.wait(&mut state);
        }
    }

    /// The tables now hold everything up to `through`: forget it here.
    pub(crate) fn projected_through(&self, through: u64) {
        let mut state = self.lock();
        // The tables answer for these entries from now on, so they may leave
        // the overlay in any order and in steps. Steps, because a round can
        // cover tens of thousands of rows: the lock is released between
        // steps so that commits and readers never wait for the whole sweep.
        state.projected = state.projected.max(through);
        let mut swept = 0;
        while state.queue.front().is_some_and(|e| e.seq <= through) {
            if swept >= SWEEP_STEP_ROWS {
                // Hands the lock to a waiting commit or reader, if any.
                MutexGuard::bump(&mut state);
                swept = 0;
            }
            let Some(entry) = state.queue.pop_front() else {
                break;
            };
            swept += entry.weight();
            state.queued_weight = state.queued_weight.saturating_sub(entry.weight());
            let seq = entry.seq;
            // Only the state this entry put there: a later entry's stays.
            if let Some(batch) = &entry.batch {
                for event in &batch.events {
                    match event {
                        Event::Transfer(t) => remove_slot(&mut state.transfers, &t.id, seq),
                        Event::AccountOpened(account) | Event::AccountClosed { account } => {
                            remove_slot(&mut state.accounts, account.id(), seq)
                        }
                    }
                }
                for account in &batch.accounts {
                    remove_slot(&mut state.accounts, account.id(), seq);
                }
                for change in &batch.hold_changes {
                    let (HoldChange::Placed(hold) | HoldChange::Resolved(hold)) = change;
                    remove_slot(&mut state.holds, &hold.id, seq);
                }
            }
            for r in &entry.responses {
                remove_if(
                    &mut state.responses,
                    &(r.principal.clone(), r.key.clone()),
                    seq,
                );
            }
        }
        if state.queue.is_empty() {
            state.last_journal = None;
            state.oldest_at = None;
        } else {
            // What is left arrived while the chunk was being projected.
            state.oldest_at = Some(Instant::now());
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Waits until the tables hold everything up to `seq`.
    pub(crate) fn wait_projected(&self, seq: u64, timeout: Duration) -> Result<(), StoreError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        if state.projected >= seq {
            return Ok(());
        }
        state.urgent += 1;
        self.changed.notify_all();
        let result = loop {
            if state.projected >= seq {
                break Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(StoreError::Unavailable(
                    "the ledger's tables are behind its log; retry shortly".into(),
                ));
            }
            self.changed.wait_for(&mut state, deadline - now);
        };
        state.urgent -= 1;
        result
    }

    /// Waits until the unprojected backlog is below `max_weight` rows: what
    /// bounds the memory the overlay can take when commits outrun projection.
    pub(crate) fn wait_for_room(
        &self,
        max_weight: usize,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while state.queued_weight >= max_weight {
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(
                    "the ledger's projection is stalled; commits paused".into(),
                ));
            }
            self.changed.wait_for(&mut state, deadline - now);
        }
        Ok(())
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.lock().stopping
    }

    pub(crate) fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    pub(crate) fn account(&self, id: &Identifier) -> Option<Account> {
        let state = self.lock();
        let (entry, place) = state.accounts.get(id)?.visible(state.appended)?;
        account_at(entry, *place)
    }

    pub(crate) fn transfer(&self, id: &Identifier) -> Option<Transfer> {
        let state = self.lock();
        let (entry, place) = state.transfers.get(id)?.visible(state.appended)?;
        transfer_at(entry, *place)
    }

    pub(crate) fn hold(&self, id: &Identifier) -> Option<Hold> {
        let state = self.lock();
        let (entry, place) = state.holds.get(id)?.visible(state.appended)?;
        hold_at(entry, *place)
    }

    /// Holds changed since the last projection: (placed or still pending,
    /// and resolved), to merge over what the tables say.
    pub(crate) fn holds(&self) -> Vec<Hold> {
        let state = self.lock();
        state
            .holds
            .values()
            .filter_map(|slot| slot.visible(state.appended))
            .filter_map(|(entry, place)| hold_at(entry, *place))
            .collect()
    }

    pub(crate) fn response(&self, principal: &str, key: &str) -> Option<StoredKey> {
        self.lock()
            .responses
            .get(&(principal.to_string(), key.to_string()))
            .map(|(_, r)| StoredKey {
                principal: r.principal.clone(),
                key: r.key.clone(),
                request_hash: r.request_hash.clone(),
                response: stored_response(Some(i64::from(r.status)), Some(r.body.clone())),
            })
    }

    pub(crate) fn last_journal(&self) -> Option<JournalEntry> {
        self.lock().last_journal.clone()
    }
}

fn remove_if<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, (u64, V)>, key: &K, seq: u64) {
    if map.get(key).is_some_and(|(s, _)| *s == seq) {
        map.remove(key);
    }
}

/// The live overlay of each database open for writing in this process.
fn registry() -> &'static Mutex<HashMap<String, Weak<Overlay>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<Overlay>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

pub(crate) fn register(location: &str, overlay: &Arc<Overlay>) {
    let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
    map.retain(|_, weak| weak.strong_count() > 0);
    map.insert(location.to_string(), Arc::downgrade(overlay));
}

pub(crate) fn find(location: &str) -> Option<Arc<Overlay>> {
    registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(location)
        .and_then(Weak::upgrade)
}

#[cfg(test)]
mod tests {
    use coffer_core::{Amount, Code, Currency, Timestamp};
    use coffer_ledger::{
        AccountKind, AccountSpec, BalanceConstraint, Command, Known, Ledger, Metadata,
        TransferCommand, TransferOp,
    };

    use super::*;

    const NOW: Timestamp = Timestamp::from_nanos(1_800_000_000_000_000_000);

    fn id(text: &str) -> Identifier {
        Identifier::parse(text).expect("valid id")
    }

    fn open(account: &str) -> Command {
        Command::OpenAccount(AccountSpec {
            id: id(account),
            currency: Currency::parse("CNY").expect("CNY"),
            kind: AccountKind::Asset,
            constraint: BalanceConstraint::None,
            owner: id("owner"),
        })
    }

    fn post(transfer: &str, debit: &str, credit: &str, minor: i64) -> Command {
        Command::Transfers {
            transfers: vec![TransferCommand {
                id: id(transfer),
                op: TransferOp::Post {
                    debit: id(debit),
                    credit: id(credit),
                    amount: Amount::new(minor).expect("positive"),
                    currency: Currency::parse("CNY").expect("CNY"),
                },
                code: Code::parse("test").expect("code"),
                metadata: Metadata::default(),
            }],
            linked: false,
        }
    }

    /// Executes `commands` as the log entry `seq`, as the engine would.
    fn entry(ledger: &mut Ledger, seq: u64, commands: &[Command]) -> Arc<LogEntry> {
        for command in commands {
            ledger.execute(command, NOW, &Known::default());
        }
        let batch = ledger.seal().expect("the commands write");
        ledger.confirm(&batch.journal);
        Arc::new(LogEntry {
            seq,
            batch: Some(batch),
            responses: Vec::new(),
        })
    }

    fn debits(overlay: &Overlay, account: &str) -> Option<i64> {
        overlay
            .account(&id(account))
            .map(|a| a.balances.debits_posted)
    }

    #[test]
    fn a_staged_entry_is_invisible_until_published() {
        let overlay = Overlay::new(0);
        let mut ledger = Ledger::default();
        overlay.push(entry(
            &mut ledger,
            1,
            &[open("a"), open("b"), post("t1", "a", "b", 5)],
        ));
        assert_eq!(debits(&overlay, "a"), Some(5));

        let second = entry(&mut ledger, 2, &[post("t2", "a", "b", 7)]);
        overlay.stage(&second);
        // Readers still see the durable state, never the pending one.
        assert_eq!(debits(&overlay, "a"), Some(5));
        assert!(overlay.transfer(&id("t2")).is_none());
        assert!(overlay.transfer(&id("t1")).is_some());
        assert_eq!(overlay.appended(), 1);

        overlay.publish(second);
        assert_eq!(debits(&overlay, "a"), Some(12));
        assert!(overlay.transfer(&id("t2")).is_some());
        assert_eq!(overlay.appended(), 2);

        // Projecting the first entry leaves the second's state in place.
        overlay.projected_through(1);
        assert_eq!(debits(&overlay, "a"), Some(12));
        assert!(overlay.transfer(&id("t1")).is_none());
    }

    #[test]
    fn a_swept_state_under_a_staged_entry_leaves_the_tables_to_answer() {
        let overlay = Overlay::new(0);
        let mut ledger = Ledger::default();
        overlay.push(entry(
            &mut ledger,
            1,
            &[open("a"), open("b"), post("t1", "a", "b", 5)],
        ));
        let second = entry(&mut ledger, 2, &[post("t2", "a", "b", 7)]);
        overlay.stage(&second);
        // The tables now hold entry 1: the overlay must not keep answering
        // with it (nor with the pending entry 2).
        overlay.projected_through(1);
        assert_eq!(debits(&overlay, "a"), None);
        assert!(overlay.transfer(&id("t1")).is_none());
        overlay.publish(second);
        assert_eq!(debits(&overlay, "a"), Some(12));
        overlay.projected_through(2);
        assert_eq!(debits(&overlay, "a"), None);
        assert!(overlay.transfer(&id("t2")).is_none());
    }
}
