//! The Kafka and consumer side of the runbook on the real software (the lab:
//! three Kafka 3.9.1 brokers in ZooKeeper mode, the kafka-clients 3.9.1
//! consumer writing through Druid and pgjdbc 42.7.8 to PostgreSQL). The real
//! pipemedic daemon heals what `scripts/lab break` injects; approvals go
//! through the real mail and approval page.
//!
//! One lab for the whole binary; the scenarios run one after the other and
//! each leaves the pipeline flowing.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::lab::{flows, Lab, ShowAudit, HEAL};
use common::BIN;

const ERROR_LOG: &str = "logs/data_sync/data_sync_goldoffice_error.log";
const PROPERTIES: &str = "data_sync/consumer.properties";

#[test]
fn kafka_runbook_on_the_real_pipeline() {
    let started = Instant::now();
    let lab = Lab::up(1);
    flows(&lab, "the lab is up");
    let mut timings = Vec::new();
    let mut timed = |name: &str, f: &dyn Fn(&Lab)| {
        let t = Instant::now();
        f(&lab);
        timings.push(format!("{name}: {:.0} s", t.elapsed().as_secs_f64()));
    };
    timed("T1/T2 against Kafka's own tools", &t1_t2_agree_with_kafkas_own_tools);
    timed("T1 ZooKeeper fallback (every broker stopped and started again)", &t1_falls_back_to_zookeeper);
    timed("C3 graceful stop", &c3_graceful_stop_is_benign);
    timed("C1 two columns, failure to healthy", &c1_two_missing_columns_added_after_approval);
    timed("C2 commit failures, failure to lag 0", &c2_commit_failures_lower_max_poll_records);
    eprintln!("{}\nKafka scenarios on the lab: {:.0} s", timings.join("\n"), started.elapsed().as_secs_f64());
}

/// `pipemedic ARGS --config` on the lab's agent configuration: (stdout, stderr).
fn pipemedic(lab: &Lab, args: &[&str]) -> (String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(lab.path("agent/pipemedic.toml"))
        .output()
        .expect("running pipemedic");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pipemedic {args:?}: {stdout}{stderr}");
    (stdout.into_owned(), stderr.into_owned())
}

/// `Key: value` fields of a describe line, split on tabs.
fn fields(line: &str) -> BTreeMap<String, String> {
    line.split('\t')
        .filter_map(|f| f.trim().split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Partition → (leader, sorted replicas, sorted ISR) from a describe output.
fn leaders(text: &str) -> BTreeMap<String, (String, String, String)> {
    let sorted = |s: &str| {
        let mut v: Vec<&str> = s.split(',').collect();
        v.sort();
        v.join(",")
    };
    text.lines()
        .map(fields)
        .filter(|f| f.contains_key("Partition") && f.contains_key("Leader"))
        .map(|f| (f["Partition"].clone(), (f["Leader"].clone(), sorted(&f["Replicas"]), sorted(&f["Isr"]))))
        .collect()
}

/// Partition → (committed offset, log end, lag) of bo_01, from whitespace columns.
fn lags(text: &str, offset_col: usize) -> BTreeMap<String, (String, String, String)> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() > offset_col + 2 && c[0] == "bo_01" && c[2].parse::<u32>().is_ok())
        .map(|c| {
            // No committed offset: Kafka's tool prints "-" for the offset and
            // the lag, pipemedic "none" and the lag it would have (the log end).
            let committed = !matches!(c[offset_col], "-" | "none");
            let (offset, lag) = if committed { (c[offset_col], c[offset_col + 2]) } else { ("-", "-") };
            (c[2].to_string(), (offset.to_string(), c[offset_col + 1].to_string(), lag.to_string()))
        })
        .collect()
}

