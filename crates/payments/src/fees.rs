//! The fee schedule: per operation type a fixed part plus a percentage in
//! basis points, bounded by a minimum and a maximum, with free quotas and
//! waivers. Pure: `FeeRule::quote` decides from the amount and what the
//! customer has used; the payment flow reserves the free quota it relies on
//! with a conditional update (`limits::reserve`) in the transaction that
//! records the payment, so two payments cannot both use the last free one.
//!
//! **Rounding.** The percentage part is `amount × bps / 10 000` rounded half
//! up to the minor unit (0.5 fen and more rounds up), computed in i128 so it
//! cannot overflow; then `fixed` is added and the sum clamped to
//! `[minimum, maximum]`. The fee is charged on top of the amount: the payee
//! receives the amount, the payer pays amount + fee.

use std::collections::BTreeMap;

/// Basis points in one whole (100 %).
pub const BPS_PER_WHOLE: i64 = 10_000;
/// No rule may charge more than this fixed part or minimum (CNY 10,000.00):
/// a guard against a misplaced digit in the configuration.
pub const FEE_FIXED_MAX: i64 = 1_000_000;
/// Free payments per month a rule may grant at most.
pub const FREE_PER_MONTH_MAX: i64 = 1_000;

/// The operations that carry fees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FeeOperation {
    P2p,
    Withdrawal,
    MerchantPayment,
    BillPayment,
}

impl FeeOperation {
    pub const ALL: [FeeOperation; 4] = [
        FeeOperation::P2p,
        FeeOperation::Withdrawal,
        FeeOperation::MerchantPayment,
        FeeOperation::BillPayment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FeeOperation::P2p => "p2p",
            FeeOperation::Withdrawal => "withdrawal",
            FeeOperation::MerchantPayment => "merchant_payment",
            FeeOperation::BillPayment => "bill_payment",
        }
    }

    pub fn parse(text: &str) -> Option<FeeOperation> {
        FeeOperation::ALL.into_iter().find(|op| op.as_str() == text)
    }

    /// The usage counter of this operation's monthly free quota.
    pub fn free_span(self) -> String {
        format!("fee.{}.free", self.as_str())
    }

    /// The usage counter of this operation's "first one free" waiver.
    pub fn first_span(self) -> String {
        format!("fee.{}.first", self.as_str())
    }
}

/// Why a fee was waived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiver {
    /// The customer's first payment of this kind ever.
    First,
    /// Within the monthly free quota.
    MonthlyQuota,
}

impl Waiver {
    pub fn as_str(self) -> &'static str {
        match self {
            Waiver::First => "first_free",
            Waiver::MonthlyQuota => "monthly_free_quota",
        }
    }

    pub fn parse(text: &str) -> Option<Waiver> {
        match text {
            "first_free" => Some(Waiver::First),
            "monthly_free_quota" => Some(Waiver::MonthlyQuota),
            _ => None,
        }
    }
}

/// One operation's fee, in minor units of the payment's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeRule {
    pub fixed: i64,
    /// Percentage of the amount in basis points (1 bp = 0.01 %).
    pub percent_bps: i64,
    pub minimum: i64,
    /// `None`: no maximum.
    pub maximum: Option<i64>,
    /// The first this many payments each calendar month (bank time) are free.
    pub free_per_month: i64,
    /// The customer's first payment of this kind ever is free.
    pub first_free: bool,
}

/// A configuration mistake in a rule: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FeeRuleError {
    pub field: &'static str,
    pub message: String,
}

/// What the customer has used that bears on the fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeeUsage {
    /// Free payments used this month.
    pub free_used_this_month: i64,
    /// Whether the "first one free" waiver was used.
    pub first_used: bool,
}

/// A decided fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeQuote {
    pub fee: i64,
    pub waiver: Option<Waiver>,
}

impl FeeRule {
    /// No fee at all.
    pub const FREE: FeeRule = FeeRule {
        fixed: 0,
        percent_bps: 0,
        minimum: 0,
        maximum: None,
        free_per_month: 0,
        first_free: false,
    };

