//! Privacy rights over HTTP, black-box, on SQLite and PostgreSQL: the data
//! export (every category, no secrets), partner consents checked on every
//! call (grant, scope, revoke, expiry), the access log (a staff view and a
//! partner call), and erasure: refused with a balance, done at zero, after
//! which the customer's personal data — in clear, and the very ciphertexts
//! and blind indexes that held it — is nowhere in the database files (SQLite
//! file, WAL, ledger log) or any text or binary column (PostgreSQL), the
//! ledger and audit log still verify, the ledger entries are still there
//! under the pseudonymous id, and the contact can register again.

use std::net::SocketAddr;
use std::sync::Arc;

use coffer_api::{AppState, CustomerServices};
use coffer_app::Engine;
use coffer_core::CurrencyRegistry;
use coffer_identity::{PasswordPolicy, Policy};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_payments::FundingPolicy;
use coffer_store::sql::SqlStore;
use coffer_store::sql_params;
use coffer_testkit::TestDatabase;
use coffer_vault::LocalMasterKey;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "lantern festival at dusk";
const PHONE: &str = "+8613900139077";
const DISPLAY_NAME: &str = "Qiaoling Wenxuan";
const FULL_NAME: &str = "Qiaoling Wenxuan Zhao";
const PAN: &str = "4111111111111111";
const BANK_NUMBER: &str = "6222000000000001";
const PARTNER: &str = "acme-budget";
const TICKET_BODY: &str = "Qiaoling here: my landlord Mr Fenghua sent the rent twice";

struct App {
    base: String,
    sms: Arc<SimulatedTransport>,
    customers: Arc<CustomerServices>,
    state: AppState,
    client: reqwest::Client,
    ledger_key: String,
    partner_key: String,
    db: TestDatabase,
}

