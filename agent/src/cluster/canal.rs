//! Canal in HA: several canal servers on one ZooKeeper, each on its own host
//! with its own agent (runbook N3–N6 with `[canal] ha = true`).
//!
//! A destination is served by whichever server holds its `running` node; the
//! others are standbys that take it over 5 s after it goes. So an errno 1236
//! follows the destination from host to host and every agent may see it,
//! and a cursor can only be written when the servers of *every* host are
//! stopped. The agents agree through the pipeline's ZooKeeper, under
//! `/pipemedic/canal`:
//!
//! - `claim` (persistent): `{"host", "approval", "expires"}` — the agent that
//!   asked people to approve a cursor plan. Another agent reaching the same
//!   decision records that it is handled elsewhere and asks no one.
//!   Persistent, because the asking agent keeps its approval across a restart;
//!   it lapses at the approval's expiry and is deleted when the approval is
//!   answered.
//! - `members/<host>` (ephemeral): that host's agent keeps its canal stopped
//!   while a hold exists ([`spawn_member`]).
//! - `hold` (ephemeral, owned by the writing agent's session): every member
//!   stops its canal and keeps it stopped while it exists ([`hold`]).
//! - `held/<host>` (ephemeral): that member's canal is stopped for the hold.
//!
//! A writer that dies releases the hold with its session; a member that dies
//! while holding remembers in its state directory that it stopped canal, and
//! starts it again when it is back and the hold is gone. While it holds, the
//! agent's own plans cannot start canal either ([`held_by`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use crate::actions::service;
use crate::audit::{Audit, Entry, Note};
use crate::clients::zk::{Session, ZkError};
use crate::config::Config;
use crate::plan::ServiceOp;
use crate::types::Name;

pub const CLAIM: &str = "/pipemedic/canal/claim";
pub const MEMBERS: &str = "/pipemedic/canal/members";
pub const HOLD: &str = "/pipemedic/canal/hold";
pub const HELD: &str = "/pipemedic/canal/held";

/// Even without a watch firing, look again this often.
const RECHECK: Duration = Duration::from_secs(60);
const RECONNECT: Duration = Duration::from_secs(5);

/// Who asked people to approve a cursor plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub host: String,
    pub approval: String,
    /// Milliseconds since the epoch: the approval's expiry.
    pub expires: i64,
}

/// Why the agents' agreement on canal's cursors could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum CanalClusterError {
    #[error("no [zookeeper] section")]
    NoZooKeeper,
    #[error(transparent)]
    Zk(#[from] ZkError),
    #[error("{doing} on ZooKeeper {ensemble}: {source}")]
    Call { doing: String, ensemble: String, source: zk::Error },
    #[error("encoding {what}: {source}")]
    Encode { what: &'static str, source: serde_json::Error },
    /// Another agent is writing canal's cursors now.
    #[error("{HOLD} exists: the agent on {0} is writing canal's cursors now; not writing")]
    HeldElsewhere(String),
    /// These members did not stop their canal in time.
    #[error("the agents on {} did not report their canal stopped within {} s; not writing", .members.join(", "), .secs)]
    NotStopped { members: Vec<String>, secs: u64 },
    #[error("waiting for the other agents to stop their canal: {0}")]
    Stopping(crate::runtime::Stopping),
}

fn zk_error(doing: String, zk: &Session) -> impl FnOnce(zk::Error) -> CanalClusterError + '_ {
    move |source| CanalClusterError::Call { doing, ensemble: zk.connect_string().to_string(), source }
}

