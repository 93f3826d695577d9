//! Tickets and messages as the service hands them out, their closed sets of
//! categories and states, and the named bounds.

/// The longest message, in characters (a few paragraphs; a screenshot or a
/// statement is not something to paste here).
pub const MESSAGE_CHARS_MAX: usize = 2_000;
/// Tickets a customer may have waiting (open, answered, awaiting them) at
/// once: enough for any real need, a bound on a script that floods support.
pub const OPEN_TICKETS_MAX: i64 = 20;
/// Most messages one ticket holds: a thread longer than this is a new
/// ticket (and a bound on what one ticket can make the bank store).
pub const MESSAGES_PER_TICKET_MAX: i64 = 200;
/// Most tickets "my requests" lists (newest first).
pub const TICKETS_LISTED_MAX: i64 = 100;
/// Most tickets one page of the staff queue returns.
pub const QUEUE_PAGE_MAX: i64 = 200;

/// What the customer asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketCategory {
    PaymentProblem,
    Refund,
    FraudReport,
    Account,
    Other,
}

impl TicketCategory {
    pub const ALL: [TicketCategory; 5] = [
        TicketCategory::PaymentProblem,
        TicketCategory::Refund,
        TicketCategory::FraudReport,
        TicketCategory::Account,
        TicketCategory::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TicketCategory::PaymentProblem => "payment_problem",
            TicketCategory::Refund => "refund",
            TicketCategory::FraudReport => "fraud_report",
            TicketCategory::Account => "account",
            TicketCategory::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<TicketCategory> {
        TicketCategory::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// Where a ticket stands. `open` waits for the bank; `answered` and
/// `awaiting_customer` wait for the customer; `resolved` (by staff) can be
/// reopened by the customer's reply; `closed` (by the customer) is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketState {
    Open,
    Answered,
    AwaitingCustomer,
    Resolved,
    Closed,
}

impl TicketState {
    pub const ALL: [TicketState; 5] = [
        TicketState::Open,
        TicketState::Answered,
        TicketState::AwaitingCustomer,
        TicketState::Resolved,
        TicketState::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::Open => "open",
            TicketState::Answered => "answered",
            TicketState::AwaitingCustomer => "awaiting_customer",
            TicketState::Resolved => "resolved",
            TicketState::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<TicketState> {
        TicketState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorKind {
    Customer,
    Staff,
}

impl AuthorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorKind::Customer => "customer",
            AuthorKind::Staff => "staff",
        }
    }

    pub fn parse(text: &str) -> Option<AuthorKind> {
        [AuthorKind::Customer, AuthorKind::Staff]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub id: String,
    pub customer_id: String,
    pub activity_id: Option<String>,
    pub category: TicketCategory,
    pub state: TicketState,
    /// The staff actor who last answered.
    pub assigned_to: Option<String>,
    pub messages: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub position: i64,
    pub author_kind: AuthorKind,
    /// The audit actor (`customer:<id>`, `staff:<username>`): shown to staff
    /// only; customers see "the bank".
    pub author: String,
    pub body: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    pub ticket: Ticket,
    pub messages: Vec<Message>,
}

/// The body is the customer's words: never in a log line.
impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("position", &self.position)
            .field("author_kind", &self.author_kind)
            .field("body", &"[redacted]")
            .field("created_at", &self.created_at)
            .finish()
    }
}
