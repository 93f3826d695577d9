//! The audit log on both backends: appends chain, every kind of tampering is
//! caught at the right seq, and concurrent appends stay one gap-free chain.

use std::collections::BTreeSet;
use std::sync::Arc;

use coffer_audit::{
    append, entries, head_seq, verify, AuditReport, Entry, Filter, Outcome, Problem,
};
use coffer_store::sql::SqlStore;
use coffer_testkit::TestDatabase;

fn entry(n: i64) -> (String, String, String) {
    (
        format!("customer:cus_{}", n % 2),
        format!("event_{n}"),
        format!("sub_{n}"),
    )
}

/// Appends records 1..=count, each in its own transaction.
fn fill(sql: &SqlStore, count: i64) {
    for n in 1..=count {
        let (actor, action, subject) = entry(n);
        let seq = sql
            .transaction(|db| {
                append(
                    db,
                    &Entry {
                        at: 1_000 + n,
                        actor: &actor,
                        action: &action,
                        subject: Some(&subject),
                        ip: "203.0.113.7",
                        outcome: if n == 2 {
                            Outcome::Refused
                        } else {
                            Outcome::Ok
                        },
                        detail: "detail",
                    },
                )
            })
            .expect("append");
        assert_eq!(seq, n);
    }
}

fn check(sql: &SqlStore) -> AuditReport {
    let mut calls = 0;
    let report = sql
        .run(|db| Ok(verify(db, &mut |_| calls += 1)))
        .expect("run")
        .expect("verify");
    assert!(calls > 0, "progress is reported");
    report
}

fn open(db: &TestDatabase) -> SqlStore {
    SqlStore::open(&db.database, 8).expect("sql store")
}

/// What someone with DDL rights does first: drop the append-only triggers.
fn drop_guards(sql: &SqlStore) {
    let statements: &[&str] = match sql.backend_name() {
        "sqlite" => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
        ],
        _ => &[
            "DROP TRIGGER audit_log_no_change ON audit_log",
            "DROP TRIGGER audit_log_no_truncate ON audit_log",
        ],
    };
    for statement in statements {
        sql.run(|db| db.execute(statement, &[]))
            .expect("drop trigger");
    }
}

fn tamper(sql: &SqlStore, statements: &[&str]) {
    sql.transaction(|db| {
        for statement in statements {
            db.execute(statement, &[])?;
        }
        Ok::<_, coffer_store::StoreError>(())
    })
    .expect("tamper");
}

#[test]
fn appends_chain_and_verify() {
    for db in TestDatabase::both() {
        let sql = open(&db);
        let empty = check(&sql);
        assert!(empty.is_intact(), "{}: empty log {empty:?}", db.name());
        assert_eq!((empty.entries, empty.head_seq), (0, 0));
        fill(&sql, 5);
        let report = check(&sql);
        assert!(report.is_intact(), "{}: {report:?}", db.name());
        assert_eq!((report.entries, report.head_seq), (5, 5));
        assert_eq!(
            sql.run(|db| Ok(head_seq(db))).expect("run").expect("head"),
            5
        );

        // The viewer: newest first, by actor or subject, paged by seq.
        let read = |filter: Filter<'_>| {
            sql.run(|db| Ok(entries(db, &filter)))
                .expect("run")
                .expect("entries")
        };
        let all = read(Filter::default());
        let seqs: Vec<i64> = all.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [5, 4, 3, 2, 1]);
        assert_eq!(all[3].outcome, "refused");
        assert_eq!(all[0].subject.as_deref(), Some("sub_5"));
        let by_actor = read(Filter {
            actor: Some("customer:cus_1"),
            ..Filter::default()
        });
        assert_eq!(
            by_actor.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [5, 3, 1]
        );
        let by_subject = read(Filter {
            subject: Some("sub_2"),
            ..Filter::default()
        });
        assert_eq!(by_subject.len(), 1);
        assert_eq!(by_subject[0].action, "event_2");
        let page = read(Filter {
            actor: Some("customer:cus_1"),
            before_seq: Some(5),
            limit: 1,
            subject: None,
        });
        assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [3]);
    }
}

#[test]
fn the_database_refuses_changes_and_deletions() {
    for db in TestDatabase::both() {
        let sql = open(&db);
        fill(&sql, 2);
        for statement in [
            "UPDATE audit_log SET detail = 'forged' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 2",
        ] {
            let refused = sql.run(|db| db.execute(statement, &[]));
            assert!(refused.is_err(), "{}: {statement} went through", db.name());
        }
        assert!(check(&sql).is_intact());
    }
}

