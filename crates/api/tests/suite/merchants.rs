//! Merchants over HTTP, black-box: the real app on port 0 over SQLite and
//! PostgreSQL; onboarding and review, QR codes (payload, PNG, decode),
//! payments by QR, payment code and checkout, signed webhooks received by a
//! real HTTP endpoint in this test, refunds (also concurrent), and daily
//! settlement paid out through the simulated core banking system. The
//! app's clock runs at real time plus an offset the test can move, so a
//! day can end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use coffer_api::{AppState, CustomerServices};
use coffer_app::Engine;
use coffer_core::{Clock, CurrencyRegistry, Timestamp};
use coffer_identity::{PasswordPolicy, Policy, Role, TierLimits, Tiers};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_payments::{FundingPolicy, MerchantPolicy, SignedCallback};
use coffer_testkit::TestDatabase;
use coffer_vault::LocalMasterKey;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "plum blossoms in snow";
const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// Real time plus an offset the test moves forward.
struct OffsetClock(AtomicI64);

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let real = coffer_app::system_clock().now().as_nanos();
        Timestamp::from_nanos(real + self.0.load(Ordering::SeqCst))
    }
}

struct App {
    base: String,
    sms: Arc<SimulatedTransport>,
    customers: Arc<CustomerServices>,
    state: AppState,
    clock: Arc<OffsetClock>,
    client: reqwest::Client,
    _db: TestDatabase,
}

fn tiers() -> Tiers {
    let tier = TierLimits {
        balance_cap: 1_000_000,
        per_payment: 200_000,
        daily: 500_000,
        monthly: 1_000_000,
    };
    Tiers([tier, tier, tier])
}

fn merchant_policy() -> MerchantPolicy {
    MerchantPolicy {
        payment_step_up_threshold: 50_000,
        payment_code_lifetime_ms: 2_000,
        payment_code_failures_per_minute_max: 3,
        resolve_after_ms: 0,
        // Cafés (MCC 5814) pay the table's 0.38 %, at most CNY 2.00 a day.
        fees: coffer_payments::FeeSchedule::default()
            .with_discount(
                coffer_payments::DiscountScope::Mcc("5814".into()),
                coffer_payments::DiscountRule {
                    percent_bps: 38,
                    minimum: 0,
                    maximum: Some(200),
                },
            )
            .expect("discount rule"),
        payout_retry_base_ms: 60_000,
        payout_attempts_max: 2,
        // The test's receiver listens on 127.0.0.1 over http.
        webhook_allow_loopback: true,
        ..MerchantPolicy::default()
    }
}

