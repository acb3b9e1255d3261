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
//! What other agents write is obeyed only while it is owned and bounded
//! (ZooKeeper here often has no ACLs, and crashed agents leave nodes
//! behind): a claim binds only while its host is a live member and before
//! its expiry, capped at this agent's own approval expiry from when it was
//! written; a hold is obeyed only if it is ephemeral and its host was a live
//! member when first obeyed, and one obeyed for longer than [`HOLD_STUCK`]
//! or refused is told to a person. What this member did (it stopped canal)
//! is its own state and survives any change of the node.
//!
//! A writer that dies releases the hold with its session; a member that dies
//! while holding remembers in its state directory that it stopped canal, and
//! starts it again when it is back and the hold is gone. While it holds, the
//! agent's own plans cannot start canal either ([`held_by`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use crate::actions::service;
use crate::audit::{Entry, Note};
use crate::clients::zk::{Session, ZkError};
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
    /// The other members obey a hold only from a live member.
    #[error("this agent is not registered at {MEMBERS}/{0} (its canal member is not connected), so the others would not obey its hold; not writing")]
    NotMember(String),
}

fn zk_error(doing: String, zk: &Session) -> impl FnOnce(zk::Error) -> CanalClusterError + '_ {
    move |source| CanalClusterError::Call { doing, ensemble: zk.connect_string().to_string(), source }
}

/// What [`claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The claim is this approval's now. `replaced`: another host's claim
    /// that was there and why it was not obeyed.
    Mine { replaced: Option<String> },
    /// A live member asked people first; its expiry as this agent caps it.
    Elsewhere(Claim),
}

/// Takes the claim for `approval`, or answers who holds it. Another agent's
/// claim is obeyed only while it is owned and bounded: its host is a live
/// member (its ephemeral `members/<host>` exists) and it has not lapsed,
/// its expiry capped at `max_ttl_ms` (this agent's own approval expiry)
/// after the node was written, by the server's clock. Anything else — a
/// claim of this host (an earlier approval it superseded), a lapsed one,
/// one by a host that is not a member, one that is not a claim at all — is
/// replaced, compare-and-set.
pub fn claim(zk: &Session, mine: &Claim, now: i64, max_ttl_ms: i64) -> Result<Claimed, CanalClusterError> {
    let data = serde_json::to_vec(mine).map_err(|source| CanalClusterError::Encode { what: "the claim", source })?;
    let client = zk.client();
    zk.block_on(async {
        loop {
            crate::clients::zk::parents(&client, CLAIM).await?;
            let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            match client.create(CLAIM, &data, &persistent).await {
                Ok(_) => return Ok(Claimed::Mine { replaced: None }),
                Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
            let Some(node) = crate::clients::zk::get(&client, CLAIM).await? else { continue };
            let replaced = match node.peer::<Claim>(CLAIM) {
                Ok(c) if c.host == mine.host => None,
                Ok(c) => match obeyed(&client, &c, &node, now, max_ttl_ms).await? {
                    Ok(expires) => return Ok(Claimed::Elsewhere(Claim { expires, ..c })),
                    Err(why) => Some(format!("the claim of {:?} ({why})", crate::types::one_line(&c.host, 80))),
                },
                Err(e) => Some(e),
            };
            match client.set_data(CLAIM, &data, Some(node.version)).await {
                Ok(_) => return Ok(Claimed::Mine { replaced }),
                // Someone else changed it since: look again.
                Err(zk::Error::BadVersion | zk::Error::NoNode) => continue,
                Err(e) => return Err(e),
            }
        }
    })
    .map_err(zk_error(format!("claiming {CLAIM} for approval {}", mine.approval), zk))
}

/// Whether another host's claim binds this agent: `Ok(its capped expiry)`,
/// or why not.
async fn obeyed(
    client: &zk::Client,
    c: &Claim,
    node: &crate::clients::zk::Node,
    now: i64,
    max_ttl_ms: i64,
) -> Result<Result<i64, String>, zk::Error> {
    if crate::types::HostName::parse(&c.host).is_err() {
        return Ok(Err("it names no host".into()));
    }
    if c.approval.is_empty() || c.approval.len() > 64 || !c.approval.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(Err("it names no approval".into()));
    }
    let expires = c.expires.min(node.mtime.saturating_add(max_ttl_ms));
    if expires <= now {
        let capped = if expires < c.expires { ", capped at this agent's approval expiry" } else { "" };
        return Ok(Err(format!("it lapsed at {}{capped}", crate::types::human_time(expires))));
    }
    match crate::clients::zk::get(client, &format!("{MEMBERS}/{}", c.host)).await? {
        Some(member) if member.ephemeral_owner != 0 => Ok(Ok(expires)),
        _ => Ok(Err(format!("no live agent is registered at {MEMBERS}/{}", c.host))),
    }
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
    if zk.get(&format!("{MEMBERS}/{me}"))?.is_none_or(|n| n.ephemeral_owner == 0) {
        return Err(CanalClusterError::NotMember(me.to_string()));
    }
    let token = crate::digest::random_hex(8);
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
            let other = zk.get(HOLD)?.and_then(|n| n.peer::<HoldData>(HOLD).ok());
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
            let held = node.and_then(|n| n.peer::<HoldData>(HELD).ok());
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
pub fn spawn_member(background: &mut crate::runtime::Background, cx: super::MemberCx) {
    let Some(canal) = cx.config.canal.as_ref().filter(|c| c.ha) else { return };
    if cx.config.dry_run || cx.config.zookeeper.is_none() {
        return;
    }
    let service = match Name::parse("service name", &canal.service) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("[canal] service: {e}; not taking part in canal holds");
            return;
        }
    };
    background.spawn_async("canal-member", run(cx, service));
}

