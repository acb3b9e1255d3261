//! How often each signature fired recently: the one question about the past
//! that rules ask ("CommitFailedException more than 5 times in 10 minutes?").

use std::collections::{HashMap, VecDeque};

/// The longest window a rule can ask about.
pub const MAX_WINDOW_MINUTES: i64 = 24 * 60;
/// Per signature, at most this many times are kept; older ones are dropped
/// first, so memory stays bounded under a flood.
const MAX_PER_SIGNATURE: usize = 100_000;

/// Recent firing times (ms) per signature.
#[derive(Debug, Default)]
pub struct EventHistory {
    times: HashMap<String, VecDeque<i64>>,
}

impl EventHistory {
    /// Notes that `signature` fired at `at` (ms).
    pub fn record(&mut self, signature: &str, at: i64) {
        let q = match self.times.get_mut(signature) {
            Some(q) => q,
            None => self.times.entry(signature.to_string()).or_default(),
        };
        // Kept sorted (log times can step back a little) so that a count is
        // a binary search: a flood of one signature must not make every
        // count walk the whole window.
        let at = q.back().map_or(at, |last| at.max(*last));
        let horizon = at - MAX_WINDOW_MINUTES * 60_000;
        while q.front().is_some_and(|t| *t < horizon) || q.len() >= MAX_PER_SIGNATURE {
            q.pop_front();
        }
        q.push_back(at);
    }

    /// How many times `signature` fired in the `minutes` before `now`, `now` included.
    pub fn count(&self, signature: &str, minutes: i64, now: i64) -> i64 {
        let since = now - minutes.clamp(0, MAX_WINDOW_MINUTES) * 60_000;
        self.times.get(signature).map_or(0, |q| (q.len() - q.partition_point(|t| *t <= since)) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_window() {
        let mut h = EventHistory::default();
        for m in 0..10 {
            h.record("commit_failed", m * 60_000);
        }
        assert_eq!(h.count("commit_failed", 5, 9 * 60_000), 5);
        assert_eq!(h.count("other", 5, 0), 0);
    }
}
