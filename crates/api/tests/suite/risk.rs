//! Real-time risk over HTTP, black-box, on SQLite and PostgreSQL: a burst
//! of large P2P payments stepped up then frozen under the shipped rules;
//! held payments released and rejected by an analyst and answered by the
//! customer; rule drafts (validation by field), dry-run and activation
//! without a restart; a blocklisted payee blocked. Money is checked to end
//! where it should and the ledger audit stays clean.

use std::net::SocketAddr;
use std::sync::Arc;

use coffer_api::{AppState, CustomerServices};
use coffer_app::{Engine, ManualClock};
use coffer_core::{Clock, CurrencyRegistry, Timestamp};
use coffer_identity::{PasswordPolicy, Policy, Role, TierLimits, Tiers};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_payments::{FeeSchedule, FundingPolicy, P2pPolicy};
use coffer_testkit::TestDatabase;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "plum blossoms in snow";
const NANOS_PER_SECOND: i64 = 1_000_000_000;
const DAY_SECONDS: i64 = 86_400;

struct App {
    base: String,
    sms: Arc<SimulatedTransport>,
    customers: Arc<CustomerServices>,
    state: AppState,
    clock: Arc<ManualClock>,
    client: reqwest::Client,
    _db: TestDatabase,
}

struct Customer {
    id: String,
    phone: String,
    bearer: String,
}

fn tiers() -> Tiers {
    let tier = TierLimits {
        balance_cap: 10_000_000,
        per_payment: 1_000_000,
        daily: 5_000_000,
        monthly: 50_000_000,
    };
    Tiers([tier, tier, tier])
}

