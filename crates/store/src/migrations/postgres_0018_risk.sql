-- Real-time risk: versioned rule sets, every evaluation (the source of the
-- velocity signals and of dry-run replays), cases for analysts, blocklist.

-- A rule set version: `draft` until activated; exactly one `active` (the
-- partial unique index), the previous one `retired` in the same transaction.
CREATE TABLE risk_rule_sets (
    version BIGINT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('draft', 'active', 'retired')),
    body TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    activated_by TEXT,
    activated_at BIGINT
);
CREATE UNIQUE INDEX risk_rule_sets_one_active ON risk_rule_sets (state) WHERE state = 'active';

-- One row per evaluation. `counterparty` is a payee/merchant id, `device`
-- and `ip_index` keyed hashes (never the clear values); `signals` is the
-- non-derivable part of the input (JSON) a dry-run replays.
CREATE TABLE risk_evaluations (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject_id TEXT,
    amount BIGINT,
    currency TEXT,
    counterparty TEXT,
    device TEXT,
    ip_index TEXT,
    decision TEXT NOT NULL,
    score BIGINT NOT NULL,
    reasons TEXT NOT NULL,
    signals TEXT NOT NULL,
    rule_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX risk_evaluations_customer ON risk_evaluations (customer_id, created_at);
CREATE INDEX risk_evaluations_counterparty ON risk_evaluations (customer_id, counterparty);
CREATE INDEX risk_evaluations_device ON risk_evaluations (customer_id, device);
CREATE INDEX risk_evaluations_ip ON risk_evaluations (customer_id, ip_index);
CREATE INDEX risk_evaluations_amount ON risk_evaluations (customer_id, amount);
CREATE INDEX risk_evaluations_recent ON risk_evaluations (created_at);

-- A case for an analyst: a held payment (`subject_kind` + `subject_id`) or
-- a freeze. `answer` is the customer's "was this you?" reply.
CREATE TABLE risk_cases (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    evaluation_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('held_payment', 'freeze')),
    subject_kind TEXT,
    subject_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('open', 'escalated', 'released', 'rejected', 'closed')),
    answer TEXT,
    resolved_by TEXT,
    note TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX risk_cases_state ON risk_cases (state, created_at);
CREATE INDEX risk_cases_customer ON risk_cases (customer_id, created_at);

-- Blocked payees (customer or merchant ids), devices and cards (keyed
-- hashes or internal ids, never a clear card number).
CREATE TABLE risk_blocklist (
    kind TEXT NOT NULL CHECK (kind IN ('payee', 'device', 'card', 'ip')),
    value TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);
