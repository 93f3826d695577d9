//! The auditor behind `coffer verify`: re-derives every balance from the
//! stored transfers alone and checks the books, the holds and the journal.
//!
//! It deliberately does not reuse the state machine's code paths: a bug there
//! must not be able to hide itself here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use coffer_core::{Currency, Identifier, Timestamp};

use crate::account::{Account, AccountStatus, BalanceConstraint, Balances};
use crate::journal::{Event, JournalEntry, JournalHasher, GENESIS_HASH};
use crate::transfer::{Hold, HoldState, Transfer, TransferKind};

/// Violations kept in full; beyond this only the count grows.
pub const VIOLATIONS_LISTED_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Unbalanced {
        currency: Currency,
        debits: i128,
        credits: i128,
        pending: bool,
    },
    BalanceMismatch {
        account: Identifier,
        stored: Balances,
        derived: Balances,
    },
    RunningBalanceMismatch {
        transfer: Identifier,
        account: Identifier,
    },
    ConstraintBroken {
        account: Identifier,
    },
    UnknownAccount {
        transfer: Identifier,
        account: Identifier,
    },
    CurrencyMismatch {
        transfer: Identifier,
    },
    TransferAfterClose {
        transfer: Identifier,
        account: Identifier,
    },
    HoldInconsistent {
        hold: Identifier,
        detail: String,
    },
    JournalBroken {
        batch: u64,
        detail: String,
    },
    OutOfOrder {
        transfer: Identifier,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Unbalanced {
                currency,
                debits,
                credits,
                pending,
            } => write!(
                f,
                "{currency}: total {kind} debits {debits} != credits {credits}",
                kind = if *pending { "pending" } else { "posted" }
            ),
            Violation::BalanceMismatch {
                account,
                stored,
                derived,
            } => {
                write!(f, "account {account}: stored balances {stored:?} but its transfers sum to {derived:?}")
            }
            Violation::RunningBalanceMismatch { transfer, account } => {
                write!(f, "transfer {transfer}: running balance of account {account} does not follow from earlier transfers")
            }
            Violation::ConstraintBroken { account } => {
                write!(f, "account {account}: balance breaks its constraint")
            }
            Violation::UnknownAccount { transfer, account } => {
                write!(f, "transfer {transfer}: account {account} does not exist")
            }
            Violation::CurrencyMismatch { transfer } => {
                write!(f, "transfer {transfer}: currency differs from an account's")
            }
            Violation::TransferAfterClose { transfer, account } => {
                write!(
                    f,
                    "transfer {transfer}: account {account} was closed before it"
                )
            }
            Violation::HoldInconsistent { hold, detail } => write!(f, "hold {hold}: {detail}"),
            Violation::JournalBroken { batch, detail } => {
                write!(f, "journal batch {batch}: {detail}")
            }
            Violation::OutOfOrder { transfer } => {
                write!(f, "transfer {transfer}: timestamps are not increasing")
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct AuditReport {
    pub accounts: u64,
    pub transfers: u64,
    pub holds: u64,
    pub journal_batches: u64,
    /// Posted totals per currency: (debits, credits).
    pub totals: BTreeMap<String, (i128, i128)>,
    pub violations: Vec<Violation>,
    pub violation_count: u64,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.violation_count == 0
    }

    fn flag(&mut self, violation: Violation) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_LISTED_MAX {
            self.violations.push(violation);
        }
    }
}

/// What the auditor needs besides the stream of transfers.
pub struct AuditInput {
    pub accounts: Vec<Account>,
    pub holds: Vec<Hold>,
    pub journal: Vec<JournalEntry>,
}

struct DerivedHold {
    amount: i64,
    state: HoldState,
    resolved_by: Option<Identifier>,
    captured: Option<i64>,
}

/// Streams transfers in timestamp order through `feed`; call `finish` at the end.
pub struct Auditor {
    accounts: HashMap<Identifier, Account>,
    derived: HashMap<Identifier, Balances>,
    holds: HashMap<Identifier, DerivedHold>,
    stored_holds: Vec<Hold>,
    /// Account events (openings, closings) in timestamp order, merged into the
    /// journal check between transfers.
    account_events: Vec<Event>,
    next_account_event: usize,
    journal: std::vec::IntoIter<JournalEntry>,
    current: Option<(JournalEntry, JournalHasher)>,
    previous_hash: [u8; 32],
    previous_batch: u64,
    last_timestamp: Timestamp,
    report: AuditReport,
}

