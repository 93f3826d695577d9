//! The back office's read models over the payment records: daily volumes,
//! failure rates by reason, fraud indicators, and this crate's queues.
//!
//! Every figure is one aggregate query per source table over a range of
//! `created_at` (indexed by migration 0022), grouped in SQL: nothing is
//! loaded row by row. Days are UTC days (`created_at` ÷ 86 400 s), amounts
//! integer minor units per currency (never summed across currencies), rates
//! integer basis points rounded down. Only finished operations count:
//! `succeeded` is volume, `failed` is failure, `pending` is neither.

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_store::sql::SqlStore;
use coffer_store::{sql_params, StoreError};

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;
const BPS_PER_WHOLE: i64 = 10_000;
/// The longest range one dashboard query covers.
pub const DASHBOARD_RANGE_DAYS_MAX: i64 = 366;

/// Each operation type and the query that yields (day, currency, state,
/// reason, count, amount) for it over [$1, $2). Later payment kinds append
/// a line.
const SOURCES: [(&str, &str); 7] = [
    (
        "top_up",
        "SELECT created_at / 86400000000000, currency, state, reason, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM fundings \
         WHERE kind = 'top_up' AND created_at >= $1 AND created_at < $2 GROUP BY 1, 2, 3, 4",
    ),
    (
        "withdrawal",
        "SELECT created_at / 86400000000000, currency, state, reason, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM fundings \
         WHERE kind = 'withdrawal' AND created_at >= $1 AND created_at < $2 GROUP BY 1, 2, 3, 4",
    ),
    (
        "p2p",
        "SELECT created_at / 86400000000000, currency, state, reason, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM p2p_payments \
         WHERE created_at >= $1 AND created_at < $2 GROUP BY 1, 2, 3, 4",
    ),
    (
        "bill_payment",
        "SELECT created_at / 86400000000000, currency, state, reason, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM bill_payments \
         WHERE created_at >= $1 AND created_at < $2 GROUP BY 1, 2, 3, 4",
    ),
    (
        "merchant_payment",
        "SELECT created_at / 86400000000000, currency, state, reason, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM merchant_payments \
         WHERE created_at >= $1 AND created_at < $2 GROUP BY 1, 2, 3, 4",
    ),
    (
        "merchant_refund",
        "SELECT created_at / 86400000000000, currency, state, failure, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM merchant_refunds \
         WHERE created_at >= $1 AND created_at < $2 GROUP BY 1, 2, 3, 4",
    ),
    (
        "fx_conversion",
        "SELECT created_at / 86400000000000, sell_currency, CASE state WHEN 'converted' THEN 'succeeded' ELSE state END, reason, \
         COUNT(*), CAST(SUM(sell_amount) AS BIGINT) FROM fx_quotes \
         WHERE state IN ('converted', 'failed') AND created_at >= $1 AND created_at < $2 GROUP BY 1, 2, 3, 4",
    ),
];

/// Volume of one operation type in one currency on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub operation: &'static str,
    pub currency: String,
    pub count: i64,
    /// Minor units of `currency`.
    pub amount: i64,
}

/// Failures of one operation type over the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRow {
    pub operation: &'static str,
    pub succeeded: i64,
    pub failed: i64,
    /// failed ÷ (succeeded + failed), in basis points (0 when none finished).
    pub failure_rate_bps: i64,
    /// Failures by reason (`unknown` when none was recorded).
    pub reasons: BTreeMap<String, i64>,
}

/// Fraud indicators available from the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudIndicators {
    /// Customers frozen now.
    pub frozen_customers_now: i64,
    /// Freezes staff (or rules) made in the range.
    pub freezes: i64,
    /// Step-up challenges started and verified in the range.
    pub step_ups_started: i64,
    pub step_ups_verified: i64,
    /// Succeeded merchant refunds ÷ succeeded merchant payments, by amount
    /// in the range, per currency, in basis points.
    pub refund_ratio_bps: BTreeMap<String, i64>,
    /// P2P payments that needed a step-up ÷ P2P payments, in basis points.
    pub p2p_step_up_rate_bps: i64,
}

/// The whole dashboard for [from, until).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    pub from: i64,
    pub until: i64,
    pub volumes: Vec<VolumeRow>,
    pub failures: Vec<FailureRow>,
    pub fraud: FraudIndicators,
}

