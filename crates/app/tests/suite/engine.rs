//! The engine end to end on both real backends: commits, idempotent replays
//! across restarts, holds and expiry, linked batches, hot accounts, and
//! `verify` catching a tampered row.

use std::sync::Arc;

use coffer_app::{verify, Engine, ManualClock};
use coffer_core::{Clock, Timestamp};
use coffer_ledger::{Command, HoldState, Outcome, Rejection, Transfer};
use coffer_testkit::*;

fn transfers(outcome: Outcome) -> Vec<Result<(Transfer, bool), Rejection>> {
    match outcome {
        Outcome::Transfers(results) => results,
        other => panic!("expected transfers, got {other:?}"),
    }
}

fn one(engine: &Engine, command: Command) -> Result<(Transfer, bool), Rejection> {
    transfers(engine.execute_blocking(command).expect("engine")).remove(0)
}

fn open(engine: &Engine, command: Command) {
    match engine.execute_blocking(command).expect("engine") {
        Outcome::Account(Ok(_)) => {}
        other => panic!("open failed: {other:?}"),
    }
}

fn setup(engine: &Engine) {
    open(engine, bank("bank"));
    open(engine, wallet("alice"));
    open(engine, wallet("bob"));
    one(engine, single(post("fund-alice", "bank", "alice", 10_000))).expect("fund");
}

fn clean(database: &coffer_store::Database) -> coffer_ledger::AuditReport {
    let reader = database.open_reader(2).expect("reader");
    let report = verify(reader.as_ref(), &mut |_| {}).expect("verify");
    assert!(report.is_clean(), "verify found: {:?}", report.violations);
    report
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_nanos(
        1_800_000_000_000_000_000,
    )))
}

#[test]
fn transfers_commit_and_replay_across_restarts() {
    for db in TestDatabase::both() {
        let clock = clock();
        {
            let engine = Engine::start(&db.database, clock.clone()).expect("start");
            setup(&engine);
            let (first, created) =
                one(&engine, single(post("t1", "alice", "bob", 2_500))).expect("t1");
            assert!(created);
            assert_eq!(first.debit_after.debits_posted, 2_500);
            // Same id, same fields, same engine: the original.
            let (again, created) =
                one(&engine, single(post("t1", "alice", "bob", 2_500))).expect("replay");
            assert!(!created);
            assert_eq!(again, first);
        }
        // A new engine knows nothing in memory: the replay must come from storage.
        let engine = Engine::start(&db.database, clock.clone()).expect("restart");
        let (again, created) =
            one(&engine, single(post("t1", "alice", "bob", 2_500))).expect("replay after restart");
        assert!(
            !created,
            "{}: replay after restart wrote a second transfer",
            db.name()
        );
        assert_eq!(again.amount.minor_units(), 2_500);
        assert_eq!(
            one(&engine, single(post("t1", "alice", "bob", 2_501))),
            Err(Rejection::ExistsWithDifferentFields)
        );
        assert_eq!(
            one(&engine, single(post("t2", "alice", "bob", 7_501))),
            Err(Rejection::InsufficientFunds)
        );
        // A replay beside new work in one request: both answered, one written.
        let results = transfers(
            engine
                .execute_blocking(Command::Transfers {
                    transfers: vec![
                        post("t1", "alice", "bob", 2_500),
                        post("t3", "alice", "bob", 500),
                    ],
                    linked: false,
                })
                .expect("engine"),
        );
        assert!(matches!(results[0], Ok((_, false))));
        assert!(matches!(results[1], Ok((_, true))));
        engine.shutdown();
        let report = clean(&db.database);
        assert_eq!(report.transfers, 3, "{}", db.name());
    }
}

fn bulk(engine: &Engine, ids: &[String]) -> Vec<Result<(Transfer, bool), Rejection>> {
    transfers(
        engine
            .execute_blocking(Command::Transfers {
                transfers: ids.iter().map(|id| post(id, "alice", "bob", 1)).collect(),
                linked: false,
            })
            .expect("engine"),
    )
}

