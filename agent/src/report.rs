//! The runbook's daily and weekly look (M1–M4) as one screen
//! (`pipemedic status`, the last hour) and one mail a day (the digest, the
//! last 24 hours): each source's freshness, heartbeats per source, pending
//! approvals, what the agent did, open circuit breakers.
//!
//! Both read only the state directory and the sources' files, so `status`
//! works from a shell while the daemon runs (or after it stopped). What only
//! the daemon knows — heartbeat counts, bytes behind — it writes to
//! `status.json` once a minute.

use std::collections::BTreeMap;
use std::path::Path;

use crate::audit::Entry;
use serde::{Deserialize, Serialize};

use crate::approval::{Approval, ApprovalState, ApprovalStore};
use crate::config::Config;
use crate::state::{read_json, write_json_atomic, StateError};
use crate::types::human_time;

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// How much of the audit journal's end is read for a report.
const AUDIT_TAIL: u64 = 16 << 20;

/// Heartbeats per source per minute, for the last 24 hours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeatCounts {
    /// source → minute start (ms) → beats.
    pub minutes: BTreeMap<String, BTreeMap<i64, u32>>,
}

impl BeatCounts {
    pub fn count(&mut self, source: &str, at: i64) {
        let minutes = self.minutes.entry(source.to_string()).or_default();
        *minutes.entry(at - at.rem_euclid(MINUTE)).or_default() += 1;
        // Bounded: a day of minutes per source.
        while minutes.len() > 24 * 60 + 1 {
            minutes.pop_first();
        }
    }

    /// Beats of `source` in `[from, to)`.
    pub fn between(&self, source: &str, from: i64, to: i64) -> u32 {
        self.minutes.get(source).map_or(0, |m| m.range(from - from.rem_euclid(MINUTE)..to).map(|(_, n)| n).sum())
    }

    /// The last minute `source` beat in.
    pub fn last(&self, source: &str) -> Option<i64> {
        self.minutes.get(source).and_then(|m| m.keys().next_back().copied())
    }
}

/// What the daemon leaves for `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusFile {
    pub written: i64,
    pub started: i64,
    pub pid: u32,
    pub dry_run: bool,
    pub beats: BeatCounts,
    /// source → bytes not read yet.
    pub behind: BTreeMap<String, u64>,
}

impl StatusFile {
    pub fn path(state_dir: &Path) -> std::path::PathBuf {
        state_dir.join("status.json")
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), StateError> {
        write_json_atomic(&Self::path(state_dir), self)
    }

    pub fn load(state_dir: &Path) -> Option<StatusFile> {
        read_json(&Self::path(state_dir)).ok().flatten()
    }
}

/// One source's line.
#[derive(Debug, Clone)]
pub struct SourceLine {
    pub name: String,
    pub path: String,
    /// Milliseconds since the file was last written; `None`: no such file.
    pub age: Option<i64>,
    pub behind: Option<u64>,
}

/// One decision that did something (or failed to).
#[derive(Debug, Clone)]
pub struct ActionLine {
    pub time: String,
    pub rule: String,
    pub decision: String,
    pub summary: String,
}

/// Everything a report shows, gathered at one moment.
pub struct Report {
    pub host: String,
    pub now: i64,
    pub window: i64,
    pub agent: String,
    pub dry_run: bool,
    pub sources: Vec<SourceLine>,
    /// (source, beats in the window, expected in the window, last beat).
    pub heartbeats: Vec<(String, u32, u32, Option<i64>)>,
    /// Per hour of the window, per expected source (digest only).
    pub hourly: Vec<(i64, Vec<u32>)>,
    pub pending: Vec<Approval>,
    pub decisions: BTreeMap<(String, String), u64>,
    pub actions: Vec<ActionLine>,
    pub circuits: Vec<String>,
    pub notes: Vec<String>,
}

/// Decisions that are worth a person's glance in "what the agent did".
const SHOWN: &[&str] =
    &["applied", "failed", "awaiting-approval", "needs-approval", "circuit-open", "refused", "dry-run"];

