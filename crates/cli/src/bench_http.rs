//! `coffer bench http`: drives a Coffer server over HTTP with N keep-alive
//! connections, each sending one request at a time (customers paying), and
//! prints requests/s and latency percentiles.
//!
//! Without `--url` it starts its own `coffer serve` (this binary) on a free
//! port with a fresh database, so the figure is reproducible on any machine;
//! the server and the load generator then share the machine's cores.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use indicatif::ProgressBar;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::bench_ledger::peak_rss_kib;
use crate::progress::bar;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    coffer bench http                                   # starts its own server on SQLite\n  \
    coffer bench http --backend postgres                # its own server on a throwaway PostgreSQL cluster\n  \
    coffer bench http --url http://127.0.0.1:8080 --api-key coffer_…   # a running server\n  \
    coffer bench http --connections 64 --requests 200000 --read-percent 20")]
pub struct BenchHttp {
    /// A running server to drive; without it the bench starts its own.
    #[arg(long)]
    url: Option<String>,
    /// API key with ledger:read and ledger:write (needed with --url).
    #[arg(long, env = "COFFER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// sqlite or postgres, for the server the bench starts.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Requests per measured phase.
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Customer accounts the transfers move money between.
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Share of balance reads in the mixed phase, in percent.
    #[arg(long, default_value_t = 20)]
    read_percent: u32,
    /// Log level of the server the bench starts (its log goes to a file).
    #[arg(long, default_value = "info")]
    server_log: String,
}

