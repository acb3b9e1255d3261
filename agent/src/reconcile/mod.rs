//! Reconciling: is every configured table of the MySQL sources equal to
//! its copy in every PostgreSQL target, and if not, which rows differ, by
//! key (runbook N3/N4/N6: "会有数据丢失" — a rewind or a reset skips row
//! events; C1: rows failed before the column existed).
//!
//! Read-only: both databases compute counts and checksums of key segments
//! (`diff`) over a canonical form of each row that is the same text on
//! both sides (`canonical`); only small segments send keys and row
//! hashes. Identifiers come from the configuration and the catalogues as
//! validated [`SqlIdent`]s; every value is a query parameter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clients::mysql::MysqlSource;
use crate::clients::postgres::PostgresTarget;
use crate::types::{Invalid, Name, SqlIdent};

mod canonical;
mod diff;
mod repair;
mod side;
mod table;

pub use diff::Counts;
use diff::Options;
pub use repair::{
    apply_repair, prepare_repair, save as save_reports, saved_path, verify_repair, Saved, ORIGIN_AGENT, ORIGIN_COMMAND,
};
use side::Side;
use table::{Resolved, Wanted};

/// `[reconcile]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// A source row changed this recently (by the change column) is in
    /// flight, not lost.
    #[serde(default = "default_min_age")]
    pub min_age_secs: u64,
    /// Candidates are read again after this long (the pipeline's own lag)
    /// before they are reported.
    #[serde(default = "default_recheck")]
    pub recheck_after_secs: u64,
    /// Each query's bound, on each side.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_secs: u64,
    /// Keys listed per table, target and kind; the counts stay exact.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// A repair is made only from a reconcile at most this old.
    #[serde(default = "default_repair_max_age")]
    pub repair_max_age_secs: u64,
    /// Reconcile every table on this schedule (a `reconcile_due` event for
    /// the rules); 0: only after fixes and when asked.
    #[serde(default)]
    pub every_secs: u64,
    /// `[reconcile.tables.NAME]`.
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            min_age_secs: default_min_age(),
            recheck_after_secs: default_recheck(),
            statement_timeout_secs: default_statement_timeout(),
            max_keys: default_max_keys(),
            repair_max_age_secs: default_repair_max_age(),
            every_secs: 0,
            tables: BTreeMap::new(),
        }
    }
}

fn default_min_age() -> u64 {
    60
}

fn default_recheck() -> u64 {
    10
}

fn default_statement_timeout() -> u64 {
    300
}

fn default_max_keys() -> usize {
    10_000
}

fn default_repair_max_age() -> u64 {
    3600
}

/// One synced table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The `[mysql.NAME]` sources that write it; default: every source.
    pub sources: Option<Vec<String>>,
    /// The MySQL schema; default: the source's only schema.
    pub schema: Option<SqlIdent>,
    /// The MySQL table; default: the entry's name.
    pub table: Option<SqlIdent>,
    /// The `[postgres.NAME]` targets; default: every target.
    pub targets: Option<Vec<String>>,
    /// The table in the targets; default: the MySQL table's name.
    pub target_table: Option<SqlIdent>,
    /// Default: the primary key, read from both catalogues.
    pub key: Option<Vec<SqlIdent>>,
    /// Default: every column both sides have, by name.
    pub columns: Option<Vec<SqlIdent>>,
    /// When a row last changed (for `--since`/`--until` and rows in flight).
    pub change_column: Option<SqlIdent>,
    /// The target's column telling the sources' rows apart.
    pub source_column: Option<SqlIdent>,
    /// Each source's value in `source_column`; default: the source's name.
    #[serde(default)]
    pub source_values: BTreeMap<String, String>,
}

/// What reconciling needs: its section, the sources and the targets.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub config: ReconcileConfig,
    pub mysql: BTreeMap<String, MysqlSource>,
    pub targets: BTreeMap<String, PostgresTarget>,
}

impl Section {
    /// The `[mysql.NAME]` sources that write `t`: its own list, or every source.
    fn sources_of<'a>(&'a self, t: &'a TableConfig) -> Vec<&'a str> {
        match &t.sources {
            Some(s) => s.iter().map(String::as_str).collect(),
            None => self.mysql.keys().map(String::as_str).collect(),
        }
    }

    /// The `[postgres.NAME]` targets of `t`: its own list, or every target.
    fn targets_of<'a>(&'a self, t: &'a TableConfig) -> Vec<&'a str> {
        match &t.targets {
            Some(t) => t.iter().map(String::as_str).collect(),
            None => self.targets.keys().map(String::as_str).collect(),
        }
    }

