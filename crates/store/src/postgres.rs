//! The production backend: PostgreSQL. A batch is written with one statement
//! per table (arrays through `UNNEST`), so a commit costs a handful of round
//! trips whatever its size. Plain SQL only (no advisory locks, no extensions),
//! so PostgreSQL-wire distributed engines remain possible.

use std::sync::Arc;

use postgres::{Client, NoTls, Row, Statement};

use coffer_core::{Identifier, Timestamp};
use coffer_ledger::{Account, AuditInput, Balances, Hold, Transfer};

use crate::batch_log::{BatchLog, LogEntry};
use crate::convert::{
    self, AccountRow, HoldRow, TransferRow, ACCOUNT_COLUMNS, HOLD_COLUMNS, JOURNAL_COLUMNS,
    TRANSFER_COLUMNS,
};
use crate::logged::{Backend, Projection, Tables};
use crate::pool::Pool;
use crate::service::{stored_response, StoredKey, StoredResponse};
use crate::{EntryFilter, Head, LedgerReader, StoreError};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/postgres_0001_ledger.sql")),
    (2, include_str!("migrations/postgres_0002_service.sql")),
    (3, include_str!("migrations/postgres_0003_identity.sql")),
    (4, include_str!("migrations/postgres_0004_factors.sql")),
    (5, include_str!("migrations/postgres_0005_audit.sql")),
    (6, include_str!("migrations/postgres_0006_kyc.sql")),
    (7, include_str!("migrations/postgres_0007_profile.sql")),
    (8, include_str!("migrations/postgres_0008_staff.sql")),
    (9, include_str!("migrations/postgres_0009_cards.sql")),
    (10, include_str!("migrations/postgres_0010_passkeys.sql")),
    (
        11,
        include_str!("migrations/postgres_0011_step_up_passkeys_and_key_rotation.sql"),
    ),
    (12, include_str!("migrations/postgres_0012_funding.sql")),
    (13, include_str!("migrations/postgres_0013_ledger_log.sql")),
    (14, include_str!("migrations/postgres_0014_p2p.sql")),
    (15, include_str!("migrations/postgres_0015_merchants.sql")),
    (
        16,
        include_str!("migrations/postgres_0016_bills_fx_activity.sql"),
    ),
    (
        17,
        include_str!("migrations/postgres_0017_limit_overrides.sql"),
    ),
    (18, include_str!("migrations/postgres_0018_risk.sql")),
    (
        19,
        include_str!("migrations/postgres_0019_notifications.sql"),
    ),
    (20, include_str!("migrations/postgres_0020_compliance.sql")),
    (21, include_str!("migrations/postgres_0021_privacy.sql")),
    (22, include_str!("migrations/postgres_0022_backoffice.sql")),
    (
        24,
        include_str!("migrations/postgres_0024_payments_gaps.sql"),
    ),
    (
        25,
        include_str!("migrations/postgres_0025_support_tickets.sql"),
    ),
    (
        26,
        include_str!("migrations/postgres_0026_review_holds.sql"),
    ),
    (
        27,
        include_str!("migrations/postgres_0027_ledger_log_uncompressed.sql"),
    ),
];

pub(crate) fn connect(url: &str) -> Result<Client, StoreError> {
    Ok(Client::connect(url, NoTls)?)
}

pub fn migrate(url: &str) -> Result<i64, StoreError> {
    let mut client = connect(url)?;
    migrate_client(&mut client)
}

fn migrate_client(client: &mut Client) -> Result<i64, StoreError> {
    client.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")?;
    let supported = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    let mut transaction = client.transaction()?;
    // Two processes starting at once must not both apply a migration.
    transaction.batch_execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")?;
    let applied: std::collections::HashSet<i64> = transaction
        .query("SELECT version FROM schema_migrations", &[])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let current = applied.iter().copied().max().unwrap_or(0);
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    // Every version not yet applied, not only those above the highest:
    // migrations written on parallel branches can land out of order.
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
        transaction.batch_execute(sql)?;
        transaction.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )?;
    }
    transaction.commit()?;
    Ok(supported)
}

