//! The agent's configuration: one TOML file per host.
//!
//! Unknown keys are errors (`deny_unknown_fields`), reported with the file,
//! line and column, so a typo never silently falls back to a default.
//! Relative paths are resolved against the directory of the config file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::types::Name;

/// What went wrong reading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole configuration of one agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where checkpoints, policy history, backups and the audit journal live.
    pub state_dir: PathBuf,
    /// Record and report, change nothing outside `state_dir`.
    #[serde(default)]
    pub dry_run: bool,
    /// Directories of Rhai rules; a file in a later directory replaces the
    /// file of the same name in an earlier one (local overrides).
    pub rule_dirs: Vec<PathBuf>,
    /// Directories of Rhai playbooks.
    #[serde(default)]
    pub playbook_dirs: Vec<PathBuf>,
    /// The hosts file the `hosts` action edits (runbook K1).
    #[serde(default = "default_hosts_file")]
    pub hosts_file: PathBuf,
    /// Log sources by name (`consumer_info`, `kafka_server`, …).
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Services the agent may stop and start, by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// Java `.properties` files the agent may edit, by name.
    #[serde(default)]
    pub properties_files: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub limits: Limits,
    /// Per-rule parameter overrides: `[rules.c2_commit_failed] threshold = 5`.
    #[serde(default)]
    pub rules: BTreeMap<String, toml::Table>,
    /// The name mails and pages call this host (default: the kernel's host name).
    pub host_name: Option<String>,
    /// Approval of dangerous plans by email; without it they are refused.
    pub approval: Option<ApprovalConfig>,
    /// Outgoing mail: approval requests and notifications.
    pub mail: Option<MailConfig>,
    /// The MySQL sources, by name: where a missing column's definition is
    /// looked up (runbook C1).
    #[serde(default)]
    pub mysql: BTreeMap<String, MysqlSource>,
    /// The PostgreSQL target databases, by name (`trade_ix`, `admin`): a
    /// missing column is added to every one of them (runbook C1).
    #[serde(default)]
    pub postgres: BTreeMap<String, PostgresTarget>,
    /// Which environment the consumer's deployed build must point at (runbook C6).
    pub consumer_build: Option<BuildCheck>,
    /// The pipeline's ZooKeeper ensemble (canal's positions, Kafka's brokers).
    pub zookeeper: Option<ZooKeeperConfig>,
    /// The canal server and its destinations (runbook N1–N6).
    pub canal: Option<CanalConfig>,
    /// The per-source heartbeat watch (runbook M1, N3).
    pub heartbeat: Option<HeartbeatConfig>,
    /// The Kafka cluster (runbook T1, T2).
    pub kafka: Option<KafkaConfig>,
    /// The stall diagnosis after a consumer start (runbook C5).
    pub stall: Option<StallConfig>,
    /// Prometheus metrics (also served on the `[approval]` listener).
    pub metrics: Option<MetricsConfig>,
    /// The daily digest mail (runbook M1's daily look).
    pub digest: Option<DigestConfig>,
}

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

impl DigestConfig {
    pub fn time(&self) -> Result<chrono::NaiveTime, String> {
        chrono::NaiveTime::parse_from_str(&self.at, "%H:%M")
            .map_err(|_| format!("[digest] at = {:?} is not a time of day like \"07:30\"", self.at))
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

/// Where the Kafka cluster is and what the consumer reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`
    pub bootstrap_servers: String,
    /// The pipeline's topics (`TABLE_IX_TRADE_ALL_BASE`).
    #[serde(default)]
    pub topics: Vec<String>,
    /// The consumer group (`bo_01`).
    pub group: Option<String>,
    #[serde(default = "default_kafka_timeout")]
    pub timeout_secs: u64,
    /// How long a playbook waits for the consumer to drain every partition (K5).
    #[serde(default = "default_drain")]
    pub drain_timeout_secs: u64,
    /// This host's broker in a cluster whose agents restart brokers
    /// leader-first together (runbook K4). Absent: a broker is restarted
    /// on its own.
    pub cluster: Option<KafkaClusterConfig>,
}

/// The local broker's part in a leader-first restart (runbook K4). Agents
/// coordinate through the `[zookeeper]` ensemble under `/pipemedic/kafka`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaClusterConfig {
    /// `broker.id` of the broker on this host.
    pub broker_id: i32,
    /// Its entry under `[services]`.
    #[serde(default = "default_broker_service")]
    pub service: String,
    /// The cluster's broker ids; empty: every broker that holds a replica in
    /// ZooKeeper's topic assignments.
    #[serde(default)]
    pub brokers: Vec<i32>,
    /// How long a started broker must stay stable before the next starts.
    #[serde(default = "default_settle")]
    pub settle_secs: u64,
    /// How long a broker may take to start and become stable.
    #[serde(default = "default_broker_start")]
    pub start_timeout_secs: u64,
    /// How long an agent waits for another agent's sequence to finish.
    #[serde(default = "default_drain")]
    pub lock_wait_secs: u64,
}

