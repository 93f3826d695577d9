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
//!
//! Rotation (`rotation.rs`): a new data key is stored at once but used for
//! writes only after an activation delay, so every running instance has
//! learned it (`refresh`) before any value under it exists; then
//! `reencrypt` moves every stored value to it, row by row. A new master
//! key comes in through `MasterKeyRing` beside the previous one, and
//! `rewrap` re-wraps every data key under it, after which the previous
//! master key is no longer needed.

mod master;
mod rotation;

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

pub use master::{KeyProvider, LocalMasterKey, MasterKeyRing};
pub use rotation::{
    DataKeyView, EncryptedColumn, Progress, ReencryptReport, RewrapReport, REENCRYPT_BATCH_ROWS,
    REENCRYPT_PROGRESS_ROWS,
};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the master key is unusable: {0}")]
    MasterKey(String),
    #[error("a ciphertext is malformed or was tampered with")]
    Tampered,
    #[error("data key {0} is unknown")]
    UnknownKey(String),
    /// A stored value that does not open, named by table, column and row
    /// (ids only, never the value).
    #[error("{table}.{column} of row {row}: {source}")]
    Stored {
        table: &'static str,
        column: &'static str,
        row: String,
        source: Box<VaultError>,
    },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("audit log: {0}")]
    Audit(#[from] coffer_audit::AuditError),
}

/// The blind-index key's row in `data_keys`. It is not rotated with the
/// data keys: every stored index and keyed hash would have to be recomputed
/// (see docs/SECURITY.md); a master-key rotation re-wraps it like the others.
const INDEX_KEY_ID: &str = "blind-index";
const FORMAT_VERSION: u8 = 1;

/// How often a running service re-reads the data keys (`Vault::refresh`),
/// learning keys that another process (`coffer keys rotate`) created.
pub const KEY_REFRESH_SECONDS: i64 = 30;
/// From a rotation to the new key's first use for writing: two refresh
/// intervals, so every instance can decrypt with the key before any value
/// under it is written.
pub const KEY_ACTIVATION_DELAY_SECONDS: i64 = 2 * KEY_REFRESH_SECONDS;

/// Who asked for a key operation, as the audit log records it.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub actor: &'a str,
    pub ip: &'a str,
}

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
    /// (active_from, id) of every data key, oldest first.
    schedule: Vec<(i64, String)>,
}

impl Keys {
    /// The newest key whose time has come: the key for new writes at `now`.
    fn choose_active(&mut self, now: i64) {
        self.schedule.sort();
        if let Some((_, id)) = self
            .schedule
            .iter()
            .rev()
            .find(|(from, _)| *from <= now)
            .or_else(|| self.schedule.first())
        {
            self.active = id.clone();
        }
    }

    /// Keys older than the active one: what re-encryption moves values off.
    fn older_than_active(&self) -> std::collections::HashSet<String> {
        let Some(position) = self.schedule.iter().position(|(_, id)| *id == self.active) else {
            return Default::default();
        };
        self.schedule[..position]
            .iter()
            .map(|(_, id)| id.clone())
            .collect()
    }
}

/// One `data_keys` row as stored.
struct KeyRow {
    id: String,
    wrapped: Vec<u8>,
    master_key_id: String,
    created_at: i64,
    active_from: i64,
    retired_at: Option<i64>,
}

