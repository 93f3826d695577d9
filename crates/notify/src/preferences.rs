//! What a customer wants to hear about, on which channel, in which language;
//! and their marketing consent (explicit, recorded with time and source,
//! revocable, off by default). Security alerts ignore preferences.

use coffer_audit::{Entry, Outcome};
use coffer_store::sql::Sql;
use coffer_store::sql_params;

use crate::NotifyError;

/// The channels a customer can switch per category.
pub const CHANNELS: [&str; 3] = ["inbox", "sms", "email"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    PaymentReceived,
    PaymentSent,
    /// Someone asks the customer to pay (a request or a split bill).
    PaymentRequest,
    LowBalance,
    Marketing,
    /// New device, lock-out, large payment, freeze, password or contact
    /// change: always sent, whatever the preferences say.
    Security,
    /// The bank answered the customer's support ticket: in the app only,
    /// always (the customer asked), so no preference names it.
    Support,
}

impl Category {
    /// The categories a customer can switch off (security is not one).
    pub const CONFIGURABLE: [Category; 5] = [
        Category::PaymentReceived,
        Category::PaymentSent,
        Category::PaymentRequest,
        Category::LowBalance,
        Category::Marketing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::PaymentReceived => "payment_received",
            Category::PaymentSent => "payment_sent",
            Category::PaymentRequest => "payment_request",
            Category::LowBalance => "low_balance",
            Category::Marketing => "marketing",
            Category::Security => "security",
            Category::Support => "support",
        }
    }

    pub fn parse(text: &str) -> Option<Category> {
        [
            Category::PaymentReceived,
            Category::PaymentSent,
            Category::PaymentRequest,
            Category::LowBalance,
            Category::Marketing,
            Category::Security,
        ]
        .into_iter()
        .find(|c| c.as_str() == text)
    }

    /// Without a stored choice every channel is on: marketing is gated by
    /// the consent instead (off until the customer opts in).
    fn default_enabled(self) -> bool {
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    #[default]
    En,
    ZhCn,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::ZhCn => "zh-CN",
        }
    }

    pub fn parse(text: &str) -> Option<Language> {
        match text {
            "en" => Some(Language::En),
            "zh-CN" => Some(Language::ZhCn),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preference {
    pub category: Category,
    pub channel: &'static str,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub language: Language,
    pub marketing_opt_in: bool,
    /// Where the last consent decision was made (`app`, `web`, `branch`…).
    pub marketing_source: Option<String>,
    pub marketing_changed_at: Option<i64>,
    /// Every configurable category × channel, stored choice or default.
    pub preferences: Vec<Preference>,
}

/// A change; what it does not name stays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub language: Option<Language>,
    pub preferences: Vec<(Category, String, bool)>,
}

fn channel_name(text: &str) -> Option<&'static str> {
    CHANNELS.into_iter().find(|c| *c == text)
}

pub fn settings(db: &mut dyn Sql, customer_id: &str) -> Result<Settings, NotifyError> {
    let row = db.query_opt(
        "SELECT language, marketing_opt_in, marketing_source, marketing_changed_at FROM notification_settings WHERE customer_id = $1",
        sql_params![customer_id],
    )?;
    let (language, opt_in, source, changed) = match row {
        Some(r) => (
            Language::parse(&r.text(0)?).unwrap_or_default(),
            r.bool(1)?,
            r.opt_text(2)?,
            r.opt_int(3)?,
        ),
        None => (Language::default(), false, None, None),
    };
    let stored = db.query(
        "SELECT category, channel, enabled FROM notification_preferences WHERE customer_id = $1",
        sql_params![customer_id],
    )?;
    let mut preferences = Vec::new();
    for category in Category::CONFIGURABLE {
        for channel in CHANNELS {
            let mut enabled = category.default_enabled();
            for r in &stored {
                if r.text(0)? == category.as_str() && r.text(1)? == channel {
                    enabled = r.bool(2)?;
                }
            }
            preferences.push(Preference {
                category,
                channel,
                enabled,
            });
        }
    }
    Ok(Settings {
        language,
        marketing_opt_in: opt_in,
        marketing_source: source,
        marketing_changed_at: changed,
        preferences,
    })
}

