//! Customer support tickets: a customer opens one (about one of their own
//! transactions, or their account), support staff answer in a thread, and
//! the ticket moves open → answered / awaiting_customer → resolved or
//! closed.
//!
//! What either side writes is the customer's personal data: every message
//! is stored only encrypted, is in the customer's data export and is erased
//! with their account (`export`, `erase`, called by `coffer-privacy`).
//! Staff read a thread only with `handle_support`, and each read and action
//! is appended to the audit log with the customer as subject in the same
//! transaction, so it appears in the customer's access log like any other
//! staff look at their data. The queue itself shows no customer text.
//!
//! This crate sits above identity (staff, alerts) and payments (the
//! activity a ticket refers to) and below privacy and the API.

mod model;

use std::sync::Arc;

use coffer_audit::{Entry, Outcome};
use coffer_core::Clock;
use coffer_identity::{Context, IdentityError, Permission, StaffInfo};
use coffer_notify::alerts::Bilingual;
use coffer_notify::preferences::Category;
use coffer_payments::Activity;
use coffer_store::sql::{Row, Sql, SqlStore};
use coffer_store::{sql_params, StoreError};
use coffer_vault::{EncryptedColumn, Vault, VaultError};
use rand::RngCore;

pub use model::{
    AuthorKind, Message, Thread, Ticket, TicketCategory, TicketState, MESSAGES_PER_TICKET_MAX,
    MESSAGE_CHARS_MAX, OPEN_TICKETS_MAX, QUEUE_PAGE_MAX, TICKETS_LISTED_MAX,
};

/// The vault purpose of `support_messages.body_enc`.
pub const MESSAGE_CONTEXT: &str = "support.message";

/// Where support keeps ciphertexts (what customers and staff wrote).
pub const ENCRYPTED_COLUMNS: [EncryptedColumn; 1] = [EncryptedColumn {
    table: "support_messages",
    key: "id",
    column: "body_enc",
    context: MESSAGE_CONTEXT,
}];

#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("this ticket is closed; open a new one")]
    Closed,
    #[error("this ticket is already resolved")]
    AlreadyResolved,
    #[error(
        "this ticket holds {MESSAGES_PER_TICKET_MAX} messages, the most it can; open a new one"
    )]
    Full,
    #[error("you have {OPEN_TICKETS_MAX} requests waiting already; reply in one of them or close one first")]
    TooManyOpen,
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("audit log: {0}")]
    Audit(#[from] coffer_audit::AuditError),
    #[error("notifications: {0}")]
    Notify(#[from] coffer_notify::NotifyError),
}

impl SupportError {
    fn invalid(field: &'static str, message: impl Into<String>) -> SupportError {
        SupportError::Invalid {
            field,
            message: message.into(),
        }
    }

    /// The stable machine code of a refusal.
    pub fn code(&self) -> &'static str {
        match self {
            SupportError::Invalid { .. } => "invalid_field",
            SupportError::NotFound(_) => "not_found",
            SupportError::Closed => "ticket_closed",
            SupportError::AlreadyResolved => "ticket_resolved",
            SupportError::Full => "ticket_full",
            SupportError::TooManyOpen => "too_many_open_tickets",
            SupportError::Identity(_)
            | SupportError::Store(_)
            | SupportError::Vault(_)
            | SupportError::Audit(_)
            | SupportError::Notify(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            SupportError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Who asked, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Requester {
    pub customer_id: String,
    pub ip: String,
}

/// A new ticket as the customer asked it.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub category: TicketCategory,
    /// One of the customer's own activity ids (`act_…`), if the question is
    /// about a transaction.
    pub activity_id: Option<String>,
    pub body: String,
}

/// What a staff answer leaves the ticket waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffReply {
    /// The bank answered.
    Answer,
    /// The bank needs something from the customer.
    AskCustomer,
}

pub struct Support {
    sql: Arc<SqlStore>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    activity: Arc<Activity>,
}

const TICKET_COLUMNS: &str =
    "id, customer_id, activity_id, category, state, assigned_to, messages, created_at, updated_at, closed_at";

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

fn ticket_of(row: &Row) -> Result<Ticket, StoreError> {
    let category = row.text(3)?;
    let state = row.text(4)?;
    Ok(Ticket {
        id: row.text(0)?,
        customer_id: row.text(1)?,
        activity_id: row.opt_text(2)?,
        category: TicketCategory::parse(&category)
            .ok_or_else(|| StoreError::Corrupt(format!("ticket category {category}")))?,
        state: TicketState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("ticket state {state}")))?,
        assigned_to: row.opt_text(5)?,
        messages: row.int(6)?,
        created_at: row.int(7)?,
        updated_at: row.int(8)?,
        closed_at: row.opt_int(9)?,
    })
}

