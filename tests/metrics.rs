//! Prometheus metrics at `/metrics`: what flowed through the pipeline, on a
//! listener of its own and on the approval listener.

mod common;

use common::{k1_incident, Host, Options};

fn scrape(addr: std::net::SocketAddr) -> String {
    let (status, text) = pipemedic::approval::web::request(addr, "GET", "/metrics", None).unwrap();
    assert_eq!(status, 200, "{text}");
    text
}

#[test]
fn metrics_count_records_events_decisions_and_actions() {
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().unwrap();
    let extra = format!("\n[metrics]\nlisten = \"{listen}\"\n");
    let mut host = Host::new(Options { extra, ..Default::default() });
    host.start_agent();
    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    host.wait_decision("k1_unknown_host", 1);
    let mut text = String::new();
    host.wait_until("the K1 decision and the tail lag (set each 5 s tick) in /metrics", || {
        text = scrape(listen);
        text.contains("pipemedic_plans_total{rule=\"k1_unknown_host\",decision=\"applied\"} 1")
            && text.contains("pipemedic_tail_lag_bytes{source=\"kafka_server\"} 0")
    });
    for line in [
        "pipemedic_records_total{source=\"kafka_server\"}",
        "pipemedic_events_total{signature=\"unknown_host\"} 1",
        "pipemedic_actions_total{action=\"hosts\",result=\"ok\"} 1",
        "pipemedic_source_read_bytes_total{source=\"kafka_server\"}",
        "pipemedic_rule_errors_total 0",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
    // The agent's own costs, measured on the same tick.
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} missing in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("pipemedic_agent_resident_bytes ") > 1e6, "{text}");
    assert!(value("pipemedic_agent_open_fds ") >= 3.0, "{text}");
    assert!(value("pipemedic_state_dir_free_bytes ") > 0.0, "{text}");
    assert!(value("pipemedic_agent_cpu_milliseconds ") >= 0.0, "{text}");
}

#[test]
fn the_approval_listener_serves_metrics_too() {
    let mut host = Host::new(Options { approvers: vec!["ops1@example.com"], ..Default::default() });
    host.start_agent();
    let mut text = String::new();
    host.wait_until("pending approvals in /metrics", || {
        text = scrape(host.http.unwrap());
        text.contains("pipemedic_pending_approvals 0")
    });
}
