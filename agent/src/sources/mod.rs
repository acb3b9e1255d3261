//! Sources: log files followed like `tail -F`, turned into records.

pub mod checkpoint;
pub mod logtime;
pub mod record;
pub mod rotated;
pub mod tail;

pub use checkpoint::Checkpoints;
pub use record::{Assembler, Assembly, Interest, LiteralScanner, Record};
pub use tail::{Budget, Follower, RecordWindow, StartAt};

use std::path::PathBuf;

use serde::Deserialize;

// `[sources.NAME]` in the configuration: the log files followed.

/// One log file to follow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub path: PathBuf,
    /// What the rules call this log (default: the source's own name). canal
    /// writes one instance log per destination: each is a source of its own
    /// (its own checkpoint) of kind `canal_instance`, and every rule that
    /// watches `canal_instance` watches all of them.
    pub kind: Option<String>,
    /// How a new record is recognised; see [`RecordStart`].
    #[serde(default)]
    pub record_start: RecordStart,
}

/// How the record assembler decides that a line begins a new record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordStart {
    /// A line starting with a log timestamp (`2026-11-01 10:00:00` or
    /// `[2026-11-01 10:00:00,123]`) begins a record; any other line continues
    /// the current one (stack traces, `Caused by:`, canal's position JSON,
    /// an exception message on its own line).
    #[default]
    Timestamp,
    /// Every line begins a record except Java stack-trace continuations
    /// (lines starting with whitespace, `Caused by:` or `... N more`).
    Line,
}
