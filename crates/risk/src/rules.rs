//! The rule set (configuration risk staff edit as JSON) and the pure
//! evaluation: `evaluate(rule_set, signals) -> Decision`, no I/O, no clock,
//! integer money only. Everything it needs about the past is in `Signals`,
//! gathered by `service.rs` (or rebuilt from stored evaluations for a
//! dry-run), so the same function decides live traffic and replays.

use serde::{Deserialize, Serialize};

/// Rule sets are bounded so an evaluation stays a few microseconds.
pub const RULES_MAX: usize = 100;
/// The longest sliding window a velocity rule may use: `history` is the
/// last `HISTORY_MAX` payments, so a longer window would silently undercount.
pub const WINDOW_SECONDS_MAX: i64 = 24 * 3600;
/// Payments of the customer's recent past that signals carry (newest first).
pub const HISTORY_MAX: usize = 100;
/// A rule's score is at most this; thresholds too.
pub const SCORE_MAX: i64 = 1000;
const ID_LENGTH_MAX: usize = 64;
const DESCRIPTION_LENGTH_MAX: usize = 300;
const NANOS_PER_SECOND: i64 = 1_000_000_000;
const BASIS_POINTS_MAX: i64 = 10_000;

/// What is being evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    P2p,
    MerchantPayment,
    Withdrawal,
    SignIn,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::P2p,
        Kind::MerchantPayment,
        Kind::Withdrawal,
        Kind::SignIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::P2p => "p2p",
            Kind::MerchantPayment => "merchant_payment",
            Kind::Withdrawal => "withdrawal",
            Kind::SignIn => "sign_in",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Kinds that move money out of the customer's wallet.
    pub fn is_payment(self) -> bool {
        !matches!(self, Kind::SignIn)
    }
}

/// The decision, in increasing severity (the order is what `max` uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allow,
    StepUp,
    Review,
    BlockAndFreeze,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Allow,
        Outcome::StepUp,
        Outcome::Review,
        Outcome::BlockAndFreeze,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::StepUp => "step_up",
            Outcome::Review => "review",
            Outcome::BlockAndFreeze => "block_and_freeze",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

/// Lists a value can be blocked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockList {
    Payee,
    Device,
    Card,
    Ip,
}

impl BlockList {
    pub const ALL: [BlockList; 4] = [
        BlockList::Payee,
        BlockList::Device,
        BlockList::Card,
        BlockList::Ip,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BlockList::Payee => "payee",
            BlockList::Device => "device",
            BlockList::Card => "card",
            BlockList::Ip => "ip",
        }
    }

    pub fn parse(text: &str) -> Option<BlockList> {
        BlockList::ALL.into_iter().find(|b| b.as_str() == text)
    }
}

/// Scores at or above which the summed score decides (each optional level
/// must be above the previous one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub step_up: i64,
    pub review: i64,
    pub block_and_freeze: i64,
}

/// What a rule looks at. Amounts are minor units of the rule set's
/// `currency`; an attempt in another currency never meets an amount rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// At least `count_at_least` payments of at least `min_amount` within
    /// the window, this one included (it must qualify itself).
    Velocity {
        window_seconds: i64,
        min_amount: i64,
        count_at_least: i64,
    },
    /// The window's payments, this one included, add up to at least this.
    VelocityAmount {
        window_seconds: i64,
        total_at_least: i64,
    },
    /// More than `multiple` times the median of the last `last_n` payments
    /// (once there are at least `min_history` of them).
    AmountVsMedian {
        last_n: i64,
        min_history: i64,
        multiple: i64,
    },
    /// Above the largest of the last `last_n` payments (with `min_history`).
    AboveUsualMax { last_n: i64, min_history: i64 },
    /// At least this much, whatever the history.
    AmountAtLeast { min_amount: i64 },
    /// A device never seen for this customer (only when the device is known).
    NewDevice {},
    /// An IP address never seen for this customer.
    NewIp {},
    /// A payee never paid before, for at least `min_amount`.
    NewPayee { min_amount: i64 },
    /// At least `min_amount` when no earlier payment ever reached it.
    FirstLargePayment { min_amount: i64 },
    /// The bank's local hour (rule set `utc_offset_seconds`) is in
    /// `from_hour..to_hour` (wrapping past midnight when from > to).
    UnusualHour { from_hour: i64, to_hour: i64 },
    /// The payee, device, card or IP is on one of these lists.
    Blocklisted { lists: Vec<BlockList> },
    /// The merchant refunded more than `above_bps` of what it was paid
    /// (over at least `min_payments` payments).
    MerchantRefundRatio { above_bps: i64, min_payments: i64 },
    /// A sign-in after at least `count_at_least` failed attempts for the
    /// same contact since its last successful sign-in (or staff unlock),
    /// as the sign-in throttle counts them (forgotten after an hour
    /// without a failure).
    FailedSignIns { count_at_least: i64 },
}

