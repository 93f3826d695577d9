//! The master key: wraps and unwraps data keys. `LocalMasterKey` reads it
//! from a file or the environment; a KMS or HSM implements `KeyProvider`.

use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use coffer_core::Secret;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::VaultError;

pub trait KeyProvider: Send + Sync {
    /// Names the master key, stored beside each data key it wraps.
    fn master_key_id(&self) -> &str;
    fn wrap(&self, data_key: &[u8; 32]) -> Result<Vec<u8>, VaultError>;
    fn unwrap(&self, master_key_id: &str, wrapped: &[u8]) -> Result<Secret<[u8; 32]>, VaultError>;
}

/// A 256-bit master key held in process memory.
pub struct LocalMasterKey {
    id: String,
    key: Secret<[u8; 32]>,
}

impl std::fmt::Debug for LocalMasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalMasterKey({})", self.id)
    }
}

impl LocalMasterKey {
    pub fn from_bytes(key: [u8; 32]) -> LocalMasterKey {
        // The id identifies the key without revealing it.
        let id = format!(
            "mk-{}",
            &hex::encode(Sha256::digest(Sha256::digest(key)))[..16]
        );
        LocalMasterKey {
            id,
            key: Secret::new(key),
        }
    }

    /// 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<LocalMasterKey, VaultError> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| VaultError::MasterKey("expected 64 hex characters".into()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| VaultError::MasterKey("expected 64 hex characters (32 bytes)".into()))?;
        Ok(LocalMasterKey::from_bytes(key))
    }

    pub fn from_file(path: &Path) -> Result<LocalMasterKey, VaultError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| VaultError::MasterKey(format!("{}: {e}", path.display())))?;
        LocalMasterKey::from_hex(&text)
    }

    /// Reads the key file, or creates it (mode 0600) with a fresh random key:
    /// the zero-configuration default for a local or demo installation.
    pub fn load_or_create(path: &Path) -> Result<LocalMasterKey, VaultError> {
        if path.exists() {
            return LocalMasterKey::from_file(path);
        }
        LocalMasterKey::create(path)
    }

    /// Writes a fresh random key to a new file (mode 0600), creating its
    /// directory; never overwrites an existing file, which may be the only
    /// copy of a key that data is encrypted under.
    pub fn create(path: &Path) -> Result<LocalMasterKey, VaultError> {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| VaultError::MasterKey(format!("{}: {e}", parent.display())))?;
        }
        write_private(path, &hex::encode(key))
            .map_err(|e| VaultError::MasterKey(format!("{}: {e}", path.display())))?;
        Ok(LocalMasterKey::from_bytes(key))
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

impl KeyProvider for LocalMasterKey {
    fn master_key_id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, data_key: &[u8; 32]) -> Result<Vec<u8>, VaultError> {
        let cipher = Aes256Gcm::new_from_slice(self.key.expose())
            .map_err(|_| VaultError::MasterKey("bad key length".into()))?;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        out.extend(
            cipher
                .encrypt(Nonce::from_slice(&nonce), data_key.as_slice())
                .map_err(|_| VaultError::MasterKey("wrap failed".into()))?,
        );
        Ok(out)
    }

    fn unwrap(&self, master_key_id: &str, wrapped: &[u8]) -> Result<Secret<[u8; 32]>, VaultError> {
        if master_key_id != self.id {
            return Err(VaultError::MasterKey(format!(
                "data keys were wrapped by master key {master_key_id}, but {} is configured",
                self.id
            )));
        }
        if wrapped.len() < 12 {
            return Err(VaultError::Tampered);
        }
        let (nonce, sealed) = wrapped.split_at(12);
        let cipher = Aes256Gcm::new_from_slice(self.key.expose())
            .map_err(|_| VaultError::MasterKey("bad key length".into()))?;
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| VaultError::Tampered)?;
        let key: [u8; 32] = plain.try_into().map_err(|_| VaultError::Tampered)?;
        Ok(Secret::new(key))
    }
}

/// The master key and, while a master-key rotation is under way, the
/// previous ones. New data keys are wrapped by the current key; a data key
/// is unwrapped by whichever key wrapped it, so every instance keeps
/// working while `Vault::rewrap` moves the data keys to the current master
/// key. After that the previous keys are no longer needed and can be
/// removed from the configuration and destroyed.
pub struct MasterKeyRing {
    current: Arc<dyn KeyProvider>,
    previous: Vec<Arc<dyn KeyProvider>>,
}

impl std::fmt::Debug for MasterKeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let previous: Vec<&str> = self.previous.iter().map(|p| p.master_key_id()).collect();
        write!(
            f,
            "MasterKeyRing(current {}, previous {previous:?})",
            self.current.master_key_id()
        )
    }
}

impl MasterKeyRing {
    /// Refuses a previous key that is the current one (a configuration slip
    /// that would leave the rotation believed done while nothing changed).
    pub fn new(
        current: Arc<dyn KeyProvider>,
        previous: Vec<Arc<dyn KeyProvider>>,
    ) -> Result<MasterKeyRing, VaultError> {
        if let Some(same) = previous
            .iter()
            .find(|p| p.master_key_id() == current.master_key_id())
        {
            return Err(VaultError::MasterKey(format!(
                "the previous master key {} is the current one",
                same.master_key_id()
            )));
        }
        Ok(MasterKeyRing { current, previous })
    }

    /// The ids of the previous master keys.
    pub fn previous_ids(&self) -> Vec<&str> {
        self.previous.iter().map(|p| p.master_key_id()).collect()
    }
}

impl KeyProvider for MasterKeyRing {
    fn master_key_id(&self) -> &str {
        self.current.master_key_id()
    }

    fn wrap(&self, data_key: &[u8; 32]) -> Result<Vec<u8>, VaultError> {
        self.current.wrap(data_key)
    }

    fn unwrap(&self, master_key_id: &str, wrapped: &[u8]) -> Result<Secret<[u8; 32]>, VaultError> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|p| p.master_key_id() == master_key_id)
            .ok_or_else(|| {
                VaultError::MasterKey(format!(
                    "data keys were wrapped by master key {master_key_id}, which is neither the current master key {} nor a previous one",
                    self.current.master_key_id()
                ))
            })?
            .unwrap(master_key_id, wrapped)
    }
}
