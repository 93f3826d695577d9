//! The commit path through the batch log, on both backends: what a client
//! was told is committed is visible at once, replaying the log never applies
//! a record twice (even with a second process recovering beside the engine),
//! and the log does not grow without bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coffer_app::{verify, Engine};
use coffer_ledger::{Command, HoldState, Outcome, Rejection, Transfer};
use coffer_store::{Database, EntryFilter};
use coffer_testkit::*;

fn one(engine: &Engine, command: Command) -> Result<(Transfer, bool), Rejection> {
    match engine.execute_blocking(command).expect("engine") {
        Outcome::Transfers(mut results) => results.remove(0),
        other => panic!("expected transfers, got {other:?}"),
    }
}

fn open(engine: &Engine, command: Command) {
    match engine.execute_blocking(command).expect("engine") {
        Outcome::Account(Ok(_)) => {}
        other => panic!("open failed: {other:?}"),
    }
}

fn log_rows(database: &Database) -> i64 {
    match database {
        Database::Sqlite(path) => {
            let connection =
                rusqlite::Connection::open(coffer_store::sqlite::log_path(path)).expect("log");
            connection
                .query_row("SELECT COUNT(*) FROM ledger_log", [], |r| r.get(0))
                .expect("count")
        }
        Database::Postgres(url) => {
            let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
            client
                .query_one("SELECT COUNT(*) FROM ledger_log", &[])
                .expect("count")
                .get(0)
        }
    }
}

#[test]
fn what_was_acknowledged_is_visible_at_once() {
    for db in TestDatabase::both() {
        let engine = Engine::start(&db.database, coffer_app::system_clock()).expect("start");
        let reader = db.database.open_reader(2).expect("reader");
        open(&engine, bank("bank"));
        open(&engine, wallet("alice"));
        open(&engine, wallet("bob"));
        // Opened a moment ago: readable before any projection.
        assert!(reader.account(&id("alice")).expect("read").is_some());
        one(&engine, single(post("fund", "bank", "alice", 1_000_000))).expect("fund");
        for i in 0..300 {
            let transfer_id = format!("p{i}");
            one(&engine, single(post(&transfer_id, "alice", "bob", 100))).expect("pay");
            let bob = reader.account(&id("bob")).expect("read").expect("bob");
            assert_eq!(bob.balances.credits_posted, 100 * (i + 1), "{}", db.name());
            assert!(reader.transfer(&id(&transfer_id)).expect("read").is_some());
            let entries = reader
                .entries(
                    &id("bob"),
                    &EntryFilter {
                        limit: 500,
                        ..EntryFilter::default()
                    },
                )
                .expect("entries");
            assert_eq!(entries.len() as i64, (i + 1).min(500));
        }
        one(&engine, single(hold("h", "alice", "bob", 500, 60_000))).expect("hold");
        let held = reader.hold(&id("h")).expect("read").expect("hold");
        assert_eq!(held.state, HoldState::Pending);
        one(&engine, single(capture("c", "h", None))).expect("capture");
        let captured = reader.hold(&id("h")).expect("read").expect("hold");
        assert_eq!(captured.state, HoldState::Captured);
        let report = verify(reader.as_ref(), &mut |_| {}).expect("verify");
        assert!(report.is_clean(), "{:?}", report.violations);
        assert_eq!(report.transfers, 303);
    }
}

