//! Records: one logical log entry, assembled from lines.
//!
//! A Java exception with its `at …` / `Caused by:` lines, or canal's position
//! JSON on a line starting with a space, belongs to the line that started it.
//! Records are bounded: a huge line or an endless stack trace is truncated and
//! marked, never buffered whole.

use std::sync::Arc;

use crate::config::RecordStart;

/// One logical log entry.
#[derive(Debug, Clone)]
pub struct Record {
    /// The configured source name (`kafka_server`, …).
    pub source: Arc<str>,
    /// Byte offset of the record's first byte in its file.
    pub offset: u64,
    /// Raw bytes, lines joined by `\n`, without the final newline. May hold
    /// invalid UTF-8; convert with [`Record::text`].
    pub bytes: Vec<u8>,
    /// Part of the record was dropped because it exceeded the limits.
    pub truncated: bool,
}

impl Record {
    /// The record as text, invalid UTF-8 replaced by U+FFFD.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Limits and the start rule for one source's records.
#[derive(Debug, Clone, Copy)]
pub struct Assembly {
    pub start: RecordStart,
    pub max_bytes: usize,
    pub max_lines: usize,
}

/// Turns a byte stream into records. Feed it chunks with [`Assembler::push`];
/// complete records are handed to the callback as soon as the next record
/// starts; [`Assembler::flush`] completes the last one.
#[derive(Debug)]
pub struct Assembler {
    source: Arc<str>,
    rules: Assembly,
    /// Offset in the file of the next byte `push` will see.
    offset: u64,
    /// The line being read (no newline seen yet), bounded by `max_bytes`.
    partial: Vec<u8>,
    partial_start: u64,
    partial_overflow: bool,
    /// The record being assembled.
    current: Option<Record>,
    current_lines: usize,
}

impl Assembler {
    pub fn new(source: Arc<str>, rules: Assembly, offset: u64) -> Self {
        Assembler {
            source,
            rules,
            offset,
            partial: Vec::new(),
            partial_start: offset,
            partial_overflow: false,
            current: None,
            current_lines: 0,
        }
    }

    /// The offset from which reading must resume so that nothing that was not
    /// yet handed out is lost: the start of the unfinished record or line.
    pub fn resume_offset(&self) -> u64 {
        match &self.current {
            Some(r) => r.offset,
            None if self.partial.is_empty() && !self.partial_overflow => self.offset,
            None => self.partial_start,
        }
    }

    /// Whether a record or line is waiting for more input.
    pub fn has_pending(&self) -> bool {
        self.current.is_some() || !self.partial.is_empty()
    }

