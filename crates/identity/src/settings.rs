//! Settings staff change at runtime through maker-checker (the fee
//! schedule, the tier limits): versioned rows in `settings_versions`, the
//! highest version of a kind in force, the configuration file's values when
//! there is none. Each crate owns the meaning of its kinds (parsing and
//! validation); this module stores, versions and audits them.
//!
//! Why read on every use rather than cache: every server instance must apply
//! a change from the moment it is approved, and a payment decides its fee
//! and limits in the transaction that records it; one primary-key read is
//! cheap next to that transaction.

use coffer_audit::{Entry, Outcome};
use coffer_store::sql::Sql;
use coffer_store::{sql_params, StoreError};

use crate::{Approval, Context, Identity, IdentityError, SensitiveAction, TierLimits, Tiers};

/// The kind of the tier limits document (owned by this crate).
pub const TIER_LIMITS_SETTING: &str = "tier_limits";
/// A limit no tier may exceed (CNY 100 billion in fen): a guard against a
/// misplaced digit.
pub const TIER_LIMIT_MAX: i64 = 10_000_000_000_000;

/// A settings document that does not validate: the offending field by its
/// path (`settings.tiers[1].daily`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingError {
    pub field: String,
    pub message: String,
}

impl SettingError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> SettingError {
        SettingError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One approved version of a settings kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingVersion {
    pub kind: String,
    pub version: i64,
    /// The document, JSON text.
    pub body: String,
    pub approval_id: String,
    pub maker: String,
    pub checker: String,
    pub created_at: i64,
}

/// The version in force of `kind` and its document, if any was approved.
pub fn latest_setting(db: &mut dyn Sql, kind: &str) -> Result<Option<(i64, String)>, StoreError> {
    db.query_opt(
        "SELECT version, body FROM settings_versions WHERE kind = $1 ORDER BY version DESC LIMIT 1",
        sql_params![kind],
    )?
    .map(|row| Ok((row.int(0)?, row.text(1)?)))
    .transpose()
}

/// A proposal's parameters: the version it was written against and the
/// whole new document.
pub fn setting_proposal(params: &str) -> Result<(i64, serde_json::Value), SettingError> {
    let value: serde_json::Value =
        serde_json::from_str(params).map_err(|_| SettingError::new("params", "a JSON object"))?;
    let base = value
        .get("base_version")
        .and_then(serde_json::Value::as_i64)
        .filter(|v| *v >= 0)
        .ok_or_else(|| SettingError::new("base_version", "the version the change is based on"))?;
    let settings = value
        .get("settings")
        .cloned()
        .ok_or_else(|| SettingError::new("settings", "the whole new document"))?;
    Ok((base, settings))
}

/// The tier limits as a JSON document: `{"tiers": [{balance_cap,
/// per_payment, daily, monthly} × 3]}`, index = tier.
pub fn tiers_to_json(tiers: &Tiers) -> serde_json::Value {
    serde_json::json!({
        "tiers": tiers.0.iter().map(|t| serde_json::json!({
            "balance_cap": t.balance_cap,
            "per_payment": t.per_payment,
            "daily": t.daily,
            "monthly": t.monthly,
        })).collect::<Vec<_>>()
    })
}

/// Parses and validates a tier limits document: exactly three tiers, every
/// field a whole number of minor units from 0 to `TIER_LIMIT_MAX`, and
/// per payment ≤ daily ≤ monthly within a tier.
pub fn tiers_from_json(value: &serde_json::Value) -> Result<Tiers, SettingError> {
    const FIELDS: [&str; 4] = ["balance_cap", "per_payment", "daily", "monthly"];
    let object = value
        .as_object()
        .ok_or_else(|| SettingError::new("settings", "a JSON object with `tiers`"))?;
    if let Some(key) = object.keys().find(|k| k.as_str() != "tiers") {
        return Err(SettingError::new(
            format!("settings.{key}"),
            "unknown key; expected only `tiers`",
        ));
    }
    let list = object
        .get("tiers")
        .and_then(serde_json::Value::as_array)
        .filter(|l| l.len() == 3)
        .ok_or_else(|| {
            SettingError::new("settings.tiers", "a list of exactly 3 tiers (0, 1, 2)")
        })?;
    let mut tiers = Tiers::default();
    for (index, (slot, entry)) in tiers.0.iter_mut().zip(list).enumerate() {
        let path = format!("settings.tiers[{index}]");
        let entry = entry
            .as_object()
            .ok_or_else(|| SettingError::new(path.clone(), "an object"))?;
        if let Some(key) = entry.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(SettingError::new(
                format!("{path}.{key}"),
                "unknown key; expected balance_cap, per_payment, daily, monthly",
            ));
        }
        let mut values = [0i64; 4];
        for (value, name) in values.iter_mut().zip(FIELDS) {
            *value = entry
                .get(name)
                .and_then(serde_json::Value::as_i64)
                .filter(|v| (0..=TIER_LIMIT_MAX).contains(v))
                .ok_or_else(|| {
                    SettingError::new(
                        format!("{path}.{name}"),
                        format!("whole minor units from 0 to {TIER_LIMIT_MAX}"),
                    )
                })?;
        }
        let [balance_cap, per_payment, daily, monthly] = values;
        if per_payment > daily {
            return Err(SettingError::new(
                format!("{path}.per_payment"),
                "at most the daily limit",
            ));
        }
        if daily > monthly {
            return Err(SettingError::new(
                format!("{path}.daily"),
                "at most the monthly limit",
            ));
        }
        *slot = TierLimits {
            balance_cap,
            per_payment,
            daily,
            monthly,
        };
    }
    Ok(tiers)
}

