//! Notifications over HTTP, black-box, on SQLite and PostgreSQL: alert
//! preferences (idempotent writes, security cannot be switched off,
//! marketing consent recorded), the inbox (a security alert always there,
//! in the customer's language; read / read-all; another customer's item is
//! not found) and the staff and merchant routes' refusals.

use std::net::SocketAddr;
use std::sync::Arc;

use coffer_api::{AppState, CustomerServices};
use coffer_app::Engine;
use coffer_core::CurrencyRegistry;
use coffer_identity::{PasswordPolicy, Policy};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_testkit::TestDatabase;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "autumn moon festival";

struct App {
    base: String,
    sms: Arc<SimulatedTransport>,
    customers: Arc<CustomerServices>,
    client: reqwest::Client,
    _db: TestDatabase,
}

async fn spawn_app(db: TestDatabase) -> App {
    let database = db.database.clone();
    let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
    let transports: Vec<Arc<dyn Transport>> = vec![sms.clone()];
    let (state, customers) = tokio::task::spawn_blocking(move || {
        let clock = coffer_app::system_clock();
        let engine = Arc::new(Engine::start(&database, clock.clone()).expect("engine"));
        let reader = database.open_reader(2).expect("reader");
        let service: Arc<dyn coffer_store::service::ServiceStore> =
            Arc::from(coffer_store::service::open(&database, 2).expect("service"));
        let customers = Arc::new(
            CustomerServices::open(
                &database,
                clock.clone(),
                Arc::new(coffer_vault::LocalMasterKey::from_bytes([9; 32])),
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
        (state, customers)
    })
    .await
    .expect("setup");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let router = coffer_api::router(state);
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

    async fn customer(&self, phone: &str) -> String {
        let (status, started) = self
            .send(
                Method::POST,
                "/v1/auth/registrations",
                &[("Idempotency-Key", phone)],
                Some(json!({"contact": phone})),
            )
            .await;
        assert_eq!(status, 202, "{started}");
        let customers = self.customers.clone();
        tokio::task::spawn_blocking(move || customers.dispatcher.run_once())
            .await
            .expect("join")
            .expect("dispatch");
        let code = self.sms.last_code(phone).expect("code");
        let id = started["registration_id"].as_str().expect("id");
        let (status, registered) = self
            .send(
                Method::POST,
                &format!("/v1/auth/registrations/{id}/complete"),
                &[],
                Some(json!({"code": code, "password": PASSWORD, "display_name": "Wu Yue", "accept_terms": "2026-11"})),
            )
            .await;
        assert_eq!(status, 201, "{registered}");
        format!(
            "Bearer {}",
            registered["session"]["token"].as_str().expect("token")
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_and_the_inbox_over_http_on_sqlite() {
    preferences_and_the_inbox(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_and_the_inbox_over_http_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("postgres");
    preferences_and_the_inbox(db).await;
}

async fn preferences_and_the_inbox(db: TestDatabase) {
    {
        let app = spawn_app(db).await;
        let me = app.customer("+8613911112222").await;
        let auth = |key: &'static str| {
            [
                ("Authorization", me.clone()),
                ("Idempotency-Key", key.to_string()),
            ]
        };

        // Defaults: English, no marketing, every switch on.
        let (status, prefs) = app
            .send(
                Method::GET,
                "/v1/me/notification-preferences",
                &[("Authorization", &me)],
                None,
            )
            .await;
        assert_eq!(status, 200, "{prefs}");
        assert_eq!(prefs["language"], "en");
        assert_eq!(prefs["marketing_opt_in"], false);
        assert!(prefs["preferences"]
            .as_array()
            .expect("switches")
            .iter()
            .all(|p| p["enabled"] == true && p["category"] != "security"));

        // A change, replayed under its key: the first answer again.
        let change = json!({"language": "zh-CN",
            "preferences": [{"category": "payment_received", "channel": "sms", "enabled": false}],
            "marketing": {"opt_in": true, "source": "app"}});
        let headers = auth("np-1");
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, first) = app
            .send(
                Method::POST,
                "/v1/me/notification-preferences",
                &headers,
                Some(change.clone()),
            )
            .await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["language"], "zh-CN");
        assert_eq!(first["marketing_opt_in"], true);
        assert_eq!(first["marketing_source"], "app");
        let (status, again) = app
            .send(
                Method::POST,
                "/v1/me/notification-preferences",
                &headers,
                Some(change),
            )
            .await;
        assert_eq!((status, &again), (200, &first));
        let (status, reused) = app
            .send(
                Method::POST,
                "/v1/me/notification-preferences",
                &headers,
                Some(json!({"language": "en"})),
            )
            .await;
        assert_eq!(status, 422, "{reused}");
        // Security alerts cannot be switched off; unknown fields are refused.
        let headers = auth("np-2");
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, refused) = app
            .send(
                Method::POST,
                "/v1/me/notification-preferences",
                &headers,
                Some(json!({"preferences": [{"category": "security", "channel": "sms", "enabled": false}]})),
            )
            .await;
        assert_eq!(
            (status, &refused["error"]["field"]),
            (422, &json!("preferences")),
            "{refused}"
        );

        // A password change is a security alert: in the inbox, in Chinese now.
        let headers = auth("pw-1");
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, changed) = app
            .send(
                Method::POST,
                "/v1/me/password",
                &headers,
                Some(json!({"current_password": PASSWORD, "new_password": "winter plum blossom tea"})),
            )
            .await;
        assert_eq!(status, 200, "{changed}");
        let (status, inbox) = app
            .send(
                Method::GET,
                "/v1/me/notifications",
                &[("Authorization", &me)],
                None,
            )
            .await;
        assert_eq!(status, 200, "{inbox}");
        assert_eq!(inbox["unread_count"], 1, "{inbox}");
        let item = &inbox["data"][0];
        assert_eq!(item["category"], "security");
        assert_eq!(item["template"], "password_changed");
        assert_eq!(item["language"], "zh-CN");
        assert!(
            item["body"].as_str().expect("body").contains("密码已修改"),
            "{item}"
        );
        let id = item["id"].as_i64().expect("id");

        // Another customer sees none of it and cannot mark it.
        let other = app.customer("+8613911113333").await;
        let (status, theirs) = app
            .send(
                Method::POST,
                &format!("/v1/me/notifications/{id}/read"),
                &[("Authorization", &other), ("Idempotency-Key", "r-x")],
                None,
            )
            .await;
        assert_eq!(status, 404, "{theirs}");
        let headers = auth("r-1");
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, read) = app
            .send(
                Method::POST,
                &format!("/v1/me/notifications/{id}/read"),
                &headers,
                None,
            )
            .await;
        assert_eq!(
            (status, &read["marked"], &read["unread_count"]),
            (200, &json!(1), &json!(0)),
            "{read}"
        );
        let (status, count) = app
            .send(
                Method::GET,
                "/v1/me/notifications/unread-count",
                &[("Authorization", &me)],
                None,
            )
            .await;
        assert_eq!((status, &count["unread_count"]), (200, &json!(0)));
        let headers = auth("ra-1");
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, all) = app
            .send(
                Method::POST,
                "/v1/me/notifications/read-all",
                &headers,
                None,
            )
            .await;
        assert_eq!((status, &all["marked"]), (200, &json!(0)), "{all}");
        let (status, bad) = app
            .send(
                Method::GET,
                "/v1/me/notifications?limit=0",
                &[("Authorization", &me)],
                None,
            )
            .await;
        assert_eq!(
            (status, &bad["error"]["field"]),
            (422, &json!("limit")),
            "{bad}"
        );

        // Staff and merchant routes are not a customer's.
        for path in [
            "/v1/staff/notifications/dead-letters",
            "/v1/merchant/webhook-deliveries",
            "/v1/staff/campaigns",
        ] {
            let (status, _) = app
                .send(Method::GET, path, &[("Authorization", &me)], None)
                .await;
            assert!(status == 401 || status == 403, "{path}: {status}");
        }
    }
}
