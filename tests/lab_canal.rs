//! The canal side of the runbook proven on the real software (the lab:
//! MariaDB, ZooKeeper, canal server 1.1.4, the canal-client monitor, Kafka
//! 3.9 in ZooKeeper mode, the kafka-clients consumer, PostgreSQL). The real
//! pipemedic daemon heals what `scripts/lab break` injects, with approvals
//! answered through the real mail and approval page.
//!
//! One lab for the whole binary: the scenarios run one after the other on
//! it (each leaves the pipeline flowing), each with an agent of its own.

mod common;

use std::time::{Duration, Instant};

use common::lab::{duplicates, flows, heartbeats, marker, Lab, ShowAudit, FLOW, HEAL, MONITOR_LOG, SOURCES};
use pipemedic::clients::canal::CanalCursor;

const RULE: &str = "n3_n4_n6_binlog_position";
const CANAL_LOG: &str = "canal/logs/canal/canal.log";
const QUOTE_LOG: &str = "canal/logs/ix_quote/ix_quote.log";

fn cursor_of(lab: &Lab, source: &str) -> (Vec<u8>, i32) {
    let zk = common::zk::Zk::connect(&format!("127.0.0.1:{}", lab.port("ZK_PORT")));
    zk.get(&format!("/otter/canal/destinations/{source}/1001/cursor")).expect("a cursor canal wrote")
}

#[test]
fn canal_runbook_on_the_real_pipeline() {
    let started = Instant::now();
    let lab = Lab::up(1);
    flow(&lab);
    let dry = n4_dry_run_changes_nothing(&lab);
    n4_purged_binlog_healed(&lab, dry);
    n6_position_past_the_end_healed(&lab);
    n1_canal_killed_is_started_again(&lab);
    eprintln!("canal scenarios on the lab: {:.0} s", started.elapsed().as_secs_f64());
}

/// Flow: a row inserted in each source is in both databases within 30 s;
/// both sources' heartbeats are in the monitor's log.
fn flow(lab: &Lab) {
    let m = marker();
    let t = Instant::now();
    for s in SOURCES {
        lab.insert_order(s, m);
    }
    for s in SOURCES {
        lab.wait_rows(&format!("a row of {s}"), s, &[m], Duration::from_secs(30));
    }
    eprintln!("flow: a row of each source in both databases after {:.1} s", t.elapsed().as_secs_f64());
    for s in SOURCES {
        lab.wait(&format!("{s}'s heartbeat in the monitor's log"), FLOW, || {
            lab.count(MONITOR_LOG, &format!("heartbeat parsed source={s}")) > 0
        });
    }
    assert!(lab.run(&["status"]).contains("flow: ok"));
}

/// N4 in dry-run, in staging: the preview names the exact cursor it would
/// write; ZooKeeper, canal and PostgreSQL are left as they are. Returns the
/// markers of rows written after the purge.
fn n4_dry_run_changes_nothing(lab: &Lab) -> Vec<i64> {
    // Rows for the break to update and delete with the purged binlogs.
    let synced: Vec<i64> = (0..2).map(|i| marker() + 10 + i).collect();
    for &m in &synced {
        lab.insert_order("ix_quote", m);
    }
    lab.wait_rows("two more rows of ix_quote", "ix_quote", &synced, FLOW);
    let mut agent = lab.agent(true, vec![]);
    agent.start_agent();
    let _show = ShowAudit(agent.path("state/audit.jsonl"));
    lab.run(&["break", "N4"]);
    // Rows written after the purge: the rewind must bring them.
    let after: Vec<i64> = (0..3).map(|i| marker() + i).collect();
    for &m in &after {
        lab.insert_order("ix_quote", m);
    }
    lab.wait("canal's errno 1236 for ix_quote", HEAL, || lab.count(QUOTE_LOG, "errno = 1236") > 0);
    lab.keep(QUOTE_LOG, "errno = 1236", "canal-1.1.4_mariadb-10.11_errno1236_purged.log");
    let d = agent.wait_decision(RULE, 1);
    // Dangerous, and the staging agent has no approvers: it says what it
    // would write and that a person would have to approve it.
    assert_eq!(d["dry_run"], true, "{d:#}");
    assert_eq!(d["decision"], "needs-approval", "{d:#}");
    let pid = lab.read("canal/bin/canal.pid");
    let (before, version) = cursor_of(lab, "ix_quote");

    // The preview names the cursor it would write: ix_quote at the start of
    // its oldest binlog, ix_trade at the start of the binlog holding that time.
    let oldest = lab.mysql("ix_quote", "SHOW BINARY LOGS");
    let oldest = oldest.split_whitespace().next().unwrap();
    let preview = d["steps"][1]["preview"].as_str().unwrap();
    let expected = CanalCursor { journal: oldest.into(), position: 4, ..CanalCursor::parse(&before).unwrap() };
    let expected = expected.render();
    let written = preview.lines().find(|l| l.contains("after:") && l.contains("\"port\":") && l.contains(oldest));
    let written = written.unwrap_or_else(|| panic!("no cursor for {oldest} in:\n{preview}"));
    let prefix = &expected[..expected.find("\"timestamp\"").unwrap()];
    assert!(written.contains(prefix), "{written}\nexpected {expected}");
    assert!(preview.contains("DATA LOSS on this source"), "{preview}");

    // Nothing changed: the cursor, the running canal, the audit's decisions.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(cursor_of(lab, "ix_quote"), (before.clone(), version), "dry-run wrote ZooKeeper");
    assert_eq!(lab.read("canal/bin/canal.pid"), pid, "dry-run touched canal");
    assert!(agent.audit().iter().filter(|e| e["kind"] == "decision").all(|d| d["dry_run"] == true));

    // The reconcile a staging agent's operator runs: it names the rows
    // the purge took (and those stuck behind canal), and writes nothing.
    let lost = Lost::of(lab);
    let report = reconcile(&agent, &["--recheck-after", "0"]);
    let t = pair(&report, "ix_quote", "admin");
    assert!(keys(t, "missing").contains(&lost.inserted), "{t:#}");
    assert_eq!(keys(t, "differing"), vec![lost.updated.clone()], "{t:#}");
    assert_eq!(keys(t, "extra"), vec![lost.deleted.clone()], "{t:#}");
    assert_eq!(cursor_of(lab, "ix_quote"), (before, version), "a reconcile writes nothing");
    agent.stop_agent();
    after
}

