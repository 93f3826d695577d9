-- Identity, secrets and notifications. Personal data is stored encrypted
-- (AES-256-GCM under data keys wrapped by the master key); lookups go
-- through keyed hashes (blind indexes), never plaintext.

CREATE TABLE data_keys (
    id TEXT PRIMARY KEY,
    wrapped BYTEA NOT NULL,
    master_key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    contact_kind TEXT NOT NULL,
    contact_index TEXT NOT NULL UNIQUE,
    contact_enc BYTEA NOT NULL,
    contact_masked TEXT NOT NULL,
    display_name_enc BYTEA NOT NULL,
    password_hash TEXT NOT NULL,
    tier BIGINT NOT NULL,
    status TEXT NOT NULL,
    terms_version TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE registrations (
    id TEXT PRIMARY KEY,
    contact_index TEXT NOT NULL,
    contact_enc BYTEA NOT NULL,
    contact_kind TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    completed_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX registrations_expiry ON registrations (expires_at);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    device TEXT NOT NULL,
    ip TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sessions_customer ON sessions (customer_id);

CREATE TABLE throttles (
    subject TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL
);

CREATE TABLE security_events (
    seq BIGSERIAL PRIMARY KEY,
    customer_id TEXT,
    kind TEXT NOT NULL,
    ip TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX security_events_customer ON security_events (customer_id, seq);

CREATE TABLE notifications (
    seq BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL,
    recipient_enc BYTEA NOT NULL,
    recipient_masked TEXT NOT NULL,
    customer_id TEXT,
    template TEXT NOT NULL,
    body_enc BYTEA,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    state TEXT NOT NULL,
    sent_at BIGINT,
    last_error TEXT
);
CREATE INDEX notifications_due ON notifications (state, next_attempt_at);
