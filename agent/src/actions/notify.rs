//! `notify`: a finding for a person: the agent's log, the audit journal,
//! and mail to the `[mail] notify` list when one is configured (the same
//! finding at most once per `notify_dedup_secs`).

use serde::{Deserialize, Serialize};

use super::{Action, ActionError, Cx, Preview, Staged, Step};
use crate::actions::step::StepSpec;
use crate::mail::Outbox;

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

/// Tell a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notify {
    pub message: String,
}

const MAX_NOTIFY: usize = 4000;

/// `notify(message)`: control characters other than newlines are dropped,
/// and the message is cut at 4000 bytes.
pub fn spec(message: &str) -> StepSpec {
    let raw = message.to_string();
    StepSpec::new("notify", format!("notify: {message}"), move |_| {
        let mut message: String = raw.chars().filter(|c| !c.is_control() || *c == '\n').collect();
        if message.len() > MAX_NOTIFY {
            let cut = (0..=MAX_NOTIFY).rev().find(|i| message.is_char_boundary(*i)).unwrap_or(0);
            message.truncate(cut);
            message.push('…');
        }
        Ok(Step::Notify(Notify { message }))
    })
}

impl Action for Notify {
    fn family(&self) -> &'static str {
        "notify"
    }

    fn target(&self) -> String {
        self.message.lines().next().unwrap_or("").chars().take(80).collect()
    }

    fn preview(&self, _: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        Ok(preview(&self.message))
    }

    fn apply(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        Ok(apply(&self.message, cx.mail))
    }

    fn verify(&self, _: &Cx, _: &Preview) -> Result<String, ActionError> {
        Ok("recorded".into())
    }
}
