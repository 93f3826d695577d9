//! Linked cards.
//!
//! PCI DSS, applied: the card number (PAN) is Luhn-checked, stored only
//! encrypted (vault, AES-256-GCM, purpose-bound), found again only through a
//! keyed blind index, and shown only as brand and last four digits. The CVV
//! is used to verify the card with the issuer at linking time and is never
//! stored, logged or returned; the type that carries it drops it at once.

use coffer_audit::{Entry, Outcome};
use coffer_core::Secret;
use coffer_store::sql::SqlStore;
use coffer_store::{sql_params, StoreError};
use coffer_vault::{EncryptedColumn, Vault, VaultError};
use rand::RngCore;

use std::sync::Arc;

const PAN_CONTEXT: &str = "card.pan";

/// Where card numbers are stored encrypted, for re-encryption after a key rotation.
pub const ENCRYPTED_COLUMNS: [EncryptedColumn; 1] = [EncryptedColumn {
    table: "cards",
    key: "id",
    column: "pan_enc",
    context: PAN_CONTEXT,
}];
pub const CARDS_PER_CUSTOMER_MAX: i64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("this card is already linked")]
    AlreadyLinked,
    #[error("at most {CARDS_PER_CUSTOMER_MAX} cards per customer")]
    TooMany,
    #[error("no such card")]
    NotFound,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("audit: {0}")]
    Audit(#[from] coffer_audit::AuditError),
}

impl CardError {
    fn invalid(field: &'static str, message: impl Into<String>) -> CardError {
        CardError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            CardError::Invalid { .. } => "invalid_field",
            CardError::AlreadyLinked => "card_already_linked",
            CardError::TooMany => "too_many_cards",
            CardError::NotFound => "not_found",
            CardError::Store(_) | CardError::Vault(_) | CardError::Audit(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            CardError::Invalid { field, .. } => Some(field),
            CardError::AlreadyLinked => Some("number"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brand {
    UnionPay,
    Visa,
    Mastercard,
    Amex,
    Jcb,
    Other,
}

impl Brand {
    pub fn as_str(self) -> &'static str {
        match self {
            Brand::UnionPay => "unionpay",
            Brand::Visa => "visa",
            Brand::Mastercard => "mastercard",
            Brand::Amex => "amex",
            Brand::Jcb => "jcb",
            Brand::Other => "other",
        }
    }

    /// From the issuer identification number (leading digits).
    pub fn of(pan: &str) -> Brand {
        let prefix = |n: usize| {
            pan.get(..n)
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0)
        };
        match (prefix(1), prefix(2), prefix(4)) {
            (_, 62, _) => Brand::UnionPay,
            (4, _, _) => Brand::Visa,
            (_, 51..=55, _) | (_, _, 2221..=2720) => Brand::Mastercard,
            (_, 34 | 37, _) => Brand::Amex,
            (_, _, 3528..=3589) => Brand::Jcb,
            _ => Brand::Other,
        }
    }
}

/// The Luhn (mod 10) check every card number carries.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// A card as the customer enters it. The CVV lives only here, for the
/// issuer check, and is never stored.
#[derive(Debug)]
pub struct NewCard {
    pub number: Secret<String>,
    pub expiry_month: i64,
    pub expiry_year: i64,
    pub cvv: Secret<String>,
    /// debit, credit, prepaid or gift.
    pub funding: String,
}

/// A linked card as anyone sees it: brand and last four, never the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardView {
    pub id: String,
    pub brand: &'static str,
    pub funding: String,
    pub last4: String,
    pub expiry_month: i64,
    pub expiry_year: i64,
    pub status: String,
}

fn brand_name(text: &str) -> &'static str {
    [
        Brand::UnionPay,
        Brand::Visa,
        Brand::Mastercard,
        Brand::Amex,
        Brand::Jcb,
    ]
    .into_iter()
    .find(|b| b.as_str() == text)
    .unwrap_or(Brand::Other)
    .as_str()
}

pub struct Cards {
    sql: Arc<SqlStore>,
    vault: Arc<Vault>,
}

impl Cards {
    pub fn new(sql: Arc<SqlStore>, vault: Arc<Vault>) -> Cards {
        Cards { sql, vault }
    }

