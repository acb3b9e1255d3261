//! The lab (`scripts/lab`, tests/lab/lab.sh): the real pipeline — MariaDB,
//! ZooKeeper, canal server, monitor, Kafka, data_sync, PostgreSQL — brought
//! up in a temp directory for a test, and down (gracefully) when dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Host, Options, BIN, REPO};

pub const SOURCES: [&str; 2] = ["ix_trade", "ix_quote"];
pub const DATABASES: [&str; 2] = ["trade_ix", "admin"];
pub const MONITOR_LOG: &str = "logs/data_monitor/data_monitor_info.log";
pub const CONSUMER_LOG: &str = "logs/data_sync/data_sync_goldoffice_info.log";
/// Deadlines for the real software (a 2-core machine; canal retries a bad
/// position every 10–20 s, a dead canal's ZooKeeper session lasts 20 s).
pub const FLOW: Duration = Duration::from_secs(60);
pub const HEAL: Duration = Duration::from_secs(240);

pub struct Lab {
    pub dir: PathBuf,
    _parent: tempfile::TempDir,
    pub env: BTreeMap<String, String>,
}

/// What `scripts/lab` printed, for a failure message.
fn run_lab(args: &[&str], envs: &[(&str, String)]) -> String {
    let out = Command::new(Path::new(REPO).join("scripts/lab"))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("PIPEMEDIC_BIN", BIN)
        .output()
        .expect("running scripts/lab");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/lab {args:?} failed:\n{text}");
    text
}

