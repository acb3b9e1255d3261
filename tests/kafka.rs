//! Runbook T1, T2 against librdkafka's mock cluster (the real protocol) and,
//! for leaders with every broker down, ZooKeeper's partition state.

mod common;

use std::process::Command;
use std::time::Duration;

use common::zk::ZooKeeper;
use common::{Host, Options, BIN};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "TABLE_IX_TRADE_ALL_BASE";

fn host(bootstrap: &str, zk: Option<&str>) -> Host {
    let mut extra = format!(
        "\n[kafka]\nbootstrap_servers = \"{bootstrap}\"\ntopics = [\"{TOPIC}\"]\ngroup = \"bo_01\"\ntimeout_secs = 3\n"
    );
    if let Some(zk) = zk {
        extra.push_str(&format!("\n[zookeeper]\nconnect = \"{zk}\"\n"));
    }
    Host::new(Options { extra, ..Options::default() })
}

/// Produces `count` messages round-robin over `partitions`.
fn produce(bootstrap: &str, partitions: i32, count: i32) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    for i in 0..count {
        producer.send(BaseRecord::to(TOPIC).partition(i % partitions).key("k").payload("v")).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Commits `offsets` (partition, offset) for the consumer group bo_01.
fn commit(consumer: &BaseConsumer, offsets: &[(i32, i64)]) {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(TOPIC, *p, Offset::Offset(*o)).unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

fn group(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bo_01")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// Three brokers, 30 messages over three partitions; the group bo_01 has
/// consumed 10 of partition 0 and 5 of partition 1; broker 3 leads partition 1.
fn seeded_cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let mock = MockCluster::new(3).unwrap();
    mock.create_topic(TOPIC, 3, 3).unwrap();
    let bootstrap = mock.bootstrap_servers();
    produce(&bootstrap, 3, 30);
    commit(&group(&bootstrap), &[(0, 10), (1, 5)]);
    mock.partition_leader(TOPIC, 1, Some(3)).unwrap();
    mock
}

fn run(host: &Host, args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).arg("--config").arg(host.config()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

#[test]
fn t1_leaders_and_t2_lag_from_the_cluster() {
    let mock = seeded_cluster();
    let bootstrap = mock.bootstrap_servers();

    let host = host(&bootstrap, None);
    let leaders = run(&host, &["kafka", "leaders"]);
    assert!(leaders.contains(&format!("Topic: {TOPIC}\tPartition: 1\tLeader: 3\tReplicas:")), "{leaders}");
    assert_eq!(leaders.lines().filter(|l| l.starts_with("Topic:")).count(), 3, "{leaders}");

    let lag = run(&host, &["kafka", "lag"]);
    let row = |p: &str| {
        lag.lines().find(|l| l.split_whitespace().nth(2) == Some(p)).unwrap_or_else(|| panic!("{lag}")).to_string()
    };
    assert!(row("0").ends_with(" 0"), "{lag}");
    assert!(row("1").split_whitespace().collect::<Vec<_>>()[3..] == ["5", "10", "5"], "{lag}");
    assert!(row("2").contains("none"), "{lag}");
    // The host's consumer sets no auto.offset.reset: Kafka's default,
    // latest, begins a partition without a commit at its end.
    assert!(lag.contains("total lag: 5"), "{lag}");
    assert!(
        lag.contains("never committed in TABLE_IX_TRADE_ALL_BASE-2 (10 record(s) there); it begins at the log end (auto.offset.reset=latest)"),
        "{lag}"
    );
    // With earliest, the group reads those 10 too.
    let props = host.read("consumer.properties") + "auto.offset.reset=earliest\n";
    std::fs::write(host.path("consumer.properties"), props).unwrap();
    let lag = run(&host, &["kafka", "lag"]);
    assert!(lag.contains("total lag: 15") && lag.contains("auto.offset.reset=earliest"), "{lag}");
}

#[test]
fn t1_leaders_fall_back_to_zookeeper_when_no_broker_answers() {
    let zk_server = ZooKeeper::start();
    let zk = zk_server.client();
    zk.put(&format!("/brokers/topics/{TOPIC}"), br#"{"version":1,"partitions":{"0":[1,2],"1":[2,1]}}"#);
    zk.put(
        &format!("/brokers/topics/{TOPIC}/partitions/0/state"),
        br#"{"controller_epoch":3,"leader":1,"version":1,"leader_epoch":7,"isr":[1,2]}"#,
    );
    zk.put(
        &format!("/brokers/topics/{TOPIC}/partitions/1/state"),
        br#"{"controller_epoch":3,"leader":2,"version":1,"leader_epoch":4,"isr":[2]}"#,
    );
    let down = format!("127.0.0.1:{}", common::free_port());
    let host = host(&down, Some(&zk_server.connect_string()));
    let leaders = run(&host, &["kafka", "leaders"]);
    assert!(
        leaders.contains(&format!("Topic: {TOPIC}\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1,2")),
        "{leaders}"
    );
    assert!(leaders.contains(&format!("Topic: {TOPIC}\tPartition: 1\tLeader: 2\tReplicas: 2,1\tIsr: 2")), "{leaders}");
    assert!(leaders.contains("from ZooKeeper's partition state"), "{leaders}");
}

#[test]
fn k5_move_log_dir_playbook_drains_then_moves_after_approval() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, 2, 1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    for i in 0..10 {
        producer.send(BaseRecord::to(TOPIC).partition(i % 2).key("k").payload("v")).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "bo_01")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut all = TopicPartitionList::new();
    all.add_partition_offset(TOPIC, 0, Offset::Offset(5)).unwrap();
    all.add_partition_offset(TOPIC, 1, Offset::Offset(3)).unwrap();
    consumer.commit(&all, CommitMode::Sync).unwrap();

    let extra = format!(
        "\n[kafka]\nbootstrap_servers = \"{bootstrap}\"\ntopics = [\"{TOPIC}\"]\ngroup = \"bo_01\"\ntimeout_secs = 3\ndrain_timeout_secs = 30\n\
         \n[services.monitor]\nstart = [\"bin/standin.sh\", \"start\", \"monitor\", \"logs/monitor.log\"]\nstop = [\"bin/standin.sh\", \"stop\", \"monitor\"]\nprocess = {{ pid_file = \"bin/run/monitor.pid\" }}\n"
    );
    let mut host = Host::new(Options { approvers: vec!["ops1@example.com"], extra, ..Options::default() });
    let data = host.path("kafka-logs");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("meta.properties"), "broker.id=1\n").unwrap();
    std::fs::write(host.path("server.properties"), format!("broker.id=1\nlog.dirs={}\n", data.display())).unwrap();
    host.start_service("monitor", "logs/monitor.log");
    host.start_service("kafka", "logs/server.log");
    host.start_agent();

    let target = host.path("data/kafka-logs");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["playbook", "run", "--config", host.config().to_str().unwrap(), "kafka-move-log-dir", "--param"])
        .arg(format!("to={}", target.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let mail = host.wait_mails(1).remove(0);
    assert!(mail.text.contains("wait until group bo_01 has consumed all 2 partitions"), "{}", mail.text);
    assert!(mail.text.contains(&format!("+log.dirs={}", target.display())), "{}", mail.text);

    let (approve, _) = mail.links();
    let (_, page) = host.get(&approve);
    host.press(&page);
    // The canal client stops first; the consumer then finishes the backlog.
    host.wait_until("the canal client stopped", || host.service_pid("monitor").is_none());
    assert!(data.exists(), "nothing moves while the consumer still has lag");
    commit(&consumer, &[(0, 5), (1, 5)]);
    let d = host.wait_decision("playbook:kafka-move-log-dir", 2);
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert!(!data.exists() && target.join("meta.properties").exists(), "moved");
    assert!(host.read("server.properties").contains(&format!("log.dirs={}", target.display())));
    assert_eq!(host.starts("kafka"), 2, "the broker was stopped gracefully and started again");
    host.stop_agent();
}

#[test]
fn t1_t2_leaders_and_lag_are_exported_as_metrics() {
    let mock = seeded_cluster();
    let bootstrap = mock.bootstrap_servers();

    let mut host = host(&bootstrap, None);
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().unwrap();
    host.append("pipemedic.toml", &format!("\n[metrics]\nlisten = \"{listen}\"\nkafka_interval_secs = 5\n"));
    host.start_agent();
    let lag = format!("pipemedic_consumer_lag{{topic=\"{TOPIC}\",partition=\"1\"}} 5");
    let leader = format!("pipemedic_kafka_partition_leader{{topic=\"{TOPIC}\",partition=\"1\"}} 3");
    let mut text = String::new();
    host.wait_until("lag and leaders in /metrics", || {
        text = pipemedic::approval::web::request(listen, "GET", "/metrics", None).map(|r| r.1).unwrap_or_default();
        text.contains(&lag) && text.contains(&leader)
    });
    assert!(text.contains("pipemedic_kafka_up 1"), "{text}");
}
