//! Portable SQL for the domain services (identity, payments, back office):
//! one query text with `$1, $2…` placeholders, run on SQLite or PostgreSQL.
//!
//! The ledger has hand-tuned storage per backend (crates/store/src/sqlite.rs,
//! postgres.rs) because it is the hot path. Everything else is ordinary
//! OLTP where writing each query twice would only breed drift, so domain
//! stores write it once against this module, and the same black-box tests
//! run it on both backends. Values are a closed set (integers, text, bytes,
//! null): no floats can reach a column through here.

use std::collections::HashMap;

use crate::pool::Pool;
use crate::{Database, StoreError};

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Bytes(v.to_vec())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// `params![a, b, c]` for `Sql` calls.
#[macro_export]
macro_rules! sql_params {
    ($($value:expr),* $(,)?) => { &[$($crate::sql::Value::from($value)),*][..] };
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    fn at(&self, index: usize) -> Result<&Value, StoreError> {
        self.0
            .get(index)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {index}")))
    }

    /// The value as stored, to bind again as a parameter (a paging cursor).
    pub fn value(&self, index: usize) -> Result<Value, StoreError> {
        self.at(index).cloned()
    }

    pub fn int(&self, index: usize) -> Result<i64, StoreError> {
        match self.at(index)? {
            Value::Int(v) => Ok(*v),
            other => Err(StoreError::Corrupt(format!(
                "column {index}: expected an integer, found {other:?}"
            ))),
        }
    }

    pub fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        match self.at(index)? {
            Value::Null => Ok(None),
            _ => self.int(index).map(Some),
        }
    }

    pub fn text(&self, index: usize) -> Result<String, StoreError> {
        match self.at(index)? {
            Value::Text(v) => Ok(v.clone()),
            _ => Err(StoreError::Corrupt(format!(
                "column {index}: expected text"
            ))),
        }
    }

    pub fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        match self.at(index)? {
            Value::Null => Ok(None),
            _ => self.text(index).map(Some),
        }
    }

    pub fn bytes(&self, index: usize) -> Result<Vec<u8>, StoreError> {
        match self.at(index)? {
            Value::Bytes(v) => Ok(v.clone()),
            _ => Err(StoreError::Corrupt(format!(
                "column {index}: expected bytes"
            ))),
        }
    }

    pub fn opt_bytes(&self, index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.at(index)? {
            Value::Null => Ok(None),
            _ => self.bytes(index).map(Some),
        }
    }

    pub fn bool(&self, index: usize) -> Result<bool, StoreError> {
        Ok(self.int(index)? != 0)
    }
}

/// What a transaction (or a single autocommit statement) can do.
pub trait Sql {
    /// Runs a statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;

    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Corrupt(format!("no row for: {sql}")))
    }
}

/// Connections to one database for domain services.
pub struct SqlStore {
    backend: Backend,
}

enum Backend {
    Sqlite(Pool<rusqlite::Connection>),
    Postgres(Pool<PgConnection>),
}

impl SqlStore {
    /// Opens (and migrates) the database; `connections` bounds the pool.
    pub fn open(database: &Database, connections: usize) -> Result<SqlStore, StoreError> {
        database.migrate()?;
        let backend = match database {
            Database::Sqlite(path) => {
                let path = path.clone();
                Backend::Sqlite(Pool::new(
                    connections,
                    Box::new(move || crate::sqlite::open(&path)),
                ))
            }
            Database::Postgres(url) => {
                let url = url.clone();
                Backend::Postgres(Pool::new(
                    connections,
                    Box::new(move || {
                        Ok(PgConnection {
                            client: crate::postgres::connect(&url)?,
                            statements: HashMap::new(),
                        })
                    }),
                ))
            }
        };
        Ok(SqlStore { backend })
    }

    /// Runs `work` in one transaction: committed if it returns `Ok`, rolled
    /// back (nothing written) if it returns `Err`.
    pub fn transaction<T, E>(&self, work: impl FnOnce(&mut dyn Sql) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        match &self.backend {
            Backend::Sqlite(pool) => {
                let mut connection = pool.get()?;
                let transaction = connection
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(StoreError::from)?;
                let mut tx = SqliteTx(&transaction);
                let result = work(&mut tx)?;
                transaction.commit().map_err(StoreError::from)?;
                Ok(result)
            }
            Backend::Postgres(pool) => {
                let mut connection = pool.get()?;
                let PgConnection { client, statements } = &mut *connection;
                let mut transaction = client.transaction().map_err(StoreError::from)?;
                let result = work(&mut Postgres(&mut transaction, statements))?;
                transaction.commit().map_err(StoreError::from)?;
                Ok(result)
            }
        }
    }

