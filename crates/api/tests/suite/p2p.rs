//! P2P payments over HTTP, black-box: the real app on port 0 over SQLite
//! and PostgreSQL, wallets funded through the real top-up flow (simulated
//! card network, callbacks delivered to the webhook route), a manual clock
//! for expiries. Every flow and every refusal: handles, look-ups, quotes,
//! confirmations, fees and waivers, limits, step-up, requests and splits.

use std::net::SocketAddr;
use std::sync::Arc;

use coffer_api::{AppState, CustomerServices};
use coffer_app::{Engine, ManualClock};
use coffer_core::{Clock, CurrencyRegistry};
use coffer_identity::{PasswordPolicy, Policy, TierLimits, Tiers};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_payments::{FeeOperation, FeeRule, FeeSchedule, FundingPolicy, P2pPolicy};
use coffer_testkit::TestDatabase;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "plum blossoms in snow";

struct App {
    base: String,
    sms: Arc<SimulatedTransport>,
    customers: Arc<CustomerServices>,
    state: AppState,
    clock: Arc<ManualClock>,
    client: reqwest::Client,
    _db: TestDatabase,
}

fn tiers() -> Tiers {
    let tier = TierLimits {
        balance_cap: 200_000,
        per_payment: 60_000,
        daily: 100_000,
        monthly: 1_000_000,
    };
    Tiers([tier, tier, tier])
}

/// 1 % (min 0.10, max 5.00), the first each month free.
fn test_policy() -> P2pPolicy {
    let fees = FeeSchedule::free()
        .with(
            FeeOperation::P2p,
            FeeRule {
                fixed: 0,
                percent_bps: 100,
                minimum: 10,
                maximum: Some(500),
                free_per_month: 1,
                first_free: false,
            },
        )
        .expect("rule");
    P2pPolicy {
        fees,
        step_up_threshold: 50_000,
        exempt_payment_max: 5_000,
        exempt_daily_total_max: 7_000,
        exempt_daily_count_max: 2,
        lookups_per_hour_max: 60,
        // Every customer in these tests comes from 127.0.0.1.
        lookups_per_ip_per_hour_max: 1_000,
        ..P2pPolicy::default()
    }
}

async fn spawn_app(db: TestDatabase) -> App {
    spawn_app_with(db, test_policy()).await
}

