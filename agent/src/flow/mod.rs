//! The flow for one record: match → rules → plan → policy → apply → verify →
//! audit. The daemon, `replay` and the rule tests all go through here, so
//! what a replay shows is what the daemon would do.
//!
//! This file is the flow up to the decision (handle → react → decide);
//! beside it: `execute` applies what the policy let through, `journal`
//! rolls a failed plan back and records plans for crash recovery,
//! `approvals` and `playbook` are what a person asks and answers,
//! `retry` tries a transient failure again, `watches` runs the agent's own
//! watches on each tick, `own_actions` keeps the agent from reacting to
//! itself, `twins` decides once an event that two logs both print, `emit`
//! journals, counts and logs each `outcome`, `rule_cases` runs the rules'
//! own test cases through this same flow.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::actions::{Executor, Guard, Preview};
use crate::approval::token::Signer;
use crate::approval::ApprovalConfig;
use crate::approval::ApprovalStore;
use crate::audit::{Audit, Entry, Note, PlanEntry};
use crate::config::Config;
use crate::mail::Outbox;
use crate::matching::{Event, Match, Matcher, SignatureError, SignatureSpec};
use crate::plan::policy::{Policy, Verdict};
use crate::plan::{Plan, PlanSpec, Risk, Step};
use crate::probes::heartbeat::HeartbeatWatch;
use crate::probes::stall::{Signal, StallWatch};
use crate::probes::ProbeEvent;
use crate::rules::api::CaseAnswers;
use crate::rules::history::EventHistory;
use crate::rules::PROBE_SOURCE;
use crate::rules::{RuleContext, RuleSet};
use crate::sources::logtime::parse_log_time;
use crate::sources::Record;
use crate::state::StateError;

mod approvals;
mod emit;
mod execute;
mod feed;
mod journal;
mod outcome;
mod own_actions;
mod playbook;
pub mod rule_cases;
mod parked;
mod retry;
mod twins;
mod watches;

pub use crate::audit::entry::{Asked, Decision, Outcome, StepOutcome};
pub use approvals::Approvals;
pub use outcome::{Clock, Stats};

use emit::{excerpt_record, Repeats};
use own_actions::OwnWindow;
use retry::Retry;

/// Everything needed to take a record through the flow.
pub struct Flow {
    /// Fixes to try again after a transient failure.
    retries: Vec<Retry>,
    parked: Vec<parked::Parked>,
    /// Running summaries of repeated decisions, by rule and (decision, captures).
    repeats: BTreeMap<(String, String), Repeats>,
    /// Where the agent's own service actions made the logs grow.
    own: std::collections::VecDeque<OwnWindow>,
    config: Arc<Config>,
    matcher: Arc<Matcher>,
    rules: RuleSet,
    history: Arc<Mutex<EventHistory>>,
    policy: Policy,
    executor: Executor,
    audit: Audit,
    clock: Clock,
    dry_run: bool,
    last_log_time: Option<i64>,
    /// Records that two logs both print (see `twins`).
    twins: twins::Twins,
    matches: Vec<Match>,
    /// Outgoing mail, if configured.
    outbox: Option<Outbox>,
    /// Approval by email, if configured.
    approvals: Option<Approvals>,
    /// The per-source heartbeat watch, if configured.
    heartbeat: Option<HeartbeatWatch>,
    /// The stall diagnosis after a consumer start, if configured.
    stall: Option<StallWatch>,
    /// The results of the agent's own reconciles, and their schedule (the
    /// live daemon, with `[reconcile.tables]`).
    reconciled: Option<crate::probes::reconciled::ReconcileWatch>,
    /// Compute previews from live state (off for a plain replay of old logs,
    /// where live state is beside the point and may be slow to reach).
    live_previews: bool,
    /// A rule test case's answers to the rules' questions about live
    /// systems; `None`: the rules ask the live systems.
    answers: Option<CaseAnswers>,
    host: String,
    pub stats: Stats,
    /// The same counts (and more) for Prometheus.
    metrics: crate::metrics::Metrics,
    /// Records per source and events per signature (of `metrics`).
    records: crate::metrics::CounterCache,
    events: crate::metrics::CounterCache,
    /// Heartbeats per source per minute, for `status` and the digest.
    beats: crate::report::BeatCounts,
}

