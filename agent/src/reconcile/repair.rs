//! Repairing what a reconcile found: the missing and differing rows are
//! upserted from the source into the target, and (only when asked, a
//! data-loss plan) the rows the target has that the source does not are
//! deleted.
//!
//! The keys come from the last report `pipemedic reconcile` saved in the
//! state directory, so the preview a person approves lists exactly the
//! rows the apply touches, and computing it never queries a database on the
//! agent's worker. The apply reads each batch's rows from the source again
//! (a row changed since the preview is written as it is now; a row gone
//! from the source is left), keeps the target rows it replaces or deletes
//! under the backups first, and writes each batch in its own transaction
//! with the target's `lock_timeout`. Values cross as one JSON parameter per
//! batch that PostgreSQL parses into the table's own types
//! (`json_populate_recordset`), never as SQL text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::canonical::{Dialect, Form};
use super::side::{Cell, Param, Query, Side};
use super::table::Resolved;
use super::{open_pair, Pair, Report, Section, TableReport};

/// Rows per batch (one transaction each).
const BATCH: usize = 500;

/// What `pipemedic reconcile` saved of one table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// When the reconcile ran, ms since the epoch.
    pub at: i64,
    /// Who ran it: the agent itself (its result is an event for the
    /// rules) or a command (a person, who reads it).
    #[serde(default)]
    pub origin: String,
    pub table: String,
    pub pairs: Vec<TableReport>,
}

impl Saved {
    /// Missing, extra and differing rows over every source and target.
    pub fn totals(&self) -> super::Counts {
        let mut c = super::Counts::default();
        for t in &self.pairs {
            c.missing += t.counts.missing;
            c.extra += t.counts.extra;
            c.differing += t.counts.differing;
        }
        c
    }

    /// The first pair that could not be compared, and why.
    pub fn error(&self) -> Option<(&TableReport, &str)> {
        self.pairs.iter().find_map(|t| t.error.as_deref().map(|e| (t, e)))
    }
}

/// Where the last report of `entry` is kept.
pub fn saved_path(state_dir: &Path, entry: &str) -> PathBuf {
    state_dir.join("reconcile").join(format!("{entry}.json"))
}

/// A reconcile the agent ran itself.
pub const ORIGIN_AGENT: &str = "agent";
/// A reconcile a person ran (`pipemedic reconcile`).
pub const ORIGIN_COMMAND: &str = "command";

/// Where the report whose content hashes to `sha256` is kept unchanged: a
/// repair binds to one report, whatever reconcile runs after it.
pub fn snapshot_path(state_dir: &Path, sha256: &str) -> PathBuf {
    state_dir.join("reconcile").join("snapshots").join(format!("{sha256}.json"))
}

/// Snapshots are kept this long (a repair is made from one at most
/// `repair_max_age_secs` old).
const SNAPSHOT_DAYS: u64 = 2;

/// Keeps each table's part of `report` as its last report, and a snapshot
/// of it; returns each table with its report's SHA-256.
pub fn save(state_dir: &Path, report: &Report, origin: &str) -> std::io::Result<Vec<(String, String)>> {
    let mut by_table: BTreeMap<&str, Vec<TableReport>> = BTreeMap::new();
    for t in &report.tables {
        by_table.entry(&t.table).or_default().push(t.clone());
    }
    let at = chrono::Utc::now().timestamp_millis();
    let mut written = Vec::new();
    for (table, pairs) in by_table {
        let path = saved_path(state_dir, table);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let saved = Saved { at, origin: origin.into(), table: table.into(), pairs };
        let bytes = serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other)?;
        let sha256 = crate::digest::sha256_hex(&bytes);
        let snapshot = snapshot_path(state_dir, &sha256);
        std::fs::create_dir_all(snapshot.parent().expect("has a parent"))?;
        crate::fsutil::write_atomic(&snapshot, &bytes)?;
        crate::fsutil::write_atomic(&path, &bytes)?;
        written.push((table.to_string(), sha256));
    }
    prune_snapshots(state_dir);
    Ok(written)
}

