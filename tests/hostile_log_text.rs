//! Log text is hostile input: what it says never reaches a terminal as
//! control sequences, a cut record says it was cut, and an address no broker
//! can have never reaches the hosts file.

mod common;

use std::process::Command;

use common::{k1_incident, Host, Options, BIN, HOSTS};

#[test]
fn replay_and_status_show_escape_sequences_instead_of_sending_them() {
    let mut host = Host::new(Options { dry_run: true, ..Options::default() });
    let evil = k1_incident("ip-10.0.0.1\x1b]0;owned\x07\x1b[2J");
    let log = host.path("old.log");
    std::fs::write(&log, &evil).unwrap();
    let out = Command::new(BIN)
        .args(["replay", "--config", host.config().to_str().unwrap(), "--source", "kafka_server"])
        .arg(&log)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.is_empty() && !text.contains('\x1b') && !text.contains('\x07'), "{text:?}");

    host.start_agent();
    host.append("logs/server.log", &evil);
    host.wait_decision("k1_unknown_host", 1);
    host.stop_agent(); // writes status.json
    let out = Command::new(BIN).args(["status", "--config", host.config().to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
}

#[test]
fn a_cut_record_is_marked_as_cut_in_the_journal() {
    let mut host =
        Host::new(Options { dry_run: true, extra: "max_record_bytes = 2048\n".into(), ..Options::default() });
    host.start_agent();
    let mut incident = k1_incident("ip-10.0.0.1");
    incident.push_str(&"\tat com.example.Deep.frame(Deep.java:1)\n".repeat(200));
    host.append("logs/server.log", &incident);
    let d = host.wait_decision("k1_unknown_host", 1);
    assert_eq!(d["truncated"], true, "{d:#}");
    host.stop_agent();
}

#[test]
fn k1_never_maps_a_name_to_an_address_no_broker_can_have() {
    let mut host = Host::new(Options::default());
    host.start_service("kafka", "logs/server.log");
    host.start_agent();
    let bad = ["ip-0.0.0.0", "ip-255.255.255.255", "ip-127.0.0.1", "ip-224.0.0.1", "ip-169.254.169.254"];
    for (i, name) in bad.iter().enumerate() {
        host.append("logs/server.log", &k1_incident(name));
        let d = host.wait_decision("k1_unknown_host", i + 1);
        assert_eq!(d["decision"], "refused", "{name}: {d:#}");
    }
    assert_eq!(host.read("hosts"), HOSTS);
    assert_eq!(host.starts("kafka"), 1);
    host.stop_agent();
}
