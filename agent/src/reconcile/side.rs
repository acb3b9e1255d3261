//! One side of a comparison: a connection to the MySQL source or to a
//! PostgreSQL target, the queries it is asked (values always as
//! parameters), and the answers as plain cells.
//!
//! Each side reads in one read-only snapshot per pass, with a statement
//! timeout, so a comparison sees each database at one moment and never
//! waits on a busy server without a bound. The agent's users need only
//! `SELECT`.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::canonical::Dialect;
use crate::clients::mysql::MysqlSource;
use crate::clients::postgres::{describe, PostgresTarget};

/// A value passed to a query.
#[derive(Debug, Clone)]
pub enum Param {
    Int(i64),
    Text(String),
}

/// A query in one dialect, its values apart from its text.
#[derive(Debug, Clone)]
pub struct Query {
    pub dialect: Dialect,
    pub sql: String,
    pub params: Vec<Param>,
}

impl Query {
    pub fn new(dialect: Dialect) -> Query {
        Query { dialect, sql: String::new(), params: Vec::new() }
    }

    pub fn push(&mut self, sql: &str) -> &mut Query {
        self.sql.push_str(sql);
        self
    }

    /// The placeholder for one more value.
    pub fn param(&mut self, p: Param) -> String {
        let cast = match &p {
            Param::Int(_) => "bigint",
            Param::Text(_) => "text",
        };
        self.params.push(p);
        match self.dialect {
            Dialect::Mysql => "?".into(),
            Dialect::Postgres => format!("${}::{cast}", self.params.len()),
        }
    }

    /// `expr IN (…)` over integers, each a parameter.
    pub fn in_list(&mut self, expr: &str, values: &[i64]) -> String {
        let list: Vec<String> = values.iter().map(|v| self.param(Param::Int(*v))).collect();
        format!("{expr} IN ({})", list.join(", "))
    }
}

/// The rows of an answer.
pub type Rows = Vec<Vec<Cell>>;

/// One cell of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

impl Cell {
    pub fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(i) => Some(*i),
            Cell::Text(t) => t.parse().ok(),
            Cell::Null => None,
        }
    }

    pub fn text(&self) -> String {
        match self {
            Cell::Int(i) => i.to_string(),
            Cell::Text(t) => t.clone(),
            Cell::Null => String::new(),
        }
    }
}

/// A connection to one database.
pub enum Side {
    Mysql {
        rt: tokio::runtime::Runtime,
        conn: mysql_async::Conn,
        timeout: Duration,
    },
    /// `snapshot`: a read-only transaction is open (ended before the next).
    Postgres {
        client: Box<postgres::Client>,
        snapshot: bool,
    },
}

