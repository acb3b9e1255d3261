//! The agent's own watches: the heartbeat watch (M1), the stall diagnosis
//! (C5), the daily digest and the metrics listener.

use super::*;

/// When the daily digest goes out, and to whom.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// Local time of day, `HH:MM`.
    pub at: String,
    /// Recipients; empty: `[mail] notify`.
    #[serde(default)]
    pub to: Vec<String>,
}

/// `[digest] at` is not a time of day.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[digest] at = {0:?} is not a time of day like \"07:30\"")]
pub struct BadTime(pub String);

impl DigestConfig {
    pub fn time(&self) -> Result<chrono::NaiveTime, BadTime> {
        chrono::NaiveTime::parse_from_str(&self.at, "%H:%M").map_err(|_| BadTime(self.at.clone()))
    }
}

/// Where `/metrics` is served besides the approval listener, and how often
/// Kafka is asked for lag and leaders.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A listener for `/metrics` alone (e.g. on a private interface).
    pub listen: Option<std::net::SocketAddr>,
    #[serde(default = "default_kafka_interval")]
    pub kafka_interval_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: None, kafka_interval_secs: default_kafka_interval() }
    }
}

fn default_kafka_interval() -> u64 {
    60
}

/// Where the stall diagnosis (runbook C5) looks. Every field has a default
/// that fits the runbook's hosts; `[stall]` alone turns it on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StallConfig {
    /// The consumer's log, where it says it started (and consumes).
    #[serde(default = "default_consumer_source")]
    pub consumer_source: String,
    /// A (re)start of the consumer's Tomcat / Spring context.
    #[serde(default = "default_started_pattern")]
    pub started_pattern: String,
    /// A line that proves consumption, besides `[heartbeat]`'s.
    pub consumed_pattern: Option<String>,
    #[serde(default = "default_error_source")]
    pub error_source: String,
    /// Any such record in `error_source` is "an error" (then it is not C5).
    #[serde(default = "default_error_pattern")]
    pub error_pattern: String,
    /// The canal client's ("monitor") log.
    #[serde(default = "default_monitor_source")]
    pub monitor_source: String,
    /// A line saying the monitor parsed binlog entries.
    #[serde(default = "default_parse_pattern")]
    pub parse_pattern: String,
    /// The broker log, whose last start / shutdown line tells if it runs.
    #[serde(default = "default_broker_source")]
    pub broker_source: String,
    /// How long consumption may take to begin after a start.
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
}

fn default_consumer_source() -> String {
    "consumer_info".into()
}

fn default_started_pattern() -> String {
    r"Server startup in \d+ ms|Root WebApplicationContext: initialization completed|Started \w+ in [\d.]+ seconds"
        .into()
}

fn default_error_source() -> String {
    "consumer_error".into()
}

fn default_error_pattern() -> String {
    r"\bERROR\b|Exception".into()
}

fn default_monitor_source() -> String {
    "monitor".into()
}

fn default_parse_pattern() -> String {
    r"(?i)\bpars(?:e|ed|ing)\b|binlog\[".into()
}

fn default_broker_source() -> String {
    "kafka_server".into()
}

fn default_grace() -> u64 {
    300
}

/// Every MySQL source writes a heartbeat row each minute; the consumer logs
/// each one it consumes. A source that stops while the others go on is
/// "fake-dead" (runbook N3); all stopping means the pipeline stalled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// The log the consumed heartbeats appear in.
    pub source: String,
    /// A regex with a named group `source`.
    pub pattern: String,
    /// The sources that must all beat (uat: four).
    pub expected: Vec<String>,
    /// A source silent this long while another still beats is missing.
    #[serde(default = "default_missing")]
    pub missing_secs: u64,
    /// After canal's positions were rewritten, every source must beat again within this.
    #[serde(default = "default_return")]
    pub return_deadline_secs: u64,
}

fn default_missing() -> u64 {
    180
}

fn default_return() -> u64 {
    300
}

impl StallConfig {
    /// The sources the diagnosis reads, by key.
    pub(super) fn sources(&self) -> [(&'static str, &String); 4] {
        [
            ("consumer_source", &self.consumer_source),
            ("error_source", &self.error_source),
            ("monitor_source", &self.monitor_source),
            ("broker_source", &self.broker_source),
        ]
    }

    pub(super) fn check(&self) -> Result<(), Invalid> {
        for (key, pattern) in [
            ("started_pattern", Some(&self.started_pattern)),
            ("consumed_pattern", self.consumed_pattern.as_ref()),
            ("error_pattern", Some(&self.error_pattern)),
            ("parse_pattern", Some(&self.parse_pattern)),
        ] {
            if let Some(p) = pattern {
                regex::Regex::new(p).map_err(|e| format!("[stall] {key}: {e}"))?;
            }
        }
        Ok(())
    }
}

impl HeartbeatConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        let re = regex::Regex::new(&self.pattern).map_err(|e| format!("[heartbeat] pattern: {e}"))?;
        if !re.capture_names().flatten().any(|n| n == "source") {
            return Err("[heartbeat] pattern needs a named group (?<source>…)".into());
        }
        if self.expected.is_empty() {
            return Err("[heartbeat] expected lists no source".into());
        }
        Ok(())
    }
}