async fn run(cx: super::MemberCx, service: Name) {
    let Some(zk_config) = cx.config.zookeeper.clone() else { return };
    let mut member = Member { me: cx.config.host_name(), cx, service, seen: None, refused: None };
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

/// A hold obeyed longer than this is told to a person: a writer stops every
/// canal for seconds (its wait for the members, then one write).
pub const HOLD_STUCK: Duration = Duration::from_secs(600);

struct Member {
    me: String,
    cx: super::MemberCx,
    service: Name,
    /// The hold obeyed now: its token, since when, whether a person was told
    /// that it lasts.
    seen: Option<(String, Instant, bool)>,
    /// The last hold node not obeyed (its modification time), told once.
    refused: Option<i64>,
}

impl Member {
    /// One session's life: returns when the session fails.
    async fn serve(&mut self, client: &zk::Client) -> Result<(), zk::Error> {
        let presence = format!("{MEMBERS}/{}", self.me);
        crate::clients::zk::announce(client, &presence, self.me.as_bytes()).await?;
        tracing::info!("canal member: announced at {presence}");
        loop {
            let (stat, watch) = client.check_and_watch_stat(HOLD).await?;
            let node = match stat {
                Some(_) => crate::clients::zk::get(client, HOLD).await?,
                None => None,
            };
            let holding = read_holding(&self.cx.config.state_dir);
            let hold = match node {
                Some(node) => self.obeyed(client, &node, holding.as_ref()).await?,
                None => None,
            };
            match hold {
                Some(h) if holding.as_ref().is_none_or(|x| x.token != h.token) => {
                    self.take(client, &h, holding.as_ref()).await?
                }
                Some(h) => self.still_held(&h),
                None => {
                    self.seen = None;
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

    /// The hold this member obeys, if `node` is one: another member's, made
    /// by the protocol's writer. A hold is ephemeral (it goes with its
    /// writer's session); its host is a live member (`members/<host>`) when
    /// this member first obeys it, and stays obeyed until it goes. A hold
    /// that fails these is not obeyed, and a person is told once.
    async fn obeyed(
        &mut self,
        client: &zk::Client,
        node: &crate::clients::zk::Node,
        holding: Option<&Holding>,
    ) -> Result<Option<HoldData>, zk::Error> {
        let why = match node.peer::<HoldData>(HOLD) {
            Err(e) => e,
            Ok(h) if h.host == self.me => return Ok(None),
            Ok(h) if crate::types::HostName::parse(&h.host).is_err() => "it names no host".to_string(),
            Ok(h) if h.token.is_empty() || h.token.len() > 64 || !h.token.bytes().all(|b| b.is_ascii_hexdigit()) => {
                format!("the hold of {} carries no token", h.host)
            }
            Ok(h) if node.ephemeral_owner == 0 => {
                format!("the hold of {} is persistent: it would outlive its writer", h.host)
            }
            // Obeyed already: kept until it goes with its writer.
            Ok(h) if holding.is_some_and(|x| x.token == h.token) => return Ok(Some(h)),
            Ok(h) => match crate::clients::zk::get(client, &format!("{MEMBERS}/{}", h.host)).await? {
                Some(m) if m.ephemeral_owner != 0 => return Ok(Some(h)),
                _ => format!("no live agent is registered at {MEMBERS}/{}", h.host),
            },
        };
        if self.refused != Some(node.mtime) {
            self.refused = Some(node.mtime);
            self.tell(format!(
                "{HOLD} asks every canal to stay stopped, but this agent does not obey it: {why}. \
                 The canal here keeps running; if an agent is writing canal's cursors, look at its host (runbook N4/N6 in HA)."
            ));
        }
        Ok(None)
    }

    /// A hold obeyed for longer than [`HOLD_STUCK`] is told to a person, once.
    fn still_held(&mut self, hold: &HoldData) {
        match &mut self.seen {
            Some((token, since, told)) if *token == hold.token => {
                if !*told && since.elapsed() >= HOLD_STUCK {
                    *told = true;
                    let minutes = since.elapsed().as_secs() / 60;
                    self.tell(format!(
                        "the agent on {} has held every canal stopped for {minutes} min; a cursor write takes seconds. \
                         canal stays stopped here while the hold exists: look at {} (its hold {HOLD} goes with its agent's session).",
                        hold.host, hold.host
                    ));
                }
            }
            _ => self.seen = Some((hold.token.clone(), Instant::now(), false)),
        }
    }

    /// Stops the local canal for `hold` and reports it under `held/<me>`.
    /// A new hold while this member already holds for another keeps what it
    /// did itself: if it stopped canal for the first, it starts it again
    /// when the last goes.
    async fn take(&mut self, client: &zk::Client, hold: &HoldData, before: Option<&Holding>) -> Result<(), zk::Error> {
        set_held_by(Some(hold.host.clone()));
        self.seen = Some((hold.token.clone(), Instant::now(), false));
        let svc = &self.cx.config.services[self.service.as_str()];
        let running = !service::running_pids(svc).is_empty();
        let stopped_before = before.is_some_and(|b| b.stopped);
        let holding =
            Holding { host: hold.host.clone(), token: hold.token.clone(), stopped: running || stopped_before };
        // Written first: a crash between here and the start must still end
        // with canal started again.
        if let Err(e) = write_holding(&self.cx.config.state_dir, Some(&holding)) {
            tracing::error!("canal member: {e}");
        }
        let (ok, message) = match (running, before) {
            (true, _) => self.run_service(ServiceOp::Stop, &hold.host).await,
            (false, Some(b)) => (
                true,
                format!(
                    "{} stays stopped; it was held for {} before{}",
                    self.service,
                    b.host,
                    if b.stopped { ", and this agent starts it again when the holds are gone" } else { "" }
                ),
            ),
            (false, None) => (true, format!("{} was not running; it stays stopped afterwards", self.service)),
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
        if let Err(e) = write_holding(&self.cx.config.state_dir, None) {
            tracing::error!("canal member: {e}");
        }
        Ok(())
    }

    /// Journals `message` and tells a person (log, mail to the notify list).
    fn tell(&self, message: String) {
        let told = self.cx.tell(&message);
        self.journal(format!("{message} ({told})"));
    }

    /// Runs the service's script; (whether it worked, what it said).
    async fn run_service(&self, op: ServiceOp, host: &str) -> (bool, String) {
        let part_of = format!("the hold of every canal by the agent on {host} (runbook N4/N6 in HA)");
        match service::apply_off_thread(&self.cx.config, op, &self.service, part_of).await {
            Ok(done) => (true, done),
            Err(e) => (false, e.to_string()),
        }
    }

    fn journal(&self, detail: String) {
        self.cx.audit.emit(&Entry::CanalHold(Note::now(false, detail)));
    }
}
