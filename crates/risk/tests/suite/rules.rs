//! The pure evaluation, table-driven: every condition kind matching and
//! not, scores summed against thresholds, direct outcomes, kinds, currency,
//! validation errors by field, and the shipped rule set.

use coffer_risk::rules::{local_hour, parse, validate};
use coffer_risk::{
    default_rule_set, evaluate, BlockList, Condition, Kind, Outcome, Past, Rule, RuleSet, Signals,
    Thresholds,
};

const SECOND: i64 = 1_000_000_000;
/// 2026-12-06 12:00:00 UTC = 20:00 in China.
const NOON_UTC: i64 = 1_796_558_400 * SECOND;

fn rule(id: &str, when: Condition, score: Option<i64>, outcome: Option<Outcome>) -> Rule {
    Rule {
        id: id.into(),
        description: format!("rule {id}"),
        kinds: Vec::new(),
        when,
        score,
        outcome,
    }
}

fn set(rules: Vec<Rule>) -> RuleSet {
    RuleSet {
        currency: "CNY".into(),
        utc_offset_seconds: 8 * 3600,
        thresholds: Thresholds {
            step_up: 40,
            review: 70,
            block_and_freeze: 100,
        },
        rules,
    }
}

fn payment(amount: i64) -> Signals {
    Signals {
        kind: Some(Kind::P2p),
        amount: Some(amount),
        currency: Some("CNY".into()),
        at: NOON_UTC,
        ..Signals::default()
    }
}

/// Earlier payments `seconds_ago` with these amounts, newest first.
fn with_history(mut signals: Signals, past: &[(i64, i64)]) -> Signals {
    signals.history = past
        .iter()
        .map(|(ago, amount)| Past {
            at: signals.at - ago * SECOND,
            amount: *amount,
        })
        .collect();
    signals
}

/// One rule alone, scored 50 (step_up at 40): does it match?
fn fires(when: Condition, signals: &Signals) -> bool {
    let decision = evaluate(&set(vec![rule("r", when, Some(50), None)]), signals);
    assert_eq!(
        decision.outcome == Outcome::StepUp,
        !decision.reasons.is_empty(),
        "{decision:?}"
    );
    !decision.reasons.is_empty()
}

