//! How the flow keeps time, and its counters. What it says about each
//! event (`Outcome`) is an audit entry: see [`crate::audit::entry`].

use std::collections::BTreeMap;

use serde::Serialize;

/// Which clock events are timed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Wall-clock time: the daemon acts now.
    Live,
    /// The timestamp at the start of the record (falling back to the last
    /// one seen): replaying last week's log counts windows as they were.
    LogTime,
}

/// Counters for `status` and metrics.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub records: u64,
    pub events: u64,
    pub rule_errors: u64,
    pub decisions: BTreeMap<String, u64>,
}
