//! Passwords, by NIST SP 800-63B: at least 8 characters, up to 128, any
//! characters; refused when common, breached, a simple pattern, or the
//! customer's own contact; no composition rules and no forced rotation.
//! Stored as Argon2id (PHC string with its salt and parameters).

use std::collections::HashSet;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use coffer_core::Secret;

pub const PASSWORD_LENGTH_MIN: usize = 8;
pub const PASSWORD_LENGTH_MAX: usize = 128;

const SHIPPED_LIST: &str = include_str!("common_passwords.txt");

/// Why a password is refused; shown to the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakness {
    TooShort,
    TooLong,
    Common,
    Pattern,
    ContainsContact,
}

impl Weakness {
    pub fn message(self) -> String {
        match self {
            Weakness::TooShort => format!("use at least {PASSWORD_LENGTH_MIN} characters"),
            Weakness::TooLong => format!("use at most {PASSWORD_LENGTH_MAX} characters"),
            Weakness::Common => {
                "this password is too common or has appeared in a breach; choose another".into()
            }
            Weakness::Pattern => "avoid repeated characters and simple sequences".into(),
            Weakness::ContainsContact => "do not use your phone number or e-mail address".into(),
        }
    }
}

/// The refusal list and the hashing parameters.
pub struct PasswordPolicy {
    refused: HashSet<String>,
    argon2: Argon2<'static>,
}

impl std::fmt::Debug for PasswordPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordPolicy({} refused)", self.refused.len())
    }
}

impl PasswordPolicy {
    /// The shipped list plus a bank's own (one password per line).
    pub fn new(extra_list: Option<&str>) -> PasswordPolicy {
        let refused = SHIPPED_LIST
            .lines()
            .chain(extra_list.unwrap_or("").lines())
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_lowercase)
            .collect();
        // OWASP's Argon2id baseline: 19 MiB, 2 passes, 1 lane.
        let params = Params::new(19 * 1024, 2, 1, None)
            .unwrap_or_else(|_| unreachable!("constant Argon2 parameters are valid"));
        PasswordPolicy {
            refused,
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        }
    }

    pub fn check(&self, password: &Secret<String>, contact: &str) -> Result<(), Weakness> {
        let password = password.expose();
        let length = password.chars().count();
        if length < PASSWORD_LENGTH_MIN {
            return Err(Weakness::TooShort);
        }
        if length > PASSWORD_LENGTH_MAX {
            return Err(Weakness::TooLong);
        }
        let lower = password.to_lowercase();
        if self.refused.contains(&lower) {
            return Err(Weakness::Common);
        }
        if is_pattern(&lower) {
            return Err(Weakness::Pattern);
        }
        let contact_core = contact
            .trim_start_matches('+')
            .split('@')
            .next()
            .unwrap_or("");
        let tail: String = contact_core
            .chars()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if contact_core.len() >= 4 && (lower.contains(contact_core) || lower.contains(&tail)) {
            return Err(Weakness::ContainsContact);
        }
        Ok(())
    }

    pub fn hash(&self, password: &Secret<String>) -> Result<String, String> {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        self.argon2
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    }

    pub fn verify(&self, stored: &str, password: &Secret<String>) -> bool {
        PasswordHash::new(stored)
            .map(|hash| {
                self.argon2
                    .verify_password(password.expose().as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false)
    }

    /// Spends the time of a real verification, so a sign-in for an unknown
    /// contact takes as long as one with a wrong password.
    pub fn verify_nothing(&self, password: &Secret<String>) {
        let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0c2FsdA").ok();
        if let Some(salt) = salt {
            let _ = self
                .argon2
                .hash_password(password.expose().as_bytes(), &salt);
        }
    }
}

/// One character repeated, or a run of consecutive characters (up or down).
fn is_pattern(lower: &str) -> bool {
    let chars: Vec<char> = lower.chars().collect();
    let same = chars.windows(2).all(|w| w[0] == w[1]);
    let step = |d: i32| chars.windows(2).all(|w| (w[1] as i32) - (w[0] as i32) == d);
    same || step(1) || step(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> Secret<String> {
        Secret::new(text.to_string())
    }

    #[test]
    fn nist_rules_refuse_short_common_patterned_and_personal_passwords() {
        let policy = PasswordPolicy::new(Some("bankname2026\n"));
        let contact = "+8613800138000";
        for (password, weakness) in [
            ("short1!", Weakness::TooShort),
            ("Password123", Weakness::Common),
            ("WOAINI1314", Weakness::Common),
            ("bankname2026", Weakness::Common),
            ("aaaaaaaaaa", Weakness::Pattern),
            ("abcdefghij", Weakness::Pattern),
            ("98765432", Weakness::Pattern),
            ("my13800138000", Weakness::ContainsContact),
        ] {
            assert_eq!(
                policy.check(&secret(password), contact),
                Err(weakness),
                "{password}"
            );
        }
        assert_eq!(
            policy.check(&secret(&"x".repeat(129)), contact),
            Err(Weakness::TooLong)
        );
        // No composition rules: a long lowercase passphrase is fine, so is any script.
        assert_eq!(
            policy.check(&secret("correct horse battery staple"), contact),
            Ok(())
        );
        assert_eq!(policy.check(&secret("我的钱包很安全啊"), contact), Ok(()));
    }

    #[test]
    fn argon2id_hashes_verify_and_hide_the_password() {
        let policy = PasswordPolicy::new(None);
        let hash = policy.hash(&secret("correct horse")).expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains("correct"));
        assert!(policy.verify(&hash, &secret("correct horse")));
        assert!(!policy.verify(&hash, &secret("correct horsf")));
        assert!(!policy.verify("not a hash", &secret("correct horse")));
        assert_ne!(
            hash,
            policy.hash(&secret("correct horse")).expect("hash"),
            "salted"
        );
    }
}
