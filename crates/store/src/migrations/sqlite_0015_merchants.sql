-- Merchants: onboarding and review, payments to merchants (QR, payment
-- code, online checkout), refunds, customer-presented payment codes,
-- their throttle, and daily settlements. Money itself is in the ledger;
-- these are the records beside it (see crates/payments/src/merchants.rs).

-- A merchant is a business with its own ledger accounts and its own
-- settlement bank account (bank_accounts.customer_id = merchants.id).
-- The webhook secret is stored only encrypted (it must be read to sign).
CREATE TABLE merchants (
    id TEXT PRIMARY KEY,
    owner_customer_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    city TEXT NOT NULL,
    mcc TEXT NOT NULL,
    discount_rate_bps INTEGER,
    status TEXT NOT NULL,
    settlement_bank_account_id TEXT NOT NULL,
    webhook_url TEXT,
    webhook_secret_enc BLOB,
    review_note TEXT,
    reviewed_by TEXT,
    reviewed_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX merchants_owner ON merchants (owner_customer_id, created_at);
CREATE INDEX merchants_status ON merchants (status, created_at);

-- A payment to a merchant. `refunded` is what refunds have claimed of it,
-- raised only by a conditional update (refunded + amount <= amount).
CREATE TABLE merchant_payments (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    customer_id TEXT,
    method TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    order_reference TEXT,
    return_url TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    refunded INTEGER NOT NULL,
    creator TEXT NOT NULL,
    client_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    limit_day INTEGER,
    limit_month INTEGER,
    settlement_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    paid_at INTEGER,
    expires_at INTEGER,
    UNIQUE (creator, client_key)
);
CREATE INDEX merchant_payments_merchant ON merchant_payments (merchant_id, created_at);
CREATE INDEX merchant_payments_customer ON merchant_payments (customer_id, created_at);
CREATE INDEX merchant_payments_unsettled ON merchant_payments (merchant_id, state, settlement_id);

CREATE TABLE merchant_refunds (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    reason TEXT,
    state TEXT NOT NULL,
    failure TEXT,
    client_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    settlement_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    resolved_at INTEGER,
    UNIQUE (merchant_id, client_key)
);
CREATE INDEX merchant_refunds_payment ON merchant_refunds (payment_id, created_at);
CREATE INDEX merchant_refunds_unsettled ON merchant_refunds (merchant_id, state, settlement_id);

-- Customer-presented payment codes: only a keyed hash of the code is kept.
CREATE TABLE payment_codes (
    code_hash TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    payment_id TEXT
);
CREATE INDEX payment_codes_customer ON payment_codes (customer_id, state);

-- Failed code submissions per merchant and minute (the throttle).
CREATE TABLE payment_code_failures (
    merchant_id TEXT NOT NULL,
    period INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    PRIMARY KEY (merchant_id, period)
);

-- One settlement per merchant and day (in the bank's time zone).
CREATE TABLE merchant_settlements (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    day INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    gross INTEGER NOT NULL,
    refunds INTEGER NOT NULL,
    fee INTEGER NOT NULL,
    net INTEGER NOT NULL,
    currency TEXT NOT NULL,
    discount_rate_bps INTEGER NOT NULL,
    payment_count INTEGER NOT NULL,
    refund_count INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    funding_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (merchant_id, day)
);
CREATE INDEX merchant_settlements_day ON merchant_settlements (day, merchant_id);
