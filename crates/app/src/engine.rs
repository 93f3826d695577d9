//! The ledger engine: one writer thread that owns the in-memory `Ledger` and
//! the database writer, and commits concurrent requests in groups.
//!
//! Why one thread: the ledger's rules need a consistent view of every balance
//! they touch. Rather than lock rows in the database (which collapses on hot
//! accounts: every payment to one merchant waits for the previous one), the
//! writer thread serializes all decisions in memory, where a decision costs
//! microseconds, and amortizes the expensive part, the durable commit, over
//! every request that arrived while the previous commit was on its way to disk.
//! Each request still gets its own result, and only after its batch is durable.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coffer_core::{Clock, Identifier, Timestamp};
use coffer_ledger::{Command, Known, Ledger, Outcome, Rejection, TransferOp, BATCH_EVENTS_MAX};
use coffer_store::service::{StoredKey, StoredResponse};
use coffer_store::{Commit, Database, LedgerWriter, StoreError};
use tokio::sync::oneshot;

use crate::stats::EngineStats;

/// Requests waiting for the writer beyond this are refused with `Overloaded`
/// rather than queued without bound.
pub const QUEUE_CAPACITY_DEFAULT: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the ledger is overloaded; retry shortly")]
    Overloaded,
    #[error("the ledger is stopped")]
    Stopped,
    #[error("a command may carry at most {max} transfers; this one has {count}")]
    TooLarge { count: usize, max: usize },
    #[error("the ledger's storage failed: {0}")]
    Storage(String),
}

impl EngineError {
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Overloaded => "overloaded",
            EngineError::Stopped => "unavailable",
            EngineError::TooLarge { .. } => "batch_too_large",
            EngineError::Storage(_) => "storage_unavailable",
        }
    }
}

/// Turns a command's outcome into the response (status, body) its client
/// gets, and gets again on every retry. Must be deterministic.
pub type Render = Arc<dyn Fn(&Outcome) -> (u16, String) + Send + Sync>;

/// A command made under an idempotency key: the writer stores its rendered
/// response in the same transaction as its effect, so the response is on disk
/// exactly when the effect is, and a retry after a crash gets it back.
pub struct Recording {
    pub principal: String,
    pub key: String,
    pub request_hash: String,
    pub render: Render,
}

/// What a recorded command returns.
#[derive(Debug)]
pub enum Recorded {
    /// Executed now; its response is stored with its effect.
    Executed {
        outcome: Outcome,
        status: u16,
        body: String,
    },
    /// The key was used before with the same request: the stored response.
    Replayed { status: u16, body: String },
    /// The key was used before with a different request.
    KeyReused,
    /// The key's first request is still running (in this batch, or a
    /// request outside the ledger that has not finished).
    InFlight,
}

enum Done {
    Executed {
        outcome: Outcome,
        response: Option<(u16, String)>,
    },
    /// A recorded request answered from what its key already holds.
    Earlier(Recorded),
}

impl Done {
    fn outcome(self) -> Result<Outcome, EngineError> {
        match self {
            Done::Executed { outcome, .. } => Ok(outcome),
            Done::Earlier(_) => Err(EngineError::Storage(
                "an unrecorded command was answered from a key".into(),
            )),
        }
    }
}

type Reply = oneshot::Sender<Result<Done, EngineError>>;

struct Request {
    command: Command,
    recording: Option<Recording>,
    reply: Reply,
}

enum Message {
    Execute(Request),
    /// Expire due holds now (tests with a manual clock use it).
    Tick(oneshot::Sender<()>),
    Shutdown,
}

/// A handle to the running engine; cheap to share behind an `Arc`.
pub struct Engine {
    sender: SyncSender<Message>,
    stats: Arc<EngineStats>,
    worker: Mutex<Option<JoinHandle<()>>>,
    stopped: Arc<AtomicBool>,
}

impl Engine {
    /// Opens the database (migrating it), loads the journal head and pending
    /// holds, and starts the writer thread.
    pub fn start(database: &Database, clock: Arc<dyn Clock>) -> Result<Engine, EngineError> {
        Engine::start_with(database, clock, QUEUE_CAPACITY_DEFAULT)
    }