async fn spawn_app(db: TestDatabase) -> App {
    let database = db.database.clone();
    let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
    let transports: Vec<Arc<dyn Transport>> = vec![sms.clone()];
    let (state, customers, ledger_key, partner_key) = tokio::task::spawn_blocking(move || {
        let clock = coffer_app::system_clock();
        let engine = Arc::new(Engine::start(&database, clock.clone()).expect("engine"));
        let reader = database.open_reader(4).expect("reader");
        let service: Arc<dyn coffer_store::service::ServiceStore> =
            Arc::from(coffer_store::service::open(&database, 4).expect("service"));
        let (ledger_key, record) = coffer_api::auth::generate("ops", vec!["ledger:read".into()], 0);
        service.insert_api_key(&record).expect("key");
        let (partner_key, record) =
            coffer_api::auth::generate("acme", vec![format!("partner:{PARTNER}")], 0);
        service.insert_api_key(&record).expect("key");
        let customers = Arc::new(
            CustomerServices::open(
                &database,
                clock.clone(),
                Arc::new(LocalMasterKey::from_bytes([7; 32])),
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
        (state, customers, ledger_key, partner_key)
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
        client: reqwest::Client::new(),
        ledger_key: format!("Bearer {ledger_key}"),
        partner_key: format!("Bearer {partner_key}"),
        db,
    }
}

impl App {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value, String) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }

    async fn post(&self, bearer: &str, key: &str, path: &str, body: Value) -> (u16, Value) {
        let (status, body, _) = self
            .send(
                Method::POST,
                path,
                &[("Authorization", bearer), ("Idempotency-Key", key)],
                Some(body),
            )
            .await;
        (status, body)
    }

    async fn get(&self, bearer: &str, path: &str) -> (u16, Value) {
        let (status, body, _) = self
            .send(Method::GET, path, &[("Authorization", bearer)], None)
            .await;
        (status, body)
    }

    async fn dispatch(&self) {
        let customers = self.customers.clone();
        tokio::task::spawn_blocking(move || customers.dispatcher.run_once())
            .await
            .expect("join")
            .expect("dispatch");
    }

    async fn code_for(&self, to: &str) -> String {
        self.dispatch().await;
        self.sms.last_code(to).expect("a code was sent")
    }

    /// Registers a customer; (customer id, bearer).
    async fn register(&self, phone: &str, key: &str) -> (String, String) {
        let (status, started, _) = self
            .send(
                Method::POST,
                "/v1/auth/registrations",
                &[("Idempotency-Key", key)],
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
                Some(json!({"code": code, "password": PASSWORD, "display_name": DISPLAY_NAME, "accept_terms": "2026-11"})),
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

    /// A verified step-up for a privacy operation; the challenge id.
    async fn step_up(&self, bearer: &str, operation: &str, key: &str) -> String {
        let (status, challenge) = self
            .post(
                bearer,
                key,
                "/v1/me/step-up",
                json!({"operation": operation, "amount": 0, "currency": "CNY", "payee": "self", "method": "code"}),
            )
            .await;
        assert_eq!(status, 201, "{challenge}");
        let id = challenge["challenge_id"].as_str().expect("id").to_string();
        let code = self.code_for(PHONE).await;
        let (status, verified) = self
            .post(
                bearer,
                &format!("{key}-verify"),
                &format!("/v1/me/step-up/{id}/verify"),
                json!({"code": code}),
            )
            .await;
        assert_eq!(status, 200, "{verified}");
        id
    }

    async fn deliver_all(&self) {
        crate::support::deliver_simulated_callbacks(&self.client, &self.base, &self.state).await;
    }

    async fn balance(&self, bearer: &str) -> (i64, i64) {
        let (status, wallets) = self.get(bearer, "/v1/me/wallets").await;
        assert_eq!(status, 200, "{wallets}");
        (
            wallets["data"][0]["posted"].as_i64().expect("posted"),
            wallets["data"][0]["available"].as_i64().expect("available"),
        )
    }

    async fn staff_bearer(&self) -> String {
        crate::support::staff_bearer(
            &self.client,
            &self.base,
            self.customers.identity.clone(),
            "mei.support",
            vec![coffer_identity::Role::Support],
            &coffer_core::SystemClock,
        )
        .await
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("?")
}

fn id_number() -> String {
    let body_17 = "11010519880715002";
    format!(
        "{body_17}{}",
        coffer_identity::resident_id_check(body_17).expect("check")
    )
}

fn rfc3339_in(seconds: i64) -> String {
    let now = coffer_core::Clock::now(&coffer_core::SystemClock).as_nanos();
    coffer_core::Timestamp::from_nanos(now + seconds * 1_000_000_000).to_rfc3339()
}

/// Byte strings that held the customer's personal data, read from the
/// database before erasure: ciphertexts and blind indexes.
fn stored_forms(sql: &SqlStore, customer_id: &str) -> Vec<Vec<u8>> {
    let queries = [
        "SELECT contact_enc, display_name_enc, contact_index FROM customers WHERE id = $1",
        "SELECT id_number_enc, full_name_enc, id_index FROM kyc_identities WHERE customer_id = $1",
        "SELECT pan_enc, pan_enc, pan_index FROM cards WHERE customer_id = $1",
        "SELECT number_enc, number_enc, number_index FROM bank_accounts WHERE customer_id = $1",
        "SELECT m.body_enc, m.body_enc, m.id FROM support_messages m \
         JOIN support_tickets t ON t.id = m.ticket_id WHERE t.customer_id = $1",
    ];
    let mut forms = Vec::new();
    for query in queries {
        let rows = sql
            .run(|db| db.query(query, sql_params![customer_id]))
            .expect("query");
        assert!(!rows.is_empty(), "{query}");
        for row in rows {
            forms.push(row.bytes(0).expect("ciphertext"));
            forms.push(row.bytes(1).expect("ciphertext"));
            forms.push(row.text(2).expect("index").into_bytes());
        }
    }
    forms
}

fn assert_nowhere(app: &App, needles: &[(String, Vec<u8>)]) {
    crate::support::assert_not_stored(&app.db.database, needles);
}

async fn privacy_flows(app: App) {
    let (customer_id, bearer) = app.register(PHONE, "reg-1").await;
    // KYC, a card, a bank account, money in.
    let (status, kyc) = app
        .post(
            &bearer,
            "kyc-1",
            "/v1/me/kyc/identity",
            json!({"full_name": FULL_NAME, "id_type": "cn_resident", "id_number": id_number()}),
        )
        .await;
    assert_eq!(
        (status, kyc["status"].as_str()),
        (200, Some("verified")),
        "{kyc}"
    );
    let (status, card) = app
        .post(
            &bearer,
            "card-1",
            "/v1/me/cards",
            json!({"number": PAN, "expiry_month": 12, "expiry_year": 2035, "cvv": "123", "funding": "debit"}),
        )
        .await;
    assert_eq!(status, 201, "{card}");
    let (status, account) = app
        .post(
            &bearer,
            "bank-1",
            "/v1/me/bank-accounts",
            json!({"bank_code": "CMB", "account_number": BANK_NUMBER}),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    let (status, top_up) = app
        .post(
            &bearer,
            "top-up-1",
            "/v1/me/top-ups",
            json!({"amount": 10_000, "currency": "CNY", "card_id": card["id"]}),
        )
        .await;
    assert_eq!(status, 201, "{top_up}");
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (10_000, 10_000));

    // ---- consents and the partner API ----
    let profile_path = format!("/v1/partner/customers/{customer_id}/profile");
    let balances_path = format!("/v1/partner/customers/{customer_id}/balances");
    let transactions_path = format!("/v1/partner/customers/{customer_id}/transactions");
    let (status, refused) = app.get(&app.partner_key, &profile_path).await;
    assert_eq!((status, code(&refused)), (403, "consent_required"));
    // A customer's session is not a partner's key, nor a ledger key.
    assert_eq!(app.get(&bearer, &profile_path).await.0, 401);
    assert_eq!(app.get(&app.ledger_key, &profile_path).await.0, 403);
    let (status, unknown) = app
        .post(
            &bearer,
            "consent-0",
            "/v1/me/privacy/consents",
            json!({"partner_id": "nobody", "scopes": ["profile"], "expires_at": rfc3339_in(86_400)}),
        )
        .await;
    assert_eq!((status, code(&unknown)), (404, "not_found"));
    let (status, bad) = app
        .post(
            &bearer,
            "consent-bad",
            "/v1/me/privacy/consents",
            json!({"partner_id": PARTNER, "scopes": ["everything"], "expires_at": rfc3339_in(86_400)}),
        )
        .await;
    assert_eq!((status, code(&bad)), (422, "invalid_field"));
    let grant = json!({"partner_id": PARTNER, "scopes": ["profile", "balance"], "expires_at": rfc3339_in(86_400)});
    let (status, consent) = app
        .post(
            &bearer,
            "consent-1",
            "/v1/me/privacy/consents",
            grant.clone(),
        )
        .await;
    assert_eq!(
        (status, consent["live"].as_bool()),
        (201, Some(true)),
        "{consent}"
    );
    let (status, replay) = app
        .post(&bearer, "consent-1", "/v1/me/privacy/consents", grant)
        .await;
    assert_eq!((status, &replay), (201, &consent));
    let (status, profile) = app.get(&app.partner_key, &profile_path).await;
    assert_eq!(
        (status, profile["display_name"].as_str()),
        (200, Some(DISPLAY_NAME)),
        "{profile}"
    );
    let (status, balances) = app.get(&app.partner_key, &balances_path).await;
    assert_eq!(
        (status, balances["data"][0]["posted"].as_i64()),
        (200, Some(10_000)),
        "{balances}"
    );
    // Not consented: transactions.
    let (status, refused) = app.get(&app.partner_key, &transactions_path).await;
    assert_eq!((status, code(&refused)), (403, "consent_required"));
    let consent_id = consent["id"].as_str().expect("id").to_string();
    let revoke_path = format!("/v1/me/privacy/consents/{consent_id}/revoke");
    let (status, revoked) = app.post(&bearer, "revoke-1", &revoke_path, json!({})).await;
    assert_eq!(
        (status, revoked["live"].as_bool()),
        (200, Some(false)),
        "{revoked}"
    );
    let (status, again) = app.post(&bearer, "revoke-2", &revoke_path, json!({})).await;
    assert_eq!((status, &again), (200, &revoked));
    let (status, refused) = app.get(&app.partner_key, &balances_path).await;
    assert_eq!((status, code(&refused)), (403, "consent_required"));
    // Expiry is honoured.
    let (status, short) = app
        .post(
            &bearer,
            "consent-2",
            "/v1/me/privacy/consents",
            json!({"partner_id": PARTNER, "scopes": ["transactions"], "expires_at": rfc3339_in(2)}),
        )
        .await;
    assert_eq!(status, 201, "{short}");
    let (status, transactions) = app.get(&app.partner_key, &transactions_path).await;
    assert_eq!(
        (status, transactions["data"][0]["kind"].as_str()),
        (200, Some("top_up")),
        "{transactions}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let (status, refused) = app.get(&app.partner_key, &transactions_path).await;
    assert_eq!((status, code(&refused)), (403, "consent_required"));
    let (_, consents) = app.get(&bearer, "/v1/me/privacy/consents").await;
    assert_eq!(
        consents["data"].as_array().map(Vec::len),
        Some(2),
        "{consents}"
    );

    // ---- access transparency ----
    let staff = app.staff_bearer().await;
    let (status, viewed) = app
        .get(&staff, &format!("/v1/staff/customers/{customer_id}"))
        .await;
    assert_eq!(status, 200, "{viewed}");
    let (status, page) = app.get(&bearer, "/v1/me/privacy/access-log?limit=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"][0]["by"], "staff");
    assert_eq!(page["data"][0]["role"], "support");
    assert_eq!(page["data"][0]["action"], "customer_viewed");
    assert!(!page.to_string().contains("mei.support"), "{page}");
    assert_eq!(page["data"][1]["by"], "partner");
    assert_eq!(page["data"][1]["outcome"], "refused");
    let mut seen = page["data"].as_array().expect("data").clone();
    let mut cursor = page["next_cursor"].as_str().map(str::to_string);
    while let Some(next) = cursor {
        let (status, page) = app
            .get(
                &bearer,
                &format!("/v1/me/privacy/access-log?limit=2&cursor={next}"),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["data"].as_array().expect("data").iter().cloned());
        cursor = page["next_cursor"].as_str().map(str::to_string);
    }
    let partner_ok = seen
        .iter()
        .filter(|e| e["by"] == "partner" && e["partner_id"] == PARTNER && e["outcome"] == "ok")
        .count();
    assert_eq!(partner_ok, 3, "{seen:?}");
    assert_eq!(
        seen.iter().filter(|e| e["by"] == "partner").count(),
        7,
        "{seen:?}"
    );
    let (status, bad) = app.get(&bearer, "/v1/me/privacy/access-log?cursor=x").await;
    assert_eq!((status, code(&bad)), (422, "invalid_field"));

    // ---- download my data ----
    let (status, refused) = app
        .post(
            &bearer,
            "export-0",
            "/v1/me/privacy/exports",
            json!({"challenge_id": "chl_none"}),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (403, "step_up_required"),
        "{refused}"
    );
    let challenge = app.step_up(&bearer, "data_export", "su-export").await;
    let (status, export) = app
        .post(
            &bearer,
            "export-1",
            "/v1/me/privacy/exports",
            json!({"challenge_id": challenge}),
        )
        .await;
    assert_eq!(status, 201, "{export}");
    app.dispatch().await;
    let alert = app.sms.to(PHONE).pop().expect("an alert");
    assert!(alert.body.expose().contains("copy of all your Coffer data"));
    let (status, archive, text) = app
        .send(
            Method::GET,
            export["download"].as_str().expect("download"),
            &[("Authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(archive["schema"], "coffer.privacy.export/1");
    assert_eq!(archive["customer_id"], customer_id.as_str());
    assert_eq!(archive["profile"]["display_name"], DISPLAY_NAME);
    assert_eq!(archive["profile"]["contact"], PHONE);
    assert_eq!(archive["kyc"]["identity"]["full_name"], FULL_NAME);
    assert!(archive["kyc"]["identity"]["id_number_masked"]
        .as_str()
        .expect("masked")
        .ends_with(&id_number()[14..]));
    assert_eq!(archive["wallets"][0]["posted"], 10_000);
    assert_eq!(archive["activity"][0]["kind"], "top_up");
    assert_eq!(archive["cards"][0]["last4"], "1111");
    assert_eq!(archive["bank_accounts"][0]["last4"], "0001");
    assert_eq!(archive["consents"].as_array().map(Vec::len), Some(2));
    assert!(!archive["devices"]["sessions"]
        .as_array()
        .expect("sessions")
        .is_empty());
    assert_eq!(archive["devices"]["authenticator_app"]["enrolled"], false);
    assert!(!archive["notifications"]
        .as_array()
        .expect("notifications")
        .is_empty());
    let events = archive["security_events"].as_array().expect("events");
    assert!(events
        .iter()
        .any(|e| e["action"] == "data_export_requested"));
    assert!(events
        .iter()
        .any(|e| e["by"] == "staff" && e["role"] == "support"));
    for secret in [
        PAN,
        BANK_NUMBER,
        &id_number(),
        PASSWORD,
        "$argon2",
        "mei.support",
    ] {
        assert!(!text.contains(secret), "the archive holds {secret}");
    }
    // Someone else's session cannot download it.
    let (_, other) = app.register("+8613900139088", "reg-other").await;
    let (status, gone) = app
        .get(&other, export["download"].as_str().expect("download"))
        .await;
    assert_eq!((status, code(&gone)), (410, "export_expired"));

    // ---- erasure ----
    let challenge = app.step_up(&bearer, "account_deletion", "su-erase").await;
    let (status, refused) = app
        .post(
            &bearer,
            "erase-1",
            "/v1/me/privacy/erasure",
            json!({"challenge_id": challenge}),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (409, "balance_not_zero"),
        "{refused}"
    );
    let message = refused["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("CNY posted 10000 available 10000"),
        "{message}"
    );
    // Paid out, then the same verified step-up goes through.
    let (status, withdrawal) = app
        .post(
            &bearer,
            "withdraw-1",
            "/v1/me/withdrawals",
            json!({"amount": 10_000, "currency": "CNY", "bank_account_id": account["id"], "fee": 0}),
        )
        .await;
    assert_eq!(status, 201, "{withdrawal}");
    app.deliver_all().await;
    assert_eq!(app.balance(&bearer).await, (0, 0));
    // A support ticket: what the customer wrote must go too.
    let (status, ticket) = app
        .post(
            &bearer,
            "ticket-1",
            "/v1/me/support/tickets",
            json!({"category": "other", "message": TICKET_BODY}),
        )
        .await;
    assert_eq!(status, 201, "{ticket}");
    let stored = {
        let database = app.db.database.clone();
        let id = customer_id.clone();
        tokio::task::spawn_blocking(move || {
            stored_forms(&SqlStore::open(&database, 1).expect("sql"), &id)
        })
        .await
        .expect("join")
    };
    let (status, erased) = app
        .post(
            &bearer,
            "erase-2",
            "/v1/me/privacy/erasure",
            json!({"challenge_id": challenge}),
        )
        .await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["pseudonymous_id"], customer_id.as_str());

    // Signed out everywhere, and no way back in.
    let (status, _) = app.get(&bearer, "/v1/me").await;
    assert_eq!(status, 401);
    // Partners are refused too (the consents were revoked).
    let (status, refused) = app.get(&app.partner_key, &profile_path).await;
    assert_eq!((status, code(&refused)), (403, "consent_required"));

    // The personal data is nowhere: neither in clear nor in the stored forms.
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("the phone number".into(), PHONE.as_bytes().to_vec()),
        ("the phone digits".into(), PHONE.as_bytes()[1..].to_vec()),
        ("the display name".into(), DISPLAY_NAME.as_bytes().to_vec()),
        ("the full name".into(), FULL_NAME.as_bytes().to_vec()),
        ("the ID number".into(), id_number().into_bytes()),
        ("the card number".into(), PAN.as_bytes().to_vec()),
        (
            "the bank account number".into(),
            BANK_NUMBER.as_bytes().to_vec(),
        ),
        (
            "the support ticket's text".into(),
            TICKET_BODY.as_bytes().to_vec(),
        ),
    ];
    for (i, form) in stored.into_iter().enumerate() {
        needles.push((
            format!("stored form #{i} (ciphertext or blind index)"),
            form,
        ));
    }
    let app = Arc::new(app);
    let scan = app.clone();
    tokio::task::spawn_blocking(move || assert_nowhere(&scan, &needles))
        .await
        .expect("scan");

    // No way back in (after the scan: a failed sign-in throttles by the
    // contact's blind index, which is about the contact, not the customer).
    let (status, _, _) = app
        .send(
            Method::POST,
            "/v1/auth/sessions",
            &[],
            Some(json!({"contact": PHONE, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 401);
    // `coffer verify`: the ledger audit and the audit log's chain.
    let reader = app.state.reader.clone();
    let report = tokio::task::spawn_blocking(move || {
        coffer_app::verify(reader.as_ref(), &mut |_| {}).expect("verify")
    })
    .await
    .expect("join");
    assert!(report.is_clean(), "{:?}", report.violations);
    let database = app.db.database.clone();
    let audit = tokio::task::spawn_blocking(move || {
        let sql = SqlStore::open(&database, 1).expect("sql");
        sql.run(|db| Ok(coffer_audit::verify(db, &mut |_| {})))
            .expect("run")
            .expect("audit")
    })
    .await
    .expect("join");
    assert!(audit.is_intact(), "{audit:?}");

    // The ledger keeps the money's history under the pseudonymous id.
    let (status, entries) = app
        .get(
            &app.ledger_key,
            &format!("/v1/ledger/accounts/wallet:{customer_id}:cny/entries"),
        )
        .await;
    assert_eq!(status, 200, "{entries}");
    assert!(
        entries["data"].as_array().expect("entries").len() >= 2,
        "{entries}"
    );

    // The contact may register again, as a new customer.
    let (new_id, new_bearer) = app.register(PHONE, "reg-2").await;
    assert_ne!(new_id, customer_id);
    let (status, me) = app.get(&new_bearer, "/v1/me").await;
    assert_eq!(
        (status, me["customer"]["id"].as_str()),
        (200, Some(new_id.as_str())),
        "{me}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_on_sqlite() {
    privacy_flows(spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("pg");
    privacy_flows(spawn_app(db).await).await;
}
