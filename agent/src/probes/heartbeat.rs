//! The heartbeat watch (runbook M1, N3): every MySQL source writes a
//! heartbeat each minute and the consumer logs each one it consumes. The
//! watch remembers when each expected source last beat and reports:
//!
//! - `heartbeat_missing` — one source silent for `missing_secs` while another
//!   still beats: the "fake-dead" source canal does not report (N3). Once
//!   per outage.
//! - `heartbeat_all_missing` — every source silent: the pipeline stalled.
//! - `heartbeat_not_back` — after canal's positions were rewritten, not every
//!   source beat again within `return_deadline_secs`.
//! - `heartbeat_back` — after such a fix, every source beats again: the
//!   moment to reconcile what the fix skipped.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::ProbeEvent;
use crate::types::human_time;
use crate::types::Invalid;

struct Expectation {
    since: i64,
    deadline: i64,
    what: String,
}

/// Last beats per source and what was already reported.
pub struct HeartbeatWatch {
    config: HeartbeatConfig,
    started: i64,
    last_seen: BTreeMap<String, i64>,
    reported_missing: BTreeSet<String>,
    reported_all: bool,
    expectations: Vec<Expectation>,
}

impl HeartbeatWatch {
    /// A watch that counts from `now` (a source is not missing just because
    /// the agent started).
    pub fn new(config: HeartbeatConfig, now: i64) -> HeartbeatWatch {
        HeartbeatWatch {
            config,
            started: now,
            last_seen: BTreeMap::new(),
            reported_missing: BTreeSet::new(),
            reported_all: false,
            expectations: Vec::new(),
        }
    }

    /// A heartbeat of `source` at `at`.
    pub fn beat(&mut self, source: &str, at: i64) {
        let last = self.last_seen.entry(source.to_string()).or_insert(at);
        *last = (*last).max(at);
        self.reported_missing.remove(source);
        self.reported_all = false;
    }

    /// After a fix, every source must beat again by `now + return_deadline_secs`.
    pub fn expect_back(&mut self, now: i64, what: &str) {
        let deadline = now + self.config.return_deadline_secs as i64 * 1000;
        self.expectations.push(Expectation { since: now, deadline, what: what.to_string() });
    }

    fn last(&self, source: &str) -> i64 {
        self.last_seen.get(source).copied().unwrap_or(self.started)
    }

    /// What is wrong at `now` that was not reported yet.
    pub fn findings(&mut self, now: i64) -> Vec<ProbeEvent> {
        let window = self.config.missing_secs as i64 * 1000;
        let silent: Vec<String> =
            self.config.expected.iter().filter(|s| now - self.last(s) >= window).cloned().collect();
        let mut out = Vec::new();
        if !silent.is_empty() && silent.len() == self.config.expected.len() {
            if !self.reported_all {
                self.reported_all = true;
                let since = self.config.expected.iter().map(|s| self.last(s)).max().unwrap_or(self.started);
                out.push(ProbeEvent {
                    name: "heartbeat_all_missing",
                    captures: [
                        ("since".to_string(), human_time(since)),
                        ("seconds".to_string(), ((now - since) / 1000).to_string()),
                    ]
                    .into(),
                    text: format!(
                        "no heartbeat from any of {} since {}",
                        self.config.expected.join(", "),
                        human_time(since)
                    ),
                });
            }
        } else {
            for s in silent {
                if self.reported_missing.insert(s.clone()) {
                    let since = self.last(&s);
                    out.push(ProbeEvent {
                        name: "heartbeat_missing",
                        captures: [
                            ("source".to_string(), s.clone()),
                            ("since".to_string(), human_time(since)),
                            ("seconds".to_string(), ((now - since) / 1000).to_string()),
                        ]
                        .into(),
                        text: format!(
                            "no heartbeat from {s} since {} while other sources still beat",
                            human_time(since)
                        ),
                    });
                }
            }
        }
        let expected = self.config.expected.clone();
        let mut keep = Vec::new();
        for e in std::mem::take(&mut self.expectations) {
            let missing: Vec<&String> =
                expected.iter().filter(|s| self.last_seen.get(*s).is_none_or(|t| *t < e.since)).collect();
            if missing.is_empty() {
                tracing::info!("every source beats again after: {}", e.what);
                out.push(ProbeEvent {
                    name: "heartbeat_back",
                    captures: [("after".to_string(), e.what.clone()), ("since".to_string(), human_time(e.since))]
                        .into(),
                    text: format!("every source beats again after: {}", e.what),
                });
            } else if now >= e.deadline {
                let missing = missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
                out.push(ProbeEvent {
                    name: "heartbeat_not_back",
                    captures: [("missing".to_string(), missing.clone()), ("since".to_string(), human_time(e.since))]
                        .into(),
                    text: format!("{missing}: no heartbeat since {} although {}", human_time(e.since), e.what),
                });
            } else {
                keep.push(e);
            }
        }
        self.expectations = keep;
        out
    }
}

