//! Where payments meet risk: each payment kind asks `check` inside the
//! transaction that writes its record, then carries out the decision —
//! allow; step-up (the payment's own step-up mechanism, required even where
//! its policy would not ask); review (the record is written `held`, a case
//! opened, the customer asked "was this you?"); block and freeze (the
//! payment's transaction rolls back, then `block` records the evaluation,
//! freezes the customer through identity and opens a case, in one
//! transaction of its own).

use std::sync::Arc;

use coffer_identity::{Identity, IdentityError};
use coffer_risk::{Assessment, Attempt, Outcome, Risk, RiskError, ACTOR_RISK};
use coffer_store::sql::{Sql, SqlStore};

/// What the payment does next, once `check` passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Allow,
    /// A step-up is needed for this payment (consumed in the transaction).
    StepUp,
    /// Write the record held, not pending; `hold` opens the case.
    Hold,
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The payment must not happen; call `block` after the rollback.
    #[error("blocked by risk")]
    Blocked(Box<Assessment>),
    #[error("risk: {0}")]
    Risk(#[from] RiskError),
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("storage: {0}")]
    Store(#[from] coffer_store::StoreError),
}

/// Kinds of held payment a case can point at.
pub const SUBJECT_P2P: &str = "p2p";
pub const SUBJECT_MERCHANT_PAYMENT: &str = "merchant_payment";

pub struct RiskGate {
    pub risk: Arc<Risk>,
    identity: Arc<Identity>,
    sql: Arc<SqlStore>,
}

impl RiskGate {
    pub fn new(risk: Arc<Risk>, identity: Arc<Identity>, sql: Arc<SqlStore>) -> RiskGate {
        RiskGate {
            risk,
            identity,
            sql,
        }
    }

    /// Evaluates inside the payment's transaction. Blocked: an error that
    /// rolls the payment back. Otherwise the evaluation is recorded in that
    /// same transaction (it commits with the payment or not at all).
    pub fn check(
        &self,
        db: &mut dyn Sql,
        attempt: &Attempt<'_>,
    ) -> Result<(Gate, Assessment), GateError> {
        let assessment = self.risk.assess(db, attempt)?;
        let gate = match assessment.outcome() {
            Outcome::Allow => Gate::Allow,
            Outcome::StepUp => Gate::StepUp,
            Outcome::Review => Gate::Hold,
            Outcome::BlockAndFreeze => return Err(GateError::Blocked(Box::new(assessment))),
        };
        self.risk.record(db, &assessment)?;
        Ok((gate, assessment))
    }

    /// A held payment's case and the customer's "was this you?" prompt, in
    /// the transaction that wrote the held record.
    pub fn hold(
        &self,
        db: &mut dyn Sql,
        assessment: &Assessment,
        subject_kind: &str,
        subject_id: &str,
    ) -> Result<String, GateError> {
        let case_id = self.risk.open_case(
            db,
            assessment,
            "held_payment",
            Some((subject_kind, subject_id)),
        )?;
        self.identity.alert_customer(
            db,
            &assessment.customer_id,
            "risk_payment_held",
            &format!(
                "We held a payment of CNY {} from your Coffer wallet to check it is yours. Was this you? \
                 Answer in the app (case {case_id}). 我们暂停了一笔付款以核实是否为您本人操作，请在应用中确认。",
                format_minor(assessment.signals.amount.unwrap_or(0))
            ),
        )?;
        Ok(case_id)
    }

    /// After a blocked payment rolled back: the evaluation, the freeze
    /// (identity, actor `system:risk`, the customer alerted) and a case,
    /// in one transaction.
    pub fn block(&self, assessment: &Assessment) -> Result<(), GateError> {
        self.sql.transaction(|db| -> Result<(), GateError> {
            self.risk.record(db, assessment)?;
            self.risk.open_case(db, assessment, "freeze", None)?;
            self.identity.freeze_in(
                db,
                &assessment.customer_id,
                ACTOR_RISK,
                &assessment.summary(),
            )?;
            Ok(())
        })
    }
}

/// Minor units as a decimal with two places (CNY).
fn format_minor(amount: i64) -> String {
    format!("{}.{:02}", amount / 100, (amount % 100).abs())
}
