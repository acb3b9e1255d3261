//! The local broker's side of a leader-first restart: announce this agent
//! under `agents/<id>`, wait for the `turn` node to name the local broker,
//! start it with its own scripts, report under `started/<id>`. Also
//! remembers the controller it sees, for the leader choice after a
//! whole-cluster crash.
//!
//! Runs on its own thread with its own session, so a turn is taken even while
//! the agent's worker waits for the cluster lock or runs another action. Not
//! started in dry-run: announcing and starting are changes.

use std::sync::Arc;
use std::time::Duration;

use zookeeper_client as zk;

use super::{controller_id, remember_controller, Started, Turn, AGENTS, STARTED, TURN};
use crate::actions::service;
use crate::audit::{Audit, Entry, Note};
use crate::config::{Config, KafkaClusterConfig};
use crate::plan::ServiceOp;
use crate::types::Name;

/// Even without a watch firing, look again this often (a missed watch, or a
/// controller change between two watches).
const RECHECK: Duration = Duration::from_secs(60);
const RECONNECT: Duration = Duration::from_secs(5);

/// Starts the member thread if this host takes part in a cluster restart.
pub fn spawn(background: &mut crate::runtime::Background, config: Arc<Config>, audit: Audit) {
    let Some(cluster) = config.kafka_cluster().cloned() else { return };
    if config.dry_run || config.zookeeper.is_none() {
        return;
    }
    let service = match Name::parse("service name", &cluster.service) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("[kafka.cluster] service: {e}; not taking part in leader-first restarts");
            return;
        }
    };
    background.spawn_async("kafka-member", run(config, cluster, service, audit));
}

async fn run(config: Arc<Config>, cluster: KafkaClusterConfig, service: Name, audit: Audit) {
    let Some(zk_config) = config.zookeeper.clone() else { return };
    let mut served: Option<String> = None;
    loop {
        let connected = crate::clients::zk::connect(&zk_config).await;
        let result = match connected {
            Ok(client) => serve(&client, &config, &cluster, &service, &audit, &mut served).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(
                broker = cluster.broker_id,
                "kafka member: ZooKeeper {}: {e}; reconnecting in {} s",
                zk_config.connect,
                RECONNECT.as_secs()
            );
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// One session's life: returns when the session fails.
async fn serve(
    client: &zk::Client,
    config: &Config,
    cluster: &KafkaClusterConfig,
    service: &Name,
    audit: &Audit,
    served: &mut Option<String>,
) -> Result<(), zk::Error> {
    let me = cluster.broker_id;
    let presence = format!("{AGENTS}/{me}");
    crate::clients::zk::announce(client, &presence, config.host_name().as_bytes()).await?;
    tracing::info!(broker = me, "kafka member: announced at {presence}");
    loop {
        if client.check_stat(&presence).await?.is_none() {
            crate::clients::zk::announce(client, &presence, config.host_name().as_bytes()).await?;
        }
        let (turn_stat, turn_watch) = client.check_and_watch_stat(TURN).await?;
        if turn_stat.is_some() {
            if let Some(turn) = read_turn(client).await? {
                if turn.broker == me && served.as_deref() != Some(turn.sequence.as_str()) {
                    *served = Some(turn.sequence.clone());
                    take_turn(client, config, service, audit, &turn).await?;
                    continue;
                }
            }
        }
        let (controller, controller_watch) = client.check_and_watch_stat("/controller").await?;
        if controller.is_some() {
            if let Some(node) = crate::clients::zk::get(client, "/controller").await? {
                if let Some(id) = controller_id(&node.data) {
                    if let Err(e) = remember_controller(&config.state_dir, id) {
                        tracing::warn!("{e}");
                    }
                }
            }
        }
        tokio::select! {
            _ = turn_watch.changed() => {}
            _ = controller_watch.changed() => {}
            _ = tokio::time::sleep(RECHECK) => {}
        }
    }
}

async fn read_turn(client: &zk::Client) -> Result<Option<Turn>, zk::Error> {
    Ok(crate::clients::zk::get(client, TURN).await?.and_then(|node| {
        serde_json::from_slice(&node.data)
            .map_err(|e| tracing::warn!("kafka member: {TURN} is not a turn ({e}); ignoring it"))
            .ok()
    }))
}

/// Starts the local broker (on another thread, so this session keeps
/// answering pings during a slow start), reports and audits.
async fn take_turn(
    client: &zk::Client,
    config: &Config,
    service: &Name,
    audit: &Audit,
    turn: &Turn,
) -> Result<(), zk::Error> {
    let part_of = format!("broker {}'s turn in leader-first sequence {} (runbook K4)", turn.broker, turn.sequence);
    let result = service::apply_off_thread(config, ServiceOp::Start, service, part_of).await;
    let (ok, message) = match &result {
        Ok(done) => (true, done.clone()),
        Err(e) => (false, e.to_string()),
    };
    let detail = format!(
        "broker {}'s turn in leader-first sequence {} (coordinator {}, order {:?}): {}{message}",
        turn.broker,
        turn.sequence,
        turn.coordinator,
        turn.order,
        if ok { "" } else { "FAILED: " }
    );
    audit.emit(&Entry::KafkaTurn(Note::now(false, detail)));
    let report = serde_json::to_vec(&Started { sequence: turn.sequence.clone(), ok, message }).unwrap_or_default();
    crate::clients::zk::put(client, &format!("{STARTED}/{}", turn.broker), &report, zk::CreateMode::Persistent).await
}
