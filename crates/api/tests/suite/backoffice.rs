//! The back office over HTTP, black-box, on SQLite and PostgreSQL: customer
//! search by every key (masked for roles without `view_personal_data`), the
//! customer 360 and its audit record, fee and tier-limit changes through
//! maker-checker taking effect on the next quote without a restart, manual
//! adjustments in the ledger, the queues overview, and dashboards matching
//! a seeded set of operations exactly.

use std::net::SocketAddr;
use std::sync::Arc;

use coffer_api::{AppState, CustomerServices};
use coffer_app::{Engine, ManualClock};
use coffer_core::{Clock, CurrencyRegistry, Identifier};
use coffer_identity::{PasswordPolicy, Policy, Role, TierLimits, Tiers};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_payments::{FeeOperation, FeeRule, FeeSchedule, FundingPolicy, P2pPolicy};
use coffer_testkit::TestDatabase;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "plum blossoms in snow";
const DAY_NANOS: i64 = 86_400 * 1_000_000_000;

struct App {
    base: String,
    sms: Arc<SimulatedTransport>,
    email: Arc<SimulatedTransport>,
    customers: Arc<CustomerServices>,
    state: AppState,
    clock: Arc<ManualClock>,
    client: reqwest::Client,
    _db: TestDatabase,
}

fn tier() -> TierLimits {
    TierLimits {
        balance_cap: 200_000,
        per_payment: 60_000,
        daily: 100_000,
        monthly: 1_000_000,
    }
}

