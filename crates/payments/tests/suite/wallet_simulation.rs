//! A seeded simulation of bill payments and conversions: random payments of
//! every simulated biller behaviour (paid, no bill, already paid, biller
//! down, timeout resolved later), random quotes and conversions in both
//! directions and of fixed sell or buy amounts (some expired, some reused,
//! some beyond the balance, some while the rate source is down). After
//! every step each wallet in every currency must hold exactly what a simple
//! model says (posted, and available net of held bill payments), and at the
//! end `coffer verify`'s audit of the ledger must be clean. A failure names
//! its seed; `COFFER_SEED=<n>` replays it.

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_app::{Engine, ManualClock};
use coffer_core::{Amount, Clock, Code, Currency, CurrencyRegistry, Identifier, Timestamp};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, Metadata, Outcome, TransferCommand,
    TransferOp,
};
use coffer_payments::funding::{wallet_account_id, ClientKey};
use coffer_payments::{
    BillError, BillPaymentRequest, BillPolicy, BillState, BillerSimulator, Bills, FixedSide, Fx,
    FxError, FxPolicy, SimulatedRateSource,
};
use coffer_testkit::TestDatabase;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::{base, register, Base};

const CUSTOMERS: usize = 2;
const STEPS: usize = 60;
const CURRENCIES: [&str; 4] = ["CNY", "USD", "JPY", "EUR"];
const FUNDING_ACCOUNT: &str = "bank:test-funding:cny";

struct World {
    bills: Bills,
    fx: Fx,
    rates: Arc<SimulatedRateSource>,
    base: Base,
    engine: Arc<Engine>,
    reader: Arc<dyn coffer_store::LedgerReader>,
    clock: Arc<ManualClock>,
}

fn world(database: &coffer_store::Database) -> World {
    let clock = Arc::new(ManualClock::new(Timestamp::from_nanos(
        1_790_000_000_000_000_000,
    )));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let base = base(database, dyn_clock.clone(), 6);
    let (sql, identity, engine, reader) = (
        base.sql.clone(),
        base.identity.clone(),
        base.engine.clone(),
        base.reader.clone(),
    );
    let rates = Arc::new(SimulatedRateSource::default());
    let bills = Bills::new(
        sql.clone(),
        engine.clone(),
        reader.clone(),
        identity.clone(),
        Arc::new(BillerSimulator::new(sql.clone(), dyn_clock.clone())),
        dyn_clock.clone(),
        BillPolicy {
            status_query_after_ms: 0,
            ..BillPolicy::default()
        },
    );
    let fx = Fx::new(
        sql,
        engine.clone(),
        reader.clone(),
        Arc::new(CurrencyRegistry::default()),
        rates.clone(),
        dyn_clock,
        FxPolicy::default(),
    )
    .with_alerts(base.identity.clone());
    bills.open_accounts().expect("bill accounts");
    fx.open_accounts().expect("fx accounts");
    let opened = engine
        .execute_blocking(Command::OpenAccount(AccountSpec {
            id: Identifier::parse(FUNDING_ACCOUNT).expect("id"),
            currency: Currency::parse("CNY").expect("cny"),
            kind: AccountKind::Asset,
            constraint: BalanceConstraint::None,
            owner: Identifier::parse("bank").expect("id"),
        }))
        .expect("open");
    assert!(matches!(opened, Outcome::Account(Ok(_))));
    World {
        bills,
        fx,
        rates,
        base,
        engine,
        reader,
        clock,
    }
}

/// What each customer's wallets should hold.
#[derive(Default)]
struct Model {
    posted: BTreeMap<&'static str, i64>,
    /// CNY held by bill payments the biller has not answered.
    held: BTreeMap<String, i64>,
    /// The alerts the inbox must hold (a bill paid, a conversion): none
    /// for a refused or failed payment.
    alerts: Vec<String>,
}

fn key(step: usize, name: &str) -> ClientKey {
    ClientKey {
        key: format!("{name}-{step}"),
        request_hash: format!("{name}-{step}"),
    }
}

