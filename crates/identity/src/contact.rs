//! How a customer is reached and signs in: a mobile number in E.164 form or
//! an e-mail address, normalized so one person has one identity.

use coffer_notify::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactKind {
    Phone,
    Email,
}

impl ContactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Phone => "phone",
            ContactKind::Email => "email",
        }
    }

    pub fn parse(text: &str) -> Option<ContactKind> {
        match text {
            "phone" => Some(ContactKind::Phone),
            "email" => Some(ContactKind::Email),
            _ => None,
        }
    }

    pub fn channel(self) -> Channel {
        match self {
            ContactKind::Phone => Channel::Sms,
            ContactKind::Email => Channel::Email,
        }
    }
}

/// A validated, normalized contact.
#[derive(Clone, PartialEq, Eq)]
pub struct Contact {
    kind: ContactKind,
    normalized: String,
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data: only the masked form goes into debug output.
        write!(f, "Contact({})", self.masked())
    }
}

impl Contact {
    /// `+8613800138000` (spaces and dashes allowed) or `name@example.com`.
    pub fn parse(text: &str) -> Option<Contact> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix('+') {
            let digits: String = rest.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
            let valid = (8..=15).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0');
            return valid.then(|| Contact {
                kind: ContactKind::Phone,
                normalized: format!("+{digits}"),
            });
        }
        let lower = text.to_lowercase();
        let (local, domain) = lower.split_once('@')?;
        let valid = !local.is_empty()
            && local.len() <= 64
            && lower.len() <= 254
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && lower
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "@.+-_".contains(c));
        valid.then_some(Contact {
            kind: ContactKind::Email,
            normalized: lower,
        })
    }

    pub fn kind(&self) -> ContactKind {
        self.kind
    }

    /// The normalized text; personal data, so callers encrypt it at rest.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    /// Shown to the customer and in logs: `+86******8000`, `z***@example.com`.
    pub fn masked(&self) -> String {
        match self.kind {
            ContactKind::Phone => {
                let n = &self.normalized;
                let keep_head = 3.min(n.len());
                let keep_tail = 4.min(n.len().saturating_sub(keep_head));
                format!(
                    "{}{}{}",
                    &n[..keep_head],
                    "*".repeat(n.len() - keep_head - keep_tail),
                    &n[n.len() - keep_tail..]
                )
            }
            ContactKind::Email => match self.normalized.split_once('@') {
                Some((local, domain)) => {
                    format!("{}***@{domain}", local.chars().next().unwrap_or('*'))
                }
                None => "***".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_normalize_and_mask() {
        let phone = Contact::parse(" +86 138-0013-8000 ").expect("phone");
        assert_eq!(phone.as_str(), "+8613800138000");
        assert_eq!(phone.masked(), "+86*******8000");
        assert_eq!(format!("{phone:?}"), "Contact(+86*******8000)");
        let email = Contact::parse("Zhang.Wei@Example.COM").expect("email");
        assert_eq!(email.as_str(), "zhang.wei@example.com");
        assert_eq!(email.masked(), "z***@example.com");
        for bad in [
            "",
            "13800138000",
            "+0123456789",
            "+12",
            "+1234567890123456",
            "a@b",
            "@x.com",
            "a b@x.com",
            "a@x.com.",
            "a@@x.com",
        ] {
            assert!(Contact::parse(bad).is_none(), "{bad:?} accepted");
        }
    }
}