/// The customer's ticket, or not found (someone else's is not found too:
/// ticket ids are not probed).
fn own_ticket(db: &mut dyn Sql, customer_id: &str, id: &str) -> Result<Ticket, SupportError> {
    let row = db
        .query_opt(
            &format!(
                "SELECT {TICKET_COLUMNS} FROM support_tickets WHERE id = $1 AND customer_id = $2"
            ),
            sql_params![id, customer_id],
        )?
        .ok_or(SupportError::NotFound("ticket"))?;
    Ok(ticket_of(&row)?)
}

fn any_ticket(db: &mut dyn Sql, id: &str) -> Result<Ticket, SupportError> {
    let row = db
        .query_opt(
            &format!("SELECT {TICKET_COLUMNS} FROM support_tickets WHERE id = $1"),
            sql_params![id],
        )?
        .ok_or(SupportError::NotFound("ticket"))?;
    Ok(ticket_of(&row)?)
}

/// Why a ticket that exists took no message: closed, or full.
fn refusal(ticket: &Ticket) -> SupportError {
    if ticket.state == TicketState::Closed {
        SupportError::Closed
    } else {
        SupportError::Full
    }
}

/// A thread's messages in order, decrypted (an erased body reads empty).
fn read_messages(
    db: &mut dyn Sql,
    vault: &Vault,
    ticket_id: &str,
) -> Result<Vec<Message>, SupportError> {
    let rows = db.query(
        "SELECT id, position, author_kind, author, body_enc, created_at FROM support_messages \
         WHERE ticket_id = $1 ORDER BY position",
        sql_params![ticket_id],
    )?;
    let mut messages = Vec::with_capacity(rows.len());
    for r in &rows {
        let kind = r.text(2)?;
        let blob = r.bytes(4)?;
        messages.push(Message {
            id: r.text(0)?,
            position: r.int(1)?,
            author_kind: AuthorKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("message author kind {kind}")))?,
            author: r.text(3)?,
            body: if blob.is_empty() {
                String::new()
            } else {
                vault.decrypt_text(MESSAGE_CONTEXT, &blob)?.expose().clone()
            },
            created_at: r.int(5)?,
        });
    }
    Ok(messages)
}

/// Trimmed, bounded, printable, and no full card number (PCI DSS 3.4:
/// a PAN is never kept in free text; the last four are enough to ask).
fn checked_body(text: &str) -> Result<String, SupportError> {
    let body = text.trim();
    if body.is_empty() {
        return Err(SupportError::invalid("message", "write your message"));
    }
    if body.chars().count() > MESSAGE_CHARS_MAX {
        return Err(SupportError::invalid(
            "message",
            format!("at most {MESSAGE_CHARS_MAX} characters"),
        ));
    }
    if body
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(SupportError::invalid(
            "message",
            "control characters are not allowed",
        ));
    }
    if coffer_notify::alerts::contains_card_number(body) {
        return Err(SupportError::invalid(
            "message",
            "never write a full card number; the last four digits are enough",
        ));
    }
    Ok(body.to_string())
}

