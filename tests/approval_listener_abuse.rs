//! The approval listener faces whoever can reach it. Idle or slow clients
//! cannot hold its connections (and the agent's file descriptors) for long,
//! fixes go on meanwhile, and refused requests cannot fill the journal.

mod common;

use std::io::Read;
use std::net::TcpStream;

use common::{k1_incident, Host, Options, HOSTS, WAIT};

fn host() -> Host {
    Host::new(Options { approvers: vec!["ops1@example.com"], ..Options::default() })
}

#[test]
fn idle_connections_are_capped_and_timed_out_and_fixes_go_on() {
    let mut host = host();
    host.start_service("kafka", "logs/server.log");
    host.start_agent();
    let idle: Vec<TcpStream> = (0..200).filter_map(|_| TcpStream::connect(host.http.unwrap()).ok()).collect();
    assert!(idle.len() >= 64, "the listener accepted connections");

    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    let d = host.wait_decision("k1_unknown_host", 1);
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert!(host.read("hosts").starts_with(HOSTS) && host.read("hosts").contains("ip-10.98.2.33"));

    // The server closes every idle connection: past the cap at once (told
    // it is busy), the others when their headers do not come.
    for mut c in idle {
        c.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        let got = String::from_utf8_lossy(&got);
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 503 "), "an idle connection was answered: {got}");
    }
    let (status, page) = host.get(&format!("http://{}/", host.http.unwrap()));
    assert_eq!(status, 200, "{page}");
    host.stop_agent();
}

#[test]
fn a_flood_of_refused_requests_is_journaled_bounded() {
    let mut host = host();
    host.start_agent();
    let before = std::fs::metadata(host.path("state/audit.jsonl")).unwrap().len();
    let junk = "A".repeat(25_000);
    for i in 0..300 {
        let path = format!("/approvals/nope{i}?decision=approve&approver={junk}&exp=1&token={junk}");
        let (status, _) = pipemedic::approval::web::request(host.http.unwrap(), "GET", &path, None).unwrap();
        assert_eq!(status, 404);
    }
    // A malformed form and a POST to an unknown approval are refused and journaled too.
    let (status, _) =
        pipemedic::approval::web::request(host.http.unwrap(), "POST", "/approvals/x", Some(&[("decision", "approve")]))
            .unwrap();
    assert_eq!(status, 400);
    let grown = std::fs::metadata(host.path("state/audit.jsonl")).unwrap().len() - before;
    assert!(grown < 64 * 1024, "300 refused 50 kB requests grew the journal by {grown} bytes");
    let refused = host.audit_of_kind("approval-refused");
    assert!(refused.len() <= 31, "{} refusals journaled one by one", refused.len());
    assert!(refused.iter().all(|r| r["approver"].as_str().unwrap().len() < 200));
    host.stop_agent();
}

/// A connection to the listener from `source` (a loopback address of the
/// test's choosing: every 127/8 address is this host's).
fn connect_from(source: [u8; 4], to: std::net::SocketAddr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    let [a, b, c, d] = source;
    bind(fd.as_raw_fd(), &SockaddrIn::new(a, b, c, d, 0)).unwrap();
    connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(match to {
            std::net::SocketAddr::V4(v4) => v4,
            _ => unreachable!("the tests listen on IPv4"),
        }),
    )
    .unwrap();
    TcpStream::from(fd)
}

#[test]
fn one_client_holding_every_connection_leaves_room_for_the_others() {
    let mut host = host();
    host.start_agent();
    let addr = host.http.unwrap();
    // Slowloris: headers begun and never finished, from one address.
    let held: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut c = connect_from([127, 0, 0, 2], addr);
            let _ = std::io::Write::write_all(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n");
            c
        })
        .collect();
    let answered = (0..12).filter(|_| host.get(&format!("http://{addr}/")).0 == 200).count();
    assert_eq!(answered, 12, "requests from another address while one holds {} connections", held.len());
    drop(held);
    host.stop_agent();
}

