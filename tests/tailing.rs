//! Following live logs: rotation, truncation, restarts of the agent, and
//! hostile bytes — nothing lost, nothing replayed, no crash.

mod common;

use common::{k1_incident, wakeup_incident, Host, Options};

#[test]
fn rotation_and_truncation_in_the_middle_of_an_incident() {
    let mut host = Host::new(Options { dry_run: true, ..Options::default() });
    host.start_agent();
    // Rename rotation: the first incident's trace is still being written when
    // the file is rotated; its end goes to the old file, which the agent
    // finishes before following the new one.
    let incident = k1_incident("ip-10.0.0.1");
    let (head, tail) = incident.split_at(incident.find("\tat ").unwrap());
    host.append("logs/server.log", head);
    host.append("logs/server.log", tail);
    std::fs::rename(host.path("logs/server.log"), host.path("logs/server.log.1")).unwrap();
    host.append("logs/server.log", &k1_incident("ip-10.0.0.2"));
    let a = host.wait_decision("k1_unknown_host", 1);
    let b = host.wait_decision("k1_unknown_host", 2);
    assert_eq!(a["captures"]["host"], "ip-10.0.0.1");
    assert_eq!(b["captures"]["host"], "ip-10.0.0.2");
    assert!(a["record"].as_str().unwrap().contains("Caused by:"), "the trace stayed one record: {a:#}");

    // Copy-truncate: the file is emptied in place and written again.
    std::fs::write(host.path("logs/server.log"), "").unwrap();
    host.append("logs/server.log", &k1_incident("ip-10.0.0.3"));
    let c = host.wait_decision("k1_unknown_host", 3);
    assert_eq!(c["captures"]["host"], "ip-10.0.0.3");
    assert_eq!(c["offset"], 0);
    host.stop_agent();
}

#[test]
fn agent_restart_replays_no_actions_and_skips_no_lines() {
    let mut host = Host::new(Options::default());
    host.start_service("kafka", "logs/server.log");
    host.start_agent();
    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    assert_eq!(host.wait_decision("k1_unknown_host", 1)["decision"], "applied");
    host.stop_agent();
    let hosts = host.read("hosts");
    let starts = host.starts("kafka");

    // Written while the agent was down: must be seen after it comes back.
    host.append("logs/error.log", &wakeup_incident());
    host.start_agent();
    let d = host.wait_decision("c3_wakeup", 1);
    assert_eq!(d["decision"], "benign");
    // A later record proves the agent has read past everything before it.
    host.append("logs/error.log", &wakeup_incident());
    host.wait_decision("c3_wakeup", 2);
    assert_eq!(host.decisions("k1_unknown_host").len(), 1, "the K1 record was not replayed");
    assert_eq!(host.read("hosts"), hosts);
    assert_eq!(host.starts("kafka"), starts, "no second restart");
    host.stop_agent();
}

#[test]
fn huge_lines_and_binary_garbage_do_not_stop_the_agent() {
    let mut host = Host::new(Options { dry_run: true, ..Options::default() });
    host.start_agent();
    let mut garbage = b"[2026-11-25 10:00:00,000] ERROR ".to_vec();
    garbage.extend((0..20_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8 | 0x80));
    garbage.push(b'\n');
    garbage.extend_from_slice(b"\0\0\xff\xfe\n");
    std::fs::OpenOptions::new()
        .append(true)
        .open(host.path("logs/server.log"))
        .map(|mut f| {
            use std::io::Write;
            f.write_all(&garbage).unwrap()
        })
        .unwrap();
    host.append("logs/server.log", &k1_incident("ip-10.0.0.9"));
    let d = host.wait_decision("k1_unknown_host", 1);
    assert_eq!(d["captures"]["host"], "ip-10.0.0.9");
    host.stop_agent();
}
