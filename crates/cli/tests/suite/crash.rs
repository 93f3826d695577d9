//! Crash safety: run the engine under concurrent load in a child process,
//! SIGKILL it at random moments several times, restart, and check that
//! `verify` passes and that every acknowledged transfer is present exactly once.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coffer_testkit::TestDatabase;
use rand::Rng;

const KILLS: usize = 5;

fn coffer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
}

fn url(db: &TestDatabase) -> String {
    match &db.database {
        coffer_store::Database::Sqlite(path) => format!("sqlite://{}", path.display()),
        coffer_store::Database::Postgres(url) => url.clone(),
    }
}

/// The acknowledged ids: complete lines (`id;`) only, since a kill can cut
/// the load's last write short.
fn acknowledged(path: &std::path::Path) -> Vec<String> {
    match std::fs::File::open(path) {
        Ok(file) => std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_suffix(';').map(str::to_string))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn crash_repeatedly(db: TestDatabase) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("acks.log");
    let mut rng = rand::rng();
    for round in 0..KILLS {
        let before = acknowledged(&log).len();
        let mut child = coffer()
            .args(["bench", "crash-load", "--db", &url(&db), "--ack-log"])
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn coffer");
        // Wait until it is under load, then kill it at a random moment.
        let started = Instant::now();
        while acknowledged(&log).len() <= before {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "round {round}: no acknowledgements"
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("round {round}: load exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(50..600)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    let acks = acknowledged(&log);
    assert!(
        acks.len() > 100,
        "too little load to mean anything: {}",
        acks.len()
    );

    let status = coffer()
        .args(["verify", "--db", &url(&db)])
        .status()
        .expect("verify");
    assert!(
        status.success(),
        "{}: verify failed after {KILLS} kills",
        db.name()
    );

    // Every acknowledged id is in storage, and no id appears twice.
    let reader = db.database.open_reader(1).expect("reader");
    let mut seen = std::collections::HashSet::new();
    reader
        .scan_transfers(&mut |t| {
            assert!(
                seen.insert(t.id.to_string()),
                "transfer {} stored twice",
                t.id
            );
        })
        .expect("scan");
    for id in &acks {
        assert!(
            seen.contains(id),
            "{}: acknowledged transfer {id} lost in a crash",
            db.name()
        );
    }
    // And a retry of each is answered from storage, never applied again.
    let status = coffer()
        .args([
            "bench",
            "crash-load",
            "--replay",
            "--db",
            &url(&db),
            "--ack-log",
        ])
        .arg(&log)
        .status()
        .expect("replay");
    assert!(
        status.success(),
        "{}: replay after crashes failed",
        db.name()
    );
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged_on_sqlite() {
    crash_repeatedly(TestDatabase::sqlite());
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged_on_postgres() {
    crash_repeatedly(TestDatabase::postgres());
}
