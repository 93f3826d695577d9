//! The outside world money comes from and goes to: the card network (top-ups
//! by card) and the bank's core banking system (top-ups from and payouts to
//! bank accounts). Each is a trait a real connector implements; the built-in
//! simulators (`simulator.rs`) implement the same traits.
//!
//! Results are asynchronous, as with real networks: a request is accepted
//! (or asks for a 3-D Secure challenge) and its outcome arrives later as a
//! callback, a webhook signed with HMAC-SHA256 over `timestamp.body`. When no
//! callback comes, a status query by our own reference resolves it. Every
//! request carries our funding id as its merchant reference, and the
//! connector treats a repeated merchant reference as the same request: that
//! is what makes a retry after a crash safe.

use coffer_core::{Amount, Currency, Secret};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A callback older or newer than this (by its signed timestamp) is refused,
/// so a captured request cannot be replayed later.
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;
/// The header that carries `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "coffer-signature";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectorKind {
    CardNetwork,
    CoreBanking,
}

impl ConnectorKind {
    pub const ALL: [ConnectorKind; 2] = [ConnectorKind::CardNetwork, ConnectorKind::CoreBanking];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::CardNetwork => "card_network",
            ConnectorKind::CoreBanking => "core_banking",
        }
    }

    pub fn parse(text: &str) -> Option<ConnectorKind> {
        ConnectorKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// What the connector is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Charge a card (card network).
    Authorization,
    /// Pull funds from the customer's bank account into the bank (core banking).
    Collection,
    /// Pay funds out to a bank account (core banking).
    Payout,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Authorization => "authorization",
            Operation::Collection => "collection",
            Operation::Payout => "payout",
        }
    }

    pub fn parse(text: &str) -> Option<Operation> {
        [
            Operation::Authorization,
            Operation::Collection,
            Operation::Payout,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// One request to a connector. `instrument` is the card number or the
/// account number: it reaches the connector and nothing else.
#[derive(Debug)]
pub struct Instruction<'a> {
    pub merchant_reference: &'a str,
    pub instrument: &'a Secret<String>,
    pub amount: Amount,
    pub currency: Currency,
}

/// The connector's immediate answer: never the outcome itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// Taken; the outcome comes by callback.
    Accepted { reference: String },
    /// The issuer wants the cardholder to authenticate (3-D Secure) first.
    ChallengeRequired { reference: String },
}

impl Submission {
    pub fn reference(&self) -> &str {
        match self {
            Submission::Accepted { reference } | Submission::ChallengeRequired { reference } => {
                reference
            }
        }
    }
}

/// Where an operation stands at the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Still working on it (or waiting for the cardholder's challenge).
    Pending,
    Succeeded,
    Failed {
        reason: String,
    },
    /// The connector never saw this merchant reference.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connector unavailable: {0}")]
pub struct ConnectorError(pub String);

/// A settled operation in the connector's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementLine {
    pub reference: String,
    pub merchant_reference: String,
    pub operation: Operation,
    pub amount: i64,
    pub currency: String,
    /// When the connector received the request (ns).
    pub submitted_at: i64,
}

/// The card network: authorizes a charge on a card.
pub trait CardNetwork: Send + Sync {
    fn authorize(&self, instruction: &Instruction<'_>) -> Result<Submission, ConnectorError>;
    /// Passes the cardholder's answer to the issuer's 3-D Secure challenge.
    fn complete_challenge(
        &self,
        merchant_reference: &str,
        answer: &Secret<String>,
    ) -> Result<(), ConnectorError>;
    fn status(&self, merchant_reference: &str) -> Result<Status, ConnectorError>;
    /// Operations settled with submission time in `[from, until)`.
    fn settlement_report(
        &self,
        from: i64,
        until: i64,
    ) -> Result<Vec<SettlementLine>, ConnectorError>;
}

/// The bank's core banking system: moves money between the wallet's
/// settlement account and customers' bank accounts.
pub trait CoreBanking: Send + Sync {
    /// Pulls funds from the customer's own bank account (a top-up).
    fn collect(&self, instruction: &Instruction<'_>) -> Result<Submission, ConnectorError>;
    /// Pays funds out to a bank account (a withdrawal).
    fn pay_out(&self, instruction: &Instruction<'_>) -> Result<Submission, ConnectorError>;
    fn status(&self, merchant_reference: &str) -> Result<Status, ConnectorError>;
    fn settlement_report(
        &self,
        from: i64,
        until: i64,
    ) -> Result<Vec<SettlementLine>, ConnectorError>;
}

/// A callback's body, as both connectors send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Callback {
    /// Unique per event; a redelivery repeats it.
    pub event_id: String,
    /// authorization, collection or payout.
    pub operation: String,
    pub reference: String,
    pub merchant_reference: String,
    /// succeeded or failed.
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    pub amount: i64,
    pub currency: String,
}

/// The secret a connector signs its callbacks with, shared with us.
#[derive(Clone)]
pub struct WebhookSecret(Secret<Vec<u8>>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    pub fn new(bytes: Vec<u8>) -> WebhookSecret {
        WebhookSecret(Secret::new(bytes))
    }

    /// 32 random bytes: for a simulator and the verifier sharing one process.
    pub fn generate() -> WebhookSecret {
        use rand::RngCore;
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        WebhookSecret::new(bytes)
    }

    fn mac(&self, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose())
            .expect("HMAC takes a key of any length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The signature header's value for `body` sent at `timestamp` (unix seconds).
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(timestamp, body).finalize().into_bytes();
        format!("t={timestamp},v1={}", hex::encode(tag))
    }

    /// Checks a signature header against the body at `now` (unix seconds).
    pub fn verify(&self, header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
        let mut timestamp = None;
        let mut tags = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
                Some(("v1", value)) => tags.push(hex::decode(value).ok()),
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
        if tags.is_empty() {
            return Err(SignatureError::Malformed);
        }
        if (now - timestamp).abs() > SIGNATURE_TOLERANCE_SECONDS {
            return Err(SignatureError::OutsideWindow);
        }
        // `verify_slice` compares in constant time.
        let valid = tags
            .into_iter()
            .flatten()
            .any(|tag| self.mac(timestamp, body).verify_slice(&tag).is_ok());
        if valid {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing or malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the {SIGNATURE_TOLERANCE_SECONDS} s window")]
    OutsideWindow,
    #[error("the signature does not match")]
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_body_and_time_and_expire() {
        let secret = WebhookSecret::new(b"whsec-test".to_vec());
        let body = br#"{"event_id":"evt_1"}"#;
        let header = secret.sign(1_700_000_000, body);
        assert_eq!(secret.verify(&header, body, 1_700_000_100), Ok(()));
        assert_eq!(
            secret.verify(&header, br#"{"event_id":"evt_2"}"#, 1_700_000_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            secret.verify(
                &header,
                body,
                1_700_000_000 + SIGNATURE_TOLERANCE_SECONDS + 1
            ),
            Err(SignatureError::OutsideWindow)
        );
        let other = WebhookSecret::new(b"another".to_vec());
        assert_eq!(
            other.verify(&header, body, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            secret.verify("v1=00", body, 1_700_000_000),
            Err(SignatureError::Malformed)
        );
        // A moved timestamp breaks the signature, so the window cannot be dodged.
        let moved = header.replace("t=1700000000", "t=1700000200");
        assert_eq!(
            secret.verify(&moved, body, 1_700_000_200),
            Err(SignatureError::Mismatch)
        );
    }
}
