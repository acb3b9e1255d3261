//! Kafka and ZooKeeper: where the cluster is, what the consumer reads, the
//! leader-first restart across broker hosts (K4).

use super::*;

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
    #[serde(default = "default_drain")]
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

fn default_drain() -> u64 {
    1800
}

fn default_kafka_timeout() -> u64 {
    10
}

/// Where ZooKeeper is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZooKeeperConfig {
    /// `host:port[,host:port…]`
    pub connect: String,
    #[serde(default = "default_zk_session")]
    pub session_timeout_secs: u64,
}

fn default_zk_session() -> u64 {
    10
}

impl KafkaClusterConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        if self.broker_id < 0 || self.brokers.iter().any(|b| *b < 0) {
            return Err("[kafka.cluster] broker ids are not negative".into());
        }
        Ok(())
    }
}
