//! Know your customer: tiers that gate limits, identity verification
//! through a provider connector, and a review queue for staff.
//!
//! Tier 0: registered (can receive; small balance cap). Tier 1: name and
//! national ID verified by the identity provider. Tier 2: document and
//! selfie reviewed by staff. Each tier's limits are configuration; the
//! payment layer enforces them.

use coffer_core::Secret;
use coffer_store::sql_params;

use crate::{random_hex, Context, Identity, IdentityError, SessionInfo};

pub(crate) const ID_NUMBER_CONTEXT: &str = "kyc.id_number";
pub(crate) const FULL_NAME_CONTEXT: &str = "kyc.full_name";
pub(crate) const EVIDENCE_CONTEXT: &str = "kyc.evidence";

/// Limits of one tier, in minor units of the wallet currency (CNY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierLimits {
    pub balance_cap: i64,
    pub per_payment: i64,
    pub daily: i64,
    pub monthly: i64,
}

/// Limits per tier (index = tier). Defaults follow the spirit of the PBoC
/// account classes: small for unverified wallets, larger once verified.
#[derive(Debug, Clone)]
pub struct Tiers(pub [TierLimits; 3]);

impl Default for Tiers {
    fn default() -> Tiers {
        Tiers([
            TierLimits {
                balance_cap: 100_000,
                per_payment: 50_000,
                daily: 100_000,
                monthly: 500_000,
            },
            TierLimits {
                balance_cap: 2_000_000,
                per_payment: 500_000,
                daily: 1_000_000,
                monthly: 10_000_000,
            },
            TierLimits {
                balance_cap: 50_000_000,
                per_payment: 5_000_000,
                daily: 20_000_000,
                monthly: 200_000_000,
            },
        ])
    }
}

impl Tiers {
    pub fn limits(&self, tier: i64) -> TierLimits {
        let index = usize::try_from(tier.clamp(0, 2)).unwrap_or(0);
        self.0[index]
    }
}

/// What the identity provider says about a name and ID number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderVerdict {
    Verified { reference: String },
    Rejected { reason: String },
    NeedsReview { reason: String },
}

#[derive(Debug, thiserror::Error)]
#[error("identity provider unavailable: {0}")]
pub struct ProviderError(pub String);

/// The connector a real identity provider (e.g. a public-security ID
/// verification service) implements.
pub trait IdentityProvider: Send + Sync {
    fn verify(
        &self,
        full_name: &str,
        id_type: IdType,
        id_number: &str,
    ) -> Result<ProviderVerdict, ProviderError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdType {
    /// 中华人民共和国居民身份证: 18 characters, ISO 7064 MOD 11-2 check.
    CnResident,
    Passport,
}

impl IdType {
    pub fn parse(text: &str) -> Option<IdType> {
        match text {
            "cn_resident" => Some(IdType::CnResident),
            "passport" => Some(IdType::Passport),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IdType::CnResident => "cn_resident",
            IdType::Passport => "passport",
        }
    }
}

/// The check character of a resident ID's first 17 digits.
pub fn resident_id_check(first17: &str) -> Option<char> {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (c, w) in first17.chars().zip(WEIGHTS) {
        sum += c.to_digit(10)? * w;
    }
    Some(CHECK[(sum % 11) as usize] as char)
}

/// Normalizes and validates an ID number; `None` when malformed.
pub fn normalize_id(id_type: IdType, text: &str) -> Option<String> {
    let text = text.trim().to_uppercase();
    match id_type {
        IdType::CnResident => {
            let (body, check) = text.split_at_checked(17)?;
            (check.len() == 1 && resident_id_check(body)? == check.chars().next()?).then_some(text)
        }
        IdType::Passport => ((5..=20).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(text),
    }
}

/// A simulated provider with documented behaviour, for demos and tests:
/// a name containing "Reject"/"拒绝" is rejected, "Review"/"复核" needs
/// review, anything else with a well-formed ID is verified. Passports
/// always need review (no registry to check them against).
#[derive(Debug, Default)]
pub struct SimulatedIdentityProvider;

impl IdentityProvider for SimulatedIdentityProvider {
    fn verify(
        &self,
        full_name: &str,
        id_type: IdType,
        id_number: &str,
    ) -> Result<ProviderVerdict, ProviderError> {
        if full_name.contains("Unavailable") {
            return Err(ProviderError("simulated outage".into()));
        }
        Ok(
            if full_name.contains("Reject") || full_name.contains("拒绝") {
                ProviderVerdict::Rejected {
                    reason: "name and ID number do not match".into(),
                }
            } else if full_name.contains("Review")
                || full_name.contains("复核")
                || id_type == IdType::Passport
            {
                ProviderVerdict::NeedsReview {
                    reason: "the provider could not decide".into(),
                }
            } else {
                ProviderVerdict::Verified {
                    reference: format!("sim-{}", &id_number[id_number.len().saturating_sub(4)..]),
                }
            },
        )
    }
}

/// The outcome of a verification request, for the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KycOutcome {
    Verified { tier: i64 },
    InReview { review_id: String },
}

/// A queued review, for staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub id: String,
    pub customer_id: String,
    pub target_tier: i64,
    pub reason: String,
    pub state: String,
    pub created_at: i64,
}

