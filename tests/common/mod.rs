//! A throwaway pipeline host for integration tests: a temp directory with
//! logs, a hosts file, consumer properties, stand-in services (the example's
//! `standin.sh`, with the real start/stop/pid/log interface) and the shipped
//! rules, and the real `pipemedic` binary running on it.

#![allow(dead_code)]

pub mod db;
pub mod lab;
pub mod zk;

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
    pub smtp: Option<Smtp>,
    pub http: Option<std::net::SocketAddr>,
}

/// Settings that differ between tests.
pub struct Options {
    pub dry_run: bool,
    pub cooldown_secs: u64,
    pub breaker_threshold: u32,
    pub stop_timeout_secs: u64,
    pub extra: String,
    /// Configure [mail] and [approval] with these approvers (empty: none).
    pub approvers: Vec<&'static str>,
    pub expiry_secs: u64,
    /// Start the SMTP server with the host (false: it is "down" until `Smtp::start`).
    pub smtp_up: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            cooldown_secs: 600,
            breaker_threshold: 3,
            stop_timeout_secs: 20,
            extra: String::new(),
            approvers: Vec::new(),
            expiry_secs: 3600,
            smtp_up: true,
        }
    }
}

pub const HOSTS: &str = "127.0.0.1\tlocalhost\n# kept as is\n::1\tlocalhost ip6-localhost\n";
pub const PROPERTIES: &str = "# consumer\nbootstrap.servers=127.0.0.1:9092\nmax.poll.records=500\n";

