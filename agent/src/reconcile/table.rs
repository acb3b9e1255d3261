//! What one comparison compares: a table of one MySQL source against its
//! copy in one PostgreSQL target, resolved from the configuration and both
//! catalogues: the key, the columns and their common canonical form, the
//! columns left out and why, the change column, and the column that tells
//! this source's rows apart in a shared target table.

use super::canonical::Dialect;
use super::canonical::{field, mysql_signed_integer, Field, Form, MysqlColumn, PgColumn};
use super::side::{Cell, Param, Query, Side};
use crate::types::SqlIdent;

/// A table of one source against one target, ready to compare.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub source: String,
    pub schema: SqlIdent,
    pub table: SqlIdent,
    pub target: String,
    pub target_schema: SqlIdent,
    pub target_table: SqlIdent,
    /// The key, in order.
    pub key: Vec<Field>,
    /// Every compared column (the key first).
    pub columns: Vec<Field>,
    /// Columns both sides have that cannot be compared exactly, and why.
    pub left_out: Vec<(String, String)>,
    /// What a repair writes: every column both sides have (the compared
    /// ones and those left out), each read from MySQL as text PostgreSQL's
    /// input functions take.
    pub carry: Vec<Carry>,
    /// Columns both sides have that a repair cannot carry, and why.
    pub uncarried: Vec<(String, String)>,
    /// Columns only one side has.
    pub only_source: Vec<String>,
    pub only_target: Vec<String>,
    /// A single integer key: segments are key ranges (index scans);
    /// otherwise they are buckets of a hash of the key.
    pub range_key: bool,
    pub change_column: Option<SqlIdent>,
    /// The target's column naming the source of a row, and this source's value.
    pub discriminator: Option<(SqlIdent, String)>,
}

/// One column a repair writes.
#[derive(Debug, Clone)]
pub struct Carry {
    pub col: SqlIdent,
    /// Its text, read from MySQL.
    pub mysql: String,
    /// Upper-case hex, written as `\x…` for `bytea`.
    pub binary: bool,
}

/// The MySQL types a repair carries as `CAST(… AS CHAR)` when they are not
/// compared (floating point, json, mismatched pairs): PostgreSQL parses the text.
fn carried_as_text(column_type: &str) -> bool {
    let base = crate::clients::mysql::ColumnType::parse(column_type).base;
    !(base.contains("blob")
        || base.contains("binary")
        || matches!(base.as_str(), "bit" | "geometry" | "point" | "linestring" | "polygon"))
}

/// What the configuration asks of one table, for one source and target.
pub struct Wanted<'a> {
    pub source: &'a str,
    pub schema: &'a SqlIdent,
    pub table: &'a SqlIdent,
    pub target: &'a str,
    pub target_schema: &'a SqlIdent,
    pub target_table: &'a SqlIdent,
    pub key: Option<&'a [SqlIdent]>,
    pub columns: Option<&'a [SqlIdent]>,
    pub change_column: Option<&'a SqlIdent>,
    pub discriminator: Option<(&'a SqlIdent, &'a str)>,
}

fn texts(rows: Vec<Vec<Cell>>) -> Vec<Vec<String>> {
    rows.into_iter().map(|r| r.iter().map(Cell::text).collect()).collect()
}

fn mysql_catalogue(
    side: &mut Side,
    schema: &SqlIdent,
    table: &SqlIdent,
) -> Result<(Vec<MysqlColumn>, Vec<String>), String> {
    let mut q = Query::new(Dialect::Mysql);
    let (s, t) = (q.param(Param::Text(schema.to_string())), q.param(Param::Text(table.to_string())));
    q.push(&format!(
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {s} AND TABLE_NAME = {t} ORDER BY ORDINAL_POSITION"
    ));
    let columns: Vec<MysqlColumn> = side
        .fetch(&q)?
        .into_iter()
        .map(|r| MysqlColumn {
            name: r[0].text(),
            column_type: r[1].text(),
            nullable: r[2].text() == "YES",
            charset: (r[3] != Cell::Null).then(|| r[3].text()),
        })
        .collect();
    let mut q = Query::new(Dialect::Mysql);
    let (s, t) = (q.param(Param::Text(schema.to_string())), q.param(Param::Text(table.to_string())));
    q.push(&format!(
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = {s} AND TABLE_NAME = {t} \
         AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION"
    ));
    let key = texts(side.fetch(&q)?).into_iter().map(|r| r[0].clone()).collect();
    Ok((columns, key))
}

fn pg_catalogue(side: &mut Side, schema: &SqlIdent, table: &SqlIdent) -> Result<(Vec<PgColumn>, Vec<String>), String> {
    let mut q = Query::new(Dialect::Postgres);
    let (s, t) = (q.param(Param::Text(schema.to_string())), q.param(Param::Text(table.to_string())));
    q.push(&format!(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {s} AND c.relname = {t} AND c.relkind IN ('r', 'p') \
         AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
    ));
    let columns: Vec<PgColumn> = texts(side.fetch(&q)?)
        .into_iter()
        .map(|r| PgColumn { name: r[0].clone(), type_sql: r[1].clone(), nullable: r[2] == "YES" })
        .collect();
    let mut q = Query::new(Dialect::Postgres);
    let (s, t) = (q.param(Param::Text(schema.to_string())), q.param(Param::Text(table.to_string())));
    q.push(&format!(
        "SELECT a.attname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) \
         WHERE n.nspname = {s} AND c.relname = {t} AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)"
    ));
    let key = texts(side.fetch(&q)?).into_iter().map(|r| r[0].clone()).collect();
    Ok((columns, key))
}

