-- The audit log: an append-only, hash-chained record of every security
-- event and staff action. `seq` is assigned by the appender (previous + 1,
-- never autoincrement), and `hash` = SHA-256(previous_hash || canonical
-- entry), so a changed, deleted or reordered row breaks the chain.
-- `audit_head` holds the last seq and hash: appends claim the next seq by
-- updating it (which also serializes them), and `verify` compares the last
-- row with it, so rows cut off the end are detected too.

CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT,
    ip TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    previous_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

-- Defence in depth: the application never changes or deletes a record.
-- (Someone with the rights to drop these triggers can still tamper; the
-- hash chain is what catches that.)
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
