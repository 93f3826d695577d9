//! The back office's view of customers: search by contact, name or id
//! (through blind indexes: nothing encrypted is decrypted or compared in
//! clear to search), and the identity half of the customer 360 (profile,
//! KYC, sessions, limits, freezes and lock-outs).
//!
//! **What is searchable, and why nothing more.** Personal data is stored
//! encrypted with a random nonce, so the database can only match a keyed
//! hash (HMAC) of a whole normalized value: a phone number or e-mail
//! exactly, a whole name exactly (case, spacing and word order ignored).
//! A substring or prefix search would need the plaintext, or an index of
//! every prefix, which lets anyone with the database file guess names a
//! character at a time. A surname alone is not indexed either: there are
//! few surnames and they are very unevenly shared (王, 李, 张 cover a fifth
//! of China), so even a keyed index of them is broken by counting.

use coffer_audit::{Entry, Filter, Outcome, Record};
use coffer_core::Secret;
use coffer_store::sql::Sql;
use coffer_store::sql_params;

use crate::kyc::{FULL_NAME_CONTEXT, ID_NUMBER_CONTEXT};
use crate::{
    Contact, Context, CustomerView, Identity, IdentityError, Permission, StaffInfo, TierLimits,
    CONTACT_CONTEXT, NAME_CONTEXT,
};

/// At most this many customers per search page.
pub const SEARCH_PAGE_MAX: i64 = 50;
/// The longest name a search accepts (as the KYC name: 100 characters).
pub const SEARCH_NAME_LENGTH_MAX: usize = 100;
/// The most recent audit records about a customer in the 360 view.
const HISTORY_MAX: usize = 50;
const NAME_INDEX_PURPOSE: &str = "customer_name";

/// Which of a customer's names an index row holds.
pub(crate) const DISPLAY_NAME_SOURCE: &str = "display_name";
pub(crate) const KYC_NAME_SOURCE: &str = "kyc_full_name";

/// A name as it is indexed and searched: lower case, words split at spaces,
/// middle dots and commas, sorted, joined by one space ("Zhang  Wei",
/// "wei zhang" and "WEI, Zhang" are one name). `None` when empty.
pub fn normalize_name(text: &str) -> Option<String> {
    let lower = text.trim().to_lowercase();
    let mut words: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || matches!(c, '·' | '•' | ',' | '，' | '.'))
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return None;
    }
    words.sort_unstable();
    Some(words.join(" "))
}

/// A name as staff without `view_personal_data` see it: "张*伟", "J*** D**".
pub fn mask_name(name: &str) -> String {
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

/// What staff search by.
#[derive(Debug, Clone)]
pub enum CustomerSearch {
    /// A phone number or e-mail, exactly (normalized).
    Contact(String),
    /// A whole name, display or legal (normalized).
    Name(String),
    /// A customer id.
    Id(String),
    /// Customers found by another crate's index (a card's last four digits),
    /// already paginated there; `label` says what for the audit log.
    Ids { ids: Vec<String>, label: String },
}

/// A customer as a search shows it: masked unless the staff member may see
/// personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerHit {
    pub id: String,
    pub name: String,
    pub contact: String,
    pub tier: i64,
    pub status: String,
    pub created_at: i64,
}

/// One page of a search; `next` is the cursor of the following page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    pub customers: Vec<CustomerHit>,
    pub next: Option<String>,
}

/// The verified legal identity, as staff see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KycIdentityView {
    pub id_type: String,
    /// Only the last four characters, whatever the permission.
    pub id_number_masked: String,
    /// In clear with `view_personal_data`, masked otherwise.
    pub full_name: String,
    pub verified_at: i64,
    pub provider_reference: String,
}

/// A KYC review, decided or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KycReviewView {
    pub id: String,
    pub target_tier: i64,
    pub reason: String,
    pub state: String,
    pub created_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    pub note: Option<String>,
}