/// One rule: a condition, the kinds it applies to, and either a score or
/// a direct outcome (exactly one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub description: String,
    /// Empty: every payment kind (not sign-in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<Kind>,
    pub when: Condition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

impl Rule {
    fn applies_to(&self, kind: Kind) -> bool {
        if self.kinds.is_empty() {
            kind.is_payment()
        } else {
            self.kinds.contains(&kind)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// The currency amount conditions are written in (ISO 4217 code).
    pub currency: String,
    /// The bank's time zone as an offset from UTC (China: 28800).
    pub utc_offset_seconds: i64,
    pub thresholds: Thresholds,
    pub rules: Vec<Rule>,
}

/// One earlier payment evaluation of the same customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Past {
    /// Nanoseconds since the epoch.
    pub at: i64,
    pub amount: i64,
}

/// Everything an evaluation needs; `history` and `largest_before` are
/// derived from stored evaluations, the rest is stored with each one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Signals {
    pub kind: Option<Kind>,
    /// Minor units; none for a sign-in.
    pub amount: Option<i64>,
    pub currency: Option<String>,
    /// Nanoseconds since the epoch.
    pub at: i64,
    /// Earlier payments (any payment kind, same currency), newest first,
    /// at most `HISTORY_MAX`.
    #[serde(default, skip_serializing)]
    pub history: Vec<Past>,
    /// The largest earlier payment ever, if any.
    #[serde(default, skip_serializing)]
    pub largest_before: Option<i64>,
    pub new_payee: bool,
    pub new_device: bool,
    pub new_ip: bool,
    #[serde(default)]
    pub blocklisted: Vec<BlockList>,
    /// For merchant payments: the merchant's refunds over payments (basis
    /// points) and how many payments that ratio is over.
    #[serde(default)]
    pub merchant_refund_bps: Option<i64>,
    #[serde(default)]
    pub merchant_payment_count: Option<i64>,
    /// For sign-ins: failed attempts since the last success (throttle count).
    #[serde(default)]
    pub failed_sign_ins: i64,
}

/// Why a rule matched, as recorded and shown to analysts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub rule_id: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub score: i64,
    pub reasons: Vec<Reason>,
}

/// The outcome of a rule set for these signals: the most severe of every
/// matching rule's direct outcome and of the summed score's threshold.
pub fn evaluate(rule_set: &RuleSet, signals: &Signals) -> Decision {
    let Some(kind) = signals.kind else {
        return Decision {
            outcome: Outcome::Allow,
            score: 0,
            reasons: Vec::new(),
        };
    };
    let mut score: i64 = 0;
    let mut direct = Outcome::Allow;
    let mut reasons = Vec::new();
    for rule in rule_set.rules.iter().filter(|r| r.applies_to(kind)) {
        let Some(detail) = matches(rule_set, &rule.when, signals) else {
            continue;
        };
        if let Some(points) = rule.score {
            score = score.saturating_add(points);
        }
        if let Some(outcome) = rule.outcome {
            direct = direct.max(outcome);
        }
        reasons.push(Reason {
            rule_id: rule.id.clone(),
            text: format!("{} ({detail})", rule.description),
            score: rule.score,
            outcome: rule.outcome,
        });
    }
    let thresholds = &rule_set.thresholds;
    let by_score = if score >= thresholds.block_and_freeze {
        Outcome::BlockAndFreeze
    } else if score >= thresholds.review {
        Outcome::Review
    } else if score >= thresholds.step_up {
        Outcome::StepUp
    } else {
        Outcome::Allow
    };
    Decision {
        outcome: direct.max(by_score),
        score,
        reasons,
    }
}

