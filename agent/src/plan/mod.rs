//! Plans: what a rule wants done, as an ordered list of typed steps.
//!
//! A rule hands back [`StepSpec`]s — raw strings straight from log captures.
//! [`Step::validate`] turns each into a typed [`Step`] or refuses it; after
//! that no action ever sees an unchecked string.

pub mod policy;

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::types::{excerpt, parse_host_address, HostName, Name, PropertyKey, PropertyValue, SqlIdent};

/// How much harm a plan can do, and so who must agree before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Risk {
    /// Runs at once.
    Safe,
    /// Needs one approver.
    Dangerous,
    /// Loses data; needs two distinct approvers.
    DataLoss,
}

impl Risk {
    pub fn parse(s: &str) -> Result<Risk, String> {
        match s {
            "safe" => Ok(Risk::Safe),
            "dangerous" => Ok(Risk::Dangerous),
            "data-loss" => Ok(Risk::DataLoss),
            other => Err(format!("unknown risk {}: expected safe, dangerous or data-loss", excerpt(other))),
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Risk::Safe => "safe",
            Risk::Dangerous => "dangerous",
            Risk::DataLoss => "data-loss",
        })
    }
}

/// What to do to a managed service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceOp {
    Start,
    Stop,
    Restart,
}

impl fmt::Display for ServiceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceOp::Start => "start",
            ServiceOp::Stop => "stop",
            ServiceOp::Restart => "restart",
        })
    }
}

/// A step as a rule returned it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub enum StepSpec {
    HostsEntry { host: String, ip: String },
    Service { op: ServiceOp, service: String },
    PropertySet { file: String, key: String, value: String },
    PropertyLower { file: String, key: String, factor: f64, floor: i64, default: i64 },
    Notify { message: String },
    PgAddColumn { table: String, column: String },
    CheckBuild,
    CanalRewind,
    CanalReset { destination: String },
    CanalNewBinlog { destination: String },
    ProbeTcp { addr: String },
    KafkaWaitDrained,
    KafkaMoveLogDir { to: String },
    KafkaStartLeaderFirst,
}

impl fmt::Display for StepSpec {
    /// The one-line form rule test cases compare against.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepSpec::HostsEntry { host, ip } => write!(f, "hosts {host} -> {ip}"),
            StepSpec::Service { op, service } => write!(f, "{op} {service}"),
            StepSpec::PropertySet { file, key, value } => {
                write!(f, "property {file} {key} = {value}")
            }
            StepSpec::PropertyLower { file, key, factor, floor, default } => {
                write!(f, "property {file} {key} lower x{factor} floor {floor} default {default}")
            }
            StepSpec::Notify { message } => write!(f, "notify: {message}"),
            StepSpec::PgAddColumn { table, column } => write!(f, "postgres add column {table}.{column}"),
            StepSpec::CheckBuild => write!(f, "check consumer build"),
            StepSpec::CanalRewind => write!(f, "canal rewind to common timestamp"),
            StepSpec::CanalReset { destination } => write!(f, "canal reset {destination}"),
            StepSpec::CanalNewBinlog { destination } => write!(f, "canal new binlog {destination}"),
            StepSpec::ProbeTcp { addr } => write!(f, "probe tcp {addr}"),
            StepSpec::KafkaWaitDrained => write!(f, "kafka wait drained"),
            StepSpec::KafkaMoveLogDir { to } => write!(f, "kafka move log.dir to {to}"),
            StepSpec::KafkaStartLeaderFirst => write!(f, "kafka start brokers leader-first"),
        }
    }
}

/// A validated step: every field is typed and refers to configured things.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Step {
    /// Ensure `ip host` is in the hosts file (runbook K1).
    Hosts { host: HostName, ip: Ipv4Addr },
    /// Stop, start or restart a configured service with its own scripts.
    Service { op: ServiceOp, service: Name },
    /// Set a key in a configured `.properties` file.
    PropertySet { file: Name, key: PropertyKey, value: PropertyValue },
    /// Lower a numeric key by a factor, never below a floor (runbook C2).
    PropertyLower { file: Name, key: PropertyKey, factor: f64, floor: u64, default: u64 },
    /// Tell a person.
    Notify { message: String },
    /// Add a column missing in the PostgreSQL targets, defined as in MySQL (runbook C1).
    PgAddColumn { table: SqlIdent, column: SqlIdent },
    /// Tell a person which environment the consumer's build points at (runbook C6).
    CheckBuild,
    /// Compare-and-set every canal cursor to a timestamp-only position at
    /// which every source still has binlog (runbook N3, N4).
    CanalRewind,
    /// Delete a destination's cursor: canal restarts from the newest
    /// position, losing what lies between (runbook N3, last resort).
    CanalReset { destination: Name },
    /// Move a destination's cursor to the binlog its source started after a
    /// crash (runbook N6).
    CanalNewBinlog { destination: Name },
    /// Probe an address over TCP and tell a person (runbook N2).
    ProbeTcp { addr: std::net::SocketAddr },
    /// Wait until the consumer group has consumed every partition (runbook K5).
    KafkaWaitDrained,
    /// Rename Kafka's log.dir to a new place on the same file system (runbook K5).
    KafkaMoveLogDir { to: std::path::PathBuf },
    /// Start the cluster's stopped brokers, the leader's first, each stable
    /// before the next, with the other hosts' agents (runbook K4).
    KafkaStartLeaderFirst,
}

