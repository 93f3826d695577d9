//! Black-box tests of the `coffer` binary's start-up: HTTPS from configured
//! certificate files, plain HTTP, graceful stop on SIGTERM, and bad
//! configurations refused with exit code 2 and a message naming the key.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Generous: a debug build on a loaded 2-core machine starts slowly.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary, run in `dir` with only the environment the test gives it, so a
/// developer's own `COFFER_…` variables cannot change the outcome; warnings
/// and errors only in the log.
fn coffer(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
    command
        .env_clear()
        .env("COFFER_LOG", "warn")
        .current_dir(dir);
    command
}

/// A running `coffer serve`, killed if the test ends early.
struct Server {
    child: Child,
    stdout: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn start(mut command: Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn coffer serve");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Server {
            child,
            stdout: receiver,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line containing `needle`.
    fn line_containing(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; stdout so far: {:?}", self.seen),
            }
        }
    }

    /// The address from "Coffer is running at SCHEME://ADDRESS/ …".
    fn address(&mut self, scheme: &str) -> SocketAddr {
        let prefix = format!("Coffer is running at {scheme}://");
        let line = self.line_containing(&prefix);
        let rest = &line[line.find(&prefix).expect("prefix") + prefix.len()..];
        let address = rest.split('/').next().expect("address");
        address.parse().expect("socket address")
    }

    /// SIGTERM, then the exit status; the service must stop by itself.
    fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        wait_with_timeout(&mut self.child, START_TIMEOUT)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("coffer did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads until the server closes; a missing TLS close_notify is not this test's concern.
fn read_response(stream: &mut impl Read) -> String {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(error) => panic!("read: {error} after {:?}", String::from_utf8_lossy(&bytes)),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

/// GET over HTTPS, trusting only `cert_pem` and checking it is for `localhost`.
fn https_get(address: SocketAddr, cert_pem: &str, path: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = TcpStream::connect(address).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(request(path).as_bytes()).expect("write");
    read_response(&mut tls)
}

fn http_get(address: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(address).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp.write_all(request(path).as_bytes()).expect("write");
    read_response(&mut tcp)
}

/// A self-signed certificate for `localhost`; returns (cert path, key path, cert PEM).
fn certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let cert_pem = generated.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
    (cert, key, cert_pem)
}

#[test]
fn serves_https_from_configured_certificate_files_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key, cert_pem) = certificate(dir.path());
    let config = dir.path().join("coffer.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\n\n[database]\ndata_dir = \"data\"\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .expect("write config");
    let mut command = coffer(dir.path());
    command.arg("serve").arg("--config").arg(&config);
    let mut server = Server::start(command);
    let address = server.address("https");

    let response = https_get(address, &cert_pem, "/healthz");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let status = server.terminate();
    assert!(status.success(), "{status}");
    server.line_containing("Coffer stopped cleanly");
    assert!(dir.path().join("data/coffer.db").exists());
}

#[test]
fn serves_plain_http_without_tls_settings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = coffer(dir.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"));
    let mut server = Server::start(command);
    let address = server.address("http");
    let response = http_get(address, "/healthz");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let status = server.terminate();
    assert!(status.success(), "{status}");
    server.line_containing("Coffer stopped cleanly");
}

/// `coffer settle` runs a ledger writer of its own: beside a running
/// `coffer serve` on the same database it refuses (exit 2, naming the
/// serve), and runs once the serve has stopped.
#[test]
fn settle_refuses_to_run_beside_serve() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut command = coffer(dir.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data);
    let mut server = Server::start(command);
    server.address("http");
    let settle = |dir: &Path| {
        let output = coffer(dir)
            .args(["settle", "--data-dir"])
            .arg(&data)
            .output()
            .expect("run coffer settle");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = settle(dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("coffer serve (pid"), "{stderr}");
    // Listing only reads: fine beside it.
    let listed = coffer(dir.path())
        .args(["settle", "--list", "--data-dir"])
        .arg(&data)
        .status()
        .expect("list");
    assert!(listed.success());
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let (code, stderr) = settle(dir.path());
    assert_eq!(code, Some(0), "{stderr}");
}

/// Runs a command that must refuse its configuration: exit 2, the key named.
fn assert_config_error(mut command: Command, expected: &[&str]) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coffer");
    let status = wait_with_timeout(&mut child, START_TIMEOUT);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("config error: "), "{stderr}");
    for text in expected {
        assert!(stderr.contains(text), "{text:?} not in {stderr:?}");
    }
}

#[test]
fn bad_configurations_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, key, _) = certificate(dir.path());

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[server]\nlisen = \"127.0.0.1:8080\"\n").expect("write");
    let mut command = coffer(dir.path());
    command.arg("serve").arg("--config").arg(&unknown);
    assert_config_error(command, &["server.lisen", "unknown key", "line 2"]);

    let mut command = coffer(dir.path());
    command.arg("serve").env("COFFER_LISTEN", "localhost");
    assert_config_error(
        command,
        &["server.listen = \"localhost\" (from COFFER_LISTEN): not a socket address"],
    );

    let missing_cert = dir.path().join("missing-cert.toml");
    std::fs::write(
        &missing_cert,
        format!(
            "[server]\ntls_cert = \"{}/absent.pem\"\ntls_key = {:?}\n",
            dir.path().display(),
            key.display().to_string()
        ),
    )
    .expect("write");
    let mut command = coffer(dir.path());
    command.arg("serve").arg("--config").arg(&missing_cert);
    assert_config_error(command, &["server.tls_cert", "absent.pem", "no such file"]);

    // The operators' check refuses the same way, and so does every command
    // that opens the database.
    let mut command = coffer(dir.path());
    command
        .args(["config", "check"])
        .arg("--config")
        .arg(&unknown);
    assert_config_error(command, &["server.lisen"]);
    let mut command = coffer(dir.path());
    command
        .arg("migrate")
        .env("COFFER_IDEMPOTENCY_RETENTION_HOURS", "1");
    assert_config_error(command, &["idempotency.retention_hours"]);
}
