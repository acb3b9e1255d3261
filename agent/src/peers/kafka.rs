//! The local broker's side of a leader-first restart: announce this agent
//! under `agents/<id>`, wait for the `turn` node to name the local broker,
//! start it with its own scripts, report under `started/<id>`. Also
//! remembers the controller it sees, for the leader choice after a
//! whole-cluster crash.
//!
//! Runs on its own thread with its own session, so a turn is taken even while
//! the agent's worker waits for the cluster lock or runs another action. Not
//! started in dry-run: announcing and starting are changes.

use zookeeper_client as zk;

use super::MemberCx;
use crate::actions::service;
use crate::audit::{Entry, Note};
use crate::cluster::KafkaClusterConfig;
use crate::cluster::{controller_id, remember_controller, Started, Turn, AGENTS, LOCK_DIR, STARTED, TURN};
use crate::plan::policy::Verdict;
use crate::plan::{Plan, Risk, ServiceOp, Step};
use crate::types::Name;

/// Starts the member thread if this host takes part in a cluster restart.
pub fn spawn(background: &mut crate::runtime::Background, cx: MemberCx) {
    let Some(section) = cx.sections.kafka_cluster.clone() else { return };
    let (cluster, zk_config) = (section.cluster, section.zookeeper);
    let Some(service) = super::member_service(&cx, "[kafka.cluster]", &cluster.service, "leader-first restarts") else {
        return;
    };
    super::spawn(background, "kafka-member", zk_config, Member { cx: cx.clone(), cluster, service, refused: None });
}

struct Member {
    cx: MemberCx,
    cluster: KafkaClusterConfig,
    service: Name,
    /// The last turn node not obeyed (its modification time), told once.
    refused: Option<i64>,
}

impl super::Member for Member {
    fn who(&self) -> String {
        format!("kafka member of broker {}", self.cluster.broker_id)
    }

    async fn serve(&mut self, client: &zk::Client) -> Result<(), zk::Error> {
        let me = self.cluster.broker_id;
        let host = self.cx.sections.agent.host.clone();
        let presence = format!("{AGENTS}/{me}");
        crate::clients::zk::announce(client, &presence, host.as_bytes()).await?;
        tracing::info!(broker = me, "kafka member: announced at {presence}");
        loop {
            if client.check_stat(&presence).await?.is_none() {
                crate::clients::zk::announce(client, &presence, host.as_bytes()).await?;
            }
            let (turn_stat, turn_watch) = client.check_and_watch_stat(TURN).await?;
            if turn_stat.is_some() {
                if let Some(turn) = self.obeyed_turn(client).await? {
                    self.take_turn(client, &turn).await?;
                    continue;
                }
            }
            let (controller, controller_watch) = client.check_and_watch_stat("/controller").await?;
            if controller.is_some() {
                if let Some(node) = crate::clients::zk::get(client, "/controller").await? {
                    if let Some(id) = controller_id(&node.data) {
                        if let Err(e) = remember_controller(&self.cx.sections.agent.state_dir, id) {
                            tracing::warn!("{e}");
                        }
                    }
                }
            }
            tokio::select! {
                _ = turn_watch.changed() => {}
                _ = controller_watch.changed() => {}
                _ = tokio::time::sleep(super::RECHECK) => {}
            }
        }
    }
}