/// A customer's session (device) as staff see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffSessionView {
    pub id: String,
    pub device: String,
    pub ip: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
}

/// An approved limit override (fields left `None` keep the tier's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitOverrideView {
    pub balance_cap: Option<i64>,
    pub per_payment: Option<i64>,
    pub daily: Option<i64>,
    pub monthly: Option<i64>,
    pub approval_id: String,
    pub created_at: i64,
}

/// The identity half of the customer 360.
#[derive(Debug, Clone)]
pub struct CustomerRecord {
    pub id: String,
    /// In clear with `view_personal_data`, masked otherwise.
    pub display_name: String,
    pub contact: String,
    pub contact_kind: &'static str,
    pub personal_data_shown: bool,
    pub tier: i64,
    pub status: String,
    pub created_at: i64,
    pub kyc: Option<KycIdentityView>,
    pub kyc_reviews: Vec<KycReviewView>,
    pub sessions: Vec<StaffSessionView>,
    /// The limits in force (tier and override).
    pub limits: TierLimits,
    pub limit_override: Option<LimitOverrideView>,
    /// Until when sign-in is locked after failed attempts (none: not locked).
    pub locked_until: Option<i64>,
    /// The newest audit records about the customer (freezes, unfreezes,
    /// unlocks, KYC decisions, security events, staff views), newest first.
    pub history: Vec<Record>,
}

impl Identity {
    /// Writes (or replaces) the blind index of one of a customer's names,
    /// in the caller's transaction.
    pub(crate) fn index_name(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        source: &str,
        name: &str,
    ) -> Result<(), IdentityError> {
        db.execute(
            "DELETE FROM customer_name_index WHERE customer_id = $1 AND source = $2",
            sql_params![customer_id, source],
        )?;
        // A name of nothing but separators matches no search ('-' is never
        // a hex HMAC) but still counts as indexed.
        let index = normalize_name(name).map_or_else(
            || "-".to_string(),
            |normalized| self.vault.blind_index(NAME_INDEX_PURPOSE, &normalized),
        );
        db.execute(
            "INSERT INTO customer_name_index (customer_id, source, name_index) VALUES ($1, $2, $3)",
            sql_params![customer_id, source, index],
        )?;
        Ok(())
    }

    /// Indexes the names of up to `limit` customers that have none yet
    /// (those registered before the index existed); returns how many.
    /// `coffer serve` runs it at start until it returns 0.
    pub fn index_missing_names(&self, limit: i64) -> Result<usize, IdentityError> {
        let rows = self.sql.run(|db| {
            db.query(
                "SELECT c.id, c.display_name_enc, k.full_name_enc FROM customers c \
                 LEFT JOIN kyc_identities k ON k.customer_id = c.id \
                 WHERE NOT EXISTS (SELECT 1 FROM customer_name_index n WHERE n.customer_id = c.id AND n.source = $1) \
                 ORDER BY c.id LIMIT $2",
                sql_params![DISPLAY_NAME_SOURCE, limit.clamp(1, 1_000)],
            )
        })?;
        for row in &rows {
            let id = row.text(0)?;
            let name = self.vault.decrypt_text(NAME_CONTEXT, &row.bytes(1)?)?;
            let legal = row
                .opt_bytes(2)?
                .map(|b| self.vault.decrypt_text(FULL_NAME_CONTEXT, &b))
                .transpose()?;
            self.sql.transaction(|db| -> Result<(), IdentityError> {
                self.index_name(db, &id, DISPLAY_NAME_SOURCE, name.expose())?;
                if let Some(legal) = &legal {
                    self.index_name(db, &id, KYC_NAME_SOURCE, legal.expose())?;
                }
                Ok(())
            })?;
        }
        Ok(rows.len())
    }

