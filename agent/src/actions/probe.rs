//! `probe`: can this host reach an address over TCP? (runbook N2: "check
//! that the MySQL service is up and the network is reachable"). Read-only;
//! the result goes to a person. Never a restart: canal retries by itself.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::Preview;
use crate::approval::mail::Outbox;

fn probe(addr: SocketAddr) -> String {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(_) => format!("{addr} accepts TCP connections from this host now: the network recovered, or the failure is intermittent; canal retries by itself"),
        Err(e) => format!("{addr} is unreachable from this host ({e}): check that MySQL there is up and the network path to it (runbook N2)"),
    }
}

pub fn preview(addr: SocketAddr) -> Preview {
    Preview { text: format!("probe TCP {addr}, then tell a person the result"), noop: false, guard: Default::default() }
}

pub fn apply(addr: SocketAddr, mail: Option<&(Outbox, String)>) -> String {
    let finding = probe(addr);
    format!("{finding}; {}", super::notify::apply(&finding, mail))
}
