//! A backlog of multi-line records, read in bounded passes: each record is
//! decided whole, however the passes fall. A pass ends at its budget, often
//! in the middle of a record; the rest is in the file, not late, so the
//! time the worker spends between two passes must never end the record.
//! (A cut K1 start-up failure left its bare `Fatal error during KafkaServer
//! startup` line to M2, which then planned the restart K1 forbids.)

mod common;

use std::time::Duration;

use common::{k1_incident, Host, Options};
use serde_json::Value;

/// Decisions of `rule` written or counted in a summary (the agent is stopped).
fn decided(host: &Host, rule: &str) -> u64 {
    let summed: u64 = host
        .audit()
        .iter()
        .filter(|e| e["kind"] == "decision-summary" && e["rule"] == rule)
        .map(|s| s["repeated"].as_u64().unwrap())
        .sum();
    host.decisions(rule).len() as u64 + summed
}

/// A wake-up of exactly 512 bytes whose first line is 256: behind a
/// 256-byte first record, every multiple of 512 in the file, and so every
/// end of a read chunk and of a pass, falls just after a record's first
/// line, the one place a pass's end can be taken for the record's.
fn aligned_wakeup() -> String {
    let head =
        "2026-11-25 10:00:00.001 [pool-2-thread-3] WARN  c.g.datasync.consumer.ConsumerThread - consumer woken up";
    let cause = "org.apache.kafka.common.errors.WakeupException: woken";
    let frame = "\tat org.apache.kafka.clients.consumer.KafkaConsumer.poll(KafkaConsumer.java:1000)\n";
    let text = format!(
        "{head}{:.<w1$}\n{cause}{:.<w2$}\n{frame}",
        "",
        "",
        w1 = 255 - head.len(),
        w2 = 255 - cause.len() - frame.len()
    );
    assert_eq!((text.len(), text.find('\n')), (512, Some(255)));
    text
}

/// A whole file appears at once, as a backlog does: no reader can see part
/// of a write, so every record in it is whole at any settle.
fn appear(host: &Host, log: &str, text: &str) {
    let part = host.path("backlog.part");
    std::fs::write(&part, text).unwrap();
    std::fs::rename(&part, host.path(log)).unwrap();
}

#[test]
fn backlogs_of_multi_line_records_are_decided_whole_however_the_passes_fall() {
    let mut host = Host::new(Options { dry_run: true, ..Options::default() });
    // The shortest settle: a pass that ended at a whole line and was then
    // taken for quiet would cut the record at once.
    host.edit_config("record_settle_ms = 200", "record_settle_ms = 1");
    host.start_agent();

    // The broker's log: many K1 failures, then a marker.
    const K1S: usize = 8_000;
    let marker = k1_incident("ip-10.98.2.250");
    appear(&host, "logs/server.log", &(k1_incident("ip-10.98.2.33").repeat(K1S) + marker.as_str()));
    // The consumer's error log: wake-ups laid out so that every pass ends
    // inside one of them.
    const WAKEUPS: usize = 8_000;
    let first = format!("{:.<255}\n", "2026-11-25 09:59:59.000 [main] INFO  c.g.datasync.consumer.Main - started ");
    appear(&host, "logs/error.log", &(first.clone() + aligned_wakeup().repeat(WAKEUPS).as_str()));

    host.wait_decision_where(Duration::from_secs(300), |d| d["captures"]["host"] == "ip-10.98.2.250");
    // The error log is read whole once its checkpoint is at its end (the
    // last record handed out, nothing pending).
    let end = std::fs::metadata(host.path("logs/error.log")).unwrap().len();
    host.wait_until("the error log's backlog read", || {
        std::fs::read_to_string(host.path("state/checkpoints.json"))
            .ok()
            .and_then(|c| serde_json::from_str::<Value>(&c).ok())
            .is_some_and(|c| c["sources"]["consumer_error"]["offset"] == end)
    });
    host.stop_agent(); // writes the running summaries

    assert_eq!(decided(&host, "k1_unknown_host"), K1S as u64 + 1, "every K1 failure decided as one record");
    assert_eq!(decided(&host, "c3_wakeup"), WAKEUPS as u64, "every wake-up decided as one record");
    // Whatever else decided a record (M2 looks at every fatal broker line)
    // saw it whole, and planned nothing.
    let whole = [k1_incident("ip-10.98.2.33"), marker, aligned_wakeup(), first];
    for d in host.audit().iter().filter(|e| e["kind"] == "decision") {
        let record = d["record"].as_str().unwrap();
        assert!(whole.iter().any(|w| w.trim_end() == record), "a record decided in pieces: {d:#}");
        if d["rule"] != "k1_unknown_host" {
            assert_eq!(d["steps"], serde_json::json!([]), "a plan beside K1's: {d:#}");
        }
    }
}

/// The same backlogs written live, in many writes back to back, into every
/// source that has multi-line records: each record is decided whole.
#[test]
fn records_written_in_many_writes_into_every_source_are_decided_whole() {
    let mut host = Host::new(Options { dry_run: true, ..Options::default() });
    host.start_agent();
    let no_route = "2026-11-25 10:00:00.001 [destination = ix_a , address = /10.0.0.9:3306 , EventParser] ERROR c.a.otter.canal.parse.inbound.mysql.MysqlEventParser - dump address /10.0.0.9:3306 has an error, retrying. caused by \n\
java.net.NoRouteToHostException: No route to host (Host unreachable)\n\
\tat java.net.PlainSocketImpl.socketConnect(Native Method)\n";
    const WRITES: usize = 40;
    const EACH: usize = 100;
    for _ in 0..WRITES {
        host.append("logs/server.log", &k1_incident("ip-10.98.2.33").repeat(EACH));
        host.append("logs/error.log", &aligned_wakeup().repeat(EACH));
        host.append("logs/canal_instance.log", &no_route.repeat(EACH));
    }
    let marker = k1_incident("ip-10.98.2.250");
    host.append("logs/server.log", &marker);
    host.wait_decision_where(Duration::from_secs(300), |d| d["captures"]["host"] == "ip-10.98.2.250");
    for (source, log) in [("consumer_error", "logs/error.log"), ("canal_instance", "logs/canal_instance.log")] {
        let end = std::fs::metadata(host.path(log)).unwrap().len();
        host.wait_until(&format!("the backlog of {log} read"), || {
            std::fs::read_to_string(host.path("state/checkpoints.json"))
                .ok()
                .and_then(|c| serde_json::from_str::<Value>(&c).ok())
                .is_some_and(|c| c["sources"][source]["offset"] == end)
        });
    }
    host.stop_agent();

    assert_eq!(decided(&host, "k1_unknown_host"), (WRITES * EACH) as u64 + 1);
    assert_eq!(decided(&host, "c3_wakeup"), (WRITES * EACH) as u64);
    assert_eq!(decided(&host, "n2_no_route"), (WRITES * EACH) as u64);
    let whole = [k1_incident("ip-10.98.2.33"), marker, aligned_wakeup(), no_route.to_string()];
    for d in host.audit().iter().filter(|e| e["kind"] == "decision") {
        let record = d["record"].as_str().unwrap();
        assert!(whole.iter().any(|w| w.trim_end() == record), "a record decided in pieces: {d:#}");
    }
}
