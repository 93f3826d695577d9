//! One ledger writer per database: a lease row that `coffer serve` holds
//! (renewing it) for as long as it runs and that `coffer settle` must take
//! before it starts its own ledger writer.
//!
//! Why a lease and not "be careful": the engine keeps the ledger's state in
//! memory and its batch log beside it; a second writer on the same database
//! (a `coffer settle` beside a running `serve`) would commit against state
//! the first does not know, and both would project the same log. A lease
//! row in the database is what both processes can see, on either backend
//! (no advisory locks, so a PostgreSQL-wire engine stays possible). It
//! expires after `LEASE_TTL_SECONDS` without renewal, so a crashed holder
//! blocks the next one for at most that long.

use std::sync::Arc;

use coffer_store::sql::SqlStore;
use coffer_store::{sql_params, StoreError};

/// The lease's name: the database's ledger writer.
pub const LEDGER_WRITER: &str = "ledger_writer";
/// Without renewal a lease lapses after this long.
pub const LEASE_TTL_SECONDS: i64 = 30;
const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// Someone else holds the lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{holder} uses this database (its lease runs until {until}); stop it first, or let it do the work")]
    Held { holder: String, until: String },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// A held lease; `release` gives it up (dropping it without does not: a
/// crash must look like a crash, and the lease then lapses).
pub struct Lease {
    sql: Arc<SqlStore>,
    holder: String,
}

fn now_nanos() -> i64 {
    coffer_app::system_clock().now().as_nanos()
}

impl Lease {
    /// Takes the ledger writer lease for `holder` (a description people can
    /// act on: "coffer serve, pid 123"), or says who has it.
    pub fn acquire(sql: Arc<SqlStore>, holder: &str) -> Result<Lease, LeaseError> {
        let now = now_nanos();
        let until = now + LEASE_TTL_SECONDS * NANOS_PER_SECOND;
        let taken = sql.transaction(|db| -> Result<bool, StoreError> {
            let inserted = db.execute(
                "INSERT INTO process_leases (name, holder, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                sql_params![LEDGER_WRITER, holder, until],
            )?;
            if inserted == 1 {
                return Ok(true);
            }
            // One conditional update: of two takers of a lapsed lease, the
            // database lets one through.
            let updated = db.execute(
                "UPDATE process_leases SET holder = $2, expires_at = $3 WHERE name = $1 AND (holder = $2 OR expires_at <= $4)",
                sql_params![LEDGER_WRITER, holder, until, now],
            )?;
            Ok(updated == 1)
        })?;
        if taken {
            return Ok(Lease {
                sql,
                holder: holder.to_string(),
            });
        }
        let row = sql.run(|db| {
            db.query_one(
                "SELECT holder, expires_at FROM process_leases WHERE name = $1",
                sql_params![LEDGER_WRITER],
            )
        })?;
        Err(LeaseError::Held {
            holder: row.text(0)?,
            until: coffer_core::Timestamp::from_nanos(row.int(1)?).to_rfc3339(),
        })
    }

    /// Extends the lease; false when it was lost (it lapsed and someone
    /// else took it).
    pub fn renew(&self) -> Result<bool, StoreError> {
        let until = now_nanos() + LEASE_TTL_SECONDS * NANOS_PER_SECOND;
        let renewed = self.sql.run(|db| {
            db.execute(
                "UPDATE process_leases SET expires_at = $3 WHERE name = $1 AND holder = $2",
                sql_params![LEDGER_WRITER, self.holder.as_str(), until],
            )
        })?;
        Ok(renewed == 1)
    }

    /// Gives the lease up at once (a clean stop).
    pub fn release(&self) -> Result<(), StoreError> {
        self.sql.run(|db| {
            db.execute(
                "DELETE FROM process_leases WHERE name = $1 AND holder = $2",
                sql_params![LEDGER_WRITER, self.holder.as_str()],
            )
        })?;
        Ok(())
    }
}

/// A holder description unique to this process.
pub fn holder(command: &str) -> String {
    format!(
        "coffer {command} (pid {}, {:08x})",
        std::process::id(),
        rand::random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_on_both_backends() {
        for db in coffer_testkit::TestDatabase::both() {
            db.database.migrate().expect("migrate");
            let sql = Arc::new(SqlStore::open(&db.database, 2).expect("sql"));
            let serve = Lease::acquire(sql.clone(), "coffer serve (pid 1)").expect("serve");
            match Lease::acquire(sql.clone(), "coffer settle (pid 2)") {
                Err(LeaseError::Held { holder, .. }) => assert_eq!(holder, "coffer serve (pid 1)"),
                other => panic!("settle beside serve: {:?}", other.map(|_| ())),
            }
            assert!(serve.renew().expect("renew"));
            serve.release().expect("release");
            let settle = Lease::acquire(sql.clone(), "coffer settle (pid 2)").expect("settle");
            assert!(Lease::acquire(sql.clone(), "coffer serve (pid 3)").is_err());
            settle.release().expect("release");
            // A lapsed lease (its holder crashed) can be taken over, and
            // the old holder learns it lost it.
            let crashed = Lease::acquire(sql.clone(), "coffer serve (pid 4)").expect("serve");
            sql.run(|db| {
                db.execute(
                    "UPDATE process_leases SET expires_at = 0 WHERE name = $1",
                    sql_params![LEDGER_WRITER],
                )
            })
            .expect("lapse");
            let next = Lease::acquire(sql.clone(), "coffer serve (pid 5)").expect("take over");
            assert!(!crashed.renew().expect("renew"));
            assert!(next.renew().expect("renew"));
        }
    }
}
