//! `pipemedic test`: every rule's own test cases, log text in → plans out.
//!
//! A rule's `tests()` returns an array of cases:
//!
//! ```text
//! #{ name: "…", source: "kafka_server", log: "…log text…",
//!    expect: [ #{ steps: ["hosts ip-1.2.3.4 -> 1.2.3.4", "restart kafka"], risk: "safe" } ] }
//! ```
//!
//! The log text goes through the same record assembly and matching as the
//! daemon; only this rule reacts. `expect` lists the plans the rule must
//! return, in order; each may check `steps` (the one-line form of each step),
//! `risk`, `benign`, and `refused` (whether validation refuses the plan, as it
//! must for hostile captures). An empty `expect` means no plan at all.

use std::sync::{Arc, Mutex};

use rhai::Dynamic;

use super::api::CaseAnswers;
use super::history::EventHistory;
use super::{Rule, RuleContext, RuleSet};
use crate::config::{Config, RecordStart};
use crate::matching::{Event, Matcher, SignatureSpec};
use crate::plan::{PlanRefused, Refusal};
use crate::sources::logtime::parse_log_time;
use crate::sources::{Assembler, Assembly};

/// The result of one test case.
#[derive(Debug)]
pub struct CaseResult {
    pub rule: String,
    pub case: String,
    pub verdict: Verdict,
}

/// How a test case went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// A plan was refused only because this host's configuration lacks
    /// what the step names (no canal here, say): the rule is not at fault.
    Skip(String),
    /// What differed.
    Fail(String),
}

/// What one plan looked like, in the terms test cases use.
#[derive(Debug, PartialEq)]
struct Observed {
    steps: Vec<String>,
    risk: String,
    benign: bool,
    refused: Option<PlanRefused>,
}

impl Observed {
    fn of(spec: crate::plan::PlanSpec, rule: &Rule, config: &Config) -> Observed {
        let steps = spec.steps.iter().map(ToString::to_string).collect();
        let (risk, benign) = (spec.risk.to_string(), spec.benign);
        let refused = spec.validate(&rule.name, &rule.runbook, config).err();
        Observed { steps, risk, benign, refused }
    }
}

/// Runs every test case of every rule. A rule without `tests()` is reported
/// as a failure: every shipped rule must prove what it does.
pub fn run_all(rules: &RuleSet, config: &Config) -> Vec<CaseResult> {
    let mut results = Vec::new();
    for rule in &rules.rules {
        if !rule.has_tests {
            results.push(CaseResult {
                rule: rule.name.clone(),
                case: "-".into(),
                verdict: Verdict::Fail("the rule has no tests()".into()),
            });
            continue;
        }
        let cases = match rules.test_cases(rule) {
            Ok(c) => c,
            Err(e) => {
                let verdict = Verdict::Fail(e.to_string());
                results.push(CaseResult { rule: rule.name.clone(), case: "-".into(), verdict });
                continue;
            }
        };
        for (i, case) in cases.into_iter().enumerate() {
            let (name, verdict) = match run_case(rules, rule, config, case) {
                Ok((name, verdict)) => (name, verdict),
                Err(e) => (format!("#{}", i + 1), Verdict::Fail(e)),
            };
            results.push(CaseResult { rule: rule.name.clone(), case: name, verdict });
        }
    }
    results
}

fn get_string(map: &rhai::Map, key: &str) -> Result<Option<String>, String> {
    match map.get(key) {
        None => Ok(None),
        Some(d) => d.clone().into_string().map(Some).map_err(|t| format!("`{key}` must be a string, not {t}")),
    }
}

fn run_case(rules: &RuleSet, rule: &Rule, config: &Config, case: Dynamic) -> Result<(String, Verdict), String> {
    let with_cluster;
    let config = match case.read_lock::<rhai::Map>().map(|c| answers(&c).kafka_cluster) {
        Some(Some(true)) if config.kafka_cluster().is_none() => {
            with_cluster = in_a_cluster(config);
            &with_cluster
        }
        _ => config,
    };
    let case = case.try_cast::<rhai::Map>().ok_or("a test case must be a map")?;
    let name = get_string(&case, "name")?.unwrap_or_else(|| "unnamed".into());
    let expect = case
        .get("expect")
        .cloned()
        .ok_or("a test case needs `expect`")?
        .into_array()
        .map_err(|t| format!("`expect` must be an array, not {t}"))?;
    if let Some(probe) = get_string(&case, "probe")? {
        return run_probe_case(rules, rule, config, &case, &probe, &expect).map(|verdict| (name, verdict));
    }
    let source =
        get_string(&case, "source")?.or_else(|| rule.sources.first().cloned()).ok_or("a test case needs `source`")?;
    let log = get_string(&case, "log")?.ok_or("a test case needs `log` (or `probe`)")?;

    let specs: Vec<SignatureSpec> = rule
        .signatures
        .iter()
        .map(|(n, p)| SignatureSpec {
            name: n.clone(),
            pattern: p.clone(),
            sources: rule.sources.iter().cloned().collect(),
        })
        .collect();
    let matcher = Matcher::new(&specs).map_err(|e| e.to_string())?;
    let start = config.source(&source).map_or(RecordStart::Timestamp, |s| s.record_start);
    let assembly = Assembly {
        start,
        max_bytes: config.limits.max_record_bytes,
        max_lines: config.limits.max_record_lines,
        interest: matcher.interest(&source),
    };
    let mut assembler = Assembler::new(source.as_str().into(), std::path::Path::new("(test case)").into(), assembly, 0);
    let mut records = Vec::new();
    assembler.push(log.as_bytes(), &mut |r| records.push(r));
    assembler.flush(true, &mut |r| records.push(r));

    let history = Arc::new(Mutex::new(EventHistory::default()));
    let mut observed = Vec::new();
    let mut last_time = 0;
    let mut matches = Vec::new();
    for record in &records {
        matches.clear();
        matcher.matches(record, &mut matches);
        let at = parse_log_time(&record.bytes).unwrap_or(last_time + 1);
        last_time = at;
        for m in &matches {
            history.lock().expect("history lock").record(&m.signature, at);
            let event = Event::new(record, m, at);
            let ctx = RuleContext {
                history: history.clone(),
                now: at,
                params: rule.params.clone(),
                kafka: None,
                config: None,
                answers: answers(&case),
            };
            for spec in rules.run(rule, &event, ctx).map_err(|e| e.to_string())? {
                observed.push(Observed::of(spec, rule, config));
            }
        }
    }
    Ok((name, compare(&expect, &observed)))
}

