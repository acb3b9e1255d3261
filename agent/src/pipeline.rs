//! The flow for one record: match → rules → plan → policy → apply → verify →
//! audit. The daemon, `replay` and the rule tests all go through here, so
//! what a replay shows is what the daemon would do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::actions::{Executor, Preview};
use crate::audit::Audit;
use crate::config::Config;
use crate::matching::{Event, Match, Matcher, SignatureError};
use crate::plan::policy::{Policy, Verdict};
use crate::plan::{Plan, Risk};
use crate::rules::history::EventHistory;
use crate::rules::{RuleContext, RuleSet};
use crate::sources::Record;
use crate::state::StateError;

/// Which clock events are timed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Wall-clock time: the daemon acts now.
    Live,
    /// The timestamp at the start of the record (falling back to the last
    /// one seen): replaying last week's log counts windows as they were.
    LogTime,
}

/// What was decided about one event and one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Every step applied and verified.
    Applied,
    /// Policy would have applied it; dry-run changed nothing.
    DryRun,
    /// The rule looked and returned no plan (e.g. below its threshold).
    NoPlan,
    /// A known finding that needs no action (runbook C3).
    Benign,
    /// Every step was already in the wanted state.
    NoChange,
    /// A step's input failed validation (hostile capture, unknown service).
    Refused,
    /// Riskier than `safe`; waits for a person.
    NeedsApproval,
    RateLimited,
    CircuitOpen,
    /// A preview, apply or verify failed; the reason says which and why.
    Failed,
    /// The rule itself failed at run time.
    RuleError,
}

/// One step's part in an outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub action: &'static str,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    pub noop: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// The audit entry for one rule's reaction to one event.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub time: String,
    pub kind: &'static str,
    pub rule: String,
    pub runbook: Vec<String>,
    pub source: String,
    pub file: String,
    pub offset: u64,
    pub signature: String,
    pub captures: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    pub decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub steps: Vec<StepOutcome>,
    pub dry_run: bool,
    /// The start of the record, for a person reading the journal.
    pub record: String,
}

/// Counters for `status` and metrics.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub records: u64,
    pub events: u64,
    pub rule_errors: u64,
    pub decisions: BTreeMap<String, u64>,
}

/// Everything needed to take a record through the flow.
pub struct Pipeline {
    config: Arc<Config>,
    matcher: Matcher,
    rules: RuleSet,
    history: Arc<Mutex<EventHistory>>,
    policy: Policy,
    executor: Executor,
    audit: Audit,
    clock: Clock,
    dry_run: bool,
    last_log_time: Option<i64>,
    matches: Vec<Match>,
    pub stats: Stats,
}

/// Why a pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    State(#[from] StateError),
}

const RECORD_EXCERPT: usize = 2000;

