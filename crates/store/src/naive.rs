//! The naive baseline the benchmark compares against: what most ledgers do,
//! one database transaction per transfer, locking both account rows, checking
//! the balance, updating both and inserting the transfer. Same schema, same
//! durability settings, no batching. It exists only to be measured against;
//! nothing in the product uses it.

use std::sync::atomic::{AtomicI64, Ordering};

use postgres::Client;
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Database, StoreError};

/// Unique transfer timestamps across all baseline clients of this process.
static LAST_TIMESTAMP: AtomicI64 = AtomicI64::new(0);

fn next_timestamp() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let previous = LAST_TIMESTAMP.fetch_max(now, Ordering::SeqCst);
    if previous >= now {
        LAST_TIMESTAMP.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        now
    }
}

/// Creates `count` CNY wallet accounts `naive-{i}`, each credited `balance`
/// directly (the baseline's starting state, written without transfers).
pub fn setup(database: &Database, count: usize, balance: i64) -> Result<(), StoreError> {
    database.migrate()?;
    let opened = next_timestamp();
    match database {
        Database::Sqlite(path) => {
            let mut connection = crate::sqlite::open(path)?;
            let transaction = connection.transaction()?;
            {
                let mut insert = transaction.prepare(
                    "INSERT INTO accounts (id, currency, kind, balance_constraint, owner, status, credits_posted, opened_at) \
                     VALUES (?1, 'CNY', 'liability', 'no_overdraft', 'bench', 'open', ?2, ?3)",
                )?;
                for i in 0..count {
                    insert.execute(params![account_id(i), balance, opened + i as i64])?;
                }
            }
            transaction.commit()?;
        }
        Database::Postgres(url) => {
            let mut client = crate::postgres::connect(url)?;
            let ids: Vec<String> = (0..count).map(account_id).collect();
            let opened: Vec<i64> = (0..count).map(|i| opened + i as i64).collect();
            client.execute(
                "INSERT INTO accounts (id, currency, kind, balance_constraint, owner, status, credits_posted, opened_at) \
                 SELECT id, 'CNY', 'liability', 'no_overdraft', 'bench', 'open', $2, opened \
                 FROM UNNEST($1::text[], $3::bigint[]) AS t(id, opened)",
                &[&ids, &balance, &opened],
            )?;
        }
    }
    LAST_TIMESTAMP.fetch_max(opened + count as i64, Ordering::SeqCst);
    Ok(())
}

pub fn account_id(index: usize) -> String {
    format!("naive-{index}")
}

/// One client connection of the baseline.
pub enum NaiveClient {
    Sqlite(Connection),
    Postgres(Box<Client>),
}

impl NaiveClient {
    pub fn connect(database: &Database) -> Result<NaiveClient, StoreError> {
        Ok(match database {
            Database::Sqlite(path) => NaiveClient::Sqlite(crate::sqlite::open(path)?),
            Database::Postgres(url) => {
                NaiveClient::Postgres(Box::new(crate::postgres::connect(url)?))
            }
        })
    }

    /// Moves `amount` from `debit` to `credit` in its own transaction.
    /// Returns false when the debit account lacks funds (nothing written).
    pub fn transfer(
        &mut self,
        id: &str,
        debit: &str,
        credit: &str,
        amount: i64,
    ) -> Result<bool, StoreError> {
        match self {
            NaiveClient::Sqlite(connection) => {
                sqlite_transfer(connection, id, debit, credit, amount)
            }
            NaiveClient::Postgres(client) => postgres_transfer(client, id, debit, credit, amount),
        }
    }
}

fn sqlite_transfer(
    connection: &mut Connection,
    id: &str,
    debit: &str,
    credit: &str,
    amount: i64,
) -> Result<bool, StoreError> {
    // IMMEDIATE takes the write lock up front: SQLite's form of row locking.
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let read = |account: &str| -> Result<Option<[i64; 4]>, StoreError> {
        Ok(transaction
            .prepare_cached("SELECT debits_posted, credits_posted, debits_pending, credits_pending FROM accounts WHERE id = ?1")?
            .query_row(params![account], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]))
            .optional()?)
    };
    let (Some(mut d), Some(mut c)) = (read(debit)?, read(credit)?) else {
        return Ok(false);
    };
    if d[0] + amount + d[2] > d[1] {
        return Ok(false);
    }
    d[0] += amount;
    c[1] += amount;
    let mut update = transaction.prepare_cached(
        "UPDATE accounts SET debits_posted = ?2, credits_posted = ?3 WHERE id = ?1",
    )?;
    update.execute(params![debit, d[0], d[1]])?;
    update.execute(params![credit, c[0], c[1]])?;
    drop(update);
    transaction.prepare_cached(
        "INSERT INTO transfers (timestamp, id, kind, debit_account_id, credit_account_id, amount, currency, code, \
         debit_debits_posted, debit_credits_posted, debit_debits_pending, debit_credits_pending, \
         credit_debits_posted, credit_credits_posted, credit_debits_pending, credit_credits_pending) \
         VALUES (?1, ?2, 'posted', ?3, ?4, ?5, 'CNY', 'bench', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![next_timestamp(), id, debit, credit, amount, d[0], d[1], d[2], d[3], c[0], c[1], c[2], c[3]])?;
    transaction.commit()?;
    Ok(true)
}

fn postgres_transfer(
    client: &mut Client,
    id: &str,
    debit: &str,
    credit: &str,
    amount: i64,
) -> Result<bool, StoreError> {
    let mut transaction = client.transaction()?;
    // Lock both rows in id order so two opposite transfers cannot deadlock.
    let rows = transaction.query(
        "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending FROM accounts \
         WHERE id = $1 OR id = $2 ORDER BY id FOR UPDATE",
        &[&debit, &credit],
    )?;
    let find = |account: &str| -> Option<[i64; 4]> {
        rows.iter()
            .find(|r| r.get::<_, &str>(0) == account)
            .map(|r| [r.get(1), r.get(2), r.get(3), r.get(4)])
    };
    let (Some(mut d), Some(mut c)) = (find(debit), find(credit)) else {
        return Ok(false);
    };
    if d[0] + amount + d[2] > d[1] {
        return Ok(false);
    }
    d[0] += amount;
    c[1] += amount;
    transaction.execute(
        "UPDATE accounts SET debits_posted = CASE WHEN id = $1 THEN $3 ELSE debits_posted END, \
         credits_posted = CASE WHEN id = $2 THEN $4 ELSE credits_posted END WHERE id = $1 OR id = $2",
        &[&debit, &credit, &d[0], &c[1]],
    )?;
    transaction.execute(
        "INSERT INTO transfers (timestamp, id, kind, debit_account_id, credit_account_id, amount, currency, code, \
         debit_debits_posted, debit_credits_posted, debit_debits_pending, debit_credits_pending, \
         credit_debits_posted, credit_credits_posted, credit_debits_pending, credit_credits_pending) \
         VALUES ($1, $2, 'posted', $3, $4, $5, 'CNY', 'bench', $6, $7, $8, $9, $10, $11, $12, $13)",
        &[&next_timestamp(), &id, &debit, &credit, &amount, &d[0], &d[1], &d[2], &d[3], &c[0], &c[1], &c[2], &c[3]],
    )?;
    transaction.commit()?;
    Ok(true)
}