    /// Finds customers; masked unless `staff` may see personal data. Pages
    /// go by customer id (`after`: the previous page's `next`). The search
    /// is audited (what was searched by, never the value searched for).
    pub fn staff_search_customers(
        &self,
        staff: &StaffInfo,
        search: &CustomerSearch,
        after: Option<&str>,
        limit: i64,
        context: &Context,
    ) -> Result<SearchPage, IdentityError> {
        staff.require(Permission::ViewCustomers)?;
        let limit = limit.clamp(1, SEARCH_PAGE_MAX);
        let after = after.unwrap_or("");
        let (mut ids, label): (Vec<String>, String) = match search {
            CustomerSearch::Contact(text) => {
                let contact = Contact::parse(text).ok_or_else(|| {
                    IdentityError::invalid("contact", "a phone number (+86…) or e-mail")
                })?;
                let index = self.vault.blind_index("contact", contact.as_str());
                let found = self.sql.run(|db| {
                    db.query(
                        "SELECT id FROM customers WHERE contact_index = $1 AND id > $2",
                        sql_params![index.as_str(), after],
                    )
                })?;
                (
                    found.iter().map(|r| r.text(0)).collect::<Result<_, _>>()?,
                    format!("contact {}", contact.masked()),
                )
            }
            CustomerSearch::Name(text) => {
                if text.chars().count() > SEARCH_NAME_LENGTH_MAX {
                    return Err(IdentityError::invalid(
                        "name",
                        format!("a whole name of at most {SEARCH_NAME_LENGTH_MAX} characters"),
                    ));
                }
                let normalized = normalize_name(text)
                    .ok_or_else(|| IdentityError::invalid("name", "a whole name"))?;
                let index = self.vault.blind_index(NAME_INDEX_PURPOSE, &normalized);
                let found = self.sql.run(|db| {
                    db.query(
                        "SELECT DISTINCT customer_id FROM customer_name_index WHERE name_index = $1 AND customer_id > $2 \
                         ORDER BY customer_id LIMIT $3",
                        sql_params![index.as_str(), after, limit + 1],
                    )
                })?;
                (
                    found.iter().map(|r| r.text(0)).collect::<Result<_, _>>()?,
                    "name".to_string(),
                )
            }
            CustomerSearch::Id(id) => (
                if id.as_str() > after {
                    vec![id.clone()]
                } else {
                    Vec::new()
                },
                "id".to_string(),
            ),
            CustomerSearch::Ids { ids, label } => (ids.clone(), label.clone()),
        };
        let more = i64::try_from(ids.len()).unwrap_or(i64::MAX) > limit;
        ids.truncate(usize::try_from(limit).unwrap_or(0));
        let clear = staff.may(Permission::ViewPersonalData);
        let mut customers = Vec::with_capacity(ids.len());
        for id in &ids {
            match self.customer(id) {
                Ok(view) => customers.push(self.hit(view, clear)?),
                Err(IdentityError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        let next = if more {
            customers.last().map(|c| c.id.clone())
        } else {
            None
        };
        self.sql.transaction(|db| {
            self.staff_audit_entry(
                db,
                staff,
                ("customers_searched", None),
                context,
                &format!("by {label}: {} found", customers.len()),
            )
        })?;
        Ok(SearchPage { customers, next })
    }

    fn hit(&self, view: CustomerView, clear: bool) -> Result<CustomerHit, IdentityError> {
        let (name, contact) = if clear {
            (
                view.display_name.expose().clone(),
                self.contact_in_clear(&view.id)?.into_inner(),
            )
        } else {
            (mask_name(view.display_name.expose()), view.contact_masked)
        };
        Ok(CustomerHit {
            id: view.id,
            name,
            contact,
            tier: view.tier,
            status: view.status,
            created_at: view.created_at,
        })
    }

    fn contact_in_clear(&self, customer_id: &str) -> Result<Secret<String>, IdentityError> {
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT contact_enc FROM customers WHERE id = $1",
                    sql_params![customer_id],
                )
            })?
            .ok_or(IdentityError::NotFound("customer"))?;
        Ok(self.vault.decrypt_text(CONTACT_CONTEXT, &row.bytes(0)?)?)
    }