/// The attempt's amount when it is in the rule set's currency.
fn amount_in(rule_set: &RuleSet, signals: &Signals) -> Option<i64> {
    match (&signals.amount, &signals.currency) {
        (Some(amount), Some(currency)) if *currency == rule_set.currency => Some(*amount),
        _ => None,
    }
}

/// `Some(detail)` when the condition holds.
fn matches(rule_set: &RuleSet, condition: &Condition, signals: &Signals) -> Option<String> {
    let amount = amount_in(rule_set, signals);
    match condition {
        Condition::Velocity {
            window_seconds,
            min_amount,
            count_at_least,
        } => {
            let amount = amount.filter(|a| a >= min_amount)?;
            let earlier = within(signals, *window_seconds)
                .filter(|p| p.amount >= *min_amount)
                .count();
            let count = i64::try_from(earlier).ok()?.checked_add(1)?;
            (count >= *count_at_least).then(|| {
                format!("{count} payments of at least {min_amount} in {window_seconds} s, this one of {amount} included")
            })
        }
        Condition::VelocityAmount {
            window_seconds,
            total_at_least,
        } => {
            let amount = amount?;
            let total = within(signals, *window_seconds)
                .try_fold(amount, |sum, p| sum.checked_add(p.amount))?;
            (total >= *total_at_least)
                .then(|| format!("{total} paid in {window_seconds} s, this payment included"))
        }
        Condition::AmountVsMedian {
            last_n,
            min_history,
            multiple,
        } => {
            let amount = amount?;
            let mut recent = last(signals, *last_n);
            if i64::try_from(recent.len()).ok()? < *min_history || recent.is_empty() {
                return None;
            }
            recent.sort_unstable();
            // The lower median: integer, and never above a real payment.
            let median = recent[(recent.len() - 1) / 2];
            let bound = median.checked_mul(*multiple)?;
            (amount > bound).then(|| {
                format!(
                    "{amount} is more than {multiple} × the usual {median} (median of the last {})",
                    recent.len()
                )
            })
        }
        Condition::AboveUsualMax {
            last_n,
            min_history,
        } => {
            let amount = amount?;
            let recent = last(signals, *last_n);
            if i64::try_from(recent.len()).ok()? < *min_history {
                return None;
            }
            let max = recent.iter().copied().max()?;
            (amount > max).then(|| {
                format!(
                    "{amount} is above the largest of the last {} payments ({max})",
                    recent.len()
                )
            })
        }
        Condition::AmountAtLeast { min_amount } => {
            let amount = amount.filter(|a| a >= min_amount)?;
            Some(format!("{amount} ≥ {min_amount}"))
        }
        Condition::NewDevice {} => signals
            .new_device
            .then(|| "a device not seen before".to_string()),
        Condition::NewIp {} => signals
            .new_ip
            .then(|| "an IP address not seen before".to_string()),
        Condition::NewPayee { min_amount } => {
            let amount = amount.filter(|a| a >= min_amount)?;
            signals
                .new_payee
                .then(|| format!("{amount} to a payee never paid before"))
        }
        Condition::FirstLargePayment { min_amount } => {
            let amount = amount.filter(|a| a >= min_amount)?;
            let earlier_large = signals.largest_before.is_some_and(|m| m >= *min_amount);
            (!earlier_large)
                .then(|| format!("the first payment of at least {min_amount} ({amount})"))
        }
        Condition::UnusualHour { from_hour, to_hour } => {
            let hour = local_hour(signals.at, rule_set.utc_offset_seconds);
            let inside = if from_hour <= to_hour {
                (*from_hour..*to_hour).contains(&hour)
            } else {
                hour >= *from_hour || hour < *to_hour
            };
            inside.then(|| format!("at {hour:02}:xx bank time"))
        }
        Condition::Blocklisted { lists } => {
            let hits: Vec<&str> = lists
                .iter()
                .filter(|l| signals.blocklisted.contains(l))
                .map(|l| l.as_str())
                .collect();
            (!hits.is_empty()).then(|| format!("blocklisted {}", hits.join(", ")))
        }
        Condition::MerchantRefundRatio {
            above_bps,
            min_payments,
        } => {
            let ratio = signals.merchant_refund_bps?;
            let count = signals.merchant_payment_count?;
            (count >= *min_payments && ratio > *above_bps)
                .then(|| format!("the merchant refunded {ratio} bp of its payments (over {count})"))
        }
        Condition::FailedSignIns { count_at_least } => {
            let failed = signals.failed_sign_ins;
            (failed >= *count_at_least)
                .then(|| format!("{failed} failed attempts since the last successful sign-in"))
        }
    }
}