impl Auditor {
    pub fn new(input: AuditInput) -> Auditor {
        let mut account_events = Vec::new();
        for account in &input.accounts {
            let mut opened = account.clone();
            opened.status = AccountStatus::Open;
            opened.closed_at = None;
            opened.balances = Balances::default();
            account_events.push(Event::AccountOpened(opened));
            if account.closed_at.is_some() {
                account_events.push(Event::AccountClosed {
                    account: account.clone(),
                });
            }
        }
        account_events.sort_by_key(Event::timestamp);
        let mut report = AuditReport {
            accounts: input.accounts.len() as u64,
            holds: input.holds.len() as u64,
            ..AuditReport::default()
        };
        report.journal_batches = input.journal.len() as u64;
        let mut auditor = Auditor {
            derived: input
                .accounts
                .iter()
                .map(|a| (a.id().clone(), Balances::default()))
                .collect(),
            accounts: input
                .accounts
                .into_iter()
                .map(|a| (a.id().clone(), a))
                .collect(),
            holds: HashMap::new(),
            stored_holds: input.holds,
            account_events,
            next_account_event: 0,
            journal: input.journal.into_iter(),
            current: None,
            previous_hash: GENESIS_HASH,
            previous_batch: 0,
            last_timestamp: Timestamp::ZERO,
            report,
        };
        auditor.advance_journal();
        auditor
    }

    fn advance_journal(&mut self) {
        self.current = self.journal.next().map(|entry| {
            if entry.batch != self.previous_batch + 1 {
                self.report.flag(Violation::JournalBroken {
                    batch: entry.batch,
                    detail: format!("follows batch {}", self.previous_batch),
                });
            }
            if entry.previous_hash != self.previous_hash {
                self.report.flag(Violation::JournalBroken {
                    batch: entry.batch,
                    detail: "previous hash does not match the chain".into(),
                });
            }
            let hasher = JournalHasher::new(entry.batch, entry.previous_hash);
            (entry, hasher)
        });
    }

    fn close_current(&mut self) {
        if let Some((entry, hasher)) = self.current.take() {
            let recomputed = hasher.finish();
            if recomputed.event_count != entry.event_count {
                self.report.flag(Violation::JournalBroken {
                    batch: entry.batch,
                    detail: format!(
                        "records {} events but {} are stored",
                        entry.event_count, recomputed.event_count
                    ),
                });
            } else if recomputed.hash != entry.hash {
                self.report.flag(Violation::JournalBroken {
                    batch: entry.batch,
                    detail: "hash does not match the stored events".into(),
                });
            }
            self.previous_hash = entry.hash;
            self.previous_batch = entry.batch;
        }
        self.advance_journal();
    }

    /// Adds one event to the journal entry that covers its timestamp.
    fn journal_event(&mut self, event: &Event) {
        let timestamp = event.timestamp();
        loop {
            match &self.current {
                None => {
                    self.report.flag(Violation::JournalBroken {
                        batch: self.previous_batch + 1,
                        detail: format!("event at {timestamp:?} is in no batch"),
                    });
                    return;
                }
                Some((entry, _)) if timestamp > entry.last_timestamp => self.close_current(),
                Some((entry, _)) if timestamp < entry.first_timestamp => {
                    let batch = entry.batch;
                    self.report.flag(Violation::JournalBroken {
                        batch,
                        detail: format!("event at {timestamp:?} falls between batches"),
                    });
                    return;
                }
                Some(_) => break,
            }
        }
        if let Some((_, hasher)) = self.current.as_mut() {
            hasher.push(event);
        }
    }

    fn flush_account_events(&mut self, before: Option<Timestamp>) {
        while let Some(event) = self.account_events.get(self.next_account_event) {
            if before.is_some_and(|t| event.timestamp() >= t) {
                break;
            }
            let event = event.clone();
            self.next_account_event += 1;
            self.journal_event(&event);
        }
    }

