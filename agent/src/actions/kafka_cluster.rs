//! `kafka_start_leader_first`: start the cluster's stopped brokers, the
//! leader's first, each stable before the next (runbook K4). The agent that
//! holds the cluster lock coordinates; each broker is started by its own
//! host's agent when the `turn` node names it (see [`crate::cluster`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use super::Agent;
use super::{Action, ActionError, Cx, Preview, Staged, Step};
use crate::actions::step::{Refusal, StepSpec};
use crate::clients::zk::Session;
use crate::clients::zk::ZooKeeperConfig;
use crate::cluster::KafkaClusterConfig;
use crate::cluster::{self, ids, Snapshot, Started, Turn, AGENTS, LOCK_DIR, STARTED, TURN};

/// How often a waiting coordinator looks at ZooKeeper again.
const POLL: Duration = Duration::from_secs(1);

/// The family's part of the configuration: this host's `[kafka.cluster]`
/// and the ZooKeeper the agents coordinate in.
#[derive(Debug, Clone)]
pub struct Section {
    pub cluster: KafkaClusterConfig,
    pub zookeeper: ZooKeeperConfig,
}

fn setup<'a>(s: Option<&'a Section>, doing: &str) -> Result<(&'a KafkaClusterConfig, Session), ActionError> {
    let s = s.ok_or_else(|| ActionError::new(doing, "no [kafka.cluster] section"))?;
    let session = Session::connect(&s.zookeeper).map_err(|e| ActionError::new(doing, e))?;
    Ok((&s.cluster, session))
}

fn last_controller(agent: &Agent, snap: &Snapshot) -> Option<i32> {
    snap.controller.or_else(|| cluster::last_controller(&agent.state_dir))
}

pub fn preview(s: Option<&Section>, agent: &Agent) -> Result<Preview, ActionError> {
    let doing = "reading the Kafka cluster's state in ZooKeeper";
    let (c, zk) = setup(s, doing)?;
    let snap = zk
        .block_on(cluster::snapshot(&zk.client()))
        .map_err(|e| ActionError::new(doing, format!("ZooKeeper {}: {e}", zk.connect_string())))?;
    let order = snap.start_order(&c.brokers, last_controller(agent, &snap));
    let expected = snap.expected(&c.brokers);
    if order.is_empty() {
        return Ok(Preview {
            text: format!("all {} brokers ({}) are registered; nothing to start", expected.len(), ids(expected)),
            noop: true,
            guard: Default::default(),
        });
    }
    let mut text = format!(
        "brokers down: {}; running: {}; agents present: {}.\nStart them one at a time, each stable for {} s \
         (registered under /brokers/ids, leading the partitions it is the surviving in-sync replica of, \
         no running replica out of an ISR) before the next, at most {} s each:",
        ids(order.iter().map(|(b, _)| *b)),
        ids(snap.registered.iter().copied()),
        ids(snap.agents.iter().copied()),
        c.settle_secs,
        c.start_timeout_secs,
    );
    for (i, (b, why)) in order.iter().enumerate() {
        let agent = if snap.agents.contains(b) { "" } else { " — NO AGENT: will be skipped" };
        text.push_str(&format!("\n  {}. broker {b}: {why}{agent}", i + 1));
    }
    text.push_str(
        "\nIf the first cannot be started, the others stay stopped (so none becomes leader without the data) \
         and a person is told.",
    );
    if agent.dry_run {
        text.push_str("\n(Dry-run: agents in dry-run do not announce themselves, so none may be listed as present.)");
    }
    Ok(Preview { text, noop: false, guard: Default::default() })
}

pub fn apply(s: Option<&Section>, agent: &Agent) -> Result<String, ActionError> {
    let doing = "starting the Kafka brokers leader-first";
    let (c, zk) = setup(s, doing)?;
    let mut log = Vec::new();
    let result = zk.block_on(coordinate(&zk.client(), agent, c, &mut log));
    let report = log.join("; ");
    result.map(|()| report.clone()).map_err(|e| ActionError::new(doing, format!("{report}; {e}")))
}

pub fn verify(s: Option<&Section>) -> Result<String, ActionError> {
    let doing = "checking that every Kafka broker is registered";
    let (c, zk) = setup(s, doing)?;
    let snap = zk.block_on(cluster::snapshot(&zk.client())).map_err(|e| ActionError::new(doing, e))?;
    let down = snap.down(&c.brokers);
    if down.is_empty() {
        Ok(format!("brokers {} are registered", ids(snap.registered.iter().copied())))
    } else {
        Err(ActionError::new(doing, format!("brokers {} are still down", ids(down))))
    }
}