async fn spawn_app(db: TestDatabase) -> App {
    let database = db.database.clone();
    let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
    let transports: Vec<Arc<dyn Transport>> = vec![sms.clone()];
    let clock = Arc::new(OffsetClock(AtomicI64::new(0)));
    let app_clock: Arc<dyn Clock> = clock.clone();
    let (state, customers) = tokio::task::spawn_blocking(move || {
        let engine = Arc::new(Engine::start(&database, app_clock.clone()).expect("engine"));
        let reader = database.open_reader(4).expect("reader");
        let service: Arc<dyn coffer_store::service::ServiceStore> =
            Arc::from(coffer_store::service::open(&database, 4).expect("service"));
        let customers = Arc::new(
            CustomerServices::open(
                &database,
                app_clock.clone(),
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
            app_clock,
            &customers,
        )
        .with_funding_policy(FundingPolicy {
            status_query_after_ms: 0,
            ..FundingPolicy::default()
        })
        .with_merchant_policy(merchant_policy());
        state.funding.open_accounts().expect("funding accounts");
        state.merchants.open_accounts().expect("merchant accounts");
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

/// A merchant's webhook endpoint: records each request's signature and body.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink = received.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let signature = headers
                    .get("coffer-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                sink.lock().expect("lock").push((signature, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    (url, received)
}

impl App {
    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, Vec<u8>) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.bytes().await.expect("body").to_vec())
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut all = headers.to_vec();
        all.push(("content-type", "application/json"));
        let (status, bytes) = self
            .send_raw(method, path, &all, body.map(|b| b.to_string().into_bytes()))
            .await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
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

    async fn get_text(&self, bearer: &str, path: &str) -> (u16, String) {
        let (status, bytes) = self
            .send_raw(Method::GET, path, &[("Authorization", bearer)], None)
            .await;
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn dispatch(&self) {
        let customers = self.customers.clone();
        tokio::task::spawn_blocking(move || customers.dispatcher.run_once())
            .await
            .expect("join")
            .expect("dispatch");
    }

    async fn customer(&self, phone: &str) -> (String, String) {
        let (status, started) = self
            .send(
                Method::POST,
                "/v1/auth/registrations",
                &[("Idempotency-Key", phone)],
                Some(json!({"contact": phone})),
            )
            .await;
        assert_eq!(status, 202, "{started}");
        self.dispatch().await;
        let code = self.sms.last_code(phone).expect("a code was sent");
        let id = started["registration_id"].as_str().expect("id");
        let (status, registered) = self
            .send(
                Method::POST,
                &format!("/v1/auth/registrations/{id}/complete"),
                &[],
                Some(json!({"code": code, "password": PASSWORD, "display_name": "Shopper", "accept_terms": "2026-11"})),
            )
            .await;
        assert_eq!(status, 201, "{registered}");
        (
            registered["customer"]["id"]
                .as_str()
                .expect("id")
                .to_string(),
            format!(
                "Bearer {}",
                registered["session"]["token"].as_str().expect("token")
            ),
        )
    }

    async fn callbacks(&self) -> Vec<SignedCallback> {
        let simulators = self.state.connectors.simulators.clone();
        tokio::task::spawn_blocking(move || {
            simulators
                .iter()
                .flat_map(|s| s.take_due(i64::MAX).expect("callbacks"))
                .collect()
        })
        .await
        .expect("join")
    }

    async fn deliver_all(&self) {
        for callback in self.callbacks().await {
            let path = coffer_api::connector_tasks::webhook_path(callback.connector);
            let response = self
                .client
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .header("Coffer-Signature", &callback.signature)
                .body(callback.body.clone())
                .send()
                .await
                .expect("send");
            assert_eq!(response.status().as_u16(), 200);
        }
    }

    /// Tops the customer's wallet up by card, through the simulator.
    async fn fund(&self, bearer: &str, amount: i64) {
        let (status, card) = self
            .post(
                bearer,
                &format!("card-{}", &bearer[bearer.len() - 16..]),
                "/v1/me/cards",
                json!({"number": "4111 1111 1111 1111", "expiry_month": 12, "expiry_year": 2035, "cvv": "123", "funding": "debit"}),
            )
            .await;
        assert!(status == 201 || status == 409, "{card}");
        let card_id = match card["id"].as_str() {
            Some(id) => id.to_string(),
            None => {
                let (_, cards) = self.get(bearer, "/v1/me/cards").await;
                cards["data"][0]["id"].as_str().expect("card").to_string()
            }
        };
        let (status, top_up) = self
            .post(
                bearer,
                &format!("tu-{}-{amount}", &bearer[bearer.len() - 16..]),
                "/v1/me/top-ups",
                json!({"amount": amount, "currency": "CNY", "card_id": card_id}),
            )
            .await;
        assert_eq!(status, 201, "{top_up}");
        self.deliver_all().await;
    }

    async fn balance(&self, bearer: &str) -> i64 {
        let (status, me) = self.get(bearer, "/v1/me").await;
        assert_eq!(status, 200, "{me}");
        me["wallets"][0]["balances"]["posted"]
            .as_i64()
            .expect("posted")
    }

    async fn account_posted(&self, account: &str) -> i64 {
        let reader = self.state.reader.clone();
        let id = coffer_core::Identifier::parse(account).expect("id");
        tokio::task::spawn_blocking(move || reader.account(&id).expect("read"))
            .await
            .expect("join")
            .map_or(0, |a| a.posted())
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

    fn now_seconds(&self) -> u64 {
        u64::try_from(self.clock.now().as_nanos() / NANOS_PER_SECOND).expect("time")
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

    /// An approved merchant with an API key: (merchant id, key bearer, owner bearer).
    async fn merchant(
        &self,
        owner_phone: &str,
        name: &str,
        mcc: &str,
        reviewer: &str,
    ) -> (String, String, String) {
        let (_, owner) = self.customer(owner_phone).await;
        let (status, applied) = self
            .post(
                &owner,
                &format!("apply-{owner_phone}"),
                "/v1/me/merchants",
                json!({"display_name": name, "city": "Shanghai", "mcc": mcc, "bank_code": "ICBC", "account_number": format!("6222{}", &owner_phone[owner_phone.len() - 8..])}),
            )
            .await;
        assert_eq!(status, 201, "{applied}");
        assert_eq!(applied["status"], "pending_review");
        let merchant_id = applied["id"].as_str().expect("id").to_string();
        let (status, reviewed) = self
            .post(
                reviewer,
                &format!("review-{merchant_id}"),
                &format!("/v1/staff/merchants/{merchant_id}/review"),
                json!({"approve": true, "note": "documents checked"}),
            )
            .await;
        assert_eq!(
            (status, &reviewed["status"]),
            (200, &json!("approved")),
            "{reviewed}"
        );
        let (status, key) = self
            .post(
                &owner,
                "key-1",
                &format!("/v1/me/merchants/{merchant_id}/api-keys"),
                json!({}),
            )
            .await;
        assert_eq!(status, 201, "{key}");
        assert_eq!(key["scope"], format!("merchant:{merchant_id}"));
        (
            merchant_id,
            format!("Bearer {}", key["api_key"].as_str().expect("key")),
            owner,
        )
    }
}

fn error_of(body: &Value) -> (Option<&str>, Option<&str>) {
    (
        body["error"]["code"].as_str(),
        body["error"]["field"].as_str(),
    )
}

async fn merchant_flows(app: &App) {
    let compliance = app.staff("kyb.officer", Role::ComplianceOfficer).await;
    let administrator = app.staff("settle.admin", Role::Administrator).await;

    // ---- onboarding ----
    let (_, owner) = app.customer("+8613900139000").await;
    let (status, body) = app
        .post(
            &owner,
            "bad-mcc",
            "/v1/me/merchants",
            json!({"display_name": "Casino", "city": "Macau", "mcc": "7995", "bank_code": "ICBC", "account_number": "6222000000000001"}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("mcc")))
    );
    let (status, pending) = app
        .post(
            &owner,
            "pending",
            "/v1/me/merchants",
            json!({"display_name": "Night Noodles", "city": "Shanghai", "mcc": "5812", "bank_code": "CMB", "account_number": "6222000000000002"}),
        )
        .await;
    assert_eq!(status, 201, "{pending}");
    let pending_id = pending["id"].as_str().expect("id").to_string();
    // Not approved yet: no API key.
    let (status, body) = app
        .post(
            &owner,
            "k",
            &format!("/v1/me/merchants/{pending_id}/api-keys"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (409, Some("merchant_not_active"))
    );
    let (status, queue) = app
        .get(&compliance, "/v1/staff/merchants?status=pending_review")
        .await;
    assert_eq!(status, 200);
    assert!(queue["data"]
        .as_array()
        .expect("list")
        .iter()
        .any(|m| m["id"] == pending_id.as_str()));
    let (status, rejected) = app
        .post(
            &compliance,
            "rej",
            &format!("/v1/staff/merchants/{pending_id}/review"),
            json!({"approve": false, "note": "no licence"}),
        )
        .await;
    assert_eq!((status, &rejected["status"]), (200, &json!("rejected")));
    let (status, body) = app
        .post(
            &compliance,
            "rej-2",
            &format!("/v1/staff/merchants/{pending_id}/review"),
            json!({"approve": true}),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (409, Some("already_reviewed")));
    // One merchant whatever its status, for the review page; none: 404.
    let (status, one) = app
        .get(&compliance, &format!("/v1/staff/merchants/{pending_id}"))
        .await;
    assert_eq!((status, &one["status"]), (200, &json!("rejected")), "{one}");
    let (status, none) = app.get(&compliance, "/v1/staff/merchants/mer_none").await;
    assert_eq!(
        (status, error_of(&none).0),
        (404, Some("not_found")),
        "{none}"
    );

    let (merchant_id, merchant, merchant_owner) = app
        .merchant("+8613900139001", "Lotus Coffee", "5814", &compliance)
        .await;
    // Never into the bank's network: private, link-local, CGNAT addresses
    // (and plain http to anything but loopback) are refused.
    for (n, url) in [
        "https://10.0.0.5/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00::1]/hook",
        "https://100.64.1.1/hook",
        "http://8.8.8.8/hook",
        "https://hooks.shop.invalid/hook",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = app
            .post(
                &merchant_owner,
                &format!("hook-bad-{n}"),
                &format!("/v1/me/merchants/{merchant_id}/webhook"),
                json!({"url": url}),
            )
            .await;
        assert_eq!(
            (status, error_of(&body)),
            (422, (Some("invalid_field"), Some("url"))),
            "{url}: {body}"
        );
    }
    let (hook_url, received) = webhook_receiver().await;
    let (status, hook) = app
        .post(
            &merchant_owner,
            "hook",
            &format!("/v1/me/merchants/{merchant_id}/webhook"),
            json!({"url": hook_url}),
        )
        .await;
    assert_eq!(status, 200, "{hook}");
    let webhook_secret = hook["secret"].as_str().expect("secret").to_string();
    assert!(webhook_secret.starts_with("whsec_"));
    // A customer's session is not a merchant key, nor is another key.
    let (status, _) = app.get(&owner, "/v1/merchant").await;
    assert_eq!(status, 401);
    let (status, profile) = app.get(&merchant, "/v1/merchant").await;
    assert_eq!((status, &profile["discount_rate_bps"]), (200, &json!(38)));

    // ---- a customer with money ----
    let (alice_id, alice) = app.customer("+8613900139100").await;
    app.fund(&alice, 300_000).await;
    assert_eq!(app.balance(&alice).await, 300_000);

    // ---- static QR: scan, preview, pay ----
    let (status, qr) = app.get(&merchant, "/v1/merchant/qr").await;
    assert_eq!(status, 200, "{qr}");
    let payload = qr["payload"].as_str().expect("payload").to_string();
    assert!(payload.starts_with("000201010211"), "{payload}");
    let (status, preview) = app
        .post(
            &alice,
            "scan",
            "/v1/me/merchant-payments/scan",
            json!({"payload": payload}),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["merchant_name"], "Lotus Coffee");
    assert_eq!(preview["initiation"], "static");
    assert_eq!(preview["category"], "food");
    // A damaged code, and something that is no code at all.
    let damaged = payload.replace("Lotus", "Lotos");
    let (status, body) = app
        .post(
            &alice,
            "scan-2",
            "/v1/me/merchant-payments/scan",
            json!({"payload": damaged}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("qr_checksum_mismatch"), Some("payload")))
    );
    let (status, body) = app
        .post(
            &alice,
            "scan-3",
            "/v1/me/merchant-payments/scan",
            json!({"payload": "https://evil.example/pay"}),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (422, Some("qr_malformed")));
    let (status, body) = app
        .post(
            &alice,
            "pay-0",
            "/v1/me/merchant-payments",
            json!({"payload": payload}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("amount")))
    );
    let pay = json!({"payload": payload, "amount": 3_800});
    let (status, paid) = app
        .post(&alice, "pay-1", "/v1/me/merchant-payments", pay.clone())
        .await;
    assert_eq!(
        (status, &paid["status"]),
        (201, &json!("succeeded")),
        "{paid}"
    );
    let (status, again) = app
        .post(&alice, "pay-1", "/v1/me/merchant-payments", pay)
        .await;
    assert_eq!((status, &again), (201, &paid));
    assert_eq!(app.balance(&alice).await, 296_200);
    let coffee = paid["id"].as_str().expect("id").to_string();

    // Step-up at or above the threshold, bound to the merchant and amount.
    let big = json!({"payload": payload, "amount": 60_000});
    let (status, body) = app
        .post(&alice, "pay-big", "/v1/me/merchant-payments", big.clone())
        .await;
    assert_eq!((status, error_of(&body).0), (403, Some("step_up_required")));
    let (status, challenge) = app
        .post(&alice, "su-1", "/v1/me/step-up", json!({"operation": "merchant_payment", "amount": 60_000, "currency": "CNY", "payee": format!("merchant:{merchant_id}"), "method": "code"}))
        .await;
    assert_eq!(status, 201, "{challenge}");
    let challenge_id = challenge["challenge_id"].as_str().expect("id").to_string();
    app.dispatch().await;
    let code = app.sms.last_code("+8613900139100").expect("code");
    let (status, _) = app
        .post(
            &alice,
            "su-2",
            &format!("/v1/me/step-up/{challenge_id}/verify"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 200);
    let mut big = big;
    big["step_up_challenge_id"] = json!(challenge_id);
    let (status, paid_big) = app
        .post(&alice, "pay-big-2", "/v1/me/merchant-payments", big.clone())
        .await;
    assert_eq!(
        (status, &paid_big["status"]),
        (201, &json!("succeeded")),
        "{paid_big}"
    );
    let (status, _) = app
        .post(&alice, "pay-big-3", "/v1/me/merchant-payments", big)
        .await;
    assert_eq!(status, 403, "a step-up is single use");
    assert_eq!(app.balance(&alice).await, 236_200);

    // ---- checkout and dynamic QR, with a signed webhook ----
    let (status, checkout) = app
        .post(
            &merchant,
            "co-1",
            "/v1/merchant/checkouts",
            json!({"amount": 2_500, "currency": "CNY", "order_reference": "A-1001", "return_url": "https://shop.example.com/done"}),
        )
        .await;
    assert_eq!(status, 201, "{checkout}");
    assert_eq!(checkout["payment"]["status"], "awaiting_customer");
    let order = checkout["payment"]["id"].as_str().expect("id").to_string();
    let dynamic = checkout["qr_payload"].as_str().expect("qr").to_string();
    assert!(
        dynamic.starts_with("000201010212") && dynamic.contains("540525.00"),
        "{dynamic}"
    );
    // The PNG of the code decodes back to the same payload, server-side.
    let (status, png) = app
        .send_raw(
            Method::GET,
            &format!("/v1/merchant/payments/{order}/qr?format=png"),
            &[("Authorization", &merchant)],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, bytes) = app
        .send_raw(
            Method::POST,
            "/v1/me/merchant-payments/scan-image",
            &[("Authorization", &alice), ("content-type", "image/png")],
            Some(png),
        )
        .await;
    let scanned: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(status, 200, "{scanned}");
    assert_eq!(scanned["payload"], dynamic.as_str());
    assert_eq!(scanned["preview"]["amount"], 2_500);
    assert_eq!(scanned["preview"]["payment_id"], order.as_str());
    let (status, body) = app
        .send_raw(
            Method::POST,
            "/v1/me/merchant-payments/scan-image",
            &[("Authorization", &alice)],
            Some(b"not a photo".to_vec()),
        )
        .await;
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!((status, error_of(&body).0), (422, Some("image_unreadable")));
    let (status, seen) = app.get(&alice, &format!("/v1/me/checkouts/{order}")).await;
    assert_eq!(
        (status, &seen["merchant_name"]),
        (200, &json!("Lotus Coffee"))
    );
    let (status, paid_order) = app
        .post(
            &alice,
            "pay-order",
            "/v1/me/merchant-payments",
            json!({"payload": dynamic}),
        )
        .await;
    assert_eq!(
        (status, &paid_order["status"]),
        (201, &json!("succeeded")),
        "{paid_order}"
    );
    assert_eq!(paid_order["id"], order.as_str());
    // Paid: nobody can pay it again.
    let (_, bob) = app.customer("+8613900139101").await;
    app.fund(&bob, 50_000).await;
    let (status, body) = app
        .post(
            &bob,
            "bob-order",
            &format!("/v1/me/checkouts/{order}/confirm"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (409, Some("payment_not_payable")),
        "{body}"
    );
    // The webhook arrives signed with the merchant's secret.
    app.dispatch().await;
    let deliveries = received.lock().expect("lock").clone();
    let event = deliveries
        .iter()
        .find(|(_, body)| body.contains(&order))
        .expect("a webhook for the order");
    let now = i64::try_from(app.now_seconds()).expect("now");
    coffer_payments::webhooks::verify(&webhook_secret, &event.0, event.1.as_bytes(), now)
        .expect("a good signature");
    let parsed: Value = serde_json::from_str(&event.1).expect("json");
    assert_eq!(parsed["type"], "payment.succeeded");
    assert_eq!(parsed["data"]["order_reference"], "A-1001");
    assert!(coffer_payments::webhooks::verify(
        &webhook_secret,
        &event.0,
        event.1.replace("2500", "25").as_bytes(),
        now
    )
    .is_err());
    assert!(
        coffer_payments::webhooks::verify("whsec_wrong", &event.0, event.1.as_bytes(), now)
            .is_err()
    );
    assert!(coffer_payments::webhooks::verify(
        &webhook_secret,
        &event.0,
        event.1.as_bytes(),
        now + 3_600
    )
    .is_err());

    // ---- customer-presented payment code ----
    let (status, shown) = app
        .post(&bob, "code-1", "/v1/me/payment-codes", json!({}))
        .await;
    assert_eq!(status, 201, "{shown}");
    let code = shown["code"].as_str().expect("code").to_string();
    assert_eq!(code.len(), 18);
    assert!(shown["qr_svg"].as_str().expect("svg").contains("<svg"));
    let charge =
        json!({"code": code, "amount": 1_200, "currency": "CNY", "order_reference": "TILL-7"});
    let (status, charged) = app
        .post(&merchant, "ch-1", "/v1/merchant/charges", charge.clone())
        .await;
    assert_eq!(
        (status, &charged["status"]),
        (201, &json!("succeeded")),
        "{charged}"
    );
    assert_eq!(charged["method"], "payment_code");
    let (status, replay) = app
        .post(&merchant, "ch-1", "/v1/merchant/charges", charge.clone())
        .await;
    assert_eq!((status, &replay), (201, &charged));
    // Single use.
    let (status, body) = app
        .post(&merchant, "ch-2", "/v1/merchant/charges", charge)
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("payment_code_invalid"), Some("code")))
    );
    // A new code replaces the old one; a code expires.
    let (_, first) = app
        .post(&bob, "code-2", "/v1/me/payment-codes", json!({}))
        .await;
    let (_, second) = app
        .post(&bob, "code-3", "/v1/me/payment-codes", json!({}))
        .await;
    let (status, body) = app
        .post(
            &merchant,
            "ch-3",
            "/v1/merchant/charges",
            json!({"code": first["code"], "amount": 100, "currency": "CNY"}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (422, Some("payment_code_invalid"))
    );
    app.clock
        .0
        .fetch_add(3 * NANOS_PER_SECOND, Ordering::SeqCst);
    let (status, body) = app
        .post(
            &merchant,
            "ch-4",
            "/v1/merchant/charges",
            json!({"code": second["code"], "amount": 100, "currency": "CNY"}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (422, Some("payment_code_invalid"))
    );
    // At or above the step-up threshold a code cannot pay.
    let (_, third) = app
        .post(&bob, "code-4", "/v1/me/payment-codes", json!({}))
        .await;
    let (status, body) = app
        .post(
            &merchant,
            "ch-5",
            "/v1/merchant/charges",
            json!({"code": third["code"], "amount": 50_000, "currency": "CNY"}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("amount")))
    );
    assert_eq!(app.balance(&bob).await, 48_800);

    // ---- refunds ----
    let (status, partial) = app
        .post(
            &merchant,
            "rf-1",
            &format!("/v1/merchant/payments/{coffee}/refunds"),
            json!({"amount": 1_000, "reason": "cold"}),
        )
        .await;
    assert_eq!(
        (status, &partial["status"]),
        (201, &json!("succeeded")),
        "{partial}"
    );
    let (status, replay) = app
        .post(
            &merchant,
            "rf-1",
            &format!("/v1/merchant/payments/{coffee}/refunds"),
            json!({"amount": 1_000, "reason": "cold"}),
        )
        .await;
    assert_eq!((status, &replay), (201, &partial));
    // Alice's history shows the payment, its category (MCC 5814: food),
    // partly refunded at once, and the refund itself coming in.
    let (status, row) = app
        .get(
            &alice,
            &format!("/v1/me/activity/act_merchant_payment_{coffee}"),
        )
        .await;
    assert_eq!(status, 200, "{row}");
    assert_eq!(
        (
            &row["status"],
            &row["category"],
            &row["counterparty"],
            &row["refunded"]
        ),
        (
            &json!("partially_refunded"),
            &json!("food"),
            &json!("Lotus Coffee"),
            &json!(1_000)
        ),
        "{row}"
    );
    let (_, refunds) = app.get(&alice, "/v1/me/activity?type=refund").await;
    let refund_rows = refunds["data"].as_array().expect("rows");
    assert_eq!(refund_rows.len(), 1, "{refunds}");
    assert_eq!(
        (
            &refund_rows[0]["direction"],
            &refund_rows[0]["status"],
            &refund_rows[0]["amount"]
        ),
        (&json!("in"), &json!("succeeded"), &json!(1_000))
    );
    let (status, body) = app
        .post(
            &merchant,
            "rf-2",
            &format!("/v1/merchant/payments/{coffee}/refunds"),
            json!({"amount": 2_801}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("refund_exceeds_payment"), Some("amount")))
    );
    let (status, rest) = app
        .post(
            &merchant,
            "rf-3",
            &format!("/v1/merchant/payments/{coffee}/refunds"),
            json!({"amount": 2_800}),
        )
        .await;
    assert_eq!(status, 201, "{rest}");
    let (_, after) = app
        .get(&alice, &format!("/v1/me/merchant-payments/{coffee}"))
        .await;
    assert_eq!(
        (&after["status"], &after["refunded"]),
        (&json!("refunded"), &json!(3_800))
    );
    assert_eq!(after["refunds"].as_array().expect("refunds").len(), 2);
    let (_, row) = app
        .get(
            &alice,
            &format!("/v1/me/activity/act_merchant_payment_{coffee}"),
        )
        .await;
    assert_eq!(row["status"], "refunded", "{row}");
    // Alice's merchant payments are all in her history, with their categories.
    let (_, history) = app
        .get(&alice, "/v1/me/activity?type=merchant_payment")
        .await;
    let rows = history["data"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{history}");
    assert!(rows.iter().all(|r| r["category"] == "food"), "{history}");
    let (status, csv) = app.get_text(&alice, "/v1/me/activity/export").await;
    assert_eq!(status, 200);
    assert!(csv.contains("merchant_payment,refunded"), "{csv}");
    // Another merchant cannot refund it.
    let (other_id, other, _) = app
        .merchant("+8613900139002", "Green Grocer", "5411", &compliance)
        .await;
    let (status, _) = app
        .post(
            &other,
            "rf-x",
            &format!("/v1/merchant/payments/{coffee}/refunds"),
            json!({"amount": 1}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(app.balance(&alice).await, 236_200 - 2_500 + 3_800);

    // ---- the code throttle (3 a minute in this policy) ----
    for attempt in 0..3 {
        let (status, _) = app
            .post(
                &other,
                &format!("guess-{attempt}"),
                "/v1/merchant/charges",
                json!({"code": format!("28{:016}", attempt), "amount": 100, "currency": "CNY"}),
            )
            .await;
        assert_eq!(status, 422);
    }
    let (status, body) = app
        .post(
            &other,
            "guess-4",
            "/v1/merchant/charges",
            json!({"code": "280000000000000009", "amount": 100, "currency": "CNY"}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (429, Some("too_many_attempts"))
    );
    let _ = other_id;

    // ---- settlement, once the day has ended ----
    app.clock
        .0
        .fetch_add(86_400 * NANOS_PER_SECOND, Ordering::SeqCst);
    let administrator = {
        let _ = administrator;
        app.staff("settle.admin.2", Role::Administrator).await
    };
    let (status, body) = app
        .post(
            &compliance_after(app).await,
            "run-0",
            "/v1/staff/settlements",
            json!({}),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (403, Some("forbidden")));
    let (status, run) = app
        .post(&administrator, "run-1", "/v1/staff/settlements", json!({}))
        .await;
    assert_eq!(status, 200, "{run}");
    assert!(
        run["failures"].as_array().expect("failures").is_empty(),
        "{run}"
    );
    let ours = run["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|s| s["merchant_id"] == merchant_id.as_str())
        .expect("settled")
        .clone();
    let gross = 3_800 + 60_000 + 2_500 + 1_200;
    // 0.38 % of the day's gross is 257: the schedule's maximum caps it.
    assert_eq!((gross * 38 + 5_000) / 10_000, 257);
    let fee = 200;
    assert_eq!(ours["gross"], gross);
    assert_eq!(ours["refunds"], 3_800);
    assert_eq!(ours["fee"], fee);
    assert_eq!(ours["net"], gross - 3_800 - fee);
    assert_eq!(
        (&ours["payment_count"], &ours["refund_count"]),
        (&json!(4), &json!(2))
    );
    assert_eq!(
        (&ours["status"], &ours["payout_status"]),
        (&json!("paying"), &json!("pending")),
        "{ours}"
    );
    app.deliver_all().await;
    let (status, list) = app.get(&merchant, "/v1/merchant/settlements").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["payout_status"], "succeeded", "{list}");
    // Idempotent per merchant and day.
    let (status, again) = app
        .post(&administrator, "run-2", "/v1/staff/settlements", json!({}))
        .await;
    assert_eq!(status, 200);
    let again_ours = again["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|s| s["merchant_id"] == merchant_id.as_str())
        .expect("settled")
        .clone();
    assert_eq!(
        (&again_ours["id"], &again_ours["net"]),
        (&ours["id"], &ours["net"])
    );
    let (status, body) = app
        .post(
            &administrator,
            "run-3",
            "/v1/staff/settlements",
            json!({"date": "2999-01-01"}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("date")))
    );
    // The books: the fee is the bank's income, the receivable is empty, the
    // net left through the payout clearing account.
    assert_eq!(
        app.account_posted(coffer_payments::merchants::MERCHANT_FEE_INCOME_ACCOUNT)
            .await,
        fee
    );
    assert_eq!(
        app.account_posted(&format!("merchant:{merchant_id}:cny"))
            .await,
        0
    );
    assert_eq!(
        app.account_posted(&format!("wallet:{merchant_id}:cny"))
            .await,
        0
    );
    app.verify_ledger().await;

    // ---- a crash between a payment's record and its transfer ----
    // The record as `start_payment` commits it; the process died before the
    // ledger was asked. The resolver carries it forward, once.
    let wallet_before = app.account_posted(&format!("wallet:{alice_id}:cny")).await;
    let (sql, now) = (app.state.sql.clone(), app.clock.now().as_nanos());
    let (merchant_for_sql, alice_for_sql) = (merchant_id.clone(), alice_id.clone());
    tokio::task::spawn_blocking(move || {
        sql.run(|db| {
            db.execute(
                "INSERT INTO merchant_payments (id, merchant_id, customer_id, method, amount, currency, order_reference, return_url, state, reason, refunded, \
                 creator, client_key, request_hash, limit_day, limit_month, settlement_id, created_at, updated_at, paid_at, expires_at) \
                 VALUES ('mpy_crashed00000001', $1, $2, 'qr_static', 700, 'CNY', NULL, NULL, 'pending', NULL, 0, $3, 'crash-1', 'h', NULL, NULL, NULL, $4, $4, NULL, NULL)",
                coffer_store::sql_params![merchant_for_sql.as_str(), alice_for_sql.as_str(), format!("customer:{alice_for_sql}").as_str(), now],
            )
        })
        .expect("insert")
    })
    .await
    .expect("join");
    let (status, stuck) = app
        .get(&merchant, "/v1/merchant/payments/mpy_crashed00000001")
        .await;
    assert_eq!((status, &stuck["status"]), (200, &json!("pending")));
    for _ in 0..2 {
        let merchants = app.state.merchants.clone();
        tokio::task::spawn_blocking(move || merchants.resolve_pending())
            .await
            .expect("join")
            .expect("resolve");
    }
    let (_, resolved) = app
        .get(&merchant, "/v1/merchant/payments/mpy_crashed00000001")
        .await;
    assert_eq!(resolved["status"], "succeeded", "{resolved}");
    assert_eq!(
        app.account_posted(&format!("wallet:{alice_id}:cny")).await,
        wallet_before - 700
    );
    assert_eq!(
        app.account_posted(&format!("merchant:{merchant_id}:cny"))
            .await,
        700
    );
    app.verify_ledger().await;
}

/// A compliance officer signed in at the app's current time (sessions
/// started before the clock moved a day have expired).
async fn compliance_after(app: &App) -> String {
    app.staff("kyb.officer.2", Role::ComplianceOfficer).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_flows_on_sqlite() {
    merchant_flows(&spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_flows_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    merchant_flows(&spawn_app(db).await).await;
}

/// Eight refunds of 1,000 at once against a payment of 5,000: exactly five
/// succeed, the rest are refused, and the money matches.
async fn concurrent_refunds(app: App) {
    let app = Arc::new(app);
    let compliance = app.staff("kyb.concurrent", Role::ComplianceOfficer).await;
    let (_, merchant, _) = app
        .merchant("+8613900139200", "Corner Bakery", "5462", &compliance)
        .await;
    let (_, carol) = app.customer("+8613900139201").await;
    app.fund(&carol, 10_000).await;
    let (_, qr) = app.get(&merchant, "/v1/merchant/qr").await;
    let (status, paid) = app
        .post(
            &carol,
            "pay",
            "/v1/me/merchant-payments",
            json!({"payload": qr["payload"], "amount": 5_000}),
        )
        .await;
    assert_eq!(status, 201, "{paid}");
    let payment = paid["id"].as_str().expect("id").to_string();
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (app, merchant, payment) = (app.clone(), merchant.clone(), payment.clone());
        tasks.push(tokio::spawn(async move {
            app.post(
                &merchant,
                &format!("crf-{n}"),
                &format!("/v1/merchant/payments/{payment}/refunds"),
                json!({"amount": 1_000}),
            )
            .await
        }));
    }
    let mut succeeded = 0;
    for task in tasks {
        let (status, body) = task.await.expect("join");
        match status {
            201 => succeeded += 1,
            422 => assert_eq!(error_of(&body).0, Some("refund_exceeds_payment")),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(succeeded, 5);
    assert_eq!(app.balance(&carol).await, 10_000);
    let (_, after) = app
        .get(&carol, &format!("/v1/me/merchant-payments/{payment}"))
        .await;
    assert_eq!(after["refunded"], 5_000);
    app.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refunds_never_exceed_the_payment_on_sqlite() {
    concurrent_refunds(spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refunds_never_exceed_the_payment_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    concurrent_refunds(spawn_app(db).await).await;
}

async fn merchant_key_revocation(app: &App) {
    let compliance = app.staff("keys.officer", Role::ComplianceOfficer).await;
    let (merchant_id, merchant, owner) = app
        .merchant("+8613900139500", "Key Street Cafe", "5814", &compliance)
        .await;
    let (status, keys) = app
        .get(&owner, &format!("/v1/me/merchants/{merchant_id}/api-keys"))
        .await;
    assert_eq!(status, 200, "{keys}");
    let listed = keys["data"].as_array().expect("keys");
    assert_eq!(listed.len(), 1, "{keys}");
    assert!(listed[0].get("revoked_at").is_none());
    let key_id = listed[0]["id"].as_str().expect("id").to_string();
    assert!(
        merchant.contains(&key_id),
        "the id is the key's visible part"
    );
    assert!(!keys
        .to_string()
        .contains(&merchant["Bearer coffer_".len() + 17..]));
    let (status, _) = app.get(&merchant, "/v1/merchant").await;
    assert_eq!(status, 200);
    // Someone else's session cannot see or revoke it.
    let (_, stranger) = app.customer("+8613900139501").await;
    let revoke_path = format!("/v1/me/merchants/{merchant_id}/api-keys/{key_id}/revoke");
    let (status, _) = app.post(&stranger, "rv-x", &revoke_path, json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get(
            &stranger,
            &format!("/v1/me/merchants/{merchant_id}/api-keys"),
        )
        .await;
    assert_eq!(status, 404);
    // Revoked: refused at once (the key was used, so it sat in the cache).
    let (status, revoked) = app.post(&owner, "rv-1", &revoke_path, json!({})).await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let (status, _) = app.get(&merchant, "/v1/merchant").await;
    assert_eq!(status, 401);
    // Again: the same answer, one audit record.
    let (status, again) = app.post(&owner, "rv-2", &revoke_path, json!({})).await;
    assert_eq!((status, &again), (200, &revoked));
    let (status, _) = app
        .post(
            &owner,
            "rv-3",
            &format!("/v1/me/merchants/{merchant_id}/api-keys/0123456789abcdef/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let sql = app.state.sql.clone();
    let audited = tokio::task::spawn_blocking(move || {
        sql.run(|db| {
            db.query_one(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'merchant_api_key_revoked' AND detail = $1",
                coffer_store::sql_params![key_id.as_str()],
            )
        })
        .expect("count")
        .int(0)
        .expect("int")
    })
    .await
    .expect("join");
    assert_eq!(audited, 1);
    // A new key works; the revoked one still does not.
    let (status, fresh) = app
        .post(
            &owner,
            "key-2",
            &format!("/v1/me/merchants/{merchant_id}/api-keys"),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{fresh}");
    let fresh = format!("Bearer {}", fresh["api_key"].as_str().expect("key"));
    assert_eq!(app.get(&fresh, "/v1/merchant").await.0, 200);
    assert_eq!(app.get(&merchant, "/v1/merchant").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_keys_are_revocable_on_sqlite() {
    merchant_key_revocation(&spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_keys_are_revocable_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    merchant_key_revocation(&spawn_app(db).await).await;
}

/// A settlement payout the bank refuses is retried after a back-off with a
/// payout of its own, and given up (audited) after the policy's attempts;
/// each failure returns the money to the merchant's settlement wallet.
async fn settlement_payout_retries(app: &App) {
    let compliance = app.staff("payout.officer", Role::ComplianceOfficer).await;
    // Its settlement account (6222 00130002) ends in 0002: payouts fail.
    let (merchant_id, merchant, _) = app
        .merchant("+8613900130002", "Closed Account Cafe", "5814", &compliance)
        .await;
    let (_, alice) = app.customer("+8613900130100").await;
    app.fund(&alice, 50_000).await;
    let (_, qr) = app.get(&merchant, "/v1/merchant/qr").await;
    let (status, paid) = app
        .post(
            &alice,
            "pay-closed",
            "/v1/me/merchant-payments",
            json!({"payload": qr["payload"], "amount": 10_000}),
        )
        .await;
    assert_eq!(status, 201, "{paid}");
    app.clock
        .0
        .fetch_add(86_400 * NANOS_PER_SECOND, Ordering::SeqCst);
    // Signed in after the clock moved (sessions from before have expired).
    let administrator = app.staff("payout.admin", Role::Administrator).await;
    let (status, run) = app
        .post(
            &administrator,
            "run-closed",
            "/v1/staff/settlements",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let settlement = |list: &Value| {
        list["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|s| s["merchant_id"] == merchant_id.as_str())
            .cloned()
            .expect("settlement")
    };
    let first = settlement(&run);
    assert_eq!(
        (&first["status"], &first["payout_attempts"]),
        (&json!("paying"), &json!(1)),
        "{first}"
    );
    let net = first["net"].as_i64().expect("net");
    let follow = || async {
        let merchants = app.state.merchants.clone();
        tokio::task::spawn_blocking(move || merchants.follow_payouts())
            .await
            .expect("join")
            .expect("follow");
        let (_, list) = app.get(&merchant, "/v1/merchant/settlements").await;
        list["data"][0].clone()
    };
    app.deliver_all().await;
    let retrying = follow().await;
    assert_eq!(
        (
            &retrying["status"],
            &retrying["reason"],
            &retrying["payout_attempts"]
        ),
        (
            &json!("payout_retrying"),
            &json!("account_closed"),
            &json!(1)
        ),
        "{retrying}"
    );
    assert!(retrying["next_payout_at"].is_string(), "{retrying}");
    // The money is back in the settlement wallet, waiting.
    assert_eq!(
        app.account_posted(&format!("wallet:{merchant_id}:cny"))
            .await,
        net
    );
    // Not due yet: nothing happens.
    assert_eq!(follow().await["status"], "payout_retrying");
    app.clock
        .0
        .fetch_add(61 * NANOS_PER_SECOND, Ordering::SeqCst);
    let second = follow().await;
    assert_eq!(
        (&second["status"], &second["payout_attempts"]),
        (&json!("paying"), &json!(2)),
        "{second}"
    );
    assert_ne!(second["payout_id"], first["payout_id"]);
    app.deliver_all().await;
    let given_up = follow().await;
    assert_eq!(
        (&given_up["status"], &given_up["payout_attempts"]),
        (&json!("payout_failed"), &json!(2)),
        "{given_up}"
    );
    assert_eq!(
        app.account_posted(&format!("wallet:{merchant_id}:cny"))
            .await,
        net
    );
    let sql = app.state.sql.clone();
    let audited = tokio::task::spawn_blocking(move || {
        sql.run(|db| {
            db.query_one(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'settlement_payout_failed'",
                &[],
            )
        })
        .expect("count")
        .int(0)
        .expect("int")
    })
    .await
    .expect("join");
    assert_eq!(audited, 1);
    app.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_payouts_are_retried_on_sqlite() {
    settlement_payout_retries(&spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_payouts_are_retried_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    settlement_payout_retries(&spawn_app(db).await).await;
}

/// Eight wrong payment codes at once against a budget of three a minute:
/// exactly three are judged (`payment_code_invalid`), the rest throttled,
/// however they interleave.
async fn concurrent_code_guesses(app: App) {
    let app = Arc::new(app);
    let compliance = app.staff("guess.officer", Role::ComplianceOfficer).await;
    let (_, merchant, _) = app
        .merchant("+8613900139700", "Guess Shop", "5999", &compliance)
        .await;
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (app, merchant) = (app.clone(), merchant.clone());
        tasks.push(tokio::spawn(async move {
            app.post(
                &merchant,
                &format!("guess-burst-{n}"),
                "/v1/merchant/charges",
                json!({"code": format!("28{:016}", 900 + n), "amount": 100, "currency": "CNY"}),
            )
            .await
        }));
    }
    let mut judged = 0;
    for task in tasks {
        let (status, body) = task.await.expect("join");
        match status {
            422 => {
                assert_eq!(error_of(&body).0, Some("payment_code_invalid"));
                judged += 1;
            }
            429 => assert_eq!(error_of(&body).0, Some("too_many_attempts"), "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(judged, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_code_guesses_never_pass_the_budget_on_sqlite() {
    concurrent_code_guesses(spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_code_guesses_never_pass_the_budget_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    concurrent_code_guesses(spawn_app(db).await).await;
}

/// A merchant payment held for review reserves its amount in the ledger:
/// `available` drops while the case is open, a rejection gives it back, a
/// release captures it (the money moves once), and the books stay clean.
async fn merchant_review_holds(app: &App) {
    let analyst = app.staff("review.analyst", Role::RiskAnalyst).await;
    let officer = app.staff("review.officer", Role::ComplianceOfficer).await;
    let (merchant_id, merchant, _) = app
        .merchant("+8613900139700", "Held Tea House", "5814", &officer)
        .await;
    let (_, bob) = app.customer("+8613900139701").await;
    app.fund(&bob, 100_000).await;
    let available = |me: &Value| {
        me["wallets"][0]["balances"]["available"]
            .as_i64()
            .expect("available")
    };
    // Every merchant payment of at least CNY 200.00 goes to review.
    let rules = json!({
        "currency": "CNY", "utc_offset_seconds": 28800,
        "thresholds": {"step_up": 40, "review": 70, "block_and_freeze": 100},
        "rules": [{"id": "big_merchant_payment", "description": "A big merchant payment",
                   "kinds": ["merchant_payment"],
                   "when": {"amount_at_least": {"min_amount": 20000}}, "outcome": "review"}]
    });
    let (status, draft) = app
        .post(
            &analyst,
            "rh-rules",
            "/v1/staff/risk/rules",
            json!({"rules": rules}),
        )
        .await;
    assert_eq!(status, 201, "{draft}");
    let version = draft["version"].as_i64().expect("version");
    let (status, _) = app
        .post(
            &analyst,
            "rh-on",
            &format!("/v1/staff/risk/rules/{version}/activate"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, qr) = app.get(&merchant, "/v1/merchant/qr").await;
    assert_eq!(status, 200, "{qr}");
    let pay = json!({"payload": qr["payload"], "amount": 30_000});
    let open_case = || async {
        let (status, cases) = app.get(&analyst, "/v1/staff/risk/cases?state=open").await;
        assert_eq!(status, 200, "{cases}");
        assert_eq!(cases["data"].as_array().map(Vec::len), Some(1), "{cases}");
        cases["data"][0]["id"].as_str().expect("case").to_string()
    };

    // Held, then rejected: reserved while open, given back after.
    let (status, held) = app
        .post(&bob, "rh-pay-1", "/v1/me/merchant-payments", pay.clone())
        .await;
    assert_eq!((status, &held["status"]), (201, &json!("held")), "{held}");
    let (_, me) = app.get(&bob, "/v1/me").await;
    assert_eq!(app.balance(&bob).await, 100_000, "nothing posted");
    assert_eq!(available(&me), 70_000, "but reserved: {me}");
    let case = open_case().await;
    let (status, rejected) = app
        .post(
            &analyst,
            "rh-reject",
            &format!("/v1/staff/risk/cases/{case}/reject"),
            json!({"note": "not the customer's pattern"}),
        )
        .await;
    assert_eq!(status, 200, "{rejected}");
    let (_, me) = app.get(&bob, "/v1/me").await;
    assert_eq!(available(&me), 100_000, "the hold released: {me}");

    // Held, then released: captured once.
    let (status, held) = app
        .post(&bob, "rh-pay-2", "/v1/me/merchant-payments", pay)
        .await;
    assert_eq!((status, &held["status"]), (201, &json!("held")), "{held}");
    let case = open_case().await;
    let (status, released) = app
        .post(
            &analyst,
            "rh-release",
            &format!("/v1/staff/risk/cases/{case}/release"),
            json!({"note": "customer called"}),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    let (_, me) = app.get(&bob, "/v1/me").await;
    assert_eq!(app.balance(&bob).await, 70_000);
    assert_eq!(available(&me), 70_000, "captured, not twice: {me}");
    assert_eq!(
        app.account_posted(&coffer_payments::merchants::receivable_account_id(
            &merchant_id
        ))
        .await,
        30_000
    );
    app.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_review_holds_on_sqlite() {
    merchant_review_holds(&spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchant_review_holds_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    merchant_review_holds(&spawn_app(db).await).await;
}