    /// The entries each `[mysql.NAME]` source writes.
    pub fn tables_by_source(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (entry, t) in &self.config.tables {
            for s in self.sources_of(t) {
                out.entry(s.to_string()).or_default().push(entry.clone());
            }
        }
        out
    }

    /// Checks what spans sections: every named source and target exists,
    /// every schema is one the source syncs.
    pub fn check(&self) -> Result<(), Invalid> {
        for (name, t) in &self.config.tables {
            let at = format!("[reconcile.tables.{name}]");
            // The name is also a file name in the state directory.
            Name::parse("reconcile table", name).map_err(|e| format!("{at}: {e}"))?;
            if t.table.is_none() {
                SqlIdent::parse(name)
                    .map_err(|e| format!("{at}: the name is the table's unless `table` is set: {e}"))?;
            }
            for s in t.sources.iter().flatten() {
                let Some(src) = self.mysql.get(s) else {
                    return Err(format!("{at} sources: no [mysql.{s}]").into());
                };
                if let Some(schema) = &t.schema {
                    if !src.schemas.iter().any(|x| x == schema.as_str()) {
                        return Err(format!("{at} schema {schema} is not among [mysql.{s}] schemas").into());
                    }
                }
            }
            for target in t.targets.iter().flatten() {
                if !self.targets.contains_key(target) {
                    return Err(format!("{at} targets: no [postgres.{target}]").into());
                }
            }
            for s in t.source_values.keys() {
                if !self.mysql.contains_key(s) {
                    return Err(format!("{at} source_values: no [mysql.{s}]").into());
                }
            }
            if !t.source_values.is_empty() && t.source_column.is_none() {
                return Err(format!("{at}: source_values without source_column").into());
            }
        }
        Ok(())
    }
}

/// What a person asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Entries to compare; empty: all.
    pub tables: Vec<String>,
    /// `--since`/`--until` as local wall-clock text for the change column.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Overrides `recheck_after_secs` (tests, a person in a hurry).
    pub recheck_after: Option<Duration>,
}

/// A time as `--since`/`--until` read it (local wall clock, seconds): what
/// the audit's gap lines put in the command they suggest.
pub fn since_text(ms: i64) -> String {
    use chrono::TimeZone;
    chrono::Local
        .timestamp_millis_opt(ms)
        .single()
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// Parses a time for `--since`/`--until`: RFC 3339, or a local
/// `YYYY-MM-DD[ HH:MM[:SS[.f]]]` (the change column's wall clock).
pub fn parse_time(text: &str) -> Result<String, String> {
    use chrono::{Local, NaiveDate, NaiveDateTime};
    let fmt = "%Y-%m-%d %H:%M:%S%.6f";
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Local).naive_local().format(fmt).to_string());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, f) {
            return Ok(t.format(fmt).to_string());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").format(fmt).to_string());
    }
    Err(format!("{text:?} is not a time: write 2026-12-03 14:00, 2026-12-03 or RFC 3339"))
}

/// One table of one source against one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableReport {
    pub table: String,
    pub source: String,
    pub target: String,
    /// `schema.table` on each side.
    pub source_table: String,
    pub target_table: String,
    pub key: Vec<String>,
    pub columns: Vec<String>,
    pub left_out: Vec<LeftOut>,
    pub only_in_source: Vec<String>,
    pub only_in_target: Vec<String>,
    pub source_rows: i64,
    pub target_rows: i64,
    pub counts: Counts,
    /// Keys (each as its columns' values), up to `max_keys` per kind.
    pub missing: Vec<Vec<String>>,
    pub extra: Vec<Vec<String>>,
    pub differing: Vec<Vec<String>>,
    pub in_flight: usize,
    pub queries: usize,
    pub millis: u128,
    /// Why this pair could not be compared.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeftOut {
    pub column: String,
    pub why: String,
}

impl TableReport {
    pub fn equal(&self) -> bool {
        self.error.is_none() && self.counts == Counts::default()
    }
}

/// Everything one run compared.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tables: Vec<TableReport>,
    pub window: Option<(Option<String>, Option<String>)>,
}

impl Report {
    /// 0 equal, 1 rows differ, 2 something could not be compared.
    pub fn exit_code(&self) -> u8 {
        match () {
            _ if self.tables.iter().any(|t| t.error.is_some()) => 2,
            _ if self.tables.iter().any(|t| !t.equal()) => 1,
            _ => 0,
        }
    }
}

struct Pair<'a> {
    entry: &'a str,
    cfg: &'a TableConfig,
    source: &'a str,
    target: &'a str,
}