/// The rows `scripts/lab break N4` changed in the binlogs it purged.
struct Lost {
    inserted: String,
    updated: String,
    deleted: String,
}

impl Lost {
    fn of(lab: &Lab) -> Lost {
        let text = lab.read("N4.lost");
        let get = |k: &str| {
            text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string).unwrap_or_default()
        };
        let lost = Lost { inserted: get("inserted"), updated: get("updated"), deleted: get("deleted") };
        assert!(!lost.inserted.is_empty() && !lost.updated.is_empty() && !lost.deleted.is_empty(), "{text}");
        lost
    }
}

/// `pipemedic reconcile --table t_order --format json` with the agent's configuration.
fn reconcile(agent: &common::Host, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(common::BIN)
        .args(["reconcile", "--table", "t_order", "--format", "json", "--config"])
        .arg(agent.config())
        .args(args)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert!(report["tables"].as_array().unwrap().iter().all(|t| t["error"].is_null()), "{report:#}");
    report
}

fn pair<'a>(report: &'a serde_json::Value, source: &str, target: &str) -> &'a serde_json::Value {
    report["tables"].as_array().unwrap().iter().find(|t| t["source"] == source && t["target"] == target).unwrap()
}

fn keys(t: &serde_json::Value, kind: &str) -> Vec<String> {
    t[kind].as_array().unwrap().iter().map(|k| k[0].as_str().unwrap().to_string()).collect()
}

