//! `[services.NAME]` in the configuration: a managed service's scripts, how
//! its process is found and how it is known to be up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::types::Invalid;
use crate::types::Name;

/// A process the agent manages through its own scripts (runbook T3, T4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The start script and its arguments, run without a shell.
    pub start: Vec<String>,
    /// The stop script and its arguments, run without a shell.
    pub stop: Vec<String>,
    /// Directory the scripts run in (default: the config file's directory).
    pub workdir: Option<PathBuf>,
    /// How to find the running process.
    pub process: ProcessMatch,
    /// How to tell that it is up after a start.
    #[serde(default)]
    pub up: UpCheck,
    /// A pid file the start script refuses to start over (canal's
    /// `bin/canal.pid`); removed before a start only if no process of the
    /// service runs. The `process.pid_file` is treated the same way.
    pub stale_pid_file: Option<PathBuf>,
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_secs: u64,
    #[serde(default = "default_start_timeout")]
    pub start_timeout_secs: u64,
}

impl ServiceConfig {
    /// `[services.<name>]` on its own: scripts to run, a way to find the process.
    pub(crate) fn check(&self, name: &str) -> Result<(), Invalid> {
        Name::parse("service name", name).map_err(|e| format!("[services.{name}]: {e}"))?;
        if self.start.is_empty() || self.stop.is_empty() {
            return Err(format!("[services.{name}]: start and stop must each name a script").into());
        }
        if self.process.cmdline_contains.is_none() && self.process.pid_file.is_none() {
            return Err(format!(
                "[services.{name}.process]: set cmdline_contains or pid_file so the agent can tell whether it runs"
            )
            .into());
        }
        if self.up.log_pattern.is_some() != self.up.log_file.is_some() {
            return Err(format!("[services.{name}.up]: log_file and log_pattern go together").into());
        }
        if let Some(p) = &self.up.log_pattern {
            crate::matching::check_pattern(p).map_err(|e| format!("[services.{name}.up] log_pattern: {e}"))?;
        }
        Ok(())
    }

    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.stop_timeout_secs)
    }
    pub fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.start_timeout_secs)
    }
}

fn default_stop_timeout() -> u64 {
    120
}

fn default_start_timeout() -> u64 {
    180
}

/// Recognises the service's process: by a substring of its command line
/// (`kafka.Kafka`, `appName=otter-canal`, `catalina`), or by a pid file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessMatch {
    pub cmdline_contains: Option<String>,
    pub pid_file: Option<PathBuf>,
}

/// Extra signs that a started service is really up, beyond its process.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpCheck {
    /// A TCP address that accepts connections once the service is up.
    pub tcp: Option<SocketAddr>,
    /// A log file and a regex that appears in it after a successful start.
    pub log_file: Option<PathBuf>,
    pub log_pattern: Option<String>,
}