fn prune_snapshots(state_dir: &Path) {
    let dir = state_dir.join("reconcile").join("snapshots");
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let keep = std::time::Duration::from_secs(SNAPSHOT_DAYS * 86_400);
    for e in entries.flatten() {
        let old =
            e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|m| m.elapsed().ok()).is_some_and(|a| a > keep);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A repair ready for a person's eyes.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub text: String,
    pub noop: bool,
    /// The saved report's SHA-256: the apply repairs exactly these keys.
    pub sha256: String,
}

/// The report a repair is made from: the snapshot `report` names, or the
/// last one; with its SHA-256.
fn load(state_dir: &Path, entry: &str, report: Option<&str>) -> Result<(Saved, String), String> {
    let path = match report {
        Some(sha) if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) => snapshot_path(state_dir, sha),
        Some(sha) => return Err(format!("{sha:?} is not a report's SHA-256")),
        None => saved_path(state_dir, entry),
    };
    let bytes = crate::fsutil::read_regular(&path)
        .map_err(|e| format!("no reconcile of {entry} at {} ({e}); run pipemedic reconcile first", path.display()))?;
    let sha256 = crate::digest::sha256_hex(&bytes);
    if report.is_some_and(|r| !r.eq_ignore_ascii_case(&sha256)) {
        return Err(format!("{} does not hash to its name; not used", path.display()));
    }
    let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if saved.table != entry {
        return Err(format!("{} is a report of {}, not of {entry}", path.display(), saved.table));
    }
    Ok((saved, sha256))
}

fn keys_text(t: &TableReport, keys: &[Vec<String>]) -> String {
    super::keys_text(&t.key, keys, keys.len())
}

/// The preview: per source and target, the keys to upsert and to delete.
pub fn prepare_repair(
    section: &Section,
    state_dir: &Path,
    entry: &str,
    report: Option<&str>,
    deletes: bool,
    max_age_secs: u64,
) -> Result<Prepared, String> {
    let (saved, sha256) = load(state_dir, entry, report)?;
    let age = (chrono::Utc::now().timestamp_millis() - saved.at) / 1000;
    if age > max_age_secs as i64 {
        return Err(format!(
            "the last reconcile of {entry} is {age} s old (more than {max_age_secs} s); run pipemedic reconcile --repair again"
        ));
    }
    let mut text = format!(
        "repair of {entry} in the PostgreSQL targets, from the reconcile of {}",
        crate::types::human_time(saved.at)
    );
    let mut noop = true;
    for t in &saved.pairs {
        let head = format!("\n[{}] {} → [{}] {}", t.source, t.source_table, t.target, t.target_table);
        if let Some(e) = &t.error {
            return Err(format!("{head}: was not compared ({e}); nothing is repaired"));
        }
        let c = t.counts;
        if t.missing.len() < c.missing || t.extra.len() < c.extra || t.differing.len() < c.differing {
            return Err(format!(
                "{head}: more rows differ than the report lists ([reconcile] max_keys = {}); raise it, or repair a window at a time",
                section.config.max_keys
            ));
        }
        let upserts = c.missing + c.differing;
        if upserts == 0 && (c.extra == 0 || !deletes) {
            text.push_str(&format!("{head}: nothing to write"));
        } else {
            noop = false;
            text.push_str(&format!(
                "{head}: upsert {upserts} row(s) ({} missing, {} differing)",
                c.missing, c.differing
            ));
            if deletes {
                text.push_str(&format!(", DELETE {} extra row(s) — data loss", c.extra));
            }
        }
        if !t.missing.is_empty() {
            text.push_str(&format!("\n  missing: {}", keys_text(t, &t.missing)));
        }
        if !t.differing.is_empty() {
            text.push_str(&format!("\n  differing: {}", keys_text(t, &t.differing)));
        }
        if !t.extra.is_empty() {
            let what = if deletes { "delete" } else { "extra, left as they are (deleting them is a data-loss plan)" };
            text.push_str(&format!("\n  {what}: {}", keys_text(t, &t.extra)));
        }
    }
    text.push_str(&format!(
        "\nevery key: {} (sha256 {})\neach batch of at most {BATCH} rows is its own transaction with the target's lock_timeout; \
         each row is read from the source again when written; the rows replaced or deleted are kept under the backups first",
        match report {
            Some(sha) => snapshot_path(state_dir, sha),
            None => saved_path(state_dir, entry),
        }
        .display(),
        &sha256[..16]
    ));
    Ok(Prepared { text, noop, sha256 })
}

