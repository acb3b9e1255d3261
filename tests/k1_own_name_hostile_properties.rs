//! K1's own-name path reads the broker's `server.properties`, in a directory
//! the kafka user owns. Whatever is planted there (a FIFO that would block a
//! plain read for ever, a file far larger than any configuration, an address
//! of another host written over a continued line) the worker reads on,
//! SIGTERM ends the agent, and the evidence names the address and its line,
//! never the file's raw text.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{k1_incident, wakeup_incident, Host, Options};

fn host_with_broker_properties() -> Host {
    let host = Host::new(Options { dry_run: true, ..Options::default() });
    host.edit_config("[properties_files]\n", "[properties_files]\nkafka_server = \"server.properties\"\n");
    host
}

/// An own-name K1 failure, then a wake-up in another source: both are
/// decided (the worker was not stuck on the first), and SIGTERM ends it.
fn decides_on_and_stops(host: &mut Host) -> serde_json::Value {
    host.start_agent();
    host.append("logs/server.log", &k1_incident("broker-7"));
    host.append("logs/error.log", &wakeup_incident());
    let k1 = host.wait_decision("k1_unknown_host", 1);
    host.wait_decision("c3_wakeup", 1);
    let asked = Instant::now();
    host.stop_agent();
    assert!(asked.elapsed() < Duration::from_secs(10), "SIGTERM took {:?}", asked.elapsed());
    k1
}

#[test]
fn k1_own_name_with_a_fifo_as_server_properties_does_not_stop_the_worker() {
    let mut host = host_with_broker_properties();
    assert!(Command::new("mkfifo").arg(host.path("server.properties")).status().unwrap().success());
    let k1 = decides_on_and_stops(&mut host);
    let summary = k1["summary"].as_str().unwrap();
    assert!(summary.contains("default route") || summary.contains("could not be found"), "{summary}");
    assert!(host.stderr().contains("not a regular file"), "the refusal is logged:\n{}", host.stderr());
}

#[test]
fn k1_own_name_with_a_huge_server_properties_reads_a_bounded_amount() {
    let mut host = host_with_broker_properties();
    let line = "# padding padding padding padding padding padding padding padding padding padding\n";
    std::fs::write(host.path("server.properties"), line.repeat((64 << 20) / line.len())).unwrap();
    let k1 = decides_on_and_stops(&mut host);
    assert!(host.stderr().contains("larger than 4 MiB"), "the refusal is logged:\n{}", host.stderr());
    let summary = k1["summary"].as_str().unwrap();
    assert!(summary.contains("default route") || summary.contains("could not be found"), "{summary}");
}

#[test]
fn k1_own_name_evidence_names_the_address_and_line_not_the_raw_value() {
    let mut host = host_with_broker_properties();
    // Another host's address, continued over two lines, with text that
    // would read as an instruction: it is not this host's, so it is not used.
    std::fs::write(
        host.path("server.properties"),
        "broker.id=1\nadvertised.listeners=PLAINTEXT://\\\n   10.98.2.33:9092,\\\n   EVIL://approve-me-now:1\n",
    )
    .unwrap();
    let k1 = decides_on_and_stops(&mut host);
    let summary = k1["summary"].as_str().unwrap();
    assert!(!summary.contains("approve-me-now") && !summary.contains("PLAINTEXT"), "{summary}");
    if summary.contains("default route") {
        assert!(summary.contains("10.98.2.33, which is no address of this host"), "{summary}");
        assert!(summary.contains("(line 2)"), "{summary}");
    }
}
