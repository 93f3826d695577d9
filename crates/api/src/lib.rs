//! Coffer's HTTP API: axum routes over the engine and the stores, with the
//! conventions every capability follows: `/v1`, one error shape, idempotency
//! keys, API keys with scopes, request ids, metrics, security headers and
//! per-address rate limits.

pub mod auth;
pub mod backoffice_routes;
pub mod body;
pub mod client_addr;
pub mod compliance_routes;
pub mod connector_tasks;
pub mod customer_routes;
mod docs_page;
pub mod error;
pub mod funding_routes;
pub mod idempotency;
pub mod ledger_routes;
pub mod merchant_key_routes;
pub mod merchant_routes;
pub mod metrics;
pub mod notification_routes;
pub mod openapi;
pub mod p2p_routes;
pub mod passkey_routes;
pub mod path_id;
pub mod privacy_routes;
pub mod rate_limit;
pub mod respond;
pub mod risk_routes;
pub mod route_table;
pub mod security_headers;
pub mod staff_routes;
pub mod support_routes;
pub mod wallet_routes;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use coffer_app::Engine;
use coffer_core::{Clock, CurrencyRegistry};
use coffer_identity::{
    Identity, IdentityProvider, PasskeySettings, PasswordPolicy, Policy, SimulatedIdentityProvider,
};
use coffer_notify::{Dispatcher, Transport};
use coffer_store::service::ServiceStore;
use coffer_store::sql::SqlStore;
use coffer_store::{Database, LedgerReader};
use coffer_vault::{KeyProvider, Vault};
use rand::RngCore;
use serde::Serialize;
use tracing::Instrument;

pub use error::ApiError;
pub use rate_limit::{Rate, RateLimiter, RateLimits};
use route_table::RouteTable;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub reader: Arc<dyn LedgerReader>,
    pub service: Arc<dyn ServiceStore>,
    pub currencies: Arc<CurrencyRegistry>,
    pub clock: Arc<dyn Clock>,
    pub http_metrics: Arc<metrics::HttpMetrics>,

    pub api_keys: Arc<auth::ApiKeyCache>,
    pub identity: Arc<Identity>,
    /// For keyed hashes of request bodies that carry secrets (`idempotency::run_private`).
    pub vault: Arc<Vault>,
    pub dispatcher: Arc<Dispatcher>,
    pub rate_limiter: Arc<RateLimiter>,
    /// Whose `X-Forwarded-For` to believe (none by default).
    pub trusted_proxies: Arc<client_addr::TrustedProxies>,
    pub provider: Arc<dyn IdentityProvider>,
    pub cards: Arc<coffer_payments::Cards>,
    pub bank_accounts: Arc<coffer_payments::BankAccounts>,
    pub connectors: Connectors,
    pub funding: Arc<coffer_payments::Funding>,
    pub p2p: Arc<coffer_payments::P2p>,
    pub bills: Arc<coffer_payments::Bills>,
    pub fx: Arc<coffer_payments::Fx>,
    pub activity: Arc<coffer_payments::Activity>,
    pub merchants: Arc<coffer_payments::Merchants>,
    pub sql: Arc<SqlStore>,
    /// Real-time risk: the gate every payment passes, and its cases.
    pub risk: Arc<coffer_payments::risk_gate::RiskGate>,
    pub risk_cases: Arc<coffer_payments::risk_cases::RiskCases>,
    /// Watch-list screening, the compliance queue and regulatory reports.
    pub compliance: Arc<coffer_compliance::Compliance>,
    pub campaigns: Arc<coffer_payments::Campaigns>,
    /// Export, erasure, partner consents and the access log.
    pub privacy: Arc<coffer_privacy::Privacy>,
    /// Customer support tickets and the support queue.
    pub support: Arc<coffer_support::Support>,
}

