//! Notifications through a transactional outbox.
//!
//! A message is written (encrypted) in the same database transaction as the
//! event that causes it, so nothing is sent for a change that rolled back and
//! nothing is lost if the process dies before sending. A dispatcher then
//! delivers due messages through the channel's `Transport`, retrying with
//! exponential back-off and moving a message to the dead-letter state after
//! `ATTEMPTS_MAX` failures. Delivery is at least once.
//!
//! Bodies can carry one-time codes: they are stored encrypted and erased once
//! delivered; the row keeps the template, the masked recipient and the outcome.
//!
//! Customer alerts (`alerts`) fan out from one call inside the event's
//! transaction: an in-app inbox row and an outbox message to the customer's
//! contact, each under a notification key, so an event that is derived again
//! (a resolver finishing a payment a crash interrupted) notifies once.

pub mod alerts;
mod dispatcher;
pub mod inbox;
pub mod preferences;
mod simulator;
pub mod smtp;

use coffer_core::Secret;
use coffer_store::sql::Sql;
use coffer_store::{sql_params, StoreError};
use coffer_vault::{EncryptedColumn, Vault, VaultError};

pub use dispatcher::{
    attempts, backoff_nanos, dead_letters, deliveries_for_owner, requeue, Attempt, DeadLetter,
    Delivery, Dispatcher, RetryPolicy, ATTEMPTS_MAX,
};
pub use simulator::{Delivered, SimulatedTransport, FAILING_SUFFIX};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    Email,
    /// An HTTPS POST to a merchant's endpoint: the recipient is the URL, the
    /// subject names whose signing key the transport signs the body with.
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        match text {
            "sms" => Some(Channel::Sms),
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("audit: {0}")]
    Audit(#[from] coffer_audit::AuditError),
    /// A caller's mistake: (field, reason).
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    #[error("{0} not found")]
    NotFound(&'static str),
}

/// Why a delivery failed; the dispatcher retries.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(pub String);

/// A connector to the outside world for one channel: an SMS gateway, an SMTP
/// relay. Implementations must be safe to call again for the same message.
pub trait Transport: Send + Sync {
    fn channel(&self) -> Channel;
    fn deliver(&self, recipient: &str, subject: &str, body: &str) -> Result<(), DeliveryError>;

    /// The same, with the message's notification key when it has one, for
    /// receivers to drop a repeat (at-least-once delivery: a crash between
    /// the send and its record sends again). E-mail puts it in `Message-ID`.
    fn deliver_keyed(
        &self,
        _key: Option<&str>,
        recipient: &str,
        subject: &str,
        body: &str,
    ) -> Result<(), DeliveryError> {
        self.deliver(recipient, subject, body)
    }
}

/// A message to queue.
#[derive(Debug)]
pub struct Message<'a> {
    pub channel: Channel,
    pub recipient: Secret<String>,
    pub recipient_masked: String,
    pub customer_id: Option<&'a str>,
    /// What kind of message (e.g. "registration_code"), kept after delivery.
    pub template: &'static str,
    pub subject: String,
    pub body: Secret<String>,
}

const RECIPIENT_CONTEXT: &str = "notification.recipient";
const BODY_CONTEXT: &str = "notification.body";

/// The outbox's encrypted columns, for re-encryption after a key rotation.
/// A delivered message's body is erased (NULL): nothing to move.
pub const ENCRYPTED_COLUMNS: [EncryptedColumn; 4] = [
    EncryptedColumn {
        table: "notifications",
        key: "seq",
        column: "recipient_enc",
        context: RECIPIENT_CONTEXT,
    },
    EncryptedColumn {
        table: "notifications",
        key: "seq",
        column: "body_enc",
        context: BODY_CONTEXT,
    },
    EncryptedColumn {
        table: "inbox",
        key: "seq",
        column: "content_enc",
        context: inbox::CONTENT_CONTEXT,
    },
    EncryptedColumn {
        table: "campaigns",
        key: "id",
        column: "content_enc",
        context: alerts::CAMPAIGN_CONTEXT,
    },
];

/// Queues `message` inside the caller's transaction.
pub fn enqueue(
    db: &mut dyn Sql,
    vault: &Vault,
    message: &Message<'_>,
    now: i64,
) -> Result<(), NotifyError> {
    enqueue_keyed(db, vault, message, None, now).map(|_| ())
}

/// Queues `message` under a notification key, inside the caller's
/// transaction; `false` (and nothing queued) when a message with this key
/// exists already, so an event derived twice is sent once.
pub fn enqueue_keyed(
    db: &mut dyn Sql,
    vault: &Vault,
    message: &Message<'_>,
    key: Option<&str>,
    now: i64,
) -> Result<bool, NotifyError> {
    let recipient = vault.encrypt_text(RECIPIENT_CONTEXT, message.recipient.expose())?;
    let body = vault.encrypt_text(
        BODY_CONTEXT,
        &format!("{}\n{}", message.subject, message.body.expose()),
    )?;
    // A webhook's subject names the merchant whose endpoint it is: kept in
    // clear for the merchant's delivery log (a merchant id is no secret).
    let owner = (message.channel == Channel::Webhook).then_some(message.subject.as_str());
    let inserted = db.execute(
        "INSERT INTO notifications (channel, recipient_enc, recipient_masked, customer_id, template, body_enc, \
         created_at, next_attempt_at, attempts, state, sent_at, last_error, notification_key, endpoint_owner) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 0, 'pending', NULL, NULL, $8, $9) ON CONFLICT DO NOTHING",
        sql_params![
            message.channel.as_str(),
            recipient,
            message.recipient_masked.as_str(),
            message.customer_id,
            message.template,
            body,
            now,
            key,
            owner
        ],
    )?;
    Ok(inserted == 1)
}

/// A row of the outbox as operators and tests see it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: i64,
    pub channel: String,
    pub recipient_masked: String,
    pub customer_id: Option<String>,
    pub template: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub body_erased: bool,
    pub notification_key: Option<String>,
}

pub fn entries(
    db: &mut dyn Sql,
    customer_id: Option<&str>,
) -> Result<Vec<OutboxEntry>, NotifyError> {
    let rows = db.query(
        "SELECT seq, channel, recipient_masked, customer_id, template, state, attempts, last_error, body_enc IS NULL, notification_key \
         FROM notifications WHERE (CAST($1 AS TEXT) IS NULL OR customer_id = $1) ORDER BY seq",
        sql_params![customer_id],
    )?;
    rows.iter()
        .map(|r| {
            Ok(OutboxEntry {
                seq: r.int(0)?,
                channel: r.text(1)?,
                recipient_masked: r.text(2)?,
                customer_id: r.opt_text(3)?,
                template: r.text(4)?,
                state: r.text(5)?,
                attempts: r.int(6)?,
                last_error: r.opt_text(7)?,
                body_erased: r.bool(8)?,
                notification_key: r.opt_text(9)?,
            })
        })
        .collect()
}