/// `part ÷ whole` in basis points, rounded down; 0 when `whole` is 0.
pub fn rate_bps(part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    let rate = i128::from(part) * i128::from(BPS_PER_WHOLE) / i128::from(whole);
    i64::try_from(rate).unwrap_or(i64::MAX)
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01.
pub fn day_text(day: i64) -> String {
    // Howard Hinnant's civil_from_days, as limits.rs uses for months.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The dashboards and this crate's queues.
pub struct Dashboards {
    sql: Arc<SqlStore>,
}

impl Dashboards {
    pub fn new(sql: Arc<SqlStore>) -> Dashboards {
        Dashboards { sql }
    }

    /// Everything for [from, until) (nanoseconds; the caller bounds the range).
    pub fn dashboard(&self, from: i64, until: i64) -> Result<Dashboard, StoreError> {
        let mut volumes = Vec::new();
        let mut failures = Vec::new();
        for (operation, sql) in SOURCES {
            let rows = self.sql.run(|db| db.query(sql, sql_params![from, until]))?;
            let mut failure = FailureRow {
                operation,
                succeeded: 0,
                failed: 0,
                failure_rate_bps: 0,
                reasons: BTreeMap::new(),
            };
            let mut by_day: BTreeMap<(i64, String), (i64, i64)> = BTreeMap::new();
            for row in &rows {
                let (day, currency, state) = (row.int(0)?, row.text(1)?, row.text(2)?);
                let (count, amount) = (row.int(4)?, row.opt_int(5)?.unwrap_or(0));
                match state.as_str() {
                    "succeeded" => {
                        failure.succeeded += count;
                        let slot = by_day.entry((day, currency)).or_insert((0, 0));
                        slot.0 += count;
                        slot.1 = slot.1.checked_add(amount).ok_or_else(|| {
                            StoreError::Corrupt("a daily volume overflows i64".into())
                        })?;
                    }
                    "failed" => {
                        failure.failed += count;
                        let reason = row.opt_text(3)?.unwrap_or_else(|| "unknown".into());
                        *failure.reasons.entry(reason).or_insert(0) += count;
                    }
                    _ => {}
                }
            }
            failure.failure_rate_bps = rate_bps(failure.failed, failure.succeeded + failure.failed);
            volumes.extend(
                by_day
                    .into_iter()
                    .map(|((day, currency), (count, amount))| VolumeRow {
                        day: day_text(day),
                        operation,
                        currency,
                        count,
                        amount,
                    }),
            );
            failures.push(failure);
        }
        volumes.sort_by(|a, b| {
            (&a.day, a.operation, &a.currency).cmp(&(&b.day, b.operation, &b.currency))
        });
        Ok(Dashboard {
            from,
            until,
            volumes,
            failures,
            fraud: self.fraud(from, until)?,
        })
    }

    fn fraud(&self, from: i64, until: i64) -> Result<FraudIndicators, StoreError> {
        self.sql.run(|db| {
            let count = |db: &mut dyn coffer_store::sql::Sql,
                         sql: &str,
                         params: &[coffer_store::sql::Value]|
             -> Result<i64, StoreError> { db.query_one(sql, params)?.int(0) };
            let frozen_customers_now = count(
                db,
                "SELECT COUNT(*) FROM customers WHERE status = 'frozen'",
                &[],
            )?;
            let freezes = count(
                db,
                "SELECT COUNT(*) FROM audit_log WHERE action = 'customer_frozen' AND at >= $1 AND at < $2",
                sql_params![from, until],
            )?;
            let step_ups_started = count(
                db,
                "SELECT COUNT(*) FROM challenges WHERE purpose = 'step_up' AND created_at >= $1 AND created_at < $2",
                sql_params![from, until],
            )?;
            let step_ups_verified = count(
                db,
                "SELECT COUNT(*) FROM challenges WHERE purpose = 'step_up' AND verified_at IS NOT NULL AND created_at >= $1 AND created_at < $2",
                sql_params![from, until],
            )?;
            let p2p_total = count(
                db,
                "SELECT COUNT(*) FROM p2p_payments WHERE created_at >= $1 AND created_at < $2",
                sql_params![from, until],
            )?;
            let p2p_stepped_up = count(
                db,
                "SELECT COUNT(*) FROM p2p_payments WHERE step_up = 'verified' AND created_at >= $1 AND created_at < $2",
                sql_params![from, until],
            )?;
            let paid = db.query(
                "SELECT currency, CAST(SUM(amount) AS BIGINT) FROM merchant_payments WHERE state = 'succeeded' \
                 AND created_at >= $1 AND created_at < $2 GROUP BY currency",
                sql_params![from, until],
            )?;
            let refunded = db.query(
                "SELECT currency, CAST(SUM(amount) AS BIGINT) FROM merchant_refunds WHERE state = 'succeeded' \
                 AND created_at >= $1 AND created_at < $2 GROUP BY currency",
                sql_params![from, until],
            )?;
            let mut refund_ratio_bps = BTreeMap::new();
            for row in &paid {
                let currency = row.text(0)?;
                let refunded_amount = refunded
                    .iter()
                    .find(|r| r.text(0).is_ok_and(|c| c == currency))
                    .map(|r| r.opt_int(1))
                    .transpose()?
                    .flatten()
                    .unwrap_or(0);
                let paid_amount = row.opt_int(1)?.unwrap_or(0);
                refund_ratio_bps.insert(currency, rate_bps(refunded_amount, paid_amount));
            }
            Ok(FraudIndicators {
                frozen_customers_now,
                freezes,
                step_ups_started,
                step_ups_verified,
                refund_ratio_bps,
                p2p_step_up_rate_bps: rate_bps(p2p_stepped_up, p2p_total),
            })
        })
    }

    /// This crate's queues: (queue, count, oldest item's creation time).
    pub fn queue_summaries(&self) -> Result<Vec<coffer_identity::QueueSummary>, StoreError> {
        let mut queues = Vec::new();
        for (name, sql) in [
            (
                "merchant_reviews",
                "SELECT COUNT(*), MIN(created_at) FROM merchants WHERE status = 'pending_review'",
            ),
            // What reconciliation reports as `stuck_pending` comes from here:
            // top-ups and withdrawals the connector has not answered yet.
            (
                "pending_fundings",
                "SELECT COUNT(*), MIN(created_at) FROM fundings WHERE state = 'pending'",
            ),
        ] {
            let row = self.sql.run(|db| db.query_one(sql, &[]))?;
            queues.push((name, row.int(0)?, row.opt_int(1)?));
        }
        Ok(queues)
    }
}

/// The UTC day of a moment (for callers that bound ranges by days).
pub fn day_of(at_nanos: i64) -> i64 {
    at_nanos.div_euclid(NANOS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_rates() {
        assert_eq!(day_text(0), "1970-01-01");
        assert_eq!(day_text(20_782), "2026-11-25");
        assert_eq!(day_text(19_782), "2024-02-29");
        assert_eq!(rate_bps(1, 3), 3_333);
        assert_eq!(rate_bps(5, 0), 0);
        assert_eq!(rate_bps(2, 2), 10_000);
        assert_eq!(day_of(NANOS_PER_DAY - 1), 0);
    }
}
