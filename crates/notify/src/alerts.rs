//! Customer alerts: one call, inside the transaction of the event, fans an
//! alert out to the in-app inbox and to the customer's contact (SMS or
//! e-mail) as their preferences allow, in their language, each under a
//! notification key derived from the event (`<event id>:<what>`), so the
//! same event derived twice (a resolver finishing what a crash interrupted)
//! notifies once.

use coffer_core::Secret;
use coffer_store::sql::Sql;
use coffer_vault::Vault;

use crate::preferences::{self, Category, Language};
use crate::{enqueue_keyed, inbox, Channel, Message, NotifyError};

/// The vault context of a campaign's text (`campaigns.content_enc`).
pub const CAMPAIGN_CONTEXT: &str = "notification.campaign";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub title: String,
    pub body: String,
}

/// The same alert in English and Simplified Chinese.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bilingual {
    pub en: Text,
    pub zh: Text,
}

impl Bilingual {
    pub fn new(
        en_title: impl Into<String>,
        en_body: impl Into<String>,
        zh_title: impl Into<String>,
        zh_body: impl Into<String>,
    ) -> Bilingual {
        Bilingual {
            en: Text {
                title: en_title.into(),
                body: en_body.into(),
            },
            zh: Text {
                title: zh_title.into(),
                body: zh_body.into(),
            },
        }
    }

    pub fn in_language(&self, language: Language) -> &Text {
        match language {
            Language::En => &self.en,
            Language::ZhCn => &self.zh,
        }
    }
}

/// Where the customer's SMS or e-mail goes.
#[derive(Debug)]
pub struct Contact {
    pub channel: Channel,
    pub address: Secret<String>,
    pub masked: String,
}

#[derive(Debug)]
pub struct Alert<'a> {
    pub customer_id: &'a str,
    /// Unique per event and alert (e.g. `p2p:<payment id>:received`).
    pub key: &'a str,
    pub category: Category,
    pub template: &'static str,
    pub text: Bilingual,
}

/// Anything that reads as a card number: a run of 13 to 19 digits (spaces
/// or dashes between them allowed) that passes the Luhn check.
pub fn contains_card_number(text: &str) -> bool {
    fn luhn(digits: &[u32]) -> bool {
        let sum: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &d)| match (i % 2, d * 2) {
                (1, doubled) if doubled > 9 => doubled - 9,
                (1, doubled) => doubled,
                _ => d,
            })
            .sum();
        sum.is_multiple_of(10)
    }
    let mut digits: Vec<u32> = Vec::new();
    for c in text.chars().chain(std::iter::once('.')) {
        if let Some(d) = c.to_digit(10) {
            digits.push(d);
        } else if c != ' ' && c != '-' {
            if (13..=19).contains(&digits.len()) && luhn(&digits) {
                return true;
            }
            digits.clear();
        }
    }
    false
}

/// Fans `alert` out inside the caller's transaction; returns how many
/// channels it was written to (0 when every channel is switched off, or
/// when the key was written before).
pub fn send(
    db: &mut dyn Sql,
    vault: &Vault,
    alert: &Alert<'_>,
    contact: Option<&Contact>,
    now: i64,
) -> Result<usize, NotifyError> {
    for text in [&alert.text.en, &alert.text.zh] {
        // Alerts are read on lock screens and kept in mailboxes: a card
        // number in one is a bug in the caller, refused before it is stored.
        if contains_card_number(&text.title) || contains_card_number(&text.body) {
            return Err(NotifyError::Invalid(
                "text",
                format!("alert {} would carry a card number", alert.template),
            ));
        }
    }
    let mut written = 0;
    if preferences::wants(db, alert.customer_id, alert.category, "inbox")?
        && inbox::insert(
            db,
            vault,
            alert.customer_id,
            alert.key,
            alert.category,
            alert.template,
            &alert.text,
            now,
        )?
    {
        written += 1;
    }
    if let Some(contact) = contact {
        if preferences::wants(
            db,
            alert.customer_id,
            alert.category,
            contact.channel.as_str(),
        )? {
            let language = preferences::language(db, alert.customer_id)?;
            let text = alert.text.in_language(language);
            let key = format!("{}:{}", alert.key, contact.channel.as_str());
            if enqueue_keyed(
                db,
                vault,
                &Message {
                    channel: contact.channel,
                    recipient: contact.address.clone(),
                    recipient_masked: contact.masked.clone(),
                    customer_id: Some(alert.customer_id),
                    template: alert.template,
                    subject: text.title.clone(),
                    body: Secret::new(text.body.clone()),
                },
                Some(&key),
                now,
            )? {
                written += 1;
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_recognised() {
        assert!(contains_card_number("card 6212 3456 7890 1232 charged"));
        assert!(contains_card_number("4111111111111111"));
        assert!(!contains_card_number("You received CNY 12.50 from Z**"));
        assert!(!contains_card_number("ref 2026120612345678"));
        assert!(!contains_card_number("your code is 123456"));
    }
}
