-- Commits go to an append-only batch log and are projected into the ledger
-- tables in larger transactions. `ledger_projection` says how far the tables
-- are projected; it moves in the same transaction as the rows, so replaying
-- the log never applies an entry twice.
CREATE TABLE ledger_log (
    seq BIGINT PRIMARY KEY,
    record BYTEA NOT NULL
);
CREATE TABLE ledger_projection (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL CHECK (seq >= 0)
);
INSERT INTO ledger_projection (id, seq) VALUES (1, 0);
