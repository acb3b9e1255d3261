//! `notify`: a finding for a person. For now it goes to the agent's log and
//! the audit journal; mail arrives with approvals.

use super::Preview;

pub fn preview(message: &str) -> Preview {
    Preview { text: format!("notify: {message}"), noop: false, guard: Default::default() }
}

pub fn apply(message: &str) -> String {
    tracing::warn!(target: "pipemedic::notify", "{message}");
    "written to the agent log and the audit journal".into()
}
