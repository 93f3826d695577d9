//! The real app on port 0 over a throwaway SQLite database, with an API key
//! holding every scope (the pattern of `tests/api.rs`).

pub mod customer_app;

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

/// Delivers every callback the connector simulators have queued (due or
/// not) to the app's signed webhook endpoints, as the card network and the
/// core bank would; each must be accepted.
pub async fn deliver_simulated_callbacks(client: &reqwest::Client, base: &str, state: &AppState) {
    let simulators = state.connectors.simulators.clone();
    let callbacks: Vec<coffer_payments::SignedCallback> = tokio::task::spawn_blocking(move || {
        simulators
            .iter()
            .flat_map(|s| s.take_due(i64::MAX).expect("callbacks"))
            .collect()
    })
    .await
    .expect("join");
    for callback in callbacks {
        let path = coffer_api::connector_tasks::webhook_path(callback.connector);
        let response = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("Coffer-Signature", &callback.signature)
            .body(callback.body.clone())
            .send()
            .await
            .expect("deliver a callback");
        assert_eq!(response.status().as_u16(), 200, "callback refused");
    }
}

/// A new staff member with `roles`, signed in over the API with the
/// password and the authenticator code at `clock`'s time (the app's own
/// clock, which may be a test's manual one): the `Authorization` value.
pub async fn staff_bearer(
    client: &reqwest::Client,
    base: &str,
    identity: Arc<coffer_identity::Identity>,
    username: &str,
    roles: Vec<coffer_identity::Role>,
    clock: &dyn coffer_core::Clock,
) -> String {
    let name = username.to_string();
    let created = tokio::task::spawn_blocking(move || {
        identity.create_staff(
            &name,
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
    .expect("create staff");
    let seed = totp_rs::Secret::Encoded(created.totp_base32.expose().clone())
        .to_bytes()
        .expect("seed");
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, seed).expect("totp");
    let seconds = u64::try_from(clock.now().as_nanos() / 1_000_000_000).expect("time");
    let response = client
        .post(format!("{base}/v1/staff/sessions"))
        .json(&serde_json::json!({
            "username": username,
            "password": created.password.expose(),
            "code": totp.generate(seconds),
        }))
        .send()
        .await
        .expect("staff sign-in");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "{username}: {body}");
    format!("Bearer {}", body["token"].as_str().expect("token"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every needle absent from the database: the files on SQLite (database,
/// WAL, ledger log, anything beside them), every text and binary column on
/// PostgreSQL. How tests prove personal data is stored only encrypted, or
/// is gone after erasure.
pub fn assert_not_stored(database: &coffer_store::Database, needles: &[(String, Vec<u8>)]) {
    match database {
        coffer_store::Database::Sqlite(path) => {
            let dir = path.parent().expect("dir");
            let mut scanned = 0;
            for entry in std::fs::read_dir(dir).expect("dir") {
                let path = entry.expect("entry").path();
                let bytes = std::fs::read(&path).expect("read");
                scanned += 1;
                for (what, needle) in needles {
                    assert!(
                        !contains(&bytes, needle),
                        "{what} found in {}",
                        path.display()
                    );
                }
            }
            assert!(scanned >= 2, "the database and its files");
        }
        coffer_store::Database::Postgres(_) => {
            let sql = coffer_store::sql::SqlStore::open(database, 1).expect("sql");
            let columns = sql
                .run(|db| {
                    db.query(
                        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
                         WHERE table_schema = 'public' AND data_type IN ('text', 'bytea', 'character varying')",
                        &[],
                    )
                })
                .expect("columns");
            assert!(columns.len() > 50, "{} columns", columns.len());
            for column in columns {
                let (table, name) = (column.text(0).expect("t"), column.text(1).expect("c"));
                let cast = if column.text(2).expect("type") == "bytea" {
                    ""
                } else {
                    "::text"
                };
                let rows = sql
                    .run(|db| db.query(&format!("SELECT \"{name}\"{cast} FROM \"{table}\""), &[]))
                    .expect("scan");
                for row in rows {
                    let bytes = match row.value(0).expect("value") {
                        coffer_store::sql::Value::Text(text) => text.into_bytes(),
                        coffer_store::sql::Value::Bytes(bytes) => bytes,
                        _ => continue,
                    };
                    for (what, needle) in needles {
                        assert!(!contains(&bytes, needle), "{what} found in {table}.{name}");
                    }
                }
            }
        }
    }
}
