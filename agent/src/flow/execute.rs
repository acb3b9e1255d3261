//! Applying a plan the policy let through: each step with its guard, the
//! plan journal, verification, rollback on failure, a person told when a
//! fix did not hold.

use super::*;
use crate::digest::random_hex;

impl Flow {
    /// Applies and verifies each step in order; stops at the first failure.
    pub(super) fn execute(&mut self, plan: &Plan, previews: &[Preview], now: i64, out: &mut Outcome) {
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
                Step::Service(s) => Some(s.service.to_string()),
                _ => None,
            })
            .collect();
        let sizes_before = (!services.is_empty()).then(|| self.source_sizes());
        // The intent goes to the journal before the first step, each step's
        // result after it: a crash in between is found and reported at the
        // next start (never re-run blindly).
        let id = random_hex(8);
        self.audit.emit(&Entry::PlanStarted(PlanEntry {
            source: Some(out.source.clone()),
            inode: Some(out.inode),
            offset: Some(out.offset),
            summary: Some(plan.summary.clone()),
            steps: plan.steps.iter().map(|s| format!("{} {}", s.family(), s.target())).collect(),
            ..PlanEntry::new(&id, &plan.rule)
        }));
        // Everything logged while the plan runs names it.
        let _span = tracing::info_span!("plan", plan = %id).entered();
        out.plan = Some(id);
        self.apply_steps(plan, previews, out);
        if let Some(before) = sizes_before {
            self.remember_own_window(before, services, plan);
        }
        if out.decision != Decision::Applied {
            return;
        }
        // Canal's positions were rewritten: every source must beat again.
        let canal = plan.steps.iter().any(Step::writes_canal_cursors);
        if let (true, Some(watch)) = (canal, &mut self.heartbeat) {
            watch.expect_back(now, &format!("{} ({})", plan.summary, plan.runbook.join(", ")));
        }
    }

    /// The circuit is open: stop repeating the fix and tell a person.
    pub(super) fn escalate(&mut self, plan: &Plan, why: String, out: &mut Outcome) {
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
        let approval = out.approval.as_ref().map(|a| format!(" (approval {a})")).unwrap_or_default();
        let part_of = format!("plan {} of rule {}{approval}", out.plan.as_deref().unwrap_or("?"), plan.rule);
        for (i, (step, preview)) in plan.steps.iter().zip(previews).enumerate() {
            // A preview that only reports the moment (a service's) decides
            // again when its turn comes: see `Action::preview_binds`.
            if preview.noop && step.preview_binds() {
                out.steps[i].result = Some("no change needed".into());
                continue;
            }
            let result = self.executor.apply(step, preview, &part_of).and_then(|applied| {
                self.executor.verify(step, preview).map(|verified| format!("{applied}; verified: {verified}"))
            });
            let said = match &result {
                Ok(r) => r.clone(),
                Err(e) => format!("failed: {e}"),
            };
            self.audit.emit(&Entry::PlanStep(PlanEntry {
                step: Some(i + 1),
                target: Some(format!("{} {}", step.family(), step.target())),
                result: Some(said),
                ..PlanEntry::new(out.plan.as_deref().unwrap_or(""), &plan.rule)
            }));
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
}
