//! `[limits]`: how much the agent does on its own, and what it reads: rule
//! budgets, record sizes, rate limits, cooldown, the circuit breaker. The
//! one section that spans components.

use super::*;

/// Bounds on what the agent reads and how often it may act.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// A record larger than this is truncated and marked.
    pub max_record_bytes: usize,
    /// A record with more lines than this is truncated and marked.
    pub max_record_lines: usize,
    /// A record whose last line is still being written is complete when
    /// the writer has been quiet this long.
    pub record_flush_ms: u64,
    /// A record that ends with a whole line is complete after this much
    /// quiet: a logger writes a message and its stack trace in one write.
    pub record_settle_ms: u64,
    /// The same action on the same target is not repeated within this time.
    pub cooldown_secs: u64,
    /// At most this many applications of one action on one target per hour.
    pub max_per_hour: u32,
    /// The circuit opens after this many applications of the same plan
    /// within `breaker_window_secs` (the fix is not making the signature go away).
    pub breaker_threshold: u32,
    pub breaker_window_secs: u64,
    /// Rhai operation budget per rule call.
    pub rule_max_operations: u64,
    /// Time budget per rule call, in milliseconds.
    pub rule_max_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: 64 * 1024,
            max_record_lines: 400,
            record_flush_ms: 300,
            record_settle_ms: 20,
            cooldown_secs: 600,
            max_per_hour: 3,
            breaker_threshold: 3,
            breaker_window_secs: 3600,
            rule_max_operations: 200_000,
            rule_max_ms: 500,
        }
    }
}

impl Limits {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        // 0 would mean "unlimited" to the engine: a rule could then hold the
        // worker for ever.
        if self.rule_max_operations == 0 || self.rule_max_ms == 0 {
            return Err("[limits] rule_max_operations and rule_max_ms must be at least 1 (0 would be unlimited)".into());
        }
        if self.max_record_bytes < 1024 || self.max_record_lines == 0 {
            return Err("[limits] max_record_bytes must be at least 1024 and max_record_lines at least 1".into());
        }
        if self.breaker_threshold == 0 || self.max_per_hour == 0 {
            return Err("[limits] breaker_threshold and max_per_hour must be at least 1".into());
        }
        Ok(())
    }

    pub fn record_window(&self) -> crate::sources::RecordWindow {
        crate::sources::RecordWindow {
            settle: std::time::Duration::from_millis(self.record_settle_ms.min(self.record_flush_ms)),
            flush: std::time::Duration::from_millis(self.record_flush_ms),
        }
    }

    /// What the policy counts: cooldown, hourly rate, the circuit breaker.
    pub fn policy(&self) -> crate::plan::policy::Limits {
        crate::plan::policy::Limits {
            cooldown_secs: self.cooldown_secs,
            max_per_hour: self.max_per_hour,
            breaker_threshold: self.breaker_threshold,
            breaker_window_secs: self.breaker_window_secs,
        }
    }

    pub fn rule_max_time(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.rule_max_ms)
    }
}
