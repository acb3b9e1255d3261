//! Managed services (start/stop scripts, how they are found and known up)
//! and the limits on acting on them.

use super::*;

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
    pub(super) fn check(&self, name: &str) -> Result<(), Invalid> {
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
            regex::Regex::new(p).map_err(|e| format!("[services.{name}.up] log_pattern: {e}"))?;
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

/// Bounds on what the agent reads and how often it may act.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// A record larger than this is truncated and marked.
    pub max_record_bytes: usize,
    /// A record with more lines than this is truncated and marked.
    pub max_record_lines: usize,
    /// A record whose last line is still being written is complete when
    /// the writer has been quiet this long.
    pub record_flush_ms: u64,
    /// A record that ends with a whole line is complete after this much
    /// quiet: a logger writes a message and its stack trace in one write.
    pub record_settle_ms: u64,
    /// The same action on the same target is not repeated within this time.
    pub cooldown_secs: u64,
    /// At most this many applications of one action on one target per hour.
    pub max_per_hour: u32,
    /// The circuit opens after this many applications of the same plan
    /// within `breaker_window_secs` (the fix is not making the signature go away).
    pub breaker_threshold: u32,
    pub breaker_window_secs: u64,
    /// Rhai operation budget per rule call.
    pub rule_max_operations: u64,
    /// Time budget per rule call, in milliseconds.
    pub rule_max_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: 64 * 1024,
            max_record_lines: 400,
            record_flush_ms: 300,
            record_settle_ms: 20,
            cooldown_secs: 600,
            max_per_hour: 3,
            breaker_threshold: 3,
            breaker_window_secs: 3600,
            rule_max_operations: 200_000,
            rule_max_ms: 500,
        }
    }
}

impl Limits {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        // 0 would mean "unlimited" to the engine: a rule could then hold the
        // worker for ever.
        if self.rule_max_operations == 0 || self.rule_max_ms == 0 {
            return Err("[limits] rule_max_operations and rule_max_ms must be at least 1 (0 would be unlimited)".into());
        }
        if self.max_record_bytes < 1024 || self.max_record_lines == 0 {
            return Err("[limits] max_record_bytes must be at least 1024 and max_record_lines at least 1".into());
        }
        if self.breaker_threshold == 0 || self.max_per_hour == 0 {
            return Err("[limits] breaker_threshold and max_per_hour must be at least 1".into());
        }
        Ok(())
    }

    pub fn record_window(&self) -> crate::sources::RecordWindow {
        crate::sources::RecordWindow {
            settle: std::time::Duration::from_millis(self.record_settle_ms.min(self.record_flush_ms)),
            flush: std::time::Duration::from_millis(self.record_flush_ms),
        }
    }

    pub fn rule_max_time(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.rule_max_ms)
    }
}
