//! Actions: the only code that changes the world. Each family has a
//! `preview` (read-only, computed from live state), an `apply` (which checks
//! that the state is still what the preview saw) and a `verify`.

pub mod build;
pub mod canal;
pub mod hosts;
pub mod kafka;
pub mod kafka_cluster;
pub mod mysql;
pub mod notify;
pub mod postgres;
pub mod probe;
pub mod properties;
pub mod service;

use std::path::PathBuf;
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
    /// only if the file still hashes the same.
    FileEdit { path: PathBuf, sha256: String, new: Vec<u8> },
    /// ZooKeeper nodes and the versions the preview read; writes are
    /// compare-and-set on exactly these.
    ZkVersions(Vec<(String, i32)>),
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

    /// Computes the step's preview. Reads only.
    pub fn preview(&self, step: &Step) -> Result<Preview, ActionError> {
        match step {
            Step::Hosts { host, ip } => hosts::preview(&self.config.hosts_file, host, *ip),
            Step::Service { op, service } => service::preview(&self.config, *op, service),
            Step::PropertySet { file, key, value } => properties::preview(
                &self.config.properties_files[file.as_str()],
                key,
                &properties::Change::Set(value.clone()),
            ),
            Step::PropertyLower { file, key, factor, floor, default } => properties::preview(
                &self.config.properties_files[file.as_str()],
                key,
                &properties::Change::Lower { factor: *factor, floor: *floor, default: *default },
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
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a file the agent is about to edit, with context in the error.
pub(crate) fn read_for_edit(path: &std::path::Path, doing: &str) -> Result<Vec<u8>, ActionError> {
    std::fs::read(path).map_err(|e| ActionError::new(doing, format!("reading {}: {e}", path.display())))
}

/// Applies a previewed file edit: checks the file is unchanged since the
/// preview, backs it up, and replaces it atomically with the previewed content.
/// Returns the backup's path.
pub(crate) fn apply_file_edit(
    preview: &Preview,
    backups: &std::path::Path,
    doing: &str,
) -> Result<PathBuf, ActionError> {
    let Guard::FileEdit { path, sha256, new } = &preview.guard else {
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
