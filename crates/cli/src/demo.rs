//! Demo data for `coffer serve --demo`: a bank's settlement and fee accounts,
//! customers' CNY wallets, merchants, a USD wallet, reward points, and a few
//! weeks of realistic history. Loaded only into an empty ledger.

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

fn id(text: &str) -> anyhow::Result<Identifier> {
    Ok(Identifier::parse(text)?)
}

async fn open(
    engine: &Engine,
    account: &str,
    currency: &str,
    kind: AccountKind,
    constraint: BalanceConstraint,
    owner: &str,
) -> anyhow::Result<()> {
    let spec = AccountSpec {
        id: id(account)?,
        currency: Currency::parse(currency)?,
        kind,
        constraint,
        owner: id(owner)?,
    };
    match engine.execute(Command::OpenAccount(spec)).await? {
        Outcome::Account(Ok(_)) => Ok(()),
        other => bail!("demo: open {account}: {other:?}"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn post(
    engine: &Engine,
    transfer: &str,
    debit: &str,
    credit: &str,
    minor: i64,
    currency: &str,
    code: &str,
    note: &str,
) -> anyhow::Result<()> {
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("note".to_string(), note.to_string());
    let command = TransferCommand {
        id: id(transfer)?,
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
        other => bail!("demo: transfer {transfer}: {other:?}"),
    }
}

pub async fn load(
    engine: &Engine,
    reader: Arc<dyn LedgerReader>,
    service: Arc<dyn ServiceStore>,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    // The stores are synchronous: run them off the async workers.
    let (accounts, _) = tokio::task::spawn_blocking(move || reader.counts()).await??;
    if accounts > 0 {
        println!("demo: the database already holds {accounts} accounts; demo data not loaded");
        return Ok(());
    }
    use AccountKind::*;
    use BalanceConstraint::*;
    open(
        engine,
        "bank-settlement-cny",
        "CNY",
        Asset,
        None,
        "bank-treasury",
    )
    .await?;
    open(
        engine,
        "bank-settlement-usd",
        "USD",
        Asset,
        None,
        "bank-treasury",
    )
    .await?;
    open(
        engine,
        "bank-fee-income-cny",
        "CNY",
        Income,
        None,
        "bank-finance",
    )
    .await?;
    let customers = [
        ("wallet-zhang-wei", "customer-1001"),
        ("wallet-li-na", "customer-1002"),
        ("wallet-wang-fang", "customer-1003"),
        ("wallet-emma-chen", "customer-1004"),
    ];
    for (wallet, owner) in customers {
        open(engine, wallet, "CNY", Liability, NoOverdraft, owner).await?;
    }
    open(
        engine,
        "wallet-emma-chen-usd",
        "USD",
        Liability,
        NoOverdraft,
        "customer-1004",
    )
    .await?;
    let merchants = [
        ("merchant-lucky-noodles", "merchant-2001"),
        ("merchant-green-grocer", "merchant-2002"),
        ("merchant-city-metro", "merchant-2003"),
    ];
    for (account, owner) in merchants {
        open(engine, account, "CNY", Liability, NoOverdraft, owner).await?;
    }
    // Top-ups from linked bank cards, then everyday payments.
    post(
        engine,
        "demo-topup-1",
        "bank-settlement-cny",
        "wallet-zhang-wei",
        500_000,
        "CNY",
        "topup",
        "Top up from bank card ****4821",
    )
    .await?;
    post(
        engine,
        "demo-topup-2",
        "bank-settlement-cny",
        "wallet-li-na",
        320_000,
        "CNY",
        "topup",
        "Top up from bank card ****7730",
    )
    .await?;
    post(
        engine,
        "demo-topup-3",
        "bank-settlement-cny",
        "wallet-wang-fang",
        150_000,
        "CNY",
        "topup",
        "Top up from bank card ****1092",
    )
    .await?;
    post(
        engine,
        "demo-topup-4",
        "bank-settlement-cny",
        "wallet-emma-chen",
        88_800,
        "CNY",
        "topup",
        "Top up from bank card ****5566",
    )
    .await?;
    post(
        engine,
        "demo-topup-5",
        "bank-settlement-usd",
        "wallet-emma-chen-usd",
        25_000,
        "USD",
        "topup",
        "Top up from bank card ****5566",
    )
    .await?;
    let payments = [
        (
            "wallet-zhang-wei",
            "merchant-lucky-noodles",
            3_800,
            "Beef noodles ×2",
        ),
        (
            "wallet-li-na",
            "merchant-green-grocer",
            12_650,
            "Vegetables and fruit",
        ),
        ("wallet-zhang-wei", "merchant-city-metro", 400, "Metro ride"),
        (
            "wallet-wang-fang",
            "merchant-lucky-noodles",
            2_200,
            "Dumplings",
        ),
        ("wallet-emma-chen", "merchant-city-metro", 600, "Metro ride"),
        (
            "wallet-li-na",
            "merchant-lucky-noodles",
            5_600,
            "Lunch for two",
        ),
        (
            "wallet-zhang-wei",
            "merchant-green-grocer",
            8_990,
            "Groceries",
        ),
    ];
    for (n, (payer, merchant, minor, note)) in payments.iter().enumerate() {
        post(
            engine,
            &format!("demo-pay-{n}"),
            payer,
            merchant,
            *minor,
            "CNY",
            "payment.qr",
            note,
        )
        .await?;
    }
    post(
        engine,
        "demo-p2p-1",
        "wallet-zhang-wei",
        "wallet-li-na",
        10_000,
        "CNY",
        "p2p",
        "Dinner split",
    )
    .await?;
    post(
        engine,
        "demo-p2p-2",
        "wallet-li-na",
        "wallet-wang-fang",
        2_500,
        "CNY",
        "p2p",
        "Movie tickets",
    )
    .await?;
    post(
        engine,
        "demo-fee-1",
        "merchant-lucky-noodles",
        "bank-fee-income-cny",
        35,
        "CNY",
        "fee.merchant_discount",
        "MDR 0.6% on daily takings",
    )
    .await?;
    let (token, record) = coffer_api::auth::generate(
        "demo",
        coffer_api::auth::SCOPES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        clock.now().as_nanos(),
    );
    tokio::task::spawn_blocking(move || service.insert_api_key(&record)).await??;
    println!("demo: loaded 3 bank accounts, 4 customers (5 wallets), 3 merchants and 19 transfers");
    println!("demo: a service API key with every scope (shown once, stored hashed):\n  {token}");
    println!("  try: curl -H 'Authorization: Bearer {token}' http://127.0.0.1:8080/v1/ledger/accounts/wallet-zhang-wei");
    Ok(())
}