/// The writer proves most ids new with a filter of every committed id
/// (rebuilt from the tables at open): no committed id may ever pass as new,
/// whether it is still unprojected or only in the tables after a restart,
/// among many new ids in the same batch.
#[test]
fn every_committed_id_in_a_large_batch_is_recognised() {
    for db in TestDatabase::both() {
        let clock = clock();
        let old: Vec<String> = (0..1_500).map(|i| format!("bulk-{i}")).collect();
        let mut mixed = old.clone();
        mixed.extend((0..500).map(|i| format!("new-{i}")));
        {
            let engine = Engine::start(&db.database, clock.clone()).expect("start");
            setup(&engine);
            assert!(bulk(&engine, &old)
                .iter()
                .all(|r| matches!(r, Ok((_, true)))));
            // At once: the first batch is most likely still unprojected.
            let results = bulk(&engine, &old);
            assert!(
                results.iter().all(|r| matches!(r, Ok((_, false)))),
                "{}: a repeat in the same engine was written again",
                db.name()
            );
            engine.shutdown();
        }
        let engine = Engine::start(&db.database, clock.clone()).expect("restart");
        let results = bulk(&engine, &mixed);
        let replayed = results[..1_500]
            .iter()
            .filter(|r| matches!(r, Ok((_, false))))
            .count();
        let created = results[1_500..]
            .iter()
            .filter(|r| matches!(r, Ok((_, true))))
            .count();
        assert_eq!((replayed, created), (1_500, 500), "{}", db.name());
        engine.shutdown();
        let report = clean(&db.database);
        assert_eq!(report.transfers, 1 + 1_500 + 500, "{}", db.name());
    }
}

#[test]
fn holds_capture_release_and_expire() {
    for db in TestDatabase::both() {
        let clock = clock();
        let engine = Engine::start(&db.database, clock.clone()).expect("start");
        setup(&engine);
        one(&engine, single(hold("h1", "alice", "bob", 4_000, 60_000))).expect("h1");
        one(&engine, single(hold("h2", "alice", "bob", 3_000, 60_000))).expect("h2");
        one(&engine, single(hold("h3", "alice", "bob", 2_000, 1_000))).expect("h3");
        // 9,000 held of 10,000: only 1,000 left to spend.
        assert_eq!(
            one(&engine, single(post("p1", "alice", "bob", 1_001))),
            Err(Rejection::InsufficientFunds)
        );
        let (captured, _) =
            one(&engine, single(capture("c1", "h1", Some(2_500)))).expect("partial capture");
        assert_eq!(captured.amount.minor_units(), 2_500);
        assert_eq!(captured.debit_after.debits_posted, 2_500);
        assert_eq!(captured.debit_after.debits_pending, 5_000);
        assert_eq!(
            one(&engine, single(capture("c1b", "h1", None))),
            Err(Rejection::HoldNotPending)
        );
        assert_eq!(
            one(&engine, single(capture("c2", "h2", Some(3_001)))),
            Err(Rejection::CaptureExceedsHold)
        );
        one(&engine, single(release("r2", "h2"))).expect("release");
        clock.advance_millis(1_001);
        engine.tick_blocking().expect("tick");
        assert_eq!(
            one(&engine, single(capture("c3", "h3", None))),
            Err(Rejection::HoldExpired)
        );
        engine.shutdown();

        let reader = db.database.open_reader(1).expect("reader");
        let h3 = reader.hold(&id("h3")).expect("read").expect("h3 stored");
        assert_eq!(h3.state, HoldState::Expired);
        let alice = reader.account(&id("alice")).expect("read").expect("alice");
        assert_eq!(alice.balances.debits_pending, 0);
        assert_eq!(alice.available(), 10_000 - 2_500);

        // After a restart the resolved holds come from storage.
        let engine = Engine::start(&db.database, clock.clone()).expect("restart");
        assert_eq!(
            one(&engine, single(release("r1", "h1"))),
            Err(Rejection::HoldNotPending)
        );
        assert_eq!(
            one(&engine, single(capture("c3", "h3", None))),
            Err(Rejection::HoldExpired)
        );
        assert_eq!(
            one(&engine, single(capture("c9", "nope", None))),
            Err(Rejection::HoldNotFound)
        );
        let (replayed, created) =
            one(&engine, single(capture("c1", "h1", Some(2_500)))).expect("replayed capture");
        assert!(!created);
        assert_eq!(replayed, captured);
        // A hold placed before a restart still expires after it.
        one(&engine, single(hold("h4", "alice", "bob", 100, 500))).expect("h4");
        engine.shutdown();
        let engine = Engine::start(&db.database, clock.clone()).expect("restart");
        clock.advance_millis(600);
        engine.tick_blocking().expect("tick");
        engine.shutdown();
        let h4 = reader.hold(&id("h4")).expect("read").expect("h4");
        assert_eq!(h4.state, HoldState::Expired, "{}", db.name());
        clean(&db.database);
    }
}

