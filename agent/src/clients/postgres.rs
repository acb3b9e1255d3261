//! PostgreSQL targets: connecting (with the password kept in a file) and
//! reading the catalogue. Read-only; what changes a target is in `actions`
//! (C1's DDL) and `reconcile` (a repair).

use std::path::PathBuf;
use std::time::Duration;

use postgres::{Client, NoTls};
use serde::Deserialize;

use crate::types::Invalid;
use crate::types::Name;

/// What went wrong with one PostgreSQL target.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("[postgres.{target}] reading password file {}: {source}", path.display())]
    PasswordFile { target: String, path: std::path::PathBuf, source: std::io::Error },
    #[error("[postgres.{target}] connecting to {address}: {source}")]
    Connect { target: String, address: String, source: postgres::Error },
    #[error("table {0} does not exist there; the agent never creates tables")]
    NoTable(String),
    #[error(transparent)]
    Query(#[from] postgres::Error),
}

/// A server's error as its message and SQLSTATE; anything else as it prints.
pub fn describe(e: &postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), |d| format!("{} (SQLSTATE {})", d.message(), d.code().code()))
}

pub fn connect(name: &str, t: &PostgresTarget) -> Result<Client, PgError> {
    let mut cfg = postgres::Config::new();
    cfg.host(&t.host)
        .port(t.port)
        .user(&t.user)
        .dbname(&t.dbname)
        .connect_timeout(Duration::from_secs(t.connect_timeout_secs));
    cfg.application_name("pipemedic");
    if let Some(p) = &t.password_file {
        let pw = crate::fsutil::read_foreign(p).map_err(|source| PgError::PasswordFile {
            target: name.into(),
            path: p.clone(),
            source,
        })?;
        cfg.password(pw.trim_end_matches(['\n', '\r']));
    }
    cfg.connect(NoTls).map_err(|source| PgError::Connect {
        target: name.into(),
        address: format!("{}:{}/{}", t.host, t.port, t.dbname),
        source,
    })
}

/// The type of `schema.table.column` as `format_type` prints it, `None` if
/// the column does not exist; `Err` if the table does not.
pub fn column_type(client: &mut Client, schema: &str, table: &str, column: &str) -> Result<Option<String>, PgError> {
    let table_exists = client
        .query_opt(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&schema, &table],
        )?
        .is_some();
    if !table_exists {
        return Err(PgError::NoTable(format!("{schema}.{table}")));
    }
    let row = client
        .query_opt(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND NOT a.attisdropped",
            &[&schema, &table, &column],
        )?;
    Ok(row.map(|r| r.get::<_, String>(0)))
}

// `[postgres.NAME]` in the configuration: the target databases.

/// A PostgreSQL target database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTarget {
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    pub user: String,
    pub password_file: Option<PathBuf>,
    pub dbname: String,
    /// The schema the synced tables live in.
    #[serde(default = "default_pg_schema")]
    pub schema: String,
    /// DDL waits at most this long for a lock, so it never blocks the live
    /// consumer for long; past it the change fails cleanly (SQLSTATE 55P03).
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout_ms: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
}

fn default_pg_port() -> u16 {
    5432
}

fn default_pg_schema() -> String {
    "public".into()
}

fn default_lock_timeout() -> u64 {
    3000
}

fn default_connect_timeout() -> u64 {
    10
}

impl PostgresTarget {
    pub(crate) fn check(&self, name: &str) -> Result<(), Invalid> {
        Name::parse("PostgreSQL target name", name).map_err(|e| format!("[postgres.{name}]: {e}"))?;
        crate::types::SqlIdent::parse(&self.schema).map_err(|e| format!("[postgres.{name}] schema: {e}"))?;
        Ok(())
    }
}
