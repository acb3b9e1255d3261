//! An approval's life cycle, on plain values: what a decision, the expiry,
//! a changed world and the run do to an [`Approval`]. Nothing here mails,
//! saves or applies; the flow does that around these transitions.
//!
//! ```text
//! pending ──approve (enough)──▶ approved ──run──▶ applied | failed
//!    │  └─approve (not enough yet): pending      └─world changed──▶ superseded
//!    ├──deny──▶ denied
//!    └──expiry──▶ expired
//! ```
//!
//! A dry-run approval stays `approved`: it is done, and nothing was applied.

use super::token::Signer;
use super::{check_link, Approval, ApprovalState, Decider, Decision, LinkRefused};
use crate::types::human_time;

/// A decision as it arrives from a link or the CLI: who, how, and the
/// fields its token signs.
#[derive(Debug, Clone)]
pub struct Ballot {
    pub decision: Decision,
    pub approver: String,
    pub expires: i64,
    pub token: String,
    /// `link` or `cli`.
    pub via: &'static str,
}

/// How an approved plan's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Applied,
    Failed,
    /// The agent is in dry-run: nothing was applied.
    DryRun,
    /// The agent stopped in the middle; found at the next start.
    Interrupted,
}

impl Approval {
    /// Counts `ballot` if its link is valid for this approval at `now` (ms),
    /// and `at` is when (RFC 3339). `Ok`: the reply for the person who
    /// decided. `Err`: why the link is refused; nothing changed.
    pub fn decide(&mut self, ballot: &Ballot, signer: &Signer, now: i64, at: String) -> Result<String, LinkRefused> {
        check_link(self, signer, ballot.decision, &ballot.approver, ballot.expires, &ballot.token, now)?;
        let decider = Decider { who: ballot.approver.clone(), at, via: ballot.via.to_string() };
        Ok(match ballot.decision {
            Decision::Deny => {
                self.state = ApprovalState::Denied;
                self.denied_by = Some(decider);
                self.outcome = Some(format!("denied by {}; nothing was applied", ballot.approver));
                "Denied. Nothing will be applied.".to_string()
            }
            Decision::Approve => {
                self.approved_by.push(decider);
                let (have, need) = (self.approved_by.len(), self.approvals_needed());
                if have < need {
                    format!("Recorded your approval. This plan needs {need} different approvers; {have} so far. Nothing is applied yet.")
                } else {
                    self.state = ApprovalState::Approved;
                    match self.dry_run {
                        true => "Approved. DRY RUN: this agent applies nothing.".to_string(),
                        false => "Approved. The agent re-checks the live state and applies the plan now; the result goes to the audit journal.".to_string(),
                    }
                }
            }
        })
    }

    /// A pending approval past its expiry at `now` (ms) expires. True if it did.
    pub fn expire(&mut self, now: i64) -> bool {
        if self.state != ApprovalState::Pending || now < self.expires {
            return false;
        }
        self.state = ApprovalState::Expired;
        self.outcome =
            Some(format!("expired at {} without enough approvals; nothing was applied", human_time(self.expires)));
        true
    }

    /// Approved, but what the plan depended on changed since the mail
    /// (`why`); `next` says what asking the rule again gave, and `by` is
    /// the approval that replaces this one, if any.
    pub fn supersede(&mut self, why: &str, next: &str, by: Option<String>) {
        debug_assert_eq!(self.state, ApprovalState::Approved, "only an approved plan is re-checked");
        self.state = ApprovalState::Superseded;
        self.superseded_by = by;
        self.outcome = Some(format!("not applied: {why}; {next}"));
    }

