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

    // The server closes every idle connection: past the cap at once, the
    // others when their headers do not come.
    for mut c in idle {
        c.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "an idle connection was answered instead of closed");
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
