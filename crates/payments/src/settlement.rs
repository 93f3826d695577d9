//! Daily settlement: once per merchant and day (in the bank's time zone),
//! what customers paid minus what was refunded and minus the merchant
//! discount fee goes to the merchant's settlement bank account.
//!
//! Steps, each idempotent, recorded in `merchant_settlements` (unique per
//! merchant and day):
//! 1. *recorded*: in one SQL transaction, every succeeded payment and
//!    refund of the merchant up to the day's end that no settlement has
//!    taken yet is marked with this settlement's id, and the sums are read
//!    back from exactly the marked rows. Items of earlier days that were
//!    missed (a day not run, a negative day) are carried into this one.
//! 2. *moved*: one linked ledger batch from the merchant's receivable: the
//!    fee to the fee-income account and the net to the merchant's
//!    settlement wallet (`stl:<id>:<attempt>:fee|net`); both or neither.
//!    If the ledger refuses (a refund took the money meanwhile), the items
//!    are released and the record is `failed`; running the day again
//!    retries with the next attempt number.
//! 3. *paying*: the net is paid out from the settlement wallet by the
//!    funding module (hold → core banking payout → signed callback), whose
//!    record (`funding_id`) then carries the payout's own status.
//! 4. `follow_payouts` (every pass of `serve`'s merchant tasks) reads that
//!    status: *paid* once it succeeded; when it failed (the money is back
//!    in the settlement wallet) *payout_retrying* with `next_payout_at`
//!    backing off exponentially from `MerchantPolicy::payout_retry_base_ms`,
//!    then a new payout (its own idempotency key `…:payout:<n>`, so a crash
//!    never pays twice); after `payout_attempts_max` failures
//!    *payout_failed*, which needs staff (the bank account is wrong).
//!
//! The fee is the fee schedule's merchant discount rule for the merchant
//! (its own rule, else its MCC's; `fees::DiscountRule`): `gross × rate /
//! 10 000` in basis points, rounded half up to the fen, on the day's gross
//! payments, within the rule's minimum and maximum and never above the
//! gross; refunds do not return the fee
//! (as with most acquirers). A day whose refunds and fee exceed its
//! payments settles nothing and is `carried_forward`: its items stay open
//! for the next day.

use coffer_store::sql::Row;
use coffer_store::{sql_params, StoreError};

use crate::funding::{wallet_account_id, ClientKey, FundingView, FUNDING_CURRENCY};
use crate::merchants::{
    receivable_account_id, MerchantError, Merchants, MERCHANT_FEE_INCOME_ACCOUNT,
    MERCHANT_PAGE_MAX, NANOS_PER_MILLI,
};

/// The merchant discount fee on `gross` at `rate_bps`, rounded half up to
/// the minor unit, in exact integer arithmetic.
pub fn discount_fee(gross: i64, rate_bps: u32) -> Option<i64> {
    let product = i128::from(gross).checked_mul(i128::from(rate_bps))?;
    let fee = product.checked_add(5_000)?.checked_div(10_000)?;
    i64::try_from(fee).ok()
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (proleptic Gregorian).
pub fn date_of_day(day: i64) -> String {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let date = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{date:02}")
}

/// The day number of a `YYYY-MM-DD` date (years 2000–2999), or None.
pub fn day_of_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, date) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if !(2000..3000).contains(&year) || !(1..=12).contains(&month) || date < 1 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + date - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let day = era * 146_097 + doe - 719_468;
    // Refuses 2026-02-30 and the like: the day must name the same date back.
    (date_of_day(day) == text).then_some(day)
}

/// One merchant's part of a settlement run: its settlement, or why it
/// could not run now (the merchant id and the error).
pub type SettlementOutcome = Result<SettlementView, (String, MerchantError)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementView {
    pub id: String,
    pub merchant_id: String,
    /// Days since 1970-01-01 in the bank's time zone.
    pub day: i64,
    pub attempt: i64,
    pub gross: i64,
    pub refunds: i64,
    pub fee: i64,
    pub net: i64,
    pub currency: String,
    pub discount_rate_bps: i64,
    pub payment_count: i64,
    pub refund_count: i64,
    /// `recorded`, `moved`, `paying`, `paid`, `payout_retrying`,
    /// `payout_failed`, `settled` (nothing to pay out), `empty`,
    /// `carried_forward` or `failed`.
    pub status: String,
    pub reason: Option<String>,
    pub funding_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Payouts tried so far (0 before the first).
    pub payout_attempts: i64,
    /// When `payout_retrying`: the next payout is due then.
    pub next_payout_at: Option<i64>,
}

