-- Know-your-customer: verified identities (encrypted, with a blind index so
-- one person's identity backs one wallet) and the staff review queue.

CREATE TABLE kyc_identities (
    customer_id TEXT PRIMARY KEY,
    id_type TEXT NOT NULL,
    id_index TEXT NOT NULL UNIQUE,
    id_number_enc BYTEA NOT NULL,
    full_name_enc BYTEA NOT NULL,
    verified_at BIGINT NOT NULL,
    provider_reference TEXT NOT NULL
);

CREATE TABLE kyc_reviews (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    target_tier BIGINT NOT NULL,
    reason TEXT NOT NULL,
    evidence_enc BYTEA NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    note TEXT
);
CREATE INDEX kyc_reviews_state ON kyc_reviews (state, created_at);
