//! Canal: its service, destinations, HA, and the MySQL sources it listens to.

use super::*;

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

impl MysqlSource {
    pub(super) fn check(&self, name: &str) -> Result<(), Invalid> {
        Name::parse("MySQL source name", name).map_err(|e| format!("[mysql.{name}]: {e}"))?;
        for schema in &self.schemas {
            crate::types::SqlIdent::parse(schema).map_err(|e| format!("[mysql.{name}] schemas: {e}"))?;
        }
        Ok(())
    }
}