    pub fn feed(&mut self, transfer: &Transfer) {
        self.report.transfers += 1;
        if transfer.timestamp <= self.last_timestamp {
            self.report.flag(Violation::OutOfOrder {
                transfer: transfer.id.clone(),
            });
        }
        self.last_timestamp = transfer.timestamp;
        self.flush_account_events(Some(transfer.timestamp));
        self.journal_event(&Event::Transfer(transfer.clone()));

        for (side_id, after) in [
            (&transfer.debit, &transfer.debit_after),
            (&transfer.credit, &transfer.credit_after),
        ] {
            match self.accounts.get(side_id) {
                None => {
                    self.report.flag(Violation::UnknownAccount {
                        transfer: transfer.id.clone(),
                        account: side_id.clone(),
                    });
                    return;
                }
                Some(account) => {
                    if account.spec.currency != transfer.currency {
                        self.report.flag(Violation::CurrencyMismatch {
                            transfer: transfer.id.clone(),
                        });
                    }
                    if account
                        .closed_at
                        .is_some_and(|closed| closed < transfer.timestamp)
                    {
                        self.report.flag(Violation::TransferAfterClose {
                            transfer: transfer.id.clone(),
                            account: side_id.clone(),
                        });
                    }
                    let _ = after;
                }
            }
        }

        let amount = transfer.amount.minor_units();
        let (pending_delta, posted_delta) = match transfer.kind {
            TransferKind::Posted => (0, amount),
            TransferKind::Hold => {
                self.holds.insert(
                    transfer.id.clone(),
                    DerivedHold {
                        amount,
                        state: HoldState::Pending,
                        resolved_by: None,
                        captured: None,
                    },
                );
                (amount, 0)
            }
            TransferKind::Capture | TransferKind::Release | TransferKind::Expire => {
                let Some(hold_id) = transfer.hold.as_ref() else {
                    self.report.flag(Violation::HoldInconsistent {
                        hold: transfer.id.clone(),
                        detail: "resolution names no hold".into(),
                    });
                    return;
                };
                let Some(hold) = self.holds.get_mut(hold_id) else {
                    self.report.flag(Violation::HoldInconsistent {
                        hold: hold_id.clone(),
                        detail: format!("resolved by {} but never placed", transfer.id),
                    });
                    return;
                };
                if hold.state != HoldState::Pending {
                    self.report.flag(Violation::HoldInconsistent {
                        hold: hold_id.clone(),
                        detail: format!("resolved twice (again by {})", transfer.id),
                    });
                    return;
                }
                let held = hold.amount;
                hold.resolved_by = Some(transfer.id.clone());
                let posted = match transfer.kind {
                    TransferKind::Capture => {
                        hold.state = HoldState::Captured;
                        hold.captured = Some(amount);
                        if amount > held {
                            self.report.flag(Violation::HoldInconsistent {
                                hold: hold_id.clone(),
                                detail: "captured more than held".into(),
                            });
                        }
                        amount
                    }
                    kind => {
                        hold.state = if kind == TransferKind::Expire {
                            HoldState::Expired
                        } else {
                            HoldState::Released
                        };
                        if amount != held {
                            self.report.flag(Violation::HoldInconsistent {
                                hold: hold_id.clone(),
                                detail: "released a different amount than held".into(),
                            });
                        }
                        0
                    }
                };
                (-held, posted)
            }
        };
        let mut ok = true;
        if let Some(balances) = self.derived.get_mut(&transfer.debit) {
            ok &= apply(balances, true, pending_delta, posted_delta);
            if *balances != transfer.debit_after {
                self.report.flag(Violation::RunningBalanceMismatch {
                    transfer: transfer.id.clone(),
                    account: transfer.debit.clone(),
                });
            }
        }
        if let Some(balances) = self.derived.get_mut(&transfer.credit) {
            ok &= apply(balances, false, pending_delta, posted_delta);
            if *balances != transfer.credit_after {
                self.report.flag(Violation::RunningBalanceMismatch {
                    transfer: transfer.id.clone(),
                    account: transfer.credit.clone(),
                });
            }
        }
        if !ok {
            self.report.flag(Violation::RunningBalanceMismatch {
                transfer: transfer.id.clone(),
                account: transfer.debit.clone(),
            });
        }
    }

