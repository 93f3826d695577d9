//! The screener: the active watch list (the highest stored version, kept
//! parsed in memory and reloaded when another instance stores a newer one),
//! the threshold, and the `Screening` hook identity and payments call.
//!
//! A screening records that this party's name (by its keyed hash, never in
//! clear) was checked against this list version, so repeating it — every
//! payment to a payee calls it — costs one conditional insert. A hit is
//! queued at most once per (party, list version, entry, name); an entry a
//! compliance officer already cleared as a false positive for this party
//! and name is not raised again by a later list version.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use coffer_audit::{Entry, Outcome, ACTOR_SYSTEM};
use coffer_core::Clock;
use coffer_identity::{Party, PartyKind, Screening, ScreeningError, ScreeningSource, Standing};
use coffer_store::sql::{Sql, SqlStore};
use coffer_store::{sql_params, StoreError};
use coffer_vault::Vault;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::matching::{normalize, NormalizedName, SCORE_MAX_BPS};
use crate::watchlist::{self, EntryKind, ListEntry, ListFormat, PreparedEntry};
use crate::{ComplianceError, SCREENED_NAME_CONTEXT};

/// Hits at or above this similarity (basis points) go to the queue: high
/// enough that a different given name does not match, low enough for a
/// typo, a dropped middle name, an initial or one character of a Chinese name.
pub const DEFAULT_THRESHOLD_BPS: u32 = 8_500;
/// The lowest threshold accepted: below it nearly every name matches some entry.
pub const THRESHOLD_MIN_BPS: u32 = 5_000;

/// A stored list version, as staff see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListVersion {
    pub version: i64,
    pub source: String,
    pub format: String,
    pub sha256: String,
    pub entry_count: i64,
    pub loaded_by: String,
    pub loaded_at: i64,
}

/// One entry a name matched, and how well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreeningMatch {
    pub entry: ListEntry,
    pub score_bps: u32,
}

struct ActiveList {
    version: i64,
    entries: Vec<PreparedEntry>,
}

pub struct Screener {
    sql: Arc<SqlStore>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    threshold_bps: AtomicU32,
    active: RwLock<Option<Arc<ActiveList>>>,
}

fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

fn version_of(row: &coffer_store::sql::Row) -> Result<ListVersion, StoreError> {
    Ok(ListVersion {
        version: row.int(0)?,
        source: row.text(1)?,
        format: row.text(2)?,
        sha256: row.text(3)?,
        entry_count: row.int(4)?,
        loaded_by: row.text(5)?,
        loaded_at: row.int(6)?,
    })
}

const SELECT_VERSION: &str =
    "SELECT version, source, format, sha256, entry_count, loaded_by, loaded_at FROM compliance_watchlists";

