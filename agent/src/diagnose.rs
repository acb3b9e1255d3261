//! `pipemedic diagnose`: the runbook's checks once, on demand, printed in
//! the runbook's order. Changes nothing.
//!
//! - M1–M4: the end of every watched log goes through the rules as a dry
//!   run without previews (as `replay` does): what the agent would decide,
//!   grouped by runbook item; heartbeats per source over the last hour the
//!   consumer log covers.
//! - Then what can be asked of live systems: the managed services'
//!   processes, the brokers registered in ZooKeeper, who serves each canal
//!   destination, Kafka's leaders (T1) and the consumer group's lag (T2).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::audit::Audit;
use crate::config::Config;
use crate::flow::{Clock, Decision, Flow, Outcome};
use crate::rules::RuleSet;
use crate::types::human_time;

/// The runbook's monitoring item for each of the standard source names.
const WATCHED: &[(&str, &str, &str)] = &[
    ("M1", "consumer_info", "consumer info log: heartbeats"),
    ("M1", "consumer_error", "consumer error log: consumption exceptions"),
    ("M2", "kafka_server", "Kafka server log"),
    ("M2", "kafka_controller", "Kafka controller log"),
    ("M3", "canal", "canal server log"),
    ("M3", "canal_instance", "canal instance log"),
    ("M4", "monitor", "canal client (monitor) log"),
];

/// One runbook item's findings.
#[derive(Default)]
struct Finding {
    count: usize,
    rules: BTreeMap<String, usize>,
    last: Option<Outcome>,
}

/// Runs the checks; `tail_bytes` of each log are read.
pub fn diagnose(config: &Config, tail_bytes: u64) -> anyhow::Result<String> {
    let mut config = config.clone();
    config.dry_run = true;
    let (rules, errors) = RuleSet::load(&config);
    let config = Arc::new(config);
    let mut flow = Flow::new(config.clone(), rules, Audit::discard(), Clock::LogTime, true)?.without_previews();
    let mut out = String::new();
    let now = chrono::Utc::now().timestamp_millis();
    let _ = writeln!(
        out,
        "pipemedic diagnose on {} at {} — the last {} MiB of each log, dry run: nothing is changed\n",
        config.host_name(),
        human_time(now),
        tail_bytes >> 20
    );
    for e in &errors {
        let _ = writeln!(out, "rule not loaded: {e}");
    }

    let mut findings: BTreeMap<(usize, u32, String), Finding> = BTreeMap::new();
    let mut log_lines = Vec::new();
    let mut names: Vec<&String> = config.sources.keys().collect();
    names.sort_by_key(|n| WATCHED.iter().position(|(_, w, _)| w == n).unwrap_or(usize::MAX));
    for name in names {
        let source = &config.sources[name];
        let (item, what) =
            WATCHED.iter().find(|(_, w, _)| w == name).map_or(("--", name.as_str()), |(i, _, what)| (*i, *what));
        let line = match crate::fsutil::read_tail(&source.path, tail_bytes) {
            Err(e) => format!("{item}  {what} ({name}): {} — {e}", source.path.display()),
            Ok(tail) => {
                let (bytes, age) = (tail.bytes, tail.modified.and_then(|t| t.elapsed().ok()));
                let mut seen = 0;
                let mut sink = |o: Outcome| {
                    if o.decision == Decision::NoPlan {
                        return;
                    }
                    seen += 1;
                    let id = o.runbook.first().cloned().unwrap_or_else(|| "--".into());
                    let f = findings.entry(runbook_key(&id)).or_default();
                    f.count += 1;
                    *f.rules.entry(o.rule.clone()).or_default() += 1;
                    f.last = Some(o);
                };
                // Reading from memory cannot fail.
                let _ = flow.feed(name, &source.path, source.record_start, &mut &bytes[..], &mut sink);
                format!(
                    "{item}  {what} ({name}): {}, last written {} ago, {} finding(s) in its last {} KiB",
                    source.path.display(),
                    age.map_or("?".into(), |a| format!("{} s", a.as_secs())),
                    seen,
                    bytes.len() >> 10
                )
            }
        };
        log_lines.push(line);
    }
    for l in &log_lines {
        let _ = writeln!(out, "{l}");
    }
    if let Some(h) = &config.heartbeat {
        let beats = flow.beats();
        let last = h.expected.iter().filter_map(|s| beats.last(s)).max();
        let _ = write!(out, "M1  heartbeats in the last hour the log covers:");
        match last {
            None => {
                let _ = writeln!(out, " none from any source  <- the pipeline is not delivering (C5, N1–N4)");
            }
            Some(end) => {
                let end = end + crate::report::MINUTE;
                for s in &h.expected {
                    let n = beats.between(s, end - crate::report::HOUR, end);
                    let _ = write!(out, " {s} {n}{}", if n < 58 { " <- missing" } else { "" });
                }
                let _ = writeln!(out);
            }
        }
    }

    let _ = writeln!(out, "\nFindings in the logs, in the runbook's order:");
    if findings.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for ((_, _, id), f) in &findings {
        let Some(o) = &f.last else { continue };
        let rules: Vec<String> = f.rules.iter().map(|(r, n)| format!("{r} ×{n}")).collect();
        let steps: Vec<String> = o.steps.iter().map(|s| format!("{} {}", s.action, s.target)).collect();
        let _ = writeln!(
            out,
            "  {id:<3} {} time(s) ({}); last: {} — {:?}{}",
            f.count,
            rules.join(", "),
            o.summary.as_deref().unwrap_or("no plan"),
            o.decision,
            if steps.is_empty() { String::new() } else { format!(" — {}", steps.join("; ")) }
        );
    }

    let _ = writeln!(out, "\nLive checks:");
    live_checks(&config, &mut out);
    Ok(out)
}