    pub fn start_with(
        database: &Database,
        clock: Arc<dyn Clock>,
        queue_capacity: usize,
    ) -> Result<Engine, EngineError> {
        let writer = database.open_writer().map_err(storage)?;
        let mut worker = Worker {
            database: database.clone(),
            writer,
            ledger: Ledger::default(),
            clock,
            stats: Arc::new(EngineStats::default()),
            carried: None,
        };
        worker.reload().map_err(storage)?;
        let stats = worker.stats.clone();
        let (sender, receiver) = std::sync::mpsc::sync_channel(queue_capacity.max(1));
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        let handle = std::thread::Builder::new()
            .name("coffer-ledger-writer".into())
            .spawn(move || {
                worker.run(receiver);
                flag.store(true, Ordering::SeqCst);
            })
            .map_err(|e| EngineError::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(Engine {
            sender,
            stats,
            worker: Mutex::new(Some(handle)),
            stopped,
        })
    }

    /// Executes one command; resolves once its batch is durable.
    pub async fn execute(&self, command: Command) -> Result<Outcome, EngineError> {
        let receiver = self.submit(command, None)?;
        receiver.await.map_err(|_| EngineError::Stopped)??.outcome()
    }

    /// `execute` for threads outside the async runtime (CLI, benchmarks).
    pub fn execute_blocking(&self, command: Command) -> Result<Outcome, EngineError> {
        let receiver = self.submit(command, None)?;
        receiver
            .blocking_recv()
            .map_err(|_| EngineError::Stopped)??
            .outcome()
    }

    /// Executes a command under an idempotency key: the writer first looks
    /// the key up (in order with its own commits, so a retry always sees
    /// its first request once that committed), then executes and stores the
    /// rendered response in the same transaction as the command's effect.
    pub async fn execute_recorded(
        &self,
        command: Command,
        recording: Recording,
    ) -> Result<Recorded, EngineError> {
        let render = recording.render.clone();
        let receiver = self.submit(command, Some(recording))?;
        match receiver.await.map_err(|_| EngineError::Stopped)?? {
            Done::Executed { outcome, response } => {
                let (status, body) = response.unwrap_or_else(|| render(&outcome));
                Ok(Recorded::Executed {
                    outcome,
                    status,
                    body,
                })
            }
            Done::Earlier(earlier) => Ok(earlier),
        }
    }

    fn submit(
        &self,
        command: Command,
        recording: Option<Recording>,
    ) -> Result<oneshot::Receiver<Result<Done, EngineError>>, EngineError> {
        let count = command.event_count_max();
        if count > BATCH_EVENTS_MAX {
            return Err(EngineError::TooLarge {
                count,
                max: BATCH_EVENTS_MAX,
            });
        }
        let (reply, receiver) = oneshot::channel();
        match self.sender.try_send(Message::Execute(Request {
            command,
            recording,
            reply,
        })) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => {
                self.stats.overloaded.fetch_add(1, Ordering::Relaxed);
                Err(EngineError::Overloaded)
            }
            Err(TrySendError::Disconnected(_)) => Err(EngineError::Stopped),
        }
    }

    /// Expires every hold that is due, now; returns once that is durable.
    pub async fn tick(&self) -> Result<(), EngineError> {
        let (done, receiver) = oneshot::channel();
        self.sender
            .send(Message::Tick(done))
            .map_err(|_| EngineError::Stopped)?;
        receiver.await.map_err(|_| EngineError::Stopped)
    }

