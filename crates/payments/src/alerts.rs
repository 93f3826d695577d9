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
use coffer_store::{sql_params, LedgerReader};

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

/// A CNY wallet whose available balance a payment (P2P or merchant) takes
/// below this many minor units (CNY 100) gets a low-balance alert: once, as
/// it crosses, not after every payment below it. Category `low_balance`,
/// which the customer may switch off. Other currencies have no threshold.
pub const LOW_BALANCE_ALERT_MINOR: i64 = 10_000;

/// Money that left a customer's wallet, for the alerts every outflow
/// raises beside its own "payment sent".
pub(crate) struct Outflow<'a> {
    pub customer_id: &'a str,
    /// The payment record's id (the alerts' key).
    pub source_id: &'a str,
    /// What left the wallet in minor units, fee included.
    pub amount: i64,
    pub currency: &'a str,
    /// The payee, merchant or bank account, as the alert names it.
    pub to: &'a str,
}

/// The security alert for a large outflow (nothing below the threshold)
/// and the low-balance alert when this outflow crossed that threshold.
/// Keyed by the payment, so finishing it twice alerts once. The balance is
/// the wallet's now (single-row reads see every acknowledged transfer).
pub(crate) fn outflow(
    identity: &Identity,
    db: &mut dyn Sql,
    reader: &dyn LedgerReader,
    out: &Outflow<'_>,
) -> Result<(), IdentityError> {
    large_outflow(identity, db, out)?;
    if out.currency != LOW_BALANCE_CURRENCY {
        return Ok(());
    }
    let wallet = crate::funding::wallet_account_id(out.customer_id, out.currency);
    let Ok(wallet) = coffer_core::Identifier::parse(&wallet) else {
        return Ok(());
    };
    let Some(account) = reader.account(&wallet)? else {
        return Ok(());
    };
    let after = account.available();
    if !crossed_low_balance(after, out.amount) {
        return Ok(());
    }
    let (balance, threshold) = (
        minor(after, out.currency),
        minor(LOW_BALANCE_ALERT_MINOR, out.currency),
    );
    send(
        identity,
        db,
        out.customer_id,
        Moved {
            template: "low_balance",
            category: Category::LowBalance,
            source_id: out.source_id,
            en: (
                "Low balance",
                format!("Your Coffer wallet has {balance} left, below {threshold}. Top up to keep paying."),
            ),
            zh: (
                "余额不足提醒",
                format!("您的 Coffer 钱包余额为 {balance}，已低于 {threshold}，请及时充值。"),
            ),
        },
    )
}

/// The security alert for a large outflow; nothing below the threshold.
pub(crate) fn large_outflow(
    identity: &Identity,
    db: &mut dyn Sql,
    out: &Outflow<'_>,
) -> Result<(), IdentityError> {
    if out.amount < LARGE_PAYMENT_ALERT_MINOR {
        return Ok(());
    }
    let amount = minor(out.amount, out.currency);
    let to = out.to;
    send(
        identity,
        db,
        out.customer_id,
        Moved {
            template: "large_payment",
            category: Category::Security,
            source_id: out.source_id,
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

const LOW_BALANCE_CURRENCY: &str = "CNY";

/// Whether an outflow of `amount` that left `after` took the balance from
/// at or above the threshold to below it.
fn crossed_low_balance(after: i64, amount: i64) -> bool {
    after < LOW_BALANCE_ALERT_MINOR
        && after
            .checked_add(amount)
            .is_some_and(|before| before >= LOW_BALANCE_ALERT_MINOR)
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
    use super::{crossed_low_balance, minor, LOW_BALANCE_ALERT_MINOR};

    #[test]
    fn low_balance_alerts_once_as_the_balance_crosses_the_threshold() {
        let t = LOW_BALANCE_ALERT_MINOR;
        assert!(crossed_low_balance(t - 1, 1), "from exactly the threshold");
        assert!(crossed_low_balance(0, t), "emptied");
        assert!(!crossed_low_balance(t, 500), "still at the threshold");
        assert!(!crossed_low_balance(t - 600, 500), "already below before");
        assert!(!crossed_low_balance(i64::MAX - 1, i64::MAX), "no overflow");
    }

    #[test]
    fn amounts_are_written_in_the_currency_s_own_units() {
        assert_eq!(minor(12_345, "CNY"), "CNY 123.45");
        assert_eq!(minor(5, "USD"), "USD 0.05");
        assert_eq!(minor(500, "JPY"), "JPY 500");
    }
}
