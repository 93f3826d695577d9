//! Screening, the compliance queue and regulatory reports through the
//! crate's public API, on SQLite and PostgreSQL: a listed name at KYC is
//! queued and its confirmation freezes the customer; a listed payee cannot
//! be paid until a compliance officer clears the hit; the report job over
//! seeded payments finds exactly the expected reports, once; exports carry
//! every field; roles without the permission see nothing.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use coffer_app::Engine;
use coffer_compliance::watchlist::ListFormat;
use coffer_compliance::{
    Compliance, Decision, ExportFormat, HitState, LocalDate, ReportKind, ReportSettings,
    ReportState, Screener,
};
use coffer_core::{Amount, Clock, Code, Currency, CurrencyRegistry, Identifier, Secret, Timestamp};
use coffer_identity::{
    Context, IdType, Identity, IdentityError, PasswordPolicy, Policy, Role, SessionInfo,
    SimulatedIdentityProvider, StaffInfo, TierLimits, Tiers,
};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, Metadata, TransferCommand, TransferOp,
};
use coffer_notify::{Channel, Dispatcher, SimulatedTransport, Transport};
use coffer_payments::funding::wallet_account_id;
use coffer_payments::{ClientKey, Confirmation, P2p, P2pError, P2pPolicy, QuoteFor};
use coffer_store::sql::SqlStore;
use coffer_testkit::TestDatabase;
use coffer_vault::{LocalMasterKey, Vault};

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const DAY_NANOS: i64 = 86_400 * NANOS_PER_SECOND;
const SOURCE: &str = "test:source:cny";

const LIST: &str = r#"[
  {"entry_id": "T-1", "name": "Ivan Petrovsky-Zamorin", "aliases": ["Ivan Zamorin"], "list_source": "TEST", "kind": "person", "country": "ZZ", "date_of_birth": "1961-04-12"},
  {"entry_id": "T-2", "name": "Marguerite Oduya-Lestrange", "list_source": "TEST", "kind": "person"},
  {"entry_id": "T-3", "name": "钱多多", "aliases": ["Qian Duoduo"], "list_source": "TEST", "kind": "person"},
  {"entry_id": "T-4", "name": "Shellgame Trading Ltd", "list_source": "TEST", "kind": "entity"}
]"#;

/// Real time moved to local noon (UTC+8) of a fixed day, then forward by hand:
/// the seeded payments all fall on one report day wherever the test runs.
struct NoonClock {
    offset: AtomicI64,
}

impl NoonClock {
    fn new() -> NoonClock {
        let real = coffer_app::system_clock().now().as_nanos();
        // 2026-11-20T12:00:00+08:00.
        let noon = Timestamp::parse_rfc3339("2026-11-20T04:00:00Z")
            .expect("time")
            .as_nanos();
        NoonClock {
            offset: AtomicI64::new(noon - real),
        }
    }

    fn advance(&self, nanos: i64) {
        self.offset.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for NoonClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(
            coffer_app::system_clock().now().as_nanos() + self.offset.load(Ordering::SeqCst),
        )
    }
}

struct World {
    identity: Arc<Identity>,
    p2p: P2p,
    compliance: Compliance,
    screener: Arc<Screener>,
    engine: Arc<Engine>,
    reader: Arc<dyn coffer_store::LedgerReader>,
    dispatcher: Dispatcher,
    sms: Arc<SimulatedTransport>,
    clock: Arc<NoonClock>,
    sql: Arc<SqlStore>,
    _db: TestDatabase,
}

fn context() -> Context {
    Context {
        ip: "198.51.100.7".into(),
        device: "test".into(),
    }
}

fn staff(role: Role) -> StaffInfo {
    StaffInfo {
        staff_id: format!("stf_{}", role.as_str()),
        username: role.as_str().replace('_', "."),
        roles: vec![role],
        session_id: "sss_test".into(),
    }
}