const MAX_NOTIFY: usize = 4000;

impl Step {
    /// Checks a rule's step against the rules for its values and the
    /// configuration. The error says what was refused and why.
    pub fn validate(spec: &StepSpec, config: &Config) -> Result<Step, Refusal> {
        Ok(match spec {
            StepSpec::HostsEntry { host, ip } => Step::Hosts {
                host: HostName::parse(host).map_err(Refusal::invalid)?,
                ip: parse_host_address(ip).map_err(Refusal::invalid)?,
            },
            StepSpec::Service { op, service } => {
                let name = Name::parse("service name", service).map_err(Refusal::invalid)?;
                if !config.services.contains_key(name.as_str()) {
                    return Err(Refusal::NotConfigured(format!("service {name} is not configured under [services]")));
                }
                Step::Service { op: *op, service: name }
            }
            StepSpec::PropertySet { file, key, value } => Step::PropertySet {
                file: properties_file(file, config)?,
                key: PropertyKey::parse(key).map_err(Refusal::invalid)?,
                value: PropertyValue::parse(value).map_err(Refusal::invalid)?,
            },
            StepSpec::PropertyLower { file, key, factor, floor, default } => {
                if !(*factor > 0.0 && *factor < 1.0) {
                    return Err(Refusal::Invalid(format!("lowering factor {factor} must be between 0 and 1")));
                }
                if *floor < 1 || *default < 1 {
                    return Err(Refusal::Invalid(format!("floor {floor} and default {default} must be at least 1")));
                }
                Step::PropertyLower {
                    file: properties_file(file, config)?,
                    key: PropertyKey::parse(key).map_err(Refusal::invalid)?,
                    factor: *factor,
                    floor: *floor as u64,
                    default: *default as u64,
                }
            }
            StepSpec::Notify { message } => {
                let mut message: String = message.chars().filter(|c| !c.is_control() || *c == '\n').collect();
                if message.len() > MAX_NOTIFY {
                    let cut = (0..=MAX_NOTIFY).rev().find(|i| message.is_char_boundary(*i)).unwrap_or(0);
                    message.truncate(cut);
                    message.push('…');
                }
                Step::Notify { message }
            }
            StepSpec::PgAddColumn { table, column } => Step::PgAddColumn {
                table: SqlIdent::parse(table).map_err(Refusal::invalid)?,
                column: SqlIdent::parse(column).map_err(Refusal::invalid)?,
            },
            StepSpec::CheckBuild => Step::CheckBuild,
            StepSpec::CanalRewind => Step::CanalRewind,
            StepSpec::CanalReset { destination } => {
                Step::CanalReset { destination: canal_destination(destination, config)? }
            }
            StepSpec::CanalNewBinlog { destination } => {
                Step::CanalNewBinlog { destination: canal_destination(destination, config)? }
            }
            StepSpec::KafkaWaitDrained => Step::KafkaWaitDrained,
            StepSpec::KafkaMoveLogDir { to } => {
                let path = std::path::PathBuf::from(to);
                let plain = path
                    .components()
                    .all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
                if !path.is_absolute() || !plain || to.chars().any(char::is_control) || path.parent().is_none() {
                    return Err(Refusal::Invalid(format!("{} is not an absolute, plain directory path", excerpt(to))));
                }
                Step::KafkaMoveLogDir { to: path }
            }
            StepSpec::KafkaStartLeaderFirst => {
                if config.kafka_cluster().is_none() {
                    return Err(Refusal::NotConfigured(
                        "no [kafka.cluster] section: this host does not know its broker".into(),
                    ));
                }
                Step::KafkaStartLeaderFirst
            }
            StepSpec::ProbeTcp { addr } => Step::ProbeTcp {
                addr: addr
                    .parse()
                    .map_err(|_| Refusal::Invalid(format!("{} is not an ip:port address", excerpt(addr))))?,
            },
        })
    }

