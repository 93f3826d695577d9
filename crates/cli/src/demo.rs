//! Demo data for `coffer serve --demo`: a bank's settlement and fee accounts,
//! customers' CNY wallets and a USD wallet, merchants, and everyday history
//! (top-ups, QR payments, P2P transfers, a fee). Loaded only into an empty ledger.
//! Then a customer who signs in through the customer API, with a linked card
//! and bank account, top-ups (one declined) and a withdrawal, all through the
//! simulated card network and core banking system.

use std::sync::Arc;

use anyhow::bail;
use coffer_app::Engine;
use coffer_core::{Amount, Clock, Code, Currency, Identifier};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, Metadata, Outcome, TransferCommand,
    TransferOp,
};
use coffer_store::service::ServiceStore;
use coffer_store::LedgerReader;

use crate::progress;

fn id(text: &str) -> anyhow::Result<Identifier> {
    Ok(Identifier::parse(text)?)
}

async fn open(engine: &Engine, account: &DemoAccount) -> anyhow::Result<()> {
    let spec = AccountSpec {
        id: id(account.id)?,
        currency: Currency::parse(account.currency)?,
        kind: account.kind,
        constraint: account.constraint,
        owner: id(account.owner)?,
    };
    match engine.execute(Command::OpenAccount(spec)).await? {
        Outcome::Account(Ok(_)) => Ok(()),
        other => bail!("demo: open {}: {other:?}", account.id),
    }
}

async fn post(engine: &Engine, transfer: &DemoTransfer) -> anyhow::Result<()> {
    let &(transfer_id, debit, credit, minor, currency, code, note) = transfer;
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("note".to_string(), note.to_string());
    let command = TransferCommand {
        id: id(transfer_id)?,
        op: TransferOp::Post {
            debit: id(debit)?,
            credit: id(credit)?,
            amount: Amount::new(minor)?,
            currency: Currency::parse(currency)?,
        },
        code: Code::parse(code)?,
        metadata: Metadata::new(metadata)?,
    };
    match engine
        .execute(Command::Transfers {
            transfers: vec![command],
            linked: false,
        })
        .await?
    {
        Outcome::Transfers(results) if results.iter().all(Result::is_ok) => Ok(()),
        other => bail!("demo: transfer {transfer_id}: {other:?}"),
    }
}

/// An account the demo opens.
struct DemoAccount {
    id: &'static str,
    currency: &'static str,
    kind: AccountKind,
    constraint: BalanceConstraint,
    owner: &'static str,
}

const fn account(
    id: &'static str,
    currency: &'static str,
    kind: AccountKind,
    constraint: BalanceConstraint,
    owner: &'static str,
) -> DemoAccount {
    DemoAccount {
        id,
        currency,
        kind,
        constraint,
        owner,
    }
}

/// The bank's own accounts, customers' wallets, then merchants'.
#[rustfmt::skip]
const ACCOUNTS: [DemoAccount; 11] = {
    use AccountKind::*;
    use BalanceConstraint::*;
    [
        account("bank-settlement-cny", "CNY", Asset, None, "bank-treasury"),
        account("bank-settlement-usd", "USD", Asset, None, "bank-treasury"),
        account("bank-fee-income-cny", "CNY", Income, None, "bank-finance"),
        account("wallet-zhang-wei", "CNY", Liability, NoOverdraft, "customer-1001"),
        account("wallet-li-na", "CNY", Liability, NoOverdraft, "customer-1002"),
        account("wallet-wang-fang", "CNY", Liability, NoOverdraft, "customer-1003"),
        account("wallet-emma-chen", "CNY", Liability, NoOverdraft, "customer-1004"),
        account("wallet-emma-chen-usd", "USD", Liability, NoOverdraft, "customer-1004"),
        account("merchant-lucky-noodles", "CNY", Liability, NoOverdraft, "merchant-2001"),
        account("merchant-green-grocer", "CNY", Liability, NoOverdraft, "merchant-2002"),
        account("merchant-city-metro", "CNY", Liability, NoOverdraft, "merchant-2003"),
    ]
};

/// A transfer the demo posts: (id, debit, credit, minor units, currency, code, note).
type DemoTransfer = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    &'static str,
    &'static str,
    &'static str,
);