#[test]
fn recovering_beside_a_running_engine_applies_each_record_once() {
    for db in TestDatabase::both() {
        let engine =
            Arc::new(Engine::start(&db.database, coffer_app::system_clock()).expect("start"));
        open(&engine, bank("bank"));
        for c in 0..8 {
            open(&engine, wallet(&format!("w{c}")));
        }
        let stop = Arc::new(AtomicBool::new(false));
        // Another process's `coffer verify` projects the log too.
        let recoverer = {
            let (database, stop) = (db.database.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut runs = 0;
                while !stop.load(Ordering::Relaxed) {
                    database.recover().expect("recover");
                    runs += 1;
                }
                runs
            })
        };
        let clients: Vec<_> = (0..8)
            .map(|c| {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    for i in 0..150 {
                        one(
                            &engine,
                            single(post(&format!("c{c}-{i}"), "bank", &format!("w{c}"), 7)),
                        )
                        .expect("transfer");
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("client");
        }
        stop.store(true, Ordering::Relaxed);
        assert!(recoverer.join().expect("recoverer") > 0);
        db.database
            .wait_projected(Duration::from_secs(30))
            .expect("projected");
        let reader = db.database.open_reader(1).expect("reader");
        let report = verify(reader.as_ref(), &mut |_| {}).expect("verify");
        assert!(report.is_clean(), "{}: {:?}", db.name(), report.violations);
        assert_eq!(report.transfers, 8 * 150, "{}", db.name());
        for c in 0..8 {
            let wallet = reader
                .account(&id(&format!("w{c}")))
                .expect("read")
                .expect("wallet");
            assert_eq!(wallet.balances.credits_posted, 150 * 7);
        }
    }
}

#[test]
fn projected_records_are_pruned_from_the_log() {
    for db in TestDatabase::both() {
        let engine = Engine::start(&db.database, coffer_app::system_clock()).expect("start");
        open(&engine, bank("bank"));
        open(&engine, wallet("alice"));
        for i in 0..1_500 {
            one(&engine, single(post(&format!("t{i}"), "bank", "alice", 1))).expect("post");
            if i % 100 == 0 {
                db.database
                    .wait_projected(Duration::from_secs(30))
                    .expect("projected");
            }
        }
        let rows = log_rows(&db.database);
        // Pruning runs every 256 projected records, inside an append.
        assert!(rows < 600, "{}: {rows} records left in the log", db.name());
        drop(engine);
        let reader = db.database.open_reader(1).expect("reader");
        let report = verify(reader.as_ref(), &mut |_| {}).expect("verify");
        assert!(report.is_clean(), "{:?}", report.violations);
        assert_eq!(report.transfers, 1_500);
    }
}

/// A unique index refusing a racing writer is told apart from a fault, on
/// both backends: callers turn it into a 409 the client can retry.
#[test]
fn a_unique_violation_is_recognised_on_both_backends() {
    use coffer_store::sql::SqlStore;
    use coffer_store::{sql_params, StoreError};
    for db in TestDatabase::both() {
        let store = SqlStore::open(&db.database, 1).expect("open");
        store
            .transaction(|sql| -> Result<(), StoreError> {
                sql.execute(
                    "CREATE TABLE race (contact TEXT PRIMARY KEY, note TEXT UNIQUE)",
                    sql_params![],
                )?;
                sql.execute(
                    "INSERT INTO race (contact, note) VALUES ($1, $2)",
                    sql_params!["+86", "a"],
                )?;
                Ok(())
            })
            .expect("setup");
        for (contact, note) in [("+86", "b"), ("+85", "a")] {
            let error = store
                .transaction(|sql| {
                    sql.execute(
                        "INSERT INTO race (contact, note) VALUES ($1, $2)",
                        sql_params![contact, note],
                    )
                })
                .expect_err("duplicate");
            assert!(error.is_unique_violation(), "{}: {error}", db.name());
        }
        let other = store
            .transaction(|sql| sql.execute("INSERT INTO nowhere VALUES (1)", sql_params![]))
            .expect_err("no table");
        assert!(!other.is_unique_violation());
    }
}

/// PostgreSQL stores log records out of line without compressing them:
/// compressing every record over 2 KB on the commit path held batched
/// commits to ~30,000 transfers/s (over 190,000 without).
#[test]
fn postgres_stores_log_records_uncompressed() {
    let db = TestDatabase::postgres();
    drop(Engine::start(&db.database, coffer_app::system_clock()).expect("start"));
    let Database::Postgres(url) = &db.database else {
        unreachable!("a PostgreSQL test database");
    };
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let storage: i8 = client
        .query_one(
            "SELECT attstorage FROM pg_attribute \
             WHERE attrelid = 'ledger_log'::regclass AND attname = 'record'",
            &[],
        )
        .expect("attstorage")
        .get(0);
    assert_eq!(storage as u8, b'e', "EXTERNAL: out of line, uncompressed");
}
