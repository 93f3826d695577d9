-- Contact changes and password resets. A contact change holds two code
-- hashes, one sent to the current contact and one to the new one; the new
-- contact is stored encrypted, found by its blind index. A password reset
-- names the contact by blind index only; `customer_id` is NULL when the
-- contact belongs to no customer (the same answer was given, no code was
-- sent, and the reset can never complete).

CREATE TABLE contact_changes (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    old_contact_index TEXT NOT NULL,
    new_contact_index TEXT NOT NULL,
    new_contact_enc BLOB NOT NULL,
    old_code_hash TEXT NOT NULL,
    new_code_hash TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    completed_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX contact_changes_customer ON contact_changes (customer_id, created_at);
CREATE INDEX contact_changes_new_contact ON contact_changes (new_contact_index, created_at);

CREATE TABLE password_resets (
    id TEXT PRIMARY KEY,
    contact_index TEXT NOT NULL,
    customer_id TEXT,
    code_hash TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    completed_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX password_resets_contact ON password_resets (contact_index, created_at);
