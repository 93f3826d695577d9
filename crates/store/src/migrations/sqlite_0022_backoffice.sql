-- The back office: staff search by name, runtime settings changed by
-- maker-checker, and the indexes its queues and dashboards read through.

-- Blind indexes (keyed HMAC) of a customer's normalized names: the display
-- name and, once verified, the legal name from KYC. Only whole normalized
-- names are indexed (no surname, no prefixes): see README "Back office".
CREATE TABLE customer_name_index (
    customer_id TEXT NOT NULL,
    -- display_name or kyc_full_name
    source TEXT NOT NULL,
    name_index TEXT NOT NULL,
    PRIMARY KEY (customer_id, source)
);
CREATE INDEX customer_name_index_lookup ON customer_name_index (name_index, customer_id);

-- Versioned settings that staff change at runtime (fee schedule, tier
-- limits): each approved change is a new row; the highest version of a
-- kind is in force, none means the configuration file's. Rows are never
-- changed: (kind, version) being the key makes two approvals based on the
-- same version conflict instead of one silently overwriting the other.
CREATE TABLE settings_versions (
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    approval_id TEXT NOT NULL,
    maker TEXT NOT NULL,
    checker TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (kind, version)
);

-- Search by a card's last four digits (stored in clear for display).
CREATE INDEX cards_last4 ON cards (last4, customer_id);
-- Dashboards aggregate by creation time over every customer.
CREATE INDEX fundings_created ON fundings (created_at);
CREATE INDEX p2p_payments_created ON p2p_payments (created_at);
CREATE INDEX bill_payments_created ON bill_payments (created_at);
CREATE INDEX merchant_payments_created ON merchant_payments (created_at);
CREATE INDEX merchant_refunds_created ON merchant_refunds (created_at);
CREATE INDEX challenges_created ON challenges (created_at);
CREATE INDEX audit_log_action ON audit_log (action, at);
CREATE INDEX customers_status ON customers (status);