/// Asks for approval of setting the retention to `hours`; the approval's id.
fn ask(host: &Host, hours: u32) -> String {
    host.append("logs/server.log", &format!("[2026-11-25 10:00:00,000] WARN SET retention={hours}\n"));
    host.wait_decision("set_retention", 1);
    host.audit_of_kind("approval-requested")[0]["approval"].as_str().unwrap().to_string()
}

/// `pipemedic approve <id>` as root on the host.
fn approve_from_the_command_line(host: &Host, id: &str) -> std::process::Output {
    std::process::Command::new(common::BIN)
        .args(["approve", "--config", host.config().to_str().unwrap(), id])
        .output()
        .unwrap()
}

#[test]
fn root_approves_from_the_command_line_while_the_listener_is_full() {
    let mut host = host();
    host.start_agent();
    let id = ask(&host, 48);
    // The same address the command line comes from holds its share, and
    // keeps taking it back.
    let addr = host.http.unwrap();
    let flood = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flooding = flood.clone();
    let flooder = std::thread::spawn(move || {
        let mut held = Vec::new();
        while flooding.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(c) = TcpStream::connect(addr) {
                held.push(c);
            }
            if held.len() > 200 {
                held.drain(..100);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = approve_from_the_command_line(&host, &id);
    flood.store(false, std::sync::atomic::Ordering::Relaxed);
    flooder.join().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("did not take the decision"), "the listener was full: {stderr}");
    assert!(!stdout.trim().is_empty(), "the answer is printed: {stdout}{stderr}");
    host.wait_until("applied", || host.read("server.properties").contains("=48"));
    let decided = host.audit_of_kind("approval-decided");
    assert_eq!(decided.len(), 1, "{decided:#?}");
    assert_eq!(decided[0]["via"], "cli");
    host.stop_agent();
}

#[test]
fn the_command_line_says_why_when_the_agent_answers_nowhere() {
    let mut host = host();
    host.start_agent();
    let id = ask(&host, 36);
    host.stop_agent();
    let out = approve_from_the_command_line(&host, &id);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is it running") && stderr.contains("Nothing was decided"), "{stderr}");
    assert!(
        std::fs::read_dir(host.path("state/inbox")).unwrap().next().is_none(),
        "the withdrawn ballot is not left for a later start"
    );
    assert_eq!(host.read("server.properties"), common::SERVER_PROPERTIES);
}

/// What lies in the inbox is read as hostile too: a torn write, garbage, a
/// link, a forged signature and a FIFO are each answered as refused (or
/// left unread), nothing is decided, and the worker goes on.
#[test]
fn a_torn_garbage_or_forged_ballot_in_the_inbox_decides_nothing() {
    let mut host = host();
    host.start_service("kafka", "logs/server.log");
    host.start_agent();
    let id = ask(&host, 48);
    let inbox = host.path("state/inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("torn.json"), format!("{{\"id\":\"{id}\",\"decision\":\"appr")).unwrap();
    std::fs::write(inbox.join("garbage.json"), b"\x00\xff\x1b]0;x\x07").unwrap();
    std::fs::write(
        inbox.join("forged.json"),
        format!(
            r#"{{"id":"{id}","decision":"approve","approver":"ops1@example.com","exp":4102444800000,"token":"00"}}"#
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(host.path("pipemedic.toml"), inbox.join("link.json")).unwrap();
    nix::unistd::mkfifo(&inbox.join("fifo.json"), nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)
        .unwrap();
    for name in ["torn", "garbage", "forged", "link", "fifo"] {
        host.wait_until(&format!("{name} answered"), || inbox.join(format!("{name}.answer")).exists());
        let answer: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(inbox.join(format!("{name}.answer"))).unwrap()).unwrap();
        assert_eq!(answer["accepted"], false, "{name}: {answer}");
    }
    assert!(host.audit_of_kind("approval-decided").is_empty(), "nothing decided");
    assert_eq!(host.read("server.properties"), common::SERVER_PROPERTIES);
    // The worker goes on: the same incident is still decided.
    host.append("logs/server.log", &k1_incident("ip-10.98.2.34"));
    host.wait_decision("k1_unknown_host", 1);
    host.stop_agent();
}