/// Top-ups from linked bank cards, everyday QR payments, P2P and a fee, in order.
#[rustfmt::skip]
const TRANSFERS: [DemoTransfer; 15] = [
    ("demo-topup-1", "bank-settlement-cny", "wallet-zhang-wei", 500_000, "CNY", "topup", "Top up from bank card ****4821"),
    ("demo-topup-2", "bank-settlement-cny", "wallet-li-na", 320_000, "CNY", "topup", "Top up from bank card ****7730"),
    ("demo-topup-3", "bank-settlement-cny", "wallet-wang-fang", 150_000, "CNY", "topup", "Top up from bank card ****1092"),
    ("demo-topup-4", "bank-settlement-cny", "wallet-emma-chen", 88_800, "CNY", "topup", "Top up from bank card ****5566"),
    ("demo-topup-5", "bank-settlement-usd", "wallet-emma-chen-usd", 25_000, "USD", "topup", "Top up from bank card ****5566"),
    ("demo-pay-0", "wallet-zhang-wei", "merchant-lucky-noodles", 3_800, "CNY", "payment.qr", "Beef noodles ×2"),
    ("demo-pay-1", "wallet-li-na", "merchant-green-grocer", 12_650, "CNY", "payment.qr", "Vegetables and fruit"),
    ("demo-pay-2", "wallet-zhang-wei", "merchant-city-metro", 400, "CNY", "payment.qr", "Metro ride"),
    ("demo-pay-3", "wallet-wang-fang", "merchant-lucky-noodles", 2_200, "CNY", "payment.qr", "Dumplings"),
    ("demo-pay-4", "wallet-emma-chen", "merchant-city-metro", 600, "CNY", "payment.qr", "Metro ride"),
    ("demo-pay-5", "wallet-li-na", "merchant-lucky-noodles", 5_600, "CNY", "payment.qr", "Lunch for two"),
    ("demo-pay-6", "wallet-zhang-wei", "merchant-green-grocer", 8_990, "CNY", "payment.qr", "Groceries"),
    ("demo-p2p-1", "wallet-zhang-wei", "wallet-li-na", 10_000, "CNY", "p2p", "Dinner split"),
    ("demo-p2p-2", "wallet-li-na", "wallet-wang-fang", 2_500, "CNY", "p2p", "Movie tickets"),
    ("demo-fee-1", "merchant-lucky-noodles", "bank-fee-income-cny", 35, "CNY", "fee.merchant_discount", "MDR 0.6% on daily takings"),
];

