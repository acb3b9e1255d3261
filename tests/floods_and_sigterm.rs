//! A flood in one log: the agent keeps up, writes a summary instead of one
//! journal entry per repeated decision, still answers an incident in another
//! log, and stops promptly on SIGTERM whatever is left to read.

mod common;

use common::{commit_failed_incident, k1_incident, wakeup_incident, Host, Options};

#[test]
fn a_flood_of_repeated_failures_is_summed_up_and_another_logs_incident_is_still_fixed() {
    let mut host = Host::new(Options::default());
    host.start_service("consumer", "logs/info.log");
    host.start_service("kafka", "logs/server.log");
    host.start_agent();
    let one = commit_failed_incident();
    let n = (4 << 20) / one.len();
    host.append("logs/error.log", &one.repeat(n));
    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    assert_eq!(host.wait_decision("k1_unknown_host", 1)["decision"], "applied");
    // A marker after the flood: once it is decided, so is the flood.
    host.append("logs/error.log", &wakeup_incident());
    host.wait_decision("c3_wakeup", 1);
    host.stop_agent(); // writes the running summaries
    let decisions = host.decisions("c2_commit_failed");
    let summaries: Vec<_> = host
        .audit()
        .into_iter()
        .filter(|e| e["kind"] == "decision-summary" && e["rule"] == "c2_commit_failed")
        .collect();
    let summed: u64 = summaries.iter().map(|s| s["repeated"].as_u64().unwrap()).sum();
    assert_eq!(decisions.len() as u64 + summed, n as u64, "every record decided, written or counted");
    assert_eq!(decisions.iter().filter(|d| d["decision"] == "applied").count(), 1, "one fix for the flood");
    let audit = std::fs::metadata(host.path("state/audit.jsonl")).unwrap().len();
    assert!(audit < (n * one.len()) as u64 / 20, "the journal ({audit} bytes) stays far smaller than the flood");
}

#[test]
fn sigterm_stops_the_agent_with_a_backlog_left_to_read() {
    let mut host = Host::new(Options::default());
    host.start_agent();
    let one = commit_failed_incident();
    host.append("logs/error.log", &one.repeat((32 << 20) / one.len()));
    // stop_agent() sends SIGTERM and waits, with a deadline, for a clean exit;
    // the rest of the backlog is read after the next start, from the checkpoint.
    host.stop_agent();
    let stopped = host.audit_of_kind("stopped");
    assert_eq!(stopped.len(), 1);
}

/// The daemon owns its threads: on SIGTERM the mail sender, the approval
/// endpoint and the Kafka metrics collector stop on the one shutdown signal
/// and are joined (none is left running), and the approval port is free. A
/// Kafka question in flight ends within its timeout (1 s here; the daemon
/// waits 5 s for its threads before it exits without them).
#[test]
fn sigterm_stops_and_joins_every_background_thread() {
    let extra =
        "\n[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\ntimeout_secs = 1\n\n[metrics]\nkafka_interval_secs = 5\n"
            .to_string();
    let mut host = Host::new(Options { approvers: vec!["dba@example.com"], extra, ..Options::default() });
    host.start_agent();
    let listen = host.http.unwrap();
    host.stop_agent();
    let stderr = host.stderr();
    assert!(!stderr.contains("still running"), "a background thread was not joined:\n{stderr}");
    assert_eq!(host.audit_of_kind("stopped").len(), 1);
    std::net::TcpListener::bind(listen).expect("the approval port is free once the agent stopped");
}
