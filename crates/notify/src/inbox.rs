//! The in-app inbox: one row per alert, written in the event's transaction
//! under its notification key (a second write of the same key is a no-op).
//! The text is stored encrypted in both languages and shown in the one the
//! customer reads at the time they look.

use coffer_store::sql::Sql;
use coffer_store::sql_params;
use coffer_vault::Vault;
use serde::{Deserialize, Serialize};

use crate::alerts::Bilingual;
use crate::preferences::{self, Category, Language};
use crate::NotifyError;

pub(crate) const CONTENT_CONTEXT: &str = "notification.inbox";
/// Most items one page returns.
pub const PAGE_MAX: i64 = 100;

#[derive(Serialize, Deserialize)]
struct Content {
    en_title: String,
    en_body: String,
    zh_title: String,
    zh_body: String,
}

/// Writes an inbox item; `false` when the key was written before.
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert(
    db: &mut dyn Sql,
    vault: &Vault,
    customer_id: &str,
    key: &str,
    category: Category,
    template: &str,
    text: &Bilingual,
    now: i64,
) -> Result<bool, NotifyError> {
    let content = serde_json::to_string(&Content {
        en_title: text.en.title.clone(),
        en_body: text.en.body.clone(),
        zh_title: text.zh.title.clone(),
        zh_body: text.zh.body.clone(),
    })
    .map_err(|e| NotifyError::Invalid("content", e.to_string()))?;
    let sealed = vault.encrypt_text(CONTENT_CONTEXT, &content)?;
    let inserted = db.execute(
        "INSERT INTO inbox (customer_id, notification_key, category, template, content_enc, created_at, read_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL) ON CONFLICT DO NOTHING",
        sql_params![customer_id, key, category.as_str(), template, sealed, now],
    )?;
    Ok(inserted == 1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: i64,
    pub category: String,
    pub template: String,
    pub language: Language,
    pub title: String,
    pub body: String,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Item>,
    /// Pass as `before` for the next (older) page; `None` at the end.
    pub next_cursor: Option<i64>,
    pub unread: i64,
}

/// Newest first, items older than `before` (an item id), at most `limit`.
pub fn list(
    db: &mut dyn Sql,
    vault: &Vault,
    customer_id: &str,
    before: Option<i64>,
    limit: i64,
    unread_only: bool,
) -> Result<Page, NotifyError> {
    let limit = limit.clamp(1, PAGE_MAX);
    let language = preferences::language(db, customer_id)?;
    let rows = db.query(
        "SELECT seq, category, template, content_enc, created_at, read_at FROM inbox \
         WHERE customer_id = $1 AND seq < $2 AND (CAST($3 AS BIGINT) = 0 OR read_at IS NULL) ORDER BY seq DESC LIMIT $4",
        sql_params![
            customer_id,
            before.unwrap_or(i64::MAX),
            unread_only,
            limit + 1
        ],
    )?;
    let mut items = Vec::new();
    for r in rows.iter().take(usize::try_from(limit).unwrap_or(0)) {
        let content = vault.decrypt_text(CONTENT_CONTEXT, &r.bytes(3)?)?;
        let content: Content = serde_json::from_str(content.expose())
            .map_err(|e| NotifyError::Invalid("content", e.to_string()))?;
        let (title, body) = match language {
            Language::En => (content.en_title, content.en_body),
            Language::ZhCn => (content.zh_title, content.zh_body),
        };
        items.push(Item {
            id: r.int(0)?,
            category: r.text(1)?,
            template: r.text(2)?,
            language,
            title,
            body,
            created_at: r.int(4)?,
            read_at: r.opt_int(5)?,
        });
    }
    let next_cursor = if rows.len() > items.len() {
        items.last().map(|i| i.id)
    } else {
        None
    };
    Ok(Page {
        items,
        next_cursor,
        unread: unread_count(db, customer_id)?,
    })
}

pub fn unread_count(db: &mut dyn Sql, customer_id: &str) -> Result<i64, NotifyError> {
    Ok(db
        .query_one(
            "SELECT COUNT(*) FROM inbox WHERE customer_id = $1 AND read_at IS NULL",
            sql_params![customer_id],
        )?
        .int(0)?)
}

/// Marks one item read (again: no change). Another customer's item is
/// not found, not forbidden: ids are not to be probed.
pub fn mark_read(
    db: &mut dyn Sql,
    customer_id: &str,
    id: i64,
    now: i64,
) -> Result<(), NotifyError> {
    let found = db.query_opt(
        "SELECT read_at FROM inbox WHERE seq = $1 AND customer_id = $2",
        sql_params![id, customer_id],
    )?;
    if found.is_none() {
        return Err(NotifyError::NotFound("notification"));
    }
    db.execute(
        "UPDATE inbox SET read_at = $3 WHERE seq = $1 AND customer_id = $2 AND read_at IS NULL",
        sql_params![id, customer_id, now],
    )?;
    Ok(())
}

/// Marks every unread item read; returns how many changed.
pub fn mark_all_read(db: &mut dyn Sql, customer_id: &str, now: i64) -> Result<u64, NotifyError> {
    Ok(db.execute(
        "UPDATE inbox SET read_at = $2 WHERE customer_id = $1 AND read_at IS NULL",
        sql_params![customer_id, now],
    )?)
}
