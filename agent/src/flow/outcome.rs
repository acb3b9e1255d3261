//! What the flow says about each event: the decision, its steps, the audit
//! entry (`Outcome`), and the counters.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::plan::{PlanRefused, Risk};

/// Which clock events are timed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Wall-clock time: the daemon acts now.
    Live,
    /// The timestamp at the start of the record (falling back to the last
    /// one seen): replaying last week's log counts windows as they were.
    LogTime,
}

/// What was decided about one event and one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Every step applied and verified.
    Applied,
    /// Policy would have applied it; dry-run changed nothing.
    DryRun,
    /// The rule looked and returned no plan (e.g. below its threshold).
    NoPlan,
    /// A known finding that needs no action (runbook C3).
    Benign,
    /// Every step was already in the wanted state.
    NoChange,
    /// A step's input failed validation (hostile capture, unknown service).
    Refused,
    /// Riskier than `safe`; waits for a person.
    NeedsApproval,
    RateLimited,
    CircuitOpen,
    /// A preview, apply or verify failed; the reason says which and why.
    Failed,
    /// Mailed to the approvers; waits for them.
    AwaitingApproval,
    /// Another host's agent asked for approval of a plan on the same shared
    /// state (canal's cursors in HA); this one asks no one.
    HandledElsewhere,
    /// The rule itself failed at run time.
    RuleError,
    /// The record was written by a service while the agent itself was
    /// stopping or starting it, and the plan would act on that service again:
    /// the agent does not react to its own actions.
    OwnAction,
}

/// One step's part in an outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub action: &'static str,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    pub noop: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The step changed the world and that change is still there (not
    /// rolled back): a plan that failed with none of these changed nothing.
    #[serde(skip)]
    pub changed: bool,
}

/// The audit entry for one rule's reaction to one event.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub time: String,
    pub kind: &'static str,
    pub rule: String,
    pub runbook: Vec<String>,
    pub source: String,
    pub file: String,
    pub offset: u64,
    /// The file's inode: with `offset`, which record this decision was
    /// about, so that a restart after a crash does not decide it again.
    #[serde(skip_serializing_if = "is_zero")]
    pub inode: u64,
    pub signature: String,
    pub captures: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    pub decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub steps: Vec<StepOutcome>,
    pub dry_run: bool,
    /// The approval this decision belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// The plan's id in the journal's `plan-started` and `plan-step`
    /// entries, when it was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// In a `decision-summary`: how many more times it was decided so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeated: Option<u64>,
    /// The record was cut at the size or line limit: the rule saw only its
    /// beginning.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The start of the record, for a person reading the journal.
    pub record: String,
    /// What the rule asked for, when it returned a plan: what its test
    /// cases compare. Not journaled (the steps and risk above are).
    #[serde(skip)]
    pub asked: Option<Asked>,
}

/// A plan as the rule returned it, before the policy: the terms a rule's
/// test cases are written in.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    /// Each step's one-line form (`restart kafka`).
    pub steps: Vec<String>,
    /// The risk the rule gave the plan.
    pub risk: Risk,
    pub benign: bool,
    /// Why validation refused the plan, if it did.
    pub refused: Option<PlanRefused>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Counters for `status` and metrics.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub records: u64,
    pub events: u64,
    pub rule_errors: u64,
    pub decisions: BTreeMap<String, u64>,
}
