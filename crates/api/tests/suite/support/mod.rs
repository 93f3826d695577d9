//! The real app on port 0 over a throwaway SQLite database, with an API key
//! holding every scope (the pattern of `tests/api.rs`).

use std::sync::Arc;

use coffer_api::AppState;
use coffer_app::Engine;
use coffer_core::CurrencyRegistry;
use coffer_testkit::TestDatabase;
use serde_json::Value;

pub struct App {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
    _db: TestDatabase,
}

pub async fn spawn_app() -> App {
    let db = TestDatabase::sqlite();
    let database = db.database.clone();
    // The stores connect synchronously: set them up off the async workers.
    let (state, token) = tokio::task::spawn_blocking(move || {
        let clock = coffer_app::system_clock();
        let engine = Arc::new(Engine::start(&database, clock.clone()).expect("engine"));
        let service: Arc<dyn coffer_store::service::ServiceStore> =
            Arc::from(coffer_store::service::open(&database, 2).expect("service"));
        let (token, record) = coffer_api::auth::generate(
            "test",
            vec!["ledger:read".into(), "ledger:write".into()],
            0,
        );
        service.insert_api_key(&record).expect("key");
        let customers = coffer_api::CustomerServices::open(
            &database,
            clock.clone(),
            Arc::new(coffer_vault::LocalMasterKey::from_bytes([5; 32])),
            vec![Arc::new(coffer_notify::SimulatedTransport::new(
                coffer_notify::Channel::Sms,
            ))],
            coffer_identity::Policy::default(),
            coffer_identity::PasswordPolicy::new(None),
        )
        .expect("customer services");
        let state = AppState::new(
            engine,
            database.open_reader(2).expect("reader"),
            service,
            Arc::new(CurrencyRegistry::default()),
            clock,
            &customers,
        );
        (state, token)
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
        client: reqwest::Client::new(),
        _db: db,
    }
}

#[allow(dead_code)] // Not every test file posts.
impl App {
    /// POSTs `body` with a key and the given Idempotency-Key: (status, JSON).
    pub async fn post(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("send");
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// GETs with the key: (status, content type, JSON).
    pub async fn get(&self, path: &str) -> (u16, String, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("send");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (
            response.status().as_u16(),
            content_type,
            response.json().await.unwrap_or(Value::Null),
        )
    }
}
