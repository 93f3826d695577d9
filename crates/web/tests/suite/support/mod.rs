//! The web app served over real HTTP (API and pages in one router) on a
//! throwaway SQLite database, and a hand-kept cookie jar.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use coffer_api::AppState;
use coffer_app::Engine;
use coffer_core::CurrencyRegistry;
use coffer_notify::{Channel, SimulatedTransport};
use coffer_testkit::TestDatabase;

pub struct Web {
    pub base: String,
    pub client: reqwest::Client,
    pub sms: Arc<SimulatedTransport>,
    pub state: AppState,
    pub _db: TestDatabase,
}

pub async fn spawn_web() -> Web {
    let db = TestDatabase::sqlite();
    let database = db.database.clone();
    let sms = Arc::new(SimulatedTransport::new(Channel::Sms));
    let sms_for_setup = sms.clone();
    let (state, customers) = tokio::task::spawn_blocking(move || {
        let clock = coffer_app::system_clock();
        let engine = Arc::new(Engine::start(&database, clock.clone()).expect("engine"));
        let service: Arc<dyn coffer_store::service::ServiceStore> =
            Arc::from(coffer_store::service::open(&database, 2).expect("service"));
        let customers = coffer_api::CustomerServices::open(
            &database,
            clock.clone(),
            Arc::new(coffer_vault::LocalMasterKey::from_bytes([7; 32])),
            vec![sms_for_setup],
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
        state.open_bank_accounts().expect("bank accounts");
        (state, customers)
    })
    .await
    .expect("setup");
    let dispatcher = customers.dispatcher.clone();
    dispatcher
        .run(Duration::from_millis(50))
        .map(std::mem::forget)
        .expect("dispatcher");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let router = coffer_api::router_with(
        state.clone(),
        coffer_web::routes(state.clone(), &coffer_web::WebConfig::default()),
    );
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .expect("serve")
    });
    Web {
        base,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        sms,
        state,
        _db: db,
    }
}

/// A browser's cookie jar, by hand: what `Set-Cookie` said last.
#[derive(Default)]
pub struct Jar(pub HashMap<String, String>);

impl Jar {
    pub fn take(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().expect("ascii");
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() {
                self.0.remove(name);
            } else {
                self.0.insert(name.into(), value.into());
            }
        }
    }

    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Web {
    pub async fn get(
        &self,
        jar: &mut Jar,
        path: &str,
    ) -> (u16, String, reqwest::header::HeaderMap) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", jar.header())
            .header("accept-language", "zh-CN,zh;q=0.9")
            .send()
            .await
            .expect("get");
        jar.take(&response);
        let headers = response.headers().clone();
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
            headers,
        )
    }

    pub async fn post(
        &self,
        jar: &mut Jar,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, String, reqwest::header::HeaderMap) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", jar.header())
            .form(form)
            .send()
            .await
            .expect("post");
        jar.take(&response);
        let headers = response.headers().clone();
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
            headers,
        )
    }
}

/// The value of a hidden input in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in page:\n{page}"))
        + marker.len();
    page[start..start + page[start..].find('"').expect("quote")].to_string()
}

