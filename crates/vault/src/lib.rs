//! Envelope encryption for data at rest.
//!
//! Personal data and card numbers are encrypted with AES-256-GCM under a
//! *data key*; data keys are stored only wrapped (encrypted) by the *master
//! key*, which never touches the database: it comes from a file or the
//! environment through a `KeyProvider`, the seam where a KMS or HSM plugs in.
//! Each ciphertext names its data key, so rotating to a new data key needs
//! no downtime: new writes use the new key, old rows stay readable and can be
//! re-encrypted at leisure. The associated data binds a ciphertext to its
//! purpose ("customer.contact"), so a blob copied into another column does
//! not decrypt.
//!
//! Lookups never decrypt: a *blind index* (HMAC-SHA-256 under a key of its
//! own) of the normalized value is stored beside the ciphertext.

mod master;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use coffer_core::Secret;
use coffer_store::sql::SqlStore;
use coffer_store::sql_params;
use coffer_store::StoreError;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub use master::{KeyProvider, LocalMasterKey};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the master key is unusable: {0}")]
    MasterKey(String),
    #[error("a ciphertext is malformed or was tampered with")]
    Tampered,
    #[error("data key {0} is unknown")]
    UnknownKey(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The blind-index key's row in `data_keys`; it never rotates, because every
/// stored index would have to be recomputed.
const INDEX_KEY_ID: &str = "blind-index";
const FORMAT_VERSION: u8 = 1;

pub struct Vault {
    provider: Arc<dyn KeyProvider>,
    sql: Arc<SqlStore>,
    keys: RwLock<Keys>,
    index_key: Secret<[u8; 32]>,
}

#[derive(Default)]
struct Keys {
    active: String,
    by_id: HashMap<String, Secret<[u8; 32]>>,
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

impl Vault {
    /// Loads and unwraps the data keys, creating the first ones on a new database.
    pub fn open(
        provider: Arc<dyn KeyProvider>,
        sql: Arc<SqlStore>,
        now: i64,
    ) -> Result<Vault, VaultError> {
        let rows = sql.run(|db| {
            db.query(
                "SELECT id, wrapped, master_key_id, retired_at FROM data_keys ORDER BY created_at, id",
                &[],
            )
        })?;
        let mut keys = Keys::default();
        let mut index_key = None;
        for row in rows {
            let id = row.text(0)?;
            let key = provider.unwrap(&row.text(2)?, &row.bytes(1)?)?;
            if id == INDEX_KEY_ID {
                index_key = Some(key);
            } else {
                if row.opt_int(3)?.is_none() {
                    keys.active = id.clone();
                }
                keys.by_id.insert(id, key);
            }
        }
        let index_key = match index_key {
            Some(key) => key,
            None => {
                let key = random_key();
                store_key(&sql, provider.as_ref(), INDEX_KEY_ID, &key, now)?;
                Secret::new(key)
            }
        };
        let vault = Vault {
            provider,
            sql,
            keys: RwLock::new(keys),
            index_key,
        };
        if vault.read_keys().active.is_empty() {
            vault.rotate(now)?;
        }
        Ok(vault)
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a new data key for new writes; earlier keys stay for reading.
    /// Returns the new key's id.
    pub fn rotate(&self, now: i64) -> Result<String, VaultError> {
        let key = random_key();
        let mut id_bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut id_bytes);
        let id = format!("dk-{}", hex::encode(id_bytes));
        let wrapped = self.provider.wrap(&key)?;
        let master = self.provider.master_key_id().to_string();
        self.sql.transaction(|db| -> Result<(), StoreError> {
            db.execute(
                "UPDATE data_keys SET retired_at = $1 WHERE retired_at IS NULL AND id <> $2",
                sql_params![now, INDEX_KEY_ID],
            )?;
            db.execute(
                "INSERT INTO data_keys (id, wrapped, master_key_id, created_at, retired_at) VALUES ($1, $2, $3, $4, NULL)",
                sql_params![id.as_str(), wrapped, master, now],
            )?;
            Ok(())
        })?;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.by_id.insert(id.clone(), Secret::new(key));
        keys.active = id.clone();
        Ok(id)
    }

    pub fn active_key_id(&self) -> String {
        self.read_keys().active.clone()
    }

    /// Encrypts `plaintext` for the column or purpose named by `context`.
    pub fn encrypt(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let keys = self.read_keys();
        let id = keys.active.clone();
        let key = keys
            .by_id
            .get(&id)
            .ok_or_else(|| VaultError::UnknownKey(id.clone()))?;
        let cipher = Aes256Gcm::new_from_slice(key.expose()).map_err(|_| VaultError::Tampered)?;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Tampered)?;
        let id_bytes = id.as_bytes();
        let mut out = Vec::with_capacity(2 + id_bytes.len() + 12 + sealed.len());
        out.push(FORMAT_VERSION);
        out.push(u8::try_from(id_bytes.len()).map_err(|_| VaultError::UnknownKey(id.clone()))?);
        out.extend_from_slice(id_bytes);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn encrypt_text(&self, context: &str, plaintext: &str) -> Result<Vec<u8>, VaultError> {
        self.encrypt(context, plaintext.as_bytes())
    }

    pub fn decrypt(&self, context: &str, blob: &[u8]) -> Result<Secret<Vec<u8>>, VaultError> {
        let (&version, rest) = blob.split_first().ok_or(VaultError::Tampered)?;
        let (&id_len, rest) = rest.split_first().ok_or(VaultError::Tampered)?;
        if version != FORMAT_VERSION || rest.len() < usize::from(id_len) + 12 + 16 {
            return Err(VaultError::Tampered);
        }
        let (id, rest) = rest.split_at(usize::from(id_len));
        let (nonce, sealed) = rest.split_at(12);
        let id = std::str::from_utf8(id).map_err(|_| VaultError::Tampered)?;
        let keys = self.read_keys();
        let key = keys
            .by_id
            .get(id)
            .ok_or_else(|| VaultError::UnknownKey(id.to_string()))?;
        let cipher = Aes256Gcm::new_from_slice(key.expose()).map_err(|_| VaultError::Tampered)?;
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map(Secret::new)
            .map_err(|_| VaultError::Tampered)
    }

    pub fn decrypt_text(&self, context: &str, blob: &[u8]) -> Result<Secret<String>, VaultError> {
        let bytes = self.decrypt(context, blob)?.into_inner();
        String::from_utf8(bytes)
            .map(Secret::new)
            .map_err(|_| VaultError::Tampered)
    }

    /// The data key a ciphertext was made with (for re-encryption after a rotation).
    pub fn key_of(blob: &[u8]) -> Option<&str> {
        let id_len = usize::from(*blob.get(1)?);
        std::str::from_utf8(blob.get(2..2 + id_len)?).ok()
    }

    /// A keyed hash of a normalized value, for equality lookups; `purpose`
    /// separates index spaces ("contact", "card").
    pub fn blind_index(&self, purpose: &str, normalized: &str) -> String {
        // HMAC accepts a key of any length: new_from_slice cannot fail here.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.index_key.expose())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(normalized.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A keyed hash for short-lived secrets (one-time codes): unlike a plain
    /// hash, a copy of the database does not let anyone try all million codes.
    pub fn keyed_hash(&self, purpose: &str, value: &str) -> String {
        self.blind_index(&format!("secret:{purpose}"), value)
    }
}

fn store_key(
    sql: &SqlStore,
    provider: &dyn KeyProvider,
    id: &str,
    key: &[u8; 32],
    now: i64,
) -> Result<(), VaultError> {
    let wrapped = provider.wrap(key)?;
    let master = provider.master_key_id().to_string();
    sql.run(|db| {
        db.execute(
            "INSERT INTO data_keys (id, wrapped, master_key_id, created_at, retired_at) VALUES ($1, $2, $3, $4, NULL)",
            sql_params![id, wrapped, master, now],
        )
    })?;
    Ok(())
}