/// The card network and the core banking system, and the secrets their
/// callbacks are signed with.
#[derive(Clone)]
pub struct Connectors {
    pub card_network: Arc<dyn coffer_payments::CardNetwork>,
    pub core_banking: Arc<dyn coffer_payments::CoreBanking>,
    pub card_network_secret: coffer_payments::WebhookSecret,
    pub core_banking_secret: coffer_payments::WebhookSecret,
    /// The built-in simulators, when the connectors are simulated: their
    /// callbacks wait in their own books until `connector_tasks::deliver`.
    pub simulators: Vec<Arc<coffer_payments::Simulator>>,
    /// The bill-payment network.
    pub biller: Arc<dyn coffer_payments::Biller>,
    /// Where FX mid rates come from.
    pub rates: Arc<dyn coffer_payments::RateSource>,
    /// The simulated rate source, when rates are simulated (tests switch it off).
    pub rate_simulator: Option<Arc<coffer_payments::SimulatedRateSource>>,
}

impl Connectors {
    /// Both connectors simulated, each signing with a fresh random secret.
    pub fn simulated(
        sql: Arc<SqlStore>,
        clock: Arc<dyn Clock>,
        settings: coffer_payments::SimulatorSettings,
    ) -> Connectors {
        use coffer_payments::{ConnectorKind, Simulator, WebhookSecret};
        let card_network_secret = WebhookSecret::generate();
        let core_banking_secret = WebhookSecret::generate();
        let card_network = Arc::new(Simulator::new(
            ConnectorKind::CardNetwork,
            sql.clone(),
            clock.clone(),
            card_network_secret.clone(),
            settings.clone(),
        ));
        let core_banking = Arc::new(Simulator::new(
            ConnectorKind::CoreBanking,
            sql.clone(),
            clock.clone(),
            core_banking_secret.clone(),
            settings,
        ));
        let rate_simulator = Arc::new(coffer_payments::SimulatedRateSource::default());
        Connectors {
            card_network: card_network.clone(),
            core_banking: core_banking.clone(),
            card_network_secret,
            core_banking_secret,
            simulators: vec![card_network, core_banking],
            biller: Arc::new(coffer_payments::BillerSimulator::new(sql, clock)),
            rates: rate_simulator.clone(),
            rate_simulator: Some(rate_simulator),
        }
    }

    pub fn secret(&self, kind: coffer_payments::ConnectorKind) -> &coffer_payments::WebhookSecret {
        match kind {
            coffer_payments::ConnectorKind::CardNetwork => &self.card_network_secret,
            coffer_payments::ConnectorKind::CoreBanking => &self.core_banking_secret,
        }
    }

    pub fn simulator(
        &self,
        kind: coffer_payments::ConnectorKind,
    ) -> Option<&Arc<coffer_payments::Simulator>> {
        self.simulators.iter().find(|s| s.kind() == kind)
    }
}

/// Every column of the schema that holds vault ciphertexts, from the
/// crates that own them: what `coffer keys reencrypt` walks after a rotation.
pub fn encrypted_columns() -> Vec<coffer_vault::EncryptedColumn> {
    coffer_identity::ENCRYPTED_COLUMNS
        .into_iter()
        .chain(coffer_notify::ENCRYPTED_COLUMNS)
        .chain(coffer_payments::ENCRYPTED_COLUMNS)
        .chain(coffer_compliance::ENCRYPTED_COLUMNS)
        .chain(coffer_support::ENCRYPTED_COLUMNS)
        .collect()
}

/// The customer side: identity, the vault that guards its data, and the
/// notification dispatcher (started by the caller with `Dispatcher::run`).
pub struct CustomerServices {
    pub identity: Arc<Identity>,
    pub vault: Arc<Vault>,
    pub dispatcher: Arc<Dispatcher>,
    /// Checks name and national ID for KYC tier 1 (a simulator by default).
    pub provider: Arc<dyn IdentityProvider>,
    pub cards: Arc<coffer_payments::Cards>,
    pub bank_accounts: Arc<coffer_payments::BankAccounts>,
    /// Simulated by default (`Connectors::simulated`).
    pub connectors: Connectors,
    pub sql: Arc<SqlStore>,
    /// Risk rules, evaluations and cases (the shipped rules seeded at open).
    pub risk: Arc<coffer_risk::Risk>,
    /// Screens KYC names, payees and merchants against the watch list
    /// (identity and payments call it through `coffer_identity::Screening`).
    pub screener: Arc<coffer_compliance::Screener>,
}