fn default_broker_service() -> String {
    "kafka".into()
}

fn default_settle() -> u64 {
    30
}

fn default_broker_start() -> u64 {
    300
}

fn default_drain() -> u64 {
    1800
}

fn default_kafka_timeout() -> u64 {
    10
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

/// Where ZooKeeper is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZooKeeperConfig {
    /// `host:port[,host:port…]`
    pub connect: String,
    #[serde(default = "default_zk_session")]
    pub session_timeout_secs: u64,
}

fn default_zk_session() -> u64 {
    10
}

/// The canal server on this host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanalConfig {
    /// The `[services.NAME]` entry that starts and stops canal.
    pub service: String,
    /// canal.properties and the instance.properties files, in the order
    /// canal reads them (a later file's `canal.instance.fallbackIntervalInSeconds` wins).
    #[serde(default)]
    pub properties_files: Vec<PathBuf>,
    /// After the stop script, how long to wait for the destination's
    /// `running` node to go (the ZooKeeper session of a dead process expires).
    #[serde(default = "default_canal_stop_wait")]
    pub stop_wait_secs: u64,
    /// Canal runs in HA on several hosts, each with its own pipemedic: the
    /// agents ask for one approval per cursor plan between them, and the
    /// writer holds every host's canal stopped while it writes (see
    /// `cluster::canal`). Needs a `host_name` that is a valid host name.
    #[serde(default)]
    pub ha: bool,
    /// The destinations (instances), each listening to one MySQL source.
    pub destinations: BTreeMap<String, CanalDestination>,
}

fn default_canal_stop_wait() -> u64 {
    60
}

/// One canal destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanalDestination {
    /// The `[mysql.NAME]` source it listens to; its user needs REPLICATION
    /// SLAVE to read binlog creation times.
    pub mysql: String,
    /// The client id whose cursor drives canal's restart position.
    #[serde(default = "default_client_id")]
    pub client_id: u32,
}

fn default_client_id() -> u32 {
    1001
}

/// A MySQL source database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSource {
    pub host: String,
    #[serde(default = "default_mysql_port")]
    pub port: u16,
    pub user: String,
    /// A file holding the password (kept out of the config).
    pub password_file: Option<PathBuf>,
    /// The schemas (databases) whose tables are synced.
    pub schemas: Vec<String>,
}

fn default_mysql_port() -> u16 {
    3306
}

/// A PostgreSQL target database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTarget {
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    pub user: String,
    pub password_file: Option<PathBuf>,
    pub dbname: String,
    /// The schema the synced tables live in.
    #[serde(default = "default_pg_schema")]
    pub schema: String,
    /// DDL waits at most this long for a lock, so it never blocks the live
    /// consumer for long; past it the change fails cleanly (SQLSTATE 55P03).
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout_ms: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
}

fn default_pg_port() -> u16 {
    5432
}
fn default_pg_schema() -> String {
    "public".into()
}
fn default_lock_timeout() -> u64 {
    3000
}
fn default_connect_timeout() -> u64 {
    10
}

/// Where the consumer's deployed build says its database is, and what this
/// host expects (runbook C6: "the sit build was run on prd").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildCheck {
    /// The deployed properties file holding the JDBC URL.
    pub properties_file: PathBuf,
    /// Its key (`jdbc.url`).
    pub url_key: String,
    /// This host's environment (`prd`).
    pub environment: String,
    /// Text the URL must contain on this host (the environment's database host).
    pub expected_url_contains: String,
}

/// Who approves dangerous plans, and where the links point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Where the agent's HTTP endpoint listens (`127.0.0.1:8470`).
    pub listen: SocketAddr,
    /// The base URL approvers reach that endpoint at (`https://host.example:8470`).
    pub public_url: String,
    /// Each gets a mail with links of their own. A data-loss plan needs two
    /// different ones to approve.
    pub approvers: Vec<String>,
    /// How long a request stays valid.
    #[serde(default = "default_expiry")]
    pub expiry_secs: u64,
}

