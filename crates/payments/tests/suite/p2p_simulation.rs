//! A seeded simulation of P2P payments: random payments between several
//! customers (some beyond their balance), fees with both waivers, replays
//! of a confirmation, confirmations that differ from their quote, payment
//! requests and equal splits paid, paid twice or declined. After every step
//! each wallet must hold exactly what a simple model says, each quote's fee
//! must be the model's, and at the end the ledger's audit must be clean and
//! the fee income equal to the fees the model charged. A failure names its
//! seed; `COFFER_SEED=<n>` replays it.

use std::sync::Arc;

use coffer_app::Engine;
use coffer_core::{Amount, Code, Currency, Identifier};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, Metadata, TransferCommand, TransferOp,
};
use coffer_payments::funding::wallet_account_id;
use coffer_payments::p2p::FEE_INCOME_ACCOUNT;
use coffer_payments::{
    ClientKey, Confirmation, FeeOperation, FeeRule, FeeSchedule, FeeUsage, NewRequest, P2p,
    P2pError, QuoteFor, Shares,
};
use coffer_testkit::TestDatabase;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::{base, register, unguarded_p2p_policy, Base};

const CUSTOMERS: usize = 4;
const STEPS: usize = 120;
const SOURCE: &str = "sim:source:cny";

fn rule() -> FeeRule {
    FeeRule {
        fixed: 5,
        percent_bps: 150,
        minimum: 10,
        maximum: Some(300),
        free_per_month: 2,
        first_free: true,
    }
}

struct World {
    p2p: P2p,
    base: Base,
    engine: Arc<Engine>,
    reader: Arc<dyn coffer_store::LedgerReader>,
}

fn world(database: &coffer_store::Database) -> World {
    world_with(database, coffer_app::system_clock())
}

fn world_with(database: &coffer_store::Database, clock: Arc<dyn coffer_core::Clock>) -> World {
    // Step-up out of the way: this is about money (the HTTP tests cover
    // limits and step-up).
    let base = base(database, clock, 5);
    let fees = FeeSchedule::free()
        .with(FeeOperation::P2p, rule())
        .expect("rule");
    let p2p = P2p::new(
        base.sql.clone(),
        base.engine.clone(),
        base.reader.clone(),
        base.identity.clone(),
        base.vault.clone(),
        base.clock.clone(),
        unguarded_p2p_policy(fees),
    );
    p2p.open_accounts().expect("fee account");
    World {
        p2p,
        engine: base.engine.clone(),
        reader: base.reader.clone(),
        base,
    }
}

fn id(text: &str) -> Identifier {
    Identifier::parse(text).expect("id")
}

fn cny() -> Currency {
    Currency::parse("CNY").expect("CNY")
}

fn execute(world: &World, command: Command) {
    world.engine.execute_blocking(command).expect("engine");
}

/// Registers a customer and gives the wallet `amount` from the simulation's
/// source account (a plain ledger transfer: funding has its own simulation).
fn customer(world: &World, phone: &str, amount: i64) -> String {
    let customer_id = register(&world.base, phone, "Sim Ulation");
    let wallet = id(&wallet_account_id(&customer_id, "CNY"));
    execute(
        world,
        Command::OpenAccount(AccountSpec {
            id: wallet.clone(),
            currency: cny(),
            kind: AccountKind::Liability,
            constraint: BalanceConstraint::NoOverdraft,
            owner: id(&customer_id),
        }),
    );
    execute(
        world,
        Command::Transfers {
            transfers: vec![TransferCommand {
                id: id(&format!("sim:fund:{customer_id}")),
                op: TransferOp::Post {
                    debit: id(SOURCE),
                    credit: wallet,
                    amount: Amount::new(amount).expect("amount"),
                    currency: cny(),
                },
                code: Code::parse("sim.fund").expect("code"),
                metadata: Metadata::default(),
            }],
            linked: false,
        },
    );
    customer_id
}

fn posted(world: &World, account: &str) -> i64 {
    world
        .reader
        .account(&id(account))
        .expect("read")
        .map_or(0, |a| a.posted())
}