fn key_rows(sql: &SqlStore) -> Result<Vec<KeyRow>, VaultError> {
    let rows = sql.run(|db| {
        db.query(
            "SELECT id, wrapped, master_key_id, created_at, active_from, retired_at FROM data_keys ORDER BY created_at, id",
            &[],
        )
    })?;
    rows.iter()
        .map(|row| {
            let created_at = row.int(3)?;
            Ok(KeyRow {
                id: row.text(0)?,
                wrapped: row.bytes(1)?,
                master_key_id: row.text(2)?,
                created_at,
                active_from: row.opt_int(4)?.unwrap_or(created_at),
                retired_at: row.opt_int(5)?,
            })
        })
        .collect()
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
        let mut index_key = None;
        let mut keys = Keys::default();
        for row in key_rows(&sql)? {
            let key = provider.unwrap(&row.master_key_id, &row.wrapped)?;
            if row.id == INDEX_KEY_ID {
                index_key = Some(key);
            } else {
                keys.schedule.push((row.active_from, row.id.clone()));
                keys.by_id.insert(row.id, key);
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
        keys.choose_active(now);
        let vault = Vault {
            provider,
            sql,
            keys: RwLock::new(keys),
            index_key,
        };
        if vault.read_keys().active.is_empty() {
            // The first data key of a new database: active at once, nothing
            // else can have been written yet.
            vault.add_data_key(now, now, None)?;
        }
        Ok(vault)
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_keys(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads the data keys: learns keys another process created and
    /// switches new writes to the newest key whose activation time has come.
    /// A running service calls this every `KEY_REFRESH_SECONDS`.
    pub fn refresh(&self, now: i64) -> Result<(), VaultError> {
        let rows = key_rows(&self.sql)?;
        let mut learned = Vec::new();
        {
            let known = self.read_keys();
            for row in rows.iter().filter(|r| r.id != INDEX_KEY_ID) {
                if !known.by_id.contains_key(&row.id) {
                    let key = self.provider.unwrap(&row.master_key_id, &row.wrapped)?;
                    learned.push((row.id.clone(), key));
                }
            }
        }
        let mut keys = self.write_keys();
        keys.by_id.extend(learned);
        keys.schedule = rows
            .iter()
            .filter(|r| r.id != INDEX_KEY_ID)
            .map(|r| (r.active_from, r.id.clone()))
            .collect();
        keys.choose_active(now);
        Ok(())
    }

    /// Starts a new data key. Every process that refreshes can decrypt with
    /// it at once; it becomes the key for new writes at `active_from`
    /// (`now` plus `KEY_ACTIVATION_DELAY_SECONDS` while services run, `now`
    /// when none does). The key it replaces is marked retired from then.
    /// Audited. Returns the new key's id.
    pub fn rotate(
        &self,
        now: i64,
        active_from: i64,
        requester: Requester<'_>,
    ) -> Result<String, VaultError> {
        let active_from = active_from.max(now);
        let id = self.add_data_key(now, active_from, Some(requester))?;
        Ok(id)
    }

    fn add_data_key(
        &self,
        now: i64,
        active_from: i64,
        requester: Option<Requester<'_>>,
    ) -> Result<String, VaultError> {
        let key = random_key();
        let mut id_bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut id_bytes);
        let id = format!("dk-{}", hex::encode(id_bytes));
        let wrapped = self.provider.wrap(&key)?;
        let master = self.provider.master_key_id().to_string();
        self.sql.transaction(|db| -> Result<(), VaultError> {
            let retired = db.query(
                "UPDATE data_keys SET retired_at = $1 WHERE retired_at IS NULL AND id <> $2 RETURNING id",
                sql_params![active_from, INDEX_KEY_ID],
            )?;
            db.execute(
                "INSERT INTO data_keys (id, wrapped, master_key_id, created_at, retired_at, active_from) VALUES ($1, $2, $3, $4, NULL, $5)",
                sql_params![id.as_str(), wrapped, master, now, active_from],
            )?;
            if let Some(requester) = requester {
                let retired = retired
                    .iter()
                    .map(|r| r.text(0))
                    .collect::<Result<Vec<_>, _>>()?;
                coffer_audit::append(
                    db,
                    &coffer_audit::Entry {
                        at: now,
                        actor: requester.actor,
                        action: "data_key_rotated",
                        subject: Some(&id),
                        ip: requester.ip,
                        outcome: coffer_audit::Outcome::Ok,
                        detail: &format!(
                            "new writes from {active_from} (ns); replaces {}",
                            retired.join(", ")
                        ),
                    },
                )?;
            }
            Ok(())
        })?;
        let mut keys = self.write_keys();
        keys.by_id.insert(id.clone(), Secret::new(key));
        keys.schedule.push((active_from, id.clone()));
        keys.choose_active(now);
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