/// Why the leader-first sequence stopped, or why a broker's turn failed.
#[derive(Debug, thiserror::Error)]
enum SequenceError {
    #[error("{doing}: {source}")]
    Zk { doing: String, source: zk::Error },
    #[error("encoding the turn: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("another agent held the cluster lock under {LOCK_DIR} for more than {0} s; not starting anything")]
    LockTimeout(u64),
    #[error("{0}: {1}")]
    Stopping(&'static str, crate::runtime::Stopping),
    #[error("broker {0} is down and has no agent ({AGENTS}/{0} is absent)")]
    NoAgent(i32),
    #[error("broker {broker}'s agent could not start it: {message}")]
    StartFailed { broker: i32, message: String },
    #[error("broker {0}'s agent went away before the broker registered")]
    AgentGone(i32),
    #[error("broker {broker} was not stable after {secs} s: {why}")]
    NotStable { broker: i32, secs: u64, why: String },
    /// The first broker failed while none runs: the rest stay stopped.
    #[error(
        "{failure}; no broker is running, so brokers {rest} stay stopped (started before broker {broker}, \
         which {why}, they could become leaders without its data): start broker {broker} by hand"
    )]
    FirstFailed { failure: Box<SequenceError>, rest: String, broker: i32, why: String },
    #[error("brokers {0} were not started; start them by hand")]
    Skipped(String),
}

fn zkerr(doing: impl Into<String>) -> impl FnOnce(zk::Error) -> SequenceError {
    let doing = doing.into();
    move |source| SequenceError::Zk { doing, source }
}

/// Takes the cluster lock (waiting for another agent's sequence), runs the
/// sequence, releases everything it created.
async fn coordinate(
    client: &zk::Client,
    agent: &Agent,
    c: &KafkaClusterConfig,
    log: &mut Vec<String>,
) -> Result<(), SequenceError> {
    let dir = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let options =
        zk::LockOptions::new(zk::Acls::anyone_all()).with_ancestor_options(dir).map_err(zkerr("lock options"))?;
    let prefix = zk::LockPrefix::new_curator(LOCK_DIR, "lock-").map_err(zkerr("lock prefix"))?;
    let host = agent.host.clone();
    let waited = Instant::now();
    let stop = crate::runtime::stop_requested();
    let taking =
        tokio::time::timeout(Duration::from_secs(c.lock_wait_secs), client.lock(prefix, host.as_bytes(), options));
    let lock = tokio::select! {
        taken = taking => match taken {
            Ok(Ok(lock)) => lock,
            Ok(Err(e)) => return Err(zkerr(format!("taking the cluster lock under {LOCK_DIR}"))(e)),
            Err(_) => return Err(SequenceError::LockTimeout(c.lock_wait_secs)),
        },
        () = stop.wait() => return Err(SequenceError::Stopping("waiting for the cluster lock; nothing was started", crate::runtime::Stopping)),
    };
    log.push(format!("took the cluster lock after {:.0} s", waited.elapsed().as_secs_f64()));
    let result = tokio::select! {
        done = sequence(client, agent, c, &host, log) => done,
        () = stop.wait() => Err(SequenceError::Stopping("during the leader-first sequence; the turn and the lock are released", crate::runtime::Stopping)),
    };
    // Ours: the lock is held, so any turn node is this session's.
    let _ = client.delete(TURN, None).await;
    let _ = client.delete(lock.lock_path(), None).await;
    drop(lock);
    result
}

async fn sequence(
    client: &zk::Client,
    agent: &Agent,
    c: &KafkaClusterConfig,
    host: &str,
    log: &mut Vec<String>,
) -> Result<(), SequenceError> {
    let snap = read(client).await?;
    // Recomputed under the lock: another agent's sequence may have started
    // some or all of them meanwhile.
    let order = snap.start_order(&c.brokers, last_controller(agent, &snap));
    if order.is_empty() {
        log.push("every broker is registered (another agent's sequence started them); nothing to start".into());
        return Ok(());
    }
    let brokers: Vec<i32> = order.iter().map(|(b, _)| *b).collect();
    log.push(format!("order {}", ids(brokers.iter().copied())));
    let sequence = format!("{host}-{}", chrono::Utc::now().timestamp_millis());
    let mut skipped = Vec::new();
    for (i, (broker, why)) in order.iter().enumerate() {
        let failure = match take_turn(client, c, *broker, &sequence, &brokers, host).await {
            Ok(secs) => {
                log.push(format!("broker {broker} ({why}) stable after {secs:.0} s"));
                continue;
            }
            Err(e) => e,
        };
        // With no broker running, the one that failed was to lead: starting
        // the others could make one of them leader without its data. Once
        // one runs, leadership is settled and the rest may join in any order.
        if read(client).await?.registered.is_empty() {
            let _ = client.delete(TURN, None).await;
            return Err(SequenceError::FirstFailed {
                failure: Box::new(failure),
                rest: ids(brokers[i + 1..].iter().copied()),
                broker: *broker,
                why: why.clone(),
            });
        }
        log.push(format!("skipped: {failure}"));
        skipped.push(*broker);
    }
    if skipped.is_empty() {
        Ok(())
    } else {
        Err(SequenceError::Skipped(ids(skipped)))
    }
}