// `[heartbeat]` in the configuration: the heartbeat watch.

/// Every MySQL source writes a heartbeat row each minute; the consumer logs
/// each one it consumes. A source that stops while the others go on is
/// "fake-dead" (runbook N3); all stopping means the pipeline stalled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// The log the consumed heartbeats appear in.
    pub source: String,
    /// A regex with a named group `source`.
    pub pattern: String,
    /// The sources that must all beat (uat: four).
    pub expected: Vec<String>,
    /// A source silent this long while another still beats is missing.
    #[serde(default = "default_missing")]
    pub missing_secs: u64,
    /// After canal's positions were rewritten, every source must beat again within this.
    #[serde(default = "default_return")]
    pub return_deadline_secs: u64,
}

fn default_missing() -> u64 {
    180
}

fn default_return() -> u64 {
    300
}

impl HeartbeatConfig {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        let names = crate::matching::capture_names(&self.pattern).map_err(|e| format!("[heartbeat] pattern: {e}"))?;
        if !names.iter().any(|n| n == "source") {
            return Err("[heartbeat] pattern needs a named group (?<source>…)".into());
        }
        if self.expected.is_empty() {
            return Err("[heartbeat] expected lists no source".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> HeartbeatWatch {
        let config = HeartbeatConfig {
            source: "consumer_info".into(),
            pattern: "x".into(),
            expected: vec!["a".into(), "b".into()],
            missing_secs: 60,
            return_deadline_secs: 120,
        };
        HeartbeatWatch::new(config, 0)
    }

    #[test]
    fn a_silent_source_among_beating_ones_is_reported_once() {
        let mut w = watch();
        for t in (0..=120).step_by(10) {
            w.beat("a", t * 1000);
        }
        let f = w.findings(120_000);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].name, "heartbeat_missing");
        assert_eq!(f[0].captures["source"], "b");
        assert!(w.findings(130_000).is_empty(), "once per outage");
        w.beat("b", 131_000);
        assert!(w.findings(140_000).is_empty());
    }

    #[test]
    fn all_silent_and_not_back() {
        let mut w = watch();
        assert_eq!(w.findings(61_000)[0].name, "heartbeat_all_missing");
        w.beat("a", 70_000);
        w.beat("b", 70_000);
        w.expect_back(80_000, "canal's cursors were rewound");
        w.beat("a", 90_000);
        assert!(w.findings(100_000).is_empty());
        let f = w.findings(200_000 + 1);
        assert!(f.iter().any(|e| e.name == "heartbeat_not_back" && e.captures["missing"] == "b"), "{f:?}");
    }

    #[test]
    fn every_source_back_after_a_fix_is_said_once() {
        let mut w = watch();
        let back = |f: Vec<ProbeEvent>| f.into_iter().filter(|e| e.name == "heartbeat_back").collect::<Vec<_>>();
        w.beat("a", 10_000);
        w.beat("b", 10_000);
        w.expect_back(20_000, "rewind (N4)");
        w.beat("a", 30_000);
        assert!(back(w.findings(35_000)).is_empty(), "b has not beaten since the fix");
        w.beat("b", 36_000);
        let f = back(w.findings(37_000));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].captures["after"], "rewind (N4)");
        assert!(back(w.findings(38_000)).is_empty(), "once");
    }
}