/// One measured phase.
struct Phase {
    name: &'static str,
    requests: u64,
    transfers: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Phase {
    fn print(&mut self) {
        self.latencies_us.sort_unstable();
        let at = |q: usize| -> f64 {
            let n = self.latencies_us.len();
            if n == 0 {
                return 0.0;
            }
            let index = (n * q / 1000).min(n - 1);
            // Reporting only: latency in milliseconds, never an amount.
            #[allow(clippy::float_arithmetic)]
            let ms = f64::from(self.latencies_us[index]) / 1000.0;
            ms
        };
        #[allow(clippy::float_arithmetic)]
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        #[allow(clippy::float_arithmetic)]
        let (rate, transfer_rate) = (
            self.requests as f64 / seconds,
            self.transfers as f64 / seconds,
        );
        println!(
            "{:>10}: {:>8.0} requests/s ({:>8.0} transfers/s) over {:.1}s | latency p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms | {} errors",
            self.name,
            rate,
            transfer_rate,
            seconds,
            at(500),
            at(990),
            at(999),
            self.errors
        );
    }
}

/// The server the bench started; stopped (SIGTERM, then wait) when dropped.
struct OwnServer {
    child: Child,
    _dir: tempfile::TempDir,
    _cluster: Option<coffer_store::throwaway::PgCluster>,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(args: &BenchHttp) -> anyhow::Result<(OwnServer, String, String)> {
    let exe = std::env::current_exe().context("find the coffer binary")?;
    let dir = tempfile::tempdir().context("temp dir")?;
    let (db, cluster) = match args.backend.as_str() {
        "sqlite" => (
            format!("sqlite://{}", dir.path().join("coffer.db").display()),
            None,
        ),
        "postgres" => {
            eprintln!("starting a throwaway PostgreSQL cluster (initdb + pg_ctl, fsync on)…");
            let cluster =
                coffer_store::throwaway::PgCluster::start().context("start PostgreSQL")?;
            let url = cluster.create_database("coffer_bench_http")?;
            (url, Some(cluster))
        }
        other => bail!("--backend: expected sqlite or postgres, got {other:?}"),
    };
    let created = Command::new(&exe)
        .args([
            "apikey",
            "create",
            "--name",
            "bench",
            "--scopes",
            "ledger:read,ledger:write",
        ])
        .args(["--db", &db])
        .output()
        .context("run coffer apikey create")?;
    if !created.status.success() {
        bail!(
            "coffer apikey create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    let key = String::from_utf8_lossy(&created.stdout)
        .lines()
        .find(|l| l.starts_with("coffer_"))
        .map(str::to_string)
        .context("coffer apikey create printed no key")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let child = Command::new(&exe)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db",
            &db,
        ])
        .env("COFFER_LOG", &args.server_log)
        // Every simulated client comes from this one address: the per-address
        // rate limits would measure themselves instead of the server.
        .env("COFFER_SERVER_RATE_LIMIT_PER_SECOND", "0")
        .env("COFFER_SERVER_AUTH_RATE_LIMIT_PER_SECOND", "0")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("start coffer serve")?;
    let server = OwnServer {
        child,
        _dir: dir,
        _cluster: cluster,
    };
    Ok((server, format!("http://127.0.0.1:{port}"), key))
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authorization: Arc<str>,
    host: Arc<str>,
}

impl Connection {
    async fn open(base: &str, authorization: Arc<str>) -> anyhow::Result<Connection> {
        let host: Arc<str> = base
            .strip_prefix("http://")
            .context("--url must be http://host:port (run the bench next to a TLS server's plain listener)")?
            .trim_end_matches('/')
            .into();
        let stream = tokio::net::TcpStream::connect(&*host)
            .await
            .with_context(|| format!("connect to {host}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(connection);
        Ok(Connection {
            sender,
            authorization,
            host,
        })
    }

    /// Sends one request; returns status and body.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<String>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &*self.host)
            .header("authorization", &*self.authorization);
        if let Some(key) = key {
            request = request
                .header("idempotency-key", key)
                .header("content-type", "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

fn account(i: usize) -> String {
    format!("bench-wallet-{i}")
}

async fn setup(
    base: &str,
    authorization: Arc<str>,
    accounts: usize,
    run: &str,
) -> anyhow::Result<()> {
    let progress = bar(accounts as u64 + 1, "opening and funding accounts");
    let mut connection = Connection::open(base, authorization.clone()).await?;
    let bank = format!("bench-bank-{run}");
    let open = |id: &str, kind: &str, constraint: &str| {
        json!({"id": id, "currency": "CNY", "kind": kind, "constraint": constraint, "owner": "bench"})
            .to_string()
    };
    let (status, body) = connection
        .send(
            Method::POST,
            "/v1/ledger/accounts",
            Some(&format!("{bank}-open")),
            Some(open(&bank, "asset", "none")),
        )
        .await?;
    if status >= 300 {
        bail!("open {bank}: {status} {}", String::from_utf8_lossy(&body));
    }
    progress.inc(1);
    // Accounts open over 16 connections; funding goes in batches.
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let base = base.to_string();
        let authorization = authorization.clone();
        let progress = progress.clone();
        let run = run.to_string();
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(&base, authorization).await?;
            for i in (worker..accounts).step_by(16) {
                let id = account(i);
                let (status, body) = connection
                    .send(
                        Method::POST,
                        "/v1/ledger/accounts",
                        Some(&format!("open-{run}-{i}")),
                        Some(open(&id, "liability", "no_overdraft")),
                    )
                    .await?;
                if status >= 300 {
                    bail!("open {id}: {status} {}", String::from_utf8_lossy(&body));
                }
                progress.inc(1);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    for (chunk, ids) in (0..accounts).collect::<Vec<_>>().chunks(4_000).enumerate() {
        let transfers: Vec<_> = ids
            .iter()
            .map(|&i| {
                json!({"id": format!("fund-{run}-{i}"), "debit_account_id": bank, "credit_account_id": account(i),
                       "amount": 1_000_000_000_i64, "currency": "CNY", "code": "bench.fund"})
            })
            .collect();
        let (status, body) = connection
            .send(
                Method::POST,
                "/v1/ledger/transfers/batch",
                Some(&format!("fund-{run}-{chunk}")),
                Some(json!({"transfers": transfers, "linked": false}).to_string()),
            )
            .await?;
        if status != 200 || !body.starts_with(b"{\"ok\":true") {
            bail!(
                "funding failed: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    progress.finish_and_clear();
    Ok(())
}

async fn phase(
    name: &'static str,
    base: &str,
    authorization: Arc<str>,
    args: &BenchHttp,
    read_percent: u32,
    run: &str,
) -> anyhow::Result<Phase> {
    let progress = bar(args.requests as u64, name);
    let per_connection = args.requests.div_ceil(args.connections.max(1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.connections.max(1) {
        let base = base.to_string();
        let authorization = authorization.clone();
        let progress: ProgressBar = progress.clone();
        let run = format!("{run}-{name}-{c}");
        let accounts = args.accounts.max(2);
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(&base, authorization).await?;
            let mut rng = SmallRng::seed_from_u64(c as u64);
            let mut latencies = Vec::with_capacity(per_connection);
            let (mut transfers, mut errors) = (0u64, 0u64);
            for i in 0..per_connection {
                let sent = Instant::now();
                let status = if rng.random_range(0..100) < read_percent {
                    let path = format!("/v1/ledger/accounts/{}", account(rng.random_range(0..accounts)));
                    connection.send(Method::GET, &path, None, None).await?.0
                } else {
                    let debit = rng.random_range(0..accounts);
                    let credit = (debit + rng.random_range(1..accounts)) % accounts;
                    let id = format!("{run}-{i}");
                    let body = json!({"id": id, "debit_account_id": account(debit), "credit_account_id": account(credit),
                                      "amount": rng.random_range(1..10_000_i64), "currency": "CNY", "code": "payment.p2p"})
                        .to_string();
                    let status = connection
                        .send(Method::POST, "/v1/ledger/transfers", Some(&id), Some(body))
                        .await?
                        .0;
                    if status == 201 {
                        transfers += 1;
                    }
                    status
                };
                if !(200..300).contains(&status) {
                    errors += 1;
                }
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                progress.inc(1);
            }
            anyhow::Ok((latencies, transfers, errors))
        }));
    }
    let mut measured = Phase {
        name,
        requests: 0,
        transfers: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::with_capacity(args.requests),
    };
    for task in tasks {
        let (latencies, transfers, errors) = task.await??;
        measured.requests += latencies.len() as u64;
        measured.latencies_us.extend(latencies);
        measured.transfers += transfers;
        measured.errors += errors;
    }
    measured.elapsed = started.elapsed();
    progress.finish_and_clear();
    Ok(measured)
}

async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut connection) = Connection::open(base, Arc::from("")).await {
            if let Ok((200, _)) = connection.send(Method::GET, "/readyz", None, None).await {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the server at {base} did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn run(args: BenchHttp) -> anyhow::Result<()> {
    let (own, base, key) = match (&args.url, &args.api_key) {
        (Some(url), Some(key)) => (None, url.clone(), key.clone()),
        (Some(_), None) => bail!("--api-key (or COFFER_API_KEY) is needed with --url"),
        (None, _) => {
            let (server, base, key) = start_server(&args)?;
            (Some(server), base, key)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let run_id = format!("{:x}", rand::rng().random::<u32>());
    runtime.block_on(async {
        wait_ready(&base).await?;
        let authorization: Arc<str> = format!("Bearer {key}").into();
        println!(
            "coffer bench http: {} ({}), {} connections, {} requests per phase, {} accounts, {} cores shared by server and load",
            base,
            if own.is_some() { args.backend.as_str() } else { "running server" },
            args.connections,
            args.requests,
            args.accounts,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        setup(&base, authorization.clone(), args.accounts.max(2), &run_id).await?;
        // Warm up: the ledger loads each account on its first use after a
        // start; the figures below are the steady state.
        let mut warm_up = phase("warm-up", &base, authorization.clone(), &args, 0, &run_id).await?;
        warm_up.print();
        let mut transfers = phase("transfers", &base, authorization.clone(), &args, 0, &run_id).await?;
        transfers.print();
        let mut mixed = phase("mixed", &base, authorization.clone(), &args, args.read_percent, &run_id).await?;
        mixed.print();
        anyhow::Ok(())
    })?;
    drop(own);
    println!("load generator peak RSS: {} MiB", peak_rss_kib() / 1024);
    let url = args
        .url
        .as_ref()
        .map(|u| format!(" --url {u} --api-key …"))
        .unwrap_or_else(|| format!(" --backend {}", args.backend));
    println!(
        "reproduce: cargo run --release -p coffer-cli -- bench http{url} --connections {} --requests {} --accounts {} --read-percent {} --server-log {}",
        args.connections, args.requests, args.accounts, args.read_percent, args.server_log
    );
    Ok(())
}
