-- The audit log: an append-only, hash-chained record of every security
-- event and staff action. `seq` is assigned by the appender (previous + 1,
-- never a sequence), and `hash` = SHA-256(previous_hash || canonical
-- entry), so a changed, deleted or reordered row breaks the chain.
-- `audit_head` holds the last seq and hash: appends claim the next seq by
-- updating it (the row lock serializes concurrent appends until commit),
-- and `verify` compares the last row with it, so rows cut off the end are
-- detected too.

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT,
    ip TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    previous_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);

CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Defence in depth: the application never changes or deletes a record.
-- (Someone with the rights to drop these triggers can still tamper; the
-- hash chain is what catches that.)
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