    pub fn validate(&self) -> Result<(), FeeRuleError> {
        let error = |field, message: String| Err(FeeRuleError { field, message });
        if !(0..=FEE_FIXED_MAX).contains(&self.fixed) {
            return error("fixed", format!("minor units from 0 to {FEE_FIXED_MAX}"));
        }
        if !(0..=BPS_PER_WHOLE).contains(&self.percent_bps) {
            return error(
                "percent_bps",
                format!("basis points from 0 to {BPS_PER_WHOLE} (100 %)"),
            );
        }
        if !(0..=FEE_FIXED_MAX).contains(&self.minimum) {
            return error("minimum", format!("minor units from 0 to {FEE_FIXED_MAX}"));
        }
        if let Some(maximum) = self.maximum {
            if maximum < self.minimum {
                return error("maximum", "at least the minimum".into());
            }
        }
        if !(0..=FREE_PER_MONTH_MAX).contains(&self.free_per_month) {
            return error(
                "free_per_month",
                format!("a count from 0 to {FREE_PER_MONTH_MAX}"),
            );
        }
        Ok(())
    }

    /// The fee for `amount` before waivers (see the module's rounding rule).
    pub fn charge(&self, amount: i64) -> i64 {
        let whole = i128::from(BPS_PER_WHOLE);
        let percent = (i128::from(amount) * i128::from(self.percent_bps) + whole / 2) / whole;
        let mut fee = percent + i128::from(self.fixed);
        fee = fee.max(i128::from(self.minimum));
        if let Some(maximum) = self.maximum {
            fee = fee.min(i128::from(maximum));
        }
        // A fee beyond i64 would need an amount no wallet can hold; saturate
        // rather than wrap, and the ledger refuses the payment.
        i64::try_from(fee).unwrap_or(i64::MAX)
    }

    /// The fee for `amount` given the customer's usage: the first payment
    /// free first, then the monthly quota, then the charge.
    pub fn quote(&self, amount: i64, usage: FeeUsage) -> FeeQuote {
        let fee = self.charge(amount);
        if fee == 0 {
            return FeeQuote { fee, waiver: None };
        }
        if self.first_free && !usage.first_used {
            return FeeQuote {
                fee: 0,
                waiver: Some(Waiver::First),
            };
        }
        if usage.free_used_this_month < self.free_per_month {
            return FeeQuote {
                fee: 0,
                waiver: Some(Waiver::MonthlyQuota),
            };
        }
        FeeQuote { fee, waiver: None }
    }
}

/// The merchant discount rate (MDR): what the bank keeps of a merchant's
/// day's takings at settlement, as a percentage bounded by a minimum and a
/// maximum per settlement. Never more than the takings themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscountRule {
    pub percent_bps: i64,
    pub minimum: i64,
    /// `None`: no maximum.
    pub maximum: Option<i64>,
}

/// Highest merchant discount rate a rule may set (10 %).
pub const DISCOUNT_BPS_MAX: i64 = 1_000;

impl DiscountRule {
    /// A plain percentage, no bounds.
    pub const fn percent(bps: i64) -> DiscountRule {
        DiscountRule {
            percent_bps: bps,
            minimum: 0,
            maximum: None,
        }
    }

    pub fn validate(&self) -> Result<(), FeeRuleError> {
        FeeRule {
            percent_bps: self.percent_bps,
            minimum: self.minimum,
            maximum: self.maximum,
            ..FeeRule::FREE
        }
        .validate()?;
        if self.percent_bps > DISCOUNT_BPS_MAX {
            return Err(FeeRuleError {
                field: "percent_bps",
                message: format!("basis points from 0 to {DISCOUNT_BPS_MAX} (10 %)"),
            });
        }
        Ok(())
    }

    /// The fee on a day's `gross` takings: the percentage rounded half up,
    /// clamped to `[minimum, maximum]`, and never above `gross` (a day with
    /// no takings pays nothing).
    pub fn charge(&self, gross: i64) -> i64 {
        if gross <= 0 {
            return 0;
        }
        let fee = FeeRule {
            percent_bps: self.percent_bps,
            minimum: self.minimum,
            maximum: self.maximum,
            ..FeeRule::FREE
        }
        .charge(gross);
        fee.min(gross)
    }
}

/// Whose merchant discount rule: one merchant's, or every merchant's of a
/// merchant category code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiscountScope {
    Merchant(String),
    Mcc(String),
}