/// Loads the demo into an empty ledger; `base_url` is where the service will
/// answer, for the example printed at the end.
pub async fn load(
    engine: &Engine,
    reader: Arc<dyn LedgerReader>,
    service: Arc<dyn ServiceStore>,
    clock: &dyn Clock,
    base_url: &str,
) -> anyhow::Result<()> {
    // The stores are synchronous: run them off the async workers.
    let (accounts, _) = tokio::task::spawn_blocking(move || reader.counts()).await??;
    if accounts > 0 {
        println!("demo: the database already holds {accounts} accounts; demo data not loaded");
        return Ok(());
    }
    let bar = progress::bar(
        (ACCOUNTS.len() + TRANSFERS.len()) as u64,
        "loading demo data",
    );
    for account in &ACCOUNTS {
        open(engine, account).await?;
        bar.inc(1);
    }
    for transfer in &TRANSFERS {
        post(engine, transfer).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (token, record) = coffer_api::auth::generate(
        "demo",
        coffer_api::auth::SCOPES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        clock.now().as_nanos(),
    );
    tokio::task::spawn_blocking(move || service.insert_api_key(&record)).await??;
    println!(
        "demo: loaded {} accounts (bank, customer wallets, merchants) and {} transfers",
        ACCOUNTS.len(),
        TRANSFERS.len()
    );
    println!("demo: a service API key with every scope (shown once, stored hashed):\n  {token}");
    println!("  try: curl -H 'Authorization: Bearer {token}' {base_url}/v1/ledger/accounts/wallet-zhang-wei");
    Ok(())
}

/// The demo customer of the customer API.
pub const DEMO_CUSTOMER_PHONE: &str = "+8613800138000";
pub const DEMO_CUSTOMER_PASSWORD: &str = "jasmine tea by the window";

/// Registers the demo customer (if the contact is new), links a card and a
/// bank account, tops up (one top-up declined) and withdraws, delivering
/// the simulated connectors' callbacks as they come.
pub async fn load_funding(
    state: &coffer_api::AppState,
    customers: &coffer_api::CustomerServices,
    sms: Arc<coffer_notify::SimulatedTransport>,
) -> anyhow::Result<Option<String>> {
    let (identity, dispatcher) = (customers.identity.clone(), customers.dispatcher.clone());
    let (cards, accounts, funding) = (
        state.cards.clone(),
        state.bank_accounts.clone(),
        state.funding.clone(),
    );
    let simulators = state.connectors.simulators.clone();
    let merchants = state.merchants.clone();
    let now = state.clock.now().as_nanos();
    let loaded = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<String>> {
        use coffer_core::Secret;
        use coffer_payments::{ClientKey, Source, TopUpRequest, WithdrawalRequest};
        let context = coffer_identity::Context {
            ip: "demo".into(),
            device: "coffer serve --demo".into(),
        };
        let started = identity.start_registration(DEMO_CUSTOMER_PHONE, &context)?;
        dispatcher.run_once()?;
        let Some(code) = sms.last_code(DEMO_CUSTOMER_PHONE) else {
            return Ok(None);
        };
        let Ok((customer, _)) = identity.complete_registration(
            &started.registration_id,
            &Secret::new(code),
            &Secret::new(DEMO_CUSTOMER_PASSWORD.into()),
            "张伟 Zhang Wei",
            coffer_identity::TERMS_VERSION,
            &context,
        ) else {
            // The contact had a wallet already (a database kept from an earlier demo).
            return Ok(None);
        };
        let card = cards.link(
            &customer.id,
            coffer_payments::NewCard {
                number: Secret::new("4111111111111111".into()),
                expiry_month: 12,
                expiry_year: 2030,
                cvv: Secret::new("123".into()),
                funding: "debit".into(),
            },
            (2026, 1),
            "demo",
            now,
        )?;
        let declining = cards.link(
            &customer.id,
            coffer_payments::NewCard {
                number: Secret::new("4000000000000002".into()),
                expiry_month: 6,
                expiry_year: 2029,
                cvv: Secret::new("456".into()),
                funding: "credit".into(),
            },
            (2026, 1),
            "demo",
            now,
        )?;
        let account = accounts.link(
            &customer.id,
            "CMB",
            &Secret::new("6222000000000001".into()),
            "demo",
            now,
        )?;
        let key = |name: &str| ClientKey {
            key: format!("demo-{name}"),
            request_hash: format!("demo-{name}"),
        };
        let deliver = || -> anyhow::Result<()> {
            for simulator in &simulators {
                for callback in simulator.take_due(i64::MAX)? {
                    let body: coffer_payments::Callback = serde_json::from_str(&callback.body)?;
                    funding.apply_callback(simulator.kind(), &body)?;
                }
            }
            Ok(())
        };
        for (name, source, amount) in [
            ("top-up-card", Source::Card(card.id.clone()), 50_000),
            (
                "top-up-declined",
                Source::Card(declining.id.clone()),
                10_000,
            ),
            (
                "top-up-bank",
                Source::BankAccount(account.id.clone()),
                20_000,
            ),
        ] {
            funding.top_up(
                &customer.id,
                &key(name),
                &TopUpRequest {
                    source,
                    amount,
                    currency: "CNY".into(),
                },
                "demo",
            )?;
        }
        deliver()?;
        // Two withdrawals, each confirmed at its quoted fee: the month's
        // free one, then one that pays the schedule's fee.
        for (name, amount) in [("withdrawal", 15_000), ("withdrawal-with-fee", 8_000)] {
            let quote = funding.withdrawal_quote(&customer.id, amount, "CNY")?;
            funding.withdraw(
                &customer.id,
                &key(name),
                &WithdrawalRequest {
                    bank_account_id: account.id.clone(),
                    amount,
                    currency: "CNY".into(),
                    step_up_challenge_id: None,
                    expected_fee: Some(quote.fee),
                },
                "demo",
            )?;
            deliver()?;
        }
        load_merchants(&merchants, &customer.id, &key)?;
        Ok(Some(customer.id))
    })
    .await??;
    if loaded.is_some() {
        println!(
            "demo: customer {DEMO_CUSTOMER_PHONE} (password \"{DEMO_CUSTOMER_PASSWORD}\") with a card, a bank account, top-ups and two withdrawals (one free, one with a fee)"
        );
        println!("  try: POST /v1/auth/sessions, then GET /v1/me/top-ups and /v1/me/withdrawals (README: Funding the wallet)");
        println!("  and GET /v1/me/merchants, /v1/me/merchant-payments (README: Merchants)");
    }
    Ok(loaded)
}

