//! `kill -9` at any moment: a restart decides no record twice, re-runs no
//! plan, and reports a plan that was cut off in the middle.

mod common;

use std::collections::HashMap;

use common::{wakeup_incident, Host, Options};

#[test]
fn a_kill_in_the_middle_of_a_burst_decides_no_record_twice() {
    let mut host = Host::new(Options::default());
    host.start_agent();
    const N: usize = 4000;
    host.append("logs/error.log", &wakeup_incident().repeat(N));
    host.wait_until("some of the burst decided", || host.decisions("c3_wakeup").len() >= 200);
    host.kill_agent();
    let before = host.decisions("c3_wakeup").len();
    host.start_agent();
    host.wait_until("the whole burst decided", || host.decisions("c3_wakeup").len() >= N);
    let mut per_offset: HashMap<u64, usize> = HashMap::new();
    for d in host.decisions("c3_wakeup") {
        *per_offset.entry(d["offset"].as_u64().unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = per_offset.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "decided twice (killed after {before} of {N}): {twice:?}");
    assert_eq!(per_offset.len(), N, "every record decided");
    host.stop_agent();
}

const SLOW_PLAN: &str = r#"// Test rule: an edit, then a start that takes long.
fn meta() { #{ runbook: ["C2"], sources: ["consumer_error"], signatures: #{ slow: `SLOW FIX` } } }
fn plan(ev, ctx) {
    #{ summary: "lower, then start slow", risk: "safe",
       steps: [property_lower("consumer", "max.poll.records", 0.5, 50, 500), service_start("slow")] }
}
"#;

#[test]
fn a_plan_cut_off_by_a_kill_is_reported_and_never_run_again() {
    let mut host = Host::new(Options {
        extra: "\n[services.slow]\nstart = [\"/bin/sleep\", \"30\"]\nstop = [\"/bin/true\"]\nprocess = { pid_file = \"bin/run/slow.pid\" }\nstart_timeout_secs = 60\n".into(),
        ..Options::default()
    });
    std::fs::write(host.path("rules.d/slow.rhai"), SLOW_PLAN).unwrap();
    host.start_agent();
    host.append("logs/error.log", "2026-11-25 10:00:00.000 ERROR SLOW FIX\n");
    host.wait_until("step 1 done and step 2 under way", || !host.audit_of_kind("plan-step").is_empty());
    host.kill_agent();
    assert!(host.decisions("slow").is_empty(), "the decision was never written: the agent died first");
    let lowered = host.read("consumer.properties");
    assert!(lowered.contains("max.poll.records=250"), "{lowered}");

    host.start_agent();
    host.wait_until("the interrupted plan reported", || !host.audit_of_kind("plan-interrupted").is_empty());
    let report = &host.audit_of_kind("plan-interrupted")[0];
    let text = report["summary"].as_str().unwrap();
    assert!(text.contains("step 1 (properties consumer:max.poll.records)") && text.contains("start slow"), "{text}");
    assert!(text.contains("Nothing is re-run"), "{text}");
    // A marker: everything before it has been read again.
    host.append("logs/error.log", "2026-11-25 10:00:01.000 ERROR SLOW FIX\n");
    host.wait_decision("slow", 1);
    let d = &host.decisions("slow")[0];
    assert!(d["offset"].as_u64().unwrap() > 0, "the first line was not decided again: {d:#}");
    // The marker's own plan is held back by the cooldown the cut-off plan
    // started (its attempt counted before its first step).
    assert_eq!(d["decision"], "rate-limited", "{d:#}");
    assert_eq!(host.audit_of_kind("plan-started").len(), 1, "the cut-off plan was not started again");
    assert_eq!(host.read("consumer.properties"), lowered, "not lowered a second time");
    host.stop_agent();
}

#[test]
fn a_torn_last_journal_line_is_ended_and_the_next_entries_stay_readable() {
    let mut host = Host::new(Options::default());
    let torn = common::TORN_ENTRY;
    std::fs::write(host.path("state/audit.jsonl"), torn).unwrap();
    host.start_agent();
    host.append("logs/error.log", &wakeup_incident());
    let lines = || {
        let text = std::fs::read_to_string(host.path("state/audit.jsonl")).unwrap();
        text[..text.rfind('\n').map_or(0, |i| i + 1)].lines().map(str::to_string).collect::<Vec<_>>()
    };
    host.wait_until("the wakeup decided after the torn line", || {
        lines().iter().skip(1).any(|l| l.contains("\"kind\":\"decision\"") && l.contains("c3_wakeup"))
    });
    let lines = lines();
    assert_eq!(lines[0], torn, "the torn bytes are kept on a line of their own");
    for l in &lines[1..] {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("unreadable entry {l:?}: {e}"));
    }
    host.stop_agent();
}

