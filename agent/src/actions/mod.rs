//! Actions: the only code that changes the world. Each family's file holds
//! its typed step(s): how a rule's arguments become one (validation), what
//! it acts on, its least risk, and its `preview` (read-only, computed from
//! live state), `apply` (which checks that the state is still what the
//! preview saw) and `verify`. A new step kind is one file here, a line in
//! [`steps!`] below and a constructor line in `rules/api.rs`.

pub mod build;
pub mod canal;
pub mod hosts;
pub mod kafka;
pub mod kafka_cluster;
pub mod notify;
pub mod postgres;
pub mod probe;
pub mod properties;
pub mod reconcile;
pub mod repair;
pub mod risk;
pub mod service;
pub mod step;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::actions::risk::Risk;
use crate::mail::Outbox;

/// What the steps act on: each family's part of the configuration, composed
/// by the root configuration (`Config::sections`), which alone knows every
/// section. A family reads its own part and nothing else.
#[derive(Debug, Clone, Default)]
pub struct Sections {
    /// This agent: its host name, state directory, dry-run.
    pub agent: Agent,
    /// The hosts file `hosts` edits (runbook K1).
    pub hosts_file: PathBuf,
    pub service: service::Section,
    /// The `.properties` files `property-*` may edit, by name.
    pub properties_files: BTreeMap<String, PathBuf>,
    pub postgres: postgres::Section,
    /// Which environment the consumer's build must point at (runbook C6).
    pub consumer_build: Option<build::BuildCheck>,
    /// `[canal]` with its ZooKeeper and sources; `None` without `[canal]`.
    pub canal: Option<canal::Section>,
    pub kafka: kafka::Section,
    /// `[kafka.cluster]` with its ZooKeeper; `None` without it.
    pub kafka_cluster: Option<kafka_cluster::Section>,
    /// `[reconcile]` with the sources and targets (`pg_repair`).
    pub reconcile: crate::reconcile::Section,
}

/// What every family may know about the agent it runs in.
#[derive(Debug, Clone, Default)]
pub struct Agent {
    /// This host's name, as mails, pages and the other agents know it.
    pub host: String,
    pub state_dir: PathBuf,
    pub dry_run: bool,
}

/// What a step's preview, apply and verify may use.
pub struct Cx<'a> {
    pub sections: &'a Sections,
    /// Where `notify` mails go, and the host name for their subject.
    pub mail: Option<&'a (Outbox, String)>,
    /// Where file edits keep their backups.
    pub backups: PathBuf,
    /// What the step is part of (`plan 3f2a… of rule m2_kafka_shutdown`):
    /// written above a service script's output, so that its output says
    /// which plan ran it.
    pub part_of: &'a str,
}

/// Another party is doing this step's work now (another agent's K4
/// sequence holds the cluster lock): the plan waits off the worker, looked
/// at again on its tick, for at most `at_most`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    pub why: String,
    pub at_most: std::time::Duration,
}

/// One kind of step, typed and validated: what every family implements.
pub trait Action {
    /// The action family, as in the audit journal and the metrics.
    fn family(&self) -> &'static str;

    /// What the step acts on.
    fn target(&self) -> String;

    /// The least risk a plan containing this step can have. A rule may
    /// raise a plan's risk, never lower it below its steps'.
    fn min_risk(&self) -> Risk {
        Risk::Safe
    }

    /// What in the world this step changes, whatever made a rule want it:
    /// the circuit breaker counts on this, so a fix repeated for a different
    /// log line each time (K1 with a new host name per line) still counts as
    /// the same thing changed again. `None`: it changes nothing (a mail, a
    /// probe, a wait).
    fn changes(&self) -> Option<String> {
        None
    }

    /// The key rate limits and cooldowns are counted on.
    fn limit_key(&self) -> String {
        format!("{}:{}", self.family(), self.target())
    }

    /// The preview is what the step will do (a diff, a cursor, SQL), not a
    /// report of the moment: a person approves it, so an approved plan whose
    /// preview reads differently now is asked again; and a step whose
    /// preview is a no-op is skipped when the plan runs.
    fn preview_binds(&self) -> bool {
        true
    }

    /// Writes canal's cursors: state in ZooKeeper that every canal server
    /// of an HA cluster shares.
    fn writes_canal_cursors(&self) -> bool {
        false
    }

