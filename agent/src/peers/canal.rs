//! This host's side of canal in HA: the member that keeps its canal stopped
//! while another agent holds every canal to write canal's cursors (the
//! protocol and its nodes: [`crate::cluster::canal`]).
//!
//! What other agents write is obeyed only while it is owned and bounded: a
//! hold is obeyed only if it is ephemeral and its host was a live member
//! when first obeyed, and one obeyed for longer than [`HOLD_STUCK`] or
//! refused is told to a person. What this member did (it stopped canal) is
//! its own state in the state directory and survives any change of the node.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use super::MemberCx;
use crate::actions::service;
use crate::audit::{Entry, Note};
use crate::cluster::canal::{set_held_by, HoldData, HELD, HOLD, MEMBERS};
use crate::plan::ServiceOp;
use crate::types::Name;

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
pub fn spawn_member(background: &mut crate::runtime::Background, cx: MemberCx) {
    let Some(canal) = cx.sections.canal.as_ref().filter(|s| s.canal.ha) else { return };
    let Some(service) = super::member_service(&cx, "[canal]", &canal.canal.service, "canal holds") else { return };
    let zk_config = canal.zookeeper.clone();
    let member = Member { me: cx.sections.agent.host.clone(), cx: cx.clone(), service, seen: None, refused: None };
    super::spawn(background, "canal-member", zk_config, member);
}

/// A hold obeyed longer than this is told to a person: a writer stops every
/// canal for seconds (its wait for the members, then one write).
pub const HOLD_STUCK: Duration = Duration::from_secs(600);

struct Member {
    me: String,
    cx: MemberCx,
    service: Name,
    /// The hold obeyed now: its token, since when, whether a person was told
    /// that it lasts.
    seen: Option<(String, Instant, bool)>,
    /// The last hold node not obeyed (its modification time), told once.
    refused: Option<i64>,
}

impl super::Member for Member {
    fn who(&self) -> String {
        "canal member".into()
    }

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
            let holding = read_holding(&self.cx.sections.agent.state_dir);
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
                _ = tokio::time::sleep(super::RECHECK) => {}
            }
        }
    }
}

impl Member {
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
        let svc = &self.cx.sections.service.services[self.service.as_str()];
        let running = !service::running_pids(svc).is_empty();
        let stopped_before = before.is_some_and(|b| b.stopped);
        let holding =
            Holding { host: hold.host.clone(), token: hold.token.clone(), stopped: running || stopped_before };
        // Written first: a crash between here and the start must still end
        // with canal started again.
        if let Err(e) = write_holding(&self.cx.sections.agent.state_dir, Some(&holding)) {
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
        if let Err(e) = write_holding(&self.cx.sections.agent.state_dir, None) {
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
        match service::apply_off_thread(&self.cx.sections.service, op, &self.service, part_of).await {
            Ok(done) => (true, done),
            Err(e) => (false, e.to_string()),
        }
    }

    fn journal(&self, detail: String) {
        self.cx.audit.emit(&Entry::CanalHold(Note::now(false, detail)));
    }
}
