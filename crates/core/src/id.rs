//! Client-assigned identifiers and reason codes, validated once at the edge.

use std::fmt;
use std::sync::Arc;

/// Longest identifier a client may assign. Ledger-generated ids (hold expiries)
/// may be longer and start with `~`, a character clients cannot use, so the two
/// namespaces never collide.
pub const IDENTIFIER_LENGTH_MAX: usize = 64;
const SYSTEM_IDENTIFIER_LENGTH_MAX: usize = IDENTIFIER_LENGTH_MAX + 16;
pub const CODE_LENGTH_MAX: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "id must be 1 to {IDENTIFIER_LENGTH_MAX} characters of A-Z, a-z, 0-9, '.', '_', ':', '-'"
    )]
    MalformedId,
    #[error("code must be 1 to {CODE_LENGTH_MAX} characters of a-z, 0-9, '.', '_', '-'")]
    MalformedCode,
}

/// An account or transfer id. Shared rather than copied on clone: the
/// ledger's writer clones each transfer's ids several times (the batch, its
/// events, the overlay's index), and an allocation and a free per clone were
/// a tenth of its CPU in batched load.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier(Arc<str>);

impl Identifier {
    pub fn parse(value: &str) -> Result<Identifier, IdError> {
        let valid_chars = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if value.is_empty() || value.len() > IDENTIFIER_LENGTH_MAX || !valid_chars {
            return Err(IdError::MalformedId);
        }
        Ok(Identifier(value.into()))
    }

    /// An id the ledger assigns itself, e.g. `~expire:<hold id>`.
    pub fn system(prefix: &str, of: &Identifier) -> Identifier {
        let value = format!("~{prefix}:{}", of.0);
        debug_assert!(value.len() <= SYSTEM_IDENTIFIER_LENGTH_MAX);
        Identifier(value.into())
    }

    /// Accepts anything `parse` or `system` could have produced; used when
    /// reading back from storage.
    pub fn from_stored(value: &str) -> Result<Identifier, IdError> {
        match value.strip_prefix('~') {
            Some(rest) if value.len() <= SYSTEM_IDENTIFIER_LENGTH_MAX && !rest.is_empty() => {
                Ok(Identifier(value.into()))
            }
            Some(_) => Err(IdError::MalformedId),
            None => Identifier::parse(value),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// A reason code on a transfer (`p2p`, `fee`, `topup.card`), used for
/// filtering and reporting.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(Arc<str>);

impl Code {
    pub fn parse(value: &str) -> Result<Code, IdError> {
        let valid_chars = value.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        if value.is_empty() || value.len() > CODE_LENGTH_MAX || !valid_chars {
            return Err(IdError::MalformedCode);
        }
        Ok(Code(value.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(Identifier::parse("wallet:cust-42.CNY").is_ok());
        for bad in ["", "has space", "~expire:x", "中文", &"a".repeat(65)] {
            assert_eq!(Identifier::parse(bad), Err(IdError::MalformedId), "{bad:?}");
        }
        let hold = Identifier::parse("h1").expect("id");
        let system = Identifier::system("expire", &hold);
        assert_eq!(system.as_str(), "~expire:h1");
        assert_eq!(Identifier::from_stored(system.as_str()), Ok(system));
    }

    #[test]
    fn codes_are_validated() {
        assert!(Code::parse("topup.card").is_ok());
        for bad in ["", "Upper", "a b", &"a".repeat(33)] {
            assert_eq!(Code::parse(bad), Err(IdError::MalformedCode), "{bad:?}");
        }
    }
}
