//! A line that matters is never silent: a fatal broker error, a consumer
//! start-up failure or an errno 1236 that no rule explains gets a notice
//! naming the line and the runbook section; one that a rule explains gets
//! only that rule's answer. One test per source, through `replay`.

mod common;

use std::process::Command;

use common::{k1_incident, Host, Options, BIN};

/// Replays `log` as `source`; returns the rules that decided something other
/// than "no plan", in order.
fn deciders(host: &Host, source: &str, log: &str) -> Vec<(String, String)> {
    let file = host.path(&format!("{source}.old.log"));
    std::fs::write(&file, log).unwrap();
    let out = Command::new(BIN)
        .args(["replay", "--config", host.config().to_str().unwrap(), "--source", source, "--format", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|d| d["decision"] != "no-plan")
        .map(|d| (d["rule"].as_str().unwrap().to_string(), d["summary"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn rules(d: &[(String, String)]) -> Vec<&str> {
    d.iter().map(|(r, _)| r.as_str()).collect()
}

#[test]
fn kafka_server_an_unexplained_fatal_is_told_an_explained_one_is_not() {
    let host = Host::new(Options { dry_run: true, ..Options::default() });
    // K1 explains an ip- name, and the broker's own name of any kind.
    assert_eq!(rules(&deciders(&host, "kafka_server", &k1_incident("ip-10.98.2.33"))), ["k1_unknown_host"]);
    let own = "[2026-11-25 10:00:00,001] ERROR [KafkaServer id=1] Fatal error during KafkaServer startup. Prepare to shutdown (kafka.server.KafkaServer)\n\
               java.net.UnknownHostException: kafka-node-3.internal: kafka-node-3.internal: Name or service not known\n";
    assert_eq!(rules(&deciders(&host, "kafka_server", own)), ["k1_unknown_host"]);
    // Nobody explains an unresolvable ZooKeeper host.
    let zk = "[2026-11-25 10:00:00,001] FATAL Fatal error during KafkaServer startup. Prepare to shutdown (kafka.server.KafkaServer)\n\
              org.I0Itec.zkclient.exception.ZkException: Unable to connect to zk1.internal:2181\n\
              Caused by: java.net.UnknownHostException: zk1.internal\n";
    let d = deciders(&host, "kafka_server", zk);
    assert_eq!(rules(&d), ["z_unexplained"], "{d:?}");
    assert_eq!(d[0].1, "The Kafka broker stopped with an error no rule explains");
    // K2 explains a changed id, in its 3.7+ wording too.
    let k2 = "[2026-11-25 10:00:00,001] ERROR Exiting Kafka due to fatal exception during startup. (kafka.Kafka$)\n\
              java.lang.RuntimeException: Stored node id 8 doesn't match previous node id 2 in /var/kafka-logs/meta.properties.\n";
    assert_eq!(rules(&deciders(&host, "kafka_server", k2)), ["k2_broker_id_changed"]);
}

#[test]
fn consumer_a_start_up_failure_nobody_explains_is_told() {
    let host = Host::new(Options { dry_run: true, ..Options::default() });
    let explained = "2026-11-25 10:00:00.001 [localhost-startStop-1] ERROR o.s.web.context.ContextLoader - Context initialization failed\n\
                     org.springframework.beans.factory.NoSuchBeanDefinitionException: No qualifying bean of type 'com.goldoffice.bo.OrderBo' available\n";
    assert_eq!(rules(&deciders(&host, "consumer_error", explained)), ["c4_startup_wiring"]);
    let unexplained = "2026-11-25 10:00:00.001 [localhost-startStop-1] ERROR o.s.web.context.ContextLoader - Context initialization failed\n\
                       org.springframework.beans.factory.BeanDefinitionStoreException: IOException parsing XML document from class path resource [applicationContext-data-sync.xml]\n";
    let d = deciders(&host, "consumer_error", unexplained);
    assert_eq!(rules(&d), ["z_unexplained"], "{d:?}");
    assert_eq!(d[0].1, "The consumer failed to start for a reason no rule explains");
}

#[test]
fn canal_an_errno_1236_nobody_handles_is_told_once() {
    let host = Host::new(Options { dry_run: true, ..Options::default() });
    let unknown = "2026-11-25 10:00:00.001 [destination = ix_a , address = /10.0.0.5:3306 , EventParser] ERROR c.a.o.c.p.inbound.mysql.dbsync.DirectLogFetcher - I/O error while reading from client socket\n\
                   java.io.IOException: Received error packet: errno = 1236, sqlstate = HY000 errmsg = Misconfigured master - server_id was not set\n";
    // The binlog rule tells a person itself; the fallback does not repeat it.
    let d = deciders(&host, "canal_instance", unknown);
    assert_eq!(rules(&d), ["n3_n4_n6_binlog_position"], "{d:?}");
    assert!(d[0].1.contains("no rule handles"), "{d:?}");
}
