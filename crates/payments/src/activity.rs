//! The customer's activity feed: one row per thing the wallet did (a top-up,
//! a withdrawal, a bill payment, a conversion, a P2P payment sent or
//! received, a merchant payment, a refund), with what the customer sees of
//! it: type, counterparty, amount, fee, FX, status, category and reference.
//!
//! **How a payment kind plugs in**: in the same SQL transaction that writes
//! its own record, call [`record`] with a [`NewActivity`]; in the same
//! transaction that changes the record's state, call [`set_status`] (or
//! [`add_refund`]). The feed is then never behind nor ahead of the records,
//! and the status a customer sees is the record's, at once. The rows are
//! keyed by (kind, source id), so a repeated `record` changes nothing.
//!
//! Reading: filters (dates, type, counterparty, amount, category, currency,
//! free-text search), newest first with an opaque cursor, a monthly spending
//! summary by category, and a CSV export that a spreadsheet cannot be tricked
//! into running (cells starting with `=`, `+`, `-`, `@`, tab or CR get a
//! leading `'`).

use std::sync::Arc;

use coffer_core::money::format_minor_units;
use coffer_core::{CurrencyRegistry, Timestamp};
use coffer_store::sql::{Row, Sql, SqlStore, Value};
use coffer_store::{sql_params, StoreError};

/// At most this many rows per page.
pub const ACTIVITY_PAGE_MAX: i64 = 100;
/// A CSV export holds at most this many rows (narrow the dates for more).
pub const EXPORT_ROWS_MAX: i64 = 10_000;
/// Longest free-text search or counterparty filter accepted.
pub const SEARCH_LENGTH_MAX: usize = 100;
const NANOS_PER_SECOND: i64 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

text_enum!(
    /// What kind of thing the wallet did.
    ActivityKind {
        TopUp => "top_up",
        Withdrawal => "withdrawal",
        BillPayment => "bill_payment",
        FxConversion => "fx_conversion",
        P2pTransfer => "p2p_transfer",
        MerchantPayment => "merchant_payment",
        Refund => "refund",
    }
);

text_enum!(
    /// Which way the money went, seen from the wallet.
    Direction {
        In => "in",
        Out => "out",
        /// A conversion: out in one currency, in in another.
        Exchange => "exchange",
    }
);

text_enum!(
    /// What the customer sees; set only from the record's own state.
    ActivityStatus {
        Pending => "pending",
        Succeeded => "succeeded",
        Failed => "failed",
        Refunded => "refunded",
        PartiallyRefunded => "partially_refunded",
    }
);

text_enum!(
    /// Spending categories, chosen automatically (`from_mcc`, or by the
    /// payment kind and payee).
    Category {
        Food => "food",
        Transport => "transport",
        Shopping => "shopping",
        Bills => "bills",
        Entertainment => "entertainment",
        Health => "health",
        Travel => "travel",
        Transfers => "transfers",
        TopUp => "top_up",
        Withdrawal => "withdrawal",
        Exchange => "exchange",
        Other => "other",
    }
);

impl Category {
    /// The category of a merchant by its ISO 18245 merchant category code.
    pub fn from_mcc(mcc: u16) -> Category {
        match mcc {
            5411 | 5422 | 5441 | 5451 | 5462 | 5499 | 5811..=5814 => Category::Food,
            4111 | 4112 | 4121 | 4131 | 4784 | 4789 | 5541 | 5542 | 7523 => Category::Transport,
            3000..=3299 | 3501..=3999 | 4411 | 4511 | 4722 | 7011 | 7012 => Category::Travel,
            4812 | 4814 | 4899 | 4900 => Category::Bills,
            5912 | 8011 | 8021 | 8031 | 8041..=8099 => Category::Health,
            7832 | 7841 | 7911..=7999 | 5815..=5818 => Category::Entertainment,
            5200..=5399 | 5600..=5699 | 5700..=5799 | 5900..=5999 => Category::Shopping,
            _ => Category::Other,
        }
    }
}

