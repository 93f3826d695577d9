-- Withdrawal fees: what was charged on top of the amount and which waiver
-- made it free, decided in the transaction that records the withdrawal.
ALTER TABLE fundings ADD COLUMN fee INTEGER NOT NULL DEFAULT 0;
ALTER TABLE fundings ADD COLUMN fee_waiver TEXT;

-- P2P and merchant payments and refunds write their activity rows from now
-- on; these are the rows of the ones made before. The category CASE is
-- `Category::from_mcc` (crates/payments/src/activity.rs) as of this version.
INSERT INTO activity (id, customer_id, kind, source_id, direction, status, reason, counterparty, category, reference,
    amount, currency, fee, refunded, fx_amount, fx_currency, fx_rate, search, created_at, updated_at)
SELECT 'act_p2p_transfer_' || id, customer_id, 'p2p_transfer', id, 'out', state, reason, payee_name_masked, 'transfers',
    COALESCE(request_id, id), amount, currency, fee, 0, NULL, NULL, NULL,
    LOWER('p2p_transfer ' || payee_name_masked || ' transfers ' || COALESCE(request_id, id) || ' ' || id), created_at, updated_at
FROM p2p_payments WHERE true
ON CONFLICT DO NOTHING;

INSERT INTO activity (id, customer_id, kind, source_id, direction, status, reason, counterparty, category, reference,
    amount, currency, fee, refunded, fx_amount, fx_currency, fx_rate, search, created_at, updated_at)
SELECT 'act_p2p_transfer_' || id || ':received', payee_id, 'p2p_transfer', id || ':received', 'in', state, NULL, payer_name_masked, 'transfers',
    COALESCE(request_id, id), amount, currency, 0, 0, NULL, NULL, NULL,
    LOWER('p2p_transfer ' || payer_name_masked || ' transfers ' || COALESCE(request_id, id) || ' ' || id), COALESCE(resolved_at, created_at), updated_at
FROM p2p_payments WHERE state = 'succeeded'
ON CONFLICT DO NOTHING;

INSERT INTO activity (id, customer_id, kind, source_id, direction, status, reason, counterparty, category, reference,
    amount, currency, fee, refunded, fx_amount, fx_currency, fx_rate, search, created_at, updated_at)
SELECT 'act_merchant_payment_' || p.id, p.customer_id, 'merchant_payment', p.id, 'out',
    CASE WHEN p.state = 'succeeded' AND p.refunded >= p.amount THEN 'refunded'
         WHEN p.state = 'succeeded' AND p.refunded > 0 THEN 'partially_refunded'
         ELSE p.state END,
    p.reason, m.display_name,
    CASE
      WHEN CAST(m.mcc AS INTEGER) IN (5411, 5422, 5441, 5451, 5462, 5499) OR CAST(m.mcc AS INTEGER) BETWEEN 5811 AND 5814 THEN 'food'
      WHEN CAST(m.mcc AS INTEGER) IN (4111, 4112, 4121, 4131, 4784, 4789, 5541, 5542, 7523) THEN 'transport'
      WHEN CAST(m.mcc AS INTEGER) BETWEEN 3000 AND 3299 OR CAST(m.mcc AS INTEGER) BETWEEN 3501 AND 3999
           OR CAST(m.mcc AS INTEGER) IN (4411, 4511, 4722, 7011, 7012) THEN 'travel'
      WHEN CAST(m.mcc AS INTEGER) IN (4812, 4814, 4899, 4900) THEN 'bills'
      WHEN CAST(m.mcc AS INTEGER) IN (5912, 8011, 8021, 8031) OR CAST(m.mcc AS INTEGER) BETWEEN 8041 AND 8099 THEN 'health'
      WHEN CAST(m.mcc AS INTEGER) IN (7832, 7841) OR CAST(m.mcc AS INTEGER) BETWEEN 7911 AND 7999
           OR CAST(m.mcc AS INTEGER) BETWEEN 5815 AND 5818 THEN 'entertainment'
      WHEN CAST(m.mcc AS INTEGER) BETWEEN 5200 AND 5399 OR CAST(m.mcc AS INTEGER) BETWEEN 5600 AND 5799
           OR CAST(m.mcc AS INTEGER) BETWEEN 5900 AND 5999 THEN 'shopping'
      ELSE 'other' END,
    COALESCE(p.order_reference, p.id), p.amount, p.currency, 0, p.refunded, NULL, NULL, NULL,
    LOWER('merchant_payment ' || m.display_name || ' ' || COALESCE(p.order_reference, p.id) || ' ' || p.id), p.created_at, p.updated_at
