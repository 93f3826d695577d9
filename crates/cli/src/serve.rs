//! `coffer serve`: the HTTP or HTTPS service, with optional demo data.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use coffer_api::AppState;
use coffer_app::Engine;
use coffer_core::{Clock, CurrencyRegistry};

use crate::config::{Config, Flags};
use crate::{demo, tls, ConfigArgs};

/// After SIGTERM/SIGINT, in-flight requests get this long to finish before the
/// ledger is flushed regardless; it leaves room within a typical 30 s
/// orchestrator grace period for the flush itself.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections for the service store (API keys, idempotency records): far fewer
/// queries than ledger reads.
const SERVICE_CONNECTIONS: usize = 8;
const NANOS_PER_HOUR: i64 = 3_600 * 1_000_000_000;
/// How often simulated callbacks are delivered and overdue operations looked at.
/// How often `serve` resolves pending merchant payments and looks whether
/// a day has ended and needs settling.
const MERCHANT_TASKS_INTERVAL: Duration = Duration::from_secs(30);
const CONNECTOR_TASKS_INTERVAL: Duration = Duration::from_millis(250);
/// How often pending P2P payments a crash left behind are looked at (each
/// only after `RESOLVE_GRACE_SECONDS`).
const P2P_RESOLVER_INTERVAL: Duration = Duration::from_secs(5);
/// How often expired idempotency keys are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(3_600);

