-- Commits go to an append-only batch log (a file of its own beside this one,
-- `<database>.ledger-log`) and are projected into the ledger tables in larger
-- transactions. This row says how far the tables are projected; it moves in
-- the same transaction as the rows, so replaying the log never applies an
-- entry twice.
CREATE TABLE ledger_projection (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL CHECK (seq >= 0)
);
INSERT INTO ledger_projection (id, seq) VALUES (1, 0);
