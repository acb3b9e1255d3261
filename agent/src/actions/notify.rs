//! `notify`: a finding for a person: the agent's log, the audit journal,
//! and mail to the `[mail] notify` list when one is configured (the same
//! finding at most once per `notify_dedup_secs`).

use super::Preview;
use crate::approval::mail::Outbox;

pub fn preview(message: &str) -> Preview {
    Preview { text: format!("notify: {message}"), noop: false, guard: Default::default() }
}

pub fn apply(message: &str, mail: Option<&(Outbox, String)>) -> String {
    tracing::warn!(target: "pipemedic::notify", "{message}");
    match mail {
        Some((outbox, host)) => {
            let first = message.lines().next().unwrap_or("");
            let mailed = outbox.notify(message, &format!("[pipemedic] {host}: {first}"), message);
            format!("written to the agent log and the audit journal; {mailed}")
        }
        None => "written to the agent log and the audit journal".into(),
    }
}