fn run(seed: u64, database: &coffer_store::Database) {
    let world = world(database);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut customers: Vec<(String, Model)> = Vec::new();
    for n in 0..CUSTOMERS {
        let id = register(
            &world.base,
            &format!("+86136{:08}", seed as usize % 1000 * 10 + n),
            "Sim",
        );
        for code in CURRENCIES {
            world.fx.open_wallet(&id, code).expect("wallet");
        }
        let amount = rng.random_range(50_000..300_000);
        let posted = world
            .engine
            .execute_blocking(Command::Transfers {
                transfers: vec![TransferCommand {
                    id: Identifier::parse(&format!("sim:fund:{id}")).expect("id"),
                    op: TransferOp::Post {
                        debit: Identifier::parse(FUNDING_ACCOUNT).expect("id"),
                        credit: Identifier::parse(&wallet_account_id(&id, "CNY")).expect("id"),
                        amount: Amount::new(amount).expect("amount"),
                        currency: Currency::parse("CNY").expect("cny"),
                    },
                    code: Code::parse("sim.fund").expect("code"),
                    metadata: Metadata::default(),
                }],
                linked: false,
            })
            .expect("fund");
        assert!(matches!(&posted, Outcome::Transfers(r) if r[0].is_ok()));
        let mut model = Model {
            alerts: crate::support::inbox(&world.base, &id),
            ..Model::default()
        };
        model.posted.insert("CNY", amount);
        customers.push((id, model));
    }
    let mut quotes: Vec<(usize, String)> = Vec::new();
    for step in 0..STEPS {
        let context = format!("seed {seed}, step {step}");
        let who = rng.random_range(0..CUSTOMERS);
        let customer_id = customers[who].0.clone();
        match rng.random_range(0..10) {
            0..=3 => {
                // A bill payment of some simulated behaviour.
                let ending = ["0000", "0001", "0503", "0504", "1234", "5678", "4321"]
                    [rng.random_range(0..7)];
                let reference = format!("31{:04}{ending}", rng.random_range(0..10_000));
                let due = world.bills.lookup("state-grid-electricity", &reference);
                let amount = match &due {
                    Ok(bill) if bill.amount_due > 0 => bill.amount_due,
                    _ => 1_000,
                };
                let result = world.bills.pay(
                    &customer_id,
                    &key(step, "bill"),
                    &BillPaymentRequest {
                        biller_id: "state-grid-electricity".into(),
                        account_reference: reference.clone(),
                        amount,
                        currency: "CNY".into(),
                        step_up_challenge_id: None,
                    },
                    "sim",
                );
                let model = &mut customers[who].1;
                let cny = model.posted.get("CNY").copied().unwrap_or(0);
                let held: i64 = model.held.values().sum();
                match (ending, result) {
                    ("0000", Err(BillError::NoBillDue))
                    | ("0001", Err(BillError::AlreadyPaid))
                    | ("0503", Err(BillError::BillerUnavailable(_))) => {}
                    (_, Err(BillError::AlreadyPaid)) => {}
                    (_, Err(BillError::InsufficientFunds)) => {
                        assert!(amount > cny - held, "{context}: refused with enough money");
                    }
                    ("0504", Ok(view)) => {
                        assert_eq!(view.state, BillState::Pending, "{context}");
                        model.held.insert(view.id, amount);
                    }
                    (_, Ok(view)) => {
                        assert_eq!(view.state, BillState::Succeeded, "{context}");
                        assert!(view.confirmation.is_some(), "{context}");
                        model.posted.insert("CNY", cny - amount);
                        model.alerts.push("bill_payment".into());
                    }
                    (ending, other) => panic!("{context}: {ending} gave {other:?}"),
                }
            }
            4 => {
                // The resolver: timed-out payments fail and their holds go back.
                world.bills.resolve_pending().expect("resolve");
                for (id, model) in &mut customers {
                    for payment in std::mem::take(&mut model.held).into_keys() {
                        let view = world.bills.get(id, &payment).expect("payment");
                        assert_eq!(
                            (view.state, view.reason.as_deref()),
                            (BillState::Failed, Some("timeout")),
                            "{context}"
                        );
                    }
                }
            }
            5..=7 => {
                // A quote, converted at once (or not, when the feed is down).
                let sell = CURRENCIES[rng.random_range(0..CURRENCIES.len())];
                let mut buy = CURRENCIES[rng.random_range(0..CURRENCIES.len())];
                if buy == sell {
                    buy = if sell == "CNY" { "USD" } else { "CNY" };
                }
                let fixed = if rng.random_bool(0.5) {
                    FixedSide::Sell(rng.random_range(1..60_000))
                } else {
                    FixedSide::Buy(rng.random_range(1..60_000))
                };
                let down = rng.random_range(0..8) == 0;
                world.rates.set_available(!down);
                let quote = world.fx.quote(&customer_id, sell, buy, fixed);
                world.rates.set_available(true);
                let quote = match quote {
                    Err(FxError::RateUnavailable(_)) if down => continue,
                    Err(FxError::Invalid { .. }) => continue,
                    Ok(quote) => quote,
                    Err(other) => panic!("{context}: quote {other:?}"),
                };
                assert!(!down, "{context}: quoted with the feed down");
                quotes.push((who, quote.id.clone()));
                let result = world
                    .fx
                    .convert(&customer_id, &key(step, "fx"), &quote.id, "sim");
                let model = &mut customers[who].1;
                let sell_posted = model.posted.get(sell).copied().unwrap_or(0);
                let held: i64 = if sell == "CNY" {
                    model.held.values().sum()
                } else {
                    0
                };
                match result {
                    Ok(view) => {
                        assert_eq!(view.state, "converted", "{context}");
                        *model.posted.entry(sell).or_default() -= quote.sell_amount;
                        *model.posted.entry(buy).or_default() += quote.buy_amount;
                        model.alerts.push("fx_conversion".into());
                    }
                    Err(FxError::InsufficientFunds) => {
                        assert!(quote.sell_amount > sell_posted - held, "{context}");
                    }
                    Err(other) => panic!("{context}: convert {other:?}"),
                }
            }
            8 => {
                // An old quote again: used or expired, never a second conversion.
                if let Some((owner, quote)) = quotes.first().cloned() {
                    let result =
                        world
                            .fx
                            .convert(&customers[owner].0, &key(step, "again"), &quote, "sim");
                    assert!(
                        matches!(result, Err(FxError::QuoteUsed | FxError::QuoteExpired)),
                        "{context}: {result:?}"
                    );
                }
            }
            _ => {
                // Time passes: quotes older than their life expire.
                world.clock.advance_millis(rng.random_range(1_000..40_000));
            }
        }
        check(&world, &customers, &context);
    }
    let report = coffer_app::verify(world.reader.as_ref(), &mut |_| {}).expect("verify");
    assert!(report.is_clean(), "seed {seed}: {:?}", report.violations);
}