async fn spawn_app_with(db: TestDatabase, policy: P2pPolicy) -> App {
    let database = db.database.clone();
    let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
    let transports: Vec<Arc<dyn Transport>> = vec![sms.clone()];
    let clock = Arc::new(ManualClock::new(coffer_app::system_clock().now()));
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
                Arc::new(coffer_vault::LocalMasterKey::from_bytes([7; 32])),
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
        .with_p2p_policy(policy);
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

struct Customer {
    phone: String,
    bearer: String,
}

impl App {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (
            status,
            response.json().await.unwrap_or(Value::Null),
            headers,
        )
    }

    async fn post(&self, who: &Customer, key: &str, path: &str, body: Value) -> (u16, Value) {
        let (status, body, _) = self
            .send(
                Method::POST,
                path,
                &[("Authorization", &who.bearer), ("Idempotency-Key", key)],
                Some(body),
            )
            .await;
        (status, body)
    }

    async fn get(&self, who: &Customer, path: &str) -> (u16, Value) {
        let (status, body, _) = self
            .send(Method::GET, path, &[("Authorization", &who.bearer)], None)
            .await;
        (status, body)
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
        let (status, started, _) = self
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
        let (status, registered, _) = self
            .send(
                Method::POST,
                &format!("/v1/auth/registrations/{id}/complete"),
                &[],
                Some(json!({"code": code, "password": PASSWORD, "display_name": name, "accept_terms": "2026-11"})),
            )
            .await;
        assert_eq!(status, 201, "{registered}");
        Customer {
            phone: phone.to_string(),
            bearer: format!(
                "Bearer {}",
                registered["session"]["token"].as_str().expect("token")
            ),
        }
    }

    /// Tops the wallet up through the card network simulator, callback and all.
    async fn top_up(&self, who: &Customer, amount: i64) {
        let (status, card) = self
            .post(
                who,
                &format!("card-{}", who.phone),
                "/v1/me/cards",
                json!({"number": "4111 1111 1111 1111", "expiry_month": 12, "expiry_year": 2035, "cvv": "123", "funding": "debit"}),
            )
            .await;
        assert!(status == 201 || status == 200, "{card}");
        let card_id = card["id"].as_str().expect("card id").to_string();
        let (status, top_up) = self
            .post(
                who,
                &format!("tu-{}-{amount}", who.phone),
                "/v1/me/top-ups",
                json!({"amount": amount, "currency": "CNY", "card_id": card_id}),
            )
            .await;
        assert_eq!(status, 201, "{top_up}");
        crate::support::deliver_simulated_callbacks(&self.client, &self.base, &self.state).await;
    }

    async fn balance(&self, who: &Customer) -> i64 {
        let (status, me) = self.get(who, "/v1/me").await;
        assert_eq!(status, 200, "{me}");
        me["wallets"][0]["balances"]["posted"].as_i64().unwrap_or(0)
    }

    async fn fee_income(&self) -> i64 {
        let reader = self.state.reader.clone();
        tokio::task::spawn_blocking(move || {
            let id = coffer_core::Identifier::parse(coffer_payments::p2p::FEE_INCOME_ACCOUNT)
                .expect("id");
            reader.account(&id).expect("read").map_or(0, |a| a.posted())
        })
        .await
        .expect("join")
    }

    async fn quote(&self, who: &Customer, key: &str, payee: &str, amount: i64) -> (u16, Value) {
        self.post(
            who,
            key,
            "/v1/me/p2p/quotes",
            json!({"payee": payee, "amount": amount, "currency": "CNY"}),
        )
        .await
    }

    /// Confirms `quote` as quoted, with an optional step-up challenge.
    async fn confirm(
        &self,
        who: &Customer,
        key: &str,
        quote: &Value,
        challenge: Option<&str>,
    ) -> (u16, Value) {
        let mut body = json!({"quote_id": quote["id"], "amount": quote["amount"], "fee": quote["fee"], "currency": "CNY"});
        if let Some(challenge) = challenge {
            body["step_up_challenge_id"] = json!(challenge);
        }
        self.post(who, key, "/v1/me/p2p/payments", body).await
    }

    /// A verified step-up challenge for the quote's operation.
    async fn step_up(&self, who: &Customer, key: &str, quote: &Value) -> String {
        let (status, challenge) = self
            .post(
                who,
                &format!("{key}-start"),
                "/v1/me/step-up",
                json!({"operation": quote["step_up"]["operation"], "amount": quote["step_up"]["amount"], "currency": "CNY", "payee": quote["step_up"]["payee"], "method": "code"}),
            )
            .await;
        assert_eq!(status, 201, "{challenge}");
        let id = challenge["challenge_id"].as_str().expect("id").to_string();
        let code = self.code_for(&who.phone).await;
        let (status, verified) = self
            .post(
                who,
                &format!("{key}-verify"),
                &format!("/v1/me/step-up/{id}/verify"),
                json!({"code": code}),
            )
            .await;
        assert_eq!(status, 200, "{verified}");
        id
    }

    /// Quote and confirm, with a step-up when the quote asks for one.
    async fn pay(&self, who: &Customer, key: &str, payee: &str, amount: i64) -> (u16, Value) {
        let (status, quote) = self.quote(who, &format!("{key}-q"), payee, amount).await;
        if status != 201 {
            return (status, quote);
        }
        let challenge = if quote["step_up_required"] == json!(true) {
            Some(self.step_up(who, key, &quote).await)
        } else {
            None
        };
        self.confirm(who, key, &quote, challenge.as_deref()).await
    }

    async fn verify_ledger(&self) {
        let reader = self.state.reader.clone();
        let report = tokio::task::spawn_blocking(move || {
            coffer_app::verify(reader.as_ref(), &mut |_| {}).expect("verify")
        })
        .await
        .expect("join");
        assert!(report.is_clean(), "{:?}", report.violations);
    }
}

fn error_of(body: &Value) -> (Option<&str>, Option<&str>) {
    (
        body["error"]["code"].as_str(),
        body["error"]["field"].as_str(),
    )
}

