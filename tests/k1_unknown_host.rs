//! Runbook K1 end to end: the real daemon, a live log, a hosts file and a
//! stand-in broker with its own start/stop scripts.

mod common;

use common::{k1_incident, Host, Options, HOSTS};

#[test]
fn k1_unknown_host_adds_hosts_entry_once_and_restarts_broker() {
    let mut host = Host::new(Options::default());
    host.start_service("kafka", "logs/server.log");
    let first_pid = host.service_pid("kafka").unwrap();
    host.start_agent();

    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    let d = host.wait_decision("k1_unknown_host", 1);
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert_eq!(d["runbook"][0], "K1");
    assert_eq!(d["captures"]["host"], "ip-10.98.2.33");
    assert!(d["file"].as_str().unwrap().ends_with("logs/server.log"), "{d:#}");
    let hosts = host.read("hosts");
    assert!(hosts.starts_with(HOSTS), "other lines kept byte for byte:\n{hosts}");
    assert_eq!(hosts.lines().filter(|l| l.starts_with("10.98.2.33\tip-10.98.2.33")).count(), 1, "{hosts}");
    assert_eq!(host.starts("kafka"), 2, "restarted once through its start script");
    assert_ne!(host.service_pid("kafka"), Some(first_pid), "a new broker process runs");
    assert!(std::fs::read_dir(host.path("state/backups")).unwrap().count() >= 1, "the old hosts file was backed up");

    // The same incident again, inside the cooldown: no duplicate, no restart.
    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    let d = host.wait_decision("k1_unknown_host", 2);
    assert_eq!(d["decision"], "rate-limited", "{d:#}");
    assert_eq!(host.read("hosts"), hosts);
    assert_eq!(host.starts("kafka"), 2);
    host.stop_agent();
}

#[test]
fn k1_dry_run_changes_nothing_and_says_what_it_would_do() {
    let mut host = Host::new(Options { dry_run: true, ..Options::default() });
    host.start_service("kafka", "logs/server.log");
    host.start_agent();
    host.append("logs/server.log", &k1_incident("ip-10-98-2-33"));
    let d = host.wait_decision("k1_unknown_host", 1);
    assert_eq!(d["decision"], "dry-run", "{d:#}");
    assert_eq!(d["dry_run"], true);
    assert!(d["steps"][0]["preview"].as_str().unwrap().contains("+10.98.2.33\tip-10-98-2-33"), "{d:#}");
    assert!(d["steps"][1]["preview"].as_str().unwrap().contains("standin.sh stop kafka"), "{d:#}");
    assert_eq!(host.read("hosts"), HOSTS, "byte-identical");
    assert_eq!(host.starts("kafka"), 1, "not restarted");
    assert!(!host.path("state/backups").exists());
    host.stop_agent();
}

#[test]
fn k1_hostile_capture_is_refused_with_a_clear_audit_entry() {
    let mut host = Host::new(Options::default());
    host.start_service("kafka", "logs/server.log");
    host.start_agent();
    host.append("logs/server.log", &k1_incident("ip-1.2.3.4;rm -rf /"));
    let d = host.wait_decision("k1_unknown_host", 1);
    assert_eq!(d["decision"], "refused", "{d:#}");
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains("host name") && reason.contains("ip-1.2.3.4;rm"), "{reason}");

    let long = format!("ip-{}", "a".repeat(10_000));
    host.append("logs/server.log", &k1_incident(&long));
    let d = host.wait_decision("k1_unknown_host", 2);
    assert_eq!(d["decision"], "refused", "{d:#}");
    assert!(d["reason"].as_str().unwrap().len() < 400, "the reason stays readable");
    assert!(d["captures"]["host"].as_str().unwrap().len() < 200, "the capture is excerpted");

    assert_eq!(host.read("hosts"), HOSTS);
    assert_eq!(host.starts("kafka"), 1);
    host.stop_agent();
}
