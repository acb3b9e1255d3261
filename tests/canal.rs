//! Runbook N3, N4, N6 with a real ZooKeeper (canal's nodes seeded exactly as
//! canal writes them) and two real MariaDB sources with binlogs. The test
//! plays canal's part in ZooKeeper: it holds each destination's ephemeral
//! `running` node while the stand-in canal process runs, and lets it go when
//! the stand-in stops (as the session of a stopped canal does).

mod common;

use std::time::{Duration, Instant};

use common::db::MariaDb;
use common::zk::{Zk, ZooKeeper};
use common::{Host, Options};
use pipemedic::clients::canal::CanalCursor;

const CURSOR_A: &str = "/otter/canal/destinations/ix_a/1001/cursor";
const CURSOR_B: &str = "/otter/canal/destinations/ix_b/1001/cursor";

fn cursor(port: u16, journal: &str, position: i64, timestamp: i64) -> String {
    CanalCursor {
        slave_id: -1,
        address: "127.0.0.1".into(),
        port,
        gtid: String::new(),
        journal: journal.into(),
        position,
        server_id: Some(1),
        timestamp,
    }
    .render()
}

fn grant(db: &MariaDb) {
    db.sql("CREATE USER 'canal'@'127.0.0.1' IDENTIFIED BY 'pw'; GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'canal'@'127.0.0.1';");
}

/// Fields drop in order: the agent first, canal's session while ZooKeeper
/// still answers, ZooKeeper after every client.
struct Pipeline {
    host: Host,
    canal_session: Zk,
    zk_server: ZooKeeper,
    a: MariaDb,
    b: MariaDb,
    started: i64,
}

/// Two sources; on B the binlog canal's cursor points at is purged.
fn pipeline(dry_run: bool) -> Pipeline {
    pipeline_with(dry_run, "")
}

fn pipeline_with(dry_run: bool, more: &str) -> Pipeline {
    pipeline_full(dry_run, more, vec!["dba@example.com"])
}

fn pipeline_full(dry_run: bool, more: &str, approvers: Vec<&'static str>) -> Pipeline {
    let started = chrono::Utc::now().timestamp_millis();
    let (a, b) = (MariaDb::start(), MariaDb::start());
    grant(&a);
    grant(&b);
    // Binlog times have one-second resolution: make B's oldest surviving
    // binlog clearly later than A's.
    std::thread::sleep(Duration::from_millis(2100));
    b.sql("FLUSH BINARY LOGS;");
    b.purge_binlogs_to("mysql-bin.000002");

    let zk_server = ZooKeeper::start();
    let seed = zk_server.client();
    seed.put("/otter/canal/cluster/127.0.0.1:11111", b"");
    for (path, port) in [(CURSOR_A, a.port), (CURSOR_B, b.port)] {
        seed.put(path, cursor(port, "mysql-bin.000001", 4, started - 100_000).as_bytes());
    }
    for dest in ["ix_a", "ix_b"] {
        seed.put(&format!("/otter/canal/destinations/{dest}/cluster"), b"");
    }
    let canal_session = zk_server.client();
    for dest in ["ix_a", "ix_b"] {
        canal_session.hold(
            &format!("/otter/canal/destinations/{dest}/running"),
            br#"{"active":true,"address":"127.0.0.1:11111"}"#,
        );
    }

    let extra = canal_extra(&zk_server, &a, &b, "") + more;
    let host = Host::new(Options { approvers, dry_run, extra, ..Options::default() });
    std::fs::write(host.path("mysql.pw"), "pw\n").unwrap();
    // Not canal's default: the agent must read it, not assume 60.
    std::fs::write(host.path("canal.properties"), "canal.instance.fallbackIntervalInSeconds = 30\n").unwrap();
    host.start_service("canal", "logs/canal_instance.log");
    Pipeline { host, zk_server, canal_session, a, b, started }
}

/// The agent's configuration of the sources, ZooKeeper and canal; `canal`
/// goes into the `[canal]` section.
fn canal_extra(zk_server: &ZooKeeper, a: &MariaDb, b: &MariaDb, canal: &str) -> String {
    format!(
        "\n[zookeeper]\nconnect = \"{zk}\"\nsession_timeout_secs = 4\n\
         \n[mysql.src_a]\nhost = \"127.0.0.1\"\nport = {pa}\nuser = \"canal\"\npassword_file = \"mysql.pw\"\nschemas = [\"trade\"]\n\
         \n[mysql.src_b]\nhost = \"127.0.0.1\"\nport = {pb}\nuser = \"canal\"\npassword_file = \"mysql.pw\"\nschemas = [\"trade\"]\n\
         \n[canal]\nservice = \"canal\"\nproperties_files = [\"canal.properties\"]\nstop_wait_secs = 3\n{canal}\
         [canal.destinations.ix_a]\nmysql = \"src_a\"\n[canal.destinations.ix_b]\nmysql = \"src_b\"\n",
        zk = zk_server.connect_string(),
        pa = a.port,
        pb = b.port,
    )
}