async fn payments_and_refusals(app: &App) {
    let zhang = app.customer("+8613900139001", "张小明").await;
    let john = app.customer("+8613900139002", "John Doe").await;
    let li = app.customer("+8613900139003", "李四").await;
    app.top_up(&zhang, 150_000).await;
    assert_eq!(app.balance(&zhang).await, 150_000);

    // Handles: set once, unique without regard to case.
    let (status, body) = app
        .post(&john, "h-1", "/v1/me/handle", json!({"handle": "JohnD"}))
        .await;
    assert_eq!((status, &body["handle"]), (200, &json!("johnd")), "{body}");
    let (status, body) = app
        .post(&li, "h-2", "/v1/me/handle", json!({"handle": "johnd"}))
        .await;
    assert_eq!((status, error_of(&body).0), (409, Some("handle_taken")));
    let (status, body) = app
        .post(&john, "h-3", "/v1/me/handle", json!({"handle": "other"}))
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (409, Some("handle_already_set"))
    );
    let (status, body) = app
        .post(&li, "h-4", "/v1/me/handle", json!({"handle": "9lives"}))
        .await;
    assert_eq!(error_of(&body), (Some("invalid_field"), Some("handle")));
    assert_eq!(status, 422);
    let (status, body) = app.get(&john, "/v1/me/handle").await;
    assert_eq!((status, &body["handle"]), (200, &json!("johnd")));

    // Look-ups show a masked name only; unknown, self and malformed payees.
    for (i, payee) in ["@JOHND", "+86 139 0013 9002"].into_iter().enumerate() {
        let (status, body) = app
            .post(
                &zhang,
                &format!("lk-{i}"),
                "/v1/me/p2p/lookups",
                json!({"payee": payee}),
            )
            .await;
        assert_eq!(
            (status, &body["name_masked"]),
            (200, &json!("J*** D**")),
            "{body}"
        );
    }
    let (status, body) = app
        .post(
            &zhang,
            "lk-a",
            "/v1/me/p2p/lookups",
            json!({"payee": "+8613900139999"}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (404, (Some("payee_not_found"), Some("payee")))
    );
    let (status, body) = app
        .post(
            &zhang,
            "lk-b",
            "/v1/me/p2p/lookups",
            json!({"payee": "+8613900139001"}),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (422, Some("self_payment")));
    let (status, body) = app
        .post(
            &zhang,
            "lk-c",
            "/v1/me/p2p/lookups",
            json!({"payee": "13900139002"}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("payee")))
    );

    // A quote: new payee above the exemption, so a step-up; the first
    // payment of the month is free.
    let (status, quote) = app
        .post(
            &zhang,
            "q-1",
            "/v1/me/p2p/quotes",
            json!({"payee": "@johnd", "amount": 10_000, "currency": "CNY", "note": "dinner 🍜"}),
        )
        .await;
    assert_eq!(status, 201, "{quote}");
    assert_eq!(quote["payee_name_masked"], "J*** D**");
    assert_eq!(
        (quote["fee"].as_i64(), quote["total"].as_i64()),
        (Some(0), Some(10_000))
    );
    assert_eq!(quote["fee_waiver"], "monthly_free_quota");
    assert_eq!(quote["step_up_required"], true);
    assert!(quote["step_up"]["payee"]
        .as_str()
        .expect("payee")
        .starts_with("quote:"));

    // The confirmation must match the quote.
    let mut wrong = json!({"quote_id": quote["id"], "amount": 10_001, "fee": 0, "currency": "CNY"});
    let (status, body) = app
        .post(&zhang, "p-x1", "/v1/me/p2p/payments", wrong.clone())
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("quote_mismatch"), Some("amount")))
    );
    wrong["amount"] = json!(10_000);
    wrong["fee"] = json!(5);
    let (status, body) = app.post(&zhang, "p-x2", "/v1/me/p2p/payments", wrong).await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("quote_mismatch"), Some("fee")))
    );
    // Another customer's quote does not exist for them.
    let (status, body) = app.confirm(&li, "p-x3", &quote, None).await;
    assert_eq!((status, error_of(&body).0), (404, Some("not_found")));

    // Step-up missing, then a challenge for another operation, then the right one.
    let (status, body) = app.confirm(&zhang, "p-1", &quote, None).await;
    assert_eq!(
        (status, error_of(&body).0),
        (403, Some("step_up_required")),
        "{body}"
    );
    let mut other = quote.clone();
    other["step_up"]["amount"] = json!(9_999);
    let wrong_challenge = app.step_up(&zhang, "su-wrong", &other).await;
    let (status, body) = app
        .confirm(&zhang, "p-2", &quote, Some(&wrong_challenge))
        .await;
    assert_eq!((status, error_of(&body).0), (403, Some("step_up_required")));
    let challenge = app.step_up(&zhang, "su-1", &quote).await;
    let (status, paid) = app.confirm(&zhang, "p-3", &quote, Some(&challenge)).await;
    assert_eq!(status, 201, "{paid}");
    assert_eq!(paid["status"], "succeeded");
    assert_eq!(paid["direction"], "sent");
    assert_eq!(paid["counterparty_name_masked"], "J*** D**");
    assert!(paid.get("note").is_none(), "{paid}");
    let (_, shown) = app
        .get(
            &zhang,
            &format!("/v1/me/p2p/payments/{}", paid["id"].as_str().expect("id")),
        )
        .await;
    assert_eq!(shown["note"], "dinner 🍜");
    assert_eq!(app.balance(&zhang).await, 140_000);
    assert_eq!(app.balance(&john).await, 10_000);
    // A replay answers the same payment; the quote is used up.
    let (status, replay, headers) = app
        .send(
            Method::POST,
            "/v1/me/p2p/payments",
            &[("Authorization", &zhang.bearer), ("Idempotency-Key", "p-3")],
            Some(json!({"quote_id": quote["id"], "amount": 10_000, "fee": 0, "currency": "CNY", "step_up_challenge_id": challenge})),
        )
        .await;
    assert_eq!((status, &replay["id"]), (201, &paid["id"]));
    assert_eq!(
        headers.get("idempotent-replayed").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let (status, body) = app.confirm(&zhang, "p-4", &quote, Some(&challenge)).await;
    assert_eq!((status, error_of(&body).0), (409, Some("quote_used")));
    // The payee sees it received, without the fee, with the payer's masked name.
    let (status, list) = app.get(&john, "/v1/me/p2p/payments").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["direction"], "received");
    assert_eq!(list["data"][0]["counterparty_name_masked"], "张*明");
    // A used challenge does not pass a second payment.
    let (status, again) = app.quote(&zhang, "q-2", "@johnd", 10_000).await;
    assert_eq!(status, 201);
    assert_eq!(again["step_up_required"], false, "a known payee: {again}");
    let (status, big) = app.quote(&zhang, "q-3", "@johnd", 50_000).await;
    assert_eq!((status, &big["step_up_required"]), (201, &json!(true)));
    let (status, body) = app.confirm(&zhang, "p-5", &big, Some(&challenge)).await;
    assert_eq!((status, error_of(&body).0), (403, Some("step_up_required")));

    // A known payee below the threshold: no step-up; the free quota is used: 1 %.
    assert_eq!(again["fee"], 100);
    let (status, paid) = app.confirm(&zhang, "p-6", &again, None).await;
    assert_eq!((status, &paid["fee"]), (201, &json!(100)), "{paid}");
    assert_eq!(app.balance(&zhang).await, 129_900);
    assert_eq!(app.fee_income().await, 100);

    // A small payment to a new payee is exempt (within the day's caps).
    let (status, small) = app.quote(&zhang, "q-4", "+8613900139003", 3_000).await;
    assert_eq!(
        (status, &small["step_up_required"], &small["fee"]),
        (201, &json!(false), &json!(30))
    );
    let (status, paid) = app.confirm(&zhang, "p-7", &small, None).await;
    assert_eq!(status, 201, "{paid}");
    // The day's exempt total (7,000) then leaves too little for 5,000 more
    // to a new payee: that needs a step-up.
    let _wang = app.customer("+8613900139005", "Wang Wu").await;
    let (status, small) = app.quote(&zhang, "q-5", "+8613900139005", 5_000).await;
    assert_eq!(
        (status, &small["step_up_required"]),
        (201, &json!(true)),
        "{small}"
    );

    // Insufficient funds: nothing moves, the payment is recorded failed, and
    // its reservations (limits, exemption, the free quota) come back.
    assert_eq!(app.balance(&li).await, 3_000);
    let (status, body) = app.pay(&li, "p-8", "@johnd", 3_001).await;
    assert_eq!(
        (status, error_of(&body).0),
        (422, Some("insufficient_funds")),
        "{body}"
    );
    assert_eq!(app.balance(&li).await, 3_000);
    let (_, list) = app.get(&li, "/v1/me/p2p/payments").await;
    let sent = list["data"]
        .as_array()
        .expect("payments")
        .iter()
        .find(|p| p["direction"] == "sent")
        .expect("the failed payment")
        .clone();
    assert_eq!(
        (&sent["status"], &sent["reason"]),
        (&json!("failed"), &json!("insufficient_funds"))
    );
    // The history says the same at once: failed with its reason, a transfer;
    // the payee never sees a payment that did not happen.
    let (_, history) = app.get(&li, "/v1/me/activity?type=p2p_transfer").await;
    let rows: Vec<&Value> = history["data"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["direction"] == "out")
        .collect();
    assert_eq!(rows.len(), 1, "{history}");
    assert_eq!(
        (
            &rows[0]["status"],
            &rows[0]["reason"],
            &rows[0]["category"],
            &rows[0]["direction"]
        ),
        (
            &json!("failed"),
            &json!("insufficient_funds"),
            &json!("transfers"),
            &json!("out")
        ),
        "{history}"
    );
    // John's history: every payment received, with the payer's masked name.
    let (_, history) = app.get(&john, "/v1/me/activity?type=p2p_transfer").await;
    let rows = history["data"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{history}");
    assert!(
        rows.iter().all(|r| r["direction"] == "in"
            && r["status"] == "succeeded"
            && r["counterparty"] == "张*明"
            && r["fee"] == 0),
        "{history}"
    );
    // Zhang's: sent, with the fee.
    let (_, history) = app.get(&zhang, "/v1/me/activity?type=p2p_transfer").await;
    let mut fees: Vec<i64> = history["data"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["fee"].as_i64())
        .collect();
    // The test clock stands still: equal times, so the order is the ids'.
    fees.sort_unstable();
    assert_eq!(fees, [0, 30, 100], "{history}");
    let (status, quote) = app.quote(&li, "q-li", "@johnd", 3_000).await;
    assert_eq!(
        (status, &quote["fee"], &quote["step_up_required"]),
        (201, &json!(0), &json!(false)),
        "{quote}"
    );
    let (status, body) = app.confirm(&li, "p-9", &quote, None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.balance(&li).await, 0);

    // Per payment (quote and confirmation), payee balance cap, daily limit.
    let (status, body) = app.quote(&zhang, "q-6", "@johnd", 60_001).await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("limit_exceeded"), Some("amount")))
    );
    let rich = app.customer("+8613900139004", "Rich Guy").await;
    app.top_up(&rich, 199_000).await;
    let (status, body) = app.pay(&zhang, "p-10", "+8613900139004", 1_001).await;
    assert_eq!(
        (status, error_of(&body).0),
        (422, Some("limit_exceeded")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("payee_balance_cap"),
        "{body}"
    );
    // Used today: 10,000 + 10,000 + 3,000 = 23,000 of 100,000.
    let (status, body) = app.pay(&zhang, "p-11", "@johnd", 55_000).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app.pay(&zhang, "p-12", "@johnd", 22_001).await;
    assert_eq!(
        (status, error_of(&body).0),
        (422, Some("limit_exceeded")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("daily"),
        "{body}"
    );
    let (status, body) = app.pay(&zhang, "p-13", "@johnd", 22_000).await;
    assert_eq!(status, 201, "{body}");

    // Two quotes count on the same free payment: the second confirmation
    // finds it used and is refused, since its fee would differ.
    let (_, first) = app.quote(&john, "q-8", "+8613900139001", 500).await;
    let (_, second) = app.quote(&john, "q-9", "+8613900139001", 500).await;
    assert_eq!(
        (&first["fee_waiver"], &second["fee_waiver"]),
        (&json!("monthly_free_quota"), &json!("monthly_free_quota"))
    );
    let (status, body) = app.confirm(&john, "p-15", &first, None).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app.confirm(&john, "p-16", &second, None).await;
    assert_eq!(
        (status, error_of(&body).0),
        (409, Some("quote_changed")),
        "{body}"
    );

    // A quote expires.
    let (status, quote) = app.quote(&john, "q-7", "+8613900139001", 1_000).await;
    assert_eq!(status, 201);
    app.clock.advance_millis(601_000);
    let (status, body) = app.confirm(&john, "p-14", &quote, None).await;
    assert_eq!((status, error_of(&body).0), (422, Some("quote_expired")));

    // Notes are personal data: nowhere in the database in clear (SQLite:
    // the file and its WAL), also not in stored idempotent responses.
    if let coffer_store::Database::Sqlite(path) = &app._db.database {
        for file in [path.clone(), path.with_extension("db-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            let secret = "dinner";
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in clear in {}",
                file.display()
            );
        }
    }

    // Books: each wallet as paid, fees in the fee income account, ledger clean.
    assert_eq!(
        app.balance(&zhang).await,
        150_000 - 10_000 - 10_100 - 3_030 - 55_500 - 22_220 + 500
    );
    assert_eq!(
        app.balance(&john).await,
        10_000 + 10_000 + 3_000 + 55_000 + 22_000 - 500
    );
    assert_eq!(app.fee_income().await, 100 + 30 + 500 + 220);
    app.verify_ledger().await;
}

async fn requests_and_splits(app: &App) {
    let zhang = app.customer("+8613900139011", "张小明").await;
    let john = app.customer("+8613900139012", "John Doe").await;
    let li = app.customer("+8613900139013", "李四").await;
    app.top_up(&john, 50_000).await;

    // An equal split of 100.01 among John, Li and the organizer.
    let (status, group) = app
        .post(
            &zhang,
            "r-1",
            "/v1/me/payment-requests",
            json!({"currency": "CNY", "split": "equal", "total": 10_001, "include_me": true, "note": "hotpot",
                   "payers": [{"payer": "+8613900139012"}, {"payer": "+8613900139013"}]}),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    assert_eq!(group["mode"], "equal");
    let amounts: Vec<i64> = group["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| r["amount"].as_i64().expect("amount"))
        .collect();
    assert_eq!(amounts, vec![3_334, 3_334]);
    assert_eq!(group["requests"][0]["payer_name_masked"], "J*** D**");
    let group_id = group["id"].as_str().expect("id").to_string();
    let john_request = group["requests"][0]["id"].as_str().expect("id").to_string();
    let li_request = group["requests"][1]["id"].as_str().expect("id").to_string();

    // John sees it, quotes it twice, pays it once.
    let (status, incoming) = app.get(&john, "/v1/me/incoming-payment-requests").await;
    assert_eq!(status, 200);
    assert_eq!(incoming["data"][0]["status"], "open");
    assert_eq!(incoming["data"][0]["organizer_name_masked"], "张*明");
    assert_eq!(incoming["data"][0]["note"], "hotpot");
    let quote_of = |key: &'static str, id: String| {
        let john = &john;
        async move {
            app.post(john, key, "/v1/me/p2p/quotes", json!({"request_id": id}))
                .await
        }
    };
    let (status, first) = quote_of("rq-1", john_request.clone()).await;
    assert_eq!((status, &first["amount"]), (201, &json!(3_334)), "{first}");
    assert_eq!(first["payee_name_masked"], "张*明");
    let (status, second) = quote_of("rq-2", john_request.clone()).await;
    assert_eq!(status, 201);
    let (status, paid) = app.confirm(&john, "rp-1", &first, None).await;
    assert_eq!(status, 201, "{paid}");
    assert_eq!(paid["request_id"], json!(john_request));
    // Paid twice: refused.
    let (status, body) = app.confirm(&john, "rp-2", &second, None).await;
    assert_eq!(
        (status, error_of(&body).0),
        (409, Some("request_not_open")),
        "{body}"
    );
    let (status, body) = quote_of("rq-3", john_request.clone()).await;
    assert_eq!((status, error_of(&body).0), (409, Some("request_not_open")));
    assert_eq!(app.balance(&zhang).await, 3_334);

    // Li declines (twice is fine); a declined request cannot be paid.
    let decline = format!("/v1/me/incoming-payment-requests/{li_request}/decline");
    let (status, body) = app.post(&li, "d-1", &decline, json!({})).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("declined")),
        "{body}"
    );
    let (status, _) = app.post(&li, "d-2", &decline, json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = app
        .post(
            &li,
            "rq-4",
            "/v1/me/p2p/quotes",
            json!({"request_id": li_request}),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (409, Some("request_not_open")));
    // Not Zhang's to decline.
    let (status, _) = app.post(&zhang, "d-3", &decline, json!({})).await;
    assert_eq!(status, 404);

    // The organizer sees who has paid.
    let (status, view) = app
        .get(&zhang, &format!("/v1/me/payment-requests/{group_id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (view["paid_count"].as_i64(), view["paid_amount"].as_i64()),
        (Some(1), Some(3_334))
    );
    assert_eq!(view["requests"][0]["status"], "paid");
    assert_eq!(view["requests"][1]["status"], "declined");
    let (status, _) = app
        .get(&john, &format!("/v1/me/payment-requests/{group_id}"))
        .await;
    assert_eq!(status, 404);

    // Request money (each payer's amount), expiring after a minute.
    let (status, group) = app
        .post(
            &zhang,
            "r-2",
            "/v1/me/payment-requests",
            json!({"currency": "CNY", "expires_in_seconds": 60, "payers": [{"payer": "+8613900139012", "amount": 1_500}]}),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let request = group["requests"][0]["id"].as_str().expect("id").to_string();
    let (status, quote) = quote_of("rq-5", request.clone()).await;
    assert_eq!(status, 201);
    app.clock.advance_millis(61_000);
    let (status, body) = app.confirm(&john, "rp-3", &quote, None).await;
    assert_eq!(
        (status, error_of(&body).0),
        (409, Some("request_not_open")),
        "{body}"
    );
    let (_, incoming) = app.get(&john, "/v1/me/incoming-payment-requests").await;
    let seen = incoming["data"]
        .as_array()
        .expect("requests")
        .iter()
        .find(|r| r["id"] == json!(request))
        .expect("the request");
    assert_eq!(seen["status"], "expired");
    let (status, body) = app
        .post(
            &john,
            "d-4",
            &format!("/v1/me/incoming-payment-requests/{request}/decline"),
            json!({}),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (409, Some("request_not_open")));

    // Custom shares must sum to the total exactly; no self, no duplicates.
    for (key, body, field) in [
        (
            "r-3",
            json!({"currency": "CNY", "split": "custom", "total": 1_000, "payers": [{"payer": "+8613900139012", "amount": 400}, {"payer": "+8613900139013", "amount": 500}]}),
            "shares",
        ),
        (
            "r-4",
            json!({"currency": "CNY", "payers": [{"payer": "+8613900139012", "amount": 400}, {"payer": "+86 139 0013 9012", "amount": 500}]}),
            "payers",
        ),
        (
            "r-5",
            json!({"currency": "CNY", "split": "equal", "total": 1, "payers": [{"payer": "+8613900139012"}, {"payer": "+8613900139013"}]}),
            "total",
        ),
        ("r-6", json!({"currency": "CNY", "payers": []}), "payers"),
    ] {
        let (status, answer) = app.post(&zhang, key, "/v1/me/payment-requests", body).await;
        assert_eq!(
            (status, error_of(&answer)),
            (422, (Some("invalid_field"), Some(field))),
            "{key}: {answer}"
        );
    }
    let (status, body) = app
        .post(
            &zhang,
            "r-7",
            "/v1/me/payment-requests",
            json!({"currency": "CNY", "payers": [{"payer": "+8613900139011", "amount": 5}]}),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (422, Some("self_payment")));
    let (status, group) = app
        .post(&zhang, "r-8", "/v1/me/payment-requests", json!({"currency": "CNY", "split": "custom", "total": 1_000, "my_share": 100,
            "payers": [{"payer": "+8613900139012", "amount": 400}, {"payer": "+8613900139013", "amount": 500}]}))
        .await;
    assert_eq!((status, &group["total"]), (201, &json!(1_000)), "{group}");

    // Payers were told (through the outbox, encrypted until delivery).
    let customers = app.customers.clone();
    tokio::task::spawn_blocking(move || customers.dispatcher.run_once())
        .await
        .expect("join")
        .expect("dispatch");
    let told = app.sms.to("+8613900139013");
    assert!(
        told.iter()
            .any(|m| m.body.expose().contains("asks you to pay CNY 33.34")),
        "{} messages",
        told.len()
    );
    app.verify_ledger().await;
}

/// Look-ups are throttled per customer.
async fn lookups_are_throttled(app: &App) {
    let prober = app.customer("+8613900139021", "Pro Ber").await;
    let mut refused = None;
    for i in 0..70 {
        let (status, body) = app
            .post(
                &prober,
                &format!("probe-{i}"),
                "/v1/me/p2p/lookups",
                json!({"payee": format!("+86139001{:05}", 40_000 + i)}),
            )
            .await;
        if status == 429 {
            assert_eq!(error_of(&body).0, Some("too_many_lookups"));
            refused = Some(i);
            break;
        }
        assert_eq!(status, 404, "{body}");
    }
    assert_eq!(refused, Some(60));
    // A replay answers from storage: still the first answer, nothing spent.
    let (status, body) = app
        .post(
            &prober,
            "probe-0",
            "/v1/me/p2p/lookups",
            json!({"payee": "+8613900140000"}),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (404, Some("payee_not_found")));
}

/// Look-ups are throttled per client address too: two accounts probing
/// from one address share its budget (10 an hour here), whether they look
/// up, quote or split.
async fn lookups_are_throttled_per_address(app: &App) {
    let first = app.customer("+8613900139041", "First Prober").await;
    let second = app.customer("+8613900139042", "Second Prober").await;
    for i in 0..6 {
        let (status, body) = app
            .post(
                &first,
                &format!("ip-a-{i}"),
                "/v1/me/p2p/lookups",
                json!({"payee": format!("+86139001{:05}", 50_000 + i)}),
            )
            .await;
        assert_eq!(status, 404, "{body}");
    }
    // Two by quotes (the look-up inside a quote counts), then two more.
    for i in 0..2 {
        let (status, body) = app
            .quote(&second, &format!("ip-q-{i}"), "+8613900139041", 100)
            .await;
        assert_eq!(status, 201, "{body}");
    }
    for i in 0..2 {
        let (status, body) = app
            .post(
                &second,
                &format!("ip-b-{i}"),
                "/v1/me/p2p/lookups",
                json!({"payee": "+8613900139041"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // The eleventh from this address: refused, for both customers, though
    // neither has used a quarter of their own 60.
    for (who, key) in [(&second, "ip-b-x"), (&first, "ip-a-x")] {
        let (status, body) = app
            .post(
                who,
                key,
                "/v1/me/p2p/lookups",
                json!({"payee": "+8613900139041"}),
            )
            .await;
        assert_eq!(
            (status, error_of(&body).0),
            (429, Some("too_many_lookups")),
            "{body}"
        );
    }
}

fn per_address_policy() -> P2pPolicy {
    P2pPolicy {
        lookups_per_ip_per_hour_max: 10,
        ..test_policy()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_lookups_are_throttled_per_address_on_sqlite() {
    lookups_are_throttled_per_address(
        &spawn_app_with(TestDatabase::sqlite(), per_address_policy()).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_lookups_are_throttled_per_address_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("postgres");
    lookups_are_throttled_per_address(&spawn_app_with(db, per_address_policy()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_payments_on_sqlite() {
    let app = spawn_app(TestDatabase::sqlite()).await;
    payments_and_refusals(&app).await;
    lookups_are_throttled(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_payments_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("postgres");
    let app = spawn_app(db).await;
    payments_and_refusals(&app).await;
    lookups_are_throttled(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_requests_and_splits_on_sqlite() {
    requests_and_splits(&spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_requests_and_splits_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("postgres");
    requests_and_splits(&spawn_app(db).await).await;
}

/// Six payments of 40,000 at once against 99,000 left of the daily limit:
/// exactly two pass, whatever the interleaving.
async fn concurrent_payments(app: App) {
    let payer = app.customer("+8613900139031", "Con Current").await;
    let payee = app.customer("+8613900139032", "Pay Ee").await;
    app.top_up(&payer, 199_000).await;
    let (status, body) = app.pay(&payer, "c-0", "+8613900139032", 1_000).await;
    assert_eq!(status, 201, "{body}");
    let mut quotes = Vec::new();
    for i in 0..6 {
        let (status, quote) = app
            .quote(&payer, &format!("c-q{i}"), "+8613900139032", 40_000)
            .await;
        assert_eq!(
            (status, &quote["step_up_required"]),
            (201, &json!(false)),
            "{quote}"
        );
        quotes.push(quote);
    }
    let app = Arc::new(app);
    let payer = Arc::new(payer);
    let tasks: Vec<_> = quotes
        .into_iter()
        .enumerate()
        .map(|(i, quote)| {
            let (app, payer) = (app.clone(), payer.clone());
            tokio::spawn(async move { app.confirm(&payer, &format!("cc-{i}"), &quote, None).await })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        let (status, body) = task.await.expect("join");
        match status {
            201 => passed += 1,
            422 => assert_eq!(error_of(&body).0, Some("limit_exceeded"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(passed, 2);
    assert_eq!(app.balance(&payee).await, 81_000);
    app.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_concurrent_payments_cannot_pass_the_daily_limit_on_sqlite() {
    concurrent_payments(spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_concurrent_payments_cannot_pass_the_daily_limit_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("postgres");
    concurrent_payments(spawn_app(db).await).await;
}
