//! The agent's configuration: one TOML file per host.
//!
//! Unknown keys are errors (`deny_unknown_fields`), reported with the file,
//! line and column, so a typo never silently falls back to a default.
//! Relative paths are resolved against the directory of the config file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::types::Name;

mod digest;
mod limits;

// Each section is defined next to the component it configures, and checks
// itself there; the root composes them.
pub use crate::actions::build::BuildCheck;
pub use crate::actions::service::{ProcessMatch, ServiceConfig, UpCheck};
pub use crate::approval::ApprovalConfig;
pub use crate::clients::canal::{CanalConfig, CanalDestination};
pub use crate::clients::kafka::KafkaClusterConfig;
pub use crate::clients::kafka::KafkaConfig;
pub use crate::clients::mysql::MysqlSource;
pub use crate::clients::postgres::PostgresTarget;
pub use crate::clients::zk::ZooKeeperConfig;
pub use crate::mail::{MailConfig, MailSecurity};
pub use crate::metrics::MetricsConfig;
pub use crate::probes::heartbeat::HeartbeatConfig;
pub use crate::probes::stall::StallConfig;
pub use crate::reconcile::{ReconcileConfig, TableConfig as ReconcileTable};
pub use crate::sources::{RecordStart, SourceConfig};
pub use digest::{BadTime, DigestConfig};
pub use limits::Limits;

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

pub use crate::types::Invalid;

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
    /// The tables whose PostgreSQL copies are reconciled against MySQL.
    #[serde(default)]
    pub reconcile: ReconcileConfig,
}

fn default_hosts_file() -> PathBuf {
    PathBuf::from("/etc/hosts")
}

impl Config {
    /// The Kafka cluster's brokers as configured on this host (`[kafka.cluster]
    /// brokers`); empty: every broker that holds a replica.
    pub fn cluster_brokers(&self) -> &[i32] {
        self.kafka_cluster().map_or(&[], |c| &c.brokers)
    }

    /// Where the consumer group begins in a partition it never committed
    /// in, from `[properties_files] consumer`.
    pub fn consumer_offset_reset(&self) -> crate::clients::kafka::Reset {
        crate::clients::kafka::Reset::of_consumer(self.properties_files.get("consumer").map(PathBuf::as_path))
    }

    /// What reconciling needs: its section, the sources and the targets.
    pub fn reconcile_section(&self) -> crate::reconcile::Section {
        crate::reconcile::Section {
            config: self.reconcile.clone(),
            mysql: self.mysql.clone(),
            targets: self.postgres.clone(),
        }
    }

    /// What the action families act on, each its own part: the only place
    /// that knows which sections each family reads.
    pub fn sections(&self) -> crate::actions::Sections {
        use crate::actions::{canal, kafka, kafka_cluster, postgres, service, Agent, Sections};
        let zookeeper = self.zookeeper.as_ref();
        let reconcile = self.reconcile_section();
        let reconcile_tables = reconcile.tables_by_source();
        Sections {
            agent: Agent { host: self.host_name(), state_dir: self.state_dir.clone(), dry_run: self.dry_run },
            hosts_file: self.hosts_file.clone(),
            service: service::Section {
                services: self.services.clone(),
                canal: self.canal.as_ref().map(|c| c.service.clone()),
                out_dir: self.state_dir.join("services"),
            },
            properties_files: self.properties_files.clone(),
            postgres: postgres::Section { mysql: self.mysql.clone(), targets: self.postgres.clone() },
            consumer_build: self.consumer_build.clone(),
            reconcile,
            // `check` made sure that [canal] and [kafka.cluster] have their [zookeeper].
            canal: self.canal.as_ref().zip(zookeeper).map(|(c, zk)| canal::Section {
                canal: c.clone(),
                zookeeper: zk.clone(),
                mysql: self.mysql.clone(),
                host: self.host_name(),
                reconcile_tables,
            }),
            kafka: kafka::Section {
                kafka: self.kafka.clone(),
                consumer_properties: self.properties_files.get("consumer").cloned(),
                server_properties: self.properties_files.get("kafka_server").cloned(),
            },
            kafka_cluster: self
                .kafka_cluster()
                .zip(zookeeper)
                .map(|(c, zk)| kafka_cluster::Section { cluster: c.clone(), zookeeper: zk.clone() }),
        }
    }

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
        config.check().map_err(|Invalid(message)| ConfigError::Invalid { path: origin.to_path_buf(), message })?;
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

    /// Each section checks its own settings; what spans sections (a name
    /// one section uses and another defines, a section another needs) is
    /// checked here.
    fn check(&self) -> Result<(), Invalid> {
        self.limits.check()?;
        if self.rule_dirs.is_empty() {
            return Err("rule_dirs is empty: the agent would do nothing".into());
        }
        for name in self.sources.keys() {
            Name::parse("source name", name).map_err(|e| format!("[sources.{name}]: {e}"))?;
        }
        for (name, service) in &self.services {
            service.check(name)?;
        }
        for name in self.properties_files.keys() {
            Name::parse("properties file name", name).map_err(|e| format!("[properties_files] {name}: {e}"))?;
        }
        if let Some(m) = &self.mail {
            m.check()?;
        }
        if let Some(a) = &self.approval {
            a.check()?;
            if self.mail.is_none() {
                return Err("[approval] needs a [mail] section to send the requests".into());
            }
        }
        for (name, m) in &self.mysql {
            m.check(name)?;
        }
        for (name, t) in &self.postgres {
            t.check(name)?;
        }
        self.reconcile_section().check()?;
        if let Some(c) = &self.canal {
            self.check_canal(c)?;
        }
        if let Some(c) = self.kafka_cluster() {
            c.check()?;
            if !self.services.contains_key(&c.service) {
                return Err(
                    format!("[kafka.cluster] service {:?} is not configured under [services]", c.service).into()
                );
            }
            if self.zookeeper.is_none() {
                return Err("[kafka.cluster] needs a [zookeeper] section: the agents coordinate there".into());
            }
        }
        if let Some(d) = &self.digest {
            d.time().map_err(|e| e.to_string())?;
            if self.mail.is_none() {
                return Err("[digest] needs a [mail] section to send it".into());
            }
            if d.to.is_empty() && self.mail.as_ref().is_some_and(|m| m.notify.is_empty()) {
                return Err("[digest] has no recipients: set `to` or [mail] notify".into());
            }
        }
        if let Some(s) = &self.stall {
            for (key, source) in s.sources() {
                if !self.sources.contains_key(source) {
                    return Err(format!("[stall] {key} {source:?} is not configured under [sources]").into());
                }
            }
            s.check()?;
            if self.heartbeat.is_none() && s.consumed_pattern.is_none() {
                return Err("[stall] needs [heartbeat] or a consumed_pattern: it must see consumption".into());
            }
        }
        if let Some(h) = &self.heartbeat {
            if !self.sources.contains_key(&h.source) {
                return Err(format!("[heartbeat] source {:?} is not configured under [sources]", h.source).into());
            }
            h.check()?;
        }
        Ok(())
    }

    /// `[canal]` names a service, MySQL sources and (in HA) this host.
    fn check_canal(&self, c: &CanalConfig) -> Result<(), Invalid> {
        if !self.services.contains_key(&c.service) {
            return Err(format!("[canal] service {:?} is not configured under [services]", c.service).into());
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
                )
                .into());
            }
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
mod tests;