    /// One statement or query outside an explicit transaction.
    pub fn run<T>(
        &self,
        work: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                let connection = pool.get()?;
                work(&mut SqliteTx(&connection))
            }
            Backend::Postgres(pool) => {
                let mut connection = pool.get()?;
                let PgConnection { client, statements } = &mut *connection;
                work(&mut Postgres(client, statements))
            }
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// `$1` → `?1` outside quoted strings: SQLite's numbered parameters.
fn sqlite_text(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '$' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

struct SqliteTx<'a>(&'a rusqlite::Connection);

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Bytes(v) => ValueRef::Blob(v),
        }))
    }
}

impl Sql for SqliteTx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let mut statement = self.0.prepare_cached(&sqlite_text(sql))?;
        Ok(statement.execute(rusqlite::params_from_iter(params.iter()))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        use rusqlite::types::ValueRef;
        let mut statement = self.0.prepare_cached(&sqlite_text(sql))?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
                    ValueRef::Blob(v) => Value::Bytes(v.to_vec()),
                    ValueRef::Real(_) => {
                        return Err(StoreError::Corrupt(format!(
                            "column {i} holds a floating-point value"
                        )))
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::BOOL => (*v != 0).to_sql(ty, out),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        use postgres::types::Type;
        [
            Type::INT8,
            Type::INT4,
            Type::BOOL,
            Type::TEXT,
            Type::VARCHAR,
            Type::BYTEA,
        ]
        .contains(ty)
    }

    postgres::types::to_sql_checked!();
}

fn postgres_rows(rows: Vec<postgres::Row>) -> Result<Vec<Row>, StoreError> {
    use postgres::types::Type;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let ty = column.type_();
            let value = if *ty == Type::INT8 {
                row.try_get::<_, Option<i64>>(i)?.into()
            } else if *ty == Type::INT4 {
                row.try_get::<_, Option<i32>>(i)?.map(i64::from).into()
            } else if *ty == Type::BOOL {
                row.try_get::<_, Option<bool>>(i)?.into()
            } else if *ty == Type::BYTEA {
                row.try_get::<_, Option<Vec<u8>>>(i)?.into()
            } else if *ty == Type::TEXT || *ty == Type::VARCHAR {
                row.try_get::<_, Option<String>>(i)?.into()
            } else {
                return Err(StoreError::Corrupt(format!(
                    "column {} has unsupported type {ty}",
                    column.name()
                )));
            };
            values.push(value);
        }
        out.push(Row(values));
    }
    Ok(out)
}

fn postgres_params(params: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// A pooled PostgreSQL connection with the statements it has prepared.
/// Without the cache every query is parsed, described and planned anew:
/// two network round trips and a planning pass per statement, which
/// doubled the latency a payment's risk evaluation added.
pub(crate) struct PgConnection {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

/// Distinct statements a connection keeps prepared. Statement texts are
/// written in the code, so the set is small; the bound only guards
/// against text built at run time (then the cache starts over).
const STATEMENTS_MAX: usize = 512;

struct Postgres<'a, C: postgres::GenericClient>(
    &'a mut C,
    &'a mut HashMap<String, postgres::Statement>,
);

impl<C: postgres::GenericClient> Postgres<'_, C> {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, StoreError> {
        if let Some(statement) = self.1.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.0.prepare(sql)?;
        if self.1.len() >= STATEMENTS_MAX {
            self.1.clear();
        }
        self.1.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

impl<C: postgres::GenericClient> Sql for Postgres<'_, C> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        Ok(self.0.execute(&statement, &postgres_params(params))?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        postgres_rows(self.0.query(&statement, &postgres_params(params))?)
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_text;

    #[test]
    fn placeholders_become_sqlite_numbered_parameters_outside_strings() {
        assert_eq!(
            sqlite_text("SELECT a FROM t WHERE b = $1 AND c = '$2' AND d = $12"),
            "SELECT a FROM t WHERE b = ?1 AND c = '$2' AND d = ?12"
        );
    }
}
