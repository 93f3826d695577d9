//! `coffer bench ledger`: drives the engine with concurrent clients and, in
//! the same run, the naive one-transaction-per-transfer baseline, then prints
//! throughput, commit latency percentiles, peak memory and the ratios.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use coffer_app::Engine;
use coffer_core::{Amount, Code, Currency, Identifier};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, Metadata, Outcome, TransferCommand,
    TransferOp,
};
use coffer_store::naive::{self, NaiveClient};
use coffer_store::throwaway::PgCluster;
use coffer_store::Database;
use indicatif::ProgressBar;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::progress::bar;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    coffer bench ledger                              # SQLite, every shape, naive baseline\n  \
    coffer bench ledger --backend postgres           # a throwaway PostgreSQL cluster\n  \
    coffer bench ledger --db postgres://u@h/scratch  # an existing server (creates two databases)\n  \
    coffer bench ledger --shape single --accounts 1000000   # peak memory with 1M accounts")]
pub struct BenchLedger {
    /// sqlite or postgres; postgres without --db starts a throwaway cluster.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// A PostgreSQL server to use instead (the bench creates and drops its own databases there).
    #[arg(long)]
    db: Option<String>,
    /// Where SQLite bench files go (removed afterwards).
    #[arg(long, default_value = "coffer-data/bench")]
    dir: PathBuf,
    /// Customer accounts.
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Hot accounts for the hot shape: every transfer credits one of them.
    #[arg(long, default_value_t = 10)]
    hot_accounts: usize,
    /// Transfers per engine measurement.
    #[arg(long, default_value_t = 200_000)]
    transfers: usize,
    /// Single-transfer clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Batch-submitting clients and their batch size.
    #[arg(long, default_value_t = 4)]
    batch_clients: usize,
    #[arg(long, default_value_t = 2_000)]
    batch_size: usize,
    /// Transfers for the naive baseline (it is slow).
    #[arg(long, default_value_t = 20_000)]
    naive_transfers: usize,
    /// all, batched, single, hot, naive, latency
    #[arg(long, default_value = "all")]
    shape: String,
}

const FUNDING: i64 = 1_000_000_000_000;

struct Measured {
    name: String,
    transfers: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    /// How long the tables took after the last acknowledgement to catch up
    /// with the batch log (acknowledged = durable in the log).
    catch_up: Option<Duration>,
}

impl Measured {
    fn rate(&self) -> f64 {
        // Reporting only: a throughput figure, never an amount.
        #[allow(clippy::float_arithmetic)]
        let rate = self.transfers as f64 / self.elapsed.as_secs_f64().max(1e-9);
        rate
    }

    fn percentile(&self, per_mille: usize) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let index = (self.latencies_us.len() * per_mille / 1000).min(self.latencies_us.len() - 1);
        self.latencies_us[index]
    }

    fn print(&self) {
        println!(
            "{:<44} {:>10.0} transfers/s  p50 {:>7} µs  p99 {:>7} µs  p99.9 {:>7} µs  ({} transfers in {:.2} s)",
            self.name,
            self.rate(),
            self.percentile(500),
            self.percentile(990),
            self.percentile(999),
            self.transfers,
            self.elapsed.as_secs_f64()
        );
        if let Some(catch_up) = self.catch_up {
            // Reporting only.
            #[allow(clippy::float_arithmetic)]
            let sustained =
                self.transfers as f64 / (self.elapsed + catch_up).as_secs_f64().max(1e-9);
            println!(
                "{:<44} {:>10.0} transfers/s  including projection into the tables (caught up {:.2} s after the last commit)",
                "",
                sustained,
                catch_up.as_secs_f64()
            );
        }
    }
}

/// Waits for the tables to catch up with the log and notes how long it took,
/// so the next shape starts from a quiet ledger and the sustained rate is known.
fn caught_up(database: &Database, mut measured: Measured) -> anyhow::Result<Measured> {
    let started = Instant::now();
    database.wait_projected(Duration::from_secs(600))?;
    measured.catch_up = Some(started.elapsed());
    Ok(measured)
}

fn cny() -> Currency {
    Currency::parse("CNY").unwrap_or_else(|_| unreachable!())
}

fn ident(text: String) -> Identifier {
    Identifier::parse(&text).unwrap_or_else(|e| unreachable!("bench id {text}: {e}"))
}

