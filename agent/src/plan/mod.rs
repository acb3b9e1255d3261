//! Plans: what a rule wants done, as an ordered list of typed steps.
//!
//! A rule hands back [`StepSpec`]s — raw strings straight from log captures.
//! [`StepSpec::validate`] turns each into a typed [`Step`] or refuses it;
//! after that no action ever sees an unchecked string.

pub mod policy;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::actions::Step;
use crate::config::Config;
use crate::types::excerpt;

/// How much harm a plan can do, and so who must agree before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Risk {
    /// Runs at once.
    Safe,
    /// Needs one approver.
    Dangerous,
    /// Loses data; needs two distinct approvers.
    DataLoss,
}

/// A risk a rule named that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown risk {}: expected safe, dangerous or data-loss", excerpt(.0))]
pub struct UnknownRisk(pub String);

impl Risk {
    pub fn parse(s: &str) -> Result<Risk, UnknownRisk> {
        match s {
            "safe" => Ok(Risk::Safe),
            "dangerous" => Ok(Risk::Dangerous),
            "data-loss" => Ok(Risk::DataLoss),
            other => Err(UnknownRisk(other.to_string())),
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Risk::Safe => "safe",
            Risk::Dangerous => "dangerous",
            Risk::DataLoss => "data-loss",
        })
    }
}

/// What to do to a managed service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceOp {
    Start,
    Stop,
    Restart,
}

impl fmt::Display for ServiceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceOp::Start => "start",
            ServiceOp::Stop => "stop",
            ServiceOp::Restart => "restart",
        })
    }
}

/// A step as a rule asked for it: raw arguments (log captures, rule
/// literals) that only [`StepSpec::validate`] turns into a typed [`Step`].
/// Each action family writes its own (`actions::hosts::spec`, …).
#[derive(Clone)]
pub struct StepSpec {
    /// The rule API's name for it (`hosts_entry`), for refusals.
    pub kind: &'static str,
    /// The one-line form rule test cases compare against.
    shown: String,
    validate: Arc<Validate>,
}

/// A step kind's validation, holding the rule's raw arguments.
type Validate = dyn Fn(&Config) -> Result<Step, Refusal> + Send + Sync;

impl StepSpec {
    pub fn new(
        kind: &'static str,
        shown: String,
        validate: impl Fn(&Config) -> Result<Step, Refusal> + Send + Sync + 'static,
    ) -> StepSpec {
        StepSpec { kind, shown, validate: Arc::new(validate) }
    }

    /// Checks the rule's arguments against the rules for their values and
    /// the configuration. The error says what was refused and why.
    pub fn validate(&self, config: &Config) -> Result<Step, Refusal> {
        (self.validate)(config)
    }
}

impl fmt::Display for StepSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for StepSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StepSpec({})", self.shown)
    }
}

impl PartialEq for StepSpec {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.shown == other.shown
    }
}

impl Step {
    /// The action family, as in the audit journal.
    pub fn family(&self) -> &'static str {
        self.action().family()
    }

    /// What the step acts on.
    pub fn target(&self) -> String {
        self.action().target()
    }

    /// See [`Action::limit_key`].
    pub fn limit_key(&self) -> String {
        self.action().limit_key()
    }

    /// See [`Action::changes`].
    pub fn changes(&self) -> Option<String> {
        self.action().changes()
    }

    /// See [`Action::preview_binds`].
    pub fn preview_binds(&self) -> bool {
        self.action().preview_binds()
    }

    /// See [`Action::writes_canal_cursors`].
    pub fn writes_canal_cursors(&self) -> bool {
        self.action().writes_canal_cursors()
    }

    /// See [`Action::min_risk`].
    pub fn min_risk(&self) -> Risk {
        self.action().min_risk()
    }
}

/// A plan that passed validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub rule: String,
    pub runbook: Vec<String>,
    pub summary: String,
    pub risk: Risk,
    /// A finding that deliberately needs no action (runbook C3).
    pub benign: bool,
    pub steps: Vec<Step>,
}

impl Plan {
    /// What the plan changes (see [`Step::changes`]), each once.
    pub fn changes(&self) -> Vec<String> {
        let mut things: Vec<String> = self.steps.iter().filter_map(Step::changes).collect();
        things.sort();
        things.dedup();
        things
    }
}

/// Why a step a rule asked for is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It names what this host's configuration lacks (a service, a
    /// properties file, a canal destination, a section): this host takes no
    /// part in that fix; the rule is not at fault.
    #[error("{0}")]
    NotConfigured(String),
    /// Its input is not valid: a hostile capture, a value out of range.
    #[error("{0}")]
    Invalid(String),
}

impl Refusal {
    pub fn invalid(e: impl fmt::Display) -> Refusal {
        Refusal::Invalid(e.to_string())
    }
}

/// Which step of a plan was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step {step} ({kind}): {why}")]
pub struct PlanRefused {
    pub step: usize,
    pub kind: &'static str,
    pub why: Refusal,
}

/// A plan as a rule returned it, before validation.
#[derive(Debug, Clone)]
pub struct PlanSpec {
    pub summary: String,
    pub risk: Risk,
    pub benign: bool,
    pub steps: Vec<StepSpec>,
}

