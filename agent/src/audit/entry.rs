//! The journal's one schema: every line the agent writes is an [`Entry`],
//! and everything that reads the journal back (`status`, the digest,
//! `report`, crash recovery at start) reads it as one. The `kind` field
//! names the variant; the JSON of each kind is what earlier versions wrote.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::mail::MailEntry;
use crate::plan::{PlanRefused, Risk};

/// One line of the audit journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Entry {
    /// A rule's reaction to one event, and what was done about it.
    Decision(Outcome),
    /// The same decision repeated (`repeated` more times), summed up.
    DecisionSummary(Outcome),
    /// A plan's intent, before its first step.
    PlanStarted(PlanEntry),
    /// One step's result.
    PlanStep(PlanEntry),
    /// A plan the agent stopped in the middle of, found at the next start.
    PlanInterrupted(PlanEntry),
    ApprovalRequested(ApprovalEntry),
    ApprovalDecided(ApprovalEntry),
    /// A decision that was not counted: a forged or stale link, an approver
    /// not asked, a plan already decided.
    ApprovalRefused(ApprovalEntry),
    ApprovalSuperseded(ApprovalEntry),
    ApprovalExpired(ApprovalEntry),
    /// An approved plan the agent stopped in the middle of, ended at the
    /// next start (its claims released, nothing re-run).
    ApprovalInterrupted(ApprovalEntry),
    MailQueued(MailEntry),
    MailSent(MailEntry),
    MailFailed(MailEntry),
    /// The agent started following its sources.
    Started(Note),
    /// The agent stopped, checkpoints written.
    Stopped(Note),
    RuleLoadError(Note),
    /// A source lost lines (rotated away unread, truncated).
    LinesMissed(Note),
    /// Records read again after a restart that were decided before it.
    NotDecidedAgain(Note),
    /// The agent's own state was unreadable at start (a crash, a full disk,
    /// a hand edit) and was rebuilt from what else it knows.
    StateRecovered(Note),
    PlaybookRefused(Note),
    /// This host's canal held stopped, or given back, for another agent's
    /// cursor write.
    CanalHold(Note),
    /// This host's broker's turn in a leader-first restart (runbook K4).
    KafkaTurn(Note),
    /// A kind this version does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

impl Entry {
    /// The entries in journal text, one per line; a line that is not an
    /// entry (cut short by a full disk, say) is passed over.
    pub fn read(text: &[u8]) -> impl Iterator<Item = Entry> + '_ {
        text.split(|b| *b == b'\n').filter_map(|line| serde_json::from_slice(line).ok())
    }
}

impl Entry {
    /// Logs the entry: every journal entry is also one line of the agent's
    /// log, at the level a person should see it.
    pub fn log(&self) {
        use tracing::{debug, error, info, warn};
        match self {
            Entry::Decision(o) => log_outcome(o),
            Entry::DecisionSummary(o) => {
                info!(rule = %o.rule, count = o.repeated.unwrap_or(0), "{}", o.reason.as_deref().unwrap_or(""))
            }
            Entry::PlanStarted(p) => {
                debug!(plan = %p.plan, rule = %p.rule, "plan started: {}", p.steps.join("; "))
            }
            Entry::PlanStep(p) => debug!(
                plan = %p.plan,
                "step {} ({}): {}",
                p.step.unwrap_or(0),
                p.target.as_deref().unwrap_or(""),
                p.result.as_deref().unwrap_or("")
            ),
            Entry::PlanInterrupted(p) => error!(plan = %p.plan, "{}", p.summary.as_deref().unwrap_or("")),
            Entry::ApprovalRequested(a) => info!(approval = %a.approval, "approval requested"),
            Entry::ApprovalDecided(a) => info!(
                approval = %a.approval,
                who = a.who.as_deref().unwrap_or(""),
                "approval decided: {}",
                a.reason.as_deref().unwrap_or("")
            ),
            Entry::ApprovalRefused(a) => warn!(
                approval = %a.approval,
                approver = a.who.as_deref().or(a.approver.as_deref()).unwrap_or(""),
                "approval link refused: {}",
                a.reason.as_deref().unwrap_or("")
            ),
            Entry::ApprovalSuperseded(a) => {
                warn!(approval = %a.approval, "approved plan superseded: {}", a.reason.as_deref().unwrap_or(""))
            }
            Entry::ApprovalExpired(a) => warn!(approval = %a.approval, "approval expired without an answer"),
            Entry::ApprovalInterrupted(a) => {
                warn!(approval = %a.approval, "approved plan interrupted: {}", a.reason.as_deref().unwrap_or(""))
            }
            Entry::MailQueued(m) => debug!(mail = %m.mail, about = %m.about, "mail queued: {}", m.subject),
            Entry::MailSent(m) => debug!(mail = %m.mail, about = %m.about, "mail sent: {}", m.subject),
            Entry::MailFailed(m) => warn!(
                mail = %m.mail,
                about = %m.about,
                "sending mail failed, retrying in {} s: {}",
                m.retry_in_secs.unwrap_or(0),
                m.error.as_deref().unwrap_or("")
            ),
            Entry::Started(n) => info!(dry_run = n.dry_run, "{}", n.detail),
            Entry::Stopped(n) => info!("stopped; {}", n.detail),
            Entry::RuleLoadError(n) => error!("rule not loaded: {}", n.detail),
            Entry::LinesMissed(n) => warn!("{}", n.detail),
            Entry::NotDecidedAgain(n) => info!("{}", n.detail),
            Entry::StateRecovered(n) => warn!("{}", n.detail),
            Entry::PlaybookRefused(n) => warn!("playbook refused: {}", n.detail),
            Entry::CanalHold(n) => info!("canal member: {}", n.detail),
            Entry::KafkaTurn(n) => info!("{}", n.detail),
            Entry::Unknown => {}
        }
    }
}