FROM merchant_payments p JOIN merchants m ON m.id = p.merchant_id
WHERE p.customer_id IS NOT NULL AND p.state IN ('pending', 'succeeded', 'failed')
ON CONFLICT DO NOTHING;

INSERT INTO activity (id, customer_id, kind, source_id, direction, status, reason, counterparty, category, reference,
    amount, currency, fee, refunded, fx_amount, fx_currency, fx_rate, search, created_at, updated_at)
SELECT 'act_refund_' || r.id, r.customer_id, 'refund', r.id, 'in', r.state, r.failure, m.display_name,
    COALESCE((SELECT a.category FROM activity a WHERE a.kind = 'merchant_payment' AND a.source_id = r.payment_id), 'other'),
    r.payment_id, r.amount, r.currency, 0, 0, NULL, NULL, NULL,
    LOWER('refund ' || m.display_name || ' ' || r.payment_id || ' ' || r.id), r.created_at, r.updated_at
FROM merchant_refunds r JOIN merchants m ON m.id = r.merchant_id WHERE true
ON CONFLICT DO NOTHING;

-- (`WHERE true`: SQLite needs a WHERE before an upsert clause on
-- INSERT … SELECT, or it reads ON CONFLICT as a join constraint.)

-- A removed card can be linked again: the number is unique among a
-- customer's active cards only (as for bank accounts). SQLite cannot drop a
-- table constraint, so the table is rebuilt.
CREATE TABLE cards_relinkable (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    brand TEXT NOT NULL,
    funding TEXT NOT NULL,
    last4 TEXT NOT NULL,
    expiry_month INTEGER NOT NULL,
    expiry_year INTEGER NOT NULL,
    pan_enc BLOB NOT NULL,
    pan_index TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO cards_relinkable (id, customer_id, brand, funding, last4, expiry_month, expiry_year, pan_enc, pan_index, status, created_at)
SELECT id, customer_id, brand, funding, last4, expiry_month, expiry_year, pan_enc, pan_index, status, created_at FROM cards;
DROP TABLE cards;
ALTER TABLE cards_relinkable RENAME TO cards;
CREATE INDEX cards_customer ON cards (customer_id, created_at);
CREATE UNIQUE INDEX cards_active ON cards (customer_id, pan_index) WHERE status = 'active';
-- Migration 0022's index went with the old table.
CREATE INDEX IF NOT EXISTS cards_last4 ON cards (last4, customer_id);

-- Top-ups (where the tier says so) and bill payments count against the
-- daily and monthly limits; the periods they reserved in, to give back on failure.
ALTER TABLE bill_payments ADD COLUMN limit_day INTEGER;
ALTER TABLE bill_payments ADD COLUMN limit_month INTEGER;

-- Leases between processes on one database: `ledger_writer` is held by the
-- one process running a ledger writer (`coffer serve`, or `coffer settle`
-- while no serve runs), renewed while it runs, lapsing after a crash.
CREATE TABLE process_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Settlement payouts are retried with back-off: how many were tried and
-- when the next is due (state payout_retrying).
ALTER TABLE merchant_settlements ADD COLUMN payout_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE merchant_settlements ADD COLUMN next_payout_at INTEGER;
UPDATE merchant_settlements SET payout_attempts = 1 WHERE funding_id IS NOT NULL;
