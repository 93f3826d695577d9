//! A seeded simulation of funding: random top-ups and withdrawals by several
//! customers, with every kind of connector failure, callbacks delivered
//! twice, late or never (the resolver's status query then decides), and
//! 3-D Secure answered right or wrong. Withdrawals carry the schedule's fee
//! (the first two each month free), which the model predicts, the quote
//! must show, and the bank's fee income must receive exactly when the
//! withdrawal succeeds. After every step each resolved
//! operation must have the outcome its test number promises, each wallet
//! must hold exactly what a simple model says (posted, and available net of
//! held withdrawals), and at the end `coffer verify`'s audit of the ledger
//! must be clean. A failure names its seed; `COFFER_SEED=<n>` replays it.

use coffer_core::{Identifier, Secret};
use coffer_payments::{
    ClientKey, FeeOperation, FeeRule, FeeSchedule, FundingError, FundingPolicy, FundingState,
    Source, TopUpRequest, WithdrawalRequest, CHALLENGE_ANSWER,
};
use coffer_testkit::TestDatabase;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::funding::{funding_rig, unruly_settings, Expect, FundingRig, ACCOUNTS, CARDS};
use crate::support::{assert_verified, base, register, Base};

const CUSTOMERS: usize = 3;
const STEPS: usize = 80;
/// 0.5 % + CNY 0.30, at least CNY 1.00, at most CNY 20.00; two free a month.
const WITHDRAWAL_FEE: FeeRule = FeeRule {
    fixed: 30,
    percent_bps: 50,
    minimum: 100,
    maximum: Some(2_000),
    free_per_month: 2,
    first_free: false,
};

struct World {
    base: Base,
    rig: FundingRig,
}

fn world(database: &coffer_store::Database) -> World {
    let base = base(database, coffer_app::system_clock(), 4);
    let rig = funding_rig(
        &base,
        FundingPolicy {
            status_query_after_ms: 0,
            fees: FeeSchedule::free()
                .with(FeeOperation::Withdrawal, WITHDRAWAL_FEE)
                .expect("fee rule"),
            ..FundingPolicy::default()
        },
        unruly_settings(),
    );
    World { base, rig }
}

struct Customer {
    id: String,
    cards: Vec<String>,
    accounts: Vec<String>,
    posted: i64,
    held_out: i64,
    /// Monthly free withdrawals taken by pending or succeeded withdrawals.
    free_used: i64,
}

struct Open {
    funding_id: String,
    customer: usize,
    withdrawal: bool,
    amount: i64,
    fee: i64,
    waived: bool,
    expect: Expect,
}

fn phone(n: usize) -> String {
    format!("+86137{:08}", 10_000 + n)
}

