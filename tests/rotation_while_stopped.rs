//! Logs rotated while the agent is stopped: every rotated file that holds
//! unread lines is read — renamed twice, copied and truncated, gzipped — and
//! what truly cannot be read is said in the audit.

mod common;

use std::io::Write;

use common::{k1_incident, Host, Options};

fn hosts_decided(host: &Host) -> Vec<String> {
    host.decisions("k1_unknown_host").iter().map(|d| d["captures"]["host"].as_str().unwrap().to_string()).collect()
}

/// A running agent that has decided one incident, then stopped.
fn stopped_after_one() -> Host {
    let mut host = Host::new(Options { dry_run: true, ..Options::default() });
    host.start_agent();
    host.append("logs/server.log", &k1_incident("ip-10.0.0.1"));
    host.wait_decision("k1_unknown_host", 1);
    host.stop_agent();
    host
}

fn gzip(host: &Host, rel: &str) {
    let text = std::fs::read(host.path(rel)).unwrap();
    let out = std::fs::File::create(host.path(&format!("{rel}.gz"))).unwrap();
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    enc.write_all(&text).unwrap();
    enc.finish().unwrap();
    std::fs::remove_file(host.path(rel)).unwrap();
}

fn pause() {
    // Rotated files are ordered by when they were last written.
    std::thread::sleep(std::time::Duration::from_millis(20));
}

#[test]
fn two_rotations_and_a_gzip_while_stopped_lose_no_line() {
    let mut host = stopped_after_one();
    host.append("logs/server.log", &k1_incident("ip-10.0.0.2"));
    std::fs::rename(host.path("logs/server.log"), host.path("logs/server.log.1")).unwrap();
    pause();
    host.append("logs/server.log", &k1_incident("ip-10.0.0.3"));
    std::fs::rename(host.path("logs/server.log.1"), host.path("logs/server.log.2")).unwrap();
    std::fs::rename(host.path("logs/server.log"), host.path("logs/server.log.1")).unwrap();
    gzip(&host, "logs/server.log.2");
    pause();
    host.append("logs/server.log", &k1_incident("ip-10.0.0.4"));
    host.start_agent();
    host.wait_decision("k1_unknown_host", 4);
    assert_eq!(hosts_decided(&host), ["ip-10.0.0.1", "ip-10.0.0.2", "ip-10.0.0.3", "ip-10.0.0.4"]);
    assert!(host.audit_of_kind("lines-missed").is_empty(), "{:#?}", host.audit_of_kind("lines-missed"));
    host.stop_agent();
}

#[test]
fn copytruncate_while_stopped_loses_no_line() {
    let mut host = stopped_after_one();
    host.append("logs/server.log", &k1_incident("ip-10.0.0.2"));
    std::fs::copy(host.path("logs/server.log"), host.path("logs/server.log.1")).unwrap();
    std::fs::write(host.path("logs/server.log"), "").unwrap();
    pause();
    host.append("logs/server.log", &k1_incident("ip-10.0.0.3"));
    host.start_agent();
    host.wait_decision("k1_unknown_host", 3);
    assert_eq!(hosts_decided(&host), ["ip-10.0.0.1", "ip-10.0.0.2", "ip-10.0.0.3"]);
    host.stop_agent();
}

#[test]
fn a_log_removed_while_stopped_is_reported_in_the_audit() {
    let mut host = stopped_after_one();
    host.append("logs/server.log", &k1_incident("ip-10.0.0.2"));
    std::fs::remove_file(host.path("logs/server.log")).unwrap();
    host.append("logs/server.log", &k1_incident("ip-10.0.0.3"));
    host.start_agent();
    host.wait_decision("k1_unknown_host", 2);
    assert_eq!(hosts_decided(&host), ["ip-10.0.0.1", "ip-10.0.0.3"]);
    let missed = host.audit_of_kind("lines-missed");
    assert_eq!(missed.len(), 1, "{missed:#?}");
    let detail = missed[0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("kafka_server: ") && detail.contains("were not read"), "{detail}");
    host.stop_agent();
}
