//! Records: one logical log entry, assembled from lines.
//!
//! A Java exception with its `at …` / `Caused by:` lines, or canal's position
//! JSON on a line starting with a space, belongs to the line that started it.
//! Records are bounded: a huge line or an endless stack trace is truncated and
//! marked, never buffered whole.
//!
//! Most records interest no rule, so the assembler does not build them. It
//! searches each chunk for the literals the source's signatures need (one
//! Aho-Corasick pass, like `rg`), finds record boundaries only around a hit
//! and otherwise just keeps track of where the current record starts, so a
//! backlog is replayed at a good fraction of memory bandwidth. A record is
//! handed out only if it contains a hit; which signatures really match is
//! the matcher's job.

use std::path::Path;
use std::sync::Arc;

use aho_corasick::AhoCorasick;

use crate::sources::logtime::starts_with_timestamp;
use crate::sources::RecordStart;

/// One logical log entry.
#[derive(Debug, Clone)]
pub struct Record {
    /// The configured source name (`kafka_server`, …).
    pub source: Arc<str>,
    /// The file it was read from (a rotated file keeps its own name).
    pub file: Arc<Path>,
    /// Byte offset of the record's first byte in its file.
    pub offset: u64,
    /// The file's inode (0 where the records do not come from a followed
    /// file): with `offset`, which record of which file this was, whatever
    /// the file is called after a rotation.
    pub inode: u64,
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

/// Which records of a source anyone wants.
#[derive(Debug, Clone)]
pub enum Interest {
    /// Every record (a signature without a usable literal, or tests).
    All,
    /// Records containing one of these literals (none contains a newline).
    Literals(LiteralScanner),
    /// No signature watches the source.
    Nothing,
}

/// Finds a source's signature literals in a chunk, on SIMD whenever it can:
/// one or two literals each with `memmem`, up to Teddy's limit in one Teddy
/// pass (what `rg` uses for a handful of literals), and only beyond that, or
/// where the CPU has no SIMD Teddy takes, one leftmost-first Aho-Corasick
/// pass.
#[derive(Debug, Clone)]
pub struct LiteralScanner(Arc<(Scanner, Vec<Vec<u8>>)>);

#[derive(Debug)]
enum Scanner {
    Few(Vec<memchr::memmem::Finder<'static>>),
    Teddy(aho_corasick::packed::Searcher),
    Many(AhoCorasick),
}

/// Up to this many literals are searched one by one.
const FEW_LITERALS: usize = 2;

impl LiteralScanner {
    pub fn new(literals: &[Vec<u8>]) -> LiteralScanner {
        let teddy = || {
            aho_corasick::packed::Config::new()
                .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
                .builder()
                .extend(literals)
                .build()
        };
        let scanner = if literals.len() <= FEW_LITERALS {
            Scanner::Few(literals.iter().map(|l| memchr::memmem::Finder::new(l).into_owned()).collect())
        } else if let Some(t) = teddy() {
            Scanner::Teddy(t)
        } else {
            Scanner::Many(
                AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                    .build(literals)
                    .expect("literal automaton fits in memory"),
            )
        };
        LiteralScanner(Arc::new((scanner, literals.to_vec())))
    }

    /// The literals scanned for, and how ("memmem", "teddy", "automaton").
    pub fn describe(&self) -> (&'static str, &[Vec<u8>]) {
        let how = match &self.0 .0 {
            Scanner::Few(_) => "memmem",
            Scanner::Teddy(_) => "teddy",
            Scanner::Many(_) => "automaton",
        };
        (how, &self.0 .1)
    }

    pub fn is_match(&self, hay: &[u8]) -> bool {
        match &self.0 .0 {
            Scanner::Few(finders) => finders.iter().any(|f| f.find(hay).is_some()),
            Scanner::Teddy(t) => t.find(hay).is_some(),
            Scanner::Many(ac) => ac.is_match(hay),
        }
    }

