//! A simulated SMS gateway / mail relay: records what it would have sent, so
//! demos can show it and tests can read the code a customer would receive.
//! Recipients ending in `FAILING_SUFFIX` fail, to exercise retries.

use std::sync::Mutex;

use coffer_core::Secret;

use crate::{Channel, DeliveryError, Transport};

/// Recipients ending in this fail every delivery (a documented test number).
pub const FAILING_SUFFIX: &str = "0000000";

#[derive(Debug, Clone)]
pub struct Delivered {
    pub recipient: String,
    pub subject: String,
    pub body: Secret<String>,
}

#[derive(Debug)]
pub struct SimulatedTransport {
    channel: Channel,
    delivered: Mutex<Vec<Delivered>>,
    /// Demo mode: show each message on the console, which stands in for the
    /// customer's phone. Never the log, and never outside `--demo`.
    console: bool,
}

impl SimulatedTransport {
    pub fn new(channel: Channel) -> SimulatedTransport {
        SimulatedTransport {
            channel,
            delivered: Mutex::new(Vec::new()),
            console: false,
        }
    }

    /// A simulator that also prints what it delivers to stdout (demo mode).
    pub fn on_console(channel: Channel) -> SimulatedTransport {
        SimulatedTransport {
            console: true,
            ..SimulatedTransport::new(channel)
        }
    }

    /// Everything delivered to `recipient`, oldest first.
    pub fn to(&self, recipient: &str) -> Vec<Delivered> {
        self.delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|d| d.recipient == recipient)
            .cloned()
            .collect()
    }

    /// The last run of 6 digits in the newest message to `recipient`.
    pub fn last_code(&self, recipient: &str) -> Option<String> {
        let body = self.to(recipient).pop()?.body;
        let text = body.expose();
        let bytes = text.as_bytes();
        (0..bytes.len().saturating_sub(5))
            .rev()
            .find(|&i| {
                bytes[i..i + 6].iter().all(u8::is_ascii_digit)
                    && (i == 0 || !bytes[i - 1].is_ascii_digit())
                    && bytes.get(i + 6).is_none_or(|b| !b.is_ascii_digit())
            })
            .map(|i| text[i..i + 6].to_string())
    }

    pub fn count(&self) -> usize {
        self.delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Transport for SimulatedTransport {
    fn channel(&self) -> Channel {
        self.channel
    }

    fn deliver(&self, recipient: &str, subject: &str, body: &str) -> Result<(), DeliveryError> {
        if recipient.ends_with(FAILING_SUFFIX) {
            return Err(DeliveryError(format!(
                "simulated {} gateway: recipient unreachable",
                self.channel.as_str()
            )));
        }
        if self.console {
            println!(
                "[simulated {} to {recipient}] {subject}: {body}",
                self.channel.as_str()
            );
        }
        self.delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Delivered {
                recipient: recipient.to_string(),
                subject: subject.to_string(),
                body: Secret::new(body.to_string()),
            });
        Ok(())
    }
}