impl Host {
    pub fn new(opts: Options) -> Host {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        for d in ["logs", "bin", "rules", "rules.d", "state", "playbooks"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy(Path::new(REPO).join("examples/bin/standin.sh"), root.join("bin/standin.sh")).unwrap();
        for dir in ["rules", "playbooks"] {
            for entry in std::fs::read_dir(Path::new(REPO).join(dir)).unwrap().flatten() {
                std::fs::copy(entry.path(), root.join(dir).join(entry.file_name())).unwrap();
            }
        }
        std::fs::write(root.join("hosts"), HOSTS).unwrap();
        std::fs::write(root.join("consumer.properties"), PROPERTIES).unwrap();
        for log in ["server.log", "error.log", "info.log", "canal_instance.log", "monitor.log"] {
            std::fs::write(root.join("logs").join(log), "").unwrap();
        }
        let config = format!(
            r#"state_dir = "state"
dry_run = {dry_run}
rule_dirs = ["rules", "rules.d"]
playbook_dirs = ["playbooks"]
hosts_file = "hosts"

[sources.kafka_server]
path = "logs/server.log"
[sources.consumer_error]
path = "logs/error.log"
[sources.consumer_info]
path = "logs/info.log"
[sources.canal_instance]
path = "logs/canal_instance.log"
[sources.monitor]
path = "logs/monitor.log"

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

[services.canal]
start = ["bin/standin.sh", "start", "canal", "{root}/logs/canal_instance.log"]
stop = ["bin/standin.sh", "stop", "canal"]
process = {{ pid_file = "bin/run/canal.pid" }}
stop_timeout_secs = {stop}
start_timeout_secs = 20

[properties_files]
consumer = "consumer.properties"

[limits]
cooldown_secs = {cooldown}
breaker_threshold = {breaker}
max_per_hour = 100
record_flush_ms = 200
# Tests append a trace in two writes back to back: wait as long after a
# whole line as after half a one, so a busy machine never splits it.
record_settle_ms = 200
{extra}
"#,
            dry_run = opts.dry_run,
            root = root.display(),
            stop = opts.stop_timeout_secs,
            cooldown = opts.cooldown_secs,
            breaker = opts.breaker_threshold,
            extra = opts.extra,
        );
        let mut config = config;
        if !opts.approvers.is_empty() {
            std::fs::write(root.join("server.properties"), SERVER_PROPERTIES).unwrap();
            std::fs::write(root.join("rules.d/set_retention.rhai"), SET_RETENTION_RULE).unwrap();
            config = config.replace(
                "[properties_files]\n",
                "[properties_files]\nserver = \"server.properties\"\nkafka_server = \"server.properties\"\n",
            );
        }
        let (smtp, http) = mail_and_approval(&mut config, &opts);
        std::fs::write(root.join("pipemedic.toml"), config).unwrap();
        Host { dir, agent: None, smtp, http }
    }

    /// A host whose configuration is `config` (the lab's, say), with mail
    /// and approval added as `opts` asks; `dir` holds the agent's state.
    pub fn with_config(mut config: String, opts: Options) -> Host {
        let dir = tempfile::tempdir().expect("temp dir");
        for d in ["state", "rules.d", "playbooks.d"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        config = config.replace("dry_run = true", &format!("dry_run = {}", opts.dry_run));
        config.push_str(&opts.extra);
        let (smtp, http) = mail_and_approval(&mut config, &opts);
        std::fs::write(dir.path().join("pipemedic.toml"), config).unwrap();
        Host { dir, agent: None, smtp, http }
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
        let config = self.config();
        self.start_agent_as(Path::new("/"), config.to_str().unwrap());
    }

    /// Starts the agent in `cwd` with `--config CONFIG` as given (a relative
    /// path, say) and waits until it follows its sources.
    pub fn start_agent_as(&mut self, cwd: &Path, config: &str) {
        let before = self.audit_of_kind("started").len();
        let stderr = OpenOptions::new().create(true).append(true).open(self.path("agent.stderr")).unwrap();
        let child = Command::new(BIN)
            .current_dir(cwd)
            .args(["run", "--config", config])
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

    /// SIGKILL: the agent dies mid-whatever, as on a host crash. (The
    /// agent's own process; managed services are never sent SIGKILL.)
    /// Whether this host's agent runs (started and not stopped or killed).
    pub fn running(&self) -> bool {
        self.agent.is_some()
    }

    pub fn kill_agent(&mut self) {
        let mut child = self.agent.take().expect("agent running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn agent_pid(&self) -> u32 {
        self.agent.as_ref().expect("agent running").id()
    }

    /// Rewrites the configuration (before `start_agent`).
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        assert!(text.contains(from), "the configuration has no {from:?}");
        std::fs::write(self.config(), text.replacen(from, to, 1)).unwrap();
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("agent.stderr")).unwrap_or_default()
    }

    pub fn append(&self, log: &str, text: &str) {
        OpenOptions::new().append(true).create(true).open(self.path(log)).unwrap().write_all(text.as_bytes()).unwrap();
    }

    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.path("state/audit.jsonl")).unwrap_or_default();
        // A read beside a running agent can end inside the line it is
        // writing: only whole lines are entries yet.
        text[..text.rfind('\n').map_or(0, |i| i + 1)]
            .lines()
            .filter(|l| *l != TORN_ENTRY)
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
    /// Follows `mail`'s approve link and presses the page's button, as a
    /// person would; returns the page that answers.
    pub fn approve(&self, mail: &Mail) -> String {
        let (approve, _) = mail.links();
        let (status, page) = self.get(&approve);
        assert_eq!(status, 200, "{page}");
        let (status, result) = self.press(&page);
        assert_eq!(status, 200, "{result}");
        result
    }

    /// The first decision (any rule) that satisfies `cond`.
    pub fn wait_decision_where(
        &self,
        within: Duration,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(d) = self.audit().into_iter().find(|e| e["kind"] == "decision" && cond(e)) {
                return d;
            }
            assert!(Instant::now() < deadline, "no such decision; audit:\n{:#?}\n{}", self.audit(), self.stderr());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn wait_decision(&self, rule: &str, n: usize) -> Value {
        self.wait_until(&format!("decision #{n} of {rule}"), || self.decisions(rule).len() >= n);
        self.decisions(rule)[n - 1].clone()
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }
}

/// With approvers: a real SMTP server and an approval listener, and their
/// sections in `config`.
fn mail_and_approval(config: &mut String, opts: &Options) -> (Option<Smtp>, Option<std::net::SocketAddr>) {
    if opts.approvers.is_empty() {
        return (None, None);
    }
    let server = Smtp::reserve();
    let smtp_port = server.port;
    let http_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.push_str(&format!(
        "\n[mail]\nserver = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"plain\"\nfrom = \"pipemedic <pipemedic@localhost>\"\nnotify = [\"oncall@example.com\"]\nretry_initial_secs = 1\ntimeout_secs = 5\n\n[approval]\nlisten = \"{http_addr}\"\npublic_url = \"http://{http_addr}\"\napprovers = {approvers:?}\nexpiry_secs = {expiry}\n",
        approvers = opts.approvers,
        expiry = opts.expiry_secs,
    ));
    let mut server = server;
    if opts.smtp_up {
        server.start();
    }
    (Some(server), Some(http_addr))
}

/// A port nobody listens on right now.
/// A loopback port nothing listens on, for a server a test starts later.
/// Taken below the kernel's ephemeral range (32768 and up): a port from
/// there can become the source port of any outgoing connection between
/// being chosen and being bound, which made SMTP's bind fail now and then.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20000;
    const SPAN: u16 = 12000;
    // Each test binary starts elsewhere in the range; threads share the counter.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(0, (std::process::id() % SPAN as u32) as u16 + 1, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN);
}

/// The torn last line a crash leaves in the journal, as the tests plant it;
/// `audit()` passes over it (every other line must be JSON).
pub const TORN_ENTRY: &str = r#"{"time":"2026-11-25T10:00:00.000+00:00","kind":"decision","rule":"c3_wak"#;

pub const SERVER_PROPERTIES: &str = "broker.id=1\nlog.retention.hours=168\n";

/// A test rule with a dangerous plan (a Kafka server property), and a
/// data-loss variant, for the approval tests.
pub const SET_RETENTION_RULE: &str = r#"// Test rule for approvals: sets log.retention.hours in server.properties.
fn meta() {
    #{ runbook: ["K3"], sources: ["kafka_server"], signatures: #{ set_retention: `SET retention=(?<hours>[0-9]+)` } }
}
fn plan(ev, ctx) {
    let risk = if ev.text.contains("DATALOSS") { "data-loss" } else { "dangerous" };
    #{
        summary: `Set log.retention.hours to ${ev.captures.hours}`,
        risk: risk,
        steps: [property_set("server", "log.retention.hours", ev.captures.hours)],
    }
}
fn tests() { [] }
"#;