#[test]
fn every_condition_kind_matches_and_misses() {
    let velocity = Condition::Velocity {
        window_seconds: 600,
        min_amount: 50_000,
        count_at_least: 3,
    };
    let velocity_amount = Condition::VelocityAmount {
        window_seconds: 3600,
        total_at_least: 100_000,
    };
    let median = Condition::AmountVsMedian {
        last_n: 5,
        min_history: 3,
        multiple: 10,
    };
    let usual_max = Condition::AboveUsualMax {
        last_n: 5,
        min_history: 3,
    };
    let new_payee = Condition::NewPayee { min_amount: 10_000 };
    let first_large = Condition::FirstLargePayment {
        min_amount: 100_000,
    };
    let night = Condition::UnusualHour {
        from_hour: 1,
        to_hour: 5,
    };
    let wrapping = Condition::UnusualHour {
        from_hour: 22,
        to_hour: 6,
    };
    let blocked = Condition::Blocklisted {
        lists: vec![BlockList::Payee, BlockList::Card],
    };
    let refunds = Condition::MerchantRefundRatio {
        above_bps: 2_000,
        min_payments: 20,
    };
    let mut night_signals = payment(1_000);
    // 19:30 UTC = 03:30 in China.
    night_signals.at = NOON_UTC + (7 * 3600 + 1800) * SECOND;
    let mut new_payee_signals = payment(20_000);
    new_payee_signals.new_payee = true;
    let mut small_new_payee = payment(9_999);
    small_new_payee.new_payee = true;
    let mut device = payment(100);
    device.new_device = true;
    let mut ip = payment(100);
    ip.new_ip = true;
    let mut on_list = payment(100);
    on_list.blocklisted = vec![BlockList::Card];
    let mut other_list = payment(100);
    other_list.blocklisted = vec![BlockList::Device];
    let mut refunding = payment(100);
    refunding.kind = Some(Kind::MerchantPayment);
    refunding.merchant_refund_bps = Some(2_001);
    refunding.merchant_payment_count = Some(20);
    let mut few_payments = refunding.clone();
    few_payments.merchant_payment_count = Some(19);
    let mut low_ratio = refunding.clone();
    low_ratio.merchant_refund_bps = Some(2_000);
    let mut largest_seen = payment(100_000);
    largest_seen.largest_before = Some(100_000);
    let mut smaller_seen = payment(100_000);
    smaller_seen.largest_before = Some(99_999);

    let table: Vec<(&str, Condition, Signals, bool)> = vec![
        (
            "velocity: 3rd large in window",
            velocity.clone(),
            with_history(payment(50_000), &[(60, 60_000), (599, 50_000)]),
            true,
        ),
        (
            "velocity: one outside the window",
            velocity.clone(),
            with_history(payment(50_000), &[(60, 60_000), (600, 50_000)]),
            false,
        ),
        (
            "velocity: an earlier one too small",
            velocity.clone(),
            with_history(payment(50_000), &[(60, 49_999), (120, 50_000)]),
            false,
        ),
        (
            "velocity: this one too small",
            velocity.clone(),
            with_history(payment(49_999), &[(60, 60_000), (120, 60_000)]),
            false,
        ),
        (
            "velocity amount: reaches the total",
            velocity_amount.clone(),
            with_history(payment(40_000), &[(60, 30_000), (3000, 30_000)]),
            true,
        ),
        (
            "velocity amount: one short",
            velocity_amount.clone(),
            with_history(payment(39_999), &[(60, 30_000), (3000, 30_000)]),
            false,
        ),
        (
            "median: above 10x",
            median.clone(),
            with_history(payment(10_001), &[(1, 1_000), (2, 900), (3, 5_000)]),
            true,
        ),
        (
            "median: exactly 10x",
            median.clone(),
            with_history(payment(10_000), &[(1, 1_000), (2, 900), (3, 5_000)]),
            false,
        ),
        (
            "median: too little history",
            median.clone(),
            with_history(payment(1_000_000), &[(1, 1_000), (2, 900)]),
            false,
        ),
        (
            "usual max: above",
            usual_max.clone(),
            with_history(payment(5_001), &[(1, 1_000), (2, 900), (3, 5_000)]),
            true,
        ),
        (
            "usual max: equal",
            usual_max.clone(),
            with_history(payment(5_000), &[(1, 1_000), (2, 900), (3, 5_000)]),
            false,
        ),
        (
            "usual max: only the last n count",
            usual_max.clone(),
            with_history(
                payment(5_001),
                &[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 900_000)],
            ),
            true,
        ),
        (
            "amount at least: reached",
            Condition::AmountAtLeast { min_amount: 100 },
            payment(100),
            true,
        ),
        (
            "amount at least: below",
            Condition::AmountAtLeast { min_amount: 100 },
            payment(99),
            false,
        ),
        ("new device", Condition::NewDevice {}, device.clone(), true),
        ("known device", Condition::NewDevice {}, payment(100), false),
        ("new ip", Condition::NewIp {}, ip, true),
        ("known ip", Condition::NewIp {}, device, false),
        (
            "new payee, large enough",
            new_payee.clone(),
            new_payee_signals,
            true,
        ),
        (
            "new payee, too small",
            new_payee.clone(),
            small_new_payee,
            false,
        ),
        ("known payee", new_payee, payment(20_000), false),
        (
            "first large: nothing before",
            first_large.clone(),
            payment(100_000),
            true,
        ),
        (
            "first large: a smaller one before",
            first_large.clone(),
            smaller_seen,
            true,
        ),
        (
            "first large: one as large before",
            first_large.clone(),
            largest_seen,
            false,
        ),
        (
            "first large: this one small",
            first_large,
            payment(99_999),
            false,
        ),
        (
            "unusual hour: 03:30 bank time",
            night.clone(),
            night_signals.clone(),
            true,
        ),
        ("unusual hour: 20:00 bank time", night, payment(1), false),
        (
            "unusual hour wrapping: 03:30",
            wrapping.clone(),
            night_signals,
            true,
        ),
        ("unusual hour wrapping: 20:00", wrapping, payment(1), false),
        ("blocklisted card", blocked.clone(), on_list, true),
        ("blocklisted on another list", blocked, other_list, false),
        ("refund ratio above", refunds.clone(), refunding, true),
        (
            "refund ratio over too few",
            refunds.clone(),
            few_payments,
            false,
        ),
        ("refund ratio at the bound", refunds, low_ratio, false),
    ];
    for (name, when, signals, expected) in table {
        assert_eq!(fires(when, &signals), expected, "{name}");
    }
}

