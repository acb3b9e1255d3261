//! `check` (the unit's ExecStartPre) and the commands that load rules catch
//! what a careless configuration gets wrong, naming the file and the part.

mod common;

use std::process::{Command, Stdio};

use common::{Host, Options, BIN};

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn check(host: &Host) -> (bool, String) {
    run(&["check", "--config", host.config().to_str().unwrap()])
}

#[test]
fn a_misspelled_rule_section_fails_check() {
    let host = Host::new(Options::default());
    let text = std::fs::read_to_string(host.config()).unwrap();
    std::fs::write(host.config(), format!("{text}\n[rules.c2_comit_failed]\nthreshold = 3\n")).unwrap();
    let (ok, out) = check(&host);
    assert!(!ok && out.contains("[rules.c2_comit_failed] names no loaded rule"), "{out}");
}

#[test]
fn missing_scripts_and_files_a_directory_source_and_plain_http_links_fail_check() {
    let host = Host::new(Options { approvers: vec!["ops1@example.com"], ..Options::default() });
    assert!(check(&host).0, "the test host itself passes: {}", check(&host).1);
    host.edit_config("stop = [\"bin/standin.sh\", \"stop\", \"consumer\"]", "stop = [\"bin/no-such-script.sh\"]");
    host.edit_config("consumer = \"consumer.properties\"", "consumer = \"missing.properties\"");
    std::fs::create_dir(host.path("logs/a-dir")).unwrap();
    host.edit_config("path = \"logs/monitor.log\"", "path = \"logs/a-dir\"");
    let text = std::fs::read_to_string(host.config()).unwrap();
    let listen = text.lines().find(|l| l.starts_with("listen = ")).unwrap().to_string();
    let port = listen.rsplit(':').next().unwrap().trim_end_matches('"').to_string();
    host.edit_config(&listen, &format!("listen = \"0.0.0.0:{port}\""));
    let (ok, out) = check(&host);
    assert!(!ok, "{out}");
    for want in [
        "[services.consumer] stop: ",
        "no-such-script.sh is not an executable file",
        "[properties_files] consumer: ",
        "[sources.monitor]: ",
        "is a directory",
        "plain HTTP",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    // In dry-run the same are notes: nothing will run those scripts yet.
    host.edit_config("dry_run = false", "dry_run = true");
    let (ok, out) = check(&host);
    assert!(ok && out.contains("note (fails check once dry_run is off)"), "{out}");
}

#[test]
fn no_rule_loaded_fails_check_replay_test_and_run_naming_the_directory() {
    let host = Host::new(Options::default());
    for entry in std::fs::read_dir(host.path("rules")).unwrap().flatten() {
        std::fs::remove_file(entry.path()).unwrap();
    }
    let config = host.config();
    let config = config.to_str().unwrap();
    let log = host.path("logs/server.log");
    let dir = host.path("rules").display().to_string();
    for args in [
        vec!["check", "--config", config],
        vec!["replay", "--config", config, "--source", "kafka_server", log.to_str().unwrap()],
        vec!["test", "--config", config],
        vec!["run", "--config", config],
    ] {
        let (ok, out) = run(&args);
        assert!(!ok, "{} succeeded with no rules: {out}", args[0]);
        assert!(out.contains("no rule loaded") && out.contains(&dir), "{}: {out}", args[0]);
    }
}

#[test]
fn a_report_piped_into_head_ends_quietly() {
    let host = Host::new(Options::default());
    let mut child = Command::new(BIN)
        .args(["check", "--signatures", "--config", host.config().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once, as `head -0` would
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
}

/// `pipemedic test --config` on a host that lacks what some plans name (no
/// services, no properties files): those cases are `skip`, told apart by
/// the refusal's kind, and the run passes. A refusal of a hostile value is
/// a failure even when its text reads like missing configuration.
#[test]
fn rule_tests_skip_only_what_this_host_is_not_configured_for() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for entry in std::fs::read_dir(std::path::Path::new(common::REPO).join("rules")).unwrap().flatten() {
        std::fs::copy(entry.path(), rules.join(entry.file_name())).unwrap();
    }
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(&config, "state_dir = \"state\"\nrule_dirs = [\"rules\"]\n").unwrap();
    let config = config.to_str().unwrap();
    let (ok, out) = run(&["test", "--config", config]);
    assert!(ok, "{out}");
    assert!(
        out.contains("skip c2_commit_failed") && out.contains("is not configured under [properties_files]"),
        "{out}"
    );
    assert!(out.contains(", 0 failed"), "{out}");

    std::fs::write(
        rules.join("zz_hostile.rhai"),
        r#"fn meta() { #{ runbook: ["K1"], sources: ["kafka_server"], signatures: #{ odd: `ODD (?<v>.+)` } } }
fn plan(ev, ctx) { #{ summary: "map it", steps: [hosts_entry(ev.captures.v, "10.0.0.1")] } }
fn tests() { [#{ name: "a name that reads like a missing section", source: "kafka_server",
    log: "ODD x is not configured under [services] section\n", expect: [#{ steps: ["hosts x -> 10.0.0.1"] }] }] }
"#,
    )
    .unwrap();
    let (ok, out) = run(&["test", "--config", config]);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL zz_hostile / a name that reads like a missing section"), "{out}");
}

#[test]
fn a_signature_that_would_make_its_source_slow_is_named_by_check() {
    let host = Host::new(Options::default());
    assert!(!check(&host).1.contains("slow to scan"), "the shipped rules scan fast: {}", check(&host).1);
    for (name, pattern) in [("zz_anything", r"[0-9]{3,}"), ("zz_common", "Exception")] {
        std::fs::write(
            host.path(&format!("rules.d/{name}.rhai")),
            format!("fn meta() {{ #{{ runbook: [\"X\"], sources: [\"kafka_server\"], signatures: #{{ {name}: `{pattern}` }} }} }}\nfn plan(ev, ctx) {{ () }}\n"),
        )
        .unwrap();
    }
    let (ok, out) = run(&["check", "--config", host.config().to_str().unwrap(), "--signatures"]);
    assert!(ok, "slow is said, not refused: {out}");
    assert!(
        out.contains("signature zz_anything makes {\"kafka_server\"} slow to scan: some match needs no literal"),
        "{out}"
    );
    assert!(
        out.contains("signature zz_common makes {\"kafka_server\"} slow to scan") && out.contains("common in logs"),
        "{out}"
    );
    assert!(out.contains("# kafka_server is scanned ("), "what each source is scanned for is shown: {out}");
}

#[test]
fn a_signature_declared_again_with_another_pattern_is_refused_in_the_later_file() {
    let host = Host::new(Options::default());
    for (name, pattern) in
        [("zz_a", "UnknownHostException"), ("zz_b", "UnknownHostException: x"), ("zz_c", "UnknownHostException")]
    {
        std::fs::write(
            host.path(&format!("rules.d/{name}.rhai")),
            format!("fn meta() {{ #{{ runbook: [\"X\"], sources: [\"kafka_server\"], signatures: #{{ zz_same: `{pattern}` }} }} }}\nfn plan(ev, ctx) {{ () }}\n"),
        )
        .unwrap();
    }
    let (ok, out) = check(&host);
    assert!(!ok, "{out}");
    assert!(
        out.contains("zz_b.rhai:1:1: meta(): signature `zz_same` is already declared with another pattern in"),
        "{out}"
    );
    assert!(out.contains("zz_a.rhai"), "names the file that declared it first: {out}");
    assert!(!out.contains("zz_c.rhai:"), "the same pattern again is fine: {out}");
}