fn account_from_row(row: &Row) -> Result<Account, StoreError> {
    AccountRow {
        id: row.try_get(0)?,
        currency: row.try_get(1)?,
        kind: row.try_get(2)?,
        constraint: row.try_get(3)?,
        owner: row.try_get(4)?,
        status: row.try_get(5)?,
        balances: [
            row.try_get(6)?,
            row.try_get(7)?,
            row.try_get(8)?,
            row.try_get(9)?,
        ],
        opened_at: row.try_get(10)?,
        closed_at: row.try_get(11)?,
    }
    .into_account()
}

fn transfer_from_row(row: &Row) -> Result<Transfer, StoreError> {
    TransferRow {
        timestamp: row.try_get(0)?,
        id: row.try_get(1)?,
        kind: row.try_get(2)?,
        debit: row.try_get(3)?,
        credit: row.try_get(4)?,
        amount: row.try_get(5)?,
        currency: row.try_get(6)?,
        code: row.try_get(7)?,
        metadata: row.try_get(8)?,
        hold: row.try_get(9)?,
        expires_at: row.try_get(10)?,
        debit_after: [
            row.try_get(11)?,
            row.try_get(12)?,
            row.try_get(13)?,
            row.try_get(14)?,
        ],
        credit_after: [
            row.try_get(15)?,
            row.try_get(16)?,
            row.try_get(17)?,
            row.try_get(18)?,
        ],
    }
    .into_transfer()
}

fn hold_from_row(row: &Row) -> Result<Hold, StoreError> {
    HoldRow {
        id: row.try_get(0)?,
        debit: row.try_get(1)?,
        credit: row.try_get(2)?,
        amount: row.try_get(3)?,
        currency: row.try_get(4)?,
        expires_at: row.try_get(5)?,
        state: row.try_get(6)?,
        resolved_by: row.try_get(7)?,
        captured: row.try_get(8)?,
    }
    .into_hold()
}

fn ids_param(ids: &[Identifier]) -> Vec<&str> {
    ids.iter().map(Identifier::as_str).collect()
}

fn read_head(client: &mut Client) -> Result<Head, StoreError> {
    let row = client.query_opt(
        "SELECT batch, hash, last_timestamp FROM journal ORDER BY batch DESC LIMIT 1",
        &[],
    )?;
    match row {
        None => Ok(Head::default()),
        Some(row) => {
            let batch: i64 = row.try_get(0)?;
            let hash: Vec<u8> = row.try_get(1)?;
            Ok(Head {
                batch: u64::try_from(batch)
                    .map_err(|_| StoreError::Corrupt("negative batch".into()))?,
                hash: convert::hash(&hash)?,
                last_timestamp: Timestamp::from_nanos(row.try_get(2)?),
            })
        }
    }
}

struct Statements {
    insert_accounts: Statement,
    insert_transfers: Statement,
    update_accounts: Statement,
    insert_holds: Statement,
    resolve_holds: Statement,
    insert_journal: Statement,
    insert_responses: Statement,
}

pub struct PostgresTables {
    client: Client,
    statements: Statements,
    /// Every projection commit is synced (`synchronous_commit` stays on):
    /// what was projected last is durable.
    projected: u64,
}

