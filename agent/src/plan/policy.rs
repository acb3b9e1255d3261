//! Policy: whether a plan may run now.
//!
//! In order: a benign finding needs nothing; a plan whose steps are all
//! no-ops has nothing to do (nobody is asked to approve nothing); a plan
//! riskier than `safe` waits for approval; an open circuit (the same thing —
//! a service, a file — changed again and again, by whatever rule and for
//! whatever log line) escalates instead of looping; a step whose
//! action and target ran too recently (cooldown) or too often (hourly rate)
//! holds the whole plan back — plans are never half-applied.
//!
//! History is kept per action+target and per thing changed, in milliseconds of the
//! event clock, and persisted in the state directory so a restarted agent
//! remembers what it just did. Dry-run keeps its own, unpersisted history,
//! so switching dry-run off never inherits phantom cooldowns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::{Plan, Risk, Step};
use crate::state::{read_json, write_json_atomic, StateError};

/// The policy's answer for one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run it (or, in dry-run, report that it would run).
    Proceed,
    /// Deliberately no action.
    Benign,
    /// Every step is already in the wanted state.
    NothingToDo,
    /// Needs a person; the reason says why and what to do.
    NeedsApproval(String),
    RateLimited(String),
    CircuitOpen(String),
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct History {
    /// Times (ms) each action+target was applied.
    steps: BTreeMap<String, Vec<i64>>,
    /// Times (ms) each thing (a service, a file; `Step::changes`) was changed.
    #[serde(default)]
    changes: BTreeMap<String, Vec<i64>>,
}

/// The policy's part of `[limits]`: how often the agent may act on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The same action on the same target is not repeated within this time.
    pub cooldown_secs: u64,
    /// At most this many applications of one action on one target per hour.
    pub max_per_hour: u32,
    /// The circuit opens after this many changes of the same thing within
    /// `breaker_window_secs`.
    pub breaker_threshold: u32,
    pub breaker_window_secs: u64,
}

/// Rate limits, cooldowns and the circuit breaker. A handle: the worker and
/// the member threads that start services for other agents (K4's turn)
/// share one history, so every start counts wherever it came from.
#[derive(Clone)]
pub struct Policy {
    limits: Limits,
    shared: Arc<Mutex<Shared>>,
}

struct Shared {
    history: History,
    /// Where the history is persisted; `None` in dry-run and replay.
    file: Option<PathBuf>,
}

const HOUR_MS: i64 = 3_600_000;

impl Policy {
    /// A policy that persists its history under `state_dir`.
    pub fn persistent(limits: Limits, state_dir: &Path) -> Result<Policy, StateError> {
        let file = state_dir.join("policy.json");
        let history = read_json(&file)?.unwrap_or_default();
        Ok(Policy { limits, shared: Arc::new(Mutex::new(Shared { history, file: Some(file) })) })
    }

