//! This host's agent answering the others: the member threads that take
//! part in what agents on several hosts do together through ZooKeeper
//! ([`crate::cluster`] holds the protocols and their nodes). [`kafka`]
//! announces this broker and starts it when its K4 turn comes; [`canal`]
//! keeps this host's canal stopped while another agent writes canal's
//! cursors. Each runs on its own thread with its own session, so a turn or
//! a hold is answered while the worker is busy. Not started in dry-run.

pub mod canal;
pub mod kafka;

/// What a member thread (canal's hold, K4's turn) needs besides its
/// session: the configuration, the journal, the policy that counts what it
/// starts, and a way to tell a person.
#[derive(Clone)]
pub struct MemberCx {
    pub config: std::sync::Arc<crate::config::Config>,
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