impl PostgresTables {
    fn open(url: &str) -> Result<PostgresTables, StoreError> {
        let mut client = connect(url)?;
        migrate_client(&mut client)?;
        let statements = Statements {
            insert_accounts: client.prepare(&format!(
                "INSERT INTO accounts ({ACCOUNT_COLUMNS}) \
                 SELECT id, currency, kind, c, owner, 'open', 0, 0, 0, 0, opened_at, NULL \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
                   AS u(id, currency, kind, c, owner, opened_at)"
            ))?,
            insert_transfers: client.prepare(&format!(
                "INSERT INTO transfers ({TRANSFER_COLUMNS}) \
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
                   $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], \
                   $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[])"
            ))?,
            update_accounts: client.prepare(
                "UPDATE accounts AS a SET debits_posted = u.dp, credits_posted = u.cp, debits_pending = u.dq, \
                   credits_pending = u.cq, status = u.status, closed_at = u.closed_at \
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[]) \
                   AS u(id, dp, cp, dq, cq, status, closed_at) WHERE a.id = u.id",
            )?,
            insert_holds: client.prepare(&format!(
                "INSERT INTO holds ({HOLD_COLUMNS}) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], \
                   $5::text[], $6::bigint[], $7::text[], $8::text[], $9::bigint[])"
            ))?,
            resolve_holds: client.prepare(
                "UPDATE holds AS h SET state = u.state, resolved_by = u.resolved_by, captured = u.captured \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) AS u(id, state, resolved_by, captured) \
                 WHERE h.id = u.id",
            )?,
            insert_journal: client.prepare(&format!(
                "INSERT INTO journal ({JOURNAL_COLUMNS}) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], \
                   $4::bigint[], $5::bytea[], $6::bytea[])"
            ))?,
            insert_responses: client.prepare(
                "INSERT INTO idempotency_keys (principal, key, request_hash, status, body, created_at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[]) \
                 ON CONFLICT DO NOTHING",
            )?,
        };
        Ok(PostgresTables {
            client,
            statements,
            projected: 0,
        })
    }
}

impl Tables for PostgresTables {
    fn head(&mut self) -> Result<Head, StoreError> {
        read_head(&mut self.client)
    }

    fn pending_holds(&mut self) -> Result<Vec<Hold>, StoreError> {
        let rows = self.client.query(
            &format!(
                "SELECT {HOLD_COLUMNS} FROM holds WHERE state = 'pending' ORDER BY expires_at"
            ),
            &[],
        )?;
        rows.iter().map(hold_from_row).collect()
    }