fn log_outcome(o: &Outcome) {
    if o.decision == Decision::NoPlan {
        tracing::debug!(rule = %o.rule, source = %o.source, offset = o.offset, "rule saw no need for a plan");
        return;
    }
    // Every decision is emitted, replays of a week's flood included: the
    // previews are only formatted when the line will be shown.
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let steps: Vec<String> = o
        .steps
        .iter()
        .map(|s| match &s.preview {
            Some(p) => format!("\n    {} {}:\n      {}", s.action, s.target, p.replace('\n', "\n      ")),
            None => format!("\n    {} {}", s.action, s.target),
        })
        .collect();
    tracing::info!(
        rule = %o.rule,
        runbook = %o.runbook.join(","),
        source = %o.source,
        offset = o.offset,
        decision = ?o.decision,
        "{}{}{}",
        o.summary.as_deref().unwrap_or("no plan"),
        o.reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default(),
        steps.concat()
    );
}

/// A plan's progress: `plan-started`, `plan-step`, `plan-interrupted`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlanEntry {
    pub time: String,
    pub plan: String,
    pub rule: String,
    /// In `plan-started`: the record the plan answers, so that a restart
    /// after a crash in the middle does not decide it (and run it) again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// In `plan-started`: each step, `family target`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// In `plan-step`: which step (from 1), on what, and what it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

impl PlanEntry {
    /// An entry about `plan` of `rule`, written now, with no details yet.
    pub fn new(plan: &str, rule: &str) -> PlanEntry {
        PlanEntry { time: crate::types::now_rfc3339(), plan: plan.into(), rule: rule.into(), ..Default::default() }
    }
}

/// A step in an approval's life.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApprovalEntry {
    pub time: String,
    pub approval: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ApprovalState>,
    /// Who decided, as the link's signature proves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
    /// A refused link's unproven claims: the approver and decision it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// `mail`, `web`, `cli`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An event in the agent's own life (`started`, `lines-missed`, …).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Note {
    pub time: String,
    pub dry_run: bool,
    pub detail: String,
}

impl Note {
    /// A note written now.
    pub fn now(dry_run: bool, detail: impl Into<String>) -> Note {
        Note { time: crate::types::now_rfc3339(), dry_run, detail: detail.into() }
    }
}

/// Where an approval stands (the approvals' own vocabulary, kept here
/// because the journal records it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalState {
    Pending,
    /// Enough approvers said yes; being applied (or, in dry-run, done).
    Approved,
    Denied,
    Expired,
    Applied,
    Failed,
    /// The world changed between the mail and the approval; not applied.
    Superseded,
    /// The agent stopped (killed, crashed) while applying it; found at the
    /// next start and never re-run.
    Interrupted,
}