fn default_expiry() -> u64 {
    3600
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MailSecurity {
    /// STARTTLS on the submission port (587).
    #[default]
    Starttls,
    /// TLS from the first byte (465).
    Tls,
    /// No encryption: only for a relay on this host's loopback.
    Plain,
}

/// The SMTP relay and the notification list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    pub server: String,
    /// Default: 587 for starttls, 465 for tls, 25 for plain.
    pub port: Option<u16>,
    #[serde(default)]
    pub security: MailSecurity,
    /// The sender, `pipemedic <pipemedic@host.example>`.
    pub from: String,
    /// A file with the SMTP user on the first line and the password on the
    /// second (kept out of the config so the config can be shared).
    pub credentials_file: Option<PathBuf>,
    /// Who receives `notify` findings.
    #[serde(default)]
    pub notify: Vec<String>,
    /// The same finding is mailed at most once in this time.
    #[serde(default = "default_dedup")]
    pub notify_dedup_secs: u64,
    /// First retry delay after a failed send; doubles up to 10 minutes.
    #[serde(default = "default_retry")]
    pub retry_initial_secs: u64,
    #[serde(default = "default_mail_timeout")]
    pub timeout_secs: u64,
}

fn default_dedup() -> u64 {
    3600
}
fn default_retry() -> u64 {
    15
}
fn default_mail_timeout() -> u64 {
    20
}

impl MailConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            MailSecurity::Starttls => 587,
            MailSecurity::Tls => 465,
            MailSecurity::Plain => 25,
        })
    }
}

fn default_hosts_file() -> PathBuf {
    PathBuf::from("/etc/hosts")
}

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

impl Config {
    /// Reads, parses and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        // Every path the configuration names is made absolute from here: the
        // checkpoints and inotify's events name files by absolute path, and
        // `--config x.toml` and `--config /etc/x.toml` must mean the same files.
        let absolute =
            std::path::absolute(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let base = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::parse(&text, path, &base)
    }

