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

/// A plan's intent (`plan-started`) and each step's result (`plan-step`) in
/// the journal, written as they happen.
#[derive(Serialize)]
pub(super) struct PlanJournal<'a> {
    pub(super) time: String,
    pub(super) kind: &'a str,
    pub(super) plan: &'a str,
    pub(super) rule: &'a str,
    /// In `plan-started`: the record the plan answers, so that a restart
    /// after a crash in the middle does not decide it (and run it) again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) inode: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) summary: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) steps: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) step: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) result: Option<&'a str>,
}

impl<'a> PlanJournal<'a> {
    /// An entry of `kind` about `plan`, written now, with no details yet.
    pub(super) fn new(kind: &'a str, plan: &'a str, rule: &'a str) -> Self {
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

impl Flow {
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
