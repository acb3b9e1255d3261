//! K4: after a whole-cluster crash the brokers are started leader-first, one
//! at a time, each by its own host's agent, coordinated through a real
//! ZooKeeper; an agent killed mid-sequence does not wedge the others.
//!
//! Three agent processes stand for three broker hosts, each with its own
//! stand-in broker (`standin.sh`), which registers its ephemeral
//! `/brokers/ids/<id>` through a ZooKeeper session of its own while it runs,
//! as a broker does. The test plays Kafka's controller: it elects leaders
//! from the live in-sync replicas (unclean election off) and adds a running
//! replica to the ISR once it has "caught up" (300 ms after registering).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::zk::{Zk, ZooKeeper};
use common::{Host, Options};
use serde_json::{json, Value};

const TOPIC: &str = "TABLE_IX_TRADE_ALL_BASE";
/// partition → (replicas, leader, isr) as ZooKeeper kept them after the crash:
/// broker 2 went last and leads two partitions; 1 leads one; partition 3's
/// only in-sync replica is 3.
const CRASHED: [(&[i32], i32, &[i32]); 4] =
    [(&[2, 1, 3], 2, &[2]), (&[3, 2, 1], 2, &[2]), (&[1, 2, 3], 1, &[1]), (&[3, 1, 2], -1, &[3])];

fn seed(zk: &Zk) {
    let assignment: BTreeMap<String, &[i32]> =
        CRASHED.iter().enumerate().map(|(p, (replicas, _, _))| (p.to_string(), *replicas)).collect();
    zk.put(&format!("/brokers/topics/{TOPIC}"), json!({"version": 1, "partitions": assignment}).to_string().as_bytes());
    zk.put("/brokers/ids", b"");
    for (p, (_, leader, isr)) in CRASHED.iter().enumerate() {
        zk.put(&format!("/brokers/topics/{TOPIC}/partitions/{p}"), b"");
        zk.put(&format!("/brokers/topics/{TOPIC}/partitions/{p}/state"), state(*leader, isr).as_bytes());
    }
}

fn state(leader: i32, isr: &[i32]) -> String {
    json!({"controller_epoch": 3, "leader": leader, "version": 1, "leader_epoch": 5, "isr": isr}).to_string()
}