/// Every operation's rule; an operation without one is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeSchedule {
    rules: BTreeMap<FeeOperation, FeeRule>,
    /// Merchant discount rules over the shipped MCC defaults (`mcc.rs`).
    discounts: BTreeMap<DiscountScope, DiscountRule>,
}

impl Default for FeeSchedule {
    /// P2P: 0.1 % (min CNY 0.10, max CNY 25.00), the first three each month
    /// free and the very first free; withdrawals: 0.1 % (min CNY 1.00, max
    /// CNY 50.00), the first each month free; merchant and bill payments
    /// free to the customer (the merchant pays the discount rate).
    fn default() -> FeeSchedule {
        FeeSchedule::new([
            (
                FeeOperation::P2p,
                FeeRule {
                    fixed: 0,
                    percent_bps: 10,
                    minimum: 10,
                    maximum: Some(2_500),
                    free_per_month: 3,
                    first_free: true,
                },
            ),
            (
                FeeOperation::Withdrawal,
                FeeRule {
                    fixed: 0,
                    percent_bps: 10,
                    minimum: 100,
                    maximum: Some(5_000),
                    free_per_month: 1,
                    first_free: false,
                },
            ),
            (FeeOperation::MerchantPayment, FeeRule::FREE),
            (FeeOperation::BillPayment, FeeRule::FREE),
        ])
        .unwrap_or_else(|_| unreachable!("the default schedule is valid"))
        // The merchant discount rates are the shipped MCC table's.
    }
}

impl FeeSchedule {
    /// A schedule from rules, each validated; the error names the operation.
    pub fn new(
        rules: impl IntoIterator<Item = (FeeOperation, FeeRule)>,
    ) -> Result<FeeSchedule, (FeeOperation, FeeRuleError)> {
        let mut map = BTreeMap::new();
        for (operation, rule) in rules {
            rule.validate().map_err(|e| (operation, e))?;
            map.insert(operation, rule);
        }
        Ok(FeeSchedule {
            rules: map,
            discounts: BTreeMap::new(),
        })
    }

    /// No fees at all for customers (tests that are not about fees); the
    /// merchant discount rates stay the MCC table's.
    pub fn free() -> FeeSchedule {
        FeeSchedule {
            rules: BTreeMap::new(),
            discounts: BTreeMap::new(),
        }
    }

    /// This schedule with a merchant discount rule for one merchant or MCC.
    pub fn with_discount(
        mut self,
        scope: DiscountScope,
        rule: DiscountRule,
    ) -> Result<FeeSchedule, FeeRuleError> {
        rule.validate()?;
        self.discounts.insert(scope, rule);
        Ok(self)
    }

    /// The configured discount rules, by scope.
    pub fn discounts(&self) -> impl Iterator<Item = (&DiscountScope, &DiscountRule)> {
        self.discounts.iter()
    }

    /// The discount rule a merchant settles under: its own rule, else its
    /// MCC's configured one, else the MCC table's default rate (0 for a code
    /// not in the table, which cannot be onboarded).
    pub fn merchant_discount(&self, merchant_id: &str, mcc: &str) -> DiscountRule {
        self.discounts
            .get(&DiscountScope::Merchant(merchant_id.to_string()))
            .or_else(|| self.discounts.get(&DiscountScope::Mcc(mcc.to_string())))
            .copied()
            .unwrap_or_else(|| {
                DiscountRule::percent(
                    crate::mcc::category(mcc).map_or(0, |c| i64::from(c.discount_rate_bps)),
                )
            })
    }

    pub fn rule(&self, operation: FeeOperation) -> FeeRule {
        self.rules.get(&operation).copied().unwrap_or(FeeRule::FREE)
    }

    /// This schedule with `operation`'s rule replaced.
    pub fn with(
        mut self,
        operation: FeeOperation,
        rule: FeeRule,
    ) -> Result<FeeSchedule, FeeRuleError> {
        rule.validate()?;
        self.rules.insert(operation, rule);
        Ok(self)
    }
}

/// The kind under which approved fee schedules are versioned
/// (`coffer_identity::latest_setting`).
pub const FEES_SETTING: &str = "fees";

