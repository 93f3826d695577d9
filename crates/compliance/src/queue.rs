//! The compliance service and its queue of watch-list hits: compliance
//! officers list them, open one (the screened name, the entry it matched
//! and the score), and clear it as a false positive or confirm it — which
//! freezes the customer, or blocks the merchant, in the same transaction.
//! Every look and every decision is audited with the customer as subject.

use std::sync::Arc;

use coffer_audit::{Entry, Outcome};
use coffer_core::{Clock, CurrencyRegistry};
use coffer_identity::{Context, Identity, PartyKind, Permission, StaffInfo};
use coffer_payments::Merchants;
use coffer_store::sql::{Row, Sql, SqlStore};
use coffer_store::sql_params;
use coffer_vault::Vault;

use crate::reports::ReportSettings;
use crate::screener::Screener;
use crate::watchlist::{ListEntry, ListFormat};
use crate::{ComplianceError, ListVersion, SCREENED_NAME_CONTEXT};

/// Lists return at most this many items.
pub const QUEUE_PAGE_MAX: i64 = 200;
pub const NOTE_LENGTH_MAX: usize = 1_000;

/// Where a hit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitState {
    Pending,
    Cleared,
    Confirmed,
}

impl HitState {
    pub fn as_str(self) -> &'static str {
        match self {
            HitState::Pending => "pending",
            HitState::Cleared => "cleared",
            HitState::Confirmed => "confirmed",
        }
    }

    pub fn parse(text: &str) -> Option<HitState> {
        match text {
            "pending" => Some(HitState::Pending),
            "cleared" => Some(HitState::Cleared),
            "confirmed" => Some(HitState::Confirmed),
            _ => None,
        }
    }
}

/// A compliance officer's decision on a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A false positive: the party may be paid again.
    Clear,
    /// A true match: the customer is frozen, the merchant blocked.
    Confirm,
}

/// A hit as the queue lists it (no personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitView {
    pub id: String,
    pub party_kind: String,
    pub party_id: String,
    pub customer_id: String,
    pub source: String,
    pub list_version: i64,
    pub entry_id: String,
    pub score_bps: i64,
    pub threshold_bps: i64,
    pub state: HitState,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub note: Option<String>,
    pub created_at: i64,
}

/// One hit opened by an officer: the name as screened and the entry matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitDetail {
    pub hit: HitView,
    pub screened_name: String,
    pub entry: Option<ListEntry>,
}

const SELECT_HIT: &str = "SELECT id, party_kind, party_id, customer_id, source, list_version, entry_id, score_bps, threshold_bps, state, \
     decided_by, decided_at, note, created_at FROM screening_hits";

fn hit(row: &Row) -> Result<HitView, ComplianceError> {
    Ok(HitView {
        id: row.text(0)?,
        party_kind: row.text(1)?,
        party_id: row.text(2)?,
        customer_id: row.text(3)?,
        source: row.text(4)?,
        list_version: row.int(5)?,
        entry_id: row.text(6)?,
        score_bps: row.int(7)?,
        threshold_bps: row.int(8)?,
        state: HitState::parse(&row.text(9)?)
            .ok_or_else(|| ComplianceError::Internal("unknown hit state".into()))?,
        decided_by: row.opt_text(10)?,
        decided_at: row.opt_int(11)?,
        note: row.opt_text(12)?,
        created_at: row.int(13)?,
    })
}

pub struct Compliance {
    pub(crate) sql: Arc<SqlStore>,
    pub(crate) vault: Arc<Vault>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) identity: Arc<Identity>,
    /// Blocks merchants on a confirmed hit (absent in tools that only report).
    pub(crate) merchants: Option<Arc<Merchants>>,
    pub(crate) screener: Arc<Screener>,
    pub(crate) currencies: Arc<CurrencyRegistry>,
    pub(crate) settings: ReportSettings,
}

impl Compliance {
    /// The compliance side of the back office's queues overview: screening
    /// hits awaiting an officer, and regulatory reports awaiting review.
    pub fn queue_summaries(
        &self,
    ) -> Result<Vec<coffer_identity::QueueSummary>, coffer_store::StoreError> {
        let mut queues = Vec::new();
        for (name, sql) in [
            (
                "compliance_hits",
                "SELECT COUNT(*), MIN(created_at) FROM screening_hits WHERE state = 'pending'",
            ),
            (
                "compliance_reports",
                "SELECT COUNT(*), MIN(created_at) FROM compliance_reports WHERE state = 'pending_review'",
            ),
        ] {
            let row = self.sql.run(|db| db.query_one(sql, &[]))?;
            queues.push((name, row.int(0)?, row.opt_int(1)?));
        }
        Ok(queues)
    }
}