impl Identity {
    /// Tier 1: checks name and ID number with the provider.
    pub fn verify_identity(
        &self,
        info: &SessionInfo,
        provider: &dyn IdentityProvider,
        full_name: &Secret<String>,
        id_type: IdType,
        id_number: &Secret<String>,
        context: &Context,
    ) -> Result<KycOutcome, IdentityError> {
        let name = full_name.expose().trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(IdentityError::invalid(
                "full_name",
                "the name as on the ID, 1 to 100 characters",
            ));
        }
        let number = normalize_id(id_type, id_number.expose()).ok_or_else(|| {
            IdentityError::invalid(
                "id_number",
                "not a valid ID number (check the last character)",
            )
        })?;
        let customer = self.customer(&info.customer_id)?;
        if customer.tier >= 1 {
            return Ok(KycOutcome::Verified {
                tier: customer.tier,
            });
        }
        // Screened whatever the provider says: a listed person is flagged
        // even when the verification itself fails.
        if let Some(screening) = &self.screening {
            screening
                .screen(
                    crate::Party::customer(&info.customer_id),
                    name,
                    crate::ScreeningSource::Kyc,
                )
                .map_err(|e| match e {
                    crate::ScreeningError::Store(e) => IdentityError::Store(e),
                    other => IdentityError::Internal(other.to_string()),
                })?;
        }
        let verdict = provider
            .verify(name, id_type, &number)
            .map_err(|e| IdentityError::Unavailable(e.to_string()))?;
        let index = self
            .vault
            .blind_index("id_number", &format!("{}:{number}", id_type.as_str()));
        let now = self.now();
        match verdict {
            ProviderVerdict::Rejected { reason } => {
                self.sql.transaction(|db| {
                    self.event(
                        db,
                        Some(&info.customer_id),
                        "kyc_rejected",
                        context,
                        &reason,
                    )
                })?;
                Err(IdentityError::invalid(
                    "id_number",
                    format!("identity not verified: {reason}"),
                ))
            }
            ProviderVerdict::NeedsReview { reason } => {
                let evidence = format!("{}\n{}\n{name}\n{number}", id_type.as_str(), reason);
                let review_id =
                    self.queue_review(&info.customer_id, 1, &reason, &evidence, context)?;
                Ok(KycOutcome::InReview { review_id })
            }
            ProviderVerdict::Verified { reference } => {
                let number_enc = self.vault.encrypt_text(ID_NUMBER_CONTEXT, &number)?;
                let name_enc = self.vault.encrypt_text(FULL_NAME_CONTEXT, name)?;
                self.sql.transaction(|db| -> Result<(), IdentityError> {
                    let inserted = db.execute(
                        "INSERT INTO kyc_identities (customer_id, id_type, id_index, id_number_enc, full_name_enc, verified_at, provider_reference) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                        sql_params![
                            info.customer_id.as_str(),
                            id_type.as_str(),
                            index.as_str(),
                            number_enc,
                            name_enc,
                            now,
                            reference.as_str()
                        ],
                    )?;
                    if inserted != 1 {
                        // One person, one wallet: an ID already backing another
                        // customer is not reused (mule accounts).
                        return Err(IdentityError::Conflict(
                            "this identity already backs another wallet; contact the bank",
                        ));
                    }
                    db.execute(
                        "UPDATE customers SET tier = 1, updated_at = $2 WHERE id = $1 AND tier < 1",
                        sql_params![info.customer_id.as_str(), now],
                    )?;
                    self.index_name(
                        db,
                        &info.customer_id,
                        crate::backoffice::KYC_NAME_SOURCE,
                        name,
                    )?;
                    self.event(db, Some(&info.customer_id), "kyc_verified", context, "tier 1")
                })?;
                Ok(KycOutcome::Verified { tier: 1 })
            }
        }
    }

    /// Tier 2: a document and selfie for staff to review.
    pub fn submit_documents(
        &self,
        info: &SessionInfo,
        document_type: &str,
        document_number: &Secret<String>,
        selfie_reference: &str,
        context: &Context,
    ) -> Result<KycOutcome, IdentityError> {
        let customer = self.customer(&info.customer_id)?;
        if customer.tier < 1 {
            return Err(IdentityError::invalid(
                "tier",
                "verify your identity (tier 1) first",
            ));
        }
        if !["passport", "cn_resident", "residence_permit"].contains(&document_type) {
            return Err(IdentityError::invalid(
                "document_type",
                "one of passport, cn_resident, residence_permit",
            ));
        }
        if document_number.expose().trim().is_empty() || selfie_reference.trim().is_empty() {
            return Err(IdentityError::invalid(
                "document_number",
                "document number and selfie are required",
            ));
        }
        let evidence = format!(
            "{document_type}\n{}\n{selfie_reference}",
            document_number.expose().trim()
        );
        let review_id = self.queue_review(
            &info.customer_id,
            2,
            "document and selfie",
            &evidence,
            context,
        )?;
        Ok(KycOutcome::InReview { review_id })
    }

    fn queue_review(
        &self,
        customer_id: &str,
        target_tier: i64,
        reason: &str,
        evidence: &str,
        context: &Context,
    ) -> Result<String, IdentityError> {
        let id = format!("kyc_{}", random_hex(8));
        let evidence_enc = self.vault.encrypt_text(EVIDENCE_CONTEXT, evidence)?;
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let open = db.query_opt(
                "SELECT id FROM kyc_reviews WHERE customer_id = $1 AND target_tier = $2 AND state = 'pending'",
                sql_params![customer_id, target_tier],
            )?;
            if open.is_some() {
                return Err(IdentityError::Conflict("a review is already pending"));
            }
            db.execute(
                "INSERT INTO kyc_reviews (id, customer_id, target_tier, reason, evidence_enc, state, created_at, decided_at, decided_by, note) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6, NULL, NULL, NULL)",
                sql_params![id.as_str(), customer_id, target_tier, reason, evidence_enc, now],
            )?;
            self.event(db, Some(customer_id), "kyc_review_queued", context, &id)
        })?;
        Ok(id)
    }

    /// The staff queue, oldest first.
    pub fn pending_reviews(&self, limit: i64) -> Result<Vec<Review>, IdentityError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT id, customer_id, target_tier, reason, state, created_at FROM kyc_reviews \
                 WHERE state = 'pending' ORDER BY created_at, id LIMIT $1",
                sql_params![limit.clamp(1, 500)],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(Review {
                    id: r.text(0)?,
                    customer_id: r.text(1)?,
                    target_tier: r.int(2)?,
                    reason: r.text(3)?,
                    state: r.text(4)?,
                    created_at: r.int(5)?,
                })
            })
            .collect()
    }

    /// A staff decision; approval raises the customer to the review's tier.
    pub fn decide_review(
        &self,
        review_id: &str,
        reviewer: &str,
        approve: bool,
        note: &str,
        context: &Context,
    ) -> Result<(), IdentityError> {
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let row = db
                .query_opt(
                    "SELECT customer_id, target_tier FROM kyc_reviews WHERE id = $1 AND state = 'pending'",
                    sql_params![review_id],
                )?
                .ok_or(IdentityError::NotFound("pending review"))?;
            let (customer_id, tier) = (row.text(0)?, row.int(1)?);
            db.execute(
                "UPDATE kyc_reviews SET state = $2, decided_at = $3, decided_by = $4, note = $5 WHERE id = $1",
                sql_params![
                    review_id,
                    if approve { "approved" } else { "rejected" },
                    now,
                    reviewer,
                    note
                ],
            )?;
            if approve {
                db.execute(
                    "UPDATE customers SET tier = $2, updated_at = $3 WHERE id = $1 AND tier < $2",
                    sql_params![customer_id.as_str(), tier, now],
                )?;
            }
            self.event(
                db,
                Some(&customer_id),
                if approve { "kyc_approved" } else { "kyc_declined" },
                context,
                &format!("{review_id} by {reviewer}"),
            )
        })
    }
}

