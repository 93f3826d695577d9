-- The ledger: accounts, transfers (with both accounts' running totals), holds,
-- and the hash-chained journal. Timestamps are nanoseconds since the epoch and
-- unique across all events, so a transfer's timestamp is its key.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    currency TEXT NOT NULL,
    kind TEXT NOT NULL,
    balance_constraint TEXT NOT NULL,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    debits_posted BIGINT NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted BIGINT NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending BIGINT NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending BIGINT NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    opened_at BIGINT NOT NULL UNIQUE,
    closed_at BIGINT
);
CREATE INDEX accounts_owner ON accounts (owner);

CREATE TABLE transfers (
    timestamp BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    debit_account_id TEXT NOT NULL,
    credit_account_id TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    code TEXT NOT NULL,
    metadata TEXT,
    hold_id TEXT,
    expires_at BIGINT,
    debit_debits_posted BIGINT NOT NULL,
    debit_credits_posted BIGINT NOT NULL,
    debit_debits_pending BIGINT NOT NULL,
    debit_credits_pending BIGINT NOT NULL,
    credit_debits_posted BIGINT NOT NULL,
    credit_credits_posted BIGINT NOT NULL,
    credit_debits_pending BIGINT NOT NULL,
    credit_credits_pending BIGINT NOT NULL
);
CREATE INDEX transfers_debit ON transfers (debit_account_id, timestamp);
CREATE INDEX transfers_credit ON transfers (credit_account_id, timestamp);

CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    debit_account_id TEXT NOT NULL,
    credit_account_id TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    resolved_by TEXT,
    captured BIGINT
);
CREATE INDEX holds_pending ON holds (expires_at) WHERE state = 'pending';

CREATE TABLE journal (
    batch BIGINT PRIMARY KEY,
    first_timestamp BIGINT NOT NULL,
    last_timestamp BIGINT NOT NULL,
    event_count BIGINT NOT NULL,
    previous_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
