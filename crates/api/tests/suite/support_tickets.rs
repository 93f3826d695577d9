//! Customer support tickets over HTTP, black-box, on SQLite and PostgreSQL:
//! a ticket opened from the customer's own transaction (someone else's is
//! refused), idempotent writes (a retry replays, the same key with another
//! body is refused), bad input refused by field, staff without
//! `handle_support` refused, a staff answer alerting the customer in the
//! app, the state machine (answered → open → resolved → closed), every
//! staff read and action in the audit log and the customer's access log,
//! the text nowhere in clear in the database, in the data export, and gone
//! after erasure (neither the text nor its ciphertext left).
//! (Named `support_tickets`: `support` is the suite's shared helpers.)

use std::net::SocketAddr;
use std::sync::Arc;

use coffer_api::{AppState, CustomerServices};
use coffer_app::Engine;
use coffer_core::CurrencyRegistry;
use coffer_identity::{PasswordPolicy, Policy, Role};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_payments::FundingPolicy;
use coffer_store::sql::{SqlStore, Value as SqlValue};
use coffer_store::sql_params;
use coffer_testkit::TestDatabase;
use coffer_vault::LocalMasterKey;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "plum blossom in the snow";
const PHONE: &str = "+8613900139401";
const OTHER_PHONE: &str = "+8613900139402";
const THIRD_PHONE: &str = "+8613900139409";
const LEAVER_PHONE: &str = "+8613900139403";
const PAN: &str = "4111111111111111";
const TICKET_TEXT: &str = "Charged twice at Lotus Tea House on Tuesday evening";
const STAFF_TEXT: &str = "We found the duplicate and are refunding it within two days";
const LEAVER_TEXT: &str = "Please close my wallet, moving to Hangzhou soon";

struct TicketApp {
    base: String,
    sms: Arc<SimulatedTransport>,
    customers: Arc<CustomerServices>,
    state: AppState,
    client: reqwest::Client,
    db: TestDatabase,
}

async fn spawn_ticket_app(db: TestDatabase) -> TicketApp {
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
        )
        .with_funding_policy(FundingPolicy {
            status_query_after_ms: 0,
            ..FundingPolicy::default()
        });
        state.open_bank_accounts().expect("bank accounts");
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
    TicketApp {
        base,
        sms,
        customers,
        state,
        client: reqwest::Client::new(),
        db,
    }
}

