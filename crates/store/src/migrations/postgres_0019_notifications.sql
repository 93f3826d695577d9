-- Notifications: keyed (idempotent) outbox rows, a log of every delivery
-- attempt, the in-app inbox, per-customer preferences and language,
-- marketing consent (history kept), and marketing campaigns.

ALTER TABLE notifications ADD COLUMN notification_key TEXT;
-- Whose endpoint a webhook goes to (a merchant id), for its delivery log.
ALTER TABLE notifications ADD COLUMN endpoint_owner TEXT;
CREATE UNIQUE INDEX notifications_key ON notifications (notification_key);
CREATE INDEX notifications_owner ON notifications (endpoint_owner, seq);

-- Attempt numbers restart when staff re-queue a dead letter: rows are
-- told apart by id.
CREATE TABLE notification_attempts (
    id BIGSERIAL PRIMARY KEY,
    seq BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT
);
CREATE INDEX notification_attempts_seq ON notification_attempts (seq, id);

CREATE TABLE inbox (
    seq BIGSERIAL PRIMARY KEY,
    customer_id TEXT NOT NULL,
    notification_key TEXT NOT NULL UNIQUE,
    category TEXT NOT NULL,
    template TEXT NOT NULL,
    content_enc BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    read_at BIGINT
);
CREATE INDEX inbox_customer ON inbox (customer_id, seq);

CREATE TABLE notification_settings (
    customer_id TEXT PRIMARY KEY,
    language TEXT NOT NULL,
    marketing_opt_in BIGINT NOT NULL,
    marketing_source TEXT,
    marketing_changed_at BIGINT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE notification_preferences (
    customer_id TEXT NOT NULL,
    category TEXT NOT NULL,
    channel TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (customer_id, category, channel)
);

CREATE TABLE marketing_consents (
    seq BIGSERIAL PRIMARY KEY,
    customer_id TEXT NOT NULL,
    granted BIGINT NOT NULL,
    source TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX marketing_consents_customer ON marketing_consents (customer_id, seq);

CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    segment TEXT NOT NULL,
    content_enc BYTEA NOT NULL,
    state TEXT NOT NULL,
    created_by TEXT NOT NULL,
    approved_by TEXT,
    audience BIGINT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
