//! `coffer`: one binary for the service and its operations.

mod bench_http;
mod bench_ledger;
mod bench_risk;
mod config;
mod crash_load;
mod demo;
mod keys;
mod lease;
mod progress;
mod serve;
mod tls;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use config::{Config, Env, Flags, LogFormat};

/// Exit code for a configuration or usage error (clap uses 2 for usage errors too).
const EXIT_CONFIG_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "coffer",
    version,
    about = "Coffer: a digital-wallet platform for banks, on an exact double-entry ledger.",
    after_help = "Configuration, for every command that opens the database: built-in defaults, then\n\
        the TOML file given by --config or COFFER_CONFIG, then COFFER_… environment variables,\n\
        then flags. `coffer config check` shows the result and where each value came from.\n\n\
        Examples:\n  \
        coffer serve --demo                          # SQLite under ./coffer-data, http://127.0.0.1:8080\n  \
        coffer serve --config /etc/coffer/coffer.toml\n  \
        coffer config check --config /etc/coffer/coffer.toml\n  \
        coffer verify --db postgres://coffer@db/coffer"
)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Run the HTTP(S) service.
    Serve(serve::Serve),
    /// Manage service API keys (for the bank's own systems and partners).
    #[command(
        subcommand,
        after_help = "Examples:\n  coffer apikey create --name payments-core --scopes ledger:read,ledger:write"
    )]
    Apikey(Apikey),
    /// Manage the bank's staff users (back office).
    #[command(
        subcommand,
        after_help = "Examples:\n  coffer staff create --username li.ming --name \"Li Ming\" --roles support\n  coffer staff create --username wang.fang --name \"Wang Fang\" --roles compliance_officer,administrator"
    )]
    Staff(Staff),
    /// Rotate data keys, re-encrypt stored values, rotate the master key.
    #[command(
        subcommand,
        after_help = "Rotating the data key (the service keeps running):
          coffer keys rotate
          coffer keys reencrypt

        Rotating the master key:
          coffer keys new-master-key --out /etc/coffer/keys/master-2027.key
          # set vault.master_key_file to it, vault.previous_master_key_file to the old one, restart
          coffer keys rewrap
          # remove vault.previous_master_key_file, restart, destroy the old key

        Examples:
  coffer keys status --config /etc/coffer/coffer.toml"
    )]
    Keys(keys::Keys),
    /// Create the database schema or bring it up to date.
    #[command(after_help = "Examples:\n  \
        coffer migrate                                   # SQLite under ./coffer-data\n  \
        coffer migrate --db postgres://coffer@127.0.0.1/coffer\n  \
        COFFER_DATABASE_URL_FILE=/run/secrets/db-url coffer migrate\n  \
        coffer migrate --config /etc/coffer/coffer.toml")]
    Migrate {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Prove the ledger from its stored rows: balanced per currency, balances
    /// equal to the sum of entries, constraints held, holds consistent, journal chain intact;
    /// and the audit log's hash chain intact.
    #[command(
        after_help = "Exits 0 when everything checks out, 1 (naming each account or transfer, or the first\n\
        broken audit record's seq) when not.\n\
        Shows a progress bar on a terminal.\n\n\
        Examples:\n  \
        coffer verify                                    # SQLite under ./coffer-data\n  \
        coffer verify --db sqlite://backup/coffer.db\n  \
        coffer verify --db postgres://coffer@127.0.0.1/coffer\n  \
        coffer verify --config /etc/coffer/coffer.toml"
    )]
    Verify {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Reconcile a connector's settlement report against the funding
    /// records and the ledger; lists every break.
    #[command(
        after_help = "Exits 0 when everything matches, 1 when there are breaks (missing_in_ledger,\n\
        missing_at_connector, amount_mismatch, stuck_pending), each printed on a line.\n\
        The built-in simulators keep their books in the database, so their report is read from there.\n\n\
        Examples:\n  \
        coffer reconcile --connector card_network                       # the last 24 hours\n  \
        coffer reconcile --connector core_banking --from 2026-11-24T16:00:00Z --until 2026-11-25T16:00:00Z"
    )]
    Reconcile {
        /// card_network or core_banking.
        #[arg(long)]
        connector: String,
        /// Start of the window of submissions, RFC 3339 [default: 24 hours before --until].
        #[arg(long)]
        from: Option<String>,
        /// End of the window, exclusive, RFC 3339 [default: now].
        #[arg(long)]
        until: Option<String>,
        /// Pending operations older than this many minutes are breaks.
        #[arg(long, default_value_t = 60)]
        stuck_after_minutes: i64,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Merchants' daily settlement: run it for a day that has ended, or list
    /// the latest settlements.
    #[command(
        after_help = "`coffer serve` settles every ended day by itself, and staff can run it with\n\
        POST /v1/staff/settlements while the service runs. This command moves money through its own\n\
        ledger writer, so it refuses (exit 2) while a `coffer serve` holds the database's ledger-writer lease.\n\
        Idempotent per merchant and day. Exits 1 when a merchant's settlement could not run.\n\n\
        Examples:\n  \
        coffer settle --list\n  \
        coffer settle --date 2026-11-24 --config /etc/coffer/coffer.toml"
    )]
    Settle {
        /// The day, YYYY-MM-DD in the bank's time zone [default: yesterday].
        #[arg(long)]
        date: Option<String>,
        /// List the latest settlements (read only; safe while the service runs).
        #[arg(long)]
        list: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Compliance: regulatory reports (large-value and suspicious transactions).
    #[command(
        subcommand,
        after_help = "Examples:\n  coffer compliance reports                          # yesterday\n  coffer compliance reports --date 2026-11-24 --export csv > reports-2026-11-24.csv"
    )]
    Compliance(ComplianceCommand),
    /// Inspect the configuration.
    #[command(
        subcommand,
        after_help = "Examples:\n  coffer config check --config /etc/coffer/coffer.toml"
    )]
    Config(ConfigCommand),
    /// Benchmarks.
    #[command(
        subcommand,
        after_help = "Examples:\n  coffer bench ledger --transfers 100000"
    )]
    Bench(Bench),
}