/// A benchmark database: a file under `dir`, or a database in a cluster.
pub(crate) struct Target {
    pub(crate) database: Database,
    cleanup: Option<Box<dyn FnOnce()>>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
    }
}

pub(crate) enum Server {
    Sqlite(PathBuf),
    Postgres {
        admin: String,
        _cluster: Option<PgCluster>,
    },
}

impl Server {
    pub(crate) fn target(&self, name: &str) -> anyhow::Result<Target> {
        match self {
            Server::Sqlite(dir) => {
                std::fs::create_dir_all(dir)?;
                let path = dir.join(format!("{name}.db"));
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                let cleanup_path = path.clone();
                Ok(Target {
                    database: Database::Sqlite(path),
                    cleanup: Some(Box::new(move || {
                        for suffix in [
                            "",
                            "-wal",
                            "-shm",
                            ".ledger-log",
                            ".ledger-log-wal",
                            ".ledger-log-shm",
                        ] {
                            let _ =
                                std::fs::remove_file(format!("{}{suffix}", cleanup_path.display()));
                        }
                    })),
                })
            }
            Server::Postgres { admin, .. } => {
                let database = format!("coffer_bench_{name}");
                let mut client = postgres::Client::connect(admin, postgres::NoTls)
                    .context("connect to PostgreSQL")?;
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {database}"))?;
                client.batch_execute(&format!("CREATE DATABASE {database}"))?;
                let url = replace_database(admin, &database);
                let admin = admin.clone();
                Ok(Target {
                    database: Database::Postgres(url),
                    cleanup: Some(Box::new(move || {
                        if let Ok(mut client) = postgres::Client::connect(&admin, postgres::NoTls) {
                            let _ = client.batch_execute(&format!(
                                "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                            ));
                        }
                    })),
                })
            }
        }
    }
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

pub fn run(args: BenchLedger) -> anyhow::Result<()> {
    let shapes: Vec<&str> = match args.shape.as_str() {
        "all" => vec!["batched", "single", "hot", "naive", "latency"],
        other => other.split(',').collect(),
    };
    for shape in &shapes {
        if !["batched", "single", "hot", "naive", "latency"].contains(shape) {
            bail!("--shape: unknown shape {shape:?} (all, batched, single, hot, naive, latency)");
        }
    }
    let server = match (args.backend.as_str(), &args.db) {
        ("sqlite", None) => Server::Sqlite(args.dir.clone()),
        ("postgres", Some(url)) | ("sqlite", Some(url)) if url.starts_with("postgres") => {
            Server::Postgres {
                admin: url.clone(),
                _cluster: None,
            }
        }
        ("postgres", None) => {
            eprintln!("starting a throwaway PostgreSQL cluster (initdb + pg_ctl, fsync on)…");
            let cluster = PgCluster::start().context("start PostgreSQL")?;
            Server::Postgres {
                admin: cluster.url(),
                _cluster: Some(cluster),
            }
        }
        (backend, _) => bail!("--backend: expected sqlite or postgres, got {backend:?}"),
    };
    let backend = match server {
        Server::Sqlite(_) => "sqlite",
        Server::Postgres { .. } => "postgres",
    };
    println!(
        "coffer bench ledger: backend {backend}, {} accounts, {} hot, {} cores, every commit durable",
        args.accounts,
        args.hot_accounts,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut results: Vec<Measured> = Vec::new();
    let mut single_rate = None;
    if shapes
        .iter()
        .any(|s| ["batched", "single", "hot", "latency"].contains(s))
    {
        let target = server.target("engine")?;
        let engine = Arc::new(Engine::start(&target.database, coffer_app::system_clock())?);
        setup_engine(&engine, args.accounts.max(args.hot_accounts).max(2))?;
        if shapes.contains(&"batched") {
            let measured = caught_up(&target.database, run_batched(&engine, &args, "batched")?)?;
            measured.print();
            results.push(measured);
        }
        if shapes.contains(&"single") || shapes.contains(&"latency") {
            let measured = caught_up(
                &target.database,
                run_single(&engine, &args, Workload::Uniform, None, "single")?,
            )?;
            measured.print();
            single_rate = Some(measured.rate());
            results.push(measured);
        }
        if shapes.contains(&"hot") {
            let measured = run_single(
                &engine,
                &args,
                Workload::Hot(args.hot_accounts.max(1)),
                None,
                "hot",
            )?;
            measured.print();
            results.push(measured);
        }
        if shapes.contains(&"latency") {
            if let Some(rate) = single_rate {
                #[allow(clippy::float_arithmetic)]
                let half = (rate / 2.0) as u64;
                let measured = run_single(
                    &engine,
                    &args,
                    Workload::Uniform,
                    Some(half.max(1)),
                    "latency",
                )?;
                measured.print();
                results.push(measured);
            }
        }
        engine.shutdown();
        let stats = engine.stats();
        let batches = stats.batches.load(Ordering::Relaxed).max(1);
        let (_, commit_us, commits) = stats.commit_latency_us.snapshot();
        println!(
            "engine: {} batches, {} requests, {} events, mean {} events/batch, mean commit {} µs",
            batches,
            stats.requests.load(Ordering::Relaxed),
            stats.events.load(Ordering::Relaxed),
            stats.events.load(Ordering::Relaxed) / batches,
            commit_us / commits.max(1)
        );
        // What a restart costs with this many transfers stored: opening the
        // writer reads every transfer id into the duplicate-id filter.
        let (_, stored) = target.database.open_reader(1)?.counts()?;
        let started = Instant::now();
        let reopened = Engine::start(&target.database, coffer_app::system_clock())?;
        let reopen = started.elapsed();
        reopened.shutdown();
        println!(
            "restart: engine open in {} ms with {stored} transfers stored",
            reopen.as_millis()
        );
    }
    if shapes.contains(&"naive") {
        let target = server.target("naive")?;
        let measured = run_naive(&target.database, &args)?;
        measured.print();
        results.push(measured);
    }
    summarize(&results, backend, &args);
    Ok(())
}

fn summarize(results: &[Measured], backend: &str, args: &BenchLedger) {
    let find = |prefix: &str| results.iter().find(|m| m.name.starts_with(prefix));
    println!();
    if let (Some(single), Some(naive)) = (find("single"), find("naive")) {
        #[allow(clippy::float_arithmetic)]
        let ratio = single.rate() / naive.rate().max(1e-9);
        println!("group commit vs naive (64 single-transfer clients): {ratio:.1}×");
    }
    if let (Some(single), Some(hot)) = (find("single"), find("hot")) {
        #[allow(clippy::float_arithmetic)]
        let ratio = hot.rate() / single.rate().max(1e-9);
        println!("hot accounts vs uniform: {ratio:.2}× of the uniform throughput");
    }
    println!("peak RSS: {} MiB", peak_rss_kib() / 1024);
    let db = args.db.as_ref().map(|_| " --db URL").unwrap_or("");
    println!(
        "reproduce: cargo run --release -p coffer-cli -- bench ledger --backend {backend}{db} --accounts {} --hot-accounts {} --transfers {} --clients {} --batch-clients {} --batch-size {} --naive-transfers {} --shape {}",
        args.accounts, args.hot_accounts, args.transfers, args.clients, args.batch_clients, args.batch_size, args.naive_transfers, args.shape
    );
}

/// VmHWM: the process's peak resident memory, in KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn setup_engine(engine: &Engine, accounts: usize) -> anyhow::Result<()> {
    let bar = bar(accounts as u64 * 2, "opening and funding accounts");
    let owner = ident("bench".into());
    let open = |spec: AccountSpec| -> anyhow::Result<()> {
        match engine.execute_blocking(Command::OpenAccount(spec))? {
            Outcome::Account(Ok(_)) => Ok(()),
            other => bail!("open failed: {other:?}"),
        }
    };
    open(AccountSpec {
        id: ident("bank".into()),
        currency: cny(),
        kind: AccountKind::Asset,
        constraint: BalanceConstraint::None,
        owner: owner.clone(),
    })?;
    // Accounts open one command each, submitted from several threads so they group.
    let chunk = 8_000;
    for start in (0..accounts).step_by(chunk) {
        let end = (start + chunk).min(accounts);
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let owner = owner.clone();
                    scope.spawn(move || -> anyhow::Result<()> {
                        for i in (start + t..end).step_by(4) {
                            match engine.execute_blocking(Command::OpenAccount(AccountSpec {
                                id: account(i),
                                currency: cny(),
                                kind: AccountKind::Liability,
                                constraint: BalanceConstraint::NoOverdraft,
                                owner: owner.clone(),
                            }))? {
                                Outcome::Account(Ok(_)) => {}
                                other => bail!("open failed: {other:?}"),
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            for handle in handles {
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("setup thread panicked"))??;
            }
            Ok(())
        })?;
        bar.inc((end - start) as u64);
        let funding = (start..end)
            .map(|i| TransferCommand {
                id: ident(format!("fund-{i}")),
                op: TransferOp::Post {
                    debit: ident("bank".into()),
                    credit: account(i),
                    amount: amount(FUNDING),
                    currency: cny(),
                },
                code: code(),
                metadata: Metadata::default(),
            })
            .collect();
        check(engine.execute_blocking(Command::Transfers {
            transfers: funding,
            linked: false,
        })?)?;
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

fn account(i: usize) -> Identifier {
    ident(format!("acct-{i}"))
}

fn amount(minor: i64) -> Amount {
    Amount::new(minor).unwrap_or_else(|_| unreachable!())
}

fn code() -> Code {
    Code::parse("bench").unwrap_or_else(|_| unreachable!())
}

fn check(outcome: Outcome) -> anyhow::Result<usize> {
    match outcome {
        Outcome::Transfers(results) => {
            if let Some(Err(rejection)) = results.iter().find(|r| r.is_err()) {
                bail!("a bench transfer was refused: {}", rejection.code());
            }
            Ok(results.len())
        }
        Outcome::Account(_) => bail!("unexpected outcome"),
    }
}

#[derive(Clone, Copy)]
enum Workload {
    Uniform,
    /// Every transfer credits one of this many hot accounts.
    Hot(usize),
}

static RUN: AtomicU64 = AtomicU64::new(0);

fn next_transfer(
    rng: &mut SmallRng,
    accounts: usize,
    workload: Workload,
    id: String,
) -> TransferCommand {
    let (debit, credit) = match workload {
        Workload::Uniform => uniform_pair(rng, accounts),
        Workload::Hot(hot) => {
            let credit = rng.random_range(0..hot);
            let debit = hot + rng.random_range(0..accounts - hot);
            (debit, credit)
        }
    };
    TransferCommand {
        id: ident(id),
        op: TransferOp::Post {
            debit: account(debit),
            credit: account(credit),
            amount: amount(rng.random_range(1..=10_000)),
            currency: cny(),
        },
        code: code(),
        metadata: Metadata::default(),
    }
}

fn run_batched(engine: &Arc<Engine>, args: &BenchLedger, name: &str) -> anyhow::Result<Measured> {
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let clients = args.batch_clients.max(1);
    let per_client = args.transfers / clients;
    let batches = per_client.div_ceil(args.batch_size.max(1));
    let bar = bar((batches * clients * args.batch_size) as u64, name);
    let accounts = args.accounts.max(2);
    let (latencies, elapsed) = drive(clients, &bar, |c, bar| -> anyhow::Result<Vec<u32>> {
        let mut rng = SmallRng::seed_from_u64(run * 1000 + c as u64);
        let mut latencies = Vec::with_capacity(batches);
        for b in 0..batches {
            let transfers = (0..args.batch_size)
                .map(|i| {
                    next_transfer(
                        &mut rng,
                        accounts,
                        Workload::Uniform,
                        format!("r{run}-c{c}-b{b}-{i}"),
                    )
                })
                .collect();
            let sent = Instant::now();
            let count = check(engine.execute_blocking(Command::Transfers {
                transfers,
                linked: false,
            })?)?;
            latencies.push(micros(sent.elapsed()));
            bar.inc(count as u64);
        }
        Ok(latencies)
    })?;
    Ok(Measured {
        name: format!(
            "batched: {clients} clients × {} per request",
            args.batch_size
        ),
        transfers: (batches * clients * args.batch_size) as u64,
        elapsed,
        latencies_us: latencies,
        catch_up: None,
    })
}

/// Runs `client(c)` on `clients` threads at once; returns every request's
/// latency (sorted) and the wall time of the whole run.
fn drive(
    clients: usize,
    bar: &ProgressBar,
    client: impl Fn(usize, &ProgressBar) -> anyhow::Result<Vec<u32>> + Sync,
) -> anyhow::Result<(Vec<u32>, Duration)> {
    let started = Instant::now();
    let mut latencies = std::thread::scope(|scope| -> anyhow::Result<Vec<u32>> {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let client = &client;
                scope.spawn(move || client(c, bar))
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            all.extend(
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("client panicked"))??,
            );
        }
        Ok(all)
    })?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    latencies.sort_unstable();
    Ok((latencies, elapsed))
}

/// Two different accounts, uniformly.
fn uniform_pair(rng: &mut SmallRng, accounts: usize) -> (usize, usize) {
    let debit = rng.random_range(0..accounts);
    let mut credit = rng.random_range(0..accounts - 1);
    if credit >= debit {
        credit += 1;
    }
    (debit, credit)
}

fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// `clients` threads each submitting one transfer at a time; with `rate`,
/// paced so that together they offer that many transfers per second.
fn run_single(
    engine: &Arc<Engine>,
    args: &BenchLedger,
    workload: Workload,
    rate: Option<u64>,
    name: &str,
) -> anyhow::Result<Measured> {
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let clients = args.clients.max(1);
    let total = match rate {
        // Pace for about five seconds.
        Some(rate) => (rate * 5).min(args.transfers as u64) as usize,
        None => args.transfers,
    };
    let per_client = total / clients;
    let bar = bar((per_client * clients) as u64, name);
    let accounts = args.accounts.max(2);
    let interval = rate.map(|r| Duration::from_nanos(1_000_000_000 * clients as u64 / r.max(1)));
    let (latencies, elapsed) = drive(clients, &bar, |c, bar| -> anyhow::Result<Vec<u32>> {
        let mut rng = SmallRng::seed_from_u64(run * 1000 + c as u64);
        let mut latencies = Vec::with_capacity(per_client);
        // Stagger the paced clients over one interval.
        let mut next = interval.map(|i| Instant::now() + i * c as u32 / clients as u32);
        for i in 0..per_client {
            if let (Some(at), Some(interval)) = (next.as_mut(), interval) {
                let now = Instant::now();
                if *at > now {
                    std::thread::sleep(*at - now);
                }
                *at += interval;
            }
            let command = next_transfer(&mut rng, accounts, workload, format!("r{run}-c{c}-{i}"));
            let sent = Instant::now();
            check(engine.execute_blocking(Command::Transfers {
                transfers: vec![command],
                linked: false,
            })?)?;
            latencies.push(micros(sent.elapsed()));
            if i % 64 == 0 {
                bar.inc(64.min((per_client - i) as u64));
            }
        }
        Ok(latencies)
    })?;
    let label = match (workload, rate) {
        (_, Some(rate)) => format!("latency: {clients} clients paced to {rate}/s"),
        (Workload::Hot(hot), None) => format!("hot: {clients} single clients → {hot} accounts"),
        (Workload::Uniform, None) => format!("single: {clients} single-transfer clients"),
    };
    Ok(Measured {
        name: label,
        transfers: latencies.len() as u64,
        elapsed,
        latencies_us: latencies,
        catch_up: None,
    })
}

fn run_naive(database: &Database, args: &BenchLedger) -> anyhow::Result<Measured> {
    let accounts = args.accounts.max(2);
    naive::setup(database, accounts, FUNDING)?;
    let clients = args.clients.max(1);
    let per_client = args.naive_transfers / clients;
    let bar = bar((per_client * clients) as u64, "naive");
    let (latencies, elapsed) = drive(clients, &bar, |c, bar| -> anyhow::Result<Vec<u32>> {
        let mut client = NaiveClient::connect(database)?;
        let mut rng = SmallRng::seed_from_u64(c as u64);
        let mut latencies = Vec::with_capacity(per_client);
        for i in 0..per_client {
            let (debit, credit) = uniform_pair(&mut rng, accounts);
            let sent = Instant::now();
            let mut attempts = 0;
            // Deadlocks and serialization failures are part of the
            // naive design's cost: retry them, as its clients would.
            loop {
                match client.transfer(
                    &format!("n{c}-{i}"),
                    &naive::account_id(debit),
                    &naive::account_id(credit),
                    rng.random_range(1..=10_000),
                ) {
                    Ok(_) => break,
                    Err(error) if attempts < 20 => {
                        attempts += 1;
                        tracing::debug!(%error, "naive transfer retried");
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            latencies.push(micros(sent.elapsed()));
            bar.inc(1);
        }
        Ok(latencies)
    })?;
    Ok(Measured {
        name: format!("naive: {clients} clients, 1 txn per transfer"),
        transfers: latencies.len() as u64,
        elapsed,
        latencies_us: latencies,
        catch_up: None,
    })
}
