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
    debits_posted INTEGER NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted INTEGER NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending INTEGER NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending INTEGER NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    opened_at INTEGER NOT NULL UNIQUE,
    closed_at INTEGER
);
CREATE INDEX accounts_owner ON accounts (owner);

CREATE TABLE transfers (
    timestamp INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    debit_account_id TEXT NOT NULL,
    credit_account_id TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    code TEXT NOT NULL,
    metadata TEXT,
    hold_id TEXT,
    expires_at INTEGER,
    debit_debits_posted INTEGER NOT NULL,
    debit_credits_posted INTEGER NOT NULL,
    debit_debits_pending INTEGER NOT NULL,
    debit_credits_pending INTEGER NOT NULL,
    credit_debits_posted INTEGER NOT NULL,
    credit_credits_posted INTEGER NOT NULL,
    credit_debits_pending INTEGER NOT NULL,
    credit_credits_pending INTEGER NOT NULL
);
CREATE INDEX transfers_debit ON transfers (debit_account_id, timestamp);
CREATE INDEX transfers_credit ON transfers (credit_account_id, timestamp);

CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    debit_account_id TEXT NOT NULL,
    credit_account_id TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    resolved_by TEXT,
    captured INTEGER
);
CREATE INDEX holds_pending ON holds (expires_at) WHERE state = 'pending';

CREATE TABLE journal (
    batch INTEGER PRIMARY KEY,
    first_timestamp INTEGER NOT NULL,
    last_timestamp INTEGER NOT NULL,
    event_count INTEGER NOT NULL,
    previous_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