fn world(db: TestDatabase) -> World {
    let database = db.database.clone();
    let clock = Arc::new(NoonClock::new());
    let app_clock: Arc<dyn Clock> = clock.clone();
    let sql = Arc::new(SqlStore::open(&database, 4).expect("sql"));
    let vault = Arc::new(
        Vault::open(
            Arc::new(LocalMasterKey::from_bytes([7; 32])),
            sql.clone(),
            0,
        )
        .expect("vault"),
    );
    let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
    let dispatcher = Dispatcher::new(
        sql.clone(),
        vault.clone(),
        app_clock.clone(),
        vec![sms.clone() as Arc<dyn Transport>],
    );
    let roomy = TierLimits {
        balance_cap: i64::MAX / 4,
        per_payment: i64::MAX / 4,
        daily: i64::MAX / 4,
        monthly: i64::MAX / 4,
    };
    let screener = Arc::new(Screener::new(sql.clone(), vault.clone(), app_clock.clone()));
    let identity = Arc::new(
        Identity::new(
            sql.clone(),
            vault.clone(),
            app_clock.clone(),
            Policy {
                tiers: Tiers([roomy, roomy, roomy]),
                ..Policy::default()
            },
            PasswordPolicy::new(None),
        )
        .with_screening(screener.clone()),
    );
    let engine = Arc::new(Engine::start(&database, app_clock.clone()).expect("engine"));
    let reader: Arc<dyn coffer_store::LedgerReader> = database.open_reader(2).expect("reader");
    let p2p = P2p::new(
        sql.clone(),
        engine.clone(),
        reader.clone(),
        identity.clone(),
        vault.clone(),
        app_clock.clone(),
        P2pPolicy {
            fees: coffer_payments::FeeSchedule::free(),
            step_up_threshold: i64::MAX,
            exempt_payment_max: i64::MAX - 1,
            exempt_daily_total_max: i64::MAX / 2,
            exempt_daily_count_max: 100,
            lookups_per_hour_max: 10_000,
            ..P2pPolicy::default()
        },
    );
    p2p.open_accounts().expect("fee account");
    engine
        .execute_blocking(Command::OpenAccount(AccountSpec {
            id: id(SOURCE),
            currency: cny(),
            kind: AccountKind::Asset,
            constraint: BalanceConstraint::None,
            owner: id("bank"),
        }))
        .expect("source account");
    let compliance = Compliance::new(
        sql.clone(),
        vault,
        app_clock,
        identity.clone(),
        screener.clone(),
        Arc::new(CurrencyRegistry::default()),
        ReportSettings::default(),
    );
    screener
        .load_list("staff:test", "test", ListFormat::Json, LIST, "test")
        .expect("list");
    World {
        identity,
        p2p,
        compliance,
        screener,
        engine,
        reader,
        dispatcher,
        sms,
        clock,
        sql,
        _db: db,
    }
}

fn id(text: &str) -> Identifier {
    Identifier::parse(text).expect("id")
}

fn cny() -> Currency {
    Currency::parse("CNY").expect("CNY")
}

/// Registers a customer named `name` with `amount` in the wallet.
fn customer(world: &World, phone: &str, name: &str, amount: i64) -> String {
    let started = world
        .identity
        .start_registration(phone, &context())
        .expect("start");
    world.dispatcher.run_once().expect("dispatch");
    let code = world.sms.last_code(phone).expect("code");
    let (customer, _) = world
        .identity
        .complete_registration(
            &started.registration_id,
            &Secret::new(code),
            &Secret::new("a walk by the lake".into()),
            name,
            coffer_identity::TERMS_VERSION,
            &context(),
        )
        .expect("complete");
    let wallet = id(&wallet_account_id(&customer.id, "CNY"));
    let run = |command| match world.engine.execute_blocking(command).expect("engine") {
        coffer_ledger::Outcome::Account(result) => assert!(result.is_ok(), "{result:?}"),
        coffer_ledger::Outcome::Transfers(results) => {
            assert!(results.iter().all(Result::is_ok), "{results:?}")
        }
    };
    run(Command::OpenAccount(AccountSpec {
        id: wallet.clone(),
        currency: cny(),
        kind: AccountKind::Liability,
        constraint: BalanceConstraint::NoOverdraft,
        owner: id(&customer.id),
    }));
    if amount > 0 {
        run(Command::Transfers {
            transfers: vec![TransferCommand {
                id: id(&format!("test:fund:{}", customer.id)),
                op: TransferOp::Post {
                    debit: id(SOURCE),
                    credit: wallet,
                    amount: Amount::new(amount).expect("amount"),
                    currency: cny(),
                },
                code: Code::parse("test.fund").expect("code"),
                metadata: Metadata::default(),
            }],
            linked: false,
        });
    }
    customer.id
}