/// The other currency's side of a conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FxLeg {
    pub amount: i64,
    pub currency: String,
    /// The customer's rate as a decimal string (units of `currency` per unit of the main one).
    pub rate: String,
}

/// A row to write beside a new record.
#[derive(Debug, Clone)]
pub struct NewActivity<'a> {
    pub customer_id: &'a str,
    pub kind: ActivityKind,
    pub source_id: &'a str,
    pub direction: Direction,
    pub status: ActivityStatus,
    pub reason: Option<&'a str>,
    pub counterparty: &'a str,
    pub category: Category,
    pub reference: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub fee: i64,
    pub fx: Option<FxLeg>,
    pub at: i64,
}

/// The feed row's id for a record.
pub fn activity_id(kind: ActivityKind, source_id: &str) -> String {
    match kind {
        // Fundings' ids keep the id their backfill gave them.
        ActivityKind::TopUp | ActivityKind::Withdrawal => format!("act_{source_id}"),
        other => format!("act_{}_{source_id}", other.as_str()),
    }
}

/// Writes the row for a new record, inside the caller's transaction.
pub fn record(db: &mut dyn Sql, new: &NewActivity<'_>) -> Result<(), StoreError> {
    let search = format!(
        "{} {} {} {} {}",
        new.kind.as_str(),
        new.counterparty,
        new.category.as_str(),
        new.reference,
        new.source_id
    )
    .to_lowercase();
    let fx = new.fx.as_ref();
    db.execute(
        "INSERT INTO activity (id, customer_id, kind, source_id, direction, status, reason, counterparty, category, reference, \
         amount, currency, fee, refunded, fx_amount, fx_currency, fx_rate, search, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 0, $14, $15, $16, $17, $18, $18) \
         ON CONFLICT DO NOTHING",
        sql_params![
            activity_id(new.kind, new.source_id),
            new.customer_id,
            new.kind.as_str(),
            new.source_id,
            new.direction.as_str(),
            new.status.as_str(),
            new.reason,
            new.counterparty,
            new.category.as_str(),
            new.reference,
            new.amount,
            new.currency,
            new.fee,
            fx.map(|f| f.amount),
            fx.map(|f| f.currency.as_str()),
            fx.map(|f| f.rate.as_str()),
            search,
            new.at
        ],
    )?;
    Ok(())
}

/// Sets the status shown for a record, inside the transaction that changes
/// the record's own state. Returns the rows changed (0 when no row exists).
pub fn set_status(
    db: &mut dyn Sql,
    kind: ActivityKind,
    source_id: &str,
    status: ActivityStatus,
    reason: Option<&str>,
    at: i64,
) -> Result<u64, StoreError> {
    db.execute(
        "UPDATE activity SET status = $3, reason = $4, updated_at = $5 WHERE kind = $1 AND source_id = $2",
        sql_params![kind.as_str(), source_id, status.as_str(), reason, at],
    )
}

/// Adds a refund of `amount` to a record's row: `partially_refunded` until
/// the whole amount is back, then `refunded`. The refund's own money
/// movement is its own record; this keeps the original's status true.
pub fn add_refund(
    db: &mut dyn Sql,
    kind: ActivityKind,
    source_id: &str,
    amount: i64,
    at: i64,
) -> Result<u64, StoreError> {
    db.execute(
        "UPDATE activity SET refunded = refunded + $3, \
         status = CASE WHEN refunded + $3 >= amount THEN 'refunded' ELSE 'partially_refunded' END, updated_at = $4 \
         WHERE kind = $1 AND source_id = $2 AND refunded + $3 <= amount",
        sql_params![kind.as_str(), source_id, amount, at],
    )
}

/// One row as the customer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityView {
    pub id: String,
    pub kind: String,
    pub source_id: String,
    pub direction: String,
    pub status: String,
    pub reason: Option<String>,
    pub counterparty: String,
    pub category: String,
    pub reference: String,
    pub amount: i64,
    pub currency: String,
    pub fee: i64,
    pub refunded: i64,
    pub fx: Option<FxLeg>,
    pub created_at: i64,
    pub updated_at: i64,
}

