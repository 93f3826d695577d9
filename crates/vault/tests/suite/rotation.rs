//! Finishing a rotation on both backends, over real tables of the schema
//! (`cards`: text keys; `notifications`: integer keys and erased, NULL
//! bodies): every value moved to the new data key and still readable; a run
//! stopped midway resumes; a write racing the job is never lost; instances
//! learn a rotation before they write with it; and after a master-key
//! rewrap the previous master key is not needed.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use coffer_store::sql::SqlStore;
use coffer_store::sql_params;
use coffer_testkit::TestDatabase;
use coffer_vault::{
    EncryptedColumn, KeyProvider, LocalMasterKey, MasterKeyRing, Requester, Vault, VaultError,
    REENCRYPT_BATCH_ROWS, REENCRYPT_PROGRESS_ROWS,
};

const OPERATOR: Requester<'static> = Requester {
    actor: "operator",
    ip: "cli",
};
const SECOND: i64 = 1_000_000_000;

const COLUMNS: [EncryptedColumn; 3] = [
    EncryptedColumn {
        table: "cards",
        key: "id",
        column: "pan_enc",
        context: "card.pan",
    },
    EncryptedColumn {
        table: "notifications",
        key: "seq",
        column: "recipient_enc",
        context: "notification.recipient",
    },
    EncryptedColumn {
        table: "notifications",
        key: "seq",
        column: "body_enc",
        context: "notification.body",
    },
];

/// More cards than one page holds, so the walk crosses pages.
const CARDS: usize = REENCRYPT_BATCH_ROWS + 50;
const MESSAGES: i64 = 30;

fn master(byte: u8) -> Arc<LocalMasterKey> {
    Arc::new(LocalMasterKey::from_bytes([byte; 32]))
}

fn pan(i: usize) -> String {
    format!("4000{i:012}")
}

/// Cards and messages encrypted under the vault's active key; every third
/// message delivered (body erased).
fn fill(sql: &SqlStore, vault: &Vault) {
    for i in 0..CARDS {
        let pan_enc = vault.encrypt_text("card.pan", &pan(i)).expect("encrypt");
        sql.run(|db| {
            db.execute(
                "INSERT INTO cards (id, customer_id, brand, funding, last4, expiry_month, expiry_year, pan_enc, pan_index, status, created_at) \
                 VALUES ($1, 'cus_1', 'visa', 'debit', '0000', 1, 2030, $2, $3, 'active', 0)",
                sql_params![format!("card_{i:04}"), pan_enc, format!("ix{i}")],
            )
        })
        .expect("card");
    }
    for i in 0..MESSAGES {
        let recipient = vault
            .encrypt_text("notification.recipient", &format!("+86138{i:08}"))
            .expect("encrypt");
        let body = (i % 3 != 0).then(|| {
            vault
                .encrypt_text("notification.body", &format!("code {i}"))
                .expect("encrypt")
        });
        sql.run(|db| {
            db.execute(
                "INSERT INTO notifications (channel, recipient_enc, recipient_masked, customer_id, template, body_enc, created_at, next_attempt_at, attempts, state, sent_at, last_error) \
                 VALUES ('sms', $1, '+86***', NULL, 't', $2, 0, 0, 0, 'pending', NULL, NULL)",
                sql_params![recipient, body],
            )
        })
        .expect("message");
    }
}

/// Every stored value, decrypted: (column, row) → plaintext.
fn plaintexts(sql: &SqlStore, vault: &Vault) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for column in COLUMNS {
        let rows = sql
            .run(|db| {
                db.query(
                    &format!(
                        "SELECT CAST({} AS TEXT), {} FROM {} WHERE {} IS NOT NULL",
                        column.key, column.column, column.table, column.column
                    ),
                    &[],
                )
            })
            .expect("rows");
        for row in rows {
            let blob = row.bytes(1).expect("blob");
            let text = vault
                .decrypt_text(column.context, &blob)
                .unwrap_or_else(|e| panic!("{} does not decrypt: {e}", column.name()));
            out.insert(
                (column.name(), row.text(0).expect("key")),
                text.expose().clone(),
            );
        }
    }
    out
}

fn audit_actions(sql: &SqlStore) -> Vec<String> {
    sql.run(|db| db.query("SELECT action FROM audit_log ORDER BY seq", &[]))
        .expect("audit")
        .iter()
        .map(|r| r.text(0).expect("action"))
        .collect()
}