pub fn location(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A new customer signed up through the forms: their cookie jar and id.
pub async fn sign_up(web: &Web, phone: &str, name: &str) -> (Jar, String) {
    let mut jar = Jar::default();
    let (_, page, _) = web.get(&mut jar, "/signup").await;
    let (status, page, _) = web
        .post(
            &mut jar,
            "/signup",
            &[
                ("csrf", &hidden(&page, "csrf")),
                ("idem", &hidden(&page, "idem")),
                ("contact", phone),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let registration = hidden(&page, "registration_id");
    let mut code = None;
    for _ in 0..200 {
        code = web.sms.last_code(phone);
        if code.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let code = code.expect("an SMS code");
    let (status, page, _) = web
        .post(
            &mut jar,
            "/signup/complete",
            &[
                ("csrf", &hidden(&page, "csrf")),
                ("registration_id", &registration),
                ("code", &code),
                ("display_name", name),
                ("password", "a quiet walk by the lake"),
                ("accept_terms", coffer_identity::TERMS_VERSION),
            ],
        )
        .await;
    assert_eq!(status, 303, "{page}");
    let (status, profile, _) = web.get(&mut jar, "/v1/me/profile").await;
    assert_eq!(status, 200, "{profile}");
    let profile: serde_json::Value = serde_json::from_str(&profile).expect("json");
    let id = profile["id"]
        .as_str()
        .or_else(|| profile["customer"]["id"].as_str())
        .unwrap_or_else(|| panic!("no id in {profile}"))
        .to_string();
    (jar, id)
}

/// The authenticator code of `base32` now.
pub fn totp_now(base32: &str) -> String {
    let seed = totp_rs::Secret::Encoded(base32.to_string())
        .to_bytes()
        .expect("base32");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, seed)
        .expect("totp")
        .generate(now)
}

/// A new staff member with `roles`, signed in to the console through its
/// form: their cookie jar.
pub async fn staff_console(web: &Web, username: &str, roles: Vec<coffer_identity::Role>) -> Jar {
    let identity = web.state.identity.clone();
    let name = username.to_string();
    let new = tokio::task::spawn_blocking(move || {
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
    let mut jar = Jar::default();
    let (status, page, _) = web.get(&mut jar, "/staff").await;
    assert_eq!(status, 200, "{page}");
    let (status, page, headers) = web
        .post(
            &mut jar,
            "/staff/signin",
            &[
                ("csrf", &hidden(&page, "csrf")),
                ("username", username),
                ("password", new.password.expose()),
                ("code", &totp_now(new.totp_base32.expose())),
            ],
        )
        .await;
    assert_eq!(
        (status, location(&headers).as_str()),
        (303, "/staff"),
        "{page}"
    );
    let cookie = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .find(|c| c.starts_with("coffer_staff="))
        .expect("staff cookie");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/staff"),
        "{cookie}"
    );
    jar
}

/// The named inputs of the form posting to `action`, as a browser sends
/// them (hidden fields and their values; checked radio buttons).
pub fn form_fields(page: &str, action: &str) -> Vec<(String, String)> {
    let start = page
        .find(&format!("action=\"{action}\""))
        .unwrap_or_else(|| panic!("no form for {action}:\n{page}"));
    let end = start + page[start..].find("</form>").expect("</form>");
    let form = &page[start..end];
    let attribute = |tag: &str, name: &str| {
        let marker = format!(" {name}=\"");
        tag.find(&marker).map(|at| {
            let rest = &tag[at + marker.len()..];
            rest[..rest.find('"').expect("quote")].replace("&amp;", "&")
        })
    };
    form.split("<input")
        .skip(1)
        .map(|tag| &tag[..tag.find('>').expect(">")])
        .filter(|tag| !tag.contains("type=\"radio\"") || tag.contains(" checked"))
        .filter_map(|tag| {
            Some((
                attribute(tag, "name")?,
                attribute(tag, "value").unwrap_or_default(),
            ))
        })
        .collect()
}

pub async fn post_form(
    web: &Web,
    jar: &mut Jar,
    action: &str,
    fields: &[(String, String)],
) -> (u16, String) {
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, page, _) = web.post(jar, action, &pairs).await;
    (status, page)
}

impl Web {
    /// A JSON call to the API with the session of a signed-in jar as its
    /// bearer token (no CSRF: not a browser), for test setup.
    pub async fn api(
        &self,
        jar: &Jar,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let token = jar.0.get("coffer_session").expect("a customer session");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {token}"))
            .header("idempotency-key", key);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("api call");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

fn id_number() -> String {
    let body_17 = "11010519900307002";
    format!(
        "{body_17}{}",
        coffer_identity::resident_id_check(body_17).expect("check")
    )
}

/// Verified (KYC tier 1) and topped up through the card simulator.
pub async fn fund(web: &Web, jar: &Jar, amount: i64) {
    let (status, kyc) = web
        .api(
            jar,
            reqwest::Method::POST,
            "/v1/me/kyc/identity",
            "fund-kyc",
            Some(serde_json::json!({"full_name": "林晓", "id_type": "cn_resident", "id_number": id_number()})),
        )
        .await;
    assert_eq!(status, 200, "{kyc}");
    let (status, card) = web
        .api(
            jar,
            reqwest::Method::POST,
            "/v1/me/cards",
            "fund-card",
            Some(serde_json::json!({"number": "4111 1111 1111 1111", "expiry_month": 12, "expiry_year": 2035, "cvv": "123", "funding": "debit"})),
        )
        .await;
    assert!(status == 200 || status == 201, "{card}");
    let (status, top_up) = web
        .api(
            jar,
            reqwest::Method::POST,
            "/v1/me/top-ups",
            "fund-top-up",
            Some(serde_json::json!({"amount": amount, "currency": "CNY", "card_id": card["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{top_up}");
    let simulators = web.state.connectors.simulators.clone();
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
        let response = web
            .client
            .post(format!("{}{path}", web.base))
            .header("content-type", "application/json")
            .header("Coffer-Signature", &callback.signature)
            .body(callback.body.clone())
            .send()
            .await
            .expect("callback");
        assert_eq!(response.status().as_u16(), 200);
    }
    assert_eq!(available(web, jar).await, amount);
}

pub async fn available(web: &Web, jar: &Jar) -> i64 {
    let (status, wallets) = web
        .api(jar, reqwest::Method::GET, "/v1/me/wallets", "-", None)
        .await;
    assert_eq!(status, 200, "{wallets}");
    wallets["data"]
        .as_array()
        .expect("wallets")
        .iter()
        .find(|w| w["currency"] == "CNY")
        .and_then(|w| w["available"].as_i64())
        .expect("a CNY wallet")
}

/// Posts the form for `action` on `page`, and when the API asks for a
/// step-up, goes through it with the SMS code sent to `phone` and posts
/// the form again: the last answer's status and page.
pub async fn through_step_up(
    web: &Web,
    jar: &mut Jar,
    phone: &str,
    page: &str,
    action: &str,
) -> (u16, String) {
    let (status, answer) = post_form(web, jar, action, &form_fields(page, action)).await;
    if status != 200 || !answer.contains("action=\"/stepup/start\"") {
        return (status, answer);
    }
    let verified = complete_step_up(web, jar, phone, &answer).await;
    post_form(web, jar, action, &form_fields(&verified, action)).await
}

/// Goes through the step-up that `page` offers (its `/stepup/start` form)
/// with the next SMS code sent to `phone`: the verified page, which holds
/// the form to post again.
pub async fn complete_step_up(web: &Web, jar: &mut Jar, phone: &str, page: &str) -> String {
    let before = web.sms.last_code(phone);
    let (status, code_form) = post_form(
        web,
        jar,
        "/stepup/start",
        &form_fields(page, "/stepup/start"),
    )
    .await;
    assert_eq!(status, 200, "{code_form}");
    let mut code = None;
    for _ in 0..200 {
        code = web
            .sms
            .last_code(phone)
            .filter(|c| Some(c) != before.as_ref());
        if code.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut fields = form_fields(&code_form, "/stepup/verify");
    fields.push(("code".into(), code.expect("a step-up code")));
    let (status, verified) = post_form(web, jar, "/stepup/verify", &fields).await;
    assert_eq!(status, 200, "{verified}");
    verified
}