#[test]
fn linked_batches_are_all_or_nothing() {
    for db in TestDatabase::both() {
        let engine = Engine::start(&db.database, clock()).expect("start");
        setup(&engine);
        open(&engine, bank("fees"));
        let failing = linked(vec![
            post("l1", "alice", "bob", 6_000),
            post("l2", "alice", "fees", 5_000),
        ]);
        let results = transfers(engine.execute_blocking(failing).expect("engine"));
        assert_eq!(
            results,
            vec![
                Err(Rejection::LinkedTransferFailed),
                Err(Rejection::InsufficientFunds)
            ]
        );
        let reader = db.database.open_reader(1).expect("reader");
        assert!(
            reader.transfer(&id("l1")).expect("read").is_none(),
            "a failed linked member was written"
        );
        let passing = linked(vec![
            post("l1", "alice", "bob", 6_000),
            post("l2", "alice", "fees", 40),
        ]);
        let results = transfers(engine.execute_blocking(passing.clone()).expect("engine"));
        assert!(
            results.iter().all(|r| matches!(r, Ok((_, true)))),
            "{results:?}"
        );
        // A full replay is answered from what was written.
        let results = transfers(engine.execute_blocking(passing).expect("engine"));
        assert!(
            results.iter().all(|r| matches!(r, Ok((_, false)))),
            "{results:?}"
        );
        let partial = linked(vec![
            post("l1", "alice", "bob", 6_000),
            post("l3", "alice", "fees", 40),
        ]);
        let results = transfers(engine.execute_blocking(partial).expect("engine"));
        assert_eq!(
            results,
            vec![
                Err(Rejection::LinkedBatchPartiallyExists),
                Err(Rejection::LinkedTransferFailed)
            ]
        );
        engine.shutdown();
        clean(&db.database);
    }
}

#[test]
fn concurrent_clients_on_one_hot_account_are_exact() {
    for db in TestDatabase::both() {
        let engine = Arc::new(
            Engine::start(&db.database, Arc::new(coffer_core::SystemClock)).expect("start"),
        );
        open(&engine, bank("bank"));
        open(&engine, wallet("merchant"));
        let clients = 16;
        let per_client = 50;
        for c in 0..clients {
            open(&engine, wallet(&format!("payer-{c}")));
            one(
                &engine,
                single(post(
                    &format!("fund-{c}"),
                    "bank",
                    &format!("payer-{c}"),
                    1_000,
                )),
            )
            .expect("fund");
        }
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    let mut accepted = 0;
                    // 50 payments of 30 from 1,000: the 34th and later must be refused.
                    for i in 0..per_client {
                        match one(
                            &engine,
                            single(post(
                                &format!("pay-{c}-{i}"),
                                &format!("payer-{c}"),
                                "merchant",
                                30,
                            )),
                        ) {
                            Ok(_) => accepted += 1,
                            Err(Rejection::InsufficientFunds) => {}
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                    }
                    accepted
                })
            })
            .collect();
        let accepted: i64 = threads.into_iter().map(|t| t.join().expect("client")).sum();
        assert_eq!(accepted, clients * 33);
        engine.shutdown();
        let reader = db.database.open_reader(1).expect("reader");
        let merchant = reader
            .account(&id("merchant"))
            .expect("read")
            .expect("merchant");
        assert_eq!(merchant.posted(), accepted * 30, "{}", db.name());
        clean(&db.database);
        assert!(
            engine
                .stats()
                .batches
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        );
    }
}

