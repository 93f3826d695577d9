-- Know-your-customer: verified identities (encrypted, with a blind index so
-- one person's identity backs one wallet) and the staff review queue.

CREATE TABLE kyc_identities (
    customer_id TEXT PRIMARY KEY,
    id_type TEXT NOT NULL,
    id_index TEXT NOT NULL UNIQUE,
    id_number_enc BLOB NOT NULL,
    full_name_enc BLOB NOT NULL,
    verified_at INTEGER NOT NULL,
    provider_reference TEXT NOT NULL
);

CREATE TABLE kyc_reviews (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    target_tier INTEGER NOT NULL,
    reason TEXT NOT NULL,
    evidence_enc BLOB NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    decided_at INTEGER,
    decided_by TEXT,
    note TEXT
);
CREATE INDEX kyc_reviews_state ON kyc_reviews (state, created_at);
