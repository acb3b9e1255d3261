//! The state directory belongs to one daemon, and a source is the same file
//! however the configuration's path was spelled.

mod common;

use std::process::Command;

use common::{k1_incident, Host, Options, BIN};

#[test]
fn a_second_daemon_on_the_same_state_dir_refuses_to_start() {
    let mut host = Host::new(Options { dry_run: true, ..Options::default() });
    host.start_agent();
    let out = Command::new(BIN)
        .args(["run", "--config", host.config().to_str().unwrap()])
        .output()
        .expect("running a second pipemedic");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second daemon ran: {said}");
    assert!(said.contains("already runs on state directory") && said.contains(&host.agent_pid().to_string()), "{said}");
    // The first one still decides, once.
    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    assert_eq!(host.wait_decision("k1_unknown_host", 1)["decision"], "dry-run");
    host.stop_agent();
    assert_eq!(host.decisions("k1_unknown_host").len(), 1);
}

#[test]
fn a_state_dir_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let host = Host::new(Options { dry_run: true, ..Options::default() });
    std::fs::set_permissions(host.path("state"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(BIN).args(["run", "--config", host.config().to_str().unwrap()]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("nobody else can write"), "{said}");
}

#[test]
fn relative_then_absolute_config_path_neither_skips_nor_replays() {
    let mut host = Host::new(Options { dry_run: true, ..Options::default() });
    let root = host.dir.path().to_path_buf();
    host.start_agent_as(&root, "pipemedic.toml");
    host.append("logs/server.log", &k1_incident("ip-10.0.0.1"));
    host.wait_decision("k1_unknown_host", 1);
    host.stop_agent();
    // Written while the agent is stopped; the next start names the
    // configuration by its absolute path.
    host.append("logs/server.log", &k1_incident("ip-10.0.0.2"));
    host.start_agent();
    // A marker after it: records are decided in order, so a replayed first
    // line would show up before the marker's decision.
    host.append("logs/server.log", &k1_incident("ip-10.0.0.3"));
    host.wait_decision("k1_unknown_host", 3);
    let seen: Vec<String> = host
        .decisions("k1_unknown_host")
        .iter()
        .map(|d| d["captures"]["host"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(seen, ["ip-10.0.0.1", "ip-10.0.0.2", "ip-10.0.0.3"], "nothing skipped, nothing decided twice");
    host.stop_agent();
}