/// A probe event instead of log text: `probe: "heartbeat_missing", captures: #{ source: "ix_quote" }`.
fn run_probe_case(
    rules: &RuleSet,
    rule: &Rule,
    config: &Config,
    case: &rhai::Map,
    probe: &str,
    expect: &[Dynamic],
) -> Result<Verdict, String> {
    let captures = match case.get("captures") {
        None => Default::default(),
        Some(d) => d
            .clone()
            .try_cast::<rhai::Map>()
            .ok_or("`captures` must be a map")?
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let event = Event {
        signature: probe.into(),
        source: crate::rules::PROBE_SOURCE.into(),
        file: std::path::Path::new("(probe)").into(),
        captures,
        text: get_string(case, "text")?.unwrap_or_default(),
        offset: 0,
        inode: 0,
        at: 0,
        truncated: false,
    };
    let history = Arc::new(Mutex::new(EventHistory::default()));
    let ctx =
        RuleContext { history, now: 0, params: rule.params.clone(), kafka: None, config: None, answers: answers(case) };
    let mut observed = Vec::new();
    for spec in rules.run(rule, &event, ctx).map_err(|e| e.to_string())? {
        observed.push(Observed::of(spec, rule, config));
    }
    Ok(compare(expect, &observed))
}

/// The case says this host's broker is in a coordinated cluster
/// (`kafka_cluster: true`); the test configuration may not be.
fn in_a_cluster(config: &Config) -> Config {
    // Parsed, so every other setting keeps the configuration's defaults.
    let defaults: crate::config::KafkaConfig =
        toml::from_str("bootstrap_servers = \"127.0.0.1:9092\"\n[cluster]\nbroker_id = 1\n").expect("a valid [kafka]");
    let mut config = config.clone();
    let kafka = config.kafka.get_or_insert_with(|| defaults.clone());
    kafka.cluster = kafka.cluster.take().or(defaults.cluster);
    config
}

fn answers(case: &rhai::Map) -> CaseAnswers {
    CaseAnswers {
        kafka_lag: case.get("kafka_lag").and_then(|d| d.as_int().ok()),
        kafka_cluster: case.get("kafka_cluster").and_then(|d| d.as_bool().ok()),
        this_host_address: case.get("this_host_address").and_then(|d| d.clone().into_string().ok()),
        broker_registration: case.get("broker_registration").and_then(|d| d.clone().into_string().ok()),
        resolves: case.get("resolves").and_then(|d| d.as_bool().ok()),
        service_state: case.get("service_state").and_then(|d| d.clone().into_string().ok()),
    }
}

fn compare(expect: &[Dynamic], observed: &[Observed]) -> Verdict {
    if expect.len() != observed.len() {
        return Verdict::Fail(format!("expected {} plan(s), got {}: {observed:#?}", expect.len(), observed.len()));
    }
    for (i, (want, got)) in expect.iter().zip(observed).enumerate() {
        let Some(want) = want.clone().try_cast::<rhai::Map>() else {
            return Verdict::Fail(format!("expect[{i}] must be a map"));
        };
        if let Some(steps) = want.get("steps") {
            let steps: Vec<String> = match steps.clone().into_typed_array::<rhai::ImmutableString>() {
                Ok(s) => s.into_iter().map(|s| s.to_string()).collect(),
                Err(t) => return Verdict::Fail(format!("expect[{i}].steps must be an array of strings, not {t}")),
            };
            if steps != got.steps {
                return Verdict::Fail(format!("plan {}: expected steps {steps:?}, got {:?}", i + 1, got.steps));
            }
        }
        if let Some(risk) = want.get("risk").and_then(|r| r.clone().into_string().ok()) {
            if risk != got.risk {
                return Verdict::Fail(format!("plan {}: expected risk {risk}, got {}", i + 1, got.risk));
            }
        }
        if let Some(benign) = want.get("benign").and_then(|b| b.as_bool().ok()) {
            if benign != got.benign {
                return Verdict::Fail(format!("plan {}: expected benign {benign}, got {}", i + 1, got.benign));
            }
        }
        let refused = want.get("refused").and_then(|b| b.as_bool().ok()).unwrap_or(false);
        if let (false, Some(why @ PlanRefused { why: Refusal::NotConfigured(_), .. })) = (refused, &got.refused) {
            return Verdict::Skip(format!("plan {} needs configuration this host lacks: {why}", i + 1));
        }
        if refused != got.refused.is_some() {
            return Verdict::Fail(format!("plan {}: expected refused {refused}, got {:?}", i + 1, got.refused));
        }
    }
    Verdict::Pass
}