/// For the demo customer: a support ticket about their first top-up,
/// answered by a demo support agent, so the help pages and the console's
/// support queue show a thread.
pub async fn load_support(
    state: &coffer_api::AppState,
    customer_id: Option<String>,
) -> anyhow::Result<()> {
    let Some(customer_id) = customer_id else {
        return Ok(());
    };
    let (support, activity) = (state.support.clone(), state.activity.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let first = activity
            .list(
                &customer_id,
                &coffer_payments::activity::Filter::default(),
                None,
                100,
            )?
            .items
            .into_iter()
            .last()
            .map(|a| a.id);
        let ticket = support.open(
            &coffer_support::Requester {
                customer_id: customer_id.clone(),
                ip: "demo".into(),
            },
            &coffer_support::NewTicket {
                category: coffer_support::TicketCategory::PaymentProblem,
                activity_id: first,
                body: "这笔充值到账了吗？ Did this top-up arrive?".into(),
            },
        )?;
        let agent = coffer_identity::StaffInfo {
            staff_id: "demo-support".into(),
            username: "demo.support".into(),
            roles: vec![coffer_identity::Role::Support],
            session_id: "demo".into(),
        };
        support.reply_as_staff(
            &agent,
            &ticket.id,
            "已到账，请在交易记录中查看。 Yes, it arrived: see it in your history.",
            coffer_support::StaffReply::Answer,
            &coffer_identity::Context {
                ip: "demo".into(),
                device: "coffer serve --demo".into(),
            },
        )?;
        Ok(())
    })
    .await??;
    println!("  support: a ticket about the first top-up, answered; try GET /v1/me/support/tickets or /help/requests (README: Support tickets)");
    Ok(())
}

/// For the demo customer: two bills paid (electricity, a credit card
/// repayment) and a conversion of CNY 100.00 to US dollars, so that the
/// history shows every kind of entry.
pub async fn load_wallet(
    state: &coffer_api::AppState,
    customer_id: Option<String>,
) -> anyhow::Result<()> {
    let Some(customer_id) = customer_id else {
        return Ok(());
    };
    let (bills, fx) = (state.bills.clone(), state.fx.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        use coffer_payments::{BillPaymentRequest, ClientKey, FixedSide};
        let key = |name: &str| ClientKey {
            key: format!("demo-{name}"),
            request_hash: format!("demo-{name}"),
        };
        let electricity = bills.lookup("state-grid-electricity", "3100 2000 02")?;
        for (name, biller_id, reference, amount) in [
            (
                "bill-electricity",
                "state-grid-electricity",
                "3100200002",
                electricity.amount_due,
            ),
            (
                "bill-credit-card",
                "cmb-credit-card",
                "6225880112345678",
                8_800,
            ),
        ] {
            bills.pay(
                &customer_id,
                &key(name),
                &BillPaymentRequest {
                    biller_id: biller_id.into(),
                    account_reference: reference.into(),
                    amount,
                    currency: "CNY".into(),
                    step_up_challenge_id: None,
                },
                "demo",
            )?;
        }
        let quote = fx.quote(&customer_id, "CNY", "USD", FixedSide::Sell(10_000))?;
        fx.convert(&customer_id, &key("fx"), &quote.id, "demo")?;
        Ok(())
    })
    .await??;
    println!("  wallet: bills paid and CNY 100.00 converted to USD; try GET /v1/me/activity, /v1/me/wallets (README: Bills, FX and history)");
    Ok(())
}

/// The demo customer's friend, for P2P payments and a split bill.
pub const DEMO_FRIEND_PHONE: &str = "+8613900139000";

