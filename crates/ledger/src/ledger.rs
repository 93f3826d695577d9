//! The state machine: executes commands against accounts and holds, assigns
//! timestamps, records undo information, and seals a batch for the journal.

use std::collections::{BTreeSet, HashMap};

use coffer_core::{Amount, Code, Identifier, Timestamp};

use crate::account::{Account, AccountSpec, AccountStatus, Balances, Side};
use crate::journal::{Event, JournalEntry, JournalHash, JournalHasher, GENESIS_HASH};
use crate::metadata::Metadata;
use crate::rejection::Rejection;
use crate::transfer::{
    Hold, HoldState, Transfer, TransferCommand, TransferKind, TransferOp, HOLD_TIMEOUT_MAX_MS,
};

/// Most events one commit may carry. Bounds the size of a database transaction
/// and of the engine's memory per batch.
pub const BATCH_EVENTS_MAX: usize = 8190;

/// One request to the ledger. A `Transfers` command with `linked: true` is
/// all-or-nothing; otherwise each transfer stands alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    OpenAccount(AccountSpec),
    CloseAccount(Identifier),
    Transfers {
        transfers: Vec<TransferCommand>,
        linked: bool,
    },
}

impl Command {
    /// How many events this command can write at most.
    pub fn event_count_max(&self) -> usize {
        match self {
            Command::OpenAccount(_) | Command::CloseAccount(_) => 1,
            Command::Transfers { transfers, .. } => transfers.len(),
        }
    }
}

/// What a command did. `created` is false when an identical earlier request
/// is being replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Account(Result<(Account, bool), Rejection>),
    Transfers(Vec<Result<(Transfer, bool), Rejection>>),
}

/// Records the engine loaded from storage for one batch, beyond what the
/// ledger keeps in memory: transfers whose ids the batch repeats, and holds
/// that are no longer pending.
#[derive(Debug, Default)]
pub struct Known {
    pub transfers: HashMap<Identifier, Transfer>,
    pub holds: HashMap<Identifier, Hold>,
}

/// A change to the `holds` table that a batch makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldChange {
    Placed(Hold),
    Resolved(Hold),
}

/// Everything one database transaction must write, in order: the events
/// (new accounts, closings, transfers), the accounts whose totals changed,
/// the holds placed or resolved, and the journal entry.
#[derive(Debug, Clone)]
pub struct SealedBatch {
    pub events: Vec<Event>,
    pub accounts: Vec<Account>,
    pub hold_changes: Vec<HoldChange>,
    pub journal: JournalEntry,
    /// Holds the ledger expired in this batch (reported, not replied to).
    pub expired: usize,
}

enum Undo {
    Balances(usize, Balances),
    AccountOpened(usize),
    AccountStatus(usize, AccountStatus, Option<Timestamp>),
    HoldPlaced(Identifier),
    HoldResolved(Hold),
    Event,
    HoldChange,
}

pub struct Ledger {
    accounts: Vec<Account>,
    index: HashMap<Identifier, usize>,
    /// Pending holds only; resolved holds live in storage.
    holds: HashMap<Identifier, Hold>,
    expiries: BTreeSet<(Timestamp, Identifier)>,
    last_timestamp: Timestamp,
    head_batch: u64,
    head_hash: JournalHash,
    // The batch being built.
    events: Vec<Event>,
    batch_transfers: HashMap<Identifier, usize>,
    resolved: HashMap<Identifier, Hold>,
    hold_changes: Vec<HoldChange>,
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    undo: Vec<Undo>,
    batch_start_timestamp: Timestamp,
    expired_in_batch: usize,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new(0, GENESIS_HASH, Timestamp::ZERO)
    }
}