    /// Validates and links a card. `today` is (year, month) for the expiry check.
    pub fn link(
        &self,
        customer_id: &str,
        card: NewCard,
        today: (i64, i64),
        ip: &str,
        now: i64,
    ) -> Result<CardView, CardError> {
        let pan: String = card
            .number
            .expose()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        if !(12..=19).contains(&pan.len()) || !pan.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardError::invalid(
                "number",
                "a card number is 12 to 19 digits",
            ));
        }
        if !luhn_valid(&pan) {
            return Err(CardError::invalid(
                "number",
                "this card number is mistyped (check digit)",
            ));
        }
        if !(1..=12).contains(&card.expiry_month) {
            return Err(CardError::invalid("expiry_month", "1 to 12"));
        }
        if (card.expiry_year, card.expiry_month) < today || card.expiry_year > today.0 + 20 {
            return Err(CardError::invalid("expiry_year", "the card has expired"));
        }
        let cvv = card.cvv.expose();
        if !(3..=4).contains(&cvv.len()) || !cvv.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardError::invalid("cvv", "3 or 4 digits"));
        }
        if !["debit", "credit", "prepaid", "gift"].contains(&card.funding.as_str()) {
            return Err(CardError::invalid(
                "funding",
                "debit, credit, prepaid or gift",
            ));
        }
        // The CVV's only use is the issuer's check at linking time (the card
        // network connector, later); it goes no further than this function.
        drop(card.cvv);
        let brand = Brand::of(&pan);
        let last4 = pan[pan.len() - 4..].to_string();
        let index = self.vault.blind_index("card", &pan);
        let pan_enc = self.vault.encrypt_text(PAN_CONTEXT, &pan)?;
        let mut id_bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut id_bytes);
        let id = format!("card_{}", hex::encode(id_bytes));
        self.sql.transaction(|db| -> Result<(), CardError> {
            let count = db
                .query_one(
                    "SELECT COUNT(*) FROM cards WHERE customer_id = $1 AND status = 'active'",
                    sql_params![customer_id],
                )?
                .int(0)?;
            if count >= CARDS_PER_CUSTOMER_MAX {
                return Err(CardError::TooMany);
            }
            let inserted = db.execute(
                "INSERT INTO cards (id, customer_id, brand, funding, last4, expiry_month, expiry_year, pan_enc, pan_index, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10) ON CONFLICT DO NOTHING",
                sql_params![
                    id.as_str(),
                    customer_id,
                    brand.as_str(),
                    card.funding.as_str(),
                    last4.as_str(),
                    card.expiry_month,
                    card.expiry_year,
                    pan_enc,
                    index.as_str(),
                    now
                ],
            )?;
            if inserted != 1 {
                return Err(CardError::AlreadyLinked);
            }
            let actor = format!("customer:{customer_id}");
            let detail = format!("{} ••{last4}", brand.as_str());
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: &actor,
                    action: "card_linked",
                    subject: Some(customer_id),
                    ip,
                    outcome: Outcome::Ok,
                    detail: &detail,
                },
            )?;
            Ok(())
        })?;
        Ok(CardView {
            id,
            brand: brand.as_str(),
            funding: card.funding,
            last4,
            expiry_month: card.expiry_month,
            expiry_year: card.expiry_year,
            status: "active".into(),
        })
    }

    pub fn list(&self, customer_id: &str) -> Result<Vec<CardView>, CardError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT id, brand, funding, last4, expiry_month, expiry_year, status FROM cards \
                 WHERE customer_id = $1 AND status = 'active' ORDER BY created_at, id",
                sql_params![customer_id],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(CardView {
                    id: r.text(0)?,
                    brand: brand_name(&r.text(1)?),
                    funding: r.text(2)?,
                    last4: r.text(3)?,
                    expiry_month: r.int(4)?,
                    expiry_year: r.int(5)?,
                    status: r.text(6)?,
                })
            })
            .collect()
    }

    /// Customers who linked a card (active or since removed) ending in
    /// `last4`, by id after `after`, at most `limit`: the back office's
    /// search. The last four digits are stored in clear for display (PCI DSS
    /// allows showing them), so they are matched directly; the number itself
    /// never is.
    pub fn customers_with_last4(
        &self,
        last4: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<String>, CardError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT DISTINCT customer_id FROM cards WHERE last4 = $1 AND customer_id > $2 \
                 ORDER BY customer_id LIMIT $3",
                sql_params![last4, after, limit],
            )
        })?;
        Ok(rows.iter().map(|r| r.text(0)).collect::<Result<_, _>>()?)
    }

    /// One active card of the customer.
    pub fn get(&self, customer_id: &str, card_id: &str) -> Result<CardView, CardError> {
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT id, brand, funding, last4, expiry_month, expiry_year, status FROM cards \
                     WHERE id = $1 AND customer_id = $2 AND status = 'active'",
                    sql_params![card_id, customer_id],
                )
            })?
            .ok_or(CardError::NotFound)?;
        Ok(CardView {
            id: row.text(0)?,
            brand: brand_name(&row.text(1)?),
            funding: row.text(2)?,
            last4: row.text(3)?,
            expiry_month: row.int(4)?,
            expiry_year: row.int(5)?,
            status: row.text(6)?,
        })
    }

    /// The card number, decrypted, for the card network connector only.
    pub fn number(&self, customer_id: &str, card_id: &str) -> Result<Secret<String>, CardError> {
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT pan_enc FROM cards WHERE id = $1 AND customer_id = $2",
                    sql_params![card_id, customer_id],
                )
            })?
            .ok_or(CardError::NotFound)?;
        Ok(self.vault.decrypt_text(PAN_CONTEXT, &row.bytes(0)?)?)
    }

    pub fn remove(
        &self,
        customer_id: &str,
        card_id: &str,
        ip: &str,
        now: i64,
    ) -> Result<(), CardError> {
        self.sql.transaction(|db| -> Result<(), CardError> {
            let removed = db.execute(
                "UPDATE cards SET status = 'removed' WHERE id = $1 AND customer_id = $2 AND status = 'active'",
                sql_params![card_id, customer_id],
            )?;
            if removed != 1 {
                return Err(CardError::NotFound);
            }
            let actor = format!("customer:{customer_id}");
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: &actor,
                    action: "card_removed",
                    subject: Some(customer_id),
                    ip,
                    outcome: Outcome::Ok,
                    detail: card_id,
                },
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_brands() {
        for valid in [
            "4111111111111111",
            "5555555555554444",
            "6212345678901265",
            "378282246310005",
        ] {
            assert!(luhn_valid(valid), "{valid}");
        }
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("41111111111111a1"));
        assert!(!luhn_valid(""));
        assert_eq!(Brand::of("6212345678901265"), Brand::UnionPay);
        assert_eq!(Brand::of("4111111111111111"), Brand::Visa);
        assert_eq!(Brand::of("5555555555554444"), Brand::Mastercard);
        assert_eq!(Brand::of("2223003122003222"), Brand::Mastercard);
        assert_eq!(Brand::of("378282246310005"), Brand::Amex);
        assert_eq!(Brand::of("3530111333300000"), Brand::Jcb);
    }
}
