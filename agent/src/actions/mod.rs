//! Actions: the only code that changes the world. Each family has a
//! `preview` (read-only, computed from live state), an `apply` (which checks
//! that the state is still what the preview saw) and a `verify`.

pub mod build;
pub mod canal;
pub mod hosts;
pub mod kafka;
pub mod kafka_cluster;
pub mod notify;
pub mod postgres;
pub mod probe;
pub mod properties;
pub mod service;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::approval::mail::Outbox;
use crate::config::Config;
use crate::plan::Step;

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
    config: Arc<Config>,
    /// Where `notify` mails go, and the host name for their subject.
    mail: Option<(Outbox, String)>,
}

impl Executor {
    pub fn new(config: Arc<Config>) -> Self {
        Executor { config, mail: None }
    }

    /// Lets `notify` steps mail the configured list.
    pub fn set_outbox(&mut self, outbox: Outbox, host: String) {
        self.mail = Some((outbox, host));
    }

    fn backups(&self) -> PathBuf {
        self.config.state_dir.join("backups")
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

    /// Computes the step's preview, with `staged` holding what earlier steps
    /// of its plan will have written. Reads only.
    fn preview(&self, step: &Step, staged: &Staged) -> Result<Preview, ActionError> {
        match step {
            Step::Hosts { host, ip } => hosts::preview(&self.config.hosts_file, host, *ip, staged),
            Step::Service { op, service } => service::preview(&self.config, *op, service),
            Step::PropertySet { file, key, value } => properties::preview(
                &self.config.properties_files[file.as_str()],
                key,
                &properties::Change::Set(value.clone()),
                staged,
            ),
            Step::PropertyLower { file, key, factor, floor, default } => properties::preview(
                &self.config.properties_files[file.as_str()],
                key,
                &properties::Change::Lower { factor: *factor, floor: *floor, default: *default },
                staged,
            ),
            Step::Notify { message } => Ok(notify::preview(message)),
            Step::PgAddColumn { table, column } => postgres::preview(&self.config, table, column),
            Step::CanalRewind => canal::preview_rewind(&self.config),
            Step::CanalReset { destination } => canal::preview_reset(&self.config, destination),
            Step::CanalNewBinlog { destination } => canal::preview_new_binlog(&self.config, destination),
            Step::ProbeTcp { addr } => Ok(probe::preview(*addr)),
            Step::KafkaWaitDrained => kafka::preview_drained(&self.config),
            Step::KafkaMoveLogDir { to } => kafka::preview_move(&self.config, to),
            Step::KafkaStartLeaderFirst => kafka_cluster::preview(&self.config),
            Step::CheckBuild => build::preview(&self.config),
        }
    }

    /// Applies the step, provided the world still matches `preview`.
    /// Returns what was done, for the audit journal.
    pub fn apply(&self, step: &Step, preview: &Preview) -> Result<String, ActionError> {
        match step {
            Step::Hosts { host, ip } => hosts::apply(&self.config.hosts_file, host, *ip, preview, &self.backups()),
            Step::Service { op, service } => service::apply(&self.config, *op, service),
            Step::PropertySet { file, key, .. } | Step::PropertyLower { file, key, .. } => {
                properties::apply(&self.config.properties_files[file.as_str()], key, preview, &self.backups())
            }
            Step::Notify { message } => Ok(notify::apply(message, self.mail.as_ref())),
            Step::PgAddColumn { table, column } => postgres::apply(&self.config, table, column),
            Step::CanalRewind => canal::apply_rewind(&self.config, preview),
            Step::CanalReset { destination } => canal::apply_reset(&self.config, destination, preview),
            Step::CanalNewBinlog { destination } => canal::apply_new_binlog(&self.config, destination, preview),
            Step::ProbeTcp { addr } => Ok(probe::apply(*addr, self.mail.as_ref())),
            Step::KafkaWaitDrained => kafka::apply_drained(&self.config),
            Step::KafkaMoveLogDir { to } => kafka::apply_move(&self.config, to),
            Step::KafkaStartLeaderFirst => kafka_cluster::apply(&self.config),
            Step::CheckBuild => build::apply(&self.config, self.mail.as_ref()),
        }
    }

    /// Checks that the step had its effect.
    pub fn verify(&self, step: &Step, preview: &Preview) -> Result<String, ActionError> {
        match step {
            Step::Hosts { host, ip } => hosts::verify(&self.config.hosts_file, host, *ip),
            Step::Service { op, service } => service::verify(&self.config, *op, service),
            Step::PropertySet { file, key, .. } | Step::PropertyLower { file, key, .. } => {
                properties::verify(&self.config.properties_files[file.as_str()], key, preview)
            }
            Step::Notify { .. } | Step::CheckBuild => Ok("recorded".into()),
            Step::PgAddColumn { table, column } => postgres::verify(&self.config, table, column),
            Step::CanalRewind => canal::verify_rewind(&self.config, preview),
            Step::CanalReset { destination } => canal::verify_reset(&self.config, destination),
            Step::CanalNewBinlog { .. } => Ok("written with compare-and-set".into()),
            Step::ProbeTcp { .. } | Step::KafkaWaitDrained => Ok("recorded".into()),
            Step::KafkaMoveLogDir { to } => kafka::verify_move(to),
            Step::KafkaStartLeaderFirst => kafka_cluster::verify(&self.config),
        }
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

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
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
    if sha256_hex(&old) != *sha256 {
        return Err(ActionError::new(doing, format!("{} changed since the preview; not applying", path.display())));
    }
    let backup = crate::fsutil::backup(path, backups, &old)
        .map_err(|e| ActionError::new(doing, format!("backing up {} to {}: {e}", path.display(), backups.display())))?;
    crate::fsutil::write_atomic(path, new)
        .map_err(|e| ActionError::new(doing, format!("writing {}: {e}", path.display())))?;
    Ok(backup)
}
