//! Marketing campaigns: staff write one (bilingual), target a segment (KYC
//! tier, activity in the last N days, spending in a category of the
//! activity feed), preview the audience, and a second staff member approves
//! the send (`SensitiveAction::SendCampaign`, maker-checker). Only customers
//! who opted in are ever counted or reached; each message goes through the
//! outbox under the key `cmp:<campaign>:<customer>`, so a send interrupted
//! by a crash is resumed without repeating anyone.

use std::sync::Arc;

use coffer_audit::{Entry, Outcome};
use coffer_core::Clock;
use coffer_identity::{Identity, IdentityError};
use coffer_notify::alerts::Bilingual;
use coffer_notify::preferences::Category;
use coffer_notify::NotifyError;
use coffer_store::sql::{Row, SqlStore};
use coffer_store::{sql_params, StoreError};
use coffer_vault::{Vault, VaultError};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use coffer_notify::alerts::CAMPAIGN_CONTEXT as CONTENT_CONTEXT;
const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;
/// Customers alerted per transaction while sending.
const SEND_BATCH: usize = 200;
pub const CAMPAIGN_TEXT_MAX: usize = 1_000;

/// Which opted-in customers a campaign reaches; every condition named must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// KYC tier at least this (0, 1, 2).
    #[serde(default)]
    pub kyc_tier_min: Option<i64>,
    /// Some wallet activity in the last N days (1 to 366).
    #[serde(default)]
    pub active_within_days: Option<i64>,
    /// Spent in this activity-feed category (`food`, `shopping`, `bills`…)
    /// in the last `spending_within_days` (default 30) days.
    #[serde(default)]
    pub spending_category: Option<String>,
    #[serde(default)]
    pub spending_within_days: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("campaign not found")]
    NotFound,
    #[error("the campaign was sent already")]
    AlreadySent,
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("notify: {0}")]
    Notify(#[from] NotifyError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("audit: {0}")]
    Audit(#[from] coffer_audit::AuditError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> CampaignError {
    CampaignError::Invalid {
        field,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub segment: Segment,
    /// `draft` (not sent), `sending`, `sent`.
    pub state: String,
    pub created_by: String,
    pub approved_by: Option<String>,
    /// Customers reached (once sent).
    pub sent_to: Option<i64>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct Content {
    en_title: String,
    en_body: String,
    zh_title: String,
    zh_body: String,
}

pub struct Campaigns {
    sql: Arc<SqlStore>,
    vault: Arc<Vault>,
    identity: Arc<Identity>,
    clock: Arc<dyn Clock>,
}

impl Segment {
    fn check(&self) -> Result<(), CampaignError> {
        if self.kyc_tier_min.is_some_and(|t| !(0..=2).contains(&t)) {
            return Err(invalid("segment", "kyc_tier_min is 0, 1 or 2"));
        }
        for days in [self.active_within_days, self.spending_within_days]
            .into_iter()
            .flatten()
        {
            if !(1..=366).contains(&days) {
                return Err(invalid("segment", "days are 1 to 366"));
            }
        }
        if let Some(category) = &self.spending_category {
            if category.is_empty()
                || category.len() > 32
                || !category.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                return Err(invalid(
                    "segment",
                    "spending_category is an activity category (food, shopping, bills…)",
                ));
            }
        }
        Ok(())
    }
}

fn check_text(field: &'static str, text: &str) -> Result<(), CampaignError> {
    if text.trim().is_empty() || text.chars().count() > CAMPAIGN_TEXT_MAX {
        return Err(invalid(
            field,
            format!("1 to {CAMPAIGN_TEXT_MAX} characters"),
        ));
    }
    if coffer_notify::alerts::contains_card_number(text) {
        return Err(invalid(field, "no card numbers in a campaign"));
    }
    Ok(())
}

impl Campaigns {
    pub fn new(
        sql: Arc<SqlStore>,
        vault: Arc<Vault>,
        identity: Arc<Identity>,
        clock: Arc<dyn Clock>,
    ) -> Campaigns {
        Campaigns {
            sql,
            vault,
            identity,
            clock,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    /// A draft (audited as `campaign_created`).
    pub fn create(
        &self,
        actor: &str,
        ip: &str,
        name: &str,
        segment: &Segment,
        text: &Bilingual,
    ) -> Result<CampaignView, CampaignError> {
        if name.trim().is_empty() || name.chars().count() > 100 {
            return Err(invalid("name", "1 to 100 characters"));
        }
        segment.check()?;
        for (field, value) in [
            ("en_title", &text.en.title),
            ("en_body", &text.en.body),
            ("zh_title", &text.zh.title),
            ("zh_body", &text.zh.body),
        ] {
            check_text(field, value)?;
        }
        let mut bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut bytes);
        let id = format!("cmp_{}", hex::encode(bytes));
        let content = serde_json::to_string(&Content {
            en_title: text.en.title.clone(),
            en_body: text.en.body.clone(),
            zh_title: text.zh.title.clone(),
            zh_body: text.zh.body.clone(),
        })
        .map_err(|e| invalid("text", e.to_string()))?;
        let sealed = self.vault.encrypt_text(CONTENT_CONTEXT, &content)?;
        let segment_json =
            serde_json::to_string(segment).map_err(|e| invalid("segment", e.to_string()))?;
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), CampaignError> {
            db.execute(
                "INSERT INTO campaigns (id, name, segment, content_enc, state, created_by, approved_by, audience, created_at, sent_at) \
                 VALUES ($1, $2, $3, $4, 'draft', $5, NULL, NULL, $6, NULL)",
                sql_params![id.as_str(), name.trim(), segment_json.as_str(), sealed, actor, now],
            )?;
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor,
                    action: "campaign_created",
                    subject: Some(&id),
                    ip,
                    outcome: Outcome::Ok,
                    detail: name.trim(),
                },
            )?;
            Ok(())
        })?;
        self.get(&id)
    }

    pub fn get(&self, id: &str) -> Result<CampaignView, CampaignError> {
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT id, name, segment, state, created_by, approved_by, audience, created_at, sent_at FROM campaigns WHERE id = $1",
                    sql_params![id],
                )
            })?
            .ok_or(CampaignError::NotFound)?;
        view(&row)
    }

    pub fn list(&self, limit: i64) -> Result<Vec<CampaignView>, CampaignError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT id, name, segment, state, created_by, approved_by, audience, created_at, sent_at FROM campaigns ORDER BY created_at DESC, id DESC LIMIT $1",
                sql_params![limit],
            )
        })?;
        rows.iter().map(view).collect()
    }

    /// The opted-in, active customers the segment matches now.
    fn audience(&self, segment: &Segment) -> Result<Vec<String>, CampaignError> {
        let now = self.now();
        let active_since = segment
            .active_within_days
            .map_or(0, |days| now - days * NANOS_PER_DAY);
        let spending_since = now - segment.spending_within_days.unwrap_or(30) * NANOS_PER_DAY;
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT c.id FROM customers c JOIN notification_settings s ON s.customer_id = c.id \
                 WHERE c.status = 'active' AND s.marketing_opt_in = 1 AND c.tier >= $1 \
                 AND (CAST($2 AS BIGINT) = 0 OR EXISTS (SELECT 1 FROM activity a WHERE a.customer_id = c.id AND a.created_at >= $2)) \
                 AND (CAST($3 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM activity a WHERE a.customer_id = c.id \
                      AND a.category = $3 AND a.direction = 'out' AND a.status = 'succeeded' AND a.created_at >= $4)) \
                 ORDER BY c.id",
                sql_params![
                    segment.kyc_tier_min.unwrap_or(0),
                    active_since,
                    segment.spending_category.as_deref(),
                    spending_since
                ],
            )
        })?;
        rows.iter()
            .map(|r| Ok(r.text(0)?))
            .collect::<Result<Vec<_>, CampaignError>>()
    }

    /// How many customers the campaign would reach if sent now.
    pub fn preview(&self, id: &str) -> Result<i64, CampaignError> {
        let campaign = self.get(id)?;
        Ok(i64::try_from(self.audience(&campaign.segment)?.len()).unwrap_or(i64::MAX))
    }

    /// Sends an approved campaign (the checker's half of maker-checker):
    /// each customer's message in the outbox and inbox under its own key,
    /// so a repeat after a crash skips whoever has it. Returns how many
    /// customers it reached in this call.
    pub fn send(&self, id: &str, approver: &str, ip: &str) -> Result<i64, CampaignError> {
        let campaign = self.get(id)?;
        if campaign.state == "sent" {
            return Err(CampaignError::AlreadySent);
        }
        let now = self.now();
        self.sql.run(|db| {
            db.execute(
                "UPDATE campaigns SET state = 'sending', approved_by = $2 WHERE id = $1 AND state IN ('draft', 'sending')",
                sql_params![id, approver],
            )
        })?;
        let sealed = self
            .sql
            .run(|db| {
                db.query_one(
                    "SELECT content_enc FROM campaigns WHERE id = $1",
                    sql_params![id],
                )
            })?
            .bytes(0)?;
        let content: Content =
            serde_json::from_str(self.vault.decrypt_text(CONTENT_CONTEXT, &sealed)?.expose())
                .map_err(|e| invalid("content", e.to_string()))?;
        // Every marketing message says how to stop them.
        let text = Bilingual::new(
            content.en_title,
            format!(
                "{}\n\nTo stop marketing messages: Settings › Notifications › Marketing off in the Coffer app.",
                content.en_body
            ),
            content.zh_title,
            format!("{}\n\n退订营销信息：在 Coffer 应用中打开 设置 › 通知 › 关闭营销信息。", content.zh_body),
        );
        let audience = self.audience(&campaign.segment)?;
        let mut reached = 0i64;
        for chunk in audience.chunks(SEND_BATCH) {
            self.sql.transaction(|db| -> Result<(), CampaignError> {
                for customer in chunk {
                    self.identity.notify_customer(
                        db,
                        customer,
                        &format!("cmp:{id}:{customer}"),
                        Category::Marketing,
                        "marketing_campaign",
                        text.clone(),
                    )?;
                    reached += 1;
                }
                Ok(())
            })?;
        }
        self.sql.transaction(|db| -> Result<(), CampaignError> {
            db.execute(
                "UPDATE campaigns SET state = 'sent', audience = $2, sent_at = $3 WHERE id = $1",
                sql_params![id, i64::try_from(audience.len()).unwrap_or(i64::MAX), now],
            )?;
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor: approver,
                    action: "campaign_sent",
                    subject: Some(id),
                    ip,
                    outcome: Outcome::Ok,
                    detail: &format!("{} customers", audience.len()),
                },
            )?;
            Ok(())
        })?;
        Ok(reached)
    }
}

fn view(row: &Row) -> Result<CampaignView, CampaignError> {
    Ok(CampaignView {
        id: row.text(0)?,
        name: row.text(1)?,
        segment: serde_json::from_str(&row.text(2)?)
            .map_err(|e| CampaignError::Store(StoreError::Corrupt(e.to_string())))?,
        state: row.text(3)?,
        created_by: row.text(4)?,
        approved_by: row.opt_text(5)?,
        sent_to: row.opt_int(6)?,
        created_at: row.int(7)?,
        sent_at: row.opt_int(8)?,
    })
}
