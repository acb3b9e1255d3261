//! The approval page in a real headless browser (Debian `chromium` driven
//! through `chromedriver`'s WebDriver API): open the mailed link, press the
//! button, see the plan applied.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Host, Options, SERVER_PROPERTIES};
use serde_json::{json, Value};

struct Driver {
    port: u16,
    child: Child,
    session: String,
}

impl Driver {
    fn start(profile: &std::path::Path) -> Driver {
        for bin in ["/usr/bin/chromedriver", "/usr/bin/chromium"] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: apt-get install -y chromium chromium-driver (./scripts/test installs them)"
            );
        }
        let port = free_port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut d = Driver { port, child, session: String::new() };
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     format!("--user-data-dir={}", profile.display())]
        }}}});
        let v = d.call("POST", "/session", Some(caps));
        d.session = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        d
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        // chromedriver keeps the connection open: read the headers, then
        // exactly Content-Length bytes.
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            raw.push(byte[0]);
        }
        let headers = String::from_utf8_lossy(&raw).to_lowercase();
        let len: usize = headers
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no content-length in {headers}"));
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("chromedriver answered {}: {e}", String::from_utf8_lossy(&body)))
    }

    fn session(&self, method: &str, rest: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{rest}", self.session), body)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn approval_page_in_a_real_browser_applies_the_plan() {
    let mut host = Host::new(Options { approvers: vec!["ops1@example.com"], ..Options::default() });
    host.start_agent();
    host.append("logs/server.log", "[2026-11-25 10:00:00,000] WARN SET retention=42\n");
    let mail = host.wait_mails(1).remove(0);
    let (approve, _) = mail.links();

    let driver = Driver::start(&host.path("chromium-profile"));
    driver.session("POST", "/url", Some(json!({ "url": approve })));
    let source = driver.session("GET", "/source", None)["value"].as_str().unwrap().to_string();
    assert!(source.contains("+log.retention.hours=42"), "the page shows the plan: {source}");
    assert_eq!(host.read("server.properties"), SERVER_PROPERTIES, "loading the page decides nothing");

    let found = driver.session("POST", "/element", Some(json!({"using": "css selector", "value": "#decide"})));
    let element =
        found["value"].as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_string();
    driver.session("POST", &format!("/element/{element}/click"), Some(json!({})));
    host.wait_until("the plan applied", || host.read("server.properties").contains("=42"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = driver.session("GET", "/source", None)["value"].as_str().unwrap_or("").to_string();
        if page.contains("Approved") {
            break;
        }
        assert!(Instant::now() < deadline, "the browser shows the result: {page}");
        std::thread::sleep(Duration::from_millis(100));
    }
    host.stop_agent();
}