impl Identity {
    /// The tier limits in force: the latest approved version, else the
    /// configuration's.
    pub fn current_tiers(&self) -> Result<(i64, Tiers), IdentityError> {
        let latest = self.sql.run(|db| latest_setting(db, TIER_LIMITS_SETTING))?;
        match latest {
            None => Ok((0, self.policy.tiers.clone())),
            Some((version, body)) => {
                let value: serde_json::Value = serde_json::from_str(&body)
                    .map_err(|e| IdentityError::Internal(format!("stored tier limits: {e}")))?;
                let tiers = tiers_from_json(&value)
                    .map_err(|e| IdentityError::Internal(format!("stored tier limits: {e}")))?;
                Ok((version, tiers))
            }
        }
    }

    /// Every approved version of `kind`, newest first.
    pub fn setting_versions(
        &self,
        kind: &str,
        limit: i64,
    ) -> Result<Vec<SettingVersion>, IdentityError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT kind, version, body, approval_id, maker, checker, created_at FROM settings_versions \
                 WHERE kind = $1 ORDER BY version DESC LIMIT $2",
                sql_params![kind, limit.clamp(1, 200)],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(SettingVersion {
                    kind: r.text(0)?,
                    version: r.int(1)?,
                    body: r.text(2)?,
                    approval_id: r.text(3)?,
                    maker: r.text(4)?,
                    checker: r.text(5)?,
                    created_at: r.int(6)?,
                })
            })
            .collect()
    }

    /// The executed half of an approved `change_settings` proposal: stores
    /// `document` (already validated by the crate owning the kind) as the
    /// version after the proposal's base, audited in the same transaction.
    /// A change approved meanwhile on the same base makes this one
    /// `Conflict`: the maker proposes again against the new version.
    pub fn apply_setting_change(
        &self,
        approval: &Approval,
        document: &serde_json::Value,
        context: &Context,
    ) -> Result<i64, IdentityError> {
        if approval.action != SensitiveAction::ChangeSettings || approval.state != "approved" {
            return Err(IdentityError::Forbidden("settings_change_without_approval"));
        }
        let (base, _) = setting_proposal(&approval.params)
            .map_err(|e| IdentityError::Internal(e.to_string()))?;
        let checker = approval.checker.clone().unwrap_or_default();
        let body = document.to_string();
        let now = self.now();
        let version = base + 1;
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let current = latest_setting(db, &approval.subject)?.map_or(0, |(v, _)| v);
            if current != base {
                return Err(IdentityError::Conflict(
                    "the settings changed since this proposal; propose again against the current version",
                ));
            }
            db.execute(
                "INSERT INTO settings_versions (kind, version, body, approval_id, maker, checker, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                sql_params![
                    approval.subject.as_str(),
                    version,
                    body.as_str(),
                    approval.id.as_str(),
                    approval.maker.as_str(),
                    checker.as_str(),
                    now
                ],
            )?;
            let actor = format!("staff:{checker}");
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: &actor,
                    action: "settings_changed",
                    subject: Some(&approval.subject),
                    ip: &context.ip,
                    outcome: Outcome::Ok,
                    detail: &format!("version {version} ({})", approval.id),
                },
            )?;
            Ok(())
        })?;
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_documents_round_trip_and_refuse_mistakes() {
        let tiers = Tiers::default();
        let parsed = tiers_from_json(&tiers_to_json(&tiers)).expect("valid");
        assert_eq!(parsed.0, tiers.0);
        let mut doc = tiers_to_json(&tiers);
        doc["tiers"][1]["daily"] = serde_json::json!(-1);
        assert_eq!(
            tiers_from_json(&doc).map(|t| t.0).map_err(|e| e.field),
            Err("settings.tiers[1].daily".to_string())
        );
        let mut doc = tiers_to_json(&tiers);
        doc["tiers"][2]["per_payment"] = serde_json::json!(900_000_000);
        assert_eq!(
            tiers_from_json(&doc).map(|t| t.0).map_err(|e| e.field),
            Err("settings.tiers[2].per_payment".to_string())
        );
        let mut doc = tiers_to_json(&tiers);
        if let Some(list) = doc["tiers"].as_array_mut() {
            list.pop();
        }
        assert!(tiers_from_json(&doc).is_err());
        assert!(tiers_from_json(&serde_json::json!({"tiers": [], "x": 1})).is_err());
    }
}
