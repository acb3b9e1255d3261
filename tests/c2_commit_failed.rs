//! Runbook C2/C7: frequent CommitFailedException lowers max.poll.records in
//! the consumer's properties and restarts the consumer gracefully, once.

mod common;

use common::{commit_failed_incident, Host, Options, PROPERTIES};

#[test]
fn c2_frequent_commit_failures_lower_max_poll_records_and_restart_consumer() {
    let mut host = Host::new(Options::default());
    host.start_service("consumer", "logs/info.log");
    host.start_agent();
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
