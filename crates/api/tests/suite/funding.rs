//! Funding over HTTP, black-box: the real app on port 0 over SQLite and
//! PostgreSQL, the built-in connector simulators, their signed callbacks
//! posted to the webhook routes by this test (so it can deliver them twice,
//! late, or forged), and the resolver run as `coffer serve` runs it.

use std::net::SocketAddr;
use std::sync::Arc;

use coffer_api::{AppState, CustomerServices};
use coffer_app::Engine;
use coffer_core::CurrencyRegistry;
use coffer_identity::{PasswordPolicy, Policy, TierLimits, Tiers};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_payments::{ConnectorKind, FeeOperation, FeeRule, FeeSchedule, FundingPolicy};
use coffer_testkit::TestDatabase;
use coffer_vault::LocalMasterKey;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::customer_app::CustomerApp as App;

/// Limits for tier 0 in these tests: roomy balance, tight daily limit.
fn tiers() -> Tiers {
    let tier = TierLimits {
        balance_cap: 200_000,
        per_payment: 60_000,
        daily: 100_000,
        monthly: 1_000_000,
    };
    Tiers([tier, tier, tier])
}

async fn spawn_app(db: TestDatabase, policy: FundingPolicy) -> App {
    let database = db.database.clone();
    let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
    let transports: Vec<Arc<dyn Transport>> = vec![sms.clone()];
    let (state, customers) = tokio::task::spawn_blocking(move || {
        let clock = coffer_app::system_clock();
        let engine = Arc::new(Engine::start(&database, clock.clone()).expect("engine"));
        let reader = database.open_reader(4).expect("reader");
        let service: Arc<dyn coffer_store::service::ServiceStore> =
            Arc::from(coffer_store::service::open(&database, 4).expect("service"));
        let customers = Arc::new(
            CustomerServices::open(
                &database,
                clock.clone(),
                Arc::new(LocalMasterKey::from_bytes([9; 32])),
                transports,
                Policy {
                    tiers: tiers(),
                    ..Policy::default()
                },
                PasswordPolicy::new(None),
            )
            .expect("customer services"),
        );
        let state = AppState::new(
            engine,
            reader,
            service,
            Arc::new(CurrencyRegistry::default()),
            clock,
            &customers,
        )
        .with_funding_policy(policy);
        state.funding.open_accounts().expect("funding accounts");
        (state, customers)
    })
    .await
    .expect("setup");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let router = coffer_api::router(state.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve")
    });
    App {
        base,
        sms,
        customers,
        state,
        client: reqwest::Client::new(),
        _db: db,
    }
}

/// Callbacks answer at once and status queries may ask at once; no fees
/// (the fee tests set their own schedule).
fn test_policy() -> FundingPolicy {
    FundingPolicy {
        withdrawal_step_up_threshold: 40_000,
        status_query_after_ms: 0,
        fees: FeeSchedule::free(),
        ..FundingPolicy::default()
    }
}

/// Withdrawals cost 1 % (at least CNY 1.00, at most CNY 50.00); the first
/// each month is free.
fn fee_policy() -> FundingPolicy {
    FundingPolicy {
        fees: FeeSchedule::free()
            .with(
                FeeOperation::Withdrawal,
                FeeRule {
                    fixed: 0,
                    percent_bps: 100,
                    minimum: 100,
                    maximum: Some(5_000),
                    free_per_month: 1,
                    first_free: false,
                },
            )
            .expect("rule"),
        // Step-up has its own tests; these are about the fee.
        withdrawal_step_up_threshold: i64::MAX,
        ..test_policy()
    }
}

impl App {
    async fn resolve(&self) {
        let funding = self.state.funding.clone();
        tokio::task::spawn_blocking(move || funding.resolve_pending())
            .await
            .expect("join")
            .expect("resolve");
    }

    /// What the bank's fee income account has received.
    async fn fee_income(&self) -> i64 {
        let reader = self.state.reader.clone();
        tokio::task::spawn_blocking(move || {
            let id = coffer_core::Identifier::parse("bank:fee-income:cny").expect("id");
            reader.account(&id).expect("read").map_or(0, |a| a.posted())
        })
        .await
        .expect("join")
    }
}

fn status_of(body: &Value) -> (&str, Option<&str>) {
    (
        body["status"].as_str().unwrap_or("?"),
        body["reason"].as_str(),
    )
}

fn error_of(body: &Value) -> (Option<&str>, Option<&str>) {
    (
        body["error"]["code"].as_str(),
        body["error"]["field"].as_str(),
    )
}