/// The `(disc, key…)` columns of the target's rows.
fn target_key(r: &Resolved) -> Vec<String> {
    let d = Dialect::Postgres;
    r.discriminator.iter().map(|(c, _)| d.ident(c)).chain(r.key.iter().map(|f| d.ident(&f.col))).collect()
}

fn target_table(r: &Resolved) -> String {
    let d = Dialect::Postgres;
    format!("{}.{}", d.ident(&r.target_schema), d.ident(&r.target_table))
}

/// A key as the JSON object PostgreSQL reads into the table's key columns.
fn key_object(r: &Resolved, key: &[String]) -> Map<String, Value> {
    let mut o = Map::new();
    if let Some((c, v)) = &r.discriminator {
        o.insert(c.to_string(), Value::String(v.clone()));
    }
    for (f, v) in r.key.iter().zip(key) {
        let v = if f.form == Form::Binary { format!("\\x{v}") } else { v.clone() };
        o.insert(f.col.to_string(), Value::String(v));
    }
    o
}

/// `(k…) IN ((…), …)` on MySQL, each value a parameter of its key's kind.
fn mysql_key_cond(q: &mut Query, r: &Resolved, keys: &[Vec<String>]) -> Result<String, String> {
    let d = Dialect::Mysql;
    let mut tuples = Vec::new();
    for key in keys {
        let mut parts = Vec::new();
        for (f, v) in r.key.iter().zip(key) {
            let p = match f.form {
                Form::Integer => match v.parse::<i64>() {
                    Ok(i) => q.param(Param::Int(i)),
                    Err(_) => format!("CAST({} AS UNSIGNED)", q.param(Param::Text(v.clone()))),
                },
                Form::Decimal => format!("CAST({} AS DECIMAL(65,30))", q.param(Param::Text(v.clone()))),
                Form::Binary => format!("UNHEX({})", q.param(Param::Text(v.clone()))),
                Form::Text { .. } | Form::Date | Form::DateTime { .. } | Form::Time { .. } => {
                    q.param(Param::Text(v.clone()))
                }
                Form::Boolean { .. } | Form::Bits(_) => {
                    return Err(format!("key column {} is a bit or boolean: not repaired by key", f.col))
                }
            };
            parts.push(p);
        }
        tuples.push(format!("({})", parts.join(", ")));
    }
    let cols: Vec<String> = r.key.iter().map(|f| d.ident(&f.col)).collect();
    Ok(format!("({}) IN ({})", cols.join(", "), tuples.join(", ")))
}

fn pg_key_cond(q: &mut Query, r: &Resolved, keys: &[Vec<String>]) -> String {
    let objects: Vec<Value> = keys.iter().map(|k| Value::Object(key_object(r, k))).collect();
    let p = q.param(Param::Text(Value::Array(objects).to_string()));
    let cols = target_key(r).join(", ");
    format!("({cols}) IN (SELECT {cols} FROM json_populate_recordset(NULL::{}, {p}::json))", target_table(r))
}

/// The source's rows for `keys`, each as the JSON object a target reads.
fn source_rows(
    source: &mut Side,
    r: &Resolved,
    keys: &[Vec<String>],
) -> Result<BTreeMap<Vec<String>, Map<String, Value>>, String> {
    let d = Dialect::Mysql;
    let mut q = Query::new(d);
    let cond = mysql_key_cond(&mut q, r, keys)?;
    let mut sel: Vec<String> = r.key.iter().map(|f| d.value(&f.col, f.form)).collect();
    sel.extend(r.carry.iter().map(|c| c.mysql.clone()));
    q.push(&format!("SELECT {} FROM {}.{} WHERE {cond}", sel.join(", "), d.ident(&r.schema), d.ident(&r.table)));
    let n = r.key.len();
    let mut out = BTreeMap::new();
    for row in source.fetch(&q).map_err(|e| format!("reading the source's rows: {e}"))? {
        let key: Vec<String> = row[..n].iter().map(Cell::text).collect();
        let mut o = key_object(r, &key);
        for (c, cell) in r.carry.iter().zip(&row[n..]) {
            let v = match cell {
                Cell::Null => Value::Null,
                other if c.binary => Value::String(format!("\\x{}", other.text())),
                other => Value::String(other.text()),
            };
            o.insert(c.col.to_string(), v);
        }
        out.insert(key, o);
    }
    Ok(out)
}

