-- Second factors and challenges: TOTP (seed encrypted), recovery codes
-- (keyed hashes), and challenges for sign-in and for step-up verification
-- bound to one operation (amount, currency, payee).

CREATE TABLE totp_factors (
    customer_id TEXT PRIMARY KEY,
    secret_enc BYTEA NOT NULL,
    confirmed_at BIGINT,
    last_step BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    customer_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (customer_id, code_hash)
);

CREATE TABLE challenges (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    operation_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    code_hash TEXT,
    attempts BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    verified_at BIGINT,
    consumed_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX challenges_customer ON challenges (customer_id, created_at);
