//! The approval life cycle of a dangerous plan: request (mail with signed
//! links, canal's claim in HA), decisions from the endpoint, apply when
//! approved, supersede, expiry.

use super::*;
use crate::approval::mail::{approval_mail, Links};
use crate::approval::{
    link, Approval, ApprovalState, DecideReply, DecideRequest, Decision as Answer, Ending, PlannedStep,
};
use crate::audit::{ApprovalEntry, Entry};
use crate::cluster::canal::{CanalClusterError, Claimed, CLAIM};
use crate::digest::random_hex;
use crate::types::human_time;

/// What asking for and acting on approvals needs.
pub struct Approvals {
    pub config: ApprovalConfig,
    pub store: ApprovalStore,
    pub signer: Signer,
}

/// An approval's life-cycle entry in the audit journal.
fn approval_entry(a: &Approval, who: Option<&str>, via: Option<&str>, reason: Option<&str>) -> ApprovalEntry {
    ApprovalEntry {
        time: crate::types::now_rfc3339(),
        approval: a.id.clone(),
        rule: Some(a.rule.clone()),
        state: Some(a.state),
        who: who.map(Into::into),
        via: via.map(Into::into),
        reason: reason.map(Into::into),
        ..Default::default()
    }
}

impl Flow {
    /// Stores the plan as an approval and mails every approver their links.
    pub(super) fn request_approval(&mut self, plan: &Plan, previews: &[Preview], event: &Event, out: &mut Outcome) {
        let Some(ap) = &mut self.approvals else { return };
        let steps: Vec<PlannedStep> = plan
            .steps
            .iter()
            .zip(previews)
            .map(|(s, p)| PlannedStep {
                step: s.clone(),
                action: s.family().to_string(),
                target: s.target(),
                preview: p.text.clone(),
                noop: p.noop,
                depends_on: p.depends_on(),
            })
            .collect();
        let plan_hash = Approval::compute_plan_hash(&plan.rule, plan.risk, &steps, self.dry_run);
        if let Some(a) = ap.store.pending_for(&plan.rule, &plan_hash) {
            out.decision = Decision::AwaitingApproval;
            out.approval = Some(a.id.clone());
            out.reason =
                Some(format!("already asked: approval {} waits for an answer until {}", a.id, human_time(a.expires)));
            return;
        }
        let needed = if plan.risk >= Risk::DataLoss { 2 } else { 1 };
        if ap.config.approvers.len() < needed {
            out.decision = Decision::Refused;
            out.reason = Some(format!(
                "a {} plan needs {needed} different approvers; [approval] lists {}",
                plan.risk,
                ap.config.approvers.len()
            ));
            return;
        }
        let approval = Approval {
            id: random_hex(16),
            state: ApprovalState::Pending,
            created: crate::types::now_rfc3339(),
            expires: chrono::Utc::now().timestamp_millis() + ap.config.expiry_secs as i64 * 1000,
            host: self.host.clone(),
            rule: plan.rule.clone(),
            runbook: plan.runbook.clone(),
            summary: plan.summary.clone(),
            risk: plan.risk,
            steps,
            plan_hash,
            event: event.clone(),
            dry_run: self.dry_run,
            approvers_asked: ap.config.approvers.clone(),
            approved_by: Vec::new(),
            denied_by: None,
            outcome: None,
            superseded_by: None,
        };
        let mut replaced = None;
        if self.claims_canal(plan.steps.iter()) {
            match self.claim_canal(&approval) {
                Ok(Claimed::Mine { replaced: r }) => replaced = r,
                Ok(Claimed::Elsewhere(other)) => {
                    out.decision = Decision::HandledElsewhere;
                    out.reason = Some(format!(
                        "the agent on {} asked for approval {} of a plan on canal's cursors (until {}); not asking again here",
                        other.host,
                        other.approval,
                        human_time(other.expires)
                    ));
                    return;
                }
                Err(e) => {
                    out.decision = Decision::Failed;
                    out.reason = Some(format!(
                        "could not claim canal's cursors for this approval, nothing was asked or changed: {e}"
                    ));
                    return;
                }
            }
        }
        let Some(ap) = &mut self.approvals else { return };
        if let Err(e) = ap.store.save(approval.clone()) {
            self.release_canal_claim(&approval);
            out.decision = Decision::Failed;
            out.reason = Some(format!("could not store the approval request, nothing was asked or changed: {e}"));
            return;
        }
        let Some(ap) = &self.approvals else { return };
        let outbox = self.outbox.as_ref().expect("approvals need mail");
        let mut problems = Vec::new();
        for approver in &approval.approvers_asked {
            let links = Links {
                approve: link(&ap.config.public_url, &approval, &ap.signer, approver, Answer::Approve),
                deny: link(&ap.config.public_url, &approval, &ap.signer, approver, Answer::Deny),
            };
            if let Err(e) = outbox.enqueue(&approval_mail(&approval, approver, &links)) {
                problems.push(format!("mail to {approver} not queued: {e}"));
            }
        }
        self.audit.emit(&Entry::ApprovalRequested(approval_entry(&approval, None, None, None)));
        out.decision = Decision::AwaitingApproval;
        out.approval = Some(approval.id.clone());
        out.reason = Some(format!(
            "approval {} mailed to {}; expires {}{}",
            approval.id,
            approval.approvers_asked.join(", "),
            human_time(approval.expires),
            if problems.is_empty() { String::new() } else { format!(" ({})", problems.join("; ")) }
        ));
        if let Some(r) = replaced {
            tracing::warn!(approval = %approval.id, "{CLAIM}: {r} was not obeyed and was replaced");
            out.reason.get_or_insert_default().push_str(&format!("; {r} on canal's cursors was not obeyed"));
        }
    }