impl CustomerServices {
    /// Opens the services with the default passkey relying party
    /// (`localhost`, `http://localhost:8080`): for tests and tools.
    pub fn open(
        database: &Database,
        clock: Arc<dyn Clock>,
        master_key: Arc<dyn KeyProvider>,
        transports: Vec<Arc<dyn Transport>>,
        policy: Policy,
        passwords: PasswordPolicy,
    ) -> Result<CustomerServices, String> {
        CustomerServices::open_with(
            database,
            clock,
            master_key,
            transports,
            policy,
            passwords,
            &PasskeySettings::default(),
        )
    }

    /// Opens the services with passkeys valid for `passkeys`' relying party
    /// and origin (`coffer serve` passes the configured ones).
    pub fn open_with(
        database: &Database,
        clock: Arc<dyn Clock>,
        master_key: Arc<dyn KeyProvider>,
        transports: Vec<Arc<dyn Transport>>,
        policy: Policy,
        passwords: PasswordPolicy,
        passkeys: &PasskeySettings,
    ) -> Result<CustomerServices, String> {
        let sql = Arc::new(SqlStore::open(database, 8).map_err(|e| e.to_string())?);
        let vault = Arc::new(
            Vault::open(master_key, sql.clone(), clock.now().as_nanos())
                .map_err(|e| e.to_string())?,
        );
        let (sql_for_cards, vault_for_cards) = (sql.clone(), vault.clone());
        let connectors = Connectors::simulated(
            sql.clone(),
            clock.clone(),
            coffer_payments::SimulatorSettings::default(),
        );
        let bank_accounts = Arc::new(coffer_payments::BankAccounts::new(
            sql.clone(),
            vault.clone(),
        ));
        let sql_for_state = sql.clone();
        // Merchants' webhooks go through the same outbox as SMS and e-mail.
        let mut transports = transports;
        transports.push(Arc::new(coffer_payments::WebhookTransport::new(
            sql.clone(),
            vault.clone(),
            clock.clone(),
        )));
        let dispatcher = Arc::new(Dispatcher::new(
            sql.clone(),
            vault.clone(),
            clock.clone(),
            transports,
        ));
        let risk = Arc::new(coffer_risk::Risk::new(
            sql.clone(),
            vault.clone(),
            clock.clone(),
        ));
        let screener = Arc::new(coffer_compliance::Screener::new(
            sql.clone(),
            vault.clone(),
            clock.clone(),
        ));
        risk.seed_default().map_err(|e| e.to_string())?;
        let identity = Arc::new(
            Identity::new(sql, vault.clone(), clock, policy, passwords)
                .with_passkeys(passkeys)
                .map_err(|e| e.to_string())?
                .with_screening(screener.clone())
                .with_risk(risk.clone()),
        );
        Ok(CustomerServices {
            identity,
            vault,
            dispatcher,
            provider: Arc::new(SimulatedIdentityProvider),
            cards: Arc::new(coffer_payments::Cards::new(sql_for_cards, vault_for_cards)),
            bank_accounts,
            connectors,
            sql: sql_for_state,
            risk,
            screener,
        })
    }
}