#[test]
fn tampering_is_detected_at_the_right_seq() {
    let cases: &[(&str, &[&str], i64, Problem)] = &[
        ("changed at", &["UPDATE audit_log SET at = at + 1 WHERE seq = 3"], 3, Problem::HashMismatch),
        ("changed actor", &["UPDATE audit_log SET actor = 'staff:mallory' WHERE seq = 3"], 3, Problem::HashMismatch),
        ("changed action", &["UPDATE audit_log SET action = 'nothing' WHERE seq = 3"], 3, Problem::HashMismatch),
        ("cleared subject", &["UPDATE audit_log SET subject = NULL WHERE seq = 3"], 3, Problem::HashMismatch),
        ("changed ip", &["UPDATE audit_log SET ip = '10.0.0.1' WHERE seq = 3"], 3, Problem::HashMismatch),
        ("changed outcome", &["UPDATE audit_log SET outcome = 'ok' WHERE seq = 2"], 2, Problem::HashMismatch),
        ("changed detail", &["UPDATE audit_log SET detail = 'forged' WHERE seq = 4"], 4, Problem::HashMismatch),
        ("changed hash", &["UPDATE audit_log SET hash = previous_hash WHERE seq = 3"], 3, Problem::HashMismatch),
        ("changed previous hash", &["UPDATE audit_log SET previous_hash = hash WHERE seq = 3"], 3, Problem::PreviousHashMismatch),
        ("deleted record", &["DELETE FROM audit_log WHERE seq = 3"], 3, Problem::Missing),
        ("deleted first record", &["DELETE FROM audit_log WHERE seq = 1"], 1, Problem::Missing),
        ("deleted last record", &["DELETE FROM audit_log WHERE seq = 5"], 5, Problem::Missing),
        (
            "swapped records",
            &[
                "UPDATE audit_log SET seq = -2 WHERE seq = 2",
                "UPDATE audit_log SET seq = 2 WHERE seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE seq = -2",
            ],
            2,
            Problem::PreviousHashMismatch,
        ),
        (
            "renumbered to hide a deletion",
            &[
                "DELETE FROM audit_log WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE seq = 5",
                "UPDATE audit_head SET seq = 4",
            ],
            3,
            Problem::PreviousHashMismatch,
        ),
        (
            "inserted beyond the head",
            &["INSERT INTO audit_log (seq, at, actor, action, subject, ip, outcome, detail, previous_hash, hash) \
               SELECT 6, at, actor, action, subject, ip, outcome, detail, hash, hash FROM audit_log WHERE seq = 5"],
            6,
            Problem::BeyondHead,
        ),
        ("head moved back", &["UPDATE audit_head SET seq = 4"], 4, Problem::HeadMismatch),
        ("head removed", &["DELETE FROM audit_head"], 6, Problem::HeadMissing),
    ];
    // Each case on its own database per backend.
    for (name, statements, seq, problem) in cases {
        for db in TestDatabase::both() {
            let sql = open(&db);
            fill(&sql, 5);
            drop_guards(&sql);
            tamper(&sql, statements);
            let report = check(&sql);
            let broken = report
                .broken
                .unwrap_or_else(|| panic!("{}: {name} not detected", db.name()));
            assert_eq!(
                (broken.seq, &broken.problem),
                (*seq, problem),
                "{}: {name}: {broken}",
                db.name()
            );
        }
    }
}

#[test]
fn concurrent_appends_make_one_gap_free_chain() {
    const THREADS: i64 = 8;
    const APPENDS_PER_THREAD: i64 = 25;
    for db in TestDatabase::both() {
        let sql = Arc::new(open(&db));
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let sql = sql.clone();
                std::thread::spawn(move || {
                    let actor = format!("staff:clerk_{thread}");
                    (0..APPENDS_PER_THREAD)
                        .map(|n| {
                            sql.transaction(|db| {
                                let seq = append(
                                    db,
                                    &Entry {
                                        at: n,
                                        actor: &actor,
                                        action: "noted",
                                        subject: None,
                                        ip: "198.51.100.1",
                                        outcome: Outcome::Ok,
                                        detail: "",
                                    },
                                )?;
                                // Hold the transaction open a little: without
                                // the head's lock, another append would now
                                // read the same head and reuse this seq.
                                std::thread::sleep(std::time::Duration::from_millis(1));
                                Ok::<_, coffer_audit::AuditError>(seq)
                            })
                            .expect("append")
                        })
                        .collect::<Vec<i64>>()
                })
            })
            .collect();
        let seqs: BTreeSet<i64> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect();
        let total = THREADS * APPENDS_PER_THREAD;
        assert_eq!(seqs, (1..=total).collect(), "{}", db.name());
        let report = check(&sql);
        assert!(report.is_intact(), "{}: {report:?}", db.name());
        assert_eq!(report.entries, total as u64);
        assert_eq!(report.head_seq, total);
    }
}