    /// A plan that writes canal's cursors on a host whose canal runs in HA:
    /// the agents ask for one approval between them (`cluster::canal`).
    /// Dry-run writes nothing to ZooKeeper, a claim included.
    fn claims_canal<'a>(&self, mut steps: impl Iterator<Item = &'a Step>) -> bool {
        !self.dry_run && self.config.canal.as_ref().is_some_and(|c| c.ha) && steps.any(Step::writes_canal_cursors)
    }

    /// Takes the claim for `a`, or answers which agent holds it.
    fn claim_canal(&self, a: &Approval) -> Result<Claimed, CanalClusterError> {
        let zk = self.config.zookeeper.as_ref().ok_or(CanalClusterError::NoZooKeeper)?;
        let mine = crate::cluster::canal::Claim { host: self.host.clone(), approval: a.id.clone(), expires: a.expires };
        let max_ttl_secs = self.approvals.as_ref().map_or(0, |ap| ap.config.expiry_secs);
        crate::cluster::canal::claim(
            &crate::clients::zk::Session::connect(zk)?,
            &mine,
            chrono::Utc::now().timestamp_millis(),
            max_ttl_secs as i64 * 1000,
        )
    }

    /// `a` was answered, expired or superseded: its claim goes.
    fn release_canal_claim(&self, a: &Approval) {
        if a.dry_run || !self.claims_canal(a.steps.iter().map(|s| &s.step)) {
            return;
        }
        let Some(zk) = self.config.zookeeper.as_ref() else { return };
        let released = crate::clients::zk::Session::connect(zk).and_then(|s| crate::cluster::canal::release(&s, &a.id));
        if let Err(e) = released {
            tracing::error!(approval = %a.id, "releasing the claim on canal's cursors: {e}; it lapses at the approval's expiry");
        }
    }

    /// Takes a decision from a link or the CLI. Replies as soon as it is
    /// recorded; an approved plan is then re-checked and applied.
    pub fn decide(&mut self, req: DecideRequest) {
        let now = chrono::Utc::now().timestamp_millis();
        let Some(ap) = &mut self.approvals else {
            let _ = req.reply.send(DecideReply::Refused("approvals are not configured on this host".into()));
            return;
        };
        let Some(mut a) = ap.store.get(&req.id).cloned() else {
            let _ = req.reply.send(DecideReply::Refused("no such approval on this host".into()));
            return;
        };
        let b = &req.ballot;
        let reply = match a.decide(b, &ap.signer, now, crate::types::now_rfc3339()) {
            Ok(reply) => reply,
            Err(why) => {
                let why = why.to_string();
                self.audit.emit(&Entry::ApprovalRefused(approval_entry(
                    &a,
                    Some(&b.approver),
                    Some(b.via),
                    Some(&why),
                )));
                let _ = req.reply.send(DecideReply::Refused(why));
                self.expire_approvals(now);
                return;
            }
        };
        if let Err(e) = ap.store.save(a.clone()) {
            let _ = req
                .reply
                .send(DecideReply::Refused(format!("the decision could not be stored, nothing was changed: {e}")));
            return;
        }
        let decided = approval_entry(&a, Some(&b.approver), Some(b.via), Some(b.decision.as_str()));
        self.audit.emit(&Entry::ApprovalDecided(decided));
        let _ = req.reply.send(DecideReply::Accepted(reply));
        match a.state {
            ApprovalState::Approved => self.apply_approved(a),
            ApprovalState::Denied => self.release_canal_claim(&a),
            _ => {}
        }
    }

    /// Re-checks an approved plan against live state and applies it if
    /// nothing it depends on changed; otherwise supersedes it and asks again.
    fn apply_approved(&mut self, mut a: Approval) {
        // Everything logged while the approved plan runs names the approval.
        let _span = tracing::info_span!("approval", approval = %a.id, rule = %a.rule).entered();
        let plan = Plan {
            rule: a.rule.clone(),
            runbook: a.runbook.clone(),
            summary: a.summary.clone(),
            risk: a.risk,
            benign: false,
            steps: a.steps.iter().map(|s| s.step.clone()).collect(),
        };
        let mut out = self.outcome_for(&a.rule, &a.runbook, &a.event);
        out.summary = Some(a.summary.clone());
        out.risk = Some(a.risk);
        out.decision = Decision::Applied;
        out.steps = a
            .steps
            .iter()
            .map(|s| StepOutcome {
                action: s.step.family().into(),
                target: s.target.clone(),
                preview: Some(s.preview.clone()),
                noop: s.noop,
                result: None,
                changed: false,
            })
            .collect();
        out.dry_run = a.dry_run;
        out.approval = Some(a.id.clone());
        let approvers: Vec<&str> = a.approved_by.iter().map(|d| d.who.as_str()).collect();
        let approvers = approvers.join(", ");
        if a.dry_run {
            out.decision = Decision::DryRun;
            out.reason = Some(format!("approved by {approvers}; dry-run: nothing was changed"));
            a.end(Ending::DryRun, out.reason.clone().unwrap_or_default());
            self.finish_approval(a, out);
            return;
        }
        let steps: Vec<Step> = a.steps.iter().map(|s| s.step.clone()).collect();
        let (previews, failed) = self.executor.preview_plan(&steps);
        let changed = a
            .steps
            .iter()
            .zip(&previews)
            .enumerate()
            .find_map(|(i, (s, p))| {
                let text_changed = p.text != s.preview && s.step.preview_binds();
                (text_changed || p.depends_on() != s.depends_on).then(|| {
                    format!("step {} changed since the mail: it was\n{}\nand is now\n{}", i + 1, s.preview, p.text)
                })
            })
            .or_else(|| failed.map(|(i, e)| format!("step {} can no longer be previewed: {e}", i + 1)));
        if let Some(why) = changed {
            // Ask the rule again, as if the event happened now.
            let mut event = a.event.clone();
            event.at = chrono::Utc::now().timestamp_millis();
            let again = self.rules.rules.iter().position(|r| r.name == a.rule).map(|i| self.react(i, &event));
            let asked = again.iter().flatten().find(|o| o.decision == Decision::AwaitingApproval);
            let next = match (&again, asked) {
                (None, _) => format!("rule {} is no longer loaded; not asking again", a.rule),
                (Some(_), Some(o)) => format!("asked again as approval {}", o.approval.as_deref().unwrap_or("?")),
                (Some(outcomes), None) => {
                    let said: Vec<String> = outcomes
                        .iter()
                        .map(|o| {
                            format!(
                                "{:?}{}",
                                o.decision,
                                o.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                            )
                        })
                        .collect();
                    format!("asked the rule again: {}", said.join("; "))
                }
            };
            a.supersede(&why, &next, asked.and_then(|o| o.approval.clone()));
            let reason = a.outcome.clone();
            let _ = self.approvals.as_mut().expect("approvals").store.save(a.clone());
            self.release_canal_claim(&a);
            self.audit.emit(&Entry::ApprovalSuperseded(approval_entry(&a, None, None, reason.as_deref())));
            for o in again.unwrap_or_default() {
                self.record_outcome(&o);
            }
            return;
        }
        self.execute(&plan, &previews, chrono::Utc::now().timestamp_millis(), &mut out);
        let ending = if out.decision == Decision::Applied { Ending::Applied } else { Ending::Failed };
        out.reason = Some(match &out.reason {
            Some(r) => format!("approved by {approvers}; {r}"),
            None => format!("approved by {approvers}; applied and verified"),
        });
        a.end(ending, out.reason.clone().unwrap_or_default());
        self.finish_approval(a, out);
    }

    fn finish_approval(&mut self, a: Approval, out: Outcome) {
        self.release_canal_claim(&a);
        if let Err(e) = self.approvals.as_mut().expect("approvals").store.save(a) {
            tracing::error!("{e}");
        }
        self.record_outcome(&out);
    }

    /// Ends the approvals whose plan was being applied when the agent
    /// stopped (a kill, a crash): each is marked interrupted, what it held
    /// (canal's cursor claim) is released, and nothing is re-run; the
    /// interrupted plan itself is reported from the journal. Returns how many.
    pub fn end_interrupted_approvals(&mut self) -> usize {
        let Some(ap) = &self.approvals else { return 0 };
        let ids: Vec<String> =
            ap.store.all().filter(|a| a.state == ApprovalState::Approved && !a.dry_run).map(|a| a.id.clone()).collect();
        for id in &ids {
            let Some(ap) = &mut self.approvals else { return 0 };
            let Some(mut a) = ap.store.get(id).cloned() else { continue };
            a.end(
                Ending::Interrupted,
                "interrupted: the agent stopped while applying it; nothing is re-run (see the plan-interrupted entry for what was done); check the state, and approve a new request if the problem is still there".into(),
            );
            if let Err(e) = ap.store.save(a.clone()) {
                tracing::error!("{e}");
            }
            self.release_canal_claim(&a);
            self.audit.emit(&Entry::ApprovalInterrupted(approval_entry(&a, None, None, a.outcome.as_deref())));
        }
        ids.len()
    }

    /// Marks pending approvals past their expiry as expired.
    pub fn expire_approvals(&mut self, now: i64) {
        let Some(ap) = &self.approvals else { return };
        for id in ap.store.expired(now) {
            let Some(ap) = &mut self.approvals else { return };
            let Some(mut a) = ap.store.get(&id).cloned() else { continue };
            if !a.expire(now) {
                continue;
            }
            if let Err(e) = ap.store.save(a.clone()) {
                tracing::error!("{e}");
            }
            self.release_canal_claim(&a);
            self.audit.emit(&Entry::ApprovalExpired(approval_entry(&a, None, None, a.outcome.as_deref())));
        }
    }
}