/// A second demo customer, handles for both, a few P2P payments either way
/// (with notes), a split bill the friend paid and a request still open, so
/// that a newcomer sees a P2P history. Runs after `load_funding`.
pub async fn load_p2p(
    state: &coffer_api::AppState,
    customers: &coffer_api::CustomerServices,
    sms: Arc<coffer_notify::SimulatedTransport>,
) -> anyhow::Result<()> {
    let (identity, dispatcher) = (customers.identity.clone(), customers.dispatcher.clone());
    let (cards, funding, p2p) = (
        state.cards.clone(),
        state.funding.clone(),
        state.p2p.clone(),
    );
    let simulators = state.connectors.simulators.clone();
    let now = state.clock.now().as_nanos();
    let loaded = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        use coffer_core::Secret;
        use coffer_payments::{
            ClientKey, Confirmation, NewRequest, QuoteFor, Shares, Source, TopUpRequest,
        };
        let context = coffer_identity::Context {
            ip: "demo".into(),
            device: "coffer serve --demo".into(),
        };
        let Some(zhang) = identity.find_active_by_contact(
            &coffer_identity::Contact::parse(DEMO_CUSTOMER_PHONE)
                .ok_or_else(|| anyhow::anyhow!("demo phone"))?,
        )?
        else {
            return Ok(false);
        };
        let started = identity.start_registration(DEMO_FRIEND_PHONE, &context)?;
        dispatcher.run_once()?;
        let Some(code) = sms.last_code(DEMO_FRIEND_PHONE) else {
            return Ok(false);
        };
        let Ok((li, _)) = identity.complete_registration(
            &started.registration_id,
            &Secret::new(code),
            &Secret::new(DEMO_CUSTOMER_PASSWORD.into()),
            "李娜 Li Na",
            coffer_identity::TERMS_VERSION,
            &context,
        ) else {
            return Ok(false);
        };
        let li = li.id;
        p2p.set_handle(&zhang, "zhangwei", "demo")?;
        p2p.set_handle(&li, "lina", "demo")?;
        let card = cards.link(
            &li,
            coffer_payments::NewCard {
                number: Secret::new("6212345678901265".into()),
                expiry_month: 3,
                expiry_year: 2031,
                cvv: Secret::new("321".into()),
                funding: "debit".into(),
            },
            (2026, 1),
            "demo",
            now,
        )?;
        let key = |name: &str| ClientKey {
            key: format!("demo-{name}"),
            request_hash: format!("demo-{name}"),
        };
        funding.top_up(
            &li,
            &key("li-top-up"),
            &TopUpRequest {
                source: Source::Card(card.id),
                amount: 30_000,
                currency: "CNY".into(),
            },
            "demo",
        )?;
        // The first customer has spent on bills, FX and merchants by now:
        // a top-up of their own for the payments to friends.
        // The approving test card (the other one is the declining 4000…0002).
        if let Some(zhang_card) = cards.list(&zhang)?.into_iter().find(|c| c.last4 == "1111") {
            funding.top_up(
                &zhang,
                &key("zhang-top-up-p2p"),
                &TopUpRequest {
                    source: Source::Card(zhang_card.id),
                    amount: 50_000,
                    currency: "CNY".into(),
                },
                "demo",
            )?;
        }
        for simulator in &simulators {
            for callback in simulator.take_due(i64::MAX)? {
                let body: coffer_payments::Callback = serde_json::from_str(&callback.body)?;
                funding.apply_callback(simulator.kind(), &body)?;
            }
        }
        // Small payments between friends: within the low-value exemption,
        // so no step-up; quoted, then confirmed as quoted.
        let pay = |name: &str, payer: &str, what: QuoteFor| -> anyhow::Result<()> {
            let quote = p2p.quote(payer, &what)?;
            p2p.pay(
                payer,
                &key(name),
                &Confirmation {
                    quote_id: quote.id,
                    amount: quote.amount,
                    fee: quote.fee,
                    currency: quote.currency,
                    step_up_challenge_id: None,
                },
                "demo",
            )?;
            Ok(())
        };
        let to = |payee: &str, amount: i64, note: &str| QuoteFor::Payee {
            payee: payee.into(),
            amount,
            currency: "CNY".into(),
            note: Some(note.into()),
        };
        pay("p2p-lunch", &zhang, to("@lina", 8_800, "午饭 lunch"))?;
        pay(
            "p2p-coffee",
            &li,
            to(DEMO_CUSTOMER_PHONE, 2_000, "coffee ☕"),
        )?;
        pay("p2p-movie", &zhang, to("@lina", 12_000, "movie tickets"))?;
        let split = p2p.request(
            &zhang,
            &key("split-hotpot"),
            &NewRequest {
                currency: "CNY".into(),
                note: Some("火锅 hotpot dinner".into()),
                shares: Shares::Equal {
                    total: 36_000,
                    payers: vec!["@lina".into()],
                    include_me: true,
                },
                expires_in_seconds: None,
            },
            "demo",
        )?;
        if let Some(request) = split.requests.first() {
            pay(
                "p2p-hotpot",
                &li,
                QuoteFor::Request {
                    request_id: request.id.clone(),
                },
            )?;
        }
        p2p.request(
            &zhang,
            &key("request-taxi"),
            &NewRequest {
                currency: "CNY".into(),
                note: Some("taxi to the airport".into()),
                shares: Shares::Each(vec![("@lina".into(), 5_000)]),
                expires_in_seconds: None,
            },
            "demo",
        )?;
        Ok(true)
    })
    .await??;
    if loaded {
        println!(
            "demo: a friend {DEMO_FRIEND_PHONE} (@lina, same password) with P2P payments both ways, a split hotpot bill she paid and a request still open"
        );
        println!("  try: GET /v1/me/p2p/payments, /v1/me/payment-requests, /v1/me/incoming-payment-requests (README: P2P payments)");
    }
    Ok(())
}

