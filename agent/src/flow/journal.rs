//! What makes a plan whole or nothing, and a crash harmless: the rollback
//! of a failed plan's earlier steps, and the plan journal (`plan-started`,
//! `plan-step`) that a restarted agent reads to report, never re-run, a plan
//! it was in the middle of.

use super::*;

impl Flow {
    /// Puts back what the plan's steps up to the failed one changed, newest
    /// first, so that a plan is applied whole or not at all where that can
    /// be done: file edits are restored from what they replaced. Steps that
    /// cannot be undone (a restart, a mail) are named. Each step's result
    /// says what happened to it; the return value sums it up.
    pub(super) fn roll_back(&self, steps: &[Step], previews: &[Preview], out: &mut Outcome) -> String {
        let mut restored = Vec::new();
        let mut kept = Vec::new();
        for (i, (step, preview)) in steps.iter().zip(previews).enumerate().rev() {
            let Some(undo) = self.executor.undo(preview) else {
                if !preview.noop && i + 1 < steps.len() && !matches!(preview.guard, Guard::FileEdit { .. }) {
                    kept.push(format!("step {} ({} {}) cannot be undone", i + 1, step.family(), step.target()));
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

impl Flow {
    /// Finds the plans the journal's `tail` says were started and never
    /// finished (the agent died in the middle) and reports each: what its
    /// steps did, as far as the journal knows, and that nothing will be
    /// re-run — a person checks the state and decides. Returns how many.
    pub fn report_interrupted_plans(&self, tail: &[u8]) -> usize {
        let mut started: Vec<PlanEntry> = Vec::new();
        let mut finished = std::collections::HashSet::new();
        let mut steps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in Entry::read(tail) {
            match entry {
                Entry::PlanStarted(p) => started.push(p),
                Entry::PlanStep(p) => steps.entry(p.plan).or_default().push(format!(
                    "step {} ({}): {}",
                    p.step.map_or("?".into(), |s| s.to_string()),
                    p.target.as_deref().unwrap_or("?"),
                    p.result.as_deref().unwrap_or("?")
                )),
                Entry::Decision(Outcome { plan: Some(id), .. }) => {
                    finished.insert(id);
                }
                Entry::PlanInterrupted(p) if !p.plan.is_empty() => {
                    finished.insert(p.plan);
                }
                _ => {}
            }
        }
        let mut n = 0;
        for p in started.iter().filter(|p| !finished.contains(&p.plan)) {
            n += 1;
            let id = &p.plan;
            let done = steps.remove(id).unwrap_or_default();
            let detail = format!(
                "plan {id} of rule {} ({}) was interrupted: the agent stopped before it finished. Planned: {}. Done, as far as the journal knows: {}. Nothing is re-run: check the state of what it touched.",
                p.rule,
                p.summary.as_deref().unwrap_or(""),
                p.steps.join("; "),
                if done.is_empty() { "no step finished".to_string() } else { done.join("; ") },
            );
            let entry = PlanEntry { summary: Some(detail.clone()), ..PlanEntry::new(id, &p.rule) };
            self.audit.emit(&Entry::PlanInterrupted(entry));
            if let Some(outbox) = &self.outbox {
                let subject = format!("[pipemedic] {}: a fix was interrupted", self.host);
                outbox.notify(&format!("interrupted:{id}"), &subject, &detail);
            }
        }
        n
    }
}