const SELECT_SETTLEMENT: &str = "SELECT id, merchant_id, day, attempt, gross, refunds, fee, net, currency, discount_rate_bps, payment_count, refund_count, \
     state, reason, funding_id, created_at, updated_at, payout_attempts, next_payout_at FROM merchant_settlements";

fn settlement(row: &Row) -> Result<SettlementView, MerchantError> {
    Ok(SettlementView {
        id: row.text(0)?,
        merchant_id: row.text(1)?,
        day: row.int(2)?,
        attempt: row.int(3)?,
        gross: row.int(4)?,
        refunds: row.int(5)?,
        fee: row.int(6)?,
        net: row.int(7)?,
        currency: row.text(8)?,
        discount_rate_bps: row.int(9)?,
        payment_count: row.int(10)?,
        refund_count: row.int(11)?,
        status: row.text(12)?,
        reason: row.opt_text(13)?,
        funding_id: row.opt_text(14)?,
        created_at: row.int(15)?,
        updated_at: row.int(16)?,
        payout_attempts: row.int(17)?,
        next_payout_at: row.opt_int(18)?,
    })
}

impl Merchants {
    fn load_settlement(
        &self,
        merchant_id: &str,
        day: i64,
    ) -> Result<Option<SettlementView>, MerchantError> {
        self.sql
            .run(|db| {
                db.query_opt(
                    &format!("{SELECT_SETTLEMENT} WHERE merchant_id = $1 AND day = $2"),
                    sql_params![merchant_id, day],
                )
            })?
            .map(|row| settlement(&row))
            .transpose()
    }

    /// Settles one merchant's day (idempotent: a second run carries an
    /// unfinished one forward and returns a finished one as it is).
    pub fn settle(&self, merchant_id: &str, day: i64) -> Result<SettlementView, MerchantError> {
        let merchant = self.get(merchant_id)?;
        // Idempotent: the fee income account exists before any fee moves.
        self.open_accounts()?;
        if day >= self.day_of(self.now()) {
            return Err(MerchantError::invalid(
                "day",
                "only a day that has ended can be settled",
            ));
        }
        let existing = self.load_settlement(merchant_id, day)?;
        let current = match existing {
            Some(found) if found.status != "failed" => found,
            previous => self.record_settlement(
                merchant_id,
                day,
                merchant.discount,
                previous.map_or(1, |p| p.attempt + 1),
            )?,
        };
        let current = if current.status == "recorded" {
            self.move_settlement(current)?
        } else {
            current
        };
        if current.status == "moved" {
            return self.pay_settlement(current, &merchant.settlement_bank_account_id);
        }
        if matches!(current.status.as_str(), "paying" | "payout_retrying") {
            return self.follow_payout(current, &merchant.settlement_bank_account_id);
        }
        Ok(current)
    }

    /// Settles every approved merchant's day; failures are reported per
    /// merchant and do not stop the run.
    pub fn settle_all(&self, day: i64) -> Result<Vec<SettlementOutcome>, MerchantError> {
        Ok(self
            .approved_ids()?
            .into_iter()
            .map(|merchant_id| {
                self.settle(&merchant_id, day)
                    .map_err(|e| (merchant_id.clone(), e))
            })
            .collect())
    }

