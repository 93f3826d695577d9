//! The biller catalogue staff manage at runtime: a settings kind
//! (`billers`, versioned by maker-checker in `identity::settings`, like the
//! fee schedule) whose document is the whole catalogue. Version 0 is the
//! shipped `BILLERS`. A biller is added by listing it, and disabled with
//! `"enabled": false` (it stays listed so payments already made keep their
//! name); a disabled biller is not shown to customers and takes no new
//! payment. Read in the caller's transaction, so every instance uses an
//! approved change at once.

use std::borrow::Cow;

use coffer_identity::SettingError;
use coffer_store::sql::Sql;
use coffer_store::StoreError;

use crate::bills::{BillerCategory, BillerInfo, BILLERS};

/// The settings kind of the biller catalogue.
pub const BILLERS_SETTING: &str = "billers";
/// A catalogue holds at most this many billers.
pub const BILLERS_MAX: usize = 500;
const TEXT_LENGTH_MAX: usize = 200;
const ID_LENGTH_MAX: usize = 64;

/// One biller of the catalogue in force, and whether it takes payments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub info: BillerInfo,
    pub enabled: bool,
}

/// The catalogue in force: the latest approved version, else the shipped one.
pub fn current(db: &mut dyn Sql) -> Result<(i64, Vec<CatalogueEntry>), StoreError> {
    match coffer_identity::latest_setting(db, BILLERS_SETTING)? {
        None => Ok((0, shipped())),
        Some((version, body)) => {
            let corrupt =
                |e: String| StoreError::Corrupt(format!("biller catalogue v{version}: {e}"));
            let value: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| corrupt(e.to_string()))?;
            Ok((
                version,
                from_json(&value).map_err(|e| corrupt(e.to_string()))?,
            ))
        }
    }
}

/// An enabled biller of the catalogue in force.
pub fn enabled(db: &mut dyn Sql, biller_id: &str) -> Result<Option<BillerInfo>, StoreError> {
    Ok(current(db)?
        .1
        .into_iter()
        .find(|e| e.enabled && e.info.id == biller_id)
        .map(|e| e.info))
}

/// The shipped catalogue, every biller enabled.
pub fn shipped() -> Vec<CatalogueEntry> {
    BILLERS
        .iter()
        .map(|info| CatalogueEntry {
            info: info.clone(),
            enabled: true,
        })
        .collect()
}

pub fn to_json(catalogue: &[CatalogueEntry]) -> serde_json::Value {
    serde_json::json!({
        "billers": catalogue.iter().map(|e| serde_json::json!({
            "id": e.info.id,
            "name_zh": e.info.name_zh,
            "name_en": e.info.name_en,
            "category": e.info.category.as_str(),
            "reference_digits": e.info.reference_digits,
            "reference_prefix": e.info.reference_prefix.map(String::from),
            "reference_format": e.info.reference_format,
            "partial_payment": e.info.partial_payment,
            "enabled": e.enabled,
        })).collect::<Vec<_>>()
    })
}

