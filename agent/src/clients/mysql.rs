//! Reading a column's definition from the MySQL sources (runbook C1), and
//! mapping it to PostgreSQL.
//!
//! Read-only: the agent only queries `information_schema.COLUMNS`.
//!
//! The mapping, MySQL → PostgreSQL (as `format_type` prints it, so a verify
//! can compare exactly):
//!
//! | MySQL | PostgreSQL | why |
//! |---|---|---|
//! | `tinyint(1)` | `smallint` | MySQL's "boolean" holds any of -128..127; the consumer writes integers |
//! | `tinyint`, `tinyint unsigned`, `smallint` | `smallint` | |
//! | `smallint unsigned`, `mediumint` (±unsigned), `int` | `integer` | |
//! | `int unsigned`, `bigint` | `bigint` | |
//! | `bigint unsigned` | `numeric(20,0)` | no unsigned 64-bit type |
//! | `decimal(p,s)` / `numeric(p,s)` | `numeric(p,s)` | |
//! | `float` / `double` | `real` / `double precision` | |
//! | `bit(1)` / `bit(n)` | `boolean` / `bit(n)` | |
//! | `char(n)` / `varchar(n)` | `character(n)` / `character varying(n)` | |
//! | `tinytext` … `longtext` | `text` | |
//! | `enum(…)`, `set(…)` | `text` | values are not carried over as a constraint |
//! | `binary`, `varbinary`, `*blob` | `bytea` | |
//! | `date`, `year` | `date`, `smallint` | |
//! | `time[(n)]` | `time[(n)] without time zone` | |
//! | `datetime[(n)]`, `timestamp[(n)]` | `timestamp[(n)] without time zone` | the consumer writes local wall-clock values |
//! | `json` | `jsonb` | |
//!
//! Anything else is refused: a person adds that column. A `NOT NULL`
//! column is added as `NOT NULL` only with a default; without one it is
//! added as nullable (existing rows would violate it), and the preview says so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde::Deserialize;

use crate::types::Invalid;
use crate::types::Name;
use crate::types::SqlIdent;

/// A column as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// The `[mysql.NAME]` it was found in, and its schema.
    pub source: String,
    pub schema: String,
    /// `COLUMN_TYPE`, e.g. `int(10) unsigned`, `varchar(255)`.
    pub column_type: String,
    pub nullable: bool,
    /// `COLUMN_DEFAULT` as the server reports it (MariaDB quotes strings).
    pub default: Option<String>,
}

/// A column definition ready for `ALTER TABLE … ADD COLUMN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgColumn {
    /// As `format_type` prints it.
    pub type_sql: String,
    pub not_null: bool,
    pub default_sql: Option<String>,
    /// What a person should know about the mapping.
    pub notes: Vec<String>,
}