/// Takes the claim for `approval`, or answers who holds it. A claim of this
/// host (an earlier approval it superseded) or one that lapsed is replaced,
/// compare-and-set; so is one that is not a claim at all (nobody's).
pub fn claim(zk: &Session, mine: &Claim, now: i64) -> Result<Option<Claim>, CanalClusterError> {
    let data = serde_json::to_vec(mine).map_err(|source| CanalClusterError::Encode { what: "the claim", source })?;
    let client = zk.client();
    zk.block_on(async {
        loop {
            crate::clients::zk::parents(&client, CLAIM).await?;
            let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            match client.create(CLAIM, &data, &persistent).await {
                Ok(_) => return Ok(None),
                Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
            let Some(node) = crate::clients::zk::get(&client, CLAIM).await? else { continue };
            match serde_json::from_slice::<Claim>(&node.data) {
                Ok(c) if c.host != mine.host && c.expires > now => return Ok(Some(c)),
                Ok(_) => {}
                Err(e) => tracing::warn!("{CLAIM} is not a claim ({e}); replacing it"),
            }
            match client.set_data(CLAIM, &data, Some(node.version)).await {
                Ok(_) => return Ok(None),
                // Someone else changed it since: look again.
                Err(zk::Error::BadVersion | zk::Error::NoNode) => continue,
                Err(e) => return Err(e),
            }
        }
    })
    .map_err(zk_error(format!("claiming {CLAIM} for approval {}", mine.approval), zk))
}

/// Deletes the claim if it is still `approval`'s.
pub fn release(zk: &Session, approval: &str) -> Result<(), ZkError> {
    let Some(node) = zk.get(CLAIM)? else { return Ok(()) };
    match serde_json::from_slice::<Claim>(&node.data) {
        Ok(c) if c.approval == approval => match zk.delete_if_version(CLAIM, node.version) {
            // Gone or changed since it was read: not this approval's any more.
            Err(_) if zk.get(CLAIM)?.is_none_or(|n| n.version != node.version) => Ok(()),
            other => other,
        },
        _ => Ok(()),
    }
}

/// A hold on every member's canal; deleted when dropped (and by ZooKeeper
/// if the writer dies).
pub struct Hold<'a> {
    zk: &'a Session,
    token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct HoldData {
    host: String,
    /// Tells this hold from an earlier one by the same host.
    token: String,
}

/// Creates the hold and waits until the canal of every other member is
/// stopped for it (`held/<host>` names its token), for at most `wait`.
pub fn hold<'a>(zk: &'a Session, me: &str, wait: Duration) -> Result<Hold<'a>, CanalClusterError> {
    let token = crate::approval::token::random_hex(8);
    let data = serde_json::to_vec(&HoldData { host: me.to_string(), token: token.clone() })
        .map_err(|source| CanalClusterError::Encode { what: "the hold", source })?;
    let client = zk.client();
    let created = zk.block_on(async {
        crate::clients::zk::parents(&client, HOLD).await?;
        let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        client.create(HOLD, &data, &ephemeral).await.map(drop)
    });
    match created {
        Ok(()) => {}
        Err(zk::Error::NodeExists) => {
            let other = zk.get(HOLD)?.and_then(|n| serde_json::from_slice::<HoldData>(&n.data).ok());
            return Err(CanalClusterError::HeldElsewhere(other.map_or("another host".to_string(), |h| h.host)));
        }
        Err(e) => return Err(zk_error(format!("creating {HOLD}"), zk)(e)),
    }
    let hold = Hold { zk, token };
    let deadline = Instant::now() + wait;
    loop {
        let members: Vec<String> = zk.children(MEMBERS)?.into_iter().filter(|m| m != me).collect();
        let mut waiting = Vec::new();
        for m in &members {
            let node = zk.get(&format!("{HELD}/{m}"))?;
            let held = node.and_then(|n| serde_json::from_slice::<HoldData>(&n.data).ok());
            if held.is_none_or(|h| h.token != hold.token) {
                waiting.push(m.clone());
            }
        }
        if waiting.is_empty() {
            return Ok(hold);
        }
        if Instant::now() >= deadline {
            return Err(CanalClusterError::NotStopped { members: waiting, secs: wait.as_secs() });
        }
        if crate::runtime::stop_requested().is_set() {
            return Err(CanalClusterError::Stopping(crate::runtime::Stopping));
        }
        // Sleep on the session's runtime, so that it keeps answering pings.
        zk.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let release = || -> Result<(), ZkError> {
            let Some(node) = self.zk.get(HOLD)? else { return Ok(()) };
            match serde_json::from_slice::<HoldData>(&node.data) {
                Ok(h) if h.token == self.token => self.zk.delete_if_version(HOLD, node.version),
                _ => Ok(()),
            }
        };
        if let Err(e) = release() {
            tracing::error!("releasing {HOLD}: {e}; it goes when this session ends");
        }
    }
}

/// The host whose hold keeps this host's canal stopped, if any: a plan must
/// not start canal then.
pub fn held_by() -> Option<String> {
    HELD_BY.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

static HELD_BY: Mutex<Option<String>> = Mutex::new(None);

fn set_held_by(host: Option<String>) {
    *HELD_BY.lock().unwrap_or_else(|e| e.into_inner()) = host;
}

/// What this member did for a hold, kept in the state directory so that a
/// restart knows to start canal again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Holding {
    host: String,
    token: String,
    /// Canal was running and this member stopped it (else it stays stopped
    /// afterwards: a person stopped it).
    stopped: bool,
}

fn holding_file(state_dir: &Path) -> PathBuf {
    state_dir.join("canal-hold.json")
}

fn read_holding(state_dir: &Path) -> Option<Holding> {
    let path = holding_file(state_dir);
    let bytes = crate::fsutil::read_regular(&path).ok()?;
    serde_json::from_slice(&bytes).map_err(|e| tracing::warn!("{}: {e}; ignoring it", path.display())).ok()
}

fn write_holding(state_dir: &Path, h: Option<&Holding>) -> Result<(), crate::state::StateError> {
    let path = holding_file(state_dir);
    match h {
        Some(h) => crate::state::write_json_atomic(&path, h),
        None => match std::fs::remove_file(&path) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                Err(crate::state::StateError::Write { path, source })
            }
            _ => Ok(()),
        },
    }
}