fn run(seed: u64, database: &coffer_store::Database) {
    let world = world(database);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut customers: Vec<Customer> = (0..CUSTOMERS)
        .map(|n| {
            let id = register(&world.base, &phone(n + seed as usize % 1000 * 10), "Sim");
            let (cards, accounts) = world.rig.link_test_methods(&id);
            Customer {
                id,
                cards,
                accounts,
                posted: 0,
                held_out: 0,
                free_used: 0,
            }
        })
        .collect();
    let mut open: Vec<Open> = Vec::new();
    let mut answers: Vec<(String, bool)> = Vec::new();
    let mut fee_income = 0;
    for step in 0..STEPS {
        let context = format!("seed {seed}, step {step}");
        let who = rng.random_range(0..CUSTOMERS);
        match rng.random_range(0..10) {
            0..=3 => {
                let from_account = rng.random_bool(0.3);
                let (source, expect) = if from_account {
                    let pick = rng.random_range(0..ACCOUNTS.len());
                    (
                        Source::BankAccount(customers[who].accounts[pick].clone()),
                        ACCOUNTS[pick].1.clone(),
                    )
                } else {
                    let pick = rng.random_range(0..CARDS.len());
                    (
                        Source::Card(customers[who].cards[pick].clone()),
                        CARDS[pick].1.clone(),
                    )
                };
                let amount = rng.random_range(1..=20_000);
                let view = world
                    .rig
                    .funding
                    .top_up(
                        &customers[who].id,
                        &ClientKey {
                            key: format!("tu-{step}"),
                            request_hash: format!("h-{step}"),
                        },
                        &TopUpRequest {
                            source,
                            amount,
                            currency: "CNY".into(),
                        },
                        "sim",
                    )
                    .unwrap_or_else(|e| panic!("{context}: top-up {e}"));
                assert_eq!(view.state, FundingState::Pending, "{context}");
                let expect = if expect == Expect::Challenge {
                    assert_eq!(view.next_action.as_deref(), Some("three_d_secure"));
                    let right = rng.random_bool(0.5);
                    answers.push((view.id.clone(), right));
                    if right {
                        Expect::Succeeds
                    } else {
                        Expect::Fails("authentication_failed")
                    }
                } else {
                    expect
                };
                open.push(Open {
                    funding_id: view.id,
                    customer: who,
                    withdrawal: false,
                    amount,
                    fee: 0,
                    waived: false,
                    expect,
                });
            }
            4..=6 => {
                let pick = rng.random_range(0..ACCOUNTS.len());
                let available = customers[who].posted - customers[who].held_out;
                let amount = rng.random_range(1..=25_000);
                let waived = customers[who].free_used < WITHDRAWAL_FEE.free_per_month;
                let fee = if waived {
                    0
                } else {
                    WITHDRAWAL_FEE.charge(amount)
                };
                let quote = world
                    .rig
                    .funding
                    .withdrawal_quote(&customers[who].id, amount, "CNY")
                    .unwrap_or_else(|e| panic!("{context}: quote {e}"));
                assert_eq!((quote.fee, quote.total), (fee, amount + fee), "{context}");
                // Now and then a client confirms a fee it was never quoted:
                // refused, and nothing moves or is reserved.
                if rng.random_bool(0.1) {
                    let wrong = world.rig.funding.withdraw(
                        &customers[who].id,
                        &ClientKey {
                            key: format!("wd-wrong-{step}"),
                            request_hash: format!("h-wrong-{step}"),
                        },
                        &WithdrawalRequest {
                            bank_account_id: customers[who].accounts[pick].clone(),
                            amount,
                            currency: "CNY".into(),
                            step_up_challenge_id: None,
                            expected_fee: Some(fee + 1),
                        },
                        "sim",
                    );
                    assert!(
                        matches!(wrong, Err(FundingError::FeeChanged { .. })),
                        "{context}: {wrong:?}"
                    );
                }
                let result = world.rig.funding.withdraw(
                    &customers[who].id,
                    &ClientKey {
                        key: format!("wd-{step}"),
                        request_hash: format!("h-{step}"),
                    },
                    &WithdrawalRequest {
                        bank_account_id: customers[who].accounts[pick].clone(),
                        amount,
                        currency: "CNY".into(),
                        step_up_challenge_id: None,
                        expected_fee: rng.random_bool(0.5).then_some(fee),
                    },
                    "sim",
                );
                if amount + fee > available {
                    assert!(
                        matches!(result, Err(FundingError::InsufficientFunds)),
                        "{context}: {amount} of {available}: {result:?}"
                    );
                } else {
                    let view = result.unwrap_or_else(|e| panic!("{context}: withdraw {e}"));
                    assert_eq!(view.fee, fee, "{context}");
                    customers[who].held_out += amount + fee;
                    if waived {
                        customers[who].free_used += 1;
                    }
                    open.push(Open {
                        funding_id: view.id,
                        customer: who,
                        withdrawal: true,
                        amount,
                        fee,
                        waived,
                        expect: ACCOUNTS[pick].1.clone(),
                    });
                }
            }
            7 => world.rig.deliver(&mut rng),
            8 => {
                if let Some((funding_id, right)) = answers.pop() {
                    let owner = open
                        .iter()
                        .find(|o| o.funding_id == funding_id)
                        .map_or(0, |o| o.customer);
                    let answer = if right { CHALLENGE_ANSWER } else { "000000" };
                    world
                        .rig
                        .funding
                        .authenticate(
                            &customers[owner].id,
                            &funding_id,
                            &Secret::new(answer.into()),
                        )
                        .unwrap_or_else(|e| panic!("{context}: authenticate {e}"));
                }
            }
            _ => {
                world.rig.funding.resolve_pending().expect("resolve");
            }
        }
        settle_model(&world, &mut customers, &mut open, &mut fee_income, &context);
        check_balances(&world, &customers, fee_income, &context);
    }
    // Answer every challenge, deliver everything, resolve the rest.
    while let Some((funding_id, right)) = answers.pop() {
        let owner = open
            .iter()
            .find(|o| o.funding_id == funding_id)
            .map_or(0, |o| o.customer);
        let answer = if right { CHALLENGE_ANSWER } else { "000000" };
        world
            .rig
            .funding
            .authenticate(
                &customers[owner].id,
                &funding_id,
                &Secret::new(answer.into()),
            )
            .expect("authenticate");
    }
    for _ in 0..3 {
        world.rig.deliver(&mut rng);
        world.rig.funding.resolve_pending().expect("resolve");
    }
    let context = format!("seed {seed}, at the end");
    settle_model(&world, &mut customers, &mut open, &mut fee_income, &context);
    assert!(open.is_empty(), "{context}: still pending: {}", open.len());
    check_balances(&world, &customers, fee_income, &context);
    assert_verified(world.base.reader.as_ref(), &context);
}