async fn top_up_flows(app: &App) {
    let (_, bearer) = app.customer("+8613700137000").await;
    let approve = app.card(&bearer, "4111 1111 1111 1111").await;
    let decline = app.card(&bearer, "4000000000000002").await;
    let insufficient = app.card(&bearer, "4000000000009995").await;
    let timeout = app.card(&bearer, "4000000000000069").await;
    let challenge = app.card(&bearer, "4000000000003220").await;

    // Approved: pending at once (incoming, not spendable), then succeeded.
    let request = json!({"amount": 30_000, "currency": "CNY", "card_id": approve});
    let (status, first) = app
        .post(&bearer, "tu-1", "/v1/me/top-ups", request.clone())
        .await;
    assert_eq!(
        (status, status_of(&first)),
        (201, ("pending", None)),
        "{first}"
    );
    assert_eq!(first["method_label"], "visa ••1111");
    assert_eq!(app.balance(&bearer).await, (0, 0));
    let (status, replay, headers) = app
        .send(
            Method::POST,
            "/v1/me/top-ups",
            &[("Authorization", &bearer), ("Idempotency-Key", "tu-1")],
            Some(request),
        )
        .await;
    assert_eq!((status, &replay), (201, &first));
    assert!(headers.contains_key("idempotent-replayed"));
    let callbacks = app.callbacks().await;
    // The simulator sends every callback twice (the same event).
    assert_eq!(callbacks.len(), 2);
    // A forged or stale callback is refused and changes nothing.
    let mut forged = callbacks[0].clone();
    forged.body = forged.body.replace("\"succeeded\"", "\"failed\"");
    let (status, body) = app.deliver(&forged).await;
    assert_eq!(
        (status, error_of(&body)),
        (401, (Some("signature_invalid"), Some("Coffer-Signature")))
    );
    let simulator = app
        .state
        .connectors
        .simulator(ConnectorKind::CardNetwork)
        .expect("simulator");
    let mut stale = callbacks[0].clone();
    stale.signature = simulator.sign(1_000_000_000, &stale.body);
    assert_eq!(app.deliver(&stale).await.0, 401);
    let mut unsigned = callbacks[0].clone();
    unsigned.signature = "t=1,v1=00".into();
    assert_eq!(app.deliver(&unsigned).await.0, 401);
    // The other connector's secret does not sign for this one.
    let mut misrouted = callbacks[0].clone();
    misrouted.connector = ConnectorKind::CoreBanking;
    assert_eq!(app.deliver(&misrouted).await.0, 401);
    let (_, still) = app
        .get(
            &bearer,
            &format!("/v1/me/top-ups/{}", first["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(status_of(&still), ("pending", None));
    // The real one, then its duplicate.
    let (status, answer) = app.deliver(&callbacks[0]).await;
    assert_eq!((status, answer["outcome"].as_str()), (200, Some("applied")));
    let (status, answer) = app.deliver(&callbacks[1]).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("duplicate"))
    );
    let (status, done) = app
        .get(
            &bearer,
            &format!("/v1/me/top-ups/{}", first["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!((status, status_of(&done)), (200, ("succeeded", None)));
    assert!(done["resolved_at"].is_string());
    assert_eq!(app.balance(&bearer).await, (30_000, 30_000));

    // Declined and insufficient funds: failed with the reason, no money.
    for (key, card, reason) in [
        ("tu-2", &decline, "card_declined"),
        ("tu-3", &insufficient, "insufficient_funds"),
    ] {
        let (status, started) = app
            .post(
                &bearer,
                key,
                "/v1/me/top-ups",
                json!({"amount": 5_000, "currency": "CNY", "card_id": card}),
            )
            .await;
        assert_eq!((status, status_of(&started)), (201, ("pending", None)));
        assert_eq!(app.deliver_all().await, ["applied", "duplicate"]);
        let (_, done) = app
            .get(
                &bearer,
                &format!("/v1/me/top-ups/{}", started["id"].as_str().expect("id")),
            )
            .await;
        assert_eq!(status_of(&done), ("failed", Some(reason)));
    }
    assert_eq!(app.balance(&bearer).await, (30_000, 30_000));

    // No answer at all: the status query resolves it; the late callback changes nothing.
    let (_, waiting) = app
        .post(
            &bearer,
            "tu-4",
            "/v1/me/top-ups",
            json!({"amount": 7_000, "currency": "CNY", "card_id": timeout}),
        )
        .await;
    assert!(app.callbacks().await.is_empty());
    app.resolve().await;
    let waiting_path = format!("/v1/me/top-ups/{}", waiting["id"].as_str().expect("id"));
    let (_, done) = app.get(&bearer, &waiting_path).await;
    assert_eq!(status_of(&done), ("failed", Some("timeout")));
    assert_eq!(app.deliver_all().await, ["late", "duplicate"]);
    let (_, after) = app.get(&bearer, &waiting_path).await;
    assert_eq!(after, done);

    // 3-D Secure: a wrong answer fails it, the right one lets it through.
    for (key, answer, expected) in [
        ("tu-5", "999999", ("failed", Some("authentication_failed"))),
        (
            "tu-6",
            coffer_payments::CHALLENGE_ANSWER,
            ("succeeded", None),
        ),
    ] {
        let (status, started) = app
            .post(
                &bearer,
                key,
                "/v1/me/top-ups",
                json!({"amount": 10_000, "currency": "CNY", "card_id": challenge}),
            )
            .await;
        assert_eq!(status, 201);
        assert_eq!(started["next_action"], "three_d_secure");
        let path = format!(
            "/v1/me/top-ups/{}/authenticate",
            started["id"].as_str().expect("id")
        );
        let (status, passed_on) = app
            .post(
                &bearer,
                &format!("{key}-a"),
                &path,
                json!({"answer": answer}),
            )
            .await;
        assert_eq!(
            (status, status_of(&passed_on)),
            (200, ("pending", None)),
            "{passed_on}"
        );
        assert!(passed_on.get("next_action").is_none());
        let (status, again) = app
            .post(
                &bearer,
                &format!("{key}-b"),
                &path,
                json!({"answer": answer}),
            )
            .await;
        assert_eq!(
            (status, error_of(&again).0),
            (409, Some("not_awaiting_authentication"))
        );
        app.deliver_all().await;
        let (_, done) = app
            .get(
                &bearer,
                &format!("/v1/me/top-ups/{}", started["id"].as_str().expect("id")),
            )
            .await;
        assert_eq!(status_of(&done), expected);
    }
    assert_eq!(app.balance(&bearer).await, (40_000, 40_000));

    // From a bank account, through the core banking system.
    let account = app.bank_account(&bearer, "6222 0000 0000 0001").await;
    let (status, started) = app
        .post(
            &bearer,
            "tu-7",
            "/v1/me/top-ups",
            json!({"amount": 10_000, "currency": "CNY", "bank_account_id": account}),
        )
        .await;
    assert_eq!(
        (status, started["method_label"].as_str()),
        (201, Some("CMB ••0001"))
    );
    assert_eq!(app.deliver_all().await, ["applied", "duplicate"]);
    assert_eq!(app.balance(&bearer).await, (50_000, 50_000));

    // The balance cap counts pending top-ups too.
    let (status, _) = app
        .post(
            &bearer,
            "tu-8",
            "/v1/me/top-ups",
            json!({"amount": 100_000, "currency": "CNY", "card_id": approve}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = app
        .post(
            &bearer,
            "tu-9",
            "/v1/me/top-ups",
            json!({"amount": 50_001, "currency": "CNY", "card_id": approve}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("limit_exceeded"), Some("amount"))),
        "{body}"
    );
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (150_000, 150_000));

    // Bad input: one clear error each, nothing recorded.
    for (key, body, field) in [
        (
            "bad-1",
            json!({"amount": 0, "currency": "CNY", "card_id": approve}),
            "amount",
        ),
        (
            "bad-2",
            json!({"amount": 100, "currency": "USD", "card_id": approve}),
            "currency",
        ),
        (
            "bad-3",
            json!({"amount": 100, "currency": "CNY"}),
            "card_id",
        ),
        (
            "bad-4",
            json!({"amount": 100, "currency": "CNY", "card_id": approve, "bank_account_id": account}),
            "card_id",
        ),
        (
            "bad-5",
            json!({"amount": 1.5, "currency": "CNY", "card_id": approve}),
            "amount",
        ),
    ] {
        let (status, answer) = app.post(&bearer, key, "/v1/me/top-ups", body).await;
        assert_eq!(
            (status, error_of(&answer)),
            (422, (Some("invalid_field"), Some(field))),
            "{key}: {answer}"
        );
    }
    let (status, answer) = app
        .post(
            &bearer,
            "bad-6",
            "/v1/me/top-ups",
            json!({"amount": 100, "currency": "CNY", "card_id": "card_0000000000000000"}),
        )
        .await;
    assert_eq!((status, error_of(&answer).0), (404, Some("not_found")));
    // Another customer cannot use these cards or see these top-ups.
    let (_, other) = app.customer("+8613700137001").await;
    let (status, _) = app
        .post(
            &other,
            "o-1",
            "/v1/me/top-ups",
            json!({"amount": 100, "currency": "CNY", "card_id": approve}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get(
            &other,
            &format!("/v1/me/top-ups/{}", first["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(status, 404);
    let (status, list) = app.get(&bearer, "/v1/me/top-ups?limit=100").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().map(Vec::len), Some(8));
    let (status, _) = app.get(&bearer, "/v1/me/top-ups?limit=0").await;
    assert_eq!(status, 422);
    app.verify_ledger().await;
}

async fn withdrawal_flows(app: &App) {
    let (_, bearer) = app.customer("+8613700137100").await;
    let card = app.card(&bearer, "4111111111111111").await;
    let good = app.bank_account(&bearer, "6222000000000001").await;
    let closed = app.bank_account(&bearer, "6222000000000002").await;
    let silent = app.bank_account(&bearer, "6222000000000069").await;
    app.post(
        &bearer,
        "fund",
        "/v1/me/top-ups",
        json!({"amount": 150_000, "currency": "CNY", "card_id": card}),
    )
    .await;
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (150_000, 150_000));

    // The fee the customer was shown is part of the confirmation: without
    // it, refused and nothing held.
    let (status, body) = app
        .post(
            &bearer,
            "wd-0",
            "/v1/me/withdrawals",
            json!({"amount": 20_000, "currency": "CNY", "bank_account_id": good}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("fee"))),
        "{body}"
    );
    assert_eq!(app.balance(&bearer).await, (150_000, 150_000));

    // Held at once, paid on success.
    let (status, started) = app
        .post(
            &bearer,
            "wd-1",
            "/v1/me/withdrawals",
            json!({"amount": 20_000, "currency": "CNY", "bank_account_id": good, "fee": 0}),
        )
        .await;
    assert_eq!(
        (status, status_of(&started)),
        (201, ("pending", None)),
        "{started}"
    );
    assert_eq!(app.balance(&bearer).await, (150_000, 130_000));
    assert_eq!(app.deliver_all().await, ["applied", "duplicate"]);
    let (_, done) = app
        .get(
            &bearer,
            &format!("/v1/me/withdrawals/{}", started["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(status_of(&done), ("succeeded", None));
    assert_eq!(app.balance(&bearer).await, (130_000, 130_000));
    // A withdrawal is not a top-up.
    let (status, _) = app
        .get(
            &bearer,
            &format!("/v1/me/top-ups/{}", started["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(status, 404);

    // Failed at the bank: the money comes back, and so does the daily usage.
    let (_, started) = app
        .post(
            &bearer,
            "wd-2",
            "/v1/me/withdrawals",
            json!({"amount": 30_000, "currency": "CNY", "bank_account_id": closed, "fee": 0}),
        )
        .await;
    assert_eq!(app.balance(&bearer).await, (130_000, 100_000));
    app.deliver_all().await;
    let (_, done) = app
        .get(
            &bearer,
            &format!("/v1/me/withdrawals/{}", started["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(status_of(&done), ("failed", Some("account_closed")));
    assert_eq!(app.balance(&bearer).await, (130_000, 130_000));

    // No answer: the status query fails it and releases the hold.
    let (_, started) = app
        .post(
            &bearer,
            "wd-3",
            "/v1/me/withdrawals",
            json!({"amount": 10_000, "currency": "CNY", "bank_account_id": silent, "fee": 0}),
        )
        .await;
    assert_eq!(app.balance(&bearer).await, (130_000, 120_000));
    app.resolve().await;
    let (_, done) = app
        .get(
            &bearer,
            &format!("/v1/me/withdrawals/{}", started["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(status_of(&done), ("failed", Some("timeout")));
    assert_eq!(app.balance(&bearer).await, (130_000, 130_000));
    assert_eq!(app.deliver_all().await, ["late", "duplicate"]);

    // Per payment, then step-up: 45,000 is over the 40,000 threshold.
    let (status, body) = app
        .post(
            &bearer,
            "wd-4",
            "/v1/me/withdrawals",
            json!({"amount": 60_001, "currency": "CNY", "bank_account_id": good, "fee": 0}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("limit_exceeded"), Some("amount")))
    );
    let withdrawal =
        json!({"amount": 45_000, "currency": "CNY", "bank_account_id": good, "fee": 0});
    let (status, body) = app
        .post(&bearer, "wd-5", "/v1/me/withdrawals", withdrawal.clone())
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (403, Some("step_up_required")),
        "{body}"
    );
    let (status, challenge) = app
        .post(&bearer, "su-1", "/v1/me/step-up", json!({"operation": "withdrawal", "amount": 45_000, "currency": "CNY", "payee": format!("bank_account:{good}"), "method": "code"}))
        .await;
    assert_eq!(status, 201, "{challenge}");
    let challenge_id = challenge["challenge_id"].as_str().expect("id").to_string();
    let code = app.code_for("+8613700137100").await;
    let (status, _) = app
        .post(
            &bearer,
            "su-2",
            &format!("/v1/me/step-up/{challenge_id}/verify"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 200);
    // Bound to the amount: 45,001 with this challenge is refused.
    let (status, _) = app
        .post(&bearer, "wd-6", "/v1/me/withdrawals", json!({"amount": 45_001, "currency": "CNY", "bank_account_id": good, "step_up_challenge_id": challenge_id, "fee": 0}))
        .await;
    assert_eq!(status, 403);
    let mut with_challenge = withdrawal.clone();
    with_challenge["step_up_challenge_id"] = json!(challenge_id);
    let (status, body) = app
        .post(
            &bearer,
            "wd-7",
            "/v1/me/withdrawals",
            with_challenge.clone(),
        )
        .await;
    assert_eq!(
        (status, status_of(&body)),
        (201, ("pending", None)),
        "{body}"
    );
    // Single use.
    let (status, _) = app
        .post(&bearer, "wd-8", "/v1/me/withdrawals", with_challenge)
        .await;
    assert_eq!(status, 403);
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (85_000, 85_000));

    // The daily limit: 20,000 + 45,000 used of 100,000 (failures gave theirs back).
    let (status, body) = app
        .post(
            &bearer,
            "wd-9",
            "/v1/me/withdrawals",
            json!({"amount": 35_001, "currency": "CNY", "bank_account_id": good, "fee": 0}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("limit_exceeded"), Some("amount"))),
        "{body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("daily"));
    let (status, _) = app
        .post(
            &bearer,
            "wd-10",
            "/v1/me/withdrawals",
            json!({"amount": 35_000, "currency": "CNY", "bank_account_id": good, "fee": 0}),
        )
        .await;
    assert_eq!(status, 201);
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (50_000, 50_000));

    // More than the wallet holds: refused with nothing held.
    let (_, poor) = app.customer("+8613700137101").await;
    let account = app.bank_account(&poor, "6222000000000001").await;
    let (status, body) = app
        .post(
            &poor,
            "wd-11",
            "/v1/me/withdrawals",
            json!({"amount": 100, "currency": "CNY", "bank_account_id": account, "fee": 0}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("insufficient_funds"), Some("amount")))
    );
    assert_eq!(app.balance(&poor).await, (0, 0));
    // Removed accounts are gone for withdrawals.
    let (status, _) = app
        .post(
            &bearer,
            "rm-1",
            &format!("/v1/me/bank-accounts/{closed}/remove"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .post(
            &bearer,
            "wd-12",
            "/v1/me/withdrawals",
            json!({"amount": 100, "currency": "CNY", "bank_account_id": closed, "fee": 0}),
        )
        .await;
    assert_eq!(status, 404);
    let (_, accounts) = app.get(&bearer, "/v1/me/bank-accounts").await;
    assert_eq!(accounts["data"].as_array().map(Vec::len), Some(2));
    // Linking: one account once; the number never comes back.
    let (status, body) = app
        .post(
            &bearer,
            "bank-again",
            "/v1/me/bank-accounts",
            json!({"bank_code": "CMB", "account_number": "6222-0000-0000-0001"}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (409, Some("bank_account_already_linked"))
    );
    let (status, body) = app
        .post(
            &bearer,
            "bank-bad",
            "/v1/me/bank-accounts",
            json!({"bank_code": "XYZ", "account_number": "6222000000000009"}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("bank_code")))
    );
    assert!(!accounts.to_string().contains("6222000000000001"));
    let (_, list) = app.get(&bearer, "/v1/me/withdrawals").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(5));
    app.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_top_ups_on_sqlite() {
    top_up_flows(&spawn_app(TestDatabase::sqlite(), test_policy()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_top_ups_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    top_up_flows(&spawn_app(db, test_policy()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_withdrawals_on_sqlite() {
    withdrawal_flows(&spawn_app(TestDatabase::sqlite(), test_policy()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_withdrawals_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    withdrawal_flows(&spawn_app(db, test_policy()).await).await;
}

/// Eight withdrawals of 60,000 at once against a daily limit of 100,000 and
/// a balance of 200,000: exactly one gets through.
async fn concurrent_withdrawals(app: App) {
    let app = Arc::new(app);
    let (_, bearer) = app.customer("+8613700137200").await;
    let card = app.card(&bearer, "4111111111111111").await;
    let account = app.bank_account(&bearer, "6222000000000001").await;
    app.post(
        &bearer,
        "fund",
        "/v1/me/top-ups",
        json!({"amount": 200_000, "currency": "CNY", "card_id": card}),
    )
    .await;
    app.deliver_all().await;
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (app, bearer, account) = (app.clone(), bearer.clone(), account.clone());
        tasks.push(tokio::spawn(async move {
            app.post(
                &bearer,
                &format!("race-{n}"),
                "/v1/me/withdrawals",
                json!({"amount": 60_000, "currency": "CNY", "bank_account_id": account, "fee": 0}),
            )
            .await
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let (status, body) = task.await.expect("join");
        if status != 201 {
            assert_eq!(
                error_of(&body),
                (Some("limit_exceeded"), Some("amount")),
                "{body}"
            );
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 422).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(app.balance(&bearer).await, (200_000, 140_000));
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (140_000, 140_000));
    app.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_concurrent_withdrawals_cannot_pass_the_daily_limit_on_sqlite() {
    let policy = FundingPolicy {
        withdrawal_step_up_threshold: i64::MAX,
        ..test_policy()
    };
    concurrent_withdrawals(spawn_app(TestDatabase::sqlite(), policy).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_concurrent_withdrawals_cannot_pass_the_daily_limit_on_postgres() {
    let policy = FundingPolicy {
        withdrawal_step_up_threshold: i64::MAX,
        ..test_policy()
    };
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    concurrent_withdrawals(spawn_app(db, policy).await).await;
}

/// The staff route lists each kind of break; the CLI's job is the same function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_reconciliation_lists_breaks() {
    let policy = FundingPolicy {
        stuck_after_ms: 0,
        ..test_policy()
    };
    let app = spawn_app(TestDatabase::sqlite(), policy).await;
    let (_, bearer) = app.customer("+8613700137300").await;
    let card = app.card(&bearer, "4111111111111111").await;
    let challenge = app.card(&bearer, "4000000000003220").await;
    let mut ids = Vec::new();
    for (key, amount) in [("r-1", 1_000), ("r-2", 2_000), ("r-3", 3_000)] {
        let (_, started) = app
            .post(
                &bearer,
                key,
                "/v1/me/top-ups",
                json!({"amount": amount, "currency": "CNY", "card_id": card}),
            )
            .await;
        ids.push(started["id"].as_str().expect("id").to_string());
    }
    app.deliver_all().await;
    // Stuck: a 3-D Secure challenge nobody answers.
    let (_, stuck) = app
        .post(
            &bearer,
            "r-4",
            "/v1/me/top-ups",
            json!({"amount": 4_000, "currency": "CNY", "card_id": challenge}),
        )
        .await;
    // The network's books go wrong in three ways: a charge we never asked
    // for, a settled amount that differs, a settlement it lost.
    let simulator = app
        .state
        .connectors
        .simulator(ConnectorKind::CardNetwork)
        .expect("simulator")
        .clone();
    let sql = app.state.sql.clone();
    let (tampered, lost) = (ids[1].clone(), ids[2].clone());
    tokio::task::spawn_blocking(move || {
        use coffer_payments::CardNetwork;
        simulator
            .authorize(&coffer_payments::connectors::Instruction {
                merchant_reference: "fnd_stranger",
                instrument: &coffer_core::Secret::new("4111111111111111".into()),
                amount: coffer_core::Amount::new(999).expect("amount"),
                currency: coffer_core::Currency::parse("CNY").expect("CNY"),
            })
            .expect("authorize");
        sql.run(|db| {
            db.execute(
                "UPDATE connector_simulations SET amount = amount + 1 WHERE merchant_reference = $1",
                coffer_store::sql_params![tampered.as_str()],
            )?;
            db.execute(
                "DELETE FROM connector_simulations WHERE merchant_reference = $1",
                coffer_store::sql_params![lost.as_str()],
            )
        })
        .expect("tamper");
    })
    .await
    .expect("join");
    let staff = new_staff(
        &app,
        "recon.officer",
        coffer_identity::Role::ComplianceOfficer,
    )
    .await;
    let (status, report) = app
        .get(&staff, "/v1/staff/reconciliation?connector=card_network")
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["matched"], 1, "{report}");
    let mut breaks: Vec<(String, String)> = report["breaks"]
        .as_array()
        .expect("breaks")
        .iter()
        .map(|b| {
            (
                b["kind"].as_str().unwrap_or("?").to_string(),
                b["funding_id"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    breaks.sort();
    let mut expected = vec![
        ("amount_mismatch".to_string(), ids[1].clone()),
        ("missing_at_connector".to_string(), ids[2].clone()),
        ("missing_in_ledger".to_string(), "fnd_stranger".to_string()),
        (
            "stuck_pending".to_string(),
            stuck["id"].as_str().expect("id").to_string(),
        ),
    ];
    expected.sort();
    assert_eq!(breaks, expected, "{report}");
    // Each side's amount comes with its currency, and only that side's.
    for b in report["breaks"].as_array().expect("breaks") {
        for side in ["ours", "theirs"] {
            let currency = &b[format!("{side}_currency")];
            match b[side].is_i64() {
                true => assert_eq!(currency, "CNY", "{b}"),
                false => assert!(currency.is_null(), "{b}"),
            }
        }
    }
    let (status, body) = app
        .get(&staff, "/v1/staff/reconciliation?connector=visa")
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("connector")))
    );
    let (status, body) = app
        .get(&staff, "/v1/staff/reconciliation?connector=core_banking&from=2026-11-25T00:00:00Z&until=2026-11-24T00:00:00Z")
        .await;
    assert_eq!((status, error_of(&body).0), (422, Some("invalid_field")));
    // A role without the permission is refused.
    let support = new_staff(&app, "recon.support", coffer_identity::Role::Support).await;
    let (status, _) = app
        .get(&support, "/v1/staff/reconciliation?connector=card_network")
        .await;
    assert_eq!(status, 403);
}

async fn new_staff(app: &App, username: &str, role: coffer_identity::Role) -> String {
    let identity = app.customers.identity.clone();
    let name = username.to_string();
    let created = tokio::task::spawn_blocking(move || {
        identity.create_staff(
            &name,
            "Staff",
            &[role],
            &coffer_identity::Context {
                ip: "test".into(),
                device: "test".into(),
            },
        )
    })
    .await
    .expect("join")
    .expect("staff");
    let totp = totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        totp_rs::Secret::Encoded(created.totp_base32.expose().clone())
            .to_bytes()
            .expect("seed"),
    )
    .expect("totp");
    let (status, body, _) = app
        .send(
            Method::POST,
            "/v1/staff/sessions",
            &[],
            Some(json!({"username": username, "password": created.password.expose(), "code": totp.generate_current().expect("code")})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    format!("Bearer {}", body["token"].as_str().expect("token"))
}

async fn withdrawal_fee_flows(app: &App) {
    let (_, bearer) = app.customer("+8613700137300").await;
    let card = app.card(&bearer, "4111111111111111").await;
    let good = app.bank_account(&bearer, "6222000000000001").await;
    let closed = app.bank_account(&bearer, "6222000000000002").await;
    app.post(
        &bearer,
        "fund",
        "/v1/me/top-ups",
        json!({"amount": 100_000, "currency": "CNY", "card_id": card}),
    )
    .await;
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (100_000, 100_000));
    let income = app.fee_income().await;

    // The month's free withdrawal: quoted free, and free.
    let (status, quote) = app
        .get(
            &bearer,
            "/v1/me/withdrawals/quote?amount=20000&currency=CNY",
        )
        .await;
    assert_eq!(status, 200, "{quote}");
    assert_eq!(
        (&quote["fee"], &quote["fee_waiver"], &quote["total"]),
        (&json!(0), &json!("monthly_free_quota"), &json!(20_000))
    );
    // A failure gives the free one back.
    let (status, failed) = app
        .post(
            &bearer,
            "wd-free-fails",
            "/v1/me/withdrawals",
            json!({"amount": 20_000, "currency": "CNY", "bank_account_id": closed, "fee": 0}),
        )
        .await;
    assert_eq!(status, 201, "{failed}");
    assert_eq!(failed["fee_waiver"], "monthly_free_quota");
    app.deliver_all().await;
    let (_, quote) = app
        .get(
            &bearer,
            "/v1/me/withdrawals/quote?amount=20000&currency=CNY",
        )
        .await;
    assert_eq!(quote["fee"], 0, "{quote}");
    let (status, free) = app
        .post(
            &bearer,
            "wd-free",
            "/v1/me/withdrawals",
            json!({"amount": 20_000, "currency": "CNY", "bank_account_id": good, "fee": 0}),
        )
        .await;
    assert_eq!((status, &free["fee"]), (201, &json!(0)), "{free}");
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (80_000, 80_000));

    // The next one pays 1 %: a confirmation at the stale fee moves nothing.
    let (_, quote) = app
        .get(
            &bearer,
            "/v1/me/withdrawals/quote?amount=10000&currency=CNY",
        )
        .await;
    assert_eq!(
        (&quote["fee"], quote.get("fee_waiver"), &quote["total"]),
        (&json!(100), None, &json!(10_100)),
        "{quote}"
    );
    let (status, body) = app
        .post(
            &bearer,
            "wd-stale",
            "/v1/me/withdrawals",
            json!({"amount": 10_000, "currency": "CNY", "bank_account_id": good, "fee": 0}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (409, (Some("fee_changed"), Some("fee"))),
        "{body}"
    );
    assert_eq!(app.balance(&bearer).await, (80_000, 80_000));
    // Amount and fee are held together, and both posted on success.
    let (status, paid) = app
        .post(
            &bearer,
            "wd-fee",
            "/v1/me/withdrawals",
            json!({"amount": 10_000, "currency": "CNY", "bank_account_id": good, "fee": 100}),
        )
        .await;
    assert_eq!((status, &paid["fee"]), (201, &json!(100)), "{paid}");
    assert_eq!(app.balance(&bearer).await, (80_000, 69_900));
    assert_eq!(app.fee_income().await, income);
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (69_900, 69_900));
    assert_eq!(app.fee_income().await, income + 100);
    // A failed one gives amount and fee back; the bank keeps no fee.
    let (status, body) = app
        .post(
            &bearer,
            "wd-fee-fails",
            "/v1/me/withdrawals",
            json!({"amount": 30_000, "currency": "CNY", "bank_account_id": closed, "fee": 300}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.balance(&bearer).await, (69_900, 39_600));
    app.deliver_all().await;
    let (_, done) = app
        .get(
            &bearer,
            &format!("/v1/me/withdrawals/{}", body["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(status_of(&done), ("failed", Some("account_closed")));
    assert_eq!(app.balance(&bearer).await, (69_900, 69_900));
    assert_eq!(app.fee_income().await, income + 100);
    // Most of the wallet: the amount and its fee are held together.
    let (status, big) = app
        .post(
            &bearer,
            "wd-big",
            "/v1/me/withdrawals",
            json!({"amount": 60_000, "currency": "CNY", "bank_account_id": good, "fee": 600}),
        )
        .await;
    assert_eq!(status, 201, "{big}");
    assert_eq!(app.balance(&bearer).await, (69_900, 9_300));
    let (status, body) = app
        .post(
            &bearer,
            "wd-all",
            "/v1/me/withdrawals",
            json!({"amount": 9_300, "currency": "CNY", "bank_account_id": good, "fee": 100}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (422, Some("insufficient_funds")),
        "{body}"
    );
    assert_eq!(app.balance(&bearer).await, (69_900, 9_300));
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (9_300, 9_300));
    assert_eq!(app.fee_income().await, income + 100 + 600);
    // The history shows the fee beside the amount.
    let (status, row) = app
        .get(
            &bearer,
            &format!("/v1/me/activity/act_{}", paid["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(status, 200, "{row}");
    assert_eq!(row["fee"], 100, "{row}");
    app.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_withdrawal_fees_on_sqlite() {
    withdrawal_fee_flows(&spawn_app(TestDatabase::sqlite(), fee_policy()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_withdrawal_fees_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    withdrawal_fee_flows(&spawn_app(db, fee_policy()).await).await;
}

/// Top-ups count against the tier's daily limit when the policy says so
/// for the tier: atomically (parallel top-ups cannot together pass it), and
/// a failed top-up gives its share back.
async fn top_up_limits(app: App) {
    let app = Arc::new(app);
    let (_, bearer) = app.customer("+8613700137400").await;
    let card = app.card(&bearer, "4111111111111111").await;
    let declining = app.card(&bearer, "4000000000000002").await;
    // Eight top-ups of 60,000 at once against a daily limit of 100,000
    // (and a balance cap of 200,000): exactly one gets through.
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (app, bearer, card) = (app.clone(), bearer.clone(), card.clone());
        tasks.push(tokio::spawn(async move {
            app.post(
                &bearer,
                &format!("tu-race-{n}"),
                "/v1/me/top-ups",
                json!({"amount": 60_000, "currency": "CNY", "card_id": card}),
            )
            .await
        }));
    }
    let mut passed = 0;
    for task in tasks {
        let (status, body) = task.await.expect("join");
        if status == 201 {
            passed += 1;
        } else {
            assert_eq!(
                (status, error_of(&body)),
                (422, (Some("limit_exceeded"), Some("amount"))),
                "{body}"
            );
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("daily"),
                "{body}"
            );
        }
    }
    assert_eq!(passed, 1);
    app.deliver_all().await;
    // 40,000 left today: a declined top-up of 40,000 takes it, then gives it back.
    let (status, declined) = app
        .post(
            &bearer,
            "tu-declined",
            "/v1/me/top-ups",
            json!({"amount": 40_000, "currency": "CNY", "card_id": declining}),
        )
        .await;
    assert_eq!(status, 201, "{declined}");
    let (status, body) = app
        .post(
            &bearer,
            "tu-over",
            "/v1/me/top-ups",
            json!({"amount": 1, "currency": "CNY", "card_id": card}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (422, Some("limit_exceeded")),
        "{body}"
    );
    app.deliver_all().await;
    let (_, done) = app
        .get(
            &bearer,
            &format!("/v1/me/top-ups/{}", declined["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(status_of(&done), ("failed", Some("card_declined")));
    let (status, body) = app
        .post(
            &bearer,
            "tu-rest",
            "/v1/me/top-ups",
            json!({"amount": 40_000, "currency": "CNY", "card_id": card}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (100_000, 100_000));
    app.verify_ledger().await;
}

fn limited_top_ups() -> FundingPolicy {
    FundingPolicy {
        top_ups_limited: [true, true, true],
        ..test_policy()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_top_ups_count_against_daily_limits_on_sqlite() {
    top_up_limits(spawn_app(TestDatabase::sqlite(), limited_top_ups()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_top_ups_count_against_daily_limits_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    top_up_limits(spawn_app(db, limited_top_ups()).await).await;
}