impl Ledger {
    /// A ledger continuing from the journal head stored so far.
    pub fn new(head_batch: u64, head_hash: JournalHash, last_timestamp: Timestamp) -> Ledger {
        Ledger {
            accounts: Vec::new(),
            index: HashMap::new(),
            holds: HashMap::new(),
            expiries: BTreeSet::new(),
            last_timestamp,
            head_batch,
            head_hash,
            events: Vec::new(),
            batch_transfers: HashMap::new(),
            resolved: HashMap::new(),
            hold_changes: Vec::new(),
            dirty: Vec::new(),
            is_dirty: Vec::new(),
            undo: Vec::new(),
            batch_start_timestamp: last_timestamp,
            expired_in_batch: 0,
        }
    }

    /// Adds an account read from storage. Ignored if already cached: the
    /// cached copy is newer or equal.
    pub fn cache_account(&mut self, account: Account) {
        if !self.index.contains_key(account.id()) {
            self.index.insert(account.id().clone(), self.accounts.len());
            self.accounts.push(account);
            self.is_dirty.push(false);
        }
    }

    /// Adds a pending hold read from storage.
    pub fn cache_hold(&mut self, hold: Hold) {
        if hold.state == HoldState::Pending && !self.holds.contains_key(&hold.id) {
            self.expiries.insert((hold.expires_at, hold.id.clone()));
            self.holds.insert(hold.id.clone(), hold);
        }
    }

    pub fn account(&self, id: &Identifier) -> Option<&Account> {
        self.index.get(id).map(|&slot| &self.accounts[slot])
    }