struct Model {
    ids: Vec<String>,
    phones: Vec<String>,
    balances: Vec<i64>,
    usage: Vec<FeeUsage>,
    fees: i64,
}

impl Model {
    /// The fee the model expects, and the usage after a success.
    fn fee(&self, payer: usize, amount: i64) -> (i64, FeeUsage) {
        let usage = self.usage[payer];
        let quote = rule().quote(amount, usage);
        let mut after = usage;
        match quote.waiver {
            Some(coffer_payments::Waiver::First) => after.first_used = true,
            Some(coffer_payments::Waiver::MonthlyQuota) => after.free_used_this_month += 1,
            None => {}
        }
        (quote.fee, after)
    }

    /// Applies a confirmation's outcome to the model; checks it.
    fn settle(
        &mut self,
        payer: usize,
        payee: usize,
        amount: i64,
        quoted_fee: i64,
        result: &Result<coffer_payments::PaymentView, P2pError>,
        context: &str,
    ) {
        let (fee, after) = self.fee(payer, amount);
        assert_eq!(quoted_fee, fee, "{context}: the quote's fee");
        if self.balances[payer] >= amount + fee {
            let view = result.as_ref().unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_eq!(
                view.state,
                coffer_payments::PaymentState::Succeeded,
                "{context}"
            );
            self.balances[payer] -= amount + fee;
            self.balances[payee] += amount;
            self.fees += fee;
            self.usage[payer] = after;
        } else {
            assert!(
                matches!(result, Err(P2pError::InsufficientFunds)),
                "{context}: {result:?}"
            );
        }
    }
}

fn key(n: usize) -> ClientKey {
    ClientKey {
        key: format!("k-{n}"),
        request_hash: format!("h-{n}"),
    }
}

fn confirm(
    world: &World,
    payer: &str,
    quote: &coffer_payments::QuoteView,
    n: usize,
) -> Result<coffer_payments::PaymentView, P2pError> {
    world.p2p.pay(
        payer,
        &key(n),
        &Confirmation {
            quote_id: quote.id.clone(),
            amount: quote.amount,
            fee: quote.fee,
            currency: "CNY".into(),
            step_up_challenge_id: None,
        },
        "sim",
    )
}

fn open_source(world: &World) {
    execute(
        world,
        Command::OpenAccount(AccountSpec {
            id: id(SOURCE),
            currency: cny(),
            kind: AccountKind::Asset,
            constraint: BalanceConstraint::None,
            owner: id("bank"),
        }),
    );
}