impl AppState {
    pub fn new(
        engine: Arc<Engine>,
        reader: Arc<dyn LedgerReader>,
        service: Arc<dyn ServiceStore>,
        currencies: Arc<CurrencyRegistry>,
        clock: Arc<dyn Clock>,
        customers: &CustomerServices,
    ) -> AppState {
        // Every P2P payment, merchant payment and withdrawal passes the risk gate.
        let risk = Arc::new(coffer_payments::risk_gate::RiskGate::new(
            customers.risk.clone(),
            customers.identity.clone(),
            customers.sql.clone(),
        ));
        let funding = Arc::new(
            coffer_payments::Funding::new(
                customers.sql.clone(),
                engine.clone(),
                reader.clone(),
                customers.identity.clone(),
                customers.cards.clone(),
                customers.bank_accounts.clone(),
                customers.connectors.card_network.clone(),
                customers.connectors.core_banking.clone(),
                clock.clone(),
                coffer_payments::FundingPolicy::default(),
            )
            .with_risk(risk.clone()),
        );
        let p2p = Arc::new(
            coffer_payments::P2p::new(
                customers.sql.clone(),
                engine.clone(),
                reader.clone(),
                customers.identity.clone(),
                customers.vault.clone(),
                clock.clone(),
                coffer_payments::P2pPolicy::default(),
            )
            .with_risk(risk.clone()),
        );

        let activity = Arc::new(coffer_payments::Activity::new(
            customers.sql.clone(),
            currencies.clone(),
            funding.policy().limit_day_utc_offset_seconds,
        ));
        let bills = Arc::new(coffer_payments::Bills::new(
            customers.sql.clone(),
            engine.clone(),
            reader.clone(),
            customers.identity.clone(),
            customers.connectors.biller.clone(),
            clock.clone(),
            coffer_payments::BillPolicy::default(),
        ));
        let fx = Arc::new(
            coffer_payments::Fx::new(
                customers.sql.clone(),
                engine.clone(),
                reader.clone(),
                currencies.clone(),
                customers.connectors.rates.clone(),
                clock.clone(),
                coffer_payments::FxPolicy::default(),
            )
            .with_alerts(customers.identity.clone()),
        );
        let merchants = Arc::new(
            coffer_payments::Merchants::new(
                customers.sql.clone(),
                engine.clone(),
                customers.identity.clone(),
                customers.vault.clone(),
                customers.bank_accounts.clone(),
                funding.clone(),
                clock.clone(),
                coffer_payments::MerchantPolicy::default(),
            )
            .with_risk(risk.clone()),
        );
        let risk_cases = Arc::new(coffer_payments::risk_cases::RiskCases::new(
            risk.clone(),
            customers.sql.clone(),
            p2p.clone(),
            merchants.clone(),
            customers.identity.clone(),
        ));
        let compliance = Arc::new(
            coffer_compliance::Compliance::new(
                customers.sql.clone(),
                customers.vault.clone(),
                clock.clone(),
                customers.identity.clone(),
                customers.screener.clone(),
                currencies.clone(),
                coffer_compliance::ReportSettings::default(),
            )
            .with_merchants(merchants.clone()),
        );
        let campaigns = Arc::new(coffer_payments::Campaigns::new(
            customers.sql.clone(),
            customers.vault.clone(),
            customers.identity.clone(),
            clock.clone(),
        ));
        let privacy = Arc::new(coffer_privacy::Privacy::new(
            customers.sql.clone(),
            customers.vault.clone(),
            clock.clone(),
            customers.identity.clone(),
            fx.clone(),
        ));
        let support = Arc::new(coffer_support::Support::new(
            customers.sql.clone(),
            customers.vault.clone(),
            clock.clone(),
            activity.clone(),
        ));
        AppState {
            campaigns,
            engine,
            reader,
            service,
            currencies,
            clock,
            http_metrics: Arc::default(),

            api_keys: Arc::default(),
            identity: customers.identity.clone(),
            vault: customers.vault.clone(),
            dispatcher: customers.dispatcher.clone(),
            provider: customers.provider.clone(),
            cards: customers.cards.clone(),
            bank_accounts: customers.bank_accounts.clone(),
            connectors: customers.connectors.clone(),
            funding,
            p2p,
            bills,
            fx,
            activity,
            merchants,
            risk,
            risk_cases,
            sql: customers.sql.clone(),
            compliance,
            rate_limiter: Arc::new(RateLimiter::new(RateLimits::default())),
            trusted_proxies: Arc::new(client_addr::TrustedProxies::default()),
            privacy,
            support,
        }
    }

    /// Replaces the default funding policy (`FundingPolicy::default()`).
    pub fn with_funding_policy(mut self, policy: coffer_payments::FundingPolicy) -> AppState {
        self.funding = Arc::new(
            coffer_payments::Funding::new(
                self.sql.clone(),
                self.engine.clone(),
                self.reader.clone(),
                self.identity.clone(),
                self.cards.clone(),
                self.bank_accounts.clone(),
                self.connectors.card_network.clone(),
                self.connectors.core_banking.clone(),
                self.clock.clone(),
                policy,
            )
            .with_risk(self.risk.clone()),
        );
        let merchant_policy = self.merchants.policy().clone();
        self.with_merchant_policy(merchant_policy)
    }