#[test]
fn verify_names_a_tampered_transfer_and_a_broken_chain() {
    for db in TestDatabase::both() {
        let engine = Engine::start(&db.database, clock()).expect("start");
        setup(&engine);
        one(&engine, single(post("t1", "alice", "bob", 100))).expect("t1");
        engine.shutdown();
        clean(&db.database);
        execute_sql(
            &db.database,
            "UPDATE transfers SET amount = 200 WHERE id = 't1'",
        );
        let reader = db.database.open_reader(1).expect("reader");
        let report = verify(reader.as_ref(), &mut |_| {}).expect("verify");
        assert!(
            !report.is_clean(),
            "{}: tampered amount not detected",
            db.name()
        );
        let named: Vec<String> = report.violations.iter().map(ToString::to_string).collect();
        assert!(named.iter().any(|v| v.contains("t1")), "{named:?}");
        // Undo the amount but change a stored balance instead.
        execute_sql(
            &db.database,
            "UPDATE transfers SET amount = 100 WHERE id = 't1'",
        );
        clean(&db.database);
        execute_sql(
            &db.database,
            "UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = 'bob'",
        );
        let report = verify(reader.as_ref(), &mut |_| {}).expect("verify");
        let named: Vec<String> = report.violations.iter().map(ToString::to_string).collect();
        assert!(named.iter().any(|v| v.contains("bob")), "{named:?}");
    }
}

#[test]
fn manual_clock_moves() {
    let clock = clock();
    let before = clock.now();
    clock.advance_millis(5);
    assert_eq!(clock.now().as_nanos() - before.as_nanos(), 5_000_000);
}

/// A response recorded under an idempotency key is stored with the batch it
/// answers: present after a restart, and a refusal is remembered as refused
/// even once the account could pay.
#[test]
fn recorded_responses_are_durable_with_their_effect() {
    use coffer_app::{Recorded, Recording, Render};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let render: Render = Arc::new(|outcome: &Outcome| match outcome {
        Outcome::Transfers(results) => match &results[0] {
            Ok((transfer, _)) => (201, format!("paid {}", transfer.id)),
            Err(rejection) => (409, format!("refused {}", rejection.code())),
        },
        Outcome::Account(_) => (500, "unexpected".into()),
    });
    let recording = |key: &str, hash: &str| Recording {
        principal: "partner-1".into(),
        key: key.into(),
        request_hash: hash.into(),
        render: render.clone(),
    };
    for db in TestDatabase::both() {
        let clock = clock();
        {
            let engine = Engine::start(&db.database, clock.clone()).expect("start");
            setup(&engine);
            let paid = runtime
                .block_on(engine.execute_recorded(
                    single(post("r1", "alice", "bob", 4_000)),
                    recording("k1", "h1"),
                ))
                .expect("engine");
            assert!(
                matches!(&paid, Recorded::Executed { status: 201, body, .. } if body == "paid r1"),
                "{paid:?}"
            );
            // The same key again: the stored response, not a second payment.
            let again = runtime
                .block_on(engine.execute_recorded(
                    single(post("r1", "alice", "bob", 4_000)),
                    recording("k1", "h1"),
                ))
                .expect("engine");
            assert!(
                matches!(&again, Recorded::Replayed { status: 201, body } if body == "paid r1"),
                "{again:?}"
            );
            let reused = runtime
                .block_on(engine.execute_recorded(
                    single(post("r9", "alice", "bob", 1)),
                    recording("k1", "other"),
                ))
                .expect("engine");
            assert!(matches!(reused, Recorded::KeyReused), "{reused:?}");
            let refused = runtime
                .block_on(engine.execute_recorded(
                    single(post("r2", "alice", "bob", 9_000)),
                    recording("k2", "h2"),
                ))
                .expect("engine");
            assert!(
                matches!(&refused, Recorded::Executed { status: 409, body, .. } if body == "refused insufficient_funds"),
                "{refused:?}"
            );
            // Now alice could pay; the key still answers with the refusal.
            one(&engine, single(post("top-up", "bank", "alice", 50_000))).expect("top up");
        }
        let service = coffer_store::service::open(&db.database, 1).expect("service");
        use coffer_store::service::Begin;
        assert_eq!(
            service
                .lookup_idempotent("partner-1", "k1", "h1")
                .expect("k1"),
            Some(Begin::Replay {
                status: 201,
                body: "paid r1".into()
            })
        );
        assert_eq!(
            service
                .lookup_idempotent("partner-1", "k2", "h2")
                .expect("k2"),
            Some(Begin::Replay {
                status: 409,
                body: "refused insufficient_funds".into()
            })
        );
        assert_eq!(
            service
                .lookup_idempotent("partner-1", "k1", "other")
                .expect("k1"),
            Some(Begin::Mismatch)
        );
        assert_eq!(
            service
                .lookup_idempotent("partner-1", "k3", "h3")
                .expect("k3"),
            None
        );
        clean(&db.database);
    }
}