fn pairs<'a>(section: &'a Section, request: &Request) -> Result<Vec<Pair<'a>>, String> {
    for t in &request.tables {
        if !section.config.tables.contains_key(t) {
            let known: Vec<&String> = section.config.tables.keys().collect();
            return Err(format!("no [reconcile.tables.{t}]; configured: {known:?}"));
        }
    }
    let mut out = Vec::new();
    for (entry, cfg) in &section.config.tables {
        if !request.tables.is_empty() && !request.tables.contains(entry) {
            continue;
        }
        let targets = section.targets_of(cfg);
        for source in section.sources_of(cfg) {
            for target in &targets {
                out.push(Pair { entry, cfg, source, target });
            }
        }
    }
    if out.is_empty() {
        return Err("nothing to reconcile: configure [reconcile.tables.NAME], [mysql.NAME] and [postgres.NAME]".into());
    }
    Ok(out)
}

/// Connects to both sides of a pair and resolves what to compare.
fn open_pair(section: &Section, pair: &Pair) -> Result<(Resolved, Side, Side), String> {
    let src = &section.mysql[pair.source];
    let tgt = &section.targets[pair.target];
    let schema = match &pair.cfg.schema {
        Some(s) => s.clone(),
        None => match src.schemas.as_slice() {
            [one] => SqlIdent::parse(one).map_err(|e| e.to_string())?,
            _ => return Err(format!("[mysql.{}] syncs several schemas: set schema", pair.source)),
        },
    };
    let table = match &pair.cfg.table {
        Some(t) => t.clone(),
        None => SqlIdent::parse(pair.entry).map_err(|e| e.to_string())?,
    };
    let target_table = pair.cfg.target_table.clone().unwrap_or_else(|| table.clone());
    let target_schema = SqlIdent::parse(&tgt.schema).map_err(|e| e.to_string())?;
    let value = pair.cfg.source_values.get(pair.source).map_or(pair.source, String::as_str);
    let wanted = Wanted {
        source: pair.source,
        schema: &schema,
        table: &table,
        target: pair.target,
        target_schema: &target_schema,
        target_table: &target_table,
        key: pair.cfg.key.as_deref(),
        columns: pair.cfg.columns.as_deref(),
        change_column: pair.cfg.change_column.as_ref(),
        discriminator: pair.cfg.source_column.as_ref().map(|c| (c, value)),
    };
    let timeout = Duration::from_secs(section.config.statement_timeout_secs.max(1));
    let mut source = Side::mysql(src, timeout).map_err(|e| format!("MySQL [{}]: {e}", pair.source))?;
    let mut target =
        Side::postgres(pair.target, tgt, timeout).map_err(|e| format!("PostgreSQL [{}]: {e}", pair.target))?;
    let resolved = table::resolve(&wanted, &mut source, &mut target)?;
    Ok((resolved, source, target))
}

fn compare_pair(
    section: &Section,
    pair: &Pair,
    opts: &Options,
    progress: &mut dyn FnMut(&str),
) -> Result<(Resolved, diff::Found), String> {
    let (resolved, mut source, mut target) = open_pair(section, pair)?;
    if opts.window.is_some() && resolved.change_column.is_none() {
        return Err("--since/--until need a change_column for this table".into());
    }
    let found = diff::compare(&resolved, opts, &mut source, &mut target, progress)?;
    Ok((resolved, found))
}

/// Compares every requested table of every source against every target.
/// Errors of one pair are in its report; the others still run.
pub fn run(section: &Section, request: &Request, progress: &mut dyn FnMut(&str)) -> Result<Report, String> {
    let window =
        (request.since.is_some() || request.until.is_some()).then(|| (request.since.clone(), request.until.clone()));
    let opts = Options {
        window: window.clone(),
        min_age: Duration::from_secs(section.config.min_age_secs),
        recheck_after: request.recheck_after.unwrap_or(Duration::from_secs(section.config.recheck_after_secs)),
        max_keys: section.config.max_keys,
    };
    let mut tables = Vec::new();
    for pair in pairs(section, request)? {
        let started = Instant::now();
        let label = format!("{} [{}] → [{}]", pair.entry, pair.source, pair.target);
        let mut tell = |what: &str| progress(&format!("{label}: {what}"));
        let mut report = TableReport {
            table: pair.entry.into(),
            source: pair.source.into(),
            target: pair.target.into(),
            ..TableReport::default()
        };
        match compare_pair(section, &pair, &opts, &mut tell) {
            Ok((r, mut f)) => {
                for list in [&mut f.missing, &mut f.extra, &mut f.differing] {
                    sort_keys(list);
                }
                report.source_table = format!("{}.{}", r.schema, r.table);
                report.target_table = format!("{}.{}", r.target_schema, r.target_table);
                report.key = r.key.iter().map(|f| f.col.to_string()).collect();
                report.columns = r.columns.iter().map(|f| f.col.to_string()).collect();
                report.left_out = r.left_out.into_iter().map(|(column, why)| LeftOut { column, why }).collect();
                report.only_in_source = r.only_source;
                report.only_in_target = r.only_target;
                report.source_rows = f.source_rows;
                report.target_rows = f.target_rows;
                report.counts = f.counts;
                report.missing = f.missing;
                report.extra = f.extra;
                report.differing = f.differing;
                report.in_flight = f.in_flight;
                report.queries = f.queries;
            }
            Err(e) => report.error = Some(e),
        }
        report.millis = started.elapsed().as_millis();
        tables.push(report);
    }
    Ok(Report { tables, window })
}

