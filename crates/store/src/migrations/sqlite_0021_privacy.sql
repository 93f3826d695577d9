-- Privacy: the consents a customer gives partners to read their data.
-- Partner reads themselves are recorded in the audit log (actor
-- `partner:<id>`, subject the customer), beside staff views, so one
-- hash-chained record answers "who saw my data".
CREATE TABLE privacy_consents (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    -- The `<id>` of the partner's API key scope `partner:<id>`.
    partner_id TEXT NOT NULL,
    -- Space-separated, from a closed set: profile balance transactions.
    scopes TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX privacy_consents_customer ON privacy_consents (customer_id, granted_at);
CREATE INDEX privacy_consents_partner ON privacy_consents (partner_id, customer_id);

-- A data export the customer asked for (after a step-up): the archive is
-- built when downloaded, within a short window, and never stored, so the
-- database holds no second, clear copy of the customer's data.
CREATE TABLE privacy_exports (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    downloads INTEGER NOT NULL
);
CREATE INDEX privacy_exports_customer ON privacy_exports (customer_id, requested_at);