    /// Replaces the merchant policy (`MerchantPolicy::default()`).
    pub fn with_merchant_policy(mut self, policy: coffer_payments::MerchantPolicy) -> AppState {
        self.merchants = Arc::new(
            coffer_payments::Merchants::new(
                self.sql.clone(),
                self.engine.clone(),
                self.identity.clone(),
                self.vault.clone(),
                self.bank_accounts.clone(),
                self.funding.clone(),
                self.clock.clone(),
                policy,
            )
            .with_risk(self.risk.clone()),
        );
        self.rewire_risk_cases()
    }

    /// Points the case handling at the current P2P and merchant services.
    fn rewire_risk_cases(mut self) -> AppState {
        self.risk_cases = Arc::new(coffer_payments::risk_cases::RiskCases::new(
            self.risk.clone(),
            self.sql.clone(),
            self.p2p.clone(),
            self.merchants.clone(),
            self.identity.clone(),
        ));
        self
    }

    /// Replaces the compliance report rules' settings (`ReportSettings::default()`).
    pub fn with_compliance_settings(
        mut self,
        settings: coffer_compliance::ReportSettings,
    ) -> AppState {
        self.compliance = Arc::new(
            coffer_compliance::Compliance::new(
                self.sql.clone(),
                self.vault.clone(),
                self.clock.clone(),
                self.identity.clone(),
                self.compliance.screener().clone(),
                self.currencies.clone(),
                settings,
            )
            .with_merchants(self.merchants.clone()),
        );
        self
    }

    /// Believes `X-Forwarded-For` from these proxies (see `client_addr`).
    pub fn with_trusted_proxies(mut self, proxies: client_addr::TrustedProxies) -> AppState {
        self.trusted_proxies = Arc::new(proxies);
        self
    }

    /// Replaces the default P2P policy and fee schedule (`P2pPolicy::default()`).
    pub fn with_p2p_policy(mut self, policy: coffer_payments::P2pPolicy) -> AppState {
        self.p2p = Arc::new(
            coffer_payments::P2p::new(
                self.sql.clone(),
                self.engine.clone(),
                self.reader.clone(),
                self.identity.clone(),
                self.vault.clone(),
                self.clock.clone(),
                policy,
            )
            .with_risk(self.risk.clone()),
        );
        self.rewire_risk_cases()
    }

    /// Replaces the default bill payment and FX policies.
    pub fn with_wallet_policies(
        mut self,
        bills: coffer_payments::BillPolicy,
        fx: coffer_payments::FxPolicy,
    ) -> AppState {
        self.bills = Arc::new(coffer_payments::Bills::new(
            self.sql.clone(),
            self.engine.clone(),
            self.reader.clone(),
            self.identity.clone(),
            self.connectors.biller.clone(),
            self.clock.clone(),
            bills,
        ));
        self.fx = Arc::new(
            coffer_payments::Fx::new(
                self.sql.clone(),
                self.engine.clone(),
                self.reader.clone(),
                self.currencies.clone(),
                self.connectors.rates.clone(),
                self.clock.clone(),
                fx,
            )
            .with_alerts(self.identity.clone()),
        );
        // Erasure checks balances through the wallets the bank enables.
        self.privacy = Arc::new(coffer_privacy::Privacy::new(
            self.sql.clone(),
            self.vault.clone(),
            self.clock.clone(),
            self.identity.clone(),
            self.fx.clone(),
        ));
        self
    }

    /// Opens the bank's accounts every payment kind needs (idempotent):
    /// funding clearing, fee income, biller settlement, FX positions. Call
    /// once at start.
    pub fn open_bank_accounts(&self) -> Result<(), String> {
        self.funding.open_accounts().map_err(|e| e.to_string())?;
        self.p2p.open_accounts().map_err(|e| e.to_string())?;
        self.bills.open_accounts().map_err(|e| e.to_string())?;
        self.fx.open_accounts().map_err(|e| e.to_string())
    }

