//! Real-time risk: every payment and sign-in is evaluated before it
//! commits. `rules` is the pure part (rule sets as JSON configuration,
//! their validation, `evaluate(rule_set, signals) -> Decision`); `service`
//! gathers the signals from stored evaluations inside the caller's
//! transaction, records each evaluation, and keeps cases, the blocklist
//! and the versioned rule sets. Risk sits beside identity and below
//! payments: payments call it, and carry out what it decides (step-up,
//! hold, freeze through identity).

pub mod rules;
pub mod service;

pub use rules::{
    default_rule_set, evaluate, BlockList, Condition, Decision, FieldError, Kind, Outcome, Past,
    Reason, Rule, RuleSet, Signals, Thresholds, DEFAULT_RULE_SET,
};
pub use service::{
    Assessment, Attempt, BlockEntry, Case, DryRun, DryRunExample, EvaluationSummary, QueueSummary,
    Risk, RiskError, RuleSetVersion, ACTOR_RISK, CASE_ACTIONABLE,
};