    fn record_settlement(
        &self,
        merchant_id: &str,
        day: i64,
        discount: crate::fees::DiscountRule,
        attempt: i64,
    ) -> Result<SettlementView, MerchantError> {
        let settlement_id = format!("stl_{}_{day}", merchant_id.trim_start_matches("mer_"));
        let end = self.day_end(day);
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), MerchantError> {
            // Mark first, then sum the marked rows: the sums are exactly of
            // the rows this settlement took, whatever commits meanwhile.
            db.execute(
                "UPDATE merchant_payments SET settlement_id = $2 WHERE merchant_id = $1 AND state = 'succeeded' AND settlement_id IS NULL AND paid_at < $3",
                sql_params![merchant_id, settlement_id.as_str(), end],
            )?;
            db.execute(
                "UPDATE merchant_refunds SET settlement_id = $2 WHERE merchant_id = $1 AND state = 'succeeded' AND settlement_id IS NULL AND resolved_at < $3",
                sql_params![merchant_id, settlement_id.as_str(), end],
            )?;
            let payments = db.query_one(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT), COUNT(*) FROM merchant_payments WHERE settlement_id = $1",
                sql_params![settlement_id.as_str()],
            )?;
            let refunds = db.query_one(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT), COUNT(*) FROM merchant_refunds WHERE settlement_id = $1",
                sql_params![settlement_id.as_str()],
            )?;
            let (gross, payment_count) = (payments.int(0)?, payments.int(1)?);
            let (refunded, refund_count) = (refunds.int(0)?, refunds.int(1)?);
            let overflow = || MerchantError::Internal("settlement arithmetic overflow".into());
            let fee = discount.charge(gross);
            let net = gross
                .checked_sub(refunded)
                .and_then(|n| n.checked_sub(fee))
                .ok_or_else(overflow)?;
            let state = if payment_count == 0 && refund_count == 0 {
                "empty"
            } else if net < 0 {
                "carried_forward"
            } else {
                "recorded"
            };
            if state != "recorded" {
                // Nothing is taken: the items wait for a later day.
                release_items(db, &settlement_id)?;
            }
            db.execute(
                "INSERT INTO merchant_settlements (id, merchant_id, day, attempt, gross, refunds, fee, net, currency, discount_rate_bps, \
                 payment_count, refund_count, state, reason, funding_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, $14, $14) \
                 ON CONFLICT (id) DO UPDATE SET attempt = $4, gross = $5, refunds = $6, fee = $7, net = $8, discount_rate_bps = $10, \
                 payment_count = $11, refund_count = $12, state = $13, reason = NULL, funding_id = NULL, payout_attempts = 0, next_payout_at = NULL, updated_at = $14",
                sql_params![
                    settlement_id.as_str(),
                    merchant_id,
                    day,
                    attempt,
                    gross,
                    refunded,
                    fee,
                    net,
                    FUNDING_CURRENCY,
                    discount.percent_bps,
                    payment_count,
                    refund_count,
                    state,
                    now
                ],
            )?;
            Ok(())
        })?;
        self.load_settlement(merchant_id, day)?
            .ok_or(MerchantError::NotFound("settlement"))
    }

    fn move_settlement(&self, current: SettlementView) -> Result<SettlementView, MerchantError> {
        let receivable = receivable_account_id(&current.merchant_id);
        let prefix = format!("stl:{}:{}", current.id, current.attempt);
        let mut transfers = Vec::new();
        let day = current.day.to_string();
        let metadata = [
            ("settlement_id", current.id.as_str()),
            ("day", day.as_str()),
        ];
        if current.fee > 0 {
            transfers.push(Self::post(
                &format!("{prefix}:fee"),
                &receivable,
                MERCHANT_FEE_INCOME_ACCOUNT,
                current.fee,
                "merchant.discount_fee",
                &metadata,
            )?);
        }
        if current.net > 0 {
            transfers.push(Self::post(
                &format!("{prefix}:net"),
                &receivable,
                &wallet_account_id(&current.merchant_id, FUNDING_CURRENCY),
                current.net,
                "merchant.settlement",
                &metadata,
            )?);
        }
        let outcome = if transfers.is_empty() {
            Ok(())
        } else {
            self.transfer(transfers)?
        };
        let (state, reason) = match outcome {
            Ok(()) if current.net > 0 => ("moved", None),
            Ok(()) => ("settled", None),
            Err(rejection) => ("failed", Some(rejection.code())),
        };
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), MerchantError> {
            let changed = db.execute(
                "UPDATE merchant_settlements SET state = $2, reason = $3, updated_at = $4 WHERE id = $1 AND state = 'recorded' AND attempt = $5",
                sql_params![current.id.as_str(), state, reason, now, current.attempt],
            )?;
            if changed == 1 && state == "failed" {
                release_items(db, &current.id)?;
            }
            Ok(())
        })?;
        self.load_settlement(&current.merchant_id, current.day)?
            .ok_or(MerchantError::NotFound("settlement"))
    }

    fn pay_settlement(
        &self,
        current: SettlementView,
        bank_account_id: &str,
    ) -> Result<SettlementView, MerchantError> {
        // The first payout keeps the key it always had; retries their own.
        let reference = match current.payout_attempts {
            0 => format!("settlement:{}:{}", current.id, current.attempt),
            n => format!(
                "settlement:{}:{}:payout:{}",
                current.id,
                current.attempt,
                n + 1
            ),
        };
        let payout = self.funding.settlement_payout(
            &current.merchant_id,
            &ClientKey {
                key: reference.clone(),
                request_hash: reference,
            },
            bank_account_id,
            current.net,
        )?;
        let now = self.now();
        self.sql.run(|db| {
            db.execute(
                "UPDATE merchant_settlements SET state = 'paying', funding_id = $2, payout_attempts = $4, next_payout_at = NULL, updated_at = $3 \
                 WHERE id = $1 AND state IN ('moved', 'payout_retrying') AND payout_attempts = $5",
                sql_params![
                    current.id.as_str(),
                    payout.id.as_str(),
                    now,
                    current.payout_attempts + 1,
                    current.payout_attempts
                ],
            )
        })?;
        self.load_settlement(&current.merchant_id, current.day)?
            .ok_or(MerchantError::NotFound("settlement"))
    }

    /// Carries a settlement's payout forward from its funding record:
    /// `paid`, a retry scheduled with back-off, a due retry made, or
    /// `payout_failed` once the attempts are used up.
    fn follow_payout(
        &self,
        current: SettlementView,
        bank_account_id: &str,
    ) -> Result<SettlementView, MerchantError> {
        let now = self.now();
        if current.status == "payout_retrying" {
            if current.next_payout_at.is_some_and(|at| at <= now) {
                return self.pay_settlement(current, bank_account_id);
            }
            return Ok(current);
        }
        let Some(payout) = self.settlement_payout(&current)? else {
            return Ok(current);
        };
        let (state, reason, next) = match payout.state {
            crate::funding::FundingState::Pending => return Ok(current),
            crate::funding::FundingState::Succeeded => ("paid", None, None),
            crate::funding::FundingState::Failed
                if current.payout_attempts < self.policy.payout_attempts_max =>
            {
                (
                    "payout_retrying",
                    payout.reason.clone(),
                    Some(
                        now.saturating_add(
                            payout_backoff_ms(
                                self.policy.payout_retry_base_ms,
                                current.payout_attempts,
                            )
                            .saturating_mul(NANOS_PER_MILLI),
                        ),
                    ),
                )
            }
            crate::funding::FundingState::Failed => ("payout_failed", payout.reason.clone(), None),
        };
        self.sql.transaction(|db| -> Result<(), MerchantError> {
            let changed = db.execute(
                "UPDATE merchant_settlements SET state = $2, reason = $3, next_payout_at = $4, updated_at = $5 \
                 WHERE id = $1 AND state = 'paying' AND payout_attempts = $6",
                sql_params![current.id.as_str(), state, reason.as_deref(), next, now, current.payout_attempts],
            )?;
            if changed == 1 && state == "payout_failed" {
                // Staff must act (the account is wrong): on the record.
                coffer_audit::append(
                    db,
                    &coffer_audit::Entry {
                        at: now,
                        actor: coffer_audit::ACTOR_SYSTEM,
                        action: "settlement_payout_failed",
                        subject: Some(&current.merchant_id),
                        ip: "",
                        outcome: coffer_audit::Outcome::Ok,
                        detail: &format!("{} {}", current.id, reason.as_deref().unwrap_or("")),
                    },
                )?;
            }
            Ok(())
        })?;
        self.load_settlement(&current.merchant_id, current.day)?
            .ok_or(MerchantError::NotFound("settlement"))
    }

    /// One pass over every settlement whose payout is in flight or due for
    /// a retry; returns how many it looked at. Failures are logged and left
    /// for the next pass.
    pub fn follow_payouts(&self) -> Result<usize, MerchantError> {
        let rows = self.sql.run(|db| {
            db.query(
                &format!(
                    "{SELECT_SETTLEMENT} WHERE state IN ('paying', 'payout_retrying') ORDER BY updated_at, id LIMIT $1"
                ),
                sql_params![MERCHANT_PAGE_MAX],
            )
        })?;
        for row in &rows {
            let current = settlement(row)?;
            let id = current.id.clone();
            let result = self.get(&current.merchant_id).and_then(|merchant| {
                self.follow_payout(current, &merchant.settlement_bank_account_id)
            });
            if let Err(error) = result {
                tracing::warn!(settlement = %id, %error, "settlement payout not followed yet");
            }
        }
        Ok(rows.len())
    }

    /// The payout of a settlement (its funding record), if it has one.
    pub fn settlement_payout(
        &self,
        view: &SettlementView,
    ) -> Result<Option<FundingView>, MerchantError> {
        view.funding_id
            .as_deref()
            .map(|id| self.funding.get(&view.merchant_id, id))
            .transpose()
            .map_err(MerchantError::from)
    }

    /// Settlements, newest day first, of one merchant or all.
    pub fn settlements(
        &self,
        merchant_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SettlementView>, MerchantError> {
        let rows = self.sql.run(|db| {
            db.query(
                &format!(
                    "{SELECT_SETTLEMENT} WHERE (CAST($1 AS TEXT) IS NULL OR merchant_id = $1) ORDER BY day DESC, merchant_id LIMIT $2"
                ),
                sql_params![merchant_id, limit.clamp(1, MERCHANT_PAGE_MAX)],
            )
        })?;
        rows.iter().map(settlement).collect()
    }
}