/// One batch on the target, in its own transaction: the old rows first to
/// the backups, then the write.
fn write_batch(
    target: &mut Side,
    r: &Resolved,
    lock_timeout_ms: u64,
    keys: &[Vec<String>],
    write: &Query,
    backup: &Path,
) -> Result<u64, String> {
    let mut old = Query::new(Dialect::Postgres);
    let cond = pg_key_cond(&mut old, r, keys);
    old.push(&format!("SELECT row_to_json(x)::text FROM {} x WHERE {cond}", target_table(r)));
    target.execute_batch(&format!("BEGIN; SET LOCAL lock_timeout = '{lock_timeout_ms}ms'"))?;
    let result = (|| {
        let rows: Vec<Value> =
            target.fetch(&old)?.iter().map(|row| serde_json::from_str(&row[0].text()).unwrap_or(Value::Null)).collect();
        let saved = serde_json::json!({
            "target_table": target_table(r),
            "key": target_key(r),
            "keys": keys.iter().map(|k| Value::Object(key_object(r, k))).collect::<Vec<_>>(),
            "old_rows": rows,
        });
        crate::fsutil::write_atomic(backup, saved.to_string().as_bytes())
            .map_err(|e| format!("keeping the old rows in {}: {e}", backup.display()))?;
        let n = target.execute(write)?;
        target.execute_batch("COMMIT")?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = target.execute_batch("ROLLBACK");
    }
    result
}

fn upsert_query(r: &Resolved, rows: &[Map<String, Value>]) -> Query {
    let d = Dialect::Postgres;
    let mut q = Query::new(d);
    let p = q.param(Param::Text(Value::Array(rows.iter().cloned().map(Value::Object).collect()).to_string()));
    let cols: Vec<String> =
        r.discriminator.iter().map(|(c, _)| d.ident(c)).chain(r.carry.iter().map(|c| d.ident(&c.col))).collect();
    let key = target_key(r);
    let set: Vec<String> = cols.iter().filter(|c| !key.contains(c)).map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    let conflict = match set.is_empty() {
        true => "DO NOTHING".to_string(),
        false => format!("DO UPDATE SET {}", set.join(", ")),
    };
    q.push(&format!(
        "INSERT INTO {t} ({c}) SELECT {c} FROM json_populate_recordset(NULL::{t}, {p}::json) ON CONFLICT ({k}) {conflict}",
        t = target_table(r),
        c = cols.join(", "),
        k = key.join(", ")
    ));
    q
}

fn delete_query(r: &Resolved, keys: &[Vec<String>]) -> Query {
    let mut q = Query::new(Dialect::Postgres);
    let cond = pg_key_cond(&mut q, r, keys);
    q.push(&format!("DELETE FROM {} WHERE {cond}", target_table(r)));
    q
}

fn pairs_of<'a>(section: &'a Section, saved: &'a Saved) -> Result<Vec<(Pair<'a>, &'a TableReport)>, String> {
    let cfg = section
        .config
        .tables
        .get(&saved.table)
        .ok_or_else(|| format!("[reconcile.tables.{}] is no longer configured", saved.table))?;
    let entry = section.config.tables.get_key_value(&saved.table).map(|(k, _)| k.as_str()).expect("found above");
    saved
        .pairs
        .iter()
        .map(|t| {
            let source = section.mysql.get_key_value(&t.source).map(|(k, _)| k.as_str());
            let target = section.targets.get_key_value(&t.target).map(|(k, _)| k.as_str());
            match (source, target) {
                (Some(source), Some(target)) => Ok((Pair { entry, cfg, source, target }, t)),
                _ => Err(format!("[mysql.{}] or [postgres.{}] is no longer configured", t.source, t.target)),
            }
        })
        .collect()
}

