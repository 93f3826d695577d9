//! Test support: the two real backends and terse builders for ledger commands.
//! Only ever a dev-dependency.

use std::collections::BTreeMap;

use coffer_core::{Amount, Code, Currency, Identifier};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, Metadata, TransferCommand, TransferOp,
};
use coffer_store::throwaway::PgCluster;
use coffer_store::Database;

pub mod smtp_sink;

/// A fresh, empty database on one backend; files are removed on drop.
pub struct TestDatabase {
    pub database: Database,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = Database::Sqlite(dir.path().join("ledger.db"));
        TestDatabase {
            database,
            _dir: Some(dir),
        }
    }

    /// A new database in this process's shared throwaway cluster. Panics with
    /// the reason if PostgreSQL is not installed: these tests never skip.
    pub fn postgres() -> TestDatabase {
        let cluster = PgCluster::shared()
            .expect("a throwaway PostgreSQL cluster (install Debian's postgresql package)");
        let name = format!("t{}", next());
        let url = cluster.create_database(&name).expect("create database");
        TestDatabase {
            database: Database::Postgres(url),
            _dir: None,
        }
    }

    /// Both backends, SQLite first.
    pub fn both() -> Vec<TestDatabase> {
        vec![TestDatabase::sqlite(), TestDatabase::postgres()]
    }

    pub fn name(&self) -> &'static str {
        self.database.backend_name()
    }
}

fn next() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos % 1_000_000_000) * 1000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

pub fn id(text: &str) -> Identifier {
    Identifier::parse(text).expect("valid id")
}

pub fn cny() -> Currency {
    Currency::parse("CNY").expect("CNY")
}

pub fn currency(code: &str) -> Currency {
    Currency::parse(code).expect("currency")
}

pub fn amount(minor: i64) -> Amount {
    Amount::new(minor).expect("positive amount")
}

pub fn code(text: &str) -> Code {
    Code::parse(text).expect("code")
}

pub fn spec(
    account: &str,
    currency_code: &str,
    kind: AccountKind,
    constraint: BalanceConstraint,
) -> AccountSpec {
    AccountSpec {
        id: id(account),
        currency: currency(currency_code),
        kind,
        constraint,
        owner: id("owner-test"),
    }
}

/// A customer wallet: a CNY liability that cannot go overdrawn.
pub fn wallet(account: &str) -> Command {
    Command::OpenAccount(spec(
        account,
        "CNY",
        AccountKind::Liability,
        BalanceConstraint::NoOverdraft,
    ))
}

/// The bank's CNY settlement asset: unconstrained.
pub fn bank(account: &str) -> Command {
    Command::OpenAccount(spec(
        account,
        "CNY",
        AccountKind::Asset,
        BalanceConstraint::None,
    ))
}

pub fn transfer(transfer_id: &str, op: TransferOp) -> TransferCommand {
    TransferCommand {
        id: id(transfer_id),
        op,
        code: code("test"),
        metadata: Metadata::default(),
    }
}

pub fn post(transfer_id: &str, debit: &str, credit: &str, minor: i64) -> TransferCommand {
    transfer(
        transfer_id,
        TransferOp::Post {
            debit: id(debit),
            credit: id(credit),
            amount: amount(minor),
            currency: cny(),
        },
    )
}

pub fn hold(
    transfer_id: &str,
    debit: &str,
    credit: &str,
    minor: i64,
    timeout_ms: u64,
) -> TransferCommand {
    transfer(
        transfer_id,
        TransferOp::Hold {
            debit: id(debit),
            credit: id(credit),
            amount: amount(minor),
            currency: cny(),
            timeout_ms,
        },
    )
}

pub fn capture(transfer_id: &str, hold_id: &str, minor: Option<i64>) -> TransferCommand {
    transfer(
        transfer_id,
        TransferOp::Capture {
            hold: id(hold_id),
            amount: minor.map(amount),
        },
    )
}

pub fn release(transfer_id: &str, hold_id: &str) -> TransferCommand {
    transfer(transfer_id, TransferOp::Release { hold: id(hold_id) })
}

pub fn single(command: TransferCommand) -> Command {
    Command::Transfers {
        transfers: vec![command],
        linked: false,
    }
}

pub fn linked(commands: Vec<TransferCommand>) -> Command {
    Command::Transfers {
        transfers: commands,
        linked: true,
    }
}

pub fn with_metadata(mut command: TransferCommand, entries: &[(&str, &str)]) -> TransferCommand {
    let map: BTreeMap<String, String> = entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    command.metadata = Metadata::new(map).expect("metadata");
    command
}

/// Runs raw SQL against the database behind the ledger's back (tamper tests).
pub fn execute_sql(database: &Database, sql: &str) {
    match database {
        Database::Sqlite(path) => {
            let connection = rusqlite::Connection::open(path).expect("open sqlite");
            connection.execute_batch(sql).expect("sql");
        }
        Database::Postgres(url) => {
            let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
            client.batch_execute(sql).expect("sql");
        }
    }
}
