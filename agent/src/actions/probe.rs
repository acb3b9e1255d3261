//! `probe`: can this host reach an address over TCP? (runbook N2: "check
//! that the MySQL service is up and the network is reachable"). Read-only;
//! the result goes to a person. Never a restart: canal retries by itself.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Action, ActionError, Cx, Preview, Staged, Step};
use crate::actions::step::{Refusal, StepSpec};
use crate::mail::Outbox;
use crate::types::excerpt;

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

/// Probe an address over TCP and tell a person (runbook N2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeTcp {
    pub addr: SocketAddr,
}

/// `probe_tcp("ip:port")`.
pub fn spec(addr: &str) -> StepSpec {
    let addr = addr.to_string();
    StepSpec::new("probe_tcp", format!("probe tcp {addr}"), move |_| {
        let parsed =
            addr.parse().map_err(|_| Refusal::Invalid(format!("{} is not an ip:port address", excerpt(&addr))))?;
        Ok(Step::ProbeTcp(ProbeTcp { addr: parsed }))
    })
}

impl Action for ProbeTcp {
    fn family(&self) -> &'static str {
        "probe"
    }

    fn target(&self) -> String {
        self.addr.to_string()
    }

    fn preview(&self, _: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        Ok(preview(self.addr))
    }

    fn apply(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        Ok(apply(self.addr, cx.mail))
    }

    fn verify(&self, _: &Cx, _: &Preview) -> Result<String, ActionError> {
        Ok("recorded".into())
    }
}
