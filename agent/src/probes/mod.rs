//! Probes: findings of the agent's own watches, fed to rules as events from
//! the pseudo-source `probe` (see [`crate::rules::PROBES`]).

pub mod heartbeat;
pub mod reconciled;
pub mod stall;

use std::collections::BTreeMap;

/// A probe's finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEvent {
    /// One of [`crate::rules::PROBES`].
    pub name: &'static str,
    pub captures: BTreeMap<String, String>,
    /// What it saw, for a person.
    pub text: String,
}
