//! Kafka questions the runbook answered with its tools (T1:
//! `kafka-topics.sh --describe`, T2: `ConsumerOffsetChecker`): partition
//! leaders, replicas and ISR from cluster metadata (with ZooKeeper's
//! partition state as a fallback when the brokers do not answer), and a
//! consumer group's committed offsets against the log end.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::Value;

use crate::clients::zk::Session;
use crate::types::Invalid;

/// One partition's leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLeader {
    pub topic: String,
    pub partition: i32,
    /// -1: no leader.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// One partition's consumption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// `None`: the group never committed here.
    pub committed: Option<i64>,
    /// The oldest offset the partition still holds.
    pub log_start: i64,
    pub log_end: i64,
    /// What the group will still read here: from its committed offset, or,
    /// without one, from where [`Reset`] makes it begin.
    pub lag: i64,
}

/// Where the group begins in a partition it never committed in: the
/// consumer's `auto.offset.reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// At the log start: every record there will be read.
    Earliest,
    /// At the log end (Kafka's default): the records already there are
    /// never read.
    Latest,
    /// Not known on this host (no readable consumer properties): counted as
    /// `Earliest`, the larger backlog, and said so.
    Unknown,
}

impl Reset {
    /// From the consumer's properties file (`[properties_files] consumer`);
    /// a file without the key is Kafka's default, `latest`.
    pub fn of_consumer(properties: Option<&std::path::Path>) -> Reset {
        let Some(text) = properties.and_then(|p| crate::fsutil::read_foreign(p).ok()) else { return Reset::Unknown };
        match crate::properties::value(&text, "auto.offset.reset").as_deref().map(str::trim) {
            Some("earliest") => Reset::Earliest,
            None | Some("latest") => Reset::Latest,
            Some(_) => Reset::Unknown,
        }
    }

    /// For people: where the group begins without a committed offset.
    pub fn describe(self) -> &'static str {
        match self {
            Reset::Earliest => "the log start (auto.offset.reset=earliest), so its lag counts every record there",
            Reset::Latest => {
                "the log end (auto.offset.reset=latest), so its lag is 0 and the records already there are never read"
            }
            Reset::Unknown => {
                "counted from the log start, as auto.offset.reset=earliest begins; with latest (Kafka's default) the group \
                 begins at the log end and never reads them. Set [properties_files] consumer to the consumer's properties \
                 so that the agent knows"
            }
        }
    }
}

/// A question Kafka (or ZooKeeper, for the fallback) did not answer.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// `doing` names the cluster or the partition.
    #[error("{doing}: {source}")]
    Client { doing: String, source: rdkafka::error::KafkaError },
    #[error("no broker of {0} answers")]
    NoBroker(String),
    #[error("reading Kafka's partition state from ZooKeeper {ensemble}: {source}")]
    ZooKeeper { ensemble: String, source: zookeeper_client::Error },
}

fn asking(doing: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> KafkaError {
    let doing = doing.into();
    move |source| KafkaError::Client { doing, source }
}

fn client(config: &KafkaConfig, group: Option<&str>) -> Result<BaseConsumer, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("enable.auto.commit", "false")
        .set("socket.timeout.ms", (config.timeout_secs * 1000).to_string())
        .set("log_level", "3");
    if let Some(g) = group {
        c.set("group.id", g);
    }
    c.create().map_err(asking(format!("creating a Kafka client for {}", config.bootstrap_servers)))
}

fn wanted(config: &KafkaConfig, topic: Option<&str>, name: &str) -> bool {
    match topic {
        Some(t) => t == name,
        None if config.topics.is_empty() => !name.starts_with("__"),
        None => config.topics.iter().any(|t| t == name),
    }
}

