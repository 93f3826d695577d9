//! Compliance over HTTP, black-box: the real app on port 0 over SQLite and
//! PostgreSQL. A compliance officer loads a watch list; a payee on it cannot
//! be quoted (`payee_under_review`) until the officer clears the hit; a
//! listed merchant cannot be approved and is blocked when the hit is
//! confirmed; the report routes refuse a day that has not ended and export
//! CSV; support staff get 403 on every compliance route.

use std::net::SocketAddr;
use std::sync::Arc;

use coffer_api::{AppState, CustomerServices};
use coffer_app::Engine;
use coffer_core::{Clock, CurrencyRegistry};
use coffer_identity::{PasswordPolicy, Policy, Role};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_testkit::TestDatabase;
use coffer_vault::LocalMasterKey;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "plum blossoms in snow";
const LIST: &str = r#"[
  {"entry_id": "H-1", "name": "Ivan Petrovsky-Zamorin", "aliases": ["Ivan Zamorin"], "list_source": "TEST", "kind": "person"},
  {"entry_id": "H-2", "name": "Shellgame Trading Ltd", "list_source": "TEST", "kind": "entity"}
]"#;

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
    let clock: Arc<dyn Clock> = coffer_app::system_clock();
    let (state, customers) = tokio::task::spawn_blocking(move || {
        let engine = Arc::new(Engine::start(&database, clock.clone()).expect("engine"));
        let reader = database.open_reader(4).expect("reader");
        let service: Arc<dyn coffer_store::service::ServiceStore> =
            Arc::from(coffer_store::service::open(&database, 4).expect("service"));
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
        state.merchants.open_accounts().expect("merchant accounts");
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
    ) -> (u16, String, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, content_type, value)
    }

    async fn post(&self, bearer: &str, key: &str, path: &str, body: Value) -> (u16, Value) {
        let (status, _, value) = self
            .send(
                Method::POST,
                path,
                &[("Authorization", bearer), ("Idempotency-Key", key)],
                Some(body),
            )
            .await;
        (status, value)
    }

    async fn get(&self, bearer: &str, path: &str) -> (u16, String, Value) {
        self.send(Method::GET, path, &[("Authorization", bearer)], None)
            .await
    }

    async fn customer(&self, phone: &str, name: &str) -> (String, String) {
        let (status, _, started) = self
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
        let code = self.sms.last_code(phone).expect("a code was sent");
        let id = started["registration_id"].as_str().expect("id");
        let (status, _, registered) = self
            .send(
                Method::POST,
                &format!("/v1/auth/registrations/{id}/complete"),
                &[],
                Some(json!({"code": code, "password": PASSWORD, "display_name": name, "accept_terms": "2026-11"})),
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

    async fn staff(&self, username: &str, role: Role) -> String {
        crate::support::staff_bearer(
            &self.client,
            &self.base,
            self.customers.identity.clone(),
            username,
            vec![role],
            &coffer_core::SystemClock,
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn compliance_over_http_on_sqlite() {
    compliance_officers_work_the_queue_and_reports(spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn compliance_over_http_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("database");
    compliance_officers_work_the_queue_and_reports(spawn_app(db).await).await;
}

async fn compliance_officers_work_the_queue_and_reports(app: App) {
    {
        let backend = app._db.name();
        let officer = app.staff("wang.fang", Role::ComplianceOfficer).await;
        let support = app.staff("li.ming", Role::Support).await;

        // Support staff: 403 on every compliance route.
        for path in [
            "/v1/staff/compliance/hits",
            "/v1/staff/compliance/watchlists",
            "/v1/staff/compliance/reports",
            "/v1/staff/compliance/report-exports?date=2026-11-20&format=csv",
        ] {
            let (status, _, body) = app.get(&support, path).await;
            assert_eq!(
                (status, &body["error"]["code"]),
                (403, &json!("forbidden")),
                "{backend} {path}: {body}"
            );
        }
        let (status, body) = app
            .post(
                &support,
                "s1",
                "/v1/staff/compliance/watchlists",
                json!({"format": "json", "content": LIST}),
            )
            .await;
        assert_eq!(status, 403, "{body}");

        // A bad list is refused whole, naming the place.
        let (status, body) = app
            .post(&officer, "w0", "/v1/staff/compliance/watchlists", json!({"format": "csv", "content": "entry_id,name,list_source,kind\nA,X Y,T,ship\n"}))
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (422, &json!("watchlist_invalid")),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("line 2"),
            "{body}"
        );
        let (status, version) = app
            .post(
                &officer,
                "w1",
                "/v1/staff/compliance/watchlists",
                json!({"format": "json", "content": LIST}),
            )
            .await;
        assert_eq!(
            (status, &version["version"], &version["entry_count"]),
            (201, &json!(1), &json!(2)),
            "{version}"
        );

        // A listed payee: no quote while the hit is pending.
        let (_, payer) = app.customer("+8613900000001", "Zhang San").await;
        let (payee_id, _) = app.customer("+8613900000002", "Ivan Zamorin").await;
        let quote = json!({"payee": "+8613900000002", "amount": 1000, "currency": "CNY"});
        let (status, body) = app
            .post(&payer, "q1", "/v1/me/p2p/quotes", quote.clone())
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (409, &json!("payee_under_review")),
            "{backend}: {body}"
        );
        let (status, _, hits) = app
            .get(&officer, "/v1/staff/compliance/hits?state=pending")
            .await;
        assert_eq!(status, 200, "{hits}");
        let hits = hits["data"].as_array().expect("hits").clone();
        assert_eq!(hits.len(), 1, "{backend}: {hits:?}");
        assert_eq!(
            (
                &hits[0]["customer_id"],
                &hits[0]["source"],
                &hits[0]["entry_id"]
            ),
            (&json!(payee_id), &json!("payee"), &json!("H-1"))
        );
        let hit_id = hits[0]["id"].as_str().expect("id").to_string();
        let (status, _, detail) = app
            .get(&officer, &format!("/v1/staff/compliance/hits/{hit_id}"))
            .await;
        assert_eq!(status, 200, "{detail}");
        assert_eq!(
            (&detail["screened_name"], &detail["entry"]["list_source"]),
            (&json!("Ivan Zamorin"), &json!("TEST"))
        );
        let decide = json!({"decision": "clear", "note": "a different person"});
        let (status, cleared) = app
            .post(
                &officer,
                "d1",
                &format!("/v1/staff/compliance/hits/{hit_id}/decide"),
                decide.clone(),
            )
            .await;
        assert_eq!(
            (status, &cleared["state"]),
            (200, &json!("cleared")),
            "{cleared}"
        );
        // The same key replays the answer; a new key finds it decided.
        let (status, replay) = app
            .post(
                &officer,
                "d1",
                &format!("/v1/staff/compliance/hits/{hit_id}/decide"),
                decide.clone(),
            )
            .await;
        assert_eq!((status, &replay), (200, &cleared));
        let (status, body) = app
            .post(
                &officer,
                "d2",
                &format!("/v1/staff/compliance/hits/{hit_id}/decide"),
                decide,
            )
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (409, &json!("already_decided")),
            "{body}"
        );
        let (status, body) = app.post(&payer, "q2", "/v1/me/p2p/quotes", quote).await;
        assert_eq!(status, 201, "{backend}: {body}");

        // A listed merchant: cannot be approved; a confirmed hit blocks it.
        let (_, owner) = app.customer("+8613900000003", "Owner").await;
        let (status, merchant) = app
            .post(&owner, "m1", "/v1/me/merchants", json!({"display_name": "SHELLGAME TRADING LTD.", "city": "Shanghai", "mcc": "5411", "bank_code": "ICBC", "account_number": "6222000011112222"}))
            .await;
        assert_eq!(status, 201, "{merchant}");
        let merchant_id = merchant["id"].as_str().expect("id").to_string();
        let reviewer = app.staff("zhao.min", Role::ComplianceOfficer).await;
        let (status, body) = app
            .post(
                &reviewer,
                "r1",
                &format!("/v1/staff/merchants/{merchant_id}/review"),
                json!({"approve": true, "note": "ok"}),
            )
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (409, &json!("merchant_under_review")),
            "{backend}: {body}"
        );
        let (_, _, hits) = app
            .get(&officer, "/v1/staff/compliance/hits?state=pending")
            .await;
        let hit = hits["data"]
            .as_array()
            .and_then(|h| h.first())
            .expect("a merchant hit")
            .clone();
        assert_eq!(
            (&hit["party_kind"], &hit["party_id"], &hit["source"]),
            (
                &json!("merchant"),
                &json!(merchant_id),
                &json!("merchant_onboarding")
            )
        );
        let (status, confirmed) = app
            .post(
                &officer,
                "d3",
                &format!(
                    "/v1/staff/compliance/hits/{}/decide",
                    hit["id"].as_str().expect("id")
                ),
                json!({"decision": "confirm", "note": "registered address matches"}),
            )
            .await;
        assert_eq!(
            (status, &confirmed["state"]),
            (200, &json!("confirmed")),
            "{confirmed}"
        );
        let (status, _, merchants) = app.get(&owner, "/v1/me/merchants").await;
        assert_eq!(status, 200);
        assert_eq!(
            merchants["data"][0]["status"], "rejected",
            "{backend}: {merchants}"
        );

        // Reports: a day still going on is refused; an ended one runs and exports.
        let (status, body) = app
            .post(
                &officer,
                "rr1",
                "/v1/staff/compliance/report-runs",
                json!({"date": "2100-01-01"}),
            )
            .await;
        assert_eq!(
            (status, &body["error"]["field"]),
            (422, &json!("date")),
            "{body}"
        );
        let (status, run) = app
            .post(
                &officer,
                "rr2",
                "/v1/staff/compliance/report-runs",
                json!({"date": "2026-11-20"}),
            )
            .await;
        assert_eq!((status, &run["created"]), (200, &json!(0)), "{run}");
        let (status, content_type, csv) = app
            .get(
                &officer,
                "/v1/staff/compliance/report-exports?date=2026-11-20&format=csv",
            )
            .await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/csv; charset=utf-8")
        );
        assert!(
            csv.as_str()
                .unwrap_or("")
                .starts_with("report_id,report_type,rule,status,report_date,customer_id,"),
            "{csv}"
        );
        let (status, _, body) = app
            .get(
                &officer,
                "/v1/staff/compliance/report-exports?date=2026-11-20&format=xml",
            )
            .await;
        assert_eq!((status, &body["error"]["field"]), (422, &json!("format")));
    }
}
