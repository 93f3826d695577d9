//! A throwaway PostgreSQL cluster for tests and benchmarks: Debian's `initdb`
//! and `pg_ctl` in a temporary directory, listening on a free loopback port,
//! removed on drop. Real PostgreSQL, with `fsync` on, so what is measured and
//! tested is what production gets.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::StoreError;

pub struct PgCluster {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    run_as: Option<String>,
    pg_ctl: PathBuf,
}

/// Finds a PostgreSQL server binary: `PATH` first, then Debian's layout.
fn find_binary(name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|v| v.join("bin").join(name))
        .find(|p| p.is_file())
}

fn failure(what: &str, output: &std::process::Output) -> StoreError {
    StoreError::Io(std::io::Error::other(format!(
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )))
}

impl PgCluster {
    /// Starts a new cluster. Under root (CI containers) the server runs as the
    /// `postgres` user, since PostgreSQL refuses to run as root.
    pub fn start() -> Result<PgCluster, StoreError> {
        let missing = || {
            StoreError::Io(std::io::Error::other(
                "initdb/pg_ctl not found: install Debian's `postgresql` package",
            ))
        };
        let initdb = find_binary("initdb").ok_or_else(missing)?;
        let pg_ctl = find_binary("pg_ctl").ok_or_else(missing)?;
        let base =
            std::env::temp_dir().join(format!("coffer-pg-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&base)?;
        let data = base.join("data");
        let run_as = is_root().then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            chown_to(&base, user)?;
        }
        let port = free_port()?;
        let cluster = PgCluster {
            dir: base.clone(),
            data: data.clone(),
            port,
            run_as,
            pg_ctl,
        };
        let output = cluster
            .command(&initdb)
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()?;
        if !output.status.success() {
            return Err(failure("initdb", &output));
        }
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} -c max_connections=300 \
             -c shared_buffers=256MB -c fsync=on -c synchronous_commit=on -c full_page_writes=on",
            base.display()
        );
        let output = cluster
            .command(&cluster.pg_ctl)
            .args(["-D"])
            .arg(&data)
            .args(["-l"])
            .arg(base.join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()?;
        if !output.status.success() {
            let log = std::fs::read_to_string(base.join("server.log")).unwrap_or_default();
            return Err(StoreError::Io(std::io::Error::other(format!(
                "pg_ctl start failed: {}{}\n{log}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))));
        }
        Ok(cluster)
    }

    fn command(&self, program: &Path) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// The URL of the cluster's default database.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    pub fn database_url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, StoreError> {
        let mut client = ::postgres::Client::connect(&self.url(), ::postgres::NoTls)?;
        client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))?;
        client.batch_execute(&format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.database_url(name))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// One cluster for the whole process, started on first use. A static is
    /// never dropped, so a watchdog shell stops the server and removes its
    /// files when this process exits, however it exits (even on SIGKILL).
    pub fn shared() -> Result<&'static PgCluster, StoreError> {
        static SHARED: std::sync::OnceLock<Result<PgCluster, String>> = std::sync::OnceLock::new();
        let cluster = SHARED.get_or_init(|| {
            let cluster = PgCluster::start().map_err(|e| e.to_string())?;
            cluster.watch_parent().map_err(|e| e.to_string())?;
            Ok(cluster)
        });
        cluster
            .as_ref()
            .map_err(|e| StoreError::Io(std::io::Error::other(e.clone())))
    }

    fn watch_parent(&self) -> Result<(), StoreError> {
        let stop = match &self.run_as {
            Some(user) => format!(
                "runuser -u {user} -- {} -D {} -m immediate -w stop",
                self.pg_ctl.display(),
                self.data.display()
            ),
            None => format!(
                "{} -D {} -m immediate -w stop",
                self.pg_ctl.display(),
                self.data.display()
            ),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command(&self.pg_ctl)
            .args(["-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (u64::from(nanos) << 16) | NEXT.fetch_add(1, Ordering::Relaxed)
}

fn free_port() -> Result<u16, StoreError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown_to(path: &Path, user: &str) -> Result<(), StoreError> {
    let output = Command::new("chown")
        .arg(format!("{user}:"))
        .arg(path)
        .output()?;
    if !output.status.success() {
        return Err(failure("chown", &output));
    }
    Ok(())
}