fn within(signals: &Signals, window_seconds: i64) -> impl Iterator<Item = &Past> {
    let since = signals
        .at
        .saturating_sub(window_seconds.saturating_mul(NANOS_PER_SECOND));
    signals
        .history
        .iter()
        .take_while(move |p| p.at > since && p.at <= signals.at)
}

fn last(signals: &Signals, n: i64) -> Vec<i64> {
    let n = usize::try_from(n).unwrap_or(0);
    signals.history.iter().take(n).map(|p| p.amount).collect()
}

/// The hour of the day (0–23) at `at` nanoseconds in the bank's zone.
pub fn local_hour(at: i64, utc_offset_seconds: i64) -> i64 {
    let seconds = (at / NANOS_PER_SECOND).saturating_add(utc_offset_seconds);
    seconds.rem_euclid(86_400) / 3600
}

/// A rule set's problem, named by the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn problem(errors: &mut Vec<FieldError>, field: String, message: impl Into<String>) {
    errors.push(FieldError {
        field,
        message: message.into(),
    });
}

/// Parses a rule set from JSON and checks it; every problem is reported,
/// each with its field path (`rules[2].when.velocity.window_seconds`).
pub fn parse(json: &str) -> Result<RuleSet, Vec<FieldError>> {
    let deserializer = &mut serde_json::Deserializer::from_str(json);
    let rule_set: RuleSet = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        vec![FieldError {
            field: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }]
    })?;
    validate(&rule_set)?;
    Ok(rule_set)
}

