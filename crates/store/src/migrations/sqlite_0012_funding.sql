-- Funding the wallet from outside and paying out: linked bank accounts,
-- top-ups and withdrawals (funding records beside the ledger's holds), the
-- callbacks received from connectors, limit usage counters, and the books
-- the built-in connector simulators keep on their side.

-- The account number is stored only encrypted, with a blind index to refuse
-- linking one account twice; only its last four digits are shown.
CREATE TABLE bank_accounts (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    bank_code TEXT NOT NULL,
    last4 TEXT NOT NULL,
    number_enc BLOB NOT NULL,
    number_index TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX bank_accounts_customer ON bank_accounts (customer_id, created_at);
-- One active link per account number and customer; a removed one may be linked again.
CREATE UNIQUE INDEX bank_accounts_active ON bank_accounts (customer_id, number_index) WHERE status = 'active';

-- A top-up or withdrawal. `state` is what the customer sees (pending,
-- succeeded, failed); `stage` is how far the work has gone (recorded, held,
-- submitted, resolved), so that a crash between steps is resumed.
CREATE TABLE fundings (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    client_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    method_id TEXT NOT NULL,
    method_label TEXT NOT NULL,
    connector TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT,
    next_action TEXT,
    connector_reference TEXT,
    limit_day INTEGER,
    limit_month INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    resolved_at INTEGER,
    check_at INTEGER NOT NULL,
    UNIQUE (customer_id, kind, client_key)
);
CREATE INDEX fundings_customer ON fundings (customer_id, kind, created_at);
CREATE INDEX fundings_pending ON fundings (state, check_at);
CREATE INDEX fundings_reference ON fundings (connector, connector_reference);

-- Every callback received with a valid signature, once per event id.
CREATE TABLE funding_events (
    connector TEXT NOT NULL,
    event_id TEXT NOT NULL,
    funding_id TEXT,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (connector, event_id)
);

-- Limit usage per customer and period, changed only by conditional updates
-- (`used + amount <= limit`), so concurrent payments cannot both squeeze in.
CREATE TABLE payment_usage (
    customer_id TEXT NOT NULL,
    span TEXT NOT NULL,
    period INTEGER NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (customer_id, span, period)
);

-- The simulated card network's and core banking system's own records.
CREATE TABLE connector_simulations (
    connector TEXT NOT NULL,
    reference TEXT NOT NULL,
    merchant_reference TEXT NOT NULL,
    operation TEXT NOT NULL,
    behaviour TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    created_at INTEGER NOT NULL,
    resolved_at INTEGER,
    PRIMARY KEY (connector, reference),
    UNIQUE (connector, merchant_reference)
);
CREATE TABLE connector_callbacks (
    connector TEXT NOT NULL,
    event_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    body TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    delivered_at INTEGER,
    PRIMARY KEY (connector, event_id, attempt)
);
CREATE INDEX connector_callbacks_due ON connector_callbacks (delivered_at, due_at);
