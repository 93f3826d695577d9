//! A crash between payment and notification loses no notification.
//!
//! The real `coffer serve` sends e-mail through a real SMTP server (aiosmtpd)
//! on loopback. Two customers register by e-mail (their codes read from the
//! sink), one tops up and pays the other until the money runs out; the relay
//! is down meanwhile, so every alert is queued in the outbox, not delivered.
//! The server is SIGKILLed, the relay comes back, the server restarts: every
//! acknowledged payment's alerts (received, sent) arrive, each exactly once
//! by its notification key (the Message-ID), and none for refused payments;
//! the inbox holds each once too.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_testkit::smtp_sink::{Mail, SmtpSink};
use serde_json::Value;

const PASSWORD: &str = "quiet harbour lanterns";
const CARD: &str = "4111111111111111";

fn http(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

struct Server {
    child: Child,
    address: String,
}

fn serve(dir: &Path, smtp_port: u16) -> Server {
    let config = dir.join("coffer.toml");
    // More low-value payments a day than the default five, so the test
    // needs no step-up codes; everything else is the default.
    std::fs::write(
        &config,
        "[p2p]\nexempt_daily_count_max = 100\nexempt_daily_total_max = 1000000\n",
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("COFFER_CONFIG")
        .env("COFFER_SMTP_HOST", "127.0.0.1")
        .env("COFFER_SMTP_PORT", smtp_port.to_string())
        .env("COFFER_SMTP_TLS", "none")
        .env("COFFER_SMTP_FROM", "Coffer <no-reply@bank.example>")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("server.log")).expect("log"))
        .spawn()
        .expect("start coffer serve");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stdout = child.stdout.take().expect("stdout");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(line) = lines
            .lock()
            .expect("lines")
            .iter()
            .find(|l| l.contains("Coffer is running at http://"))
        {
            let address = line
                .split("http://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .expect("address")
                .to_string();
            return Server { child, address };
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("coffer serve exited: {status}; log: {log}");
        }
        assert!(Instant::now() < deadline, "coffer serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The newest 6-digit code in mail to `to`.
fn code_for(sink: &SmtpSink, to: &str, before: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mails: Vec<Mail> = sink
            .messages()
            .into_iter()
            .filter(|m| m.header("to").is_some_and(|t| t.contains(to)))
            .collect();
        if mails.len() > before {
            let text = mails.last().expect("mail").text();
            let digits: Vec<&str> = text
                .split(|c: char| !c.is_ascii_digit())
                .filter(|run| run.len() == 6)
                .collect();
            return digits.last().expect("a code in the mail").to_string();
        }
        assert!(Instant::now() < deadline, "no code mailed to {to}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn register(server: &Server, sink: &SmtpSink, email: &str, name: &str) -> String {
    let (status, started) = http(
        &server.address,
        "POST",
        "/v1/auth/registrations",
        &[("Idempotency-Key", &format!("reg-{email}"))],
        &format!(r#"{{"contact":"{email}"}}"#),
    );
    assert_eq!(status, 202, "{started}");
    let code = code_for(sink, email, 0);
    let id = started["registration_id"]
        .as_str()
        .expect("registration id");
    let (status, registered) = http(
        &server.address,
        "POST",
        &format!("/v1/auth/registrations/{id}/complete"),
        &[],
        &format!(
            r#"{{"code":"{code}","password":"{PASSWORD}","display_name":"{name}","accept_terms":"2026-11"}}"#
        ),
    );
    assert_eq!(status, 201, "{registered}");
    format!(
        "Bearer {}",
        registered["session"]["token"].as_str().expect("token")
    )
}

fn message_ids(sink: &SmtpSink) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for mail in sink.messages() {
        if let Some(id) = mail.header("message-id") {
            *ids.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    ids
}

#[test]
fn a_crash_between_payment_and_notification_loses_no_notification() {
    let dir = tempfile::tempdir().expect("dir");
    let mut sink = SmtpSink::start();
    let mut server = serve(dir.path(), sink.port);

    let alice = register(&server, &sink, "alice@example.com", "Alice Payer");
    let bob = register(&server, &sink, "bob@example.com", "Bob Payee");
    let (status, card) = http(
        &server.address,
        "POST",
        "/v1/me/cards",
        &[("Authorization", &alice), ("Idempotency-Key", "card-1")],
        &format!(
            r#"{{"number":"{CARD}","expiry_month":12,"expiry_year":2031,"cvv":"123","funding":"debit"}}"#
        ),
    );
    assert_eq!(status, 201, "{card}");
    let (status, top_up) = http(
        &server.address,
        "POST",
        "/v1/me/top-ups",
        &[("Authorization", &alice), ("Idempotency-Key", "top-up-1")],
        &format!(
            r#"{{"amount":5000,"currency":"CNY","card_id":"{}"}}"#,
            card["id"].as_str().expect("card id")
        ),
    );
    assert_eq!(status, 201, "{top_up}");
    let top_up_id = top_up["id"].as_str().expect("top-up id").to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, view) = http(
            &server.address,
            "GET",
            &format!("/v1/me/top-ups/{top_up_id}"),
            &[("Authorization", &alice)],
            "",
        );
        if view["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "top-up never succeeded: {view}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The relay goes down: from here every alert waits in the outbox.
    sink.stop();
    let delivered_before = message_ids(&sink);
    let mut paid = Vec::new();
    let mut refused = Vec::new();
    for n in 0..8 {
        let (status, quote) = http(
            &server.address,
            "POST",
            "/v1/me/p2p/quotes",
            &[
                ("Authorization", &alice),
                ("Idempotency-Key", &format!("q-{n}")),
            ],
            r#"{"payee":"bob@example.com","amount":1000,"currency":"CNY"}"#,
        );
        assert_eq!(status, 201, "{quote}");
        assert_eq!(quote["step_up_required"], false, "{quote}");
        let (status, payment) = http(
            &server.address,
            "POST",
            "/v1/me/p2p/payments",
            &[
                ("Authorization", &alice),
                ("Idempotency-Key", &format!("p-{n}")),
            ],
            &format!(
                r#"{{"quote_id":"{}","amount":1000,"fee":{},"currency":"CNY"}}"#,
                quote["id"].as_str().expect("quote id"),
                quote["fee"]
            ),
        );
        match status {
            201 => {
                assert_eq!(payment["status"], "succeeded", "{payment}");
                paid.push(payment["id"].as_str().expect("payment id").to_string());
            }
            422 => {
                assert_eq!(payment["error"]["code"], "insufficient_funds", "{payment}");
                refused.push(quote["id"].as_str().expect("quote id").to_string());
            }
            other => panic!("payment {n}: {other} {payment}"),
        }
    }
    assert!(
        paid.len() >= 3 && !refused.is_empty(),
        "paid {paid:?}, refused {refused:?}"
    );
    // Nothing of it reached anyone yet: queued, not delivered.
    assert_eq!(message_ids(&sink), delivered_before);

    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reap");
    sink.restart();
    let mut server = serve(dir.path(), sink.port);

    let expected: BTreeSet<String> = paid
        .iter()
        .flat_map(|id| {
            [
                format!("<p2p.{id}.received.email@notifications.coffer>"),
                format!("<p2p.{id}.sent.email@notifications.coffer>"),
            ]
        })
        .collect();
    // A message a killed dispatcher had claimed is retried after the claim
    // timeout (60 s): wait longer than that.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let ids = message_ids(&sink);
        if expected.iter().all(|id| ids.contains_key(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing after the restart: {:?}",
            expected
                .iter()
                .filter(|id| !ids.contains_key(*id))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Stopped cleanly, nothing more can arrive: count what did.
    let _ = Command::new("kill")
        .arg(server.child.id().to_string())
        .status();
    let _ = server.child.wait();
    let ids = message_ids(&sink);
    for id in &expected {
        assert_eq!(ids.get(id), Some(&1), "{id} delivered more than once");
    }
    let payment_mail: Vec<&String> = ids.keys().filter(|id| id.starts_with("<p2p.")).collect();
    assert_eq!(
        payment_mail.len(),
        expected.len(),
        "alerts for payments that were refused: {payment_mail:?}"
    );
    // What arrived: the amount and a masked name, no card number, no code.
    for mail in sink.messages() {
        let text = mail.text();
        assert!(!text.contains(CARD) && !mail.raw.contains(CARD));
        assert!(!text.contains(PASSWORD));
        if mail
            .header("message-id")
            .is_some_and(|id| id.contains(".received."))
        {
            assert_eq!(mail.header("subject"), Some("Money received"));
            assert!(text.contains("You received CNY 10.00 from A"), "{text}");
            assert!(!text.contains("Alice Payer"), "names are masked: {text}");
        }
    }

    // The inbox holds each alert once, too.
    let server = serve(dir.path(), sink.port);
    let bob = sign_in(&server, "bob@example.com").unwrap_or(bob);
    let (status, inbox) = http(
        &server.address,
        "GET",
        "/v1/me/notifications?limit=100",
        &[("Authorization", &bob)],
        "",
    );
    assert_eq!(status, 200, "{inbox}");
    let received = inbox["data"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["template"] == "p2p_received")
        .count();
    assert_eq!(received, paid.len(), "{inbox}");
    assert!(inbox["unread_count"].as_u64().unwrap_or(0) >= received as u64);
    let mut server = server;
    let _ = Command::new("kill")
        .arg(server.child.id().to_string())
        .status();
    let _ = server.child.wait();
}

/// A fresh session (sessions survive restarts; this only guards against a
/// sign-in lock-out or expiry changing that).
fn sign_in(server: &Server, email: &str) -> Option<String> {
    let (status, session) = http(
        &server.address,
        "POST",
        "/v1/auth/sessions",
        &[],
        &format!(r#"{{"contact":"{email}","password":"{PASSWORD}"}}"#),
    );
    (status == 201).then(|| format!("Bearer {}", session["token"].as_str().unwrap_or("")))
}
