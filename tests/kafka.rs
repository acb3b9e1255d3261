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

fn run(host: &Host, args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).arg("--config").arg(host.config()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

#[test]
fn t1_leaders_and_t2_lag_from_the_cluster() {
    let mock = MockCluster::new(3).unwrap();
    mock.create_topic(TOPIC, 3, 3).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    for i in 0..30 {
        producer.send(BaseRecord::to(TOPIC).partition(i % 3).key("k").payload("v")).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    // The consumer group bo_01 has consumed 10 of partition 0 and 5 of partition 1.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "bo_01")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Offset(10)).unwrap();
    tpl.add_partition_offset(TOPIC, 1, Offset::Offset(5)).unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    mock.partition_leader(TOPIC, 1, Some(3)).unwrap();

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
    assert!(lag.contains("total lag: 15"), "{lag}");
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