    /// The action family, as in the audit journal.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Hosts { .. } => "hosts",
            Step::Service { .. } => "service",
            Step::PropertySet { .. } | Step::PropertyLower { .. } => "properties",
            Step::Notify { .. } => "notify",
            Step::PgAddColumn { .. } => "postgres",
            Step::CheckBuild => "build",
            Step::CanalRewind | Step::CanalReset { .. } | Step::CanalNewBinlog { .. } => "canal",
            Step::ProbeTcp { .. } => "probe",
            Step::KafkaWaitDrained | Step::KafkaMoveLogDir { .. } | Step::KafkaStartLeaderFirst => "kafka",
        }
    }

    /// What the step acts on.
    pub fn target(&self) -> String {
        match self {
            Step::Hosts { host, .. } => host.to_string(),
            Step::Service { op, service } => format!("{op} {service}"),
            Step::PropertySet { file, key, .. } | Step::PropertyLower { file, key, .. } => {
                format!("{file}:{key}")
            }
            Step::Notify { message } => message.lines().next().unwrap_or("").chars().take(80).collect(),
            Step::PgAddColumn { table, column } => format!("{table}.{column}"),
            Step::CheckBuild => "consumer".into(),
            Step::CanalRewind => "every cursor".into(),
            Step::CanalReset { destination } | Step::CanalNewBinlog { destination } => format!("{destination} cursor"),
            Step::ProbeTcp { addr } => addr.to_string(),
            Step::KafkaWaitDrained => "consumer lag".into(),
            Step::KafkaMoveLogDir { to } => format!("log.dir -> {}", to.display()),
            Step::KafkaStartLeaderFirst => "brokers leader-first".into(),
        }
    }

    /// The key rate limits and cooldowns are counted on: the action and its
    /// target. A restart and a stop of one service share a key.
    pub fn limit_key(&self) -> String {
        match self {
            Step::Service { service, .. } => format!("service:{service}"),
            _ => format!("{}:{}", self.action(), self.target()),
        }
    }

    /// What in the world this step changes, whatever made a rule want it:
    /// the circuit breaker counts on this, so a fix repeated for a different
    /// log line each time (K1 with a new host name per line) still counts as
    /// the same broker restarted again. `None`: it changes nothing (a mail,
    /// a probe, a wait).
    pub fn changes(&self) -> Option<String> {
        match self {
            Step::Service { service, .. } => Some(format!("service {service}")),
            Step::Hosts { .. } => Some("the hosts file".into()),
            Step::PropertySet { file, .. } | Step::PropertyLower { file, .. } => Some(format!("properties {file}")),
            Step::PgAddColumn { table, .. } => Some(format!("postgres table {table}")),
            Step::CanalRewind | Step::CanalReset { .. } | Step::CanalNewBinlog { .. } => Some("canal cursors".into()),
            Step::KafkaMoveLogDir { .. } => Some("kafka log.dir".into()),
            Step::KafkaStartLeaderFirst => Some("kafka brokers".into()),
            Step::Notify { .. } | Step::CheckBuild | Step::ProbeTcp { .. } | Step::KafkaWaitDrained => None,
        }
    }

    /// The preview is what a person approves (a diff, a cursor, SQL), so an
    /// approved plan whose preview reads differently now is asked again. A
    /// service step's preview only reports the moment (running, which pid):
    /// canal stopping or a standby taking over between the mail and the
    /// answer does not change what the plan does.
    pub fn preview_is_what_was_approved(&self) -> bool {
        !matches!(self, Step::Service { .. })
    }

    /// Writes canal's cursors: state in ZooKeeper that every canal server
    /// of an HA cluster shares.
    pub fn writes_canal_cursors(&self) -> bool {
        matches!(self, Step::CanalRewind | Step::CanalReset { .. } | Step::CanalNewBinlog { .. })
    }

    /// The least risk a plan containing this step can have. A rule may raise
    /// a plan's risk, never lower it below its steps'.
    pub fn min_risk(&self) -> Risk {
        match self {
            // Setting an arbitrary value (a Kafka server property, say) can
            // break a service; lowering a number within a floor cannot.
            Step::PropertySet { .. } => Risk::Dangerous,
            // DDL on the live target databases; rewriting canal's positions.
            Step::PgAddColumn { .. } | Step::CanalRewind | Step::CanalNewBinlog { .. } => Risk::Dangerous,
            Step::CanalReset { .. } => Risk::DataLoss,
            Step::KafkaMoveLogDir { .. } => Risk::Dangerous,
            _ => Risk::Safe,
        }
    }
}

