//! This host's agent answering the others: the member threads that take
//! part in what agents on several hosts do together through ZooKeeper
//! ([`crate::cluster`] holds the protocols and their nodes). [`kafka`]
//! announces this broker and starts it when its K4 turn comes; [`canal`]
//! keeps this host's canal stopped while another agent writes canal's
//! cursors. Each runs on its own thread with its own session, so a turn or
//! a hold is answered while the worker is busy. Not started in dry-run.

pub mod canal;
pub mod kafka;

use std::future::Future;
use std::time::Duration;

use zookeeper_client as zk;

use crate::types::Name;

/// Even without a watch firing, a member looks again this often (a missed
/// watch, or a change between two watches).
const RECHECK: Duration = Duration::from_secs(60);
/// After a session fails, a member connects again this much later.
const RECONNECT: Duration = Duration::from_secs(5);

/// A member's side of one ZooKeeper session.
trait Member: Send + 'static {
    /// Who it is, for the log (`canal member`, `kafka member of broker 2`).
    fn who(&self) -> String;

    /// Serves one session; returns when the session fails.
    fn serve(&mut self, client: &zk::Client) -> impl Future<Output = Result<(), zk::Error>> + Send;
}

/// The service a member starts and stops for the other agents, if this
/// host takes part: not in dry-run (announcing and starting are changes),
/// and only under a valid service name (`section`
/// names where it was configured, `role` what is not done without it).
fn member_service(cx: &MemberCx, section: &str, service: &str, role: &str) -> Option<Name> {
    if cx.sections.agent.dry_run {
        return None;
    }
    Name::parse("service name", service)
        .map_err(|e| tracing::error!("{section} service: {e}; not taking part in {role}"))
        .ok()
}

/// Runs `member` on its own thread: one session of `zk_config` after
/// another, for as long as the agent runs.
fn spawn(
    background: &mut crate::runtime::Background,
    name: &'static str,
    zk_config: crate::clients::zk::ZooKeeperConfig,
    mut member: impl Member,
) {
    background.spawn_async(name, async move {
        loop {
            let result = match crate::clients::zk::connect(&zk_config).await {
                Ok(client) => member.serve(&client).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(
                    "{}: ZooKeeper {}: {e}; reconnecting in {} s",
                    member.who(),
                    zk_config.connect,
                    RECONNECT.as_secs()
                );
            }
            tokio::time::sleep(RECONNECT).await;
        }
    });
}

/// What a member thread (canal's hold, K4's turn) needs besides its
/// session: what the actions act on, the journal, the policy that counts
/// what it starts, and a way to tell a person.
#[derive(Clone)]
pub struct MemberCx {
    pub sections: std::sync::Arc<crate::actions::Sections>,
    pub audit: crate::audit::Audit,
    pub policy: crate::plan::policy::Policy,
    /// The outbox and this host's name, when `[mail]` is configured.
    pub mail: Option<(crate::mail::Outbox, String)>,
}

impl MemberCx {
    /// Tells a person: the agent's log, and mail to the notify list (at
    /// most once per `notify_dedup_secs` for the same message). Returns what
    /// happened, for the journal.
    pub fn tell(&self, message: &str) -> String {
        crate::actions::notify::apply(message, self.mail.as_ref())
    }
}
