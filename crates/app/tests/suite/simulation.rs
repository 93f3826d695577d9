//! Seeded randomized simulation: random accounts, transfers, linked batches,
//! holds, captures, releases, expiries, closings, duplicates and engine
//! restarts, on both backends. A deliberately simple reference model, written
//! separately from the ledger, predicts every result and every final balance;
//! the engine must agree on each, and `verify` must pass at the end.
//!
//! Seeds: `COFFER_SIM_SEEDS` (count, default 4) and `COFFER_SIM_STEPS`
//! (default 300). A failure prints the seed to replay with `COFFER_SIM_SEED`.

use std::collections::HashMap;
use std::sync::Arc;

use coffer_app::{verify, Engine, ManualClock};
use coffer_core::Timestamp;
use coffer_ledger::{
    AccountKind, BalanceConstraint, Balances, Command, Outcome, Rejection, Side, TransferCommand,
    TransferOp,
};
use coffer_testkit::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ACCOUNTS: [&str; 7] = ["a0", "a1", "a2", "a3", "a4", "a5", "ghost"];
const TIMEOUTS_MS: [u64; 3] = [1_000, 2_000, 5_000];
// Clock steps are never a multiple of 1,000 ms apart from a timeout, so no
// hold is ever exactly at its expiry boundary (see the module doc).
const ADVANCES_MS: [u64; 3] = [1, 1_001, 3_001];

#[derive(Clone, Debug)]
struct ModelAccount {
    currency: &'static str,
    constraint: BalanceConstraint,
    balances: Balances,
    closed: bool,
    spec: Command,
}

#[derive(Clone, Debug, PartialEq)]
enum HoldStatus {
    Pending,
    Captured,
    Released,
    Expired,
}

#[derive(Clone, Debug)]
struct ModelHold {
    debit: String,
    credit: String,
    amount: i64,
    placed_ms: u64,
    timeout_ms: u64,
    status: HoldStatus,
}

#[derive(Clone, Debug)]
struct Recorded {
    command: TransferCommand,
    amount: i64,
    debit_after: Balances,
    credit_after: Balances,
}

#[derive(Clone, Default)]
struct Model {
    accounts: HashMap<String, ModelAccount>,
    holds: HashMap<String, ModelHold>,
    transfers: HashMap<String, Recorded>,
    now_ms: u64,
}

type Predicted = Result<(i64, Balances, Balances, bool), Rejection>;

impl Model {
    fn expire(&mut self) {
        let now = self.now_ms;
        let due: Vec<String> = self
            .holds
            .iter()
            .filter(|(_, h)| h.status == HoldStatus::Pending && now > h.placed_ms + h.timeout_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let hold = self.holds.get_mut(&id).expect("hold");
            hold.status = HoldStatus::Expired;
            let (debit, credit, amount) = (hold.debit.clone(), hold.credit.clone(), hold.amount);
            self.accounts
                .get_mut(&debit)
                .expect("debit")
                .balances
                .debits_pending -= amount;
            self.accounts
                .get_mut(&credit)
                .expect("credit")
                .balances
                .credits_pending -= amount;
        }
    }

    fn fits(constraint: BalanceConstraint, b: &Balances) -> bool {
        match constraint {
            BalanceConstraint::None => true,
            BalanceConstraint::NoOverdraft => {
                b.debits_posted + b.debits_pending <= b.credits_posted
            }
            BalanceConstraint::MustStayInDebit => {
                b.credits_posted + b.credits_pending <= b.debits_posted
            }
        }
    }

    fn matches(&self, command: &TransferCommand, recorded: &Recorded) -> bool {
        if command.code != recorded.command.code || command.metadata != recorded.command.metadata {
            return false;
        }
        match (&command.op, &recorded.command.op) {
            (TransferOp::Capture { hold, amount }, TransferOp::Capture { hold: h2, .. }) => {
                let requested = amount
                    .map(|a| a.minor_units())
                    .unwrap_or_else(|| self.holds[hold.as_str()].amount);
                hold == h2 && requested == recorded.amount
            }
            (a, b) => a == b,
        }
    }