/// Starts the member thread if this host's canal takes part in HA.
pub fn spawn_member(background: &mut crate::runtime::Background, config: Arc<Config>, audit: Audit) {
    let Some(canal) = config.canal.as_ref().filter(|c| c.ha) else { return };
    if config.dry_run || config.zookeeper.is_none() {
        return;
    }
    let service = match Name::parse("service name", &canal.service) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("[canal] service: {e}; not taking part in canal holds");
            return;
        }
    };
    background.spawn_async("canal-member", run(config, service, audit));
}

async fn run(config: Arc<Config>, service: Name, audit: Audit) {
    let Some(zk_config) = config.zookeeper.clone() else { return };
    let member = Member { me: config.host_name(), config: config.clone(), service, audit };
    loop {
        let connected = crate::clients::zk::connect(&zk_config).await;
        let result = match connected {
            Ok(client) => member.serve(&client).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(
                "canal member: ZooKeeper {}: {e}; reconnecting in {} s",
                zk_config.connect,
                RECONNECT.as_secs()
            );
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

struct Member {
    me: String,
    config: Arc<Config>,
    service: Name,
    audit: Audit,
}

impl Member {
    /// One session's life: returns when the session fails.
    async fn serve(&self, client: &zk::Client) -> Result<(), zk::Error> {
        let presence = format!("{MEMBERS}/{}", self.me);
        crate::clients::zk::announce(client, &presence, self.me.as_bytes()).await?;
        tracing::info!("canal member: announced at {presence}");
        loop {
            let (stat, watch) = client.check_and_watch_stat(HOLD).await?;
            let hold = match stat {
                Some(_) => crate::clients::zk::get(client, HOLD).await?.and_then(|n| {
                    serde_json::from_slice::<HoldData>(&n.data)
                        .map_err(|e| tracing::warn!("canal member: {HOLD} is not a hold ({e}); ignoring it"))
                        .ok()
                }),
                None => None,
            };
            let holding = read_holding(&self.config.state_dir);
            match hold.filter(|h| h.host != self.me) {
                Some(h) if holding.as_ref().is_none_or(|x| x.token != h.token) => self.take(client, &h).await?,
                Some(_) => {}
                None => {
                    if let Some(x) = holding {
                        self.give_back(client, &x).await?;
                    }
                }
            }
            tokio::select! {
                _ = watch.changed() => {}
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    /// Stops the local canal for `hold` and reports it under `held/<me>`.
    async fn take(&self, client: &zk::Client, hold: &HoldData) -> Result<(), zk::Error> {
        set_held_by(Some(hold.host.clone()));
        let svc = &self.config.services[self.service.as_str()];
        let running = !service::running_pids(svc).is_empty();
        let holding = Holding { host: hold.host.clone(), token: hold.token.clone(), stopped: running };
        // Written first: a crash between here and the start must still end
        // with canal started again.
        if let Err(e) = write_holding(&self.config.state_dir, Some(&holding)) {
            tracing::error!("canal member: {e}");
        }
        let (ok, message) = match running {
            true => self.run_service(ServiceOp::Stop, &hold.host).await,
            false => (true, format!("{} was not running; it stays stopped afterwards", self.service)),
        };
        self.journal(format!(
            "the agent on {} holds every canal stopped to write canal's cursors: {}{message}",
            hold.host,
            if ok { "" } else { "FAILED: " }
        ));
        if ok {
            let data = serde_json::to_vec(hold).unwrap_or_default();
            crate::clients::zk::announce(client, &format!("{HELD}/{}", self.me), &data).await?;
        }
        Ok(())
    }

    /// The hold is gone: starts the local canal again if this member stopped it.
    async fn give_back(&self, client: &zk::Client, holding: &Holding) -> Result<(), zk::Error> {
        match client.delete(&format!("{HELD}/{}", self.me), None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
        set_held_by(None);
        let (ok, message) = match holding.stopped {
            true => self.run_service(ServiceOp::Start, &holding.host).await,
            false => (true, format!("{} stays stopped, as it was before the hold", self.service)),
        };
        self.journal(format!(
            "the hold of the agent on {} is gone: {}{message}",
            holding.host,
            if ok { "" } else { "FAILED: " }
        ));
        if let Err(e) = write_holding(&self.config.state_dir, None) {
            tracing::error!("canal member: {e}");
        }
        Ok(())
    }

    /// Runs the service's script; (whether it worked, what it said).
    async fn run_service(&self, op: ServiceOp, host: &str) -> (bool, String) {
        let part_of = format!("the hold of every canal by the agent on {host} (runbook N4/N6 in HA)");
        match service::apply_off_thread(&self.config, op, &self.service, part_of).await {
            Ok(done) => (true, done),
            Err(e) => (false, e.to_string()),
        }
    }

    fn journal(&self, detail: String) {
        self.audit.emit(&Entry::CanalHold(Note::now(false, detail)));
    }
}
