//! `pipemedic approvals`, `approve`, `deny`: the pending approvals and a
//! person's answer, through the local approval endpoint.

use super::*;

pub(super) fn approvals(path: &Path, all: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let list: Vec<_> = ApprovalStore::read_all(&config.state_dir)
        .into_iter()
        .filter(|a| all || a.state == ApprovalState::Pending)
        .collect();
    if list.is_empty() {
        println!("no {}approvals", if all { "" } else { "pending " });
    }
    // Summaries and outcomes carry log text: one line each, escaped, so the
    // listing can neither drive the terminal nor forge a line of its own.
    let line = |s: &str| crate::types::one_line(s, 400);
    for a in list {
        let approved: Vec<&str> = a.approved_by.iter().map(|d| d.who.as_str()).collect();
        println!(
            "{id}  {state:<10} {risk:<9} {runbook:<8} expires {expires}{dry}\n    {summary}\n    asked: {asked}; approved by: {approved}{outcome}",
            id = a.id,
            state = format!("{:?}", a.state).to_lowercase(),
            risk = a.risk.to_string(),
            runbook = line(&a.runbook.join(",")),
            expires = human_time(a.expires),
            dry = if a.dry_run { "  DRY RUN" } else { "" },
            summary = line(&a.summary),
            asked = line(&a.approvers_asked.join(", ")),
            approved = if approved.is_empty() { "nobody".to_string() } else { line(&approved.join(", ")) },
            outcome = a.outcome.map(|o| format!("\n    {}", line(&o))).unwrap_or_default(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Decides as the local root user: reading the 0600 approval key proves it.
/// The decision goes through the running agent, like a link's, so the same
/// checks, re-check and audit apply.
pub(super) fn decide(path: &Path, id: &str, decision: Decision) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let approval =
        config.approval.as_ref().ok_or_else(|| anyhow::anyhow!("{}: no [approval] section", path.display()))?;
    let a = ApprovalStore::read_one(&config.state_dir, id)?
        .ok_or_else(|| anyhow::anyhow!("no approval {id} in {}", config.state_dir.display()))?;
    let signer = Signer::load(&Signer::key_path(&config.state_dir))
        .map_err(|e| anyhow::anyhow!("{e} (approving on the host needs the root user)"))?;
    let user = std::env::var("SUDO_USER").map(|u| format!("root (sudo by {u})")).unwrap_or_else(|_| "root".into());
    let approver = format!("local:{user}@{}", config.host_name());
    let token = signer.sign(&a.id, &a.plan_hash, decision, a.expires, &approver);
    let exp = a.expires.to_string();
    let fields = [
        ("decision", decision.as_str()),
        ("approver", approver.as_str()),
        ("exp", exp.as_str()),
        ("token", token.as_str()),
    ];
    // The listener first (it answers at once); when it is full or down, the
    // state directory, which only root can write.
    let why =
        match crate::approval::web::request(approval.listen, "POST", &format!("/approvals/{}", a.id), Some(&fields)) {
            Ok((status @ (200 | 403 | 404 | 400), body)) => {
                println!("{}", strip_tags(&body).trim());
                return Ok(if status == 200 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
            Ok((0, _)) => "it closed the connection without an answer (all its connections are taken?)".to_string(),
            Ok((status, body)) => format!("it answered {status}: {}", strip_tags(&body).trim()),
            Err(e) => e.to_string(),
        };
    eprintln!(
        "the agent's listener at {} did not take the decision: {why}; leaving it in its state directory",
        approval.listen
    );
    let ballot = crate::approval::inbox::LocalBallot {
        id: a.id.clone(),
        decision: decision.as_str().to_string(),
        approver,
        exp: a.expires,
        token,
    };
    let path = crate::approval::inbox::submit(&config.state_dir, &ballot)?;
    match crate::approval::inbox::wait_answer(&path, std::time::Duration::from_secs(30)) {
        Some(answer) => {
            println!("{}", answer.message);
            Ok(if answer.accepted { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        None => anyhow::bail!(
            "the agent answered neither at {} ({why}) nor through {} within 30 s: is it running (systemctl status pipemedic)? Nothing was decided.",
            approval.listen,
            crate::approval::inbox::dir(&config.state_dir).display()
        ),
    }
}

/// The text of one of the agent's small pages.
pub(super) fn strip_tags(html: &str) -> String {
    let body = html.split_once("</h2>").map_or(html, |(_, b)| b);
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
