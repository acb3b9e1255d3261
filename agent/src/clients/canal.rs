//! The canal model: what canal keeps in ZooKeeper for each destination —
//! which server runs it, its client cursor (a `LogPosition`, spelled as
//! canal spells it) — and the fallback interval from its properties. Read
//! only: the writes are `actions::canal`'s.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::clients::mysql::Binlog;
use crate::clients::zk::{Node, Session, ZkError};
use crate::types::human_time;

const LOG_POSITION: &str = "com.alibaba.otter.canal.protocol.position.LogPosition";

/// A client cursor as canal stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct CanalCursor {
    pub slave_id: i64,
    pub address: String,
    pub port: u16,
    pub gtid: String,
    pub journal: String,
    pub position: i64,
    pub server_id: Option<i64>,
    pub timestamp: i64,
}

/// A cursor node canal itself could not read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnreadableCursor(pub String);

impl From<&str> for UnreadableCursor {
    fn from(why: &str) -> Self {
        UnreadableCursor(why.to_string())
    }
}

impl CanalCursor {
    /// Parses a cursor node; refuses anything canal itself could not read.
    pub fn parse(bytes: &[u8]) -> Result<CanalCursor, UnreadableCursor> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| UnreadableCursor(format!("not JSON: {e}")))?;
        if v.get("@type").and_then(Value::as_str) != Some(LOG_POSITION) {
            return Err(UnreadableCursor(format!("no \"@type\":\"{LOG_POSITION}\"")));
        }
        let id = &v["identity"];
        let pos = &v["postion"];
        let str_of = |x: &Value| x.as_str().map(String::from);
        Ok(CanalCursor {
            slave_id: id["slaveId"].as_i64().unwrap_or(-1),
            address: str_of(&id["sourceAddress"]["address"]).ok_or("identity.sourceAddress.address is missing")?,
            port: id["sourceAddress"]["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or("identity.sourceAddress.port is missing")?,
            gtid: str_of(&pos["gtid"]).unwrap_or_default(),
            journal: str_of(&pos["journalName"]).unwrap_or_default(),
            position: pos["position"].as_i64().ok_or("postion.position is missing")?,
            server_id: pos["serverId"].as_i64(),
            timestamp: pos["timestamp"].as_i64().ok_or("postion.timestamp is missing")?,
        })
    }

    /// The JSON exactly as canal writes it: `@type` first, keys in
    /// alphabetical order, `postion` spelled canal's way, milliseconds.
    pub fn render(&self) -> String {
        let s = |x: &str| serde_json::to_string(x).expect("strings serialise");
        format!(
            "{{\"@type\":\"{LOG_POSITION}\",\"identity\":{{\"slaveId\":{},\"sourceAddress\":{{\"address\":{},\"port\":{}}}}},\"postion\":{{\"gtid\":{},\"included\":false,\"journalName\":{},\"position\":{},{}\"timestamp\":{}}}}}",
            self.slave_id,
            s(&self.address),
            self.port,
            s(&self.gtid),
            s(&self.journal),
            self.position,
            self.server_id.map(|id| format!("\"serverId\":{id},")).unwrap_or_default(),
            self.timestamp
        )
    }

    /// This cursor moved to a timestamp-only position: canal then searches
    /// the binlogs from `timestamp − fallbackIntervalInSeconds`.
    pub fn at_timestamp(&self, timestamp_ms: i64) -> CanalCursor {
        CanalCursor {
            journal: String::new(),
            position: 0,
            gtid: String::new(),
            timestamp: timestamp_ms,
            ..self.clone()
        }
    }

    /// This cursor moved to the very start (position 4) of `binlog`: a
    /// position every canal version reads. (canal up to 1.1.4 cannot start
    /// from a timestamp-only cursor of its own source: it "dumps by
    /// timestamp", which throws `NullPointerException: Not implement yet`
    /// and retries forever; the lab's canal 1.1.4 showed it.)
    pub fn at_binlog_start(&self, binlog: &Binlog) -> CanalCursor {
        CanalCursor {
            journal: binlog.name.clone(),
            position: 4,
            gtid: String::new(),
            timestamp: binlog.created_ms,
            ..self.clone()
        }
    }

    /// Whether the cursor was written for `host:port`, compared as canal
    /// does (`InetSocketAddress.equals`: the same port and the same resolved
    /// address). canal writes the host name it knows, "localhost" for
    /// 127.0.0.1, say, so the strings alone do not tell.
    pub fn is_from(&self, host: &str, port: u16) -> bool {
        use std::net::ToSocketAddrs;
        if self.port != port {
            return false;
        }
        if self.address == host {
            return true;
        }
        let resolve = |h: &str| -> Vec<std::net::IpAddr> {
            (h, port).to_socket_addrs().map(|a| a.map(|a| a.ip()).collect()).unwrap_or_default()
        };
        let ours = resolve(host);
        resolve(&self.address).iter().any(|ip| ours.contains(ip))
    }

    pub(crate) fn describe(&self) -> String {
        let at = if self.journal.is_empty() {
            "timestamp only".to_string()
        } else {
            format!("{}:{}", self.journal, self.position)
        };
        format!("{at} @ {} ({}) from {}:{}", human_time(self.timestamp), self.timestamp, self.address, self.port)
    }
}

fn dest_path(dest: &str) -> String {
    format!("/otter/canal/destinations/{dest}")
}

/// What ZooKeeper says about one destination.
#[derive(Debug, Clone)]
pub struct DestinationState {
    pub name: String,
    /// The server holding the destination (`running` node), if any.
    pub running: Option<String>,
    pub cluster: Vec<String>,
    pub cursor_path: String,
    pub cursor: Option<(Result<CanalCursor, UnreadableCursor>, Node)>,
}

impl DestinationState {
    /// Whether some canal server still serves it.
    pub fn served(&self) -> bool {
        self.running.is_some() || !self.cluster.is_empty()
    }
}

/// Reads every configured destination's layout.
pub fn read_destinations(zk: &Session, canal: &CanalConfig) -> Result<Vec<DestinationState>, ZkError> {
    canal.destinations.iter().map(|(name, d)| read_state(zk, name, d)).collect()
}

pub(crate) fn read_state(
    zk: &Session,
    name: &str,
    d: &crate::clients::canal::CanalDestination,
) -> Result<DestinationState, ZkError> {
    let base = dest_path(name);
    let running = zk.get(&format!("{base}/running"))?.map(|n| {
        let v: Value = serde_json::from_slice(&n.data).unwrap_or(Value::Null);
        v["address"].as_str().map(String::from).unwrap_or_else(|| String::from_utf8_lossy(&n.data).into_owned())
    });
    let cluster = zk.children(&format!("{base}/cluster"))?;
    let cursor_path = format!("{base}/{}/cursor", d.client_id);
    let cursor = zk.get(&cursor_path)?.map(|n| (CanalCursor::parse(&n.data), n));
    Ok(DestinationState { name: name.to_string(), running, cluster, cursor_path, cursor })
}

/// `canal.instance.fallbackIntervalInSeconds` from the configured files
/// (the last one that sets it wins), else canal's default of 60.
pub fn fallback_secs(canal: &CanalConfig) -> i64 {
    let mut secs = 60;
    for file in &canal.properties_files {
        let Ok(text) = crate::fsutil::read_foreign(file) else { continue };
        if let Some(n) = crate::properties::value(&text, "canal.instance.fallbackIntervalInSeconds")
            .and_then(|v| v.trim().parse::<i64>().ok())
        {
            secs = n;
        }
    }
    secs
}

// `[canal]` in the configuration: the canal server on this host and its destinations.

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