impl Screener {
    pub fn new(sql: Arc<SqlStore>, vault: Arc<Vault>, clock: Arc<dyn Clock>) -> Screener {
        Screener {
            sql,
            vault,
            clock,
            threshold_bps: AtomicU32::new(DEFAULT_THRESHOLD_BPS),
            active: RwLock::new(None),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    pub fn threshold_bps(&self) -> u32 {
        self.threshold_bps.load(Ordering::Relaxed)
    }

    /// Sets the match threshold (configuration: `compliance.match_threshold_bps`).
    pub fn set_threshold_bps(&self, bps: u32) -> Result<(), ComplianceError> {
        if !(THRESHOLD_MIN_BPS..=SCORE_MAX_BPS).contains(&bps) {
            return Err(ComplianceError::invalid(
                "match_threshold_bps",
                format!("from {THRESHOLD_MIN_BPS} to {SCORE_MAX_BPS} basis points"),
            ));
        }
        self.threshold_bps.store(bps, Ordering::Relaxed);
        Ok(())
    }

    /// The newest stored version, if any list was ever loaded.
    pub fn current_version(&self) -> Result<Option<ListVersion>, ComplianceError> {
        let row = self.sql.run(|db| {
            db.query_opt(
                &format!("{SELECT_VERSION} ORDER BY version DESC LIMIT 1"),
                &[],
            )
        })?;
        Ok(row.as_ref().map(version_of).transpose()?)
    }

    /// Every stored version, newest first.
    pub fn versions(&self, limit: i64) -> Result<Vec<ListVersion>, ComplianceError> {
        let rows = self.sql.run(|db| {
            db.query(
                &format!("{SELECT_VERSION} ORDER BY version DESC LIMIT $1"),
                sql_params![limit.clamp(1, 500)],
            )
        })?;
        Ok(rows.iter().map(version_of).collect::<Result<_, _>>()?)
    }

    /// The active list, parsed; reloaded when a newer version was stored
    /// (by this instance or another).
    fn active(&self) -> Result<Option<Arc<ActiveList>>, ComplianceError> {
        let newest = self
            .sql
            .run(|db| db.query_opt("SELECT MAX(version) FROM compliance_watchlists", &[]))?;
        let Some(newest) = newest.map(|r| r.opt_int(0)).transpose()?.flatten() else {
            return Ok(None);
        };
        if let Ok(guard) = self.active.read() {
            if let Some(list) = guard.as_ref().filter(|l| l.version == newest) {
                return Ok(Some(list.clone()));
            }
        }
        let row = self.sql.run(|db| {
            db.query_one(
                "SELECT entries FROM compliance_watchlists WHERE version = $1",
                sql_params![newest],
            )
        })?;
        let entries: Vec<ListEntry> = serde_json::from_str(&row.text(0)?)
            .map_err(|e| StoreError::Corrupt(format!("watch list version {newest}: {e}")))?;
        let list = Arc::new(ActiveList {
            version: newest,
            entries: entries.into_iter().map(PreparedEntry::new).collect(),
        });
        if let Ok(mut guard) = self.active.write() {
            *guard = Some(list.clone());
        }
        Ok(Some(list))
    }

    /// Stores `text` as the next list version (audited), unless it is the
    /// list already active (then the active version is returned and nothing
    /// is written: loading the configured file at every start is harmless).
    pub fn load_list(
        &self,
        actor: &str,
        source: &str,
        format: ListFormat,
        text: &str,
        ip: &str,
    ) -> Result<ListVersion, ComplianceError> {
        let entries = watchlist::parse(format, text)?;
        let canonical = serde_json::to_string(&entries)
            .map_err(|e| ComplianceError::Internal(e.to_string()))?;
        let sha256 = hex::encode(Sha256::digest(canonical.as_bytes()));
        let source: String = source.chars().take(200).collect();
        let now = self.now();
        let count = i64::try_from(entries.len()).unwrap_or(i64::MAX);
        let version = self.sql.transaction(|db| -> Result<i64, ComplianceError> {
            let current = db
                .query_opt(
                    "SELECT version, sha256 FROM compliance_watchlists ORDER BY version DESC LIMIT 1",
                    &[],
                )?;
            if let Some(row) = &current {
                if row.text(1)? == sha256 {
                    return Ok(row.int(0)?);
                }
            }
            let version = current.map_or(Ok(0), |r| r.int(0))? + 1;
            let inserted = db.execute(
                "INSERT INTO compliance_watchlists (version, source, format, sha256, entries, entry_count, loaded_by, loaded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                sql_params![version, source.as_str(), format.as_str(), sha256.as_str(), canonical.as_str(), count, actor, now],
            )?;
            if inserted != 1 {
                return Err(ComplianceError::Conflict("another list was loaded at the same moment; load again"));
            }
            coffer_audit::append(
                db,
                &Entry {
                    at: now,
                    actor,
                    action: "watchlist_loaded",
                    subject: None,
                    ip,
                    outcome: Outcome::Ok,
                    detail: &format!("version {version}: {count} entries, sha256 {sha256}, from {source}"),
                },
            )?;
            Ok(version)
        })?;
        let stored = self.sql.run(|db| {
            db.query_one(
                &format!("{SELECT_VERSION} WHERE version = $1"),
                sql_params![version],
            )
        })?;
        Ok(version_of(&stored)?)
    }

    /// The list entries a name matches at or above the threshold, best
    /// first (nothing is recorded): customers are screened against persons,
    /// merchants against persons and entities.
    pub fn matches(
        &self,
        name: &str,
        kind: PartyKind,
    ) -> Result<Vec<ScreeningMatch>, ComplianceError> {
        let Some(list) = self.active()? else {
            return Ok(Vec::new());
        };
        Ok(self.matches_in(&list, &normalize(name), kind))
    }

    fn matches_in(
        &self,
        list: &ActiveList,
        name: &NormalizedName,
        kind: PartyKind,
    ) -> Vec<ScreeningMatch> {
        let threshold = self.threshold_bps();
        let mut found: Vec<ScreeningMatch> = list
            .entries
            .iter()
            .filter(|e| kind == PartyKind::Merchant || e.entry.kind == EntryKind::Person)
            .filter_map(|e| {
                let score_bps = e.score_bps(name);
                (score_bps >= threshold).then(|| ScreeningMatch {
                    entry: e.entry.clone(),
                    score_bps,
                })
            })
            .collect();
        found.sort_by(|a, b| {
            b.score_bps
                .cmp(&a.score_bps)
                .then(a.entry.entry_id.cmp(&b.entry.entry_id))
        });
        found
    }

    /// The entry as it stood in a given list version.
    pub(crate) fn entry(
        &self,
        version: i64,
        entry_id: &str,
    ) -> Result<Option<ListEntry>, ComplianceError> {
        let row = self.sql.run(|db| {
            db.query_opt(
                "SELECT entries FROM compliance_watchlists WHERE version = $1",
                sql_params![version],
            )
        })?;
        let Some(row) = row else { return Ok(None) };
        let entries: Vec<ListEntry> = serde_json::from_str(&row.text(0)?)
            .map_err(|e| StoreError::Corrupt(format!("watch list version {version}: {e}")))?;
        Ok(entries.into_iter().find(|e| e.entry_id == entry_id))
    }

    fn screen_inner(
        &self,
        party: Party<'_>,
        name: &str,
        source: ScreeningSource,
    ) -> Result<Standing, ComplianceError> {
        let normalized = normalize(name);
        let Some(list) = self.active()?.filter(|_| !normalized.is_empty()) else {
            return Ok(self.sql.run(|db| self.standing(db, party.kind, party.id))?);
        };
        let name_index = self
            .vault
            .keyed_hash(SCREENED_NAME_CONTEXT, &normalized.canonical());
        let found = self.matches_in(&list, &normalized, party.kind);
        // Encrypted before the transaction: only when there is something to keep.
        let name_enc = if found.is_empty() {
            Vec::new()
        } else {
            self.vault.encrypt_text(SCREENED_NAME_CONTEXT, name)?
        };
        let threshold = i64::from(self.threshold_bps());
        let now = self.now();
        self.sql.transaction(|db| -> Result<Standing, ComplianceError> {
            let first = db.execute(
                "INSERT INTO screening_runs (party_kind, party_id, list_version, name_index, screened_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                sql_params![party.kind.as_str(), party.id, list.version, name_index.as_str(), now],
            )?;
            if first == 1 {
                for hit in &found {
                    let cleared_before = db
                        .query_opt(
                            "SELECT 1 FROM screening_hits WHERE party_kind = $1 AND party_id = $2 AND entry_id = $3 \
                             AND name_index = $4 AND state = 'cleared' LIMIT 1",
                            sql_params![party.kind.as_str(), party.id, hit.entry.entry_id.as_str(), name_index.as_str()],
                        )?
                        .is_some();
                    if cleared_before {
                        continue;
                    }
                    let id = random_id("hit");
                    let inserted = db.execute(
                        "INSERT INTO screening_hits (id, party_kind, party_id, customer_id, source, name_enc, name_index, list_version, \
                         entry_id, score_bps, threshold_bps, state, decided_by, decided_at, note, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', NULL, NULL, NULL, $12) ON CONFLICT DO NOTHING",
                        sql_params![
                            id.as_str(),
                            party.kind.as_str(),
                            party.id,
                            party.customer_id,
                            source.as_str(),
                            name_enc.clone(),
                            name_index.as_str(),
                            list.version,
                            hit.entry.entry_id.as_str(),
                            i64::from(hit.score_bps),
                            threshold,
                            now
                        ],
                    )?;
                    if inserted == 1 {
                        coffer_audit::append(
                            db,
                            &Entry {
                                at: now,
                                actor: ACTOR_SYSTEM,
                                action: "screening_hit_queued",
                                subject: Some(party.customer_id),
                                ip: "",
                                outcome: Outcome::Ok,
                                detail: &format!(
                                    "{id}: {} {} against {} entry {} (list v{}), score {} bps, at {}",
                                    party.kind.as_str(),
                                    party.id,
                                    hit.entry.list_source,
                                    hit.entry.entry_id,
                                    list.version,
                                    hit.score_bps,
                                    source.as_str()
                                ),
                            },
                        )?;
                    }
                }
            }
            Ok(self.standing(db, party.kind, party.id)?)
        })
    }
}

impl Screening for Screener {
    fn screen(
        &self,
        party: Party<'_>,
        name: &str,
        source: ScreeningSource,
    ) -> Result<Standing, ScreeningError> {
        self.screen_inner(party, name, source).map_err(|e| match e {
            ComplianceError::Store(e) => ScreeningError::Store(e),
            other => ScreeningError::Internal(other.to_string()),
        })
    }

    fn standing(
        &self,
        db: &mut dyn Sql,
        kind: PartyKind,
        party_id: &str,
    ) -> Result<Standing, StoreError> {
        let rows = db.query(
            "SELECT DISTINCT state FROM screening_hits WHERE party_kind = $1 AND party_id = $2 AND state IN ('pending', 'confirmed')",
            sql_params![kind.as_str(), party_id],
        )?;
        let states = rows
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if states.iter().any(|s| s == "confirmed") {
            Standing::Confirmed
        } else if states.is_empty() {
            Standing::Clear
        } else {
            Standing::UnderReview
        })
    }
}
