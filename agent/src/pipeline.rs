//! The flow for one record: match → rules → plan → policy → apply → verify →
//! audit. The daemon, `replay` and the rule tests all go through here, so
//! what a replay shows is what the daemon would do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::actions::{Executor, Guard, Preview};
use crate::approval::mail::{approval_mail, Links, Outbox};
use crate::approval::token::{random_hex, Signer};
use crate::approval::{
    check_link, human_time, link, playbook_token_id, Approval, ApprovalState, ApprovalStore, DecideReply,
    DecideRequest, Decider, Decision as Answer, PlannedStep, PlaybookRequest,
};
use crate::audit::Audit;
use crate::config::ApprovalConfig;
use crate::config::Config;
use crate::matching::{Event, Match, Matcher, SignatureError, SignatureSpec};
use crate::plan::policy::{Policy, Verdict};
use crate::plan::{Plan, PlanSpec, Risk, Step};
use crate::probes::heartbeat::HeartbeatWatch;
use crate::probes::stall::{Registration, Signal, StallWatch};
use crate::probes::ProbeEvent;
use crate::rules::history::EventHistory;
use crate::rules::PROBE_SOURCE;
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
    /// Mailed to the approvers; waits for them.
    AwaitingApproval,
    /// Another host's agent asked for approval of a plan on the same shared
    /// state (canal's cursors in HA); this one asks no one.
    HandledElsewhere,
    /// The rule itself failed at run time.
    RuleError,
    /// The record was written by a service while the agent itself was
    /// stopping or starting it, and the plan would act on that service again:
    /// the agent does not react to its own actions.
    OwnAction,
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
    /// The step changed the world and that change is still there (not
    /// rolled back): a plan that failed with none of these changed nothing.
    #[serde(skip)]
    pub changed: bool,
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
    /// The file's inode: with `offset`, which record this decision was
    /// about, so that a restart after a crash does not decide it again.
    #[serde(skip_serializing_if = "is_zero")]
    pub inode: u64,
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
    /// The approval this decision belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// The plan's id in the journal's `plan-started` and `plan-step`
    /// entries, when it was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// In a `decision-summary`: how many more times it was decided so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeated: Option<u64>,
    /// The record was cut at the size or line limit: the rule saw only its
    /// beginning.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The start of the record, for a person reading the journal.
    pub record: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Counters for `status` and metrics.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub records: u64,
    pub events: u64,
    pub rule_errors: u64,
    pub decisions: BTreeMap<String, u64>,
}

/// The bytes the sources' files grew by while the agent itself stopped or
/// started services: lines in there were caused by the agent.
#[derive(Debug, Clone)]
struct OwnWindow {
    file: std::path::PathBuf,
    from: u64,
    to: u64,
    services: Vec<String>,
    what: String,
}

/// How many windows are remembered (the oldest go first).
const OWN_WINDOWS: usize = 64;

/// Repeated decisions are summed up over this long (ms).
const SUMMARY_MS: i64 = 60_000;

/// A decision that keeps repeating, being counted instead of written.
struct Repeats {
    since: i64,
    count: u64,
    last: Outcome,
}