/// Finds `table.column` in the schemas of every MySQL source (`[mysql.NAME]`).
pub fn find_column(
    sources: &BTreeMap<String, MysqlSource>,
    table: &SqlIdent,
    column: &SqlIdent,
) -> Result<Vec<ColumnDef>, MysqlError> {
    if sources.is_empty() {
        return Err(MysqlError::NoSources);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(MysqlError::Runtime)?;
    let mut found = Vec::new();
    for (name, source) in sources {
        let rows = rt.block_on(query_source(source, table, column)).map_err(MysqlError::of(name, source))?;
        for (schema, column_type, nullable, default) in rows {
            if source.schemas.contains(&schema) {
                found.push(ColumnDef {
                    source: name.clone(),
                    schema,
                    column_type,
                    nullable: nullable == "YES",
                    default,
                });
            }
        }
    }
    Ok(found)
}

type Row = (String, String, String, Option<String>);

/// A MySQL source could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    #[error("no [mysql.NAME] sources are configured")]
    NoSources,
    #[error("starting a runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("reading password file {}: {source}", .path.display())]
    Password { path: std::path::PathBuf, source: std::io::Error },
    #[error("connecting timed out after 10 s")]
    ConnectTimeout,
    #[error("connecting: {0}")]
    Connect(#[source] mysql_async::Error),
    #[error("{doing}: {source}")]
    Query { doing: String, source: mysql_async::Error },
    #[error("SHOW BINARY LOGS without a name")]
    NoBinlogName,
    #[error("binlog {0} has no format-description event")]
    NoFormatDescription(String),
    #[error("[mysql.{0}] has no binlogs (is log_bin on?)")]
    NoBinlogs(String),
    /// Which source: `[mysql.NAME] host:port: …`.
    #[error("[mysql.{name}] {host}:{port}: {source}")]
    Source { name: String, host: String, port: u16, source: Box<MysqlError> },
}

impl MysqlError {
    fn of(name: &str, source: &MysqlSource) -> impl FnOnce(MysqlError) -> MysqlError {
        let (name, host, port) = (name.to_string(), source.host.clone(), source.port);
        move |e| MysqlError::Source { name, host, port, source: Box::new(e) }
    }
}

fn query(doing: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> MysqlError {
    let doing = doing.into();
    move |source| MysqlError::Query { doing, source }
}

/// A MySQL type with no safe mapping to PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MySQL type {0:?} has no mapping here; a person must add this column")]
pub struct Unmappable(pub String);

pub(crate) async fn connect(source: &MysqlSource) -> Result<mysql_async::Conn, MysqlError> {
    let password = match &source.password_file {
        Some(p) => Some(
            crate::fsutil::read_foreign(p)
                .map_err(|e| MysqlError::Password { path: p.clone(), source: e })?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        ),
        None => None,
    };
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(source.host.clone())
        .tcp_port(source.port)
        .user(Some(source.user.clone()))
        .pass(password)
        .prefer_socket(false);
    tokio::time::timeout(Duration::from_secs(10), mysql_async::Conn::new(opts))
        .await
        .map_err(|_| MysqlError::ConnectTimeout)?
        .map_err(MysqlError::Connect)
}

async fn query_source(source: &MysqlSource, table: &SqlIdent, column: &SqlIdent) -> Result<Vec<Row>, MysqlError> {
    let mut conn = connect(source).await?;
    let rows: Vec<Row> = conn
        .exec(
            "SELECT TABLE_SCHEMA, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT FROM information_schema.COLUMNS \
             WHERE TABLE_NAME = ? AND COLUMN_NAME = ? ORDER BY TABLE_SCHEMA",
            (table.as_str(), column.as_str()),
        )
        .await
        .map_err(query("querying information_schema"))?;
    let _ = conn.disconnect().await;
    Ok(rows)
}

/// One binary log of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binlog {
    pub name: String,
    pub size: u64,
    /// When the file was created (its format-description event), ms.
    pub created_ms: i64,
}

/// The source's binlogs, oldest first, each with its creation time read
/// through the replication protocol (the user needs REPLICATION SLAVE;
/// `SHOW BINARY LOGS` has no times).
pub fn list_binlogs(name: &str, source: &MysqlSource) -> Result<Vec<Binlog>, MysqlError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(MysqlError::Runtime)?;
    rt.block_on(binlogs(source)).map_err(MysqlError::of(name, source))
}

async fn binlogs(source: &MysqlSource) -> Result<Vec<Binlog>, MysqlError> {
    use futures_util::StreamExt;
    let mut conn = connect(source).await?;
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.map_err(query("SHOW BINARY LOGS"))?;
    let _ = conn.disconnect().await;
    let mut out = Vec::with_capacity(rows.len());
    // A replica id of our own, far from real servers'.
    let server_id = 3_000_000_000 + std::process::id() % 1_000_000;
    for row in rows {
        let name: String = row.get(0).ok_or(MysqlError::NoBinlogName)?;
        let size: u64 = row.get(1).unwrap_or(0);
        let conn = connect(source).await?;
        let request = mysql_async::BinlogStreamRequest::new(server_id)
            .with_filename(name.as_bytes())
            .with_pos(4u64)
            .with_non_blocking();
        let mut stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(query(format!("reading binlog {name} (needs REPLICATION SLAVE)")))?;
        let mut created = None;
        while let Some(event) = stream.next().await {
            let event = event.map_err(query(format!("reading binlog {name}")))?;
            if event.header().event_type() == Ok(mysql_async::binlog::EventType::FORMAT_DESCRIPTION_EVENT) {
                created = Some(event.header().timestamp() as i64 * 1000);
                break;
            }
        }
        let _ = stream.close().await;
        let created_ms = created.ok_or_else(|| MysqlError::NoFormatDescription(name.clone()))?;
        out.push(Binlog { name, size, created_ms });
    }
    Ok(out)
}

/// A `COLUMN_TYPE` taken apart: `decimal(12,2) unsigned` → base
/// `decimal`, args `12,2`, numbers `[12, 2]`, unsigned. The one reading of
/// MySQL's type text (C1's mapping, the reconcile's forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    pub base: String,
    /// What is between the parentheses, as written.
    pub args: String,
    pub nums: Vec<u32>,
    pub unsigned: bool,
}

