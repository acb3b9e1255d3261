//! A blocking ZooKeeper session for actions and commands. Every call runs on
//! a private current-thread runtime, so callers stay synchronous.

use std::time::Duration;

use serde::Deserialize;
use zookeeper_client as zk;

/// A node's data, version and who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub data: Vec<u8>,
    pub version: i32,
    /// When it was last written, by the ZooKeeper server's clock (ms since
    /// the epoch): what another agent cannot forge.
    pub mtime: i64,
    /// The session an ephemeral node belongs to; 0 for a persistent node.
    pub ephemeral_owner: i64,
}

impl Node {
    /// The node's data as another agent's JSON record: refused when it is
    /// larger than [`MAX_PEER_NODE`] (ZooKeeper itself allows 1 MiB) or is
    /// not `T`. `what` names it in the error.
    pub fn peer<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, String> {
        if self.data.len() > MAX_PEER_NODE {
            return Err(format!("{what} is {} bytes, more than the {MAX_PEER_NODE} an agent writes", self.data.len()));
        }
        serde_json::from_slice(&self.data).map_err(|e| format!("{what} is not what an agent writes ({e})"))
    }
}

/// The largest node an agent reads from another agent: every record the
/// agents write is a few hundred bytes.
pub const MAX_PEER_NODE: usize = 16 * 1024;

// The same reads and writes for async code that holds a session across
// waits (locks, watches, the K4 member) — and, through `Session`, for
// everyone else.

/// The node, or `None` if it does not exist.
pub async fn get(client: &zk::Client, path: &str) -> Result<Option<Node>, zk::Error> {
    match client.get_data(path).await {
        Ok((data, stat)) => {
            Ok(Some(Node { data, version: stat.version, mtime: stat.mtime, ephemeral_owner: stat.ephemeral_owner }))
        }
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Children's names, sorted; empty if the node does not exist.
pub async fn children(client: &zk::Client, path: &str) -> Result<Vec<String>, zk::Error> {
    match client.list_children(path).await {
        Ok(mut c) => {
            c.sort();
            Ok(c)
        }
        Err(zk::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Writes `data` at `path` whatever its version, creating it (as `mode`, with
/// persistent parents) if it does not exist. For the agents' own nodes only:
/// anything a preview showed is written compare-and-set.
pub async fn put(client: &zk::Client, path: &str, data: &[u8], mode: zk::CreateMode) -> Result<(), zk::Error> {
    match client.set_data(path, data, None).await {
        Err(zk::Error::NoNode) => {
            parents(client, path).await?;
            client.create(path, data, &mode.with_acls(zk::Acls::anyone_all())).await.map(drop)
        }
        other => other.map(drop),
    }
}

/// Creates the persistent parents of `path` that do not exist (`mkdir -p`).
pub async fn parents(client: &zk::Client, path: &str) -> Result<(), zk::Error> {
    match path.rsplit_once('/') {
        Some((parent, _)) if !parent.is_empty() => {
            client.mkdir(parent, &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await
        }
        _ => Ok(()),
    }
}

/// Creates an ephemeral node (an agent's presence); one left by this agent's
/// previous session (restarted faster than the session timeout) is replaced.
pub async fn announce(client: &zk::Client, path: &str, data: &[u8]) -> Result<(), zk::Error> {
    parents(client, path).await?;
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    match client.create(path, data, &ephemeral).await {
        Err(zk::Error::NodeExists) => {
            match client.delete(path, None).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
            client.create(path, data, &ephemeral).await.map(drop)
        }
        other => other.map(drop),
    }
}

/// A new session with the configured timeouts.
pub async fn connect(config: &ZooKeeperConfig) -> Result<zk::Client, zk::Error> {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(config.session_timeout_secs))
        .with_connection_timeout(Duration::from_secs(5))
        .connect(&config.connect)
        .await
}

/// A ZooKeeper call that failed, naming the ensemble and the node.
#[derive(Debug, thiserror::Error)]
pub enum ZkError {
    #[error("starting a runtime for the ZooKeeper client: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("connecting to ZooKeeper {ensemble}: {source}")]
    Connect { ensemble: String, source: zk::Error },
    #[error("{doing} {path} on ZooKeeper {ensemble}: {source}")]
    Call { doing: &'static str, path: String, ensemble: String, source: zk::Error },
    /// A compare-and-set found the node at another version: someone wrote
    /// it since it was read, and nothing was written.
    #[error("{path} changed since it was read (version {expected} expected); not {doing}")]
    Changed { path: String, expected: i32, doing: &'static str },
}

/// An open session.
pub struct Session {
    rt: tokio::runtime::Runtime,
    client: zk::Client,
    connect: String,
}

impl Session {
    /// Connects; the error names the ensemble.
    pub fn connect(config: &ZooKeeperConfig) -> Result<Session, ZkError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ZkError::Runtime)?;
        let client = rt
            .block_on(connect(config))
            .map_err(|source| ZkError::Connect { ensemble: config.connect.clone(), source })?;
        Ok(Session { rt, client, connect: config.connect.clone() })
    }

    /// The async client, for code that must keep the session alive while it
    /// waits (locks, watches): run it with [`Session::block_on`].
    pub fn client(&self) -> zk::Client {
        self.client.clone()
    }

    /// Runs a future on the session's runtime. The session only answers
    /// ZooKeeper's pings while a call or this is running.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The ensemble, for messages.
    pub fn connect_string(&self) -> &str {
        &self.connect
    }

    /// Turns a failed call on this session into a [`ZkError::Call`] that
    /// names what was being done, the node and the ensemble.
    pub fn call_error(&self, doing: &'static str, path: &str) -> impl FnOnce(zk::Error) -> ZkError + '_ {
        let path = path.to_string();
        move |source| ZkError::Call { doing, path, ensemble: self.connect.clone(), source }
    }

    /// The node, or `None` if it does not exist.
    pub fn get(&self, path: &str) -> Result<Option<Node>, ZkError> {
        self.rt.block_on(get(&self.client, path)).map_err(self.call_error("reading", path))
    }

    /// Children's names, sorted; empty if the node does not exist.
    pub fn children(&self, path: &str) -> Result<Vec<String>, ZkError> {
        self.rt.block_on(children(&self.client, path)).map_err(self.call_error("listing", path))
    }

    /// Replaces the data only if the node is still at `version`.
    pub fn set_if_version(&self, path: &str, data: &[u8], version: i32) -> Result<i32, ZkError> {
        match self.rt.block_on(self.client.set_data(path, data, Some(version))) {
            Ok(stat) => Ok(stat.version),
            Err(zk::Error::BadVersion) => {
                Err(ZkError::Changed { path: path.to_string(), expected: version, doing: "writing" })
            }
            Err(e) => Err(self.call_error("writing", path)(e)),
        }
    }

    /// Deletes the node only if it is still at `version`.
    pub fn delete_if_version(&self, path: &str, version: i32) -> Result<(), ZkError> {
        match self.rt.block_on(self.client.delete(path, Some(version))) {
            Ok(()) => Ok(()),
            Err(zk::Error::BadVersion) => {
                Err(ZkError::Changed { path: path.to_string(), expected: version, doing: "deleting" })
            }
            Err(e) => Err(self.call_error("deleting", path)(e)),
        }
    }
}

// `[zookeeper]` in the configuration: where ZooKeeper is.

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
