//! `coffer serve`: the HTTP service, with optional demo data.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use coffer_api::AppState;
use coffer_app::Engine;
use coffer_core::{Clock, CurrencyRegistry};
use coffer_store::Database;

use crate::demo;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    coffer serve --demo                               # SQLite under ./coffer-data, demo data, http://127.0.0.1:8080\n  \
    coffer serve --listen 0.0.0.0:8443 --db postgres://coffer@db/coffer\n  \
    COFFER_DATA_DIR=/var/lib/coffer coffer serve")]
pub struct Serve {
    /// Address to listen on.
    #[arg(long, env = "COFFER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Database URL; default: SQLite in the data directory.
    #[arg(long, env = "COFFER_DATABASE_URL")]
    db: Option<String>,
    /// Where the embedded database lives.
    #[arg(long, env = "COFFER_DATA_DIR", default_value = "coffer-data")]
    data_dir: PathBuf,
    /// Load demo customers, merchants, balances and history into an empty database.
    #[arg(long)]
    demo: bool,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "COFFER_LOG_JSON")]
    log_json: bool,
}

impl Serve {
    pub fn log_json(&self) -> bool {
        self.log_json
    }
}

pub fn database_url(db: Option<&str>, data_dir: &std::path::Path) -> String {
    db.map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("coffer.db").display()))
}

pub fn run(args: Serve) -> anyhow::Result<()> {
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen / COFFER_LISTEN: {:?} is not an address like 127.0.0.1:8080",
            args.listen
        )
    })?;
    let url = database_url(args.db.as_deref(), &args.data_dir);
    let database = Database::parse(&url).context("--db / COFFER_DATABASE_URL")?;
    // Opening the stores connects synchronously: do it before the runtime starts.
    let clock: Arc<dyn Clock> = coffer_app::system_clock();
    let version = database
        .migrate()
        .with_context(|| format!("migrate {}", database.redacted()))?;
    let engine = Arc::new(Engine::start(&database, clock.clone())?);
    let reader = database.open_reader(8)?;
    let service: Arc<dyn coffer_store::service::ServiceStore> =
        Arc::from(coffer_store::service::open(&database, 8)?);
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
        );
        if args.demo {
            demo::load(&engine, reader.clone(), service.clone(), clock.as_ref()).await?;
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let address = listener.local_addr()?;
        println!(
            "Coffer is running at http://{address}/ (database {}, schema v{version})",
            database.redacted()
        );
        println!("  health: http://{address}/healthz   metrics: http://{address}/metrics");
        tracing::info!(%address, database = %database.redacted(), "listening");
        tokio::spawn(purge_idempotency_keys(service.clone(), clock.clone()));
        axum::serve(listener, coffer_api::router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        tracing::info!("stopped accepting; flushing the ledger");
        let engine_for_shutdown = engine.clone();
        tokio::task::spawn_blocking(move || engine_for_shutdown.shutdown()).await?;
        println!("Coffer stopped cleanly");
        Ok(())
    })
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

async fn purge_idempotency_keys(
    service: Arc<dyn coffer_store::service::ServiceStore>,
    clock: Arc<dyn Clock>,
) {
    let retention = coffer_api::idempotency::IDEMPOTENCY_RETENTION_HOURS * 3_600 * 1_000_000_000;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(3_600)).await;
        let before = clock.now().as_nanos().saturating_sub(retention);
        let service = service.clone();
        match tokio::task::spawn_blocking(move || service.purge_idempotency(before)).await {
            Ok(Ok(purged)) => tracing::info!(purged, "expired idempotency keys purged"),
            Ok(Err(error)) => tracing::warn!(%error, "idempotency purge failed"),
            Err(error) => tracing::warn!(%error, "idempotency purge panicked"),
        }
    }
}
