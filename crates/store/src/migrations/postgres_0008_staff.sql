-- The bank's staff: users with roles and a mandatory second factor, their
-- sessions, and maker-checker approvals for sensitive actions.

CREATE TABLE staff (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    totp_enc BYTEA NOT NULL,
    totp_last_step BIGINT NOT NULL,
    roles TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE staff_sessions (
    id TEXT PRIMARY KEY,
    staff_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    ip TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    params TEXT NOT NULL,
    reason TEXT NOT NULL,
    maker TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    checker TEXT,
    decided_at BIGINT,
    result TEXT
);
CREATE INDEX approvals_state ON approvals (state, created_at);