impl Report {
    /// Gathers the report for the `window` (ms) up to `now` (ms).
    pub fn gather(config: &Config, now: i64, window: i64) -> Report {
        let status = StatusFile::load(&config.state_dir);
        let mut notes = Vec::new();
        let agent = match &status {
            None => "no status written yet: the agent has not run here (or not for a minute)".to_string(),
            Some(s) if now - s.written > 3 * MINUTE || !crate::system::is_alive(s.pid) => {
                format!("NOT RUNNING? its status was last written {}", human_time(s.written))
            }
            Some(s) => format!("running since {} (pid {})", human_time(s.started), s.pid),
        };
        let sources = config
            .sources
            .iter()
            .map(|(name, s)| {
                let meta = std::fs::metadata(&s.path).ok();
                let age = meta.as_ref().and_then(|m| m.modified().ok()).map(|t| {
                    let written = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
                    (now - written).max(0)
                });
                SourceLine {
                    name: name.clone(),
                    path: s.path.display().to_string(),
                    age,
                    behind: status.as_ref().and_then(|st| st.behind.get(name).copied()),
                }
            })
            .collect();
        let from = now - window;
        let (mut heartbeats, mut hourly) = (Vec::new(), Vec::new());
        if let (Some(h), Some(st)) = (&config.heartbeat, &status) {
            let expected = (window / MINUTE) as u32;
            for s in &h.expected {
                heartbeats.push((s.clone(), st.beats.between(s, from, now), expected, st.beats.last(s)));
            }
            let mut hour = from - from.rem_euclid(HOUR);
            while hour < now {
                hourly.push((hour, h.expected.iter().map(|s| st.beats.between(s, hour, hour + HOUR)).collect()));
                hour += HOUR;
            }
        } else if config.heartbeat.is_some() {
            notes.push("heartbeat counts appear once the agent has written its status".into());
        }
        let pending = ApprovalStore::read_all(&config.state_dir)
            .into_iter()
            .filter(|a| a.state == ApprovalState::Pending)
            .collect();
        let (decisions, actions) = recent_decisions(&config.state_dir.join("audit.jsonl"), from, &mut notes);
        let circuits = crate::plan::policy::Policy::persistent(config.limits.policy(), &config.state_dir)
            .map(|p| p.open_circuits(now))
            .unwrap_or_else(|e| {
                notes.push(format!("circuit breakers unknown: {e}"));
                Vec::new()
            });
        Report {
            host: config.host_name(),
            now,
            window,
            agent,
            dry_run: status.as_ref().map_or(config.dry_run, |s| s.dry_run),
            sources,
            heartbeats,
            hourly,
            pending,
            decisions,
            actions,
            circuits,
            notes,
        }
    }

    /// The text: one screen for `status`, with the hourly table for the digest.
    pub fn render(&self, config: &Config) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "pipemedic on {} at {} — agent {}{}",
            self.host,
            human_time(self.now),
            self.agent,
            if self.dry_run { " — DRY RUN (changes nothing)" } else { "" }
        ));
        line(String::new());
        line("Sources (last written; bytes not yet read by the agent):".into());
        for s in &self.sources {
            let age = s.age.map_or("MISSING".to_string(), |a| format!("{} ago", span(a)));
            let behind = s.behind.map_or(String::new(), |b| format!(", {b} B behind"));
            let stale = match s.age {
                Some(a) if a > HOUR => "  <- quiet for over an hour",
                None => "  <- no such file",
                _ => "",
            };
            line(format!("  {:<18} {age:>12}{behind}  {}{stale}", s.name, s.path));
        }
        if !self.heartbeats.is_empty() {
            line(String::new());
            line(format!("Heartbeats in the last {} (one a minute per source is normal):", span(self.window)));
            for (source, n, expected, last) in &self.heartbeats {
                let last = last.map_or("never".into(), human_time);
                let flag = if *n + 2 < *expected { "  <- missing beats (M1, N3)" } else { "" };
                line(format!("  {source:<18} {n:>5} of {expected:<5} last {last}{flag}"));
            }
        }
        if self.window > HOUR && !self.hourly.is_empty() {
            let names: Vec<&str> =
                config.heartbeat.iter().flat_map(|h| h.expected.iter().map(String::as_str)).collect();
            line(String::new());
            line(format!("Heartbeats per hour: {}", names.join(" / ")));
            for (hour, counts) in &self.hourly {
                let counts: Vec<String> = counts.iter().map(|c| format!("{c:>3}")).collect();
                line(format!("  {}  {}", human_time(*hour), counts.join(" ")));
            }
        }
        line(String::new());
        line(format!("Pending approvals: {}", self.pending.len()));
        for a in &self.pending {
            line(format!(
                "  {} {} ({:?}) — {} — expires {}",
                &a.id[..8.min(a.id.len())],
                a.rule,
                a.risk,
                a.summary,
                human_time(a.expires)
            ));
        }
        line(String::new());
        line(format!("What the agent did in the last {}:", span(self.window)));
        if self.decisions.is_empty() {
            line("  nothing".into());
        }
        for ((rule, decision), n) in &self.decisions {
            line(format!("  {rule:<28} {decision:<18} {n}"));
        }
        let shown = if self.window > HOUR { 50 } else { 10 };
        if !self.actions.is_empty() {
            line(String::new());
            line(format!("Recent actions (newest last, at most {shown}):"));
            for a in self.actions.iter().rev().take(shown).rev() {
                line(format!("  {} {} {} — {}", a.time, a.rule, a.decision, a.summary));
            }
        }
        line(String::new());
        if self.circuits.is_empty() {
            line("Open circuit breakers: none".into());
        } else {
            line(format!(
                "Open circuit breakers ({}): the agent stopped retrying these; a person must look",
                self.circuits.len()
            ));
            for c in &self.circuits {
                line(format!("  {c}"));
            }
        }
        for n in &self.notes {
            line(format!("note: {n}"));
        }
        out
    }
}

