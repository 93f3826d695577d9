//! Black-box tests of the API conventions: the real app on port 0, a real
//! HTTP client, SQLite and PostgreSQL underneath.

use std::sync::Arc;

use std::net::SocketAddr;

use coffer_api::{AppState, CustomerServices};
use coffer_app::Engine;
use coffer_core::CurrencyRegistry;
use coffer_identity::{PasswordPolicy, Policy};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_testkit::TestDatabase;
use coffer_vault::LocalMasterKey;
use serde_json::{json, Value};

struct App {
    base: String,
    sms: Arc<SimulatedTransport>,
    customers: Arc<CustomerServices>,
    token: String,
    read_only: String,
    client: reqwest::Client,
    _db: TestDatabase,
}

async fn spawn_app(db: TestDatabase) -> App {
    // The stores connect synchronously: set them up off the async workers.
    let database = db.database.clone();
    let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
    let transports: Vec<Arc<dyn Transport>> = vec![
        sms.clone(),
        Arc::new(SimulatedTransport::new(Channel::Email)),
    ];
    let (state, token, read_only, customers) = tokio::task::spawn_blocking(move || {
        let clock = coffer_app::system_clock();
        let engine = Arc::new(Engine::start(&database, clock.clone()).expect("engine"));
        let reader = database.open_reader(4).expect("reader");
        let service: Arc<dyn coffer_store::service::ServiceStore> =
            Arc::from(coffer_store::service::open(&database, 4).expect("service"));
        let (token, record) = coffer_api::auth::generate(
            "test",
            vec!["ledger:read".into(), "ledger:write".into()],
            0,
        );
        service.insert_api_key(&record).expect("key");
        let (read_only, record) =
            coffer_api::auth::generate("reader", vec!["ledger:read".into()], 0);
        service.insert_api_key(&record).expect("key");
        let customers = Arc::new(
            CustomerServices::open(
                &database,
                clock.clone(),
                Arc::new(LocalMasterKey::from_bytes([3; 32])),
                transports,
                Policy::default(),
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
        );
        (state, token, read_only, customers)
    })
    .await
    .expect("setup");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        axum::serve(
            listener,
            coffer_api::router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve")
    });
    App {
        base,
        sms,
        customers,
        token,
        read_only,
        client: reqwest::Client::new(),
        _db: db,
    }
}

impl App {
    async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let value = response.json().await.unwrap_or(Value::Null);
        (status, value, headers)
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }
}

fn account(id: &str, kind: &str, constraint: &str) -> String {
    json!({"id": id, "currency": "CNY", "kind": kind, "constraint": constraint, "owner": "owner-1"})
        .to_string()
}

fn transfer(id: &str, debit: &str, credit: &str, amount: i64) -> String {
    json!({"id": id, "debit_account_id": debit, "credit_account_id": credit, "amount": amount, "currency": "CNY", "code": "payment"}).to_string()
}