    pub fn pending_hold(&self, id: &Identifier) -> Option<&Hold> {
        self.holds.get(id)
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    pub fn pending_hold_count(&self) -> usize {
        self.holds.len()
    }

    pub fn head(&self) -> (u64, JournalHash) {
        (self.head_batch, self.head_hash)
    }

    pub fn last_timestamp(&self) -> Timestamp {
        self.last_timestamp
    }

    pub fn batch_event_count(&self) -> usize {
        self.events.len()
    }

    /// The earliest time a pending hold expires, so the engine knows when to wake.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Executes one command into the current batch.
    pub fn execute(&mut self, command: &Command, now: Timestamp, known: &Known) -> Outcome {
        match command {
            Command::OpenAccount(spec) => Outcome::Account(self.open_account(spec, now)),
            Command::CloseAccount(id) => Outcome::Account(self.close_account(id, now)),
            Command::Transfers {
                transfers,
                linked: false,
            } => Outcome::Transfers(
                transfers
                    .iter()
                    .map(|t| self.execute_transfer(t, now, known))
                    .collect(),
            ),
            Command::Transfers {
                transfers,
                linked: true,
            } => Outcome::Transfers(self.execute_linked(transfers, now, known)),
        }
    }

    /// Expires every pending hold whose timeout is at or before `now`, up to
    /// `limit` of them. Returns how many were expired.
    pub fn expire_due(&mut self, now: Timestamp, limit: usize) -> usize {
        let mut count = 0;
        while count < limit {
            let Some((expires_at, id)) = self.expiries.first().cloned() else {
                break;
            };
            if expires_at > now {
                break;
            }
            let Some(hold) = self.holds.get(&id).cloned() else {
                self.expiries.remove(&(expires_at, id));
                continue;
            };
            let timestamp = self.next_timestamp(now);
            let expire_id = Identifier::system("expire", &hold.id);
            // Infallible for a consistent state; if the accounts are not cached
            // the engine loads them before calling (see `hold_accounts`).
            if self
                .resolve_hold(
                    &hold,
                    expire_id,
                    TransferKind::Expire,
                    hold.amount,
                    expiry_code(),
                    timestamp,
                )
                .is_err()
            {
                break;
            }
            count += 1;
        }
        self.expired_in_batch += count;
        count
    }

    /// Account ids the pending holds due by `now` refer to (so the engine can load them).
    pub fn accounts_of_due_holds(&self, now: Timestamp, limit: usize) -> Vec<Identifier> {
        self.expiries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .filter_map(|(_, id)| self.holds.get(id))
            .flat_map(|hold| [hold.debit.clone(), hold.credit.clone()])
            .filter(|id| !self.index.contains_key(id))
            .collect()
    }

    /// Ends the batch: everything executed since the last confirm or rollback
    /// becomes one journal entry. `None` if nothing was written.
    pub fn seal(&mut self) -> Option<SealedBatch> {
        if self.events.is_empty() {
            return None;
        }
        let mut hasher = JournalHasher::new(self.head_batch + 1, self.head_hash);
        for event in &self.events {
            hasher.push(event);
        }
        let accounts = self
            .dirty
            .iter()
            .map(|&slot| self.accounts[slot].clone())
            .collect();
        Some(SealedBatch {
            events: std::mem::take(&mut self.events),
            accounts,
            hold_changes: std::mem::take(&mut self.hold_changes),
            journal: hasher.finish(),
            expired: self.expired_in_batch,
        })
    }

    /// The sealed batch is durable: make it the new base state.
    pub fn confirm(&mut self, journal: &JournalEntry) {
        self.head_batch = journal.batch;
        self.head_hash = journal.hash;
        self.clear_batch();
        self.batch_start_timestamp = self.last_timestamp;
    }

    /// The batch could not be written: undo all of it.
    pub fn rollback(&mut self) {
        self.undo_to(0);
        self.clear_batch();
        self.last_timestamp = self.batch_start_timestamp;
    }

    fn clear_batch(&mut self) {
        self.undo.clear();
        self.events.clear();
        self.batch_transfers.clear();
        self.resolved.clear();
        self.hold_changes.clear();
        for slot in self.dirty.drain(..) {
            if let Some(flag) = self.is_dirty.get_mut(slot) {
                *flag = false;
            }
        }
        self.expired_in_batch = 0;
    }

    fn undo_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let Some(entry) = self.undo.pop() else { break };
            match entry {
                Undo::Balances(slot, balances) => self.accounts[slot].balances = balances,
                Undo::AccountOpened(slot) => {
                    let account = self.accounts.pop();
                    self.is_dirty.truncate(slot);
                    self.dirty.retain(|&s| s != slot);
                    if let Some(account) = account {
                        self.index.remove(account.id());
                    }
                }
                Undo::AccountStatus(slot, status, closed_at) => {
                    self.accounts[slot].status = status;
                    self.accounts[slot].closed_at = closed_at;
                }
                Undo::HoldPlaced(id) => {
                    if let Some(hold) = self.holds.remove(&id) {
                        self.expiries.remove(&(hold.expires_at, id));
                    }
                }
                Undo::HoldResolved(hold) => {
                    self.resolved.remove(&hold.id);
                    self.expiries.insert((hold.expires_at, hold.id.clone()));
                    self.holds.insert(hold.id.clone(), hold);
                }
                Undo::Event => {
                    if let Some(Event::Transfer(transfer)) = self.events.pop() {
                        self.batch_transfers.remove(&transfer.id);
                    }
                }
                Undo::HoldChange => {
                    self.hold_changes.pop();
                }
            }
        }
    }

    /// Unique, strictly increasing, and never behind the clock.
    fn next_timestamp(&mut self, now: Timestamp) -> Timestamp {
        self.last_timestamp = now.max(self.last_timestamp.next());
        self.last_timestamp
    }

    fn push_event(&mut self, event: Event) {
        if let Event::Transfer(transfer) = &event {
            self.batch_transfers
                .insert(transfer.id.clone(), self.events.len());
        }
        self.events.push(event);
        self.undo.push(Undo::Event);
    }

    fn set_balances(&mut self, slot: usize, balances: Balances) {
        let account = &mut self.accounts[slot];
        self.undo.push(Undo::Balances(slot, account.balances));
        account.balances = balances;
        if !self.is_dirty[slot] {
            self.is_dirty[slot] = true;
            self.dirty.push(slot);
        }
    }

    fn open_account(
        &mut self,
        spec: &AccountSpec,
        now: Timestamp,
    ) -> Result<(Account, bool), Rejection> {
        if let Some(existing) = self.account(&spec.id) {
            return if existing.spec == *spec {
                Ok((existing.clone(), false))
            } else {
                Err(Rejection::ExistsWithDifferentFields)
            };
        }
        let account = Account {
            spec: spec.clone(),
            status: AccountStatus::Open,
            balances: Balances::default(),
            opened_at: self.next_timestamp(now),
            closed_at: None,
        };
        let slot = self.accounts.len();
        self.index.insert(spec.id.clone(), slot);
        self.accounts.push(account.clone());
        self.is_dirty.push(false);
        self.undo.push(Undo::AccountOpened(slot));
        self.push_event(Event::AccountOpened(account.clone()));
        Ok((account, true))
    }

    fn close_account(
        &mut self,
        id: &Identifier,
        now: Timestamp,
    ) -> Result<(Account, bool), Rejection> {
        let slot = *self
            .index
            .get(id)
            .ok_or(Rejection::AccountToCloseNotFound)?;
        let account = &self.accounts[slot];
        if account.status == AccountStatus::Closed {
            return Err(Rejection::AccountAlreadyClosed);
        }
        let balances = account.balances;
        if balances.debits_pending != 0
            || balances.credits_pending != 0
            || balances.debits_posted != balances.credits_posted
        {
            return Err(Rejection::AccountNotEmpty);
        }
        let (status, closed_at) = (account.status, account.closed_at);
        let timestamp = self.next_timestamp(now);
        self.undo.push(Undo::AccountStatus(slot, status, closed_at));
        let account = &mut self.accounts[slot];
        account.status = AccountStatus::Closed;
        account.closed_at = Some(timestamp);
        let account = account.clone();
        if !self.is_dirty[slot] {
            self.is_dirty[slot] = true;
            self.dirty.push(slot);
        }
        self.push_event(Event::AccountClosed {
            account: account.clone(),
        });
        Ok((account, true))
    }

    fn find_transfer<'a>(&'a self, id: &Identifier, known: &'a Known) -> Option<&'a Transfer> {
        if let Some(&index) = self.batch_transfers.get(id) {
            if let Some(Event::Transfer(transfer)) = self.events.get(index) {
                return Some(transfer);
            }
        }
        known.transfers.get(id)
    }

    fn hold_amount(&self, id: &Identifier, known: &Known) -> Option<Amount> {
        self.holds
            .get(id)
            .or_else(|| self.resolved.get(id))
            .or_else(|| known.holds.get(id))
            .map(|hold| hold.amount)
    }

    /// An identical repeat returns the original; a different use of the id is refused.
    fn replay(
        &self,
        command: &TransferCommand,
        known: &Known,
    ) -> Option<Result<(Transfer, bool), Rejection>> {
        let existing = self.find_transfer(&command.id, known)?;
        let hold_amount = existing
            .hold
            .as_ref()
            .and_then(|hold| self.hold_amount(hold, known));
        Some(if command.matches(existing, hold_amount) {
            Ok((existing.clone(), false))
        } else {
            Err(Rejection::ExistsWithDifferentFields)
        })
    }

    fn execute_linked(
        &mut self,
        commands: &[TransferCommand],
        now: Timestamp,
        known: &Known,
    ) -> Vec<Result<(Transfer, bool), Rejection>> {
        let replays: Vec<_> = commands.iter().map(|c| self.replay(c, known)).collect();
        let existing = replays.iter().filter(|r| r.is_some()).count();
        if existing == commands.len() {
            // A replay of the whole batch: every member answers for itself, but
            // the batch succeeds only if every member is an identical repeat.
            let all_match = replays.iter().all(|r| matches!(r, Some(Ok(_))));
            return replays
                .into_iter()
                .map(|r| match r {
                    Some(Ok(found)) if all_match => Ok(found),
                    Some(Err(rejection)) => Err(rejection),
                    _ => Err(Rejection::LinkedTransferFailed),
                })
                .collect();
        }
        if existing > 0 {
            return replays
                .into_iter()
                .map(|r| {
                    Err(if r.is_some() {
                        Rejection::LinkedBatchPartiallyExists
                    } else {
                        Rejection::LinkedTransferFailed
                    })
                })
                .collect();
        }
        let mark = self.undo.len();
        let mut results = Vec::with_capacity(commands.len());
        for (index, command) in commands.iter().enumerate() {
            match self.execute_transfer(command, now, known) {
                Ok(done) => results.push(Ok(done)),
                Err(rejection) => {
                    self.undo_to(mark);
                    return (0..commands.len())
                        .map(|i| {
                            Err(if i == index {
                                rejection
                            } else {
                                Rejection::LinkedTransferFailed
                            })
                        })
                        .collect();
                }
            }
        }
        results
    }

    fn execute_transfer(
        &mut self,
        command: &TransferCommand,
        now: Timestamp,
        known: &Known,
    ) -> Result<(Transfer, bool), Rejection> {
        if let Some(replayed) = self.replay(command, known) {
            return replayed;
        }
        match &command.op {
            TransferOp::Post {
                debit,
                credit,
                amount,
                currency,
            } => {
                if debit == credit {
                    return Err(Rejection::SameAccount);
                }
                let (d, c) = self.resolve_pair(debit, credit, *currency)?;
                let mut debit_after = self.accounts[d].balances;
                let mut credit_after = self.accounts[c].balances;
                debit_after.debits_posted =
                    add(debit_after.debits_posted, amount.minor_units(), Side::Debit)?;
                credit_after.credits_posted = add(
                    credit_after.credits_posted,
                    amount.minor_units(),
                    Side::Credit,
                )?;
                self.check_constraints(d, &debit_after, c, &credit_after)?;
                let timestamp = self.next_timestamp(now);
                self.set_balances(d, debit_after);
                self.set_balances(c, credit_after);
                let transfer = Transfer {
                    id: command.id.clone(),
                    kind: TransferKind::Posted,
                    debit: debit.clone(),
                    credit: credit.clone(),
                    amount: *amount,
                    currency: *currency,
                    code: command.code.clone(),
                    metadata: command.metadata.clone(),
                    hold: None,
                    expires_at: None,
                    timestamp,
                    debit_after,
                    credit_after,
                };
                self.push_event(Event::Transfer(transfer.clone()));
                Ok((transfer, true))
            }
            TransferOp::Hold {
                debit,
                credit,
                amount,
                currency,
                timeout_ms,
            } => {
                if debit == credit {
                    return Err(Rejection::SameAccount);
                }
                if *timeout_ms == 0 || *timeout_ms > HOLD_TIMEOUT_MAX_MS {
                    return Err(Rejection::InvalidTimeout);
                }
                // A pending hold with this id means the id is taken. The
                // engine loads the original for a replay; without it, refuse
                // rather than place a second hold under the same id.
                if self.holds.contains_key(&command.id) {
                    return Err(Rejection::ExistsWithDifferentFields);
                }
                let (d, c) = self.resolve_pair(debit, credit, *currency)?;
                let mut debit_after = self.accounts[d].balances;
                let mut credit_after = self.accounts[c].balances;
                debit_after.debits_pending = add(
                    debit_after.debits_pending,
                    amount.minor_units(),
                    Side::Debit,
                )?;
                credit_after.credits_pending = add(
                    credit_after.credits_pending,
                    amount.minor_units(),
                    Side::Credit,
                )?;
                self.check_constraints(d, &debit_after, c, &credit_after)?;
                let timestamp = self.next_timestamp(now);
                self.set_balances(d, debit_after);
                self.set_balances(c, credit_after);
                let expires_at = timestamp.plus_millis(*timeout_ms);
                let hold = Hold {
                    id: command.id.clone(),
                    debit: debit.clone(),
                    credit: credit.clone(),
                    amount: *amount,
                    currency: *currency,
                    expires_at,
                    state: HoldState::Pending,
                    resolved_by: None,
                    captured: None,
                };
                self.expiries.insert((expires_at, hold.id.clone()));
                self.holds.insert(hold.id.clone(), hold.clone());
                self.undo.push(Undo::HoldPlaced(hold.id.clone()));
                self.hold_changes.push(HoldChange::Placed(hold));
                self.undo.push(Undo::HoldChange);
                let transfer = Transfer {
                    id: command.id.clone(),
                    kind: TransferKind::Hold,
                    debit: debit.clone(),
                    credit: credit.clone(),
                    amount: *amount,
                    currency: *currency,
                    code: command.code.clone(),
                    metadata: command.metadata.clone(),
                    hold: None,
                    expires_at: Some(expires_at),
                    timestamp,
                    debit_after,
                    credit_after,
                };
                self.push_event(Event::Transfer(transfer.clone()));
                Ok((transfer, true))
            }
            TransferOp::Capture { hold, amount } => {
                let hold = self.pending_hold_for(hold, known)?;
                let timestamp = self.next_timestamp(now);
                if timestamp >= hold.expires_at {
                    return Err(Rejection::HoldExpired);
                }
                let captured = amount.unwrap_or(hold.amount);
                if captured > hold.amount {
                    return Err(Rejection::CaptureExceedsHold);
                }
                self.resolve_hold_with(
                    &hold,
                    command.id.clone(),
                    TransferKind::Capture,
                    captured,
                    command.code.clone(),
                    command.metadata.clone(),
                    timestamp,
                )
                .map(|transfer| (transfer, true))
            }
            TransferOp::Release { hold } => {
                let hold = self.pending_hold_for(hold, known)?;
                let timestamp = self.next_timestamp(now);
                if timestamp >= hold.expires_at {
                    return Err(Rejection::HoldExpired);
                }
                self.resolve_hold_with(
                    &hold,
                    command.id.clone(),
                    TransferKind::Release,
                    hold.amount,
                    command.code.clone(),
                    command.metadata.clone(),
                    timestamp,
                )
                .map(|transfer| (transfer, true))
            }
        }
    }

    fn pending_hold_for(&self, id: &Identifier, known: &Known) -> Result<Hold, Rejection> {
        if let Some(hold) = self.holds.get(id) {
            return Ok(hold.clone());
        }
        match self.resolved.get(id).or_else(|| known.holds.get(id)) {
            Some(hold) if hold.state == HoldState::Expired => Err(Rejection::HoldExpired),
            Some(_) => Err(Rejection::HoldNotPending),
            None => Err(Rejection::HoldNotFound),
        }
    }

    fn resolve_hold(
        &mut self,
        hold: &Hold,
        id: Identifier,
        kind: TransferKind,
        amount: Amount,
        code: Code,
        timestamp: Timestamp,
    ) -> Result<Transfer, Rejection> {
        self.resolve_hold_with(hold, id, kind, amount, code, Metadata::default(), timestamp)
    }

    /// Captures (posting `amount` ≤ the hold), releases or expires a pending hold.
    #[allow(clippy::too_many_arguments)]
    fn resolve_hold_with(
        &mut self,
        hold: &Hold,
        id: Identifier,
        kind: TransferKind,
        amount: Amount,
        code: Code,
        metadata: Metadata,
        timestamp: Timestamp,
    ) -> Result<Transfer, Rejection> {
        let d = *self
            .index
            .get(&hold.debit)
            .ok_or(Rejection::AccountNotFound(Side::Debit))?;
        let c = *self
            .index
            .get(&hold.credit)
            .ok_or(Rejection::AccountNotFound(Side::Credit))?;
        let mut debit_after = self.accounts[d].balances;
        let mut credit_after = self.accounts[c].balances;
        let held = hold.amount.minor_units();
        debit_after.debits_pending = debit_after
            .debits_pending
            .checked_sub(held)
            .ok_or(Rejection::Overflow(Side::Debit))?;
        credit_after.credits_pending = credit_after
            .credits_pending
            .checked_sub(held)
            .ok_or(Rejection::Overflow(Side::Credit))?;
        if kind == TransferKind::Capture {
            debit_after.debits_posted =
                add(debit_after.debits_posted, amount.minor_units(), Side::Debit)?;
            credit_after.credits_posted = add(
                credit_after.credits_posted,
                amount.minor_units(),
                Side::Credit,
            )?;
        }
        self.check_constraints(d, &debit_after, c, &credit_after)?;
        self.set_balances(d, debit_after);
        self.set_balances(c, credit_after);
        let state = match kind {
            TransferKind::Capture => HoldState::Captured,
            TransferKind::Expire => HoldState::Expired,
            _ => HoldState::Released,
        };
        let mut resolved = hold.clone();
        resolved.state = state;
        resolved.resolved_by = Some(id.clone());
        resolved.captured = (kind == TransferKind::Capture).then_some(amount);
        self.holds.remove(&hold.id);
        self.expiries.remove(&(hold.expires_at, hold.id.clone()));
        self.resolved.insert(hold.id.clone(), resolved.clone());
        self.undo.push(Undo::HoldResolved(hold.clone()));
        self.hold_changes.push(HoldChange::Resolved(resolved));
        self.undo.push(Undo::HoldChange);
        let transfer = Transfer {
            id,
            kind,
            debit: hold.debit.clone(),
            credit: hold.credit.clone(),
            amount,
            currency: hold.currency,
            code,
            metadata,
            hold: Some(hold.id.clone()),
            expires_at: None,
            timestamp,
            debit_after,
            credit_after,
        };
        self.push_event(Event::Transfer(transfer.clone()));
        Ok(transfer)
    }

    /// Finds both accounts and checks currency and status, in the documented order.
    fn resolve_pair(
        &self,
        debit: &Identifier,
        credit: &Identifier,
        currency: coffer_core::Currency,
    ) -> Result<(usize, usize), Rejection> {
        let d = *self
            .index
            .get(debit)
            .ok_or(Rejection::AccountNotFound(Side::Debit))?;
        let c = *self
            .index
            .get(credit)
            .ok_or(Rejection::AccountNotFound(Side::Credit))?;
        let (debit_account, credit_account) = (&self.accounts[d], &self.accounts[c]);
        if debit_account.spec.currency != currency {
            return Err(Rejection::CurrencyMismatch(Side::Debit));
        }
        if credit_account.spec.currency != currency {
            return Err(Rejection::CurrencyMismatch(Side::Credit));
        }
        if debit_account.status == AccountStatus::Closed {
            return Err(Rejection::AccountClosed(Side::Debit));
        }
        if credit_account.status == AccountStatus::Closed {
            return Err(Rejection::AccountClosed(Side::Credit));
        }
        Ok((d, c))
    }

    fn check_constraints(
        &self,
        d: usize,
        debit_after: &Balances,
        c: usize,
        credit_after: &Balances,
    ) -> Result<(), Rejection> {
        if !debit_after.satisfies(self.accounts[d].spec.constraint) {
            return Err(Rejection::InsufficientFunds);
        }
        if !credit_after.satisfies(self.accounts[c].spec.constraint) {
            return Err(Rejection::ExceedsDebits);
        }
        Ok(())
    }
}

fn add(total: i64, amount: i64, side: Side) -> Result<i64, Rejection> {
    total.checked_add(amount).ok_or(Rejection::Overflow(side))
}

fn expiry_code() -> Code {
    Code::parse("hold.expired").unwrap_or_else(|_| unreachable!("constant code is valid"))
}