/// A mail the SMTP server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    /// The raw message with quoted-printable undone.
    pub text: String,
}

impl Mail {
    /// The subject as a mail reader shows it: folded lines joined, encoded
    /// words (RFC 2047) decoded.
    pub fn subject(&self) -> String {
        let mut lines = self.text.lines().skip_while(|l| !l.starts_with("Subject: "));
        let mut raw = lines.next().map(|l| l["Subject: ".len()..].to_string()).unwrap_or_default();
        for l in lines.take_while(|l| l.starts_with([' ', '\t'])) {
            raw.push_str(l);
        }
        decode_words(&raw)
    }

    /// The approve and deny links of an approval request.
    pub fn links(&self) -> (String, String) {
        let find = |label: &str| {
            self.text
                .lines()
                .find_map(|l| l.strip_prefix(label))
                .map(|u| u.trim().to_string())
                .unwrap_or_else(|| panic!("no {label} link in:\n{}", self.text))
        };
        (find("Approve: "), find("Deny:    "))
    }
}

/// A real SMTP server (mailin-embedded) on a loopback port, capturing mail.
pub struct Smtp {
    pub port: u16,
    pub mails: std::sync::Arc<std::sync::Mutex<Vec<Mail>>>,
    /// Bound from the moment the port is chosen, listening once started: a
    /// bound socket that does not listen refuses connections (the agent sees
    /// a mail server that is down) and no other process can take its port,
    /// which a port only probed as free could lose before it was bound.
    socket: Option<std::os::fd::OwnedFd>,
}

#[derive(Clone)]
struct Capture {
    mails: std::sync::Arc<std::sync::Mutex<Vec<Mail>>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl mailin_embedded::Handler for Capture {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> mailin_embedded::Response {
        self.to = to.to_vec();
        self.data.clear();
        mailin_embedded::response::OK
    }
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }
    fn data_end(&mut self) -> mailin_embedded::Response {
        let text = decode_quoted_printable(&String::from_utf8_lossy(&self.data));
        self.mails.lock().unwrap().push(Mail { to: self.to.clone(), text });
        mailin_embedded::response::OK
    }
}