/// Everything needed to take a record through the flow.
pub struct Pipeline {
    /// Fixes to try again after a transient failure.
    retries: Vec<Retry>,
    /// Running summaries of repeated decisions, by rule and (decision, captures).
    repeats: BTreeMap<(String, String), Repeats>,
    /// Where the agent's own service actions made the logs grow.
    own: std::collections::VecDeque<OwnWindow>,
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
    /// Outgoing mail, if configured.
    outbox: Option<Outbox>,
    /// Approval by email, if configured.
    approvals: Option<Approvals>,
    /// The per-source heartbeat watch, if configured.
    heartbeat: Option<HeartbeatWatch>,
    /// The stall diagnosis after a consumer start, if configured.
    stall: Option<StallWatch>,
    /// Compute previews from live state (off for a plain replay of old logs,
    /// where live state is beside the point and may be slow to reach).
    live_previews: bool,
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

/// What asking for and acting on approvals needs.
pub struct Approvals {
    pub config: ApprovalConfig,
    pub store: ApprovalStore,
    pub signer: Signer,
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

/// The signature the heartbeat watch counts with (reserved).
const HEARTBEAT: &str = "heartbeat";

/// The signatures the stall watch follows (reserved), and the broker log's
/// lifecycle lines.
const STALL_SIGNALS: &[(&str, Signal)] = &[
    ("c5_consumer_started", Signal::ConsumerStarted),
    ("c5_consumed", Signal::Consumed),
    ("c5_consumer_error", Signal::ConsumerError),
    ("c5_monitor_parse", Signal::MonitorParse),
    ("c5_broker_started", Signal::BrokerStarted),
    ("c5_broker_shut_down", Signal::BrokerShutDown),
];
const BROKER_STARTED: &str = r"started \(kafka\.server\.KafkaServer\)";
const BROKER_SHUT_DOWN: &str = r"shut down completed \(kafka\.server\.KafkaServer\)";

fn stall_specs(s: &crate::config::StallConfig) -> Vec<SignatureSpec> {
    let spec = |name: &str, pattern: &str, source: &str| SignatureSpec {
        name: name.into(),
        pattern: pattern.into(),
        sources: [source.to_string()].into(),
    };
    let mut specs = vec![
        spec("c5_consumer_started", &s.started_pattern, &s.consumer_source),
        spec("c5_consumer_error", &s.error_pattern, &s.error_source),
        spec("c5_monitor_parse", &s.parse_pattern, &s.monitor_source),
        spec("c5_broker_started", BROKER_STARTED, &s.broker_source),
        spec("c5_broker_shut_down", BROKER_SHUT_DOWN, &s.broker_source),
    ];
    if let Some(p) = &s.consumed_pattern {
        specs.push(spec("c5_consumed", p, &s.consumer_source));
    }
    specs
}

/// Which brokers ZooKeeper has registered and which the cluster has, for
/// the stall diagnosis; `None` without `[zookeeper]`.
fn broker_registration(config: &Config) -> Option<Registration> {
    let zk = config.zookeeper.as_ref()?;
    let configured = crate::cluster::configured_brokers(config);
    Some(crate::zk::Session::connect(zk).and_then(|s| {
        let snap = s.block_on(crate::cluster::snapshot(&s.client())).map_err(|e| e.to_string())?;
        Ok((snap.registered.clone(), snap.expected(configured)))
    }))
}

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
        let mut specs = rules.signature_specs();
        let heartbeat = config.heartbeat.clone().map(|h| {
            specs.push(SignatureSpec {
                name: HEARTBEAT.into(),
                pattern: h.pattern.clone(),
                sources: [h.source.clone()].into(),
            });
            HeartbeatWatch::new(h, chrono::Utc::now().timestamp_millis())
        });
        let stall = config.stall.clone().map(|s| {
            specs.extend(stall_specs(&s));
            StallWatch::new(s)
        });
        // A rule watches a kind of log; every source of that kind (canal's
        // instance logs, one per destination) is matched for it.
        for spec in &mut specs {
            let named: Vec<String> =
                spec.sources.iter().flat_map(|kind| config.sources_of_kind(kind)).map(str::to_string).collect();
            spec.sources.extend(named);
        }
        let matcher = Matcher::new(&specs)?;
        let policy = if dry_run || clock == Clock::LogTime {
            Policy::in_memory(config.limits.clone())
        } else {
            Policy::persistent(config.limits.clone(), &config.state_dir)?
        };
        let metrics = crate::metrics::Metrics::new();
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
            outbox: None,
            approvals: None,
            heartbeat,
            stall,
            live_previews: true,
            own: Default::default(),
            repeats: BTreeMap::new(),
            retries: Vec::new(),
            host: String::new(),
            stats: Stats::default(),
            beats: Default::default(),
            records: metrics.records(),
            events: metrics.events(),
            metrics,
        })
    }

    /// Decides without reading live state: every step counts as a change.
    pub fn without_previews(mut self) -> Pipeline {
        self.live_previews = false;
        self
    }

    /// Sends mail through `outbox`: notifications, escalations and (with
    /// `approvals`) approval requests for plans riskier than `safe`.
    pub fn with_mail(mut self, host: String, outbox: Outbox, approvals: Option<Approvals>) -> Pipeline {
        self.executor.set_outbox(outbox.clone(), host.clone());
        self.outbox = Some(outbox);
        self.approvals = approvals;
        self.host = host;
        self
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    pub fn beats(&self) -> &crate::report::BeatCounts {
        &self.beats
    }

    pub fn outbox(&self) -> Option<&Outbox> {
        self.outbox.as_ref()
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

    /// Plans whose circuit breaker is open now.
    pub fn open_circuits(&self) -> Vec<String> {
        self.policy.open_circuits(chrono::Utc::now().timestamp_millis())
    }

    /// Takes one record through the flow; returns what was decided.
    pub fn handle(&mut self, record: &Record) -> Vec<Outcome> {
        self.stats.records += 1;
        self.records.inc_by(&record.source, 1);
        self.matches.clear();
        self.matcher.matches(record, &mut self.matches);
        if self.matches.is_empty() {
            return Vec::new();
        }
        let at = self.event_time(record);
        let mut outcomes = Vec::new();
        let matches = std::mem::take(&mut self.matches);
        // Fallback rules speak only when no other rule planned anything for
        // this record: they run after the others.
        let mut fallbacks: Vec<(usize, Event)> = Vec::new();
        for m in &matches {
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
                if let Some((_, signal)) = STALL_SIGNALS.iter().find(|(name, _)| *name == &*m.signature) {
                    stall.signal(*signal, at);
                }
            }
            self.history.lock().expect("history lock").record(&m.signature, at);
            let event = Event::new(record, m, at);
            let kind = self.config.kind_of(&record.source);
            for &i in self.rules.subscribers(&m.signature, kind).to_vec().iter() {
                if self.rules.rules[i].fallback {
                    fallbacks.push((i, event.clone()));
                    continue;
                }
                for outcome in self.react(i, &event) {
                    self.record_outcome(&outcome);
                    outcomes.push(outcome);
                }
            }
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
        self.matches = matches;
        outcomes
    }

    /// Periodic work: expired approvals, and the heartbeat watch's findings
    /// handed to the rules that want them.
    pub fn tick(&mut self, now: i64) {
        self.flush_summaries(false);
        self.run_retries(now);
        self.expire_approvals(now);
        if let Some(ap) = &self.approvals {
            self.metrics.pending_approvals(ap.store.pending());
        }
        let mut findings = self.heartbeat.as_mut().map(|w| w.findings(now)).unwrap_or_default();
        let config = self.config.clone();
        if let Some(f) = self.stall.as_mut().and_then(|s| s.diagnose(now, || broker_registration(&config))) {
            findings.push(f);
        }
        for finding in findings {
            tracing::warn!(probe = finding.name, "{}", finding.text);
            self.probe(finding, now);
        }
    }

    /// Takes a probe's finding through the rules that subscribe to it.
    fn probe(&mut self, finding: ProbeEvent, now: i64) {
        let event = Event {
            signature: finding.name.into(),
            source: PROBE_SOURCE.into(),
            file: std::path::Path::new("(probe)").into(),
            captures: finding.captures,
            text: finding.text,
            offset: 0,
            inode: 0,
            at: now,
            truncated: false,
        };
        for i in self.rules.subscribers(finding.name, PROBE_SOURCE).to_vec() {
            for outcome in self.react(i, &event) {
                self.record_outcome(&outcome);
            }
        }
    }

    /// Counts, audits and logs a decision. A decision that changes nothing
    /// and repeats (the same rule rate-limited again and again in a flood)
    /// is written once and then summed up, once per `SUMMARY_MS`: a flood of
    /// log lines must not become a flood of journal entries.
    fn record_outcome(&mut self, outcome: &Outcome) {
        *self.stats.decisions.entry(format!("{:?}", outcome.decision)).or_default() += 1;
        let decision = serde_json::to_value(outcome.decision).ok();
        let decision = decision.as_ref().and_then(|d| d.as_str()).unwrap_or("?").to_string();
        self.metrics.plan(&outcome.rule, &decision);
        if matches!(outcome.decision, Decision::Applied | Decision::Failed) {
            for s in &outcome.steps {
                if let Some(result) = &s.result {
                    self.metrics.action(s.action, !result.starts_with("failed"));
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
            Decision::CircuitOpen => (outcome.rule.clone(), decision.clone()),
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
        let outcome = Outcome { time: crate::audit::now_rfc3339(), ..outcome.clone() };
        self.audit.write(&outcome);
        log_outcome(&outcome);
    }

    /// Writes what a running summary counted, and ends it.
    fn write_summary(&mut self, key: &(String, String)) {
        let Some(r) = self.repeats.remove(key) else { return };
        if r.count == 0 {
            return;
        }
        let mut last = r.last;
        last.time = crate::audit::now_rfc3339();
        last.kind = "decision-summary";
        last.repeated = Some(r.count);
        last.reason = Some(format!(
            "decided {} more time(s) the same way since {} (the last one shown); not written one by one: {}",
            r.count,
            chrono::DateTime::from_timestamp_millis(r.since).map(|t| t.to_rfc3339()).unwrap_or_default(),
            last.reason.as_deref().unwrap_or("")
        ));
        tracing::info!(rule = %last.rule, count = r.count, "{}", last.reason.as_deref().unwrap_or(""));
        self.audit.write(&last);
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

    /// The audit entry for `rule`'s reaction to `event`, before any decision.
    fn outcome_for(&self, rule: &str, runbook: &[String], event: &Event) -> Outcome {
        // Captures are shown raw when they are short and printable, escaped otherwise.
        let captures = event.captures.iter().map(|(k, v)| (k.clone(), crate::types::shown(v))).collect();
        Outcome {
            time: crate::audit::now_rfc3339(),
            kind: "decision",
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
        }
    }

    /// Runs one rule on one event and decides about each plan it returns.
    fn react(&mut self, rule_index: usize, event: &Event) -> Vec<Outcome> {
        let rule = &self.rules.rules[rule_index];
        let mut out = self.outcome_for(&rule.name, &rule.runbook, event);
        let ctx = RuleContext {
            history: self.history.clone(),
            now: event.at,
            params: rule.params.clone(),
            kafka: self.config.kafka.clone().map(std::sync::Arc::new),
            config: Some(self.config.clone()),
            answers: Default::default(),
        };
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
        let plan = match spec.validate(rule, runbook, &self.config) {
            Ok(plan) => plan,
            Err(why) => {
                out.decision = Decision::Refused;
                out.reason = Some(format!("refused: {why}"));
                return out;
            }
        };
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
                action: s.action(),
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
        if self.dry_run {
            out.decision = Decision::DryRun;
            out.reason = Some("dry-run: nothing was changed".into());
            let _ = self.policy.record(plan, &noop, now);
            return;
        }
        self.execute(plan, &previews, now, out);
    }

    /// Applies and verifies each step in order; stops at the first failure.
    fn execute(&mut self, plan: &Plan, previews: &[Preview], now: i64, out: &mut Outcome) {
        let noop: Vec<bool> = previews.iter().map(|p| p.noop).collect();
        // From here on the world may change: record the attempt before the
        // first step so a crash mid-plan still counts against the limits.
        if let Err(e) = self.policy.record(plan, &noop, now) {
            out.decision = Decision::Failed;
            out.reason = Some(format!("not applying, the policy history cannot be saved: {e}"));
            return;
        }
        let services: Vec<String> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Service { service, .. } => Some(service.to_string()),
                _ => None,
            })
            .collect();
        let sizes_before = (!services.is_empty()).then(|| self.source_sizes());
        // The intent goes to the journal before the first step, each step's
        // result after it: a crash in between is found and reported at the
        // next start (never re-run blindly).
        let id = random_hex(8);
        self.audit.write(&PlanJournal {
            source: Some(&out.source),
            inode: Some(out.inode),
            offset: Some(out.offset),
            summary: Some(&plan.summary),
            steps: plan.steps.iter().map(|s| format!("{} {}", s.action(), s.target())).collect(),
            ..PlanJournal::new("plan-started", &id, &plan.rule)
        });
        out.plan = Some(id);
        self.apply_steps(plan, previews, out);
        if let Some(before) = sizes_before {
            self.remember_own_window(before, services, plan);
        }
        if out.decision != Decision::Applied {
            return;
        }
        // Canal's positions were rewritten: every source must beat again.
        let canal = plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::CanalRewind | Step::CanalNewBinlog { .. } | Step::CanalReset { .. }));
        if let (true, Some(watch)) = (canal, &mut self.heartbeat) {
            watch.expect_back(now, &format!("{} ({})", plan.summary, plan.runbook.join(", ")));
        }
    }

    /// The circuit is open: stop repeating the fix and tell a person.
    fn escalate(&mut self, plan: &Plan, why: String, out: &mut Outcome) {
        out.decision = Decision::CircuitOpen;
        tracing::error!(rule = %plan.rule, "escalation: {why}");
        out.reason = Some(match &self.outbox {
            Some(outbox) => {
                let subject = format!("[pipemedic] {}: {} stopped repeating a fix", self.host, plan.runbook.join(", "));
                let text = format!("{}\n\n{why}\n\nWhat kept happening:\n{}\n", plan.summary, out.record);
                let mailed = outbox.notify(&format!("circuit:{}", plan.changes().join(",")), &subject, &text);
                format!("{why} ({mailed})")
            }
            None => why,
        });
    }

    /// Applies and verifies each step in order; at the first failure, rolls
    /// back what can be rolled back and stops.
    fn apply_steps(&mut self, plan: &Plan, previews: &[Preview], out: &mut Outcome) {
        for (i, (step, preview)) in plan.steps.iter().zip(previews).enumerate() {
            // A service step's preview describes the process as it was before
            // the plan's earlier steps ran (a start after a stop in the same
            // plan looked like a no-op); it decides again when its turn comes.
            if preview.noop && !matches!(step, Step::Service { .. }) {
                out.steps[i].result = Some("no change needed".into());
                continue;
            }
            let result = self.executor.apply(step, preview).and_then(|applied| {
                self.executor.verify(step, preview).map(|verified| format!("{applied}; verified: {verified}"))
            });
            let said = match &result {
                Ok(r) => r.clone(),
                Err(e) => format!("failed: {e}"),
            };
            self.audit.write(&PlanJournal {
                step: Some(i + 1),
                target: Some(format!("{} {}", step.action(), step.target())),
                result: Some(&said),
                ..PlanJournal::new("plan-step", out.plan.as_deref().unwrap_or(""), &plan.rule)
            });
            match result {
                Ok(r) => {
                    out.steps[i].result = Some(r);
                    out.steps[i].changed = true;
                }
                Err(e) => {
                    out.steps[i].result = Some(format!("failed: {e}"));
                    out.decision = Decision::Failed;
                    let rolled = self.roll_back(&plan.steps[..=i], &previews[..=i], out);
                    out.reason = Some(format!("step {} failed, later steps not run: {e}; {rolled}", i + 1));
                    return;
                }
            }
        }
        out.decision = Decision::Applied;
    }

    /// Each source file's size now.
    fn source_sizes(&self) -> Vec<(std::path::PathBuf, u64)> {
        self.config
            .sources
            .values()
            .filter_map(|s| std::fs::metadata(&s.path).ok().map(|m| (s.path.clone(), m.len())))
            .collect()
    }

    /// Remembers what the logs gained while the plan's service steps ran.
    fn remember_own_window(&mut self, before: Vec<(std::path::PathBuf, u64)>, services: Vec<String>, plan: &Plan) {
        for (file, to) in self.source_sizes() {
            let from = before.iter().find(|(f, _)| *f == file).map_or(0, |(_, n)| *n);
            if to > from {
                if self.own.len() == OWN_WINDOWS {
                    self.own.pop_front();
                }
                let what = format!("{}: {}", plan.rule, plan.summary);
                self.own.push_back(OwnWindow { file, from, to, services: services.clone(), what });
            }
        }
    }

    /// The window of the agent's own action that `event`'s record lies in,
    /// if the plan would act on a service that window was about.
    fn own_window(&self, event: &Event, plan: &Plan) -> Option<&OwnWindow> {
        let touches = |w: &OwnWindow| {
            plan.steps
                .iter()
                .any(|s| matches!(s, Step::Service { service, .. } if w.services.iter().any(|x| x == service.as_str())))
        };
        self.own.iter().find(|w| *w.file == *event.file && (w.from..w.to).contains(&event.offset) && touches(w))
    }
}

impl Pipeline {
    /// Puts back what the plan's steps up to the failed one changed, newest
    /// first, so that a plan is applied whole or not at all where that can
    /// be done: file edits are restored from what they replaced. Steps that
    /// cannot be undone (a restart, a mail) are named. Each step's result
    /// says what happened to it; the return value sums it up.
    fn roll_back(&self, steps: &[Step], previews: &[Preview], out: &mut Outcome) -> String {
        let mut restored = Vec::new();
        let mut kept = Vec::new();
        for (i, (step, preview)) in steps.iter().zip(previews).enumerate().rev() {
            let Some(undo) = self.executor.undo(preview) else {
                if !preview.noop && i + 1 < steps.len() && !matches!(preview.guard, Guard::FileEdit { .. }) {
                    kept.push(format!("step {} ({} {}) cannot be undone", i + 1, step.action(), step.target()));
                }
                continue;
            };
            let note = match undo {
                Ok(done) => {
                    out.steps[i].changed = false;
                    restored.push(format!("step {}", i + 1));
                    format!("rolled back: {done}")
                }
                Err(e) => {
                    out.steps[i].changed = true;
                    kept.push(format!("step {} could not be rolled back: {e}", i + 1));
                    format!("NOT rolled back: {e}")
                }
            };
            let result = out.steps[i].result.get_or_insert_with(String::new);
            result.push_str(if result.is_empty() { "" } else { "; " });
            result.push_str(&note);
        }
        match (restored.is_empty(), kept.is_empty()) {
            (true, true) => "nothing had been changed".into(),
            (false, true) => format!("rolled back {}", restored.join(", ")),
            (_, false) => format!(
                "rolled back {}; {}",
                if restored.is_empty() { "nothing".to_string() } else { restored.join(", ") },
                kept.join("; ")
            ),
        }
    }
}

/// A plan's intent (`plan-started`) and each step's result (`plan-step`) in
/// the journal, written as they happen.
#[derive(Serialize)]
struct PlanJournal<'a> {
    time: String,
    kind: &'a str,
    plan: &'a str,
    rule: &'a str,
    /// In `plan-started`: the record the plan answers, so that a restart
    /// after a crash in the middle does not decide it (and run it) again.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inode: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    steps: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
}

