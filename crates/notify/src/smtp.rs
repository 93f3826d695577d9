//! E-mail over SMTP (`lettre`, rustls): the real transport for the `email`
//! channel. The simulator stays the default; `coffer serve` builds this one
//! when `[smtp]` is configured.

use std::time::Duration;

use coffer_core::Secret;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::Transport as _;

use crate::{Channel, DeliveryError, Transport};

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same host or a test sink.
    None,
    /// STARTTLS on the submission port (587), required, never downgraded.
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

impl SmtpTls {
    pub fn parse(text: &str) -> Option<SmtpTls> {
        match text {
            "none" => Some(SmtpTls::None),
            "starttls" => Some(SmtpTls::StartTls),
            "tls" => Some(SmtpTls::Implicit),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::None => "none",
            SmtpTls::StartTls => "starttls",
            SmtpTls::Implicit => "tls",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    /// `Coffer <no-reply@bank.example>`.
    pub from: String,
    pub timeout: Duration,
}

pub struct SmtpTransport {
    mailer: lettre::SmtpTransport,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// A `Message-ID` from a notification key: receivers (and tests) drop a
/// second copy of the same message by it.
pub fn message_id(key: &str) -> String {
    let local: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("<{local}@notifications.coffer>")
}

/// Whether `text` is an address lettre can send from (`Name <a@b.example>`).
pub fn valid_mailbox(text: &str) -> bool {
    text.parse::<Mailbox>().is_ok()
}

impl SmtpTransport {
    pub fn new(settings: &SmtpSettings) -> Result<SmtpTransport, String> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| format!("smtp.from: {e}"))?;
        let tls = match settings.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => Tls::Required(
                TlsParameters::new(settings.host.clone()).map_err(|e| format!("smtp tls: {e}"))?,
            ),
            SmtpTls::Implicit => Tls::Wrapper(
                TlsParameters::new(settings.host.clone()).map_err(|e| format!("smtp tls: {e}"))?,
            ),
        };
        let mut builder = lettre::SmtpTransport::builder_dangerous(settings.host.clone())
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        Ok(SmtpTransport {
            mailer: builder.build(),
            from,
        })
    }
}

impl Transport for SmtpTransport {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn deliver(&self, recipient: &str, subject: &str, body: &str) -> Result<(), DeliveryError> {
        self.deliver_keyed(None, recipient, subject, body)
    }

    fn deliver_keyed(
        &self,
        key: Option<&str>,
        recipient: &str,
        subject: &str,
        body: &str,
    ) -> Result<(), DeliveryError> {
        let to: Mailbox = recipient
            .parse()
            .map_err(|_| DeliveryError("not an e-mail address".into()))?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(key.map(message_id))
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| DeliveryError(format!("e-mail: {e}")))?;
        // The stored error is the relay's status code or the kind of
        // failure, never its text: a relay's answer can quote the address.
        self.mailer.send(&email).map(|_| ()).map_err(|e| {
            DeliveryError(match e.status() {
                Some(code) => format!("smtp: the relay answered {code}"),
                None if e.is_timeout() => "smtp: timed out".into(),
                None if e.is_tls() => "smtp: TLS failed".into(),
                None => "smtp: could not reach the relay".into(),
            })
        })
    }
}