/// A resident ID number with a valid check character, distinct per `n`.
fn resident_id(n: u32) -> String {
    let body = format!("11010519800101{n:03}");
    let check = coffer_identity::resident_id_check(&body).expect("check");
    format!("{body}{check}")
}

fn verify(world: &World, customer_id: &str, name: &str, n: u32) {
    world
        .identity
        .verify_identity(
            &SessionInfo {
                session_id: "s".into(),
                customer_id: customer_id.into(),
            },
            &SimulatedIdentityProvider,
            &Secret::new(name.into()),
            IdType::CnResident,
            &Secret::new(resident_id(n)),
            &context(),
        )
        .expect("kyc");
}

fn pay(
    world: &World,
    payer: &str,
    payee_phone: &str,
    amount: i64,
    key: &str,
) -> Result<(), P2pError> {
    let quote = world.p2p.quote(
        payer,
        &QuoteFor::Payee {
            payee: payee_phone.into(),
            amount,
            currency: "CNY".into(),
            note: None,
        },
    )?;
    let view = world.p2p.pay(
        payer,
        &ClientKey {
            key: key.into(),
            request_hash: format!("h-{key}"),
        },
        &Confirmation {
            quote_id: quote.id,
            amount,
            fee: quote.fee,
            currency: "CNY".into(),
            step_up_challenge_id: None,
        },
        "198.51.100.7",
    )?;
    assert_eq!(view.state, coffer_payments::PaymentState::Succeeded);
    Ok(())
}

fn posted(world: &World, customer_id: &str) -> i64 {
    world
        .reader
        .account(&id(&wallet_account_id(customer_id, "CNY")))
        .expect("read")
        .map_or(0, |a| a.posted())
}

fn audit_actions(world: &World, subject: &str) -> Vec<String> {
    let filter = coffer_audit::Filter {
        subject: Some(subject),
        limit: 500,
        ..coffer_audit::Filter::default()
    };
    world
        .sql
        .run(|db| Ok(coffer_audit::entries(db, &filter)))
        .expect("read")
        .expect("entries")
        .into_iter()
        .map(|r| r.action)
        .collect()
}

#[test]
fn a_listed_name_at_kyc_is_queued_and_confirming_it_freezes_the_customer() {
    for db in TestDatabase::both() {
        let backend = db.name();
        let world = world(db);
        let officer = staff(Role::ComplianceOfficer);
        let listed = customer(&world, "+8613800000001", "Vanya", 0);
        let innocent = customer(&world, "+8613800000002", "Li Lei", 0);
        verify(&world, &listed, "ZAMORIN, Ivan", 1);
        verify(&world, &innocent, "李雷", 2);

        // Support staff and risk analysts cannot see the queue.
        for role in [Role::Support, Role::RiskAnalyst] {
            let refused = world
                .compliance
                .staff_hits(&staff(role), None, 100, &context())
                .expect_err("forbidden");
            assert_eq!(refused.code(), "forbidden", "{backend}");
        }
        let hits = world
            .compliance
            .staff_hits(&officer, Some(HitState::Pending), 100, &context())
            .expect("queue");
        assert_eq!(hits.len(), 1, "{backend}: {hits:?}");
        let hit = &hits[0];
        assert_eq!(
            (
                hit.customer_id.as_str(),
                hit.source.as_str(),
                hit.entry_id.as_str()
            ),
            (listed.as_str(), "kyc", "T-1"),
            "{backend}"
        );
        assert!(hit.score_bps >= i64::from(coffer_compliance::DEFAULT_THRESHOLD_BPS));

        let detail = world
            .compliance
            .staff_hit(&officer, &hit.id, &context())
            .expect("hit");
        assert_eq!(detail.screened_name, "ZAMORIN, Ivan");
        assert_eq!(
            detail.entry.as_ref().map(|e| e.name.as_str()),
            Some("Ivan Petrovsky-Zamorin")
        );

        // A decision needs a reason.
        let refused = world
            .compliance
            .staff_decide_hit(&officer, &hit.id, Decision::Confirm, " ", &context())
            .expect_err("no note");
        assert_eq!(refused.field(), Some("note"));
        let decided = world
            .compliance
            .staff_decide_hit(
                &officer,
                &hit.id,
                Decision::Confirm,
                "same date of birth",
                &context(),
            )
            .expect("confirm");
        assert_eq!(decided.state, HitState::Confirmed);
        assert_eq!(
            world.identity.customer(&listed).expect("customer").status,
            "frozen",
            "{backend}"
        );
        assert_eq!(
            world.identity.customer(&innocent).expect("customer").status,
            "active"
        );
        // Once.
        let again = world
            .compliance
            .staff_decide_hit(
                &officer,
                &hit.id,
                Decision::Clear,
                "changed my mind",
                &context(),
            )
            .expect_err("decided");
        assert_eq!(again.code(), "already_decided");

        let actions = audit_actions(&world, &listed);
        for action in [
            "screening_hit_queued",
            "screening_hits_listed",
            "screening_hit_viewed",
            "customer_frozen",
            "screening_hit_confirmed",
        ] {
            assert!(
                actions.iter().any(|a| a == action),
                "{backend}: {action} not in {actions:?}"
            );
        }
        world.engine.shutdown();
    }
}

