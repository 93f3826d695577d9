//! Merchant webhooks: a `coffer_notify` transport for the `webhook`
//! channel. Events are queued in the outbox inside the transaction that
//! changes the payment (`Merchants::enqueue_webhook`), so a webhook is sent
//! exactly for what committed, at least once, with the outbox's retries and
//! dead-letter state.
//!
//! Each delivery is signed at the moment it is sent, so a retry an hour
//! later still falls inside the receiver's replay window:
//! `Coffer-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
//! with the merchant's own secret — the same scheme as the connectors'
//! callbacks (`connectors::WebhookSecret`), which merchants verify with
//! [`verify`].
//!
//! **Destinations are checked against SSRF** ([`check_destination`]): a
//! merchant could otherwise make Coffer POST into the bank's own network
//! (a metadata service at 169.254.169.254, an admin port on 10.x). Only
//! `https://` is accepted, and every address the host resolves to must be
//! public: no private (RFC 1918, unique-local), loopback, link-local,
//! CGNAT, unspecified, multicast or documentation address. `http://` to a
//! literal loopback host (`localhost`, `127.0.0.1`, `[::1]`) is allowed only
//! when the configuration says so (development and tests). The check runs
//! when the URL is set and again before every delivery, so a name that
//! later resolves somewhere private (DNS rebinding) is refused then.

use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use coffer_core::Clock;
use coffer_notify::{Channel, DeliveryError, Transport};

use coffer_store::sql::SqlStore;
use coffer_vault::Vault;

use crate::connectors::{SignatureError, WebhookSecret, SIGNATURE_HEADER};

/// A merchant endpoint gets this long to answer.
pub const WEBHOOK_TIMEOUT_SECONDS: u64 = 10;

/// Sends queued webhooks to merchants' endpoints.
pub struct WebhookTransport {
    sql: Arc<SqlStore>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    agent: ureq::Agent,
}

impl WebhookTransport {
    pub fn new(sql: Arc<SqlStore>, vault: Arc<Vault>, clock: Arc<dyn Clock>) -> WebhookTransport {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(WEBHOOK_TIMEOUT_SECONDS)))
            // A redirect could send the signed body somewhere else.
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .new_agent();
        WebhookTransport {
            sql,
            vault,
            clock,
            agent,
        }
    }
}

impl Transport for WebhookTransport {
    fn channel(&self) -> Channel {
        Channel::Webhook
    }

    /// `recipient` is the endpoint URL, `subject` the merchant whose secret
    /// signs the body. Any 2xx answer is a delivery; anything else retries.
    fn deliver(&self, recipient: &str, subject: &str, body: &str) -> Result<(), DeliveryError> {
        // A literal loopback host passed the check when it was set (only a
        // development configuration allows it); a name that resolves there
        // now has been rebound and is refused.
        let literal_loopback = parse_destination(recipient)
            .is_ok_and(|(scheme, host, _)| scheme == "http" || is_loopback_name(&host));
        check_destination(recipient, literal_loopback)
            .map_err(|e| DeliveryError(format!("webhook destination refused: {e}")))?;
        let secret = crate::merchants::webhook_secret(&self.sql, &self.vault, subject)
            .map_err(|e| DeliveryError(e.to_string()))?
            .ok_or_else(|| DeliveryError("the merchant has no webhook secret".into()))?;
        let now_seconds = self.clock.now().as_nanos() / 1_000_000_000;
        let signature = secret.sign(now_seconds, body.as_bytes());
        let response = self
            .agent
            .post(recipient)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .send(body)
            .map_err(|e| DeliveryError(format!("webhook: {e}")))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(DeliveryError(format!("webhook endpoint answered {status}")))
        }
    }
}

/// The scheme, host (brackets stripped) and port of an `http(s)://` URL.
fn parse_destination(url: &str) -> Result<(&'static str, String, u16), String> {
    let (scheme, rest, default_port) = if let Some(rest) = url.strip_prefix("https://") {
        ("https", rest, 443)
    } else if let Some(rest) = url.strip_prefix("http://") {
        ("http", rest, 80)
    } else {
        return Err("only https:// URLs".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err("a host, without credentials".into());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| "a well-formed IPv6 host".to_string())?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().map_err(|_| "a valid port".to_string())?,
            None if after.is_empty() => default_port,
            None => return Err("a well-formed host".into()),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (
                host.to_string(),
                port.parse().map_err(|_| "a valid port".to_string())?,
            ),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err("a host".into());
    }
    Ok((scheme, host.to_ascii_lowercase(), port))
}