/// A customer's verified identity as compliance exports show it: the name
/// masked like a payee's (张*明, J*** D**) and the ID number to its first six
/// and last four characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedIdentity {
    pub name_masked: String,
    pub id_type: String,
    pub id_number_masked: String,
}

/// A name with all but the first letter of each word hidden (CJK names: the
/// first and, from three characters, the last character kept).
pub fn mask_person_name(name: &str) -> String {
    let words: Vec<&str> = name.split_whitespace().collect();
    if words.is_empty() {
        return "*".into();
    }
    if words.len() == 1 && !name.is_ascii() {
        let chars: Vec<char> = words[0].chars().collect();
        return match chars.len() {
            1 => "*".into(),
            2 => format!("{}*", chars[0]),
            n => format!("{}{}{}", chars[0], "*".repeat(n - 2), chars[n - 1]),
        };
    }
    words
        .iter()
        .map(|word| {
            let mut chars = word.chars();
            let first = chars.next().unwrap_or('*');
            format!("{first}{}", "*".repeat(chars.count()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An ID number with only its first six (region) and last four characters shown.
pub fn mask_id_number(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 10 {
        return "*".repeat(chars.len());
    }
    let hidden = chars.len() - 10;
    format!(
        "{}{}{}",
        chars[..6].iter().collect::<String>(),
        "*".repeat(hidden),
        chars[chars.len() - 4..].iter().collect::<String>()
    )
}

impl Identity {
    /// The name to screen a customer by: the legal name verified at KYC,
    /// else (an unverified wallet) the display name they registered with.
    pub fn screening_name(&self, customer_id: &str) -> Result<Secret<String>, IdentityError> {
        let row = self.sql.run(|db| {
            db.query_opt(
                "SELECT full_name_enc FROM kyc_identities WHERE customer_id = $1",
                sql_params![customer_id],
            )
        })?;
        match row {
            Some(row) => Ok(self.vault.decrypt_text(FULL_NAME_CONTEXT, &row.bytes(0)?)?),
            None => Ok(self.customer(customer_id)?.display_name),
        }
    }

    /// The verified identity, masked, for compliance reports; `None` for a
    /// customer who never passed KYC tier 1.
    pub fn masked_identity(
        &self,
        customer_id: &str,
    ) -> Result<Option<MaskedIdentity>, IdentityError> {
        let row = self.sql.run(|db| {
            db.query_opt(
                "SELECT id_type, id_number_enc, full_name_enc FROM kyc_identities WHERE customer_id = $1",
                sql_params![customer_id],
            )
        })?;
        let Some(row) = row else { return Ok(None) };
        let number = self.vault.decrypt_text(ID_NUMBER_CONTEXT, &row.bytes(1)?)?;
        let name = self.vault.decrypt_text(FULL_NAME_CONTEXT, &row.bytes(2)?)?;
        Ok(Some(MaskedIdentity {
            name_masked: mask_person_name(name.expose()),
            id_type: row.text(0)?,
            id_number_masked: mask_id_number(number.expose()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_ids_need_their_check_character() {
        // GB 11643 example: 11010519491231002X.
        assert_eq!(resident_id_check("11010519491231002"), Some('X'));
        assert_eq!(
            normalize_id(IdType::CnResident, "11010519491231002x").as_deref(),
            Some("11010519491231002X")
        );
        assert!(normalize_id(IdType::CnResident, "110105194912310021").is_none());
        assert!(normalize_id(IdType::CnResident, "1101051949123100").is_none());
        assert!(normalize_id(IdType::CnResident, "1101051949123100AX").is_none());
        assert!(normalize_id(IdType::Passport, "E1234567").is_some());
        assert!(normalize_id(IdType::Passport, "E12 4567").is_none());
    }

    #[test]
    fn compliance_masks_keep_only_what_identifies_a_record() {
        assert_eq!(mask_id_number("11010519491231002X"), "110105********002X");
        assert_eq!(mask_id_number("E1234567"), "********");
        assert_eq!(mask_person_name("张小明"), "张*明");
        assert_eq!(mask_person_name("John Doe"), "J*** D**");
    }

    #[test]
    fn tiers_default_to_growing_limits() {
        let tiers = Tiers::default();
        assert!(tiers.limits(0).balance_cap < tiers.limits(1).balance_cap);
        assert!(tiers.limits(1).monthly < tiers.limits(2).monthly);
        assert_eq!(tiers.limits(7), tiers.limits(2));
    }
}
