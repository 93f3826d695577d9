//! Storage for the ledger: the traits the engine and the API need, and their two
//! real implementations, SQLite (embedded default) and PostgreSQL (production).
//!
//! The traits are narrow and speak in ledger types, never rows. The writer
//! trait is synchronous on purpose: the engine runs it on one dedicated
//! thread, which is also what makes the in-memory ledger state authoritative.

pub mod batch_log;
mod convert;
mod id_filter;
mod logged;
pub mod naive;
mod overlay;
mod pool;
pub mod postgres;
pub mod service;
pub mod sql;
pub mod sqlite;
pub mod throwaway;

use std::path::PathBuf;

use coffer_core::{Code, Identifier, Timestamp};
use coffer_ledger::{
    Account, AuditInput, Balances, Hold, JournalHash, SealedBatch, Transfer, GENESIS_HASH,
};

/// Largest page any listing returns.
pub const PAGE_SIZE_MAX: usize = 500;
/// Most rows one entries read returns: a full page plus one row of look-ahead,
/// which is how a caller knows another page follows. (Clamping reads to
/// `PAGE_SIZE_MAX` lost the look-ahead of a full-size page: `limit=500` never
/// returned a `next_cursor`.)
pub const ENTRY_ROWS_MAX: usize = PAGE_SIZE_MAX + 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} is neither a sqlite: path nor a postgres:// URL")]
    BadUrl(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Unavailable(String),
    #[error("the database schema is version {found}, newer than this binary's {supported}")]
    SchemaTooNew { found: i64, supported: i64 },
}

impl StoreError {
    /// A unique (or primary key) constraint refused a row: another writer
    /// got there first.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            StoreError::Postgres(e) => {
                e.code() == Some(&::postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            _ => false,
        }
    }
}

/// Where the ledger lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    /// `postgres://…` / `postgresql://…`, `sqlite://PATH`, `sqlite:PATH`, or a bare path.
    pub fn parse(url: &str) -> Result<Database, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_string()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() || url.contains("://") && !url.starts_with("sqlite://") {
            return Err(StoreError::BadUrl(url.to_string()));
        }
        Ok(Database::Sqlite(PathBuf::from(path)))
    }

    /// The URL with any password replaced, for logs and messages.
    pub fn redacted(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("sqlite://{}", path.display()),
            Database::Postgres(url) => redact_password(url),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// Creates the schema if needed and applies pending migrations.
    pub fn migrate(&self) -> Result<i64, StoreError> {
        match self {
            Database::Sqlite(path) => sqlite::migrate(path),
            Database::Postgres(url) => postgres::migrate(url),
        }
    }

    fn backend(&self) -> Result<std::sync::Arc<dyn logged::Backend>, StoreError> {
        Ok(match self {
            Database::Sqlite(path) => std::sync::Arc::new(sqlite::SqliteBackend::new(path)?),
            Database::Postgres(url) => std::sync::Arc::new(postgres::PostgresBackend::new(url)?),
        })
    }

    /// The engine's writer: commits to the batch log, projects to the tables.
    /// Opening it first projects whatever the log holds beyond the tables.
    pub fn open_writer(&self) -> Result<Box<dyn LedgerWriter>, StoreError> {
        Ok(Box::new(logged::LoggedWriter::open(self.backend()?)?))
    }

    /// Waits until this process's writer has projected everything it
    /// committed into the tables (at once when no writer is open here).
    pub fn wait_projected(&self, timeout: std::time::Duration) -> Result<(), StoreError> {
        let location = match self {
            Database::Sqlite(path) => sqlite::location(path),
            Database::Postgres(url) => postgres::location(url),
        };
        match overlay::find(&location) {
            Some(overlay) => overlay.wait_projected(overlay.appended(), timeout),
            None => Ok(()),
        }
    }

    /// Projects committed log records the tables lack (after a crash, when no
    /// engine runs); returns the log position the tables now reach. Safe
    /// beside a running engine: each record is applied once.
    pub fn recover(&self) -> Result<u64, StoreError> {
        let backend = self.backend()?;
        let mut log = backend.open_log()?;
        let mut tables = backend.open_tables(false)?;
        logged::recover(log.as_mut(), tables.as_mut())
    }

    pub fn open_reader(
        &self,
        connections: usize,
    ) -> Result<std::sync::Arc<dyn LedgerReader>, StoreError> {
        let (inner, location): (std::sync::Arc<dyn LedgerReader>, String) = match self {
            Database::Sqlite(path) => (
                std::sync::Arc::new(sqlite::SqliteReader::open(path, connections)?),
                sqlite::location(path),
            ),
            Database::Postgres(url) => (
                std::sync::Arc::new(postgres::PostgresReader::open(url, connections)?),
                postgres::location(url),
            ),
        };
        // Sees what the engine in this process acknowledged but has not yet
        // projected into the tables.
        Ok(std::sync::Arc::new(logged::FencedReader {
            inner,
            location,
        }))
    }
}

fn redact_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let after_scheme = scheme_end + 3;
    let authority_end = url[after_scheme..]
        .find(['/', '?'])
        .map_or(url.len(), |end| after_scheme + end);
    let authority = &url[after_scheme..authority_end];
    // postgres://user:secret@host/db → postgres://user:***@host/db
    let mut redacted = match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..after_scheme],
                &authority[..colon],
                &url[after_scheme + at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    };
    // libpq also takes the password as a parameter: …/db?password=secret
    if let Some(question) = redacted.find('?') {
        let query = redacted[question + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***".to_string(),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        redacted = format!("{}?{query}", &redacted[..question]);
    }
    redacted
}