impl<'a> PlanJournal<'a> {
    /// An entry of `kind` about `plan`, written now, with no details yet.
    fn new(kind: &'a str, plan: &'a str, rule: &'a str) -> Self {
        PlanJournal {
            time: crate::audit::now_rfc3339(),
            kind,
            plan,
            rule,
            source: None,
            inode: None,
            offset: None,
            summary: None,
            steps: Vec::new(),
            step: None,
            target: None,
            result: None,
        }
    }
}

impl Pipeline {
    /// Finds the plans the journal's `tail` says were started and never
    /// finished (the agent died in the middle) and reports each: what its
    /// steps did, as far as the journal knows, and that nothing will be
    /// re-run — a person checks the state and decides. Returns how many.
    pub fn report_interrupted_plans(&self, tail: &[u8]) -> usize {
        let mut started: Vec<(String, serde_json::Value)> = Vec::new();
        let mut finished = std::collections::HashSet::new();
        let mut steps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in tail.split(|b| *b == b'\n') {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
            let id = v["plan"].as_str().unwrap_or("").to_string();
            match v["kind"].as_str() {
                Some("plan-started") => started.push((id, v)),
                Some("plan-step") => steps.entry(id).or_default().push(format!(
                    "step {} ({}): {}",
                    v["step"],
                    v["target"].as_str().unwrap_or("?"),
                    v["result"].as_str().unwrap_or("?")
                )),
                Some("decision") | Some("plan-interrupted") if !id.is_empty() => {
                    finished.insert(id);
                }
                _ => {}
            }
        }
        let mut n = 0;
        for (id, v) in started.iter().filter(|(id, _)| !finished.contains(id)) {
            n += 1;
            let done = steps.remove(id).unwrap_or_default();
            let planned: Vec<&str> = v["steps"].as_array().into_iter().flatten().filter_map(|s| s.as_str()).collect();
            let detail = format!(
                "plan {id} of rule {} ({}) was interrupted: the agent stopped before it finished. Planned: {}. Done, as far as the journal knows: {}. Nothing is re-run: check the state of what it touched.",
                v["rule"].as_str().unwrap_or("?"),
                v["summary"].as_str().unwrap_or(""),
                planned.join("; "),
                if done.is_empty() { "no step finished".to_string() } else { done.join("; ") },
            );
            tracing::error!("{detail}");
            self.audit.write(&PlanJournal {
                summary: Some(&detail),
                ..PlanJournal::new("plan-interrupted", id, v["rule"].as_str().unwrap_or("?"))
            });
            if let Some(outbox) = &self.outbox {
                let subject = format!("[pipemedic] {}: a fix was interrupted", self.host);
                outbox.notify(&format!("interrupted:{id}"), &subject, &detail);
            }
        }
        n
    }
}

