//! Sources: log files followed like `tail -F`, turned into records.

pub mod checkpoint;
pub mod logtime;
pub mod record;
pub mod rotated;
pub mod tail;

pub use checkpoint::Checkpoints;
pub use record::{Assembler, Assembly, Interest, LiteralScanner, Record};
pub use tail::{Budget, Follower, RecordWindow, StartAt};