/// Where the journal stands: the last batch, its hash and the last timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub batch: u64,
    pub hash: JournalHash,
    pub last_timestamp: Timestamp,
}

impl Default for Head {
    fn default() -> Self {
        Head {
            batch: 0,
            hash: GENESIS_HASH,
            last_timestamp: Timestamp::ZERO,
        }
    }
}

/// The result of writing a sealed batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    Committed,
    /// Nothing was written: these transfer ids already exist. The engine loads
    /// them and executes the batch again (an idempotent repeat).
    Duplicates(Vec<Identifier>),
}

/// What the engine's writer thread needs. One writer per database.
pub trait LedgerWriter: Send {
    fn head(&mut self) -> Result<Head, StoreError>;
    fn pending_holds(&mut self) -> Result<Vec<Hold>, StoreError>;
    fn accounts(&mut self, ids: &[Identifier]) -> Result<Vec<Account>, StoreError>;
    fn holds(&mut self, ids: &[Identifier]) -> Result<Vec<Hold>, StoreError>;
    fn transfers(&mut self, ids: &[Identifier]) -> Result<Vec<Transfer>, StoreError>;
    /// Writes the whole batch, and the idempotent responses of the requests
    /// in it, in one durable transaction, or nothing. Takes the batch by
    /// value: the writer keeps it (until projected) without a deep copy.
    fn commit(
        &mut self,
        batch: SealedBatch,
        responses: Vec<service::StoredResponse>,
    ) -> Result<Commit, StoreError>;
    /// What is stored under these (principal, idempotency key) pairs: the
    /// writer checks them itself, in order with its commits, so a retry
    /// arriving after its first request committed always finds it.
    fn responses(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<service::StoredKey>, StoreError>;
    /// Writes responses alone, durably: requests that changed no balance (a
    /// rejection, a replay) must still answer the same way when retried.
    fn record(&mut self, responses: &[service::StoredResponse]) -> Result<(), StoreError>;
}

/// Filters for an account's statement.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    /// Only entries strictly after this timestamp (the page cursor).
    pub after: Option<Timestamp>,
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub code: Option<Code>,
    /// Rows to read, at most `ENTRY_ROWS_MAX`.
    pub limit: usize,
}

/// Reads for the API and for `verify`. Sees committed data only.
pub trait LedgerReader: Send + Sync {
    fn ping(&self) -> Result<(), StoreError>;
    fn account(&self, id: &Identifier) -> Result<Option<Account>, StoreError>;
    fn transfer(&self, id: &Identifier) -> Result<Option<Transfer>, StoreError>;
    fn hold(&self, id: &Identifier) -> Result<Option<Hold>, StoreError>;
    /// The account's totals just after the last transfer at or before `at`.
    fn balances_as_of(
        &self,
        id: &Identifier,
        at: Timestamp,
    ) -> Result<Option<Balances>, StoreError>;
    /// Transfers touching the account, oldest first.
    fn entries(&self, id: &Identifier, filter: &EntryFilter) -> Result<Vec<Transfer>, StoreError>;
    /// Everything `verify` needs but the transfers.
    fn audit_input(&self) -> Result<AuditInput, StoreError>;
    /// Every transfer in timestamp order, streamed.
    fn scan_transfers(&self, visit: &mut dyn FnMut(Transfer)) -> Result<(), StoreError>;
    fn counts(&self) -> Result<(u64, u64), StoreError>;
    /// Read pool: (connections open, connections idle).
    fn pool_usage(&self) -> (usize, usize);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_database_urls() {
        assert_eq!(
            Database::parse("sqlite://./x.db").ok(),
            Some(Database::Sqlite("./x.db".into()))
        );
        assert_eq!(
            Database::parse("sqlite:x.db").ok(),
            Some(Database::Sqlite("x.db".into()))
        );
        assert_eq!(
            Database::parse("/tmp/x.db").ok(),
            Some(Database::Sqlite("/tmp/x.db".into()))
        );
        assert!(matches!(
            Database::parse("postgres://u:p@h/db"),
            Ok(Database::Postgres(_))
        ));
        assert!(Database::parse("mysql://h/db").is_err());
        assert!(Database::parse("").is_err());
    }

    #[test]
    fn redacts_passwords() {
        let db = Database::parse("postgres://coffer:hunter2@127.0.0.1:5432/coffer").expect("url");
        assert_eq!(db.redacted(), "postgres://coffer:***@127.0.0.1:5432/coffer");
        let db = Database::parse("postgres://coffer@db/coffer?sslmode=require&password=hunter2")
            .expect("url");
        assert_eq!(
            db.redacted(),
            "postgres://coffer@db/coffer?sslmode=require&password=***"
        );
        // An `@` in the query is not the end of the user information.
        let db = Database::parse("postgres://coffer:hunter2@db/coffer?application_name=a@b")
            .expect("url");
        assert_eq!(
            db.redacted(),
            "postgres://coffer:***@db/coffer?application_name=a@b"
        );
        let db = Database::parse("postgres://db/coffer").expect("url");
        assert_eq!(db.redacted(), "postgres://db/coffer");
    }
}