#[test]
fn a_listed_payee_cannot_be_paid_until_the_hit_is_cleared() {
    for db in TestDatabase::both() {
        let backend = db.name();
        let world = world(db);
        let officer = staff(Role::ComplianceOfficer);
        let payer = customer(&world, "+8613800000011", "Zhang San", 100_000);
        // Never verified: the display name is what is screened.
        let payee = customer(&world, "+8613800000012", "Marguerite Oduya Lestrange", 0);

        let refused = pay(&world, &payer, "+8613800000012", 10_000, "k1").expect_err("blocked");
        assert!(
            matches!(refused, P2pError::PayeeUnderReview),
            "{backend}: {refused:?}"
        );
        assert_eq!(refused.code(), "payee_under_review");
        assert_eq!(
            (posted(&world, &payer), posted(&world, &payee)),
            (100_000, 0),
            "{backend}: nothing moved"
        );
        // Asking again queues nothing new.
        pay(&world, &payer, "+8613800000012", 10_000, "k2").expect_err("still blocked");
        let hits = world
            .compliance
            .staff_hits(&officer, None, 100, &context())
            .expect("queue");
        assert_eq!(hits.len(), 1, "{backend}");
        assert_eq!(
            (hits[0].source.as_str(), hits[0].entry_id.as_str()),
            ("payee", "T-2")
        );

        world
            .compliance
            .staff_decide_hit(
                &officer,
                &hits[0].id,
                Decision::Clear,
                "different person: born 1990, local",
                &context(),
            )
            .expect("clear");
        pay(&world, &payer, "+8613800000012", 10_000, "k3").expect("paid once cleared");
        assert_eq!(
            (posted(&world, &payer), posted(&world, &payee)),
            (90_000, 10_000),
            "{backend}"
        );

        // A new list version with the same entry does not raise the cleared
        // hit again; a new entry for the name does, and blocks payments again.
        let mut grown: Vec<serde_json::Value> = serde_json::from_str(LIST).expect("json");
        grown.push(serde_json::json!({"entry_id": "T-9", "name": "Lestrange, Marguerite O.", "list_source": "TEST-2", "kind": "person"}));
        let version = world
            .compliance
            .staff_load_list(
                &officer,
                ListFormat::Json,
                &serde_json::Value::from(grown).to_string(),
                &context(),
            )
            .expect("load");
        assert_eq!(version.version, 2);
        let refused =
            pay(&world, &payer, "+8613800000012", 10_000, "k4").expect_err("blocked again");
        assert!(matches!(refused, P2pError::PayeeUnderReview), "{backend}");
        let pending = world
            .compliance
            .staff_hits(&officer, Some(HitState::Pending), 100, &context())
            .expect("queue");
        assert_eq!(
            pending
                .iter()
                .map(|h| h.entry_id.as_str())
                .collect::<Vec<_>>(),
            vec!["T-9"],
            "{backend}"
        );
        // Loading the same list again stores nothing.
        let current = world
            .screener
            .current_version()
            .expect("read")
            .expect("a list");
        let reloaded = world.screener.load_list(
            "staff:test",
            "again",
            ListFormat::Csv,
            &to_csv(&current),
            "test",
        );
        assert!(reloaded.is_ok());
        assert_eq!(
            world.screener.versions(10).expect("versions").len(),
            2,
            "{backend}"
        );
        world.engine.shutdown();
    }
}

