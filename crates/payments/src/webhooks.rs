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