/// Two merchants owned by the demo customer (a coffee shop and a book
/// shop), approved by a demo reviewer, and a realistic history: a static QR
/// payment, a checkout paid through its dynamic QR code, a payment by code,
/// and a partial refund.
fn load_merchants(
    merchants: &coffer_payments::Merchants,
    customer_id: &str,
    key: &dyn Fn(&str) -> coffer_payments::ClientKey,
) -> anyhow::Result<()> {
    use coffer_core::Secret;
    use coffer_payments::{ChargeRequest, MerchantConfirmation as Confirmation, NewMerchant};
    let reviewer = coffer_identity::StaffInfo {
        staff_id: "demo-reviewer".into(),
        username: "demo.reviewer".into(),
        roles: vec![coffer_identity::Role::ComplianceOfficer],
        session_id: "demo".into(),
    };
    let mut opened = Vec::new();
    for (name, mcc, account) in [
        ("Lotus Coffee", "5814", "6222000000005814"),
        ("Harbour Books", "5942", "6222000000005942"),
    ] {
        let applied = merchants.apply(
            customer_id,
            &NewMerchant {
                display_name: name.into(),
                city: "Shanghai".into(),
                mcc: mcc.into(),
                bank_code: "ICBC".into(),
                account_number: Secret::new(account.into()),
            },
            "demo",
        )?;
        merchants.review(
            &reviewer,
            &applied.id,
            true,
            None,
            "demo: documents checked",
            "demo",
        )?;
        opened.push(merchants.get(&applied.id)?);
    }
    let (coffee, books) = (&opened[0], &opened[1]);
    let payload = merchants.static_qr(coffee)?;
    merchants.pay_qr(
        customer_id,
        &key("pay-coffee"),
        &payload,
        &Confirmation {
            amount: Some(3_800),
            step_up_challenge_id: None,
        },
        "demo",
    )?;
    let order = merchants.create_checkout(
        &books.id,
        &key("checkout-books"),
        &ChargeRequest {
            amount: 12_900,
            currency: "CNY".into(),
            order_reference: Some("HB-20261125-01".into()),
        },
        Some("https://harbour-books.example/thanks"),
    )?;
    let dynamic = merchants.dynamic_qr(&books.id, &order.id)?;
    merchants.pay_qr(
        customer_id,
        &key("pay-books"),
        &dynamic,
        &Confirmation::default(),
        "demo",
    )?;
    let code = merchants.issue_code(customer_id)?;
    merchants.charge_code(
        &coffee.id,
        &key("charge-coffee"),
        &code.code,
        &ChargeRequest {
            amount: 1_500,
            currency: "CNY".into(),
            order_reference: Some("TILL-1".into()),
        },
        "demo",
    )?;
    merchants.refund(
        &books.id,
        &key("refund-books"),
        &order.id,
        2_900,
        Some("one book was damaged"),
    )?;
    Ok(())
}

/// The demo watch list (fictional names only), shipped in the repository.
pub const DEMO_WATCHLIST: &str = include_str!("../../../docs/compliance/demo-watchlist.json");

/// Makes the demo watch list the active one (a new version only if it differs).
pub fn load_watchlist(screener: &coffer_compliance::Screener) -> anyhow::Result<()> {
    let version = screener
        .load_list(
            coffer_audit::ACTOR_SYSTEM,
            "docs/compliance/demo-watchlist.json",
            coffer_compliance::watchlist::ListFormat::Json,
            DEMO_WATCHLIST,
            "",
        )
        .map_err(|e| anyhow::anyhow!("demo watch list: {e}"))?;
    println!(
        "  watch list: demo list v{} ({} fictional entries)",
        version.version, version.entry_count
    );
    Ok(())
}