/// When a fix that failed for a transient local reason is tried again (ms
/// after the failure); after the last, a person reads the failure.
const RETRY_AFTER_MS: [i64; 3] = [5_000, 30_000, 120_000];

/// A fix waiting to be tried again.
struct Retry {
    due: i64,
    attempt: usize,
    plan: Plan,
    event: Event,
}

/// Whether a failure is the host's passing trouble rather than the fix's:
/// out of file descriptors, memory or space, or "try again".
fn transient(reason: &str) -> bool {
    // EAGAIN, ENOMEM, ENFILE, EMFILE, ENOSPC, EDQUOT as io::Error shows them.
    ["(os error 11)", "(os error 12)", "(os error 23)", "(os error 24)", "(os error 28)", "(os error 122)"]
        .iter()
        .any(|code| reason.contains(code))
}

impl Pipeline {
    /// Schedules a failed plan again if it failed transiently and changed
    /// nothing (a preview, the policy record or its first change failed);
    /// its policy record is taken back so the cooldown does not hold the
    /// retry.
    fn retry_if_transient(&mut self, plan: &Plan, event: &Event, out: &mut Outcome, attempt: usize) {
        if out.decision != Decision::Failed || !out.reason.as_deref().is_some_and(transient) || self.dry_run {
            return;
        }
        let changed = out.steps.iter().any(|s| s.changed);
        let Some(delay) = RETRY_AFTER_MS.get(attempt).filter(|_| !changed) else { return };
        self.policy.forget(plan, event.at);
        let due = chrono::Utc::now().timestamp_millis() + delay;
        let when = chrono::DateTime::from_timestamp_millis(due).map(|t| t.to_rfc3339()).unwrap_or_default();
        if let Some(r) = &mut out.reason {
            r.push_str(&format!(
                "; a transient failure that changed nothing: trying again at {when} (retry {} of {})",
                attempt + 1,
                RETRY_AFTER_MS.len()
            ));
        }
        self.retries.push(Retry { due, attempt: attempt + 1, plan: plan.clone(), event: event.clone() });
    }