/// A plan that passed validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub rule: String,
    pub runbook: Vec<String>,
    pub summary: String,
    pub risk: Risk,
    /// A finding that deliberately needs no action (runbook C3).
    pub benign: bool,
    pub steps: Vec<Step>,
}

impl Plan {
    /// What the plan changes (see [`Step::changes`]), each once.
    pub fn changes(&self) -> Vec<String> {
        let mut things: Vec<String> = self.steps.iter().filter_map(Step::changes).collect();
        things.sort();
        things.dedup();
        things
    }
}

fn canal_destination(name: &str, config: &Config) -> Result<Name, Refusal> {
    let name = Name::parse("destination", name).map_err(Refusal::invalid)?;
    if !config.canal.as_ref().is_some_and(|c| c.destinations.contains_key(name.as_str())) {
        return Err(Refusal::NotConfigured(format!("destination {name} is not configured under [canal.destinations]")));
    }
    Ok(name)
}

fn properties_file(name: &str, config: &Config) -> Result<Name, Refusal> {
    let name = Name::parse("properties file name", name).map_err(Refusal::invalid)?;
    if !config.properties_files.contains_key(name.as_str()) {
        return Err(Refusal::NotConfigured(format!(
            "properties file {name} is not configured under [properties_files]"
        )));
    }
    Ok(name)
}

/// Why a step a rule asked for is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It names what this host's configuration lacks (a service, a
    /// properties file, a canal destination, a section): this host takes no
    /// part in that fix; the rule is not at fault.
    #[error("{0}")]
    NotConfigured(String),
    /// Its input is not valid: a hostile capture, a value out of range.
    #[error("{0}")]
    Invalid(String),
}

impl Refusal {
    fn invalid(e: impl fmt::Display) -> Refusal {
        Refusal::Invalid(e.to_string())
    }
}

/// Which step of a plan was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step {step} ({kind}): {why}")]
pub struct PlanRefused {
    pub step: usize,
    pub kind: &'static str,
    pub why: Refusal,
}

/// A plan as a rule returned it, before validation.
#[derive(Debug, Clone)]
pub struct PlanSpec {
    pub summary: String,
    pub risk: Risk,
    pub benign: bool,
    pub steps: Vec<StepSpec>,
}

impl PlanSpec {
    /// Validates every step; the first refusal refuses the plan, so a plan
    /// never runs with a step quietly dropped.
    pub fn validate(self, rule: &str, runbook: &[String], config: &Config) -> Result<Plan, PlanRefused> {
        let mut steps = Vec::with_capacity(self.steps.len());
        for (i, spec) in self.steps.iter().enumerate() {
            let refused = |why| PlanRefused { step: i + 1, kind: spec_kind(spec), why };
            steps.push(Step::validate(spec, config).map_err(refused)?);
        }
        let risk = steps.iter().map(Step::min_risk).fold(self.risk, Risk::max);
        Ok(Plan {
            rule: rule.to_string(),
            runbook: runbook.to_vec(),
            summary: self.summary,
            risk,
            benign: self.benign,
            steps,
        })
    }
}

fn spec_kind(spec: &StepSpec) -> &'static str {
    match spec {
        StepSpec::HostsEntry { .. } => "hosts_entry",
        StepSpec::Service { .. } => "service",
        StepSpec::PropertySet { .. } => "property_set",
        StepSpec::PropertyLower { .. } => "property_lower",
        StepSpec::Notify { .. } => "notify",
        StepSpec::PgAddColumn { .. } => "pg_add_column",
        StepSpec::CheckBuild => "check_build",
        StepSpec::CanalRewind => "canal_rewind",
        StepSpec::CanalReset { .. } => "canal_reset",
        StepSpec::CanalNewBinlog { .. } => "canal_new_binlog",
        StepSpec::ProbeTcp { .. } => "probe_tcp",
        StepSpec::KafkaWaitDrained => "kafka_wait_drained",
        StepSpec::KafkaMoveLogDir { .. } => "kafka_move_log_dir",
        StepSpec::KafkaStartLeaderFirst => "kafka_start_leader_first",
    }
}
