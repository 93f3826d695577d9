//! A seeded simulation of merchant payments: random QR payments and
//! payment-code charges by several customers at several merchants, random
//! full and partial refunds (some over what is left), and days that end and
//! are settled, paid out through the simulated core banking system. After
//! every step each wallet and each merchant's receivable must hold exactly
//! what a simple model says, every refusal must be the one the model
//! predicts, and at the end the fee income and the payouts must match the
//! model and `coffer verify`'s audit of the ledger must be clean. A failure
//! names its seed; `COFFER_SEED=<n>` replays it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use coffer_core::{Amount, Clock, Code, Currency, Identifier, Secret, Timestamp};
use coffer_identity::{Role, StaffInfo};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, Metadata, TransferCommand, TransferOp,
};
use coffer_payments::settlement::discount_fee;
use coffer_payments::{
    Callback, ChargeRequest, ClientKey, ConnectorKind, FundingPolicy,
    MerchantConfirmation as Confirmation, MerchantError, MerchantPolicy, Merchants, NewMerchant,
    SimulatorSettings,
};
use coffer_testkit::TestDatabase;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::funding::funding_rig;
use crate::support::{base, register};

const CUSTOMERS: usize = 3;
const MERCHANTS: usize = 2;
const STEPS: usize = 60;
const DAY_NANOS: i64 = 86_400 * 1_000_000_000;

struct OffsetClock(AtomicI64);

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let real = coffer_app::system_clock().now().as_nanos();
        Timestamp::from_nanos(real + self.0.load(Ordering::SeqCst))
    }
}

struct Payment {
    id: String,
    merchant: usize,
    amount: i64,
    refunded: i64,
}

#[derive(Default)]
struct Model {
    wallets: Vec<i64>,
    receivables: Vec<i64>,
    /// Per merchant: payments and refunds no settlement has taken yet.
    unsettled: Vec<(i64, i64, usize)>,
    fee_income: i64,
    paid_out: i64,
}

fn account(reader: &dyn coffer_store::LedgerReader, id: &str) -> i64 {
    reader
        .account(&Identifier::parse(id).expect("id"))
        .expect("read")
        .map_or(0, |a| a.posted())
}