impl Pipeline {
    /// Builds the flow. `persistent` keeps policy history in the state
    /// directory (the live daemon); otherwise it lives in memory.
    pub fn new(
        config: Arc<Config>,
        rules: RuleSet,
        audit: Audit,
        clock: Clock,
        dry_run: bool,
    ) -> Result<Pipeline, PipelineError> {
        let matcher = Matcher::new(&rules.signature_specs())?;
        let policy = if dry_run || clock == Clock::LogTime {
            Policy::in_memory(config.limits.clone())
        } else {
            Policy::persistent(config.limits.clone(), &config.state_dir)?
        };
        Ok(Pipeline {
            executor: Executor::new(config.clone()),
            config,
            matcher,
            rules,
            history: Arc::default(),
            policy,
            audit,
            clock,
            dry_run,
            last_log_time: None,
            matches: Vec::new(),
            stats: Stats::default(),
        })
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    pub fn audit(&mut self) -> &mut Audit {
        &mut self.audit
    }

    /// Which records of the source the signatures can match.
    pub fn interest(&self, source: &str) -> crate::sources::Interest {
        self.matcher.interest(source)
    }

    /// Plans whose circuit breaker is open now.
    pub fn open_circuits(&self) -> Vec<String> {
        self.policy.open_circuits(chrono::Utc::now().timestamp_millis())
    }

    /// Takes one record through the flow; returns what was decided.
    pub fn handle(&mut self, record: &Record) -> Vec<Outcome> {
        self.stats.records += 1;
        self.matches.clear();
        self.matcher.matches(record, &mut self.matches);
        if self.matches.is_empty() {
            return Vec::new();
        }
        let at = self.event_time(record);
        let mut outcomes = Vec::new();
        let matches = std::mem::take(&mut self.matches);
        for m in &matches {
            self.stats.events += 1;
            self.history.lock().expect("history lock").record(&m.signature, at);
            let event = Event::new(record, m, at);
            for &i in self.rules.subscribers(&m.signature, &record.source).to_vec().iter() {
                let outcome = self.react(i, &event);
                *self.stats.decisions.entry(format!("{:?}", outcome.decision)).or_default() += 1;
                self.audit.write(&outcome);
                log_outcome(&outcome);
                outcomes.push(outcome);
            }
        }
        self.matches = matches;
        outcomes
    }

    fn event_time(&mut self, record: &Record) -> i64 {
        match self.clock {
            Clock::Live => chrono::Utc::now().timestamp_millis(),
            Clock::LogTime => {
                let t = parse_log_time(&record.bytes)
                    .or(self.last_log_time)
                    .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                self.last_log_time = Some(t);
                t
            }
        }
    }

    fn react(&mut self, rule_index: usize, event: &Event) -> Outcome {
        let rule = &self.rules.rules[rule_index];
        let mut out = Outcome {
            time: crate::audit::now_rfc3339(),
            kind: "decision",
            rule: rule.name.clone(),
            runbook: rule.runbook.clone(),
            source: event.source.to_string(),
            file: event.file.display().to_string(),
            offset: event.offset,
            signature: event.signature.to_string(),
            captures: event.captures.iter().map(|(k, v)| (k.clone(), crate::types::excerpt(v))).collect(),
            summary: None,
            risk: None,
            decision: Decision::NoPlan,
            reason: None,
            steps: Vec::new(),
            dry_run: self.dry_run,
            record: excerpt_record(&event.text),
        };
        // Captures are shown raw when they are short and printable, escaped otherwise.
        for (k, v) in &event.captures {
            if v.len() <= 200 && !v.chars().any(char::is_control) {
                out.captures.insert(k.clone(), v.clone());
            }
        }
        let ctx = RuleContext { history: self.history.clone(), now: event.at, params: rule.params.clone() };
        let spec = match self.rules.run(rule, event, ctx) {
            Ok(Some(spec)) => spec,
            Ok(None) => return out,
            Err(e) => {
                self.stats.rule_errors += 1;
                out.decision = Decision::RuleError;
                out.reason = Some(e.to_string());
                return out;
            }
        };
        out.summary = Some(spec.summary.clone());
        out.risk = Some(spec.risk);
        let plan = match spec.validate(&rule.name, &rule.runbook, &self.config) {
            Ok(plan) => plan,
            Err(why) => {
                out.decision = Decision::Refused;
                out.reason = Some(format!("refused: {why}"));
                return out;
            }
        };
        out.risk = Some(plan.risk);
        self.decide_and_apply(&plan, event.at, &mut out);
        out
    }

    fn decide_and_apply(&mut self, plan: &Plan, now: i64, out: &mut Outcome) {
        out.steps = plan
            .steps
            .iter()
            .map(|s| StepOutcome { action: s.action(), target: s.target(), preview: None, noop: false, result: None })
            .collect();
        if plan.benign {
            out.decision = Decision::Benign;
            return;
        }
        let mut previews: Vec<Preview> = Vec::with_capacity(plan.steps.len());
        for (i, step) in plan.steps.iter().enumerate() {
            match self.executor.preview(step) {
                Ok(p) => {
                    out.steps[i].preview = Some(p.text.clone());
                    out.steps[i].noop = p.noop;
                    previews.push(p);
                }
                Err(e) => {
                    out.decision = Decision::Failed;
                    out.reason = Some(format!("preview of step {} failed: {e}", i + 1));
                    return;
                }
            }
        }
        let noop: Vec<bool> = previews.iter().map(|p| p.noop).collect();
        match self.policy.decide(plan, &noop, now) {
            Verdict::Proceed => {}
            Verdict::Benign => {
                out.decision = Decision::Benign;
                return;
            }
            Verdict::NothingToDo => {
                out.decision = Decision::NoChange;
                out.reason = Some("every step is already in the wanted state".into());
                return;
            }
            Verdict::NeedsApproval(why) => {
                out.decision = Decision::NeedsApproval;
                out.reason = Some(why);
                return;
            }
            Verdict::RateLimited(why) => {
                out.decision = Decision::RateLimited;
                out.reason = Some(why);
                return;
            }
            Verdict::CircuitOpen(why) => {
                out.decision = Decision::CircuitOpen;
                tracing::error!(rule = %plan.rule, "escalation: {why}");
                out.reason = Some(why);
                return;
            }
        }
        if self.dry_run {
            out.decision = Decision::DryRun;
            out.reason = Some("dry-run: nothing was changed".into());
            let _ = self.policy.record(plan, &noop, now);
            return;
        }
        // From here on the world may change: record the attempt before the
        // first step so a crash mid-plan still counts against the limits.
        if let Err(e) = self.policy.record(plan, &noop, now) {
            out.decision = Decision::Failed;
            out.reason = Some(format!("not applying, the policy history cannot be saved: {e}"));
            return;
        }
        for (i, (step, preview)) in plan.steps.iter().zip(&previews).enumerate() {
            if preview.noop {
                out.steps[i].result = Some("no change needed".into());
                continue;
            }
            let result = self.executor.apply(step, preview).and_then(|applied| {
                self.executor.verify(step, preview).map(|verified| format!("{applied}; verified: {verified}"))
            });
            match result {
                Ok(r) => out.steps[i].result = Some(r),
                Err(e) => {
                    out.steps[i].result = Some(format!("failed: {e}"));
                    out.decision = Decision::Failed;
                    out.reason = Some(format!("step {} failed, later steps not run: {e}", i + 1));
                    return;
                }
            }
        }
        out.decision = Decision::Applied;
    }
}

fn log_outcome(o: &Outcome) {
    if o.decision == Decision::NoPlan {
        tracing::debug!(rule = %o.rule, source = %o.source, offset = o.offset, "rule saw no need for a plan");
        return;
    }
    let steps: Vec<String> = o
        .steps
        .iter()
        .map(|s| match &s.preview {
            Some(p) => format!("\n    {} {}:\n      {}", s.action, s.target, p.replace('\n', "\n      ")),
            None => format!("\n    {} {}", s.action, s.target),
        })
        .collect();
    tracing::info!(
        rule = %o.rule,
        runbook = %o.runbook.join(","),
        source = %o.source,
        offset = o.offset,
        decision = ?o.decision,
        "{}{}{}",
        o.summary.as_deref().unwrap_or("no plan"),
        o.reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default(),
        steps.concat()
    );
}

fn excerpt_record(text: &str) -> String {
    if text.len() <= RECORD_EXCERPT {
        return text.to_string();
    }
    let cut = (0..=RECORD_EXCERPT).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

/// Reads `2026-11-01 10:00:00.123` or `[2026-11-01 10:00:00,123]` at the
/// start of a record as local time, in ms since the epoch.
pub fn parse_log_time(bytes: &[u8]) -> Option<i64> {
    use chrono::{Local, NaiveDateTime, TimeZone};
    let b = bytes.strip_prefix(b"[").unwrap_or(bytes);
    let head = std::str::from_utf8(b.get(..19)?).ok()?;
    let t = NaiveDateTime::parse_from_str(head, "%Y-%m-%d %H:%M:%S").ok()?;
    let millis = match (b.get(19), b.get(20..23)) {
        (Some(b'.' | b','), Some(ms)) if ms.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(ms).ok()?.parse::<i64>().ok()?
        }
        _ => 0,
    };
    Some(Local.from_local_datetime(&t).earliest()?.timestamp_millis() + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_times_parse_in_both_formats() {
        let a = parse_log_time(b"2026-11-01 10:00:00.123 [main] INFO").unwrap();
        let b = parse_log_time(b"[2026-11-01 10:00:00,123] INFO").unwrap();
        assert_eq!(a, b);
        assert_eq!(parse_log_time(b"2026-11-01 10:00:01 x").unwrap() - a, 877);
        assert!(parse_log_time(b"no time").is_none());
    }
}
