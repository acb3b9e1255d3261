//! Finding the rows that differ without copying the tables: segments of
//! the key space, a count and a checksum of each in both databases at once,
//! the differing segments split again, and keys with per-row hashes fetched
//! only for segments of at most `LEAF_ROWS` rows.
//!
//! A single integer key is cut into key ranges (each query an index range
//! scan); any other key into buckets of a 60-bit hash of the key, 10 bits
//! more per level. The checksum of a segment is the row count and the
//! exact sum of the rows' 60-bit hashes (MD5 of the canonical row), so
//! neither order nor grouping matters.
//!
//! Rows in flight are not reported as lost: every candidate is read again
//! after `recheck_after` in a new snapshot, without the time window, and
//! counted as in flight when it then agrees or when the source changed it
//! within `min_age`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::canonical::Dialect;
use super::side::{both, Cell, Param, Query, Rows, Side};
use super::table::Resolved;

/// Segments this small are compared row by row.
const LEAF_ROWS: i64 = 1000;
/// Range leaves fetched in one query.
const LEAVES_PER_QUERY: usize = 64;
/// Keys asked for by value in one query.
const KEYS_PER_QUERY: usize = 1000;
/// Hash bits added per level.
const HASH_BITS: u32 = 10;

/// A part of the key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    /// Keys `lo..=hi` of a single integer key.
    Range { lo: i64, hi: i64 },
    /// Rows whose key hash has `value` in its low `bits` bits.
    Hash { bits: u32, value: i64 },
}

/// What to compare and how.
pub struct Options {
    /// `(since, until)` on the change column, both sides.
    pub window: Option<(Option<String>, Option<String>)>,
    pub min_age: Duration,
    pub recheck_after: Duration,
    /// Keys kept per kind for the report (the counts stay exact).
    pub max_keys: usize,
}

/// A key, as its columns' canonical text.
pub type Key = Vec<String>;

/// What a comparison found.
#[derive(Debug, Default, Clone)]
pub struct Found {
    pub source_rows: i64,
    pub target_rows: i64,
    pub missing: Vec<Key>,
    pub extra: Vec<Key>,
    pub differing: Vec<Key>,
    pub counts: Counts,
    pub in_flight: usize,
    pub queries: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub missing: usize,
    pub extra: usize,
    pub differing: usize,
}

/// One row from a leaf: its hash, and on the source whether it changed within `min_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowHash {
    hash: i64,
    fresh: bool,
}

struct Cmp<'a> {
    t: &'a Resolved,
    opts: &'a Options,
    source: &'a mut Side,
    target: &'a mut Side,
    queries: usize,
    progress: &'a mut dyn FnMut(&str),
}