#[test]
fn the_report_job_finds_exactly_the_large_value_and_structuring_reports_once() {
    for db in TestDatabase::both() {
        let backend = db.name();
        let world = world(db);
        let officer = staff(Role::ComplianceOfficer);
        let a = customer(&world, "+8613800000021", "Customer A", 20_000_000);
        let b = customer(&world, "+8613800000022", "Customer B", 0);
        let c = customer(&world, "+8613800000023", "Customer C", 20_000_000);
        let d = customer(&world, "+8613800000024", "Customer D", 0);
        let e = customer(&world, "+8613800000025", "Customer E", 1_000_000);
        verify(&world, &a, "王小明", 21);
        // Three just under CNY 50,000.00: structuring, and 147,000.00 in the day.
        for (n, amount) in [4_900_000, 4_800_000, 4_700_000].into_iter().enumerate() {
            pay(&world, &a, "+8613800000022", amount, &format!("a{n}")).expect("pay");
        }
        // One at the threshold.
        pay(&world, &c, "+8613800000024", 5_000_000, "c1").expect("pay");
        // Small: nothing.
        pay(&world, &e, "+8613800000021", 10_000, "e1").expect("pay");

        let day = LocalDate::of(world.clock.now().as_nanos(), 8 * 3600);
        assert_eq!(day.to_string(), "2026-11-20");
        let early = world
            .compliance
            .generate("system", day, &context())
            .expect_err("day not over");
        assert_eq!(early.field(), Some("date"));
        world.clock.advance(DAY_NANOS);

        let run = world
            .compliance
            .generate("system", day, &context())
            .expect("run");
        let mut found: Vec<(String, String, String, i64, i64)> = run
            .reports
            .iter()
            .map(|r| {
                (
                    r.rule.clone(),
                    r.customer_id.clone(),
                    r.direction.clone(),
                    r.total_amount,
                    r.transaction_count,
                )
            })
            .collect();
        found.sort();
        let mut expected = vec![
            (
                "large_value_daily".to_string(),
                a.clone(),
                "out".to_string(),
                14_400_000,
                3,
            ),
            (
                "structuring".to_string(),
                a.clone(),
                "out".to_string(),
                14_400_000,
                3,
            ),
            (
                "large_value_daily".to_string(),
                b.clone(),
                "in".to_string(),
                14_400_000,
                3,
            ),
            (
                "structuring".to_string(),
                b.clone(),
                "in".to_string(),
                14_400_000,
                3,
            ),
            (
                "large_value_daily".to_string(),
                c.clone(),
                "out".to_string(),
                5_000_000,
                1,
            ),
            (
                "large_value_daily".to_string(),
                d.clone(),
                "in".to_string(),
                5_000_000,
                1,
            ),
        ];
        expected.sort();
        assert_eq!(found, expected, "{backend}");
        assert_eq!(
            (run.created, run.already_there, run.movements),
            (6, 0, 10),
            "{backend}"
        );
        assert!(run
            .reports
            .iter()
            .all(|r| r.state == ReportState::PendingReview));

        // Idempotent.
        let again = world
            .compliance
            .generate("system", day, &context())
            .expect("rerun");
        assert_eq!((again.created, again.already_there), (0, 6), "{backend}");
        assert_eq!(again.reports, run.reports);

        // Review: approve one for filing, dismiss one with a reason.
        let lv_a = run
            .reports
            .iter()
            .find(|r| r.customer_id == a && r.kind == ReportKind::LargeValue)
            .expect("report");
        let structuring_b = run
            .reports
            .iter()
            .find(|r| r.customer_id == b && r.rule == "structuring")
            .expect("report");
        let approved = world
            .compliance
            .staff_review_report(&officer, &lv_a.id, true, "", &context())
            .expect("approve");
        assert_eq!(
            (approved.state, approved.reviewer.as_deref()),
            (ReportState::Approved, Some("compliance.officer"))
        );
        let no_reason = world
            .compliance
            .staff_review_report(&officer, &structuring_b.id, false, "", &context())
            .expect_err("reason");
        assert_eq!(no_reason.field(), Some("note"));
        world
            .compliance
            .staff_review_report(
                &officer,
                &structuring_b.id,
                false,
                "payee is the payer's landlord",
                &context(),
            )
            .expect("dismiss");
        assert_eq!(
            world
                .compliance
                .staff_review_report(&officer, &lv_a.id, false, "again", &context())
                .expect_err("once")
                .code(),
            "already_decided"
        );
        assert!(world
            .compliance
            .staff_reports(&staff(Role::Support), Some(day), None, None, &context())
            .is_err());

        // CSV export: the header, and A's approved report row.
        let csv = world
            .compliance
            .staff_export(&officer, day, None, ExportFormat::Csv, &context())
            .expect("csv");
        let mut lines = csv.split("\r\n");
        assert_eq!(
            lines.next(),
            Some(coffer_compliance::EXPORT_COLUMNS.join(",").as_str())
        );
        let row = csv
            .split("\r\n")
            .find(|line| line.starts_with(&lv_a.id))
            .expect("row");
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(
            cells.len(),
            coffer_compliance::EXPORT_COLUMNS.len(),
            "{row}"
        );
        assert_eq!(
            &cells[1..6],
            &[
                "large_value",
                "large_value_daily",
                "approved",
                "2026-11-20",
                a.as_str()
            ]
        );
        let masked_id = coffer_identity::mask_id_number(&resident_id(21));
        assert_eq!(&cells[6..9], &["王*明", "cn_resident", masked_id.as_str()]);
        assert!(masked_id.starts_with("110105********"));
        assert_eq!(
            &cells[9..15],
            &["CNY", "2", "out", "14400000", "144000.00", "3"]
        );
        assert_eq!(cells[15].split(';').count(), 3);
        assert!(
            cells[16].starts_with("2026-11-20T04:") && cells[16].ends_with('Z'),
            "{row}"
        );
        assert_eq!(cells[19], "compliance.officer");
        // JSON export: the same fields.
        let json: serde_json::Value = serde_json::from_str(
            &world
                .compliance
                .staff_export(
                    &officer,
                    day,
                    Some(ReportState::Approved),
                    ExportFormat::Json,
                    &context(),
                )
                .expect("json"),
        )
        .expect("parse");
        let reports = json["reports"].as_array().expect("reports");
        assert_eq!(reports.len(), 1, "{backend}: only the approved one");
        let object = reports[0].as_object().expect("object");
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        for column in coffer_compliance::EXPORT_COLUMNS {
            assert!(keys.contains(&column), "{column} missing");
        }
        assert_eq!(object["total_amount_minor"], 14_400_000);
        assert_eq!(object["currency_exponent"], 2);
        assert_eq!(object["transaction_ids"].as_array().map(Vec::len), Some(3));
        // Unverified customers have no identity to mask.
        let actions = audit_actions(&world, &b);
        for action in [
            "compliance_report_created",
            "compliance_report_dismissed",
            "compliance_report_exported",
        ] {
            assert!(
                actions.iter().any(|x| x == action),
                "{backend}: {action} not in {actions:?}"
            );
        }
        world.engine.shutdown();
    }
}