/// Hands the turn to `broker`'s agent and waits until the broker is stable;
/// the seconds it took.
async fn take_turn(
    client: &zk::Client,
    c: &KafkaClusterConfig,
    broker: i32,
    sequence: &str,
    order: &[i32],
    host: &str,
) -> Result<f64, SequenceError> {
    let snap = read(client).await?;
    if !snap.registered.contains(&broker) && !snap.agents.contains(&broker) {
        return Err(SequenceError::NoAgent(broker));
    }
    let turn = Turn { broker, sequence: sequence.to_string(), order: order.to_vec(), coordinator: host.to_string() };
    let data = serde_json::to_vec(&turn)?;
    // Ephemeral: the turn goes with this session if this agent dies.
    crate::clients::zk::put(client, TURN, &data, zk::CreateMode::Ephemeral)
        .await
        .map_err(zkerr(format!("writing {TURN} for broker {broker}")))?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(c.start_timeout_secs);
    let settle = Duration::from_secs(c.settle_secs);
    let mut stable_since: Option<Instant> = None;
    loop {
        let snap = read(client).await?;
        let reason = snap.unstable(broker);
        match &reason {
            None => {
                let since = *stable_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= settle {
                    return Ok(started.elapsed().as_secs_f64());
                }
            }
            Some(_) => stable_since = None,
        }
        if !snap.registered.contains(&broker) {
            if let Some(report) = report(client, broker, sequence).await? {
                if !report.ok {
                    return Err(SequenceError::StartFailed { broker, message: report.message });
                }
            }
            if !snap.agents.contains(&broker) {
                return Err(SequenceError::AgentGone(broker));
            }
        }
        if Instant::now() >= deadline {
            return Err(SequenceError::NotStable {
                broker,
                secs: c.start_timeout_secs,
                why: reason.unwrap_or_else(|| "it was stable for less than the settle time".into()),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn read(client: &zk::Client) -> Result<Snapshot, SequenceError> {
    cluster::snapshot(client).await.map_err(zkerr("reading the cluster's state"))
}

/// The broker's agent's report for this sequence, if it made one.
async fn report(client: &zk::Client, broker: i32, sequence: &str) -> Result<Option<Started>, SequenceError> {
    let path = format!("{STARTED}/{broker}");
    let node = crate::clients::zk::get(client, &path).await.map_err(zkerr(format!("reading {path}")))?;
    Ok(node.and_then(|n| serde_json::from_slice::<Started>(&n.data).ok()).filter(|s| s.sequence == sequence))
}

/// Start the cluster's stopped brokers, the leader's first, each stable
/// before the next, with the other hosts' agents (runbook K4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartLeaderFirst {}

/// `kafka_start_leader_first()`: needs this host's `[kafka.cluster]`.
pub fn spec() -> StepSpec {
    StepSpec::new("kafka_start_leader_first", "kafka start brokers leader-first".into(), |sections| {
        if sections.kafka_cluster.is_none() {
            return Err(Refusal::NotConfigured(
                "no [kafka.cluster] section: this host does not know its broker".into(),
            ));
        }
        Ok(Step::KafkaStartLeaderFirst(StartLeaderFirst {}))
    })
}

impl Action for StartLeaderFirst {
    fn family(&self) -> &'static str {
        "kafka"
    }

    fn target(&self) -> String {
        "brokers leader-first".into()
    }

    fn changes(&self) -> Option<String> {
        Some("kafka brokers".into())
    }

    /// Another agent's sequence holds the cluster lock: this plan waits
    /// for it off the worker (up to `lock_wait_secs`), then runs and finds
    /// what is still down.
    fn busy(&self, cx: &Cx) -> Option<super::Busy> {
        let (c, zk) = setup(cx.sections.kafka_cluster.as_ref(), "looking who holds the cluster lock").ok()?;
        let holder = zk.block_on(cluster::lock_holder(&zk.client())).ok()??;
        let host = String::from_utf8_lossy(&holder.data).into_owned();
        (host != cx.sections.agent.host).then(|| super::Busy {
            why: format!(
                "the agent on {} holds the cluster lock under {LOCK_DIR}: its leader-first sequence runs now",
                crate::types::one_line(&host, 80)
            ),
            at_most: Duration::from_secs(c.lock_wait_secs),
        })
    }

    fn preview(&self, cx: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        preview(cx.sections.kafka_cluster.as_ref(), &cx.sections.agent)
    }

    fn apply(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        apply(cx.sections.kafka_cluster.as_ref(), &cx.sections.agent)
    }

    fn verify(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        verify(cx.sections.kafka_cluster.as_ref())
    }
}