    fn accounts(&mut self, ids: &[Identifier]) -> Result<Vec<Account>, StoreError> {
        let rows = self.client.query(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1)"),
            &[&ids_param(ids)],
        )?;
        rows.iter().map(account_from_row).collect()
    }

    fn holds(&mut self, ids: &[Identifier]) -> Result<Vec<Hold>, StoreError> {
        let rows = self.client.query(
            &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ANY($1)"),
            &[&ids_param(ids)],
        )?;
        rows.iter().map(hold_from_row).collect()
    }

    fn transfers(&mut self, ids: &[Identifier]) -> Result<Vec<Transfer>, StoreError> {
        let rows = self.client.query(
            &format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ANY($1)"),
            &[&ids_param(ids)],
        )?;
        rows.iter().map(transfer_from_row).collect()
    }

    fn transfer_count(&mut self) -> Result<u64, StoreError> {
        let count: i64 = self
            .client
            .query_one("SELECT COUNT(*) FROM transfers", &[])?
            .try_get(0)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn scan_transfer_ids(&mut self, visit: &mut dyn FnMut(&str)) -> Result<(), StoreError> {
        // A portal streams the ids in pages rather than loading them all.
        let mut transaction = self.client.transaction()?;
        let portal = transaction.bind("SELECT id FROM transfers", &[])?;
        loop {
            let rows = transaction.query_portal(&portal, 50_000)?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                visit(row.try_get::<_, &str>(0)?);
            }
        }
        transaction.commit()?;
        Ok(())
    }

    fn projected(&mut self) -> Result<u64, StoreError> {
        let seq: i64 = self
            .client
            .query_one("SELECT seq FROM ledger_projection WHERE id = 1", &[])?
            .try_get(0)?;
        u64::try_from(seq).map_err(|_| StoreError::Corrupt("negative projection point".into()))
    }

    fn durable(&mut self) -> Result<u64, StoreError> {
        Ok(self.projected)
    }

    fn project(&mut self, entries: &[Arc<LogEntry>]) -> Result<u64, StoreError> {
        let statements = &self.statements;
        let mut transaction = self.client.transaction()?;
        // The row lock serializes projectors (a second process recovering
        // beside a running engine): whoever comes second skips what is done.
        let done: i64 = transaction
            .query_one(
                "SELECT seq FROM ledger_projection WHERE id = 1 FOR UPDATE",
                &[],
            )?
            .try_get(0)?;
        let done = u64::try_from(done)
            .map_err(|_| StoreError::Corrupt("negative projection point".into()))?;
        let Some(p) = Projection::of(entries, done) else {
            self.projected = done;
            return Ok(done);
        };

        let opened = &p.opened;
        if !opened.is_empty() {
            let ids: Vec<&str> = opened.iter().map(|a| a.spec.id.as_str()).collect();
            let currencies: Vec<&str> = opened.iter().map(|a| a.spec.currency.as_str()).collect();
            let kinds: Vec<&str> = opened.iter().map(|a| a.spec.kind.as_str()).collect();
            let constraints: Vec<&str> =
                opened.iter().map(|a| a.spec.constraint.as_str()).collect();
            let owners: Vec<&str> = opened.iter().map(|a| a.spec.owner.as_str()).collect();
            let opened_at: Vec<i64> = opened.iter().map(|a| a.opened_at.as_nanos()).collect();
            transaction.execute(
                &statements.insert_accounts,
                &[&ids, &currencies, &kinds, &constraints, &owners, &opened_at],
            )?;
        }

        let transfers = &p.transfers;
        if !transfers.is_empty() {
            let timestamps: Vec<i64> = transfers.iter().map(|t| t.timestamp.as_nanos()).collect();
            let ids: Vec<&str> = transfers.iter().map(|t| t.id.as_str()).collect();
            let kinds: Vec<&str> = transfers.iter().map(|t| t.kind.as_str()).collect();
            let debits: Vec<&str> = transfers.iter().map(|t| t.debit.as_str()).collect();
            let credits: Vec<&str> = transfers.iter().map(|t| t.credit.as_str()).collect();
            let amounts: Vec<i64> = transfers.iter().map(|t| t.amount.minor_units()).collect();
            let currencies: Vec<&str> = transfers.iter().map(|t| t.currency.as_str()).collect();
            let codes: Vec<&str> = transfers.iter().map(|t| t.code.as_str()).collect();
            let metadata: Vec<Option<String>> = transfers
                .iter()
                .map(|t| convert::metadata_json(&t.metadata))
                .collect();
            let holds: Vec<Option<&str>> = transfers
                .iter()
                .map(|t| t.hold.as_ref().map(Identifier::as_str))
                .collect();
            let expires: Vec<Option<i64>> = transfers
                .iter()
                .map(|t| t.expires_at.map(Timestamp::as_nanos))
                .collect();
            let column =
                |f: fn(&Transfer) -> i64| -> Vec<i64> { transfers.iter().map(|t| f(t)).collect() };
            let (d0, d1, d2, d3) = (
                column(|t| t.debit_after.debits_posted),
                column(|t| t.debit_after.credits_posted),
                column(|t| t.debit_after.debits_pending),
                column(|t| t.debit_after.credits_pending),
            );
            let (c0, c1, c2, c3) = (
                column(|t| t.credit_after.debits_posted),
                column(|t| t.credit_after.credits_posted),
                column(|t| t.credit_after.debits_pending),
                column(|t| t.credit_after.credits_pending),
            );
            transaction.execute(
                &statements.insert_transfers,
                &[
                    &timestamps,
                    &ids,
                    &kinds,
                    &debits,
                    &credits,
                    &amounts,
                    &currencies,
                    &codes,
                    &metadata,
                    &holds,
                    &expires,
                    &d0,
                    &d1,
                    &d2,
                    &d3,
                    &c0,
                    &c1,
                    &c2,
                    &c3,
                ],
            )?;
        }

        if !p.accounts.is_empty() {
            let a = &p.accounts;
            let ids: Vec<&str> = a.iter().map(|x| x.id().as_str()).collect();
            let dp: Vec<i64> = a.iter().map(|x| x.balances.debits_posted).collect();
            let cp: Vec<i64> = a.iter().map(|x| x.balances.credits_posted).collect();
            let dq: Vec<i64> = a.iter().map(|x| x.balances.debits_pending).collect();
            let cq: Vec<i64> = a.iter().map(|x| x.balances.credits_pending).collect();
            let status: Vec<&str> = a.iter().map(|x| convert::status_str(x.status)).collect();
            let closed: Vec<Option<i64>> = a
                .iter()
                .map(|x| x.closed_at.map(Timestamp::as_nanos))
                .collect();
            transaction.execute(
                &statements.update_accounts,
                &[&ids, &dp, &cp, &dq, &cq, &status, &closed],
            )?;
        }

        let placed = &p.placed;
        if !placed.is_empty() {
            let ids: Vec<&str> = placed.iter().map(|h| h.id.as_str()).collect();
            let debits: Vec<&str> = placed.iter().map(|h| h.debit.as_str()).collect();
            let credits: Vec<&str> = placed.iter().map(|h| h.credit.as_str()).collect();
            let amounts: Vec<i64> = placed.iter().map(|h| h.amount.minor_units()).collect();
            let currencies: Vec<&str> = placed.iter().map(|h| h.currency.as_str()).collect();
            let expires: Vec<i64> = placed.iter().map(|h| h.expires_at.as_nanos()).collect();
            let states: Vec<&str> = placed.iter().map(|h| h.state.as_str()).collect();
            let resolved: Vec<Option<&str>> = placed
                .iter()
                .map(|h| h.resolved_by.as_ref().map(Identifier::as_str))
                .collect();
            let captured: Vec<Option<i64>> = placed
                .iter()
                .map(|h| h.captured.map(|a| a.minor_units()))
                .collect();
            transaction.execute(
                &statements.insert_holds,
                &[
                    &ids,
                    &debits,
                    &credits,
                    &amounts,
                    &currencies,
                    &expires,
                    &states,
                    &resolved,
                    &captured,
                ],
            )?;
        }
        let resolved = &p.resolved;
        if !resolved.is_empty() {
            let ids: Vec<&str> = resolved.iter().map(|h| h.id.as_str()).collect();
            let states: Vec<&str> = resolved.iter().map(|h| h.state.as_str()).collect();
            let by: Vec<Option<&str>> = resolved
                .iter()
                .map(|h| h.resolved_by.as_ref().map(Identifier::as_str))
                .collect();
            let captured: Vec<Option<i64>> = resolved
                .iter()
                .map(|h| h.captured.map(|a| a.minor_units()))
                .collect();
            transaction.execute(&statements.resolve_holds, &[&ids, &states, &by, &captured])?;
        }

        let journal = &p.journal;
        let batches = journal
            .iter()
            .map(|j| i64::try_from(j.batch))
            .collect::<Result<Vec<i64>, _>>()
            .map_err(|_| StoreError::Corrupt("batch number overflow".into()))?;
        let firsts: Vec<i64> = journal
            .iter()
            .map(|j| j.first_timestamp.as_nanos())
            .collect();
        let lasts: Vec<i64> = journal
            .iter()
            .map(|j| j.last_timestamp.as_nanos())
            .collect();
        let counts: Vec<i64> = journal.iter().map(|j| j.event_count as i64).collect();
        let previous: Vec<&[u8]> = journal.iter().map(|j| &j.previous_hash[..]).collect();
        let hashes: Vec<&[u8]> = journal.iter().map(|j| &j.hash[..]).collect();
        if !journal.is_empty() {
            transaction.execute(
                &statements.insert_journal,
                &[&batches, &firsts, &lasts, &counts, &previous, &hashes],
            )?;
        }
        let responses: Vec<StoredResponse> = p.responses.iter().map(|r| (*r).clone()).collect();
        insert_responses(&mut transaction, &statements.insert_responses, &responses)?;
        let through = i64::try_from(p.through)
            .map_err(|_| StoreError::Corrupt("log sequence overflow".into()))?;
        transaction.execute(
            "UPDATE ledger_projection SET seq = $1 WHERE id = 1",
            &[&through],
        )?;
        transaction.commit()?;
        self.projected = p.through;
        Ok(p.through)
    }

    fn responses(&mut self, keys: &[(String, String)]) -> Result<Vec<StoredKey>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let principals: Vec<&str> = keys.iter().map(|(p, _)| p.as_str()).collect();
        let names: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
        let rows = self.client.query(
            // A join from the (small) list of keys, so each is one primary-key
            // probe; `(principal, key) IN (…)` let the planner scan the table.
            "SELECT i.principal, i.key, i.request_hash, i.status, i.body \
             FROM UNNEST($1::text[], $2::text[]) AS k(principal, key) \
             JOIN idempotency_keys i ON i.principal = k.principal AND i.key = k.key",
            &[&principals, &names],
        )?;
        Ok(rows
            .iter()
            .map(|r| StoredKey {
                principal: r.get(0),
                key: r.get(1),
                request_hash: r.get(2),
                response: stored_response(r.get(3), r.get(4)),
            })
            .collect())
    }
}