/// Polls `ours` and `theirs` back to back until they agree (offsets move
/// with every heartbeat): the agreement is what is asserted.
fn agree<T: PartialEq + std::fmt::Debug>(what: &str, mut ours: impl FnMut() -> T, mut theirs: impl FnMut() -> T) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (a, b) = (ours(), theirs());
        if a == b {
            return a;
        }
        assert!(Instant::now() < deadline, "{what}: pipemedic says\n{a:#?}\nKafka's own tool says\n{b:#?}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// T1/T2: `pipemedic kafka leaders` and `kafka lag` agree, partition by
/// partition, with kafka-topics --describe and kafka-consumer-groups --describe.
fn t1_t2_agree_with_kafkas_own_tools(lab: &Lab) {
    let parts =
        agree("leaders", || leaders(&pipemedic(lab, &["kafka", "leaders"]).0), || leaders(&lab.run(&["topics"])));
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert!(parts.values().all(|(leader, replicas, isr)| leader != "none" && replicas == isr), "{parts:?}");
    // pipemedic: Group Topic Pid Offset logSize Lag; Kafka: GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG.
    let lag = agree("lag", || lags(&pipemedic(lab, &["kafka", "lag"]).0, 3), || lags(&lab.run(&["groups"]), 3));
    assert_eq!(lag.len(), 3, "{lag:?}");
}

/// T1 with every broker stopped: `leaders` answers from ZooKeeper's
/// partition state, which is what the brokers left there.
fn t1_falls_back_to_zookeeper(lab: &Lab) {
    for id in 1..=3 {
        lab.run_script(&format!("kafka/{id}/bin/kafka-server-stop.sh"));
    }
    let (out, err) = pipemedic(lab, &["kafka", "leaders"]);
    assert!(err.contains("from ZooKeeper's partition state"), "{err}");
    let zk = common::zk::Zk::connect(&format!("127.0.0.1:{}", lab.port("ZK_PORT")));
    let ours = leaders(&out);
    assert_eq!(ours.len(), 3, "{out}");
    for (partition, (leader, _, isr)) in &ours {
        let (data, _) =
            zk.get(&format!("/brokers/topics/TABLE_IX_TRADE_ALL_BASE/partitions/{partition}/state")).unwrap();
        let state: serde_json::Value = serde_json::from_slice(&data).unwrap();
        let zk_leader = state["leader"].as_i64().unwrap();
        assert_eq!(leader, &if zk_leader < 0 { "none".to_string() } else { zk_leader.to_string() }, "{out}");
        let mut zk_isr: Vec<String> = state["isr"].as_array().unwrap().iter().map(|v| v.to_string()).collect();
        zk_isr.sort();
        assert_eq!(isr, &zk_isr.join(","), "{out}");
    }
    for id in 1..=3 {
        lab.run_script(&format!("kafka/{id}/bin/kafka-server-start.sh"));
    }
    lab.wait("every partition led, with its full ISR", HEAL, || {
        let (out, err) = pipemedic(lab, &["kafka", "leaders"]);
        let parts = leaders(&out);
        err.contains("from the brokers' metadata")
            && parts.len() == 3
            && parts.values().all(|(leader, replicas, isr)| leader != "none" && replicas == isr)
    });
    flows(lab, "after the brokers came back");
}

/// C3: a graceful stop wakes the consumer; the real WakeupException is
/// logged, and pipemedic records it as benign and does nothing.
fn c3_graceful_stop_is_benign(lab: &Lab) {
    let mut agent = lab.agent(false, vec![]);
    agent.start_agent();
    let _show = ShowAudit(agent.path("state/audit.jsonl"));
    lab.run_script("data_sync/stop.sh");
    lab.wait("the WakeupException", HEAL, || lab.count(ERROR_LOG, "WakeupException") > 0);
    lab.keep(ERROR_LOG, "WakeupException", "kafka-clients-3.9.1_wakeup_on_shutdown.log");
    let d = agent.wait_decision_where(HEAL, |d| d["rule"] == "c3_wakeup");
    assert_eq!(d["decision"], "benign", "{d:#}");
    assert!(d["steps"].as_array().unwrap().is_empty(), "{d:#}");
    lab.run_script("data_sync/start.sh");
    flows(lab, "after C3");
    agent.stop_agent();
}

fn item_user_column(lab: &Lab, db: &str, column: &str) -> Option<String> {
    let mut pg = lab.pg(db);
    let row = pg
        .query_opt(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 't_item_user' AND column_name = $1",
            &[&column],
        )
        .unwrap();
    row.map(|r| r.get(0))
}

/// C1: two columns added in MySQL; the consumer's real batch insert fails
/// with pgjdbc's real error, once per column; each is added to both
/// databases after approval, and the row arrives in both.
fn c1_two_missing_columns_added_after_approval(lab: &Lab) {
    let mut agent = lab.agent(false, vec!["dba@example.com"]);
    agent.start_agent();
    let _show = ShowAudit(agent.path("state/audit.jsonl"));
    lab.run(&["break", "C1"]);
    for n in 0..2 {
        let mail = lab.wait_mail(&agent, n + 1, "approve C1");
        // The consumer names the columns in no fixed order: the mail says which.
        let missing = ["review", "score"].iter().find(|c| mail.text.contains(&format!("\"{c}\""))).unwrap();
        let fixture = format!("pgjdbc-42.7.8_postgresql-15_missing_column_{}.log", n + 1);
        lab.keep(ERROR_LOG, &format!("column \"{missing}\" of relation"), &fixture);
        agent.approve(&mail);
        for db in ["trade_ix", "admin"] {
            lab.wait(&format!("{missing} in {db}"), HEAL, || item_user_column(lab, db, missing).is_some());
        }
    }
    assert_eq!(item_user_column(lab, "trade_ix", "review").as_deref(), Some("character varying"));
    assert_eq!(item_user_column(lab, "admin", "score").as_deref(), Some("integer"));
    for db in ["trade_ix", "admin"] {
        lab.wait(&format!("the row in {db}"), HEAL, || {
            let mut pg = lab.pg(db);
            let n: i64 = pg
                .query_one("SELECT count(*) FROM t_item_user WHERE review = 'fine' AND score = 7", &[])
                .unwrap()
                .get(0);
            n == 1
        });
    }
    flows(lab, "after C1");
    agent.stop_agent();
}

fn property(lab: &Lab, key: &str) -> Option<String> {
    lab.read(PROPERTIES).lines().find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

fn total_lag(lab: &Lab) -> i64 {
    lags(&lab.run(&["groups"]), 3).values().filter_map(|(_, _, lag)| lag.parse::<i64>().ok()).sum()
}

/// C2: a consumer slower than max.poll.interval.ms allows; kafka-clients
/// throws CommitFailedException again and again; pipemedic lowers
/// max.poll.records and restarts the consumer gracefully; the failures stop
/// and the lag returns to 0.
fn c2_commit_failures_lower_max_poll_records(lab: &Lab) {
    let mut agent = lab.agent(false, vec![]);
    agent.start_agent();
    let _show = ShowAudit(agent.path("state/audit.jsonl"));
    lab.run(&["break", "C2"]);
    let t = Instant::now();
    lab.wait("5 CommitFailedExceptions", HEAL, || lab.count(ERROR_LOG, "CommitFailedException") >= 5);
    lab.keep(ERROR_LOG, "CommitFailedException", "kafka-clients-3.9.1_commit_failed.log");
    let d = agent.wait_decision_where(HEAL, |d| d["rule"] == "c2_commit_failed" && d["decision"] != "no-plan");
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert_eq!(property(lab, "max.poll.records").as_deref(), Some("250"));
    let failures = lab.count(ERROR_LOG, "CommitFailedException");
    lab.wait("bo_01's lag back to 0", Duration::from_secs(600), || total_lag(lab) == 0);
    eprintln!("C2: {:.0} s from the break to lag 0", t.elapsed().as_secs_f64());
    // The restart may still meet one in-flight failure; none once it ran.
    assert!(lab.count(ERROR_LOG, "CommitFailedException") <= failures + 3, "the failures went on");
    // The lab's own knob back, for whatever runs next.
    let text = lab.read(PROPERTIES).replace("sync.record.delay.ms=30", "sync.record.delay.ms=0");
    std::fs::write(lab.path(PROPERTIES), text).unwrap();
    agent.stop_agent();
}