impl Side {
    pub fn mysql(source: &MysqlSource, timeout: Duration) -> Result<Side, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a runtime: {e}"))?;
        let mut conn = rt.block_on(crate::clients::mysql::connect(source)).map_err(|e| e.to_string())?;
        rt.block_on(async {
            conn.query_drop("SET NAMES utf8mb4").await?;
            // MariaDB counts in seconds, MySQL in milliseconds; each ignores the other's name.
            let _ = conn.query_drop(format!("SET SESSION max_statement_time = {}", timeout.as_secs())).await;
            let _ = conn.query_drop(format!("SET SESSION max_execution_time = {}", timeout.as_millis())).await;
            Ok::<_, mysql_async::Error>(())
        })
        .map_err(|e| format!("setting up the session: {e}"))?;
        Ok(Side::Mysql { rt, conn, timeout })
    }

    pub fn postgres(name: &str, target: &PostgresTarget, timeout: Duration) -> Result<Side, String> {
        let mut client = crate::clients::postgres::connect(name, target).map_err(|e| e.to_string())?;
        client
            .batch_execute(&format!("SET statement_timeout = {}", timeout.as_millis()))
            .map_err(|e| format!("setting statement_timeout: {e}"))?;
        let encoding: String =
            client.query_one("SHOW server_encoding", &[]).map_err(|e| format!("reading server_encoding: {e}"))?.get(0);
        if encoding != "UTF8" {
            return Err(format!("the database's encoding is {encoding}; text is compared as UTF-8 only"));
        }
        Ok(Side::Postgres { client: Box::new(client), snapshot: false })
    }

    /// Starts a read-only snapshot (ending the one before).
    pub fn snapshot(&mut self) -> Result<(), String> {
        match self {
            Side::Mysql { rt, conn, .. } => rt
                .block_on(async {
                    conn.query_drop("COMMIT").await?;
                    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await
                })
                .map_err(|e| format!("starting a snapshot: {e}")),
            Side::Postgres { client, snapshot } => {
                let end = if *snapshot { "COMMIT; " } else { "" };
                client
                    .batch_execute(&format!("{end}BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
                    .map_err(|e| format!("starting a snapshot: {e}"))?;
                *snapshot = true;
                Ok(())
            }
        }
    }

    /// Runs statements without parameters on a target (transactions).
    pub fn execute_batch(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Side::Postgres { client, .. } => client.batch_execute(sql).map_err(|e| describe(&e)),
            Side::Mysql { .. } => Err("the MySQL sources are only read".into()),
        }
    }

    /// Runs a writing statement on a target; the rows it touched.
    pub fn execute(&mut self, q: &Query) -> Result<u64, String> {
        let Side::Postgres { client, .. } = self else {
            return Err("the MySQL sources are only read".into());
        };
        let params = pg_params(q);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params.iter().map(|b| b.as_ref()).collect();
        client.execute(q.sql.as_str(), &refs).map_err(|e| describe(&e))
    }

    pub fn fetch(&mut self, q: &Query) -> Result<Rows, String> {
        match self {
            Side::Mysql { rt, conn, timeout } => {
                let params: Vec<mysql_async::Value> = q
                    .params
                    .iter()
                    .map(|p| match p {
                        Param::Int(i) => mysql_async::Value::Int(*i),
                        Param::Text(t) => mysql_async::Value::Bytes(t.clone().into_bytes()),
                    })
                    .collect();
                let bound = *timeout + Duration::from_secs(10);
                let rows: Vec<mysql_async::Row> = rt
                    .block_on(async { tokio::time::timeout(bound, conn.exec(q.sql.as_str(), params)).await })
                    .map_err(|_| format!("no answer within {} s", bound.as_secs()))?
                    .map_err(|e| e.to_string())?;
                Ok(rows.into_iter().map(mysql_cells).collect())
            }
            Side::Postgres { client, .. } => {
                let params = pg_params(q);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params.iter().map(|b| b.as_ref()).collect();
                let rows = client.query(q.sql.as_str(), &refs).map_err(|e| describe(&e))?;
                rows.iter().map(pg_cells).collect()
            }
        }
    }
}

fn pg_params(q: &Query) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    q.params
        .iter()
        .map(|p| -> Box<dyn postgres::types::ToSql + Sync> {
            match p {
                Param::Int(i) => Box::new(*i),
                Param::Text(t) => Box::new(t.clone()),
            }
        })
        .collect()
}

fn mysql_cells(row: mysql_async::Row) -> Vec<Cell> {
    row.unwrap()
        .into_iter()
        .map(|v| match v {
            mysql_async::Value::NULL => Cell::Null,
            mysql_async::Value::Int(i) => Cell::Int(i),
            // Hashes are 60 bits; nothing larger is asked for as an integer.
            mysql_async::Value::UInt(u) => i64::try_from(u).map_or_else(|_| Cell::Text(u.to_string()), Cell::Int),
            mysql_async::Value::Bytes(b) => Cell::Text(String::from_utf8_lossy(&b).into_owned()),
            other => Cell::Text(other.as_sql(true)),
        })
        .collect()
}

fn pg_cells(row: &postgres::Row) -> Result<Vec<Cell>, String> {
    use postgres::types::Type;
    (0..row.len())
        .map(|i| {
            let ty = row.columns()[i].type_();
            let cell = if *ty == Type::INT8 {
                row.try_get::<_, Option<i64>>(i).map(|v| v.map_or(Cell::Null, Cell::Int))
            } else if *ty == Type::INT4 {
                row.try_get::<_, Option<i32>>(i).map(|v| v.map_or(Cell::Null, |v| Cell::Int(v.into())))
            } else {
                row.try_get::<_, Option<String>>(i).map(|v| v.map_or(Cell::Null, Cell::Text))
            };
            cell.map_err(|e| format!("reading column {i} of an answer: {e}"))
        })
        .collect()
}

/// Runs one query on each side at the same time.
pub fn both(
    source: &mut Side,
    target: &mut Side,
    on_source: &Query,
    on_target: &Query,
) -> (Result<Rows, String>, Result<Rows, String>) {
    std::thread::scope(|s| {
        let mysql = s.spawn(|| source.fetch(on_source));
        let pg = target.fetch(on_target);
        (mysql.join().unwrap_or_else(|_| Err("the query thread panicked".into())), pg)
    })
}