async fn conventions(app: App) {
    assert_eq!(
        app.post(
            "/v1/ledger/accounts",
            Some("a1"),
            &account("bank", "asset", "none")
        )
        .await
        .0,
        201
    );
    assert_eq!(
        app.post(
            "/v1/ledger/accounts",
            Some("a2"),
            &account("alice", "liability", "no_overdraft")
        )
        .await
        .0,
        201
    );
    assert_eq!(
        app.post(
            "/v1/ledger/accounts",
            Some("a3"),
            &account("bob", "liability", "no_overdraft")
        )
        .await
        .0,
        201
    );

    // Idempotent replay: same status, same body, marked as a replay.
    let (status, first, _) = app
        .post(
            "/v1/ledger/transfers",
            Some("t1"),
            &transfer("t1", "bank", "alice", 10_000),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    let (status, again, headers) = app
        .post(
            "/v1/ledger/transfers",
            Some("t1"),
            &transfer("t1", "bank", "alice", 10_000),
        )
        .await;
    assert_eq!((status, &again), (201, &first));
    assert_eq!(
        headers
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap_or("")),
        Some("true")
    );
    // Same key, different body.
    let (status, body, _) = app
        .post(
            "/v1/ledger/transfers",
            Some("t1"),
            &transfer("t1", "bank", "alice", 10_001),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    // A refusal is a response like any other: its retry gets the refusal,
    // even once the account could pay.
    let refused_body = transfer("big", "bob", "alice", 20_000);
    let (status, refused, _) = app
        .post("/v1/ledger/transfers", Some("big-1"), &refused_body)
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("insufficient_funds"))
    );
    let (status, _, _) = app
        .post(
            "/v1/ledger/transfers",
            Some("top-up-1"),
            &transfer("top-up-1", "bank", "bob", 20_000),
        )
        .await;
    assert_eq!(status, 201);
    let (status, again, headers) = app
        .post("/v1/ledger/transfers", Some("big-1"), &refused_body)
        .await;
    assert_eq!((status, &again), (422, &refused));
    assert!(headers.contains_key("idempotent-replayed"));
    let (status, _, _) = app
        .post(
            "/v1/ledger/transfers",
            Some("back-1"),
            &transfer("back-1", "bob", "bank", 20_000),
        )
        .await;
    assert_eq!(status, 201);
    // Missing key.
    let (status, body, _) = app
        .post(
            "/v1/ledger/transfers",
            None,
            &transfer("t2", "bank", "alice", 1),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("idempotency_key_required"))
    );

    // Each error class, with the one error shape.
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed", "{\"id\": ".to_string(), 400, "malformed_json"),
        ("unknown field", json!({"id": "x", "debit_account_id": "alice", "credit_account_id": "bob", "amount": 1, "currency": "CNY", "code": "p", "colour": "red"}).to_string(), 422, "invalid_field"),
        ("float amount", r#"{"id":"x","debit_account_id":"alice","credit_account_id":"bob","amount":10.5,"currency":"CNY","code":"p"}"#.to_string(), 422, "invalid_field"),
        ("overflowing amount", r#"{"id":"x","debit_account_id":"alice","credit_account_id":"bob","amount":99999999999999999999,"currency":"CNY","code":"p"}"#.to_string(), 422, "invalid_field"),
        ("amount as string", r#"{"id":"x","debit_account_id":"alice","credit_account_id":"bob","amount":"10","currency":"CNY","code":"p"}"#.to_string(), 422, "invalid_field"),
        ("zero amount", transfer("x", "alice", "bob", 0), 422, "amount_must_be_positive"),
        ("negative amount", transfer("x", "alice", "bob", -5), 422, "amount_must_be_positive"),
        ("unknown currency", json!({"id": "x", "debit_account_id": "alice", "credit_account_id": "bob", "amount": 1, "currency": "XXQ", "code": "p"}).to_string(), 422, "unknown_currency"),
        ("insufficient funds", transfer("x", "alice", "bob", 10_001), 422, "insufficient_funds"),
        ("missing account", transfer("x", "alice", "nobody", 1), 422, "account_not_found"),
        ("id reused", transfer("t1", "bank", "alice", 5), 409, "exists_with_different_fields"),
        ("bad id", transfer("has space", "alice", "bob", 1), 422, "invalid_field"),
    ];
    for (n, (name, body, status, code)) in cases.into_iter().enumerate() {
        let (got, value, _) = app
            .post("/v1/ledger/transfers", Some(&format!("err-{n}")), &body)
            .await;
        assert_eq!(
            (got, value["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {value}"
        );
        assert!(value["error"]["message"].is_string(), "{name}: {value}");
    }
    let (_, value, _) = app
        .post(
            "/v1/ledger/transfers",
            Some("err-field"),
            &transfer("x", "alice", "bob", 10_001),
        )
        .await;
    assert_eq!(value["error"]["field"], "amount");
    // Nothing above changed a balance.
    let (_, alice) = app.get("/v1/ledger/accounts/alice", &app.token).await;
    assert_eq!(alice["balances"]["available"], 10_000);

    // Oversized body: a named limit, 413, same shape.
    let huge = format!(
        "{{\"id\":\"{}\"}}",
        "x".repeat(coffer_api::body::BODY_LIMIT_BYTES + 1)
    );
    let (status, value, _) = app.post("/v1/ledger/transfers", Some("huge"), &huge).await;
    assert_eq!(
        (status, value["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );

    // Auth: no key, a bad key, a key without the scope.
    let response = app
        .client
        .get(format!("{}/v1/ledger/accounts/alice", app.base))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 401);
    let (status, _) = app
        .get("/v1/ledger/accounts/alice", "coffer_0000000000000000_nope")
        .await;
    assert_eq!(status, 401);
    let (status, _) = app.get("/v1/ledger/accounts/alice", &app.read_only).await;
    assert_eq!(status, 200);
    let response = app
        .client
        .post(format!("{}/v1/ledger/transfers", app.base))
        .bearer_auth(&app.read_only)
        .header("Idempotency-Key", "ro")
        .body(transfer("ro", "alice", "bob", 1))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 403);

    // Linked batch and pagination over the statement.
    let batch = json!({"linked": true, "transfers": [
        {"id": "b1", "debit_account_id": "alice", "credit_account_id": "bob", "amount": 100, "currency": "CNY", "code": "p"},
        {"id": "b2", "debit_account_id": "alice", "credit_account_id": "bob", "amount": 99999, "currency": "CNY", "code": "p"}
    ]});
    let (status, value, _) = app
        .post(
            "/v1/ledger/transfers/batch",
            Some("batch-1"),
            &batch.to_string(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(value["ok"], false);
    assert_eq!(
        value["results"][0]["error"]["code"],
        "linked_transfer_failed"
    );
    assert_eq!(value["results"][1]["error"]["code"], "insufficient_funds");
    for i in 0..5 {
        assert_eq!(
            app.post(
                "/v1/ledger/transfers",
                Some(&format!("p{i}")),
                &transfer(&format!("p{i}"), "alice", "bob", 10)
            )
            .await
            .0,
            201
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/ledger/accounts/alice/entries?limit=2&cursor={c}"),
            None => "/v1/ledger/accounts/alice/entries?limit=2".to_string(),
        };
        let (status, page) = app.get(&path, &app.token).await;
        assert_eq!(status, 200, "{page}");
        for entry in page["data"].as_array().expect("data") {
            seen.push(entry["transfer"]["id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, vec!["t1", "p0", "p1", "p2", "p3", "p4"]);
    let (status, value) = app
        .get("/v1/ledger/accounts/alice/entries?limit=501", &app.token)
        .await;
    assert_eq!(
        (status, value["error"]["field"].as_str()),
        (422, Some("limit"))
    );

    // Holds over HTTP.
    let hold = json!({"id": "h1", "debit_account_id": "alice", "credit_account_id": "bob", "amount": 500, "currency": "CNY", "code": "auth", "timeout_ms": 60000});
    assert_eq!(
        app.post("/v1/ledger/holds", Some("h1"), &hold.to_string())
            .await
            .0,
        201
    );
    let (status, value, _) = app
        .post(
            "/v1/ledger/holds/h1/capture",
            Some("c1"),
            &json!({"id": "c1", "amount": 200, "code": "capture"}).to_string(),
        )
        .await;
    assert_eq!((status, value["amount"].as_i64()), (201, Some(200)));
    let (_, hold) = app.get("/v1/ledger/holds/h1", &app.token).await;
    assert_eq!(hold["state"], "captured");

    // Routes and operations endpoints.
    let (status, value) = app.get("/v1/nowhere", &app.token).await;
    assert_eq!(
        (status, value["error"]["code"].as_str()),
        (404, Some("route_not_found"))
    );
    let (status, _) = app.get("/readyz", &app.token).await;
    assert_eq!(status, 200);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("coffer_ledger_transfers_committed_total"));
    assert!(metrics.contains(
        "coffer_http_requests_total{route=\"/v1/ledger/transfers\",method=\"POST\",status=\"201\"}"
    ));
    // No secret in a response or in the metrics.
    assert!(!metrics.contains(&app.token[20..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_conventions_on_sqlite() {
    conventions(spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_conventions_on_postgres() {
    conventions(
        spawn_app(
            tokio::task::spawn_blocking(TestDatabase::postgres)
                .await
                .expect("pg"),
        )
        .await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_execute_once() {
    let app = Arc::new(spawn_app(TestDatabase::sqlite()).await);
    assert_eq!(
        app.post(
            "/v1/ledger/accounts",
            Some("a1"),
            &account("bank", "asset", "none")
        )
        .await
        .0,
        201
    );
    assert_eq!(
        app.post(
            "/v1/ledger/accounts",
            Some("a2"),
            &account("alice", "liability", "no_overdraft")
        )
        .await
        .0,
        201
    );
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                app.post(
                    "/v1/ledger/transfers",
                    Some("same-key"),
                    &transfer("once", "bank", "alice", 700),
                )
                .await
                .0
            })
        })
        .collect();
    for task in tasks {
        let status = task.await.expect("task");
        assert!(status == 201 || status == 409, "status {status}");
    }
    let (_, alice) = app.get("/v1/ledger/accounts/alice", &app.token).await;
    assert_eq!(
        alice["balances"]["posted"], 700,
        "a concurrent duplicate executed twice"
    );
}

impl App {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
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

    /// Delivers what is due; the newest message's text to `to`.
    async fn last_message(&self, to: &str) -> String {
        let customers = self.customers.clone();
        tokio::task::spawn_blocking(move || customers.dispatcher.run_once())
            .await
            .expect("join")
            .expect("dispatch");
        self.sms
            .to(to)
            .pop()
            .map(|m| m.body.expose().clone())
            .unwrap_or_default()
    }

    async fn code_for(&self, to: &str) -> String {
        let customers = self.customers.clone();
        tokio::task::spawn_blocking(move || customers.dispatcher.run_once())
            .await
            .expect("join")
            .expect("dispatch");
        self.sms.last_code(to).expect("a code was sent")
    }
}

const PHONE: &str = "+8613900139000";
const PASSWORD: &str = "green tea at dawn";

async fn customer_journey(app: &App) {
    use reqwest::Method;
    // Registration needs an idempotency key like every other write.
    let start = json!({"contact": PHONE});
    let (status, body, _) = app
        .send(
            Method::POST,
            "/v1/auth/registrations",
            &[],
            Some(start.clone()),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("idempotency_key_required"))
    );
    let (status, started, _) = app
        .send(
            Method::POST,
            "/v1/auth/registrations",
            &[("Idempotency-Key", "reg-1")],
            Some(start.clone()),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["sent_to"], "+86*******9000");
    let id = started["registration_id"].as_str().expect("id").to_string();
    let code = app.code_for(PHONE).await;
    let complete = |password: &str| json!({"code": code, "password": password, "display_name": "李娜", "accept_terms": "2026-11"});
    let path = format!("/v1/auth/registrations/{id}/complete");
    let (status, body, _) = app
        .send(Method::POST, &path, &[], Some(complete("12345678")))
        .await;
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str(),
            body["error"]["field"].as_str()
        ),
        (422, Some("weak_password"), Some("password"))
    );
    let (status, registered, headers) = app
        .send(Method::POST, &path, &[], Some(complete(PASSWORD)))
        .await;
    assert_eq!(status, 201, "{registered}");
    let token = registered["session"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("cookie")
        .to_string();
    for attribute in [
        "coffer_session=cs_",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert_eq!(registered["customer"]["display_name"], "李娜");
    assert_eq!(registered["customer"]["kyc_tier"], 0);
    let customer_id = registered["customer"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let bearer = format!("Bearer {token}");

    // The wallet exists at once, empty; money sent to it shows up.
    let (status, me, _) = app
        .send(Method::GET, "/v1/me", &[("Authorization", &bearer)], None)
        .await;
    assert_eq!(status, 200, "{me}");
    let wallet = me["wallets"][0]["account_id"]
        .as_str()
        .expect("wallet")
        .to_string();
    assert_eq!(wallet, format!("wallet:{customer_id}:cny"));
    assert_eq!(me["wallets"][0]["balances"]["available"], 0);
    assert_eq!(
        app.post(
            "/v1/ledger/accounts",
            Some("bank-open"),
            &account("bank", "asset", "none")
        )
        .await
        .0,
        201
    );
    assert_eq!(
        app.post(
            "/v1/ledger/transfers",
            Some("top-up"),
            &transfer("top-up", "bank", &wallet, 8_800)
        )
        .await
        .0,
        201
    );
    let (_, me, _) = app
        .send(Method::GET, "/v1/me", &[("Authorization", &bearer)], None)
        .await;
    assert_eq!(me["wallets"][0]["balances"]["available"], 8_800);
    let (status, body, _) = app.send(Method::GET, "/v1/me", &[], None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    // The cookie works for reads; a cross-site write with it is refused.
    let session_cookie = cookie.split(';').next().expect("pair").to_string();
    let (status, _, _) = app
        .send(Method::GET, "/v1/me", &[("Cookie", &session_cookie)], None)
        .await;
    assert_eq!(status, 200);
    let (status, body, _) = app
        .send(
            Method::POST,
            "/v1/me/sessions/revoke-all",
            &[
                ("Cookie", &session_cookie),
                ("Origin", "https://evil.example"),
                ("Idempotency-Key", "x"),
            ],
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("csrf_rejected"))
    );

    // Sign-in: unknown contact and wrong password are indistinguishable.
    let login = |contact: &str, password: &str| json!({"contact": contact, "password": password, "device_name": "Laptop"});
    let (unknown_status, unknown, _) = app
        .send(
            Method::POST,
            "/v1/auth/sessions",
            &[],
            Some(login("+8613700137000", "whatever it is")),
        )
        .await;
    let (wrong_status, wrong, _) = app
        .send(
            Method::POST,
            "/v1/auth/sessions",
            &[],
            Some(login(PHONE, "not my password")),
        )
        .await;
    assert_eq!((unknown_status, &unknown), (wrong_status, &wrong));
    assert_eq!(
        (wrong_status, wrong["error"]["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let (status, second, _) = app
        .send(
            Method::POST,
            "/v1/auth/sessions",
            &[],
            Some(login(PHONE, PASSWORD)),
        )
        .await;
    assert_eq!(status, 201, "{second}");
    let second_bearer = format!("Bearer {}", second["token"].as_str().expect("token"));

    // Devices: both listed; revoking the second ends it.
    let (_, sessions, _) = app
        .send(
            Method::GET,
            "/v1/me/sessions",
            &[("Authorization", &bearer)],
            None,
        )
        .await;
    let list = sessions["data"].as_array().expect("data");
    assert_eq!(list.len(), 2);
    assert!(list.iter().any(|s| s["device"] == "Laptop"));
    let second_id = second["session_id"].as_str().expect("id");
    let revoke_path = format!("/v1/me/sessions/{second_id}/revoke");
    let (status, _, _) = app
        .send(
            Method::POST,
            &revoke_path,
            &[("Authorization", &bearer), ("Idempotency-Key", "rv-1")],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, headers) = app
        .send(
            Method::POST,
            &revoke_path,
            &[("Authorization", &bearer), ("Idempotency-Key", "rv-1")],
            None,
        )
        .await;
    assert_eq!(status, 200, "a retry replays the first answer");
    assert!(headers.contains_key("idempotent-replayed"));
    let (status, _, _) = app
        .send(
            Method::GET,
            "/v1/me",
            &[("Authorization", &second_bearer)],
            None,
        )
        .await;
    assert_eq!(status, 401);

    // Brute force: the throttle answers 429 with Retry-After.
    let mut throttled = None;
    for _ in 0..12 {
        let (status, body, headers) = app
            .send(
                Method::POST,
                "/v1/auth/sessions",
                &[],
                Some(login(PHONE, "guess guess guess")),
            )
            .await;
        if status == 429 {
            throttled = Some((body, headers));
            break;
        }
        assert_eq!(status, 401);
    }
    let (body, headers) = throttled.expect("the throttle engaged");
    assert_eq!(body["error"]["code"], "too_many_attempts");
    assert!(headers.get("retry-after").is_some());

    // The customer calls the bank; support lifts the lock (the customer is
    // alerted) and the right password works again at once.
    let support = new_staff(app, "support.unlock", vec![coffer_identity::Role::Support]).await;
    let support_bearer = staff_bearer(app, &support, "support.unlock").await;
    let (status, body, _) = app
        .send(
            Method::POST,
            &format!("/v1/staff/customers/{customer_id}/unlock"),
            &[
                ("Authorization", &support_bearer),
                ("Idempotency-Key", "unlock-1"),
            ],
            Some(json!({"reason": "called the bank, identity checked"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = app
        .send(
            Method::POST,
            "/v1/auth/sessions",
            &[],
            Some(login(PHONE, PASSWORD)),
        )
        .await;
    assert_eq!(status, 201, "unlocked: {body}");

    // Sign out: the token stops working and the cookie is cleared.
    let (status, _, headers) = app
        .send(
            Method::DELETE,
            "/v1/auth/sessions/current",
            &[("Authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert!(headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .contains("Max-Age=0"));
    let (status, _, _) = app
        .send(Method::GET, "/v1/me", &[("Authorization", &bearer)], None)
        .await;
    assert_eq!(status, 401);

    // No response ever carried the password or the full number.
    for value in [&started, &registered, &me, &sessions, &second, &wrong] {
        let text = value.to_string();
        assert!(
            !text.contains(PASSWORD) && !text.contains("13900139000"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_register_sign_in_and_manage_sessions_on_sqlite() {
    let db = TestDatabase::sqlite();
    let path = match &db.database {
        coffer_store::Database::Sqlite(path) => path.clone(),
        coffer_store::Database::Postgres(_) => unreachable!(),
    };
    let app = spawn_app(db).await;
    customer_journey(&app).await;
    // Nothing secret in clear in the database files either, nor a plain hash
    // of the request with the number, which hashing guesses would find.
    let mut bytes = std::fs::read(&path).expect("db");
    bytes.extend(std::fs::read(format!("{}-wal", path.display())).unwrap_or_default());
    let plain_hash = {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(b"start_registration\0");
        hasher.update(json!({"contact": PHONE}).to_string().as_bytes());
        hex::encode(hasher.finalize())
    };
    for needle in [PASSWORD, "13900139000", "李娜", plain_hash.as_str()] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} stored in clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_register_sign_in_and_manage_sessions_on_postgres() {
    let app = spawn_app(
        tokio::task::spawn_blocking(TestDatabase::postgres)
            .await
            .expect("pg"),
    )
    .await;
    customer_journey(&app).await;
}

fn totp_now(base32: &str) -> String {
    let seed = totp_rs::Secret::Encoded(base32.to_string())
        .to_bytes()
        .expect("base32");
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, seed)
        .expect("totp")
        .generate_current()
        .expect("time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_factor_sign_in_and_step_up_over_http() {
    use reqwest::Method;
    let app = spawn_app(TestDatabase::sqlite()).await;
    let phone = "+8613600136000";
    let (_, started, _) = app
        .send(
            Method::POST,
            "/v1/auth/registrations",
            &[("Idempotency-Key", "r")],
            Some(json!({"contact": phone})),
        )
        .await;
    let code = app.code_for(phone).await;
    let id = started["registration_id"].as_str().expect("id");
    let (status, registered, _) = app
        .send(
            Method::POST,
            &format!("/v1/auth/registrations/{id}/complete"),
            &[],
            Some(json!({"code": code, "password": PASSWORD, "display_name": "Wang Fang", "accept_terms": "2026-11"})),
        )
        .await;
    assert_eq!(status, 201);
    let bearer = format!(
        "Bearer {}",
        registered["session"]["token"].as_str().expect("token")
    );
    let auth = [("Authorization", bearer.as_str())];

    // Enrol an authenticator app; confirm with a code; get recovery codes.
    let (status, enrolment, _) = app
        .send(Method::POST, "/v1/me/factors/totp", &auth, None)
        .await;
    assert_eq!(status, 201, "{enrolment}");
    assert!(enrolment["qr_svg"]
        .as_str()
        .expect("svg")
        .starts_with("<?xml"));
    let seed = enrolment["secret"].as_str().expect("secret").to_string();
    let (status, confirmed, _) = app
        .send(
            Method::POST,
            "/v1/me/factors/totp/confirm",
            &auth,
            Some(json!({"code": totp_now(&seed)})),
        )
        .await;
    assert_eq!(status, 200, "{confirmed}");
    let recovery = confirmed["recovery_codes"][0]
        .as_str()
        .expect("code")
        .to_string();

    // Sign-in now stops at a challenge; a recovery code answers it.
    let (status, challenge, _) = app
        .send(
            Method::POST,
            "/v1/auth/sessions",
            &[],
            Some(json!({"contact": phone, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 202, "{challenge}");
    assert_eq!(challenge["second_factor_required"], true);
    assert!(challenge.get("token").is_none());
    let verify = format!(
        "/v1/auth/challenges/{}/verify",
        challenge["challenge_id"].as_str().expect("id")
    );
    let (status, body, _) = app
        .send(Method::POST, &verify, &[], Some(json!({"code": "000000x"})))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("code_invalid"))
    );
    let (status, session, _) = app
        .send(Method::POST, &verify, &[], Some(json!({"code": recovery})))
        .await;
    assert_eq!(status, 201, "{session}");
    assert!(session["token"].as_str().expect("token").starts_with("cs_"));

    // Step-up for a payment: an SMS code, bound to amount and payee.
    let step_up = json!({"operation": "payment", "amount": 250_000, "currency": "CNY", "payee": "merchant:city-metro", "method": "code"});
    let (status, challenge, _) = app
        .send(
            Method::POST,
            "/v1/me/step-up",
            &[auth[0], ("Idempotency-Key", "su-1")],
            Some(step_up.clone()),
        )
        .await;
    assert_eq!(status, 201, "{challenge}");
    let code = app.code_for(phone).await;
    let verify = format!(
        "/v1/me/step-up/{}/verify",
        challenge["challenge_id"].as_str().expect("id")
    );
    let (status, body, _) = app
        .send(
            Method::POST,
            &verify,
            &[auth[0], ("Idempotency-Key", "v-1")],
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"verified": true})));
    let challenge_id = challenge["challenge_id"].as_str().expect("id").to_string();
    let customer = registered["customer"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let identity = app.customers.identity.clone();
    let consume = move |amount: i64| {
        let identity = identity.clone();
        let (customer, challenge_id) = (customer.clone(), challenge_id.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                identity.consume_step_up_now(
                    &customer,
                    &challenge_id,
                    &coffer_identity::Operation {
                        kind: "payment".into(),
                        amount,
                        currency: "CNY".into(),
                        payee: "merchant:city-metro".into(),
                    },
                )
            })
            .await
            .expect("join")
        }
    };
    assert!(consume(250_001).await.is_err(), "another amount");
    assert!(consume(250_000).await.is_ok());
    assert!(consume(250_000).await.is_err(), "single use");
    // Bad step-up input gets a clear error.
    let (status, body, _) = app
        .send(
            Method::POST,
            "/v1/me/step-up",
            &[auth[0], ("Idempotency-Key", "su-2")],
            Some(json!({"operation": "payment", "amount": -5, "currency": "CNY", "payee": "x", "method": "code"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("amount"))
    );

    // A password reset of this wallet needs the authenticator (or a
    // recovery code) besides the code by SMS.
    let (status, started, _) = app
        .send(
            Method::POST,
            "/v1/auth/password-reset",
            &[("Idempotency-Key", "pr-1")],
            Some(json!({"contact": phone})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let code = app.code_for(phone).await;
    let complete = format!(
        "/v1/auth/password-reset/{}/complete",
        started["reset_id"].as_str().expect("id")
    );
    let new_password = "lanterns on the river";
    let (status, body, _) = app
        .send(
            Method::POST,
            &complete,
            &[("Idempotency-Key", "pr-2")],
            Some(json!({"code": code, "new_password": new_password})),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("second_factor_required"), Some("totp_code")))
    );
    let recovery = confirmed["recovery_codes"][1].as_str().expect("code");
    let (status, body, _) = app
        .send(
            Method::POST,
            &complete,
            &[("Idempotency-Key", "pr-3")],
            Some(json!({"code": code, "new_password": new_password, "totp_code": recovery})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kyc_raises_tier_and_limits_over_http() {
    use reqwest::Method;
    let app = spawn_app(TestDatabase::sqlite()).await;
    let phone = "+8613500135000";
    let (_, started, _) = app
        .send(
            Method::POST,
            "/v1/auth/registrations",
            &[("Idempotency-Key", "r")],
            Some(json!({"contact": phone})),
        )
        .await;
    let code = app.code_for(phone).await;
    let id = started["registration_id"].as_str().expect("id");
    let (_, registered, _) = app
        .send(
            Method::POST,
            &format!("/v1/auth/registrations/{id}/complete"),
            &[],
            Some(json!({"code": code, "password": PASSWORD, "display_name": "Sun Li", "accept_terms": "2026-11"})),
        )
        .await;
    let bearer = format!(
        "Bearer {}",
        registered["session"]["token"].as_str().expect("token")
    );
    let (_, me, _) = app
        .send(Method::GET, "/v1/me", &[("Authorization", &bearer)], None)
        .await;
    assert_eq!(me["customer"]["kyc_tier"], 0);
    let tier0_cap = me["limits"]["balance_cap"].as_i64().expect("cap");
    let body_17 = "11010819951120003";
    let id_number = format!(
        "{body_17}{}",
        coffer_identity::resident_id_check(body_17).expect("check")
    );
    let request = json!({"full_name": "孙丽", "id_type": "cn_resident", "id_number": id_number});
    let (status, answer, _) = app
        .send(
            Method::POST,
            "/v1/me/kyc/identity",
            &[("Authorization", &bearer), ("Idempotency-Key", "kyc-1")],
            Some(request.clone()),
        )
        .await;
    assert_eq!(
        (
            status,
            answer["status"].as_str(),
            answer["kyc_tier"].as_i64()
        ),
        (200, Some("verified"), Some(1)),
        "{answer}"
    );
    let (status, again, headers) = app
        .send(
            Method::POST,
            "/v1/me/kyc/identity",
            &[("Authorization", &bearer), ("Idempotency-Key", "kyc-1")],
            Some(request),
        )
        .await;
    assert_eq!((status, &again), (200, &answer));
    assert!(headers.contains_key("idempotent-replayed"));
    let (_, me, _) = app
        .send(Method::GET, "/v1/me", &[("Authorization", &bearer)], None)
        .await;
    assert_eq!(me["customer"]["kyc_tier"], 1);
    assert!(me["limits"]["balance_cap"].as_i64().expect("cap") > tier0_cap);
    // A bad check character is the caller's to fix, with the field named.
    let (status, body, _) = app
        .send(
            Method::POST,
            "/v1/me/kyc/identity",
            &[("Authorization", &bearer), ("Idempotency-Key", "kyc-2")],
            Some(json!({"full_name": "孙丽", "id_type": "cn_resident", "id_number": "110108199511200030"})),
        )
        .await;
    assert!(
        status == 200 || (status == 422 && body["error"]["field"] == "id_number"),
        "{status} {body}"
    );
    // Tier 2 goes to staff review.
    let (status, answer, _) = app
        .send(
            Method::POST,
            "/v1/me/kyc/documents",
            &[("Authorization", &bearer), ("Idempotency-Key", "kyc-3")],
            Some(json!({"document_type": "passport", "document_number": "E99887766", "selfie_reference": "upload-7"})),
        )
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("in_review")),
        "{answer}"
    );
}

/// Signs a staff member in over HTTP; returns the bearer header value.
async fn staff_bearer(app: &App, new: &coffer_identity::NewStaff, username: &str) -> String {
    use reqwest::Method;
    let (status, body, _) = app
        .send(
            Method::POST,
            "/v1/staff/sessions",
            &[],
            Some(json!({"username": username, "password": new.password.expose(), "code": totp_now(new.totp_base32.expose())})),
        )
        .await;
    assert_eq!(status, 201, "{username}: {body}");
    format!("Bearer {}", body["token"].as_str().expect("token"))
}

async fn new_staff(
    app: &App,
    username: &str,
    roles: Vec<coffer_identity::Role>,
) -> coffer_identity::NewStaff {
    let identity = app.customers.identity.clone();
    let username = username.to_string();
    tokio::task::spawn_blocking(move || {
        identity.create_staff(
            &username,
            "Test Staff",
            &roles,
            &coffer_identity::Context {
                ip: "test".into(),
                device: "test".into(),
            },
        )
    })
    .await
    .expect("join")
    .expect("create staff")
}

async fn registered_customer(app: &App, phone: &str) -> (String, String) {
    use reqwest::Method;
    let (_, started, _) = app
        .send(
            Method::POST,
            "/v1/auth/registrations",
            &[("Idempotency-Key", phone)],
            Some(json!({"contact": phone})),
        )
        .await;
    let code = app.code_for(phone).await;
    let id = started["registration_id"].as_str().expect("id");
    let (status, registered, _) = app
        .send(
            Method::POST,
            &format!("/v1/auth/registrations/{id}/complete"),
            &[],
            Some(json!({"code": code, "password": PASSWORD, "display_name": "Customer", "accept_terms": "2026-11"})),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_staff_route_checks_every_role() {
    use coffer_identity::{permits, Permission, Role};
    use reqwest::Method;
    let app = spawn_app(TestDatabase::sqlite()).await;
    let (customer, _) = registered_customer(&app, "+8613400134000").await;
    // (method, path, body, the permission it needs; None = propose or approve)
    let routes: Vec<(Method, String, Option<Value>, Option<Permission>)> = vec![
        (
            Method::GET,
            "/v1/staff/customers?contact=%2B8613400134000".into(),
            None,
            Some(Permission::ViewCustomers),
        ),
        (
            Method::GET,
            format!("/v1/staff/customers/{customer}"),
            None,
            Some(Permission::ViewCustomers),
        ),
        (
            Method::POST,
            format!("/v1/staff/customers/{customer}/freeze"),
            Some(json!({"reason": "matrix"})),
            Some(Permission::FreezeCustomers),
        ),
        (
            Method::POST,
            format!("/v1/staff/customers/{customer}/unlock"),
            Some(json!({"reason": "called the bank, identity checked"})),
            Some(Permission::UnlockCustomers),
        ),
        (
            Method::GET,
            "/v1/staff/kyc/reviews".into(),
            None,
            Some(Permission::ReviewKyc),
        ),
        (
            Method::POST,
            "/v1/staff/kyc/reviews/kyc_none/decide".into(),
            Some(json!({"approve": true})),
            Some(Permission::ReviewKyc),
        ),
        (
            Method::GET,
            "/v1/staff/audit?limit=5".into(),
            None,
            Some(Permission::ReadAudit),
        ),
        (
            Method::POST,
            "/v1/staff/approvals".into(),
            Some(json!({"action": "unfreeze", "subject": customer, "reason": "matrix"})),
            Some(Permission::ProposeSensitive),
        ),
        (Method::GET, "/v1/staff/approvals".into(), None, None),
        (
            Method::GET,
            "/v1/staff/reconciliation?connector=card_network".into(),
            None,
            Some(Permission::Reconcile),
        ),
        (
            Method::POST,
            "/v1/staff/approvals/apr_none/decide".into(),
            Some(json!({"approve": true})),
            Some(Permission::ApproveSensitive),
        ),
        (
            Method::GET,
            "/v1/staff/merchants?status=pending_review".into(),
            None,
            Some(Permission::ReviewMerchants),
        ),
        (
            Method::GET,
            "/v1/staff/merchants/mer_none".into(),
            None,
            Some(Permission::ReviewMerchants),
        ),
        (
            Method::POST,
            "/v1/staff/merchants/mer_none/review".into(),
            Some(json!({"approve": true})),
            Some(Permission::ReviewMerchants),
        ),
        (
            Method::POST,
            "/v1/staff/settlements".into(),
            Some(json!({})),
            Some(Permission::SettleMerchants),
        ),
        (
            Method::GET,
            "/v1/staff/settlements".into(),
            None,
            Some(Permission::SettleMerchants),
        ),
        (
            Method::GET,
            "/v1/staff/support/tickets".into(),
            None,
            Some(Permission::HandleSupport),
        ),
        (
            Method::GET,
            "/v1/staff/support/tickets/tkt_none".into(),
            None,
            Some(Permission::HandleSupport),
        ),
        (
            Method::POST,
            "/v1/staff/support/tickets/tkt_none/messages".into(),
            Some(json!({"message": "matrix"})),
            Some(Permission::HandleSupport),
        ),
        (
            Method::POST,
            "/v1/staff/support/tickets/tkt_none/resolve".into(),
            Some(json!({})),
            Some(Permission::HandleSupport),
        ),
        (
            Method::GET,
            format!("/v1/staff/customer-search?id={customer}"),
            None,
            Some(Permission::ViewCustomers),
        ),
        (
            Method::GET,
            format!("/v1/staff/customers/{customer}/360"),
            None,
            Some(Permission::ViewCustomers),
        ),
        (
            Method::GET,
            "/v1/staff/queues".into(),
            None,
            Some(Permission::ViewDashboards),
        ),
        (
            Method::GET,
            "/v1/staff/dashboards".into(),
            None,
            Some(Permission::ViewDashboards),
        ),
        (
            Method::POST,
            "/v1/staff/settings/fees/proposals".into(),
            Some(json!({"base_version": 99, "settings": {}, "reason": "matrix"})),
            Some(Permission::ManageSettings),
        ),
    ];
    for (index, role) in Role::ALL.into_iter().enumerate() {
        let username = format!("matrix.{index}");
        let staff = new_staff(&app, &username, vec![role]).await;
        let bearer = staff_bearer(&app, &staff, &username).await;
        for (number, (method, path, body, permission)) in routes.iter().enumerate() {
            let key = format!("{username}-{number}");
            let (status, answer, _) = app
                .send(
                    method.clone(),
                    path,
                    &[("Authorization", &bearer), ("Idempotency-Key", &key)],
                    body.clone(),
                )
                .await;
            let allowed = match permission {
                Some(permission) => permits(role, *permission),
                None => {
                    permits(role, Permission::ProposeSensitive)
                        || permits(role, Permission::ApproveSensitive)
                }
            };
            if allowed {
                assert!(
                    status != 403 && status != 401 && status < 500,
                    "{} may {method} {path}: {status} {answer}",
                    role.as_str()
                );
            } else {
                assert_eq!(
                    (status, answer["error"]["code"].as_str()),
                    (403, Some("forbidden")),
                    "{} must not {method} {path}",
                    role.as_str()
                );
            }
        }
    }
    // No staff session at all: 401 everywhere.
    for (method, path, body, _) in &routes {
        let (status, _, _) = app
            .send(
                method.clone(),
                path,
                &[("Idempotency-Key", "anon")],
                body.clone(),
            )
            .await;
        assert_eq!(status, 401, "{method} {path}");
    }
    // A customer's session is not a staff session.
    let (_, customer_bearer) = registered_customer(&app, "+8613400134001").await;
    let (status, _, _) = app
        .send(
            Method::GET,
            "/v1/staff/kyc/reviews",
            &[("Authorization", &customer_bearer)],
            None,
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_actions_need_a_second_staff_member() {
    use coffer_identity::Role;
    use reqwest::Method;
    let app = spawn_app(TestDatabase::sqlite()).await;
    let phone = "+8613300133000";
    let (customer, customer_bearer) = registered_customer(&app, phone).await;
    let risk = new_staff(&app, "risk.one", vec![Role::RiskAnalyst]).await;
    let risk = staff_bearer(&app, &risk, "risk.one").await;
    let both = new_staff(&app, "super.one", vec![Role::Support, Role::Administrator]).await;
    let both = staff_bearer(&app, &both, "super.one").await;
    let checker = new_staff(&app, "check.one", vec![Role::ComplianceOfficer]).await;
    let checker = staff_bearer(&app, &checker, "check.one").await;

    // A freeze takes effect at once and ends the customer's sessions.
    let (status, _, _) = app
        .send(
            Method::POST,
            &format!("/v1/staff/customers/{customer}/freeze"),
            &[("Authorization", &risk), ("Idempotency-Key", "f1")],
            Some(json!({"reason": "suspected account takeover"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = app
        .send(
            Method::GET,
            "/v1/me",
            &[("Authorization", &customer_bearer)],
            None,
        )
        .await;
    assert_eq!(status, 401);
    let (status, _, _) = app
        .send(
            Method::POST,
            "/v1/auth/sessions",
            &[],
            Some(json!({"contact": phone, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 401, "a frozen customer cannot sign in");

    // Unfreezing: proposed by one, never approved by the same person.
    let (status, proposal, _) = app
        .send(Method::POST, "/v1/staff/approvals", &[("Authorization", &both), ("Idempotency-Key", "p1")], Some(json!({"action": "unfreeze", "subject": customer, "reason": "customer verified in branch"})))
        .await;
    assert_eq!(status, 201, "{proposal}");
    let decide = format!(
        "/v1/staff/approvals/{}/decide",
        proposal["id"].as_str().expect("id")
    );
    let (status, body, _) = app
        .send(
            Method::POST,
            &decide,
            &[("Authorization", &both), ("Idempotency-Key", "d0")],
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, decided, _) = app
        .send(
            Method::POST,
            &decide,
            &[("Authorization", &checker), ("Idempotency-Key", "d1")],
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(
        (status, decided["state"].as_str()),
        (200, Some("executed")),
        "{decided}"
    );
    let (status, _, _) = app
        .send(
            Method::POST,
            "/v1/auth/sessions",
            &[],
            Some(json!({"contact": phone, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 201, "unfrozen");
    let (status, body, _) = app
        .send(
            Method::POST,
            &decide,
            &[("Authorization", &checker), ("Idempotency-Key", "d2")],
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );

    // A manual balance adjustment lands in the ledger once, on approval only.
    let (status, proposal, _) = app
        .send(Method::POST, "/v1/staff/approvals", &[("Authorization", &both), ("Idempotency-Key", "p2")], Some(json!({"action": "adjust_balance", "subject": customer, "params": {"amount": 5_000, "direction": "credit"}, "reason": "goodwill for outage"})))
        .await;
    assert_eq!(status, 201, "{proposal}");
    let (status, body, _) = app
        .send(Method::POST, "/v1/staff/approvals", &[("Authorization", &both), ("Idempotency-Key", "p3")], Some(json!({"action": "adjust_balance", "subject": customer, "params": {"amount": 0, "direction": "credit"}, "reason": "x"})))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("params.amount"))
    );
    let (_, session, _) = app
        .send(
            Method::POST,
            "/v1/auth/sessions",
            &[],
            Some(json!({"contact": phone, "password": PASSWORD})),
        )
        .await;
    let customer_bearer = format!("Bearer {}", session["token"].as_str().expect("token"));
    let (_, me, _) = app
        .send(
            Method::GET,
            "/v1/me",
            &[("Authorization", &customer_bearer)],
            None,
        )
        .await;
    assert_eq!(
        me["wallets"][0]["balances"]["available"], 0,
        "nothing before approval"
    );
    let decide = format!(
        "/v1/staff/approvals/{}/decide",
        proposal["id"].as_str().expect("id")
    );
    let (status, decided, _) = app
        .send(
            Method::POST,
            &decide,
            &[("Authorization", &checker), ("Idempotency-Key", "d3")],
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(
        (status, decided["state"].as_str()),
        (200, Some("executed")),
        "{decided}"
    );
    let (status, replay, headers) = app
        .send(
            Method::POST,
            &decide,
            &[("Authorization", &checker), ("Idempotency-Key", "d3")],
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!((status, &replay), (200, &decided));
    assert!(headers.contains_key("idempotent-replayed"));
    let (_, me, _) = app
        .send(
            Method::GET,
            "/v1/me",
            &[("Authorization", &customer_bearer)],
            None,
        )
        .await;
    assert_eq!(me["wallets"][0]["balances"]["available"], 5_000);

    // Everything the staff did is in the audit log, with who did it.
    let (status, audit, _) = app
        .send(
            Method::GET,
            &format!("/v1/staff/audit?subject={customer}&limit=50"),
            &[("Authorization", &checker)],
            None,
        )
        .await;
    assert_eq!(status, 200, "{audit}");
    let actions: Vec<(String, String)> = audit["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or("").to_string(),
                r["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for (actor, action) in [
        ("staff:risk.one", "customer_frozen"),
        ("staff:check.one", "customer_unfrozen"),
    ] {
        assert!(
            actions.iter().any(|(a, b)| a == actor && b == action),
            "{actor} {action} in {actions:?}"
        );
    }

    // A limit override: a malformed one is refused at the proposal; an
    // approved one is what every payment kind reads from then on.
    let tier_limits = app.customers.identity.policy().tiers.limits(0);
    let (status, body, _) = app
        .send(Method::POST, "/v1/staff/approvals", &[("Authorization", &both), ("Idempotency-Key", "p-lim-bad")], Some(json!({"action": "override_limit", "subject": customer, "params": {"daily": -5}, "reason": "x"})))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("params")),
        "{body}"
    );
    let raised = tier_limits.daily + 1_000_000;
    let (status, proposal, _) = app
        .send(Method::POST, "/v1/staff/approvals", &[("Authorization", &both), ("Idempotency-Key", "p-lim")], Some(json!({"action": "override_limit", "subject": customer, "params": {"daily": raised}, "reason": "business owner, documents checked"})))
        .await;
    assert_eq!(status, 201, "{proposal}");
    let identity = app.customers.identity.clone();
    let who = customer.clone();
    let before = tokio::task::spawn_blocking(move || identity.limits_for(&who, 0))
        .await
        .expect("join")
        .expect("limits");
    assert_eq!(before, tier_limits, "nothing changes before the approval");
    let decide = format!(
        "/v1/staff/approvals/{}/decide",
        proposal["id"].as_str().expect("id")
    );
    let (status, decided, _) = app
        .send(
            Method::POST,
            &decide,
            &[("Authorization", &checker), ("Idempotency-Key", "d-lim")],
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    let identity = app.customers.identity.clone();
    let who = customer.clone();
    let after = tokio::task::spawn_blocking(move || identity.limits_for(&who, 0))
        .await
        .expect("join")
        .expect("limits");
    assert_eq!(after.daily, raised);
    assert_eq!(
        after.per_payment, tier_limits.per_payment,
        "fields not named keep the tier's"
    );
}

/// Registers `phone` over HTTP; returns the `Authorization` header value.
async fn register_over_http(app: &App, phone: &str, name: &str) -> String {
    use reqwest::Method;
    let (status, started, _) = app
        .send(
            Method::POST,
            "/v1/auth/registrations",
            &[("Idempotency-Key", "reg")],
            Some(json!({"contact": phone})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let code = app.code_for(phone).await;
    let id = started["registration_id"].as_str().expect("id");
    let (status, registered, _) = app
        .send(
            Method::POST,
            &format!("/v1/auth/registrations/{id}/complete"),
            &[],
            Some(json!({"code": code, "password": PASSWORD, "display_name": name, "accept_terms": "2026-11"})),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    format!(
        "Bearer {}",
        registered["session"]["token"].as_str().expect("token")
    )
}

fn error_of(body: &Value) -> (Option<&str>, Option<&str>) {
    (
        body["error"]["code"].as_str(),
        body["error"]["field"].as_str(),
    )
}

impl App {
    /// A write as the customer holding `bearer`, with an Idempotency-Key.
    async fn customer_post(
        &self,
        bearer: &str,
        key: &str,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let headers = [("Authorization", bearer), ("Idempotency-Key", key)];
        let (status, body, _) = self
            .send(reqwest::Method::POST, path, &headers, Some(body))
            .await;
        (status, body)
    }

    /// A write by someone not signed in, with an Idempotency-Key.
    async fn public_post(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let headers = [("Idempotency-Key", key)];
        let (status, body, _) = self
            .send(reqwest::Method::POST, path, &headers, Some(body))
            .await;
        (status, body)
    }

    async fn customer_get(&self, bearer: &str, path: &str) -> (u16, Value) {
        let headers = [("Authorization", bearer)];
        let (status, body, _) = self.send(reqwest::Method::GET, path, &headers, None).await;
        (status, body)
    }

    async fn sign_in(&self, contact: &str, password: &str) -> (u16, Value) {
        let body = json!({"contact": contact, "password": password});
        let (status, body, _) = self
            .send(reqwest::Method::POST, "/v1/auth/sessions", &[], Some(body))
            .await;
        (status, body)
    }
}

/// A six-digit code that is not `code`.
fn other_than(code: &str) -> &'static str {
    if code == "000000" {
        "000001"
    } else {
        "000000"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_contact_and_password_changes_and_reset_over_http() {
    let db = TestDatabase::sqlite();
    let path = match &db.database {
        coffer_store::Database::Sqlite(path) => path.clone(),
        coffer_store::Database::Postgres(_) => unreachable!(),
    };
    let app = spawn_app(db).await;
    let (old_phone, new_phone, stranger) = ("+8613400134000", "+8613422225555", "+8613466667777");
    let (new_password, reset_password) = ("plum blossoms in winter", "a kite over west lake");
    let bearer = register_over_http(&app, old_phone, "Zhou Min").await;

    // The profile: read, edit (a blank name is refused), read back.
    let (status, profile) = app.customer_get(&bearer, "/v1/me/profile").await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["customer"]["display_name"], "Zhou Min");
    assert_eq!(profile["customer"]["contact"], "+86*******4000");
    let (status, body) = app
        .customer_post(
            &bearer,
            "p-0",
            "/v1/me/profile",
            json!({"display_name": "  "}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("display_name")))
    );
    let rename = json!({"display_name": "周敏"});
    let (status, body) = app
        .customer_post(&bearer, "p-1", "/v1/me/profile", rename.clone())
        .await;
    assert_eq!((status, &body), (200, &json!({"updated": true})));
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Idempotency-Key", "p-1"),
    ];
    let (status, _, replayed) = app
        .send(
            reqwest::Method::POST,
            "/v1/me/profile",
            &headers,
            Some(rename),
        )
        .await;
    assert_eq!(status, 200);
    assert!(replayed.contains_key("idempotent-replayed"));
    let (_, profile) = app.customer_get(&bearer, "/v1/me/profile").await;
    assert_eq!(profile["customer"]["display_name"], "周敏");

    // The contact: a code to each number; a wrong one is refused without
    // saying which; both right move the sign-in and the old number is told.
    let (status, change) = app
        .customer_post(
            &bearer,
            "c-1",
            "/v1/me/contact/change",
            json!({"new_contact": new_phone}),
        )
        .await;
    assert_eq!(status, 202, "{change}");
    assert_eq!(
        (
            change["old_sent_to"].as_str(),
            change["new_sent_to"].as_str()
        ),
        (Some("+86*******4000"), Some("+86*******5555"))
    );
    let old_code = app.code_for(old_phone).await;
    let new_code = app.code_for(new_phone).await;
    let confirm = format!(
        "/v1/me/contact/change/{}/confirm",
        change["change_id"].as_str().expect("id")
    );
    let (status, body) = app
        .customer_post(
            &bearer,
            "c-2",
            &confirm,
            json!({"old_code": other_than(&old_code), "new_code": new_code}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("code_invalid"), None))
    );
    let (status, body) = app
        .customer_post(
            &bearer,
            "c-3",
            &confirm,
            json!({"old_code": old_code, "new_code": new_code}),
        )
        .await;
    assert_eq!(
        (status, &body),
        (
            200,
            &json!({"contact": "+86*******5555", "contact_kind": "phone"})
        )
    );
    let alert = app.last_message(old_phone).await;
    assert!(alert.contains("was moved to +86*******5555"), "{alert}");
    assert_eq!(
        app.sign_in(old_phone, PASSWORD).await.0,
        401,
        "the old number no longer signs in"
    );
    let (status, laptop) = app.sign_in(new_phone, PASSWORD).await;
    assert_eq!(status, 201, "{laptop}");
    let laptop = format!("Bearer {}", laptop["token"].as_str().expect("token"));

    // The password: the current one is checked, the new one too; other
    // devices are signed out, this one is not.
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let (status, body) = app
        .customer_post(
            &bearer,
            "w-1",
            "/v1/me/password",
            change("not it at all", new_password),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (
            422,
            (Some("current_password_wrong"), Some("current_password"))
        )
    );
    let (status, body) = app
        .customer_post(
            &bearer,
            "w-2",
            "/v1/me/password",
            change(PASSWORD, "password123"),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("weak_password"), Some("new_password")))
    );
    let (status, body) = app
        .customer_post(
            &bearer,
            "w-3",
            "/v1/me/password",
            change(PASSWORD, new_password),
        )
        .await;
    assert_eq!(
        (status, &body),
        (200, &json!({"changed": true, "other_sessions_revoked": 1}))
    );
    assert_eq!(app.customer_get(&laptop, "/v1/me").await.0, 401);
    assert_eq!(app.customer_get(&bearer, "/v1/me").await.0, 200);

    // A forgotten password: the same answer for a stranger's number, but a
    // code only to a wallet's; a wrong code is refused; the right one resets.
    let (status, unknown) = app
        .public_post(
            "r-1",
            "/v1/auth/password-reset",
            json!({"contact": stranger}),
        )
        .await;
    assert_eq!(status, 202, "{unknown}");
    let (status, started) = app
        .public_post(
            "r-2",
            "/v1/auth/password-reset",
            json!({"contact": new_phone}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let fields = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(fields(&unknown), fields(&started));
    assert_eq!(
        app.last_message(stranger).await,
        "",
        "nothing sent to a stranger"
    );
    let code = app.code_for(new_phone).await;
    let complete = format!(
        "/v1/auth/password-reset/{}/complete",
        started["reset_id"].as_str().expect("id")
    );
    let (status, body) = app
        .public_post(
            "r-3",
            &complete,
            json!({"code": other_than(&code), "new_password": reset_password}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("code_invalid"), Some("code")))
    );
    let (status, body) = app
        .public_post(
            "r-4",
            &complete,
            json!({"code": code, "new_password": reset_password}),
        )
        .await;
    assert_eq!(
        (status, &body),
        (200, &json!({"reset": true, "sessions_revoked": 1}))
    );
    assert_eq!(
        app.customer_get(&bearer, "/v1/me").await.0,
        401,
        "every session ended"
    );
    assert_eq!(app.sign_in(new_phone, reset_password).await.0, 201);

    // Nothing of it in clear in the database, the idempotency records
    // included; nor a plain hash of a request with a password in it, which
    // hashing guesses would find.
    let mut bytes = std::fs::read(&path).expect("db");
    bytes.extend(std::fs::read(format!("{}-wal", path.display())).unwrap_or_default());
    let plain_hash = {
        use sha2::{Digest, Sha256};
        let body = change(PASSWORD, new_password).to_string();
        let mut hasher = Sha256::new();
        hasher.update(b"change_password\0");
        hasher.update(body.as_bytes());
        hex::encode(hasher.finalize())
    };
    for needle in [
        "13400134000",
        "13422225555",
        "13466667777",
        PASSWORD,
        new_password,
        reset_password,
        "周敏",
        plain_hash.as_str(),
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} is in the database file"
        );
    }
}

#[path = "../../../identity/tests/suite/support/authenticator.rs"]
mod authenticator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_added_then_used_to_sign_in_over_http() {
    use reqwest::Method;
    let app = spawn_app(TestDatabase::sqlite()).await;
    let (customer, bearer) = registered_customer(&app, "+8613200132000").await;
    let settings = coffer_identity::PasskeySettings::default();
    let mut device = authenticator::SoftPasskey::new(&settings.rp_id, &settings.origin);
    // A session alone does not add a passkey.
    let (status, refused, _) = app
        .send(
            Method::POST,
            "/v1/me/passkeys/registration",
            &[("Authorization", &bearer), ("Idempotency-Key", "pk-0")],
            Some(json!({"step_up_challenge_id": "none"})),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("step_up_required")),
        "{refused}"
    );
    let step_up = passkey_step_up(&app, &bearer, "+8613200132000", "pk").await;
    let (status, ceremony, _) = app
        .send(
            Method::POST,
            "/v1/me/passkeys/registration",
            &[("Authorization", &bearer), ("Idempotency-Key", "pk-1")],
            Some(json!({"step_up_challenge_id": step_up})),
        )
        .await;
    assert_eq!(status, 201, "{ceremony}");
    let answer = device.register(&ceremony["options"]);
    let finish = format!(
        "/v1/me/passkeys/registration/{}/finish",
        ceremony["ceremony_id"].as_str().expect("id")
    );
    let (status, added, _) = app
        .send(
            Method::POST,
            &finish,
            &[("Authorization", &bearer), ("Idempotency-Key", "pk-2")],
            Some(json!({"credential": answer, "name": "My phone"})),
        )
        .await;
    assert_eq!(
        (status, added["name"].as_str()),
        (201, Some("My phone")),
        "{added}"
    );
    let (_, list, _) = app
        .send(
            Method::GET,
            "/v1/me/passkeys",
            &[("Authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));

    // Sign in with the passkey alone.
    let (status, challenge, _) = app
        .send(
            Method::POST,
            "/v1/auth/passkeys/challenges",
            &[("Idempotency-Key", "pk-3")],
            None,
        )
        .await;
    assert_eq!(status, 201, "{challenge}");
    let assertion = device.sign_in(&challenge["options"]);
    let verify = format!(
        "/v1/auth/passkeys/challenges/{}/verify",
        challenge["ceremony_id"].as_str().expect("id")
    );
    let (status, session, headers) = app
        .send(
            Method::POST,
            &verify,
            &[],
            Some(json!({"credential": assertion.clone()})),
        )
        .await;
    assert_eq!(
        (status, session["customer_id"].as_str()),
        (201, Some(customer.as_str())),
        "{session}"
    );
    assert!(headers.get("set-cookie").is_some());
    let (status, body, _) = app
        .send(
            Method::POST,
            &verify,
            &[],
            Some(json!({"credential": assertion})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("challenge_invalid"))
    );
    let (status, body, _) = app
        .send(
            Method::POST,
            &verify,
            &[],
            Some(json!({"credential": {"id": "x"}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("credential"))
    );
}

/// A verified step-up for a passkey change (an SMS code to `phone`), as
/// adding or removing a passkey needs: the challenge id.
async fn passkey_step_up(app: &App, bearer: &str, phone: &str, key: &str) -> String {
    let (status, challenge, _) = app
        .send(
            reqwest::Method::POST,
            "/v1/me/step-up",
            &[("Authorization", bearer), ("Idempotency-Key", &format!("{key}-su"))],
            Some(json!({"operation": "passkey_change", "amount": 0, "currency": "CNY", "payee": "passkeys", "method": "code"})),
        )
        .await;
    assert_eq!(status, 201, "{challenge}");
    let id = challenge["challenge_id"].as_str().expect("id").to_string();
    let code = app.code_for(phone).await;
    let (status, verified, _) = app
        .send(
            reqwest::Method::POST,
            &format!("/v1/me/step-up/{id}/verify"),
            &[
                ("Authorization", bearer),
                ("Idempotency-Key", &format!("{key}-v")),
            ],
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(status, 200, "{verified}");
    id
}

/// Adds a passkey on `device` for the customer holding `bearer`, over HTTP.
async fn add_passkey_over_http(
    app: &App,
    (bearer, phone): (&str, &str),
    device: &mut authenticator::SoftPasskey,
    key: &str,
) {
    let step_up = passkey_step_up(app, bearer, phone, key).await;
    let start_key = format!("{key}-start");
    let (status, ceremony, _) = app
        .send(
            reqwest::Method::POST,
            "/v1/me/passkeys/registration",
            &[("Authorization", bearer), ("Idempotency-Key", &start_key)],
            Some(json!({"step_up_challenge_id": step_up})),
        )
        .await;
    assert_eq!(status, 201, "{ceremony}");
    let answer = device.register(&ceremony["options"]);
    let finish = format!(
        "/v1/me/passkeys/registration/{}/finish",
        ceremony["ceremony_id"].as_str().expect("id")
    );
    let (status, added) = app
        .customer_post(
            bearer,
            &format!("{key}-finish"),
            &finish,
            json!({"credential": answer, "name": "phone"}),
        )
        .await;
    assert_eq!(status, 201, "{added}");
}

/// A step-up confirmed with a passkey over HTTP: options naming the
/// customer's passkey, refusal of a forged, foreign or replayed answer,
/// and an operation let through once, for exactly its amount.
async fn passkey_step_up_over_http(app: &App) {
    let settings = coffer_identity::PasskeySettings::default();
    let (customer, bearer) = registered_customer(app, "+8613200132111").await;
    let mut device = authenticator::SoftPasskey::new(&settings.rp_id, &settings.origin);
    add_passkey_over_http(app, (&bearer, "+8613200132111"), &mut device, "mine").await;
    let (_, mallory) = registered_customer(app, "+8613200132222").await;
    let mut mallory_device = authenticator::SoftPasskey::new(&settings.rp_id, &settings.origin);
    add_passkey_over_http(
        app,
        (&mallory, "+8613200132222"),
        &mut mallory_device,
        "hers",
    )
    .await;

    let step_up = json!({"operation": "payment", "amount": 88_800, "currency": "CNY", "payee": "merchant:city-metro", "method": "passkey"});
    let (status, challenge) = app
        .customer_post(&bearer, "su-pk-1", "/v1/me/step-up", step_up.clone())
        .await;
    assert_eq!(status, 201, "{challenge}");
    assert_eq!(challenge["method"], "passkey");
    let options = &challenge["passkey_options"];
    assert_eq!(options["publicKey"]["userVerification"], "required");
    let answer = device.sign_in(options);
    assert_eq!(
        options["publicKey"]["allowCredentials"]
            .as_array()
            .map(|list| list.iter().map(|c| c["id"].clone()).collect::<Vec<_>>()),
        Some(vec![answer["id"].clone()])
    );
    let verify = format!(
        "/v1/me/step-up/{}/verify",
        challenge["challenge_id"].as_str().expect("id")
    );

    // A forged signature and another customer's passkey are refused.
    let mut forged = answer.clone();
    let mut signature: Vec<char> = forged["response"]["signature"]
        .as_str()
        .expect("signature")
        .chars()
        .collect();
    let middle = signature.len() / 2;
    signature[middle] = if signature[middle] == 'A' { 'B' } else { 'A' };
    forged["response"]["signature"] = json!(signature.into_iter().collect::<String>());
    let foreign = mallory_device.sign_in(options);
    for (key, bad) in [("v-pk-1", forged), ("v-pk-2", foreign)] {
        let (status, body) = app
            .customer_post(&bearer, key, &verify, json!({ "credential": bad }))
            .await;
        assert_eq!(
            (status, error_of(&body)),
            (422, (Some("invalid_field"), Some("credential"))),
            "{body}"
        );
    }
    // Neither or both answers: a clear error, not a guess.
    for (key, body) in [
        ("v-pk-3", json!({})),
        ("v-pk-4", json!({"code": "123456", "credential": answer})),
    ] {
        let (status, body) = app.customer_post(&bearer, key, &verify, body).await;
        assert_eq!(
            (status, error_of(&body)),
            (422, (Some("invalid_field"), Some("code"))),
            "{body}"
        );
    }
    let (status, body) = app
        .customer_post(&bearer, "v-pk-5", &verify, json!({ "credential": answer }))
        .await;
    assert_eq!((status, &body), (200, &json!({"verified": true})));
    // The same answer again, under a new key: the challenge is spent.
    let (status, body) = app
        .customer_post(&bearer, "v-pk-6", &verify, json!({ "credential": answer }))
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (422, Some("challenge_invalid"))
    );

    let challenge_id = challenge["challenge_id"].as_str().expect("id").to_string();
    let identity = app.customers.identity.clone();
    let consume = move |amount: i64| {
        let identity = identity.clone();
        let (customer, challenge_id) = (customer.clone(), challenge_id.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                identity.consume_step_up_now(
                    &customer,
                    &challenge_id,
                    &coffer_identity::Operation {
                        kind: "payment".into(),
                        amount,
                        currency: "CNY".into(),
                        payee: "merchant:city-metro".into(),
                    },
                )
            })
            .await
            .expect("join")
        }
    };
    assert!(consume(88_801).await.is_err(), "another amount");
    assert!(consume(88_800).await.is_ok());
    assert!(consume(88_800).await.is_err(), "single use");

    // Every customer answers with their own passkeys; one without any is
    // told to use another method.
    let (status, body) = app
        .customer_post(&mallory, "su-pk-2", "/v1/me/step-up", step_up)
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, nobody) = registered_customer(app, "+8613200132333").await;
    let (status, body) = app
        .customer_post(
            &nobody,
            "su-pk-3",
            "/v1/me/step-up",
            json!({"operation": "payment", "amount": 1, "currency": "CNY", "payee": "x", "method": "passkey"}),
        )
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("method"))),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_step_up_over_http_on_sqlite() {
    passkey_step_up_over_http(&spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_step_up_over_http_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    passkey_step_up_over_http(&spawn_app(db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_removed_once_and_gone_from_the_list_on_sqlite() {
    passkey_removed_once_and_gone_from_the_list(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_removed_once_and_gone_from_the_list_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("postgres");
    passkey_removed_once_and_gone_from_the_list(db).await;
}

async fn passkey_removed_once_and_gone_from_the_list(db: TestDatabase) {
    let app = spawn_app(db).await;
    let (_, bearer) = registered_customer(&app, "+8613200132077").await;
    let settings = coffer_identity::PasskeySettings::default();
    let mut device = authenticator::SoftPasskey::new(&settings.rp_id, &settings.origin);
    add_passkey_over_http(&app, (&bearer, "+8613200132077"), &mut device, "pk-rm").await;
    let (_, before, _) = app
        .send(
            reqwest::Method::GET,
            "/v1/me/passkeys",
            &[("Authorization", &bearer)],
            None,
        )
        .await;
    let id = before["data"][0]["id"]
        .as_str()
        .expect("a passkey")
        .to_string();
    let path = format!("/v1/me/passkeys/{id}/remove");

    // A session alone does not remove a passkey either.
    let (status, refused) = app
        .customer_post(
            &bearer,
            "rm-0",
            &path,
            json!({"step_up_challenge_id": "none"}),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("step_up_required")),
        "{refused}"
    );
    let step_up = passkey_step_up(&app, &bearer, "+8613200132077", "rm").await;
    let body = json!({"step_up_challenge_id": step_up});
    let (status, removed) = app
        .customer_post(&bearer, "rm-1", &path, body.clone())
        .await;
    assert_eq!(
        (status, &removed["removed"]),
        (200, &json!(true)),
        "{removed}"
    );
    // A retry answers the first result; a new request finds nothing.
    let (status, _) = app.customer_post(&bearer, "rm-1", &path, body).await;
    assert_eq!(status, 200);
    let step_up = passkey_step_up(&app, &bearer, "+8613200132077", "rm2").await;
    let (status, gone) = app
        .customer_post(
            &bearer,
            "rm-2",
            &path,
            json!({"step_up_challenge_id": step_up}),
        )
        .await;
    assert_eq!(
        (status, &gone["error"]["code"]),
        (404, &json!("not_found")),
        "{gone}"
    );
    let (_, after, _) = app
        .send(
            reqwest::Method::GET,
            "/v1/me/passkeys",
            &[("Authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(after["data"], json!([]), "{after}");
}