    /// Tries again the fixes whose retry is due.
    fn run_retries(&mut self, now: i64) {
        let (due, later): (Vec<Retry>, Vec<Retry>) =
            std::mem::take(&mut self.retries).into_iter().partition(|r| r.due <= now);
        self.retries = later;
        for r in due {
            let mut event = r.event;
            event.at = now;
            let mut out = self.outcome_for(&r.plan.rule, &r.plan.runbook, &event);
            out.summary = Some(r.plan.summary.clone());
            out.risk = Some(r.plan.risk);
            self.decide_and_apply_once(&r.plan, &event, &mut out);
            self.retry_if_transient(&r.plan, &event, &mut out, r.attempt);
            let note = format!("retry {} of {} after a transient failure", r.attempt, RETRY_AFTER_MS.len());
            out.reason = Some(match out.reason.take() {
                Some(why) => format!("{note}: {why}"),
                None => note,
            });
            self.record_outcome(&out);
        }
    }
}

/// An approval's life-cycle entry in the audit journal.
#[derive(Serialize)]
struct ApprovalEntry<'a> {
    time: String,
    kind: &'a str,
    approval: &'a str,
    rule: &'a str,
    state: ApprovalState,
    #[serde(skip_serializing_if = "Option::is_none")]
    who: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn approval_entry<'a>(
    kind: &'a str,
    a: &'a Approval,
    who: Option<&'a str>,
    via: Option<&'a str>,
    reason: Option<&'a str>,
) -> ApprovalEntry<'a> {
    ApprovalEntry {
        time: crate::audit::now_rfc3339(),
        kind,
        approval: &a.id,
        rule: &a.rule,
        state: a.state,
        who,
        via,
        reason,
    }
}