const PURGED: &str = "2026-11-25 10:00:00.001 [destination = ix_b , address = /127.0.0.1:3306 , EventParser] ERROR c.a.otter.canal.parse.inbound.mysql.MysqlEventParser - dump address /127.0.0.1:3306 has an error, retrying. caused by \n\
java.io.IOException: Received error packet: errno = 1236, sqlstate = HY000 errmsg = Could not find first log file name in binary log index file\n\
\tat com.alibaba.otter.canal.parse.inbound.mysql.dbsync.DirectLogFetcher.fetch(DirectLogFetcher.java:102)\n";

/// Plays canal's ZooKeeper session: lets the running nodes go once the
/// stand-in canal process has stopped.
fn release_when_stopped(p: &mut Pipeline) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.host.service_pid("canal").is_some() {
        assert!(Instant::now() < deadline, "canal was not stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    p.canal_session.close();
}

#[test]
fn n4_purged_binlog_rewinds_every_cursor_to_a_common_timestamp() {
    let mut p = pipeline_with(false, "[reconcile.tables.t_order]\nsources = [\"src_b\"]\n");
    p.host.start_agent();
    p.host.append("logs/canal_instance.log", PURGED);
    let mail = p.host.wait_mails(1).remove(0);
    let d = p.host.wait_decision("n3_n4_n6_binlog_position", 1);
    assert_eq!(d["decision"], "awaiting-approval", "{d:#}");
    let preview = d["steps"][1]["preview"].as_str().unwrap().to_string();
    assert!(preview.contains("position 4"), "a position every canal version reads: {preview}");
    assert!(preview.contains("DATA LOSS on this source"), "{preview}");
    assert!(preview.contains("version 0"), "{preview}");
    assert!(mail.text.contains("/otter/canal/destinations/ix_b/1001/cursor"));

    let zk = p.zk_server.client();
    let (before_b, _) = zk.get(CURSOR_B).unwrap();
    p.host.approve(&mail);
    release_when_stopped(&mut p);
    let done = p.host.wait_decision("n3_n4_n6_binlog_position", 2);
    assert_eq!(done["decision"], "applied", "{done:#}");
    assert!(
        done["steps"][1]["result"].as_str().unwrap().contains(&String::from_utf8_lossy(&before_b).to_string()),
        "old content kept for a manual restore"
    );
    // What the rewind skipped, and what to reconcile for it (the audit keeps it).
    let result = done["steps"][1]["result"].as_str().unwrap();
    assert!(result.contains("gap on [mysql.src_b] (destination ix_b): skipped from mysql-bin.000001:4"), "{result}");
    assert!(result.contains("tables to reconcile: t_order (pipemedic reconcile --table t_order --since '"), "{result}");
    assert!(!result.contains("gap on [mysql.src_a]"), "A lost nothing: {result}");

    // A's binlog is still there: its cursor is kept. B's is gone: its cursor
    // starts B's oldest binlog.
    let binlogs = |name: &str, port: u16| {
        pipemedic::clients::mysql::list_binlogs(
            name,
            &pipemedic::config::MysqlSource {
                host: "127.0.0.1".into(),
                port,
                user: "canal".into(),
                password_file: Some(p.host.path("mysql.pw")),
                schemas: vec![],
            },
        )
        .unwrap()
    };
    let (logs_a, logs_b) = (binlogs("src_a", p.a.port), binlogs("src_b", p.b.port));
    assert!(logs_b[0].created_ms > p.started, "B's oldest binlog is the new one");
    assert_eq!(logs_a[0].name, "mysql-bin.000001");
    assert_eq!(zk.get(CURSOR_A).unwrap().1, 0, "A's cursor kept");
    let (data, version) = zk.get(CURSOR_B).unwrap();
    assert_eq!(version, 1, "written once, with compare-and-set on version 0");
    let text = String::from_utf8(data).unwrap();
    assert_eq!(text, cursor(p.b.port, &logs_b[0].name, 4, logs_b[0].created_ms), "exact canal shape");
    assert!(text.starts_with(r#"{"@type":"com.alibaba.otter.canal.protocol.position.LogPosition""#));
    p.host.wait_until("canal started again", || p.host.starts("canal") == 2);
    p.host.stop_agent();
}

#[test]
fn n4_cursor_changed_after_the_mail_is_not_overwritten() {
    let mut p = pipeline(false);
    p.host.start_agent();
    p.host.append("logs/canal_instance.log", PURGED);
    let mail = p.host.wait_mails(1).remove(0);
    let zk = p.zk_server.client();
    // Someone moved the cursor the plan writes (a kept cursor may move:
    // canal moves it on with every batch, and the plan leaves it alone).
    let moved = cursor(p.b.port, "mysql-bin.000001", 256, p.started);
    zk.set(CURSOR_B, moved.as_bytes());
    p.host.approve(&mail);
    p.host.wait_until("superseded", || !p.host.audit_of_kind("approval-superseded").is_empty());
    assert_eq!(String::from_utf8(zk.get(CURSOR_B).unwrap().0).unwrap(), moved, "the newer cursor was not overwritten");
    assert!(p.host.service_pid("canal").is_some(), "canal was not stopped for a stale plan");
    p.host.wait_mails(2);
    p.host.stop_agent();
}

#[test]
fn n4_refuses_to_write_while_canal_still_runs() {
    let mut p = pipeline(false);
    p.host.start_agent();
    p.host.append("logs/canal_instance.log", PURGED);
    let mail = p.host.wait_mails(1).remove(0);
    p.host.approve(&mail);
    // The stand-in stops, but "another canal server" keeps the destinations.
    let d = p.host.wait_decision("n3_n4_n6_binlog_position", 2);
    assert_eq!(d["decision"], "failed", "{d:#}");
    assert!(d["reason"].as_str().unwrap().contains("canal still serves"), "{d:#}");
    let zk = p.zk_server.client();
    assert_eq!(zk.get(CURSOR_B).unwrap().1, 0, "nothing written");
    p.host.stop_agent();
}

#[test]
fn n4_dry_run_reads_everything_and_writes_nothing() {
    let mut p = pipeline(true);
    p.host.start_agent();
    p.host.append("logs/canal_instance.log", PURGED);
    let mail = p.host.wait_mails(1).remove(0);
    assert!(mail.subject().contains("DRY RUN"));
    assert!(mail.text.contains("DATA LOSS on this source"), "the dry-run preview read ZooKeeper and the binlogs");
    p.host.approve(&mail);
    let d = p.host.wait_decision("n3_n4_n6_binlog_position", 2);
    assert_eq!(d["decision"], "dry-run");
    let zk = p.zk_server.client();
    assert_eq!(zk.get(CURSOR_A).unwrap().1, 0);
    assert_eq!(zk.get(CURSOR_B).unwrap().1, 0);
    assert!(p.host.service_pid("canal").is_some(), "canal untouched");
    p.host.stop_agent();
}

#[test]
fn n6_new_binlog_after_a_crash_both_branches() {
    let mut p = pipeline(false);
    let zk = p.zk_server.client();
    // A's cursor names A itself; B's cursor names another address (a switch).
    zk.set(CURSOR_B, cursor(1, "mysql-bin.000001", 999, p.started).as_bytes());
    // The binlogs "the restarts created": A's mysql-bin.000002 (B already has a newer one).
    p.a.sql("FLUSH BINARY LOGS;");
    p.host.start_agent();
    for dest in ["ix_a", "ix_b"] {
        p.host.append(
            "logs/canal_instance.log",
            &format!("2026-11-25 10:00:00.001 [destination = {dest} , address = /127.0.0.1:3306 , EventParser] ERROR x - dump address has an error\njava.io.IOException: Received error packet: errno = 1236, sqlstate = HY000 errmsg = Client requested master to start replication from position > file size\n"),
        );
    }
    let mails = p.host.wait_mails(2);
    let a_mail = mails.iter().find(|m| m.text.contains("ix_a/1001/cursor")).unwrap();
    assert!(a_mail.text.contains("start at mysql-bin.000002 position 4"), "{}", a_mail.text);
    let b_mail = mails.iter().find(|m| m.text.contains("ix_b/1001/cursor")).unwrap();
    assert!(b_mail.text.contains("is not 127.0.0.1") && b_mail.text.contains("+ 30 s + 1 s"), "{}", b_mail.text);

    p.host.approve(a_mail);
    release_when_stopped(&mut p);
    p.host.wait_until("A's cursor moved", || zk.get(CURSOR_A).unwrap().1 == 1);
    let a = CanalCursor::parse(&zk.get(CURSOR_A).unwrap().0).unwrap();
    assert_eq!((a.journal.as_str(), a.position), ("mysql-bin.000002", 4));
    p.host.stop_agent();
}

fn beat(host: &Host, source: &str) {
    host.append(
        "logs/info.log",
        &format!("2026-11-25 10:00:00.000 [pool-2-thread-1] INFO  c.g.datasync.consumer.HeartbeatHandler - heartbeat consumed source={source} table=t_heartbeat\n"),
    );
}

#[test]
fn n3_fake_dead_source_asks_for_a_rewind_and_checks_the_heartbeats_return() {
    let heartbeat = "\n[heartbeat]\nsource = \"consumer_info\"\npattern = 'heartbeat consumed source=(?<source>\\w+)'\nexpected = [\"src_a\", \"src_b\"]\nmissing_secs = 2\nreturn_deadline_secs = 2\n";
    let mut p = pipeline_with(false, heartbeat);
    p.host.start_agent();
    let deadline = Instant::now() + Duration::from_secs(30);
    // src_a beats, src_b stays silent.
    while p.host.mails().is_empty() {
        assert!(Instant::now() < deadline, "no fake-dead report");
        beat(&p.host, "src_a");
        std::thread::sleep(Duration::from_millis(500));
    }
    let mail = p.host.mails().remove(0);
    assert!(mail.text.contains("Source src_b sends no heartbeat") && mail.text.contains("N3"), "{}", mail.text);
    let d = p.host.wait_decision("n3_fake_dead_source", 1);
    assert_eq!(d["decision"], "awaiting-approval", "{d:#}");
    assert_eq!(d["captures"]["source"], "src_b");

    p.host.approve(&mail);
    release_when_stopped(&mut p);
    assert_eq!(p.host.wait_decision("n3_fake_dead_source", 2)["decision"], "applied");
    // Only src_a comes back: a person is told src_b did not.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let told = p.host.mails().iter().any(|m| {
            m.to == ["oncall@example.com"] && m.text.contains("src_b") && m.text.contains("still send no heartbeat")
        });
        if told {
            break;
        }
        assert!(Instant::now() < deadline, "no heartbeat_not_back report: {:#?}", p.host.audit());
        beat(&p.host, "src_a");
        std::thread::sleep(Duration::from_millis(500));
    }
    p.host.stop_agent();
}