    /// Parses configuration text; `origin` names it in errors and `base` is
    /// the directory relative paths are resolved against.
    pub fn parse(text: &str, origin: &Path, base: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: origin.to_path_buf(), message: describe_toml_error(text, &e) })?;
        config.resolve_paths(base);
        config.check().map_err(|message| ConfigError::Invalid { path: origin.to_path_buf(), message })?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.state_dir);
        self.rule_dirs.iter_mut().for_each(fix);
        self.playbook_dirs.iter_mut().for_each(fix);
        fix(&mut self.hosts_file);
        for m in self.mysql.values_mut() {
            if let Some(p) = &mut m.password_file {
                fix(p);
            }
        }
        for t in self.postgres.values_mut() {
            if let Some(p) = &mut t.password_file {
                fix(p);
            }
        }
        if let Some(b) = &mut self.consumer_build {
            fix(&mut b.properties_file);
        }
        if let Some(c) = &mut self.canal {
            c.properties_files.iter_mut().for_each(fix);
        }
        if let Some(m) = &mut self.mail {
            if let Some(c) = &mut m.credentials_file {
                fix(c);
            }
        }
        self.sources.values_mut().for_each(|s| fix(&mut s.path));
        self.properties_files.values_mut().for_each(fix);
        for service in self.services.values_mut() {
            if let Some(dir) = &mut service.workdir {
                fix(dir);
            } else {
                service.workdir = Some(base.to_path_buf());
            }
            if let Some(p) = &mut service.process.pid_file {
                fix(p);
            }
            if let Some(p) = &mut service.stale_pid_file {
                fix(p);
            }
            if let Some(p) = &mut service.up.log_file {
                fix(p);
            }
            for cmd in [&mut service.start, &mut service.stop] {
                // A script named with a relative path ("bin/start.sh") lives
                // next to the config; a bare word ("systemctl") is left to PATH.
                if let Some(first) = cmd.first_mut() {
                    if first.contains('/') && Path::new(first).is_relative() {
                        *first = base.join(&*first).to_string_lossy().into_owned();
                    }
                }
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        // 0 would mean "unlimited" to the engine: a rule could then hold the
        // worker for ever.
        if self.limits.rule_max_operations == 0 || self.limits.rule_max_ms == 0 {
            return Err("[limits] rule_max_operations and rule_max_ms must be at least 1 (0 would be unlimited)".into());
        }
        for name in self.sources.keys() {
            Name::parse("source name", name).map_err(|e| format!("[sources.{name}]: {e}"))?;
        }
        for (name, service) in &self.services {
            Name::parse("service name", name).map_err(|e| format!("[services.{name}]: {e}"))?;
            if service.start.is_empty() || service.stop.is_empty() {
                return Err(format!("[services.{name}]: start and stop must each name a script"));
            }
            if service.process.cmdline_contains.is_none() && service.process.pid_file.is_none() {
                return Err(format!(
                    "[services.{name}.process]: set cmdline_contains or pid_file so the agent can tell whether it runs"
                ));
            }
            if service.up.log_pattern.is_some() != service.up.log_file.is_some() {
                return Err(format!("[services.{name}.up]: log_file and log_pattern go together"));
            }
            if let Some(p) = &service.up.log_pattern {
                regex::Regex::new(p).map_err(|e| format!("[services.{name}.up] log_pattern: {e}"))?;
            }
        }
        for name in self.properties_files.keys() {
            Name::parse("properties file name", name).map_err(|e| format!("[properties_files] {name}: {e}"))?;
        }
        if self.rule_dirs.is_empty() {
            return Err("rule_dirs is empty: the agent would do nothing".into());
        }
        if let Some(a) = &self.approval {
            if a.approvers.is_empty() {
                return Err("[approval] approvers is empty: nobody could approve".into());
            }
            if !(a.public_url.starts_with("http://") || a.public_url.starts_with("https://")) {
                return Err(format!("[approval] public_url {:?} must start with http:// or https://", a.public_url));
            }
            if self.mail.is_none() {
                return Err("[approval] needs a [mail] section to send the requests".into());
            }
            for who in &a.approvers {
                who.parse::<lettre::message::Mailbox>().map_err(|e| format!("[approval] approver {who:?}: {e}"))?;
            }
        }
        if let Some(m) = &self.mail {
            m.from.parse::<lettre::message::Mailbox>().map_err(|e| format!("[mail] from {:?}: {e}", m.from))?;
            for who in &m.notify {
                who.parse::<lettre::message::Mailbox>().map_err(|e| format!("[mail] notify {who:?}: {e}"))?;
            }
            let loopback =
                m.server == "localhost" || m.server.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if m.security == MailSecurity::Plain && !loopback {
                return Err(format!(
                    "[mail] security = \"plain\" sends credentials and approval links in clear text; it is only allowed for a relay on loopback, not {:?}",
                    m.server
                ));
            }
        }
        for (name, m) in &self.mysql {
            Name::parse("MySQL source name", name).map_err(|e| format!("[mysql.{name}]: {e}"))?;
            for schema in &m.schemas {
                crate::types::SqlIdent::parse(schema).map_err(|e| format!("[mysql.{name}] schemas: {e}"))?;
            }
        }
        for (name, t) in &self.postgres {
            Name::parse("PostgreSQL target name", name).map_err(|e| format!("[postgres.{name}]: {e}"))?;
            crate::types::SqlIdent::parse(&t.schema).map_err(|e| format!("[postgres.{name}] schema: {e}"))?;
        }
        if let Some(c) = &self.canal {
            if !self.services.contains_key(&c.service) {
                return Err(format!("[canal] service {:?} is not configured under [services]", c.service));
            }
            if self.zookeeper.is_none() {
                return Err("[canal] needs a [zookeeper] section: canal keeps its positions there".into());
            }
            if c.ha {
                crate::types::HostName::parse(&self.host_name())
                    .map_err(|e| format!("[canal] ha = true names this agent in ZooKeeper by its host_name: {e}"))?;
            }
            for (name, d) in &c.destinations {
                Name::parse("destination", name).map_err(|e| format!("[canal.destinations.{name}]: {e}"))?;
                if !self.mysql.contains_key(&d.mysql) {
                    return Err(format!(
                        "[canal.destinations.{name}] mysql = {:?} is not configured under [mysql]",
                        d.mysql
                    ));
                }
            }
        }
        if let Some(c) = self.kafka_cluster() {
            if !self.services.contains_key(&c.service) {
                return Err(format!("[kafka.cluster] service {:?} is not configured under [services]", c.service));
            }
            if self.zookeeper.is_none() {
                return Err("[kafka.cluster] needs a [zookeeper] section: the agents coordinate there".into());
            }
            if c.broker_id < 0 || c.brokers.iter().any(|b| *b < 0) {
                return Err("[kafka.cluster] broker ids are not negative".into());
            }
        }
        if let Some(d) = &self.digest {
            d.time()?;
            if self.mail.is_none() {
                return Err("[digest] needs a [mail] section to send it".into());
            }
            if d.to.is_empty() && self.mail.as_ref().is_some_and(|m| m.notify.is_empty()) {
                return Err("[digest] has no recipients: set `to` or [mail] notify".into());
            }
        }
        if let Some(s) = &self.stall {
            for (key, source) in [
                ("consumer_source", &s.consumer_source),
                ("error_source", &s.error_source),
                ("monitor_source", &s.monitor_source),
                ("broker_source", &s.broker_source),
            ] {
                if !self.sources.contains_key(source) {
                    return Err(format!("[stall] {key} {source:?} is not configured under [sources]"));
                }
            }
            for (key, pattern) in [
                ("started_pattern", Some(&s.started_pattern)),
                ("consumed_pattern", s.consumed_pattern.as_ref()),
                ("error_pattern", Some(&s.error_pattern)),
                ("parse_pattern", Some(&s.parse_pattern)),
            ] {
                if let Some(p) = pattern {
                    regex::Regex::new(p).map_err(|e| format!("[stall] {key}: {e}"))?;
                }
            }
            if self.heartbeat.is_none() && s.consumed_pattern.is_none() {
                return Err("[stall] needs [heartbeat] or a consumed_pattern: it must see consumption".into());
            }
        }
        if let Some(h) = &self.heartbeat {
            if !self.sources.contains_key(&h.source) {
                return Err(format!("[heartbeat] source {:?} is not configured under [sources]", h.source));
            }
            let re = regex::Regex::new(&h.pattern).map_err(|e| format!("[heartbeat] pattern: {e}"))?;
            if !re.capture_names().flatten().any(|n| n == "source") {
                return Err("[heartbeat] pattern needs a named group (?<source>…)".into());
            }
            if h.expected.is_empty() {
                return Err("[heartbeat] expected lists no source".into());
            }
        }
        let l = &self.limits;
        if l.max_record_bytes < 1024 || l.max_record_lines == 0 {
            return Err("[limits] max_record_bytes must be at least 1024 and max_record_lines at least 1".into());
        }
        if l.breaker_threshold == 0 || l.max_per_hour == 0 {
            return Err("[limits] breaker_threshold and max_per_hour must be at least 1".into());
        }
        Ok(())
    }

    /// The name this host goes by in mails and pages.
    /// This host's part in leader-first restarts (runbook K4), if any.
    pub fn kafka_cluster(&self) -> Option<&KafkaClusterConfig> {
        self.kafka.as_ref().and_then(|k| k.cluster.as_ref())
    }

    pub fn host_name(&self) -> String {
        self.host_name.clone().unwrap_or_else(crate::system::host_name)
    }

    /// What the configuration names that is not there on this host, or
    /// that would be unsafe: a missing service script or properties file, a
    /// source that is a directory, approval links over plain HTTP to a
    /// listener other hosts reach. Not part of parsing (a configuration is
    /// often written before the software is installed); `check` reports
    /// these, and they fail it unless the host is in dry-run.
    pub fn host_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, svc) in &self.services {
            for (what, argv) in [("start", &svc.start), ("stop", &svc.stop)] {
                if let Some(why) = argv.first().and_then(|p| not_runnable(p, svc.workdir.as_deref())) {
                    out.push(format!("[services.{name}] {what}: {why}"));
                }
            }
        }
        for (name, path) in &self.properties_files {
            if !path.is_file() {
                out.push(format!("[properties_files] {name}: {} is not a file", path.display()));
            }
        }
        for (name, source) in &self.sources {
            if source.path.is_dir() {
                out.push(format!("[sources.{name}]: {} is a directory, not a log file", source.path.display()));
            }
        }
        if let Some(a) = &self.approval {
            if !a.listen.ip().is_loopback() && a.public_url.starts_with("http://") {
                out.push(format!(
                    "[approval] listen {} is reachable from other hosts but public_url {:?} is plain HTTP: approval links would cross the network unencrypted; listen on 127.0.0.1 behind a TLS proxy, or use https",
                    a.listen, a.public_url
                ));
            }
        }
        out
    }

    /// The source with this name, if configured.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.get(name)
    }

    /// What the rules call the source `name`: its `kind`, else its name.
    pub fn kind_of<'a>(&'a self, name: &'a str) -> &'a str {
        self.sources.get(name).and_then(|s| s.kind.as_deref()).unwrap_or(name)
    }

    /// The configured sources the rules know as `kind`.
    pub fn sources_of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.sources.keys().map(String::as_str).filter(move |name| self.kind_of(name) == kind)
    }
}