/// Writes the repair the preview showed (`sha256` of the saved report).
pub fn apply_repair(
    section: &Section,
    state_dir: &Path,
    backups: &Path,
    entry: &str,
    report: Option<&str>,
    deletes: bool,
    sha256: &str,
) -> Result<String, String> {
    let (saved, now) = load(state_dir, entry, report)?;
    if now != sha256 {
        return Err("the saved reconcile changed since the preview; nothing written".into());
    }
    std::fs::create_dir_all(backups).map_err(|e| format!("creating {}: {e}", backups.display()))?;
    let stamp = chrono::Local::now().format("%Y%m%dT%H%M%S%.3f");
    let mut said = Vec::new();
    for (pair, t) in pairs_of(section, &saved)? {
        let upserts: Vec<Vec<String>> = t.missing.iter().chain(&t.differing).cloned().collect();
        let extra = if deletes { t.extra.clone() } else { Vec::new() };
        if upserts.is_empty() && extra.is_empty() {
            continue;
        }
        let label = format!("[{}] → [{}]", t.source, t.target);
        // A failure names what the pairs before it wrote, and where the old rows are.
        let earlier = said.join("; ");
        let fail = |e: String| {
            let before = if earlier.is_empty() { String::new() } else { format!("{earlier}; ") };
            format!(
                "{before}{e}; nothing after it was tried; old rows under {}/{stamp}-reconcile-{entry}-*",
                backups.display()
            )
        };
        let (r, mut source, mut target) = open_pair(section, &pair).map_err(|e| fail(format!("{label}: {e}")))?;
        if let Some((c, why)) = r.uncarried.first() {
            return Err(fail(format!("{label}: column {c} cannot be written ({why}); nothing written there")));
        }
        let lock = section.targets[pair.target].lock_timeout_ms;
        let (mut written, mut gone, mut deleted, mut kept, mut batch) = (0u64, 0usize, 0u64, 0usize, 0usize);
        let progress = |done: &str, batch: usize, e: String| {
            fail(format!("{label}: {done}; then batch {batch} FAILED and was rolled back: {e}"))
        };
        for chunk in upserts.chunks(BATCH) {
            batch += 1;
            let done = format!("{written} row(s) upserted in {} batch(es)", batch - 1);
            let rows = source_rows(&mut source, &r, chunk).map_err(|e| progress(&done, batch, e))?;
            gone += chunk.len() - rows.len();
            if rows.is_empty() {
                continue;
            }
            let backup =
                backups.join(format!("{stamp}-reconcile-{entry}-{}-{}-upsert-{batch}.json", t.source, t.target));
            let found: Vec<Vec<String>> = rows.keys().cloned().collect();
            let q = upsert_query(&r, &rows.into_values().collect::<Vec<_>>());
            written +=
                write_batch(&mut target, &r, lock, &found, &q, &backup).map_err(|e| progress(&done, batch, e))?;
        }
        for chunk in extra.chunks(BATCH) {
            batch += 1;
            let done = format!("{written} upserted, {deleted} deleted in {} batch(es)", batch - 1);
            // A row the source has again is not deleted.
            let back = source_rows(&mut source, &r, chunk).map_err(|e| progress(&done, batch, e))?;
            kept += back.len();
            let doomed: Vec<Vec<String>> = chunk.iter().filter(|k| !back.contains_key(*k)).cloned().collect();
            if doomed.is_empty() {
                continue;
            }
            let backup =
                backups.join(format!("{stamp}-reconcile-{entry}-{}-{}-delete-{batch}.json", t.source, t.target));
            let q = delete_query(&r, &doomed);
            deleted +=
                write_batch(&mut target, &r, lock, &doomed, &q, &backup).map_err(|e| progress(&done, batch, e))?;
        }
        let mut line = format!("{label}: {written} row(s) upserted");
        if deletes {
            line.push_str(&format!(", {deleted} deleted"));
        }
        if gone > 0 {
            line.push_str(&format!(", {gone} gone from the source since the preview (left)"));
        }
        if kept > 0 {
            line.push_str(&format!(", {kept} back in the source since the preview (not deleted)"));
        }
        said.push(line);
    }
    said.push(format!("old rows under {}/{stamp}-reconcile-{entry}-*", backups.display()));
    Ok(said.join("; "))
}