/// The test's stand-in for Kafka's controller (the brokers register
/// themselves: see `standin.sh`).
struct Kafka {
    stop: Arc<AtomicBool>,
    /// Broker id and when it first registered, in order.
    registered: Arc<Mutex<Vec<(i32, Instant)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Kafka {
    fn start(zk: &ZooKeeper) -> Kafka {
        let stop = Arc::new(AtomicBool::new(false));
        let registered = Arc::new(Mutex::new(Vec::new()));
        let controller = zk.client();
        let (stop2, registered2) = (stop.clone(), registered.clone());
        let thread = std::thread::spawn(move || {
            let mut since: BTreeMap<i32, Instant> = BTreeMap::new();
            while !stop2.load(Ordering::SeqCst) {
                let live: Vec<i32> =
                    controller.children("/brokers/ids").iter().filter_map(|id| id.parse().ok()).collect();
                since.retain(|id, _| live.contains(id));
                for id in &live {
                    if !since.contains_key(id) {
                        since.insert(*id, Instant::now());
                        let mut seen = registered2.lock().unwrap();
                        if !seen.iter().any(|(b, _)| b == id) {
                            seen.push((*id, Instant::now()));
                        }
                    }
                }
                let running = |b: &i32| since.contains_key(b);
                let caught_up = |r: &i32| since.get(r).is_some_and(|t| t.elapsed() >= Duration::from_millis(300));
                for (p, (replicas, _, _)) in CRASHED.iter().enumerate() {
                    let path = format!("/brokers/topics/{TOPIC}/partitions/{p}/state");
                    let (data, _) = controller.get(&path).unwrap();
                    let old: Value = serde_json::from_slice(&data).unwrap();
                    let mut leader = old["leader"].as_i64().unwrap() as i32;
                    let mut isr: Vec<i32> =
                        old["isr"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i32).collect();
                    if !running(&leader) {
                        // Unclean election off: only a live in-sync replica may lead.
                        match isr.iter().copied().find(running) {
                            Some(b) => {
                                leader = b;
                                isr.retain(running);
                            }
                            None => leader = -1,
                        }
                    }
                    if leader >= 0 {
                        for r in replicas.iter() {
                            if caught_up(r) && !isr.contains(r) {
                                isr.push(*r);
                            }
                        }
                    }
                    let new = state(leader, &isr);
                    if serde_json::from_str::<Value>(&new).unwrap() != old {
                        controller.set(&path, new.as_bytes());
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Kafka { stop, registered, thread: Some(thread) }
    }

    /// Brokers in the order they registered, and when.
    fn registrations(&self) -> Vec<(i32, Instant)> {
        self.registered.lock().unwrap().clone()
    }

    fn order(&self) -> Vec<i32> {
        self.registrations().into_iter().map(|(id, _)| id).collect()
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Three broker hosts, each with its agent running.
fn cluster(zk: &ZooKeeper, settle_secs: u64) -> Vec<Host> {
    (1..=3)
        .map(|id| {
            let mut host = broker_host(zk, id, settle_secs, Options::default());
            host.start_agent();
            host
        })
        .collect()
}

/// The host of broker `id` (host name `broker-<id>`), its agent not started.
fn broker_host(zk: &ZooKeeper, id: i32, settle_secs: u64, options: Options) -> Host {
    let extra = format!(
        "\n[zookeeper]\nconnect = \"{}\"\nsession_timeout_secs = 3\n\n\
         [kafka]\nbootstrap_servers = \"127.0.0.1:9\"\n\n[kafka.cluster]\nbroker_id = {id}\n\
         settle_secs = {settle_secs}\nstart_timeout_secs = 30\nlock_wait_secs = 120\n",
        zk.connect_string()
    );
    let host = Host::new(Options { extra: format!("{}{extra}", options.extra), ..options });
    // A top-level key: before the first table.
    let config = format!("host_name = \"broker-{id}\"\n{}", host.read("pipemedic.toml"));
    std::fs::write(host.config(), config).unwrap();
    // The stand-in broker registers broker {id} in ZooKeeper while it runs.
    std::fs::create_dir_all(host.path("bin/run")).unwrap();
    std::fs::write(host.path("bin/run/kafka.zk"), format!("{} {id}\n", zk.connect_string())).unwrap();
    host
}

const FATAL: &str = "[2026-11-25 03:00:00,001] FATAL [KafkaServer id=1] Fatal error during KafkaServer startup. Prepare to shutdown (kafka.server.KafkaServer)\n\
kafka.common.KafkaException: Failed to acquire lock on file .lock in /tmp/kafka-logs.\n";

fn wait(what: &str, hosts: &[Host], mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        if Instant::now() > deadline {
            let audits: Vec<String> = hosts.iter().map(|h| format!("{:#?}\n{}", h.audit(), h.stderr())).collect();
            panic!("timed out waiting for {what}\n{}", audits.join("\n-----\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// M2's final decisions: neither "no change" nor a plan still waiting for
/// another agent's sequence (that one is decided again when it ends).
fn m2_results(host: &Host) -> Vec<Value> {
    host.decisions("m2_kafka_shutdown")
        .into_iter()
        .filter(|d| d["decision"] != "no-change" && d["decision"] != "waiting")
        .collect()
}

#[test]
fn k4_whole_cluster_crash_starts_the_leader_first_then_one_at_a_time() {
    let zk = ZooKeeper::start();
    seed(&zk.client());
    let hosts = cluster(&zk, 1);
    let kafka = Kafka::start(&zk);
    let admin = zk.client();
    wait("all three agents to announce themselves", &hosts, || admin.children("/pipemedic/kafka/agents").len() == 3);

    // Every broker died; each host's agent reads its broker's last words.
    for h in &hosts {
        h.append("logs/server.log", FATAL);
    }
    wait("all three brokers to register", &hosts, || kafka.order().len() == 3);
    assert_eq!(kafka.order(), [2, 1, 3], "the broker leading most partitions first, then by rank");
    let at = kafka.registrations();
    for pair in at.windows(2) {
        assert!(
            pair[1].1.duration_since(pair[0].1) >= Duration::from_secs(1),
            "broker {} started before broker {} had been stable for the settle time",
            pair[1].0,
            pair[0].0
        );
    }
    // Each broker was started exactly once, by its own host's agent.
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(h.starts("kafka"), 1, "broker {}", i + 1);
        wait("the turn in the audit", &hosts, || !h.audit_of_kind("kafka-turn").is_empty());
        let turns = h.audit_of_kind("kafka-turn");
        assert_eq!(turns.len(), 1, "{turns:#?}");
        assert!(turns[0]["detail"].as_str().unwrap().contains(&format!("broker {}'s turn", i + 1)), "{turns:#?}");
    }
    // One agent coordinated; the others found nothing left to start.
    wait("every agent's decision", &hosts, || hosts.iter().all(|h| !m2_results(h).is_empty()));
    let results: Vec<Value> = hosts.iter().flat_map(m2_results).collect();
    assert!(results.iter().all(|d| d["decision"] == "applied"), "{results:#?}");
    let coordinated: Vec<&Value> =
        results.iter().filter(|d| d["steps"][0]["result"].as_str().unwrap_or("").contains("order 2, 1, 3")).collect();
    assert_eq!(coordinated.len(), 1, "{results:#?}");
    let preview = coordinated[0]["steps"][0]["preview"].as_str().unwrap();
    assert!(preview.contains("1. broker 2: leads 2 of 4 partitions"), "{preview}");
}

#[test]
fn k4_an_agent_killed_mid_sequence_does_not_wedge_the_others() {
    let zk = ZooKeeper::start();
    seed(&zk.client());
    let mut hosts = cluster(&zk, 4);
    let kafka = Kafka::start(&zk);
    let admin = zk.client();
    wait("all three agents to announce themselves", &hosts, || admin.children("/pipemedic/kafka/agents").len() == 3);
    for h in &hosts {
        h.append("logs/server.log", FATAL);
    }
    wait("the leader's broker to register", &hosts, || kafka.order() == [2]);
    // Broker 2 is settling; kill the agent coordinating the sequence.
    let holders = admin.children("/pipemedic/kafka/lock");
    let first = holders.iter().min_by_key(|n| n.rsplit('-').next().unwrap().to_string()).expect("a lock holder");
    let (data, _) = admin.get(&format!("/pipemedic/kafka/lock/{first}")).unwrap();
    let coordinator: usize = String::from_utf8(data).unwrap().trim_start_matches("broker-").parse().unwrap();
    eprintln!("killing the coordinator, agent {coordinator}");
    hosts[coordinator - 1].kill_agent();

    // Another agent takes the lock once the dead one's session expires and
    // finishes what it can: every broker whose agent lives.
    let alive: Vec<i32> = (1..=3).filter(|b| *b == 2 || *b as usize != coordinator).collect();
    wait("the surviving agents' brokers to register", &hosts, || {
        let order = kafka.order();
        alive.iter().all(|b| order.contains(b))
    });
    assert_eq!(kafka.order()[0], 2);
    if coordinator != 2 {
        // The dead agent's broker cannot be started by anyone else: the new
        // coordinator says so and moves on.
        let survivors: Vec<&Host> =
            hosts.iter().enumerate().filter(|(i, _)| *i + 1 != coordinator).map(|(_, h)| h).collect();
        wait("the new coordinator's report", &hosts, || {
            survivors.iter().flat_map(|h| m2_results(h)).any(|d| d["decision"] == "failed")
        });
        let failed: Vec<Value> =
            survivors.iter().flat_map(|h| m2_results(h)).filter(|d| d["decision"] == "failed").collect();
        let reason = failed[0].to_string();
        assert!(reason.contains(&format!("broker {coordinator} is down and has no agent")), "{reason}");
        assert!(!kafka.order().contains(&(coordinator as i32)), "nobody but its own agent starts a broker");
    }
}

/// A session that holds the cluster lock (another agent's sequence, or an
/// agent hung mid-sequence): lower in the lock's order than anyone after it.
fn hold_the_lock(zk: &ZooKeeper) -> Zk {
    let holder = zk.client();
    holder.hold("/pipemedic/kafka/lock/_c_00000000-0000-0000-0000-000000000000-lock-0000000000", b"broker-9");
    holder
}

#[test]
fn k4_a_plan_waiting_for_the_lock_leaves_the_worker_free_and_runs_when_it_goes() {
    let zk = ZooKeeper::start();
    seed(&zk.client());
    let mut holder = hold_the_lock(&zk);
    let hosts = cluster(&zk, 1);
    let kafka = Kafka::start(&zk);
    let admin = zk.client();
    wait("all three agents to announce themselves", &hosts, || admin.children("/pipemedic/kafka/agents").len() == 3);
    hosts[0].append("logs/server.log", FATAL);
    let d = hosts[0].wait_decision("m2_kafka_shutdown", 1);
    assert_eq!(d["decision"], "waiting", "{d:#}");
    assert!(d["reason"].as_str().unwrap().contains("the agent on broker-9 holds the cluster lock"), "{d:#}");
    // The worker is free: another log's record is decided meanwhile.
    hosts[0].append("logs/info.log", &common::wakeup_incident());
    hosts[0].wait_decision("c3_wakeup", 1);
    assert_eq!(hosts[0].decisions("m2_kafka_shutdown").len(), 1, "decided once while it waits");
    assert_eq!(admin.children("/pipemedic/kafka/lock").len(), 1, "it does not queue on the worker");

    // The other sequence is over: the plan runs and starts what is down.
    holder.close();
    wait("all three brokers to register", &hosts, || kafka.order().len() == 3);
    assert_eq!(kafka.order(), [2, 1, 3]);
    let d = hosts[0].wait_decision("m2_kafka_shutdown", 2);
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert!(d["reason"].as_str().unwrap().contains("after waiting"), "{d:#}");
}

#[test]
fn k4_sigterm_while_a_plan_waits_for_the_lock_ends_it_as_not_run() {
    let zk = ZooKeeper::start();
    seed(&zk.client());
    let _holder = hold_the_lock(&zk);
    let mut host = broker_host(&zk, 1, 1, Options::default());
    host.start_agent();
    let admin = zk.client();
    wait("the agent to announce itself", std::slice::from_ref(&host), || {
        admin.children("/pipemedic/kafka/agents") == ["1"]
    });
    host.append("logs/server.log", FATAL);
    assert_eq!(host.wait_decision("m2_kafka_shutdown", 1)["decision"], "waiting");

    let asked = Instant::now();
    host.stop_agent();
    assert!(asked.elapsed() < Duration::from_secs(10), "SIGTERM took {:?} while a plan waited", asked.elapsed());
    let ended = &host.decisions("m2_kafka_shutdown")[1];
    assert_eq!(ended["decision"], "failed", "{ended:#}");
    assert!(ended["reason"].as_str().unwrap().contains("the agent stopped while this plan waited"), "{ended:#}");
    assert_eq!(host.starts("kafka"), 0);
    // The next start does not run it.
    host.start_agent();
    host.append("logs/info.log", &common::wakeup_incident());
    host.wait_decision("c3_wakeup", 1);
    assert_eq!(host.decisions("m2_kafka_shutdown").len(), 2, "{:#?}", host.decisions("m2_kafka_shutdown"));
    host.stop_agent();
}

/// A turn node is obeyed only in the protocol's order: ephemeral, written by
/// the session that holds the cluster lock, whose agent is a live member,
/// naming a sequence not served yet; and the start it asks for is counted
/// by the policy like any other broker start.
#[test]
fn k4_a_turn_from_anyone_but_the_lock_holder_starts_nothing() {
    let zk = ZooKeeper::start();
    seed(&zk.client());
    let mut host = broker_host(&zk, 1, 1, Options { approvers: vec!["dba@example.com"], ..Options::default() });
    host.start_agent();
    let admin = zk.client();
    wait("the agent to announce itself", std::slice::from_ref(&host), || {
        admin.children("/pipemedic/kafka/agents") == ["1"]
    });
    let turn = |sequence: &str, coordinator: &str| {
        json!({"broker": 1, "sequence": sequence, "order": [1], "coordinator": coordinator}).to_string()
    };
    let refusals = |host: &Host| -> Vec<String> {
        host.audit_of_kind("kafka-turn")
            .iter()
            .map(|e| e["detail"].as_str().unwrap().to_string())
            .filter(|d| d.contains("does not start it"))
            .collect()
    };

    // Anyone's session, no lock: told once, nothing started.
    let mut forger = zk.client();
    forger.hold("/pipemedic/kafka/turn", turn("forged", "broker-9").as_bytes());
    host.wait_until("the forged turn told", || refusals(&host).len() == 1);
    assert!(refusals(&host)[0].contains("nobody holds the cluster lock"), "{:?}", refusals(&host));
    let told = host.wait_mails(1).remove(0);
    assert_eq!(told.to, ["oncall@example.com"]);
    assert!(told.text.contains("names broker 1"), "{}", told.text);
    forger.close();

    // A persistent turn (what a crashed agent of an older version, or a
    // person, leaves behind) outlives every sequence: never obeyed.
    admin.put("/pipemedic/kafka/turn", turn("stale", "broker-9").as_bytes());
    host.wait_until("the persistent turn told", || refusals(&host).len() == 2);
    assert!(refusals(&host)[1].contains("persistent"), "{:?}", refusals(&host));
    admin.delete("/pipemedic/kafka/turn");

    // The lock holder's session, but its agent is no member.
    let coordinator = zk.client();
    coordinator.hold("/pipemedic/kafka/lock/_c_0123-lock-0000000000", b"broker-9");
    coordinator.hold("/pipemedic/kafka/turn", turn("s1", "broker-9").as_bytes());
    host.wait_until("the non-member's turn told", || refusals(&host).len() == 3);
    assert!(refusals(&host)[2].contains("not a live member"), "{:?}", refusals(&host));
    assert_eq!(host.starts("kafka"), 0, "nothing started");

    // The protocol's own turn: its broker is started, once, and reported.
    coordinator.hold("/pipemedic/kafka/agents/9", b"broker-9");
    coordinator.set("/pipemedic/kafka/turn", turn("s2", "broker-9").as_bytes());
    host.wait_until("the turn taken", || admin.get("/pipemedic/kafka/started/1").is_some());
    let report: Value = serde_json::from_slice(&admin.get("/pipemedic/kafka/started/1").unwrap().0).unwrap();
    assert_eq!((report["sequence"].as_str(), report["ok"].as_bool()), (Some("s2"), Some(true)), "{report}");
    assert_eq!(host.starts("kafka"), 1);

    // After a restart the same turn is not taken again.
    host.stop_agent();
    host.start_agent();
    host.wait_until("the agent back", || admin.children("/pipemedic/kafka/agents").contains(&"1".to_string()));
    // A new sequence is a new broker start: the policy's cooldown holds it.
    coordinator.set("/pipemedic/kafka/turn", turn("s3", "broker-9").as_bytes());
    host.wait_until("the next turn answered", || {
        admin.get("/pipemedic/kafka/started/1").is_some_and(|(d, _)| String::from_utf8_lossy(&d).contains("s3"))
    });
    let report: Value = serde_json::from_slice(&admin.get("/pipemedic/kafka/started/1").unwrap().0).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    assert!(report["message"].as_str().unwrap().contains("cooldown"), "{report}");
    assert_eq!(host.starts("kafka"), 1, "started once in all: {:#?}", host.audit_of_kind("kafka-turn"));
    host.stop_agent();
}