/// Leaders from the brokers' metadata.
pub fn leaders(config: &KafkaConfig, topic: Option<&str>) -> Result<Vec<PartitionLeader>, KafkaError> {
    let c = client(config, None)?;
    let md = c
        .fetch_metadata(topic, Duration::from_secs(config.timeout_secs))
        .map_err(asking(format!("reading metadata from {}", config.bootstrap_servers)))?;
    if md.brokers().is_empty() {
        return Err(KafkaError::NoBroker(config.bootstrap_servers.clone()));
    }
    let mut out = Vec::new();
    for t in md.topics().iter().filter(|t| wanted(config, topic, t.name())) {
        for p in t.partitions() {
            out.push(PartitionLeader {
                topic: t.name().to_string(),
                partition: p.id(),
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
            });
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

/// Leaders from ZooKeeper's persistent partition state (a ZooKeeper-based
/// Kafka keeps `/brokers/topics/<t>` and `/brokers/topics/<t>/partitions/<p>/state`),
/// for when no broker answers.
pub fn leaders_from_zookeeper(
    zk: &Session,
    config: &KafkaConfig,
    topic: Option<&str>,
) -> Result<Vec<PartitionLeader>, KafkaError> {
    zk.block_on(zookeeper_partitions(&zk.client(), |t| wanted(config, topic, t)))
        .map_err(|source| KafkaError::ZooKeeper { ensemble: zk.connect_string().to_string(), source })
}

/// Every wanted topic's partitions as ZooKeeper's persistent state has them.
/// Async, so a caller holding a lock or watch keeps its session alive.
pub async fn zookeeper_partitions(
    client: &zookeeper_client::Client,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<PartitionLeader>, zookeeper_client::Error> {
    use crate::clients::zk::{children, get};
    let json = |node: Option<crate::clients::zk::Node>| {
        node.and_then(|n| serde_json::from_slice::<Value>(&n.data).ok()).unwrap_or(Value::Null)
    };
    let ints = |v: &Value| -> Vec<i32> {
        v.as_array().map(|a| a.iter().filter_map(|x| x.as_i64().map(|i| i as i32)).collect()).unwrap_or_default()
    };
    let mut out = Vec::new();
    for name in children(client, "/brokers/topics").await?.into_iter().filter(|t| wanted(t)) {
        let assignment = json(get(client, &format!("/brokers/topics/{name}")).await?);
        for p in children(client, &format!("/brokers/topics/{name}/partitions")).await? {
            let Ok(partition) = p.parse::<i32>() else { continue };
            let state = json(get(client, &format!("/brokers/topics/{name}/partitions/{p}/state")).await?);
            out.push(PartitionLeader {
                topic: name.clone(),
                partition,
                leader: state["leader"].as_i64().map_or(-1, |l| l as i32),
                replicas: ints(&assignment["partitions"][p.as_str()]),
                isr: ints(&state["isr"]),
            });
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

/// The group's committed offsets against each partition's log end; a
/// partition without a committed offset counts from where `reset` makes the
/// group begin.
pub fn lag(
    config: &KafkaConfig,
    group: &str,
    topic: Option<&str>,
    reset: Reset,
) -> Result<Vec<PartitionLag>, KafkaError> {
    let c = client(config, Some(group))?;
    let timeout = Duration::from_secs(config.timeout_secs);
    let md = c
        .fetch_metadata(topic, timeout)
        .map_err(asking(format!("reading metadata from {}", config.bootstrap_servers)))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| wanted(config, topic, t.name())) {
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    let committed = c.committed_offsets(tpl, timeout).map_err(asking(format!("reading group {group}'s offsets")))?;
    let mut out = Vec::new();
    for e in committed.elements() {
        let (low, high) = c.fetch_watermarks(e.topic(), e.partition(), timeout).map_err(asking(format!(
            "reading the log end of {}-{} (is its leader down?)",
            e.topic(),
            e.partition()
        )))?;
        let committed = match e.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        };
        let begins = match (committed, reset) {
            (Some(c), _) => c,
            (None, Reset::Latest) => high,
            (None, Reset::Earliest | Reset::Unknown) => low,
        };
        out.push(PartitionLag {
            topic: e.topic().to_string(),
            partition: e.partition(),
            committed,
            log_start: low,
            log_end: high,
            lag: high - begins,
        });
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

// `[kafka]` in the configuration: where the cluster is and what the consumer reads.

/// Where the Kafka cluster is and what the consumer reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`
    pub bootstrap_servers: String,
    /// The pipeline's topics (`TABLE_IX_TRADE_ALL_BASE`).
    #[serde(default)]
    pub topics: Vec<String>,
    /// The consumer group (`bo_01`).
    pub group: Option<String>,
    #[serde(default = "default_kafka_timeout")]
    pub timeout_secs: u64,
    /// How long a playbook waits for the consumer to drain every partition (K5).
    #[serde(default = "default_drain")]
    pub drain_timeout_secs: u64,
    /// This host's broker in a cluster whose agents restart brokers
    /// leader-first together (runbook K4). Absent: a broker is restarted
    /// on its own.
    pub cluster: Option<KafkaClusterConfig>,
}

fn default_drain() -> u64 {
    1800
}

fn default_kafka_timeout() -> u64 {
    10
}

// `[kafka.cluster]` in the configuration: this host's part in leader-first restarts.

/// The local broker's part in a leader-first restart (runbook K4). Agents
/// coordinate through the `[zookeeper]` ensemble under `/pipemedic/kafka`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaClusterConfig {
    /// `broker.id` of the broker on this host.
    pub broker_id: i32,
    /// Its entry under `[services]`.
    #[serde(default = "default_broker_service")]
    pub service: String,
    /// The cluster's broker ids; empty: every broker that holds a replica in
    /// ZooKeeper's topic assignments.
    #[serde(default)]
    pub brokers: Vec<i32>,
    /// How long a started broker must stay stable before the next starts.
    #[serde(default = "default_settle")]
    pub settle_secs: u64,
    /// How long a broker may take to start and become stable.
    #[serde(default = "default_broker_start")]
    pub start_timeout_secs: u64,
    /// How long an agent waits for another agent's sequence to finish.
    #[serde(default = "default_lock_wait")]
    pub lock_wait_secs: u64,
}

fn default_broker_service() -> String {
    "kafka".into()
}

fn default_settle() -> u64 {
    30
}

fn default_broker_start() -> u64 {
    300
}

impl KafkaClusterConfig {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        if self.broker_id < 0 || self.brokers.iter().any(|b| *b < 0) {
            return Err("[kafka.cluster] broker ids are not negative".into());
        }
        Ok(())
    }
}

fn default_lock_wait() -> u64 {
    1800
}

#[cfg(test)]
mod tests {
    use super::Reset;

    #[test]
    fn the_consumers_auto_offset_reset_says_where_an_uncommitted_partition_begins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("consumer.properties");
        let reset = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Reset::of_consumer(Some(&file))
        };
        assert_eq!(reset("group.id=bo_01\nauto.offset.reset = earliest\n"), Reset::Earliest);
        assert_eq!(reset("auto.offset.reset=latest\n"), Reset::Latest);
        assert_eq!(reset("group.id=bo_01\n"), Reset::Latest, "Kafka's default");
        assert_eq!(reset("auto.offset.reset=none\n"), Reset::Unknown);
        assert_eq!(Reset::of_consumer(None), Reset::Unknown);
        assert_eq!(Reset::of_consumer(Some(&dir.path().join("absent"))), Reset::Unknown);
    }
}
