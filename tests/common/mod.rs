//! A throwaway pipeline host for integration tests: a temp directory with
//! logs, a hosts file, consumer properties, stand-in services (the example's
//! `standin.sh`, with the real start/stop/pid/log interface) and the shipped
//! rules, and the real `pipemedic` binary running on it.

#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
pub const BIN: &str = env!("CARGO_BIN_EXE_pipemedic");

/// Generous: these bound waits for things that normally take milliseconds,
/// and are never used to assert speed.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Host {
    pub dir: tempfile::TempDir,
    agent: Option<Child>,
}

/// Settings that differ between tests.
pub struct Options {
    pub dry_run: bool,
    pub cooldown_secs: u64,
    pub breaker_threshold: u32,
    pub stop_timeout_secs: u64,
    pub extra: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            cooldown_secs: 600,
            breaker_threshold: 3,
            stop_timeout_secs: 20,
            extra: String::new(),
        }
    }
}

pub const HOSTS: &str = "127.0.0.1\tlocalhost\n# kept as is\n::1\tlocalhost ip6-localhost\n";
pub const PROPERTIES: &str = "# consumer\nbootstrap.servers=127.0.0.1:9092\nmax.poll.records=500\n";

impl Host {
    pub fn new(opts: Options) -> Host {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        for d in ["logs", "bin", "rules", "rules.d", "state"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy(Path::new(REPO).join("examples/bin/standin.sh"), root.join("bin/standin.sh")).unwrap();
        for entry in std::fs::read_dir(Path::new(REPO).join("rules")).unwrap().flatten() {
            std::fs::copy(entry.path(), root.join("rules").join(entry.file_name())).unwrap();
        }
        std::fs::write(root.join("hosts"), HOSTS).unwrap();
        std::fs::write(root.join("consumer.properties"), PROPERTIES).unwrap();
        for log in ["server.log", "error.log", "info.log"] {
            std::fs::write(root.join("logs").join(log), "").unwrap();
        }
        let config = format!(
            r#"state_dir = "state"
dry_run = {dry_run}
rule_dirs = ["rules", "rules.d"]
hosts_file = "hosts"

[sources.kafka_server]
path = "logs/server.log"
[sources.consumer_error]
path = "logs/error.log"
[sources.consumer_info]
path = "logs/info.log"

[services.kafka]
start = ["bin/standin.sh", "start", "kafka", "{root}/logs/server.log"]
stop = ["bin/standin.sh", "stop", "kafka"]
process = {{ pid_file = "bin/run/kafka.pid" }}
up = {{ log_file = "logs/server.log", log_pattern = "started \\(kafka\\.server\\.KafkaServer\\)" }}
stop_timeout_secs = {stop}
start_timeout_secs = 20

[services.consumer]
start = ["bin/standin.sh", "start", "consumer", "{root}/logs/info.log"]
stop = ["bin/standin.sh", "stop", "consumer"]
process = {{ pid_file = "bin/run/consumer.pid" }}
stop_timeout_secs = {stop}
start_timeout_secs = 20

[properties_files]
consumer = "consumer.properties"

[limits]
cooldown_secs = {cooldown}
breaker_threshold = {breaker}
max_per_hour = 100
record_flush_ms = 200
{extra}
"#,
            dry_run = opts.dry_run,
            root = root.display(),
            stop = opts.stop_timeout_secs,
            cooldown = opts.cooldown_secs,
            breaker = opts.breaker_threshold,
            extra = opts.extra,
        );
        std::fs::write(root.join("pipemedic.toml"), config).unwrap();
        Host { dir, agent: None }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("pipemedic.toml")
    }

    /// Starts a stand-in service the way an operator would.
    pub fn start_service(&self, name: &str, log: &str) {
        let status = Command::new(self.path("bin/standin.sh"))
            .args(["start", name, self.path(log).to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "starting stand-in {name}");
    }

    /// How many times the stand-in was started (by anyone).
    pub fn starts(&self, name: &str) -> usize {
        std::fs::read_to_string(self.path(&format!("bin/run/{name}.starts"))).map_or(0, |s| s.lines().count())
    }

    pub fn service_pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.path(&format!("bin/run/{name}.pid"))).ok()?.trim().parse().ok()
    }

    /// Starts the agent and waits until it follows its sources.
    pub fn start_agent(&mut self) {
        let before = self.audit_of_kind("started").len();
        let stderr = OpenOptions::new().create(true).append(true).open(self.path("agent.stderr")).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config", self.config().to_str().unwrap()])
            .env("PIPEMEDIC_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("running pipemedic");
        self.agent = Some(child);
        self.wait_until("the agent to start", || self.audit_of_kind("started").len() > before);
    }

    /// SIGTERM, as systemd would send; waits for a clean exit.
    pub fn stop_agent(&mut self) {
        let mut child = self.agent.take().expect("agent running");
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "agent exit status {status}; stderr:\n{}", self.stderr());
                return;
            }
            assert!(Instant::now() < deadline, "agent did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("agent.stderr")).unwrap_or_default()
    }

    pub fn append(&self, log: &str, text: &str) {
        OpenOptions::new().append(true).create(true).open(self.path(log)).unwrap().write_all(text.as_bytes()).unwrap();
    }

    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("state/audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }

    pub fn audit_of_kind(&self, kind: &str) -> Vec<Value> {
        self.audit().into_iter().filter(|e| e["kind"] == kind).collect()
    }

    /// Decisions of one rule, in order.
    pub fn decisions(&self, rule: &str) -> Vec<Value> {
        self.audit().into_iter().filter(|e| e["kind"] == "decision" && e["rule"] == rule).collect()
    }

    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\naudit:\n{:#?}\nagent stderr:\n{}",
                self.audit(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the n-th decision (1-based) of `rule` and returns it.
    pub fn wait_decision(&self, rule: &str, n: usize) -> Value {
        self.wait_until(&format!("decision #{n} of {rule}"), || self.decisions(rule).len() >= n);
        self.decisions(rule)[n - 1].clone()
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Stand-ins left running (including one that ignores SIGTERM) are
        // the test's own processes; clean them up whatever it takes.
        for name in ["kafka", "consumer"] {
            if let Some(pid) = self.service_pid(name) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

/// The runbook's K1 incident as the broker logs it.
pub fn k1_incident(host: &str) -> String {
    format!(
        "[2026-11-25 10:00:00,001] ERROR [KafkaServer id=1] Fatal error during KafkaServer startup. Prepare to shutdown (kafka.server.KafkaServer)\n\
         java.net.UnknownHostException: {host}: {host}: unknown error\n\
         \tat java.net.InetAddress.getLocalHost(InetAddress.java:1505)\n\
         Caused by: java.net.UnknownHostException: {host}: unknown error\n\
         \t... 9 more\n"
    )
}

pub fn wakeup_incident() -> String {
    "2026-11-25 10:00:00.001 [pool-2-thread-3] WARN  c.g.datasync.consumer.ConsumerThread - consumer woken up\n\
     org.apache.kafka.common.errors.WakeupException\n\
     \tat org.apache.kafka.clients.consumer.KafkaConsumer.poll(KafkaConsumer.java:1000)\n"
        .to_string()
}

pub fn commit_failed_incident() -> String {
    "2026-11-25 10:00:00.001 [pool-2-thread-1] ERROR c.g.datasync.consumer.ConsumerThread - commit failed\n\
     org.apache.kafka.clients.consumer.CommitFailedException: Commit cannot be completed since the group has already rebalanced\n\
     \tat org.apache.kafka.clients.consumer.KafkaConsumer.commitSync(KafkaConsumer.java:1100)\n"
        .to_string()
}