    pub fn finish(mut self) -> AuditReport {
        self.flush_account_events(None);
        while self.current.is_some() {
            self.close_current();
        }
        let mut totals: BTreeMap<Currency, [i128; 4]> = BTreeMap::new();
        let mut accounts: Vec<_> = self.accounts.values().collect();
        accounts.sort_by(|a, b| a.id().cmp(b.id()));
        for account in accounts {
            let stored = account.balances;
            let derived = self.derived.get(account.id()).copied().unwrap_or_default();
            if stored != derived {
                self.report.flag(Violation::BalanceMismatch {
                    account: account.id().clone(),
                    stored,
                    derived,
                });
            }
            if !stored.satisfies(account.spec.constraint)
                || (account.spec.constraint != BalanceConstraint::None
                    && !derived.satisfies(account.spec.constraint))
            {
                self.report.flag(Violation::ConstraintBroken {
                    account: account.id().clone(),
                });
            }
            let sums = totals.entry(account.spec.currency).or_default();
            sums[0] += i128::from(stored.debits_posted);
            sums[1] += i128::from(stored.credits_posted);
            sums[2] += i128::from(stored.debits_pending);
            sums[3] += i128::from(stored.credits_pending);
        }
        for (currency, [debits, credits, debits_pending, credits_pending]) in totals {
            if debits != credits {
                self.report.flag(Violation::Unbalanced {
                    currency,
                    debits,
                    credits,
                    pending: false,
                });
            }
            if debits_pending != credits_pending {
                self.report.flag(Violation::Unbalanced {
                    currency,
                    debits: debits_pending,
                    credits: credits_pending,
                    pending: true,
                });
            }
            self.report
                .totals
                .insert(currency.to_string(), (debits, credits));
        }
        let stored_holds = std::mem::take(&mut self.stored_holds);
        let mut seen = std::collections::HashSet::new();
        for stored in &stored_holds {
            seen.insert(stored.id.clone());
            match self.holds.get(&stored.id) {
                None => self.report.flag(Violation::HoldInconsistent {
                    hold: stored.id.clone(),
                    detail: "stored but no hold transfer placed it".into(),
                }),
                Some(derived) => {
                    let captured = stored.captured.map(|a| a.minor_units());
                    if derived.state != stored.state
                        || derived.resolved_by != stored.resolved_by
                        || derived.captured != captured
                        || derived.amount != stored.amount.minor_units()
                    {
                        self.report.flag(Violation::HoldInconsistent {
                            hold: stored.id.clone(),
                            detail: format!(
                                "stored as {} but its transfers say {}",
                                stored.state.as_str(),
                                derived.state.as_str()
                            ),
                        });
                    }
                }
            }
        }
        let mut missing: Vec<_> = self
            .holds
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        missing.sort();
        for hold in missing {
            self.report.flag(Violation::HoldInconsistent {
                hold,
                detail: "placed by a transfer but missing from the holds table".into(),
            });
        }
        self.report
    }
}

fn apply(balances: &mut Balances, debit: bool, pending_delta: i64, posted_delta: i64) -> bool {
    let (pending, posted) = if debit {
        (&mut balances.debits_pending, &mut balances.debits_posted)
    } else {
        (&mut balances.credits_pending, &mut balances.credits_posted)
    };
    match (
        pending.checked_add(pending_delta),
        posted.checked_add(posted_delta),
    ) {
        (Some(new_pending), Some(new_posted)) if new_pending >= 0 => {
            *pending = new_pending;
            *posted = new_posted;
            true
        }
        _ => false,
    }
}

/// Audits a whole ledger held in memory (tests and small databases).
pub fn audit(input: AuditInput, transfers: &[Transfer]) -> AuditReport {
    let mut auditor = Auditor::new(input);
    for transfer in transfers {
        auditor.feed(transfer);
    }
    auditor.finish()
}