/// Renders a TOML error as `line L, column C: message`, naming the key when
/// serde reports an unknown field.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}, column {column}: {message} (at `{snippet}`)")
        }
        None => message,
    }
}

/// Why a service script cannot be run, if it cannot: a path must name an
/// executable file (relative to the service's directory); a bare name must
/// be found on `PATH`.
fn not_runnable(program: &str, workdir: Option<&Path>) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        let path = match (Path::new(program).is_relative(), workdir) {
            (true, Some(dir)) => dir.join(program),
            _ => PathBuf::from(program),
        };
        return (!executable(&path)).then(|| format!("{} is not an executable file", path.display()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| executable(&dir.join(program)));
    (!found).then(|| format!("{program} is not on PATH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "state_dir = \"state\"\nrule_dirs = [\"rules\"]\n";

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = format!("{MINIMAL}[limits]\ncooldown_sec = 5\n");
        let err = Config::parse(&text, Path::new("/etc/pm.toml"), Path::new("/etc")).unwrap_err().to_string();
        assert!(err.contains("/etc/pm.toml"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("cooldown_sec"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_config_dir() {
        let text = format!("{MINIMAL}[sources.kafka_server]\npath = \"logs/server.log\"\n");
        let c = Config::parse(&text, Path::new("/x/pm.toml"), Path::new("/x")).unwrap();
        assert_eq!(c.sources["kafka_server"].path, Path::new("/x/logs/server.log"));
        assert_eq!(c.state_dir, Path::new("/x/state"));
    }

    #[test]
    fn service_without_process_match_is_refused() {
        let text = format!("{MINIMAL}[services.kafka]\nstart=[\"a\"]\nstop=[\"b\"]\nprocess={{}}\n");
        let err = Config::parse(&text, Path::new("c.toml"), Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("services.kafka.process"), "{err}");
    }

    #[test]
    fn canal_ha_needs_a_host_name_zookeeper_can_hold() {
        let canal = "[services.canal]\nstart=[\"a\"]\nstop=[\"b\"]\nprocess={pid_file=\"p\"}\n\
                     [zookeeper]\nconnect=\"127.0.0.1:2181\"\n[mysql.src]\nhost=\"127.0.0.1\"\nuser=\"u\"\nschemas=[]\n\
                     [canal]\nservice=\"canal\"\nha=true\n[canal.destinations.d]\nmysql=\"src\"\n";
        for bad in ["../members", "a/b", ""] {
            let text = format!("host_name = {bad:?}\n{MINIMAL}{canal}");
            let err = Config::parse(&text, Path::new("c.toml"), Path::new(".")).unwrap_err().to_string();
            assert!(err.contains("ha = true") && err.contains("host_name"), "{bad:?}: {err}");
        }
        let text = format!("host_name = \"canal-a.example\"\n{MINIMAL}{canal}");
        Config::parse(&text, Path::new("c.toml"), Path::new(".")).unwrap();
    }

    #[test]
    fn shipped_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in ["packaging/pipemedic.toml", "examples/pipemedic.toml"] {
            let c = Config::load(&root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            for name in [
                "consumer_info",
                "consumer_error",
                "kafka_server",
                "kafka_controller",
                "canal",
                "canal_instance",
                "monitor",
            ] {
                assert!(c.source(name).is_some(), "{file} names source {name}");
            }
        }
    }

    #[test]
    fn packaged_mail_and_approval_example_parses_when_uncommented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("packaging/pipemedic.toml")).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[') || rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    rest
                }
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::parse(&uncommented, Path::new("pipemedic.toml"), root).unwrap();
        assert_eq!(c.approval.as_ref().unwrap().approvers.len(), 2);
        assert_eq!(c.mail.as_ref().unwrap().port(), 587);
        assert_eq!(c.host_name(), "pipeline-01");
    }
}