impl PlanSpec {
    /// Validates every step; the first refusal refuses the plan, so a plan
    /// never runs with a step quietly dropped.
    pub fn validate(self, rule: &str, runbook: &[String], config: &Config) -> Result<Plan, PlanRefused> {
        let mut steps = Vec::with_capacity(self.steps.len());
        for (i, spec) in self.steps.iter().enumerate() {
            let refused = |why| PlanRefused { step: i + 1, kind: spec.kind, why };
            steps.push(spec.validate(config).map_err(refused)?);
        }
        let risk = steps.iter().map(Step::min_risk).fold(self.risk, Risk::max);
        Ok(Plan {
            rule: rule.to_string(),
            runbook: runbook.to_vec(),
            summary: self.summary,
            risk,
            benign: self.benign,
            steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::actions::{canal, hosts, kafka, kafka_cluster, notify, properties, service};

    /// A host with one service and one properties file, and nothing else.
    fn config() -> Config {
        let text = "state_dir = \"state\"\nrule_dirs = [\"rules\"]\n\
                    [services.kafka]\nstart=[\"a\"]\nstop=[\"b\"]\nprocess={pid_file=\"p\"}\n\
                    [properties_files]\nconsumer = \"consumer.properties\"\n";
        Config::parse(text, Path::new("c.toml"), Path::new(".")).unwrap()
    }

    fn plan(risk: Risk, steps: Vec<StepSpec>) -> Result<Plan, PlanRefused> {
        let spec = PlanSpec { summary: "s".into(), risk, benign: false, steps };
        spec.validate("r", &["K1".into()], &config())
    }

    #[test]
    fn hostile_captures_are_refused_as_invalid_naming_the_step() {
        for (step, kind) in [
            (hosts::spec("ip-10.0.0.1; rm -rf /", "10.0.0.1"), "hosts_entry"),
            (hosts::spec("ip-10-0-0-1", "10.0.0.1\n127.0.0.1 evil"), "hosts_entry"),
            (service::spec(ServiceOp::Restart, "../kafka"), "service"),
            (properties::set_spec("consumer", "a=b\nc", "1"), "property_set"),
            (properties::lower_spec("consumer", "max.poll.records", 1.5, 10, 500), "property_lower"),
            (kafka::move_spec("/data/../etc"), "kafka_move_log_dir"),
            (crate::actions::probe::spec("not-an-address"), "probe_tcp"),
        ] {
            let shown = step.to_string();
            let refused = plan(Risk::Safe, vec![notify::spec("first"), step]).unwrap_err();
            assert_eq!((refused.step, refused.kind), (2, kind), "{shown}: {refused}");
            assert!(matches!(refused.why, Refusal::Invalid(_)), "{shown}: {refused}");
        }
    }

    #[test]
    fn what_this_host_lacks_is_refused_as_not_configured() {
        for step in [
            service::spec(ServiceOp::Restart, "canal"),
            properties::set_spec("kafka_server", "log.dirs", "/data"),
            canal::reset_spec("ix_trade"),
            kafka_cluster::spec(),
        ] {
            let shown = step.to_string();
            let refused = plan(Risk::Safe, vec![step]).unwrap_err();
            assert!(matches!(refused.why, Refusal::NotConfigured(_)), "{shown}: {refused}");
        }
    }

    #[test]
    fn a_plan_is_at_least_as_risky_as_its_riskiest_step() {
        let safe = plan(Risk::Safe, vec![service::spec(ServiceOp::Restart, "kafka")]).unwrap();
        assert_eq!(safe.risk, Risk::Safe);
        let set = properties::set_spec("consumer", "max.poll.records", "100");
        assert_eq!(plan(Risk::Safe, vec![set]).unwrap().risk, Risk::Dangerous);
        let lower = properties::lower_spec("consumer", "max.poll.records", 0.5, 10, 500);
        assert_eq!(plan(Risk::DataLoss, vec![lower]).unwrap().risk, Risk::DataLoss, "a rule may raise it");
    }

    #[test]
    fn a_notice_loses_control_characters_and_is_cut_at_a_char_boundary() {
        let long = format!("a\x1b[31m\r\nb{}", "é".repeat(3000));
        let p = plan(Risk::Safe, vec![notify::spec(&long)]).unwrap();
        let Step::Notify(n) = &p.steps[0] else { panic!("{:?}", p.steps) };
        assert!(n.message.starts_with("a[31m\nb"), "{:?}", &n.message[..10]);
        assert!(n.message.len() <= 4000 + '…'.len_utf8() && n.message.ends_with('…'));
    }

    #[test]
    fn what_a_plan_changes_is_named_once() {
        let p = plan(
            Risk::Safe,
            vec![service::spec(ServiceOp::Stop, "kafka"), notify::spec("x"), service::spec(ServiceOp::Start, "kafka")],
        )
        .unwrap();
        assert_eq!(p.changes(), vec!["service kafka".to_string()]);
        assert_eq!(p.steps[0].limit_key(), p.steps[2].limit_key(), "a stop and a start share their limits");
    }
}
