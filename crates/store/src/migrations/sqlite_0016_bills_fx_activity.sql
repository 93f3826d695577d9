-- Bill payments, multi-currency conversions (FX quotes) and the customer's
-- activity feed: one row per thing the wallet did, written in the same
-- transaction as the record it describes (a funding, a bill payment, a
-- conversion; P2P and merchant payments plug in the same way), so history
-- and status are accurate at once and never disagree with the records.

CREATE TABLE activity (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    -- top_up, withdrawal, bill_payment, fx_conversion, (p2p_transfer, merchant_payment…)
    kind TEXT NOT NULL,
    -- The id of the record this row describes, unique within its kind.
    source_id TEXT NOT NULL,
    -- in (money into the wallet), out (money out of it), exchange (both).
    direction TEXT NOT NULL,
    -- pending, succeeded, failed, refunded, partially_refunded
    status TEXT NOT NULL,
    reason TEXT,
    -- Shown to the customer: a biller's name, a masked payee, "visa ••1111".
    counterparty TEXT NOT NULL,
    category TEXT NOT NULL,
    reference TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    fee INTEGER NOT NULL,
    refunded INTEGER NOT NULL,
    -- The other leg of a conversion.
    fx_amount INTEGER,
    fx_currency TEXT,
    fx_rate TEXT,
    -- Lower-case text the search matches against.
    search TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (kind, source_id)
);
CREATE INDEX activity_customer ON activity (customer_id, created_at, id);

-- Top-ups and withdrawals made before this table existed.
INSERT INTO activity (id, customer_id, kind, source_id, direction, status, reason, counterparty, category, reference,
    amount, currency, fee, refunded, fx_amount, fx_currency, fx_rate, search, created_at, updated_at)
SELECT 'act_' || id, customer_id, kind, id, CASE kind WHEN 'top_up' THEN 'in' ELSE 'out' END, state, reason,
    method_label, kind, id, amount, currency, 0, 0, NULL, NULL, NULL,
    LOWER(kind || ' ' || method_label || ' ' || id), created_at, updated_at
FROM fundings;

-- A bill payment: `state` is what the customer sees; `stage` how far the
-- work went (recorded, held, submitted, resolved), as for fundings.
CREATE TABLE bill_payments (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    client_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    biller_id TEXT NOT NULL,
    account_reference TEXT NOT NULL,
    holder_masked TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT,
    confirmation TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    resolved_at INTEGER,
    check_at INTEGER NOT NULL,
    UNIQUE (customer_id, client_key)
);
CREATE INDEX bill_payments_pending ON bill_payments (state, check_at);

-- The simulated billers' own books: one payment per bill.
CREATE TABLE biller_simulations (
    biller_id TEXT NOT NULL,
    account_reference TEXT NOT NULL,
    merchant_reference TEXT NOT NULL UNIQUE,
    amount INTEGER NOT NULL,
    confirmation TEXT NOT NULL,
    paid_at INTEGER NOT NULL,
    PRIMARY KEY (biller_id, account_reference)
);

-- An FX quote, and the conversion that uses it (at most one: `state` moves
-- open → converting → converted or failed by conditional updates).
CREATE TABLE fx_quotes (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    sell_currency TEXT NOT NULL,
    buy_currency TEXT NOT NULL,
    sell_amount INTEGER NOT NULL,
    buy_amount INTEGER NOT NULL,
    mid_rate INTEGER NOT NULL,
    spread_bps INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    conversion_key TEXT,
    conversion_hash TEXT,
    reason TEXT,
    converted_at INTEGER
);
CREATE INDEX fx_quotes_customer ON fx_quotes (customer_id, created_at);
CREATE INDEX fx_quotes_state ON fx_quotes (state, created_at);
