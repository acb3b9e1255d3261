//! `[digest]`: when the daily digest goes out (`report` writes it). Owned
//! by the root configuration, because the digest is a command's, not a
//! component's.

use serde::Deserialize;

/// When the daily digest goes out, and to whom.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// Local time of day, `HH:MM`.
    pub at: String,
    /// Recipients; empty: `[mail] notify`.
    #[serde(default)]
    pub to: Vec<String>,
}

/// `[digest] at` is not a time of day.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[digest] at = {0:?} is not a time of day like \"07:30\"")]
pub struct BadTime(pub String);

impl DigestConfig {
    pub fn time(&self) -> Result<chrono::NaiveTime, BadTime> {
        chrono::NaiveTime::parse_from_str(&self.at, "%H:%M").map_err(|_| BadTime(self.at.clone()))
    }
}
