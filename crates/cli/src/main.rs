//! `coffer`: one binary for the service and its operations.

mod bench_http;
mod bench_ledger;
mod crash_load;
mod demo;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coffer_store::Database;

#[derive(Debug, Parser)]
#[command(
    name = "coffer",
    version,
    about = "Coffer: a digital-wallet platform for banks, on an exact double-entry ledger."
)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Run the HTTP service.
    Serve(serve::Serve),
    /// Manage service API keys (for the bank's own systems and partners).
    #[command(subcommand)]
    Apikey(Apikey),
    /// Create the database schema or bring it up to date.
    #[command(
        after_help = "Examples:\n  coffer migrate --db sqlite://coffer-data/coffer.db\n  coffer migrate --db postgres://coffer@127.0.0.1/coffer"
    )]
    Migrate {
        /// Database URL (sqlite://PATH or postgres://…).
        #[arg(
            long,
            env = "COFFER_DATABASE_URL",
            default_value = "sqlite://coffer-data/coffer.db"
        )]
        db: String,
    },
    /// Prove the ledger from its stored rows: balanced per currency, balances
    /// equal to the sum of entries, constraints held, holds consistent, journal chain intact.
    #[command(
        after_help = "Exits 0 when everything checks out, 1 (naming each account or transfer) when not.\n\nExamples:\n  coffer verify --db sqlite://coffer-data/coffer.db\n  coffer verify --db postgres://coffer@127.0.0.1/coffer"
    )]
    Verify {
        #[arg(
            long,
            env = "COFFER_DATABASE_URL",
            default_value = "sqlite://coffer-data/coffer.db"
        )]
        db: String,
    },
    /// Benchmarks.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Debug, Subcommand)]
enum Apikey {
    /// Create a key; prints it once (only its hash is stored).
    #[command(
        after_help = "Examples:\n  coffer apikey create --name payments-core --scopes ledger:read,ledger:write\n  coffer apikey create --name reporting --scopes ledger:read"
    )]
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: ledger:read, ledger:write
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        #[arg(long, env = "COFFER_DATABASE_URL")]
        db: Option<String>,
        #[arg(long, env = "COFFER_DATA_DIR", default_value = "coffer-data")]
        data_dir: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// The ledger engine under concurrent clients, against the naive baseline.
    Ledger(bench_ledger::BenchLedger),
    /// A server over HTTP: N connections of transfers and balance reads.
    Http(bench_http::BenchHttp),
    /// Load for the crash test (kill it at will; see tests/crash.rs).
    #[command(hide = true)]
    CrashLoad(crash_load::CrashLoad),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Top::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if matches!(&cli.command, Top::Serve(args) if args.log_json()) {
        builder.json().init();
    } else {
        builder.init();
    }
    let result = match cli.command {
        Top::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Top::Apikey(Apikey::Create {
            name,
            scopes,
            db,
            data_dir,
        }) => create_api_key(
            &name,
            scopes,
            &serve::database_url(db.as_deref(), &data_dir),
        ),
        Top::Migrate { db } => migrate(&db),
        Top::Verify { db } => verify(&db),
        Top::Bench(Bench::Ledger(args)) => bench_ledger::run(args).map(|()| ExitCode::SUCCESS),
        Top::Bench(Bench::Http(args)) => bench_http::run(args).map(|()| ExitCode::SUCCESS),
        Top::Bench(Bench::CrashLoad(args)) => crash_load::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn migrate(url: &str) -> anyhow::Result<ExitCode> {
    let database = Database::parse(url)?;
    let version = database.migrate()?;
    println!("{}: schema at version {version}", database.redacted());
    Ok(ExitCode::SUCCESS)
}

fn verify(url: &str) -> anyhow::Result<ExitCode> {
    let database = Database::parse(url)?;
    if let Database::Sqlite(path) = &database {
        if !path.exists() {
            anyhow::bail!("{}: no such database", database.redacted());
        }
    }
    let reader = database.open_reader(1)?;
    let (accounts, transfers) = reader.counts()?;
    let bar = indicatif::ProgressBar::new(transfers);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "verifying [{bar:40}] {pos}/{len} transfers ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = coffer_app::verify(reader.as_ref(), &mut |seen| bar.set_position(seen))?;
    bar.finish_and_clear();
    println!(
        "verified {}: {} accounts, {} transfers, {} holds, {} journal batches",
        database.redacted(),
        accounts,
        report.transfers,
        report.holds,
        report.journal_batches
    );
    for (currency, (debits, credits)) in &report.totals {
        println!("  {currency}: debits {debits} = credits {credits} (minor units)");
    }
    if report.is_clean() {
        println!("OK: the ledger balances, every balance equals its entries, every constraint holds, the journal chain is intact");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAILED: {} violation(s)", report.violation_count);
        for violation in &report.violations {
            println!("  - {violation}");
        }
        if report.violation_count > report.violations.len() as u64 {
            println!(
                "  … and {} more",
                report.violation_count - report.violations.len() as u64
            );
        }
        Ok(ExitCode::from(1))
    }
}

fn create_api_key(name: &str, scopes: Vec<String>, url: &str) -> anyhow::Result<ExitCode> {
    for scope in &scopes {
        if !coffer_api::auth::SCOPES.contains(&scope.as_str()) {
            anyhow::bail!(
                "--scopes: unknown scope {scope:?} (known: {})",
                coffer_api::auth::SCOPES.join(", ")
            );
        }
    }
    let database = Database::parse(url)?;
    let service = coffer_store::service::open(&database, 1)?;
    let now = coffer_core::Clock::now(&coffer_core::SystemClock).as_nanos();
    let (token, record) = coffer_api::auth::generate(name, scopes, now);
    service.insert_api_key(&record)?;
    println!(
        "API key {} ({name}) created with scopes {}. It is shown once and stored only as a hash:",
        record.id,
        record.scopes.join(",")
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