impl Member {
    /// The turn to take now, if the `turn` node names this broker and is
    /// obeyed: written in the protocol's order, by the lock holder of a
    /// sequence this member takes part in, and not yet served. A turn node
    /// that names this broker but fails the checks is told to a person once
    /// and never starts anything.
    async fn obeyed_turn(&mut self, client: &zk::Client) -> Result<Option<Turn>, zk::Error> {
        let me = self.cluster.broker_id;
        let Some(node) = crate::clients::zk::get(client, TURN).await? else { return Ok(None) };
        let turn = match node.peer::<Turn>(TURN) {
            Ok(t) if t.broker != me => return Ok(None),
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("kafka member: {e}; ignoring it");
                return Ok(None);
            }
        };
        // Served already (before a restart too): its report names the sequence.
        let report = crate::clients::zk::get(client, &format!("{STARTED}/{me}")).await?;
        if report.and_then(|r| r.peer::<Started>(STARTED).ok()).is_some_and(|r| r.sequence == turn.sequence) {
            return Ok(None);
        }
        match turn_refused(client, &turn, &node, me).await? {
            None => Ok(Some(turn)),
            Some(why) => {
                if self.refused != Some(node.mtime) {
                    self.refused = Some(node.mtime);
                    let message = format!(
                        "{TURN} names broker {me} (sequence {:?}), but this agent does not start it: {why}. \
                         Only the agent holding the cluster lock hands out turns (runbook K4); the broker stays as it is.",
                        crate::types::one_line(&turn.sequence, 80)
                    );
                    let told = self.cx.tell(&message);
                    self.cx.audit.emit(&Entry::KafkaTurn(Note::now(false, format!("{message} ({told})"))));
                }
                Ok(None)
            }
        }
    }

    /// Starts the local broker (on another thread, so this session keeps
    /// answering pings during a slow start), reports and audits. The start
    /// is a broker start like any other: the policy's cooldown, hourly
    /// limit and circuit breaker hold it back, and it is counted.
    async fn take_turn(&self, client: &zk::Client, turn: &Turn) -> Result<(), zk::Error> {
        let plan = Plan {
            rule: "k4-turn".into(),
            runbook: vec!["K4".into()],
            summary: format!("start broker {} for its turn in a leader-first sequence", turn.broker),
            risk: Risk::Safe,
            benign: false,
            steps: vec![Step::Service(service::ServiceStep { op: ServiceOp::Start, service: self.service.clone() })],
        };
        let now = chrono::Utc::now().timestamp_millis();
        let part_of = format!("broker {}'s turn in leader-first sequence {} (runbook K4)", turn.broker, turn.sequence);
        let (ok, message) = match self.cx.policy.decide(&plan, &[false], now) {
            Verdict::Proceed => {
                if let Err(e) = self.cx.policy.record(&plan, &[false], now) {
                    tracing::warn!("{e}");
                }
                match service::apply_off_thread(&self.cx.sections.service, ServiceOp::Start, &self.service, part_of)
                    .await
                {
                    Ok(done) => (true, done),
                    Err(e) => (false, e.to_string()),
                }
            }
            Verdict::RateLimited(why) | Verdict::CircuitOpen(why) | Verdict::NeedsApproval(why) => {
                (false, format!("not started: {why}"))
            }
            Verdict::Benign | Verdict::NothingToDo => (false, "not started: nothing to do".to_string()),
        };
        let detail = format!(
            "broker {}'s turn in leader-first sequence {} (coordinator {}, order {:?}): {}{message}",
            turn.broker,
            turn.sequence,
            turn.coordinator,
            turn.order,
            if ok { "" } else { "FAILED: " }
        );
        self.cx.audit.emit(&Entry::KafkaTurn(Note::now(false, detail)));
        let report = serde_json::to_vec(&Started { sequence: turn.sequence.clone(), ok, message }).unwrap_or_default();
        crate::clients::zk::put(client, &format!("{STARTED}/{}", turn.broker), &report, zk::CreateMode::Persistent)
            .await
    }
}

/// Why a turn naming this broker is not obeyed, if it is not: it must be
/// ephemeral and owned by the session that holds the cluster lock (the
/// lowest node under `lock/`), whose agent wrote its host there and is a
/// live member under `agents/`; and this broker must be in its order.
async fn turn_refused(
    client: &zk::Client,
    turn: &Turn,
    node: &crate::clients::zk::Node,
    me: i32,
) -> Result<Option<String>, zk::Error> {
    if node.ephemeral_owner == 0 {
        return Ok(Some(
            "the node is persistent, so no live sequence owns it (a turn goes with its coordinator's session)".into(),
        ));
    }
    if !turn.order.contains(&me) {
        return Ok(Some(format!("its order {:?} does not include broker {me}", turn.order)));
    }
    let Some(lock) = crate::cluster::lock_holder(client).await? else {
        return Ok(Some(format!("nobody holds the cluster lock under {LOCK_DIR}")));
    };
    if lock.ephemeral_owner != node.ephemeral_owner {
        return Ok(Some("it was not written by the session that holds the cluster lock".into()));
    }
    let coordinator = String::from_utf8_lossy(&lock.data).into_owned();
    if coordinator != turn.coordinator {
        return Ok(Some(format!(
            "it names coordinator {:?}, but the lock holder is {:?}",
            crate::types::one_line(&turn.coordinator, 80),
            crate::types::one_line(&coordinator, 80)
        )));
    }
    for agent in crate::clients::zk::children(client, AGENTS).await? {
        let registered = crate::clients::zk::get(client, &format!("{AGENTS}/{agent}")).await?;
        if registered.is_some_and(|r| r.ephemeral_owner != 0 && r.data == lock.data) {
            return Ok(None);
        }
    }
    Ok(Some(format!(
        "its coordinator {:?} is not a live member under {AGENTS}",
        crate::types::one_line(&coordinator, 80)
    )))
}
