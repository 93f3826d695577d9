-- Passkeys (WebAuthn): each customer's registered credentials (public keys
-- only), and the short-lived server state of a registration or sign-in.

CREATE TABLE passkeys (
    credential_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    passkey TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX passkeys_customer ON passkeys (customer_id);

CREATE TABLE passkey_ceremonies (
    id TEXT PRIMARY KEY,
    customer_id TEXT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
