-- Nothing on SQLite: it never compresses values. (Version 27 moves
-- PostgreSQL's log records to uncompressed out-of-line storage.)
SELECT 1;
