//! `postgres`: add a missing column to every target database (runbook C1:
//! "it must be added in both trade_ix and admin").
//!
//! The preview looks the column up in the MySQL sources, maps its type,
//! and for each target database shows the exact SQL, or that the column is
//! already there. Apply runs each database in its own transaction with a
//! `lock_timeout`, so DDL never blocks the live consumer for long (a busy
//! table fails cleanly with SQLSTATE 55P03), and reports per database.
//! Identifiers are validated [`SqlIdent`]s, always quoted; the type and
//! default come from the mapping, never from the log.

use serde::{Deserialize, Serialize};

use super::{Action, ActionError, Cx, Preview, Staged, Step};
use crate::actions::step::{Refusal, Risk, StepSpec};
use crate::clients::mysql::MysqlSource;
use crate::clients::mysql::{find_column, map_column, ColumnDef, PgColumn};
use crate::clients::postgres::{column_type, connect, PostgresTarget};
use crate::types::SqlIdent;

/// The family's part of the configuration: the PostgreSQL targets, and
/// the MySQL sources a missing column's definition is looked up in.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub mysql: std::collections::BTreeMap<String, MysqlSource>,
    /// `[postgres.NAME]`, by name.
    pub targets: std::collections::BTreeMap<String, PostgresTarget>,
}

/// One target's part of the plan.
struct TargetPlan {
    name: String,
    /// `None`: the column is already there.
    sql: Option<String>,
}

fn doing(table: &SqlIdent, column: &SqlIdent) -> String {
    format!("adding column {column} to table {table} in the PostgreSQL targets")
}

fn add_column_sql(schema: &SqlIdent, table: &SqlIdent, column: &SqlIdent, pg: &PgColumn) -> String {
    let mut sql = format!(
        "ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS {} {}",
        schema.quoted(),
        table.quoted(),
        column.quoted(),
        pg.type_sql
    );
    if let Some(d) = &pg.default_sql {
        sql.push_str(&format!(" DEFAULT {d}"));
    }
    if pg.not_null {
        sql.push_str(" NOT NULL");
    }
    sql
}

/// `table.column` as the MySQL sources define it.
fn mysql_column(section: &Section, table: &SqlIdent, column: &SqlIdent) -> Result<Vec<ColumnDef>, ActionError> {
    find_column(&section.mysql, table, column)
        .map_err(|e| ActionError::new(format!("looking up {table}.{column} in the MySQL sources"), e))
}

/// The column definition (from MySQL) and each target's SQL.
fn plan(section: &Section, table: &SqlIdent, column: &SqlIdent) -> Result<(String, Vec<TargetPlan>), ActionError> {
    let doing = doing(table, column);
    if section.targets.is_empty() {
        return Err(ActionError::new(doing, "no [postgres.NAME] targets are configured"));
    }
    let defs = mysql_column(section, table, column)?;
    let Some(first) = defs.first() else {
        return Err(ActionError::new(
            doing,
            format!("no configured MySQL source has a column {table}.{column}; a person must look"),
        ));
    };
    if let Some(other) = defs
        .iter()
        .find(|d| (&d.column_type, d.nullable, &d.default) != (&first.column_type, first.nullable, &first.default))
    {
        return Err(ActionError::new(
            doing,
            format!(
                "the sources disagree: {}.{} says {} but {}.{} says {}; a person must choose",
                first.source, first.schema, first.column_type, other.source, other.schema, other.column_type
            ),
        ));
    }
    let pg = map_column(first).map_err(|e| ActionError::new(&doing, e))?;
    let mut header = format!(
        "MySQL [{}] {}.{}.{}: {}{}{} -> PostgreSQL {}{}{}",
        first.source,
        first.schema,
        table,
        column,
        first.column_type,
        if first.nullable { " NULL" } else { " NOT NULL" },
        first.default.as_deref().map(|d| format!(" DEFAULT {d}")).unwrap_or_default(),
        pg.type_sql,
        pg.default_sql.as_deref().map(|d| format!(" DEFAULT {d}")).unwrap_or_default(),
        if pg.not_null { " NOT NULL" } else { "" },
    );
    for note in &pg.notes {
        header.push_str(&format!("\nnote: {note}"));
    }
    let mut targets = Vec::new();
    for (name, t) in &section.targets {
        let schema = SqlIdent::parse(&t.schema).map_err(|e| ActionError::new(&doing, e))?;
        let mut client = connect(name, t).map_err(|e| ActionError::new(&doing, e))?;
        let existing = column_type(&mut client, schema.as_str(), table.as_str(), column.as_str())
            .map_err(|e| ActionError::new(&doing, format!("[postgres.{name}] {}: {e}", t.dbname)))?;
        let sql = match existing {
            Some(_) => None,
            None => Some(format!(
                "SET LOCAL lock_timeout = '{}ms'; {};",
                t.lock_timeout_ms,
                add_column_sql(&schema, table, column, &pg)
            )),
        };
        targets.push(TargetPlan { name: name.clone(), sql });
    }
    Ok((header, targets))
}