impl ColumnType {
    pub fn parse(column_type: &str) -> ColumnType {
        let ty = column_type.to_ascii_lowercase();
        let unsigned = ty.contains(" unsigned");
        let (base, args) = match ty.find('(') {
            Some(i) => (ty[..i].trim(), ty[i + 1..].split(')').next().unwrap_or("")),
            None => (ty.split_whitespace().next().unwrap_or(""), ""),
        };
        let nums = args.split(',').filter_map(|a| a.trim().parse().ok()).collect();
        ColumnType { base: base.to_string(), args: args.to_string(), nums, unsigned }
    }
}

/// Maps a MySQL column to PostgreSQL; `Err` names a type with no safe mapping.
pub fn map_column(def: &ColumnDef) -> Result<PgColumn, Unmappable> {
    let ColumnType { base, args, nums, unsigned } = ColumnType::parse(&def.column_type);
    let base = base.as_str();
    let arg = |i: usize, default: u32| nums.get(i).copied().unwrap_or(default);
    let mut notes = Vec::new();
    let type_sql = match base {
        "tinyint" if args == "1" && !unsigned => {
            notes.push("tinyint(1) is mapped to smallint (not boolean): it holds any of -128..127".into());
            "smallint".to_string()
        }
        "tinyint" => "smallint".into(),
        "smallint" if unsigned => "integer".into(),
        "smallint" => "smallint".into(),
        "mediumint" => "integer".into(),
        "int" | "integer" if unsigned => "bigint".into(),
        "int" | "integer" => "integer".into(),
        "bigint" if unsigned => "numeric(20,0)".into(),
        "bigint" => "bigint".into(),
        "decimal" | "numeric" | "dec" | "fixed" => format!("numeric({},{})", arg(0, 10), arg(1, 0)),
        "float" => "real".into(),
        "double" | "real" => "double precision".into(),
        "bit" if arg(0, 1) == 1 => "boolean".into(),
        "bit" => format!("bit({})", arg(0, 1)),
        "char" => format!("character({})", arg(0, 1)),
        "varchar" => format!("character varying({})", arg(0, 255)),
        "tinytext" | "text" | "mediumtext" | "longtext" => "text".into(),
        "enum" | "set" => {
            notes.push(format!("{base} values are not carried over as a constraint; the column is text"));
            "text".into()
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => "bytea".into(),
        "date" => "date".into(),
        "year" => "smallint".into(),
        "time" if nums.is_empty() => "time without time zone".into(),
        "time" => format!("time({}) without time zone", arg(0, 0)),
        "datetime" | "timestamp" if nums.is_empty() => "timestamp without time zone".into(),
        "datetime" | "timestamp" => format!("timestamp({}) without time zone", arg(0, 0)),
        "json" => "jsonb".into(),
        _ => return Err(Unmappable(def.column_type.clone())),
    };
    let default_sql = map_default(def.default.as_deref(), base, &type_sql, &mut notes);
    let not_null = !def.nullable && default_sql.is_some();
    if !def.nullable && default_sql.is_none() {
        notes
            .push("MySQL declares it NOT NULL without a default; added as nullable so existing rows stay valid".into());
    }
    Ok(PgColumn { type_sql, not_null, default_sql, notes })
}

fn map_default(raw: Option<&str>, base: &str, type_sql: &str, notes: &mut Vec<String>) -> Option<String> {
    let raw = raw?.trim();
    if raw.eq_ignore_ascii_case("null") {
        return None;
    }
    let lower = raw.to_ascii_lowercase();
    if lower.starts_with("current_timestamp") || lower == "now()" {
        if type_sql.starts_with("timestamp") {
            return Some("CURRENT_TIMESTAMP".into());
        }
        notes.push(format!("default {raw} dropped: not a timestamp column here"));
        return None;
    }
    // MariaDB reports string defaults quoted ('abc', with '' inside).
    let value = match raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => raw.to_string(),
    };
    let numeric = matches!(
        base,
        "tinyint"
            | "smallint"
            | "mediumint"
            | "int"
            | "integer"
            | "bigint"
            | "decimal"
            | "numeric"
            | "dec"
            | "fixed"
            | "float"
            | "double"
            | "real"
            | "year"
    );
    if numeric {
        let ok = !value.is_empty()
            && value.trim_start_matches('-').split('.').count() <= 2
            && value.trim_start_matches('-').chars().all(|c| c.is_ascii_digit() || c == '.');
        if ok {
            return Some(value);
        }
        notes.push(format!("default {raw} dropped: not a plain number"));
        return None;
    }
    if value.chars().any(char::is_control)
        || matches!(base, "bit" | "binary" | "varbinary" | "json")
        || base.ends_with("blob")
    {
        notes.push(format!("default {raw} dropped: carried over only for text, number and time columns"));
        return None;
    }
    Some(format!("'{}'", value.replace('\'', "''")))
}