/// Decision counts and the decisions worth listing since `from`, from the
/// end of the audit journal.
fn recent_decisions(
    audit: &Path,
    from: i64,
    notes: &mut Vec<String>,
) -> (BTreeMap<(String, String), u64>, Vec<ActionLine>) {
    let mut counts = BTreeMap::new();
    let mut actions = Vec::new();
    let text = match crate::fsutil::read_tail(audit, AUDIT_TAIL) {
        Ok(tail) => {
            if tail.cut {
                notes.push(format!("only the last {} MiB of {} were read", AUDIT_TAIL >> 20, audit.display()));
            }
            tail.bytes
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (counts, actions),
        Err(e) => {
            notes.push(format!("reading {}: {e}", audit.display()));
            return (counts, actions);
        }
    };
    for entry in Entry::read(&text) {
        let Entry::Decision(o) = entry else { continue };
        let at = chrono::DateTime::parse_from_rfc3339(&o.time).map_or(0, |t| t.timestamp_millis());
        if at < from {
            continue;
        }
        let decision = o.decision.name();
        if SHOWN.contains(&decision.as_str()) {
            actions.push(ActionLine {
                time: human_time(at),
                rule: o.rule.clone(),
                decision: decision.clone(),
                summary: o.summary.as_deref().or(o.reason.as_deref()).unwrap_or("").chars().take(160).collect(),
            });
        }
        *counts.entry((o.rule, decision)).or_default() += 1;
    }
    (counts, actions)
}

/// "3 s", "4 min", "2 h", "3 d".
fn span(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 2 * 86400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86400),
    }
}

/// Whether the digest is due at `now` (local wall clock), given the day it
/// was last sent.
pub fn digest_due(at: chrono::NaiveTime, last_sent: Option<chrono::NaiveDate>, now: chrono::NaiveDateTime) -> bool {
    now.time() >= at && last_sent.is_none_or(|d| d < now.date())
}

pub const DIGEST_WINDOW: i64 = DAY;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_are_counted_per_minute_and_summed_over_a_window() {
        let mut b = BeatCounts::default();
        for m in 0..90 {
            b.count("ix_trade", m * MINUTE + 1_000);
        }
        b.count("ix_quote", 10 * MINUTE);
        assert_eq!(b.between("ix_trade", 30 * MINUTE, 90 * MINUTE), 60);
        assert_eq!(b.between("ix_quote", 30 * MINUTE, 90 * MINUTE), 0);
        assert_eq!(b.last("ix_quote"), Some(10 * MINUTE));
        for m in 0..3000 {
            b.count("ix_trade", m * MINUTE);
        }
        assert_eq!(b.minutes["ix_trade"].len(), 24 * 60 + 1, "a day is kept, no more");
    }

    #[test]
    fn the_digest_goes_once_a_day_after_its_time() {
        let at = chrono::NaiveTime::from_hms_opt(7, 30, 0).unwrap();
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let time = |h, m| day.and_hms_opt(h, m, 0).unwrap();
        assert!(!digest_due(at, None, time(7, 29)));
        assert!(digest_due(at, None, time(7, 30)));
        assert!(!digest_due(at, Some(day), time(9, 0)));
        assert!(digest_due(at, day.pred_opt(), time(23, 0)));
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(3_000), "3 s");
        assert_eq!(span(DAY), "24 h");
        assert_eq!(span(3 * DAY), "3 d");
    }
}
