//! What the real software printed in the lab runs (tests/fixtures/lab, one
//! file per wording, named after the software and version that printed it)
//! is recognised by the rule meant for it: each file goes through
//! `pipemedic replay` as the source that logs it.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Host, Options, BIN, REPO};

/// fixture file, the source that logs it, the rule that must answer it, and
/// how many times the record is replayed (C2 acts on the fifth in 10 min).
const FIXTURES: &[(&str, &str, &str, usize)] = &[
    ("canal-1.1.4_mariadb-10.11_errno1236_purged.log", "canal_instance", "n3_n4_n6_binlog_position", 1),
    ("canal-1.1.4_mariadb-10.11_errno1236_past_end.log", "canal_instance", "n3_n4_n6_binlog_position", 1),
    ("canal.client-1.1.4_no_alive_canal_server.log", "monitor", "n1_no_alive_canal", 1),
    ("canal-1.1.4_mariadb-10.11_alter_table_undecodable.log", "canal_instance", "z_unexplained", 1),
    ("kafka-clients-3.9.1_wakeup_on_shutdown.log", "consumer_error", "c3_wakeup", 1),
    ("kafka-clients-3.9.1_commit_failed.log", "consumer_error", "c2_commit_failed", 5),
    ("pgjdbc-42.7.8_postgresql-15_missing_column_1.log", "consumer_error", "c1_schema_drift", 1),
    ("pgjdbc-42.7.8_postgresql-15_missing_column_2.log", "consumer_error", "c1_schema_drift", 1),
    ("kafka-3.9.1_unknown_own_host_name.log", "kafka_server", "k1_unknown_host", 1),
];

#[test]
fn every_wording_the_lab_printed_is_answered_by_its_rule() {
    let host = Host::new(Options::default());
    for (file, source, rule, times) in FIXTURES {
        let fixture = Path::new(REPO).join("tests/fixtures/lab").join(file);
        assert!(fixture.exists(), "{} is missing: run the lab tests with LAB_KEEP_FIXTURES=1", fixture.display());
        let path = host.path(file);
        std::fs::write(&path, std::fs::read_to_string(&fixture).unwrap().repeat(*times)).unwrap();
        let out = Command::new(BIN)
            .args(["replay", "--config", host.config().to_str().unwrap(), "--source", source, "--format", "json"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let rules: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|d| d["decision"] != "no-plan")
            .filter_map(|d| d["rule"].as_str().map(String::from))
            .collect();
        assert!(rules.iter().any(|r| r == rule), "{file}: {rule} did not answer; decisions by {rules:?}\n{text}");
    }
}
