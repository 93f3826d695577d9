-- A log record is written once and read back at most once (by recovery),
-- and most of a large batch's record does not compress much: storing it
-- out of line without pglz compression saves the writer the compression of
-- every record over 2 KB on the commit path.
ALTER TABLE ledger_log ALTER COLUMN record SET STORAGE EXTERNAL;