impl TicketApp {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value, String, bool) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            replayed,
        )
    }

    async fn post(&self, bearer: &str, key: &str, path: &str, body: Value) -> (u16, Value) {
        let (status, body, _, _) = self
            .send(
                Method::POST,
                path,
                &[("Authorization", bearer), ("Idempotency-Key", key)],
                Some(body),
            )
            .await;
        (status, body)
    }

    async fn get(&self, bearer: &str, path: &str) -> (u16, Value, String) {
        let (status, body, text, _) = self
            .send(Method::GET, path, &[("Authorization", bearer)], None)
            .await;
        (status, body, text)
    }

    async fn code_for(&self, to: &str) -> String {
        let customers = self.customers.clone();
        tokio::task::spawn_blocking(move || customers.dispatcher.run_once())
            .await
            .expect("join")
            .expect("dispatch");
        self.sms.last_code(to).expect("a code was sent")
    }

    async fn register(&self, phone: &str) -> (String, String) {
        let (status, started, _, _) = self
            .send(
                Method::POST,
                "/v1/auth/registrations",
                &[("Idempotency-Key", &format!("reg-{phone}"))],
                Some(json!({"contact": phone})),
            )
            .await;
        assert_eq!(status, 202, "{started}");
        let code = self.code_for(phone).await;
        let id = started["registration_id"].as_str().expect("id");
        let (status, registered, _, _) = self
            .send(
                Method::POST,
                &format!("/v1/auth/registrations/{id}/complete"),
                &[],
                Some(json!({"code": code, "password": PASSWORD, "display_name": "Lin Tester", "accept_terms": "2026-11"})),
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

    async fn staff_with(&self, username: &str, role: Role) -> String {
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

    async fn deliver_callbacks(&self) {
        crate::support::deliver_simulated_callbacks(&self.client, &self.base, &self.state).await;
    }

    /// A verified step-up for a privacy operation; the challenge id.
    async fn step_up_for(&self, bearer: &str, phone: &str, operation: &str) -> String {
        let (status, challenge) = self
            .post(
                bearer,
                &format!("su-{operation}-{phone}"),
                "/v1/me/step-up",
                json!({"operation": operation, "amount": 0, "currency": "CNY", "payee": "self", "method": "code"}),
            )
            .await;
        assert_eq!(status, 201, "{challenge}");
        let id = challenge["challenge_id"].as_str().expect("id").to_string();
        let code = self.code_for(phone).await;
        let (status, verified) = self
            .post(
                bearer,
                &format!("su-{operation}-{phone}-verify"),
                &format!("/v1/me/step-up/{id}/verify"),
                json!({"code": code}),
            )
            .await;
        assert_eq!(status, 200, "{verified}");
        id
    }

    async fn query_rows(&self, query: &'static str, param: String) -> Vec<Vec<String>> {
        let database = self.db.database.clone();
        tokio::task::spawn_blocking(move || {
            let sql = SqlStore::open(&database, 1).expect("sql");
            let rows = sql
                .run(|db| db.query(query, sql_params![param.as_str()]))
                .expect("query");
            rows.iter()
                .map(|r| {
                    (0..3)
                        .map(|i| match r.value(i) {
                            Ok(SqlValue::Text(t)) => t,
                            Ok(SqlValue::Bytes(b)) => hex::encode(b),
                            _ => String::new(),
                        })
                        .collect()
                })
                .collect()
        })
        .await
        .expect("join")
    }

    async fn ciphertexts_of(&self, customer_id: &str) -> Vec<Vec<u8>> {
        let database = self.db.database.clone();
        let id = customer_id.to_string();
        tokio::task::spawn_blocking(move || {
            let sql = SqlStore::open(&database, 1).expect("sql");
            sql.run(|db| {
                db.query(
                    "SELECT m.body_enc FROM support_messages m JOIN support_tickets t ON t.id = m.ticket_id WHERE t.customer_id = $1",
                    sql_params![id.as_str()],
                )
            })
            .expect("query")
            .iter()
            .map(|r| r.bytes(0).expect("bytes"))
            .collect()
        })
        .await
        .expect("join")
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("?")
}

fn field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or("?")
}

/// The open-ticket limit holds when a customer's opens arrive together: on
/// PostgreSQL two transactions used to count the same 19 tickets and both
/// insert a 20th.
async fn open_limit_holds_under_concurrent_opens(app: &TicketApp) {
    let (customer_id, bearer) = app.register(THIRD_PHONE).await;
    let attempts = usize::try_from(coffer_support::OPEN_TICKETS_MAX).expect("small") + 6;
    let mut opens = tokio::task::JoinSet::new();
    for i in 0..attempts {
        let (client, base, bearer) = (app.client.clone(), app.base.clone(), bearer.clone());
        opens.spawn(async move {
            let response = client
                .post(format!("{base}/v1/me/support/tickets"))
                .header("Authorization", bearer)
                .header("Idempotency-Key", format!("burst-{i}"))
                .json(&json!({"category": "other", "message": format!("question {i}")}))
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("json");
            (status, body)
        });
    }
    let (mut opened, mut refused) = (0, 0);
    while let Some(result) = opens.join_next().await {
        let (status, body) = result.expect("join");
        match (status, code(&body)) {
            (201, _) => opened += 1,
            (409, "too_many_open_tickets") => refused += 1,
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    assert_eq!((opened, refused), (coffer_support::OPEN_TICKETS_MAX, 6));
    let stored = app
        .query_rows(
            "SELECT id, state, customer_id FROM support_tickets WHERE customer_id = $1",
            customer_id,
        )
        .await;
    assert_eq!(stored.len() as i64, coffer_support::OPEN_TICKETS_MAX);
}

async fn ticket_flows(app: TicketApp) {
    let (customer_id, bearer) = app.register(PHONE).await;
    let (_, other) = app.register(OTHER_PHONE).await;
    // A transaction to ask about: a card top-up.
    let (status, card) = app
        .post(
            &bearer,
            "card-1",
            "/v1/me/cards",
            json!({"number": PAN, "expiry_month": 12, "expiry_year": 2035, "cvv": "123", "funding": "debit"}),
        )
        .await;
    assert_eq!(status, 201, "{card}");
    let (status, top_up) = app
        .post(
            &bearer,
            "top-up-1",
            "/v1/me/top-ups",
            json!({"amount": 5_000, "currency": "CNY", "card_id": card["id"]}),
        )
        .await;
    assert_eq!(status, 201, "{top_up}");
    app.deliver_callbacks().await;
    let (status, activity, _) = app.get(&bearer, "/v1/me/activity").await;
    assert_eq!(status, 200, "{activity}");
    let activity_id = activity["data"][0]["id"]
        .as_str()
        .expect("an activity")
        .to_string();

    // ---- opening: someone else's transaction, bad input ----
    let open = |transaction: &str, message: &str| json!({"category": "payment_problem", "transaction_id": transaction, "message": message});
    let (status, refused) = app
        .post(
            &other,
            "open-foreign",
            "/v1/me/support/tickets",
            open(&activity_id, "not mine"),
        )
        .await;
    assert_eq!(
        (status, code(&refused), field(&refused)),
        (422, "invalid_field", "transaction_id"),
        "{refused}"
    );
    for (key, body, expected_field) in [
        (
            "bad-1",
            json!({"category": "complaint", "message": "hello"}),
            "category",
        ),
        (
            "bad-2",
            json!({"category": "other", "message": "   "}),
            "message",
        ),
        (
            "bad-3",
            json!({"category": "other", "message": "x".repeat(2_001)}),
            "message",
        ),
        (
            "bad-4",
            json!({"category": "refund", "message": format!("my card {PAN} was charged")}),
            "message",
        ),
        (
            "bad-5",
            json!({"category": "other", "message": "bell \u{7} ringing"}),
            "message",
        ),
    ] {
        let (status, refused) = app.post(&bearer, key, "/v1/me/support/tickets", body).await;
        assert_eq!(
            (status, code(&refused), field(&refused)),
            (422, "invalid_field", expected_field),
            "{key}: {refused}"
        );
    }
    let (status, refused) = app
        .post(
            &bearer,
            "bad-6",
            "/v1/me/support/tickets",
            json!({"category": "other", "message": "hi", "priority": "urgent"}),
        )
        .await;
    assert!(
        (400..500).contains(&status) && refused["error"]["code"].is_string(),
        "{status} {refused}"
    );
    let (status, refused, _) = app.get(&bearer, "/v1/me/support/tickets").await;
    assert_eq!(status, 200);
    assert_eq!(refused["data"], json!([]), "no refusal wrote anything");

    // ---- opening from the transaction, idempotently ----
    let (status, ticket) = app
        .post(
            &bearer,
            "open-1",
            "/v1/me/support/tickets",
            open(&activity_id, TICKET_TEXT),
        )
        .await;
    assert_eq!(status, 201, "{ticket}");
    assert_eq!(ticket["state"], "open");
    assert_eq!(ticket["category"], "payment_problem");
    assert_eq!(ticket["transaction_id"], activity_id.as_str());
    assert_eq!(ticket["messages"], 1);
    assert!(!ticket.to_string().contains(TICKET_TEXT), "{ticket}");
    let ticket_id = ticket["id"].as_str().expect("id").to_string();
    let (status, replay, _, replayed) = app
        .send(
            Method::POST,
            "/v1/me/support/tickets",
            &[("Authorization", &bearer), ("Idempotency-Key", "open-1")],
            Some(open(&activity_id, TICKET_TEXT)),
        )
        .await;
    assert_eq!((status, &replay, replayed), (201, &ticket, true));
    let (status, reused) = app
        .post(
            &bearer,
            "open-1",
            "/v1/me/support/tickets",
            open(&activity_id, "something else entirely"),
        )
        .await;
    assert_eq!((status, code(&reused)), (422, "idempotency_key_reused"));
    let (_, mine, _) = app.get(&bearer, "/v1/me/support/tickets").await;
    assert_eq!(
        mine["data"].as_array().map(Vec::len),
        Some(1),
        "one ticket: {mine}"
    );
    let thread_path = format!("/v1/me/support/tickets/{ticket_id}");
    let (status, thread, _) = app.get(&bearer, &thread_path).await;
    assert_eq!(status, 200, "{thread}");
    assert_eq!(thread["messages"][0]["text"], TICKET_TEXT);
    assert_eq!(thread["messages"][0]["from"], "you");
    // Someone else's ticket does not exist for them.
    let (status, hidden, _) = app.get(&other, &thread_path).await;
    assert_eq!((status, code(&hidden)), (404, "not_found"));
    let (status, hidden) = app
        .post(
            &other,
            "other-reply",
            &format!("{thread_path}/messages"),
            json!({"message": "let me in"}),
        )
        .await;
    assert_eq!((status, code(&hidden)), (404, "not_found"));

    // ---- staff without the permission ----
    let analyst = app.staff_with("wu.analyst", Role::RiskAnalyst).await;
    let staff_path = format!("/v1/staff/support/tickets/{ticket_id}");
    let (status, forbidden, _) = app.get(&analyst, "/v1/staff/support/tickets").await;
    assert_eq!(
        (status, code(&forbidden)),
        (403, "forbidden"),
        "{forbidden}"
    );
    let (status, forbidden, _) = app.get(&analyst, &staff_path).await;
    assert_eq!((status, code(&forbidden)), (403, "forbidden"));
    let (status, forbidden) = app
        .post(
            &analyst,
            "analyst-reply",
            &format!("{staff_path}/messages"),
            json!({"message": "hello"}),
        )
        .await;
    assert_eq!((status, code(&forbidden)), (403, "forbidden"));
    // A customer's session is not a staff session.
    let (status, _, _) = app.get(&bearer, "/v1/staff/support/tickets").await;
    assert_eq!(status, 401);

    // ---- the support queue and the thread ----
    let support = app.staff_with("zhou.support", Role::Support).await;
    let (status, queue, text) = app.get(&support, "/v1/staff/support/tickets").await;
    assert_eq!(status, 200, "{queue}");
    assert_eq!(queue["data"][0]["id"], ticket_id.as_str());
    assert_eq!(queue["data"][0]["customer_id"], customer_id.as_str());
    assert!(!text.contains(TICKET_TEXT), "the queue shows no text");
    let (status, bad, _) = app
        .get(&support, "/v1/staff/support/tickets?state=lost")
        .await;
    assert_eq!((status, field(&bad)), (422, "state"));
    let (status, bad, _) = app.get(&support, "/v1/staff/support/tickets?limit=0").await;
    assert_eq!((status, field(&bad)), (422, "limit"));
    let (status, none, _) = app
        .get(&support, "/v1/staff/support/tickets?state=resolved")
        .await;
    assert_eq!((status, &none["data"]), (200, &json!([])));
    let (status, thread, _) = app.get(&support, &staff_path).await;
    assert_eq!(status, 200, "{thread}");
    assert_eq!(thread["messages"][0]["text"], TICKET_TEXT);
    assert_eq!(
        thread["messages"][0]["author"],
        format!("customer:{customer_id}")
    );
    let (status, missing, _) = app
        .get(&support, "/v1/staff/support/tickets/tkt_nothing")
        .await;
    assert_eq!((status, code(&missing)), (404, "not_found"));

    // ---- the bank answers; the customer is told in the app ----
    let reply_path = format!("{staff_path}/messages");
    let (status, answered) = app
        .post(
            &support,
            "staff-reply-1",
            &reply_path,
            json!({"message": STAFF_TEXT}),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["state"], "answered");
    assert_eq!(answered["assigned_to"], "staff:zhou.support");
    assert_eq!(answered["messages"], 2);
    let (status, replay) = app
        .post(
            &support,
            "staff-reply-1",
            &reply_path,
            json!({"message": STAFF_TEXT}),
        )
        .await;
    assert_eq!((status, &replay), (200, &answered), "a retry replays");
    let (status, reused) = app
        .post(
            &support,
            "staff-reply-1",
            &reply_path,
            json!({"message": "a different answer"}),
        )
        .await;
    assert_eq!((status, code(&reused)), (422, "idempotency_key_reused"));
    let (status, inbox, _) = app.get(&bearer, "/v1/me/notifications").await;
    assert_eq!(status, 200, "{inbox}");
    let alerts: Vec<&Value> = inbox["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|n| n["template"] == "support_reply")
        .collect();
    assert_eq!(alerts.len(), 1, "exactly one alert for one answer: {inbox}");
    assert_eq!(alerts[0]["category"], "support");
    assert!(alerts[0]["body"]
        .as_str()
        .expect("body")
        .contains(&ticket_id));
    assert!(
        !inbox.to_string().contains(STAFF_TEXT),
        "the alert never repeats the text"
    );
    let (_, thread, text) = app.get(&bearer, &thread_path).await;
    assert_eq!(thread["ticket"]["state"], "answered");
    assert_eq!(thread["messages"][1]["from"], "bank");
    assert_eq!(thread["messages"][1]["text"], STAFF_TEXT);
    assert!(
        !text.contains("zhou.support"),
        "staff are the bank to customers"
    );

    // ---- the state machine ----
    let (status, reopened) = app
        .post(
            &bearer,
            "reply-1",
            &format!("{thread_path}/messages"),
            json!({"message": "Thank you, the first charge was 12:03"}),
        )
        .await;
    assert_eq!(
        (status, reopened["state"].as_str()),
        (200, Some("open")),
        "{reopened}"
    );
    let (status, asked) = app
        .post(
            &support,
            "staff-reply-2",
            &reply_path,
            json!({"message": "Which card ending?", "awaiting_customer": true}),
        )
        .await;
    assert_eq!(
        (status, asked["state"].as_str()),
        (200, Some("awaiting_customer"))
    );
    let resolve_path = format!("{staff_path}/resolve");
    // The body is required (`{}` for no last message): none is refused.
    let (status, refused, _, _) = app
        .send(
            Method::POST,
            &resolve_path,
            &[
                ("Authorization", support.as_str()),
                ("Idempotency-Key", "resolve-0"),
            ],
            None,
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    let (status, resolved) = app
        .post(
            &support,
            "resolve-1",
            &resolve_path,
            json!({"message": "Refunded."}),
        )
        .await;
    assert_eq!(
        (
            status,
            resolved["state"].as_str(),
            resolved["messages"].as_i64()
        ),
        (200, Some("resolved"), Some(5)),
        "{resolved}"
    );
    let (status, again) = app
        .post(&support, "resolve-2", &resolve_path, json!({}))
        .await;
    assert_eq!((status, code(&again)), (409, "ticket_resolved"));
    let close_path = format!("{thread_path}/close");
    let (status, closed) = app.post(&bearer, "close-1", &close_path, json!({})).await;
    assert_eq!(
        (status, closed["state"].as_str()),
        (200, Some("closed")),
        "{closed}"
    );
    assert!(closed["closed_at"].is_string());
    let (status, replay) = app.post(&bearer, "close-1", &close_path, json!({})).await;
    assert_eq!((status, &replay), (200, &closed));
    let (status, refused) = app.post(&bearer, "close-2", &close_path, json!({})).await;
    assert_eq!((status, code(&refused)), (409, "ticket_closed"));
    let (status, refused) = app
        .post(
            &bearer,
            "reply-2",
            &format!("{thread_path}/messages"),
            json!({"message": "one more thing"}),
        )
        .await;
    assert_eq!((status, code(&refused)), (409, "ticket_closed"));
    let (status, refused) = app
        .post(
            &support,
            "staff-reply-3",
            &reply_path,
            json!({"message": "late"}),
        )
        .await;
    assert_eq!((status, code(&refused)), (409, "ticket_closed"));

    // ---- the audit log and the customer's access log ----
    let audited = app
        .query_rows(
            "SELECT actor, action, detail FROM audit_log WHERE subject = $1 AND action LIKE 'support_%' ORDER BY seq",
            customer_id.clone(),
        )
        .await;
    let staff_actions: Vec<&str> = audited
        .iter()
        .filter(|r| r[0] == "staff:zhou.support")
        .map(|r| r[1].as_str())
        .collect();
    assert_eq!(
        staff_actions,
        [
            "support_ticket_viewed",
            "support_ticket_answered",
            "support_ticket_answered",
            "support_ticket_resolved"
        ],
        "{audited:?}"
    );
    assert!(audited.iter().all(|r| r[2] == ticket_id), "{audited:?}");
    assert!(audited
        .iter()
        .any(|r| r[0] == format!("customer:{customer_id}") && r[1] == "support_ticket_opened"));
    let queue_reads = app
        .query_rows(
            "SELECT actor, action, detail FROM audit_log WHERE action = $1",
            "support_queue_viewed".into(),
        )
        .await;
    assert_eq!(queue_reads.len(), 2, "{queue_reads:?}");
    let (status, access, text) = app.get(&bearer, "/v1/me/privacy/access-log").await;
    assert_eq!(status, 200, "{access}");
    assert!(access["data"]
        .as_array()
        .expect("data")
        .iter()
        .any(|e| e["action"] == "support_ticket_viewed" && e["role"] == "support"));
    assert!(!text.contains("zhou.support"));

    // ---- the queues overview ----
    let admin = app.staff_with("qian.admin", Role::Administrator).await;
    let (status, _) = app
        .post(
            &bearer,
            "open-2",
            "/v1/me/support/tickets",
            json!({"category": "account", "message": "How do I change my phone number?"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, queues, _) = app.get(&admin, "/v1/staff/queues").await;
    assert_eq!(status, 200, "{queues}");
    let support_queue = queues["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|q| q["name"] == "support_tickets")
        .cloned()
        .expect("a support queue");
    assert_eq!(support_queue["count"], 1, "{support_queue}");

    // ---- a thread is bounded ----
    let (status, long) = app
        .post(
            &other,
            "long-open",
            "/v1/me/support/tickets",
            json!({"category": "other", "message": "message 1"}),
        )
        .await;
    assert_eq!(status, 201, "{long}");
    let long_path = format!(
        "/v1/me/support/tickets/{}/messages",
        long["id"].as_str().expect("id")
    );
    for i in 2..=coffer_support::MESSAGES_PER_TICKET_MAX {
        let (status, body) = app
            .post(
                &other,
                &format!("long-{i}"),
                &long_path,
                json!({"message": format!("message {i}")}),
            )
            .await;
        assert_eq!(status, 200, "{i}: {body}");
    }
    let (status, full) = app
        .post(
            &other,
            "long-full",
            &long_path,
            json!({"message": "one too many"}),
        )
        .await;
    assert_eq!((status, code(&full)), (409, "ticket_full"), "{full}");

    // ---- the text is never stored in clear ----
    let database = app.db.database.clone();
    tokio::task::spawn_blocking(move || {
        crate::support::assert_not_stored(
            &database,
            &[
                ("the ticket text".into(), TICKET_TEXT.as_bytes().to_vec()),
                ("the staff answer".into(), STAFF_TEXT.as_bytes().to_vec()),
            ],
        )
    })
    .await
    .expect("scan");

    // ---- the data export holds the thread ----
    let challenge = app.step_up_for(&bearer, PHONE, "data_export").await;
    let (status, export) = app
        .post(
            &bearer,
            "export-1",
            "/v1/me/privacy/exports",
            json!({"challenge_id": challenge}),
        )
        .await;
    assert_eq!(status, 201, "{export}");
    let (status, archive, text) = app
        .get(&bearer, export["download"].as_str().expect("download"))
        .await;
    assert_eq!(status, 200, "{text}");
    let tickets = archive["support_tickets"].as_array().expect("tickets");
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    assert_eq!(tickets[0]["id"], ticket_id.as_str());
    assert_eq!(tickets[0]["transaction_id"], activity_id.as_str());
    assert_eq!(tickets[0]["messages"][0]["text"], TICKET_TEXT);
    assert_eq!(tickets[0]["messages"][1]["from"], "bank");
    assert_eq!(tickets[0]["messages"][1]["text"], STAFF_TEXT);
    assert!(!text.contains("zhou.support"));

    // ---- erasure takes the text and its ciphertext ----
    let (leaver_id, leaver) = app.register(LEAVER_PHONE).await;
    let (status, opened) = app
        .post(
            &leaver,
            "leaver-open",
            "/v1/me/support/tickets",
            json!({"category": "account", "message": LEAVER_TEXT}),
        )
        .await;
    assert_eq!(status, 201, "{opened}");
    let leaver_ticket = opened["id"].as_str().expect("id").to_string();
    let (status, _) = app
        .post(
            &support,
            "leaver-answer",
            &format!("/v1/staff/support/tickets/{leaver_ticket}/messages"),
            json!({"message": "Sorry to see you go; delete it in Privacy"}),
        )
        .await;
    assert_eq!(status, 200);
    let ciphertexts = app.ciphertexts_of(&leaver_id).await;
    assert_eq!(ciphertexts.len(), 2);
    let challenge = app
        .step_up_for(&leaver, LEAVER_PHONE, "account_deletion")
        .await;
    let (status, erased) = app
        .post(
            &leaver,
            "leaver-erase",
            "/v1/me/privacy/erasure",
            json!({"challenge_id": challenge}),
        )
        .await;
    assert_eq!(status, 200, "{erased}");
    let (status, thread, _) = app
        .get(
            &support,
            &format!("/v1/staff/support/tickets/{leaver_ticket}"),
        )
        .await;
    assert_eq!(status, 200, "{thread}");
    assert_eq!(thread["ticket"]["state"], "closed");
    assert_eq!(thread["messages"], json!([]));
    let mut needles = vec![
        (
            "the leaver's text".to_string(),
            LEAVER_TEXT.as_bytes().to_vec(),
        ),
        (
            "the answer to the leaver".to_string(),
            b"Sorry to see you go".to_vec(),
        ),
    ];
    for (i, blob) in ciphertexts.into_iter().enumerate() {
        needles.push((format!("message ciphertext #{i}"), blob));
    }
    let database = app.db.database.clone();
    tokio::task::spawn_blocking(move || crate::support::assert_not_stored(&database, &needles))
        .await
        .expect("scan");

    open_limit_holds_under_concurrent_opens(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_tickets_on_sqlite() {
    ticket_flows(spawn_ticket_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_tickets_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    ticket_flows(spawn_ticket_app(db).await).await;
}