/// What was decided about one event and one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Another party is doing the plan's work now (another agent's K4
    /// sequence); the plan waits off the worker and is decided again.
    Waiting,
    /// The rule itself failed at run time.
    RuleError,
    /// The record was written by a service while the agent itself was
    /// stopping or starting it, and the plan would act on that service again:
    /// the agent does not react to its own actions.
    OwnAction,
}

impl Decision {
    /// The decision as the journal and the metrics name it (`dry-run`):
    /// serde's name, so that the two never disagree.
    pub fn name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    }
}

/// One step's part in an outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepOutcome {
    /// The action family.
    pub action: Cow<'static, str>,
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

/// The audit entry for one rule's reaction to one event (a `decision`,
/// or a `decision-summary` of repeats).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub time: String,
    pub rule: String,
    pub runbook: Vec<String>,
    pub source: String,
    pub file: String,
    pub offset: u64,
    /// The file's inode: with `offset`, which record this decision was
    /// about, so that a restart after a crash does not decide it again.
    #[serde(default, skip_serializing_if = "is_zero")]
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
    #[serde(default)]
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
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as the journal holds them, one of each shape (written by the
    /// version before this schema, so old journals read back).
    const JOURNAL: &str = r#"{"time":"2026-11-25T10:00:01.000+00:00","kind":"started","dry_run":false,"detail":"following kafka_server"}
{"time":"2026-11-25T10:00:02.000+00:00","kind":"plan-started","plan":"ab12","rule":"m2_kafka_shutdown","source":"kafka_server","inode":7,"offset":120,"summary":"restart kafka","steps":["service restart kafka"]}
{"time":"2026-11-25T10:00:03.000+00:00","kind":"plan-step","plan":"ab12","rule":"m2_kafka_shutdown","step":1,"target":"service restart kafka","result":"restarted"}
{"time":"2026-11-25T10:00:04.000+00:00","kind":"decision","rule":"m2_kafka_shutdown","runbook":["M2"],"source":"kafka_server","file":"/var/log/kafka/server.log","offset":120,"inode":7,"signature":"kafka_fatal","captures":{},"summary":"restart kafka","risk":"safe","decision":"applied","steps":[{"action":"service","target":"restart kafka","noop":false,"result":"restarted"}],"dry_run":false,"plan":"ab12","record":"FATAL …"}
{"time":"2026-11-25T10:00:05.000+00:00","kind":"approval-refused","approval":"cd34","approver":"mallory@example.com","decision":"approve","reason":"forged","via":"web"}
{"time":"2026-11-25T10:00:06.000+00:00","kind":"mail-failed","mail":"m1","about":"cd34","to":["ops@example.com"],"subject":"s","error":"refused","retry_in_secs":30}
{"time":"2026-11-25T10:00:07.000+00:00","kind":"something-newer","x":1}
{"time":"2026-11-25T10:00:08.000+00:00","kind":"decision","rule":"cut sho"#;

    #[test]
    fn old_journal_lines_read_back_typed_and_the_rest_is_passed_over() {
        let entries: Vec<Entry> = Entry::read(JOURNAL.as_bytes()).collect();
        assert_eq!(entries.len(), 7, "the cut line is passed over: {entries:#?}");
        assert!(matches!(&entries[0], Entry::Started(n) if n.detail == "following kafka_server"));
        assert!(matches!(&entries[1], Entry::PlanStarted(p) if p.inode == Some(7) && p.steps.len() == 1));
        assert!(matches!(&entries[2], Entry::PlanStep(p) if p.step == Some(1)));
        let Entry::Decision(o) = &entries[3] else { panic!("{:?}", entries[3]) };
        assert_eq!(
            (o.decision, o.plan.as_deref(), o.steps[0].action.as_ref()),
            (Decision::Applied, Some("ab12"), "service")
        );
        assert!(
            matches!(&entries[4], Entry::ApprovalRefused(a) if a.approver.as_deref() == Some("mallory@example.com"))
        );
        assert!(matches!(&entries[5], Entry::MailFailed(m) if m.retry_in_secs == Some(30)));
        assert!(matches!(entries[6], Entry::Unknown));
    }

    #[test]
    fn entries_are_written_in_the_form_they_are_read() {
        for line in JOURNAL.lines().take(6) {
            let entry: Entry = serde_json::from_str(line).unwrap();
            let written: serde_json::Value = serde_json::to_value(&entry).unwrap();
            let was: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(written, was, "{line}");
        }
    }
}
