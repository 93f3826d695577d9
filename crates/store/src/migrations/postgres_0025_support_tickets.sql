-- Customer support: a ticket a customer opens (optionally about one of
-- their own transactions, an `activity` row) and the thread of messages
-- between the customer and the bank's support staff. What the customer and
-- staff write is personal data: stored only encrypted (`body_enc`).

CREATE TABLE support_tickets (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    -- The customer's own activity row the ticket is about (`act_…`), checked
    -- to be theirs when the ticket is opened.
    activity_id TEXT,
    -- payment_problem, refund, fraud_report, account, other
    category TEXT NOT NULL,
    -- open (waiting for the bank), answered, awaiting_customer (waiting for
    -- the customer), resolved (by staff; the customer may reopen it by
    -- replying), closed (by the customer; final)
    state TEXT NOT NULL,
    -- The staff actor (`staff:<username>`) who last answered, if any.
    assigned_to TEXT,
    -- How many messages the thread holds: the next message's position,
    -- claimed by conditional update so positions never collide.
    messages BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    closed_at BIGINT
);
CREATE INDEX support_tickets_customer ON support_tickets (customer_id, created_at);
CREATE INDEX support_tickets_state ON support_tickets (state, updated_at);

CREATE TABLE support_messages (
    id TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    -- customer or staff
    author_kind TEXT NOT NULL,
    -- The audit actor who wrote it (`customer:<id>` or `staff:<username>`).
    author TEXT NOT NULL,
    body_enc BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (ticket_id, position)
);
