//! One event printed into two logs. The consumer's logging writes every
//! level to its info log and, depending on the deployment, WARN or ERROR and
//! above to its error log too, and the rules that must see a WARN wherever
//! it lands listen to both. A record read from one source that another
//! source already gave, byte for byte with the same log time, is the same
//! event: a rule that heard it from the first source does not hear it
//! again, and it is counted once, or a rule counting "5 times in 10
//! minutes" would count 3 incidents as 6. A rule that listens only to the
//! second source still hears it there.
//!
//! Only records that carry a log time are compared (without one, equal text
//! need not be one event), and only across sources: one log repeating a
//! line is a repeat, never a twin. Memory is bounded by time and count.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

/// How far apart, in log time, the two copies may be read.
const WINDOW_MS: i64 = 120_000;
/// At most this many records are remembered.
const MAX_REMEMBERED: usize = 8192;

/// The recent records that carried a log time, by the hash of their bytes.
#[derive(Default)]
pub struct Twins {
    /// Keyed per process, so that log text cannot be made to collide with a
    /// record of another source and hide it.
    hasher: RandomState,
    /// Source, log time and sequence number of the latest record per hash.
    by_hash: HashMap<u64, (Arc<str>, i64, u64)>,
    /// (log time, hash, sequence number), oldest first.
    order: VecDeque<(i64, u64, u64)>,
    seq: u64,
}

impl Twins {
    /// The source that already gave `bytes` (read now from `source`, with
    /// log time `time`) if another one did; remembers the record otherwise.
    pub fn first_source(&mut self, source: &Arc<str>, bytes: &[u8], time: i64) -> Option<Arc<str>> {
        let hash = self.hasher.hash_one(bytes);
        if let Some((first, at, _)) = self.by_hash.get(&hash) {
            if **first != **source && (time - at).abs() <= WINDOW_MS {
                return Some(first.clone());
            }
        }
        self.seq += 1;
        self.by_hash.insert(hash, (source.clone(), time, self.seq));
        self.order.push_back((time, hash, self.seq));
        while self.order.len() > MAX_REMEMBERED || self.order.front().is_some_and(|(t, _, _)| *t < time - WINDOW_MS) {
            let (_, h, seq) = self.order.pop_front().expect("not empty");
            // Only the entry this one put there, not a later copy's.
            if self.by_hash.get(&h).is_some_and(|(_, _, s)| *s == seq) {
                self.by_hash.remove(&h);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_record_in_two_sources_is_one_event_and_repeats_in_one_are_not() {
        let (info, error): (Arc<str>, Arc<str>) = ("consumer_info".into(), "consumer_error".into());
        let mut t = Twins::default();
        let line = b"2026-11-25 10:00:00.001 [main] WARN x - Auto-commit failed";
        assert_eq!(t.first_source(&error, line, 0), None);
        assert_eq!(t.first_source(&info, line, 0), Some(error.clone()), "the copy in the other log");
        assert_eq!(t.first_source(&error, line, 0), None, "a repeat in the same log is its own record");
        assert_eq!(t.first_source(&info, b"other", 0), None);
        assert_eq!(t.first_source(&info, line, WINDOW_MS * 3), None, "too far apart to be one event");
    }

    #[test]
    fn memory_stays_bounded() {
        let s: Arc<str> = "a".into();
        let mut t = Twins::default();
        for i in 0..(3 * MAX_REMEMBERED) {
            t.first_source(&s, i.to_string().as_bytes(), 0);
        }
        assert!(t.by_hash.len() <= MAX_REMEMBERED && t.order.len() <= MAX_REMEMBERED);
    }
}
