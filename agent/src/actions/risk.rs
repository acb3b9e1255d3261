//! How much harm a step or a plan can do: what every action family states
//! of its steps, and what the policy and the approvers count on.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::excerpt;

/// How much harm a plan can do, and so who must agree before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Risk {
    /// Runs at once.
    Safe,
    /// Needs one approver.
    Dangerous,
    /// Loses data; needs two distinct approvers.
    DataLoss,
}

/// A risk a rule named that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown risk {}: expected safe, dangerous or data-loss", excerpt(.0))]
pub struct UnknownRisk(pub String);

impl Risk {
    pub fn parse(s: &str) -> Result<Risk, UnknownRisk> {
        match s {
            "safe" => Ok(Risk::Safe),
            "dangerous" => Ok(Risk::Dangerous),
            "data-loss" => Ok(Risk::DataLoss),
            other => Err(UnknownRisk(other.to_string())),
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Risk::Safe => "safe",
            Risk::Dangerous => "dangerous",
            Risk::DataLoss => "data-loss",
        })
    }
}
