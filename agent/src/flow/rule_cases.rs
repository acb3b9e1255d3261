//! `pipemedic test`: every rule's own test cases, log text in → plans out.
//!
//! A rule's `tests()` returns an array of cases:
//!
//! ```text
//! #{ name: "…", source: "kafka_server", log: "…log text…",
//!    expect: [ #{ steps: ["hosts ip-1.2.3.4 -> 1.2.3.4", "restart kafka"], risk: "safe" } ] }
//! ```
//!
//! The log text goes through the daemon's own flow (record assembly,
//! matching, the rule, plan validation), in dry-run with only this rule
//! loaded; the rule's questions about live systems are answered by the case.
//! `expect` lists the plans the rule must return, in order; each may check
//! `steps` (the one-line form of each step), `risk`, `benign`, and `refused`
//! (whether validation refuses the plan, as it must for hostile captures).
//! An empty `expect` means no plan at all.

use std::path::Path;
use std::sync::Arc;

use rhai::Dynamic;

use super::{Asked, Clock, Decision, Flow};
use crate::audit::Audit;
use crate::config::Config;
use crate::matching::Event;
use crate::plan::{PlanRefused, Refusal};
use crate::rules::api::CaseAnswers;
use crate::rules::{Rule, RuleSet};
use crate::sources::RecordStart;

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
    let case = case.try_cast::<rhai::Map>().ok_or("a test case must be a map")?;
    let name = get_string(&case, "name")?.unwrap_or_else(|| "unnamed".into());
    let expect = case
        .get("expect")
        .cloned()
        .ok_or("a test case needs `expect`")?
        .into_array()
        .map_err(|t| format!("`expect` must be an array, not {t}"))?;
    let answers = answers(&case);
    let config = match answers.kafka_cluster {
        Some(true) if config.kafka_cluster().is_none() => in_a_cluster(config),
        _ => config.clone(),
    };
    // The real flow, with only this rule loaded, in dry-run, deciding from
    // the case's answers instead of live state.
    let mut flow = Flow::new(Arc::new(config), rules.only(rule), Audit::discard(), Clock::LogTime, true)
        .map_err(|e| e.to_string())?
        .without_previews()
        .answering(answers);
    let outcomes = match get_string(&case, "probe")? {
        Some(probe) => flow.handle_probe(&probe_event(&case, &probe)?),
        None => {
            let source = get_string(&case, "source")?
                .or_else(|| rule.sources.first().cloned())
                .ok_or("a test case needs `source`")?;
            let log = get_string(&case, "log")?.ok_or("a test case needs `log` (or `probe`)")?;
            let start = flow.config().source(&source).map_or(RecordStart::Timestamp, |s| s.record_start);
            let mut outcomes = Vec::new();
            flow.feed(&source, Path::new("(test case)"), start, &mut log.as_bytes(), &mut |o| outcomes.push(o))
                .map_err(|e| e.to_string())?;
            outcomes
        }
    };
    let mut asked = Vec::new();
    for o in outcomes {
        match o.decision {
            Decision::RuleError => return Err(o.reason.unwrap_or_default()),
            _ => asked.extend(o.asked),
        }
    }
    Ok((name, compare(&expect, &asked)))
}

/// A probe event instead of log text: `probe: "heartbeat_missing", captures: #{ source: "ix_quote" }`.
fn probe_event(case: &rhai::Map, probe: &str) -> Result<Event, String> {
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
    let text = get_string(case, "text")?.unwrap_or_default();
    Ok(Event::synthetic(probe, crate::rules::PROBE_SOURCE, captures, text, 0))
}

/// The case says this host's broker is in a coordinated cluster
/// (`kafka_cluster: true`); the test configuration may not be.
fn in_a_cluster(config: &Config) -> Config {
    // Parsed, so every other setting keeps the configuration's defaults.
    let defaults: crate::clients::kafka::KafkaConfig =
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

fn compare(expect: &[Dynamic], observed: &[Asked]) -> Verdict {
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
            if risk != got.risk.to_string() {
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
