//! A plan is applied whole or not at all: its steps are previewed in order,
//! each against the state the earlier ones leave (two edits of one file
//! chain), and when a later step fails, the earlier edits are rolled back and
//! the audit says so.

mod common;

use common::{Host, Options, SERVER_PROPERTIES};

/// K3 changes two keys of `server.properties` and restarts the broker: the
/// second edit used to fail its guard after the first had applied.
#[test]
fn k3_two_edits_of_server_properties_apply_whole_after_approval() {
    let mut host = Host::new(Options { approvers: vec!["ops1@example.com"], ..Options::default() });
    host.start_service("kafka", "logs/server.log");
    host.start_agent();
    host.append(
        "logs/server.log",
        "[2026-11-25 10:00:00,001] ERROR [KafkaApi-1] Number of alive brokers '1' does not meet the required replication factor '3' for the offsets topic (configured via 'offsets.topic.replication.factor'). (kafka.server.KafkaApis)\n",
    );
    let d = host.wait_decision("k3_too_few_brokers", 1);
    assert_eq!(d["decision"], "awaiting-approval", "{d:#}");
    let second = d["steps"][1]["preview"].as_str().unwrap();
    assert!(second.contains("+offsets.topic.replication.factor=1"), "{second}");
    let mail = host.wait_mails(1).remove(0);
    let (approve, _) = mail.links();
    let (_, page) = host.get(&approve);
    let (status, result) = host.press(&page);
    assert_eq!(status, 200, "{result}");
    let applied = host.wait_decision("k3_too_few_brokers", 2);
    assert_eq!(applied["decision"], "applied", "{applied:#}");
    assert_eq!(
        host.read("server.properties"),
        format!("{SERVER_PROPERTIES}default.replication.factor=1\noffsets.topic.replication.factor=1\n")
    );
    assert_eq!(host.starts("kafka"), 2, "the broker was restarted once");
    host.stop_agent();
}

const TWO_EDITS_THEN_START: &str = r#"// Test rule: two edits of one file, then a service start.
fn meta() {
    #{ runbook: ["C2"], sources: ["consumer_error"], signatures: #{ tune: `TUNE (?<svc>[a-z]+)` } }
}
fn plan(ev, ctx) {
    #{
        summary: "tune the consumer, then start " + ev.captures.svc,
        risk: "safe",
        steps: [
            property_lower("consumer", "max.poll.records", 0.5, 50, 500),
            property_lower("consumer", "fetch.max.bytes", 0.5, 1024, 52428800),
            service_start(ev.captures.svc),
        ],
    }
}
"#;

fn host() -> Host {
    let host = Host::new(Options {
        extra: "\n[services.broken]\nstart = [\"/bin/false\"]\nstop = [\"/bin/true\"]\nprocess = { pid_file = \"bin/run/broken.pid\" }\nstart_timeout_secs = 5\n".into(),
        ..Options::default()
    });
    std::fs::write(host.path("rules.d/tune.rhai"), TWO_EDITS_THEN_START).unwrap();
    host
}

#[test]
fn two_edits_of_one_file_chain_and_apply_whole() {
    let mut host = host();
    host.start_agent();
    host.append("logs/error.log", "2026-11-25 10:00:00.000 ERROR TUNE consumer\n");
    let d = host.wait_decision("tune", 1);
    assert_eq!(d["decision"], "applied", "{d:#}");
    let props = host.read("consumer.properties");
    assert!(props.contains("max.poll.records=250\n") && props.contains("fetch.max.bytes=26214400\n"), "{props}");
    host.stop_agent();
}

#[test]
fn a_failed_later_step_rolls_back_the_earlier_edits() {
    let mut host = host();
    let before = host.read("consumer.properties");
    host.start_agent();
    host.append("logs/error.log", "2026-11-25 10:00:00.000 ERROR TUNE broken\n");
    let d = host.wait_decision("tune", 1);
    assert_eq!(d["decision"], "failed", "{d:#}");
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains("step 3 failed") && reason.contains("rolled back step 2, step 1"), "{reason}");
    for i in 0..2 {
        let r = d["steps"][i]["result"].as_str().unwrap();
        assert!(r.contains("rolled back"), "step {}: {r}", i + 1);
    }
    assert_eq!(host.read("consumer.properties"), before, "the file is as it was before the plan");
    // The decision's time is when it was made: after its steps ran.
    let steps = host.audit_of_kind("plan-step");
    assert_eq!(steps.len(), 3, "one journal entry per step");
    let last_step = steps.iter().map(|s| s["time"].as_str().unwrap().to_string()).max().unwrap();
    assert!(d["time"].as_str().unwrap() >= last_step.as_str(), "{d:#} vs {last_step}");
    host.stop_agent();
}
