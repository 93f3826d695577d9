-- Compliance: watch lists (versioned, each version kept whole), screening
-- of names against them, the queue of hits for compliance officers, and
-- regulatory reports (large-value, suspicious) with their review.

-- One version of the watch list; the highest version is the active one.
-- Entries are the list's published data (names of listed parties), not
-- customers' personal data, so they are kept as the canonical JSON.
CREATE TABLE compliance_watchlists (
    version BIGINT PRIMARY KEY,
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    entries TEXT NOT NULL,
    entry_count BIGINT NOT NULL,
    loaded_by TEXT NOT NULL,
    loaded_at BIGINT NOT NULL
);

-- A party whose name (by its keyed hash) was screened against a list
-- version: screening it again is a no-op until the name or list changes.
CREATE TABLE screening_runs (
    party_kind TEXT NOT NULL,
    party_id TEXT NOT NULL,
    list_version BIGINT NOT NULL,
    name_index TEXT NOT NULL,
    screened_at BIGINT NOT NULL,
    PRIMARY KEY (party_kind, party_id, list_version, name_index)
);

-- A possible match for a compliance officer: pending, then cleared (a
-- false positive) or confirmed (the customer frozen, the merchant blocked).
-- The screened name is personal data: stored only encrypted.
CREATE TABLE screening_hits (
    id TEXT PRIMARY KEY,
    party_kind TEXT NOT NULL,
    party_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    source TEXT NOT NULL,
    name_enc BYTEA NOT NULL,
    name_index TEXT NOT NULL,
    list_version BIGINT NOT NULL,
    entry_id TEXT NOT NULL,
    score_bps BIGINT NOT NULL,
    threshold_bps BIGINT NOT NULL,
    state TEXT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    note TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (party_kind, party_id, list_version, entry_id, name_index)
);
CREATE INDEX screening_hits_party ON screening_hits (party_kind, party_id, state);
CREATE INDEX screening_hits_state ON screening_hits (state, created_at);

-- A report for the regulator, one per (day, rule, customer, currency,
-- direction): a rerun of a day finds it and adds nothing.
CREATE TABLE compliance_reports (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    rule TEXT NOT NULL,
    day BIGINT NOT NULL,
    customer_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    direction TEXT NOT NULL,
    total_amount BIGINT NOT NULL,
    transaction_count BIGINT NOT NULL,
    transaction_ids TEXT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    reviewer TEXT,
    reviewed_at BIGINT,
    review_note TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (day, rule, customer_id, currency, direction)
);
CREATE INDEX compliance_reports_state ON compliance_reports (state, day);
CREATE INDEX compliance_reports_day ON compliance_reports (day, kind);

-- Each day the report job ran over, and when.
CREATE TABLE compliance_report_runs (
    day BIGINT PRIMARY KEY,
    generated_at BIGINT NOT NULL,
    generated_by TEXT NOT NULL
);