/// The wait before retry `attempts + 1` after `attempts` failed payouts:
/// `base × 2^(attempts − 1)`, at most a day.
pub fn payout_backoff_ms(base_ms: i64, attempts: i64) -> i64 {
    const DAY_MS: i64 = 24 * 3600 * 1000;
    let shift = u32::try_from((attempts - 1).clamp(0, 30)).unwrap_or(30);
    base_ms.saturating_mul(1_i64 << shift).min(DAY_MS)
}

fn release_items(
    db: &mut dyn coffer_store::sql::Sql,
    settlement_id: &str,
) -> Result<(), StoreError> {
    db.execute(
        "UPDATE merchant_payments SET settlement_id = NULL WHERE settlement_id = $1",
        sql_params![settlement_id],
    )?;
    db.execute(
        "UPDATE merchant_refunds SET settlement_id = NULL WHERE settlement_id = $1",
        sql_params![settlement_id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_day_numbers_agree() {
        assert_eq!(date_of_day(0), "1970-01-01");
        assert_eq!(date_of_day(20_782), "2026-11-25");
        assert_eq!(day_of_date("2026-11-25"), Some(20_782));
        assert_eq!(day_of_date("2024-02-29"), Some(19_782));
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "26-11-25",
            "2026/11/25",
            "2026-11-2x",
            "",
        ] {
            assert_eq!(day_of_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn payout_retries_back_off_exponentially_up_to_a_day() {
        assert_eq!(payout_backoff_ms(60_000, 1), 60_000);
        assert_eq!(payout_backoff_ms(60_000, 2), 120_000);
        assert_eq!(payout_backoff_ms(60_000, 4), 480_000);
        assert_eq!(payout_backoff_ms(60_000, 40), 24 * 3600 * 1000);
        assert_eq!(payout_backoff_ms(i64::MAX, 3), 24 * 3600 * 1000);
    }

    #[test]
    fn fees_round_half_up_to_the_fen() {
        // 0.38% of 100.00 is 0.38.
        assert_eq!(discount_fee(10_000, 38), Some(38));
        // 0.38% of 1.31 is 0.4978 fen → 0 … of 13.16 is 5.0008 → 5.
        assert_eq!(discount_fee(131, 38), Some(0));
        assert_eq!(discount_fee(1_316, 38), Some(5));
        // Exactly half a fen rounds up: 0.5% of 1.01 is 0.505 → 1.
        assert_eq!(discount_fee(101, 50), Some(1));
        assert_eq!(discount_fee(99, 50), Some(0));
        assert_eq!(discount_fee(0, 60), Some(0));
        assert_eq!(discount_fee(i64::MAX, 1_000), Some(922_337_203_685_477_581));
    }
}
