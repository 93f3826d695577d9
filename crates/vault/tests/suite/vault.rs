//! The vault on both backends: round trips, tampering, purpose binding,
//! rotation without losing old data, and the master key never in storage.

use std::sync::Arc;

use coffer_store::sql::SqlStore;
use coffer_testkit::TestDatabase;
use coffer_vault::{LocalMasterKey, Requester, Vault, VaultError};

const OPERATOR: Requester<'static> = Requester {
    actor: "operator",
    ip: "cli",
};

fn master(byte: u8) -> Arc<LocalMasterKey> {
    Arc::new(LocalMasterKey::from_bytes([byte; 32]))
}

#[test]
fn envelope_encryption_round_trips_rotates_and_detects_tampering() {
    for db in TestDatabase::both() {
        let sql = Arc::new(SqlStore::open(&db.database, 2).expect("sql"));
        let vault = Vault::open(master(7), sql.clone(), 1).expect("vault");
        let sealed = vault
            .encrypt_text("customer.contact", "+8613800138000")
            .expect("encrypt");
        assert!(!sealed
            .windows(b"13800138000".len())
            .any(|w| w == b"13800138000"));
        assert_eq!(
            vault
                .decrypt_text("customer.contact", &sealed)
                .expect("decrypt")
                .expose(),
            "+8613800138000"
        );
        // Bound to its purpose: the same blob does not open as another field.
        assert!(matches!(
            vault.decrypt("card.number", &sealed),
            Err(VaultError::Tampered)
        ));
        // One flipped bit anywhere is caught.
        for i in [0usize, 5, sealed.len() / 2, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(vault.decrypt("customer.contact", &bad).is_err(), "bit {i}");
        }
        // Rotation: new writes use the new key, old data still opens.
        let first_key = vault.active_key_id();
        let second_key = vault.rotate(2, 2, OPERATOR).expect("rotate");
        assert_ne!(first_key, second_key);
        let newer = vault
            .encrypt_text("customer.contact", "x")
            .expect("encrypt");
        assert_eq!(Vault::key_of(&newer), Some(second_key.as_str()));
        assert_eq!(Vault::key_of(&sealed), Some(first_key.as_str()));
        let index = vault.blind_index("contact", "+8613800138000");
        drop(vault);

        // Reopened with the same master key: everything readable, same index.
        let vault = Vault::open(master(7), sql.clone(), 3).expect("reopen");
        assert_eq!(vault.active_key_id(), second_key);
        assert_eq!(
            vault
                .decrypt_text("customer.contact", &sealed)
                .expect("old")
                .expose(),
            "+8613800138000"
        );
        assert_eq!(vault.blind_index("contact", "+8613800138000"), index);
        assert_ne!(vault.blind_index("card", "+8613800138000"), index);

        // Another master key cannot open the data keys.
        assert!(matches!(
            Vault::open(master(8), sql.clone(), 4),
            Err(VaultError::MasterKey(_))
        ));
        // The data keys are stored wrapped: the master key is nowhere.
        let rows = sql
            .run(|db| db.query("SELECT wrapped FROM data_keys", &[]))
            .expect("rows");
        assert!(rows.len() >= 3);
        for row in rows {
            let wrapped = row.bytes(0).expect("bytes");
            assert!(!wrapped.windows(32).any(|w| w == [7u8; 32]));
        }
    }
}

#[test]
fn a_master_key_file_is_created_private_and_read_back() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("keys/master.key");
    let created = LocalMasterKey::load_or_create(&path).expect("create");
    let read = LocalMasterKey::load_or_create(&path).expect("read");
    assert_eq!(created.id(), read.id());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(&path, "not hex").expect("write");
    assert!(LocalMasterKey::from_file(&path).is_err());
    // The Debug form names the key, never shows it.
    assert!(format!("{created:?}").starts_with("LocalMasterKey(mk-"));
}
