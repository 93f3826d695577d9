//! The customer's alert for every payment kind that moved money: one call
//! in the transaction that sets the payment's final state from the
//! ledger's answer (so there is none for a refused or rolled-back payment),
//! keyed by the payment and the party (so a resolver finishing the same
//! payment after a crash cannot alert twice), to the inbox and the contact
//! as the customer's preferences allow (`Identity::notify_customer`).

use coffer_identity::{Identity, IdentityError};
use coffer_notify::alerts::Bilingual;
use coffer_notify::preferences::Category;
use coffer_store::sql::Sql;
use coffer_store::sql_params;

/// One alert's words: what happened, in English and Chinese.
pub(crate) struct Moved<'a> {
    /// The template name, also the key's prefix: `top_up`, `withdrawal`…
    pub template: &'static str,
    pub category: Category,
    /// The payment record's id.
    pub source_id: &'a str,
    pub en: (&'static str, String),
    pub zh: (&'static str, String),
}

/// Alerts `customer_id`; a party that is no customer (a merchant's own
/// settlement wallet, paid out through the withdrawal path) gets none, nor
/// does an erased customer (no contact left, and a refund to the wallet
/// kept under the pseudonymous id must still finish).
pub(crate) fn send(
    identity: &Identity,
    db: &mut dyn Sql,
    customer_id: &str,
    moved: Moved<'_>,
) -> Result<(), IdentityError> {
    let status = db.query_opt(
        "SELECT status FROM customers WHERE id = $1",
        sql_params![customer_id],
    )?;
    match status.map(|row| row.text(0)).transpose()? {
        None => return Ok(()),
        Some(status) if status == "erased" => return Ok(()),
        Some(_) => {}
    }
    identity.notify_customer(
        db,
        customer_id,
        &format!("{}:{}", moved.template, moved.source_id),
        moved.category,
        moved.template,
        Bilingual::new(moved.en.0, moved.en.1, moved.zh.0, moved.zh.1),
    )
}

/// Money leaving a wallet at or above this many minor units (CNY 5,000)
/// also raises a security alert, which no preference can switch off: a
/// thief emptying the wallet must not go unnoticed.
pub const LARGE_PAYMENT_ALERT_MINOR: i64 = 500_000;

/// The security alert for a large payment out of `customer_id`'s wallet to
/// `to` (a payee, a merchant, a bank account); nothing below the threshold.
/// Keyed by the payment, so finishing it twice alerts once.
pub(crate) fn large_outflow(
    identity: &Identity,
    db: &mut dyn Sql,
    customer_id: &str,
    source_id: &str,
    amount: i64,
    currency: &str,
    to: &str,
) -> Result<(), IdentityError> {
    if amount < LARGE_PAYMENT_ALERT_MINOR {
        return Ok(());
    }
    let amount = minor(amount, currency);
    send(
        identity,
        db,
        customer_id,
        Moved {
            template: "large_payment",
            category: Category::Security,
            source_id,
            en: (
                "Coffer security alert",
                format!("A large payment of {amount} to {to} left your Coffer wallet. If this was not you, contact the bank at once."),
            ),
            zh: (
                "Coffer 安全提醒",
                format!("您的 Coffer 钱包向 {to} 支付了大额款项 {amount}；如非本人操作，请立即联系银行。"),
            ),
        },
    )
}

/// `12345` fen as `123.45` (alert texts only; amounts stay integers).
pub(crate) fn minor(amount: i64, currency: &str) -> String {
    let exponent = coffer_core::Currency::parse(currency)
        .ok()
        .and_then(|c| coffer_core::CurrencyRegistry::default().exponent(c))
        .unwrap_or(2);
    if exponent == 0 {
        return format!("{currency} {amount}");
    }
    let scale = 10i64.pow(u32::from(exponent));
    format!(
        "{currency} {}.{:0width$}",
        amount / scale,
        amount % scale,
        width = usize::from(exponent)
    )
}

#[cfg(test)]
mod tests {
    use super::minor;

    #[test]
    fn amounts_are_written_in_the_currency_s_own_units() {
        assert_eq!(minor(12_345, "CNY"), "CNY 123.45");
        assert_eq!(minor(5, "USD"), "USD 0.05");
        assert_eq!(minor(500, "JPY"), "JPY 500");
    }
}
