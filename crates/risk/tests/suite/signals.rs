//! The signals `Risk::assess` reads from the database, on SQLite and
//! PostgreSQL: first time seen (payee, device, IP) per customer, the
//! customer's recent history newest first and largest earlier payment per
//! currency, the four blocklists, and that blocked attempts never count as
//! the customer's usual behaviour. All of it comes from one statement, so
//! each flag is checked on its own here.

use std::sync::Arc;

use coffer_core::{Clock, SystemClock};
use coffer_risk::{Assessment, Attempt, BlockList, Kind, Outcome, Past, Risk};
use coffer_store::sql::SqlStore;
use coffer_testkit::TestDatabase;
use coffer_vault::{LocalMasterKey, Vault};

struct Probe {
    risk: Risk,
    sql: Arc<SqlStore>,
}

impl Probe {
    fn open(db: &TestDatabase) -> Probe {
        let sql = Arc::new(SqlStore::open(&db.database, 2).expect("open"));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let vault = Arc::new(
            Vault::open(
                Arc::new(LocalMasterKey::from_bytes([5; 32])),
                sql.clone(),
                clock.now().as_nanos(),
            )
            .expect("vault"),
        );
        let risk = Risk::new(sql.clone(), vault, clock);
        risk.seed_default().expect("seed rules");
        Probe { risk, sql }
    }

    /// Assesses and, like a committed payment, records the evaluation.
    fn pay(&self, attempt: &Attempt<'_>) -> Assessment {
        self.sql
            .transaction(|db| -> Result<Assessment, coffer_risk::RiskError> {
                let assessment = self.risk.assess(db, attempt)?;
                self.risk.record(db, &assessment)?;
                Ok(assessment)
            })
            .expect("assess and record")
    }
}

fn p2p<'a>(
    customer: &'a str,
    payee: &'a str,
    amount: i64,
    device: &'a str,
    ip: &'a str,
) -> Attempt<'a> {
    Attempt {
        customer_id: customer,
        kind: Some(Kind::P2p),
        amount: Some(amount),
        currency: Some("CNY"),
        counterparty: Some(payee),
        device: Some(device),
        ip: Some(ip),
        ..Attempt::default()
    }
}

fn amounts(history: &[Past]) -> Vec<i64> {
    history.iter().map(|p| p.amount).collect()
}

fn signals_on(db: TestDatabase) {
    let backend = db.name();
    let probe = Probe::open(&db);

    let first = probe.pay(&p2p("cus_a", "cus_x", 10_000, "dev-1", "198.51.100.1"));
    let s = &first.signals;
    assert!(
        s.new_payee && s.new_device && s.new_ip,
        "{backend}: all new the first time: {s:?}"
    );
    assert!(
        s.history.is_empty() && s.largest_before.is_none(),
        "{backend}: {s:?}"
    );
    assert!(s.blocklisted.is_empty(), "{backend}");

    let second = probe.pay(&p2p("cus_a", "cus_x", 30_000, "dev-1", "198.51.100.1"));
    let s = &second.signals;
    assert!(
        !s.new_payee && !s.new_device && !s.new_ip,
        "{backend}: seen before: {s:?}"
    );
    assert_eq!(amounts(&s.history), vec![10_000], "{backend}");
    assert_eq!(s.largest_before, Some(10_000), "{backend}");

    // Each flag on its own: a new payee and device from a known IP.
    let third = probe.pay(&p2p("cus_a", "cus_y", 5_000, "dev-2", "198.51.100.1"));
    let s = &third.signals;
    assert!(s.new_payee && s.new_device && !s.new_ip, "{backend}: {s:?}");
    assert_eq!(
        amounts(&s.history),
        vec![30_000, 10_000],
        "{backend}: newest first"
    );
    assert_eq!(s.largest_before, Some(30_000), "{backend}");
    // A known payee and device from a new IP.
    let fourth = probe.pay(&p2p("cus_a", "cus_y", 5_000, "dev-2", "203.0.113.9"));
    let s = &fourth.signals;
    assert!(
        !s.new_payee && !s.new_device && s.new_ip,
        "{backend}: {s:?}"
    );
    assert_eq!(
        amounts(&s.history),
        vec![5_000, 30_000, 10_000],
        "{backend}"
    );

    // Another customer's activity is not this one's.
    let other = probe.pay(&p2p("cus_b", "cus_x", 1_000, "dev-1", "198.51.100.1"));
    let s = &other.signals;
    assert!(s.new_payee && s.new_device && s.new_ip, "{backend}: {s:?}");
    assert!(
        s.history.is_empty() && s.largest_before.is_none(),
        "{backend}"
    );

    // Another currency is another history.
    let usd = probe.pay(&Attempt {
        currency: Some("USD"),
        ..p2p("cus_a", "cus_x", 700, "dev-1", "198.51.100.1")
    });
    assert!(
        usd.signals.history.is_empty(),
        "{backend}: {:?}",
        usd.signals
    );
    assert_eq!(usd.signals.largest_before, None, "{backend}");

    // A sign-in has no amount: flags but no history.
    let sign_in = probe.pay(&Attempt {
        customer_id: "cus_a",
        kind: Some(Kind::SignIn),
        device: Some("dev-3"),
        ip: Some("198.51.100.1"),
        ..Attempt::default()
    });
    let s = &sign_in.signals;
    assert!(
        s.new_device && !s.new_ip && !s.new_payee,
        "{backend}: {s:?}"
    );
    assert!(s.history.is_empty(), "{backend}");

    // Every blocklist, each on its own.
    for (list, value) in [
        (BlockList::Payee, "cus_bad"),
        (BlockList::Device, "dev-bad"),
        (BlockList::Card, "card_bad"),
        (BlockList::Ip, "192.0.2.66"),
    ] {
        probe
            .risk
            .block("staff:test", list, value, "test")
            .expect("block");
        let mut attempt = p2p("cus_c", "cus_fine", 100, "dev-fine", "192.0.2.1");
        match list {
            BlockList::Payee => attempt.counterparty = Some(value),
            BlockList::Device => attempt.device = Some(value),
            BlockList::Card => attempt.card = Some(value),
            BlockList::Ip => attempt.ip = Some(value),
        }
        let assessment = probe.sql.run(|db| {
            probe
                .risk
                .assess(db, &attempt)
                .map_err(|e| coffer_store::StoreError::Corrupt(e.to_string()))
        });
        let signals = assessment.expect("assess").signals;
        assert_eq!(signals.blocklisted, vec![list], "{backend}: {list:?}");
    }

    // A blocked attempt is not usual behaviour: its payee stays new and
    // its amount is not history.
    let blocked = probe.pay(&p2p("cus_a", "cus_bad", 90_000, "dev-1", "198.51.100.1"));
    assert_eq!(
        blocked.outcome(),
        Outcome::BlockAndFreeze,
        "{backend}: {:?}",
        blocked.decision
    );
    let after = probe.pay(&Attempt {
        card: None,
        ..p2p("cus_a", "cus_bad", 100, "dev-1", "198.51.100.1")
    });
    assert!(
        after.signals.new_payee,
        "{backend}: a blocked payment does not make a payee known"
    );
    assert!(
        !after.signals.history.iter().any(|p| p.amount == 90_000),
        "{backend}"
    );
    assert_eq!(after.signals.largest_before, Some(30_000), "{backend}");
}

#[test]
fn signals_on_sqlite() {
    signals_on(TestDatabase::sqlite());
}

#[test]
fn signals_on_postgres() {
    signals_on(TestDatabase::postgres());
}