/// The schedule as a JSON document: one object per operation, every
/// operation named.
pub fn schedule_to_json(schedule: &FeeSchedule) -> serde_json::Value {
    let mut document = serde_json::Map::new();
    for operation in FeeOperation::ALL {
        let rule = schedule.rule(operation);
        document.insert(
            operation.as_str().to_string(),
            serde_json::json!({
                "fixed": rule.fixed,
                "percent_bps": rule.percent_bps,
                "minimum": rule.minimum,
                "maximum": rule.maximum,
                "free_per_month": rule.free_per_month,
                "first_free": rule.first_free,
            }),
        );
    }
    // The merchant discount rate (MDR) rules over the shipped MCC table's
    // rates, most specific first when settling: a merchant's own, then its
    // MCC's, then the table's.
    document.insert(
        DISCOUNTS_KEY.to_string(),
        serde_json::Value::Array(
            schedule
                .discounts()
                .map(|(scope, rule)| {
                    let (kind, id) = match scope {
                        DiscountScope::Merchant(id) => ("merchant", id),
                        DiscountScope::Mcc(code) => ("mcc", code),
                    };
                    serde_json::json!({
                        "scope": kind,
                        "id": id,
                        "percent_bps": rule.percent_bps,
                        "minimum": rule.minimum,
                        "maximum": rule.maximum,
                    })
                })
                .collect(),
        ),
    );
    serde_json::Value::Object(document)
}

/// The schedule document's list of merchant discount rules.
pub const DISCOUNTS_KEY: &str = "merchant_discounts";

/// Parses and validates a whole schedule document: every operation named
/// once, every rule complete and valid (`FeeRule::validate`); the error
/// names the field by its path (`settings.p2p.percent_bps`).
pub fn schedule_from_json(
    value: &serde_json::Value,
) -> Result<FeeSchedule, coffer_identity::SettingError> {
    use coffer_identity::SettingError;
    const FIELDS: [&str; 6] = [
        "fixed",
        "percent_bps",
        "minimum",
        "maximum",
        "free_per_month",
        "first_free",
    ];
    let object = value
        .as_object()
        .ok_or_else(|| SettingError::new("settings", "an object with one rule per operation"))?;
    if let Some(key) = object
        .keys()
        .find(|k| FeeOperation::parse(k).is_none() && k.as_str() != DISCOUNTS_KEY)
    {
        return Err(SettingError::new(
            format!("settings.{key}"),
            "unknown operation; expected p2p, withdrawal, merchant_payment, bill_payment, merchant_discounts",
        ));
    }
    let mut rules = Vec::new();
    for operation in FeeOperation::ALL {
        let path = format!("settings.{}", operation.as_str());
        let rule = object
            .get(operation.as_str())
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| SettingError::new(path.clone(), "a rule for every operation"))?;
        if let Some(key) = rule.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(SettingError::new(
                format!("{path}.{key}"),
                "unknown key; expected fixed, percent_bps, minimum, maximum, free_per_month, first_free",
            ));
        }
        let whole = |name: &str| {
            rule.get(name)
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| SettingError::new(format!("{path}.{name}"), "a whole number"))
        };
        let maximum = match rule.get("maximum") {
            None | Some(serde_json::Value::Null) => None,
            Some(_) => Some(whole("maximum")?),
        };
        let rule = FeeRule {
            fixed: whole("fixed")?,
            percent_bps: whole("percent_bps")?,
            minimum: whole("minimum")?,
            maximum,
            free_per_month: whole("free_per_month")?,
            first_free: rule
                .get("first_free")
                .and_then(serde_json::Value::as_bool)
                .ok_or_else(|| SettingError::new(format!("{path}.first_free"), "true or false"))?,
        };
        rules.push((operation, rule));
    }
    let mut schedule = FeeSchedule::new(rules).map_err(|(operation, error)| {
        SettingError::new(
            format!("settings.{}.{}", operation.as_str(), error.field),
            error.message,
        )
    })?;
    let discounts = match object.get(DISCOUNTS_KEY) {
        None => Vec::new(),
        Some(list) => list.as_array().cloned().ok_or_else(|| {
            SettingError::new(format!("settings.{DISCOUNTS_KEY}"), "a list of rules")
        })?,
    };
    for (index, entry) in discounts.iter().enumerate() {
        let path = format!("settings.{DISCOUNTS_KEY}[{index}]");
        let entry = entry
            .as_object()
            .ok_or_else(|| SettingError::new(path.clone(), "an object"))?;
        const DISCOUNT_FIELDS: [&str; 5] = ["scope", "id", "percent_bps", "minimum", "maximum"];
        if let Some(key) = entry
            .keys()
            .find(|k| !DISCOUNT_FIELDS.contains(&k.as_str()))
        {
            return Err(SettingError::new(
                format!("{path}.{key}"),
                "unknown key; expected scope, id, percent_bps, minimum, maximum",
            ));
        }
        let text = |name: &str| {
            entry
                .get(name)
                .and_then(serde_json::Value::as_str)
                .filter(|t| !t.is_empty() && t.len() <= 64)
                .ok_or_else(|| SettingError::new(format!("{path}.{name}"), "1 to 64 characters"))
        };
        let id = text("id")?.to_string();
        let scope = match text("scope")? {
            "merchant" => DiscountScope::Merchant(id),
            "mcc" if crate::mcc::category(&id).is_some() => DiscountScope::Mcc(id),
            "mcc" => {
                return Err(SettingError::new(
                    format!("{path}.id"),
                    "a merchant category code of the shipped table",
                ))
            }
            _ => {
                return Err(SettingError::new(
                    format!("{path}.scope"),
                    "merchant or mcc",
                ))
            }
        };
        let whole = |name: &str| {
            entry
                .get(name)
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| SettingError::new(format!("{path}.{name}"), "a whole number"))
        };
        let rule = DiscountRule {
            percent_bps: whole("percent_bps")?,
            minimum: whole("minimum")?,
            maximum: match entry.get("maximum") {
                None | Some(serde_json::Value::Null) => None,
                Some(_) => Some(whole("maximum")?),
            },
        };
        schedule = schedule
            .with_discount(scope, rule)
            .map_err(|e| SettingError::new(format!("{path}.{}", e.field), e.message))?;
    }
    Ok(schedule)
}