    /// A policy that forgets when the process ends (dry-run, replay, tests).
    pub fn in_memory(limits: Limits) -> Policy {
        Policy { limits, shared: Arc::new(Mutex::new(Shared { history: History::default(), file: None })) }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides about `plan`, given which steps are no-ops according to their
    /// previews, at event time `now` (ms).
    pub fn decide(&self, plan: &Plan, noop: &[bool], now: i64) -> Verdict {
        if plan.benign {
            return Verdict::Benign;
        }
        let active: Vec<_> = plan.steps.iter().zip(noop).filter(|(_, n)| !**n).map(|(s, _)| s).collect();
        if active.is_empty() {
            return Verdict::NothingToDo;
        }
        if plan.risk > Risk::Safe {
            return Verdict::NeedsApproval(format!("plan risk is {}: it needs approval by a person", plan.risk));
        }
        if let Some(open) = self.circuit(plan, now) {
            return open;
        }
        match active.iter().find_map(|step| self.limited(step, now)) {
            Some(why) => Verdict::RateLimited(why),
            None => Verdict::Proceed,
        }
    }

    /// Whether the plan is held back whatever its previews say: the circuit
    /// is open for something it changes, or every one of its steps is in its
    /// cooldown or over its hourly limit (then nothing would run, whichever
    /// steps turned out to be no-ops). Lets a flood of repeats skip computing
    /// previews from live state for each line.
    pub fn holds_back_whole(&self, plan: &Plan, now: i64) -> Option<Verdict> {
        if plan.benign || plan.risk > Risk::Safe || plan.steps.is_empty() {
            return None;
        }
        if let Some(open) = self.circuit(plan, now) {
            return Some(open);
        }
        let every: Option<Vec<String>> = plan.steps.iter().map(|s| self.limited(s, now)).collect();
        every.and_then(|why| why.into_iter().next()).map(Verdict::RateLimited)
    }

    /// The open circuit of something the plan changes, if one is open.
    fn circuit(&self, plan: &Plan, now: i64) -> Option<Verdict> {
        let window = self.limits.breaker_window_secs as i64 * 1000;
        let shared = self.shared();
        plan.changes().into_iter().find_map(|thing| {
            let recent = count_since(shared.history.changes.get(&thing), now - window);
            (recent >= self.limits.breaker_threshold as usize).then(|| {
                Verdict::CircuitOpen(format!(
                    "circuit open for {thing}: it was changed {recent} times in the last {} min and the failures keep coming back; not changing it again, a person must look",
                    self.limits.breaker_window_secs / 60
                ))
            })
        })
    }

    /// Why a step may not run now (cooldown or hourly limit), if it may not.
    fn limited(&self, step: &Step, now: i64) -> Option<String> {
        let key = step.limit_key();
        let shared = self.shared();
        let times = shared.history.steps.get(&key);
        let cooldown = self.limits.cooldown_secs as i64 * 1000;
        if let Some(last) = times.and_then(|t| t.iter().max()).filter(|t| now - **t < cooldown) {
            return Some(format!(
                "{key} ran {} s ago; cooldown is {} s",
                (now - last) / 1000,
                self.limits.cooldown_secs
            ));
        }
        let in_hour = count_since(times, now - HOUR_MS);
        (in_hour >= self.limits.max_per_hour as usize)
            .then(|| format!("{key} ran {in_hour} times in the last hour; the limit is {}", self.limits.max_per_hour))
    }

    /// Records that `plan` was applied (or, in dry-run, would have been) at `now`.
    pub fn record(&self, plan: &Plan, noop: &[bool], now: i64) -> Result<(), StateError> {
        let mut shared = self.shared();
        let shared = &mut *shared;
        let keep_from = now
            - (self.limits.breaker_window_secs as i64 * 1000).max(HOUR_MS).max(self.limits.cooldown_secs as i64 * 1000);
        for (step, _) in plan.steps.iter().zip(noop).filter(|(_, n)| !**n) {
            push_pruned(shared.history.steps.entry(step.limit_key()).or_default(), now, keep_from);
        }
        let active = Plan {
            steps: plan.steps.iter().zip(noop).filter(|(_, n)| !**n).map(|(s, _)| s.clone()).collect(),
            ..plan.clone()
        };
        for thing in active.changes() {
            push_pruned(shared.history.changes.entry(thing).or_default(), now, keep_from);
        }
        shared.history.steps.retain(|_, v| !v.is_empty());
        shared.history.changes.retain(|_, v| !v.is_empty());
        match &shared.file {
            Some(file) => write_json_atomic(file, &shared.history),
            None => Ok(()),
        }
    }

    /// Takes back what `record` noted for `plan` at `at`: the attempt
    /// changed nothing and will be tried again.
    pub fn forget(&self, plan: &Plan, at: i64) {
        let mut shared = self.shared();
        let shared = &mut *shared;
        let keys = plan
            .steps
            .iter()
            .map(Step::limit_key)
            .map(|k| (true, k))
            .chain(plan.changes().into_iter().map(|k| (false, k)));
        for (step, key) in keys {
            let times = if step { shared.history.steps.get_mut(&key) } else { shared.history.changes.get_mut(&key) };
            if let Some(times) = times {
                if let Some(i) = times.iter().rposition(|t| *t == at) {
                    times.remove(i);
                }
            }
        }
        if let Some(file) = &shared.file {
            if let Err(e) = write_json_atomic(file, &shared.history) {
                tracing::warn!("{e}");
            }
        }
    }

    /// The things whose circuit is open at `now`.
    pub fn open_circuits(&self, now: i64) -> Vec<String> {
        let window = self.limits.breaker_window_secs as i64 * 1000;
        self.shared()
            .history
            .changes
            .iter()
            .filter(|(_, t)| count_since(Some(t), now - window) >= self.limits.breaker_threshold as usize)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

fn count_since(times: Option<&Vec<i64>>, since: i64) -> usize {
    times.map_or(0, |t| t.iter().filter(|t| **t > since).count())
}

fn push_pruned(times: &mut Vec<i64>, now: i64, keep_from: i64) {
    times.retain(|t| *t > keep_from);
    times.push(now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ServiceOp, Step};
    use crate::types::Name;

    fn restart_plan() -> Plan {
        Plan {
            rule: "m2".into(),
            runbook: vec!["M2".into()],
            summary: "restart".into(),
            risk: Risk::Safe,
            benign: false,
            steps: vec![Step::Service(crate::actions::service::ServiceStep {
                op: ServiceOp::Restart,
                service: Name::parse("s", "kafka").unwrap(),
            })],
        }
    }

    const LIMITS: Limits =
        Limits { cooldown_secs: 600, max_per_hour: 3, breaker_threshold: 3, breaker_window_secs: 3600 };

    #[test]
    fn cooldown_then_rate_then_circuit() {
        let limits = Limits { cooldown_secs: 60, max_per_hour: 10, breaker_threshold: 3, breaker_window_secs: 3600 };
        let p = Policy::in_memory(limits);
        let plan = restart_plan();
        let min = 60_000;
        assert_eq!(p.decide(&plan, &[false], 0), Verdict::Proceed);
        p.record(&plan, &[false], 0).unwrap();
        assert!(matches!(p.decide(&plan, &[false], 30_000), Verdict::RateLimited(_)));
        assert_eq!(p.decide(&plan, &[false], 2 * min), Verdict::Proceed);
        p.record(&plan, &[false], 2 * min).unwrap();
        p.record(&plan, &[false], 4 * min).unwrap();
        assert!(matches!(p.decide(&plan, &[false], 6 * min), Verdict::CircuitOpen(_)));
        assert_eq!(p.open_circuits(6 * min).len(), 1);
        assert_eq!(p.decide(&plan, &[false], 2 * 60 * min), Verdict::Proceed, "the circuit closes after its window");
    }

    #[test]
    fn the_circuit_counts_the_thing_changed_not_the_rule_or_the_line() {
        let limits = Limits { cooldown_secs: 0, max_per_hour: 100, breaker_threshold: 3, breaker_window_secs: 3600 };
        let p = Policy::in_memory(limits);
        let k1 = |host: &str| Plan {
            rule: "k1".into(),
            steps: vec![
                Step::Hosts(crate::actions::hosts::HostsEntry {
                    host: crate::types::HostName::parse(host).unwrap(),
                    ip: "10.0.0.1".parse().unwrap(),
                }),
                restart_plan().steps[0].clone(),
            ],
            ..restart_plan()
        };
        p.record(&k1("ip-10.0.0.1"), &[false, false], 0).unwrap();
        p.record(&k1("ip-10.0.0.2"), &[false, false], 1).unwrap();
        p.record(&restart_plan(), &[false], 2).unwrap();
        let v = p.decide(&k1("ip-10.0.0.3"), &[false, false], 3);
        assert!(matches!(&v, Verdict::CircuitOpen(why) if why.contains("service kafka")), "{v:?}");
        assert!(
            matches!(p.decide(&restart_plan(), &[false], 3), Verdict::CircuitOpen(_)),
            "M2 counts on the same broker"
        );
    }

    #[test]
    fn risky_and_noop_plans() {
        let p = Policy::in_memory(LIMITS);
        let mut plan = restart_plan();
        assert_eq!(p.decide(&plan, &[true], 0), Verdict::NothingToDo);
        plan.risk = Risk::Dangerous;
        assert!(matches!(p.decide(&plan, &[false], 0), Verdict::NeedsApproval(_)));
    }

    #[test]
    fn history_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let plan = restart_plan();
        Policy::persistent(LIMITS, dir.path()).unwrap().record(&plan, &[false], 1000).unwrap();
        let p = Policy::persistent(LIMITS, dir.path()).unwrap();
        assert!(matches!(p.decide(&plan, &[false], 2000), Verdict::RateLimited(_)));
    }
}