/// Whether an alert of `category` goes to `channel` for this customer.
/// Marketing needs the consent as well as the channel switched on.
pub fn wants(
    db: &mut dyn Sql,
    customer_id: &str,
    category: Category,
    channel: &str,
) -> Result<bool, NotifyError> {
    if matches!(category, Category::Security | Category::Support) {
        return Ok(true);
    }
    if category == Category::Marketing {
        let consent = db.query_opt(
            "SELECT marketing_opt_in FROM notification_settings WHERE customer_id = $1",
            sql_params![customer_id],
        )?;
        if !consent.map(|r| r.bool(0)).transpose()?.unwrap_or(false) {
            return Ok(false);
        }
    }
    let stored = db.query_opt(
        "SELECT enabled FROM notification_preferences WHERE customer_id = $1 AND category = $2 AND channel = $3",
        sql_params![customer_id, category.as_str(), channel],
    )?;
    Ok(stored
        .map(|r| r.bool(0))
        .transpose()?
        .unwrap_or(category.default_enabled()))
}

pub fn language(db: &mut dyn Sql, customer_id: &str) -> Result<Language, NotifyError> {
    let row = db.query_opt(
        "SELECT language FROM notification_settings WHERE customer_id = $1",
        sql_params![customer_id],
    )?;
    Ok(row
        .map(|r| r.text(0))
        .transpose()?
        .and_then(|l| Language::parse(&l))
        .unwrap_or_default())
}

fn ensure_settings(db: &mut dyn Sql, customer_id: &str, now: i64) -> Result<(), NotifyError> {
    db.execute(
        "INSERT INTO notification_settings (customer_id, language, marketing_opt_in, marketing_source, marketing_changed_at, updated_at) \
         VALUES ($1, 'en', 0, NULL, NULL, $2) ON CONFLICT DO NOTHING",
        sql_params![customer_id, now],
    )?;
    Ok(())
}

/// Checks a change before anything is written.
pub fn check(update: &Update) -> Result<(), NotifyError> {
    for (category, channel, _) in &update.preferences {
        if *category == Category::Security {
            return Err(NotifyError::Invalid(
                "preferences",
                "security alerts always go out; they cannot be switched off".into(),
            ));
        }
        if channel_name(channel).is_none() {
            return Err(NotifyError::Invalid(
                "preferences",
                format!("unknown channel {channel:?} (inbox, sms, email)"),
            ));
        }
    }
    Ok(())
}

/// Applies a change (inside the caller's transaction); setting a value to
/// what it is changes nothing, so a repeat is harmless.
pub fn update(
    db: &mut dyn Sql,
    customer_id: &str,
    update: &Update,
    now: i64,
) -> Result<(), NotifyError> {
    check(update)?;
    ensure_settings(db, customer_id, now)?;
    if let Some(language) = update.language {
        db.execute(
            "UPDATE notification_settings SET language = $2, updated_at = $3 WHERE customer_id = $1",
            sql_params![customer_id, language.as_str(), now],
        )?;
    }
    for (category, channel, enabled) in &update.preferences {
        db.execute(
            "INSERT INTO notification_preferences (customer_id, category, channel, enabled, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (customer_id, category, channel) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at",
            sql_params![customer_id, category.as_str(), channel.as_str(), *enabled, now],
        )?;
    }
    Ok(())
}

/// Records a marketing consent decision (history kept; audited). Setting
/// the current value again records nothing.
pub fn set_marketing_consent(
    db: &mut dyn Sql,
    customer_id: &str,
    granted: bool,
    source: &str,
    now: i64,
) -> Result<(), NotifyError> {
    let source = source.trim();
    if source.is_empty()
        || source.len() > 32
        || !source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(NotifyError::Invalid(
            "source",
            "1 to 32 letters, digits, '-' or '_' (e.g. app, web, branch)".into(),
        ));
    }
    ensure_settings(db, customer_id, now)?;
    let changed = db.execute(
        "UPDATE notification_settings SET marketing_opt_in = $2, marketing_source = $3, marketing_changed_at = $4, updated_at = $4 \
         WHERE customer_id = $1 AND marketing_opt_in <> $2",
        sql_params![customer_id, granted, source, now],
    )?;
    if changed == 0 {
        return Ok(());
    }
    db.execute(
        "INSERT INTO marketing_consents (customer_id, granted, source, at) VALUES ($1, $2, $3, $4)",
        sql_params![customer_id, granted, source, now],
    )?;
    let actor = format!("customer:{customer_id}");
    coffer_audit::append(
        db,
        &Entry {
            at: now,
            actor: &actor,
            action: if granted {
                "marketing_consent_granted"
            } else {
                "marketing_consent_revoked"
            },
            subject: Some(customer_id),
            ip: "",
            outcome: Outcome::Ok,
            detail: source,
        },
    )?;
    Ok(())
}