    /// One transfer, applied to `self` if it succeeds.
    fn transfer(&mut self, command: &TransferCommand) -> Predicted {
        if let Some(recorded) = self.transfers.get(command.id.as_str()) {
            return if self.matches(command, recorded) {
                Ok((
                    recorded.amount,
                    recorded.debit_after,
                    recorded.credit_after,
                    false,
                ))
            } else {
                Err(Rejection::ExistsWithDifferentFields)
            };
        }
        let (debit, credit, amount, hold_placed) = match &command.op {
            TransferOp::Post {
                debit,
                credit,
                amount,
                currency,
            }
            | TransferOp::Hold {
                debit,
                credit,
                amount,
                currency,
                ..
            } => {
                if debit == credit {
                    return Err(Rejection::SameAccount);
                }
                if let TransferOp::Hold { timeout_ms, .. } = &command.op {
                    if *timeout_ms == 0 || *timeout_ms > coffer_ledger::HOLD_TIMEOUT_MAX_MS {
                        return Err(Rejection::InvalidTimeout);
                    }
                }
                let d = self
                    .accounts
                    .get(debit.as_str())
                    .ok_or(Rejection::AccountNotFound(Side::Debit))?;
                let c = self
                    .accounts
                    .get(credit.as_str())
                    .ok_or(Rejection::AccountNotFound(Side::Credit))?;
                if d.currency != currency.as_str() {
                    return Err(Rejection::CurrencyMismatch(Side::Debit));
                }
                if c.currency != currency.as_str() {
                    return Err(Rejection::CurrencyMismatch(Side::Credit));
                }
                if d.closed {
                    return Err(Rejection::AccountClosed(Side::Debit));
                }
                if c.closed {
                    return Err(Rejection::AccountClosed(Side::Credit));
                }
                (
                    debit.to_string(),
                    credit.to_string(),
                    amount.minor_units(),
                    matches!(command.op, TransferOp::Hold { .. }),
                )
            }
            TransferOp::Capture { hold, .. } | TransferOp::Release { hold } => {
                let h = self
                    .holds
                    .get(hold.as_str())
                    .ok_or(Rejection::HoldNotFound)?;
                match h.status {
                    HoldStatus::Pending => {}
                    HoldStatus::Expired => return Err(Rejection::HoldExpired),
                    _ => return Err(Rejection::HoldNotPending),
                }
                let posted = match &command.op {
                    TransferOp::Capture { amount, .. } => {
                        let a = amount.map(|a| a.minor_units()).unwrap_or(h.amount);
                        if a > h.amount {
                            return Err(Rejection::CaptureExceedsHold);
                        }
                        a
                    }
                    _ => 0,
                };
                let (debit, credit, held) = (h.debit.clone(), h.credit.clone(), h.amount);
                let mut d = self.accounts[&debit].balances;
                let mut c = self.accounts[&credit].balances;
                d.debits_pending -= held;
                c.credits_pending -= held;
                d.debits_posted += posted;
                c.credits_posted += posted;
                if !Self::fits(self.accounts[&debit].constraint, &d) {
                    return Err(Rejection::InsufficientFunds);
                }
                if !Self::fits(self.accounts[&credit].constraint, &c) {
                    return Err(Rejection::ExceedsDebits);
                }
                self.accounts.get_mut(&debit).expect("debit").balances = d;
                self.accounts.get_mut(&credit).expect("credit").balances = c;
                let status = if posted > 0 {
                    HoldStatus::Captured
                } else {
                    HoldStatus::Released
                };
                self.holds.get_mut(hold.as_str()).expect("hold").status = status;
                let amount = if posted > 0 { posted } else { held };
                self.record(command, amount, d, c);
                return Ok((amount, d, c, true));
            }
        };
        let mut d = self.accounts[&debit].balances;
        let mut c = self.accounts[&credit].balances;
        if hold_placed {
            d.debits_pending += amount;
            c.credits_pending += amount;
        } else {
            d.debits_posted += amount;
            c.credits_posted += amount;
        }
        if !Self::fits(self.accounts[&debit].constraint, &d) {
            return Err(Rejection::InsufficientFunds);
        }
        if !Self::fits(self.accounts[&credit].constraint, &c) {
            return Err(Rejection::ExceedsDebits);
        }
        self.accounts.get_mut(&debit).expect("debit").balances = d;
        self.accounts.get_mut(&credit).expect("credit").balances = c;
        if let TransferOp::Hold { timeout_ms, .. } = &command.op {
            self.holds.insert(
                command.id.to_string(),
                ModelHold {
                    debit,
                    credit,
                    amount,
                    placed_ms: self.now_ms,
                    timeout_ms: *timeout_ms,
                    status: HoldStatus::Pending,
                },
            );
        }
        self.record(command, amount, d, c);
        Ok((amount, d, c, true))
    }

    fn record(
        &mut self,
        command: &TransferCommand,
        amount: i64,
        debit_after: Balances,
        credit_after: Balances,
    ) {
        self.transfers.insert(
            command.id.to_string(),
            Recorded {
                command: command.clone(),
                amount,
                debit_after,
                credit_after,
            },
        );
    }

