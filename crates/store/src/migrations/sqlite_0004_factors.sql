-- Second factors and challenges: TOTP (seed encrypted), recovery codes
-- (keyed hashes), and challenges for sign-in and for step-up verification
-- bound to one operation (amount, currency, payee).

CREATE TABLE totp_factors (
    customer_id TEXT PRIMARY KEY,
    secret_enc BLOB NOT NULL,
    confirmed_at INTEGER,
    last_step INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE recovery_codes (
    customer_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (customer_id, code_hash)
);

CREATE TABLE challenges (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    operation_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    code_hash TEXT,
    attempts INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    verified_at INTEGER,
    consumed_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX challenges_customer ON challenges (customer_id, created_at);