/// Reads both catalogues and resolves what to compare; `Err` says why the
/// table cannot be compared at all.
pub fn resolve(w: &Wanted, source: &mut Side, target: &mut Side) -> Result<Resolved, String> {
    let (my_cols, my_key) = mysql_catalogue(source, w.schema, w.table)?;
    if my_cols.is_empty() {
        return Err(format!("MySQL [{}] has no table {}.{}", w.source, w.schema, w.table));
    }
    let (pg_cols, pg_key) = pg_catalogue(target, w.target_schema, w.target_table)?;
    if pg_cols.is_empty() {
        return Err(format!("PostgreSQL [{}] has no table {}.{}", w.target, w.target_schema, w.target_table));
    }
    let disc = w.discriminator.map(|(c, v)| (c.clone(), v.to_string()));
    if let Some((c, _)) = &disc {
        if !pg_cols.iter().any(|p| p.name == c.as_str()) {
            return Err(format!("the target table has no column {c} (source_column)"));
        }
    }
    let is_disc = |name: &str| disc.as_ref().is_some_and(|(c, _)| c.as_str() == name);
    let my = |name: &str| my_cols.iter().find(|c| c.name == name);
    let pg = |name: &str| pg_cols.iter().find(|c| c.name == name);

    let key: Vec<String> = match w.key {
        Some(k) => k.iter().map(|c| c.to_string()).collect(),
        None => {
            if my_key.is_empty() {
                return Err("the MySQL table has no primary key; name the key in the configuration".into());
            }
            let pg_rest: Vec<&String> = pg_key.iter().filter(|c| !is_disc(c)).collect();
            if pg_rest.iter().map(|s| s.as_str()).collect::<Vec<_>>()
                != my_key.iter().map(|s| s.as_str()).collect::<Vec<_>>()
            {
                return Err(format!(
                    "the key differs between the catalogues: MySQL ({}), PostgreSQL ({}); name the key in the configuration",
                    my_key.join(", "),
                    pg_key.join(", ")
                ));
            }
            my_key.clone()
        }
    };
    let mut resolved_key = Vec::new();
    for name in &key {
        let (Some(m), Some(p)) = (my(name), pg(name)) else {
            return Err(format!("key column {name} is not in both tables"));
        };
        let ident = SqlIdent::parse(name).map_err(|e| format!("key column {name:?}: {e}"))?;
        resolved_key.push(field(ident, m, p).map_err(|why| format!("key column {name} cannot be compared: {why}"))?);
    }

    let wanted: Vec<String> = match w.columns {
        Some(cols) => {
            for c in cols {
                if my(c.as_str()).is_none() || pg(c.as_str()).is_none() {
                    return Err(format!("column {c} is not in both tables"));
                }
            }
            cols.iter().map(|c| c.to_string()).collect()
        }
        None => my_cols.iter().filter(|c| pg(&c.name).is_some() && !is_disc(&c.name)).map(|c| c.name.clone()).collect(),
    };
    let mut columns = resolved_key.clone();
    let mut left_out = Vec::new();
    for name in wanted.iter().filter(|n| !key.contains(n)) {
        let (m, p) = (my(name).expect("checked"), pg(name).expect("checked"));
        // A column name from a catalogue is used in SQL only once valid.
        let Ok(ident) = SqlIdent::parse(name) else {
            left_out.push((name.clone(), "not a plain SQL identifier".into()));
            continue;
        };
        match field(ident, m, p) {
            Ok(f) => columns.push(f),
            Err(why) => left_out.push((name.clone(), why)),
        }
    }
    let mut carry = Vec::new();
    let mut uncarried = Vec::new();
    for name in key.iter().chain(wanted.iter().filter(|n| !key.contains(n))) {
        match columns.iter().find(|f| f.col.as_str() == name) {
            Some(f) => carry.push(Carry {
                col: f.col.clone(),
                mysql: Dialect::Mysql.value(&f.col, f.form),
                binary: f.form == Form::Binary,
            }),
            None => match (SqlIdent::parse(name), my(name)) {
                (Ok(col), Some(m)) if carried_as_text(&m.column_type) => carry.push(Carry {
                    mysql: format!("CAST({} AS CHAR)", Dialect::Mysql.ident(&col)),
                    col,
                    binary: false,
                }),
                _ => uncarried.push((name.clone(), "no text form PostgreSQL reads back exactly".into())),
            },
        }
    }
    let change_column = match w.change_column {
        Some(c) if my(c.as_str()).is_none() || pg(c.as_str()).is_none() => {
            return Err(format!("change column {c} is not in both tables"))
        }
        other => other.cloned(),
    };
    let range_key = resolved_key.len() == 1
        && resolved_key[0].form == Form::Integer
        && my(resolved_key[0].col.as_str()).is_some_and(|m| mysql_signed_integer(&m.column_type));
    Ok(Resolved {
        source: w.source.into(),
        schema: w.schema.clone(),
        table: w.table.clone(),
        target: w.target.into(),
        target_schema: w.target_schema.clone(),
        target_table: w.target_table.clone(),
        key: resolved_key,
        columns,
        left_out,
        carry,
        uncarried,
        only_source: my_cols.iter().filter(|c| pg(&c.name).is_none()).map(|c| c.name.clone()).collect(),
        only_target: pg_cols
            .iter()
            .filter(|c| my(&c.name).is_none() && !is_disc(&c.name))
            .map(|c| c.name.clone())
            .collect(),
        range_key,
        change_column,
        discriminator: disc,
    })
}
