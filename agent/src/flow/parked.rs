//! A plan whose work another party is doing now (another agent's K4
//! sequence holds the cluster lock) waits here instead of on the worker:
//! decided once as `waiting`, looked at again on the worker's tick, run
//! (previews recomputed) once the other party is done, failed once it
//! waited its longest. The agent stopping ends it as not run: a restart
//! never runs a plan it did not start.

use super::*;
use crate::actions::Busy;

/// How often a waiting plan is looked at again.
const LOOK_AGAIN_MS: i64 = 5_000;

pub(super) struct Parked {
    since: i64,
    until: i64,
    next: i64,
    why: String,
    plan: Plan,
    event: Event,
}

impl Flow {
    /// Parks `plan`: nothing was changed, and the worker goes on.
    pub(super) fn park(&mut self, plan: &Plan, event: &Event, busy: Busy, out: &mut Outcome) {
        let now = chrono::Utc::now().timestamp_millis();
        out.decision = Decision::Waiting;
        out.reason = Some(format!(
            "waiting, nothing changed: {}; looked at again every {} s for at most {} s while the agent goes on with everything else",
            busy.why,
            LOOK_AGAIN_MS / 1000,
            busy.at_most.as_secs()
        ));
        self.parked.push(Parked {
            since: now,
            until: now.saturating_add(busy.at_most.as_millis() as i64),
            next: now + LOOK_AGAIN_MS,
            why: busy.why,
            plan: plan.clone(),
            event: event.clone(),
        });
    }

    /// Looks again at the parked plans that are due (wall clock `now`).
    pub(super) fn run_parked(&mut self, now: i64) {
        let (due, later): (Vec<Parked>, Vec<Parked>) =
            std::mem::take(&mut self.parked).into_iter().partition(|p| p.next <= now);
        self.parked = later;
        for mut p in due {
            let waited = (now - p.since) / 1000;
            if now >= p.until {
                let why = format!("waited {waited} s, the longest allowed: {}; nothing was started", p.why);
                self.end_parked(&p, why);
                continue;
            }
            if let Some(busy) = self.executor.busy(&p.plan.steps) {
                p.why = busy.why;
                p.next = now + LOOK_AGAIN_MS;
                self.parked.push(p);
                continue;
            }
            let mut event = p.event.clone();
            event.at = now;
            let mut out = self.outcome_for(&p.plan.rule, &p.plan.runbook, &event);
            out.summary = Some(p.plan.summary.clone());
            out.risk = Some(p.plan.risk);
            self.decide_and_apply_once(&p.plan, &event, &mut out);
            if out.decision == Decision::Waiting {
                // Busy again between the look and the run: still the same wait.
                if let Some(again) = self.parked.pop() {
                    self.parked.push(Parked { since: p.since, until: p.until, ..again });
                }
                continue;
            }
            let note = format!("after waiting {waited} s for another party ({})", p.why);
            out.reason = Some(match out.reason.take() {
                Some(why) => format!("{note}: {why}"),
                None => note,
            });
            self.record_outcome(&out);
        }
    }

    /// The agent stops: every parked plan ends as not run.
    pub fn end_parked_plans(&mut self) {
        for p in std::mem::take(&mut self.parked) {
            let why = format!(
                "the agent stopped while this plan waited ({}); nothing was started, and the next start does not run it",
                p.why
            );
            self.end_parked(&p, why);
        }
    }

    fn end_parked(&mut self, p: &Parked, why: String) {
        let mut out = self.outcome_for(&p.plan.rule, &p.plan.runbook, &p.event);
        out.summary = Some(p.plan.summary.clone());
        out.risk = Some(p.plan.risk);
        out.decision = Decision::Failed;
        out.reason = Some(why);
        self.record_outcome(&out);
    }
}
