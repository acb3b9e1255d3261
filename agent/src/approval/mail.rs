//! The approval request mail: what one approver reads, with the links of
//! their own. Queued and sent by [`crate::mail::Outbox`].

use super::{escape_html, Approval};
use crate::mail::OutgoingMail;
use crate::types::human_time;

/// The links one approver gets.
pub struct Links {
    pub approve: String,
    pub deny: String,
}

/// The request mail for one approver.
pub fn approval_mail(a: &Approval, approver: &str, links: &Links) -> OutgoingMail {
    let dry = if a.dry_run { "DRY RUN " } else { "" };
    let subject = format!(
        "[pipemedic {dry}] {host}: approve {runbook} — {summary}",
        dry = dry.trim(),
        host = a.host,
        runbook = a.runbook.join(", "),
        summary = a.summary
    )
    .replace("[pipemedic ]", "[pipemedic]");
    let needed = match a.approvals_needed() {
        1 => "one approver".to_string(),
        n => format!("{n} different approvers"),
    };
    let mut text = String::new();
    if a.dry_run {
        text.push_str(
            "*** DRY RUN: this agent changes nothing. Approving records your answer and applies nothing. ***\n\n",
        );
    }
    text.push_str(&format!(
        "pipemedic on {host} asks for approval.\n\n{summary}\n\nRunbook: {runbook}\nRisk: {risk} (needs {needed})\nExpires: {expires}\nApproval id: {id}\n",
        host = a.host,
        summary = a.summary,
        runbook = a.runbook.join(", "),
        risk = a.risk,
        expires = human_time(a.expires),
        id = a.id
    ));
    if a.risk >= crate::plan::Risk::DataLoss {
        text.push_str("\nTHIS PLAN LOSES DATA. Read the steps below before you answer.\n");
    }
    text.push_str("\nWhat it will do, step by step, as computed from the live state now:\n");
    for (i, s) in a.steps.iter().enumerate() {
        text.push_str(&format!(
            "\n{}. {} {}{}\n",
            i + 1,
            s.action,
            s.target,
            if s.noop { " (already done)" } else { "" }
        ));
        for line in s.preview.lines() {
            text.push_str(&format!("   {line}\n"));
        }
    }
    text.push_str(&format!(
        "\nWhat triggered it ({source}, {file} at byte {offset}):\n",
        source = a.event.source,
        file = a.event.file.display(),
        offset = a.event.offset
    ));
    for line in a.event.text.lines().take(40) {
        text.push_str(&format!("   {line}\n"));
    }
    text.push_str(&format!(
        "\nApprove: {}\nDeny:    {}\n\nEach link opens a page that shows this plan again; nothing happens until you press its button.\nBefore applying, the agent checks that nothing the plan depends on has changed; if something did, it asks again.\nOn the host: pipemedic approve {id} / pipemedic deny {id}\n",
        links.approve,
        links.deny,
        id = a.id
    ));
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\">{banner}<p>pipemedic on <b>{host}</b> asks for approval.</p>\
         <p style=\"font-size:1.1em\"><b>{summary}</b></p>\
         <table><tr><td>Runbook</td><td>{runbook}</td></tr><tr><td>Risk</td><td><b>{risk}</b> (needs {needed})</td></tr>\
         <tr><td>Expires</td><td>{expires}</td></tr><tr><td>Approval id</td><td><code>{id}</code></td></tr></table>{steps}\
         <h3>What triggered it</h3><pre>{record}</pre>\
         <p><a href=\"{approve}\">Approve…</a> &nbsp; <a href=\"{deny}\">Deny…</a></p>\
         <p><small>Each link opens a page that shows this plan again; nothing happens until you press its button.</small></p></body></html>",
        banner = if a.dry_run {
            "<p style=\"background:#fd0;padding:8px\"><b>DRY RUN</b>: this agent changes nothing; approving applies nothing.</p>"
        } else {
            ""
        },
        host = escape_html(&a.host),
        summary = escape_html(&a.summary),
        runbook = escape_html(&a.runbook.join(", ")),
        risk = a.risk,
        expires = escape_html(&human_time(a.expires)),
        id = a.id,
        steps = steps_html(a),
        record = escape_html(&a.event.text.lines().take(40).collect::<Vec<_>>().join("\n")),
        approve = escape_html(&links.approve),
        deny = escape_html(&links.deny),
    );
    OutgoingMail {
        id: crate::digest::random_hex(16),
        to: vec![approver.to_string()],
        subject,
        text,
        html: Some(html),
        about: format!("approval {}", a.id),
        attempts: 0,
        next_attempt: 0,
    }
}

/// The steps and their previews as HTML (mail and pages).
pub fn steps_html(a: &Approval) -> String {
    let mut out = String::from("<h3>Steps</h3><ol>");
    for s in &a.steps {
        out.push_str(&format!(
            "<li><b>{}</b> {}{}<pre>{}</pre></li>",
            escape_html(&s.action),
            escape_html(&s.target),
            if s.noop { " (already done)" } else { "" },
            escape_html(&s.preview)
        ));
    }
    out.push_str("</ol>");
    out
}