const SELECT_ACTIVITY: &str = "SELECT id, kind, source_id, direction, status, reason, counterparty, category, reference, amount, currency, fee, refunded, \
     fx_amount, fx_currency, fx_rate, created_at, updated_at FROM activity";

fn view(row: &Row) -> Result<ActivityView, StoreError> {
    let fx = match (row.opt_int(13)?, row.opt_text(14)?, row.opt_text(15)?) {
        (Some(amount), Some(currency), Some(rate)) => Some(FxLeg {
            amount,
            currency,
            rate,
        }),
        _ => None,
    };
    Ok(ActivityView {
        id: row.text(0)?,
        kind: row.text(1)?,
        source_id: row.text(2)?,
        direction: row.text(3)?,
        status: row.text(4)?,
        reason: row.opt_text(5)?,
        counterparty: row.text(6)?,
        category: row.text(7)?,
        reference: row.text(8)?,
        amount: row.int(9)?,
        currency: row.text(10)?,
        fee: row.int(11)?,
        refunded: row.int(12)?,
        fx,
        created_at: row.int(16)?,
        updated_at: row.int(17)?,
    })
}

/// What to list; every field narrows (all `None`: everything).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Created at or after (ns).
    pub from: Option<i64>,
    /// Created before (ns).
    pub until: Option<i64>,
    pub kind: Option<ActivityKind>,
    pub category: Option<Category>,
    pub status: Option<ActivityStatus>,
    pub currency: Option<String>,
    /// Counterparty contains this (case-insensitive).
    pub counterparty: Option<String>,
    pub amount_min: Option<i64>,
    pub amount_max: Option<i64>,
    /// Any of type, counterparty, category, reference or id contains this.
    pub search: Option<String>,
}

/// Where a page starts: after this (created_at, id), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: String,
}

