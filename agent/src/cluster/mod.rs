//! Agents on several hosts acting on one shared system through the
//! pipeline's ZooKeeper: canal in HA ([`canal`]: one approval per cursor
//! plan, every canal stopped for the write) and, here, the leader-first
//! restart of a Kafka cluster whose brokers live on different hosts, each
//! with its own agent (runbook K4).
//!
//! The agents coordinate through the pipeline's ZooKeeper, under
//! `/pipemedic/kafka`, with the standard recipes:
//!
//! - `agents/<broker id>` (ephemeral): this broker's agent is alive and will
//!   take its turn (`crate::peers::kafka`).
//! - `lock/` (ephemeral sequential, the lock recipe): whoever holds it runs
//!   the one cluster-wide sequence; the others wait their turn for the lock.
//! - `turn` (ephemeral, owned by the lock holder): `{"broker": 2, …}` — the
//!   broker whose agent must start it now.
//! - `started/<broker id>` (persistent): that agent's report of its last start.
//!
//! ZooKeeper here is the pipeline's, often without ACLs: every node another
//! agent writes is hostile input. A member takes a turn only when the node
//! is ephemeral and owned by the session holding the lowest `lock/` node,
//! whose host is a live agent under `agents/`, names this broker in its
//! order, and names a sequence `started/<id>` does not report served yet
//! (so a restart never re-takes it); the start itself passes the policy's
//! cooldown, hourly limit and breaker like any broker start. Anything else
//! is told to a person once and starts nothing (`crate::peers::kafka`).
//!
//! Everything a dead agent held is ephemeral, so it vanishes with its
//! session: a lock holder that dies frees the lock (the next waiting agent
//! takes over and recomputes what is still down), a member that dies is seen
//! as absent and skipped. Every wait has a deadline.
//!
//! **Which broker is "the leader"** after a failure (documented choice): the
//! down broker that leads the most partitions in ZooKeeper's persistent
//! partition state (`/brokers/topics/*/partitions/*/state`; a partition left
//! with leader -1 and a single-member ISR counts for that member — it was the
//! last one holding the data). When brokers die one by one the controller
//! moves leadership to the survivors, so the broker that went last leads
//! most and has the most complete logs. Ties go to the last controller the
//! agents saw (`/controller`, remembered in the state directory because the
//! node is ephemeral), then to the lowest id. The others follow in the same
//! ranking, one at a time.

pub mod canal;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use zookeeper_client as zk;

use crate::clients::kafka::{zookeeper_partitions, PartitionLeader};

pub const AGENTS: &str = "/pipemedic/kafka/agents";
pub const LOCK_DIR: &str = "/pipemedic/kafka/lock";
pub const TURN: &str = "/pipemedic/kafka/turn";
pub const STARTED: &str = "/pipemedic/kafka/started";

/// What ZooKeeper says about the cluster at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Brokers registered under `/brokers/ids` (running).
    pub registered: BTreeSet<i32>,
    pub partitions: Vec<PartitionLeader>,
    /// `/controller`, if a controller is elected.
    pub controller: Option<i32>,
    /// Brokers whose agent is present under [`AGENTS`].
    pub agents: BTreeSet<i32>,
}

impl Snapshot {
    /// The cluster's brokers: the configured list, or every broker that
    /// holds a replica, plus whoever is registered.
    pub fn expected(&self, configured: &[i32]) -> BTreeSet<i32> {
        let mut all: BTreeSet<i32> = if configured.is_empty() {
            self.partitions.iter().flat_map(|p| p.replicas.iter().copied()).collect()
        } else {
            configured.iter().copied().collect()
        };
        all.extend(self.registered.iter().copied());
        all
    }

    /// The expected brokers that are not registered.
    pub fn down(&self, configured: &[i32]) -> BTreeSet<i32> {
        self.expected(configured).difference(&self.registered).copied().collect()
    }

