//! The reconcile watch: the results of the reconciles the agent ran itself
//! (the `reconcile` step, in the background), as events for the rules —
//! `reconcile_differs` (a repair to propose), `reconcile_equal`,
//! `reconcile_failed` — and, with `[reconcile] every_secs`, `reconcile_due`
//! on that schedule.
//!
//! It reads only the agent's own state directory (`state/reconcile/`,
//! regular files), and a file only when its modification time changed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use super::ProbeEvent;
use crate::reconcile::{Saved, ORIGIN_AGENT};

pub struct ReconcileWatch {
    dir: PathBuf,
    /// Per file: when it was last looked at, and the report time seen.
    seen: BTreeMap<PathBuf, (SystemTime, i64)>,
    every_ms: i64,
    next_due: i64,
}

impl ReconcileWatch {
    /// A watch that reports only what is written from `now` on.
    pub fn new(state_dir: &std::path::Path, every_secs: u64, now: i64) -> ReconcileWatch {
        let mut w = ReconcileWatch {
            dir: state_dir.join("reconcile"),
            seen: BTreeMap::new(),
            every_ms: every_secs as i64 * 1000,
            next_due: now + every_secs as i64 * 1000,
        };
        let _ = w.changed();
        w
    }

    /// The reports whose file changed since the last look, each with its SHA-256.
    fn changed(&mut self) -> Vec<(Saved, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            let Ok(modified) = meta.modified() else { continue };
            if !meta.is_file() || path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            if self.seen.get(&path).is_some_and(|(m, _)| *m == modified) {
                continue;
            }
            // Looked at once per modification, whatever it holds: a torn or
            // linked file is not read again until it changes.
            let before = self.seen.get(&path).map(|(_, at)| *at);
            self.seen.insert(path.clone(), (modified, before.unwrap_or(i64::MIN)));
            let Ok(bytes) = crate::fsutil::read_regular(&path) else { continue };
            let Ok(saved) = serde_json::from_slice::<Saved>(&bytes) else { continue };
            self.seen.insert(path, (modified, saved.at.max(before.unwrap_or(i64::MIN))));
            if before.is_none_or(|b| saved.at > b) {
                out.push((saved, crate::digest::sha256_hex(&bytes)));
            }
        }
        out
    }

    pub fn findings(&mut self, now: i64) -> Vec<ProbeEvent> {
        let mut out = Vec::new();
        if self.every_ms > 0 && now >= self.next_due {
            self.next_due = now + self.every_ms;
            out.push(ProbeEvent {
                name: "reconcile_due",
                captures: BTreeMap::new(),
                text: format!("the scheduled reconcile ([reconcile] every_secs = {})", self.every_ms / 1000),
            });
        }
        for (saved, sha256) in self.changed() {
            if saved.origin == ORIGIN_AGENT {
                out.push(finding(&saved, &sha256));
            }
        }
        out
    }
}

/// What one saved report says, as an event.
fn finding(saved: &Saved, sha256: &str) -> ProbeEvent {
    let table = saved.table.clone();
    if let Some((t, error)) = saved.error() {
        return ProbeEvent {
            name: "reconcile_failed",
            captures: [("table".to_string(), table.clone()), ("error".to_string(), crate::types::one_line(error, 300))]
                .into(),
            text: format!(
                "reconcile of {table} [{}] → [{}] failed: {}",
                t.source,
                t.target,
                crate::types::one_line(error, 300)
            ),
        };
    }
    let crate::reconcile::Counts { missing, extra, differing } = saved.totals();
    let name = if missing + extra + differing == 0 { "reconcile_equal" } else { "reconcile_differs" };
    ProbeEvent {
        name,
        captures: [
            ("table".to_string(), table.clone()),
            ("missing".to_string(), missing.to_string()),
            ("extra".to_string(), extra.to_string()),
            ("differing".to_string(), differing.to_string()),
            // The snapshot a repair binds to.
            ("report".to_string(), sha256.to_string()),
        ]
        .into(),
        text: format!(
            "reconcile of {table}: {missing} missing, {extra} extra, {differing} differing row(s) in the PostgreSQL targets"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::{save_reports, Report, TableReport, ORIGIN_COMMAND};

    fn report(table: &str, missing: usize) -> Report {
        let mut t = TableReport { table: table.into(), source: "s".into(), target: "t".into(), ..Default::default() };
        t.counts.missing = missing;
        t.missing = (0..missing).map(|i| vec![i.to_string()]).collect();
        Report { tables: vec![t], window: None }
    }

    #[test]
    fn only_the_agents_own_new_reports_become_events_and_torn_or_linked_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        // Reports from before the watch started are not news.
        save_reports(dir.path(), &report("t_old", 1), ORIGIN_AGENT).unwrap();
        let mut w = ReconcileWatch::new(dir.path(), 0, 0);
        assert!(w.findings(1).is_empty());

        let reconcile = dir.path().join("reconcile");
        std::fs::write(reconcile.join("torn.json"), b"{\"at\": 5, \"table\": \"t_torn\", \"pai").unwrap();
        std::fs::write(reconcile.join("not-json.txt"), b"{}").unwrap();
        std::os::unix::fs::symlink(reconcile.join("t_old.json"), reconcile.join("linked.json")).unwrap();
        save_reports(dir.path(), &report("t_person", 2), ORIGIN_COMMAND).unwrap();
        assert!(w.findings(2).is_empty(), "torn, foreign, linked and a person's reports are no events");

        save_reports(dir.path(), &report("t_order", 3), ORIGIN_AGENT).unwrap();
        let f = w.findings(3);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].name, f[0].captures["table"].as_str(), f[0].captures["missing"].as_str()),
            ("reconcile_differs", "t_order", "3")
        );
        let sha = crate::digest::sha256_hex(&std::fs::read(reconcile.join("t_order.json")).unwrap());
        assert_eq!(f[0].captures["report"], sha, "the snapshot a repair binds to");
        assert!(w.findings(4).is_empty(), "once");

        // A rewritten file with an older report time (a restored backup) is not news either.
        let mut older: Saved = serde_json::from_slice(&std::fs::read(reconcile.join("t_order.json")).unwrap()).unwrap();
        older.at -= 60_000;
        std::fs::write(reconcile.join("t_order.json"), serde_json::to_vec(&older).unwrap()).unwrap();
        assert!(w.findings(5).is_empty());
    }

    #[test]
    fn the_schedule_says_due_once_per_period() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ReconcileWatch::new(dir.path(), 10, 0);
        assert!(w.findings(9_999).is_empty());
        assert_eq!(w.findings(10_000)[0].name, "reconcile_due");
        assert!(w.findings(15_000).is_empty());
        assert_eq!(w.findings(20_000)[0].name, "reconcile_due");
        assert!(ReconcileWatch::new(dir.path(), 0, 0).findings(i64::MAX / 2).is_empty(), "0: no schedule");
    }
}