impl Cmp<'_> {
    fn key_hash(&self, d: Dialect) -> String {
        d.hash(&self.t.key)
    }

    fn from(&self, d: Dialect) -> String {
        match d {
            Dialect::Mysql => format!("{}.{}", d.ident(&self.t.schema), d.ident(&self.t.table)),
            Dialect::Postgres => format!("{}.{}", d.ident(&self.t.target_schema), d.ident(&self.t.target_table)),
        }
    }

    /// The conditions every query of this side has: this source's rows,
    /// and the window when asked (and `windowed`).
    fn base(&self, q: &mut Query, windowed: bool) -> Vec<String> {
        let d = q.dialect;
        let mut conds = Vec::new();
        if let (Dialect::Postgres, Some((col, value))) = (d, &self.t.discriminator) {
            let p = q.param(Param::Text(value.clone()));
            conds.push(format!("{} = {p}", d.ident(col)));
        }
        if let (true, Some((since, until)), Some(col)) = (windowed, &self.opts.window, &self.t.change_column) {
            let cast = if d == Dialect::Postgres { "::timestamp" } else { "" };
            if let Some(s) = since {
                let p = q.param(Param::Text(s.clone()));
                conds.push(format!("{} >= {p}{cast}", d.ident(col)));
            }
            if let Some(u) = until {
                let p = q.param(Param::Text(u.clone()));
                conds.push(format!("{} < {p}{cast}", d.ident(col)));
            }
        }
        conds
    }

    fn range_col(&self, d: Dialect) -> String {
        let k = d.ident(&self.t.key[0].col);
        match d {
            Dialect::Mysql => format!("CAST({k} AS SIGNED)"),
            Dialect::Postgres => format!("{k}::bigint"),
        }
    }

    fn segment_cond(&self, q: &mut Query, segs: &[Segment]) -> Option<String> {
        let d = q.dialect;
        let mut parts = Vec::new();
        let mut hashed: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
        for s in segs {
            match *s {
                Segment::Range { lo, hi } => {
                    let (a, b) = (q.param(Param::Int(lo)), q.param(Param::Int(hi)));
                    parts.push(format!("{} BETWEEN {a} AND {b}", d.ident(&self.t.key[0].col)));
                }
                Segment::Hash { bits: 0, .. } => return None,
                Segment::Hash { bits, value } => hashed.entry(bits).or_default().push(value),
            }
        }
        for (bits, values) in hashed {
            let mask = q.param(Param::Int((1i64 << bits) - 1));
            parts.push(q.in_list(&format!("({} & {mask})", self.key_hash(d)), &values));
        }
        Some(format!("({})", parts.join(" OR ")))
    }

    fn where_clause(conds: &[String]) -> String {
        match conds.is_empty() {
            true => String::new(),
            false => format!(" WHERE {}", conds.join(" AND ")),
        }
    }

    fn run_both(&mut self, on_source: &Query, on_target: &Query) -> Result<(Rows, Rows), String> {
        self.queries += 2;
        let (s, t) = both(self.source, self.target, on_source, on_target);
        let s = s.map_err(|e| format!("MySQL [{}] {}.{}: {e}", self.t.source, self.t.schema, self.t.table))?;
        let t = t.map_err(|e| {
            format!("PostgreSQL [{}] {}.{}: {e}", self.t.target, self.t.target_schema, self.t.target_table)
        })?;
        Ok((s, t))
    }

    /// Min, max and count of this side's rows.
    fn bounds_query(&self, d: Dialect) -> Query {
        let mut q = Query::new(d);
        let conds = self.base(&mut q, true);
        let sel = match self.t.range_key {
            true => format!("MIN({k}), MAX({k}), COUNT(*)", k = self.range_col(d)),
            false => "NULL, NULL, COUNT(*)".into(),
        };
        q.push(&format!("SELECT {sel} FROM {}{}", self.from(d), Self::where_clause(&conds)));
        q
    }

    /// Count and checksum of each child segment of `segs` (one range, or
    /// hash segments of the same bits), by child index.
    fn summaries_query(&self, d: Dialect, segs: &[Segment], width: i64) -> Query {
        let mut q = Query::new(d);
        let mut conds = self.base(&mut q, true);
        let row_hash = d.hash(&self.t.columns);
        let bucket = match segs[0] {
            Segment::Range { lo, .. } => {
                let (a, w) = (q.param(Param::Int(lo)), q.param(Param::Int(width)));
                match d {
                    Dialect::Mysql => format!("({} - {a}) DIV {w}", self.range_col(d)),
                    Dialect::Postgres => format!("({} - {a}) / {w}", self.range_col(d)),
                }
            }
            Segment::Hash { bits, .. } => {
                let mask = q.param(Param::Int((1i64 << (bits + HASH_BITS)) - 1));
                format!("({} & {mask})", self.key_hash(d))
            }
        };
        conds.extend(self.segment_cond(&mut q, segs));
        let sum = match d {
            Dialect::Mysql => format!("CAST(SUM({row_hash}) AS CHAR)"),
            Dialect::Postgres => format!("sum({row_hash})::text"),
        };
        q.push(&format!(
            "SELECT {bucket} AS b, COUNT(*), {sum} FROM {}{} GROUP BY 1",
            self.from(d),
            Self::where_clause(&conds)
        ));
        q
    }

    /// Each row's key, hash and (on the source, with a change column)
    /// whether it changed within `min_age`.
    fn rows_query(&self, d: Dialect, segs: &[Segment], keys: Option<&[i64]>, windowed: bool) -> Query {
        let mut q = Query::new(d);
        let mut conds = self.base(&mut q, windowed);
        let mut sel: Vec<String> = self.t.key.iter().map(|f| d.value(&f.col, f.form)).collect();
        sel.push(d.hash(&self.t.columns));
        match (&self.t.change_column, d) {
            (Some(c), Dialect::Mysql) if !self.opts.min_age.is_zero() => {
                let age = q.param(Param::Int(self.opts.min_age.as_secs().max(1) as i64));
                sel.push(format!("IF({} >= NOW(6) - INTERVAL {age} SECOND, 1, 0)", d.ident(c)));
            }
            _ => sel.push("0".into()),
        }
        match keys {
            // The bare column, so that the index is used.
            Some(keys) => conds.push(q.in_list(&d.ident(&self.t.key[0].col), keys)),
            None => conds.extend(self.segment_cond(&mut q, segs)),
        }
        q.push(&format!("SELECT {} FROM {}{}", sel.join(", "), self.from(d), Self::where_clause(&conds)));
        q
    }

    fn rows(
        &mut self,
        segs: &[Segment],
        keys: Option<&[i64]>,
        windowed: bool,
    ) -> Result<[BTreeMap<Key, RowHash>; 2], String> {
        let (qs, qt) = (
            self.rows_query(Dialect::Mysql, segs, keys, windowed),
            self.rows_query(Dialect::Postgres, segs, keys, windowed),
        );
        let (s, t) = self.run_both(&qs, &qt)?;
        let n = self.t.key.len();
        let decode = |rows: Vec<Vec<Cell>>| -> Result<BTreeMap<Key, RowHash>, String> {
            rows.into_iter()
                .map(|r| {
                    let key = r[..n].iter().map(Cell::text).collect();
                    let hash = r[n].int().ok_or("a row without a hash (is a canonical form NULL?)")?;
                    Ok((key, RowHash { hash, fresh: r[n + 1].int() == Some(1) }))
                })
                .collect()
        };
        Ok([decode(s)?, decode(t)?])
    }

    /// Compares the children of `segs`; returns the differing ones with
    /// their larger row count.
    fn split(&mut self, segs: &[Segment], width: i64) -> Result<Vec<(Segment, i64)>, String> {
        let (qs, qt) =
            (self.summaries_query(Dialect::Mysql, segs, width), self.summaries_query(Dialect::Postgres, segs, width));
        let (s, t) = self.run_both(&qs, &qt)?;
        let index = |rows: Vec<Vec<Cell>>| -> BTreeMap<i64, (i64, String)> {
            rows.into_iter().filter_map(|r| Some((r[0].int()?, (r[1].int().unwrap_or(0), r[2].text())))).collect()
        };
        let (s, t) = (index(s), index(t));
        let mut out = Vec::new();
        for b in s.keys().chain(t.keys()).collect::<std::collections::BTreeSet<_>>() {
            let (a, z) = (s.get(b), t.get(b));
            if a == z {
                continue;
            }
            let rows = a.map_or(0, |x| x.0).max(z.map_or(0, |x| x.0));
            let child = match segs[0] {
                Segment::Range { lo, hi } => {
                    let clo = lo.saturating_add(b.saturating_mul(width));
                    Segment::Range { lo: clo, hi: clo.saturating_add(width - 1).min(hi) }
                }
                Segment::Hash { bits, .. } => Segment::Hash { bits: bits + HASH_BITS, value: *b },
            };
            out.push((child, rows));
        }
        Ok(out)
    }

    /// The leaves: segments of at most LEAF_ROWS rows whose checksums differ.
    fn leaves(&mut self, found: &mut Found) -> Result<Vec<Segment>, String> {
        let (qs, qt) = (self.bounds_query(Dialect::Mysql), self.bounds_query(Dialect::Postgres));
        let (s, t) = self.run_both(&qs, &qt)?;
        let (s, t) = (&s[0], &t[0]);
        found.source_rows = s[2].int().unwrap_or(0);
        found.target_rows = t[2].int().unwrap_or(0);
        let rows = found.source_rows.max(found.target_rows);
        if rows == 0 {
            return Ok(Vec::new());
        }
        let lo = [s[0].int(), t[0].int()].into_iter().flatten().min().unwrap_or(0);
        let hi = [s[1].int(), t[1].int()].into_iter().flatten().max().unwrap_or(0);
        // `key - lo` must fit a signed 64-bit integer in both databases;
        // keys spread wider than that are cut by their hash instead.
        let root = match self.t.range_key && (hi as i128 - lo as i128) < (1i128 << 62) {
            true => Segment::Range { lo, hi },
            false => Segment::Hash { bits: 0, value: 0 },
        };
        let mut frontier = vec![(root, rows)];
        let mut leaves = Vec::new();
        let mut level = 0;
        while !frontier.is_empty() {
            level += 1;
            (self.progress)(&format!("level {level}: {} segment(s) to split, {} leaves", frontier.len(), leaves.len()));
            let (small, big): (Vec<_>, Vec<_>) = frontier.into_iter().partition(|(seg, rows)| {
                *rows <= LEAF_ROWS
                    || matches!(seg, Segment::Hash { bits, .. } if *bits + HASH_BITS > 60)
                    || matches!(seg, Segment::Range { lo, hi } if lo == hi)
            });
            leaves.extend(small.into_iter().map(|(s, _)| s));
            frontier = Vec::new();
            let ranges: Vec<_> = big.iter().filter(|(s, _)| matches!(s, Segment::Range { .. })).copied().collect();
            let hashes: Vec<Segment> =
                big.iter().filter(|(s, _)| matches!(s, Segment::Hash { .. })).map(|(s, _)| *s).collect();
            for (i, (seg, rows)) in ranges.iter().enumerate() {
                let Segment::Range { lo, hi } = *seg else { unreachable!() };
                let span = (hi as i128 - lo as i128 + 1) as u128;
                let parts = ((*rows + LEAF_ROWS - 1) / LEAF_ROWS).clamp(2, 1024) as u128;
                let width = span.div_ceil(parts).min(i64::MAX as u128) as i64;
                (self.progress)(&format!("level {level}: range {}/{}", i + 1, ranges.len()));
                frontier.extend(self.split(&[*seg], width.max(1))?);
            }
            if !hashes.is_empty() {
                frontier.extend(self.split(&hashes, 0)?);
            }
        }
        Ok(leaves)
    }
}

