//! HTTP hardening, black-box: security headers on every kind of response,
//! and per-address rate limits that answer 429 with `Retry-After` and then
//! let the client back in. The real router on port 0 with peer addresses
//! (`into_make_service_with_connect_info`), as `coffer serve` runs it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coffer_api::{AppState, CustomerServices, Rate, RateLimits};
use coffer_app::Engine;
use coffer_core::CurrencyRegistry;
use coffer_identity::{PasswordPolicy, Policy};
use coffer_notify::{Channel, SimulatedTransport, Transport};
use coffer_testkit::TestDatabase;
use coffer_vault::LocalMasterKey;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

struct App {
    base: String,
    token: String,
    client: reqwest::Client,
    _db: TestDatabase,
}

async fn spawn_app(limits: RateLimits) -> App {
    spawn_app_behind(limits, coffer_api::client_addr::TrustedProxies::default()).await
}

async fn spawn_app_behind(
    limits: RateLimits,
    proxies: coffer_api::client_addr::TrustedProxies,
) -> App {
    let db = TestDatabase::sqlite();
    let database = db.database.clone();
    let (state, token) = tokio::task::spawn_blocking(move || {
        let clock = coffer_app::system_clock();
        let engine = Arc::new(Engine::start(&database, clock.clone()).expect("engine"));
        let reader = database.open_reader(2).expect("reader");
        let service: Arc<dyn coffer_store::service::ServiceStore> =
            Arc::from(coffer_store::service::open(&database, 2).expect("service"));
        let (token, record) = coffer_api::auth::generate(
            "test",
            vec!["ledger:read".into(), "ledger:write".into()],
            0,
        );
        service.insert_api_key(&record).expect("key");
        let transports: Vec<Arc<dyn Transport>> = vec![
            Arc::new(SimulatedTransport::new(Channel::Sms)),
            Arc::new(SimulatedTransport::new(Channel::Email)),
        ];
        let customers = CustomerServices::open(
            &database,
            clock.clone(),
            Arc::new(LocalMasterKey::from_bytes([5; 32])),
            transports,
            Policy::default(),
            PasswordPolicy::new(None),
        )
        .expect("customer services");
        let state = AppState::new(
            engine,
            reader,
            service,
            Arc::new(CurrencyRegistry::default()),
            clock,
            &customers,
        )
        .with_rate_limits(limits)
        .with_trusted_proxies(proxies);
        (state, token)
    })
    .await
    .expect("setup");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        axum::serve(
            listener,
            coffer_api::router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
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

impl App {
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, HeaderMap, Value) {
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (
            status,
            headers,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }

    fn post(&self, path: &str, body: Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
    }
}

fn assert_security_headers(what: &str, headers: &HeaderMap) {
    for (name, value) in [
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        assert_eq!(
            headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{what}: {name}"
        );
    }
}

fn cache_control(headers: &HeaderMap) -> Option<&str> {
    headers.get("cache-control").and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn security_headers_on_success_not_found_and_unauthorized() {
    let app = spawn_app(RateLimits::default()).await;
    let (status, headers, _) = app.send(app.get("/healthz")).await;
    assert_eq!(status, 200);
    assert_security_headers("healthz", &headers);

    let opened = app
        .post(
            "/v1/ledger/accounts",
            json!({"id": "wallet-1", "currency": "CNY", "kind": "liability", "constraint": "no_overdraft", "owner": "owner-1"}),
        )
        .bearer_auth(&app.token)
        .header("Idempotency-Key", "open-wallet-1");
    let (status, _, body) = app.send(opened).await;
    assert_eq!(status, 201, "{body}");
    let (status, headers, body) = app
        .send(
            app.get("/v1/ledger/accounts/wallet-1")
                .bearer_auth(&app.token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_security_headers("200 on /v1", &headers);
    assert_eq!(cache_control(&headers), Some("no-store"));

    let (status, headers, body) = app.send(app.get("/v1/no-such-route")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "route_not_found");
    assert_security_headers("404", &headers);
    assert_eq!(cache_control(&headers), Some("no-store"));

    for path in ["/v1/me", "/v1/ledger/accounts/wallet-1"] {
        let (status, headers, _) = app.send(app.get(path)).await;
        assert_eq!(status, 401, "{path}");
        assert_security_headers(path, &headers);
        assert_eq!(cache_control(&headers), Some("no-store"), "{path}");
    }
}

#[tokio::test]
async fn a_burst_beyond_the_limit_gets_429_with_retry_after_then_recovers() {
    // Tight enough to trip in a test, quick enough to recover in one.
    let app = spawn_app(RateLimits {
        auth: Rate {
            per_second: 2,
            burst: 5,
        },
        general: Rate {
            per_second: 10,
            burst: 20,
        },
        clients_max: 100,
    })
    .await;
    // A malformed sign-in: refused by the handler (422) unless the limiter
    // refuses it first, and never counted by the sign-in throttle.
    let sign_in = || app.post("/v1/auth/sessions", json!({}));
    for attempt in 0..5 {
        let (status, _, body) = app.send(sign_in()).await;
        assert_eq!(status, 422, "attempt {attempt} is within the burst: {body}");
    }
    // The burst is spent; on a slow machine a token may have come back
    // meanwhile, so allow a few more before the refusal.
    let mut refused = None;
    for _ in 0..10 {
        let (status, headers, body) = app.send(sign_in()).await;
        if status == 429 {
            refused = Some((headers, body));
            break;
        }
        assert_eq!(status, 422, "{body}");
    }
    let (headers, body) = refused.expect("refused once the burst is spent");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["message"].as_str().is_some());
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_security_headers("429", &headers);
    // Other routes have their own bucket.
    let (status, _, _) = app.send(app.get("/healthz")).await;
    assert_eq!(status, 200);
    // Half a second refills one token at 2 per second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, _, body) = app.send(sign_in()).await;
    assert_eq!(status, 422, "recovered: {body}");

    // The general limit trips too, on any route, 404s included.
    let mut limited = None;
    for attempt in 0..60 {
        let (status, headers, _) = app.send(app.get("/v1/no-such-route")).await;
        if status == 429 {
            limited = Some((attempt, headers));
            break;
        }
        assert_eq!(status, 404);
    }
    let (attempt, headers) = limited.expect("the general limit trips");
    assert!(attempt >= 20, "not before the burst is spent: {attempt}");
    assert!(headers.get("retry-after").is_some());
}

/// Behind the bank's load balancer (here: the test client on 127.0.0.1) each
/// customer has their own bucket by `X-Forwarded-For`; an address not listed
/// as a proxy cannot pick its bucket by writing the header.
#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    use coffer_api::client_addr::{Cidr, TrustedProxies};
    let tight = || RateLimits {
        auth: Rate {
            per_second: 1,
            burst: 3,
        },
        general: Rate {
            per_second: 1,
            burst: 3,
        },
        clients_max: 100,
    };
    let app = spawn_app_behind(
        tight(),
        TrustedProxies(vec![Cidr::parse("127.0.0.1").expect("cidr")]),
    )
    .await;
    let from = |client: &str| {
        app.post("/v1/auth/sessions", json!({}))
            .header("x-forwarded-for", client)
    };
    let mut refused = false;
    for _ in 0..8 {
        let (status, _, _) = app.send(from("198.51.100.7")).await;
        if status == 429 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the first client spent its burst");
    let (status, _, body) = app.send(from("203.0.113.9")).await;
    assert_eq!(
        status, 422,
        "another client behind the proxy is not limited: {body}"
    );
    // A forged left-most hop does not buy a fresh bucket: the proxy's own
    // entry (right-most) is what counts.
    let (status, _, _) = app.send(from("203.0.113.77, 198.51.100.7")).await;
    assert_eq!(status, 429);

    // Without trusted proxies the header is ignored: one bucket for all.
    let app = spawn_app(tight()).await;
    let mut statuses = Vec::new();
    for n in 0..8 {
        let request = app
            .post("/v1/auth/sessions", json!({}))
            .header("x-forwarded-for", format!("192.0.2.{n}"));
        statuses.push(app.send(request).await.0);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}