// `[mysql.NAME]` in the configuration: the MySQL sources.

/// A MySQL source database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSource {
    pub host: String,
    #[serde(default = "default_mysql_port")]
    pub port: u16,
    pub user: String,
    /// A file holding the password (kept out of the config).
    pub password_file: Option<PathBuf>,
    /// The schemas (databases) whose tables are synced.
    pub schemas: Vec<String>,
}

fn default_mysql_port() -> u16 {
    3306
}

impl MysqlSource {
    pub(crate) fn check(&self, name: &str) -> Result<(), Invalid> {
        Name::parse("MySQL source name", name).map_err(|e| format!("[mysql.{name}]: {e}"))?;
        for schema in &self.schemas {
            crate::types::SqlIdent::parse(schema).map_err(|e| format!("[mysql.{name}] schemas: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(column_type: &str, nullable: bool, default: Option<&str>) -> ColumnDef {
        ColumnDef {
            source: "s".into(),
            schema: "trade".into(),
            column_type: column_type.into(),
            nullable,
            default: default.map(String::from),
        }
    }

    fn ty(column_type: &str) -> String {
        map_column(&def(column_type, true, None)).unwrap().type_sql
    }

    #[test]
    fn trade_schema_types_map_as_documented() {
        for (mysql, pg) in [
            ("tinyint(1)", "smallint"),
            ("tinyint(4)", "smallint"),
            ("tinyint(3) unsigned", "smallint"),
            ("smallint(5) unsigned", "integer"),
            ("mediumint(8)", "integer"),
            ("int(11)", "integer"),
            ("int(10) unsigned", "bigint"),
            ("bigint(20)", "bigint"),
            ("bigint(20) unsigned", "numeric(20,0)"),
            ("decimal(12,4)", "numeric(12,4)"),
            ("decimal(10,0) unsigned", "numeric(10,0)"),
            ("float", "real"),
            ("double", "double precision"),
            ("varchar(255)", "character varying(255)"),
            ("char(32)", "character(32)"),
            ("text", "text"),
            ("longtext", "text"),
            ("datetime", "timestamp without time zone"),
            ("datetime(3)", "timestamp(3) without time zone"),
            ("timestamp(6)", "timestamp(6) without time zone"),
            ("date", "date"),
            ("time", "time without time zone"),
            ("json", "jsonb"),
            ("blob", "bytea"),
            ("varbinary(16)", "bytea"),
            ("bit(1)", "boolean"),
            ("enum('a','b')", "text"),
        ] {
            assert_eq!(ty(mysql), pg, "{mysql}");
        }
        assert!(map_column(&def("geometry", true, None)).is_err());
    }

    #[test]
    fn defaults_and_nullability() {
        let c = map_column(&def("varchar(255)", true, Some("'it''s'"))).unwrap();
        assert_eq!(c.default_sql.as_deref(), Some("'it''s'"));
        let c = map_column(&def("varchar(255)", true, Some("plain"))).unwrap();
        assert_eq!(c.default_sql.as_deref(), Some("'plain'"), "MySQL reports unquoted strings");
        let c = map_column(&def("int(11)", false, Some("0"))).unwrap();
        assert!(c.not_null);
        assert_eq!(c.default_sql.as_deref(), Some("0"));
        let c = map_column(&def("int(11)", false, None)).unwrap();
        assert!(!c.not_null && c.notes.iter().any(|n| n.contains("nullable")));
        let c = map_column(&def("datetime", true, Some("current_timestamp()"))).unwrap();
        assert_eq!(c.default_sql.as_deref(), Some("CURRENT_TIMESTAMP"));
        let c = map_column(&def("int(11)", true, Some("1; DROP TABLE x"))).unwrap();
        assert_eq!(c.default_sql, None, "a default that is not a number is dropped");
        assert_eq!(map_column(&def("varchar(5)", true, Some("NULL"))).unwrap().default_sql, None);
    }
}