fn classify(s: Option<&RowHash>, t: Option<&RowHash>) -> Option<u8> {
    match (s, t) {
        (Some(_), None) => Some(0),
        (None, Some(_)) => Some(1),
        (Some(a), Some(b)) if a.hash != b.hash => Some(2),
        _ => None,
    }
}

/// Compares one resolved table on the two sides.
pub fn compare(
    t: &Resolved,
    opts: &Options,
    source: &mut Side,
    target: &mut Side,
    progress: &mut dyn FnMut(&str),
) -> Result<Found, String> {
    source.snapshot()?;
    target.snapshot()?;
    let mut cmp = Cmp { t, opts, source, target, queries: 0, progress };
    let mut found = Found::default();
    let leaves = cmp.leaves(&mut found)?;
    // First pass: the candidates, from the leaves.
    let mut candidates: BTreeMap<Key, u8> = BTreeMap::new();
    for (i, chunk) in leaves.chunks(LEAVES_PER_QUERY).enumerate() {
        (cmp.progress)(&format!(
            "rows of {} leaves: {}/{}",
            leaves.len(),
            (i * LEAVES_PER_QUERY + chunk.len()),
            leaves.len()
        ));
        let [s, t] = cmp.rows(chunk, None, true)?;
        for key in s.keys().chain(t.keys()) {
            if let Some(kind) = classify(s.get(key), t.get(key)) {
                candidates.insert(key.clone(), kind);
            }
        }
    }
    if candidates.is_empty() {
        found.queries = cmp.queries;
        return Ok(found);
    }
    // Second pass, after the pipeline's lag, in new snapshots and without
    // the window: what still differs, and what the source just changed.
    (cmp.progress)(&format!(
        "{} candidate row(s); checking again in {} s",
        candidates.len(),
        opts.recheck_after.as_secs()
    ));
    std::thread::sleep(opts.recheck_after);
    cmp.source.snapshot()?;
    cmp.target.snapshot()?;
    let mut now: [BTreeMap<Key, RowHash>; 2] = Default::default();
    if t.range_key {
        let keys: Vec<i64> = candidates.keys().filter_map(|k| k[0].parse().ok()).collect();
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            let [s, t] = cmp.rows(&[], Some(chunk), false)?;
            now[0].extend(s);
            now[1].extend(t);
        }
    } else {
        for chunk in leaves.chunks(LEAVES_PER_QUERY) {
            let [s, t] = cmp.rows(chunk, None, false)?;
            now[0].extend(s);
            now[1].extend(t);
        }
    }
    for key in candidates.keys() {
        let (s, t) = (now[0].get(key), now[1].get(key));
        let kind = classify(s, t);
        if kind.is_none() || s.is_some_and(|r| r.fresh) {
            found.in_flight += 1;
            continue;
        }
        let (count, list) = match kind {
            Some(0) => (&mut found.counts.missing, &mut found.missing),
            Some(1) => (&mut found.counts.extra, &mut found.extra),
            _ => (&mut found.counts.differing, &mut found.differing),
        };
        *count += 1;
        if list.len() < opts.max_keys {
            list.push(key.clone());
        }
    }
    found.queries = cmp.queries;
    Ok(found)
}