/// Why the flow could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The signature the heartbeat watch counts with (reserved).
const HEARTBEAT: &str = "heartbeat";

/// Every signature a flow matches on this configuration: the rules', the
/// heartbeat's and the stall watch's, each on the configured sources of the
/// kinds it watches (canal's instance logs, one per destination).
pub fn signature_specs(config: &Config, rules: &RuleSet) -> Vec<SignatureSpec> {
    let mut specs = rules.signature_specs();
    if let Some(h) = &config.heartbeat {
        specs.push(SignatureSpec {
            name: HEARTBEAT.into(),
            pattern: h.pattern.clone(),
            sources: [h.source.clone()].into(),
        });
    }
    if let Some(s) = &config.stall {
        specs.extend(crate::probes::stall::signature_specs(s));
    }
    for spec in &mut specs {
        let named: Vec<String> =
            spec.sources.iter().flat_map(|kind| config.sources_of_kind(kind)).map(str::to_string).collect();
        spec.sources.extend(named);
    }
    specs
}

impl Flow {
    /// Builds the flow. `persistent` keeps policy history in the state
    /// directory (the live daemon); otherwise it lives in memory.
    pub fn new(
        config: Arc<Config>,
        rules: RuleSet,
        audit: Audit,
        clock: Clock,
        dry_run: bool,
    ) -> Result<Flow, PipelineError> {
        let specs = signature_specs(&config, &rules);
        let heartbeat = config.heartbeat.clone().map(|h| HeartbeatWatch::new(h, chrono::Utc::now().timestamp_millis()));
        let stall = config.stall.clone().map(StallWatch::new);
        let matcher = Matcher::new(&specs)?;
        // The daemon knows at its start what cannot match; a replay or a
        // rule test compiles only what its records need.
        if clock != Clock::LogTime {
            for e in matcher.compile_all() {
                tracing::error!("{e}: it matches nothing");
            }
        }
        let reconciled = (clock != Clock::LogTime && !config.reconcile.tables.is_empty()).then(|| {
            let now = chrono::Utc::now().timestamp_millis();
            crate::probes::reconciled::ReconcileWatch::new(&config.state_dir, config.reconcile.every_secs, now)
        });
        let policy = if dry_run || clock == Clock::LogTime {
            Policy::in_memory(config.limits.policy())
        } else {
            Policy::persistent(config.limits.policy(), &config.state_dir)?
        };
        let metrics = crate::metrics::Metrics::new();
        Ok(Flow {
            executor: Executor::new(Arc::new(config.sections())),
            config,
            matcher: Arc::new(matcher),
            rules,
            history: Arc::default(),
            policy,
            audit,
            clock,
            dry_run,
            last_log_time: None,
            twins: Default::default(),
            matches: Vec::new(),
            outbox: None,
            approvals: None,
            heartbeat,
            stall,
            reconciled,
            live_previews: true,
            answers: None,
            own: Default::default(),
            repeats: BTreeMap::new(),
            retries: Vec::new(),
            parked: Vec::new(),
            host: String::new(),
            stats: Stats::default(),
            beats: Default::default(),
            records: metrics.records(),
            events: metrics.events(),
            metrics,
        })
    }

    /// Decides without reading live state: every step counts as a change.
    pub fn without_previews(mut self) -> Flow {
        self.live_previews = false;
        self
    }

    /// Answers the rules' questions about live systems from a rule test
    /// case, and asks nothing live: the flow a rule test runs through.
    pub fn answering(mut self, answers: CaseAnswers) -> Flow {
        self.answers = Some(answers);
        self
    }

