//! Runbook T3/T4 and the guards against restart loops: a stop that does not
//! finish is reported, never escalated to SIGKILL; a fix that keeps not
//! working opens the circuit instead of looping.

mod common;

use common::{Host, Options};

fn fatal(n: u32) -> String {
    format!(
        "[2026-11-25 10:00:0{n},001] FATAL [KafkaServer id=1] Fatal error during KafkaServer startup. Prepare to shutdown (kafka.server.KafkaServer)\n\
         kafka.common.KafkaException: Failed to acquire lock on file .lock in /tmp/kafka-logs.\n"
    )
}

#[test]
fn t4_stop_that_does_not_finish_is_reported_and_never_killed() {
    let mut host = Host::new(Options { stop_timeout_secs: 2, ..Options::default() });
    host.start_service("kafka", "logs/server.log");
    std::fs::write(host.path("bin/run/kafka.ignore-term"), "").unwrap();
    // The flag is read when the process starts; restart the stand-in with it.
    let pid = host.service_pid("kafka").unwrap();
    std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    std::fs::remove_file(host.path("bin/run/kafka.pid")).unwrap();
    host.start_service("kafka", "logs/server.log");
    let pid = host.service_pid("kafka").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));

    host.start_agent();
    host.append("logs/server.log", &fatal(1));
    let d = host.wait_decision("m2_kafka_shutdown", 1);
    assert_eq!(d["decision"], "failed", "{d:#}");
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains("not escalating to SIGKILL"), "{reason}");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the stuck broker was not killed");
    assert_eq!(host.starts("kafka"), 2, "no start while the old process still runs");
    host.stop_agent();
}

#[test]
fn m2_repeated_restarts_open_the_circuit_instead_of_looping() {
    let mut host = Host::new(Options { cooldown_secs: 0, breaker_threshold: 2, ..Options::default() });
    host.start_service("kafka", "logs/server.log");
    host.start_agent();
    for n in 1..=3 {
        host.append("logs/server.log", &fatal(n));
        host.wait_decision("m2_kafka_shutdown", n as usize);
    }
    let decisions: Vec<String> =
        host.decisions("m2_kafka_shutdown").iter().map(|d| d["decision"].as_str().unwrap().to_string()).collect();
    // Each restart also logs "shut down completed" after the fatal error,
    // which asks for a restart too; what matters is the sequence of fatal
    // errors: two restarts, then the circuit opens.
    let applied = decisions.iter().filter(|d| *d == "applied").count();
    assert_eq!(applied, 2, "{decisions:?}");
    assert!(decisions.iter().any(|d| d == "circuit-open"), "{decisions:?}");
    assert_eq!(host.starts("kafka"), 3, "initial start + two restarts");
    host.stop_agent();
}

/// A service script's output says which plan ran it: the line above each
/// run names the plan the journal has, and the rule.
#[test]
fn a_service_scripts_output_names_the_plan_that_ran_it() {
    let mut host = Host::new(Options::default());
    host.start_service("kafka", "logs/server.log");
    host.start_agent();
    host.append("logs/server.log", &fatal(1));
    let d = host.wait_decision("m2_kafka_shutdown", 1);
    assert_eq!(d["decision"], "applied", "{d:#}");
    let plan = d["plan"].as_str().expect("an applied decision names its plan");
    let out = std::fs::read_to_string(host.path("state/services/kafka.out")).unwrap();
    let headers: Vec<&str> = out.lines().filter(|l| l.starts_with("--- ")).collect();
    assert_eq!(headers.len(), 2, "one line above the stop script's output, one above the start's: {out}");
    for (line, doing) in headers.iter().zip(["stopping kafka", "starting kafka"]) {
        assert!(
            line.contains(&format!("pipemedic: {doing}, part of plan {plan} of rule m2_kafka_shutdown:")),
            "{line}"
        );
    }
    host.stop_agent();
}