fn is_loopback_name(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| canonical(ip).is_loopback())
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether Coffer may send to `ip`: only globally routable unicast.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // Carrier-grade NAT 100.64.0.0/10, benchmarking 198.18.0.0/15,
                // IETF protocol assignments 192.0.0.0/24, reserved 240.0.0.0/4.
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && c == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local fc00::/7, link-local fe80::/10, documentation 2001:db8::/32.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

/// Checks a webhook destination (see the module's documentation): `Err`
/// says what is wrong, for the merchant.
pub fn check_destination(url: &str, allow_loopback: bool) -> Result<(), String> {
    let (scheme, host, port) = parse_destination(url)?;
    let loopback_host = is_loopback_name(&host);
    if scheme == "http" && !(allow_loopback && loopback_host) {
        return Err("only https:// URLs".into());
    }
    if loopback_host {
        return if allow_loopback {
            Ok(())
        } else {
            Err("a loopback address is not a merchant's endpoint".into())
        };
    }
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|_| format!("the host {host} does not resolve"))?
            .map(|address| address.ip())
            .collect(),
    };
    if addresses.is_empty() {
        return Err(format!("the host {host} does not resolve"));
    }
    match addresses.into_iter().find(|ip| !is_public(*ip)) {
        Some(ip) => Err(format!(
            "{host} is (or resolves to) {ip}, not a public address"
        )),
        None => Ok(()),
    }
}

/// What a merchant runs on receipt: checks the `Coffer-Signature` header
/// against the raw body with its secret (`whsec_…`) at `now` (unix
/// seconds), refusing anything signed more than five minutes away.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now_seconds: i64,
) -> Result<(), SignatureError> {
    WebhookSecret::new(secret.as_bytes().to_vec()).verify(header, body, now_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_https_destinations_pass() {
        // A name that does not resolve is refused (`.invalid` never does).
        assert!(check_destination("https://hooks.shop.invalid/x", false).is_err());
        for public in ["https://8.8.8.8/hook", "https://[2606:4700::1111]:8443/x"] {
            assert_eq!(check_destination(public, false), Ok(()), "{public}");
        }
        for private in [
            "https://10.0.0.5/hook",
            "https://172.16.3.4/hook",
            "https://192.168.1.1:8443/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/hook",
            "https://0.0.0.0/hook",
            "https://[fd00::1]/hook",
            "https://[fe80::1]/hook",
            "https://[::ffff:10.0.0.1]/hook",
            "https://[::]/hook",
            "https://127.0.0.1/hook",
            "https://localhost/hook",
            "https://[::1]/hook",
            "http://8.8.8.8/hook",
            "ftp://8.8.8.8/hook",
            "https://user@8.8.8.8/hook",
        ] {
            assert!(check_destination(private, false).is_err(), "{private}");
            if !private.contains("127.0.0.1")
                && !private.contains("localhost")
                && !private.contains("[::1]")
            {
                assert!(check_destination(private, true).is_err(), "{private}");
            }
        }
        // Development and tests: loopback, also over http.
        for local in [
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "https://[::1]:9000/hook",
        ] {
            assert_eq!(check_destination(local, true), Ok(()), "{local}");
            assert!(check_destination(local, false).is_err(), "{local}");
        }
    }

    #[test]
    fn a_merchant_verifies_what_coffer_signs() {
        let secret = "whsec_0123";
        let body = br#"{"id":"evt_1","type":"payment.succeeded"}"#;
        let header = WebhookSecret::new(secret.as_bytes().to_vec()).sign(1_800_000_000, body);
        assert_eq!(verify(secret, &header, body, 1_800_000_010), Ok(()));
        assert_eq!(
            verify("whsec_other", &header, body, 1_800_000_010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(secret, &header, b"{}", 1_800_000_010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(secret, &header, body, 1_800_000_000 + 301),
            Err(SignatureError::OutsideWindow)
        );
    }
}
