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

use common::lab::{flows, marker, Lab, ShowAudit, HEAL};
use common::zk::Zk;
use common::{Host, BIN};

const ERROR_LOG: &str = "logs/data_sync/data_sync_goldoffice_error.log";
/// A consumer started while no broker ran may take "up to five minutes"
/// to begin consuming once they are back (runbook C5: many consumers and
/// partitions; kafka-clients 3.9.1 here met INVALID_REPLICATION_FACTOR from
/// a broker that did not know the topic yet, and waited out a metadata
/// refresh). Beyond that it is a stall.
const CONSUMER_BEGINS: Duration = Duration::from_secs(420);
const PROPERTIES: &str = "data_sync/consumer.properties";

#[test]
fn kafka_runbook_on_the_real_pipeline() {
    let started = Instant::now();
    let lab = Lab::up(1);
    flows(&lab, "the lab is up");
    let mut timings = Vec::new();
    // LAB_SCENARIOS=C7,K1 runs only the scenarios whose names start so
    // (while working on one; the suite runs them all).
    let only = std::env::var("LAB_SCENARIOS").ok();
    let mut timed = |name: &str, f: &dyn Fn(&Lab)| {
        if only.as_ref().is_some_and(|o| !o.split(',').any(|p| name.starts_with(p.trim()))) {
            return;
        }
        let t = Instant::now();
        f(&lab);
        timings.push(format!("{name}: {:.0} s", t.elapsed().as_secs_f64()));
    };
    // Every `scripts/lab break` first, on the lab as `up` left it (records
    // in one partition, nothing committed in the others): an earlier
    // scenario must not prepare what a person's first `break` meets.
    timed("T2 on a fresh lab: partitions the group never committed in", &t2_on_a_fresh_lab_says_what_it_counts);
    timed("C2 commit failures, failure to lag 0", &c2_commit_failures_lower_max_poll_records);
    timed("C7 backlog, heartbeats late: waited for", &c7_backlog_makes_heartbeats_late_and_the_agent_waits);
    timed("C1 two columns, failure to healthy", &c1_two_missing_columns_added_after_approval);
    timed("K1 a broker's own name unresolvable, failure to registered", &k1_own_host_name_mapped_and_broker_registers);
    timed("T1/T2 against Kafka's own tools", &t1_t2_agree_with_kafkas_own_tools);
    timed("T1 ZooKeeper fallback (every broker stopped and started again)", &t1_falls_back_to_zookeeper);
    timed("C3 graceful stop", &c3_graceful_stop_is_benign);
    timed("K4/C5 whole cluster down, failure to healthy", &k4_c5_whole_cluster_down_starts_leader_first);
    timed("K4 the agent whose turn it is killed, failure to healthy", &|lab| k4_agent_killed_mid_sequence(lab, 2, 2));
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
    lab.wait("every partition led, with its full ISR", HEAL, || full_isr(lab));
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

/// bo_01's backlog as the lab counts it (`scripts/lab lag`: Kafka's tool
/// prints "-" for a partition never committed in and counts nothing there).
fn total_lag(lab: &Lab) -> i64 {
    let out = lab.run(&["lag"]);
    out.trim().parse().unwrap_or_else(|_| panic!("scripts/lab lag printed {out:?}"))
}

/// T2 on the lab as `up` left it: `pipemedic kafka lag` names the
/// partitions the group never committed in and counts them from where the
/// lab's consumer begins (auto.offset.reset=earliest), as the lab counts.
fn t2_on_a_fresh_lab_says_what_it_counts(lab: &Lab) {
    let (out, _) = pipemedic(lab, &["kafka", "lag"]);
    let rows = lags(&out, 3);
    let uncommitted: Vec<&String> = rows.iter().filter(|(_, (o, _, _))| o == "-").map(|(p, _)| p).collect();
    eprintln!("fresh lab: partitions without a committed offset: {uncommitted:?}\n{out}");
    if !uncommitted.is_empty() {
        assert!(
            out.contains("offset none: group bo_01 never committed in") && out.contains("auto.offset.reset=earliest"),
            "{out}"
        );
    }
    let total = |text: &str| -> i64 {
        text.lines().find_map(|l| l.strip_prefix("total lag: ")).and_then(|n| n.trim().parse().ok()).unwrap()
    };
    agree("the total lag", || total(&pipemedic(lab, &["kafka", "lag"]).0), || total_lag(lab));
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

/// C7: a real backlog (a burst of rows the slowed consumer takes a minute
/// or two to work off) makes every heartbeat late; the heartbeat watch says
/// it is a backlog and waits: no canal rewind is planned, nothing asked.
fn c7_backlog_makes_heartbeats_late_and_the_agent_waits(lab: &Lab) {
    let mut agent = lab.agent(false, vec!["dba@example.com"]);
    // Lab-sized thresholds: late after 30 s, a backlog from 1000 messages.
    let config = agent.read("pipemedic.toml").replace("missing_secs = 180", "missing_secs = 30")
        + "\n[rules.m1_heartbeats]\nbacklog_lag = 1000\n\n[rules.n3_fake_dead_source]\nbacklog_lag = 1000\n";
    std::fs::write(agent.config(), config).unwrap();
    agent.start_agent();
    let _show = ShowAudit(agent.path("state/audit.jsonl"));
    lab.run(&["break", "C7"]);
    let t = Instant::now();
    let late =
        |d: &serde_json::Value| ["m1_heartbeats", "n3_fake_dead_source"].contains(&d["rule"].as_str().unwrap_or(""));
    let d = agent.wait_decision_where(HEAL, |d| late(d) && d["decision"] != "no-plan");
    assert_eq!(d["decision"], "applied", "{d:#}");
    let summary = d["summary"].as_str().unwrap();
    assert!(summary.contains("backlog") && summary.contains("C7"), "{d:#}");
    lab.wait("bo_01's lag back to 0", Duration::from_secs(600), || total_lag(lab) == 0);
    flows(lab, "after the backlog");
    eprintln!("C7: backlog to lag 0 and rows flowing in {:.0} s", t.elapsed().as_secs_f64());
    let rewinds: Vec<_> = agent.audit().into_iter().filter(|e| e.to_string().contains("canal rewind")).collect();
    assert!(rewinds.is_empty(), "a backlog is no reason to rewind canal: {rewinds:#?}");
    assert!(agent.audit_of_kind("approval-requested").is_empty());
    let text = lab.read(PROPERTIES).replace("sync.record.delay.ms=40", "sync.record.delay.ms=0");
    std::fs::write(lab.path(PROPERTIES), text).unwrap();
    agent.stop_agent();
}

/// The three broker "hosts"' agents (broker 1's is the lab's main agent,
/// which also watches the consumer), started, each announced for K4.
fn broker_agents(lab: &Lab, zk: &Zk) -> Vec<Host> {
    let mut agents: Vec<Host> =
        ["agent", "broker2", "broker3"].iter().map(|dir| lab.agent_of(dir, false, vec![])).collect();
    for a in &mut agents {
        a.start_agent();
    }
    lab.wait("the three agents announced under /pipemedic/kafka/agents", HEAL, || {
        (1..=3).all(|id| zk.get(&format!("/pipemedic/kafka/agents/{id}")).is_some())
    });
    agents
}

/// The whole cluster goes down: brokers 2, 3, then 1 stopped (so broker 1
/// is the last leader of every partition); the consumer restarts while no
/// broker runs (a deploy, a person), which arms the stall watch (C5).
fn whole_cluster_down(lab: &Lab) {
    for id in [2, 3, 1] {
        lab.run_script(&format!("kafka/{id}/bin/kafka-server-stop.sh"));
    }
    lab.run_script("data_sync/stop.sh");
    lab.run_script("data_sync/start.sh");
}

/// When each broker last logged that it started (its server.log's own
/// timestamp, `[yyyy-mm-dd hh:mm:ss,mmm]`), as text that sorts by time.
fn last_start(lab: &Lab, id: u32) -> Option<String> {
    let log = lab.read(&format!("kafka/{id}/logs/server.log"));
    let line = log.lines().rev().find(|l| l.contains("started (kafka.server.KafkaServer)"))?;
    Some(line.get(1..24)?.to_string())
}

fn seconds_between(a: &str, b: &str) -> f64 {
    let t = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S,%3f").unwrap();
    (t(b) - t(a)).num_milliseconds() as f64 / 1000.0
}

/// Every partition led, its ISR full: what the brokers' metadata says.
fn full_isr(lab: &Lab) -> bool {
    let (out, err) = pipemedic(lab, &["kafka", "leaders"]);
    let parts = leaders(&out);
    err.contains("from the brokers' metadata")
        && parts.len() == 3
        && parts.values().all(|(leader, replicas, isr)| leader != "none" && replicas == isr)
}

/// The group's committed offset per partition.
fn committed(lab: &Lab) -> BTreeMap<String, i64> {
    lags(&lab.run(&["groups"]), 3).into_iter().filter_map(|(p, (o, _, _))| Some((p, o.parse().ok()?))).collect()
}

/// K4/M2 with C5: the three brokers stop, the consumer restarts and
/// consumes nothing; the stall diagnosis on the consumer's host finds the
/// brokers unregistered, and the three hosts' agents start them leader-first,
/// one at a time, each stable before the next. Nothing committed is lost.
fn k4_c5_whole_cluster_down_starts_leader_first(lab: &Lab) {
    let zk = Zk::connect(&format!("127.0.0.1:{}", lab.port("ZK_PORT")));
    let mut agents = broker_agents(lab, &zk);
    let _show: Vec<ShowAudit> = agents.iter().map(|a| ShowAudit(a.path("state/audit.jsonl"))).collect();
    let before = committed(lab);
    whole_cluster_down(lab);
    let t = Instant::now();
    let during: Vec<i64> = (0..3).map(|i| marker() + i).collect();
    for &m in &during {
        lab.insert_order("ix_trade", m);
    }

    let d = agents[0].wait_decision_where(HEAL, |d| d["rule"] == "c5_stall" && d["decision"] != "no-plan");
    assert_eq!(d["decision"], "applied", "{d:#}");
    let text = d.to_string();
    for reasoning in ["nothing consumed", "has parse lines", "brokers 1, 2, 3 are not registered"] {
        assert!(text.contains(reasoning), "{reasoning}: {d:#}");
    }
    assert!(text.contains("order 1, 2, 3"), "broker 1 led every partition last: {d:#}");
    lab.wait("every partition led with its full ISR", HEAL, || full_isr(lab));

    // The order, in the agents' journals and in the brokers' own logs.
    for (i, a) in agents.iter().enumerate() {
        let turns = a.audit_of_kind("kafka-turn");
        assert!(turns.iter().any(|e| e.to_string().contains(&format!("broker {}'s turn", i + 1))), "{turns:#?}");
    }
    let starts: Vec<String> = (1..=3).map(|id| last_start(lab, id).expect("a start line")).collect();
    for pair in starts.windows(2) {
        let gap = seconds_between(&pair[0], &pair[1]);
        assert!(
            gap >= 5.0,
            "the next broker started {gap} s after the previous one, before it was stable for 5 s: {starts:?}"
        );
    }

    // The consumer resumes where it committed; the rows written during the
    // outage arrive.
    lab.wait_rows("the rows written while the brokers were down", "ix_trade", &during, CONSUMER_BEGINS);
    eprintln!("K4/C5: failure to rows flowing in {:.0} s", t.elapsed().as_secs_f64());
    let after = committed(lab);
    for (p, o) in &before {
        assert!(after.get(p).is_some_and(|a| a >= o), "partition {p}: committed {o} before, {:?} after", after.get(p));
    }
    flows(lab, "after the leader-first restart");
    for a in &mut agents {
        a.stop_agent();
    }
}

/// K4: during a leader-first sequence, when the turn names broker `turn`,
/// the agent of broker `victim` is killed. The coordinator goes on: every
/// other broker starts, leader first. The victim's broker is up if its agent
/// started it before dying; else the coordinator skips it (its agent is
/// gone), says so, and a person starts it.
fn k4_agent_killed_mid_sequence(lab: &Lab, turn: u32, victim: u32) {
    let zk = Zk::connect(&format!("127.0.0.1:{}", lab.port("ZK_PORT")));
    // Fresh agents: the previous scenario's restart is in its cooldown.
    let mut agents = broker_agents(lab, &zk);
    let _show: Vec<ShowAudit> = agents.iter().map(|a| ShowAudit(a.path("state/audit.jsonl"))).collect();
    whole_cluster_down(lab);
    let t = Instant::now();
    lab.wait(&format!("broker {turn}'s turn"), HEAL, || {
        // A C5 decided before the turn came was not the broker-down branch
        // (whose apply hands out the turns): say which it was, now.
        if let Some(d) = agents[0].decisions("c5_stall").into_iter().find(|d| d["decision"] != "no-plan") {
            panic!("C5 decided before broker {turn}'s turn: {d:#}");
        }
        zk.get("/pipemedic/kafka/turn")
            .is_some_and(|(data, _)| String::from_utf8_lossy(&data).contains(&format!("\"broker\":{turn}")))
    });
    agents[victim as usize - 1].kill_agent();
    let d = agents[0].wait_decision_where(HEAL, |d| {
        d["rule"] == "c5_stall" && ["applied", "failed"].contains(&d["decision"].as_str().unwrap_or(""))
    });
    let text = d.to_string();
    for id in (1..=3).filter(|id| *id != victim) {
        assert!(zk.get(&format!("/brokers/ids/{id}")).is_some(), "broker {id} was not started: {d:#}");
    }
    let victim_up = zk.get(&format!("/brokers/ids/{victim}")).is_some();
    match victim_up {
        true => assert_eq!(d["decision"], "applied", "{d:#}"),
        false => {
            assert_eq!(d["decision"], "failed", "{d:#}");
            assert!(text.contains(&format!("broker {victim}")) && text.contains("start them by hand"), "{d:#}");
        }
    }
    assert!(zk.get("/pipemedic/kafka/turn").is_none(), "no turn left behind");
    eprintln!(
        "K4, broker {victim}'s agent killed on broker {turn}'s turn: the others finished in {:.0} s ({}; broker {victim} {})",
        t.elapsed().as_secs_f64(),
        d["decision"],
        if victim_up { "was started before its agent died" } else { "skipped" }
    );
    if !victim_up {
        lab.run_script(&format!("kafka/{victim}/bin/kafka-server-start.sh"));
    }
    lab.wait("every partition led with its full ISR", HEAL, || full_isr(lab));
    let m = marker();
    lab.insert_order("ix_trade", m);
    lab.wait_rows("a row written after an agent died mid-sequence", "ix_trade", &[m], CONSUMER_BEGINS);
    flows(lab, "after an agent died mid-sequence");
    for a in agents.iter_mut().filter(|a| a.running()) {
        a.stop_agent();
    }
}

/// K1: broker 4 runs as host ip-10-98-2-33 in a private mount and UTS
/// namespace whose /etc/hosts is its agent's hosts file, which does not map
/// that name. The real broker fails at startup with UnknownHostException;
/// pipemedic maps the name to the address it spells, restarts the broker
/// gracefully, and the broker registers in ZooKeeper under that name. The
/// machine's own /etc/hosts is never touched.
fn k1_own_host_name_mapped_and_broker_registers(lab: &Lab) {
    const NAME: &str = "ip-10-98-2-33";
    let zk = Zk::connect(&format!("127.0.0.1:{}", lab.port("ZK_PORT")));
    let machine_hosts = std::fs::read("/etc/hosts").unwrap();
    let mut agent = lab.agent_of("broker4", false, vec![]);
    agent.start_agent();
    let _show = ShowAudit(agent.path("state/audit.jsonl"));
    lab.run(&["break", "K1"]);
    let t = Instant::now();
    let log = "kafka/4/logs/server.log";
    lab.wait("broker 4's UnknownHostException", HEAL, || {
        let out = lab.read("kafka/4/logs/kafkaServer.out");
        assert!(!out.contains("unshare failed"), "the private namespace was refused: {out}");
        lab.count(log, "UnknownHostException") > 0
    });
    lab.keep(log, "UnknownHostException", "kafka-3.9.1_unknown_own_host_name.log");
    let d = agent.wait_decision_where(HEAL, |d| d["rule"] == "k1_unknown_host");
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert_eq!(d["captures"]["host"], NAME, "{d:#}");
    assert!(lab.read("kafka/4/hosts").contains(&format!("10.98.2.33\t{NAME}")), "{}", lab.read("kafka/4/hosts"));
    lab.wait("broker 4 registered under its name", HEAL, || {
        zk.get("/brokers/ids/4").is_some_and(|(data, _)| String::from_utf8_lossy(&data).contains(NAME))
    });
    eprintln!("K1: failure to broker 4 registered in {:.0} s", t.elapsed().as_secs_f64());
    assert_eq!(std::fs::read("/etc/hosts").unwrap(), machine_hosts, "the machine's /etc/hosts changed");
    agent.stop_agent();
    // Broker 4 holds no replica; the others cannot resolve its name.
    lab.run_script("kafka/4/bin/kafka-server-stop.sh");
}
