//! The hook through which names are screened against sanctions and watch
//! lists: customers at KYC, payees before a payment, merchants at
//! onboarding. The trait lives here, below identity's and payments' use of
//! it, so neither depends on the compliance crate that implements it
//! (`coffer_compliance::Screener`); without one wired in, nothing is
//! screened (unit tests of other crates).

use coffer_store::sql::Sql;
use coffer_store::StoreError;

/// Who is screened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartyKind {
    Customer,
    Merchant,
}

impl PartyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PartyKind::Customer => "customer",
            PartyKind::Merchant => "merchant",
        }
    }

    pub fn parse(text: &str) -> Option<PartyKind> {
        match text {
            "customer" => Some(PartyKind::Customer),
            "merchant" => Some(PartyKind::Merchant),
            _ => None,
        }
    }
}

/// A party to screen: `customer_id` is the customer the audit records are
/// about (the merchant's owner for a merchant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Party<'a> {
    pub kind: PartyKind,
    pub id: &'a str,
    pub customer_id: &'a str,
}

impl<'a> Party<'a> {
    pub fn customer(customer_id: &'a str) -> Party<'a> {
        Party {
            kind: PartyKind::Customer,
            id: customer_id,
            customer_id,
        }
    }
}

/// Why a name is screened now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScreeningSource {
    /// The legal name a customer gave at identity verification.
    Kyc,
    /// A customer about to be paid.
    Payee,
    /// A merchant applying to take payments.
    MerchantOnboarding,
}

impl ScreeningSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ScreeningSource::Kyc => "kyc",
            ScreeningSource::Payee => "payee",
            ScreeningSource::MerchantOnboarding => "merchant_onboarding",
        }
    }
}

/// Where a party stands with compliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No open or confirmed hit.
    Clear,
    /// A hit waits for a compliance officer: no money may reach the party.
    UnderReview,
    /// A compliance officer confirmed a hit.
    Confirmed,
}

#[derive(Debug, thiserror::Error)]
pub enum ScreeningError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("screening: {0}")]
    Internal(String),
}

/// Implemented by the compliance crate.
pub trait Screening: Send + Sync {
    /// Screens `name` against the active watch list in a transaction of its
    /// own (a hit is kept whatever the caller does next) and queues every
    /// hit at or above the threshold. Repeating it for the same party,
    /// name and list version screens nothing again.
    fn screen(
        &self,
        party: Party<'_>,
        name: &str,
        source: ScreeningSource,
    ) -> Result<Standing, ScreeningError>;

    /// The party's standing, read inside the caller's transaction (the one
    /// that would move money to it).
    fn standing(
        &self,
        db: &mut dyn Sql,
        kind: PartyKind,
        party_id: &str,
    ) -> Result<Standing, StoreError>;
}