    fn linked(&mut self, commands: &[TransferCommand]) -> Vec<Predicted> {
        let existing: Vec<bool> = commands
            .iter()
            .map(|c| self.transfers.contains_key(c.id.as_str()))
            .collect();
        let count = existing.iter().filter(|e| **e).count();
        if count == commands.len() {
            let replays: Vec<Predicted> = commands.iter().map(|c| self.transfer(c)).collect();
            let all_match = replays.iter().all(|r| r.is_ok());
            return replays
                .into_iter()
                .map(|r| match r {
                    Ok(found) if all_match => Ok(found),
                    Err(rejection) => Err(rejection),
                    Ok(_) => Err(Rejection::LinkedTransferFailed),
                })
                .collect();
        }
        if count > 0 {
            return existing
                .iter()
                .map(|e| {
                    Err(if *e {
                        Rejection::LinkedBatchPartiallyExists
                    } else {
                        Rejection::LinkedTransferFailed
                    })
                })
                .collect();
        }
        let saved = self.clone();
        let mut results = Vec::new();
        for (index, command) in commands.iter().enumerate() {
            match self.transfer(command) {
                Ok(done) => results.push(Ok(done)),
                Err(rejection) => {
                    *self = saved;
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
}

fn actual(outcome: Outcome) -> Vec<Predicted> {
    match outcome {
        Outcome::Transfers(results) => results
            .into_iter()
            .map(|r| {
                r.map(|(t, created)| {
                    (
                        t.amount.minor_units(),
                        t.debit_after,
                        t.credit_after,
                        created,
                    )
                })
            })
            .collect(),
        Outcome::Account(_) => panic!("expected transfers"),
    }
}

fn random_transfer(rng: &mut StdRng, model: &Model, step: usize, k: usize) -> TransferCommand {
    let pick = |rng: &mut StdRng| ACCOUNTS[rng.random_range(0..ACCOUNTS.len())];
    let pending: Vec<&String> = model.holds.keys().collect();
    let id = format!("t{step}-{k}");
    let currency_code = if rng.random_bool(0.9) { "CNY" } else { "USD" };
    match rng.random_range(0..100) {
        0..=54 => {
            let debit = if rng.random_bool(0.3) {
                "bank"
            } else {
                pick(rng)
            };
            transfer(
                &id,
                TransferOp::Post {
                    debit: coffer_testkit::id(debit),
                    credit: coffer_testkit::id(pick(rng)),
                    amount: amount(rng.random_range(1..=3_000)),
                    currency: currency(currency_code),
                },
            )
        }
        55..=74 => transfer(
            &id,
            TransferOp::Hold {
                debit: coffer_testkit::id(pick(rng)),
                credit: coffer_testkit::id(pick(rng)),
                amount: amount(rng.random_range(1..=2_000)),
                currency: currency(currency_code),
                timeout_ms: TIMEOUTS_MS[rng.random_range(0..3)],
            },
        ),
        75..=89 if !pending.is_empty() => {
            let hold = pending[rng.random_range(0..pending.len())];
            let partial = rng.random_bool(0.5).then(|| rng.random_range(1..=2_100));
            capture(&id, hold, partial)
        }
        75..=99 if !pending.is_empty() => release(&id, pending[rng.random_range(0..pending.len())]),
        _ => capture(&id, "no-such-hold", None),
    }
}

fn run_seed(db: &TestDatabase, seed: u64, steps: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let clock = Arc::new(ManualClock::new(Timestamp::from_nanos(
        1_800_000_000_000_000_000,
    )));
    let mut engine = Engine::start(&db.database, clock.clone()).expect("start");
    let mut model = Model::default();
    let mut history: Vec<Command> = Vec::new();
    let open = |name: &'static str,
                currency_code: &'static str,
                kind: AccountKind,
                constraint: BalanceConstraint| {
        (
            name,
            ModelAccount {
                currency: currency_code,
                constraint,
                balances: Balances::default(),
                closed: false,
                spec: Command::OpenAccount(spec(name, currency_code, kind, constraint)),
            },
        )
    };
    let mut specs = vec![
        open("bank", "CNY", AccountKind::Asset, BalanceConstraint::None),
        open(
            "bank-usd",
            "USD",
            AccountKind::Asset,
            BalanceConstraint::None,
        ),
    ];
    for (i, name) in ACCOUNTS.iter().take(6).enumerate() {
        let constraint = [
            BalanceConstraint::NoOverdraft,
            BalanceConstraint::NoOverdraft,
            BalanceConstraint::None,
            BalanceConstraint::MustStayInDebit,
        ][i % 4];
        let currency_code = if i == 5 { "USD" } else { "CNY" };
        specs.push(open(
            name,
            currency_code,
            AccountKind::Liability,
            constraint,
        ));
    }
    for (name, account) in specs {
        match engine
            .execute_blocking(account.spec.clone())
            .expect("engine")
        {
            Outcome::Account(Ok(_)) => {}
            other => panic!("seed {seed}: open {name}: {other:?}"),
        }
        model.accounts.insert(name.to_string(), account);
    }
    for step in 0..steps {
        let roll = rng.random_range(0..100);
        let command = if roll < 6 {
            let advance = ADVANCES_MS[rng.random_range(0..3)];
            clock.advance_millis(advance);
            model.now_ms += advance;
            model.expire();
            engine.tick_blocking().expect("tick");
            continue;
        } else if roll < 8 {
            // Restart: the new engine must continue exactly where storage is.
            engine.shutdown();
            engine = Engine::start(&db.database, clock.clone()).expect("restart");
            continue;
        } else if roll < 10 {
            let name = ACCOUNTS[rng.random_range(0..6)];
            let predicted = match model.accounts.get_mut(name) {
                None => Err(Rejection::AccountToCloseNotFound),
                Some(a) if a.closed => Err(Rejection::AccountAlreadyClosed),
                Some(a)
                    if a.balances.debits_pending != 0
                        || a.balances.credits_pending != 0
                        || a.balances.debits_posted != a.balances.credits_posted =>
                {
                    Err(Rejection::AccountNotEmpty)
                }
                Some(a) => {
                    a.closed = true;
                    Ok(())
                }
            };
            model.expire();
            match engine
                .execute_blocking(Command::CloseAccount(id(name)))
                .expect("engine")
            {
                Outcome::Account(result) => assert_eq!(
                    result.map(|_| ()),
                    predicted,
                    "seed {seed} step {step}: close {name}"
                ),
                other => panic!("{other:?}"),
            }
            continue;
        } else if roll < 22 && !history.is_empty() {
            // A duplicate: the same command again, or its ids with other fields.
            let mut command = history[rng.random_range(0..history.len())].clone();
            if rng.random_bool(0.3) {
                if let Command::Transfers { transfers, .. } = &mut command {
                    transfers[0].code = code("changed");
                }
            }
            command
        } else if roll < 32 {
            let size = rng.random_range(2..=3);
            Command::Transfers {
                transfers: (0..size)
                    .map(|k| random_transfer(&mut rng, &model, step, k))
                    .collect(),
                linked: true,
            }
        } else {
            Command::Transfers {
                transfers: vec![random_transfer(&mut rng, &model, step, 0)],
                linked: false,
            }
        };
        model.expire();
        let predicted = match &command {
            Command::Transfers {
                transfers,
                linked: true,
            } => model.linked(transfers),
            Command::Transfers {
                transfers,
                linked: false,
            } => transfers.iter().map(|t| model.transfer(t)).collect(),
            _ => unreachable!(),
        };
        let got = actual(engine.execute_blocking(command.clone()).expect("engine"));
        if std::env::var("COFFER_SIM_TRACE").is_ok() {
            eprintln!("step {step}: {command:?}\n  => {got:?}");
        }
        assert_eq!(
            got,
            predicted,
            "seed {seed} step {step} on {}: {command:?}",
            db.name()
        );
        history.push(command);
    }
    engine.shutdown();
    let reader = db.database.open_reader(1).expect("reader");
    for (name, account) in &model.accounts {
        let stored = reader.account(&id(name)).expect("read").expect("account");
        assert_eq!(
            stored.balances,
            account.balances,
            "seed {seed}: final balances of {name} on {}",
            db.name()
        );
    }
    let report = verify(reader.as_ref(), &mut |_| {}).expect("verify");
    assert!(
        report.is_clean(),
        "seed {seed} on {}: {:?}",
        db.name(),
        report.violations
    );
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("COFFER_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let count: u64 = std::env::var("COFFER_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    (1..=count).map(|i| i * 7_919).collect()
}

fn steps() -> usize {
    std::env::var("COFFER_SIM_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

#[test]
fn simulation_agrees_with_the_model_on_sqlite() {
    for seed in seeds() {
        run_seed(&TestDatabase::sqlite(), seed, steps());
    }
}

#[test]
fn simulation_agrees_with_the_model_on_postgres() {
    for seed in seeds() {
        run_seed(&TestDatabase::postgres(), seed, steps());
    }
}