#[derive(Debug, Args)]
#[command(
    after_help = "Configuration layers: defaults, --config FILE (or COFFER_CONFIG), COFFER_… variables, then these flags.\n\
    HTTPS when server.tls_cert and server.tls_key (COFFER_SERVER_TLS_CERT, COFFER_SERVER_TLS_KEY) name PEM files.\n\n\
    Examples:\n  \
    coffer serve --demo                               # SQLite under ./coffer-data, demo data, http://127.0.0.1:8080\n  \
    coffer serve --listen 0.0.0.0:8443 --db postgres://coffer@db/coffer\n  \
    coffer serve --config /etc/coffer/coffer.toml     # e.g. with TLS; see docs/coffer.example.toml\n  \
    COFFER_DATA_DIR=/var/lib/coffer COFFER_LOG_FORMAT=json coffer serve"
)]
pub struct Serve {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to listen on (server.listen) [env: COFFER_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDRESS")]
    listen: Option<String>,
    /// Load demo customers, merchants, balances and history into an empty database.
    #[arg(long)]
    demo: bool,
    /// Log as JSON lines instead of human-readable text (log.format = "json")
    /// [env: COFFER_LOG_FORMAT=json or COFFER_LOG_JSON=true].
    #[arg(long)]
    log_json: bool,
}

impl Serve {
    /// This command's flags as the top configuration layer.
    pub fn flags(&self) -> Flags {
        Flags {
            listen: self.listen.clone(),
            log_json: self.log_json,
            ..self.config.flags()
        }
    }
}

pub fn run(args: Serve, config: Config) -> anyhow::Result<()> {
    let database = config.database.url.value.clone();
    // Opening the stores connects synchronously: do it before the runtime starts.
    let clock: Arc<dyn Clock> = coffer_app::system_clock();
    let version = database
        .migrate()
        .with_context(|| format!("migrate {}", database.redacted()))?;
    let lease = take_lease(&database)?;
    let engine = Arc::new(Engine::start(&database, clock.clone())?);
    let reader = database.open_reader(config.database.reader_connections.value)?;
    let service: Arc<dyn coffer_store::service::ServiceStore> =
        Arc::from(coffer_store::service::open(&database, SERVICE_CONNECTIONS)?);
    // The master key never enters the database. Without one configured, a
    // local installation keeps a generated key beside its data (mode 0600).
    let master_key = config.vault.key_provider()?;
    tracing::info!(master_key = master_key.master_key_id(), "master key loaded");
    // SMS and e-mail leave through simulators until the bank's gateways are
    // configured; they record what would have been sent.
    // With --demo the console stands in for the customer's phone.
    let demo_sms = Arc::new(coffer_notify::SimulatedTransport::on_console(
        coffer_notify::Channel::Sms,
    ));
    let simulator = |channel| {
        Arc::new(if args.demo {
            coffer_notify::SimulatedTransport::on_console(channel)
        } else {
            coffer_notify::SimulatedTransport::new(channel)
        }) as Arc<dyn coffer_notify::Transport>
    };
    let transports = vec![
        if args.demo {
            // Kept, so that the demo can register its customer with the code.
            demo_sms.clone() as Arc<dyn coffer_notify::Transport>
        } else {
            simulator(coffer_notify::Channel::Sms)
        },
        match &config.smtp {
            // A configured relay replaces the e-mail simulator.
            Some(smtp) => Arc::new(
                coffer_notify::smtp::SmtpTransport::new(&smtp.settings)
                    .map_err(anyhow::Error::msg)?,
            ) as Arc<dyn coffer_notify::Transport>,
            None => simulator(coffer_notify::Channel::Email),
        },
    ];
    let customers = coffer_api::CustomerServices::open_with(
        &database,
        clock.clone(),
        master_key,
        transports,
        coffer_identity::Policy::default(),
        coffer_identity::PasswordPolicy::new(None),
        &config.passkeys.settings(),
    )
    .map_err(anyhow::Error::msg)?;
    config.compliance.apply(&customers.screener)?;
    if args.demo && config.compliance.watchlist_file.is_none() {
        demo::load_watchlist(&customers.screener)?;
    }
    let dispatcher = customers
        .dispatcher
        .clone()
        .run(std::time::Duration::from_millis(500))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let state = AppState::new(
            engine.clone(),
            reader.clone(),
            service.clone(),
            Arc::new(CurrencyRegistry::default()),
            clock.clone(),
            &customers,
        )
        .with_rate_limits(config.server.rate_limits())
        .with_trusted_proxies(config.server.trusted_proxies.value.clone())
        .with_funding_policy(coffer_payments::FundingPolicy {
            // One fee schedule: its `withdrawal` rule prices withdrawals.
            fees: config.payments.value.fees.clone(),
            top_ups_limited: config.limits.top_ups_limited.value,
            ..coffer_payments::FundingPolicy::default()
        })
        .with_merchant_policy(coffer_payments::MerchantPolicy {
            // Settlements charge the schedule's merchant discount rules.
            fees: config.payments.value.fees.clone(),
            // The demo runs on one machine: its merchants may use a local endpoint.
            webhook_allow_loopback: args.demo,
            ..coffer_payments::MerchantPolicy::default()
        })
        .with_p2p_policy(config.payments.value.clone())
        .with_compliance_settings(config.compliance.report_settings());
        let listen = config.server.listen.value;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen} (server.listen)"))?;
        let address = listener.local_addr()?;
        let scheme = if config.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let base_url = format!("{scheme}://{address}");
        if args.demo {
            demo::load(
                &engine,
                reader.clone(),
                service.clone(),
                clock.as_ref(),
                &base_url,
            )
            .await?;
        }
        let bank = state.clone();
        tokio::task::spawn_blocking(move || bank.open_bank_accounts())
            .await?
            .map_err(|e| anyhow::anyhow!("opening the bank's accounts: {e}"))?;
        // Customers registered before staff name search existed get their
        // name indexes now (a no-op once every customer has them).
        let identity = state.identity.clone();
        tokio::task::spawn_blocking(move || {
            while identity.index_missing_names(500)? > 0 {}
            Ok::<(), coffer_identity::IdentityError>(())
        })
        .await?
        .map_err(|e| anyhow::anyhow!("indexing customer names: {e}"))?;
        if args.demo {
            let customer = demo::load_funding(&state, &customers, demo_sms.clone()).await?;
            demo::load_support(&state, customer.clone()).await?;
            demo::load_wallet(&state, customer).await?;
            demo::load_p2p(&state, &customers, demo_sms.clone()).await?;
        }
        println!(
            "Coffer is running at {base_url}/ (database {}, schema v{version})",
            database.redacted()
        );
        println!("  health: {base_url}/healthz   metrics: {base_url}/metrics");
        tracing::info!(%address, scheme, database = %database.redacted(), "listening");
        let lease = Arc::new(lease);
        tokio::spawn(renew_lease(lease.clone()));
        tokio::spawn(refresh_data_keys(customers.vault.clone(), clock.clone()));
        tokio::spawn(purge_idempotency_keys(
            service.clone(),
            clock.clone(),
            config.idempotency.retention_hours.value,
        ));
        // The web app (`/`) is served by the same router as the API.
        let web = coffer_web::routes(
            state.clone(),
            &coffer_web::WebConfig {
                secure_cookies: config.server.tls.is_some(),
            },
        );
        let router = coffer_api::router_with(state.clone(), web);
        // Callbacks of the simulated card network and core banking system,
        // and the resolver for operations whose callback is overdue.
        tokio::spawn(coffer_api::connector_tasks::run(
            router.clone(),
            state.connectors.simulators.clone(),
            state.funding.clone(),
            clock.clone(),
            CONNECTOR_TASKS_INTERVAL,
        ));
        tokio::spawn(coffer_api::p2p_routes::run_resolver(
            state.p2p.clone(),
            P2P_RESOLVER_INTERVAL,
        ));
        tokio::spawn(coffer_api::connector_tasks::run_wallet_resolvers(
            state.bills.clone(),
            state.fx.clone(),
            CONNECTOR_TASKS_INTERVAL,
        ));
        // Merchant payments a crash left pending are carried forward, and
        // each ended day is settled to merchants' bank accounts.
        tokio::spawn(coffer_api::merchant_routes::run_merchant_tasks(
            state.merchants.clone(),
            clock.clone(),
            MERCHANT_TASKS_INTERVAL,
        ));
        match &config.server.tls {
            Some(tls) => {
                let listener = tls::TlsListener::new(listener, tls.server_config.clone())?;
                serve_until_stopped(listener, router).await?;
            }
            None => serve_until_stopped(listener, router).await?,
        }
        tracing::info!("stopped accepting; flushing the ledger");
        let engine_for_shutdown = engine.clone();
        tokio::task::spawn_blocking(move || engine_for_shutdown.shutdown()).await?;
        customers.dispatcher.stop();
        let _ = tokio::task::spawn_blocking(move || dispatcher.join()).await;
        // The ledger is flushed: another writer may start at once.
        let _ = tokio::task::spawn_blocking(move || lease.release()).await;
        println!("Coffer stopped cleanly");
        Ok(())
    })
}

