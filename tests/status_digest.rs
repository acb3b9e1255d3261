//! `pipemedic status` (the runbook's daily look on one screen) and the daily
//! digest mail (the same over 24 hours), from a real agent's state.

mod common;

use std::process::Command;

use common::{k1_incident, Host, Options, BIN};

const HEARTBEAT: &str = r#"
[heartbeat]
source = "consumer_info"
pattern = 'heartbeat consumed source=(?<source>\w+)'
expected = ["ix_trade", "ix_quote"]
missing_secs = 3600
"#;

fn beat(host: &Host, source: &str) {
    host.append(
        "logs/info.log",
        &format!("2026-11-25 10:00:00.000 [pool-2-thread-1] INFO  c.g.datasync.consumer.HeartbeatHandler - heartbeat consumed source={source} table=t_heartbeat ts=1\n"),
    );
}

fn status(host: &Host, args: &[&str]) -> String {
    let out = Command::new(BIN).arg("status").arg("--config").arg(host.config()).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn status_shows_freshness_heartbeats_approvals_actions_and_breakers() {
    let mut host = Host::new(Options { extra: HEARTBEAT.into(), ..Default::default() });
    host.start_agent();
    for _ in 0..3 {
        beat(&host, "ix_trade");
    }
    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    host.wait_decision("k1_unknown_host", 1);
    let size = std::fs::metadata(host.path("logs/info.log")).unwrap().len();
    host.wait_until("the heartbeats to be read (checkpointed)", || {
        let cp: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(host.path("state/checkpoints.json")).unwrap_or_default())
                .unwrap_or_default();
        cp["sources"]["consumer_info"]["offset"] == size
    });
    host.stop_agent();

    let text = status(&host, &[]);
    assert!(text.contains("agent NOT RUNNING?"), "the stopped agent is noticed:\n{text}");
    assert!(text.lines().any(|l| l.trim_start().starts_with("kafka_server") && l.contains(" ago")), "{text}");
    assert!(text.lines().any(|l| l.contains("ix_trade") && l.contains("    3 of 60")), "{text}");
    assert!(text.lines().any(|l| l.contains("ix_quote") && l.contains("missing beats")), "{text}");
    assert!(text.contains("Pending approvals: 0"), "{text}");
    assert!(text.lines().any(|l| l.contains("k1_unknown_host") && l.contains("applied")), "{text}");
    assert!(text.contains("Open circuit breakers: none"), "{text}");
}

#[test]
fn the_daily_digest_is_mailed_once_a_day() {
    let mut host = Host::new(Options {
        extra: format!("{HEARTBEAT}\n[digest]\nat = \"00:00\"\n"),
        approvers: vec!["ops1@example.com"],
        ..Default::default()
    });
    host.start_agent();
    let mails = host.wait_mails(1);
    let digest = &mails[0];
    assert!(digest.subject().contains("daily digest"), "{}", digest.subject());
    assert_eq!(digest.to, ["oncall@example.com"]);
    assert!(digest.text.contains("Heartbeats per hour: ix_trade / ix_quote"), "{}", digest.text);
    assert!(digest.text.contains("What the agent did in the last 24 h"), "{}", digest.text);

    // A restart the same day does not send it again.
    host.stop_agent();
    host.start_agent();
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert_eq!(host.mails().len(), 1);
}
