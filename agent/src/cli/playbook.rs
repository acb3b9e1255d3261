//! `pipemedic playbook list|run`.

use super::approvals::strip_tags;
use super::*;

pub(super) fn playbook_list(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let (mut rules, _) = RuleSet::load(&config);
    let errors = rules.load_playbooks(&config);
    for e in &errors {
        eprintln!("{e}");
    }
    for pb in rules.playbooks.values() {
        let params: Vec<String> = pb.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{} [{}] {}\n    {}\n    params: {}",
            pb.name,
            pb.runbook.join(","),
            pb.path.display(),
            pb.description,
            params.join(" ")
        );
    }
    Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Signs the request with the approval key (reading it proves the local
/// root user) and hands it to the running agent.
pub(super) fn playbook_run(path: &Path, name: &str, raw: &[String]) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let mut params = std::collections::BTreeMap::new();
    for p in raw {
        let (k, v) = p.split_once('=').ok_or_else(|| anyhow::anyhow!("--param {p:?}: expected key=value"))?;
        params.insert(k.to_string(), v.to_string());
    }
    let (ok, said) = ask_agent(path, &config, name, &params)?;
    println!("{said}");
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Asks the running agent to run playbook `name`; whether it took it, and what it said.
pub(super) fn ask_agent(
    path: &Path,
    config: &Config,
    name: &str,
    params: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<(bool, String)> {
    let approval =
        config.approval.as_ref().ok_or_else(|| anyhow::anyhow!("{}: no [approval] section", path.display()))?;
    let params = serde_json::to_string(params)?;
    let signer = Signer::load(&Signer::key_path(&config.state_dir))
        .map_err(|e| anyhow::anyhow!("{e} (running a playbook needs the root user)"))?;
    let user = std::env::var("SUDO_USER").map(|u| format!("root (sudo by {u})")).unwrap_or_else(|_| "root".into());
    let requester = format!("local:{user}@{}", config.host_name());
    let expires = (chrono::Utc::now().timestamp_millis() + 60_000).to_string();
    let id = crate::approval::playbook_token_id(name);
    let token = signer.sign(&id, &params, Decision::Approve, expires.parse()?, &requester);
    let fields = [
        ("params", params.as_str()),
        ("requester", requester.as_str()),
        ("exp", expires.as_str()),
        ("token", token.as_str()),
    ];
    let path = format!("/playbooks/{}", crate::approval::url_encode(name));
    let (status, body) = crate::approval::web::request(approval.listen, "POST", &path, Some(&fields))
        .map_err(|e| anyhow::anyhow!("the agent does not answer at {}: {e}; is it running?", approval.listen))?;
    Ok((status == 200, strip_tags(&body).trim().to_string()))
}
