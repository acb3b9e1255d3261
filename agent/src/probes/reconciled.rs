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
            let Ok(bytes) = crate::fsutil::read_regular(&path) else { continue };
            let Ok(saved) = serde_json::from_slice::<Saved>(&bytes) else { continue };
            let before = self.seen.insert(path, (modified, saved.at)).map(|(_, at)| at);
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
