//! Linked bank accounts: where withdrawals go and top-ups may come from.
//!
//! The account number is treated like a card number: stored only encrypted
//! (vault, purpose `bank_account.number`), found again only through a keyed
//! blind index, shown only as its last four digits. The bank comes from a
//! fixed catalogue by its code, so a customer cannot make up a bank name.

use coffer_audit::{Entry, Outcome};
use coffer_core::Secret;
use coffer_store::sql::SqlStore;
use coffer_store::{sql_params, StoreError};
use coffer_vault::{Vault, VaultError};
use rand::RngCore;

use std::sync::Arc;

const NUMBER_CONTEXT: &str = "bank_account.number";

/// What the re-encryption job must rewrite after a key rotation.
pub const ENCRYPTED_COLUMNS: [coffer_vault::EncryptedColumn; 1] = [coffer_vault::EncryptedColumn {
    table: "bank_accounts",
    key: "id",
    column: "number_enc",
    context: NUMBER_CONTEXT,
}];
pub const BANK_ACCOUNTS_PER_CUSTOMER_MAX: i64 = 5;
pub const ACCOUNT_NUMBER_DIGITS_MIN: usize = 8;
pub const ACCOUNT_NUMBER_DIGITS_MAX: usize = 30;

/// The banks an account may be held at: (code, English name, Chinese name).
/// A deployment replaces this with the clearing system's participant list.
pub const BANKS: [(&str, &str, &str); 7] = [
    (
        "ICBC",
        "Industrial and Commercial Bank of China",
        "中国工商银行",
    ),
    ("CCB", "China Construction Bank", "中国建设银行"),
    ("ABC", "Agricultural Bank of China", "中国农业银行"),
    ("BOC", "Bank of China", "中国银行"),
    ("BOCOM", "Bank of Communications", "交通银行"),
    ("CMB", "China Merchants Bank", "招商银行"),
    ("PSBC", "Postal Savings Bank of China", "中国邮政储蓄银行"),
];

#[derive(Debug, thiserror::Error)]
pub enum BankAccountError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("this bank account is already linked")]
    AlreadyLinked,
    #[error("at most {BANK_ACCOUNTS_PER_CUSTOMER_MAX} bank accounts per customer")]
    TooMany,
    #[error("no such bank account")]
    NotFound,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("audit: {0}")]
    Audit(#[from] coffer_audit::AuditError),
}

impl BankAccountError {
    fn invalid(field: &'static str, message: impl Into<String>) -> BankAccountError {
        BankAccountError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            BankAccountError::Invalid { .. } => "invalid_field",
            BankAccountError::AlreadyLinked => "bank_account_already_linked",
            BankAccountError::TooMany => "too_many_bank_accounts",
            BankAccountError::NotFound => "not_found",
            BankAccountError::Store(_)
            | BankAccountError::Vault(_)
            | BankAccountError::Audit(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            BankAccountError::Invalid { field, .. } => Some(field),
            BankAccountError::AlreadyLinked => Some("account_number"),
            _ => None,
        }
    }
}

/// An account number as typed, parsed: digits only (spaces and dashes
/// dropped), 8 to 30 of them.
pub fn parse_account_number(text: &str) -> Option<String> {
    let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    ((ACCOUNT_NUMBER_DIGITS_MIN..=ACCOUNT_NUMBER_DIGITS_MAX).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit()))
    .then_some(digits)
}

/// The catalogue entry of a bank code.
pub fn bank(code: &str) -> Option<(&'static str, &'static str, &'static str)> {
    BANKS.into_iter().find(|(c, _, _)| *c == code)
}

/// A linked bank account as anyone sees it: never the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankAccountView {
    pub id: String,
    pub bank_code: &'static str,
    pub bank_name: &'static str,
    pub last4: String,
    pub status: String,
}

impl BankAccountView {
    /// How it is named on a statement: "CMB ••0001".
    pub fn label(&self) -> String {
        format!("{} ••{}", self.bank_code, self.last4)
    }
}

pub struct BankAccounts {
    sql: Arc<SqlStore>,
    vault: Arc<Vault>,
}

impl BankAccounts {
    pub fn new(sql: Arc<SqlStore>, vault: Arc<Vault>) -> BankAccounts {
        BankAccounts { sql, vault }
    }