impl Pipeline {
    /// Stores the plan as an approval and mails every approver their links.
    fn request_approval(&mut self, plan: &Plan, previews: &[Preview], event: &Event, out: &mut Outcome) {
        let Some(ap) = &mut self.approvals else { return };
        let steps: Vec<PlannedStep> = plan
            .steps
            .iter()
            .zip(previews)
            .map(|(s, p)| PlannedStep {
                step: s.clone(),
                action: s.action().to_string(),
                target: s.target(),
                preview: p.text.clone(),
                noop: p.noop,
                depends_on: p.depends_on(),
            })
            .collect();
        let plan_hash = Approval::compute_plan_hash(&plan.rule, plan.risk, &steps, self.dry_run);
        if let Some(a) = ap.store.pending_for(&plan.rule, &plan_hash) {
            out.decision = Decision::AwaitingApproval;
            out.approval = Some(a.id.clone());
            out.reason =
                Some(format!("already asked: approval {} waits for an answer until {}", a.id, human_time(a.expires)));
            return;
        }
        let needed = if plan.risk >= Risk::DataLoss { 2 } else { 1 };
        if ap.config.approvers.len() < needed {
            out.decision = Decision::Refused;
            out.reason = Some(format!(
                "a {} plan needs {needed} different approvers; [approval] lists {}",
                plan.risk,
                ap.config.approvers.len()
            ));
            return;
        }
        let approval = Approval {
            id: random_hex(16),
            state: ApprovalState::Pending,
            created: crate::audit::now_rfc3339(),
            expires: chrono::Utc::now().timestamp_millis() + ap.config.expiry_secs as i64 * 1000,
            host: self.host.clone(),
            rule: plan.rule.clone(),
            runbook: plan.runbook.clone(),
            summary: plan.summary.clone(),
            risk: plan.risk,
            steps,
            plan_hash,
            event: event.clone(),
            dry_run: self.dry_run,
            approvers_asked: ap.config.approvers.clone(),
            approved_by: Vec::new(),
            denied_by: None,
            outcome: None,
            superseded_by: None,
        };
        if self.claims_canal(plan.steps.iter()) {
            match self.claim_canal(&approval) {
                Ok(None) => {}
                Ok(Some(other)) => {
                    out.decision = Decision::HandledElsewhere;
                    out.reason = Some(format!(
                        "the agent on {} asked for approval {} of a plan on canal's cursors (until {}); not asking again here",
                        other.host,
                        other.approval,
                        human_time(other.expires)
                    ));
                    return;
                }
                Err(e) => {
                    out.decision = Decision::Failed;
                    out.reason = Some(format!(
                        "could not claim canal's cursors for this approval, nothing was asked or changed: {e}"
                    ));
                    return;
                }
            }
        }
        let Some(ap) = &mut self.approvals else { return };
        if let Err(e) = ap.store.save(approval.clone()) {
            self.release_canal_claim(&approval);
            out.decision = Decision::Failed;
            out.reason = Some(format!("could not store the approval request, nothing was asked or changed: {e}"));
            return;
        }
        let Some(ap) = &self.approvals else { return };
        let outbox = self.outbox.as_ref().expect("approvals need mail");
        let mut problems = Vec::new();
        for approver in &approval.approvers_asked {
            let links = Links {
                approve: link(&ap.config.public_url, &approval, &ap.signer, approver, Answer::Approve),
                deny: link(&ap.config.public_url, &approval, &ap.signer, approver, Answer::Deny),
            };
            if let Err(e) = outbox.enqueue(&approval_mail(&approval, approver, &links)) {
                problems.push(format!("mail to {approver} not queued: {e}"));
            }
        }
        self.audit.write(&approval_entry("approval-requested", &approval, None, None, None));
        out.decision = Decision::AwaitingApproval;
        out.approval = Some(approval.id.clone());
        out.reason = Some(format!(
            "approval {} mailed to {}; expires {}{}",
            approval.id,
            approval.approvers_asked.join(", "),
            human_time(approval.expires),
            if problems.is_empty() { String::new() } else { format!(" ({})", problems.join("; ")) }
        ));
    }