#[test]
fn corrupt_checkpoints_resume_from_the_journal_and_say_what_is_lost() {
    let mut host = Host::new(Options::default());
    host.start_agent();
    host.append("logs/error.log", &wakeup_incident());
    host.wait_decision("c3_wakeup", 1);
    host.stop_agent();
    // Written while the agent is down, then its checkpoints are torn.
    host.append("logs/error.log", &wakeup_incident().repeat(100));
    let checkpoints = host.path("state/checkpoints.json");
    let text = std::fs::read(&checkpoints).unwrap();
    std::fs::write(&checkpoints, &text[..text.len() / 2]).unwrap();
    host.start_agent();
    host.wait_until("the 100 records written while stopped decided", || host.decisions("c3_wakeup").len() >= 101);
    let mut offsets: Vec<u64> = host.decisions("c3_wakeup").iter().map(|d| d["offset"].as_u64().unwrap()).collect();
    offsets.dedup();
    assert_eq!(offsets.len(), 101, "each record decided once");
    let recovered = host.audit_of_kind("state-recovered");
    assert!(
        recovered.iter().any(|e| {
            let d = e["detail"].as_str().unwrap();
            d.contains("consumer_error") && d.contains("was unreadable") && d.contains("resumed")
        }),
        "{recovered:#?}"
    );
    // A source the journal never decided a record of cannot be recovered:
    // that is said, per source, as lines missed.
    let missed = host.audit_of_kind("lines-missed");
    assert!(
        missed.iter().any(|e| e["detail"].as_str().unwrap().contains("the journal has no decided record")),
        "{missed:#?}"
    );
    let kept = std::fs::read_dir(host.path("state"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("checkpoints.json.unreadable-"))
        .count();
    assert_eq!(kept, 1, "the unreadable file is kept aside");
    host.stop_agent();
}

#[test]
fn an_approved_plan_cut_off_by_a_kill_ends_its_approval_as_interrupted() {
    let mut host = Host::new(Options {
        extra: "\n[services.slow]\nstart = [\"/bin/sleep\", \"30\"]\nstop = [\"/bin/true\"]\nprocess = { pid_file = \"bin/run/slow.pid\" }\nstart_timeout_secs = 60\n".into(),
        approvers: vec!["ops1@example.com"],
        ..Options::default()
    });
    std::fs::write(host.path("rules.d/slow.rhai"), SLOW_PLAN.replace("risk: \"safe\"", "risk: \"dangerous\"")).unwrap();
    host.start_agent();
    host.append("logs/error.log", "2026-11-25 10:00:00.000 ERROR SLOW FIX\n");
    let mail = host.wait_mails(1).remove(0);
    let (approve, _) = mail.links();
    let (_, page) = host.get(&approve);
    host.press(&page);
    host.wait_until("step 1 done and step 2 under way", || !host.audit_of_kind("plan-step").is_empty());
    host.kill_agent();
    let id = host.audit_of_kind("approval-requested")[0]["approval"].as_str().unwrap().to_string();
    let file = host.path(&format!("state/approvals/{id}.json"));
    let state = || {
        let text = std::fs::read_to_string(&file).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["state"].as_str().unwrap().to_string()
    };
    assert_eq!(state(), "approved", "killed while applying");

    host.start_agent();
    host.wait_until("the approval ended", || !host.audit_of_kind("approval-interrupted").is_empty());
    assert_eq!(state(), "interrupted");
    let listing = std::process::Command::new(common::BIN)
        .args(["approvals", "--all", "--config", host.config().to_str().unwrap()])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("interrupted") && listing.contains("nothing is re-run"), "{listing}");
    assert_eq!(host.audit_of_kind("plan-started").len(), 1, "not run again");
    // A second start finds nothing left to end.
    host.stop_agent();
    host.start_agent();
    host.append("logs/error.log", &wakeup_incident());
    host.wait_decision("c3_wakeup", 1);
    assert_eq!(host.audit_of_kind("approval-interrupted").len(), 1);
    host.stop_agent();
}
