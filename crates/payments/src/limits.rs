//! Limit counters shared by every kind of payment: per-customer usage per
//! span (`withdrawal.day`, `p2p.month`, `fee.p2p.free.month`…) and period,
//! changed only by conditional updates inside the caller's transaction.
//!
//! Why conditional updates and not read-then-write: two payments running at
//! once would both read the same usage and both squeeze under the limit
//! (Mojaloop #511). `UPDATE … SET used = used + $n WHERE used <= $limit - $n`
//! is one statement the database serializes (a row lock on PostgreSQL,
//! SQLite's single writer): the later one sees the earlier one's sum. A
//! payment that fails afterwards gives its share back with `release`, in the
//! transaction that records the failure.

use coffer_store::sql::Sql;
use coffer_store::{sql_params, StoreError};

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
const SECONDS_PER_HOUR: i64 = 3_600;

/// A refusal: which limit, its maximum and what is left of it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// `per_payment`, `daily`, `monthly`, `balance_cap`, `lookups_per_hour`…
    pub limit: &'static str,
    pub max: i64,
    pub available: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("the {} limit is exceeded", .0.limit)]
    Exceeded(LimitExceeded),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The periods a moment falls in, in the bank's time zone: days since the
/// epoch, months as `year * 12 + month`, hours since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub day: i64,
    pub month: i64,
    pub hour: i64,
}

/// The periods of `now_nanos` at `utc_offset_seconds` (China: +8 h, so a
/// daily limit resets at midnight Beijing time).
pub fn periods(now_nanos: i64, utc_offset_seconds: i64) -> Periods {
    let local_seconds = now_nanos.div_euclid(NANOS_PER_SECOND) + utc_offset_seconds;
    let day = local_seconds.div_euclid(SECONDS_PER_DAY);
    let (year, month) = civil_year_month(day);
    Periods {
        day,
        month: year * 12 + month,
        hour: local_seconds.div_euclid(SECONDS_PER_HOUR),
    }
}

/// Adds `amount` to a usage counter if the result stays within `limit`, in
/// one conditional statement: the database serializes concurrent ones, and
/// the later one sees the earlier one's sum.
pub fn reserve(
    db: &mut dyn Sql,
    customer_id: &str,
    span: &str,
    period: i64,
    amount: i64,
    limit: i64,
    name: &'static str,
) -> Result<(), LimitError> {
    db.execute(
        "INSERT INTO payment_usage (customer_id, span, period, used) VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
        sql_params![customer_id, span, period],
    )?;
    // `amount <= limit` first, so that the sum in SQL cannot overflow.
    let reserved = if amount <= limit {
        db.execute(
            "UPDATE payment_usage SET used = used + $4 WHERE customer_id = $1 AND span = $2 AND period = $3 AND used <= $5",
            sql_params![customer_id, span, period, amount, limit - amount],
        )?
    } else {
        0
    };
    if reserved == 1 {
        return Ok(());
    }
    let used = self::used(db, customer_id, span, period)?;
    Err(LimitError::Exceeded(LimitExceeded {
        limit: name,
        max: limit,
        available: limit.saturating_sub(used).max(0),
    }))
}

/// Gives back what `reserve` took (a payment that failed); never below zero.
pub fn release(
    db: &mut dyn Sql,
    customer_id: &str,
    span: &str,
    period: i64,
    amount: i64,
) -> Result<(), StoreError> {
    db.execute(
        "UPDATE payment_usage SET used = used - $4 WHERE customer_id = $1 AND span = $2 AND period = $3 AND used >= $4",
        sql_params![customer_id, span, period, amount],
    )?;
    Ok(())
}

/// A counter's current value (0 when never used).
pub fn used(
    db: &mut dyn Sql,
    customer_id: &str,
    span: &str,
    period: i64,
) -> Result<i64, StoreError> {
    db.query_opt(
        "SELECT used FROM payment_usage WHERE customer_id = $1 AND span = $2 AND period = $3",
        sql_params![customer_id, span, period],
    )?
    .map_or(Ok(0), |row| row.int(0))
}

