//! Plans: what a rule wants done, as an ordered list of typed steps.
//!
//! A rule hands back [`StepSpec`]s — raw strings straight from log captures.
//! [`StepSpec::validate`] turns each into a typed [`Step`] or refuses it;
//! after that no action ever sees an unchecked string.

pub mod policy;

use serde::{Deserialize, Serialize};

pub use crate::actions::step::{Refusal, Risk, ServiceOp, StepSpec};
use crate::actions::Sections;
pub use crate::actions::Step;

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
    pub fn validate(self, rule: &str, runbook: &[String], sections: &Sections) -> Result<Plan, PlanRefused> {
        let mut steps = Vec::with_capacity(self.steps.len());
        for (i, spec) in self.steps.iter().enumerate() {
            let refused = |why| PlanRefused { step: i + 1, kind: spec.kind, why };
            steps.push(spec.validate(sections).map_err(refused)?);
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
    use super::*;
    use crate::actions::{canal, hosts, kafka, kafka_cluster, notify, properties, service};

    /// A host with one service and one properties file, and nothing else.
    fn sections() -> Sections {
        let kafka = toml::from_str("start=[\"a\"]\nstop=[\"b\"]\nprocess={pid_file=\"p\"}").unwrap();
        let mut s = Sections::default();
        s.service.services.insert("kafka".into(), kafka);
        s.properties_files.insert("consumer".into(), "consumer.properties".into());
        s
    }

    fn plan(risk: Risk, steps: Vec<StepSpec>) -> Result<Plan, PlanRefused> {
        let spec = PlanSpec { summary: "s".into(), risk, benign: false, steps };
        spec.validate("r", &["K1".into()], &sections())
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
