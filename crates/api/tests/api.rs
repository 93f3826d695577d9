//! Black-box tests of the API conventions: the real app on port 0, a real
//! HTTP client, SQLite and PostgreSQL underneath.

use std::sync::Arc;

use coffer_api::AppState;
use coffer_app::Engine;
use coffer_core::CurrencyRegistry;
use coffer_testkit::TestDatabase;
use serde_json::{json, Value};

struct App {
    base: String,
    token: String,
    read_only: String,
    client: reqwest::Client,
    _db: TestDatabase,
}

async fn spawn_app(db: TestDatabase) -> App {
    // The stores connect synchronously: set them up off the async workers.
    let database = db.database.clone();
    let (state, token, read_only) = tokio::task::spawn_blocking(move || {
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
        let state = AppState::new(
            engine,
            reader,
            service,
            Arc::new(CurrencyRegistry::default()),
            clock,
        );
        (state, token, read_only)
    })
    .await
    .expect("setup");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        axum::serve(listener, coffer_api::router(state))
            .await
            .expect("serve")
    });
    App {
        base,
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
