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
//!   while a hold exists (`crate::peers::canal`).
//! - `hold` (ephemeral, owned by the writing agent's session): every member
//!   stops its canal and keeps it stopped while it exists ([`hold`]).
//! - `held/<host>` (ephemeral): that member's canal is stopped for the hold.
//!
//! What other agents write is obeyed only while it is owned and bounded
//! (ZooKeeper here often has no ACLs, and crashed agents leave nodes
//! behind): a claim binds only while its host is a live member and before
//! its expiry, capped at this agent's own approval expiry from when it was
//! written; a hold is obeyed only if it is ephemeral and its host was a live
//! member when first obeyed, and one obeyed for longer than `peers::canal::HOLD_STUCK`
//! or refused is told to a person. What this member did (it stopped canal)
//! is its own state and survives any change of the node.
//!
//! A writer that dies releases the hold with its session; a member that dies
//! while holding remembers in its state directory that it stopped canal, and
//! starts it again when it is back and the hold is gone. While it holds, the
//! agent's own plans cannot start canal either ([`held_by`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use crate::clients::zk::{Session, ZkError};

pub const CLAIM: &str = "/pipemedic/canal/claim";
pub const MEMBERS: &str = "/pipemedic/canal/members";
pub const HOLD: &str = "/pipemedic/canal/hold";
pub const HELD: &str = "/pipemedic/canal/held";

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
pub(crate) struct HoldData {
    pub(crate) host: String,
    /// Tells this hold from an earlier one by the same host.
    pub(crate) token: String,
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

pub(crate) fn set_held_by(host: Option<String>) {
    *HELD_BY.lock().unwrap_or_else(|e| e.into_inner()) = host;
}