impl Smtp {
    fn reserve() -> Smtp {
        use nix::sys::socket::{bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
        let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
            .expect("a socket for the SMTP server");
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::new(127, 0, 0, 1, 0))
            .expect("binding a loopback port for the SMTP server");
        let port = getsockname::<SockaddrIn>(std::os::fd::AsRawFd::as_raw_fd(&fd)).expect("the SMTP port").port();
        Smtp { port, mails: Default::default(), socket: Some(fd) }
    }

    /// Starts serving (once).
    pub fn start(&mut self) {
        use nix::sys::socket::{listen, Backlog};
        let Some(fd) = self.socket.take() else {
            return;
        };
        listen(&fd, Backlog::new(64).unwrap()).expect("listening on the SMTP port");
        let listener = std::net::TcpListener::from(fd);
        let mut server =
            mailin_embedded::Server::new(Capture { mails: self.mails.clone(), to: Vec::new(), data: Vec::new() });
        server.with_name("localhost").with_ssl(mailin_embedded::SslConfig::None).unwrap().with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

/// `=?utf-8?b?…?=` and `=?utf-8?q?…?=` words decoded; the space between
/// two encoded words dropped, as RFC 2047 says.
fn decode_words(raw: &str) -> String {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find("=?") {
        let Some(end) = rest[start + 2..].find("?=").map(|e| start + 2 + e) else { break };
        let word: Vec<&str> = rest[start + 2..end].splitn(3, '?').collect();
        let before = &rest[..start];
        // Whitespace between two encoded words is not part of the text.
        if !before.trim().is_empty() || out.is_empty() {
            out.extend_from_slice(before.as_bytes());
        }
        match word.as_slice() {
            [_, enc, text] if enc.eq_ignore_ascii_case("b") => out.extend(base64(text)),
            [_, _, text] => out.extend(decode_quoted_printable(&text.replace('_', " ")).into_bytes()),
            _ => out.extend_from_slice(&rest.as_bytes()[start..end + 2]),
        }
        rest = &rest[end + 2..];
    }
    out.extend_from_slice(rest.as_bytes());
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut bits, mut n, mut out) = (0u32, 0, Vec::new());
    for c in text.bytes().filter(|c| *c != b'=') {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else { continue };
        bits = bits << 6 | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

fn decode_quoted_printable(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            out.push(u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

impl Host {
    pub fn mails(&self) -> Vec<Mail> {
        self.smtp.as_ref().expect("smtp configured").mails()
    }

    pub fn wait_mails(&self, n: usize) -> Vec<Mail> {
        self.wait_until(&format!("{n} mail(s)"), || self.mails().len() >= n);
        self.mails()
    }

    /// GET a link the way a browser (or a mail scanner) would.
    pub fn get(&self, url: &str) -> (u16, String) {
        let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).expect("absolute URL");
        pipemedic::approval::web::request(self.http.unwrap(), "GET", &path, None).unwrap()
    }

    /// Presses the button on a page: POSTs its form's hidden fields.
    pub fn press(&self, page: &str) -> (u16, String) {
        let action = between(page, "<form method=\"post\" action=\"", "\"").expect("a form on the page");
        let mut fields = Vec::new();
        for input in page.split("<input type=\"hidden\" ").skip(1) {
            let name = between(input, "name=\"", "\"").unwrap();
            let value = between(input, "value=\"", "\"").unwrap();
            fields.push((name, html_unescape(&value)));
        }
        let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pipemedic::approval::web::request(self.http.unwrap(), "POST", &action, Some(&refs)).unwrap()
    }
}

fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let from = s.find(start)? + start.len();
    let to = s[from..].find(end)? + from;
    Some(s[from..to].to_string())
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Stand-ins left running (including one that ignores SIGTERM) are
        // the test's own processes; clean them up whatever it takes.
        for name in ["kafka", "consumer", "canal"] {
            if let Some(pid) = self.service_pid(name) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
            // A stand-in broker's ZooKeeper shell (standin.sh with run/NAME.zk).
            if let Ok(pid) = std::fs::read_to_string(self.path(&format!("bin/run/{name}.zk.pid"))) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
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
