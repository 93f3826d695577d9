//! `coffer verify` checks the audit log's hash chain too: intact, it passes;
//! after one record is changed behind the application's back, it exits 1
//! naming that record's seq.

use std::process::Command;

use coffer_audit::{append, Entry, Outcome};
use coffer_store::sql::SqlStore;
use coffer_store::Database;
use coffer_testkit::TestDatabase;

fn verify(url: &str) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["verify", "--db", url])
        .output()
        .expect("run coffer verify");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.code(), format!("{stdout}{stderr}"))
}

#[test]
fn verify_names_the_tampered_audit_record_and_exits_1() {
    let db = TestDatabase::sqlite();
    let Database::Sqlite(path) = &db.database else {
        unreachable!()
    };
    let url = format!("sqlite://{}", path.display());
    let sql = SqlStore::open(&db.database, 1).expect("open");
    for n in 1..=4 {
        sql.transaction(|db| {
            append(
                db,
                &Entry {
                    at: n,
                    actor: "staff:auditor",
                    action: "noted",
                    subject: None,
                    ip: "192.0.2.1",
                    outcome: Outcome::Ok,
                    detail: "",
                },
            )
        })
        .expect("append");
    }
    let (code, output) = verify(&url);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("audit log: 4 records"), "{output}");
    assert!(
        output.contains("OK: the audit log's hash chain is intact"),
        "{output}"
    );

    // Someone with write access to the file drops the guard and edits a record.
    sql.run(|db| {
        db.execute("DROP TRIGGER audit_log_no_update", &[])?;
        db.execute(
            "UPDATE audit_log SET outcome = 'refused' WHERE seq = 3",
            &[],
        )
    })
    .expect("tamper");
    drop(sql);
    let (code, output) = verify(&url);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("FAILED: the audit log's hash chain is broken at seq 3"),
        "{output}"
    );
    // The ledger itself is fine, and says so.
    assert!(output.contains("OK: the ledger balances"), "{output}");
}