    /// The start of every hit in `hay`, in order (a position may repeat).
    fn hits<'h>(&'h self, hay: &'h [u8]) -> Box<dyn Iterator<Item = usize> + 'h> {
        match &self.0 .0 {
            Scanner::Many(ac) => Box::new(ac.find_iter(hay).map(|m| m.start())),
            Scanner::Teddy(t) => Box::new(t.find_iter(hay).map(|m| m.start())),
            Scanner::Few(finders) => {
                // Each finder's next hit, advanced only when it is the earliest,
                // so no stretch of the chunk is searched twice by one finder.
                let mut next: Vec<Option<usize>> = finders.iter().map(|f| f.find(hay)).collect();
                Box::new(std::iter::from_fn(move || {
                    let (i, at) =
                        next.iter().enumerate().filter_map(|(i, n)| n.map(|at| (i, at))).min_by_key(|(_, at)| *at)?;
                    next[i] = finders[i].find(&hay[at + 1..]).map(|n| at + 1 + n);
                    Some(at)
                }))
            }
        }
    }
}

/// Limits, the start rule and the interest for one source's records.
#[derive(Debug, Clone)]
pub struct Assembly {
    pub start: RecordStart,
    pub max_bytes: usize,
    pub max_lines: usize,
    pub interest: Interest,
}

/// The record being assembled.
#[derive(Debug)]
struct Current {
    start: u64,
    /// Raw bytes from `start`, each line with its `\n`; bounded.
    bytes: Vec<u8>,
    lines: usize,
    truncated: bool,
    /// Contains a literal someone wants: it will be handed out.
    wanted: bool,
}

/// Turns a byte stream into records. Feed it chunks with [`Assembler::push`];
/// a wanted record is handed to the callback as soon as the next record
/// starts; [`Assembler::flush`] completes the last one.
#[derive(Debug)]
pub struct Assembler {
    source: Arc<str>,
    file: Arc<Path>,
    rules: Assembly,
    /// Offset in the file of the next byte `push` will see.
    offset: u64,
    /// The file's inode, for the records (see [`Record::inode`]).
    inode: u64,
    /// Records starting at or before this offset were decided before a
    /// restart: they are not handed out again (however they complete: a
    /// read, a flush after quiet, the end of a rotated file).
    decided_through: Option<u64>,
    /// Records held back for that.
    skipped: u64,
    /// The line being read (no newline seen yet), bounded by `max_bytes`.
    partial: Vec<u8>,
    partial_start: u64,
    partial_overflow: bool,
    current: Option<Current>,
}

impl Assembler {
    pub fn new(source: Arc<str>, file: Arc<Path>, rules: Assembly, offset: u64) -> Self {
        Assembler {
            source,
            file,
            rules,
            offset,
            inode: 0,
            decided_through: None,
            skipped: 0,
            partial: Vec::new(),
            partial_start: offset,
            partial_overflow: false,
            current: None,
        }
    }

    /// Names the file's inode in the records handed out from now on.
    pub fn set_inode(&mut self, inode: u64) {
        self.inode = inode;
    }

    /// Holds back the records that start at or before `offset` (decided
    /// before a restart).
    pub fn skip_through(&mut self, offset: u64) {
        self.decided_through = Some(offset);
    }

    /// How many records were held back by `skip_through`, since last asked.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    /// The offset from which reading must resume so that nothing that was not
    /// yet handed out is lost: the start of the unfinished record or line.
    pub fn resume_offset(&self) -> u64 {
        match &self.current {
            Some(r) => r.start,
            None if self.partial.is_empty() && !self.partial_overflow => self.offset,
            None => self.partial_start,
        }
    }

    /// Whether what is pending ends with a whole line (no line half-read).
    pub fn ends_with_whole_line(&self) -> bool {
        self.partial.is_empty() && !self.partial_overflow
    }

    /// Whether a record or line is waiting for more input.
    pub fn has_pending(&self) -> bool {
        self.current.is_some() || !self.partial.is_empty() || self.partial_overflow
    }