fn run(seed: u64, database: &coffer_store::Database) {
    let world = world(database);
    open_source(&world);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model {
        ids: Vec::new(),
        phones: Vec::new(),
        balances: Vec::new(),
        usage: vec![FeeUsage::default(); CUSTOMERS],
        fees: 0,
    };
    for n in 0..CUSTOMERS {
        let phone = format!("+86136{:08}", (seed % 1_000) * 10 + n as u64);
        let amount = rng.random_range(0..30_000);
        let customer = if amount > 0 {
            customer(&world, &phone, amount)
        } else {
            customer(&world, &phone, 1)
        };
        model.ids.push(customer);
        model.phones.push(phone);
        model.balances.push(amount.max(1));
    }
    // Confirmations made, for replays: (key number, payment id).
    let mut made: Vec<(usize, usize, String)> = Vec::new();
    // Open requests: (request id, payer, organizer, amount).
    let mut open: Vec<(String, usize, usize, i64)> = Vec::new();
    let mut closed: Vec<(String, usize)> = Vec::new();
    for step in 0..STEPS {
        let context = format!("seed {seed}, step {step}");
        let payer = rng.random_range(0..CUSTOMERS);
        let payee = (payer + rng.random_range(1..CUSTOMERS)) % CUSTOMERS;
        match rng.random_range(0..10) {
            0..=3 => {
                let amount = rng.random_range(1..12_000);
                let quote = world
                    .p2p
                    .quote(
                        &model.ids[payer],
                        &QuoteFor::Payee {
                            payee: model.phones[payee].clone(),
                            amount,
                            currency: "CNY".into(),
                            note: None,
                        },
                    )
                    .unwrap_or_else(|e| panic!("{context}: quote: {e}"));
                let result = confirm(&world, &model.ids[payer], &quote, step);
                model.settle(payer, payee, amount, quote.fee, &result, &context);
                if let Ok(view) = &result {
                    made.push((step, payer, view.id.clone()));
                }
            }
            4 => {
                // A replay of an earlier confirmation: the same payment, nothing moves.
                if let Some((n, payer, payment)) =
                    made.get(rng.random_range(0..made.len().max(1))).cloned()
                {
                    let again = world.p2p.pay(
                        &model.ids[payer],
                        &key(n),
                        &Confirmation {
                            quote_id: "ignored".into(),
                            amount: 1,
                            fee: 0,
                            currency: "CNY".into(),
                            step_up_challenge_id: None,
                        },
                        "sim",
                    );
                    assert_eq!(again.map(|v| v.id).ok(), Some(payment), "{context}: replay");
                }
            }
            5 => {
                // A confirmation that differs from its quote changes nothing.
                let amount = rng.random_range(1..5_000);
                let quote = world
                    .p2p
                    .quote(
                        &model.ids[payer],
                        &QuoteFor::Payee {
                            payee: model.phones[payee].clone(),
                            amount,
                            currency: "CNY".into(),
                            note: None,
                        },
                    )
                    .unwrap_or_else(|e| panic!("{context}: quote: {e}"));
                let result = world.p2p.pay(
                    &model.ids[payer],
                    &key(step),
                    &Confirmation {
                        quote_id: quote.id,
                        amount: quote.amount,
                        fee: quote.fee + 1,
                        currency: "CNY".into(),
                        step_up_challenge_id: None,
                    },
                    "sim",
                );
                assert!(
                    matches!(result, Err(P2pError::QuoteMismatch("fee"))),
                    "{context}"
                );
            }
            6 => {
                // An equal split among one or two others.
                let others: Vec<usize> = (0..CUSTOMERS).filter(|c| *c != payer).collect();
                let count = rng.random_range(1..=2);
                let payers: Vec<usize> = others.into_iter().take(count).collect();
                let total = rng.random_range(10..9_000);
                let include_me = rng.random_bool(0.5);
                let group = world
                    .p2p
                    .request(
                        &model.ids[payer],
                        &key(10_000 + step),
                        &NewRequest {
                            currency: "CNY".into(),
                            note: Some("split".into()),
                            shares: Shares::Equal {
                                total,
                                payers: payers.iter().map(|p| model.phones[*p].clone()).collect(),
                                include_me,
                            },
                            expires_in_seconds: None,
                        },
                        "sim",
                    )
                    .unwrap_or_else(|e| panic!("{context}: request: {e}"));
                let shares = coffer_payments::p2p::split_equal(
                    total,
                    payers.len() + usize::from(include_me),
                )
                .expect("shares");
                for ((request, payer_index), share) in
                    group.requests.iter().zip(&payers).zip(shares)
                {
                    assert_eq!(request.amount, share, "{context}: share");
                    open.push((request.id.clone(), *payer_index, payer, share));
                }
            }
            7..=8 if !open.is_empty() => {
                let (request, who, organizer, amount) =
                    open.swap_remove(rng.random_range(0..open.len()));
                if rng.random_bool(0.2) {
                    world
                        .p2p
                        .decline(&model.ids[who], &request, "sim")
                        .unwrap_or_else(|e| panic!("{context}: decline: {e}"));
                    closed.push((request, who));
                    continue;
                }
                let quote = world
                    .p2p
                    .quote(
                        &model.ids[who],
                        &QuoteFor::Request {
                            request_id: request.clone(),
                        },
                    )
                    .unwrap_or_else(|e| panic!("{context}: quote request: {e}"));
                assert_eq!(quote.amount, amount, "{context}");
                let result = confirm(&world, &model.ids[who], &quote, step);
                model.settle(who, organizer, amount, quote.fee, &result, &context);
                if result.is_ok() {
                    closed.push((request, who));
                } else {
                    // Insufficient funds reopens the request.
                    open.push((request, who, organizer, amount));
                }
            }
            _ => {
                // Paying or quoting a request that is paid or declined is refused.
                if let Some((request, who)) = closed
                    .get(rng.random_range(0..closed.len().max(1)))
                    .cloned()
                {
                    let result = world.p2p.quote(
                        &model.ids[who],
                        &QuoteFor::Request {
                            request_id: request,
                        },
                    );
                    assert!(
                        matches!(result, Err(P2pError::RequestNotOpen(_))),
                        "{context}: {result:?}"
                    );
                }
            }
        }
        for (n, customer) in model.ids.iter().enumerate() {
            assert_eq!(
                posted(&world, &wallet_account_id(customer, "CNY")),
                model.balances[n],
                "{context}: wallet {n}"
            );
        }
    }
    assert_eq!(
        posted(&world, FEE_INCOME_ACCOUNT),
        model.fees,
        "seed {seed}: fee income"
    );
    let report = coffer_app::verify(world.reader.as_ref(), &mut |_| {}).expect("verify");
    assert!(report.is_clean(), "seed {seed}: {:?}", report.violations);
}