    /// A plan that writes canal's cursors on a host whose canal runs in HA:
    /// the agents ask for one approval between them (`cluster::canal`).
    /// Dry-run writes nothing to ZooKeeper, a claim included.
    fn claims_canal<'a>(&self, mut steps: impl Iterator<Item = &'a Step>) -> bool {
        !self.dry_run && self.config.canal.as_ref().is_some_and(|c| c.ha) && steps.any(Step::writes_canal_cursors)
    }

    /// Takes the claim for `a`, or answers which agent holds it.
    fn claim_canal(&self, a: &Approval) -> Result<Option<crate::cluster::canal::Claim>, String> {
        let zk = self.config.zookeeper.as_ref().ok_or("no [zookeeper] section")?;
        let mine = crate::cluster::canal::Claim { host: self.host.clone(), approval: a.id.clone(), expires: a.expires };
        crate::cluster::canal::claim(&crate::zk::Session::connect(zk)?, &mine, chrono::Utc::now().timestamp_millis())
    }

    /// `a` was answered, expired or superseded: its claim goes.
    fn release_canal_claim(&self, a: &Approval) {
        if a.dry_run || !self.claims_canal(a.steps.iter().map(|s| &s.step)) {
            return;
        }
        let Some(zk) = self.config.zookeeper.as_ref() else { return };
        let released = crate::zk::Session::connect(zk).and_then(|s| crate::cluster::canal::release(&s, &a.id));
        if let Err(e) = released {
            tracing::error!(approval = %a.id, "releasing the claim on canal's cursors: {e}; it lapses at the approval's expiry");
        }
    }

    /// Takes a decision from a link or the CLI. Replies as soon as it is
    /// recorded; an approved plan is then re-checked and applied.
    pub fn decide(&mut self, req: DecideRequest) {
        let now = chrono::Utc::now().timestamp_millis();
        let Some(ap) = &mut self.approvals else {
            let _ = req.reply.send(DecideReply::Refused("approvals are not configured on this host".into()));
            return;
        };
        let Some(mut a) = ap.store.get(&req.id).cloned() else {
            let _ = req.reply.send(DecideReply::Refused("no such approval on this host".into()));
            return;
        };
        if let Err(why) = check_link(&a, &ap.signer, req.decision, &req.approver, req.expires, &req.token, now) {
            self.audit.write(&approval_entry("approval-refused", &a, Some(&req.approver), Some(req.via), Some(&why)));
            let _ = req.reply.send(DecideReply::Refused(why));
            self.expire_approvals(now);
            return;
        }
        let decider = Decider { who: req.approver.clone(), at: crate::audit::now_rfc3339(), via: req.via.to_string() };
        let reply = match req.decision {
            Answer::Deny => {
                a.state = ApprovalState::Denied;
                a.denied_by = Some(decider);
                a.outcome = Some(format!("denied by {}; nothing was applied", req.approver));
                "Denied. Nothing will be applied.".to_string()
            }
            Answer::Approve => {
                a.approved_by.push(decider);
                let (have, need) = (a.approved_by.len(), a.approvals_needed());
                if have < need {
                    format!("Recorded your approval. This plan needs {need} different approvers; {have} so far. Nothing is applied yet.")
                } else {
                    a.state = ApprovalState::Approved;
                    match a.dry_run {
                        true => "Approved. DRY RUN: this agent applies nothing.".to_string(),
                        false => "Approved. The agent re-checks the live state and applies the plan now; the result goes to the audit journal.".to_string(),
                    }
                }
            }
        };
        if let Err(e) = ap.store.save(a.clone()) {
            let _ = req
                .reply
                .send(DecideReply::Refused(format!("the decision could not be stored, nothing was changed: {e}")));
            return;
        }
        self.audit.write(&approval_entry(
            "approval-decided",
            &a,
            Some(&req.approver),
            Some(req.via),
            Some(req.decision.as_str()),
        ));
        let _ = req.reply.send(DecideReply::Accepted(reply));
        match a.state {
            ApprovalState::Approved => self.apply_approved(a),
            ApprovalState::Denied => self.release_canal_claim(&a),
            _ => {}
        }
    }

    /// Re-checks an approved plan against live state and applies it if
    /// nothing it depends on changed; otherwise supersedes it and asks again.
    fn apply_approved(&mut self, mut a: Approval) {
        let plan = Plan {
            rule: a.rule.clone(),
            runbook: a.runbook.clone(),
            summary: a.summary.clone(),
            risk: a.risk,
            benign: false,
            steps: a.steps.iter().map(|s| s.step.clone()).collect(),
        };
        let mut out = self.outcome_for(&a.rule, &a.runbook, &a.event);
        out.summary = Some(a.summary.clone());
        out.risk = Some(a.risk);
        out.decision = Decision::Applied;
        out.steps = a
            .steps
            .iter()
            .map(|s| StepOutcome {
                action: s.step.action(),
                target: s.target.clone(),
                preview: Some(s.preview.clone()),
                noop: s.noop,
                result: None,
                changed: false,
            })
            .collect();
        out.dry_run = a.dry_run;
        out.approval = Some(a.id.clone());
        let approvers: Vec<&str> = a.approved_by.iter().map(|d| d.who.as_str()).collect();
        let approvers = approvers.join(", ");
        if a.dry_run {
            out.decision = Decision::DryRun;
            out.reason = Some(format!("approved by {approvers}; dry-run: nothing was changed"));
            a.outcome = out.reason.clone();
            self.finish_approval(a, out);
            return;
        }
        let steps: Vec<Step> = a.steps.iter().map(|s| s.step.clone()).collect();
        let (previews, failed) = self.executor.preview_plan(&steps);
        let changed = a
            .steps
            .iter()
            .zip(&previews)
            .enumerate()
            .find_map(|(i, (s, p))| {
                let text_changed = p.text != s.preview && s.step.preview_is_what_was_approved();
                (text_changed || p.depends_on() != s.depends_on).then(|| {
                    format!("step {} changed since the mail: it was\n{}\nand is now\n{}", i + 1, s.preview, p.text)
                })
            })
            .or_else(|| failed.map(|(i, e)| format!("step {} can no longer be previewed: {e}", i + 1)));
        if let Some(why) = changed {
            a.state = ApprovalState::Superseded;
            // Ask the rule again, as if the event happened now.
            let mut event = a.event.clone();
            event.at = chrono::Utc::now().timestamp_millis();
            let again = self.rules.rules.iter().position(|r| r.name == a.rule).map(|i| self.react(i, &event));
            let next = match &again {
                None => format!("rule {} is no longer loaded; not asking again", a.rule),
                Some(outcomes) => match outcomes.iter().find(|o| o.decision == Decision::AwaitingApproval) {
                    Some(o) => {
                        a.superseded_by = o.approval.clone();
                        format!("asked again as approval {}", o.approval.as_deref().unwrap_or("?"))
                    }
                    None => {
                        let said: Vec<String> = outcomes
                            .iter()
                            .map(|o| {
                                format!(
                                    "{:?}{}",
                                    o.decision,
                                    o.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                                )
                            })
                            .collect();
                        format!("asked the rule again: {}", said.join("; "))
                    }
                },
            };
            a.outcome = Some(format!("not applied: {why}; {next}"));
            let reason = a.outcome.clone();
            let _ = self.approvals.as_mut().expect("approvals").store.save(a.clone());
            self.release_canal_claim(&a);
            self.audit.write(&approval_entry("approval-superseded", &a, None, None, reason.as_deref()));
            tracing::warn!(approval = %a.id, "approved plan superseded: {}", reason.unwrap_or_default());
            for o in again.unwrap_or_default() {
                self.record_outcome(&o);
            }
            return;
        }
        self.execute(&plan, &previews, chrono::Utc::now().timestamp_millis(), &mut out);
        a.state = if out.decision == Decision::Applied { ApprovalState::Applied } else { ApprovalState::Failed };
        out.reason = Some(match &out.reason {
            Some(r) => format!("approved by {approvers}; {r}"),
            None => format!("approved by {approvers}; applied and verified"),
        });
        a.outcome = out.reason.clone();
        self.finish_approval(a, out);
    }

    fn finish_approval(&mut self, a: Approval, out: Outcome) {
        self.release_canal_claim(&a);
        if let Err(e) = self.approvals.as_mut().expect("approvals").store.save(a) {
            tracing::error!("{e}");
        }
        self.record_outcome(&out);
    }

    /// Runs a playbook a person asked for on the host: checks the signed
    /// request, builds its plans and decides about each like a rule's (a
    /// risky one is mailed for approval). Replies with what was decided.
    pub fn run_playbook(&mut self, req: PlaybookRequest) {
        let now = chrono::Utc::now().timestamp_millis();
        let refuse = |why: String| {
            let _ = req.reply.send(DecideReply::Refused(why));
        };
        let Some(ap) = &self.approvals else {
            return refuse("playbooks are run through the approval endpoint; this host has no [approval]".into());
        };
        let id = playbook_token_id(&req.name);
        if now >= req.expires
            || !req.requester.starts_with("local:")
            || !ap.signer.verify(&id, &req.params, Answer::Approve, req.expires, &req.requester, &req.token)
        {
            self.audit.write(&crate::audit::Lifecycle {
                time: crate::audit::now_rfc3339(),
                kind: "playbook-refused",
                dry_run: self.dry_run,
                detail: format!("{} asked by {}: invalid or expired signature", req.name, req.requester),
            });
            return refuse(
                "the request's signature is not valid (or it expired); run it again with pipemedic playbook run".into(),
            );
        }
        let Some(pb) = self.rules.playbooks.get(&req.name) else {
            let known: Vec<&String> = self.rules.playbooks.keys().collect();
            return refuse(format!("no playbook {:?} is loaded (loaded: {known:?})", req.name));
        };
        let params: BTreeMap<String, String> = match serde_json::from_str(&req.params) {
            Ok(p) => p,
            Err(e) => return refuse(format!("parameters are not a JSON map of strings: {e}")),
        };
        let (name, runbook) = (pb.name.clone(), pb.runbook.clone());
        let specs = match self.rules.run_playbook(pb, &params) {
            Ok(specs) => specs,
            Err(e) => return refuse(e.to_string()),
        };
        let text = format!(
            "pipemedic playbook run {name} {} (asked by {})",
            params.iter().map(|(k, v)| format!("--param {k}={v}")).collect::<Vec<_>>().join(" "),
            req.requester
        );
        let event = Event {
            signature: format!("playbook:{name}").into(),
            source: "operator".into(),
            file: std::path::Path::new("(operator)").into(),
            captures: params,
            text: text.clone(),
            offset: 0,
            inode: 0,
            at: now,
            truncated: false,
        };
        let template = self.outcome_for(&format!("playbook:{name}"), &runbook, &event);
        let mut said = Vec::new();
        for spec in specs {
            let outcome = self.decide_spec(spec, &format!("playbook:{name}"), &runbook, &event, template.clone());
            said.push(format!(
                "{}: {:?}{}",
                outcome.summary.as_deref().unwrap_or(&name),
                outcome.decision,
                outcome.reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default()
            ));
            self.record_outcome(&outcome);
        }
        let _ = req.reply.send(DecideReply::Accepted(if said.is_empty() {
            format!("{name}: no plan")
        } else {
            said.join("\n")
        }));
    }

    /// Marks pending approvals past their expiry as expired.
    pub fn expire_approvals(&mut self, now: i64) {
        let Some(ap) = &self.approvals else { return };
        for id in ap.store.expired(now) {
            let Some(ap) = &mut self.approvals else { return };
            let Some(mut a) = ap.store.get(&id).cloned() else { continue };
            a.state = ApprovalState::Expired;
            a.outcome =
                Some(format!("expired at {} without enough approvals; nothing was applied", human_time(a.expires)));
            if let Err(e) = ap.store.save(a.clone()) {
                tracing::error!("{e}");
            }
            self.release_canal_claim(&a);
            self.audit.write(&approval_entry("approval-expired", &a, None, None, a.outcome.as_deref()));
            tracing::warn!(approval = %a.id, "approval expired without an answer");
        }
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
