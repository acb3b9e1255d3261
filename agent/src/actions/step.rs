//! The plan's vocabulary that the actions speak too: what a rule asked for (a [`StepSpec`], validated into a typed [`Step`]),
//! why a step is refused, and what each step says about itself. `plan`
//! builds on it (and re-exports it); nothing here knows a plan.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Sections;
use super::Step;

pub use super::risk::Risk;

/// What to do to a managed service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceOp {
    Start,
    Stop,
    Restart,
}

impl fmt::Display for ServiceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceOp::Start => "start",
            ServiceOp::Stop => "stop",
            ServiceOp::Restart => "restart",
        })
    }
}

/// A step as a rule asked for it: raw arguments (log captures, rule
/// literals) that only [`StepSpec::validate`] turns into a typed [`Step`].
/// Each action family writes its own (`actions::hosts::spec`, …).
#[derive(Clone)]
pub struct StepSpec {
    /// The rule API's name for it (`hosts_entry`), for refusals.
    pub kind: &'static str,
    /// The one-line form rule test cases compare against.
    shown: String,
    validate: Arc<Validate>,
}

/// A step kind's validation, holding the rule's raw arguments.
type Validate = dyn Fn(&Sections) -> Result<Step, Refusal> + Send + Sync;

impl StepSpec {
    pub fn new(
        kind: &'static str,
        shown: String,
        validate: impl Fn(&Sections) -> Result<Step, Refusal> + Send + Sync + 'static,
    ) -> StepSpec {
        StepSpec { kind, shown, validate: Arc::new(validate) }
    }

    /// Checks the rule's arguments against the rules for their values and
    /// what is configured. The error says what was refused and why.
    pub fn validate(&self, sections: &Sections) -> Result<Step, Refusal> {
        (self.validate)(sections)
    }
}

impl fmt::Display for StepSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for StepSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StepSpec({})", self.shown)
    }
}

impl PartialEq for StepSpec {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.shown == other.shown
    }
}

impl Step {
    /// The action family, as in the audit journal.
    pub fn family(&self) -> &'static str {
        self.action().family()
    }

    /// What the step acts on.
    pub fn target(&self) -> String {
        self.action().target()
    }

    /// See [`super::Action::limit_key`].
    pub fn limit_key(&self) -> String {
        self.action().limit_key()
    }

    /// See [`super::Action::changes`].
    pub fn changes(&self) -> Option<String> {
        self.action().changes()
    }

    /// See [`super::Action::preview_binds`].
    pub fn preview_binds(&self) -> bool {
        self.action().preview_binds()
    }

    /// See [`super::Action::writes_canal_cursors`].
    pub fn writes_canal_cursors(&self) -> bool {
        self.action().writes_canal_cursors()
    }

    /// See [`super::Action::reads_only`].
    pub fn reads_only(&self) -> bool {
        self.action().reads_only()
    }

    /// See [`super::Action::min_risk`].
    pub fn min_risk(&self) -> Risk {
        self.action().min_risk()
    }
}

/// Why a step a rule asked for is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It names what this host's configuration lacks (a service, a
    /// properties file, a canal destination, a section): this host takes no
    /// part in that fix; the rule is not at fault.
    #[error("{0}")]
    NotConfigured(String),
    /// Its input is not valid: a hostile capture, a value out of range.
    #[error("{0}")]
    Invalid(String),
}

impl Refusal {
    pub fn invalid(e: impl fmt::Display) -> Refusal {
        Refusal::Invalid(e.to_string())
    }
}