/// Sorts runbook IDs as the runbook does: M, C, K, N, T, then the number.
fn runbook_key(id: &str) -> (usize, u32, String) {
    let section = "MCKNT".find(id.chars().next().unwrap_or('-')).unwrap_or(9);
    (section, id[1.min(id.len())..].parse().unwrap_or(0), id.to_string())
}

fn live_checks(config: &Config, out: &mut String) {
    for (name, svc) in &config.services {
        let pids = crate::actions::service::running_pids(svc);
        let state = if pids.is_empty() { "NOT running".to_string() } else { format!("running (pid {pids:?})") };
        let _ = writeln!(out, "  service {name}: {state}");
    }
    if let Some(zk) = &config.zookeeper {
        match crate::clients::zk::Session::connect(zk) {
            Err(e) => {
                let _ = writeln!(out, "  ZooKeeper: {e}");
            }
            Ok(session) => {
                let configured = config.cluster_brokers();
                match session.block_on(crate::cluster::snapshot(&session.client())) {
                    Err(e) => {
                        let _ = writeln!(out, "  ZooKeeper {}: {e}", zk.connect);
                    }
                    Ok(s) => {
                        let expected = s.expected(configured);
                        let down: Vec<String> = s.down(configured).iter().map(|b| b.to_string()).collect();
                        let _ = writeln!(
                            out,
                            "  K4  brokers registered in ZooKeeper: {:?} of {:?}{}",
                            s.registered,
                            expected,
                            if down.is_empty() { String::new() } else { format!("  <- down: {}", down.join(", ")) }
                        );
                    }
                }
                if let Some(canal) = &config.canal {
                    match crate::clients::canal::read_destinations(&session, canal) {
                        Err(e) => {
                            let _ = writeln!(out, "  N1  canal destinations: {e}");
                        }
                        Ok(ds) => {
                            for d in ds {
                                let _ = writeln!(
                                    out,
                                    "  N1  canal destination {}: {}",
                                    d.name,
                                    d.running.as_deref().unwrap_or("NOBODY serves it (no running canal server)")
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(k) = &config.kafka {
        match crate::clients::kafka::leaders(k, None) {
            Err(e) => {
                let _ = writeln!(out, "  T1  Kafka leaders: {e}");
            }
            Ok(rows) => {
                let leaderless = rows.iter().filter(|r| r.leader < 0).count();
                let under = rows.iter().filter(|r| r.isr.len() < r.replicas.len()).count();
                let _ = writeln!(
                    out,
                    "  T1  Kafka: {} partition(s), {leaderless} without a leader, {under} under-replicated",
                    rows.len()
                );
            }
        }
        if let Some(group) = &k.group {
            match crate::clients::kafka::lag(k, group, None, config.consumer_offset_reset()) {
                Err(e) => {
                    let _ = writeln!(out, "  T2  lag of {group}: {e}");
                }
                Ok(rows) => {
                    let total: i64 = rows.iter().map(|r| r.lag).sum();
                    let _ = writeln!(out, "  T2  lag of {group}: {total} over {} partition(s)", rows.len());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runbook_order() {
        let mut ids = vec!["N3", "C10", "K1", "M2", "C2", "T1"];
        ids.sort_by_key(|i| runbook_key(i));
        assert_eq!(ids, ["M2", "C2", "C10", "K1", "N3", "T1"]);
    }
}
