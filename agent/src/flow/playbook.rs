//! Playbooks a person runs on the host (`pipemedic playbook run`): checked
//! like an approval link, then decided like a rule's plans.

use super::*;
use crate::approval::{playbook_token_id, DecideReply, Decision as Answer, PlaybookRequest};

impl Flow {
    /// Runs a playbook a person asked for on the host: checks the signed
    /// request, builds its plans and decides about each like a rule's (a
    /// risky one is mailed for approval). Replies with what was decided.
    pub fn run_playbook(&mut self, req: PlaybookRequest) {
        let now = chrono::Utc::now().timestamp_millis();
        let refuse = |why: String| {
            let _ = req.reply.send(DecideReply::Refused(why));
        };
        let Some(ap) = &self.approvals else {
            return refuse("playbooks are run through the approval endpoint; this host has no [approval]".into());
        };
        let id = playbook_token_id(&req.name);
        if now >= req.expires
            || !req.requester.starts_with("local:")
            || !ap.signer.verify(&id, &req.params, Answer::Approve, req.expires, &req.requester, &req.token)
        {
            let detail = format!("{} asked by {}: invalid or expired signature", req.name, req.requester);
            self.audit.emit(&Entry::PlaybookRefused(Note::now(self.dry_run, detail)));
            return refuse(
                "the request's signature is not valid (or it expired); run it again with pipemedic playbook run".into(),
            );
        }
        let Some(pb) = self.rules.playbooks.get(&req.name) else {
            let known: Vec<&String> = self.rules.playbooks.keys().collect();
            return refuse(format!("no playbook {:?} is loaded (loaded: {known:?})", req.name));
        };
        let params: BTreeMap<String, String> = match serde_json::from_str(&req.params) {
            Ok(p) => p,
            Err(e) => return refuse(format!("parameters are not a JSON map of strings: {e}")),
        };
        let (name, runbook) = (pb.name.clone(), pb.runbook.clone());
        let specs = match self.rules.run_playbook(pb, &params) {
            Ok(specs) => specs,
            Err(e) => return refuse(e.to_string()),
        };
        let text = format!(
            "pipemedic playbook run {name} {} (asked by {})",
            params.iter().map(|(k, v)| format!("--param {k}={v}")).collect::<Vec<_>>().join(" "),
            req.requester
        );
        let event = Event::synthetic(&format!("playbook:{name}"), "operator", params, text.clone(), now);
        let template = self.outcome_for(&format!("playbook:{name}"), &runbook, &event);
        let mut said = Vec::new();
        for spec in specs {
            let outcome = self.decide_spec(spec, &format!("playbook:{name}"), &runbook, &event, template.clone());
            said.push(format!(
                "{}: {:?}{}",
                outcome.summary.as_deref().unwrap_or(&name),
                outcome.decision,
                outcome.reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default()
            ));
            self.record_outcome(&outcome);
        }
        let _ = req.reply.send(DecideReply::Accepted(if said.is_empty() {
            format!("{name}: no plan")
        } else {
            said.join("\n")
        }));
    }
}