    /// Feeds the next bytes of the file.
    pub fn push(&mut self, mut chunk: &[u8], emit: &mut dyn FnMut(Record)) {
        while !chunk.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(i) => {
                    let (line, rest) = (&chunk[..i], &chunk[i + 1..]);
                    if self.partial.is_empty() && !self.partial_overflow {
                        let start = self.offset;
                        self.offset += i as u64 + 1;
                        self.line(line, start, false, emit);
                    } else {
                        self.extend_partial(line);
                        self.offset += i as u64 + 1;
                        let partial = std::mem::take(&mut self.partial);
                        let overflow = std::mem::replace(&mut self.partial_overflow, false);
                        self.line(&partial, self.partial_start, overflow, emit);
                        self.partial = partial;
                        self.partial.clear();
                    }
                    chunk = rest;
                }
                None => {
                    if self.partial.is_empty() && !self.partial_overflow {
                        self.partial_start = self.offset;
                    }
                    self.extend_partial(chunk);
                    self.offset += chunk.len() as u64;
                    chunk = &[];
                }
            }
        }
    }

    fn extend_partial(&mut self, bytes: &[u8]) {
        let room = self.rules.max_bytes.saturating_sub(self.partial.len());
        if bytes.len() > room {
            self.partial.extend_from_slice(&bytes[..room]);
            self.partial_overflow = true;
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    /// Completes the pending record, and a last line without a newline if
    /// `include_partial` (at the end of a replayed file, or after the writer
    /// has been quiet long enough).
    pub fn flush(&mut self, include_partial: bool, emit: &mut dyn FnMut(Record)) {
        if include_partial && (!self.partial.is_empty() || self.partial_overflow) {
            let partial = std::mem::take(&mut self.partial);
            let overflow = std::mem::replace(&mut self.partial_overflow, false);
            self.line(&partial, self.partial_start, overflow, emit);
        }
        if let Some(r) = self.current.take() {
            emit(r);
        }
    }

    /// Drops everything pending and restarts at `offset` (after truncation).
    pub fn reset(&mut self, offset: u64) {
        self.offset = offset;
        self.partial.clear();
        self.partial_overflow = false;
        self.partial_start = offset;
        self.current = None;
    }

    fn line(&mut self, line: &[u8], start: u64, overflow: bool, emit: &mut dyn FnMut(Record)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let continues = self.current.is_some() && is_continuation(line, self.rules.start);
        if continues {
            let max_bytes = self.rules.max_bytes;
            let max_lines = self.rules.max_lines;
            let record = self.current.as_mut().expect("checked above");
            if self.current_lines >= max_lines || record.bytes.len() + 1 + line.len() > max_bytes {
                record.truncated = true;
                let room = max_bytes.saturating_sub(record.bytes.len() + 1);
                if self.current_lines < max_lines && room > 0 {
                    record.bytes.push(b'\n');
                    record
                        .bytes
                        .extend_from_slice(&line[..room.min(line.len())]);
                    self.current_lines += 1;
                }
            } else {
                record.bytes.push(b'\n');
                record.bytes.extend_from_slice(line);
                self.current_lines += 1;
            }
            record.truncated |= overflow;
            return;
        }
        if let Some(done) = self.current.take() {
            emit(done);
        }
        self.current = Some(Record {
            source: self.source.clone(),
            offset: start,
            bytes: line.to_vec(),
            truncated: overflow,
        });
        self.current_lines = 1;
    }
}

/// Whether `line` continues the record before it.
fn is_continuation(line: &[u8], start: RecordStart) -> bool {
    if line.first().is_some_and(|b| *b == b'\t' || *b == b' ') || line.starts_with(b"Caused by:") {
        return true;
    }
    match start {
        RecordStart::Line => false,
        RecordStart::Timestamp => !starts_with_timestamp(line),
    }
}

/// `2026-11-01 10:00:00…` or `[2026-11-01 10:00:00…`.
pub fn starts_with_timestamp(line: &[u8]) -> bool {
    let l = line.strip_prefix(b"[").unwrap_or(line);
    l.len() >= 19
        && l[..4].iter().all(u8::is_ascii_digit)
        && l[4] == b'-'
        && l[5..7].iter().all(u8::is_ascii_digit)
        && l[7] == b'-'
        && l[8..10].iter().all(u8::is_ascii_digit)
        && (l[10] == b' ' || l[10] == b'T')
        && l[11..13].iter().all(u8::is_ascii_digit)
        && l[13] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(input: &[u8], start: RecordStart, max_bytes: usize, chunk: usize) -> Vec<Record> {
        let mut a = Assembler::new(
            "s".into(),
            Assembly {
                start,
                max_bytes,
                max_lines: 50,
            },
            0,
        );
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            a.push(c, &mut |r| out.push(r));
        }
        a.flush(true, &mut |r| out.push(r));
        out
    }

    const TRACE: &[u8] = b"2026-11-01 00:00:00.001 [main] ERROR x - commit failed\n\
org.apache.kafka.clients.consumer.CommitFailedException: boom\n\
\tat a.b(C.java:1)\n\
Caused by: java.net.UnknownHostException: ip-1.2.3.4\n\
\t... 5 more\n\
2026-11-01 00:00:01.001 [main] INFO  x - next\n";

    #[test]
    fn java_trace_is_one_record_whatever_the_chunking() {
        for chunk in [1, 3, 7, 64, 4096] {
            let recs = assemble(TRACE, RecordStart::Timestamp, 4096, chunk);
            assert_eq!(recs.len(), 2, "chunk {chunk}");
            assert!(recs[0]
                .text()
                .contains("Caused by: java.net.UnknownHostException"));
            let second = TRACE
                .windows(19)
                .position(|w| w == b"2026-11-01 00:00:01")
                .unwrap();
            assert_eq!(recs[1].offset as usize, second);
            assert!(recs[1].text().ends_with("next"));
        }
    }

    #[test]
    fn line_mode_keeps_only_trace_continuations() {
        let recs = assemble(b"a\n\tat x\nb\nc\n", RecordStart::Line, 4096, 4096);
        let texts: Vec<_> = recs.iter().map(Record::text).collect();
        assert_eq!(texts, ["a\n\tat x", "b", "c"]);
    }

    #[test]
    fn huge_line_is_truncated_and_memory_stays_bounded() {
        let mut input = b"2026-11-01 00:00:00.000 start ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 5_000_000));
        input.extend_from_slice(b"\n2026-11-01 00:00:01.000 after\n");
        let recs = assemble(&input, RecordStart::Timestamp, 2048, 65536);
        assert_eq!(recs.len(), 2);
        assert!(recs[0].truncated);
        assert!(recs[0].bytes.len() <= 2048);
        assert_eq!(recs[1].text(), "2026-11-01 00:00:01.000 after");
        assert_eq!(
            recs[1].offset as usize,
            input.len() - "2026-11-01 00:00:01.000 after\n".len()
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let recs = assemble(
            b"2026-11-01 00:00:00.000 \xff\xfe bad\n",
            RecordStart::Timestamp,
            4096,
            5,
        );
        assert!(recs[0].text().contains('\u{fffd}'));
    }

    #[test]
    fn resume_offset_points_at_unfinished_record() {
        let mut a = Assembler::new(
            "s".into(),
            Assembly {
                start: RecordStart::Timestamp,
                max_bytes: 4096,
                max_lines: 50,
            },
            0,
        );
        let mut out = Vec::new();
        a.push(
            b"2026-11-01 00:00:00.000 one\n2026-11-01 00:00:01.000 two\n\tat",
            &mut |r| out.push(r),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(a.resume_offset(), 28);
    }
}