impl Support {
    pub fn new(
        sql: Arc<SqlStore>,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        activity: Arc<Activity>,
    ) -> Support {
        Support {
            sql,
            vault,
            clock,
            activity,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    fn audit(
        &self,
        db: &mut dyn Sql,
        actor: &str,
        action: &str,
        subject: Option<&str>,
        ip: &str,
        detail: &str,
    ) -> Result<(), SupportError> {
        coffer_audit::append(
            db,
            &Entry {
                at: self.now(),
                actor,
                action,
                subject,
                ip,
                outcome: Outcome::Ok,
                detail,
            },
        )?;
        Ok(())
    }

    /// Appends a message at the ticket's next position (claimed by the
    /// caller's update of `messages`).
    fn insert_message(
        &self,
        db: &mut dyn Sql,
        ticket_id: &str,
        position: i64,
        (kind, author): (AuthorKind, &str),
        body: &str,
        now: i64,
    ) -> Result<(), SupportError> {
        let sealed = self.vault.encrypt_text(MESSAGE_CONTEXT, body)?;
        db.execute(
            "INSERT INTO support_messages (id, ticket_id, position, author_kind, author, body_enc, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            sql_params![
                format!("tkm_{}", random_hex(10)),
                ticket_id,
                position,
                kind.as_str(),
                author,
                sealed,
                now
            ],
        )?;
        Ok(())
    }

    fn read_thread(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        ticket_id: &str,
    ) -> Result<Thread, SupportError> {
        let ticket = own_ticket(db, customer_id, ticket_id)?;
        let messages = read_messages(db, &self.vault, ticket_id)?;
        Ok(Thread { ticket, messages })
    }

    // ---- the customer's side -------------------------------------------------------

    /// Opens a ticket with its first message. A transaction named must be
    /// the customer's own (someone else's is "not found", never confirmed).
    pub fn open(&self, requester: &Requester, new: &NewTicket) -> Result<Ticket, SupportError> {
        let customer_id = requester.customer_id.as_str();
        let body = checked_body(&new.body)?;
        if let Some(activity_id) = &new.activity_id {
            // Activity rows never change owner, so this check may precede the
            // transaction that records the ticket.
            if self.activity.get(customer_id, activity_id)?.is_none() {
                return Err(SupportError::invalid(
                    "transaction_id",
                    "no such transaction in your history",
                ));
            }
        }
        let now = self.now();
        let ticket = Ticket {
            id: format!("tkt_{}", random_hex(8)),
            customer_id: customer_id.to_string(),
            activity_id: new.activity_id.clone(),
            category: new.category,
            state: TicketState::Open,
            assigned_to: None,
            messages: 1,
            created_at: now,
            updated_at: now,
            closed_at: None,
        };
        self.sql.transaction(|db| -> Result<(), SupportError> {
            // One customer's opens run one at a time, or two concurrent ones
            // could each count 19 waiting tickets and both add a 20th (on
            // PostgreSQL; SQLite transactions are serial already). Touching
            // the customer's row holds its lock until this transaction ends.
            db.execute(
                "UPDATE customers SET updated_at = updated_at WHERE id = $1",
                sql_params![customer_id],
            )?;
            let waiting = db
                .query_one(
                    "SELECT COUNT(*) FROM support_tickets WHERE customer_id = $1 AND state IN ('open', 'answered', 'awaiting_customer')",
                    sql_params![customer_id],
                )?
                .int(0)?;
            if waiting >= OPEN_TICKETS_MAX {
                return Err(SupportError::TooManyOpen);
            }
            db.execute(
                "INSERT INTO support_tickets (id, customer_id, activity_id, category, state, assigned_to, messages, created_at, updated_at, closed_at) \
                 VALUES ($1, $2, $3, $4, $5, NULL, 1, $6, $6, NULL)",
                sql_params![
                    ticket.id.as_str(),
                    customer_id,
                    ticket.activity_id.clone(),
                    ticket.category.as_str(),
                    ticket.state.as_str(),
                    now
                ],
            )?;
            let actor = coffer_audit::customer_actor(customer_id);
            self.insert_message(db, &ticket.id, 0, (AuthorKind::Customer, &actor), &body, now)?;
            self.audit(db, &actor, "support_ticket_opened", Some(customer_id), &requester.ip, &ticket.id)
        })?;
        Ok(ticket)
    }

    /// The customer's tickets, newest first (at most `TICKETS_LISTED_MAX`).
    pub fn tickets_of(&self, customer_id: &str) -> Result<Vec<Ticket>, SupportError> {
        let rows = self.sql.run(|db| {
            db.query(
                &format!(
                    "SELECT {TICKET_COLUMNS} FROM support_tickets WHERE customer_id = $1 \
                     ORDER BY created_at DESC, id LIMIT $2"
                ),
                sql_params![customer_id, TICKETS_LISTED_MAX],
            )
        })?;
        Ok(rows.iter().map(ticket_of).collect::<Result<_, _>>()?)
    }

    /// One of the customer's tickets with its messages.
    pub fn thread_of(&self, customer_id: &str, ticket_id: &str) -> Result<Thread, SupportError> {
        self.sql
            .run(|db| Ok(self.read_thread(db, customer_id, ticket_id)))?
    }

    /// The customer writes again; the ticket waits for the bank (a resolved
    /// one is reopened).
    pub fn reply_as_customer(
        &self,
        requester: &Requester,
        ticket_id: &str,
        body: &str,
    ) -> Result<Ticket, SupportError> {
        let customer_id = requester.customer_id.as_str();
        let body = checked_body(body)?;
        let now = self.now();
        self.sql.transaction(|db| -> Result<Ticket, SupportError> {
            let claimed = db.query_opt(
                "UPDATE support_tickets SET messages = messages + 1, state = 'open', updated_at = $3 \
                 WHERE id = $1 AND customer_id = $2 AND state <> 'closed' AND messages < $4 RETURNING messages",
                sql_params![ticket_id, customer_id, now, MESSAGES_PER_TICKET_MAX],
            )?;
            let Some(claimed) = claimed else {
                return Err(refusal(&own_ticket(db, customer_id, ticket_id)?));
            };
            let actor = coffer_audit::customer_actor(customer_id);
            let position = claimed.int(0)? - 1;
            self.insert_message(db, ticket_id, position, (AuthorKind::Customer, &actor), &body, now)?;
            self.audit(db, &actor, "support_ticket_replied", Some(customer_id), &requester.ip, ticket_id)?;
            own_ticket(db, customer_id, ticket_id)
        })
    }

    /// The customer closes the ticket: final (a new question is a new ticket).
    pub fn close(&self, requester: &Requester, ticket_id: &str) -> Result<Ticket, SupportError> {
        let customer_id = requester.customer_id.as_str();
        let now = self.now();
        self.sql.transaction(|db| -> Result<Ticket, SupportError> {
            let closed = db.execute(
                "UPDATE support_tickets SET state = 'closed', closed_at = $3, updated_at = $3 \
                 WHERE id = $1 AND customer_id = $2 AND state <> 'closed'",
                sql_params![ticket_id, customer_id, now],
            )?;
            if closed != 1 {
                own_ticket(db, customer_id, ticket_id)?;
                return Err(SupportError::Closed);
            }
            let actor = coffer_audit::customer_actor(customer_id);
            self.audit(
                db,
                &actor,
                "support_ticket_closed",
                Some(customer_id),
                &requester.ip,
                ticket_id,
            )?;
            own_ticket(db, customer_id, ticket_id)
        })
    }

    // ---- the bank's side -----------------------------------------------------------

    /// The support queue, oldest waiting first; no customer text in it. One
    /// audit record for the look (the rows hold ids, categories and states).
    pub fn queue(
        &self,
        staff: &StaffInfo,
        state: Option<TicketState>,
        limit: i64,
        context: &Context,
    ) -> Result<Vec<Ticket>, SupportError> {
        staff.require(Permission::HandleSupport)?;
        let limit = limit.clamp(1, QUEUE_PAGE_MAX);
        self.sql.transaction(|db| -> Result<Vec<Ticket>, SupportError> {
            let rows = match state {
                Some(state) => db.query(
                    &format!(
                        "SELECT {TICKET_COLUMNS} FROM support_tickets WHERE state = $1 ORDER BY updated_at, id LIMIT $2"
                    ),
                    sql_params![state.as_str(), limit],
                )?,
                None => db.query(
                    &format!(
                        "SELECT {TICKET_COLUMNS} FROM support_tickets WHERE state IN ('open', 'answered', 'awaiting_customer') \
                         ORDER BY updated_at, id LIMIT $1"
                    ),
                    sql_params![limit],
                )?,
            };
            let tickets = rows.iter().map(ticket_of).collect::<Result<Vec<_>, _>>()?;
            let detail = format!(
                "state {} ({} shown)",
                state.map_or("waiting", TicketState::as_str),
                tickets.len()
            );
            self.audit(db, &staff.actor(), "support_queue_viewed", None, &context.ip, &detail)?;
            Ok(tickets)
        })
    }

    /// A ticket with its messages, for staff: audited with the customer as
    /// subject, in the transaction that reads it.
    pub fn staff_thread(
        &self,
        staff: &StaffInfo,
        ticket_id: &str,
        context: &Context,
    ) -> Result<Thread, SupportError> {
        staff.require(Permission::HandleSupport)?;
        self.sql.transaction(|db| -> Result<Thread, SupportError> {
            let ticket = any_ticket(db, ticket_id)?;
            let messages = read_messages(db, &self.vault, ticket_id)?;
            self.audit(
                db,
                &staff.actor(),
                "support_ticket_viewed",
                Some(&ticket.customer_id),
                &context.ip,
                ticket_id,
            )?;
            Ok(Thread { ticket, messages })
        })
    }

    /// Staff answer; the customer is told in the app, in the same transaction.
    pub fn reply_as_staff(
        &self,
        staff: &StaffInfo,
        ticket_id: &str,
        body: &str,
        reply: StaffReply,
        context: &Context,
    ) -> Result<Ticket, SupportError> {
        staff.require(Permission::HandleSupport)?;
        let body = checked_body(body)?;
        let state = match reply {
            StaffReply::Answer => TicketState::Answered,
            StaffReply::AskCustomer => TicketState::AwaitingCustomer,
        };
        let now = self.now();
        let actor = staff.actor();
        self.sql.transaction(|db| -> Result<Ticket, SupportError> {
            let claimed = db.query_opt(
                "UPDATE support_tickets SET messages = messages + 1, state = $2, assigned_to = $3, updated_at = $4 \
                 WHERE id = $1 AND state <> 'closed' AND messages < $5 RETURNING messages, customer_id",
                sql_params![ticket_id, state.as_str(), actor.as_str(), now, MESSAGES_PER_TICKET_MAX],
            )?;
            let Some(claimed) = claimed else {
                return Err(refusal(&any_ticket(db, ticket_id)?));
            };
            let (position, customer_id) = (claimed.int(0)? - 1, claimed.text(1)?);
            self.insert_message(db, ticket_id, position, (AuthorKind::Staff, &actor), &body, now)?;
            self.audit(db, &actor, "support_ticket_answered", Some(&customer_id), &context.ip, ticket_id)?;
            self.tell_customer(db, &customer_id, ticket_id, &format!("{ticket_id}:{position}"), false)?;
            any_ticket(db, ticket_id)
        })
    }

    /// Staff mark the ticket resolved, with a last message if they give one;
    /// the customer is told and may reopen it by replying.
    pub fn resolve(
        &self,
        staff: &StaffInfo,
        ticket_id: &str,
        body: Option<&str>,
        context: &Context,
    ) -> Result<Ticket, SupportError> {
        staff.require(Permission::HandleSupport)?;
        let body = body
            .filter(|b| !b.trim().is_empty())
            .map(checked_body)
            .transpose()?;
        let now = self.now();
        let actor = staff.actor();
        self.sql.transaction(|db| -> Result<Ticket, SupportError> {
            let added = i64::from(body.is_some());
            let claimed = db.query_opt(
                "UPDATE support_tickets SET messages = messages + $2, state = 'resolved', assigned_to = $3, updated_at = $4 \
                 WHERE id = $1 AND state NOT IN ('closed', 'resolved') AND messages + $2 <= $5 RETURNING messages, customer_id",
                sql_params![ticket_id, added, actor.as_str(), now, MESSAGES_PER_TICKET_MAX],
            )?;
            let Some(claimed) = claimed else {
                let ticket = any_ticket(db, ticket_id)?;
                return Err(if ticket.state == TicketState::Resolved {
                    SupportError::AlreadyResolved
                } else {
                    refusal(&ticket)
                });
            };
            let (messages, customer_id) = (claimed.int(0)?, claimed.text(1)?);
            if let Some(body) = &body {
                self.insert_message(db, ticket_id, messages - 1, (AuthorKind::Staff, &actor), body, now)?;
            }
            self.audit(db, &actor, "support_ticket_resolved", Some(&customer_id), &context.ip, ticket_id)?;
            self.tell_customer(db, &customer_id, ticket_id, &format!("{ticket_id}:resolved:{messages}"), true)?;
            any_ticket(db, ticket_id)
        })
    }

    /// An in-app alert that the bank answered; the text never repeats the
    /// message (alerts are shown on lock screens).
    fn tell_customer(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        ticket_id: &str,
        key: &str,
        resolved: bool,
    ) -> Result<(), SupportError> {
        let text = if resolved {
            Bilingual::new(
                "Your support request was resolved",
                format!("The bank marked your request {ticket_id} as resolved. Reply in Help if you still need help."),
                "您的咨询已解决",
                format!("银行已将您的咨询 {ticket_id} 标记为已解决。如仍需帮助，请在“帮助”中回复。"),
            )
        } else {
            Bilingual::new(
                "Bank support replied",
                format!("The bank replied to your request {ticket_id}. Open Help to read it."),
                "客服已回复",
                format!("银行已回复您的咨询 {ticket_id}，请在“帮助”中查看。"),
            )
        };
        coffer_notify::alerts::send(
            db,
            &self.vault,
            &coffer_notify::alerts::Alert {
                customer_id,
                key: &format!("support:{key}"),
                category: Category::Support,
                template: if resolved {
                    "support_resolved"
                } else {
                    "support_reply"
                },
                text,
            },
            None,
            self.now(),
        )?;
        Ok(())
    }

    /// The support queue for the back office's overview: tickets waiting for
    /// the bank, and since when the oldest has waited.
    pub fn queue_summaries(&self) -> Result<Vec<coffer_identity::QueueSummary>, SupportError> {
        let row = self.sql.run(|db| {
            db.query_one(
                "SELECT COUNT(*), MIN(updated_at) FROM support_tickets WHERE state = 'open'",
                &[],
            )
        })?;
        Ok(vec![("support_tickets", row.int(0)?, row.opt_int(1)?)])
    }
}

/// Every ticket of the customer with its messages decrypted, oldest first:
/// for the data export, inside the caller's transaction.
pub fn export(
    db: &mut dyn Sql,
    vault: &Vault,
    customer_id: &str,
) -> Result<Vec<Thread>, SupportError> {
    let rows = db.query(
        &format!("SELECT {TICKET_COLUMNS} FROM support_tickets WHERE customer_id = $1 ORDER BY created_at, id"),
        sql_params![customer_id],
    )?;
    let mut threads = Vec::with_capacity(rows.len());
    for row in &rows {
        let ticket = ticket_of(row)?;
        let messages = read_messages(db, vault, &ticket.id)?;
        threads.push(Thread { ticket, messages });
    }
    Ok(threads)
}

/// Erasure, inside the caller's transaction: every message of the
/// customer's tickets is deleted (what they and staff wrote); the tickets
/// stay closed under the pseudonymous id, holding only category, state and
/// times, because the audit log names them.
pub fn erase(db: &mut dyn Sql, customer_id: &str, now: i64) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM support_messages WHERE ticket_id IN (SELECT id FROM support_tickets WHERE customer_id = $1)",
        sql_params![customer_id],
    )?;
    db.execute(
        "UPDATE support_tickets SET messages = 0, state = 'closed', closed_at = COALESCE(closed_at, $2), updated_at = $2 \
         WHERE customer_id = $1",
        sql_params![customer_id, now],
    )?;
    Ok(())
}

/// Tables an erasure touches (PostgreSQL vacuums them afterwards).
pub const ERASED_TABLES: [&str; 2] = ["support_tickets", "support_messages"];