    pub fn tick_blocking(&self) -> Result<(), EngineError> {
        let (done, receiver) = oneshot::channel();
        self.sender
            .send(Message::Tick(done))
            .map_err(|_| EngineError::Stopped)?;
        receiver.blocking_recv().map_err(|_| EngineError::Stopped)
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn is_running(&self) -> bool {
        !self.stopped.load(Ordering::SeqCst)
    }

    /// Commits everything already queued, then stops the writer. Idempotent.
    pub fn shutdown(&self) {
        let _ = self.sender.send(Message::Shutdown);
        let handle = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn storage(error: StoreError) -> EngineError {
    EngineError::Storage(error.to_string())
}

struct Worker {
    database: Database,
    writer: Box<dyn LedgerWriter>,
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    stats: Arc<EngineStats>,
    /// A request that did not fit in the previous batch.
    carried: Option<Request>,
}

impl Worker {
    /// Rebuilds the in-memory state from storage: the journal head, pending
    /// holds and the accounts they touch. Other accounts load on first use.
    fn reload(&mut self) -> Result<(), StoreError> {
        let head = self.writer.head()?;
        let mut ledger = Ledger::new(head.batch, head.hash, head.last_timestamp);
        let holds = self.writer.pending_holds()?;
        let mut ids: Vec<Identifier> = holds
            .iter()
            .flat_map(|h| [h.debit.clone(), h.credit.clone()])
            .collect();
        ids.sort();
        ids.dedup();
        for account in self.writer.accounts(&ids)? {
            ledger.cache_account(account);
        }
        for hold in holds {
            ledger.cache_hold(hold);
        }
        self.ledger = ledger;
        Ok(())
    }

    fn run(&mut self, receiver: Receiver<Message>) {
        let mut shutting_down = false;
        loop {
            let first = match self.carried.take() {
                Some(request) => Some(Message::Execute(request)),
                None if shutting_down => match receiver.try_recv() {
                    Ok(message) => Some(message),
                    Err(_) => return,
                },
                None => match self.wait_time() {
                    None => receiver.recv().ok(),
                    Some(wait) => match receiver.recv_timeout(wait) {
                        Ok(message) => Some(message),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    },
                },
            };
            let mut requests = Vec::new();
            let mut ticks = Vec::new();
            let mut events = 0;
            let mut next = first;
            while let Some(message) = next.take() {
                match message {
                    Message::Execute(request) => {
                        let count = request.command.event_count_max();
                        if events + count > BATCH_EVENTS_MAX && !requests.is_empty() {
                            self.carried = Some(request);
                            break;
                        }
                        events += count;
                        requests.push(request);
                    }
                    Message::Tick(done) => ticks.push(done),
                    Message::Shutdown => shutting_down = true,
                }
                next = receiver.try_recv().ok();
            }
            self.process(requests);
            for done in ticks {
                let _ = done.send(());
            }
        }
    }

    /// How long to sleep before the next hold expires (`None`: no holds).
    fn wait_time(&self) -> Option<Duration> {
        let next = self.ledger.next_expiry()?;
        let nanos = next
            .as_nanos()
            .saturating_sub(self.clock.now().as_nanos())
            .clamp(0, 1_000_000_000);
        Some(
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)).max(Duration::from_micros(100)),
        )
    }

    /// Answers recorded requests whose key already holds something; returns
    /// the rest. A key twice in one batch: the second is in flight.
    fn screen(
        &mut self,
        requests: Vec<Request>,
    ) -> Result<Vec<Request>, (Vec<Request>, StoreError)> {
        let keys: Vec<(String, String)> = requests
            .iter()
            .filter_map(|r| r.recording.as_ref())
            .map(|r| (r.principal.clone(), r.key.clone()))
            .collect();
        if keys.is_empty() {
            return Ok(requests);
        }
        let stored = match self.writer.responses(&keys) {
            Ok(stored) => stored,
            Err(error) => return Err((requests, error)),
        };
        let stored: HashMap<(String, String), StoredKey> = stored
            .into_iter()
            .map(|k| ((k.principal.clone(), k.key.clone()), k))
            .collect();
        let mut seen = HashSet::new();
        let mut kept = Vec::with_capacity(requests.len());
        for request in requests {
            let Some(recording) = &request.recording else {
                kept.push(request);
                continue;
            };
            let id = (recording.principal.clone(), recording.key.clone());
            let earlier = match stored.get(&id) {
                Some(key) if key.request_hash != recording.request_hash => {
                    Some(Recorded::KeyReused)
                }
                Some(key) => Some(match &key.response {
                    Some((status, body)) => Recorded::Replayed {
                        status: *status,
                        body: body.clone(),
                    },
                    None => Recorded::InFlight,
                }),
                None if !seen.insert(id) => Some(Recorded::InFlight),
                None => None,
            };
            match earlier {
                Some(earlier) => {
                    let _ = request.reply.send(Ok(Done::Earlier(earlier)));
                }
                None => kept.push(request),
            }
        }
        Ok(kept)
    }

    /// Executes a group of requests (and any due expiries) as one batch.
    fn process(&mut self, requests: Vec<Request>) {
        let requests = match self.screen(requests) {
            Ok(requests) => requests,
            Err((requests, error)) => {
                self.fail(requests, error);
                return;
            }
        };
        let now = self.clock.now();
        let requested: usize = requests.iter().map(|r| r.command.event_count_max()).sum();
        let mut known = Known::default();
        if let Err(error) = self.prefetch(&requests, now, requested, &mut known) {
            self.fail(requests, error);
            return;
        }
        let mut checked = HashSet::new();
        for attempt in 0..4 {
            let expire_limit = BATCH_EVENTS_MAX.saturating_sub(requested);
            let expired = self.ledger.expire_due(now, expire_limit);
            let outcomes: Vec<Outcome> = requests
                .iter()
                .map(|r| self.ledger.execute(&r.command, now, &known))
                .collect();
            // The ledger remembers only this batch's transfers. A refused
            // transfer may be a retry of one committed long ago, which must get
            // the original back, not a fresh verdict: look those ids up.
            let unknown = rejected_unknown_ids(&requests, &outcomes, &known, &mut checked);
            if !unknown.is_empty() {
                match self.writer.transfers(&unknown) {
                    Ok(found) if found.is_empty() => {}
                    Ok(found) => {
                        self.ledger.rollback();
                        let ids: Vec<Identifier> = found.into_iter().map(|t| t.id).collect();
                        if let Err(error) = self.load_transfers(&ids, &mut known) {
                            self.fail(requests, error);
                            return;
                        }
                        continue;
                    }
                    Err(error) => {
                        self.ledger.rollback();
                        self.fail(requests, error);
                        return;
                    }
                }
            }
            let responses = render_responses(&requests, &outcomes, now);
            let Some(batch) = self.ledger.seal() else {
                // No balance changed (only rejections and replays of committed
                // data), but recorded requests must answer the same on retry.
                let stored = to_store(&responses);
                if let Err(error) = self.writer.record(&stored) {
                    self.fail(requests, error);
                    return;
                }
                self.answer(requests, outcomes, responses);
                return;
            };
            let stored = to_store(&responses);
            let journal = batch.journal.clone();
            let events = batch.events.len();
            let transfers = batch
                .events
                .iter()
                .filter(|e| matches!(e, coffer_ledger::Event::Transfer(_)))
                .count();
            let commit_started = Instant::now();
            match self.writer.commit(batch, stored) {
                Ok(Commit::Committed) => {
                    self.ledger.confirm(&journal);
                    self.stats
                        .record_batch(events, transfers, expired, commit_started.elapsed());
                    self.answer(requests, outcomes, responses);
                    return;
                }
                Ok(Commit::Duplicates(ids)) => {
                    // Some ids were committed by an earlier batch the ledger no
                    // longer remembers: load them and execute again, so those
                    // requests replay the original instead of writing twice.
                    self.ledger.rollback();
                    self.stats.duplicate_retries.fetch_add(1, Ordering::Relaxed);
                    if let Err(error) = self.load_transfers(&ids, &mut known) {
                        self.fail(requests, error);
                        return;
                    }
                    tracing::debug!(
                        attempt,
                        duplicates = ids.len(),
                        "batch repeated committed ids; re-executing"
                    );
                }
                Err(error) => {
                    self.ledger.rollback();
                    self.fail(requests, error);
                    return;
                }
            }
        }
        self.ledger.rollback();
        self.fail(
            requests,
            StoreError::Corrupt("a batch kept colliding with committed ids".into()),
        );
    }

    /// Loads what the batch refers to and the ledger does not hold in memory.
    fn prefetch(
        &mut self,
        requests: &[Request],
        now: Timestamp,
        requested: usize,
        known: &mut Known,
    ) -> Result<(), StoreError> {
        let mut accounts: HashSet<Identifier> = HashSet::new();
        let mut holds: HashSet<Identifier> = HashSet::new();
        let mut repeated: Vec<Identifier> = Vec::new();
        let mut want = |id: &Identifier, ledger: &Ledger| {
            if ledger.account(id).is_none() {
                accounts.insert(id.clone());
            }
        };
        for request in requests {
            match &request.command {
                Command::OpenAccount(spec) => want(&spec.id, &self.ledger),
                Command::CloseAccount(id) => want(id, &self.ledger),
                Command::Transfers { transfers, .. } => {
                    for transfer in transfers {
                        // An id that names a pending hold is a repeat of the
                        // transfer that placed it: load that record, so the
                        // ledger replays it rather than placing the hold twice.
                        if self.ledger.pending_hold(&transfer.id).is_some() {
                            repeated.push(transfer.id.clone());
                        }
                        match &transfer.op {
                            TransferOp::Post { debit, credit, .. }
                            | TransferOp::Hold { debit, credit, .. } => {
                                want(debit, &self.ledger);
                                want(credit, &self.ledger);
                            }
                            TransferOp::Capture { hold, .. } | TransferOp::Release { hold } => {
                                match self.ledger.pending_hold(hold) {
                                    Some(pending) => {
                                        want(&pending.debit, &self.ledger);
                                        want(&pending.credit, &self.ledger);
                                    }
                                    None => {
                                        holds.insert(hold.clone());
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let limit = BATCH_EVENTS_MAX.saturating_sub(requested);
        accounts.extend(self.ledger.accounts_of_due_holds(now, limit));
        if !accounts.is_empty() {
            let ids: Vec<Identifier> = accounts.into_iter().collect();
            for account in self.writer.accounts(&ids)? {
                self.ledger.cache_account(account);
            }
        }
        if !holds.is_empty() {
            let ids: Vec<Identifier> = holds.into_iter().collect();
            for hold in self.writer.holds(&ids)? {
                known.holds.insert(hold.id.clone(), hold);
            }
        }
        if !repeated.is_empty() {
            self.load_transfers(&repeated, known)?;
        }
        Ok(())
    }

    fn load_transfers(&mut self, ids: &[Identifier], known: &mut Known) -> Result<(), StoreError> {
        let mut holds = Vec::new();
        for transfer in self.writer.transfers(ids)? {
            if let Some(hold) = &transfer.hold {
                if self.ledger.pending_hold(hold).is_none() && !known.holds.contains_key(hold) {
                    holds.push(hold.clone());
                }
            }
            known.transfers.insert(transfer.id.clone(), transfer);
        }
        if !holds.is_empty() {
            for hold in self.writer.holds(&holds)? {
                known.holds.insert(hold.id.clone(), hold);
            }
        }
        Ok(())
    }

    fn answer(
        &self,
        requests: Vec<Request>,
        outcomes: Vec<Outcome>,
        responses: Vec<Option<StoredResponse>>,
    ) {
        self.stats
            .requests
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        for ((request, outcome), response) in requests.into_iter().zip(outcomes).zip(responses) {
            let _ = request.reply.send(Ok(Done::Executed {
                outcome,
                response: response.map(|r| (r.status, r.body)),
            }));
        }
    }

    /// Storage failed: nobody in the batch gets a result, and the in-memory
    /// state is rebuilt from what storage actually holds (the commit may or
    /// may not have landed; a retry under the same ids tells which).
    fn fail(&mut self, requests: Vec<Request>, error: StoreError) {
        tracing::error!(%error, requests = requests.len(), "ledger commit failed");
        self.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
        let message = EngineError::Storage(error.to_string());
        for request in requests {
            let _ = request.reply.send(Err(message.clone()));
        }
        let mut delay = Duration::from_millis(10);
        loop {
            let reopened = self.database.open_writer().and_then(|writer| {
                self.writer = writer;
                self.reload()
            });
            match reopened {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(%error, "cannot reopen the ledger database; retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// The response each recorded request will get, rendered before the commit
/// so it can be stored with it.
fn render_responses(
    requests: &[Request],
    outcomes: &[Outcome],
    now: Timestamp,
) -> Vec<Option<StoredResponse>> {
    requests
        .iter()
        .zip(outcomes)
        .map(|(request, outcome)| {
            request.recording.as_ref().map(|recording| {
                let (status, body) = (recording.render)(outcome);
                StoredResponse {
                    principal: recording.principal.clone(),
                    key: recording.key.clone(),
                    request_hash: recording.request_hash.clone(),
                    status,
                    body,
                    created_at: now.as_nanos(),
                }
            })
        })
        .collect()
}

/// Faults on our side are not remembered: the client's retry must run again.
fn to_store(responses: &[Option<StoredResponse>]) -> Vec<StoredResponse> {
    responses
        .iter()
        .flatten()
        .filter(|r| r.status < 500)
        .cloned()
        .collect()
}

/// Ids of refused transfers that neither this batch nor `known` has seen,
/// each reported once per batch.
fn rejected_unknown_ids(
    requests: &[Request],
    outcomes: &[Outcome],
    known: &Known,
    checked: &mut HashSet<Identifier>,
) -> Vec<Identifier> {
    let mut ids = Vec::new();
    for (request, outcome) in requests.iter().zip(outcomes) {
        let (Command::Transfers { transfers, .. }, Outcome::Transfers(results)) =
            (&request.command, outcome)
        else {
            continue;
        };
        for (command, result) in transfers.iter().zip(results) {
            let refused = matches!(result, Err(r) if *r != Rejection::ExistsWithDifferentFields);
            if refused
                && !known.transfers.contains_key(&command.id)
                && checked.insert(command.id.clone())
            {
                ids.push(command.id.clone());
            }
        }
    }
    ids
}

/// For tests and benchmarks: the clock the engine reads, shared.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(coffer_core::SystemClock)
}

/// A clock the test moves by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(AtomicU64::new(u64::try_from(start.as_nanos()).unwrap_or(0)))
    }

    pub fn advance_millis(&self, milliseconds: u64) {
        self.0
            .fetch_add(milliseconds.saturating_mul(1_000_000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(i64::try_from(self.0.load(Ordering::SeqCst)).unwrap_or(i64::MAX))
    }
}
