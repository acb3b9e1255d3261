//! A rule can be wrong or hostile. Whatever it does — sleep, spin on
//! expensive operations, fail — it becomes a `rule-error` decision within the
//! rule's time budget, and the daemon goes on with the next record.

mod common;

use std::process::Command;

use common::{k1_incident, Host, Options, BIN};

fn rule(sig: &str, signature: &str, body: &str) -> String {
    format!(
        "// test rule\nfn meta() {{ #{{ runbook: [\"X\"], sources: [\"consumer_error\"], signatures: #{{ {sig}: `{signature}` }} }} }}\nfn plan(ev, ctx) {{ {body} }}\n"
    )
}

#[test]
fn sleeping_and_spinning_rules_become_rule_errors_and_the_daemon_goes_on() {
    let mut host = Host::new(Options { dry_run: true, ..Options::default() });
    let rules = [
        ("forever", "SLEEP FOREVER", "sleep(1e300); ()"),
        ("nap", "SLEEP A BIT", "sleep(5); ()"),
        ("spin", "SPIN", "let a = []; loop { a.pad(10000, \"xxxxxxxx\"); a.clear(); }"),
    ];
    for (name, signature, body) in rules {
        std::fs::write(host.path(&format!("rules.d/{name}.rhai")), rule(name, signature, body)).unwrap();
    }
    host.start_agent();
    for (name, signature, _) in rules {
        host.append("logs/error.log", &format!("2026-11-25 10:00:00.000 ERROR {signature}\n"));
        let d = host.wait_decision(name, 1);
        assert_eq!(d["decision"], "rule-error", "{d:#}");
        let reason = d["reason"].as_str().unwrap();
        let want = if name == "spin" { "time budget" } else { "rules cannot sleep" };
        assert!(reason.contains(want) && reason.contains(&format!("{name}.rhai")), "{name}: {reason}");
    }
    // The same lines again after a restart: no crash loop on the record.
    host.stop_agent();
    host.start_agent();
    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    assert_eq!(host.wait_decision("k1_unknown_host", 1)["decision"], "dry-run");
    assert_eq!(host.decisions("forever").len(), 1, "a decided record is not decided again");
    host.stop_agent();
}

#[test]
fn unlimited_rule_budgets_are_refused_by_check() {
    let host = Host::new(Options::default());
    for (key, value) in [("rule_max_operations", 0), ("rule_max_ms", 0)] {
        let text = std::fs::read_to_string(host.config()).unwrap();
        let bad = host.path(&format!("{key}.toml"));
        std::fs::write(&bad, text.replace("[limits]\n", &format!("[limits]\n{key} = {value}\n"))).unwrap();
        let out = Command::new(BIN).args(["check", "--config", bad.to_str().unwrap()]).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        assert!(!out.status.success(), "{key} = 0 passed check: {said}");
        assert!(said.contains("must be at least 1") && said.contains(&format!("{key}.toml")), "{said}");
    }
}