/// Checks the relations serde cannot: ranges, unique ids, score xor outcome.
pub fn validate(rule_set: &RuleSet) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let currency = &rule_set.currency;
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        problem(
            &mut errors,
            "currency".into(),
            "a three-letter ISO 4217 code",
        );
    }
    if !(-14 * 3600..=14 * 3600).contains(&rule_set.utc_offset_seconds) {
        problem(
            &mut errors,
            "utc_offset_seconds".into(),
            "from -50400 to 50400",
        );
    }
    let t = &rule_set.thresholds;
    for (name, value) in [
        ("step_up", t.step_up),
        ("review", t.review),
        ("block_and_freeze", t.block_and_freeze),
    ] {
        if !(1..=SCORE_MAX).contains(&value) {
            problem(
                &mut errors,
                format!("thresholds.{name}"),
                format!("from 1 to {SCORE_MAX}"),
            );
        }
    }
    if t.review <= t.step_up {
        problem(&mut errors, "thresholds.review".into(), "above step_up");
    }
    if t.block_and_freeze <= t.review {
        problem(
            &mut errors,
            "thresholds.block_and_freeze".into(),
            "above review",
        );
    }
    if rule_set.rules.len() > RULES_MAX {
        problem(
            &mut errors,
            "rules".into(),
            format!("at most {RULES_MAX} rules"),
        );
    }
    for (index, rule) in rule_set.rules.iter().enumerate() {
        let at = format!("rules[{index}]");
        if rule.id.is_empty()
            || rule.id.len() > ID_LENGTH_MAX
            || !rule
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            problem(
                &mut errors,
                format!("{at}.id"),
                format!("1 to {ID_LENGTH_MAX} characters of a-z, 0-9 and _"),
            );
        } else if rule_set.rules[..index].iter().any(|r| r.id == rule.id) {
            problem(&mut errors, format!("{at}.id"), "ids must be unique");
        }
        let description = rule.description.trim();
        if description.is_empty()
            || description.chars().count() > DESCRIPTION_LENGTH_MAX
            || description.chars().any(char::is_control)
        {
            problem(
                &mut errors,
                format!("{at}.description"),
                format!("1 to {DESCRIPTION_LENGTH_MAX} characters, no control characters"),
            );
        }
        match (rule.score, rule.outcome) {
            (Some(_), Some(_)) | (None, None) => problem(
                &mut errors,
                format!("{at}.score"),
                "exactly one of score and outcome",
            ),
            (Some(score), None) if !(1..=SCORE_MAX).contains(&score) => problem(
                &mut errors,
                format!("{at}.score"),
                format!("from 1 to {SCORE_MAX}"),
            ),
            (None, Some(Outcome::Allow)) => problem(
                &mut errors,
                format!("{at}.outcome"),
                "step_up, review or block_and_freeze (allow decides nothing)",
            ),
            _ => {}
        }
        validate_condition(&mut errors, &format!("{at}.when"), &rule.when);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn validate_condition(errors: &mut Vec<FieldError>, at: &str, condition: &Condition) {
    let mut range = |name: &str, field: &str, value: i64, min: i64, max: i64| {
        if !(min..=max).contains(&value) {
            problem(
                errors,
                format!("{at}.{name}.{field}"),
                format!("from {min} to {max}"),
            );
        }
    };
    let history = i64::try_from(HISTORY_MAX).unwrap_or(i64::MAX);
    match condition {
        Condition::Velocity {
            window_seconds,
            min_amount,
            count_at_least,
        } => {
            range(
                "velocity",
                "window_seconds",
                *window_seconds,
                1,
                WINDOW_SECONDS_MAX,
            );
            range("velocity", "min_amount", *min_amount, 1, i64::MAX);
            range("velocity", "count_at_least", *count_at_least, 1, history);
        }
        Condition::VelocityAmount {
            window_seconds,
            total_at_least,
        } => {
            range(
                "velocity_amount",
                "window_seconds",
                *window_seconds,
                1,
                WINDOW_SECONDS_MAX,
            );
            range(
                "velocity_amount",
                "total_at_least",
                *total_at_least,
                1,
                i64::MAX,
            );
        }
        Condition::AmountVsMedian {
            last_n,
            min_history,
            multiple,
        } => {
            range("amount_vs_median", "last_n", *last_n, 1, history);
            range(
                "amount_vs_median",
                "min_history",
                *min_history,
                1,
                *last_n.max(&1),
            );
            range("amount_vs_median", "multiple", *multiple, 2, 1000);
        }
        Condition::AboveUsualMax {
            last_n,
            min_history,
        } => {
            range("above_usual_max", "last_n", *last_n, 1, history);
            range(
                "above_usual_max",
                "min_history",
                *min_history,
                1,
                *last_n.max(&1),
            );
        }
        Condition::AmountAtLeast { min_amount } => {
            range("amount_at_least", "min_amount", *min_amount, 1, i64::MAX);
        }
        Condition::NewDevice {} | Condition::NewIp {} => {}
        Condition::NewPayee { min_amount } => {
            range("new_payee", "min_amount", *min_amount, 0, i64::MAX);
        }
        Condition::FirstLargePayment { min_amount } => {
            range(
                "first_large_payment",
                "min_amount",
                *min_amount,
                1,
                i64::MAX,
            );
        }
        Condition::UnusualHour { from_hour, to_hour } => {
            range("unusual_hour", "from_hour", *from_hour, 0, 23);
            range("unusual_hour", "to_hour", *to_hour, 0, 24);
            if from_hour == to_hour {
                problem(
                    errors,
                    format!("{at}.unusual_hour.to_hour"),
                    "differs from from_hour",
                );
            }
        }
        Condition::Blocklisted { lists } => {
            if lists.is_empty() {
                problem(
                    errors,
                    format!("{at}.blocklisted.lists"),
                    "at least one list",
                );
            }
        }
        Condition::MerchantRefundRatio {
            above_bps,
            min_payments,
        } => {
            range(
                "merchant_refund_ratio",
                "above_bps",
                *above_bps,
                0,
                BASIS_POINTS_MAX - 1,
            );
            range(
                "merchant_refund_ratio",
                "min_payments",
                *min_payments,
                1,
                i64::from(u32::MAX),
            );
        }
        Condition::FailedSignIns { count_at_least } => {
            range(
                "failed_sign_ins",
                "count_at_least",
                *count_at_least,
                1,
                1000,
            );
        }
    }
}

/// The rule set shipped with Coffer and seeded as version 1 at first start:
/// amounts in CNY fen, the bank's zone China (UTC+8).
pub const DEFAULT_RULE_SET: &str = include_str!("default_rules.json");

/// The shipped rule set, parsed (it is checked by a test).
pub fn default_rule_set() -> RuleSet {
    parse(DEFAULT_RULE_SET)
        .unwrap_or_else(|errors| unreachable!("the shipped rule set is invalid: {errors:?}"))
}