impl Lab {
    /// `scripts/lab up` with `canal_servers` canal servers on the same
    /// ZooKeeper; fails with the lagging part's log if one does not come up.
    pub fn up(canal_servers: u32) -> Lab {
        let parent = tempfile::tempdir().expect("temp dir");
        let dir = parent.path().join("lab");
        let started = Instant::now();
        let out = run_lab(
            &["up"],
            &[("LAB_DIR", dir.display().to_string()), ("LAB_CANAL_SERVERS", canal_servers.to_string())],
        );
        assert_eq!(out.lines().last(), Some(dir.to_str().unwrap()), "the last line is the lab's directory:\n{out}");
        eprintln!("lab up in {:.1} s", started.elapsed().as_secs_f64());
        let env = std::fs::read_to_string(dir.join("lab.env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Lab { dir, _parent: parent, env }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn port(&self, key: &str) -> u16 {
        self.env[key].parse().unwrap_or_else(|_| panic!("{key} in lab.env"))
    }

    /// `scripts/lab ARGS…` on this lab.
    pub fn run(&self, args: &[&str]) -> String {
        run_lab(args, &[("LAB_DIR", self.dir.display().to_string())])
    }

    /// Runs one of the lab's own scripts (`canal2/bin/stop.sh`, say) as an
    /// operator would.
    pub fn run_script(&self, rel: &str) {
        let out = Command::new(self.path(rel)).output().expect("running a lab script");
        assert!(out.status.success(), "{rel} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn read(&self, rel: &str) -> String {
        String::from_utf8_lossy(&std::fs::read(self.path(rel)).unwrap_or_default()).into_owned()
    }

    /// SQL on a source, through its socket, as root; the output's rows.
    pub fn mysql(&self, source: &str, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-uroot", "--connect-timeout=10", "-N", "-B"])
            .arg(format!("--socket={}", self.path(&format!("mysql/{source}/mysqld.sock")).display()))
            .args(["-e", sql])
            .output()
            .expect("running the mariadb client");
        assert!(out.status.success(), "{source}: {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pg(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(
            &format!("host=127.0.0.1 port={} user=postgres dbname={db} connect_timeout=10", self.port("PG_PORT")),
            postgres::NoTls,
        )
        .expect("connecting to the lab's PostgreSQL")
    }

    /// Inserts an order with `user_id = marker` in `source`.
    pub fn insert_order(&self, source: &str, marker: i64) {
        self.mysql(source, &format!("INSERT INTO trade.t_order (user_id, amount) VALUES ({marker}, 1.00)"));
    }

    /// How many copies of `source`'s orders with `user_id = marker` reached `db`.
    pub fn orders_in(&self, db: &str, source: &str, marker: i64) -> i64 {
        self.pg(db)
            .query_one("SELECT count(*) FROM t_order WHERE source = $1 AND user_id = $2", &[&source, &marker])
            .map(|r| r.get(0))
            .unwrap_or(0)
    }

    /// Waits until the rows with these markers of `source` are in both databases.
    pub fn wait_rows(&self, what: &str, source: &str, markers: &[i64], within: Duration) {
        self.wait(what, within, || {
            DATABASES.iter().all(|db| markers.iter().all(|&m| self.orders_in(db, source, m) >= 1))
        });
    }

    /// Polls `cond` until `within`; a failure shows the pipeline's logs.
    pub fn wait(&self, what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !cond() {
            if Instant::now() >= deadline {
                panic!("timed out ({} s) waiting for {what}\n{}", within.as_secs(), self.tails());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last lines of every log of the pipeline.
    pub fn tails(&self) -> String {
        let mut out = String::new();
        for log in [
            "canal/logs/canal/canal.log",
            "canal/logs/ix_trade/ix_trade.log",
            "canal/logs/ix_quote/ix_quote.log",
            "logs/data_monitor/data_monitor_info.log",
            "logs/data_sync/data_sync_goldoffice_info.log",
            "logs/data_sync/data_sync_goldoffice_error.log",
            "kafka/1/logs/server.log",
        ] {
            let text = self.read(log);
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            out.push_str(&format!("--- {log}\n{tail}\n"));
        }
        out
    }

    /// Lines of `log` containing `needle`.
    pub fn count(&self, log: &str, needle: &str) -> usize {
        self.read(log).lines().filter(|l| l.contains(needle)).count()
    }

    /// The agent on this lab, as a host of the integration tests: the lab's
    /// own configuration (agent/pipemedic.toml), `dry_run` and approvers as
    /// the test asks.
    pub fn agent(&self, dry_run: bool, approvers: Vec<&'static str>) -> Host {
        self.agent_of("agent", dry_run, approvers)
    }

    /// The agent of another canal "host" (`agent2` beside canal server 2),
    /// as [`Lab::agent`].
    pub fn agent_of(&self, dir: &str, dry_run: bool, approvers: Vec<&'static str>) -> Host {
        let config = std::fs::read_to_string(self.path(&format!("{dir}/pipemedic.toml"))).unwrap();
        let host = Host::with_config(config, Options { dry_run, approvers, ..Options::default() });
        let password = self.path(&format!("{dir}/mysql.pw"));
        if password.exists() {
            std::fs::copy(password, host.path("mysql.pw")).unwrap();
        }
        host
    }

    /// The `n`th mail of `host` whose subject contains `subject` (an agent
    /// also mails notices: M1's missing heartbeats, say).
    pub fn wait_mail(&self, host: &Host, n: usize, subject: &str) -> super::Mail {
        let mut found = None;
        self.wait(&format!("mail {n} '{subject}'"), HEAL, || {
            found = host.mails().into_iter().filter(|m| m.subject().contains(subject)).nth(n - 1);
            found.is_some()
        });
        found.unwrap()
    }

    /// With LAB_KEEP_FIXTURES=1, keeps the record of `log` holding `needle`
    /// as the fixture tests/fixtures/lab/FIXTURE (what the real software
    /// printed; the rule tests read them). Otherwise nothing: a test run
    /// never changes the repository.
    pub fn keep(&self, log: &str, needle: &str, fixture: &str) {
        if std::env::var_os("LAB_KEEP_FIXTURES").is_none() {
            return;
        }
        let text = self.read(log);
        let lines: Vec<&str> = text.lines().collect();
        let Some(start) = lines.iter().position(|l| l.contains(needle)) else {
            panic!("{log} has no line with {needle:?}");
        };
        // The record: the line, back to its header, and its continuation lines.
        let head = (0..=start).rev().find(|&i| starts_record(lines[i])).unwrap_or(start);
        let end = (start + 1..lines.len()).find(|&i| starts_record(lines[i])).unwrap_or(lines.len());
        let path = Path::new(REPO).join("tests/fixtures/lab").join(fixture);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, lines[head..end].join("\n") + "\n").unwrap();
    }
}

fn starts_record(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 4 && (b[..4].iter().all(u8::is_ascii_digit) || (b[0] == b'[' && b[1..5].iter().all(u8::is_ascii_digit)))
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(REPO).join("scripts/lab")).arg("down").env("LAB_DIR", &self.dir).output();
    }
}

/// A value for a row's user_id that no other row of the run has.
pub fn marker() -> i64 {
    chrono::Utc::now().timestamp_micros() % 1_000_000_000_000
}

/// The duplicates the consumer counted (a replay writes rows again).
pub fn duplicates(lab: &Lab) -> u64 {
    lab.read(CONSUMER_LOG)
        .lines()
        .filter_map(|l| l.split("(duplicates=").nth(1))
        .filter_map(|r| r.trim_end_matches(')').parse::<u64>().ok())
        .sum()
}

/// The heartbeats of `source` the consumer wrote.
pub fn heartbeats(lab: &Lab, source: &str) -> usize {
    lab.count(CONSUMER_LOG, &format!("heartbeat consumed source={source}"))
}

/// Every source's new rows and heartbeats reach both databases.
pub fn flows(lab: &Lab, why: &str) {
    let m = marker();
    for s in SOURCES {
        lab.insert_order(s, m);
    }
    for s in SOURCES {
        lab.wait_rows(&format!("{why}: a row of {s} in {DATABASES:?}"), s, &[m], FLOW);
    }
}

/// On a failure, shows what the agent did.
pub struct ShowAudit(pub std::path::PathBuf);

impl Drop for ShowAudit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for line in std::fs::read_to_string(&self.0).unwrap_or_default().lines() {
                eprintln!("audit: {}", line.chars().take(1500).collect::<String>());
            }
        }
    }
}