    /// Sends mail through `outbox`: notifications, escalations and (with
    /// `approvals`) approval requests for plans riskier than `safe`.
    pub fn with_mail(mut self, host: String, outbox: Outbox, approvals: Option<Approvals>) -> Flow {
        self.executor.set_outbox(outbox.clone(), host.clone());
        self.outbox = Some(outbox);
        self.approvals = approvals;
        self.host = host;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn beats(&self) -> &crate::report::BeatCounts {
        &self.beats
    }

    pub fn outbox(&self) -> Option<&Outbox> {
        self.outbox.as_ref()
    }

    /// The policy's handle: shared with the member threads, whose starts it counts.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Which records of the source the signatures can match.
    pub fn interest(&self, source: &str) -> crate::sources::Interest {
        self.matcher.interest(source)
    }

    /// The signatures, for matching records away from the flow (a replay
    /// matches each file on a core of its own).
    pub fn matcher(&self) -> Arc<Matcher> {
        self.matcher.clone()
    }

    /// Takes one record through the flow; returns what was decided.
    pub fn handle(&mut self, record: &Record) -> Vec<Outcome> {
        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        self.matcher.matches(record, &mut matches);
        let outcomes = self.handle_matched(record, &matches);
        self.matches = matches;
        outcomes
    }

    /// Takes one record whose `matches` were already found (by
    /// [`Flow::matcher`]) through the flow; returns what was decided.
    pub fn handle_matched(&mut self, record: &Record, matches: &[Match]) -> Vec<Outcome> {
        self.stats.records += 1;
        self.records.inc_by(&record.source, 1);
        if matches.is_empty() {
            return Vec::new();
        }
        // The record's own time, read once: the event clock in log-time mode,
        // and what tells a twin.
        let logged = parse_log_time(&record.bytes);
        let at = self.event_time(logged);
        // The same event already read from another log: what it fed (counts,
        // watches, the rules of that log) is not fed again.
        let first_kind = logged
            .and_then(|t| self.twins.first_source(&record.source, &record.bytes, t))
            .map(|first| self.config.kind_of(&first).to_string());
        let mut outcomes = Vec::new();
        // Fallback rules speak only when no other rule planned anything for
        // this record: they run after the others.
        let mut fallbacks: Vec<(usize, Event)> = Vec::new();
        for m in matches {
            let heard = match &first_kind {
                Some(kind) => self.rules.subscribers(&m.signature, kind).to_vec(),
                None => Vec::new(),
            };
            let kind = self.config.kind_of(&record.source);
            let subscribers: Vec<usize> =
                self.rules.subscribers(&m.signature, kind).iter().copied().filter(|i| !heard.contains(i)).collect();
            if first_kind.is_none() {
                self.note_event(m, at);
            } else if subscribers.is_empty() {
                tracing::debug!(source = %record.source, offset = record.offset, signature = %m.signature, "already read from another log");
            }
            let event = Event::new(record, m, at);
            self.react_all(&subscribers, &event, &mut fallbacks, &mut outcomes);
        }
        let explained = outcomes.iter().any(|o| !matches!(o.decision, Decision::NoPlan | Decision::RuleError));
        if !explained {
            for (i, event) in fallbacks {
                for outcome in self.react(i, &event) {
                    self.record_outcome(&outcome);
                    outcomes.push(outcome);
                }
            }
        }
        outcomes
    }

    /// What an event feeds before any rule hears it, once per event: the
    /// counters, the heartbeat and stall watches and the history rules
    /// count in.
    fn note_event(&mut self, m: &Match, at: i64) {
        self.stats.events += 1;
        self.events.inc_by(&m.signature, 1);
        if &*m.signature == HEARTBEAT {
            if let (Some(watch), Some(source)) = (&mut self.heartbeat, m.captures.get("source")) {
                watch.beat(source, at);
                self.metrics.heartbeat(source, at);
                self.beats.count(source, at);
            }
            if let Some(stall) = &mut self.stall {
                stall.signal(Signal::Consumed, at);
            }
        }
        if let Some(stall) = &mut self.stall {
            if let Some((_, signal)) = crate::probes::stall::SIGNALS.iter().find(|(name, _)| *name == &*m.signature) {
                stall.signal(*signal, at);
            }
        }
        self.history.lock().expect("history lock").record(&m.signature, at);
    }

    /// Runs the rules `subscribers` on `event`; fallback rules are put
    /// aside for after the others.
    fn react_all(
        &mut self,
        subscribers: &[usize],
        event: &Event,
        fallbacks: &mut Vec<(usize, Event)>,
        outcomes: &mut Vec<Outcome>,
    ) {
        for &i in subscribers {
            if self.rules.rules[i].fallback {
                fallbacks.push((i, event.clone()));
                continue;
            }
            for outcome in self.react(i, event) {
                self.record_outcome(&outcome);
                outcomes.push(outcome);
            }
        }
    }

    /// When an event happened by the flow's clock; `logged` is the time the
    /// record itself prints, if any.
    fn event_time(&mut self, logged: Option<i64>) -> i64 {
        match self.clock {
            Clock::Live => chrono::Utc::now().timestamp_millis(),
            Clock::LogTime => {
                let t = logged.or(self.last_log_time).unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                self.last_log_time = Some(t);
                t
            }
        }
    }

    /// The audit entry for `rule`'s reaction to `event`, before any decision.
    fn outcome_for(&self, rule: &str, runbook: &[String], event: &Event) -> Outcome {
        // Captures are shown raw when they are short and printable, escaped otherwise.
        let captures = event.captures.iter().map(|(k, v)| (k.clone(), crate::types::shown(v))).collect();
        Outcome {
            time: crate::types::now_rfc3339(),
            rule: rule.to_string(),
            runbook: runbook.to_vec(),
            source: event.source.to_string(),
            file: event.file.display().to_string(),
            offset: event.offset,
            inode: event.inode,
            signature: event.signature.to_string(),
            captures,
            summary: None,
            risk: None,
            decision: Decision::NoPlan,
            reason: None,
            steps: Vec::new(),
            dry_run: self.dry_run,
            approval: None,
            plan: None,
            repeated: None,
            truncated: event.truncated,
            record: excerpt_record(&event.text),
            asked: None,
        }
    }

    /// Runs one rule on one event and decides about each plan it returns.
    fn react(&mut self, rule_index: usize, event: &Event) -> Vec<Outcome> {
        let rule = &self.rules.rules[rule_index];
        // Everything logged while the rule runs and its plans are decided
        // and applied names the rule.
        let _span = tracing::info_span!("rule", rule = %rule.name).entered();
        let mut out = self.outcome_for(&rule.name, &rule.runbook, event);
        let ctx = RuleContext::new(self.history.clone(), event.at, rule, &self.config, self.answers.as_ref());
        let specs = match self.rules.run(rule, event, ctx) {
            Ok(specs) if specs.is_empty() => return vec![out],
            Ok(specs) => specs,
            Err(e) => {
                self.stats.rule_errors += 1;
                self.metrics.rule_error();
                out.decision = Decision::RuleError;
                out.reason = Some(e.to_string());
                return vec![out];
            }
        };
        let (name, runbook) = (rule.name.clone(), rule.runbook.clone());
        specs.into_iter().map(|spec| self.decide_spec(spec, &name, &runbook, event, out.clone())).collect()
    }

    fn decide_spec(
        &mut self,
        spec: PlanSpec,
        rule: &str,
        runbook: &[String],
        event: &Event,
        mut out: Outcome,
    ) -> Outcome {
        out.summary = Some(spec.summary.clone());
        out.risk = Some(spec.risk);
        let steps = spec.steps.iter().map(ToString::to_string).collect();
        let mut asked = Asked { steps, risk: spec.risk, benign: spec.benign, refused: None };
        let plan = match spec.validate(rule, runbook, self.executor.sections()) {
            Ok(plan) => plan,
            Err(why) => {
                out.decision = Decision::Refused;
                out.reason = Some(format!("refused: {why}"));
                asked.refused = Some(why);
                out.asked = Some(asked);
                return out;
            }
        };
        out.asked = Some(asked);
        out.risk = Some(plan.risk);
        self.decide_and_apply(&plan, event, &mut out);
        out
    }

    /// Decides about a plan and applies it if the policy allows; a fix that
    /// failed for a transient local reason (no file descriptor, no space),
    /// having changed nothing, is tried again later.
    fn decide_and_apply(&mut self, plan: &Plan, event: &Event, out: &mut Outcome) {
        self.decide_and_apply_once(plan, event, out);
        self.retry_if_transient(plan, event, out, 0);
    }

    fn decide_and_apply_once(&mut self, plan: &Plan, event: &Event, out: &mut Outcome) {
        let now = event.at;
        out.steps = plan
            .steps
            .iter()
            .map(|s| StepOutcome {
                action: s.family().into(),
                target: s.target(),
                preview: None,
                noop: false,
                result: None,
                changed: false,
            })
            .collect();
        if plan.benign {
            out.decision = Decision::Benign;
            return;
        }
        // Held back whatever the live state says (a flood of repeats): say
        // so without reading live state for every line.
        if let Some(verdict) = self.policy.holds_back_whole(plan, now) {
            for step in &mut out.steps {
                step.preview = Some("not computed: the plan is held back".into());
            }
            match verdict {
                Verdict::CircuitOpen(why) => self.escalate(plan, why, out),
                Verdict::RateLimited(why) => {
                    out.decision = Decision::RateLimited;
                    out.reason = Some(why);
                }
                _ => unreachable!("holds_back_whole answers only these"),
            }
            return;
        }
        let (previews, failed) = if self.live_previews {
            self.executor.preview_plan(&plan.steps)
        } else {
            let text = "not computed (replay without --previews)".to_string();
            (
                plan.steps
                    .iter()
                    .map(|_| Preview { text: text.clone(), noop: false, guard: Default::default() })
                    .collect(),
                None,
            )
        };
        for (step, p) in out.steps.iter_mut().zip(&previews) {
            step.preview = Some(p.text.clone());
            step.noop = p.noop;
        }
        if let Some((i, e)) = failed {
            out.decision = Decision::Failed;
            out.reason = Some(format!("preview of step {} failed: {e}", i + 1));
            return;
        }
        if let Some(w) = self.own_window(event, plan) {
            out.decision = Decision::OwnAction;
            out.reason = Some(format!(
                "this record was written while pipemedic itself was acting on {} ({}); not acting on it again",
                w.services.join(", "),
                w.what
            ));
            return;
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
                match self.approvals.is_some() {
                    true => self.request_approval(plan, &previews, event, out),
                    false => {
                        out.decision = Decision::NeedsApproval;
                        out.reason = Some(format!(
                            "{why}; this host has no [approval] section, so nobody can be asked and nothing was changed"
                        ));
                    }
                }
                return;
            }
            Verdict::RateLimited(why) => {
                out.decision = Decision::RateLimited;
                out.reason = Some(why);
                return;
            }
            Verdict::CircuitOpen(why) => {
                self.escalate(plan, why, out);
                return;
            }
        }
        // A plan that only reads (a reconcile) runs in a live dry-run too:
        // what it writes stays in the state directory. Never in a replay.
        let reads_only = self.clock != Clock::LogTime && plan.steps.iter().all(Step::reads_only);
        if self.dry_run && !reads_only {
            out.decision = Decision::DryRun;
            out.reason = Some("dry-run: nothing was changed".into());
            let _ = self.policy.record(plan, &noop, now);
            return;
        }
        if let Some(busy) = self.executor.busy(&plan.steps) {
            self.park(plan, event, busy, out);
            return;
        }
        self.execute(plan, &previews, now, out);
    }
}