/// The schedule in force: the latest approved version, else `seed` (the
/// configuration's). Read in the caller's transaction, so a payment's fee
/// is decided with the schedule of the moment it is recorded.
pub fn current(
    db: &mut dyn coffer_store::sql::Sql,
    seed: &FeeSchedule,
) -> Result<(i64, FeeSchedule), coffer_store::StoreError> {
    match coffer_identity::latest_setting(db, FEES_SETTING)? {
        None => Ok((0, seed.clone())),
        Some((version, body)) => {
            let corrupt = |e: String| {
                coffer_store::StoreError::Corrupt(format!("fee schedule v{version}: {e}"))
            };
            let value: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| corrupt(e.to_string()))?;
            let schedule = schedule_from_json(&value).map_err(|e| corrupt(e.to_string()))?;
            Ok((version, schedule))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(fixed: i64, bps: i64, minimum: i64, maximum: Option<i64>) -> FeeRule {
        FeeRule {
            fixed,
            percent_bps: bps,
            minimum,
            maximum,
            ..FeeRule::FREE
        }
    }

    #[test]
    fn percentages_round_half_up_then_clamp() {
        // 0.1 % of 12_345 = 12.345 → 12; of 12_350 = 12.35 → 12 (below .5);
        // of 12_500 = 12.5 → 13 (half rounds up).
        let percent = rule(0, 10, 0, None);
        assert_eq!(percent.charge(12_345), 12);
        assert_eq!(percent.charge(12_500), 13);
        assert_eq!(percent.charge(4), 0);
        assert_eq!(percent.charge(5_000), 5);
        // Fixed plus percentage, minimum and maximum.
        assert_eq!(rule(100, 50, 0, None).charge(10_000), 150);
        assert_eq!(rule(0, 10, 10, Some(2_500)).charge(1), 10);
        assert_eq!(rule(0, 10, 10, Some(2_500)).charge(100_000_000), 2_500);
        // 100 % of the largest amount does not overflow.
        assert_eq!(rule(0, 10_000, 0, None).charge(i64::MAX), i64::MAX);
        assert_eq!(
            rule(FEE_FIXED_MAX, 10_000, 0, None).charge(i64::MAX),
            i64::MAX
        );
    }

    #[test]
    fn waivers_come_first_free_then_the_monthly_quota() {
        let rule = FeeRule {
            first_free: true,
            free_per_month: 2,
            ..rule(0, 10, 10, None)
        };
        let fresh = FeeUsage::default();
        assert_eq!(
            rule.quote(10_000, fresh),
            FeeQuote {
                fee: 0,
                waiver: Some(Waiver::First)
            }
        );
        let after_first = FeeUsage {
            first_used: true,
            free_used_this_month: 1,
        };
        assert_eq!(
            rule.quote(10_000, after_first).waiver,
            Some(Waiver::MonthlyQuota)
        );
        let quota_used = FeeUsage {
            first_used: true,
            free_used_this_month: 2,
        };
        assert_eq!(
            rule.quote(10_000, quota_used),
            FeeQuote {
                fee: 10,
                waiver: None
            }
        );
        // Nothing to waive: no waiver used up.
        assert_eq!(FeeRule::FREE.quote(10_000, fresh).waiver, None);
    }

    #[test]
    fn bad_rules_are_refused_by_field() {
        for (bad, field) in [
            (rule(-1, 0, 0, None), "fixed"),
            (rule(0, 10_001, 0, None), "percent_bps"),
            (rule(0, -1, 0, None), "percent_bps"),
            (rule(0, 0, 100, Some(99)), "maximum"),
            (rule(0, 0, -5, None), "minimum"),
            (
                FeeRule {
                    free_per_month: -1,
                    ..FeeRule::FREE
                },
                "free_per_month",
            ),
        ] {
            assert_eq!(bad.validate().map_err(|e| e.field), Err(field), "{bad:?}");
        }
        assert!(FeeSchedule::default()
            .with(FeeOperation::P2p, rule(0, 20_000, 0, None))
            .is_err());
        assert_eq!(
            FeeSchedule::free().rule(FeeOperation::Withdrawal),
            FeeRule::FREE
        );
    }

    #[test]
    fn merchant_discounts_come_from_the_merchant_then_the_mcc_then_the_table() {
        let schedule = FeeSchedule::default()
            .with_discount(
                DiscountScope::Mcc("5814".into()),
                DiscountRule {
                    percent_bps: 50,
                    minimum: 100,
                    maximum: Some(10_000),
                },
            )
            .expect("mcc")
            .with_discount(
                DiscountScope::Merchant("mer_a".into()),
                DiscountRule::percent(20),
            )
            .expect("merchant");
        assert_eq!(schedule.merchant_discount("mer_a", "5814").percent_bps, 20);
        assert_eq!(schedule.merchant_discount("mer_b", "5814").percent_bps, 50);
        // 4111 in the shipped table: 0.30 %.
        assert_eq!(
            schedule.merchant_discount("mer_b", "4111"),
            DiscountRule::percent(30)
        );
        let rule = schedule.merchant_discount("mer_b", "5814");
        assert_eq!(rule.charge(0), 0);
        assert_eq!(rule.charge(50), 50, "never more than the takings");
        assert_eq!(rule.charge(1_000), 100, "the minimum");
        assert_eq!(rule.charge(100_000), 500);
        assert_eq!(rule.charge(10_000_000), 10_000, "the maximum");
        assert!(DiscountRule::percent(1_001).validate().is_err());
    }

    #[test]
    fn schedules_round_trip_through_json_and_name_the_bad_field() {
        let schedule = FeeSchedule::default();
        assert_eq!(
            schedule_from_json(&schedule_to_json(&schedule)),
            Ok(schedule.clone())
        );
        let mut document = schedule_to_json(&schedule);
        document["p2p"]["percent_bps"] = serde_json::json!(20_000);
        assert_eq!(
            schedule_from_json(&document).map_err(|e| e.field),
            Err("settings.p2p.percent_bps".to_string())
        );
        let mut document = schedule_to_json(&schedule);
        if let Some(object) = document.as_object_mut() {
            object.remove("withdrawal");
        }
        assert_eq!(
            schedule_from_json(&document).map_err(|e| e.field),
            Err("settings.withdrawal".to_string())
        );
        let mut document = schedule_to_json(&schedule);
        document["bill_payment"]["percent"] = serde_json::json!(1);
        assert!(schedule_from_json(&document).is_err());
    }
}