    pub fn link(
        &self,
        customer_id: &str,
        bank_code: &str,
        number: &Secret<String>,
        ip: &str,
        now: i64,
    ) -> Result<BankAccountView, BankAccountError> {
        let (code, name, _) = bank(bank_code).ok_or_else(|| {
            BankAccountError::invalid(
                "bank_code",
                format!("one of {}", BANKS.map(|(c, _, _)| c).join(", ")),
            )
        })?;
        let digits = parse_account_number(number.expose()).ok_or_else(|| {
            BankAccountError::invalid(
                "account_number",
                format!(
                    "an account number is {ACCOUNT_NUMBER_DIGITS_MIN} to {ACCOUNT_NUMBER_DIGITS_MAX} digits"
                ),
            )
        })?;
        let last4 = digits[digits.len() - 4..].to_string();
        let index = self.vault.blind_index("bank_account", &digits);
        let number_enc = self.vault.encrypt_text(NUMBER_CONTEXT, &digits)?;
        let mut id_bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut id_bytes);
        let id = format!("bac_{}", hex::encode(id_bytes));
        self.sql
            .transaction(|db| -> Result<(), BankAccountError> {
                let count = db
                    .query_one(
                        "SELECT COUNT(*) FROM bank_accounts WHERE customer_id = $1 AND status = 'active'",
                        sql_params![customer_id],
                    )?
                    .int(0)?;
                if count >= BANK_ACCOUNTS_PER_CUSTOMER_MAX {
                    return Err(BankAccountError::TooMany);
                }
                let inserted = db.execute(
                    "INSERT INTO bank_accounts (id, customer_id, bank_code, last4, number_enc, number_index, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'active', $7) ON CONFLICT DO NOTHING",
                    sql_params![
                        id.as_str(),
                        customer_id,
                        code,
                        last4.as_str(),
                        number_enc,
                        index.as_str(),
                        now
                    ],
                )?;
                if inserted != 1 {
                    return Err(BankAccountError::AlreadyLinked);
                }
                let actor = coffer_audit::customer_actor(customer_id);
                coffer_audit::append(
                    db,
                    &Entry {
                        at: now,
                        actor: &actor,
                        action: "bank_account_linked",
                        subject: Some(customer_id),
                        ip,
                        outcome: Outcome::Ok,
                        detail: &format!("{code} ••{last4}"),
                    },
                )?;
                Ok(())
            })?;
        Ok(BankAccountView {
            id,
            bank_code: code,
            bank_name: name,
            last4,
            status: "active".into(),
        })
    }

    pub fn list(&self, customer_id: &str) -> Result<Vec<BankAccountView>, BankAccountError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT id, bank_code, last4, status FROM bank_accounts \
                 WHERE customer_id = $1 AND status = 'active' ORDER BY created_at, id",
                sql_params![customer_id],
            )
        })?;
        rows.iter().map(view).collect()
    }

    /// One active account of the customer.
    pub fn get(
        &self,
        customer_id: &str,
        account_id: &str,
    ) -> Result<BankAccountView, BankAccountError> {
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT id, bank_code, last4, status FROM bank_accounts \
                     WHERE id = $1 AND customer_id = $2 AND status = 'active'",
                    sql_params![account_id, customer_id],
                )
            })?
            .ok_or(BankAccountError::NotFound)?;
        view(&row)
    }

    /// The account number, decrypted, for the core banking connector only.
    pub fn number(
        &self,
        customer_id: &str,
        account_id: &str,
    ) -> Result<Secret<String>, BankAccountError> {
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT number_enc FROM bank_accounts WHERE id = $1 AND customer_id = $2",
                    sql_params![account_id, customer_id],
                )
            })?
            .ok_or(BankAccountError::NotFound)?;
        Ok(self.vault.decrypt_text(NUMBER_CONTEXT, &row.bytes(0)?)?)
    }

    pub fn remove(
        &self,
        customer_id: &str,
        account_id: &str,
        ip: &str,
        now: i64,
    ) -> Result<(), BankAccountError> {
        self.sql.transaction(|db| -> Result<(), BankAccountError> {
            let removed = db.execute(
                "UPDATE bank_accounts SET status = 'removed' WHERE id = $1 AND customer_id = $2 AND status = 'active'",
                sql_params![account_id, customer_id],
            )?;
            if removed != 1 {
                return Err(BankAccountError::NotFound);
            }
            let actor = coffer_audit::customer_actor(customer_id);
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: &actor,
                    action: "bank_account_removed",
                    subject: Some(customer_id),
                    ip,
                    outcome: Outcome::Ok,
                    detail: account_id,
                },
            )?;
            Ok(())
        })
    }
}

fn view(row: &coffer_store::sql::Row) -> Result<BankAccountView, BankAccountError> {
    let code = row.text(1)?;
    let (code, name, _) =
        bank(&code).ok_or_else(|| StoreError::Corrupt(format!("unknown bank code {code:?}")))?;
    Ok(BankAccountView {
        id: row.text(0)?,
        bank_code: code,
        bank_name: name,
        last4: row.text(2)?,
        status: row.text(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_numbers_are_digits_of_a_bounded_length() {
        assert_eq!(
            parse_account_number("6222 0000-0000 0001").as_deref(),
            Some("6222000000000001")
        );
        assert!(parse_account_number("1234567").is_none());
        assert!(parse_account_number(&"1".repeat(31)).is_none());
        assert!(parse_account_number("62220000000a0001").is_none());
        assert_eq!(bank("CMB").map(|b| b.0), Some("CMB"));
        assert!(bank("cmb").is_none());
    }
}