/// The batch log of a PostgreSQL database: a table beside the ledger's
/// (PostgreSQL locks rows, not the database, so the projector's transactions
/// never hold up an append).
struct PostgresLog {
    client: Client,
    append: Statement,
    prune: Statement,
}

impl PostgresLog {
    fn open(url: &str) -> Result<PostgresLog, StoreError> {
        let mut client = connect(url)?;
        let append = client.prepare("INSERT INTO ledger_log (seq, record) VALUES ($1, $2)")?;
        let prune = client.prepare("DELETE FROM ledger_log WHERE seq <= $1")?;
        Ok(PostgresLog {
            client,
            append,
            prune,
        })
    }
}

fn seq_param(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt("log sequence overflow".into()))
}

impl BatchLog for PostgresLog {
    fn last_seq(&mut self) -> Result<u64, StoreError> {
        let seq: i64 = self
            .client
            .query_one("SELECT COALESCE(MAX(seq), 0) FROM ledger_log", &[])?
            .try_get(0)?;
        u64::try_from(seq).map_err(|_| StoreError::Corrupt("negative log sequence".into()))
    }

    fn append(&mut self, seq: u64, record: &[u8], prune_through: u64) -> Result<(), StoreError> {
        let mut transaction = self.client.transaction()?;
        transaction.execute(&self.append, &[&seq_param(seq)?, &record])?;
        if prune_through > 0 {
            transaction.execute(&self.prune, &[&seq_param(prune_through)?])?;
        }
        transaction.commit()?;
        Ok(())
    }

