//! Transfer metadata: a small, bounded map of strings, kept in a canonical order
//! so that it hashes and compares the same way every time.

use std::collections::BTreeMap;

pub const METADATA_ENTRIES_MAX: usize = 16;
pub const METADATA_KEY_LENGTH_MAX: usize = 64;
pub const METADATA_VALUE_LENGTH_MAX: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata(BTreeMap<String, String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata has more than {METADATA_ENTRIES_MAX} entries")]
    TooManyEntries,
    #[error("metadata key {0:?} must be 1 to {METADATA_KEY_LENGTH_MAX} characters of a-z, 0-9, '_', '.', '-'")]
    MalformedKey(String),
    #[error("metadata value of {0:?} is longer than {METADATA_VALUE_LENGTH_MAX} bytes or holds control characters")]
    MalformedValue(String),
}

impl Metadata {
    pub fn new(entries: BTreeMap<String, String>) -> Result<Metadata, MetadataError> {
        if entries.len() > METADATA_ENTRIES_MAX {
            return Err(MetadataError::TooManyEntries);
        }
        for (key, value) in &entries {
            let key_ok = !key.is_empty()
                && key.len() <= METADATA_KEY_LENGTH_MAX
                && key.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
                });
            if !key_ok {
                return Err(MetadataError::MalformedKey(key.clone()));
            }
            if value.len() > METADATA_VALUE_LENGTH_MAX || value.chars().any(char::is_control) {
                return Err(MetadataError::MalformedValue(key.clone()));
            }
        }
        Ok(Metadata(entries))
    }

    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