/// Each repaired key's row hash on both sides, by key.
fn hashes_by_key(
    source: &mut Side,
    target: &mut Side,
    r: &Resolved,
    keys: &[Vec<String>],
) -> Result<[BTreeMap<Vec<String>, i64>; 2], String> {
    let mut out: [BTreeMap<Vec<String>, i64>; 2] = Default::default();
    for chunk in keys.chunks(BATCH) {
        let (m, p) = (Dialect::Mysql, Dialect::Postgres);
        let mut qs = Query::new(m);
        let cond = mysql_key_cond(&mut qs, r, chunk)?;
        let sel: Vec<String> = r.key.iter().map(|f| m.value(&f.col, f.form)).collect();
        qs.push(&format!(
            "SELECT {}, {} FROM {}.{} WHERE {cond}",
            sel.join(", "),
            m.hash(&r.columns),
            m.ident(&r.schema),
            m.ident(&r.table)
        ));
        let mut qt = Query::new(p);
        let cond = pg_key_cond(&mut qt, r, chunk);
        let sel: Vec<String> = r.key.iter().map(|f| p.value(&f.col, f.form)).collect();
        qt.push(&format!("SELECT {}, {} FROM {} WHERE {cond}", sel.join(", "), p.hash(&r.columns), target_table(r)));
        let (s, t) = super::side::both(source, target, &qs, &qt);
        let n = r.key.len();
        for (i, rows) in [s?, t?].into_iter().enumerate() {
            for row in rows {
                out[i].insert(row[..n].iter().map(Cell::text).collect(), row[n].int().unwrap_or(-1));
            }
        }
    }
    Ok(out)
}

/// Checks every repaired key: an upserted row now equals the source's (or
/// the source no longer has it), a deleted one is gone.
pub fn verify_repair(
    section: &Section,
    state_dir: &Path,
    entry: &str,
    report: Option<&str>,
    deletes: bool,
) -> Result<String, String> {
    let (saved, _) = load(state_dir, entry, report)?;
    let mut said = Vec::new();
    for (pair, t) in pairs_of(section, &saved)? {
        let mut keys: Vec<Vec<String>> = t.missing.iter().chain(&t.differing).cloned().collect();
        if deletes {
            keys.extend(t.extra.iter().cloned());
        }
        if keys.is_empty() {
            continue;
        }
        let label = format!("[{}] → [{}]", t.source, t.target);
        let (r, mut source, mut target) = open_pair(section, &pair).map_err(|e| format!("{label}: {e}"))?;
        let [s, tg] = hashes_by_key(&mut source, &mut target, &r, &keys).map_err(|e| format!("{label}: {e}"))?;
        let still: Vec<String> = keys
            .iter()
            .filter(|k| s.get(*k) != tg.get(*k))
            .take(super::KEYS_SHOWN)
            .map(|k| super::key_text(&t.key, k))
            .collect();
        if !still.is_empty() {
            return Err(format!("{label}: still differ: {}", still.join(", ")));
        }
        said.push(format!("{label}: {} repaired row(s) equal the source", keys.len()));
    }
    Ok(said.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(dir: &Path, table: &str) -> String {
        let t = TableReport { table: table.into(), source: "s".into(), target: "t".into(), ..Default::default() };
        let report = Report { tables: vec![t], window: None };
        save(dir, &report, ORIGIN_AGENT).unwrap().remove(0).1
    }

    #[test]
    fn a_repair_reads_only_the_snapshot_its_hash_names() {
        let dir = tempfile::tempdir().unwrap();
        let sha = saved(dir.path(), "t_order");
        assert_eq!(load(dir.path(), "t_order", Some(&sha)).unwrap().1, sha);
        assert_eq!(load(dir.path(), "t_order", None).unwrap().1, sha, "the last report is the same one");
        for bad in ["../../etc/passwd", "0123", &"g".repeat(64)] {
            assert!(load(dir.path(), "t_order", Some(bad)).unwrap_err().contains("is not a report's SHA-256"), "{bad}");
        }
        // A snapshot of another table, or one whose content was changed, is refused.
        let other = saved(dir.path(), "t_item");
        assert!(load(dir.path(), "t_order", Some(&other)).unwrap_err().contains("a report of t_item, not of t_order"));
        let path = snapshot_path(dir.path(), &sha);
        let text = std::fs::read_to_string(&path).unwrap().replace("\"s\"", "\"x\"");
        std::fs::write(&path, text).unwrap();
        assert!(load(dir.path(), "t_order", Some(&sha)).unwrap_err().contains("does not hash to its name"));
        // Not followed through a link.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(saved_path(dir.path(), "t_order"), &path).unwrap();
        assert!(load(dir.path(), "t_order", Some(&sha)).is_err());
    }
}