#[test]
fn random_p2p_payments_and_requests_keep_the_books_and_the_model_equal_on_sqlite() {
    for seed in crate::support::seeds(&[1, 2, 3]) {
        let db = TestDatabase::sqlite();
        run(seed, &db.database);
    }
}

#[test]
fn random_p2p_payments_and_requests_keep_the_books_and_the_model_equal_on_postgres() {
    let seed = crate::support::seeds(&[1])[0] + 100;
    let db = TestDatabase::postgres();
    run(seed, &db.database);
}

/// A crash between the payment's record and its ledger batch (here: the
/// ledger stops) leaves it pending; after the grace period the resolver of
/// a restarted service applies it, once, and a replay of the confirmation
/// answers that payment.
#[test]
fn a_payment_left_pending_by_a_stopped_ledger_is_carried_forward() {
    let db = TestDatabase::sqlite();
    let clock = Arc::new(coffer_app::ManualClock::new(
        coffer_app::system_clock().now(),
    ));
    let world = world_with(&db.database, clock.clone());
    open_source(&world);
    let payer = customer(&world, "+8613599990001", 5_000);
    let payee = customer(&world, "+8613599990002", 1);
    let quote = world
        .p2p
        .quote(
            &payer,
            &QuoteFor::Payee {
                payee: "+8613599990002".into(),
                amount: 1_000,
                currency: "CNY".into(),
                note: None,
            },
        )
        .expect("quote");
    world.engine.shutdown();
    let stopped = confirm(&world, &payer, &quote, 1);
    assert!(matches!(stopped, Err(P2pError::Engine(_))), "{stopped:?}");
    drop(world);

    let world = world_with(&db.database, clock.clone());
    let listed = world.p2p.payments(&payer, 10).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, coffer_payments::PaymentState::Pending);
    // Within the grace period the resolver leaves it to its request.
    assert_eq!(world.p2p.resolve_pending().expect("resolve"), 0);
    clock.advance_millis(61_000);
    assert_eq!(world.p2p.resolve_pending().expect("resolve"), 1);
    assert_eq!(world.p2p.resolve_pending().expect("resolve"), 0);
    let done = world.p2p.view_for(&payer, &listed[0].id).expect("view");
    assert_eq!(done.state, coffer_payments::PaymentState::Succeeded);
    assert_eq!(posted(&world, &wallet_account_id(&payer, "CNY")), 4_000);
    assert_eq!(posted(&world, &wallet_account_id(&payee, "CNY")), 1_001);
    let replay = confirm(&world, &payer, &quote, 1).expect("replay");
    assert_eq!((replay.id, replay.state), (done.id, done.state));
    let report = coffer_app::verify(world.reader.as_ref(), &mut |_| {}).expect("verify");
    assert!(report.is_clean(), "{:?}", report.violations);
}
