//! The real `coffer serve`, driven over HTTP: register with a password, link
//! a card, sign in again; then search the database files, the log (at debug
//! level) and every API response for the password, the card number and the
//! CVV in clear, and find nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASSWORD: &str = "silk road caravan";
const CVV: &str = "9173";

fn luhn_complete(body: &str) -> String {
    for check in 0..10 {
        let candidate = format!("{body}{check}");
        let mut sum = 0;
        for (i, c) in candidate.chars().rev().enumerate() {
            let mut d = c.to_digit(10).expect("digit");
            if i % 2 == 1 {
                d *= 2;
                if d > 9 {
                    d -= 9;
                }
            }
            sum += d;
        }
        if sum.is_multiple_of(10) {
            return candidate;
        }
    }
    unreachable!()
}

/// One HTTP/1.1 request on a fresh connection; (status, body).
fn http(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
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
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn field(json: &str, name: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).expect("json");
    let mut current = &value;
    for part in name.split('.') {
        current = &current[part];
    }
    current
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {json}"))
        .to_string()
}

#[test]
fn no_password_card_number_or_cvv_in_the_database_the_log_or_any_response() {
    let dir = tempfile::tempdir().expect("dir");
    let log_path = dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("COFFER_LOG", "debug")
        .env_remove("COFFER_CONFIG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).expect("log"))
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
    let wait_for = |needle: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = lines
                .lock()
                .expect("lines")
                .iter()
                .rev()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                panic!(
                    "no line with {needle:?}; stdout: {:?}; server log (last lines, newest first): {tail:#?}",
                    lines.lock().expect("lines")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let running = wait_for("Coffer is running at http://");
    let address = running
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("address")
        .to_string();

    let mut responses = Vec::new();
    let phone = "+8613900001111";
    let (status, started) = http(
        &address,
        "POST",
        "/v1/auth/registrations",
        &[("Idempotency-Key", "reg-1")],
        &format!(r#"{{"contact":"{phone}"}}"#),
    );
    assert_eq!(status, 202, "{started}");
    responses.push(started.clone());
    // This phone's code: the demo's own customer got one too.
    let sms = wait_for(&format!(
        "to {phone}] Coffer: Your Coffer verification code is"
    ));
    let code: String = sms
        .split("code is ")
        .nth(1)
        .expect("code")
        .chars()
        .take(6)
        .collect();
    let (status, registered) = http(
        &address,
        "POST",
        &format!(
            "/v1/auth/registrations/{}/complete",
            field(&started, "registration_id")
        ),
        &[],
        &format!(
            r#"{{"code":"{code}","password":"{PASSWORD}","display_name":"Secret Keeper","accept_terms":"2026-11"}}"#
        ),
    );
    assert_eq!(status, 201, "{registered}");
    let token = field(&registered, "session.token");
    let bearer = format!("Bearer {token}");
    responses.push(registered.clone());

    let pan = luhn_complete("621234567890123");
    let (status, linked) = http(
        &address,
        "POST",
        "/v1/me/cards",
        &[("Authorization", &bearer), ("Idempotency-Key", "card-1")],
        &format!(
            r#"{{"number":"{pan}","expiry_month":12,"expiry_year":2031,"cvv":"{CVV}","funding":"debit"}}"#
        ),
    );
    assert_eq!(status, 201, "{linked}");
    assert_eq!(field(&linked, "brand"), "unionpay");
    assert_eq!(field(&linked, "last4"), pan[pan.len() - 4..]);
    responses.push(linked);
    // The same card again: a clear refusal; a wrong check digit too.
    let (status, again) = http(
        &address,
        "POST",
        "/v1/me/cards",
        &[("Authorization", &bearer), ("Idempotency-Key", "card-2")],
        &format!(
            r#"{{"number":"{pan}","expiry_month":12,"expiry_year":2031,"cvv":"{CVV}","funding":"debit"}}"#
        ),
    );
    assert_eq!(status, 409, "{again}");
    responses.push(again);
    let mut mistyped = pan.clone();
    let last = mistyped.pop().and_then(|c| c.to_digit(10)).expect("digit");
    mistyped.push(char::from_digit((last + 1) % 10, 10).expect("digit"));
    let (status, refused) = http(
        &address,
        "POST",
        "/v1/me/cards",
        &[("Authorization", &bearer), ("Idempotency-Key", "card-3")],
        &format!(
            r#"{{"number":"{mistyped}","expiry_month":12,"expiry_year":2031,"cvv":"{CVV}","funding":"debit"}}"#
        ),
    );
    assert_eq!(status, 422, "{refused}");
    responses.push(refused);
    for (method, path) in [
        ("GET", "/v1/me/cards"),
        ("GET", "/v1/me"),
        ("GET", "/v1/me/sessions"),
    ] {
        let (status, body) = http(&address, method, path, &[("Authorization", &bearer)], "");
        assert_eq!(status, 200, "{path}: {body}");
        responses.push(body);
    }
    let (status, signed_in) = http(
        &address,
        "POST",
        "/v1/auth/sessions",
        &[],
        &format!(r#"{{"contact":"{phone}","password":"{PASSWORD}"}}"#),
    );
    assert_eq!(status, 201, "{signed_in}");
    responses.push(signed_in.clone());
    let second_token = field(&signed_in, "token");

    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();

    let mut stored = Vec::new();
    for name in ["coffer.db", "coffer.db-wal"] {
        stored.extend(std::fs::read(dir.path().join(name)).unwrap_or_default());
    }
    let log = std::fs::read_to_string(&log_path).expect("log");
    let contains = |haystack: &[u8], needle: &str| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    for (place, haystack) in [
        ("the database", stored.as_slice()),
        ("the log", log.as_bytes()),
    ] {
        for (what, needle) in [
            ("password", PASSWORD),
            ("card number", pan.as_str()),
            ("session token", token.as_str()),
            ("session token", second_token.as_str()),
        ] {
            assert!(
                !contains(haystack, needle),
                "the {what} is in {place} in clear"
            );
        }
        assert!(
            !contains(haystack, &format!("\"{CVV}\""))
                && !contains(haystack, &format!("cvv={CVV}")),
            "the CVV is in {place}"
        );
    }
    assert!(
        !contains(&stored, "cvv"),
        "no CVV column, no CVV anywhere in the database"
    );
    assert!(log.contains("request"), "the log was written at all");
    // (The CVV is searched quoted or by name: its bare digits may well occur
    // inside a timestamp.)
    let quoted_cvv = format!("\"{CVV}\"");
    for body in &responses {
        for needle in [PASSWORD, pan.as_str(), quoted_cvv.as_str(), "cvv"] {
            assert!(
                !body.contains(needle),
                "a response carries {needle}: {body}"
            );
        }
    }
}