    /// Replaces the default rate limits (`RateLimits::default()`).
    pub fn with_rate_limits(mut self, limits: RateLimits) -> AppState {
        self.rate_limiter = Arc::new(RateLimiter::new(limits));
        self
    }
}

/// Every route the API serves; `router` adds the fallbacks and layers.
pub fn routes() -> RouteTable {
    RouteTable::default()
        .get("/healthz", healthz)
        .get("/readyz", readyz)
        .get("/metrics", metrics_text)
        .get("/openapi.json", openapi::serve_document)
        .get("/docs", openapi::serve_reference)
        .merge(ledger_routes::routes())
        .merge(customer_routes::routes())
        .merge(funding_routes::routes())
        .merge(p2p_routes::routes())
        .merge(wallet_routes::routes())
        .merge(merchant_routes::routes())
        .merge(merchant_key_routes::routes())
        .merge(staff_routes::routes())
        .merge(risk_routes::routes())
        .merge(compliance_routes::routes())
        .merge(notification_routes::routes())
        .merge(privacy_routes::routes())
        .merge(backoffice_routes::routes())
        .merge(passkey_routes::routes())
        .merge(support_routes::routes())
}

pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The API together with `extra` routes of the same service (the web app),
/// inside the same layers: security headers, request ids and logs, metrics,
/// rate limits.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    routes()
        .into_router()
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(body::BODY_LIMIT_BYTES))
        // The last layer added is the outermost: security headers go on
        // every response (429s included), and requests the rate limit
        // refuses are still logged and counted by `observe`.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        // Outermost of the layers that look at the client's address.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            client_addr::resolve,
        ))
        .layer(axum::middleware::from_fn(security_headers::add))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "no such route; see /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take this method",
    )
}

/// A request id on every response and every log line of the request; request
/// count and latency by route and status.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_string)
        .unwrap_or_else(|| {
            let mut bytes = [0u8; 8];
            rand::rng().fill_bytes(&mut bytes);
            hex::encode(bytes)
        });
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    // Paths may carry ids but never secrets; query strings are not logged.
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| tracing::info!(status, elapsed_us = elapsed.as_micros() as u64, "request"));
    state.http_metrics.observe(&route, &method, status, elapsed);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The body of a health or readiness answer.
#[derive(Serialize, utoipa::ToSchema)]
struct Status {
    /// `ok` from /healthz, `ready` from /readyz.
    #[schema(schema_with = status_schema)]
    status: &'static str,
}

fn status_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["ok", "ready"]))
        .build()
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness",
    description = "Answers as long as the process serves HTTP; checks nothing else.",
    responses((status = 200, description = "Alive: `{\"status\":\"ok\"}`.", body = Status))
)]
async fn healthz() -> impl IntoResponse {
    axum::Json(Status { status: "ok" })
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness",
    description = "Ready to take traffic: the database answers and the ledger engine runs.",
    responses(
        (status = 200, description = "Ready: `{\"status\":\"ready\"}`.", body = Status),
        (status = 503, description = "`not_ready`: the database is unreachable or not migrated, or the engine has stopped.", body = error::ErrorBody),
    )
)]
async fn readyz(State(state): State<AppState>) -> Response {
    let reader = state.reader.clone();
    let ready = tokio::task::spawn_blocking(move || reader.ping()).await;
    match ready {
        Ok(Ok(())) if state.engine.is_running() => {
            axum::Json(Status { status: "ready" }).into_response()
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "not ready");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the database is unreachable or not migrated",
            )
            .into_response()
        }
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the ledger engine is not running",
        )
        .into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "Requests by route, method and status with latency; the ledger engine's counters and histograms; the database pool. Prometheus text format 0.0.4.",
    responses((status = 200, description = "The metrics.", content_type = "text/plain", body = String))
)]
async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let body = state
        .http_metrics
        .render(state.engine.stats(), Some(state.reader.pool_usage()));
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}
