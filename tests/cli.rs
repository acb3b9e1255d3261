//! The command line as an operator meets it: clear errors for bad config and
//! bad rules, replay, and the shipped rules' own tests.

mod common;

use std::process::Command;

use common::{k1_incident, Host, Options, BIN};

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn malformed_config_is_reported_with_file_line_and_key() {
    let host = Host::new(Options::default());
    let config = host.config();
    let text = std::fs::read_to_string(&config).unwrap().replace("cooldown_secs", "cooldown_sec");
    std::fs::write(&config, text).unwrap();
    let (ok, out) = run(&["check", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("pipemedic.toml") && out.contains("line ") && out.contains("cooldown_sec"), "{out}");
    let (ok, out) = run(&["run", "--config", config.to_str().unwrap()]);
    assert!(!ok, "the daemon refuses a bad config: {out}");
}

#[test]
fn rule_with_syntax_error_is_reported_and_the_others_keep_running() {
    let mut host = Host::new(Options { dry_run: true, ..Options::default() });
    std::fs::write(host.path("rules.d/broken.rhai"), "// broken\nfn meta() {\n  #{ runbook: [\"X\"] ;\n}\n").unwrap();
    let (ok, out) = run(&["check", "--config", host.config().to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("rules.d/broken.rhai:3:"), "{out}");

    host.start_agent();
    let errors = host.audit_of_kind("rule-load-error");
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["detail"].as_str().unwrap().contains("broken.rhai:3:"));
    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    assert_eq!(host.wait_decision("k1_unknown_host", 1)["decision"], "dry-run");
    host.stop_agent();
}

#[test]
fn playbook_with_syntax_error_fails_check() {
    let host = Host::new(Options::default());
    std::fs::write(host.path("playbooks/bad.rhai"), "fn run() {\n  let x = ;\n}\n").unwrap();
    let config = host.config();
    let (ok, out) = run(&["check", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("playbooks/bad.rhai:2:"), "{out}");
}

#[test]
fn rule_that_fails_at_run_time_is_logged_and_counted_not_fatal() {
    let mut host = Host::new(Options { dry_run: true, ..Options::default() });
    std::fs::write(
        host.path("rules.d/zz_fails.rhai"),
        "// test rule\nfn meta() { #{ runbook: [\"X\"], sources: [\"kafka_server\"], signatures: #{ boom: `UnknownHostException` } } }\nfn plan(ev, ctx) { let x = ev.captures.nothing; }\nfn tests() { [] }\n",
    )
    .unwrap();
    host.start_agent();
    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    let d = host.wait_decision("zz_fails", 1);
    assert_eq!(d["decision"], "rule-error");
    assert!(d["reason"].as_str().unwrap().contains("zz_fails.rhai:3:"), "{d:#}");
    assert_eq!(host.wait_decision("k1_unknown_host", 1)["decision"], "dry-run");
    host.stop_agent();
}

#[test]
fn replay_prints_one_json_decision_per_line() {
    let host = Host::new(Options::default());
    let log = host.path("old.log");
    std::fs::write(&log, format!("{}{}", k1_incident("ip-10.98.2.33"), k1_incident("ip-10.98.2.33"))).unwrap();
    let (ok, out) = run(&[
        "replay",
        "--config",
        host.config().to_str().unwrap(),
        "--source",
        "kafka_server",
        "--format",
        "json",
        log.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let k1: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|d| d["rule"] == "k1_unknown_host")
        .collect();
    assert_eq!(k1.len(), 2, "{out}");
    assert_eq!(k1[0]["decision"], "dry-run");
    assert_eq!(k1[0]["runbook"][0], "K1");
    assert_eq!(k1[0]["signature"], "unknown_host");
    assert_eq!(k1[0]["risk"], "safe");
    assert_eq!(k1[0]["steps"][0]["action"], "hosts");
    assert_eq!(k1[0]["steps"][0]["target"], "ip-10.98.2.33");
    assert_eq!(k1[1]["decision"], "rate-limited", "a replay shows the cooldown as the daemon would apply it");
    assert!(
        k1[0]["steps"][0]["preview"].as_str().unwrap().contains("not computed"),
        "a plain replay reads nothing live"
    );
    let (ok, out) = run(&[
        "replay",
        "--previews",
        "--config",
        host.config().to_str().unwrap(),
        "--source",
        "kafka_server",
        "--format",
        "json",
        log.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("+10.98.2.33\\tip-10.98.2.33"), "with --previews the hosts diff is computed: {out}");
    assert_eq!(std::fs::read_to_string(host.path("hosts")).unwrap(), common::HOSTS, "replay changes nothing");
}

#[test]
fn replay_reads_several_sources_at_once_and_decides_in_log_time_order() {
    let host = Host::new(Options::default());
    // Given in the other order: the broker's incident is an hour later.
    let broker = host.path("old-broker.log");
    std::fs::write(&broker, k1_incident("ip-10.98.2.33").replace("10:00:00,001", "11:00:00,001")).unwrap();
    let consumer = host.path("error.log.1"); // a rotation of consumer_error's error.log
    std::fs::write(&consumer, common::wakeup_incident()).unwrap();
    let config = host.config().to_str().unwrap().to_string();
    let (ok, out) = run(&[
        "replay",
        "--config",
        &config,
        "--format",
        "json",
        &format!("kafka_server={}", broker.display()),
        consumer.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let rules: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|d| d["rule"].as_str().map(String::from))
        .collect();
    let at = |r: &str| rules.iter().position(|x| x == r).unwrap_or_else(|| panic!("{r} missing: {out}"));
    assert!(at("c3_wakeup") < at("k1_unknown_host"), "decided in log-time order, not argument order: {rules:?}");
    assert!(out.contains("replayed 2 file(s)"), "{out}");

    // A file no source owns is refused with how to say which it is.
    let stray = host.path("stray.log");
    std::fs::write(&stray, common::wakeup_incident()).unwrap();
    let (ok, out) = run(&["replay", "--config", &config, stray.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("stray.log: no configured source") && out.contains("SOURCE="), "{out}");
    let (ok, out) = run(&["replay", "--config", &config, "--source", "nope", stray.to_str().unwrap()]);
    assert!(!ok && out.contains("source \"nope\" is not configured"), "{out}");
    // A file that cannot be read names itself; nothing half-printed hides it.
    let (ok, out) = run(&["replay", "--config", &config, "--source", "kafka_server", "/nonexistent/server.log"]);
    assert!(!ok && out.contains("opening /nonexistent/server.log"), "{out}");
}

#[test]
fn shipped_rules_pass_their_own_tests() {
    let (ok, out) = run(&["test"]);
    assert!(ok, "{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn diagnose_runs_the_runbook_checks_once_and_prints_them_in_its_order() {
    let host = Host::new(Options::default());
    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    host.append("logs/error.log", &common::wakeup_incident());
    host.start_service("consumer", "logs/info.log");
    let (ok, out) = run(&["diagnose", "--config", host.config().to_str().unwrap()]);
    assert!(ok, "{out}");
    let at = |needle: &str| out.find(needle).unwrap_or_else(|| panic!("{needle:?} missing in:\n{out}"));
    // The logs' sections, then the findings (C before K), then live checks.
    assert!(at("M1  consumer error log") < at("M2  Kafka server log"), "{out}");
    assert!(at("  C3  1 time(s) (c3_wakeup ×1)") < at("  K1  1 time(s) (k1_unknown_host ×1)"), "{out}");
    assert!(out.contains("hosts ip-10.98.2.33"), "the K1 plan's step is shown: {out}");
    assert!(out.contains("service consumer: running"), "{out}");
    assert!(out.contains("service kafka: NOT running"), "{out}");
    assert_eq!(host.read("hosts"), common::HOSTS, "diagnose changes nothing");
}
