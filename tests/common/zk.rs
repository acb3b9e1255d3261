//! A throwaway ZooKeeper server (Debian `zookeeper`) on a free loopback
//! port, with a short tick so sessions of dead clients expire quickly, and a
//! small blocking client for seeding and checking nodes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use super::free_port;

pub struct ZooKeeper {
    _dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl ZooKeeper {
    pub fn start() -> ZooKeeper {
        let jar = "/usr/share/java/zookeeper.jar";
        assert!(Path::new(jar).exists(), "{jar} is missing: apt-get install -y zookeeper (./scripts/test installs it)");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=200\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\nminSessionTimeout=400\nmaxSessionTimeout=10000\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("java")
            .args([
                "-Xmx128m",
                "-Dzookeeper.admin.enableServer=false",
                "-cp",
                jar,
                "org.apache.zookeeper.server.ZooKeeperServerMain",
            ])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ZooKeeper (java)");
        let zk = ZooKeeper { _dir: dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !zk.ready() {
            assert!(Instant::now() < deadline, "ZooKeeper did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        zk
    }

    fn ready(&self) -> bool {
        // Bounded: a server that accepted but is not serving yet never closes
        // the connection, and an unbounded read hung a whole test run once.
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(b"srvr");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.contains("Mode")
    }

    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client session; dropping it closes the session, which removes its
    /// ephemeral nodes.
    pub fn client(&self) -> Zk {
        Zk::connect(&self.connect_string())
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Zk {
    rt: tokio::runtime::Runtime,
    client: Option<zk::Client>,
}

impl Drop for Zk {
    fn drop(&mut self) {
        self.close();
    }
}

impl Zk {
    /// A session with the ZooKeeper at `connect` (`host:port`).
    pub fn connect(connect: &str) -> Zk {
        // A worker thread keeps the session alive (heartbeats) between calls.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let client = rt
            .block_on(zk::Client::connector().with_session_timeout(Duration::from_secs(2)).connect(connect))
            .expect("connecting to ZooKeeper");
        Zk { rt, client: Some(client) }
    }

    fn c(&self) -> &zk::Client {
        self.client.as_ref().expect("session open")
    }

    /// Creates a persistent node and its parents.
    pub fn put(&self, path: &str, data: &[u8]) {
        self.parents(path);
        let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        self.rt.block_on(self.c().create(path, data, &persistent)).unwrap();
    }

    fn parents(&self, path: &str) {
        let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !parent.is_empty() {
                self.rt.block_on(self.c().mkdir(parent, &persistent)).unwrap();
            }
        }
    }

    /// Creates an ephemeral node held by this session (a "running" canal).
    pub fn hold(&self, path: &str, data: &[u8]) {
        self.parents(path);
        let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        self.rt.block_on(self.c().create(path, data, &ephemeral)).unwrap();
    }

    pub fn get(&self, path: &str) -> Option<(Vec<u8>, i32)> {
        match self.rt.block_on(self.c().get_data(path)) {
            Ok((data, stat)) => Some((data, stat.version)),
            Err(zk::Error::NoNode) => None,
            Err(e) => panic!("reading {path}: {e}"),
        }
    }

    /// Children's names, sorted; empty if the node does not exist.
    pub fn children(&self, path: &str) -> Vec<String> {
        match self.rt.block_on(self.c().list_children(path)) {
            Ok(mut c) => {
                c.sort();
                c
            }
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => panic!("listing {path}: {e}"),
        }
    }

    pub fn set(&self, path: &str, data: &[u8]) {
        self.rt.block_on(self.c().set_data(path, data, None)).unwrap();
    }

    #[allow(dead_code)] // not every test binary deletes
    pub fn delete(&self, path: &str) {
        self.rt.block_on(self.c().delete(path, None)).unwrap();
    }

    /// Closes the session: its ephemeral nodes vanish.
    pub fn close(&mut self) {
        if let Some(c) = self.client.take() {
            let _inside = self.rt.enter();
            drop(c);
            // Let the close request go out.
            self.rt.block_on(tokio::time::sleep(Duration::from_millis(100)));
        }
    }
}