#[test]
fn rotate_then_reencrypt_leaves_nothing_under_the_old_key_and_everything_readable() {
    for db in TestDatabase::both() {
        let sql = Arc::new(SqlStore::open(&db.database, 4).expect("sql"));
        let vault = Vault::open(master(7), sql.clone(), SECOND).expect("vault");
        let old_key = vault.active_key_id();
        fill(&sql, &vault);
        let before = plaintexts(&sql, &vault);
        assert_eq!(before.len(), CARDS + 30 + 20);

        // Rotated with an activation delay: readable at once, written later.
        let new_key = vault
            .rotate(2 * SECOND, 62 * SECOND, OPERATOR)
            .expect("rotate");
        assert_eq!(vault.active_key_id(), old_key, "not active yet");
        vault.refresh(62 * SECOND).expect("refresh");
        assert_eq!(vault.active_key_id(), new_key);

        // Stopped at the first progress report: part moved, the rest still old.
        let mut pages = 0;
        let stopped = vault
            .reencrypt(&COLUMNS, 63 * SECOND, OPERATOR, &mut |_| {
                pages += 1;
                ControlFlow::Break(())
            })
            .expect("first run");
        assert!(stopped.stopped);
        assert_eq!(stopped.reencrypted, REENCRYPT_PROGRESS_ROWS as u64);
        assert_eq!(
            stopped.remaining,
            (before.len() - REENCRYPT_PROGRESS_ROWS) as u64
        );
        assert_eq!(pages, 1);

        // Run again: it resumes, skipping what is done, and finishes.
        let mut seen = Vec::new();
        let done = vault
            .reencrypt(&COLUMNS, 64 * SECOND, OPERATOR, &mut |p| {
                seen.push(p.scanned);
                ControlFlow::Continue(())
            })
            .expect("second run");
        assert!(!done.stopped);
        assert_eq!(done.target, new_key);
        assert_eq!(done.scanned, before.len() as u64);
        assert_eq!(
            done.reencrypted,
            (before.len() - REENCRYPT_PROGRESS_ROWS) as u64
        );
        assert_eq!(done.remaining, 0);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]) && !seen.is_empty());

        // No stored value names the old key; every value reads the same.
        let census = vault.census(&COLUMNS).expect("census");
        assert_eq!(
            census,
            BTreeMap::from([(new_key.clone(), before.len() as u64)])
        );
        assert_eq!(plaintexts(&sql, &vault), before);
        // The index key is keyed separately: lookups are unchanged.
        let reopened = Vault::open(master(7), sql.clone(), 65 * SECOND).expect("reopen");
        assert_eq!(
            reopened.blind_index("card", &pan(1)),
            vault.blind_index("card", &pan(1))
        );
        assert_eq!(plaintexts(&sql, &reopened), before);
        // A third run has nothing left to do.
        let again = vault
            .reencrypt(&COLUMNS, 66 * SECOND, OPERATOR, &mut |_| {
                ControlFlow::Continue(())
            })
            .expect("third run");
        assert_eq!((again.reencrypted, again.remaining), (0, 0));

        let actions = audit_actions(&sql);
        assert_eq!(
            actions,
            [
                "data_key_rotated",
                "values_reencrypted",
                "values_reencrypted",
                "values_reencrypted"
            ],
            "{}",
            db.name()
        );
    }
}

#[test]
fn a_write_racing_the_job_is_never_lost() {
    for db in TestDatabase::both() {
        let sql = Arc::new(SqlStore::open(&db.database, 4).expect("sql"));
        let vault = Arc::new(Vault::open(master(7), sql.clone(), SECOND).expect("vault"));
        fill(&sql, &vault);
        let new_key = vault
            .rotate(2 * SECOND, 2 * SECOND, OPERATOR)
            .expect("rotate");
        // A second service instance, on the old key until it refreshes.
        let service = Vault::open(master(7), sql.clone(), SECOND).expect("service");
        assert_ne!(service.active_key_id(), new_key);

        // While the job walks the cards, the service rewrites a card the job
        // has not read yet and one it has passed, with the key it has.
        let mut written = Vec::new();
        let report = vault
            .reencrypt(&COLUMNS[..1], 3 * SECOND, OPERATOR, &mut |progress| {
                if written.is_empty() {
                    assert_eq!(progress.scanned, REENCRYPT_PROGRESS_ROWS as u64);
                    for i in [3usize, REENCRYPT_BATCH_ROWS + 7] {
                        let updated = format!("5{i:015}");
                        let blob = service.encrypt_text("card.pan", &updated).expect("encrypt");
                        sql.transaction(|db| {
                            db.execute(
                                "UPDATE cards SET pan_enc = $1 WHERE id = $2",
                                sql_params![blob, format!("card_{i:04}")],
                            )
                        })
                        .expect("update");
                        written.push((i, updated));
                    }
                }
                ControlFlow::Continue(())
            })
            .expect("reencrypt");
        // The write behind the job's position is under the old key: counted,
        // not overwritten; the one ahead of it was moved with its new value.
        assert_eq!(report.remaining, 1);
        for (i, value) in &written {
            let blob = sql
                .run(|db| {
                    db.query_one(
                        "SELECT pan_enc FROM cards WHERE id = $1",
                        sql_params![format!("card_{i:04}")],
                    )
                })
                .expect("row")
                .bytes(0)
                .expect("blob");
            assert_eq!(
                vault
                    .decrypt_text("card.pan", &blob)
                    .expect("decrypt")
                    .expose(),
                value,
                "{}: card {i}",
                db.name()
            );
        }
        // Once every instance has switched, the next run takes the rest.
        service.refresh(3 * SECOND).expect("refresh");
        assert_eq!(service.active_key_id(), new_key);
        let report = vault
            .reencrypt(&COLUMNS[..1], 4 * SECOND, OPERATOR, &mut |_| {
                ControlFlow::Continue(())
            })
            .expect("again");
        assert_eq!((report.reencrypted, report.remaining), (1, 0));
    }
}