fn check(world: &World, customers: &[(String, Model)], context: &str) {
    for (id, model) in customers {
        let mut alerts = model.alerts.clone();
        alerts.sort_unstable();
        assert_eq!(
            crate::support::inbox(&world.base, id),
            alerts,
            "{context}: {id}'s inbox"
        );
        for code in CURRENCIES {
            let account = world
                .reader
                .account(&Identifier::parse(&wallet_account_id(id, code)).expect("id"))
                .expect("read")
                .expect("wallet");
            let posted = model.posted.get(code).copied().unwrap_or(0);
            let held: i64 = if code == "CNY" {
                model.held.values().sum()
            } else {
                0
            };
            assert_eq!(
                (account.posted(), account.available()),
                (posted, posted - held),
                "{context}: {id} {code}"
            );
        }
    }
}

#[test]
fn random_bill_payments_and_conversions_keep_the_books_and_the_model_equal_on_sqlite() {
    for seed in crate::support::seeds(&[11, 12]) {
        let db = TestDatabase::sqlite();
        run(seed, &db.database);
    }
}

#[test]
fn random_bill_payments_and_conversions_keep_the_books_and_the_model_equal_on_postgres() {
    let seed = crate::support::seeds(&[11])[0] + 100;
    let db = TestDatabase::postgres();
    run(seed, &db.database);
}