/// The canal client's complaint when it finds no canal server (N1).
const NO_ALIVE_CANAL: &str = "2026-11-25 10:00:00.001 [main] ERROR c.g.datamonitor.CanalClient - process error!\ncom.alibaba.otter.canal.protocol.exception.CanalClientException: no alive canal server\n";

#[test]
fn n1_no_alive_canal_server_starts_canal_only_when_it_died() {
    let mut p = pipeline(false);
    p.host.start_agent();
    let line = NO_ALIVE_CANAL;
    p.host.append("logs/monitor.log", line);
    assert_eq!(p.host.wait_decision("n1_no_alive_canal", 1)["decision"], "no-change", "canal runs: nothing to do");
    // Stopped cleanly with its own script (which removes the pid file): a
    // person's or a standby's business, not started behind their back.
    std::process::Command::new(p.host.path("bin/standin.sh")).args(["stop", "canal"]).status().unwrap();
    p.host.append("logs/monitor.log", line);
    let d = p.host.wait_decision("n1_no_alive_canal", 2);
    assert_eq!(d["decision"], "no-change", "{d:#}");
    assert!(d["summary"].as_str().unwrap().contains("stopped cleanly"), "{d:#}");
    assert_eq!(p.host.starts("canal"), 1);
    // canal died and left its pid file behind, as after a crash.
    std::fs::write(p.host.path("bin/run/canal.pid"), "999999\n").unwrap();
    p.host.append("logs/monitor.log", line);
    let d = p.host.wait_decision("n1_no_alive_canal", 3);
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert!(d["steps"][0]["result"].as_str().unwrap().contains("removed the stale pid file"), "{d:#}");
    assert_eq!(p.host.starts("canal"), 2);
    p.host.stop_agent();
}