    /// How many partitions each broker leads in the persistent state (see
    /// the module comment for leader -1).
    pub fn leader_counts(&self) -> BTreeMap<i32, usize> {
        let mut counts = BTreeMap::new();
        for p in &self.partitions {
            let holder = if p.leader >= 0 {
                Some(p.leader)
            } else if p.isr.len() == 1 {
                Some(p.isr[0])
            } else {
                None
            };
            if let Some(b) = holder {
                *counts.entry(b).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The brokers that are down, in the order to start them, each with the
    /// reason for its place.
    pub fn start_order(&self, configured: &[i32], last_controller: Option<i32>) -> Vec<(i32, String)> {
        let counts = self.leader_counts();
        let mut down: Vec<i32> = self.down(configured).into_iter().collect();
        let led = |b: &i32| counts.get(b).copied().unwrap_or(0);
        down.sort_by_key(|b| (std::cmp::Reverse(led(b)), Some(*b) != last_controller, *b));
        let total = self.partitions.len();
        down.into_iter()
            .map(|b| {
                let mut why = format!("leads {} of {total} partitions in ZooKeeper's last partition state", led(&b));
                if Some(b) == last_controller {
                    why.push_str("; last controller seen");
                }
                (b, why)
            })
            .collect()
    }

    /// `None` if the broker is stable: registered, leading every partition
    /// it is the surviving in-sync replica of, and in the ISR of every
    /// partition that has a running leader, with no running replica left out
    /// (nothing under-replicated among the brokers that run). Partitions
    /// whose in-sync replicas are all still down wait for their own broker.
    /// Otherwise: what is still missing.
    pub fn unstable(&self, broker: i32) -> Option<String> {
        if !self.registered.contains(&broker) {
            return Some(format!("broker {broker} is not registered under /brokers/ids"));
        }
        for p in self.partitions.iter().filter(|p| p.replicas.contains(&broker)) {
            let led = p.leader >= 0 && self.registered.contains(&p.leader);
            if !led {
                if p.isr.contains(&broker) {
                    return Some(format!("{}-{} has no running leader yet", p.topic, p.partition));
                }
                continue;
            }
            if let Some(r) = p.replicas.iter().find(|r| self.registered.contains(r) && !p.isr.contains(r)) {
                return Some(format!("{}-{} is under-replicated: broker {r} is not in the ISR", p.topic, p.partition));
            }
        }
        None
    }
}

/// The `turn` node: whose broker starts now, in which sequence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Turn {
    pub broker: i32,
    /// Unique per sequence: the coordinator's host and start time.
    pub sequence: String,
    pub order: Vec<i32>,
    pub coordinator: String,
}

/// A member's report in `started/<broker id>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Started {
    pub sequence: String,
    pub ok: bool,
    pub message: String,
}

/// Reads the snapshot. Async so a lock holder's session stays alive.
pub async fn snapshot(client: &zk::Client) -> Result<Snapshot, zk::Error> {
    let ids = |names: Vec<String>| names.iter().filter_map(|n| n.parse().ok()).collect::<BTreeSet<i32>>();
    let registered = ids(crate::clients::zk::children(client, "/brokers/ids").await?);
    let agents = ids(crate::clients::zk::children(client, AGENTS).await?);
    let partitions = zookeeper_partitions(client, |t| !t.starts_with("__")).await?;
    let controller = crate::clients::zk::get(client, "/controller").await?.and_then(|n| controller_id(&n.data));
    Ok(Snapshot { registered, partitions, controller, agents })
}

/// The node that holds the cluster lock now: the lowest of `lock/` (Curator's
/// lock nodes end in their sequence number); its data is its agent's host.
pub async fn lock_holder(client: &zk::Client) -> Result<Option<crate::clients::zk::Node>, zk::Error> {
    let locks = crate::clients::zk::children(client, LOCK_DIR).await?;
    let sequence = |n: &String| n.rsplit('-').next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(u64::MAX);
    match locks.iter().min_by_key(|n| sequence(n)) {
        Some(holder) => crate::clients::zk::get(client, &format!("{LOCK_DIR}/{holder}")).await,
        None => Ok(None),
    }
}

/// Broker ids for people: "1, 2, 3", or "none".
pub fn ids(set: impl IntoIterator<Item = i32>) -> String {
    let v: Vec<String> = set.into_iter().map(|b| b.to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// `{"version":1,"brokerid":2,"timestamp":"…"}` → 2.
pub fn controller_id(data: &[u8]) -> Option<i32> {
    let v: Value = serde_json::from_slice(data).ok()?;
    v["brokerid"].as_i64().map(|b| b as i32)
}

/// The controller the agent last saw, kept across restarts because
/// `/controller` vanishes with the cluster.
pub fn last_controller(state_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(state_dir.join(LAST_CONTROLLER)).ok()?.trim().parse().ok()
}

pub fn remember_controller(state_dir: &Path, id: i32) -> Result<(), crate::state::StateError> {
    if last_controller(state_dir) == Some(id) {
        return Ok(());
    }
    let path = state_dir.join(LAST_CONTROLLER);
    crate::fsutil::write_atomic(&path, format!("{id}\n").as_bytes())
        .map_err(|source| crate::state::StateError::Write { path, source })
}

const LAST_CONTROLLER: &str = "kafka-last-controller";

pub use crate::clients::kafka::KafkaClusterConfig;

#[cfg(test)]
mod tests {
    use super::*;

    fn part(p: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionLeader {
        PartitionLeader { topic: "T".into(), partition: p, leader, replicas: replicas.to_vec(), isr: isr.to_vec() }
    }

    fn crashed() -> Snapshot {
        Snapshot {
            partitions: vec![
                part(0, 2, &[2, 1, 3], &[2]),
                part(1, 2, &[3, 2, 1], &[2]),
                part(2, -1, &[1, 3, 2], &[3]),
                part(3, 1, &[1, 2, 3], &[1]),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn whole_cluster_crash_starts_the_broker_leading_most_partitions() {
        let order: Vec<i32> = crashed().start_order(&[], None).into_iter().map(|(b, _)| b).collect();
        assert_eq!(order, [2, 1, 3]);
    }

    #[test]
    fn ties_go_to_the_last_controller_then_the_lowest_id() {
        let mut s = crashed();
        s.partitions.truncate(3); // 2 leads two, 3 leads one (leader -1, ISR [3])
        s.partitions.push(part(3, 3, &[1, 2, 3], &[3]));
        assert_eq!(s.start_order(&[], None)[0].0, 2);
        assert_eq!(s.start_order(&[], Some(3))[0].0, 3);
        assert!(s.start_order(&[], Some(3))[0].1.contains("last controller"));
        let empty = Snapshot::default();
        let order: Vec<i32> = empty.start_order(&[3, 1, 2], None).into_iter().map(|(b, _)| b).collect();
        assert_eq!(order, [1, 2, 3]);
    }

    #[test]
    fn running_brokers_are_not_started() {
        let mut s = crashed();
        s.registered.insert(2);
        let order: Vec<i32> = s.start_order(&[], None).into_iter().map(|(b, _)| b).collect();
        assert_eq!(order, [1, 3]);
    }

    #[test]
    fn stable_means_registered_led_and_fully_in_sync_among_running_brokers() {
        let mut s = crashed();
        assert!(s.unstable(2).unwrap().contains("not registered"));
        s.registered.insert(2);
        // Partitions 2 and 3 wait for brokers 3 and 1, whose data they hold.
        assert_eq!(s.unstable(2), None);
        s.partitions[0].leader = -1;
        assert!(s.unstable(2).unwrap().contains("T-0 has no running leader"));
        s.partitions[0].leader = 2;
        s.registered.insert(1);
        assert!(s.unstable(1).unwrap().contains("broker 1 is not in the ISR"));
        s.partitions[0].isr.push(1);
        s.partitions[1].isr.push(1);
        assert!(s.unstable(1).unwrap().contains("T-3 is under-replicated: broker 2"));
        s.partitions[3].isr.push(2);
        assert_eq!(s.unstable(1), None);
    }

    #[test]
    fn controller_node_parses() {
        assert_eq!(controller_id(br#"{"version":1,"brokerid":2,"timestamp":"1"}"#), Some(2));
        assert_eq!(controller_id(b"garbage"), None);
    }
}