    fn staff_audit_entry(
        &self,
        db: &mut dyn Sql,
        staff: &StaffInfo,
        (action, subject): (&str, Option<&str>),
        context: &Context,
        detail: &str,
    ) -> Result<(), IdentityError> {
        coffer_audit::append(
            db,
            &Entry {
                at: self.now(),
                actor: &staff.actor(),
                action,
                subject,
                ip: &context.ip,
                outcome: Outcome::Ok,
                detail,
            },
        )?;
        Ok(())
    }

    /// The identity half of the customer 360. The look is audited with the
    /// customer as subject, saying whether personal data was shown.
    pub fn staff_customer_record(
        &self,
        staff: &StaffInfo,
        customer_id: &str,
        context: &Context,
    ) -> Result<CustomerRecord, IdentityError> {
        staff.require(Permission::ViewCustomers)?;
        let clear = staff.may(Permission::ViewPersonalData);
        let view = self.customer(customer_id)?;
        let now = self.now();
        let contact = if clear {
            self.contact_in_clear(customer_id)?.into_inner()
        } else {
            view.contact_masked.clone()
        };
        let display_name = if clear {
            view.display_name.expose().clone()
        } else {
            mask_name(view.display_name.expose())
        };
        let kyc = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT id_type, id_number_enc, full_name_enc, verified_at, provider_reference FROM kyc_identities WHERE customer_id = $1",
                    sql_params![customer_id],
                )
            })?
            .map(|row| -> Result<KycIdentityView, IdentityError> {
                let number = self.vault.decrypt_text(ID_NUMBER_CONTEXT, &row.bytes(1)?)?;
                let name = self.vault.decrypt_text(FULL_NAME_CONTEXT, &row.bytes(2)?)?;
                let tail: String = {
                    let chars: Vec<char> = number.expose().chars().collect();
                    chars[chars.len().saturating_sub(4)..].iter().collect()
                };
                Ok(KycIdentityView {
                    id_type: row.text(0)?,
                    id_number_masked: format!("••••{tail}"),
                    full_name: if clear {
                        name.expose().clone()
                    } else {
                        mask_name(name.expose())
                    },
                    verified_at: row.int(3)?,
                    provider_reference: row.text(4)?,
                })
            })
            .transpose()?;
        let kyc_reviews = self
            .sql
            .run(|db| {
                db.query(
                    "SELECT id, target_tier, reason, state, created_at, decided_at, decided_by, note FROM kyc_reviews \
                     WHERE customer_id = $1 ORDER BY created_at DESC, id LIMIT 50",
                    sql_params![customer_id],
                )
            })?
            .iter()
            .map(|r| {
                Ok(KycReviewView {
                    id: r.text(0)?,
                    target_tier: r.int(1)?,
                    reason: r.text(2)?,
                    state: r.text(3)?,
                    created_at: r.int(4)?,
                    decided_at: r.opt_int(5)?,
                    decided_by: r.opt_text(6)?,
                    note: r.opt_text(7)?,
                })
            })
            .collect::<Result<Vec<_>, IdentityError>>()?;
        let sessions = self
            .sql
            .run(|db| {
                db.query(
                    "SELECT id, device, ip, created_at, last_seen_at, idle_expires_at, absolute_expires_at, revoked_at \
                     FROM sessions WHERE customer_id = $1 ORDER BY created_at DESC, id LIMIT 50",
                    sql_params![customer_id],
                )
            })?
            .iter()
            .map(|r| {
                let state = if r.opt_int(7)?.is_some() {
                    "revoked"
                } else if r.int(5)? <= now || r.int(6)? <= now {
                    "expired"
                } else {
                    "active"
                };
                Ok(StaffSessionView {
                    id: r.text(0)?,
                    device: r.text(1)?,
                    ip: r.text(2)?,
                    created_at: r.int(3)?,
                    last_seen_at: r.int(4)?,
                    state,
                })
            })
            .collect::<Result<Vec<_>, IdentityError>>()?;
        let limit_override = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT balance_cap, per_payment, daily, monthly, approval_id, created_at FROM limit_overrides WHERE customer_id = $1",
                    sql_params![customer_id],
                )
            })?
            .map(|r| -> Result<LimitOverrideView, IdentityError> {
                Ok(LimitOverrideView {
                    balance_cap: r.opt_int(0)?,
                    per_payment: r.opt_int(1)?,
                    daily: r.opt_int(2)?,
                    monthly: r.opt_int(3)?,
                    approval_id: r.text(4)?,
                    created_at: r.int(5)?,
                })
            })
            .transpose()?;
        let limits = self.limits_for(customer_id, view.tier)?;
        let locked_until = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT t.blocked_until FROM throttles t JOIN customers c ON t.subject = 'contact:' || c.contact_index \
                     WHERE c.id = $1",
                    sql_params![customer_id],
                )
            })?
            .map(|r| r.int(0))
            .transpose()?
            .filter(|until| *until > now);
        let history = self.sql.run(|db| {
            coffer_audit::entries(
                db,
                &Filter {
                    subject: Some(customer_id),
                    limit: HISTORY_MAX,
                    ..Filter::default()
                },
            )
            .map_err(|e| coffer_store::StoreError::Corrupt(e.to_string()))
        })?;
        self.sql.transaction(|db| {
            self.staff_audit_entry(
                db,
                staff,
                ("customer_360_viewed", Some(customer_id)),
                context,
                if clear {
                    "personal data shown"
                } else {
                    "masked"
                },
            )
        })?;
        Ok(CustomerRecord {
            id: view.id,
            display_name,
            contact,
            contact_kind: view.contact_kind.as_str(),
            personal_data_shown: clear,
            tier: view.tier,
            status: view.status,
            created_at: view.created_at,
            kyc,
            kyc_reviews,
            sessions,
            limits,
            limit_override,
            locked_until,
            history,
        })
    }

    /// The identity side of the queues overview: (queue, count, oldest
    /// item's creation time).
    pub fn queue_summaries(&self) -> Result<Vec<QueueSummary>, IdentityError> {
        let mut queues = Vec::new();
        for (name, sql) in [
            (
                "kyc_reviews",
                "SELECT COUNT(*), MIN(created_at) FROM kyc_reviews WHERE state = 'pending'",
            ),
            (
                "pending_approvals",
                "SELECT COUNT(*), MIN(created_at) FROM approvals WHERE state = 'pending'",
            ),
        ] {
            let row = self.sql.run(|db| db.query_one(sql, &[]))?;
            queues.push((name, row.int(0)?, row.opt_int(1)?));
        }
        Ok(queues)
    }
}

/// A staff queue: its name, how many items wait, and since when the oldest
/// has waited (nanoseconds since the epoch; none when empty).
pub type QueueSummary = (&'static str, i64, Option<i64>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize_whatever_the_order_case_and_spacing() {
        assert_eq!(normalize_name(" Zhang  Wei ").as_deref(), Some("wei zhang"));
        assert_eq!(normalize_name("WEI, zhang").as_deref(), Some("wei zhang"));
        assert_eq!(normalize_name("张伟").as_deref(), Some("张伟"));
        assert_eq!(
            normalize_name("阿卜杜·热合曼").as_deref(),
            Some("热合曼 阿卜杜")
        );
        assert_eq!(normalize_name("  "), None);
        assert_ne!(normalize_name("Zhang Wei"), normalize_name("Zhang Wen"));
    }

    #[test]
    fn names_mask_all_but_first_letters() {
        assert_eq!(mask_name("张小明"), "张*明");
        assert_eq!(mask_name("John Doe"), "J*** D**");
        assert_eq!(mask_name("李四"), "李*");
    }
}
