//! Every sign-in (password, passkey, and registration, which is the first
//! one) passes the risk engine before its session exists, inside the
//! transaction that creates it. Risk sits below identity (it knows neither
//! identity nor payments), so identity calls it directly.
//!
//! What a decision does here: allow; step-up (a second factor before the
//! session: the authenticator app when the customer has one, otherwise a
//! one-time code to the contact — a review, which holds a payment, means
//! the same at sign-in since there is nothing to hold); block and freeze
//! (the evaluation, a freeze with actor `system:risk` that alerts the
//! customer, and a case, all in the sign-in's transaction, which then
//! commits without a session).

use coffer_risk::{Attempt, Kind, Outcome, RiskError, ACTOR_RISK};
use coffer_store::sql::Sql;
use coffer_store::sql_params;

use crate::{Context, Identity, IdentityError};

/// What the sign-in does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    StepUp,
    /// Frozen and a case opened; the caller commits and refuses.
    Blocked,
}

fn risk_error(error: RiskError) -> IdentityError {
    match error {
        RiskError::Store(e) => IdentityError::from(e),
        RiskError::Audit(e) => IdentityError::Audit(e),
        other => IdentityError::Internal(format!("risk: {other}")),
    }
}

impl Identity {
    /// Evaluates a sign-in of `customer_id` from `context` and records the
    /// evaluation in the caller's transaction; a block freezes and opens a
    /// case there too. `throttle_subject` is the contact's throttle row,
    /// whose failure count (read before a success clears it) is the
    /// failed-attempt signal. Without a risk engine wired in: allow.
    pub(crate) fn sign_in_risk(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        throttle_subject: Option<&str>,
        context: &Context,
    ) -> Result<Verdict, IdentityError> {
        let Some(risk) = &self.risk else {
            return Ok(Verdict::Allow);
        };
        let failed_sign_ins = match throttle_subject {
            Some(subject) => db
                .query_opt(
                    "SELECT failures FROM throttles WHERE subject = $1",
                    sql_params![subject],
                )?
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0),
            None => 0,
        };
        let assessment = risk
            .assess(
                db,
                &Attempt {
                    customer_id,
                    kind: Some(Kind::SignIn),
                    device: Some(context.device.as_str()),
                    ip: Some(context.ip.as_str()),
                    failed_sign_ins,
                    ..Attempt::default()
                },
            )
            .map_err(risk_error)?;
        risk.record(db, &assessment).map_err(risk_error)?;
        Ok(match assessment.outcome() {
            Outcome::Allow => Verdict::Allow,
            Outcome::StepUp | Outcome::Review => Verdict::StepUp,
            Outcome::BlockAndFreeze => {
                risk.open_case(db, &assessment, "freeze", None)
                    .map_err(risk_error)?;
                self.freeze_within(
                    db,
                    ACTOR_RISK,
                    customer_id,
                    &format!("sign-in: {}", assessment.summary()),
                    context,
                )?;
                Verdict::Blocked
            }
        })
    }
}