/// Parses and validates a whole catalogue; every problem names its field
/// (`settings.billers[2].reference_digits`).
pub fn from_json(value: &serde_json::Value) -> Result<Vec<CatalogueEntry>, SettingError> {
    const FIELDS: [&str; 9] = [
        "id",
        "name_zh",
        "name_en",
        "category",
        "reference_digits",
        "reference_prefix",
        "reference_format",
        "partial_payment",
        "enabled",
    ];
    let object = value
        .as_object()
        .ok_or_else(|| SettingError::new("settings", "an object with `billers`"))?;
    if let Some(key) = object.keys().find(|k| k.as_str() != "billers") {
        return Err(SettingError::new(
            format!("settings.{key}"),
            "unknown key; expected only `billers`",
        ));
    }
    let list = object
        .get("billers")
        .and_then(serde_json::Value::as_array)
        .filter(|l| l.len() <= BILLERS_MAX)
        .ok_or_else(|| {
            SettingError::new(
                "settings.billers",
                format!("a list of at most {BILLERS_MAX} billers"),
            )
        })?;
    let mut catalogue: Vec<CatalogueEntry> = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let path = format!("settings.billers[{index}]");
        let entry = entry
            .as_object()
            .ok_or_else(|| SettingError::new(path.clone(), "an object"))?;
        if let Some(key) = entry.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(SettingError::new(
                format!("{path}.{key}"),
                format!("unknown key; expected {}", FIELDS.join(", ")),
            ));
        }
        let text = |name: &str, max: usize| -> Result<String, SettingError> {
            entry
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::trim)
                .filter(|t| {
                    !t.is_empty() && t.chars().count() <= max && !t.chars().any(char::is_control)
                })
                .map(str::to_string)
                .ok_or_else(|| {
                    SettingError::new(
                        format!("{path}.{name}"),
                        format!("1 to {max} characters, no control characters"),
                    )
                })
        };
        let flag = |name: &str| {
            entry
                .get(name)
                .and_then(serde_json::Value::as_bool)
                .ok_or_else(|| SettingError::new(format!("{path}.{name}"), "true or false"))
        };
        let id = text("id", ID_LENGTH_MAX)?;
        if !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(SettingError::new(format!("{path}.id"), "a-z, 0-9 and -"));
        }
        if catalogue.iter().any(|e| e.info.id == id) {
            return Err(SettingError::new(
                format!("{path}.id"),
                "ids must be unique",
            ));
        }
        let category = entry
            .get("category")
            .and_then(serde_json::Value::as_str)
            .and_then(BillerCategory::parse)
            .ok_or_else(|| {
                SettingError::new(
                    format!("{path}.category"),
                    "electricity, water, gas, phone or credit_card",
                )
            })?;
        let reference_digits = entry
            .get("reference_digits")
            .and_then(serde_json::Value::as_u64)
            .and_then(|d| usize::try_from(d).ok())
            .filter(|d| (4..=32).contains(d))
            .ok_or_else(|| SettingError::new(format!("{path}.reference_digits"), "from 4 to 32"))?;
        let reference_prefix = match entry.get("reference_prefix") {
            None | Some(serde_json::Value::Null) => None,
            Some(prefix) => {
                let digit = prefix
                    .as_str()
                    .filter(|p| p.len() == 1 && p.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|p| p.chars().next())
                    .ok_or_else(|| {
                        SettingError::new(format!("{path}.reference_prefix"), "one digit, or null")
                    })?;
                Some(digit)
            }
        };
        catalogue.push(CatalogueEntry {
            info: BillerInfo {
                id: Cow::Owned(id),
                name_zh: Cow::Owned(text("name_zh", ID_LENGTH_MAX)?),
                name_en: Cow::Owned(text("name_en", ID_LENGTH_MAX)?),
                category,
                reference_digits,
                reference_prefix,
                reference_format: Cow::Owned(text("reference_format", TEXT_LENGTH_MAX)?),
                partial_payment: flag("partial_payment")?,
            },
            enabled: flag("enabled")?,
        });
    }
    Ok(catalogue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalogue_round_trips_and_mistakes_name_their_field() {
        let shipped = shipped();
        assert_eq!(from_json(&to_json(&shipped)), Ok(shipped.clone()));
        let mut document = to_json(&shipped);
        document["billers"][1]["reference_digits"] = serde_json::json!(2);
        assert_eq!(
            from_json(&document).map_err(|e| e.field),
            Err("settings.billers[1].reference_digits".to_string())
        );
        let mut document = to_json(&shipped);
        document["billers"][2]["id"] = document["billers"][0]["id"].clone();
        assert_eq!(
            from_json(&document).map_err(|e| e.field),
            Err("settings.billers[2].id".to_string())
        );
    }
}
