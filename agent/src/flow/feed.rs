//! One way to push bytes through the flow: the daemon's followers,
//! `replay`, `diagnose` and the rule tests assemble records the same way
//! ([`Flow::assembly`]) and hand them to [`Flow::handle`]; what differs is
//! only where the outcomes go.

use std::io::Read;
use std::path::Path;

use super::*;
use crate::sources::RecordStart;
use crate::sources::{Assembler, Assembly};

impl Flow {
    /// How records of `source` are assembled for this flow: the
    /// configuration's limits, and the literals its signatures look for.
    pub fn assembly(&self, source: &str, start: RecordStart) -> Assembly {
        Assembly {
            start,
            max_bytes: self.config.limits.max_record_bytes,
            max_lines: self.config.limits.max_record_lines,
            interest: self.interest(source),
        }
    }

    /// Reads `input` (source `source`, file `path`) to its end through record
    /// assembly and the flow; each outcome goes to `sink`. Returns the bytes
    /// read.
    pub fn feed(
        &mut self,
        source: &str,
        path: &Path,
        start: RecordStart,
        input: &mut dyn Read,
        sink: &mut dyn FnMut(Outcome),
    ) -> std::io::Result<u64> {
        let mut assembler = Assembler::new(source.into(), path.into(), self.assembly(source, start), 0);
        let mut emit = |r: Record| {
            for o in self.handle(&r) {
                sink(o);
            }
        };
        assembler.read_to_end(input, &mut vec![0u8; 1 << 20], &|| false, &mut emit)
    }
}