impl Compliance {
    pub fn new(
        sql: Arc<SqlStore>,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        identity: Arc<Identity>,
        screener: Arc<Screener>,
        currencies: Arc<CurrencyRegistry>,
        settings: ReportSettings,
    ) -> Compliance {
        Compliance {
            sql,
            vault,
            clock,
            identity,
            merchants: None,
            screener,
            currencies,
            settings,
        }
    }

    /// Lets a confirmed hit on a merchant block it.
    pub fn with_merchants(mut self, merchants: Arc<Merchants>) -> Compliance {
        self.merchants = Some(merchants);
        self
    }

    pub fn screener(&self) -> &Arc<Screener> {
        &self.screener
    }

    pub fn settings(&self) -> &ReportSettings {
        &self.settings
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    /// Appends one record about `subject` (a customer id) in `db`.
    pub(crate) fn audit(
        &self,
        db: &mut dyn Sql,
        actor: &str,
        action: &str,
        subject: Option<&str>,
        context: &Context,
        detail: &str,
    ) -> Result<(), ComplianceError> {
        let detail: String = detail
            .chars()
            .take(coffer_audit::DETAIL_BYTES_MAX / 4)
            .collect();
        coffer_audit::append(
            db,
            &Entry {
                at: self.now(),
                actor,
                action,
                subject,
                ip: &context.ip,
                outcome: Outcome::Ok,
                detail: &detail,
            },
        )?;
        Ok(())
    }

    /// One record per customer a staff view showed, in one transaction.
    pub(crate) fn audit_views<'a>(
        &self,
        staff: &StaffInfo,
        action: &str,
        customers: impl Iterator<Item = (&'a str, String)>,
        context: &Context,
    ) -> Result<(), ComplianceError> {
        let mut seen: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (customer, what) in customers {
            seen.entry(customer).or_default().push(what);
        }
        self.sql.transaction(|db| -> Result<(), ComplianceError> {
            if seen.is_empty() {
                return self.audit(db, &staff.actor(), action, None, context, "nothing listed");
            }
            for (customer, items) in &seen {
                self.audit(
                    db,
                    &staff.actor(),
                    action,
                    Some(customer),
                    context,
                    &items.join(" "),
                )?;
            }
            Ok(())
        })
    }

    // ---- watch lists ----------------------------------------------------------------

    /// A compliance officer replaces the watch list (a new version; audited).
    pub fn staff_load_list(
        &self,
        staff: &StaffInfo,
        format: ListFormat,
        text: &str,
        context: &Context,
    ) -> Result<ListVersion, ComplianceError> {
        staff.require(Permission::ManageCompliance)?;
        self.screener
            .load_list(&staff.actor(), "api", format, text, &context.ip)
    }

    pub fn staff_list_versions(
        &self,
        staff: &StaffInfo,
        context: &Context,
    ) -> Result<Vec<ListVersion>, ComplianceError> {
        staff.require(Permission::ManageCompliance)?;
        let versions = self.screener.versions(100)?;
        self.sql.transaction(|db| {
            self.audit(
                db,
                &staff.actor(),
                "watchlist_versions_viewed",
                None,
                context,
                "",
            )
        })?;
        Ok(versions)
    }

    // ---- the queue ------------------------------------------------------------------

    /// Hits, oldest first, optionally of one state.
    pub fn staff_hits(
        &self,
        staff: &StaffInfo,
        state: Option<HitState>,
        limit: i64,
        context: &Context,
    ) -> Result<Vec<HitView>, ComplianceError> {
        staff.require(Permission::ManageCompliance)?;
        let rows = self.sql.run(|db| {
            db.query(
                &format!(
                    "{SELECT_HIT} WHERE (CAST($1 AS TEXT) IS NULL OR state = $1) ORDER BY created_at, id LIMIT $2"
                ),
                sql_params![state.map(HitState::as_str), limit.clamp(1, QUEUE_PAGE_MAX)],
            )
        })?;
        let hits = rows.iter().map(hit).collect::<Result<Vec<_>, _>>()?;
        self.audit_views(
            staff,
            "screening_hits_listed",
            hits.iter().map(|h| (h.customer_id.as_str(), h.id.clone())),
            context,
        )?;
        Ok(hits)
    }

    fn load_hit(&self, id: &str) -> Result<(HitView, Vec<u8>), ComplianceError> {
        let (row, name) = self.sql.run(|db| {
            let row = db.query_opt(&format!("{SELECT_HIT} WHERE id = $1"), sql_params![id])?;
            let name = db.query_opt(
                "SELECT name_enc FROM screening_hits WHERE id = $1",
                sql_params![id],
            )?;
            Ok((row, name))
        })?;
        match (row, name) {
            (Some(row), Some(name)) => Ok((hit(&row)?, name.bytes(0)?)),
            _ => Err(ComplianceError::NotFound("screening hit")),
        }
    }

    /// One hit with the name screened and the entry it matched (audited).
    pub fn staff_hit(
        &self,
        staff: &StaffInfo,
        id: &str,
        context: &Context,
    ) -> Result<HitDetail, ComplianceError> {
        staff.require(Permission::ManageCompliance)?;
        let (view, name_enc) = self.load_hit(id)?;
        let screened_name = self
            .vault
            .decrypt_text(SCREENED_NAME_CONTEXT, &name_enc)?
            .expose()
            .clone();
        let entry = self.screener.entry(view.list_version, &view.entry_id)?;
        self.sql.transaction(|db| {
            self.audit(
                db,
                &staff.actor(),
                "screening_hit_viewed",
                Some(&view.customer_id),
                context,
                &view.id,
            )
        })?;
        Ok(HitDetail {
            hit: view,
            screened_name,
            entry,
        })
    }

    /// Clears or confirms a pending hit, once; a confirmation freezes the
    /// customer (or blocks the merchant) in the same transaction.
    pub fn staff_decide_hit(
        &self,
        staff: &StaffInfo,
        id: &str,
        decision: Decision,
        note: &str,
        context: &Context,
    ) -> Result<HitView, ComplianceError> {
        staff.require(Permission::ManageCompliance)?;
        let note = note.trim();
        if note.is_empty()
            || note.chars().count() > NOTE_LENGTH_MAX
            || note.chars().any(char::is_control)
        {
            return Err(ComplianceError::invalid(
                "note",
                format!("say why, in 1 to {NOTE_LENGTH_MAX} characters"),
            ));
        }
        let (view, _) = self.load_hit(id)?;
        let state = match decision {
            Decision::Clear => HitState::Cleared,
            Decision::Confirm => HitState::Confirmed,
        };
        let now = self.now();
        let actor = staff.actor();
        self.sql.transaction(|db| -> Result<(), ComplianceError> {
            let decided = db.execute(
                "UPDATE screening_hits SET state = $2, decided_by = $3, decided_at = $4, note = $5 WHERE id = $1 AND state = 'pending'",
                sql_params![id, state.as_str(), staff.username.as_str(), now, note],
            )?;
            if decided != 1 {
                return Err(ComplianceError::Conflict("this hit was already decided"));
            }
            if decision == Decision::Confirm {
                let reason = format!("compliance: watch-list match confirmed ({id})");
                match PartyKind::parse(&view.party_kind) {
                    Some(PartyKind::Customer) => {
                        self.identity
                            .freeze_within(db, &actor, &view.party_id, &reason, context)?;
                    }
                    Some(PartyKind::Merchant) => {
                        let merchants = self.merchants.as_ref().ok_or_else(|| {
                            ComplianceError::Internal("merchants are not wired in".into())
                        })?;
                        merchants
                            .block_within(db, &actor, &view.party_id, &reason, &context.ip)
                            .map_err(|e| match e {
                                coffer_payments::MerchantError::Store(e) => ComplianceError::Store(e),
                                other => ComplianceError::Merchant(other.to_string()),
                            })?;
                    }
                    None => return Err(ComplianceError::Internal("unknown party kind".into())),
                }
            }
            self.audit(
                db,
                &actor,
                match decision {
                    Decision::Clear => "screening_hit_cleared",
                    Decision::Confirm => "screening_hit_confirmed",
                },
                Some(&view.customer_id),
                context,
                &format!("{id} {} {}: {note}", view.party_kind, view.party_id),
            )
        })?;
        Ok(self.load_hit(id)?.0)
    }
}