    fn read_after(&mut self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let rows = self.client.query(
            "SELECT seq, record FROM ledger_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&seq_param(after)?, &(limit as i64)],
        )?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get(0)?;
                Ok((
                    u64::try_from(seq)
                        .map_err(|_| StoreError::Corrupt("negative log sequence".into()))?,
                    row.try_get(1)?,
                ))
            })
            .collect()
    }
}

/// The PostgreSQL pieces of the logged writer.
pub(crate) struct PostgresBackend {
    url: String,
}

impl PostgresBackend {
    pub(crate) fn new(url: &str) -> Result<PostgresBackend, StoreError> {
        migrate(url)?;
        Ok(PostgresBackend {
            url: url.to_string(),
        })
    }
}

pub(crate) fn location(url: &str) -> String {
    format!("postgres:{url}")
}

impl Backend for PostgresBackend {
    fn location(&self) -> String {
        location(&self.url)
    }

    fn open_log(&self) -> Result<Box<dyn BatchLog>, StoreError> {
        Ok(Box::new(PostgresLog::open(&self.url)?))
    }

    fn open_tables(&self, _checkpoints: bool) -> Result<Box<dyn Tables>, StoreError> {
        Ok(Box::new(PostgresTables::open(&self.url)?))
    }
}

/// A key already stored belongs to a request that won a race on another
/// process; its response stays the one the client saw first.
fn insert_responses(
    transaction: &mut postgres::Transaction<'_>,
    statement: &Statement,
    responses: &[StoredResponse],
) -> Result<(), StoreError> {
    if responses.is_empty() {
        return Ok(());
    }
    let principals: Vec<&str> = responses.iter().map(|r| r.principal.as_str()).collect();
    let keys: Vec<&str> = responses.iter().map(|r| r.key.as_str()).collect();
    let hashes: Vec<&str> = responses.iter().map(|r| r.request_hash.as_str()).collect();
    let statuses: Vec<i64> = responses.iter().map(|r| i64::from(r.status)).collect();
    let bodies: Vec<&str> = responses.iter().map(|r| r.body.as_str()).collect();
    let created: Vec<i64> = responses.iter().map(|r| r.created_at).collect();
    transaction.execute(
        statement,
        &[&principals, &keys, &hashes, &statuses, &bodies, &created],
    )?;
    Ok(())
}

