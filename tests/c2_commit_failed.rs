//! Runbook C2/C7: frequent CommitFailedException lowers max.poll.records in
//! the consumer's properties and restarts the consumer gracefully, once.

mod common;

use common::{commit_failed_incident, Host, Options, PROPERTIES};

/// The agent beside a running consumer.
fn consumer_host() -> Host {
    let mut host = Host::new(Options::default());
    host.start_service("consumer", "logs/info.log");
    host.start_agent();
    host
}

#[test]
fn c2_frequent_commit_failures_lower_max_poll_records_and_restart_consumer() {
    let mut host = consumer_host();
    for _ in 0..4 {
        host.append("logs/error.log", &commit_failed_incident());
    }
    host.wait_decision("c2_commit_failed", 4);
    assert!(host.decisions("c2_commit_failed").iter().all(|d| d["decision"] == "no-plan"), "below threshold");
    assert_eq!(host.read("consumer.properties"), PROPERTIES);

    host.append("logs/error.log", &commit_failed_incident());
    let d = host.wait_decision("c2_commit_failed", 5);
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert!(
        d["steps"][0]["preview"].as_str().unwrap().contains("-max.poll.records=500\n+max.poll.records=250"),
        "{d:#}"
    );
    assert_eq!(host.read("consumer.properties"), PROPERTIES.replace("=500", "=250"));
    assert_eq!(host.starts("consumer"), 2);

    host.append("logs/error.log", &commit_failed_incident());
    assert_eq!(host.wait_decision("c2_commit_failed", 6)["decision"], "rate-limited");
    assert_eq!(host.read("consumer.properties"), PROPERTIES.replace("=500", "=250"), "lowered once per cooldown");
    host.stop_agent();
}

/// 1.0+'s auto-commit failure: a WARN with the message only.
fn auto_commit_failed(second: u32) -> String {
    format!(
        "2026-11-25 10:00:{second:02}.001 [pool-2-thread-1] WARN  o.a.k.c.c.internals.ConsumerCoordinator - [Consumer clientId=consumer-1, groupId=bo_01] Asynchronous auto-commit of offsets {{trade-0=OffsetAndMetadata{{offset=42, metadata=''}}}} failed: Commit cannot be completed since the group has already rebalanced and assigned the partitions to another member.\n"
    )
}

#[test]
fn c2_auto_commit_failures_at_warn_in_the_info_log_are_counted() {
    let mut host = consumer_host();
    for s in 0..5 {
        host.append("logs/info.log", &auto_commit_failed(s));
    }
    let d = host.wait_decision("c2_commit_failed", 5);
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert_eq!(host.read("consumer.properties"), PROPERTIES.replace("=500", "=250"));
    host.stop_agent();
}

#[test]
fn c2_a_failure_printed_in_both_logs_is_counted_once() {
    let mut host = consumer_host();
    // A layout that writes WARN and above to both logs: 4 incidents, 8 lines.
    for s in 0..4 {
        host.append("logs/error.log", &auto_commit_failed(s));
        host.append("logs/info.log", &auto_commit_failed(s));
    }
    host.wait_decision("c2_commit_failed", 4);
    // The copies are read too (a marker after them in the info log shows it).
    host.append("logs/info.log", &common::wakeup_incident());
    host.wait_decision("c3_wakeup", 1);
    let decisions = host.decisions("c2_commit_failed");
    assert_eq!(decisions.len(), 4, "each incident decided once: {decisions:#?}");
    assert!(decisions.iter().all(|d| d["decision"] == "no-plan"), "4 incidents are below the threshold of 5");
    assert_eq!(host.read("consumer.properties"), PROPERTIES);
    host.stop_agent();
}
