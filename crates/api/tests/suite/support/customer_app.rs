//! A customer-facing app for the payments suites (funding, wallet): the
//! real app on port 0 with the SMS simulator, and what those suites do over
//! HTTP (register, link a card or bank account, deliver the simulators'
//! signed callbacks, read the wallet, audit the ledger).

use std::sync::Arc;

use coffer_api::{AppState, CustomerServices};
use coffer_notify::SimulatedTransport;
use coffer_payments::SignedCallback;
use coffer_testkit::TestDatabase;
use reqwest::Method;
use serde_json::{json, Value};

pub const PASSWORD: &str = "plum blossoms in snow";

pub struct CustomerApp {
    pub base: String,
    pub sms: Arc<SimulatedTransport>,
    pub customers: Arc<CustomerServices>,
    pub state: AppState,
    pub client: reqwest::Client,
    pub _db: TestDatabase,
}

impl CustomerApp {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
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

    pub async fn post(&self, bearer: &str, key: &str, path: &str, body: Value) -> (u16, Value) {
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

    pub async fn get(&self, bearer: &str, path: &str) -> (u16, Value) {
        let (status, body, _) = self
            .send(Method::GET, path, &[("Authorization", bearer)], None)
            .await;
        (status, body)
    }

    pub async fn code_for(&self, to: &str) -> String {
        let customers = self.customers.clone();
        tokio::task::spawn_blocking(move || customers.dispatcher.run_once())
            .await
            .expect("join")
            .expect("dispatch");
        self.sms.last_code(to).expect("a code was sent")
    }

    /// Registers a customer; returns (customer id, bearer header value).
    pub async fn customer(&self, phone: &str) -> (String, String) {
        let (status, started, _) = self
            .send(
                Method::POST,
                "/v1/auth/registrations",
                &[("Idempotency-Key", phone)],
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
                Some(json!({"code": code, "password": PASSWORD, "display_name": "Funding", "accept_terms": "2026-11"})),
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

    pub async fn card(&self, bearer: &str, number: &str) -> String {
        let (status, card) = self
            .post(
                bearer,
                &format!("card-{}", number.replace(' ', "")),
                "/v1/me/cards",
                json!({"number": number, "expiry_month": 12, "expiry_year": 2035, "cvv": "123", "funding": "debit"}),
            )
            .await;
        assert_eq!(status, 201, "{card}");
        card["id"].as_str().expect("id").to_string()
    }

    pub async fn bank_account(&self, bearer: &str, number: &str) -> String {
        let (status, account) = self
            .post(
                bearer,
                &format!("bank-{}", number.replace(' ', "")),
                "/v1/me/bank-accounts",
                json!({"bank_code": "CMB", "account_number": number}),
            )
            .await;
        assert_eq!(status, 201, "{account}");
        assert_eq!(account["last4"], number[number.len() - 4..]);
        account["id"].as_str().expect("id").to_string()
    }

    /// Every callback the simulators have queued, whenever due.
    pub async fn callbacks(&self) -> Vec<SignedCallback> {
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

    pub async fn deliver(&self, callback: &SignedCallback) -> (u16, Value) {
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
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// Delivers every queued callback; returns each outcome.
    pub async fn deliver_all(&self) -> Vec<String> {
        let mut outcomes = Vec::new();
        for callback in self.callbacks().await {
            let (status, answer) = self.deliver(&callback).await;
            assert_eq!(status, 200, "{answer}");
            outcomes.push(answer["outcome"].as_str().expect("outcome").to_string());
        }
        outcomes
    }

    /// (posted, available) of the customer's wallet.
    pub async fn balance(&self, bearer: &str) -> (i64, i64) {
        let (status, me) = self.get(bearer, "/v1/me").await;
        assert_eq!(status, 200, "{me}");
        let balances = &me["wallets"][0]["balances"];
        (
            balances["posted"].as_i64().expect("posted"),
            balances["available"].as_i64().expect("available"),
        )
    }

    pub async fn verify_ledger(&self) {
        let reader = self.state.reader.clone();
        let report = tokio::task::spawn_blocking(move || {
            coffer_app::verify(reader.as_ref(), &mut |_| {}).expect("verify")
        })
        .await
        .expect("join");
        assert!(report.is_clean(), "{:?}", report.violations);
    }
}