/// The active list, written back as CSV (the same entries in the other format).
fn to_csv(_version: &coffer_compliance::ListVersion) -> String {
    let mut out = String::from("entry_id,name,aliases,list_source,kind,country,date_of_birth\n");
    let mut entries: Vec<serde_json::Value> = serde_json::from_str(LIST).expect("json");
    entries.push(serde_json::json!({"entry_id": "T-9", "name": "Lestrange, Marguerite O.", "list_source": "TEST-2", "kind": "person"}));
    for e in entries {
        let text = |key: &str| e[key].as_str().unwrap_or("").replace('"', "\"\"");
        let aliases: Vec<&str> = e["aliases"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "\"{}\",\"{}\",\"{}\",\"{}\",{},{},{}\n",
            text("entry_id"),
            text("name"),
            aliases.join(";"),
            text("list_source"),
            text("kind"),
            text("country"),
            text("date_of_birth")
        ));
    }
    out
}

#[test]
fn the_identity_layer_refuses_compliance_to_other_roles() {
    assert!(coffer_identity::permits(
        Role::ComplianceOfficer,
        coffer_identity::Permission::ManageCompliance
    ));
    for role in [
        Role::Support,
        Role::RiskAnalyst,
        Role::ProductManager,
        Role::Administrator,
    ] {
        assert!(
            !coffer_identity::permits(role, coffer_identity::Permission::ManageCompliance),
            "{role:?}"
        );
    }
    let _unused: Option<IdentityError> = None;
}