#[test]
fn the_compare_and_swap_rereads_a_row_changed_between_read_and_write() {
    // Drive the race deterministically: at the first progress report the
    // job has read a page of REENCRYPT_BATCH_ROWS but written only
    // REENCRYPT_PROGRESS_ROWS of them; a writer replaces a value in between.
    for db in TestDatabase::both() {
        let sql = Arc::new(SqlStore::open(&db.database, 4).expect("sql"));
        let vault = Vault::open(master(7), sql.clone(), SECOND).expect("vault");
        fill(&sql, &vault);
        let stale = Vault::open(master(7), sql.clone(), SECOND).expect("stale writer");
        vault
            .rotate(2 * SECOND, 2 * SECOND, OPERATOR)
            .expect("rotate");
        // The stale writer's blob for a card the job will reach later.
        let i = REENCRYPT_PROGRESS_ROWS + 20;
        assert!(i < REENCRYPT_BATCH_ROWS);
        let racing = stale
            .encrypt_text("card.pan", "4111111111111111")
            .expect("encrypt");
        let mut swapped = false;
        let report = vault
            .reencrypt(&COLUMNS[..1], 3 * SECOND, OPERATOR, &mut |_| {
                if !swapped {
                    swapped = true;
                    sql.run(|db| {
                        db.execute(
                            "UPDATE cards SET pan_enc = $1 WHERE id = $2",
                            sql_params![racing.clone(), format!("card_{i:04}")],
                        )
                    })
                    .expect("race");
                }
                ControlFlow::Continue(())
            })
            .expect("reencrypt");
        assert_eq!((report.conflicts, report.remaining), (1, 0));
        let blob = sql
            .run(|db| {
                db.query_one(
                    "SELECT pan_enc FROM cards WHERE id = $1",
                    sql_params![format!("card_{i:04}")],
                )
            })
            .expect("row")
            .bytes(0)
            .expect("blob");
        assert_eq!(
            vault
                .decrypt_text("card.pan", &blob)
                .expect("decrypt")
                .expose(),
            "4111111111111111"
        );
    }
}

#[test]
fn after_a_master_key_rewrap_the_previous_master_key_is_not_needed() {
    for db in TestDatabase::both() {
        let sql = Arc::new(SqlStore::open(&db.database, 4).expect("sql"));
        let vault = Vault::open(master(7), sql.clone(), SECOND).expect("vault");
        fill(&sql, &vault);
        vault
            .rotate(2 * SECOND, 2 * SECOND, OPERATOR)
            .expect("rotate");
        let before = plaintexts(&sql, &vault);
        let index = vault.blind_index("contact", "+8613800138000");
        let (old, new) = (master(7), master(9));

        // The new master key alone cannot open the data keys yet.
        assert!(matches!(
            Vault::open(new.clone(), sql.clone(), 3 * SECOND),
            Err(VaultError::MasterKey(_))
        ));
        assert!(MasterKeyRing::new(old.clone(), vec![old.clone()]).is_err());
        // With the old one as previous, everything opens, then is rewrapped.
        let ring = Arc::new(
            MasterKeyRing::new(new.clone(), vec![old.clone() as Arc<dyn KeyProvider>])
                .expect("ring"),
        );
        let during = Vault::open(ring, sql.clone(), 3 * SECOND).expect("with the ring");
        assert_eq!(plaintexts(&sql, &during), before);
        let report = during.rewrap(4 * SECOND, OPERATOR).expect("rewrap");
        assert_eq!(report.rewrapped, 3, "two data keys and the index key");
        assert_eq!(report.previous, vec![old.id().to_string()]);
        assert_eq!(report.master_key_id, new.id());
        assert!(during
            .data_keys()
            .expect("keys")
            .iter()
            .all(|k| k.master_key_id == new.id()));
        // Rewrapping again changes nothing.
        assert_eq!(
            during
                .rewrap(5 * SECOND, OPERATOR)
                .expect("again")
                .rewrapped,
            0
        );

        // The old master key is no longer needed; it no longer works.
        let after = Vault::open(new.clone(), sql.clone(), 6 * SECOND).expect("new key alone");
        assert_eq!(plaintexts(&sql, &after), before);
        assert_eq!(after.blind_index("contact", "+8613800138000"), index);
        assert!(matches!(
            Vault::open(old, sql.clone(), 6 * SECOND),
            Err(VaultError::MasterKey(_))
        ));
        assert_eq!(
            audit_actions(&sql),
            [
                "data_key_rotated",
                "master_key_rewrapped",
                "master_key_rewrapped"
            ]
        );
    }
}