    /// Feeds the next bytes of the file.
    pub fn push(&mut self, mut chunk: &[u8], emit: &mut dyn FnMut(Record)) {
        // Finish the line carried over from the previous chunk.
        if !self.partial.is_empty() || self.partial_overflow {
            match memchr::memchr(b'\n', chunk) {
                None => {
                    self.extend_partial(chunk);
                    self.offset += chunk.len() as u64;
                    return;
                }
                Some(i) => {
                    self.extend_partial(&chunk[..i]);
                    self.offset += i as u64 + 1;
                    let partial = std::mem::take(&mut self.partial);
                    let overflow = std::mem::replace(&mut self.partial_overflow, false);
                    self.line(&partial, self.partial_start, overflow, emit);
                    self.partial = partial;
                    self.partial.clear();
                    chunk = &chunk[i + 1..];
                }
            }
        }
        let body_len = memchr::memrchr(b'\n', chunk).map_or(0, |i| i + 1);
        let (body, rest) = chunk.split_at(body_len);
        let base = self.offset;
        self.body(body, base, emit);
        self.offset += body_len as u64;
        if !rest.is_empty() {
            self.partial_start = self.offset;
            self.extend_partial(rest);
            self.offset += rest.len() as u64;
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

    /// Complete lines at file offset `base`: line by line where every
    /// record is wanted, otherwise hit by hit.
    fn body(&mut self, body: &[u8], base: u64, emit: &mut dyn FnMut(Record)) {
        let scanner = match &self.rules.interest {
            Interest::All => {
                let mut pos = 0;
                while pos < body.len() {
                    let end = memchr::memchr(b'\n', &body[pos..]).map_or(body.len(), |i| pos + i);
                    self.line(&body[pos..end], base + pos as u64, false, emit);
                    pos = end + 1;
                }
                return;
            }
            Interest::Nothing => return self.skip(body, 0, body.len(), base, emit),
            Interest::Literals(scanner) => scanner.clone(),
        };
        let mut pos = 0;
        for hit in scanner.hits(body) {
            if hit < pos {
                continue; // another hit on a line already taken
            }
            let line_start = memchr::memrchr(b'\n', &body[pos..hit]).map_or(pos, |i| pos + i + 1);
            let line_end = memchr::memchr(b'\n', &body[hit..]).map_or(body.len(), |i| hit + i);
            self.skip(body, pos, line_start, base, emit);
            self.line(&body[line_start..line_end], base + line_start as u64, false, emit);
            pos = line_end + 1;
        }
        self.skip(body, pos, body.len(), base, emit);
    }

    /// Lines `body[from..to]` (complete, no hit in them): keep the current
    /// record's bytes and boundaries right without building the records in
    /// between, which nobody wants.
    fn skip(&mut self, body: &[u8], from: usize, to: usize, base: u64, emit: &mut dyn FnMut(Record)) {
        if from >= to {
            return;
        }
        let Some(last) = self.last_record_start(body, from, to) else {
            // Every line continues the current record.
            self.append(&body[from..to]);
            return;
        };
        if self.current.as_ref().is_some_and(|c| c.wanted) {
            let first = self.first_record_start(body, from, last);
            self.append(&body[from..first]);
            self.finish(emit);
        }
        self.current = None;
        self.begin(base + last as u64, false);
        self.append(&body[last..to]);
    }

    /// The start of the last line in `body[from..to]` that begins a record.
    fn last_record_start(&self, body: &[u8], from: usize, to: usize) -> Option<usize> {
        let mut end = to;
        while end > from {
            let start = memchr::memrchr(b'\n', &body[from..end - 1]).map_or(from, |i| from + i + 1);
            if !is_continuation(&body[start..end], self.rules.start) {
                return Some(start);
            }
            end = start;
        }
        self.current.is_none().then_some(from)
    }

    /// The start of the first line in `body[from..limit]` that begins a record, or `limit`.
    fn first_record_start(&self, body: &[u8], from: usize, limit: usize) -> usize {
        let mut pos = from;
        while pos < limit {
            if !is_continuation(&body[pos..], self.rules.start) {
                return pos;
            }
            pos = memchr::memchr(b'\n', &body[pos..limit]).map_or(limit, |i| pos + i + 1);
        }
        limit
    }

    fn begin(&mut self, start: u64, truncated: bool) {
        self.current = Some(Current { start, bytes: Vec::new(), lines: 0, truncated, wanted: false });
    }

    /// Appends whole lines (each ending in `\n`) to the current record,
    /// within the limits.
    fn append(&mut self, lines: &[u8]) {
        let (max_bytes, max_lines) = (self.rules.max_bytes, self.rules.max_lines);
        let Some(cur) = &mut self.current else { return };
        if cur.truncated && (cur.bytes.len() >= max_bytes || cur.lines >= max_lines) {
            return;
        }
        let mut take = lines.len().min(max_bytes.saturating_sub(cur.bytes.len()));
        let mut count = memchr::memchr_iter(b'\n', &lines[..take]).count();
        if cur.lines + count > max_lines {
            let keep = max_lines - cur.lines;
            take = memchr::memchr_iter(b'\n', lines).nth(keep.saturating_sub(1)).map_or(0, |i| i + 1);
            if keep == 0 {
                take = 0;
            }
            count = keep;
        }
        if take < lines.len() {
            cur.truncated = true;
        }
        cur.bytes.extend_from_slice(&lines[..take]);
        cur.lines += count;
    }

    /// One complete line (without its newline), taken through the rules.
    fn line(&mut self, line: &[u8], start: u64, overflow: bool, emit: &mut dyn FnMut(Record)) {
        if self.current.is_none() || !is_continuation(line, self.rules.start) {
            self.finish(emit);
            self.begin(start, false);
        }
        let (max_bytes, max_lines) = (self.rules.max_bytes, self.rules.max_lines);
        let cur = self.current.as_mut().expect("begun above");
        if cur.lines >= max_lines || cur.bytes.len() >= max_bytes {
            cur.truncated = true;
        } else {
            let room = max_bytes - cur.bytes.len();
            if line.len() + 1 > room {
                cur.truncated = true;
            }
            let take = line.len().min(room.saturating_sub(1));
            cur.bytes.extend_from_slice(&line[..take]);
            cur.bytes.push(b'\n');
            cur.lines += 1;
        }
        cur.truncated |= overflow;
        cur.wanted |= match &self.rules.interest {
            Interest::All => true,
            Interest::Nothing => false,
            Interest::Literals(scanner) => scanner.is_match(line),
        };
    }

    /// Hands out the current record if it is wanted.
    fn finish(&mut self, emit: &mut dyn FnMut(Record)) {
        let Some(cur) = self.current.take() else { return };
        if !cur.wanted {
            return;
        }
        if self.decided_through.is_some_and(|at| cur.start <= at) {
            self.skipped += 1;
            return;
        }
        let mut bytes = cur.bytes;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        if memchr::memchr(b'\r', &bytes).is_some() {
            bytes = strip_carriage_returns(&bytes);
        }
        emit(Record {
            source: self.source.clone(),
            file: self.file.clone(),
            offset: cur.start,
            inode: self.inode,
            bytes,
            truncated: cur.truncated,
        });
    }

    /// Reads a whole file, `input`, through `buf`'s chunks and completes its
    /// last record: what `replay`, `diagnose` and the rule tests do with a
    /// log (the daemon's followers read in bounded passes instead). Before
    /// each chunk `stop` may end it early, the pending record left pending.
    /// Returns the bytes read.
    pub fn read_to_end(
        &mut self,
        input: &mut dyn std::io::Read,
        buf: &mut [u8],
        stop: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Record),
    ) -> std::io::Result<u64> {
        let mut read = 0;
        loop {
            if stop() {
                return Ok(read);
            }
            let n = match input.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            read += n as u64;
            self.push(&buf[..n], emit);
        }
        self.flush(true, emit);
        Ok(read)
    }

    /// Completes the pending record, and a last line without a newline if
    /// `include_partial` (at the end of a replayed file).
    pub fn flush(&mut self, include_partial: bool, emit: &mut dyn FnMut(Record)) {
        if include_partial && (!self.partial.is_empty() || self.partial_overflow) {
            let partial = std::mem::take(&mut self.partial);
            let overflow = std::mem::replace(&mut self.partial_overflow, false);
            self.line(&partial, self.partial_start, overflow, emit);
        }
        self.finish(emit);
    }
}

fn strip_carriage_returns(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, b) in bytes.iter().enumerate() {
        let before_newline = bytes.get(i + 1).is_none_or(|n| *n == b'\n');
        if !(*b == b'\r' && before_newline) {
            out.push(*b);
        }
    }
    out
}

/// Whether the line (which may run on past its newline) continues the record before it.
fn is_continuation(line: &[u8], start: RecordStart) -> bool {
    if line.first().is_some_and(|b| *b == b'\t' || *b == b' ') || line.starts_with(b"Caused by:") {
        return true;
    }
    match start {
        RecordStart::Line => false,
        RecordStart::Timestamp => !starts_with_timestamp(line),
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
