//! Risk cases acted on: an analyst releases (the held payment completes),
//! rejects (it fails, nothing moved, reservations given back) or escalates;
//! the customer answers "was this you?" (yes releases, after a step-up
//! bound to the case; no rejects and freezes at once). The case's change
//! and the payment's are one transaction; a release then runs the payment
//! through the ledger (the resolver carries it on after a crash).

use std::sync::Arc;

use coffer_identity::{Identity, IdentityError, Operation as StepUpOperation};
use coffer_risk::{Case, RiskError, ACTOR_RISK};
use coffer_store::sql::{Sql, SqlStore};
use coffer_store::StoreError;

use crate::merchants::{MerchantError, Merchants};
use crate::p2p::{P2p, P2pError};
use crate::risk_gate::{RiskGate, SUBJECT_MERCHANT_PAYMENT, SUBJECT_P2P};

/// The step-up operation a customer's "yes, it was me" is bound to.
pub const RELEASE_OPERATION: &str = "risk_case_release";
/// A note is at most this many characters.
pub const NOTE_LENGTH_MAX: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("a freeze is lifted through the unfreeze proposal (maker-checker), not by releasing its case")]
    FreezeCase,
    #[error("this answer needs a step-up verification for operation risk_case_release, the held amount and currency, and payee case:<case_id>")]
    StepUpRequired,
    #[error("risk: {0}")]
    Risk(#[from] RiskError),
    #[error("P2P: {0}")]
    P2p(#[from] P2pError),
    #[error("merchant payment: {0}")]
    Merchant(#[from] MerchantError),
    #[error("identity: {0}")]
    Identity(IdentityError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

impl From<IdentityError> for CaseError {
    fn from(error: IdentityError) -> CaseError {
        match error {
            IdentityError::StepUpRequired => CaseError::StepUpRequired,
            IdentityError::Store(e) => CaseError::Store(e),
            other => CaseError::Identity(other),
        }
    }
}

pub struct RiskCases {
    gate: Arc<RiskGate>,
    sql: Arc<SqlStore>,
    p2p: Arc<P2p>,
    merchants: Arc<Merchants>,
    identity: Arc<Identity>,
}

fn note(text: &str) -> Result<String, CaseError> {
    let text = text.trim();
    if text.chars().count() > NOTE_LENGTH_MAX || text.chars().any(char::is_control) {
        return Err(CaseError::Invalid {
            field: "note",
            message: format!("at most {NOTE_LENGTH_MAX} characters, no control characters"),
        });
    }
    Ok(text.to_string())
}

impl RiskCases {
    pub fn new(
        gate: Arc<RiskGate>,
        sql: Arc<SqlStore>,
        p2p: Arc<P2p>,
        merchants: Arc<Merchants>,
        identity: Arc<Identity>,
    ) -> RiskCases {
        RiskCases {
            gate,
            sql,
            p2p,
            merchants,
            identity,
        }
    }

    pub fn case(&self, case_id: &str) -> Result<Case, CaseError> {
        Ok(self.gate.risk.case(case_id)?)
    }

    /// The customer's own case (not found for anyone else's).
    pub fn case_of(&self, customer_id: &str, case_id: &str) -> Result<Case, CaseError> {
        let case = self.gate.risk.case(case_id)?;
        if case.customer_id != customer_id {
            return Err(RiskError::NotFound("case").into());
        }
        Ok(case)
    }

    /// An analyst (`actor`) releases a held payment: it completes now.
    pub fn release(&self, case_id: &str, actor: &str, text: &str) -> Result<Case, CaseError> {
        let note = note(text)?;
        self.release_as(case_id, actor, None, &note)
    }

    fn release_as(
        &self,
        case_id: &str,
        actor: &str,
        answer: Option<&str>,
        note: &str,
    ) -> Result<Case, CaseError> {
        let before = self.gate.risk.case(case_id)?;
        let (subject_kind, subject_id) = held_subject(&before)?;
        let case = self.sql.transaction(|db| -> Result<Case, CaseError> {
            let case = self
                .gate
                .risk
                .transition(db, case_id, "released", actor, answer, note)?;
            self.release_payment(db, &subject_kind, &subject_id)?;
            Ok(case)
        })?;
        match subject_kind.as_str() {
            SUBJECT_P2P => {
                self.p2p.carry_released(&subject_id)?;
            }
            _ => {
                self.merchants.carry_released(&subject_id)?;
            }
        }
        Ok(case)
    }

    fn release_payment(
        &self,
        db: &mut dyn Sql,
        subject_kind: &str,
        subject_id: &str,
    ) -> Result<(), CaseError> {
        match subject_kind {
            SUBJECT_P2P => self.p2p.release_held_in(db, subject_id)?,
            SUBJECT_MERCHANT_PAYMENT => self.merchants.release_held_in(db, subject_id)?,
            _ => return Err(RiskError::Internal(format!("case subject {subject_kind}")).into()),
        }
        Ok(())
    }

    fn reject_payment(&self, db: &mut dyn Sql, case: &Case, reason: &str) -> Result<(), CaseError> {
        if case.kind != "held_payment" {
            return Ok(());
        }
        let (subject_kind, subject_id) = held_subject(case)?;
        match subject_kind.as_str() {
            SUBJECT_P2P => self.p2p.reject_held_in(db, &subject_id, reason)?,
            SUBJECT_MERCHANT_PAYMENT => self.merchants.reject_held_in(db, &subject_id, reason)?,
            other => return Err(RiskError::Internal(format!("case subject {other}")).into()),
        }
        Ok(())
    }

    /// An analyst rejects: a held payment fails (`rejected_by_risk`, nothing
    /// had moved); a freeze case is closed as confirmed (the customer stays
    /// frozen).
    pub fn reject(&self, case_id: &str, actor: &str, text: &str) -> Result<Case, CaseError> {
        let note = note(text)?;
        let before = self.gate.risk.case(case_id)?;
        let case = self.sql.transaction(|db| -> Result<Case, CaseError> {
            let case = self
                .gate
                .risk
                .transition(db, case_id, "rejected", actor, None, &note)?;
            self.reject_payment(db, &before, "rejected_by_risk")?;
            self.identity.alert_customer(
                db,
                &before.customer_id,
                "risk_payment_rejected",
                "A payment held for review was declined by the bank; no money left your wallet. \
                 一笔待审核的付款已被银行拒绝，资金未转出。",
            )?;
            Ok(case)
        })?;
        self.carry_rejected(&before)?;
        Ok(case)
    }

    /// After a rejection committed: the held payment's review hold is
    /// released (the resolver does it if this process dies first).
    fn carry_rejected(&self, case: &Case) -> Result<(), CaseError> {
        if case.kind != "held_payment" {
            return Ok(());
        }
        match (case.subject_kind.as_deref(), &case.subject_id) {
            (Some(SUBJECT_P2P), Some(id)) => self.p2p.carry_rejected(id)?,
            (Some(SUBJECT_MERCHANT_PAYMENT), Some(id)) => self.merchants.carry_rejected(id)?,
            _ => {}
        }
        Ok(())
    }

    /// An analyst hands the case to a senior colleague; it stays actionable.
    pub fn escalate(&self, case_id: &str, actor: &str, text: &str) -> Result<Case, CaseError> {
        let note = note(text)?;
        self.sql.transaction(|db| -> Result<Case, CaseError> {
            Ok(self
                .gate
                .risk
                .transition(db, case_id, "escalated", actor, None, &note)?)
        })
    }

    /// The customer's "was this you?". Yes (with a step-up bound to the
    /// case, so a thief holding the session cannot wave it through)
    /// releases at once; no rejects the payment and freezes the wallet.
    pub fn answer(
        &self,
        customer_id: &str,
        case_id: &str,
        was_me: bool,
        step_up_challenge_id: Option<&str>,
    ) -> Result<Case, CaseError> {
        let case = self.case_of(customer_id, case_id)?;
        let actor = coffer_audit::customer_actor(customer_id);
        if was_me {
            held_subject(&case)?;
            let operation = StepUpOperation {
                kind: RELEASE_OPERATION.into(),
                amount: case.amount.unwrap_or(0),
                currency: case.currency.clone().unwrap_or_default(),
                payee: format!("case:{case_id}"),
            };
            // Consumed with its own commit: a release that then loses the
            // race for the case leaves the challenge spent, never reusable.
            self.sql.transaction(|db| {
                self.identity.consume_step_up(
                    db,
                    customer_id,
                    step_up_challenge_id.unwrap_or(""),
                    &operation,
                )
            })?;
            return self.release_as(case_id, &actor, Some("yes"), "the customer confirmed");
        }
        let updated = self.sql.transaction(|db| -> Result<Case, CaseError> {
            let updated = self.gate.risk.transition(
                db,
                case_id,
                "rejected",
                &actor,
                Some("no"),
                "the customer did not make this payment",
            )?;
            self.reject_payment(db, &case, "not_authorised_by_customer")?;
            self.identity.freeze_in(
                db,
                customer_id,
                ACTOR_RISK,
                &format!("the customer answered no to case {case_id}"),
            )?;
            Ok(updated)
        })?;
        self.carry_rejected(&case)?;
        Ok(updated)
    }
}

fn held_subject(case: &Case) -> Result<(String, String), CaseError> {
    match (&case.subject_kind, &case.subject_id) {
        (Some(kind), Some(id)) if case.kind == "held_payment" => Ok((kind.clone(), id.clone())),
        _ => Err(CaseError::FreezeCase),
    }
}
