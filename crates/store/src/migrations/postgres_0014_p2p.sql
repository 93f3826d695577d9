-- Person-to-person payments: wallet handles, quotes, P2P payment records
-- beside the ledger's linked transfers, payment requests and split bills.
-- Notes are free text a customer types (it may name people): stored only
-- encrypted (`*_enc`, purpose `p2p.note`).

-- One handle per customer, unique without regard to case (stored lowercase).
CREATE TABLE wallet_handles (
    handle TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- A priced offer for one payment, valid until `expires_at`, used at most
-- once (`payment_id` is set by the confirmation that consumes it).
CREATE TABLE p2p_quotes (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    payee_id TEXT NOT NULL,
    payee_name_masked TEXT NOT NULL,
    amount BIGINT NOT NULL,
    fee BIGINT NOT NULL,
    waiver TEXT,
    currency TEXT NOT NULL,
    request_id TEXT,
    note_enc BYTEA,
    expires_at BIGINT NOT NULL,
    payment_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX p2p_quotes_customer ON p2p_quotes (customer_id, created_at);

-- A P2P payment. `state` is what both sides see (pending, succeeded,
-- failed); the ledger batch has ids derived from `id` (`p2p:<id>`,
-- `p2p:<id>:fee`), so it can be repeated after a crash.
CREATE TABLE p2p_payments (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    payee_id TEXT NOT NULL,
    client_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    quote_id TEXT NOT NULL UNIQUE,
    request_id TEXT,
    amount BIGINT NOT NULL,
    fee BIGINT NOT NULL,
    waiver TEXT,
    currency TEXT NOT NULL,
    note_enc BYTEA,
    payer_name_masked TEXT NOT NULL,
    payee_name_masked TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    step_up TEXT NOT NULL,
    limit_day BIGINT NOT NULL,
    limit_month BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    resolved_at BIGINT,
    UNIQUE (customer_id, client_key)
);
CREATE INDEX p2p_payments_payer ON p2p_payments (customer_id, created_at);
CREATE INDEX p2p_payments_payee ON p2p_payments (payee_id, state, created_at);
CREATE INDEX p2p_payments_pending ON p2p_payments (state, updated_at);

-- A request for money from one or more customers, or a split bill: one
-- group per organizer's request, one row per payer.
CREATE TABLE payment_request_groups (
    id TEXT PRIMARY KEY,
    organizer_id TEXT NOT NULL,
    client_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    mode TEXT NOT NULL,
    total BIGINT NOT NULL,
    currency TEXT NOT NULL,
    note_enc BYTEA,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (organizer_id, client_key)
);
CREATE INDEX payment_request_groups_organizer ON payment_request_groups (organizer_id, created_at);

CREATE TABLE payment_requests (
    id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    organizer_id TEXT NOT NULL,
    payer_id TEXT NOT NULL,
    organizer_name_masked TEXT NOT NULL,
    payer_name_masked TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    payment_id TEXT,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX payment_requests_group ON payment_requests (group_id, position);
CREATE INDEX payment_requests_payer ON payment_requests (payer_id, created_at);