fn run(seed: u64, database: &coffer_store::Database) {
    let mut rng = StdRng::seed_from_u64(seed);
    let clock = Arc::new(OffsetClock(AtomicI64::new(0)));
    let app_clock: Arc<dyn Clock> = clock.clone();
    let base = base(database, app_clock.clone(), 5);
    let rig = funding_rig(
        &base,
        FundingPolicy {
            status_query_after_ms: 0,
            ..FundingPolicy::default()
        },
        SimulatorSettings {
            callback_delay_ms: 0,
            duplicate_callbacks: true,
            late_callbacks: false,
            challenge_timeout_ms: 3_600_000,
        },
    );
    let (engine, reader, identity) = (
        base.engine.clone(),
        base.reader.clone(),
        base.identity.clone(),
    );
    let (funding, core) = (rig.funding.clone(), rig.simulators[1].0.clone());
    let merchants = Merchants::new(
        base.sql.clone(),
        engine.clone(),
        identity.clone(),
        base.vault.clone(),
        rig.bank_accounts.clone(),
        funding.clone(),
        app_clock.clone(),
        MerchantPolicy {
            payment_step_up_threshold: i64::MAX,
            ..MerchantPolicy::default()
        },
    );
    merchants.open_accounts().expect("fee account");
    let cny = Currency::parse("CNY").expect("CNY");
    let open = |id: &str, kind, constraint, owner: &str| {
        engine
            .execute_blocking(Command::OpenAccount(AccountSpec {
                id: Identifier::parse(id).expect("id"),
                currency: cny,
                kind,
                constraint,
                owner: Identifier::parse(owner).expect("owner"),
            }))
            .expect("open");
    };
    open(
        "sim:cash:cny",
        AccountKind::Asset,
        BalanceConstraint::None,
        "bank",
    );

    // Customers with money, each from the bank's cash (a plain transfer).
    let mut model = Model::default();
    let mut customers = Vec::new();
    for n in 0..CUSTOMERS {
        let customer_id = register(&base, &format!("+86135{seed:04}{n:04}"), "Sim");
        let wallet = format!("wallet:{customer_id}:cny");
        open(
            &wallet,
            AccountKind::Liability,
            BalanceConstraint::NoOverdraft,
            &customer_id,
        );
        let amount = rng.random_range(5_000..50_000);
        engine
            .execute_blocking(Command::Transfers {
                transfers: vec![TransferCommand {
                    id: Identifier::parse(&format!("sim:fund:{customer_id}")).expect("id"),
                    op: TransferOp::Post {
                        debit: Identifier::parse("sim:cash:cny").expect("id"),
                        credit: Identifier::parse(&wallet).expect("id"),
                        amount: Amount::new(amount).expect("amount"),
                        currency: cny,
                    },
                    code: Code::parse("sim.fund").expect("code"),
                    metadata: Metadata::default(),
                }],
                linked: false,
            })
            .expect("fund");
        model.wallets.push(amount);
        customers.push(customer_id);
    }
    let reviewer = StaffInfo {
        staff_id: "sim".into(),
        username: "sim".into(),
        roles: vec![Role::ComplianceOfficer],
        session_id: "sim".into(),
    };
    let mut shops = Vec::new();
    for n in 0..MERCHANTS {
        let applied = merchants
            .apply(
                &customers[0],
                &NewMerchant {
                    display_name: format!("Shop {n}"),
                    city: "Suzhou".into(),
                    mcc: ["5814", "5411"][n % 2].into(),
                    bank_code: "BOC".into(),
                    account_number: Secret::new(format!("62{seed:06}{n:08}")),
                },
                "sim",
            )
            .expect("apply");
        let rate = rng.random_range(0..200u32);
        let approved = merchants
            .review(&reviewer, &applied.id, true, Some(rate), "", "sim")
            .expect("review");
        model.receivables.push(0);
        model.unsettled.push((0, 0, 0));
        shops.push(approved);
    }

    let mut payments: Vec<Payment> = Vec::new();
    for step in 0..STEPS {
        let key = ClientKey {
            key: format!("sim-{seed}-{step}"),
            request_hash: format!("sim-{seed}-{step}"),
        };
        let choice = rng.random_range(0..10);
        if choice < 5 {
            // A payment, by static QR or by payment code.
            let (c, m) = (
                rng.random_range(0..CUSTOMERS),
                rng.random_range(0..MERCHANTS),
            );
            let amount = rng.random_range(1..20_000);
            let result = if rng.random_bool(0.5) {
                let payload = merchants.static_qr(&shops[m]).expect("qr");
                merchants.pay_qr(
                    &customers[c],
                    &key,
                    &payload,
                    &Confirmation {
                        amount: Some(amount),
                        step_up_challenge_id: None,
                    },
                    "sim",
                )
            } else {
                let code = merchants.issue_code(&customers[c]).expect("code");
                merchants.charge_code(
                    &shops[m].id,
                    &key,
                    &code.code,
                    &ChargeRequest {
                        amount,
                        currency: "CNY".into(),
                        order_reference: None,
                    },
                    "sim",
                )
            };
            if model.wallets[c] >= amount {
                let paid = result.unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
                assert_eq!(paid.status, "succeeded", "seed {seed} step {step}");
                model.wallets[c] -= amount;
                model.receivables[m] += amount;
                model.unsettled[m].0 += amount;
                model.unsettled[m].2 += 1;
                payments.push(Payment {
                    id: paid.id,
                    merchant: m,
                    amount,
                    refunded: 0,
                });
            } else {
                assert!(
                    matches!(result, Err(MerchantError::InsufficientFunds)),
                    "seed {seed} step {step}: {result:?}"
                );
            }
        } else if choice < 8 && !payments.is_empty() {
            // A refund of part or all of what is left, sometimes more.
            let index = rng.random_range(0..payments.len());
            let payment = &mut payments[index];
            let amount = rng.random_range(1..=payment.amount);
            let m = payment.merchant;
            let payer = merchants
                .merchant_payment(&shops[m].id, &payment.id)
                .expect("payment")
                .customer_id
                .expect("payer");
            let c = customers
                .iter()
                .position(|id| *id == payer)
                .expect("customer");
            let result = merchants.refund(&shops[m].id, &key, &payment.id, amount, None);
            if payment.refunded + amount > payment.amount {
                assert!(
                    matches!(result, Err(MerchantError::RefundExceedsPayment { available }) if available == payment.amount - payment.refunded),
                    "seed {seed} step {step}: {result:?}"
                );
            } else if model.receivables[m] < amount {
                assert!(
                    matches!(result, Err(MerchantError::MerchantFundsInsufficient)),
                    "seed {seed} step {step}: {result:?}"
                );
            } else {
                let refunded = result.unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
                assert_eq!(refunded.status, "succeeded");
                payment.refunded += amount;
                model.receivables[m] -= amount;
                model.wallets[c] += amount;
                model.unsettled[m].1 += amount;
                model.unsettled[m].2 += 1;
            }
        } else {
            // The day ends and is settled; the payouts' callbacks arrive.
            clock.0.fetch_add(DAY_NANOS, Ordering::SeqCst);
            let day = merchants.day_of(clock.now().as_nanos()) - 1;
            for (m, shop) in shops.iter().enumerate() {
                let settled = merchants
                    .settle(&shop.id, day)
                    .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
                let (gross, refunds, items) = model.unsettled[m];
                let fee = discount_fee(gross, shop.discount_rate_bps).expect("fee");
                let net = gross - refunds - fee;
                if items == 0 {
                    assert_eq!(settled.status, "empty", "seed {seed} step {step}");
                } else if net < 0 {
                    assert_eq!(settled.status, "carried_forward", "seed {seed} step {step}");
                } else {
                    assert_eq!(
                        (settled.gross, settled.refunds, settled.fee, settled.net),
                        (gross, refunds, fee, net),
                        "seed {seed} step {step}"
                    );
                    model.receivables[m] -= fee + net;
                    model.fee_income += fee;
                    model.paid_out += net;
                    model.unsettled[m] = (0, 0, 0);
                }
                // Settling the same day again changes nothing.
                let again = merchants.settle(&shop.id, day).expect("again");
                assert_eq!((again.id, again.net), (settled.id, settled.net));
            }
            for callback in core.take_due(i64::MAX).expect("callbacks") {
                let body: Callback = serde_json::from_str(&callback.body).expect("callback");
                funding
                    .apply_callback(ConnectorKind::CoreBanking, &body)
                    .expect("apply");
            }
        }
        for (c, customer) in customers.iter().enumerate() {
            assert_eq!(
                account(reader.as_ref(), &format!("wallet:{customer}:cny")),
                model.wallets[c],
                "seed {seed} step {step}: customer {c}"
            );
        }
        for (m, shop) in shops.iter().enumerate() {
            assert_eq!(
                account(reader.as_ref(), &format!("merchant:{}:cny", shop.id)),
                model.receivables[m],
                "seed {seed} step {step}: merchant {m}"
            );
            // Every net that reached the settlement wallet was paid out.
            assert_eq!(
                account(reader.as_ref(), &format!("wallet:{}:cny", shop.id)),
                0
            );
        }
    }
    assert_eq!(
        account(
            reader.as_ref(),
            coffer_payments::merchants::MERCHANT_FEE_INCOME_ACCOUNT
        ),
        model.fee_income,
        "seed {seed}: fee income"
    );
    assert_eq!(
        account(reader.as_ref(), "bank:payout-clearing:cny"),
        model.paid_out,
        "seed {seed}: payouts"
    );
    let report = coffer_app::verify(reader.as_ref(), &mut |_| {}).expect("verify");
    assert!(report.is_clean(), "seed {seed}: {:?}", report.violations);
    engine.shutdown();
}

#[test]
fn random_merchant_payments_refunds_and_settlements_keep_the_books_on_sqlite() {
    for seed in crate::support::seeds(&[1, 2, 3]) {
        let db = TestDatabase::sqlite();
        run(seed, &db.database);
    }
}

#[test]
fn random_merchant_payments_refunds_and_settlements_keep_the_books_on_postgres() {
    let seed = crate::support::seeds(&[1])[0] + 100;
    let db = TestDatabase::postgres();
    run(seed, &db.database);
}