impl Cursor {
    /// Opaque to clients: `<created_at>.<id>` in hex, so it survives any URL.
    pub fn encode(&self) -> String {
        hex::encode(format!("{}.{}", self.created_at, self.id))
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = hex::decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (at, id) = text.split_once('.')?;
        Some(Cursor {
            created_at: at.parse().ok()?,
            id: id.to_string(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<ActivityView>,
    pub next_cursor: Option<Cursor>,
}

/// Spending in one category and currency over a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryTotal {
    pub category: String,
    pub currency: String,
    /// Net of refunds, minor units.
    pub amount: i64,
    pub count: i64,
}

/// `LIKE` pattern for "contains `text`", with its wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The WHERE clause and its parameters ($1 is the customer).
fn conditions(customer_id: &str, filter: &Filter) -> (String, Vec<Value>) {
    let mut clause = String::from(" WHERE customer_id = $1");
    let mut params: Vec<Value> = vec![customer_id.into()];
    let mut add = |sql: &str, value: Value| {
        params.push(value);
        clause.push_str(&sql.replace('?', &format!("${}", params.len())));
    };
    if let Some(from) = filter.from {
        add(" AND created_at >= ?", from.into());
    }
    if let Some(until) = filter.until {
        add(" AND created_at < ?", until.into());
    }
    if let Some(kind) = filter.kind {
        add(" AND kind = ?", kind.as_str().into());
    }
    if let Some(category) = filter.category {
        add(" AND category = ?", category.as_str().into());
    }
    if let Some(status) = filter.status {
        add(" AND status = ?", status.as_str().into());
    }
    if let Some(currency) = &filter.currency {
        add(" AND currency = ?", currency.as_str().into());
    }
    if let Some(counterparty) = &filter.counterparty {
        add(
            " AND LOWER(counterparty) LIKE ? ESCAPE '\\'",
            contains_pattern(counterparty).into(),
        );
    }
    if let Some(min) = filter.amount_min {
        add(" AND amount >= ?", min.into());
    }
    if let Some(max) = filter.amount_max {
        add(" AND amount <= ?", max.into());
    }
    if let Some(search) = &filter.search {
        add(
            " AND search LIKE ? ESCAPE '\\'",
            contains_pattern(search).into(),
        );
    }
    (clause, params)
}

/// Reads the feed.
pub struct Activity {
    sql: Arc<SqlStore>,
    currencies: Arc<CurrencyRegistry>,
    /// Months for the summary start at midnight at this offset from UTC.
    day_utc_offset_seconds: i64,
}

impl Activity {
    pub fn new(
        sql: Arc<SqlStore>,
        currencies: Arc<CurrencyRegistry>,
        day_utc_offset_seconds: i64,
    ) -> Activity {
        Activity {
            sql,
            currencies,
            day_utc_offset_seconds,
        }
    }

    /// One page, newest first, after `cursor`.
    pub fn list(
        &self,
        customer_id: &str,
        filter: &Filter,
        cursor: Option<&Cursor>,
        limit: i64,
    ) -> Result<Page, StoreError> {
        let limit = limit.clamp(1, ACTIVITY_PAGE_MAX);
        let (mut clause, mut params) = conditions(customer_id, filter);
        if let Some(cursor) = cursor {
            let (at, id) = (params.len() + 1, params.len() + 2);
            clause.push_str(&format!(
                " AND (created_at < ${at} OR (created_at = ${at} AND id < ${id}))"
            ));
            params.push(cursor.created_at.into());
            params.push(cursor.id.as_str().into());
        }
        params.push((limit + 1).into());
        let sql = format!(
            "{SELECT_ACTIVITY}{clause} ORDER BY created_at DESC, id DESC LIMIT ${}",
            params.len()
        );
        let rows = self.sql.run(|db| db.query(&sql, &params))?;
        let mut items = rows.iter().map(view).collect::<Result<Vec<_>, _>>()?;
        let more = items.len() as i64 > limit;
        items.truncate(limit as usize);
        let next_cursor = if more {
            items.last().map(|last| Cursor {
                created_at: last.created_at,
                id: last.id.clone(),
            })
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// One row of this customer's, by its id.
    pub fn get(&self, customer_id: &str, id: &str) -> Result<Option<ActivityView>, StoreError> {
        self.sql
            .run(|db| {
                db.query_opt(
                    &format!("{SELECT_ACTIVITY} WHERE customer_id = $1 AND id = $2"),
                    sql_params![customer_id, id],
                )
            })?
            .map(|row| view(&row))
            .transpose()
    }

    /// The row describing a record, by its kind and the record's id.
    pub fn by_source(
        &self,
        customer_id: &str,
        kind: ActivityKind,
        source_id: &str,
    ) -> Result<Option<ActivityView>, StoreError> {
        self.get(customer_id, &activity_id(kind, source_id))
    }

    /// `[start, end)` in ns of a calendar month in the bank's time zone;
    /// `None` for a month outside 1..=12 or years outside 1970..=9999.
    pub fn month_bounds(&self, year: i64, month: i64) -> Option<(i64, i64)> {
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return None;
        }
        let (next_year, next_month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        let at = |y, m| {
            (coffer_core::time::days_from_civil(y, m, 1) * SECONDS_PER_DAY
                - self.day_utc_offset_seconds)
                * NANOS_PER_SECOND
        };
        Some((at(year, month), at(next_year, next_month)))
    }

    /// Money out in a month by category and currency, net of refunds: what
    /// succeeded (or was partly refunded), not withdrawals to the customer's
    /// own bank account nor conversions (moving one's own money is not spending).
    pub fn monthly_summary(
        &self,
        customer_id: &str,
        year: i64,
        month: i64,
    ) -> Result<Option<Vec<CategoryTotal>>, StoreError> {
        let Some((start, end)) = self.month_bounds(year, month) else {
            return Ok(None);
        };
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT category, currency, CAST(COALESCE(SUM(amount - refunded), 0) AS BIGINT), COUNT(*) FROM activity \
                 WHERE customer_id = $1 AND direction = 'out' AND status IN ('succeeded', 'partially_refunded') \
                 AND category <> 'withdrawal' AND created_at >= $2 AND created_at < $3 \
                 GROUP BY category, currency ORDER BY category, currency",
                sql_params![customer_id, start, end],
            )
        })?;
        rows.iter()
            .map(|row| {
                Ok(CategoryTotal {
                    category: row.text(0)?,
                    currency: row.text(1)?,
                    amount: row.int(2)?,
                    count: row.int(3)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()
            .map(Some)
    }

    /// Every matching row (newest first, at most `EXPORT_ROWS_MAX`) as CSV.
    pub fn export_csv(&self, customer_id: &str, filter: &Filter) -> Result<String, StoreError> {
        let (clause, mut params) = conditions(customer_id, filter);
        params.push(EXPORT_ROWS_MAX.into());
        let sql = format!(
            "{SELECT_ACTIVITY}{clause} ORDER BY created_at DESC, id DESC LIMIT ${}",
            params.len()
        );
        let rows = self.sql.run(|db| db.query(&sql, &params))?;
        let mut out = String::from(
            "date,id,type,status,reason,direction,counterparty,category,reference,amount,currency,fee,refunded,fx_amount,fx_currency,fx_rate\r\n",
        );
        for row in &rows {
            let item = view(row)?;
            let decimal = |amount: i64, currency: &str| match coffer_core::Currency::parse(currency)
                .ok()
                .and_then(|c| self.currencies.exponent(c))
            {
                Some(exponent) => format_minor_units(amount, exponent),
                None => amount.to_string(),
            };
            let fx = item.fx.as_ref();
            let cells = [
                Timestamp::from_nanos(item.created_at).to_rfc3339(),
                item.id.clone(),
                item.kind.clone(),
                item.status.clone(),
                item.reason.clone().unwrap_or_default(),
                item.direction.clone(),
                item.counterparty.clone(),
                item.category.clone(),
                item.reference.clone(),
                decimal(item.amount, &item.currency),
                item.currency.clone(),
                decimal(item.fee, &item.currency),
                decimal(item.refunded, &item.currency),
                fx.map(|f| decimal(f.amount, &f.currency))
                    .unwrap_or_default(),
                fx.map(|f| f.currency.clone()).unwrap_or_default(),
                fx.map(|f| f.rate.clone()).unwrap_or_default(),
            ];
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
        Ok(out)
    }
}

/// One CSV cell (RFC 4180), safe to open in a spreadsheet: a cell that a
/// spreadsheet would read as a formula (first character `=`, `+`, `-`, `@`,
/// tab or carriage return; OWASP's list) gets a leading `'`, then a cell
/// with a comma, quote or line break is quoted with its quotes doubled.
pub fn csv_cell(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_escaped_and_never_formulas() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("+86 138"), "'+86 138");
        assert_eq!(csv_cell("-5"), "'-5");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(
            csv_cell("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        assert_eq!(csv_cell("国家电网"), "国家电网");
        assert_eq!(csv_cell(""), "");
        // Not at the start: harmless.
        assert_eq!(csv_cell("a=b"), "a=b");
    }

    #[test]
    fn categories_from_merchant_codes() {
        assert_eq!(Category::from_mcc(5812), Category::Food);
        assert_eq!(Category::from_mcc(5411), Category::Food);
        assert_eq!(Category::from_mcc(4111), Category::Transport);
        assert_eq!(Category::from_mcc(5311), Category::Shopping);
        assert_eq!(Category::from_mcc(4900), Category::Bills);
        assert_eq!(Category::from_mcc(7011), Category::Travel);
        assert_eq!(Category::from_mcc(1), Category::Other);
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = Cursor {
            created_at: 1_790_000_000_000_000_000,
            id: "act_bill_payment_bil_00ff".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("zz"), None);
        assert_eq!(Cursor::decode(&hex::encode("no-dot")), None);
        assert_eq!(Cursor::decode(&hex::encode("x.y")), None);
    }

    #[test]
    fn search_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("50%_off"), "%50\\%\\_off%");
        assert_eq!(contains_pattern("State"), "%state%");
    }
}