    /// The approved plan ran (or, in dry-run, did not); `outcome` says what
    /// happened, for a person.
    pub fn end(&mut self, ending: Ending, outcome: String) {
        debug_assert_eq!(self.state, ApprovalState::Approved, "only an approved plan runs");
        self.state = match ending {
            Ending::Applied => ApprovalState::Applied,
            Ending::Failed => ApprovalState::Failed,
            Ending::DryRun => ApprovalState::Approved,
            Ending::Interrupted => ApprovalState::Interrupted,
        };
        self.outcome = Some(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Risk;

    const NOW: i64 = 1_800_000_000_000;
    const EXPIRES: i64 = NOW + 3_600_000;

    fn signer() -> (tempfile::TempDir, Signer) {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::load_or_create(dir.path()).unwrap();
        (dir, signer)
    }

    fn approval(risk: Risk, dry_run: bool) -> Approval {
        let event = serde_json::json!({
            "signature": "s", "source": "kafka_server", "file": "/var/log/kafka/server.log", "captures": {},
            "text": "line", "offset": 0, "inode": 1, "at": NOW, "truncated": false
        });
        Approval {
            id: "0123456789abcdef0123456789abcdef".into(),
            state: ApprovalState::Pending,
            created: "2027-01-15T08:00:00Z".into(),
            expires: EXPIRES,
            host: "kafka-1".into(),
            rule: "k1_unknown_host".into(),
            runbook: vec!["K1".into()],
            summary: "map a name".into(),
            risk,
            steps: Vec::new(),
            plan_hash: "hash-as-mailed".into(),
            event: serde_json::from_value(event).unwrap(),
            dry_run,
            approvers_asked: vec!["ann@example.com".into(), "bob@example.com".into(), "cy@example.com".into()],
            approved_by: Vec::new(),
            denied_by: None,
            outcome: None,
            superseded_by: None,
        }
    }

    /// The ballot a mailed link carries: signed for this approval as mailed.
    fn ballot(signer: &Signer, a: &Approval, decision: Decision, approver: &str) -> Ballot {
        Ballot {
            decision,
            approver: approver.into(),
            expires: a.expires,
            token: signer.sign(&a.id, &a.plan_hash, decision, a.expires, approver),
            via: "link",
        }
    }

    fn decide(a: &mut Approval, signer: &Signer, decision: Decision, approver: &str) -> Result<String, LinkRefused> {
        let b = ballot(signer, a, decision, approver);
        a.decide(&b, signer, NOW, "2027-01-15T08:01:00Z".into())
    }

    #[test]
    fn one_approval_approves_a_dangerous_plan() {
        let (_dir, s) = signer();
        let mut a = approval(Risk::Dangerous, false);
        let reply = decide(&mut a, &s, Decision::Approve, "ann@example.com").unwrap();
        assert!(reply.starts_with("Approved. The agent re-checks"), "{reply}");
        assert_eq!(a.state, ApprovalState::Approved);
        assert_eq!(a.approved_by[0].who, "ann@example.com");
        assert_eq!(a.approved_by[0].via, "link");
    }

    #[test]
    fn a_data_loss_plan_needs_two_different_approvers() {
        let (_dir, s) = signer();
        let mut a = approval(Risk::DataLoss, false);
        let reply = decide(&mut a, &s, Decision::Approve, "ann@example.com").unwrap();
        assert!(reply.contains("needs 2 different approvers; 1 so far"), "{reply}");
        assert_eq!(a.state, ApprovalState::Pending);
        let again = decide(&mut a, &s, Decision::Approve, "ann@example.com").unwrap_err();
        assert_eq!(again, LinkRefused::AlreadyApproved);
        assert!(again.to_string().contains("needs a second, different approver"), "{again}");
        assert_eq!(a.approved_by.len(), 1, "a refused ballot changes nothing");
        decide(&mut a, &s, Decision::Approve, "bob@example.com").unwrap();
        assert_eq!(a.state, ApprovalState::Approved);
    }

    #[test]
    fn a_denial_ends_it_and_every_later_link_is_refused() {
        let (_dir, s) = signer();
        let mut a = approval(Risk::DataLoss, false);
        decide(&mut a, &s, Decision::Approve, "ann@example.com").unwrap();
        assert_eq!(decide(&mut a, &s, Decision::Deny, "bob@example.com").unwrap(), "Denied. Nothing will be applied.");
        assert_eq!(a.state, ApprovalState::Denied);
        assert_eq!(a.denied_by.as_ref().unwrap().who, "bob@example.com");
        let late = decide(&mut a, &s, Decision::Approve, "cy@example.com").unwrap_err();
        assert_eq!(late, LinkRefused::AlreadyDecided(ApprovalState::Denied));
        assert!(late.to_string().contains("already decided: it is denied"), "{late}");
        assert_eq!(a.state, ApprovalState::Denied);
    }

    #[test]
    fn expiry_ends_a_pending_approval_and_only_that() {
        let (_dir, s) = signer();
        let mut a = approval(Risk::Dangerous, false);
        assert!(!a.expire(EXPIRES - 1), "not before its time");
        let b = ballot(&s, &a, Decision::Approve, "ann@example.com");
        let late = a.decide(&b, &s, EXPIRES, "later".into()).unwrap_err();
        assert_eq!(late, LinkRefused::Expired(EXPIRES));
        assert!(a.expire(EXPIRES));
        assert_eq!(a.state, ApprovalState::Expired);
        assert!(a.outcome.as_deref().unwrap().contains("nothing was applied"));
        assert!(!a.expire(EXPIRES + 1), "once");

        let mut approved = approval(Risk::Dangerous, false);
        decide(&mut approved, &s, Decision::Approve, "ann@example.com").unwrap();
        assert!(!approved.expire(EXPIRES + 1), "an approved plan does not expire");
        assert_eq!(approved.state, ApprovalState::Approved);
    }

    #[test]
    fn a_link_for_an_older_plan_or_altered_fields_is_refused() {
        let (_dir, s) = signer();
        let mut a = approval(Risk::Dangerous, false);
        // Signed for the plan as it was before it was asked again.
        let old = Ballot {
            token: s.sign(&a.id, "hash-of-an-older-plan", Decision::Approve, a.expires, "ann@example.com"),
            ..ballot(&s, &a, Decision::Approve, "ann@example.com")
        };
        let altered_expiry = Ballot { expires: a.expires + 1, ..ballot(&s, &a, Decision::Approve, "ann@example.com") };
        let turned = Ballot { decision: Decision::Approve, ..ballot(&s, &a, Decision::Deny, "ann@example.com") };
        for b in [old, altered_expiry, turned] {
            assert_eq!(a.decide(&b, &s, NOW, "now".into()).unwrap_err(), LinkRefused::Forged);
        }
        assert_eq!(a.state, ApprovalState::Pending);
        assert!(a.approved_by.is_empty());
    }

    #[test]
    fn only_the_approvers_asked_or_a_local_root_user_decide() {
        let (_dir, s) = signer();
        let mut a = approval(Risk::Dangerous, false);
        let why = decide(&mut a, &s, Decision::Approve, "mallory@example.com").unwrap_err();
        assert_eq!(why, LinkRefused::NotAnApprover);
        let cli = Ballot { via: "cli", ..ballot(&s, &a, Decision::Approve, "local:root") };
        a.decide(&cli, &s, NOW, "now".into()).unwrap();
        assert_eq!(a.state, ApprovalState::Approved);
        assert_eq!(a.approved_by[0].via, "cli");
    }

    #[test]
    fn an_approved_plan_is_superseded_applied_or_failed() {
        let (_dir, s) = signer();
        let approved = || {
            let mut a = approval(Risk::Dangerous, false);
            decide(&mut a, &s, Decision::Approve, "ann@example.com").unwrap();
            a
        };
        let mut a = approved();
        a.supersede("step 1 changed since the mail", "asked again as approval ff", Some("ff".into()));
        assert_eq!(a.state, ApprovalState::Superseded);
        assert_eq!(a.superseded_by.as_deref(), Some("ff"));
        assert_eq!(
            a.outcome.as_deref(),
            Some("not applied: step 1 changed since the mail; asked again as approval ff")
        );

        let mut a = approved();
        a.end(Ending::Applied, "approved by ann@example.com; applied and verified".into());
        assert_eq!(a.state, ApprovalState::Applied);
        let mut a = approved();
        a.end(Ending::Failed, "approved by ann@example.com; step 1 failed".into());
        assert_eq!(a.state, ApprovalState::Failed);
    }

    #[test]
    fn a_dry_run_approval_says_so_and_stays_approved() {
        let (_dir, s) = signer();
        let mut a = approval(Risk::Dangerous, true);
        let reply = decide(&mut a, &s, Decision::Approve, "ann@example.com").unwrap();
        assert_eq!(reply, "Approved. DRY RUN: this agent applies nothing.");
        a.end(Ending::DryRun, "approved by ann@example.com; dry-run: nothing was changed".into());
        assert_eq!(a.state, ApprovalState::Approved);
    }
}