pub fn preview(section: &Section, table: &SqlIdent, column: &SqlIdent) -> Result<Preview, ActionError> {
    let (header, targets) = plan(section, table, column)?;
    let mut text = header;
    for t in &targets {
        let db = &section.targets[&t.name].dbname;
        match &t.sql {
            Some(sql) => text.push_str(&format!("\n[{} / {db}] BEGIN; {sql} COMMIT;", t.name)),
            None => text.push_str(&format!("\n[{} / {db}] already has the column; nothing to do", t.name)),
        }
    }
    let noop = targets.iter().all(|t| t.sql.is_none());
    Ok(Preview { text, noop, guard: Default::default() })
}

/// Adds the column where it is missing, each database in its own
/// transaction. Every database is tried; the result names each one.
pub fn apply(section: &Section, table: &SqlIdent, column: &SqlIdent) -> Result<String, ActionError> {
    let doing = doing(table, column);
    let (_, targets) = plan(section, table, column)?;
    let mut report = Vec::new();
    let mut failed = false;
    for t in &targets {
        let target = &section.targets[&t.name];
        let Some(sql) = &t.sql else {
            report.push(format!("{}: already had it", t.name));
            continue;
        };
        let result = connect(&t.name, target).map_err(|e| e.to_string()).and_then(|mut client| {
            let mut tx = client.transaction().map_err(|e| e.to_string())?;
            tx.batch_execute(sql).map_err(|e| describe_pg_error(&e, target.lock_timeout_ms))?;
            tx.commit().map_err(|e| e.to_string())
        });
        match result {
            Ok(()) => report.push(format!("{}: added", t.name)),
            Err(e) => {
                failed = true;
                report.push(format!("{}: FAILED, nothing changed there: {e}", t.name));
            }
        }
    }
    match failed {
        true => Err(ActionError::new(doing, report.join("; "))),
        false => Ok(report.join("; ")),
    }
}

fn describe_pg_error(e: &postgres::Error, lock_timeout_ms: u64) -> String {
    match e.code().map(|c| c.code()) {
        Some("55P03") => format!(
            "the table was busy: no lock within lock_timeout {lock_timeout_ms} ms (SQLSTATE 55P03), so the consumer was not blocked; try again when it is quieter"
        ),
        _ => crate::clients::postgres::describe(e),
    }
}

/// Checks the column now exists in every target with the mapped type.
pub fn verify(section: &Section, table: &SqlIdent, column: &SqlIdent) -> Result<String, ActionError> {
    let doing = format!("verifying {table}.{column} in the PostgreSQL targets");
    let defs = mysql_column(section, table, column)?;
    let pg = defs.first().map(map_column).transpose().map_err(|e| ActionError::new(&doing, e))?;
    let mut seen = Vec::new();
    for (name, t) in &section.targets {
        let mut client = connect(name, t).map_err(|e| ActionError::new(&doing, e))?;
        match column_type(&mut client, &t.schema, table.as_str(), column.as_str())
            .map_err(|e| ActionError::new(&doing, e))?
        {
            Some(ty) if pg.as_ref().is_none_or(|p| p.type_sql == ty) => seen.push(format!("{name}: {ty}")),
            Some(ty) => {
                return Err(ActionError::new(
                    doing,
                    format!("[postgres.{name}] has it as {ty}, not {}", pg.unwrap().type_sql),
                ))
            }
            None => return Err(ActionError::new(doing, format!("[postgres.{name}] still lacks it"))),
        }
    }
    Ok(seen.join("; "))
}

/// Add a column missing in the PostgreSQL targets, defined as in MySQL
/// (runbook C1): DDL on the live target databases, so dangerous.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddColumn {
    pub table: SqlIdent,
    pub column: SqlIdent,
}

/// `pg_add_column([schema,] table, column)`: SQL identifiers. A schema the
/// failing statement named must be the one every target syncs: a table of
/// another schema is not this pipeline's to change.
pub fn spec(schema: Option<&str>, table: &str, column: &str) -> StepSpec {
    let (schema, table, column) = (schema.map(str::to_string), table.to_string(), column.to_string());
    StepSpec::new("pg_add_column", format!("postgres add column {table}.{column}"), move |sections| {
        if let Some(schema) = &schema {
            if let Some((name, t)) = sections.postgres.targets.iter().find(|(_, t)| t.schema != *schema) {
                return Err(Refusal::NotConfigured(format!(
                    "the failing statement writes {schema}.{table}, but target {name} syncs schema {}: not a table this pipeline syncs; nothing is changed",
                    t.schema
                )));
            }
        }
        Ok(Step::PgAddColumn(AddColumn {
            table: SqlIdent::parse(&table).map_err(Refusal::invalid)?,
            column: SqlIdent::parse(&column).map_err(Refusal::invalid)?,
        }))
    })
}

impl Action for AddColumn {
    fn family(&self) -> &'static str {
        "postgres"
    }

    fn target(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }

    fn min_risk(&self) -> Risk {
        Risk::Dangerous
    }

    fn changes(&self) -> Option<String> {
        Some(format!("postgres table {}", self.table))
    }

    fn preview(&self, cx: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        preview(&cx.sections.postgres, &self.table, &self.column)
    }

    fn apply(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        apply(&cx.sections.postgres, &self.table, &self.column)
    }

    fn verify(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        verify(&cx.sections.postgres, &self.table, &self.column)
    }
}