pub struct PostgresReader {
    pool: Pool<Client>,
}

impl PostgresReader {
    pub fn open(url: &str, connections: usize) -> Result<PostgresReader, StoreError> {
        migrate(url)?;
        let url = url.to_string();
        Ok(PostgresReader {
            pool: Pool::new(connections, Box::new(move || connect(&url))),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.pool.get()?;
        if client.is_closed() {
            client.discard();
            drop(client);
            client = self.pool.get()?;
        }
        let result = f(&mut client);
        if matches!(&result, Err(StoreError::Postgres(e)) if e.is_closed()) {
            client.discard();
        }
        result
    }
}

impl LedgerReader for PostgresReader {
    fn pool_usage(&self) -> (usize, usize) {
        self.pool.usage()
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| {
            let version: i64 = c
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    &[],
                )?
                .try_get(0)?;
            if version < MIGRATIONS.last().map_or(0, |(v, _)| *v) {
                return Err(StoreError::Corrupt("migrations not applied".into()));
            }
            Ok(())
        })
    }

    fn account(&self, id: &Identifier) -> Result<Option<Account>, StoreError> {
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
                &[&id.as_str()],
            )?
            .as_ref()
            .map(account_from_row)
            .transpose()
        })
    }

    fn transfer(&self, id: &Identifier) -> Result<Option<Transfer>, StoreError> {
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = $1"),
                &[&id.as_str()],
            )?
            .as_ref()
            .map(transfer_from_row)
            .transpose()
        })
    }

    fn hold(&self, id: &Identifier) -> Result<Option<Hold>, StoreError> {
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = $1"),
                &[&id.as_str()],
            )?
            .as_ref()
            .map(hold_from_row)
            .transpose()
        })
    }

    fn balances_as_of(
        &self,
        id: &Identifier,
        at: Timestamp,
    ) -> Result<Option<Balances>, StoreError> {
        self.with(|c| {
            if c.query_opt("SELECT 1 FROM accounts WHERE id = $1", &[&id.as_str()])?.is_none() {
                return Ok(None);
            }
            let sql = "SELECT * FROM ( \
                 (SELECT timestamp, debit_debits_posted, debit_credits_posted, debit_debits_pending, debit_credits_pending \
                   FROM transfers WHERE debit_account_id = $1 AND timestamp <= $2 ORDER BY timestamp DESC LIMIT 1) \
               UNION ALL \
                 (SELECT timestamp, credit_debits_posted, credit_credits_posted, credit_debits_pending, credit_credits_pending \
                   FROM transfers WHERE credit_account_id = $1 AND timestamp <= $2 ORDER BY timestamp DESC LIMIT 1)) AS latest \
               ORDER BY timestamp DESC LIMIT 1";
            match c.query_opt(sql, &[&id.as_str(), &at.as_nanos()])? {
                None => Ok(Some(Balances::default())),
                Some(r) => convert::balances([r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?]).map(Some),
            }
        })
    }

    fn entries(&self, id: &Identifier, filter: &EntryFilter) -> Result<Vec<Transfer>, StoreError> {
        self.with(|c| {
            let lower = filter.after.map_or(i64::MIN, Timestamp::as_nanos).max(filter.from.map_or(i64::MIN, |t| t.as_nanos().saturating_sub(1)));
            let upper = filter.until.map_or(i64::MAX, Timestamp::as_nanos);
            let limit = filter.limit.clamp(1, crate::ENTRY_ROWS_MAX) as i64;
            let code = filter.code.as_ref().map(|c| c.as_str());
            let sql = format!(
                "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE timestamp IN ( \
                   SELECT timestamp FROM transfers WHERE debit_account_id = $1 AND timestamp > $2 AND timestamp <= $3 \
                   UNION SELECT timestamp FROM transfers WHERE credit_account_id = $1 AND timestamp > $2 AND timestamp <= $3) \
                 AND ($4::text IS NULL OR code = $4) ORDER BY timestamp LIMIT $5"
            );
            let rows = c.query(&sql, &[&id.as_str(), &lower, &upper, &code, &limit])?;
            rows.iter().map(transfer_from_row).collect()
        })
    }

    fn audit_input(&self) -> Result<AuditInput, StoreError> {
        self.with(|c| {
            let accounts = c
                .query(
                    &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY opened_at"),
                    &[],
                )?
                .iter()
                .map(account_from_row)
                .collect::<Result<_, _>>()?;
            let holds = c
                .query(&format!("SELECT {HOLD_COLUMNS} FROM holds"), &[])?
                .iter()
                .map(hold_from_row)
                .collect::<Result<_, _>>()?;
            let journal = c
                .query(
                    &format!("SELECT {JOURNAL_COLUMNS} FROM journal ORDER BY batch"),
                    &[],
                )?
                .iter()
                .map(|r| {
                    let previous: Vec<u8> = r.try_get(4)?;
                    let hash: Vec<u8> = r.try_get(5)?;
                    convert::journal_entry(
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        &previous,
                        &hash,
                    )
                })
                .collect::<Result<_, _>>()?;
            Ok(AuditInput {
                accounts,
                holds,
                journal,
            })
        })
    }

    fn scan_transfers(&self, visit: &mut dyn FnMut(Transfer)) -> Result<(), StoreError> {
        self.with(|c| {
            // A portal streams rows in pages rather than loading every transfer.
            let mut transaction = c.transaction()?;
            let portal = transaction.bind(
                &format!("SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY timestamp"),
                &[],
            )?;
            loop {
                let rows = transaction.query_portal(&portal, 10_000)?;
                if rows.is_empty() {
                    break;
                }
                for row in &rows {
                    visit(transfer_from_row(row)?);
                }
            }
            transaction.commit()?;
            Ok(())
        })
    }

    fn counts(&self) -> Result<(u64, u64), StoreError> {
        self.with(|c| {
            let accounts: i64 = c
                .query_one("SELECT COUNT(*) FROM accounts", &[])?
                .try_get(0)?;
            let transfers: i64 = c
                .query_one("SELECT COUNT(*) FROM transfers", &[])?
                .try_get(0)?;
            Ok((accounts as u64, transfers as u64))
        })
    }
}