/// P2P: 1 % (min 0.10, max 5.00), no free payments.
fn p2p_policy() -> P2pPolicy {
    let fees = FeeSchedule::free()
        .with(
            FeeOperation::P2p,
            FeeRule {
                fixed: 0,
                percent_bps: 100,
                minimum: 10,
                maximum: Some(500),
                free_per_month: 0,
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
        ..P2pPolicy::default()
    }
}

async fn spawn_app(db: TestDatabase) -> App {
    let database = db.database.clone();
    let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
    let email = Arc::new(SimulatedTransport::new(Channel::Email));
    let transports: Vec<Arc<dyn Transport>> = vec![sms.clone(), email.clone()];
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
                Arc::new(coffer_vault::LocalMasterKey::from_bytes([9; 32])),
                transports,
                Policy {
                    tiers: Tiers([tier(), tier(), tier()]),
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
        .with_p2p_policy(p2p_policy());
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
        email,
        customers,
        state,
        clock,
        client: reqwest::Client::new(),
        _db: db,
    }
}

struct Customer {
    id: String,
    contact: String,
    bearer: String,
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

    async fn get(&self, bearer: &str, path: &str) -> (u16, Value, String) {
        self.send(Method::GET, path, &[("Authorization", bearer)], None)
            .await
    }

    async fn code_for(&self, to: &str) -> String {
        let customers = self.customers.clone();
        tokio::task::spawn_blocking(move || customers.dispatcher.run_once())
            .await
            .expect("join")
            .expect("dispatch");
        self.sms
            .last_code(to)
            .or_else(|| self.email.last_code(to))
            .expect("a code was sent")
    }

    async fn customer(&self, contact: &str, name: &str) -> Customer {
        let (status, started, _) = self
            .send(
                Method::POST,
                "/v1/auth/registrations",
                &[("Idempotency-Key", contact)],
                Some(json!({"contact": contact})),
            )
            .await;
        assert_eq!(status, 202, "{started}");
        let code = self.code_for(contact).await;
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
            id: registered["customer"]["id"]
                .as_str()
                .expect("id")
                .to_string(),
            contact: contact.to_string(),
            bearer: format!(
                "Bearer {}",
                registered["session"]["token"].as_str().expect("token")
            ),
        }
    }

    /// Signs the customer in again (after the clock moved past the session).
    async fn sign_in(&self, who: &mut Customer) {
        let (status, session, _) = self
            .send(
                Method::POST,
                "/v1/auth/sessions",
                &[],
                Some(json!({"contact": who.contact, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 201, "{session}");
        who.bearer = format!("Bearer {}", session["token"].as_str().expect("token"));
    }

    /// A new staff member with `roles`, signed in: the bearer header value.
    async fn staff(&self, username: &str, roles: Vec<Role>) -> String {
        crate::support::staff_bearer(
            &self.client,
            &self.base,
            self.customers.identity.clone(),
            username,
            roles,
            &*self.clock,
        )
        .await
    }

    async fn deliver_callbacks(&self) {
        crate::support::deliver_simulated_callbacks(&self.client, &self.base, &self.state).await;
    }

    /// Links `card` (if new) and tops up from it; the outcome is whatever
    /// the card network simulator decides for that number.
    async fn top_up(&self, who: &Customer, card: &str, amount: i64) {
        let digits = card.replace(' ', "");
        let (status, linked) = self
            .post(
                &who.bearer,
                &format!("card-{}-{digits}", who.id),
                "/v1/me/cards",
                json!({"number": card, "expiry_month": 12, "expiry_year": 2035, "cvv": "123", "funding": "debit"}),
            )
            .await;
        assert!(status == 201 || status == 200, "{linked}");
        let card_id = linked["id"].as_str().expect("card id").to_string();
        let (status, top_up) = self
            .post(
                &who.bearer,
                &format!("tu-{}-{digits}-{amount}", who.id),
                "/v1/me/top-ups",
                json!({"amount": amount, "currency": "CNY", "card_id": card_id}),
            )
            .await;
        assert_eq!(status, 201, "{top_up}");
        self.deliver_callbacks().await;
    }

    async fn quote(&self, who: &Customer, key: &str, payee: &str, amount: i64) -> (u16, Value) {
        self.post(
            &who.bearer,
            key,
            "/v1/me/p2p/quotes",
            json!({"payee": payee, "amount": amount, "currency": "CNY"}),
        )
        .await
    }

    /// Quote, step-up (by SMS code) when asked, confirm.
    async fn pay(&self, who: &Customer, key: &str, payee: &str, amount: i64) -> Value {
        let (status, quote) = self.quote(who, &format!("{key}-q"), payee, amount).await;
        assert_eq!(status, 201, "{quote}");
        let mut body = json!({"quote_id": quote["id"], "amount": quote["amount"], "fee": quote["fee"], "currency": "CNY"});
        if quote["step_up_required"] == json!(true) {
            let (status, challenge) = self
                .post(
                    &who.bearer,
                    &format!("{key}-s"),
                    "/v1/me/step-up",
                    json!({"operation": quote["step_up"]["operation"], "amount": quote["step_up"]["amount"], "currency": "CNY", "payee": quote["step_up"]["payee"], "method": "code"}),
                )
                .await;
            assert_eq!(status, 201, "{challenge}");
            let id = challenge["challenge_id"].as_str().expect("id").to_string();
            let code = self.code_for(&who.contact).await;
            let (status, verified) = self
                .post(
                    &who.bearer,
                    &format!("{key}-v"),
                    &format!("/v1/me/step-up/{id}/verify"),
                    json!({"code": code}),
                )
                .await;
            assert_eq!(status, 200, "{verified}");
            body["step_up_challenge_id"] = json!(id);
        }
        let (status, paid) = self
            .post(&who.bearer, key, "/v1/me/p2p/payments", body)
            .await;
        assert_eq!(
            (status, &paid["status"]),
            (201, &json!("succeeded")),
            "{paid}"
        );
        paid
    }

    /// Proposes `settings` for `kind` as `maker`; the approval id.
    async fn propose(
        &self,
        maker: &str,
        key: &str,
        kind: &str,
        base: i64,
        settings: Value,
    ) -> (u16, Value) {
        self.post(
            maker,
            key,
            &format!("/v1/staff/settings/{kind}/proposals"),
            json!({"base_version": base, "settings": settings, "reason": "pricing review"}),
        )
        .await
    }

    async fn decide(&self, checker: &str, key: &str, approval: &str) -> (u16, Value) {
        self.post(
            checker,
            key,
            &format!("/v1/staff/approvals/{approval}/decide"),
            json!({"approve": true}),
        )
        .await
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

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect()
}

async fn back_office(app: App) {
    let day0 = app.clock.now().as_nanos();
    let mut zhang = app.customer("+8613900139101", "张小明").await;
    let mut john = app.customer("+8613900139102", "John Doe").await;
    let li = app.customer("li.si@example.com", "李四").await;
    // Zhang's legal name comes from KYC (the simulated provider verifies it).
    let (status, kyc) = app
        .post(
            &zhang.bearer,
            "kyc-1",
            "/v1/me/kyc/identity",
            json!({"full_name": "Zhang Xiaoming", "id_type": "cn_resident", "id_number": "11010519491231002X"}),
        )
        .await;
    assert_eq!(status, 200, "{kyc}");

    // Day 0: two top-ups that succeed, one the issuer declines.
    app.top_up(&zhang, "4111 1111 1111 1111", 150_000).await;
    app.top_up(&john, "4111 1111 1111 1111", 50_000).await;
    app.top_up(&zhang, "4000 0000 0000 0002", 7_000).await;

    let support = app.staff("support.a", vec![Role::Support]).await;
    let risk = app.staff("risk.a", vec![Role::RiskAnalyst]).await;
    let compliance = app
        .staff("compliance.a", vec![Role::ComplianceOfficer])
        .await;
    let product = app.staff("product.a", vec![Role::ProductManager]).await;
    // Proposes and could approve — but never their own proposal.
    let super_user = app
        .staff("super.a", vec![Role::ProductManager, Role::Administrator])
        .await;

    // ---- search, by every key ----------------------------------------------------
    let (status, page, text) = app
        .get(
            &support,
            "/v1/staff/customer-search?contact=%2B86%20139%200013%209101",
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), vec![zhang.id.clone()]);
    assert_eq!(page["data"][0]["name"], "张*明");
    assert_eq!(page["data"][0]["contact"], "+86*******9101");
    assert!(
        !text.contains("张小明") && !text.contains("8613900139101"),
        "{text}"
    );
    let (status, page, _) = app
        .get(&risk, "/v1/staff/customer-search?contact=%2B8613900139101")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (&page["data"][0]["name"], &page["data"][0]["contact"]),
        (&json!("张小明"), &json!("+8613900139101")),
        "view_personal_data shows it in clear"
    );
    let (_, page, _) = app
        .get(
            &support,
            "/v1/staff/customer-search?contact=LI.SI%40Example.com",
        )
        .await;
    assert_eq!(ids(&page), vec![li.id.clone()]);
    assert_eq!(page["data"][0]["contact"], "l***@example.com");
    // Whole names, any case, spacing or order; display or legal.
    let (_, page, text) = app
        .get(&support, "/v1/staff/customer-search?name=doe%20%20JOHN")
        .await;
    assert_eq!(ids(&page), vec![john.id.clone()]);
    assert_eq!(page["data"][0]["name"], "J*** D**");
    assert!(!text.contains("John Doe"));
    let (_, page, _) = app
        .get(&support, "/v1/staff/customer-search?name=xiaoming%20zhang")
        .await;
    assert_eq!(ids(&page), vec![zhang.id.clone()], "the KYC name");
    let (_, page, _) = app
        .get(
            &support,
            "/v1/staff/customer-search?name=%E5%BC%A0%E5%B0%8F%E6%98%8E",
        )
        .await;
    assert_eq!(ids(&page), vec![zhang.id.clone()], "张小明");
    let (_, page, _) = app
        .get(&support, "/v1/staff/customer-search?name=%E5%BC%A0")
        .await;
    assert_eq!(ids(&page), Vec::<String>::new(), "no partial names");
    let (_, page, _) = app
        .get(&support, &format!("/v1/staff/customer-search?id={}", li.id))
        .await;
    assert_eq!(ids(&page), vec![li.id.clone()]);
    // Card last four: paginated (Zhang and John both have a …1111 card).
    let (_, first, _) = app
        .get(
            &support,
            "/v1/staff/customer-search?card_last4=1111&limit=1",
        )
        .await;
    let next = first["next"].as_str().expect("a next page").to_string();
    let (_, second, _) = app
        .get(
            &support,
            &format!("/v1/staff/customer-search?card_last4=1111&limit=1&after={next}"),
        )
        .await;
    assert_eq!(second["next"], Value::Null);
    let mut both = [ids(&first), ids(&second)].concat();
    both.sort();
    let mut expected = vec![zhang.id.clone(), john.id.clone()];
    expected.sort();
    assert_eq!(both, expected);
    let (_, page, _) = app
        .get(&support, "/v1/staff/customer-search?card_last4=0002")
        .await;
    assert_eq!(ids(&page), vec![zhang.id.clone()]);
    // Refusals.
    let (status, body, _) = app
        .get(&support, "/v1/staff/customer-search?card_last4=12a4")
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("card_last4")))
    );
    let (status, body, _) = app
        .get(&support, "/v1/staff/customer-search?name=a&id=b")
        .await;
    assert_eq!((status, error_of(&body).0), (422, Some("invalid_field")));
    let (status, body, _) = app.get(&product, "/v1/staff/customer-search?id=x").await;
    assert_eq!((status, error_of(&body).0), (403, Some("forbidden")));

    // ---- customer 360 ----------------------------------------------------------------
    let (status, view, _) = app
        .get(&risk, &format!("/v1/staff/customers/{}/360", zhang.id))
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["profile"]["display_name"], "张小明");
    assert_eq!(view["profile"]["contact"], "+8613900139101");
    assert_eq!(view["kyc"]["tier"], 1);
    assert_eq!(view["kyc"]["identity"]["full_name"], "Zhang Xiaoming");
    assert_eq!(view["kyc"]["identity"]["id_number"], "••••002X");
    assert_eq!(view["wallets"][0]["currency"], "CNY");
    assert_eq!(view["wallets"][0]["posted"], 150_000);
    let kinds: Vec<(&str, &str)> = view["recent_activity"]
        .as_array()
        .expect("activity")
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap_or(""),
                a["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(kinds.contains(&("top_up", "succeeded")), "{kinds:?}");
    assert!(kinds.contains(&("top_up", "failed")), "{kinds:?}");
    let cards: Vec<&str> = view["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .map(|c| c["number"].as_str().unwrap_or(""))
        .collect();
    assert!(
        cards.contains(&"•••• 1111") && cards.contains(&"•••• 0002"),
        "{cards:?}"
    );
    assert_eq!(view["sessions"][0]["state"], "active");
    assert_eq!(view["limits"]["in_force"]["per_payment"], 60_000);
    assert_eq!(view["limits"]["override"], Value::Null);
    assert_eq!(view["locked_until"], Value::Null);
    // Registration is the first sign-in: evaluated, and shown with its reasons.
    let sign_ins: Vec<&Value> = view["risk_history"]
        .as_array()
        .expect("risk history")
        .iter()
        .filter(|e| e["kind"] == "sign_in")
        .collect();
    assert!(!sign_ins.is_empty(), "{view}");
    assert_eq!(sign_ins[0]["decision"], "allow");
    assert!(
        sign_ins[0]["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["rule_id"] == "new_device_sign_in")),
        "{view}"
    );
    let (status, masked, text) = app
        .get(&support, &format!("/v1/staff/customers/{}/360", zhang.id))
        .await;
    assert_eq!(status, 200);
    assert_eq!(masked["profile"]["personal_data_shown"], false);
    assert_eq!(masked["kyc"]["identity"]["full_name"], "Z**** X*******");
    for secret in [
        "张小明",
        "Zhang Xiaoming",
        "8613900139101",
        "11010519491231002X",
    ] {
        assert!(!text.contains(secret), "{secret} leaked to support: {text}");
    }
    let (status, audit, _) = app
        .get(
            &compliance,
            &format!("/v1/staff/audit?subject={}&limit=50", zhang.id),
        )
        .await;
    assert_eq!(status, 200);
    let views: Vec<(&str, &str)> = audit["data"]
        .as_array()
        .expect("audit")
        .iter()
        .filter(|r| r["action"] == "customer_360_viewed")
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or(""),
                r["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        views.contains(&("staff:risk.a", "personal data shown")),
        "{views:?}"
    );
    assert!(views.contains(&("staff:support.a", "masked")), "{views:?}");

    // ---- a fee change through maker-checker ------------------------------------------
    let (status, fees, _) = app.get(&product, "/v1/staff/settings/fees").await;
    assert_eq!(status, 200, "{fees}");
    assert_eq!(fees["version"], 0);
    assert_eq!(fees["settings"]["p2p"]["percent_bps"], 100);
    let (_, quote) = app.quote(&zhang, "fq-1", &john.contact, 10_000).await;
    assert_eq!(quote["fee"], 100, "1 % before the change: {quote}");
    // The document carries the merchant discount rules (none: the MCC table).
    assert_eq!(fees["settings"]["merchant_discounts"], json!([]), "{fees}");
    let mut changed = fees["settings"].clone();
    changed["merchant_discounts"] = json!([
        {"scope": "mcc", "id": "5812", "percent_bps": 60, "minimum": 0, "maximum": null}
    ]);
    changed["withdrawal"] = json!({"fixed": 300, "percent_bps": 0, "minimum": 0, "maximum": null, "free_per_month": 0, "first_free": false});
    changed["p2p"]["percent_bps"] = json!(20_000);
    let (status, body) = app
        .propose(&super_user, "fp-0", "fees", 0, changed.clone())
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (
            422,
            (Some("invalid_field"), Some("settings.p2p.percent_bps"))
        )
    );
    changed["p2p"]["percent_bps"] = json!(200);
    let (status, body) = app
        .propose(&super_user, "fp-1", "fees", 1, changed.clone())
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (409, Some("conflict")),
        "{body}"
    );
    let (status, body) = app
        .propose(&support, "fp-2", "fees", 0, changed.clone())
        .await;
    assert_eq!((status, error_of(&body).0), (403, Some("forbidden")));
    let (status, proposal) = app
        .propose(&super_user, "fp-3", "fees", 0, changed.clone())
        .await;
    assert_eq!(
        (status, &proposal["state"]),
        (201, &json!("pending")),
        "{proposal}"
    );
    let approval = proposal["approval_id"].as_str().expect("id").to_string();
    let (status, body) = app.decide(&super_user, "fd-1", &approval).await;
    assert_eq!(
        (status, error_of(&body).0),
        (403, Some("forbidden")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("approve_own_proposal")),
        "{body}"
    );
    let (_, quote) = app.quote(&zhang, "fq-2", &john.contact, 10_000).await;
    assert_eq!(quote["fee"], 100, "nothing changes before approval");
    let (status, decided) = app.decide(&compliance, "fd-2", &approval).await;
    assert_eq!(
        (status, &decided["state"]),
        (200, &json!("executed")),
        "{decided}"
    );
    let (_, quote) = app.quote(&zhang, "fq-3", &john.contact, 10_000).await;
    assert_eq!(quote["fee"], 200, "2 % on the next quote: {quote}");
    // The same schedule prices withdrawals.
    let (status, withdrawal, _) = app
        .get(
            &zhang.bearer,
            "/v1/me/withdrawals/quote?amount=10000&currency=CNY",
        )
        .await;
    assert_eq!(status, 200, "{withdrawal}");
    assert_eq!(
        withdrawal["fee"], 300,
        "the runtime withdrawal rule: {withdrawal}"
    );
    let (_, fees, _) = app.get(&compliance, "/v1/staff/settings/fees").await;
    assert_eq!(fees["version"], 1);
    assert_eq!(
        fees["settings"]["merchant_discounts"][0]["percent_bps"], 60,
        "the merchant discount rate is part of the schedule: {fees}"
    );
    assert_eq!(fees["history"][0]["maker"], "super.a");
    assert_eq!(fees["history"][0]["checker"], "compliance.a");
    // A second proposal on the old base cannot be approved over the first.
    let (status, stale) = app
        .propose(&product, "fp-4", "fees", 1, changed.clone())
        .await;
    assert_eq!(status, 201, "{stale}");
    let (status, other) = app
        .propose(&super_user, "fp-5", "fees", 1, changed.clone())
        .await;
    assert_eq!(status, 201, "{other}");
    let (status, _) = app
        .decide(
            &compliance,
            "fd-3",
            other["approval_id"].as_str().expect("id"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .decide(
            &compliance,
            "fd-4",
            stale["approval_id"].as_str().expect("id"),
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (409, Some("conflict")),
        "{body}"
    );

    // ---- queues ------------------------------------------------------------------------
    let (status, queues, _) = app.get(&compliance, "/v1/staff/queues").await;
    assert_eq!(status, 200, "{queues}");
    let names: Vec<&str> = queues["data"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| q["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "kyc_reviews",
            "pending_approvals",
            "merchant_reviews",
            "pending_fundings",
            "risk_cases",
            "risk_cases_escalated",
            "compliance_hits",
            "compliance_reports",
            "support_tickets"
        ]
    );
    assert_eq!(queues["data"][1]["count"], 0, "every proposal was decided");

    // ---- billers managed at runtime (maker-checker) ------------------------------------
    let (status, billers, _) = app.get(&product, "/v1/staff/settings/billers").await;
    assert_eq!(status, 200, "{billers}");
    assert_eq!(billers["version"], 0);
    let mut catalogue = billers["settings"].clone();
    let list = catalogue["billers"].as_array_mut().expect("billers");
    assert_eq!(list.len(), 6);
    for biller in list.iter_mut() {
        if biller["id"] == "china-unicom" {
            biller["enabled"] = json!(false);
        }
    }
    list.push(json!({
        "id": "shanghai-electricity", "name_zh": "上海电力 电费", "name_en": "Shanghai electricity",
        "category": "electricity", "reference_digits": 10, "reference_prefix": null,
        "reference_format": "10-digit customer number on the bill", "partial_payment": false,
        "enabled": true
    }));
    let mut bad = catalogue.clone();
    bad["billers"][6]["reference_digits"] = json!(2);
    let (status, body) = app.propose(&super_user, "bp-0", "billers", 0, bad).await;
    assert_eq!(
        (status, error_of(&body)),
        (
            422,
            (
                Some("invalid_field"),
                Some("settings.billers[6].reference_digits")
            )
        )
    );
    let (status, proposal) = app
        .propose(&super_user, "bp-1", "billers", 0, catalogue)
        .await;
    assert_eq!(status, 201, "{proposal}");
    let (_, listed, _) = app.get(&zhang.bearer, "/v1/me/billers").await;
    assert_eq!(
        listed["data"].as_array().map(Vec::len),
        Some(6),
        "not before approval"
    );
    let (status, decided) = app
        .decide(
            &compliance,
            "bd-1",
            proposal["approval_id"].as_str().expect("id"),
        )
        .await;
    assert_eq!(
        (status, &decided["state"]),
        (200, &json!("executed")),
        "{decided}"
    );
    let (_, listed, _) = app.get(&zhang.bearer, "/v1/me/billers").await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .expect("billers")
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert!(ids.contains(&"shanghai-electricity"), "{ids:?}");
    assert!(!ids.contains(&"china-unicom"), "{ids:?}");
    let (status, bill, _) = app
        .get(
            &zhang.bearer,
            "/v1/me/billers/shanghai-electricity/bill?account_reference=3100000042",
        )
        .await;
    assert_eq!(status, 200, "the added biller takes payments: {bill}");
    let (status, body, _) = app
        .get(
            &zhang.bearer,
            "/v1/me/billers/china-unicom/bill?account_reference=13800138000",
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (404, Some("unknown_biller")),
        "a disabled biller takes none"
    );
    let (_, billers, _) = app.get(&product, "/v1/staff/settings/billers").await;
    assert_eq!(billers["version"], 1);
    assert_eq!(billers["history"][0]["maker"], "super.a");
    let (status, _, _) = app.get(&support, "/v1/staff/queues").await;
    assert_eq!(status, 403);

    // ---- day 1: a P2P payment (stepped up), a freeze, a manual adjustment --------------
    app.clock.advance_millis(86_400_000);
    app.sign_in(&mut zhang).await;
    app.sign_in(&mut john).await;
    app.pay(&zhang, "p-1", &john.contact, 10_000).await;
    let risk = app.staff("risk.b", vec![Role::RiskAnalyst]).await;
    let compliance = app
        .staff("compliance.b", vec![Role::ComplianceOfficer])
        .await;
    let support = app.staff("support.b", vec![Role::Support]).await;
    let (status, _) = app
        .post(
            &risk,
            "fr-1",
            &format!("/v1/staff/customers/{}/freeze", li.id),
            json!({"reason": "suspected mule"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, proposal) = app
        .post(
            &support,
            "adj-1",
            "/v1/staff/approvals",
            json!({"action": "adjust_balance", "subject": john.id, "params": {"amount": 5_000, "direction": "credit"}, "reason": "goodwill for outage"}),
        )
        .await;
    assert_eq!(status, 201, "{proposal}");
    let approval = proposal["id"].as_str().expect("id").to_string();
    let (status, decided) = app.decide(&compliance, "adj-d", &approval).await;
    assert_eq!(
        (status, &decided["state"]),
        (200, &json!("executed")),
        "{decided}"
    );
    let reader = app.state.reader.clone();
    let transfer_id = format!("adj:{approval}");
    let transfer = tokio::task::spawn_blocking(move || {
        reader
            .transfer(&Identifier::parse(&transfer_id).expect("id"))
            .expect("read")
    })
    .await
    .expect("join")
    .expect("the adjustment is a ledger transfer");
    assert_eq!(transfer.debit.to_string(), "bank:adjustments:cny");
    assert_eq!(
        transfer.credit.to_string(),
        format!("wallet:{}:cny", john.id)
    );
    assert_eq!(transfer.amount.minor_units(), 5_000);
    let metadata = transfer.metadata.entries();
    assert_eq!(
        metadata.get("reason").map(String::as_str),
        Some("goodwill for outage")
    );
    assert_eq!(metadata.get("maker").map(String::as_str), Some("support.b"));
    assert_eq!(
        metadata.get("checker").map(String::as_str),
        Some("compliance.b")
    );

    // ---- dashboards over the two days --------------------------------------------------
    let viewer = app.staff("product.b", vec![Role::ProductManager]).await;
    let day = |at: i64| coffer_payments::dashboards::day_text(at.div_euclid(DAY_NANOS));
    let (first, second) = (day(day0), day(day0 + DAY_NANOS));
    let (status, board, _) = app
        .get(
            &viewer,
            &format!("/v1/staff/dashboards?from={first}&until={second}"),
        )
        .await;
    assert_eq!(status, 200, "{board}");
    assert_eq!(
        board["volumes"],
        json!([
            {"day": first, "operation": "top_up", "currency": "CNY", "count": 2, "amount": 200_000},
            {"day": second, "operation": "p2p", "currency": "CNY", "count": 1, "amount": 10_000},
        ])
    );
    let failures = board["failures"].as_array().expect("failures");
    let top_up = failures
        .iter()
        .find(|f| f["operation"] == "top_up")
        .expect("top_up");
    assert_eq!(
        top_up,
        &json!({"operation": "top_up", "succeeded": 2, "failed": 1, "failure_rate_bps": 3_333, "reasons": {"card_declined": 1}})
    );
    for quiet in [
        "withdrawal",
        "bill_payment",
        "merchant_payment",
        "merchant_refund",
        "fx_conversion",
    ] {
        let row = failures
            .iter()
            .find(|f| f["operation"] == quiet)
            .expect("every operation");
        assert_eq!((&row["succeeded"], &row["failed"]), (&json!(0), &json!(0)));
    }
    assert_eq!(
        board["fraud"],
        json!({
            "frozen_customers_now": 1,
            "freezes": 1,
            "step_ups_started": 1,
            "step_ups_verified": 1,
            "refund_ratio_bps": {},
            "p2p_step_up_rate_bps": 10_000,
        })
    );
    // Only the first day: the P2P payment and the freeze are outside.
    let (_, board, _) = app
        .get(
            &viewer,
            &format!("/v1/staff/dashboards?from={first}&until={first}"),
        )
        .await;
    assert_eq!(board["volumes"].as_array().map(Vec::len), Some(1));
    assert_eq!(board["fraud"]["freezes"], 0);
    let (status, body, _) = app
        .get(&viewer, "/v1/staff/dashboards?from=2026-13-01")
        .await;
    assert_eq!(
        (status, error_of(&body)),
        (422, (Some("invalid_field"), Some("from")))
    );
    let (status, body, _) = app
        .get(
            &viewer,
            "/v1/staff/dashboards?from=2020-01-01&until=2026-01-01",
        )
        .await;
    assert_eq!((status, error_of(&body).1), (422, Some("from")));

    // ---- a tier limit change through maker-checker -------------------------------------
    let maker = app.staff("product.c", vec![Role::ProductManager]).await;
    let (_, quote) = app.quote(&john, "lq-1", &zhang.contact, 6_000).await;
    assert!(quote["id"].is_string(), "within the limits before: {quote}");
    let (status, limits, _) = app.get(&maker, "/v1/staff/settings/tier_limits").await;
    assert_eq!((status, &limits["version"]), (200, &json!(0)), "{limits}");
    let mut lower = limits["settings"].clone();
    lower["tiers"][0]["per_payment"] = json!(200_000);
    let (status, body) = app
        .propose(&maker, "lp-0", "tier_limits", 0, lower.clone())
        .await;
    assert_eq!(
        (status, error_of(&body).1),
        (422, Some("settings.tiers[0].per_payment")),
        "above the daily limit"
    );
    lower["tiers"][0]["per_payment"] = json!(5_000);
    let (status, proposal) = app
        .propose(&maker, "lp-1", "tier_limits", 0, lower.clone())
        .await;
    assert_eq!(status, 201, "{proposal}");
    let (_, quote) = app.quote(&john, "lq-2", &zhang.contact, 6_000).await;
    assert!(quote["id"].is_string(), "nothing changes before approval");
    let (status, decided) = app
        .decide(
            &compliance,
            "ld-1",
            proposal["approval_id"].as_str().expect("id"),
        )
        .await;
    assert_eq!(
        (status, &decided["state"]),
        (200, &json!("executed")),
        "{decided}"
    );
    let (status, refused) = app.quote(&john, "lq-3", &zhang.contact, 6_000).await;
    assert_eq!(
        (status, error_of(&refused)),
        (422, (Some("limit_exceeded"), Some("amount"))),
        "the new tier limit on the next quote: {refused}"
    );
    let (_, view, _) = app
        .get(&risk, &format!("/v1/staff/customers/{}/360", john.id))
        .await;
    assert_eq!(view["limits"]["in_force"]["per_payment"], 5_000);

    app.verify_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_office_on_sqlite() {
    back_office(spawn_app(TestDatabase::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_office_on_postgres() {
    let db = tokio::task::spawn_blocking(TestDatabase::postgres)
        .await
        .expect("postgres");
    back_office(spawn_app(db).await).await;
}