    /// Changes nothing outside the agent's own state directory (a
    /// reconcile): a plan of only such steps runs in dry-run too.
    fn reads_only(&self) -> bool {
        false
    }

    /// Whether another party is doing this step's work now, so that the
    /// plan should wait rather than block the worker. A quick look: a
    /// failure to look is `None` (the apply then reports it).
    fn busy(&self, _cx: &Cx) -> Option<Busy> {
        None
    }

    /// What the step would do, computed from live state, with `staged`
    /// holding what earlier steps of its plan will have written. Reads only.
    fn preview(&self, cx: &Cx, staged: &Staged) -> Result<Preview, ActionError>;

    /// Does it, provided the world still matches `preview`. Returns what
    /// was done, for the audit journal.
    fn apply(&self, cx: &Cx, preview: &Preview) -> Result<String, ActionError>;

    /// Checks that the step had its effect.
    fn verify(&self, cx: &Cx, preview: &Preview) -> Result<String, ActionError>;
}

/// The step kinds, one line each: `Variant(family::Type)`. The variant's
/// kebab-case name is the step's `action` tag in saved plans.
macro_rules! steps {
    ($($(#[$doc:meta])* $variant:ident($ty:ty),)*) => {
        /// A validated step: every field is typed and refers to configured things.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "action", rename_all = "kebab-case")]
        pub enum Step {
            $($(#[$doc])* $variant($ty),)*
        }

        impl Step {
            /// The step's family, which knows what to do with it.
            pub fn action(&self) -> &dyn Action {
                match self {
                    $(Step::$variant(s) => s,)*
                }
            }
        }
    };
}

steps! {
    /// Ensure `ip host` is in the hosts file (runbook K1).
    Hosts(hosts::HostsEntry),
    /// Stop, start or restart a configured service with its own scripts.
    Service(service::ServiceStep),
    /// Set a key in a configured `.properties` file.
    PropertySet(properties::PropertySet),
    /// Lower a numeric key by a factor, never below a floor (runbook C2).
    PropertyLower(properties::PropertyLower),
    /// Tell a person.
    Notify(notify::Notify),
    /// Add a column missing in the PostgreSQL targets (runbook C1).
    PgAddColumn(postgres::AddColumn),
    /// Write the rows the last reconcile found lost into the targets (runbook N3/N4/N6).
    PgRepair(repair::Repair),
    /// Compare the synced tables with the targets, in the background.
    Reconcile(reconcile::Reconcile),
    /// Tell a person which environment the consumer's build points at (runbook C6).
    CheckBuild(build::CheckBuild),
    /// Compare-and-set every canal cursor to a common timestamp (runbook N3, N4).
    CanalRewind(canal::RewindCursors),
    /// Delete a destination's cursor (runbook N3, last resort).
    CanalReset(canal::ResetCursor),
    /// Move a destination's cursor to its source's new binlog (runbook N6).
    CanalNewBinlog(canal::NewBinlogCursor),
    /// Probe an address over TCP and tell a person (runbook N2).
    ProbeTcp(probe::ProbeTcp),
    /// Wait until the consumer group has consumed every partition (runbook K5).
    KafkaWaitDrained(kafka::WaitDrained),
    /// Rename Kafka's log.dir to a new place on the same file system (runbook K5).
    KafkaMoveLogDir(kafka::MoveLogDir),
    /// Start the cluster's stopped brokers, leader first (runbook K4).
    KafkaStartLeaderFirst(kafka_cluster::StartLeaderFirst),
}

/// An action could not be previewed, applied or verified.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {message}")]
pub struct ActionError {
    /// What was being done, and to what: "adding ip-1.2.3.4 to /etc/hosts".
    pub doing: String,
    pub message: String,
}

impl ActionError {
    pub fn new(doing: impl Into<String>, message: impl ToString) -> Self {
        ActionError { doing: doing.into(), message: message.to_string() }
    }
}

/// What a step would do, computed from live state.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// For a person: a diff, a command line, a message.
    pub text: String,
    /// The world is already as the step wants it.
    pub noop: bool,
    /// What the apply must find unchanged (e.g. a file's content hash).
    #[serde(skip)]
    pub guard: Guard,
}

impl Preview {
    /// The hash of the state this preview read, if it depends on any.
    pub fn depends_on(&self) -> Option<String> {
        match &self.guard {
            Guard::FileEdit { sha256, .. } => Some(sha256.clone()),
            Guard::ZkVersions(v) => Some(v.iter().map(|(p, n)| format!("{p}@{n}")).collect::<Vec<_>>().join(",")),
            Guard::Digest(sha256) => Some(sha256.clone()),
            Guard::None => None,
        }
    }
}

/// A precondition captured at preview time and checked at apply time.
#[derive(Debug, Clone, Default)]
pub enum Guard {
    #[default]
    None,
    /// A file edit: the file's SHA-256 (hex) when previewed, and the full new
    /// content the preview showed the diff of. Apply writes exactly this, and
    /// only if the file still hashes the same. `old` is what the edit
    /// replaces, kept to roll the edit back if a later step of its plan fails.
    FileEdit { path: PathBuf, sha256: String, old: Vec<u8>, new: Vec<u8> },
    /// ZooKeeper nodes and the versions the preview read; writes are
    /// compare-and-set on exactly these.
    ZkVersions(Vec<(String, i32)>),
    /// The SHA-256 of what the preview read from the state directory (the
    /// saved reconcile a repair writes): the apply acts only on exactly that.
    Digest(String),
}

/// The files a plan's earlier steps will have written by the time a later
/// step runs: each step is previewed against the state the previous ones
/// leave (two edits of one file chain instead of the second failing its
/// guard after the first applied).
#[derive(Default)]
pub struct Staged {
    files: HashMap<PathBuf, Vec<u8>>,
}

impl Staged {
    /// One key per file, however the configuration spells its path.
    fn key(path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }

    /// The content a step will find: an earlier step's edit, or the file.
    pub(crate) fn read(&self, path: &Path, doing: &str) -> Result<Vec<u8>, ActionError> {
        match self.files.get(&Self::key(path)) {
            Some(bytes) => Ok(bytes.clone()),
            None => read_for_edit(path, doing),
        }
    }

    fn record(&mut self, preview: &Preview) {
        if let Guard::FileEdit { path, new, .. } = &preview.guard {
            self.files.insert(Self::key(path), new.clone());
        }
    }
}

/// Runs steps against the configured world.
pub struct Executor {
    sections: Arc<Sections>,
    /// Where `notify` mails go, and the host name for their subject.
    mail: Option<(Outbox, String)>,
}

impl Executor {
    pub fn new(sections: Arc<Sections>) -> Self {
        Executor { sections, mail: None }
    }

    /// What the steps act on, for validating a rule's plan against.
    pub fn sections(&self) -> &Sections {
        &self.sections
    }

    /// Lets `notify` steps mail the configured list.
    pub fn set_outbox(&mut self, outbox: Outbox, host: String) {
        self.mail = Some((outbox, host));
    }

    fn backups(&self) -> PathBuf {
        self.sections.agent.state_dir.join("backups")
    }

    /// Computes every step's preview in order, each against the state the
    /// steps before it leave. Reads only. Stops at the first step that cannot
    /// be previewed: its index (from 0) and why, after the previews before it.
    pub fn preview_plan(&self, steps: &[Step]) -> (Vec<Preview>, Option<(usize, ActionError)>) {
        let mut staged = Staged::default();
        let mut previews = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            match self.preview(step, &staged) {
                Ok(p) => {
                    staged.record(&p);
                    previews.push(p);
                }
                Err(e) => return (previews, Some((i, e))),
            }
        }
        (previews, None)
    }

    fn cx<'a>(&'a self, part_of: &'a str) -> Cx<'a> {
        Cx { sections: &self.sections, mail: self.mail.as_ref(), backups: self.backups(), part_of }
    }

    /// Computes the step's preview, with `staged` holding what earlier steps
    /// of its plan will have written. Reads only.
    fn preview(&self, step: &Step, staged: &Staged) -> Result<Preview, ActionError> {
        step.action().preview(&self.cx("a preview"), staged)
    }

    /// Applies the step, provided the world still matches `preview`, as
    /// part of `part_of` (the plan, named for a service script's output).
    /// Returns what was done, for the audit journal.
    /// The first step whose work another party is doing now, if any.
    pub fn busy(&self, steps: &[Step]) -> Option<Busy> {
        let cx = self.cx("a look whether another party is busy");
        steps.iter().find_map(|s| s.action().busy(&cx))
    }

    pub fn apply(&self, step: &Step, preview: &Preview, part_of: &str) -> Result<String, ActionError> {
        step.action().apply(&self.cx(part_of), preview)
    }

    /// Checks that the step had its effect.
    pub fn verify(&self, step: &Step, preview: &Preview) -> Result<String, ActionError> {
        step.action().verify(&self.cx("a verification"), preview)
    }

    /// Undoes an applied step of a plan whose later step failed, if it can
    /// be undone: a file edit is restored to what it replaced, provided the
    /// file still holds what the edit wrote. `None`: the step changed nothing
    /// that can be put back (a restart, a mail), or its edit never landed.
    pub fn undo(&self, preview: &Preview) -> Option<Result<String, ActionError>> {
        let Guard::FileEdit { path, old, new, .. } = &preview.guard else {
            return None;
        };
        let doing = format!("rolling back the edit of {}", path.display());
        let now = match read_for_edit(path, &doing) {
            Ok(now) => now,
            Err(e) => return Some(Err(e)),
        };
        if now == *old {
            return None; // the edit never landed
        }
        if now != *new {
            return Some(Err(ActionError::new(&doing, "the file changed after the edit; leaving it as it is")));
        }
        Some(
            crate::fsutil::write_atomic(path, old)
                .map(|()| format!("{} restored to its content before the plan", path.display()))
                .map_err(|e| ActionError::new(&doing, format!("writing {}: {e}", path.display()))),
        )
    }
}

/// Reads a file the agent is about to edit, with context in the error.
/// Only a regular file with one link is read (see `fsutil::read_regular`).
pub(crate) fn read_for_edit(path: &Path, doing: &str) -> Result<Vec<u8>, ActionError> {
    crate::fsutil::read_regular(path).map_err(|e| ActionError::new(doing, format!("reading {}: {e}", path.display())))
}

/// Applies a previewed file edit: checks the file is unchanged since the
/// preview, backs it up, and replaces it atomically with the previewed content.
/// Returns the backup's path.
pub(crate) fn apply_file_edit(preview: &Preview, backups: &Path, doing: &str) -> Result<PathBuf, ActionError> {
    let Guard::FileEdit { path, sha256, new, .. } = &preview.guard else {
        return Err(ActionError::new(doing, "the preview holds no edit"));
    };
    let old = read_for_edit(path, doing)?;
    if crate::digest::sha256_hex(&old) != *sha256 {
        return Err(ActionError::new(doing, format!("{} changed since the preview; not applying", path.display())));
    }
    let backup = crate::fsutil::backup(path, backups, &old)
        .map_err(|e| ActionError::new(doing, format!("backing up {} to {}: {e}", path.display(), backups.display())))?;
    crate::fsutil::write_atomic(path, new)
        .map_err(|e| ActionError::new(doing, format!("writing {}: {e}", path.display())))?;
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use super::Step;

    /// Plans waiting for approval are saved in the state directory and read
    /// back by the next version of the agent: every step kind keeps the form
    /// it was saved in.
    #[test]
    fn saved_steps_read_back_in_the_form_they_were_saved() {
        for saved in [
            r#"{"action":"hosts","host":"ip-10-0-0-7","ip":"10.0.0.7"}"#,
            r#"{"action":"service","op":"restart","service":"kafka"}"#,
            r#"{"action":"property-set","file":"kafka_server","key":"log.dirs","value":"/data/kafka"}"#,
            r#"{"action":"property-lower","file":"consumer","key":"max.poll.records","factor":0.5,"floor":10,"default":500}"#,
            r#"{"action":"notify","message":"look"}"#,
            r#"{"action":"pg-add-column","table":"orders","column":"note"}"#,
            r#"{"action":"check-build"}"#,
            r#"{"action":"canal-rewind"}"#,
            r#"{"action":"canal-reset","destination":"ix_trade"}"#,
            r#"{"action":"canal-new-binlog","destination":"ix_trade"}"#,
            r#"{"action":"probe-tcp","addr":"10.0.0.7:3306"}"#,
            r#"{"action":"kafka-wait-drained"}"#,
            r#"{"action":"kafka-move-log-dir","to":"/data2/kafka"}"#,
            r#"{"action":"kafka-start-leader-first"}"#,
        ] {
            let step: Step = serde_json::from_str(saved).unwrap_or_else(|e| panic!("{saved}: {e}"));
            assert_eq!(serde_json::to_string(&step).unwrap(), saved);
        }
    }
}