#[test]
fn scores_sum_to_thresholds_and_direct_outcomes_win() {
    let amount = |id: &str, min: i64, score: i64| {
        rule(
            id,
            Condition::AmountAtLeast { min_amount: min },
            Some(score),
            None,
        )
    };
    let rules = set(vec![
        amount("a", 100, 30),
        amount("b", 200, 20),
        amount("c", 300, 20),
        amount("d", 400, 30),
    ]);
    for (paid, outcome, score) in [
        (99, Outcome::Allow, 0),
        (100, Outcome::Allow, 30),
        (200, Outcome::StepUp, 50),
        (300, Outcome::Review, 70),
        (400, Outcome::BlockAndFreeze, 100),
    ] {
        let decision = evaluate(&rules, &payment(paid));
        assert_eq!(
            (decision.outcome, decision.score),
            (outcome, score),
            "{paid}"
        );
        assert_eq!(
            decision.reasons.len(),
            [99, 100, 200, 300, 400]
                .iter()
                .position(|p| *p == paid)
                .unwrap_or(0)
        );
    }
    // A direct outcome decides even with no score, and the most severe wins.
    let direct = set(vec![
        amount("a", 100, 50),
        rule(
            "b",
            Condition::AmountAtLeast { min_amount: 100 },
            None,
            Some(Outcome::Review),
        ),
    ]);
    let decision = evaluate(&direct, &payment(100));
    assert_eq!(decision.outcome, Outcome::Review);
    assert_eq!(
        decision
            .reasons
            .iter()
            .map(|r| r.rule_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(decision.reasons[1].text.starts_with("rule b"));
}

#[test]
fn kinds_and_currency_limit_where_rules_apply() {
    let mut sign_in_only = rule("s", Condition::NewDevice {}, None, Some(Outcome::StepUp));
    sign_in_only.kinds = vec![Kind::SignIn];
    let all_payments = rule("p", Condition::NewDevice {}, None, Some(Outcome::Review));
    let rules = set(vec![sign_in_only, all_payments]);
    let mut sign_in = Signals {
        kind: Some(Kind::SignIn),
        at: NOON_UTC,
        new_device: true,
        ..Signals::default()
    };
    assert_eq!(evaluate(&rules, &sign_in).outcome, Outcome::StepUp);
    sign_in.kind = Some(Kind::Withdrawal);
    assert_eq!(evaluate(&rules, &sign_in).outcome, Outcome::Review);
    // An amount in another currency never meets an amount rule.
    let big = set(vec![rule(
        "a",
        Condition::AmountAtLeast { min_amount: 1 },
        None,
        Some(Outcome::Review),
    )]);
    let mut usd = payment(1_000_000);
    usd.currency = Some("USD".into());
    assert_eq!(evaluate(&big, &usd).outcome, Outcome::Allow);
    assert_eq!(evaluate(&big, &payment(1)).outcome, Outcome::Review);
}

#[test]
fn validation_names_every_bad_field() {
    let mut bad = set(vec![
        rule("ok", Condition::NewIp {}, Some(10), None),
        rule("ok", Condition::NewIp {}, Some(10), None),
        rule("Bad Id", Condition::NewIp {}, None, None),
        rule(
            "window",
            Condition::Velocity {
                window_seconds: 0,
                min_amount: 1,
                count_at_least: 2,
            },
            Some(5_000),
            None,
        ),
        rule("allow", Condition::NewIp {}, None, Some(Outcome::Allow)),
        rule(
            "hours",
            Condition::UnusualHour {
                from_hour: 25,
                to_hour: 25,
            },
            Some(1),
            Some(Outcome::Review),
        ),
    ]);
    bad.currency = "cny".into();
    bad.thresholds.review = 30;
    let errors = validate(&bad).expect_err("invalid");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "currency",
            "thresholds.review",
            "rules[1].id",
            "rules[2].id",
            "rules[2].score",
            "rules[3].score",
            "rules[3].when.velocity.window_seconds",
            "rules[4].outcome",
            "rules[5].score",
            "rules[5].when.unusual_hour.from_hour",
            "rules[5].when.unusual_hour.to_hour",
            "rules[5].when.unusual_hour.to_hour",
        ],
        "{errors:?}"
    );
    // Structural errors come from the JSON with their path.
    let errors = parse(r#"{"currency":"CNY","utc_offset_seconds":0,"thresholds":{"step_up":1,"review":2,"block_and_freeze":3},"rules":[{"id":"a","description":"d","when":{"velocity":{"window_seconds":"ten"}},"score":1}]}"#)
        .expect_err("invalid");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].field, "rules[0].when.velocity.window_seconds",
        "{errors:?}"
    );
    let errors = parse(r#"{"currency":"CNY","utc_offset_seconds":0,"thresholds":{"step_up":1,"review":2,"block_and_freeze":3},"rules":[],"extra":1}"#)
        .expect_err("unknown field");
    assert!(errors[0].message.contains("extra"), "{errors:?}");
}

#[test]
fn the_shipped_rule_set_is_valid_and_steps_up_then_freezes_a_burst() {
    let rules = default_rule_set();
    assert!(validate(&rules).is_ok());
    let round_trip = parse(&serde_json::to_string(&rules).expect("json")).expect("parses");
    assert_eq!(round_trip, rules);
    let mut history = Vec::new();
    let mut outcomes = Vec::new();
    for i in 0..5 {
        let signals = with_history(payment(60_000), &history);
        outcomes.push(evaluate(&rules, &signals).outcome);
        history.insert(0, (60 * (5 - i), 60_000));
        // Ages grow as time passes: rebuild relative to the next payment.
        for (n, past) in history.iter_mut().enumerate() {
            past.0 = 60 * (i64::try_from(n).unwrap_or(0) + 1);
        }
    }
    assert_eq!(
        outcomes,
        [
            Outcome::Allow,
            Outcome::Allow,
            Outcome::StepUp,
            Outcome::StepUp,
            Outcome::BlockAndFreeze
        ]
    );
}

#[test]
fn local_hours_use_the_bank_offset() {
    assert_eq!(local_hour(NOON_UTC, 0), 12);
    assert_eq!(local_hour(NOON_UTC, 8 * 3600), 20);
    assert_eq!(local_hour(NOON_UTC, -13 * 3600), 23);
    assert_eq!(local_hour(0, -3600), 23);
}
