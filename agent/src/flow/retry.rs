//! A fix that failed for a transient local reason (out of descriptors,
//! memory or space) and changed nothing is tried again, a few times.

use super::*;

/// When a fix that failed for a transient local reason is tried again (ms
/// after the failure); after the last, a person reads the failure.
const RETRY_AFTER_MS: [i64; 3] = [5_000, 30_000, 120_000];

/// A fix waiting to be tried again.
pub(super) struct Retry {
    pub(super) due: i64,
    pub(super) attempt: usize,
    pub(super) plan: Plan,
    pub(super) event: Event,
}

/// Whether a failure is the host's passing trouble rather than the fix's:
/// out of file descriptors, memory or space, or "try again".
fn transient(reason: &str) -> bool {
    // EAGAIN, ENOMEM, ENFILE, EMFILE, ENOSPC, EDQUOT as io::Error shows them.
    ["(os error 11)", "(os error 12)", "(os error 23)", "(os error 24)", "(os error 28)", "(os error 122)"]
        .iter()
        .any(|code| reason.contains(code))
}

impl Flow {
    /// Schedules a failed plan again if it failed transiently and changed
    /// nothing (a preview, the policy record or its first change failed);
    /// its policy record is taken back so the cooldown does not hold the
    /// retry.
    pub(super) fn retry_if_transient(&mut self, plan: &Plan, event: &Event, out: &mut Outcome, attempt: usize) {
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
    pub(super) fn run_retries(&mut self, now: i64) {
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