/// Takes the database's ledger-writer lease before the engine starts,
/// waiting out a lapsing one (a holder that crashed) but not a live one.
fn take_lease(database: &coffer_store::Database) -> anyhow::Result<crate::lease::Lease> {
    use crate::lease::{holder, Lease, LeaseError, LEASE_TTL_SECONDS};
    let sql = Arc::new(coffer_store::sql::SqlStore::open(database, 1)?);
    let me = holder("serve");
    let deadline = std::time::Instant::now()
        + Duration::from_secs(u64::try_from(LEASE_TTL_SECONDS + 5).unwrap_or(35));
    loop {
        match Lease::acquire(sql.clone(), &me) {
            Ok(lease) => return Ok(lease),
            Err(LeaseError::Held { holder, until }) if std::time::Instant::now() < deadline => {
                tracing::warn!(%holder, %until, "another process holds this database's ledger-writer lease; waiting for it to lapse");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(error) => return Err(anyhow::anyhow!(error).context(
                "this database already has a ledger writer (a `coffer serve` or `coffer settle`)",
            )),
        }
    }
}

/// Renews the lease well before it lapses; losing it (this process stalled
/// past its lapse and another writer took over) stops the process, as two
/// ledger writers must never run on one database.
async fn renew_lease(lease: Arc<crate::lease::Lease>) {
    let every =
        Duration::from_secs(u64::try_from(crate::lease::LEASE_TTL_SECONDS / 3).unwrap_or(10));
    loop {
        tokio::time::sleep(every).await;
        let held = lease.clone();
        match tokio::task::spawn_blocking(move || held.renew()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                tracing::error!("lost the ledger-writer lease to another process; stopping");
                std::process::exit(3);
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not renew the ledger-writer lease; retrying")
            }
            Err(error) => tracing::warn!(%error, "lease renewal task failed"),
        }
    }
}

/// Serves until SIGTERM or SIGINT, then stops accepting and lets in-flight
/// requests finish, for `DRAIN_TIMEOUT` at most: a stuck client must not keep
/// the ledger from being flushed before the orchestrator's SIGKILL.
async fn serve_until_stopped<L>(listener: L, router: axum::Router) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let mut graceful = stopped.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stopping.send(true);
    });
    // The peer address reaches handlers (throttling per IP, security events).
    // (`tap_io` makes any listener's address available as connect info.)
    use axum::serve::ListenerExt;
    let server = axum::serve(
        listener.tap_io(|_| {}),
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|stop| *stop).await;
    })
    .into_future();
    let drain_deadline = async {
        let _ = stopped.wait_for(|stop| *stop).await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        result = server => result,
        () = drain_deadline => {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "requests still in flight at the drain deadline; stopping anyway");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

/// Re-reads the data keys every `KEY_REFRESH_SECONDS`, so that a key made
/// by `coffer keys rotate` (another process) is known here before it is
/// used for writing, and used here for writing once its time has come.
async fn refresh_data_keys(vault: Arc<coffer_vault::Vault>, clock: Arc<dyn Clock>) {
    let interval = std::time::Duration::from_secs(
        u64::try_from(coffer_vault::KEY_REFRESH_SECONDS).unwrap_or(30),
    );
    loop {
        tokio::time::sleep(interval).await;
        let (vault, now) = (vault.clone(), clock.now().as_nanos());
        match tokio::task::spawn_blocking(move || vault.refresh(now)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "data key refresh failed"),
            Err(error) => tracing::warn!(%error, "data key refresh panicked"),
        }
    }
}

async fn purge_idempotency_keys(
    service: Arc<dyn coffer_store::service::ServiceStore>,
    clock: Arc<dyn Clock>,
    retention_hours: i64,
) {
    let retention = retention_hours.saturating_mul(NANOS_PER_HOUR);
    loop {
        tokio::time::sleep(PURGE_INTERVAL).await;
        let before = clock.now().as_nanos().saturating_sub(retention);
        let service = service.clone();
        match tokio::task::spawn_blocking(move || service.purge_idempotency(before)).await {
            Ok(Ok(purged)) => tracing::info!(purged, "expired idempotency keys purged"),
            Ok(Err(error)) => tracing::warn!(%error, "idempotency purge failed"),
            Err(error) => tracing::warn!(%error, "idempotency purge panicked"),
        }
    }
}
