//! PostgreSQL targets (C1) and the consumer build check (C4, C6).

use super::*;

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

/// Where the consumer's deployed build says its database is, and what this
/// host expects (runbook C6: "the sit build was run on prd").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildCheck {
    /// The deployed properties file holding the JDBC URL.
    pub properties_file: PathBuf,
    /// Its key (`jdbc.url`).
    pub url_key: String,
    /// This host's environment (`prd`).
    pub environment: String,
    /// Text the URL must contain on this host (the environment's database host).
    pub expected_url_contains: String,
}

impl PostgresTarget {
    pub(super) fn check(&self, name: &str) -> Result<(), Invalid> {
        Name::parse("PostgreSQL target name", name).map_err(|e| format!("[postgres.{name}]: {e}"))?;
        crate::types::SqlIdent::parse(&self.schema).map_err(|e| format!("[postgres.{name}] schema: {e}"))?;
        Ok(())
    }
}