async fn spawn_app(db: TestDatabase) -> App {
    let database = db.database.clone();
    let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
    let transports: Vec<Arc<dyn Transport>> = vec![sms.clone()];
    // Noon in China (04:00 UTC) today: the shipped night-time rule stays
    // quiet, whenever the test runs.
    let now = coffer_app::system_clock().now().as_nanos() / NANOS_PER_SECOND;
    let start = (now - now.rem_euclid(DAY_SECONDS) + 4 * 3600) * NANOS_PER_SECOND;
    let clock = Arc::new(ManualClock::new(Timestamp::from_nanos(start)));
    let shared: Arc<dyn Clock> = clock.clone();
    let (state, customers) = tokio::task::spawn_blocking(move || {
        let engine = Arc::new(Engine::start(&database, shared.clone()).expect("engine"));
        let reader = database.open_reader(4).expect("reader");
        let service: Arc<dyn coffer_store::service::ServiceStore> =
            Arc::from(coffer_store::service::open(&database, 4).expect("service"));
        let customers = Arc::new(
            CustomerServices::open(
                &database,
                shared.clone(),
                Arc::new(coffer_vault::LocalMasterKey::from_bytes([9; 32])),
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
            shared,
            &customers,
        )
        .with_funding_policy(FundingPolicy {
            status_query_after_ms: 0,
            ..FundingPolicy::default()
        })
        .with_p2p_policy(P2pPolicy {
            fees: FeeSchedule::free(),
            ..P2pPolicy::default()
        });
        state.funding.open_accounts().expect("funding accounts");
        state.p2p.open_accounts().expect("fee account");
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
        clock,
        client: reqwest::Client::new(),
        _db: db,
    }
}

impl App {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, bearer: &str, key: &str, path: &str, body: Value) -> (u16, Value) {
        self.send(
            Method::POST,
            path,
            &[("Authorization", bearer), ("Idempotency-Key", key)],
            Some(body),
        )
        .await
    }

    async fn get(&self, bearer: &str, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, &[("Authorization", bearer)], None)
            .await
    }

    async fn code_for(&self, to: &str) -> String {
        let customers = self.customers.clone();
        tokio::task::spawn_blocking(move || customers.dispatcher.run_once())
            .await
            .expect("join")
            .expect("dispatch");
        self.sms.last_code(to).expect("a code was sent")
    }

    async fn customer(&self, phone: &str, name: &str) -> Customer {
        let (status, started) = self
            .send(
                Method::POST,
                "/v1/auth/registrations",
                &[("Idempotency-Key", phone)],
                Some(json!({"contact": phone})),
            )
            .await;
        assert_eq!(status, 202, "{started}");
        let code = self.code_for(phone).await;
        let id = started["registration_id"].as_str().expect("id");
        let (status, registered) = self
            .send(
                Method::POST,
                &format!("/v1/auth/registrations/{id}/complete"),
                &[],
                Some(json!({"code": code, "password": PASSWORD, "display_name": name, "accept_terms": "2026-11"})),
            )
            .await;
        assert_eq!(status, 201, "{registered}");
        let bearer = format!(
            "Bearer {}",
            registered["session"]["token"].as_str().expect("token")
        );
        let (status, me) = self.get(&bearer, "/v1/me").await;
        assert_eq!(status, 200, "{me}");
        Customer {
            id: me["customer"]["id"].as_str().expect("id").to_string(),
            phone: phone.to_string(),
            bearer,
        }
    }

    async fn top_up(&self, who: &Customer, amount: i64) {
        let (status, card) = self
            .post(
                &who.bearer,
                &format!("card-{}", who.phone),
                "/v1/me/cards",
                json!({"number": "4111 1111 1111 1111", "expiry_month": 12, "expiry_year": 2035, "cvv": "123", "funding": "debit"}),
            )
            .await;
        assert!(status == 201 || status == 200, "{card}");
        let (status, top_up) = self
            .post(
                &who.bearer,
                &format!("tu-{}-{amount}", who.phone),
                "/v1/me/top-ups",
                json!({"amount": amount, "currency": "CNY", "card_id": card["id"]}),
            )
            .await;
        assert_eq!(status, 201, "{top_up}");
        crate::support::deliver_simulated_callbacks(&self.client, &self.base, &self.state).await;
        assert_eq!(self.balance(who).await, amount);
    }

    /// The CNY wallet's available balance as the customer sees it (posted
    /// net of holds).
    async fn available(&self, who: &Customer) -> i64 {
        let (status, wallets) = self.get(&who.bearer, "/v1/me/wallets").await;
        assert_eq!(status, 200, "{wallets}");
        wallets["data"]
            .as_array()
            .expect("wallets")
            .iter()
            .find(|w| w["currency"] == "CNY")
            .and_then(|w| w["available"].as_i64())
            .expect("a CNY wallet")
    }

    /// The posted balance, read from the ledger (works for frozen customers).
    async fn balance(&self, who: &Customer) -> i64 {
        let reader = self.state.reader.clone();
        let account = coffer_payments::funding::wallet_account_id(&who.id, "CNY");
        tokio::task::spawn_blocking(move || {
            let id = coffer_core::Identifier::parse(&account).expect("id");
            reader.account(&id).expect("read").map_or(0, |a| a.posted())
        })
        .await
        .expect("join")
    }

    async fn step_up(&self, who: &Customer, key: &str, operation: &Value) -> String {
        let mut body = operation.clone();
        body["method"] = json!("code");
        let (status, challenge) = self
            .post(&who.bearer, &format!("{key}-su"), "/v1/me/step-up", body)
            .await;
        assert_eq!(status, 201, "{challenge}");
        let id = challenge["challenge_id"].as_str().expect("id").to_string();
        let code = self.code_for(&who.phone).await;
        let (status, verified) = self
            .post(
                &who.bearer,
                &format!("{key}-sv"),
                &format!("/v1/me/step-up/{id}/verify"),
                json!({"code": code}),
            )
            .await;
        assert_eq!(status, 200, "{verified}");
        id
    }

    /// Quotes and confirms; answers a step-up demand (the quote's, or
    /// risk's at confirmation) and retries. Returns (status, body, whether
    /// a step-up was needed at confirmation).
    async fn pay(&self, who: &Customer, key: &str, payee: &str, amount: i64) -> (u16, Value, bool) {
        let (status, quote) = self
            .post(
                &who.bearer,
                &format!("{key}-q"),
                "/v1/me/p2p/quotes",
                json!({"payee": payee, "amount": amount, "currency": "CNY"}),
            )
            .await;
        assert_eq!(status, 201, "{quote}");
        let mut body = json!({"quote_id": quote["id"], "amount": quote["amount"], "fee": quote["fee"], "currency": "CNY"});
        if quote["step_up_required"] == json!(true) {
            body["step_up_challenge_id"] = json!(self.step_up(who, key, &quote["step_up"]).await);
        }
        let (status, paid) = self
            .post(&who.bearer, key, "/v1/me/p2p/payments", body.clone())
            .await;
        if status == 403 && paid["error"]["code"] == "step_up_required" {
            body["step_up_challenge_id"] = json!(
                self.step_up(who, &format!("{key}-r"), &quote["step_up"])
                    .await
            );
            let (status, paid) = self
                .post(
                    &who.bearer,
                    &format!("{key}-retry"),
                    "/v1/me/p2p/payments",
                    body,
                )
                .await;
            return (status, paid, true);
        }
        (status, paid, false)
    }

    async fn staff(&self, username: &str, role: Role) -> String {
        crate::support::staff_bearer(
            &self.client,
            &self.base,
            self.customers.identity.clone(),
            username,
            vec![role],
            &*self.clock,
        )
        .await
    }

    async fn verify_books(&self) {
        let reader = self.state.reader.clone();
        let report = tokio::task::spawn_blocking(move || {
            coffer_app::verify(reader.as_ref(), &mut |_| {}).expect("verify")
        })
        .await
        .expect("join");
        assert!(report.is_clean(), "{:?}", report.violations);
        let sql = self.customers.sql.clone();
        let audit = tokio::task::spawn_blocking(move || {
            sql.run(|db| Ok(coffer_audit::verify(db, &mut |_| {})))
                .expect("audit")
        })
        .await
        .expect("join");
        assert!(audit.is_ok(), "{audit:?}");
    }

    async fn advance_seconds(&self, seconds: u64) {
        self.clock.advance_millis(seconds * 1000);
    }

    /// Draft and activate a rule set over HTTP; returns the version.
    async fn activate_rules(&self, analyst: &str, key: &str, rules: Value) -> i64 {
        let (status, draft) = self
            .post(
                analyst,
                key,
                "/v1/staff/risk/rules",
                json!({"rules": rules}),
            )
            .await;
        assert_eq!(status, 201, "{draft}");
        assert_eq!(draft["state"], "draft");
        let version = draft["version"].as_i64().expect("version");
        let (status, active) = self
            .post(
                analyst,
                &format!("{key}-on"),
                &format!("/v1/staff/risk/rules/{version}/activate"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{active}");
        assert_eq!(active["state"], "active");
        version
    }
}

fn error_code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

/// Hold everything of at least 70 000 for review; nothing else decides.
fn review_rules() -> Value {
    json!({
        "currency": "CNY",
        "utc_offset_seconds": 28800,
        "thresholds": {"step_up": 40, "review": 70, "block_and_freeze": 100},
        "rules": [
            {"id": "big", "description": "A big payment", "when": {"amount_at_least": {"min_amount": 70000}}, "outcome": "review"},
            {"id": "blocked", "description": "Blocklisted", "when": {"blocklisted": {"lists": ["payee"]}}, "outcome": "block_and_freeze"}
        ]
    })
}

async fn burst_is_stepped_up_then_frozen(app: &App) {
    let payer = app.customer("+8613700137001", "张三").await;
    let payee = app.customer("+8613700137002", "李四").await;
    let analyst = app.staff("analyst.burst", Role::RiskAnalyst).await;
    app.top_up(&payer, 400_000).await;
    let mut step_ups = Vec::new();
    for i in 0..4 {
        let (status, paid, stepped_up) = app
            .pay(&payer, &format!("burst-{i}"), &payee.phone, 60_000)
            .await;
        assert_eq!(
            (status, paid["status"].as_str()),
            (201, Some("succeeded")),
            "{paid}"
        );
        step_ups.push(stepped_up);
        app.advance_seconds(60).await;
    }
    // The first two pass (the first one's step-up is the payment policy's
    // for a new payee, asked by the quote); the 3rd and 4th large payment
    // in ten minutes are stepped up by risk at confirmation.
    assert_eq!(step_ups, [false, false, true, true]);
    let (status, blocked, _) = app.pay(&payer, "burst-4", &payee.phone, 60_000).await;
    assert_eq!(
        (status, error_code(&blocked)),
        (403, Some("risk_blocked")),
        "{blocked}"
    );
    // Frozen: every session ended; nothing of the fifth payment moved.
    let (status, _) = app.get(&payer.bearer, "/v1/me").await;
    assert_eq!(status, 401);
    assert_eq!(app.balance(&payer).await, 400_000 - 4 * 60_000);
    assert_eq!(app.balance(&payee).await, 4 * 60_000);
    let (status, cases) = app
        .get(
            &analyst,
            &format!("/v1/staff/risk/cases?customer_id={}", payer.id),
        )
        .await;
    assert_eq!(status, 200, "{cases}");
    let case = &cases["data"][0];
    assert_eq!(
        (case["kind"].as_str(), case["state"].as_str()),
        (Some("freeze"), Some("open"))
    );
    assert_eq!(case["decision"], "block_and_freeze");
    let rules: Vec<&str> = case["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter_map(|r| r["rule_id"].as_str())
        .collect();
    assert!(
        rules.contains(&"sustained_burst_of_large_payments"),
        "{rules:?}"
    );
    // A freeze is not released from its case (unfreezing is maker-checker).
    let (status, body) = app
        .post(
            &analyst,
            "rel-freeze",
            &format!(
                "/v1/staff/risk/cases/{}/release",
                case["id"].as_str().expect("id")
            ),
            json!({"note": "x"}),
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, Some("freeze_case")));
    // Support staff may not work risk cases.
    let support = app.staff("support.burst", Role::Support).await;
    let (status, _) = app.get(&support, "/v1/staff/risk/cases").await;
    assert_eq!(status, 403);
    app.verify_books().await;
}

async fn held_payments_released_rejected_and_answered(app: &App) {
    let analyst = app.staff("analyst.held", Role::RiskAnalyst).await;
    let payer = app.customer("+8613700137011", "王五").await;
    let payee = app.customer("+8613700137012", "赵六").await;
    let other = app.customer("+8613700137013", "孙七").await;
    app.top_up(&payer, 500_000).await;
    app.activate_rules(&analyst, "held-rules", review_rules())
        .await;

    // Held: nothing moved, but the amount is reserved by a ledger hold
    // (it counts against `available`); a case is open, the customer asked.
    let (status, held, _) = app.pay(&payer, "held-1", &payee.phone, 70_000).await;
    assert_eq!(
        (status, held["status"].as_str()),
        (201, Some("held")),
        "{held}"
    );
    assert_eq!(app.balance(&payer).await, 500_000);
    assert_eq!(app.available(&payer).await, 430_000);
    // What is reserved cannot be spent twice: a payment of more than the
    // rest is refused by the ledger (a hold for review too).
    let (status, over, _) = app.pay(&payer, "held-over", &payee.phone, 440_000).await;
    assert_eq!(
        (status, error_code(&over)),
        (422, Some("insufficient_funds")),
        "{over}"
    );
    assert_eq!(app.available(&payer).await, 430_000);
    let (status, mine) = app.get(&payer.bearer, "/v1/me/risk/cases").await;
    assert_eq!(status, 200, "{mine}");
    let cases = mine["data"].as_array().expect("cases");
    assert_eq!(cases.len(), 2, "{mine}");
    let case_of = |payment: &Value| {
        cases
            .iter()
            .find(|c| c["subject_id"] == *payment)
            .cloned()
            .expect("a case for the payment")
    };
    let first = case_of(&held["id"]);
    assert_eq!(first["state"], "open");
    // The refused one's case closed itself: nothing is left to review.
    let refused = cases
        .iter()
        .find(|c| c["subject_id"] != held["id"])
        .expect("the refused payment's case");
    assert_eq!(refused["state"], "closed", "{refused}");
    let first_case = first["id"].as_str().expect("case").to_string();

    // An analyst escalates, then releases: the payment completes.
    let (status, escalated) = app
        .post(
            &analyst,
            "esc-1",
            &format!("/v1/staff/risk/cases/{first_case}/escalate"),
            json!({"note": "large, first time"}),
        )
        .await;
    assert_eq!(
        (status, escalated["state"].as_str()),
        (200, Some("escalated")),
        "{escalated}"
    );
    let (status, released) = app
        .post(
            &analyst,
            "rel-1",
            &format!("/v1/staff/risk/cases/{first_case}/release"),
            json!({"note": "called the customer"}),
        )
        .await;
    assert_eq!(
        (status, released["state"].as_str()),
        (200, Some("released")),
        "{released}"
    );
    assert_eq!(released["resolved_by"], "staff:analyst.held");
    let (status, payment) = app
        .get(
            &payer.bearer,
            &format!("/v1/me/p2p/payments/{}", held["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(
        (status, payment["status"].as_str()),
        (200, Some("succeeded")),
        "{payment}"
    );
    assert_eq!(app.balance(&payer).await, 430_000);
    assert_eq!(app.available(&payer).await, 430_000, "captured, not twice");
    assert_eq!(app.balance(&payee).await, 70_000);
    // A settled case takes no second action.
    let (status, body) = app
        .post(
            &analyst,
            "rej-late",
            &format!("/v1/staff/risk/cases/{first_case}/reject"),
            json!({}),
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, Some("case_closed")));

    // Rejected by the analyst: failed, nothing moved.
    let (_, held, _) = app.pay(&payer, "held-2", &payee.phone, 80_000).await;
    assert_eq!(held["status"], "held", "{held}");
    assert_eq!(app.available(&payer).await, 350_000);
    let case = open_case_of(app, &analyst, &payer).await;
    let (status, rejected) = app
        .post(
            &analyst,
            "rej-2",
            &format!("/v1/staff/risk/cases/{case}/reject"),
            json!({"note": "mule pattern"}),
        )
        .await;
    assert_eq!(
        (status, rejected["state"].as_str()),
        (200, Some("rejected")),
        "{rejected}"
    );
    let (_, payment) = app
        .get(
            &payer.bearer,
            &format!("/v1/me/p2p/payments/{}", held["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(
        (payment["status"].as_str(), payment["reason"].as_str()),
        (Some("failed"), Some("rejected_by_risk"))
    );
    assert_eq!(app.balance(&payer).await, 430_000);
    assert_eq!(app.available(&payer).await, 430_000, "the hold released");

    // "Was this you?" yes: needs a step-up bound to the case, then releases.
    let (_, held, _) = app.pay(&payer, "held-3", &other.phone, 90_000).await;
    assert_eq!(held["status"], "held", "{held}");
    let case = open_case_of(app, &analyst, &payer).await;
    let answer = format!("/v1/me/risk/cases/{case}/answer");
    let (status, body) = app
        .post(&payer.bearer, "ans-3a", &answer, json!({"was_me": true}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, Some("step_up_required")),
        "{body}"
    );
    let challenge = app
        .step_up(&payer, "ans-3", &json!({"operation": "risk_case_release", "amount": 90_000, "currency": "CNY", "payee": format!("case:{case}")}))
        .await;
    let (status, answered) = app
        .post(
            &payer.bearer,
            "ans-3b",
            &answer,
            json!({"was_me": true, "step_up_challenge_id": challenge}),
        )
        .await;
    assert_eq!(
        (
            status,
            answered["state"].as_str(),
            answered["answer"].as_str()
        ),
        (200, Some("released"), Some("yes")),
        "{answered}"
    );
    assert_eq!(app.balance(&other).await, 90_000);
    assert_eq!(app.balance(&payer).await, 340_000);

    // "Was this you?" no: declined and frozen at once.
    let (_, held, _) = app.pay(&payer, "held-4", &other.phone, 100_000).await;
    assert_eq!(held["status"], "held", "{held}");
    let case = open_case_of(app, &analyst, &payer).await;
    let (status, answered) = app
        .post(
            &payer.bearer,
            "ans-4",
            &format!("/v1/me/risk/cases/{case}/answer"),
            json!({"was_me": false}),
        )
        .await;
    assert_eq!(
        (
            status,
            answered["state"].as_str(),
            answered["answer"].as_str()
        ),
        (200, Some("rejected"), Some("no")),
        "{answered}"
    );
    let (status, _) = app.get(&payer.bearer, "/v1/me").await;
    assert_eq!(status, 401, "frozen: signed out everywhere");
    assert_eq!(app.balance(&payer).await, 340_000);
    assert_eq!(app.balance(&other).await, 90_000);
    let reader = app.state.reader.clone();
    let wallet = coffer_payments::funding::wallet_account_id(&payer.id, "CNY");
    let available = tokio::task::spawn_blocking(move || {
        let id = coffer_core::Identifier::parse(&wallet).expect("id");
        reader.account(&id).expect("read").map(|a| a.available())
    })
    .await
    .expect("join");
    assert_eq!(
        available,
        Some(340_000),
        "the declined payment's hold released"
    );
    app.verify_books().await;
}

async fn open_case_of(app: &App, analyst: &str, who: &Customer) -> String {
    let (status, cases) = app
        .get(
            analyst,
            &format!("/v1/staff/risk/cases?state=open&customer_id={}", who.id),
        )
        .await;
    assert_eq!(status, 200, "{cases}");
    assert_eq!(cases["data"].as_array().map(Vec::len), Some(1), "{cases}");
    cases["data"][0]["id"].as_str().expect("case").to_string()
}

async fn rules_are_validated_dry_run_and_activated_without_restart(app: &App) {
    let analyst = app.staff("analyst.rules", Role::RiskAnalyst).await;
    let payer = app.customer("+8613700137021", "周八").await;
    let payee = app.customer("+8613700137022", "吴九").await;
    // Enough for four payments and a fifth held for review (its hold needs the money).
    app.top_up(&payer, 400_000).await;
    let (status, active) = app.get(&analyst, "/v1/staff/risk/rules").await;
    assert_eq!(status, 200, "{active}");
    let shipped = active["active"].as_i64().expect("an active version");
    let shipped_rules = active["data"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["version"].as_i64() == Some(shipped))
        .expect("the shipped version")["rules"]
        .clone();
    assert_eq!(shipped_rules["rules"][0]["id"], "burst_of_large_payments");
    // Some traffic under the shipped rules: all allowed.
    for i in 0..3 {
        let (status, paid, _) = app
            .pay(&payer, &format!("rules-{i}"), &payee.phone, 75_000)
            .await;
        assert_eq!(
            (status, paid["status"].as_str()),
            (201, Some("succeeded")),
            "{paid}"
        );
        // Past the shipped burst window (10 minutes), within the
        // customers' idle session time (30 minutes).
        app.advance_seconds(11 * 60).await;
    }
    // Staff sessions idle out after 15 minutes: sign in again.
    let analyst = app.staff("analyst.rules.later", Role::RiskAnalyst).await;
    // Every problem at once, each with its field.
    let mut bad = review_rules();
    bad["thresholds"]["review"] = json!(10);
    bad["rules"][0]["score"] = json!(5);
    bad["rules"][1]["when"] = json!({"blocklisted": {"lists": []}});
    let (status, body) = app
        .post(
            &analyst,
            "bad-draft",
            "/v1/staff/risk/rules",
            json!({"rules": bad}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (422, Some("invalid_rules")),
        "{body}"
    );
    let fields: Vec<&str> = body["error"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "thresholds.review",
            "rules[0].score",
            "rules[1].when.blocklisted.lists"
        ]
    );
    let (status, body) = app
        .post(
            &analyst,
            "bad-json",
            "/v1/staff/risk/rules",
            json!({"rules": {"currency": "CNY"}}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (422, Some("invalid_rules")),
        "{body}"
    );

    // A valid draft changes nothing until activated; its dry-run says
    // what it would have done to the traffic above.
    let (status, draft) = app
        .post(
            &analyst,
            "good-draft",
            "/v1/staff/risk/rules",
            json!({"rules": review_rules()}),
        )
        .await;
    assert_eq!(status, 201, "{draft}");
    let version = draft["version"].as_i64().expect("version");
    assert!(version > shipped);
    let (status, run) = app
        .get(
            &analyst,
            &format!("/v1/staff/risk/rules/{version}/dry-run?limit=100"),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let count = |list: &Value, outcome: &str| {
        list.as_array()
            .expect("counts")
            .iter()
            .find(|c| c["outcome"] == outcome)
            .and_then(|c| c["count"].as_i64())
            .unwrap_or(-1)
    };
    assert_eq!(
        count(&run["decided"], "allow"),
        run["evaluations"].as_i64().expect("n")
    );
    assert_eq!(count(&run["would_decide"], "review"), 3, "{run}");
    assert_eq!(run["changed"], 3);
    assert_eq!(run["examples"][0]["would_decide"], "review");
    assert_eq!(run["examples"][0]["reasons"][0]["rule_id"], "big");
    let (_, paid, _) = app.pay(&payer, "rules-draft", &payee.phone, 75_000).await;
    assert_eq!(paid["status"], "succeeded", "the draft is not in force");

    // Activated: the very next payment is decided by it (no restart).
    let (status, active) = app
        .post(
            &analyst,
            "activate",
            &format!("/v1/staff/risk/rules/{version}/activate"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, active["state"].as_str()),
        (200, Some("active")),
        "{active}"
    );
    let (status, again) = app
        .post(
            &analyst,
            "activate-again",
            &format!("/v1/staff/risk/rules/{version}/activate"),
            json!({}),
        )
        .await;
    assert_eq!((status, error_code(&again)), (409, Some("not_a_draft")));
    let (_, paid, _) = app.pay(&payer, "rules-active", &payee.phone, 75_000).await;
    assert_eq!(paid["status"], "held", "{paid}");
    let (_, listed) = app.get(&analyst, "/v1/staff/risk/rules").await;
    assert_eq!(listed["active"].as_i64(), Some(version));
    assert!(listed["data"]
        .as_array()
        .expect("versions")
        .iter()
        .any(|v| v["version"].as_i64() == Some(shipped) && v["state"] == "retired"));
    // The shipped rules back in force, as a new version.
    let restored = app.activate_rules(&analyst, "restore", shipped_rules).await;
    assert!(restored > version);
    app.verify_books().await;
}

async fn blocklisted_payee_is_blocked(app: &App) {
    let analyst = app.staff("analyst.block", Role::RiskAnalyst).await;
    let payer = app.customer("+8613700137031", "郑十").await;
    let mule = app.customer("+8613700137032", "冯十一").await;
    app.top_up(&payer, 100_000).await;
    let (status, listed) = app
        .post(
            &analyst,
            "block-1",
            "/v1/staff/risk/blocklist",
            json!({"list": "payee", "value": mule.id, "reason": "reported mule account"}),
        )
        .await;
    assert_eq!(status, 201, "{listed}");
    let (status, body) = app
        .post(
            &analyst,
            "block-2",
            "/v1/staff/risk/blocklist",
            json!({"list": "phone", "value": "x", "reason": "r"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("list"))
    );
    let (status, blocked, _) = app.pay(&payer, "to-mule", &mule.phone, 1_000).await;
    assert_eq!(
        (status, error_code(&blocked)),
        (403, Some("risk_blocked")),
        "{blocked}"
    );
    assert_eq!(app.balance(&payer).await, 100_000);
    assert_eq!(app.balance(&mule).await, 0);
    let (status, _) = app.get(&payer.bearer, "/v1/me").await;
    assert_eq!(status, 401);
    app.verify_books().await;
}

/// In this order: the dry-run counts the traffic before it, the rules
/// scenario leaves the shipped rules active again, the held payments'
/// scenario activates its own.
async fn everything(app: &App) {
    rules_are_validated_dry_run_and_activated_without_restart(app).await;
    burst_is_stepped_up_then_frozen(app).await;
    blocklisted_payee_is_blocked(app).await;
    held_payments_released_rejected_and_answered(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_over_http_on_sqlite() {
    everything(&spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_over_http_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("postgres");
    everything(&spawn_app(db).await).await;
}