#[test]
fn n2_no_route_probes_the_source_and_tells_a_person() {
    let mut p = pipeline(false);
    p.host.start_agent();
    let closed = common::free_port();
    p.host.append(
        "logs/canal_instance.log",
        &format!("2026-11-25 10:00:00.001 [destination = ix_a , address = /127.0.0.1:{closed} , EventParser] ERROR c.a.o.canal.parse.inbound.mysql.dbsync.DirectLogFetcher - I/O error while reading from client socket\nfailure:java.net.NoRouteToHostException: No route to host\n"),
    );
    let d = p.host.wait_decision("n2_no_route", 1);
    assert_eq!(d["decision"], "applied", "{d:#}");
    let mail = p.host.wait_mails(1).remove(0);
    assert!(mail.text.contains(&format!("127.0.0.1:{closed} is unreachable")), "{}", mail.text);
    assert_eq!(p.host.starts("canal"), 1, "no restart");
    p.host.stop_agent();
}

#[test]
fn canal_status_shows_who_runs_each_destination_and_its_cursor() {
    let p = pipeline(false);
    let out = std::process::Command::new(common::BIN)
        .args(["canal", "status", "--config", p.host.config().to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("destination ix_a") && text.contains("running:  127.0.0.1:11111"), "{text}");
    assert!(text.contains("cursor:   mysql-bin.000001:4"), "{text}");
    assert!(text.contains("WARNING:  the cursor's binlog mysql-bin.000001 is purged on the source"), "{text}");
}

#[test]
fn n3_last_resort_reset_is_an_operator_playbook_needing_two_approvers() {
    let mut p = pipeline_full(false, "", vec!["dba@example.com", "lead@example.com"]);
    p.host.start_agent();
    let out = std::process::Command::new(common::BIN)
        .args([
            "playbook",
            "run",
            "--config",
            p.host.config().to_str().unwrap(),
            "canal-reset",
            "--param",
            "destination=ix_b",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("AwaitingApproval"), "{said}");
    let mails = p.host.wait_mails(2);
    for m in &mails {
        assert!(m.text.contains("THIS PLAN LOSES DATA") && m.text.contains("is never synced"), "{}", m.text);
        assert!(m.text.contains("/otter/canal/destinations/ix_b/1001/cursor"));
    }
    let by = |who: &str| mails.iter().find(|m| m.to == [who.to_string()]).unwrap();
    p.host.approve(by("dba@example.com"));
    std::thread::sleep(Duration::from_millis(500));
    let zk = p.zk_server.client();
    assert!(zk.get(CURSOR_B).is_some(), "one approver is not enough");
    assert!(p.host.service_pid("canal").is_some());
    p.host.approve(by("lead@example.com"));
    release_when_stopped(&mut p);
    p.host.wait_until("the cursor deleted", || zk.get(CURSOR_B).is_none());
    assert!(zk.get(CURSOR_A).is_some(), "only the named destination");
    let d = p.host.wait_decision("playbook:canal-reset", 2);
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert!(d["steps"][1]["result"].as_str().unwrap().contains("old content, to restore by hand"));

    // A forged playbook request is refused.
    let (status, _) = pipemedic::approval::web::request(
        p.host.http.unwrap(),
        "POST",
        "/playbooks/canal-reset",
        Some(&[
            ("params", "{\"destination\":\"ix_a\"}"),
            ("requester", "local:root@x"),
            ("exp", "99999999999999"),
            ("token", "00"),
        ]),
    )
    .unwrap();
    assert_eq!(status, 403);
    assert!(zk.get(CURSOR_A).is_some());
    p.host.stop_agent();
}

// Canal in HA: two hosts, each with its canal server (a stand-in) and its own
// agent, on one ZooKeeper. Host A's canal serves the destinations; B's is
// the standby.

const MEMBERS: &str = "/pipemedic/canal/members";

fn name_host(host: &Host, name: &str) {
    host.edit_config("state_dir = \"state\"\n", &format!("state_dir = \"state\"\nhost_name = \"{name}\"\n"));
}

/// Host A (canal-a) from `pipeline`, and host B (canal-b) beside it.
fn ha_pipeline() -> (Pipeline, Host) {
    let p = pipeline(false);
    p.host.edit_config("stop_wait_secs = 3\n", "stop_wait_secs = 10\nha = true\n");
    name_host(&p.host, "canal-a");
    let b = Host::new(Options {
        approvers: vec!["dba@example.com"],
        extra: canal_extra(&p.zk_server, &p.a, &p.b, "ha = true\n")
            .replace("stop_wait_secs = 3", "stop_wait_secs = 10"),
        ..Options::default()
    });
    name_host(&b, "canal-b");
    std::fs::write(b.path("mysql.pw"), "pw\n").unwrap();
    std::fs::write(b.path("canal.properties"), "canal.instance.fallbackIntervalInSeconds = 30\n").unwrap();
    b.start_service("canal", "logs/canal_instance.log");
    (p, b)
}

fn wait_members(p: &Pipeline, names: &[&str]) {
    let zk = p.zk_server.client();
    p.host
        .wait_until("the agents' canal members", || names.iter().all(|n| zk.get(&format!("{MEMBERS}/{n}")).is_some()));
}

#[test]
fn ha_one_errno_1236_seen_by_two_agents_is_one_approval_and_one_write() {
    let (mut p, mut b) = ha_pipeline();
    p.host.start_agent();
    b.start_agent();
    wait_members(&p, &["canal-a", "canal-b"]);

    p.host.append("logs/canal_instance.log", PURGED);
    let mail = p.host.wait_mails(1).remove(0);
    assert_eq!(p.host.wait_decision("n3_n4_n6_binlog_position", 1)["decision"], "awaiting-approval");
    let zk = p.zk_server.client();
    let claim = String::from_utf8(zk.get("/pipemedic/canal/claim").expect("claimed").0).unwrap();
    assert!(claim.contains("\"host\":\"canal-a\""), "{claim}");
    // The destination moves to B's canal, which meets the same errno 1236.
    b.append("logs/canal_instance.log", PURGED);
    let d = b.wait_decision("n3_n4_n6_binlog_position", 1);
    assert_eq!(d["decision"], "handled-elsewhere", "{d:#}");
    assert!(d["reason"].as_str().unwrap().contains("the agent on canal-a asked for approval"), "{d:#}");

    p.host.approve(&mail);
    release_when_stopped(&mut p);
    let done = p.host.wait_decision("n3_n4_n6_binlog_position", 2);
    assert_eq!(done["decision"], "applied", "{done:#}");
    assert_eq!(zk.get(CURSOR_B).unwrap().1, 1, "written once");
    assert_eq!(zk.get(CURSOR_A).unwrap().1, 0, "kept");
    // B's canal was held stopped for the write and started again after it.
    b.wait_until("B's canal started again", || b.starts("canal") == 2 && b.service_pid("canal").is_some());
    let holds: Vec<String> =
        b.audit_of_kind("canal-hold").iter().map(|e| e["detail"].as_str().unwrap().to_string()).collect();
    assert!(
        holds[0].contains("the agent on canal-a holds every canal stopped") && holds[0].contains("stopped"),
        "{holds:?}"
    );
    assert!(holds[1].contains("the hold of the agent on canal-a is gone"), "{holds:?}");
    p.host.wait_until("A's canal started again", || p.host.starts("canal") == 2);
    assert!(zk.get("/pipemedic/canal/claim").is_none(), "the claim went with the answer");
    assert!(zk.get("/pipemedic/canal/hold").is_none(), "the hold went with the write");
    assert!(b.mails().is_empty() && b.audit_of_kind("approval-requested").is_empty(), "B asked no one");
    assert_eq!(p.host.audit_of_kind("approval-requested").len(), 1);
    b.stop_agent();
    p.host.stop_agent();
}

/// A's agent alone, beside a member that announced itself but never stops
/// its canal (held by the returned client), with its errno 1236 rewind
/// approved: the write is under way, waiting for that member.
fn approved_write_with_a_silent_member() -> (Pipeline, common::zk::Zk) {
    let (mut p, b) = ha_pipeline();
    drop(b);
    let ghost = p.zk_server.client();
    ghost.hold(&format!("{MEMBERS}/canal-ghost"), b"canal-ghost");
    p.host.start_agent();
    wait_members(&p, &["canal-a"]);
    p.host.append("logs/canal_instance.log", PURGED);
    let mail = p.host.wait_mails(1).remove(0);
    p.host.approve(&mail);
    (p, ghost)
}

#[test]
fn ha_write_waits_for_every_member_and_gives_up_on_a_silent_one() {
    let (mut p, _ghost) = approved_write_with_a_silent_member();
    release_when_stopped(&mut p);
    let d = p.host.wait_decision("n3_n4_n6_binlog_position", 2);
    assert_eq!(d["decision"], "failed", "{d:#}");
    assert!(d["reason"].as_str().unwrap().contains("canal-ghost did not report their canal stopped"), "{d:#}");
    let zk = p.zk_server.client();
    assert_eq!(zk.get(CURSOR_B).unwrap().1, 0, "nothing written");
    assert!(zk.get("/pipemedic/canal/hold").is_none(), "the hold was released");
    p.host.stop_agent();
}

/// A's agent alone, its canal held stopped by another host's agent (canal-x,
/// a live member, writing: its session is the returned client).
fn held_by_canal_x() -> (Pipeline, common::zk::Zk) {
    let (mut p, b) = ha_pipeline();
    drop(b);
    let other = p.zk_server.client();
    other.hold(&format!("{MEMBERS}/canal-x"), b"canal-x");
    other.hold("/pipemedic/canal/hold", br#"{"host":"canal-x","token":"0123"}"#);
    p.host.start_agent();
    p.host.wait_until("A's canal held stopped", || p.host.service_pid("canal").is_none());
    release_when_stopped(&mut p);
    (p, other)
}

#[test]
fn ha_another_agents_hold_stops_canal_here_and_refuses_a_second_writer() {
    let (mut p, mut other) = held_by_canal_x();
    let held = p.host.audit_of_kind("canal-hold");
    assert!(held[0]["detail"].as_str().unwrap().contains("the agent on canal-x holds every canal stopped"), "{held:?}");

    // A plan here may not start canal, nor write while the other writes.
    p.host.append("logs/canal_instance.log", PURGED);
    let mail = p.host.wait_mails(1).remove(0);
    p.host.approve(&mail);
    let d = p.host.wait_decision("n3_n4_n6_binlog_position", 2);
    assert_eq!(d["decision"], "failed", "{d:#}");
    assert!(d["reason"].as_str().unwrap().contains("the agent on canal-x is writing canal's cursors now"), "{d:#}");
    assert_eq!(p.zk_server.client().get(CURSOR_B).unwrap().1, 0, "nothing written");
    assert!(p.host.service_pid("canal").is_none(), "not started while held");

    // The other writer is done: canal starts again.
    other.close();
    p.host.wait_until("A's canal started again", || p.host.service_pid("canal").is_some());
    p.host.stop_agent();
}

#[test]
fn ha_a_hold_by_no_live_member_is_not_obeyed_and_a_person_is_told() {
    let (mut p, b) = ha_pipeline();
    drop(b);
    // Written by a session that is no member: a stale or forged hold.
    let forger = p.zk_server.client();
    forger.hold("/pipemedic/canal/hold", br#"{"host":"canal-x","token":"0123"}"#);
    p.host.start_agent();
    wait_members(&p, &["canal-a"]);
    let told = p.host.wait_mails(1).remove(0);
    assert_eq!(told.to, ["oncall@example.com"], "{told:?}");
    assert!(
        told.text
            .contains("this agent does not obey it: no live agent is registered at /pipemedic/canal/members/canal-x"),
        "{}",
        told.text
    );
    let noted = p.host.audit_of_kind("canal-hold");
    assert!(noted.len() == 1 && noted[0]["detail"].as_str().unwrap().contains("does not obey"), "{noted:?}");
    assert!(p.host.service_pid("canal").is_some() && p.host.starts("canal") == 1, "canal keeps running");

    // A hold made persistent outlives any writer: not obeyed either, even
    // with its host a live member.
    drop(forger);
    let mut member_x = p.zk_server.client();
    member_x.hold(&format!("{MEMBERS}/canal-x"), b"canal-x");
    p.zk_server.client().put("/pipemedic/canal/hold", br#"{"host":"canal-x","token":"4567"}"#);
    p.host.wait_until("the persistent hold told", || p.host.mails().len() == 2);
    assert!(p.host.mails()[1].text.contains("is persistent"), "{:?}", p.host.mails()[1]);
    assert!(p.host.service_pid("canal").is_some(), "canal keeps running");
    member_x.close();
    p.host.stop_agent();
}

/// A member that stopped canal for one hold and sees the hold replaced (a
/// new writer, a new token) still knows it stopped canal, and starts it
/// when the last hold goes.
#[test]
fn ha_a_hold_replaced_while_held_keeps_what_this_agent_stopped() {
    let (mut p, mut x) = held_by_canal_x();
    // The node is rewritten in place: another writer's token.
    let mut y = p.zk_server.client();
    y.hold(&format!("{MEMBERS}/canal-y"), b"canal-y");
    y.set("/pipemedic/canal/hold", br#"{"host":"canal-y","token":"89ab"}"#);
    p.host.wait_until("the new hold taken", || p.host.audit_of_kind("canal-hold").len() >= 2);
    let held = p.host.audit_of_kind("canal-hold");
    let second = held[1]["detail"].as_str().unwrap();
    assert!(
        second.contains("the agent on canal-y holds") && second.contains("starts it again when the holds are gone"),
        "{held:?}"
    );
    assert!(p.host.service_pid("canal").is_none(), "still stopped while held");
    x.close();
    p.host.wait_until("A's canal started again", || p.host.service_pid("canal").is_some());
    assert_eq!(p.host.starts("canal"), 2);
    y.close();
    p.host.stop_agent();
}

/// A session as an agent's worker opens it.
fn agent_session(server: &ZooKeeper) -> pipemedic::clients::zk::Session {
    pipemedic::clients::zk::Session::connect(&pipemedic::config::ZooKeeperConfig {
        connect: server.connect_string(),
        session_timeout_secs: 4,
    })
    .unwrap()
}

#[test]
fn ha_claims_lapse_are_replaced_and_are_released_only_by_their_own_approval() {
    use pipemedic::cluster::canal::{claim, release, Claim, Claimed, CLAIM};
    let server = ZooKeeper::start();
    let zk = agent_session(&server);
    let member_a = server.client();
    member_a.hold(&format!("{MEMBERS}/a"), b"a");
    // The cap is counted from when the node was written, by the server's clock.
    let now = chrono::Utc::now().timestamp_millis();
    let ttl = 3_600_000;
    let mine = Claimed::Mine { replaced: None };
    let c = |host: &str, approval: &str, expires: i64| Claim { host: host.into(), approval: approval.into(), expires };
    assert_eq!(claim(&zk, &c("a", "1", now + 10), now, ttl).unwrap(), mine, "free: taken");
    assert_eq!(
        claim(&zk, &c("b", "2", now + 10), now, ttl).unwrap(),
        Claimed::Elsewhere(c("a", "1", now + 10)),
        "held by a"
    );
    assert_eq!(claim(&zk, &c("a", "3", now + 10), now, ttl).unwrap(), mine, "a's own, superseded approval: replaced");
    release(&zk, "1").unwrap();
    assert_eq!(
        claim(&zk, &c("b", "2", now + 10), now, ttl).unwrap(),
        Claimed::Elsewhere(c("a", "3", now + 10)),
        "1 released nothing"
    );
    let Claimed::Mine { replaced: Some(why) } = claim(&zk, &c("b", "2", now + 10), now + 10, ttl).unwrap() else {
        panic!("a lapsed claim is replaced")
    };
    assert!(why.contains("lapsed"), "{why}");
    release(&zk, "2").unwrap();
    assert!(zk.get(CLAIM).unwrap().is_none(), "released by its own approval");
    let raw = server.client();
    raw.put(CLAIM, b"\x00not a claim");
    assert!(
        matches!(claim(&zk, &c("b", "4", now + 10), now, ttl).unwrap(), Claimed::Mine { .. }),
        "garbage is nobody's"
    );
}

#[test]
fn ha_a_claim_left_by_a_host_that_does_not_exist_does_not_silence_the_agents() {
    let (mut p, b) = ha_pipeline();
    drop(b);
    p.zk_server
        .client()
        .put("/pipemedic/canal/claim", br#"{"host":"canal-gone","approval":"0f0f","expires":32503680000000}"#);
    p.host.start_agent();
    wait_members(&p, &["canal-a"]);
    p.host.append("logs/canal_instance.log", PURGED);
    let d = p.host.wait_decision("n3_n4_n6_binlog_position", 1);
    assert_eq!(d["decision"], "awaiting-approval", "{d:#}");
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains("the claim of \"canal-gone\" (no live agent is registered"), "{reason}");
    assert_eq!(p.host.wait_mails(1)[0].to, ["dba@example.com"]);
    let claim = String::from_utf8(p.zk_server.client().get("/pipemedic/canal/claim").unwrap().0).unwrap();
    assert!(claim.contains("\"host\":\"canal-a\""), "{claim}");
    p.host.stop_agent();
}

/// What another agent wrote is obeyed only while it is owned and bounded.
#[test]
fn ha_a_claim_by_no_live_member_or_for_ever_binds_no_one() {
    use pipemedic::cluster::canal::{claim, Claim, Claimed, CLAIM};
    let server = ZooKeeper::start();
    let zk = agent_session(&server);
    let raw = server.client();
    let now = chrono::Utc::now().timestamp_millis();
    let ttl = 3_600_000;
    let year_3000 = 32_503_680_000_000_i64;
    let b = Claim { host: "b".into(), approval: "b1".into(), expires: now + ttl };
    let write = |data: String| match raw.get(CLAIM) {
        Some(_) => raw.set(CLAIM, data.as_bytes()),
        None => raw.put(CLAIM, data.as_bytes()),
    };
    let replaced = |expect: &str| match claim(&zk, &b, now, ttl).unwrap() {
        Claimed::Mine { replaced: Some(why) } => assert!(why.contains(expect), "{why}"),
        other => panic!("expected the claim replaced ({expect}), got {other:?}"),
    };
    // A host that does not exist, until the year 3000.
    write(format!(r#"{{"host":"ghost","approval":"g1","expires":{year_3000}}}"#));
    replaced("no live agent is registered at /pipemedic/canal/members/ghost");
    // A live member's claim for ever is capped at this agent's own expiry.
    let mut member_a = server.client();
    member_a.hold(&format!("{MEMBERS}/a"), b"a");
    write(format!(r#"{{"host":"a","approval":"a1","expires":{year_3000}}}"#));
    let Claimed::Elsewhere(held) = claim(&zk, &b, now, ttl).unwrap() else { panic!("a live member's claim binds") };
    assert!(held.expires <= chrono::Utc::now().timestamp_millis() + ttl, "capped: {held:?}");
    let Claimed::Mine { replaced: Some(why) } = claim(&zk, &b, held.expires + 1, ttl).unwrap() else {
        panic!("a capped claim lapses")
    };
    assert!(why.contains("capped at this agent's approval expiry"), "{why}");
    // A member that is gone: its claim goes with it.
    write(format!(r#"{{"host":"a","approval":"a2","expires":{}}}"#, now + ttl));
    assert!(matches!(claim(&zk, &b, now, ttl).unwrap(), Claimed::Elsewhere(_)));
    member_a.close();
    write(format!(r#"{{"host":"a","approval":"a3","expires":{}}}"#, now + ttl));
    replaced("no live agent is registered at /pipemedic/canal/members/a");
    // Oversized, or naming no host or approval.
    write(format!(r#"{{"host":"a","approval":"a4","expires":1,"pad":"{}"}}"#, "x".repeat(20_000)));
    replaced("more than the 16384 an agent writes");
    write(format!(r#"{{"host":"../x y","approval":"a5","expires":{year_3000}}}"#));
    replaced("it names no host");
}

#[test]
fn n1_a_stop_script_still_removing_the_pid_file_is_a_clean_stop_not_a_crash() {
    let mut p = pipeline(false);
    p.host.start_agent();
    std::process::Command::new(p.host.path("bin/standin.sh")).args(["stop", "canal"]).status().unwrap();
    // canal's stop.sh looks once a second whether the process has exited and
    // removes the pid file only then: the monitor can complain in between.
    let pid_file = p.host.path("bin/run/canal.pid");
    std::fs::write(&pid_file, "999999\n").unwrap();
    let script = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(900));
        std::fs::remove_file(pid_file).unwrap();
    });
    p.host.append("logs/monitor.log", NO_ALIVE_CANAL);
    let d = p.host.wait_decision("n1_no_alive_canal", 1);
    script.join().unwrap();
    assert_eq!(d["decision"], "no-change", "{d:#}");
    assert!(d["summary"].as_str().unwrap().contains("stopped cleanly"), "{d:#}");
    assert_eq!(p.host.starts("canal"), 1, "not started behind the stop script's back");
    p.host.stop_agent();
}

#[test]
fn ha_a_kill_during_an_approved_write_releases_the_claim_at_the_next_start() {
    let (mut p, _ghost) = approved_write_with_a_silent_member();
    p.host.wait_until("the approved write under way", || !p.host.audit_of_kind("plan-started").is_empty());
    p.host.kill_agent();
    let zk = p.zk_server.client();
    assert!(zk.get("/pipemedic/canal/claim").is_some(), "the claim outlives the kill");

    p.host.start_agent();
    p.host.wait_until("the approval ended", || !p.host.audit_of_kind("approval-interrupted").is_empty());
    p.host.wait_until("the claim released", || zk.get("/pipemedic/canal/claim").is_none());
    assert_eq!(zk.get(CURSOR_B).unwrap().1, 0, "nothing written, nothing re-run");
    release_when_stopped(&mut p);
    p.host.stop_agent();
}