/// Keys in order, numbers as numbers.
fn sort_keys(keys: &mut [Vec<String>]) {
    keys.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| match (x.parse::<i128>(), y.parse::<i128>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => x.cmp(y),
            })
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// The report for a person: a line per table and target, the keys, a summary.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let (mut equal, mut differ, mut errors, mut rows) = (0, 0, 0, 0);
    for t in &report.tables {
        let head = format!("{} [{}] → [{}]", t.table, t.source, t.target);
        if let Some(e) = &t.error {
            errors += 1;
            out.push_str(&format!("{head}: NOT COMPARED: {e}\n"));
            continue;
        }
        let c = t.counts;
        let flight = match t.in_flight {
            0 => String::new(),
            n => format!(", {n} in flight (not counted)"),
        };
        if t.equal() {
            equal += 1;
            out.push_str(&format!("{head}: equal ({} rows{flight})\n", t.source_rows));
        } else {
            differ += 1;
            rows += c.missing + c.extra + c.differing;
            out.push_str(&format!(
                "{head}: DIFFER: {} missing in the target, {} extra in the target, {} differing ({} source rows, {} target rows{flight})\n",
                c.missing, c.extra, c.differing, t.source_rows, t.target_rows
            ));
        }
        for lo in &t.left_out {
            out.push_str(&format!("  column {} left out: {}\n", lo.column, lo.why));
        }
        for (what, keys, n) in
            [("missing", &t.missing, c.missing), ("extra", &t.extra, c.extra), ("differing", &t.differing, c.differing)]
        {
            if keys.is_empty() {
                continue;
            }
            out.push_str(&format!("  {what}: {}\n", keys_text(&t.key, keys, n)));
        }
    }
    let queries: usize = report.tables.iter().map(|t| t.queries).sum();
    let millis: u128 = report.tables.iter().map(|t| t.millis).sum();
    out.push_str(&format!(
        "reconcile: {} compared: {equal} equal, {differ} differ ({rows} rows), {errors} not compared; {queries} queries, {:.1} s\n",
        report.tables.len(),
        millis as f64 / 1000.0
    ));
    out
}

/// Keys listed per kind where a person reads them: the report, a repair's
/// preview and mail, a verify's complaint.
pub const KEYS_SHOWN: usize = 20;

/// The first [`KEYS_SHOWN`] of `keys`, and how many more of `total` there are.
pub(crate) fn keys_text(names: &[String], keys: &[Vec<String>], total: usize) -> String {
    let shown: Vec<String> = keys.iter().take(KEYS_SHOWN).map(|k| key_text(names, k)).collect();
    match total.saturating_sub(shown.len()) {
        0 => shown.join(", "),
        more => format!("{} … and {more} more", shown.join(", ")),
    }
}

pub(crate) fn key_text(names: &[String], values: &[String]) -> String {
    let parts: Vec<String> =
        names.iter().zip(values).map(|(n, v)| format!("{n}={}", crate::types::one_line(v, 64))).collect();
    format!("({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_for_the_window() {
        assert_eq!(parse_time("2026-12-03 14:00").unwrap(), "2026-12-03 14:00:00.000000");
        assert_eq!(parse_time("2026-12-03").unwrap(), "2026-12-03 00:00:00.000000");
        assert_eq!(parse_time("2026-12-03 14:00:01.5").unwrap(), "2026-12-03 14:00:01.500000");
        assert!(parse_time("yesterday; DROP TABLE x").is_err());
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-03T14:00:01Z").unwrap().timestamp_millis();
        assert!(parse_time(&since_text(at)).unwrap().ends_with(":01.000000"), "it reads back");
    }

    #[test]
    fn keys_sort_as_numbers() {
        let mut keys = vec![vec!["10".to_string()], vec!["9".into()], vec!["a".into()]];
        sort_keys(&mut keys);
        assert_eq!(keys, vec![vec!["9".to_string()], vec!["10".into()], vec!["a".into()]]);
    }
}