/// Applies every newly resolved operation to the model, checking its outcome.
fn settle_model(
    world: &World,
    customers: &mut [Customer],
    open: &mut Vec<Open>,
    fee_income: &mut i64,
    context: &str,
) {
    open.retain(|op| {
        let customer = &mut customers[op.customer];
        let view = world
            .rig
            .funding
            .get(&customer.id, &op.funding_id)
            .expect("funding");
        let outcome = match view.state {
            FundingState::Pending => return true,
            FundingState::Succeeded => Expect::Succeeds,
            FundingState::Failed => Expect::Fails(match view.reason.as_deref() {
                Some("card_declined") => "card_declined",
                Some("insufficient_funds") => "insufficient_funds",
                Some("timeout") => "timeout",
                Some("account_closed") => "account_closed",
                Some("authentication_failed") => "authentication_failed",
                other => panic!("{context}: unexpected reason {other:?}"),
            }),
        };
        assert_eq!(outcome, op.expect, "{context}: {}", op.funding_id);
        if op.withdrawal {
            customer.held_out -= op.amount + op.fee;
            if outcome == Expect::Succeeds {
                customer.posted -= op.amount + op.fee;
                *fee_income += op.fee;
            } else if op.waived {
                // A failed withdrawal gives its free one back.
                customer.free_used -= 1;
            }
        } else if outcome == Expect::Succeeds {
            customer.posted += op.amount;
        }
        false
    });
}

fn check_balances(world: &World, customers: &[Customer], fee_income: i64, context: &str) {
    let income = Identifier::parse("bank:fee-income:cny").expect("id");
    let posted = world
        .base
        .reader
        .account(&income)
        .expect("read")
        .map_or(0, |a| a.posted());
    assert_eq!(posted, fee_income, "{context}: fee income");
    for customer in customers {
        let wallet = Identifier::parse(&format!("wallet:{}:cny", customer.id)).expect("id");
        // The wallet opens with the customer's first funding.
        let balances = world
            .base
            .reader
            .account(&wallet)
            .expect("read")
            .map_or((0, 0), |a| (a.posted(), a.available()));
        assert_eq!(
            balances,
            (customer.posted, customer.posted - customer.held_out),
            "{context}: {}",
            customer.id
        );
    }
}

#[test]
fn random_fundings_keep_the_books_and_the_model_equal_on_sqlite() {
    for seed in crate::support::seeds(&[1, 2, 3]) {
        let db = TestDatabase::sqlite();
        run(seed, &db.database);
    }
}

#[test]
fn random_fundings_keep_the_books_and_the_model_equal_on_postgres() {
    let seed = crate::support::seeds(&[1])[0] + 100;
    let db = TestDatabase::postgres();
    run(seed, &db.database);
}
