//! `pipemedic canal status`: who serves each destination, and its cursor.

use super::*;

pub(super) fn canal_status(path: &Path) -> anyhow::Result<ExitCode> {
    use crate::clients::canal::read_destinations;
    use crate::clients::mysql::list_binlogs;
    let config = Config::load(path)?;
    let canal = config.canal.as_ref().ok_or_else(|| anyhow::anyhow!("{}: no [canal] section", path.display()))?;
    let zk_config =
        config.zookeeper.as_ref().ok_or_else(|| anyhow::anyhow!("{}: no [zookeeper] section", path.display()))?;
    let zk = crate::clients::zk::Session::connect(zk_config).map_err(|e| anyhow::anyhow!(e))?;
    for d in read_destinations(&zk, canal).map_err(|e| anyhow::anyhow!(e))? {
        println!("destination {}", d.name);
        println!("  running:  {}", d.running.as_deref().unwrap_or("nobody (no canal server holds it)"));
        println!("  cluster:  {}", if d.cluster.is_empty() { "-".to_string() } else { d.cluster.join(", ") });
        let mysql = &canal.destinations[&d.name].mysql;
        let logs = list_binlogs(mysql, &config.mysql[mysql]);
        match &d.cursor {
            None => println!("  cursor:   none at {}", d.cursor_path),
            Some((Err(e), node)) => {
                println!("  cursor:   {} (version {}) is unreadable: {e}", d.cursor_path, node.version)
            }
            Some((Ok(c), node)) => {
                let at = if c.journal.is_empty() {
                    "timestamp only".to_string()
                } else {
                    format!("{}:{}", c.journal, c.position)
                };
                println!(
                    "  cursor:   {at} at {} from {}:{} (version {})",
                    human_time(c.timestamp),
                    c.address,
                    c.port,
                    node.version
                );
                if let Ok(logs) = &logs {
                    if let Some(newest) = logs.last() {
                        let files_behind = logs.iter().filter(|b| b.name > c.journal).count();
                        let behind = match (c.journal == newest.name, c.journal.is_empty()) {
                            (true, _) => format!(
                                "in the newest binlog, {} bytes before its end",
                                newest.size.saturating_sub(c.position.max(0) as u64)
                            ),
                            (_, true) => "timestamp only: canal searches by time on its next start".to_string(),
                            _ => format!("{files_behind} binlog file(s) behind the newest"),
                        };
                        println!("  behind:   {behind}");
                    }
                    if logs.first().is_some_and(|b| !c.journal.is_empty() && b.name > c.journal) {
                        println!("  WARNING:  the cursor's binlog {} is purged on the source (runbook N4)", c.journal);
                    }
                }
            }
        }
        match logs {
            Ok(logs) => {
                if let (Some(first), Some(last)) = (logs.first(), logs.last()) {
                    println!(
                        "  source:   [mysql.{mysql}] {} binlog(s): {} (created {}) … {} (created {}, {} bytes)",
                        logs.len(),
                        first.name,
                        human_time(first.created_ms),
                        last.name,
                        human_time(last.created_ms),
                        last.size
                    );
                }
            }
            Err(e) => println!("  source:   {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
