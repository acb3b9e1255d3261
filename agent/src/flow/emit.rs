//! One place where each outcome is counted and handed to the journal
//! (`Audit::emit` journals and logs it); repeats of the same decision are
//! summed up instead of written one by one.

use super::*;

/// Repeated decisions are summed up over this long (ms).
const SUMMARY_MS: i64 = 60_000;

/// A decision that keeps repeating, being counted instead of written.
pub(super) struct Repeats {
    since: i64,
    count: u64,
    last: Outcome,
}

pub(super) fn excerpt_record(text: &str) -> String {
    if text.len() <= RECORD_EXCERPT {
        return text.to_string();
    }
    let cut = (0..=RECORD_EXCERPT).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

const RECORD_EXCERPT: usize = 2000;

impl Flow {
    /// Counts, audits and logs a decision. A decision that changes nothing
    /// and repeats (the same rule rate-limited again and again in a flood)
    /// is written once and then summed up, once per `SUMMARY_MS`: a flood of
    /// log lines must not become a flood of journal entries.
    pub(super) fn record_outcome(&mut self, outcome: &Outcome) {
        *self.stats.decisions.entry(format!("{:?}", outcome.decision)).or_default() += 1;
        let decision = outcome.decision.name();
        self.metrics.plan(&outcome.rule, &decision);
        if matches!(outcome.decision, Decision::Applied | Decision::Failed) {
            for s in &outcome.steps {
                if let Some(result) = &s.result {
                    self.metrics.action(&s.action, !result.starts_with("failed"));
                }
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        let repeats = matches!(outcome.decision, Decision::RateLimited | Decision::CircuitOpen | Decision::OwnAction);
        // Repeated means the same rule deciding the same way about the same
        // captures (a K1 for a new host name each time is news each time) —
        // except an open circuit, which is about the thing changed, whatever
        // the line said.
        let key = match outcome.decision {
            Decision::CircuitOpen => (outcome.rule.clone(), decision.to_string()),
            _ => (outcome.rule.clone(), format!("{decision} {:?}", outcome.captures)),
        };
        // Anything else this rule decides closes its running summaries first,
        // so the journal stays in order.
        let closing: Vec<_> =
            self.repeats.keys().filter(|k| k.0 == outcome.rule && (!repeats || **k != key)).cloned().collect();
        for k in closing {
            self.write_summary(&k);
        }
        if repeats {
            if let Some(r) = self.repeats.get_mut(&key) {
                if now - r.since < SUMMARY_MS {
                    r.count += 1;
                    r.last = outcome.clone();
                    return;
                }
                self.write_summary(&key);
            }
            self.repeats.insert(key, Repeats { since: now, count: 0, last: outcome.clone() });
        }
        // The entry's time is when the decision was made (an apply can take
        // minutes after the record was read).
        let outcome = Outcome { time: crate::types::now_rfc3339(), ..outcome.clone() };
        self.audit.emit(&Entry::Decision(outcome));
    }

    /// Writes what a running summary counted, and ends it.
    fn write_summary(&mut self, key: &(String, String)) {
        let Some(r) = self.repeats.remove(key) else { return };
        if r.count == 0 {
            return;
        }
        let mut last = r.last;
        last.time = crate::types::now_rfc3339();
        last.repeated = Some(r.count);
        last.reason = Some(format!(
            "decided {} more time(s) the same way since {} (the last one shown); not written one by one: {}",
            r.count,
            chrono::DateTime::from_timestamp_millis(r.since).map(|t| t.to_rfc3339()).unwrap_or_default(),
            last.reason.as_deref().unwrap_or("")
        ));
        self.audit.emit(&Entry::DecisionSummary(last));
    }

    /// Writes the summaries whose time is up (`all`: every one, at shutdown).
    pub fn flush_summaries(&mut self, all: bool) {
        let now = chrono::Utc::now().timestamp_millis();
        let due: Vec<_> =
            self.repeats.iter().filter(|(_, r)| all || now - r.since >= SUMMARY_MS).map(|(k, _)| k.clone()).collect();
        for k in due {
            self.write_summary(&k);
        }
    }
}