/// Takes this customer's balance lock row until the transaction ends (a row
/// lock on PostgreSQL; SQLite's writer lock does it already). Everything
/// that adds money to a wallet from outside the ledger's own constraints
/// (top-ups, P2P credits) takes it before checking the balance cap, so two
/// of them cannot both fit under it.
pub fn lock_customer(db: &mut dyn Sql, customer_id: &str) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO payment_usage (customer_id, span, period, used) VALUES ($1, 'top_up.lock', 0, 0) ON CONFLICT DO NOTHING",
        sql_params![customer_id],
    )?;
    db.execute(
        "UPDATE payment_usage SET used = used + 1 WHERE customer_id = $1 AND span = 'top_up.lock' AND period = 0",
        sql_params![customer_id],
    )?;
    Ok(())
}

/// Money on its way into a customer's wallet that the ledger does not show
/// as posted yet: pending top-ups and P2P payments recorded but not yet
/// applied. Read under `lock_customer`.
pub fn incoming_pending(db: &mut dyn Sql, customer_id: &str) -> Result<i64, StoreError> {
    // SUM of a BIGINT is NUMERIC on PostgreSQL: cast it back.
    let top_ups = db
        .query_one(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM fundings WHERE customer_id = $1 AND kind = 'top_up' AND state = 'pending'",
            sql_params![customer_id],
        )?
        .int(0)?;
    let transfers = db
        .query_one(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM p2p_payments WHERE payee_id = $1 AND state = 'pending'",
            sql_params![customer_id],
        )?
        .int(0)?;
    top_ups
        .checked_add(transfers)
        .ok_or_else(|| StoreError::Corrupt("pending incoming amounts overflow".into()))
}

/// Whether `amount` more fits under `cap` with `posted` and `pending` there
/// already; the headroom left otherwise (computed in i128: no overflow).
pub fn balance_cap_check(
    cap: i64,
    posted: i64,
    pending: i64,
    amount: i64,
) -> Result<(), LimitExceeded> {
    let headroom = i128::from(cap) - i128::from(posted) - i128::from(pending);
    if i128::from(amount) > headroom {
        return Err(LimitExceeded {
            limit: "balance_cap",
            max: cap,
            available: i64::try_from(headroom.max(0)).unwrap_or(0),
        });
    }
    Ok(())
}

/// (year, month 1–12) of a day counted from 1970-01-01 (proleptic Gregorian;
/// Howard Hinnant's civil_from_days).
pub(crate) fn civil_year_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_months_from_days() {
        assert_eq!(civil_year_month(0), (1970, 1));
        assert_eq!(civil_year_month(31), (1970, 2));
        // 2026-11-25 is day 20_782.
        assert_eq!(civil_year_month(20_782), (2026, 11));
        assert_eq!(civil_year_month(-1), (1969, 12));
        // 2024-02-29, a leap day.
        assert_eq!(civil_year_month(19_782), (2024, 2));
    }

    #[test]
    fn periods_follow_the_local_day() {
        // 2026-11-24T16:00:00Z is midnight of the 25th in Beijing.
        let at = 1_795_536_000i64 * NANOS_PER_SECOND;
        let local = periods(at, 8 * 3600);
        let utc = periods(at, 0);
        assert_eq!(local.day, 20_782);
        assert_eq!(utc.day, 20_781);
        assert_eq!(local.month, 2026 * 12 + 11);
        assert_eq!(local.hour, utc.hour + 8);
    }

    #[test]
    fn the_balance_cap_counts_posted_and_pending() {
        assert!(balance_cap_check(1_000, 400, 100, 500).is_ok());
        assert_eq!(
            balance_cap_check(1_000, 400, 100, 501),
            Err(LimitExceeded {
                limit: "balance_cap",
                max: 1_000,
                available: 500
            })
        );
        assert_eq!(
            balance_cap_check(1_000, 1_200, 0, 1).map_err(|e| e.available),
            Err(0)
        );
    }
}