/// N4: canal's cursor names a purged binlog; pipemedic asks for approval,
/// stops canal, rewinds, starts canal; canal takes the cursor it wrote and
/// every row written after the rewind time reaches PostgreSQL.
fn n4_purged_binlog_healed(lab: &Lab, after_purge: Vec<i64>) {
    let mut agent = lab.agent(false, vec!["dba@example.com", "lead@example.com"]);
    agent.start_agent();
    let _show = ShowAudit(agent.path("state/audit.jsonl"));
    let mail = agent.wait_mails(1).remove(0);
    assert!(mail.text.contains("/otter/canal/destinations/ix_quote/1001/cursor"), "{}", mail.text);
    let beats = heartbeats(lab, "ix_quote");
    let dup_before = duplicates(lab);
    agent.approve(&mail);
    agent.wait_decision_where(HEAL, |d| d["rule"] == RULE && d["decision"] == "applied");

    // canal read the cursor pipemedic wrote: "find start position" at position 4.
    let (cursor, _) = cursor_of(lab, "ix_quote");
    let c = CanalCursor::parse(&cursor).unwrap();
    lab.wait("canal resuming ix_quote from the rewound cursor", HEAL, || {
        lab.read(QUOTE_LOG).lines().any(|l| l.contains("find start position successfully") && l.contains("position=4,"))
    });
    lab.wait_rows("the rows written after the purge", "ix_quote", &after_purge, HEAL);
    flows(lab, "after N4");
    lab.wait("ix_quote's heartbeats back", HEAL, || heartbeats(lab, "ix_quote") > beats);
    eprintln!(
        "N4: healed; ix_quote restarted at {}:{}; duplicates from the replay: {}",
        c.journal,
        c.position,
        duplicates(lab) - dup_before
    );

    // What the rewind could not bring back: the audit names the gap and
    // the tables; the reconcile finds exactly the rows the purge took.
    let fix = agent.decisions(RULE).into_iter().find(|d| d["decision"] == "applied").unwrap();
    let result = fix["steps"][1]["result"].as_str().unwrap();
    assert!(result.contains("gap on [mysql.ix_quote] (destination ix_quote)"), "{result}");
    assert!(result.contains("tables to reconcile: t_item_user, t_order"), "{result}");
    let lost = Lost::of(lab);
    let report = reconcile(&agent, &[]);
    for db in ["trade_ix", "admin"] {
        let t = pair(&report, "ix_quote", db);
        assert_eq!(
            (keys(t, "missing"), keys(t, "differing"), keys(t, "extra")),
            (vec![lost.inserted.clone()], vec![lost.updated.clone()], vec![lost.deleted.clone()]),
            "{t:#}"
        );
        assert_eq!(
            pair(&report, "ix_trade", db)["counts"],
            serde_json::json!({"missing": 0, "extra": 0, "differing": 0})
        );
    }

    // By itself, once every source beats again: the agent reconciles and
    // proposes the repair; the extra row makes it a data-loss plan, two
    // different approvers.
    let plan = agent
        .wait_decision_where(HEAL, |d| d["rule"] == "reconcile_after_fixes" && d["decision"] == "awaiting-approval");
    assert_eq!(plan["risk"], "data-loss", "{plan:#}");
    let preview = plan["steps"][0]["preview"].as_str().unwrap();
    for db in ["trade_ix", "admin"] {
        assert!(
            preview.contains(&format!("[ix_quote] trade.t_order → [{db}] public.t_order: upsert 2 row(s) (1 missing, 1 differing), DELETE 1 extra row(s)")),
            "{preview}"
        );
    }
    assert!(preview.contains(&format!("missing: (id={})", lost.inserted)), "{preview}");
    let mut repair = Vec::new();
    lab.wait("the repair's mails to both approvers", HEAL, || {
        repair = agent.mails().into_iter().filter(|m| m.text.contains("repair of t_order")).collect();
        repair.len() >= 2
    });
    for m in &repair[..2] {
        agent.approve(m);
    }
    agent.wait_decision_where(HEAL, |d| {
        d["rule"] == "reconcile_after_fixes" && d["decision"] == "applied" && d["risk"] == "data-loss"
    });
    let report = reconcile(&agent, &[]);
    for db in ["trade_ix", "admin"] {
        for source in SOURCES {
            assert_eq!(
                pair(&report, source, db)["counts"],
                serde_json::json!({"missing": 0, "extra": 0, "differing": 0}),
                "{report:#}"
            );
        }
    }
    eprintln!(
        "N4: the reconcile found inserted {}, updated {}, deleted {}; repaired in both databases",
        lost.inserted, lost.updated, lost.deleted
    );
    agent.stop_agent();
}

/// N6: the stored position is past the end of its binlog and MariaDB
/// restarted into a new one; pipemedic moves the cursor to the new binlog.
fn n6_position_past_the_end_healed(lab: &Lab) {
    // The break stops and starts canal itself: the agent comes after it (an
    // agent watching would restart the canal it stopped, see the N1 note).
    let seen = lab.count(QUOTE_LOG, "errno = 1236");
    lab.run(&["break", "N6"]);
    let mut agent = lab.agent(false, vec!["dba@example.com"]);
    agent.start_agent();
    let _show = ShowAudit(agent.path("state/audit.jsonl"));
    lab.wait("canal's errno 1236 for the position past the end", HEAL, || lab.count(QUOTE_LOG, "errno = 1236") > seen);
    lab.keep(QUOTE_LOG, "start replication from", "canal-1.1.4_mariadb-10.11_errno1236_past_end.log");
    let mail = agent.wait_mails(1).remove(0);
    assert!(mail.text.contains("position 4"), "{}", mail.text);
    agent.approve(&mail);
    agent.wait_decision_where(HEAL, |d| d["rule"] == RULE && d["decision"] == "applied");
    flows(lab, "after N6");
    agent.stop_agent();
}

/// N1: canal dies hard, its pid file stays; the monitor says "no alive
/// canal server"; pipemedic removes the stale pid file and starts canal.
fn n1_canal_killed_is_started_again(lab: &Lab) {
    let mut agent = lab.agent(false, vec![]);
    agent.start_agent();
    let _show = ShowAudit(agent.path("state/audit.jsonl"));
    let seen = lab.count(MONITOR_LOG, "no alive canal server");
    lab.run(&["break", "N1"]);
    lab.wait("the monitor's 'no alive canal server'", HEAL, || lab.count(MONITOR_LOG, "no alive canal server") > seen);
    lab.keep(MONITOR_LOG, "no alive canal server", "canal.client-1.1.4_no_alive_canal_server.log");
    let d = agent.wait_decision_where(HEAL, |d| d["rule"] == "n1_no_alive_canal" && d["decision"] == "applied");
    assert!(d["steps"].to_string().contains("canal"), "{d:#}");
    lab.wait("canal running again", HEAL, || lab.count(CANAL_LOG, "the canal server is running now") >= 2);
    flows(lab, "after N1");
    agent.stop_agent();
}
