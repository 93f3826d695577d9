-- Linked payment cards. The card number (PAN) is stored only encrypted, with
-- a blind index to find duplicates; the CVV is never stored anywhere.

CREATE TABLE cards (
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
    created_at INTEGER NOT NULL,
    UNIQUE (customer_id, pan_index)
);
CREATE INDEX cards_customer ON cards (customer_id, created_at);