/// The configuration file and database flags of every command that opens the
/// database; the flags are the top configuration layer.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML configuration file [env: COFFER_CONFIG] (see docs/coffer.example.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (database.url)
    /// [env: COFFER_DATABASE_URL, or COFFER_DATABASE_URL_FILE naming a file]
    /// [default: SQLite in the data directory].
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    /// Where the embedded database lives (database.data_dir) [env: COFFER_DATA_DIR]
    /// [default: coffer-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
}

impl ConfigArgs {
    pub fn flags(&self) -> Flags {
        Flags {
            config: self.config.clone(),
            database_url: self.db.clone(),
            data_dir: self.data_dir.clone(),
            ..Flags::default()
        }
    }
}

#[derive(Debug, Subcommand)]
enum ComplianceCommand {
    /// Run the report rules over a day that has ended and print what they found;
    /// idempotent (a rerun adds nothing). Safe while `coffer serve` runs (it moves no money).
    #[command(
        after_help = "Prints one line per report of the day (new or already there); with --export, the day's\n\
        reports as CSV or JSON on stdout instead (the same fields as GET /v1/staff/compliance/report-exports).\n\n\
        Examples:\n  coffer compliance reports --date 2026-11-24\n  coffer compliance reports --date 2026-11-24 --export json --config /etc/coffer/coffer.toml"
    )]
    Reports {
        /// The day, YYYY-MM-DD in the bank's time zone [default: yesterday].
        #[arg(long)]
        date: Option<String>,
        /// csv or json: print the day's reports in this format.
        #[arg(long)]
        export: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
enum Apikey {
    /// Create a key; prints it once (only its hash is stored).
    #[command(
        after_help = "Examples:\n  coffer apikey create --name payments-core --scopes ledger:read,ledger:write\n  coffer apikey create --name reporting --scopes ledger:read --config /etc/coffer/coffer.toml"
    )]
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: ledger:read, ledger:write
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
enum Staff {
    /// Create a staff user; prints the initial password and the authenticator
    /// seed once (both are stored only hashed or encrypted).
    #[command(
        after_help = "Roles: support, risk_analyst, compliance_officer, product_manager, administrator.\n\nExamples:\n  coffer staff create --username li.ming --name \"Li Ming\" --roles support,risk_analyst"
    )]
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        name: String,
        /// Comma-separated roles.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check the configuration and print it, with where each value came from.
    ///
    /// Prints the effective configuration as TOML, secrets redacted, each value
    /// followed by its origin. Exits 2, naming the key, if it is invalid.
    #[command(after_help = "Examples:\n  \
        coffer config check                                     # defaults and COFFER_… variables\n  \
        coffer config check --config /etc/coffer/coffer.toml\n  \
        COFFER_CONFIG=/etc/coffer/coffer.toml COFFER_LISTEN=0.0.0.0:8443 coffer config check")]
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// The ledger engine under concurrent clients, against the naive baseline.
    Ledger(bench_ledger::BenchLedger),
    /// A server over HTTP: N connections of transfers and balance reads.
    Http(bench_http::BenchHttp),
    /// The time a risk evaluation adds to a payment (signals from the database + rules).
    Risk(bench_risk::BenchRisk),
    /// Load for the crash test (kill it at will; see tests/crash.rs).
    #[command(
        hide = true,
        after_help = "Examples:\n  coffer bench crash-load --db sqlite://crash.db --ack-log acks.log"
    )]
    CrashLoad(crash_load::CrashLoad),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Env::from_process();
    let result = match cli.command {
        Top::Serve(args) => {
            let flags = args.flags();
            configured(&flags, &env, |config| {
                serve::run(args, config).map(|()| ExitCode::SUCCESS)
            })
        }
        Top::Staff(Staff::Create {
            username,
            name,
            roles,
            config,
        }) => configured(&config.flags(), &env, |config| {
            create_staff(&username, &name, &roles, &config)
        }),
        Top::Keys(command) => match command.config() {
            Some(config) => {
                configured(&config.flags(), &env, |config| keys::run(&command, &config))
            }
            None => match &command {
                keys::Keys::NewMasterKey { out } => keys::new_master_key(out),
                _ => Ok(ExitCode::SUCCESS),
            },
        },
        Top::Migrate { config } => configured(&config.flags(), &env, migrate),
        Top::Verify { config } => configured(&config.flags(), &env, verify),
        Top::Reconcile {
            connector,
            from,
            until,
            stuck_after_minutes,
            config,
        } => configured(&config.flags(), &env, |config| {
            reconcile(
                &connector,
                from.as_deref(),
                until.as_deref(),
                stuck_after_minutes,
                &config,
            )
        }),
        Top::Settle { date, list, config } => configured(&config.flags(), &env, |config| {
            settle(date.as_deref(), list, &config)
        }),
        Top::Apikey(Apikey::Create {
            name,
            scopes,
            config,
        }) => configured(&config.flags(), &env, |config| {
            create_api_key(&name, scopes, &config)
        }),
        Top::Compliance(ComplianceCommand::Reports {
            date,
            export,
            config,
        }) => configured(&config.flags(), &env, |config| {
            compliance_reports(date.as_deref(), export.as_deref(), &config)
        }),
        Top::Config(ConfigCommand::Check { config }) => match config::load(&config.flags(), &env) {
            Ok(config) => {
                print!("{}", config::render(&config));
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => Ok(config_error(&error)),
        },
        Top::Bench(Bench::Ledger(args)) => {
            init_logging(None);
            bench_ledger::run(args).map(|()| ExitCode::SUCCESS)
        }
        Top::Bench(Bench::Http(args)) => {
            init_logging(None);
            bench_http::run(args).map(|()| ExitCode::SUCCESS)
        }
        Top::Bench(Bench::Risk(args)) => {
            init_logging(None);
            bench_risk::run(args).map(|()| ExitCode::SUCCESS)
        }
        Top::Bench(Bench::CrashLoad(args)) => {
            init_logging(None);
            crash_load::run(args).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Loads and checks the configuration, starts logging by it, then runs the
/// command. A bad configuration stops here, before anything is opened.
fn configured(
    flags: &Flags,
    env: &Env,
    command: impl FnOnce(Config) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let config = match config::load(flags, env) {
        Ok(config) => config,
        Err(error) => return Ok(config_error(&error)),
    };
    init_logging(Some(&config.log));
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    command(config)
}

fn config_error(error: &config::ConfigError) -> ExitCode {
    eprintln!("config error: {error}");
    ExitCode::from(EXIT_CONFIG_ERROR)
}

/// Logs to stderr by the configuration; benchmarks, which take none, by
/// `COFFER_LOG` with warnings only by default.
fn init_logging(log: Option<&config::LogConfig>) {
    use tracing_subscriber::EnvFilter;
    let (filter, json) = match log {
        Some(log) => (
            EnvFilter::try_new(&log.filter.value).ok(),
            log.format.value == LogFormat::Json,
        ),
        None => (EnvFilter::try_from_env(config::LOG_FILTER.env).ok(), false),
    };
    // The configured filter was checked at load; the fallback only keeps this panic-free.
    let filter = filter.unwrap_or_else(|| EnvFilter::new("warn"));
    // No colour codes in files and journals, only on a terminal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    let database = &config.database.url.value;
    let version = database.migrate()?;
    println!("{}: schema at version {version}", database.redacted());
    Ok(ExitCode::SUCCESS)
}

fn verify(config: Config) -> anyhow::Result<ExitCode> {
    let database = &config.database.url.value;
    if let coffer_store::Database::Sqlite(path) = database {
        if !path.exists() {
            anyhow::bail!("{}: no such database", database.redacted());
        }
    }
    // Commits the tables have not caught up with (the process stopped before
    // projecting them) are in the batch log: apply them first, so what is
    // verified is everything that was acknowledged.
    database.recover()?;
    let reader = database.open_reader(1)?;
    let (accounts, transfers) = reader.counts()?;
    let bar = progress::bar(transfers, "verifying transfers");
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
    let ledger_clean = report.is_clean();
    if ledger_clean {
        println!("OK: the ledger balances, every balance equals its entries, every constraint holds, the journal chain is intact");
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
    }
    let audit_intact = verify_audit_log(database)?;
    Ok(if ledger_clean && audit_intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn reconcile(
    connector: &str,
    from: Option<&str>,
    until: Option<&str>,
    stuck_after_minutes: i64,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    use coffer_core::Timestamp;
    use coffer_payments::{CardNetwork, ConnectorKind, CoreBanking};
    const MINUTE_NANOS: i64 = 60 * 1_000_000_000;
    let kind = ConnectorKind::parse(connector)
        .ok_or_else(|| anyhow::anyhow!("--connector: card_network or core_banking"))?;
    let time = |flag: &str, text: Option<&str>, default: i64| -> anyhow::Result<i64> {
        match text {
            None => Ok(default),
            Some(text) => Timestamp::parse_rfc3339(text)
                .map(Timestamp::as_nanos)
                .ok_or_else(|| anyhow::anyhow!("{flag}: not an RFC 3339 time: {text}")),
        }
    };
    let clock = coffer_app::system_clock();
    let now = clock.now().as_nanos();
    let until = time("--until", until, now)?;
    let from = time("--from", from, until.saturating_sub(24 * 60 * MINUTE_NANOS))?;
    let database = &config.database.url.value;
    let sql = std::sync::Arc::new(coffer_store::sql::SqlStore::open(database, 1)?);
    let reader = database.open_reader(1)?;
    // The simulators keep their books in this database; a real connector's
    // report would come through its own implementation of the trait.
    let simulator = coffer_payments::Simulator::new(
        kind,
        sql.clone(),
        clock,
        coffer_payments::WebhookSecret::generate(),
        coffer_payments::SimulatorSettings::default(),
    );
    let lines = match kind {
        ConnectorKind::CardNetwork => CardNetwork::settlement_report(&simulator, from, until)?,
        ConnectorKind::CoreBanking => CoreBanking::settlement_report(&simulator, from, until)?,
    };
    let report = coffer_payments::reconcile::reconcile(
        &sql,
        reader.as_ref(),
        kind,
        &lines,
        (from, until),
        now.saturating_sub(stuck_after_minutes.saturating_mul(MINUTE_NANOS)),
    )?;
    println!(
        "reconciled {} from {} until {}: {} report lines, {} matched, {} breaks",
        kind.as_str(),
        Timestamp::from_nanos(from).to_rfc3339(),
        Timestamp::from_nanos(until).to_rfc3339(),
        report.report_lines,
        report.matched,
        report.breaks.len()
    );
    for b in &report.breaks {
        println!(
            "  - {} funding={} reference={} ours={} theirs={}: {}",
            b.kind.as_str(),
            b.funding_id.as_deref().unwrap_or("-"),
            b.connector_reference.as_deref().unwrap_or("-"),
            b.ours.map_or("-".into(), |a| a.to_string()),
            b.theirs.map_or("-".into(), |a| a.to_string()),
            b.detail
        );
    }
    Ok(if report.breaks.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `coffer compliance reports`: opens the domain services only (no ledger
/// writer), so it can run beside the service.
fn compliance_reports(
    date: Option<&str>,
    export: Option<&str>,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    use coffer_compliance::{Compliance, ExportFormat, LocalDate};
    use std::sync::Arc;
    let format = match export {
        None => None,
        Some("csv") => Some(ExportFormat::Csv),
        Some("json") => Some(ExportFormat::Json),
        Some(_) => anyhow::bail!("--export: csv or json"),
    };
    let database = config.database.url.value.clone();
    let clock = coffer_app::system_clock();
    database.migrate()?;
    let customers = coffer_api::CustomerServices::open_with(
        &database,
        clock.clone(),
        config.vault.key_provider()?,
        Vec::new(),
        coffer_identity::Policy::default(),
        coffer_identity::PasswordPolicy::new(None),
        &config.passkeys.settings(),
    )
    .map_err(anyhow::Error::msg)?;
    let settings = config.compliance.report_settings();
    let offset = settings.day_utc_offset_seconds;
    let compliance = Compliance::new(
        customers.sql.clone(),
        customers.vault.clone(),
        clock.clone(),
        customers.identity.clone(),
        customers.screener.clone(),
        Arc::new(coffer_core::CurrencyRegistry::default()),
        settings,
    );
    let date = match date {
        None => LocalDate::from_days(LocalDate::of(clock.now().as_nanos(), offset).days() - 1),
        Some(text) => {
            LocalDate::parse(text).ok_or_else(|| anyhow::anyhow!("--date: a day as YYYY-MM-DD"))?
        }
    };
    let context = coffer_identity::Context {
        ip: "cli".into(),
        device: "coffer compliance reports".into(),
    };
    let run = compliance
        .generate(coffer_audit::ACTOR_SYSTEM, date, &context)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(format) = format {
        let text = compliance
            .export(coffer_audit::ACTOR_SYSTEM, date, None, format, &context)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{date}: {} payments read, {} new reports, {} already there",
        run.movements, run.created, run.already_there
    );
    for report in &run.reports {
        println!(
            "{} {} {} {} {} {} {} in {} payments ({})",
            report.id,
            report.kind.as_str(),
            report.rule,
            report.customer_id,
            report.direction,
            report.total_amount,
            report.currency,
            report.transaction_count,
            report.state.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn settle(date: Option<&str>, list: bool, config: &Config) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    let database = config.database.url.value.clone();
    let clock = coffer_app::system_clock();
    database.migrate()?;
    // Settling runs a ledger writer: never beside a `coffer serve` on the
    // same database (listing only reads).
    let lease = if list {
        None
    } else {
        let sql = Arc::new(coffer_store::sql::SqlStore::open(&database, 1)?);
        match lease::Lease::acquire(sql, &lease::holder("settle")) {
            Ok(lease) => Some(lease),
            Err(error) => {
                eprintln!("coffer settle: not run: {error} (a running `coffer serve` settles by itself; staff can also POST /v1/staff/settlements)");
                return Ok(ExitCode::from(2));
            }
        }
    };
    let engine = Arc::new(coffer_app::Engine::start(&database, clock.clone())?);
    let reader = database.open_reader(1)?;
    let service: Arc<dyn coffer_store::service::ServiceStore> =
        Arc::from(coffer_store::service::open(&database, 1)?);
    let customers = coffer_api::CustomerServices::open_with(
        &database,
        clock.clone(),
        config.vault.key_provider()?,
        Vec::new(),
        coffer_identity::Policy::default(),
        coffer_identity::PasswordPolicy::new(None),
        &config.passkeys.settings(),
    )
    .map_err(anyhow::Error::msg)?;
    let state = coffer_api::AppState::new(
        engine.clone(),
        reader,
        service,
        Arc::new(coffer_core::CurrencyRegistry::default()),
        clock.clone(),
        &customers,
    );
    let merchants = state.merchants.clone();
    let print = |view: &coffer_payments::SettlementView| {
        let payout = merchants
            .settlement_payout(view)
            .ok()
            .flatten()
            .map_or("-", |f| f.state.as_str());
        println!(
            "{} {} {}: gross {} refunds {} fee {} ({} bps) net {} {} - {} (payout {payout})",
            coffer_payments::settlement::date_of_day(view.day),
            view.merchant_id,
            view.id,
            view.gross,
            view.refunds,
            view.fee,
            view.discount_rate_bps,
            view.net,
            view.currency,
            view.status
        );
    };
    let mut failed = false;
    if list {
        for view in merchants.settlements(None, coffer_payments::merchants::MERCHANT_PAGE_MAX)? {
            print(&view);
        }
    } else {
        let today = merchants.day_of(clock.now().as_nanos());
        let day = match date {
            None => today - 1,
            Some(text) => coffer_payments::settlement::day_of_date(text)
                .filter(|day| *day < today)
                .ok_or_else(|| anyhow::anyhow!("--date: a day that has ended, as YYYY-MM-DD"))?,
        };
        state.funding.open_accounts()?;
        for result in merchants.settle_all(day)? {
            match result {
                Ok(view) => print(&view),
                Err((merchant_id, error)) => {
                    failed = true;
                    println!("{merchant_id}: not settled: {error}");
                }
            }
        }
    }
    engine.shutdown();
    if let Some(lease) = lease {
        lease.release()?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Recomputes the audit log's hash chain; prints the result and returns
/// whether it is intact.
fn verify_audit_log(database: &coffer_store::Database) -> anyhow::Result<bool> {
    let sql = coffer_store::sql::SqlStore::open(database, 1)?;
    let total = sql.run(|db| Ok(coffer_audit::head_seq(db)))??;
    let bar = progress::bar(u64::try_from(total).unwrap_or(0), "verifying the audit log");
    let report =
        sql.run(|db| Ok(coffer_audit::verify(db, &mut |seen| bar.set_position(seen))))??;
    bar.finish_and_clear();
    println!("audit log: {} records", report.entries);
    match &report.broken {
        None => {
            println!("OK: the audit log's hash chain is intact");
            Ok(true)
        }
        Some(broken) => {
            println!(
                "FAILED: the audit log's hash chain is broken at seq {}: {}",
                broken.seq, broken.problem
            );
            Ok(false)
        }
    }
}

fn create_api_key(name: &str, scopes: Vec<String>, config: &Config) -> anyhow::Result<ExitCode> {
    for scope in &scopes {
        // A partner (a third party a customer may let read their data) is
        // a key with the scope `partner:<id>`.
        let partner = scope
            .strip_prefix(coffer_privacy::PARTNER_SCOPE_PREFIX)
            .is_some_and(coffer_privacy::valid_partner_id);
        if !partner && !coffer_api::auth::SCOPES.contains(&scope.as_str()) {
            anyhow::bail!(
                "--scopes: unknown scope {scope:?} (known: {}, partner:<id>)",
                coffer_api::auth::SCOPES.join(", ")
            );
        }
    }
    let service = coffer_store::service::open(&config.database.url.value, 1)?;
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

fn create_staff(
    username: &str,
    name: &str,
    roles: &[String],
    config: &Config,
) -> anyhow::Result<ExitCode> {
    let mut parsed = Vec::new();
    for role in roles {
        parsed.push(coffer_identity::Role::parse(role).ok_or_else(|| {
            anyhow::anyhow!(
                "--roles: unknown role {role:?} (known: support, risk_analyst, compliance_officer, product_manager, administrator)"
            )
        })?);
    }
    let database = &config.database.url.value;
    let master_key = config.vault.key_provider()?;
    let clock = coffer_app::system_clock();
    let customers = coffer_api::CustomerServices::open(
        database,
        clock,
        master_key,
        Vec::new(),
        coffer_identity::Policy::default(),
        coffer_identity::PasswordPolicy::new(None),
    )
    .map_err(anyhow::Error::msg)?;
    let context = coffer_identity::Context {
        ip: "cli".into(),
        device: "coffer staff create".into(),
    };
    let created = customers
        .identity
        .create_staff(username, name, &parsed, &context)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "Staff user {username} ({}) created with roles {}. Shown once:",
        created.staff_id,
        roles.join(",")
    );
    println!("  initial password:     {}", created.password.expose());
    println!("  authenticator seed:   {}", created.totp_base32.expose());
    println!("  authenticator URL:    {}", created.otpauth_url.expose());
    Ok(ExitCode::SUCCESS)
}
