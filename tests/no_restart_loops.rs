//! The agent never reacts to its own actions, and the circuit breaker counts
//! what is changed (the broker), not the log line that asked for it: no
//! restart loop, whatever the logs say.

mod common;

use common::{k1_incident, Host, Options};

const FATAL: &str = "[2026-11-25 10:00:00,000] FATAL [KafkaServer id=1] Fatal error during KafkaServer startup. Prepare to shutdown (kafka.server.KafkaServer)\n";

#[test]
fn the_brokers_shutdown_during_the_agents_own_restart_does_not_trigger_m2_again() {
    let mut host = Host::new(Options { cooldown_secs: 0, breaker_threshold: 100, ..Options::default() });
    host.start_service("kafka", "logs/server.log");
    host.start_agent();
    host.append("logs/server.log", FATAL);
    let d = host.wait_decision("m2_kafka_shutdown", 1);
    assert_eq!(d["decision"], "applied", "{d:#}");
    // The stand-in wrote "shut down completed" while the agent stopped it.
    let own = host.wait_decision("m2_kafka_shutdown", 2);
    assert_eq!(own["decision"], "own-action", "{own:#}");
    assert!(own["record"].as_str().unwrap().contains("shut down completed"));
    assert!(own["reason"].as_str().unwrap().contains("pipemedic itself was acting on kafka"), "{own:#}");
    // A marker after it: everything before it has been decided.
    host.append("logs/server.log", FATAL);
    host.wait_decision("m2_kafka_shutdown", 3);
    assert_eq!(host.starts("kafka"), 3, "one restart per fatal line, none for the agent's own shutdown line");
    host.stop_agent();
}

#[test]
fn k1_with_a_new_host_name_on_every_line_still_opens_the_circuit_on_the_broker() {
    let mut host = Host::new(Options { cooldown_secs: 0, breaker_threshold: 3, ..Options::default() });
    host.start_service("kafka", "logs/server.log");
    host.start_agent();
    for i in 1..=4 {
        host.append("logs/server.log", &k1_incident(&format!("ip-10.0.0.{i}")));
        host.wait_decision("k1_unknown_host", i);
    }
    let decisions: Vec<String> =
        host.decisions("k1_unknown_host").iter().map(|d| d["decision"].as_str().unwrap().to_string()).collect();
    assert_eq!(decisions, ["applied", "applied", "applied", "circuit-open"]);
    let last = &host.decisions("k1_unknown_host")[3];
    assert!(last["reason"].as_str().unwrap().contains("service kafka"), "{last:#}");
    // More new names while the circuit is open: summed up, not one entry each.
    for i in 5..=8 {
        host.append("logs/server.log", &k1_incident(&format!("ip-10.0.0.{i}")));
    }
    // A marker after them on the same log: decided once they are.
    host.append(
        "logs/server.log",
        "[2026-11-25 10:00:00,001] ERROR Fatal error during KafkaServer startup. Prepare to shutdown (kafka.server.KafkaServer)\n\
         kafka.common.InconsistentBrokerIdException: Configured broker.id 2 doesn't match stored broker.id 1 in meta.properties.\n",
    );
    host.wait_decision("k2_broker_id_changed", 1);
    host.stop_agent();
    assert_eq!(host.decisions("k1_unknown_host").len(), 4, "the open circuit is written once");
    let summary: Vec<_> = host.audit_of_kind("decision-summary");
    assert_eq!(summary.len(), 1, "{summary:#?}");
    assert_eq!(summary[0]["repeated"], 4);
    assert_eq!(host.starts("kafka"), 4, "the first start and three restarts");
}
