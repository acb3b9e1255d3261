//! Following one log file with `tail -F` semantics: appends, rename
//! rotation, copy-truncate, a file that appears later, and a restart from a
//! checkpoint. The caller decides *when* to look (inotify events, a slow
//! timer); a [`Follower`] only knows *how* to catch up.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checkpoint::{Checkpoint, FileId, FINGERPRINT_BYTES};
use super::record::{Assembler, Assembly, Record};

const READ_CHUNK: usize = 64 * 1024;

/// How long a record waits for more lines (`[limits] record_settle_ms` and
/// `record_flush_ms`).
#[derive(Debug, Clone, Copy)]
pub struct RecordWindow {
    /// After a whole line: a continuation would have come in the same write.
    pub settle: Duration,
    /// After part of a line: the writer is in the middle of it.
    pub flush: Duration,
}

/// How much one pass over a source may read: bytes, and time (a flood of
/// records that each ask the rules costs far more per byte than quiet lines).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub bytes: u64,
    pub time: Duration,
}

impl Budget {
    #[cfg(test)]
    pub const UNLIMITED: Budget = Budget { bytes: u64::MAX, time: Duration::MAX };
}

/// Where to start in a file the agent has no checkpoint for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Skip what is already there: old incidents are history, not work.
    End,
    /// Read what is there (the tests, which write the file first).
    #[cfg(test)]
    Beginning,
}

struct OpenFile {
    file: File,
    id: FileId,
    /// Next byte to read.
    read_pos: u64,
}

/// Follows one source's file and turns what is appended into records.
pub struct Follower {
    name: Arc<str>,
    path: PathBuf,
    assembly: Assembly,
    open: Option<OpenFile>,
    assembler: Assembler,
    /// When a read last found nothing more in the file, with nothing read
    /// since: the only moment from which quiet is counted. A pass that stops
    /// at its budget leaves this unset, however long the worker then spends
    /// elsewhere: the rest of the record is in the file, not late.
    at_end_since: Option<Instant>,
    buf: Vec<u8>,
    /// Bytes read since [`Follower::take_bytes_read`] last asked.
    bytes_read: u64,
    /// Records already decided before a restart: (inode, offset of the last
    /// decided record), as the journal had them. Applied when the follower
    /// positions itself at start (see `start`), not to files met later.
    decided: Vec<(u64, u64)>,
    /// Records held back for that since [`Follower::take_skipped`].
    skipped: u64,
}

impl Follower {
    pub fn new(name: &str, path: PathBuf, assembly: Assembly) -> Self {
        let name: Arc<str> = name.into();
        Follower {
            assembler: Assembler::new(name.clone(), path.as_path().into(), assembly.clone(), 0),
            name,
            path,
            assembly,
            open: None,
            at_end_since: None,
            buf: Vec::new(),
            bytes_read: 0,
            decided: Vec::new(),
            skipped: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Positions the follower at start-up. With a checkpoint for the same
    /// file it resumes there. If the file was rotated, copied and truncated,
    /// compressed or removed while the agent was down, every rotated file
    /// next to it that holds unread lines is read first: the checkpointed
    /// one from where the agent stopped (found by its first bytes, so a copy
    /// or a gzip of it is found too), then each one written after it, whole.
    /// `since` is when the checkpoints were saved: when the checkpointed file
    /// is gone, rotated files written after that are read. Without a
    /// checkpoint it starts as `start_at` says. Returns what a person should
    /// know: lines that could not be read, and why.
    pub fn start(
        &mut self,
        checkpoint: Option<&Checkpoint>,
        since: Option<std::time::SystemTime>,
        start_at: StartAt,
        emit: &mut dyn FnMut(Record),
    ) -> io::Result<Vec<String>> {
        let file = match File::open(&self.path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        // The same file however its path was spelled (an older checkpoint may
        // hold a relative one).
        let same = |c: &&Checkpoint| c.path == self.path || same_file(&c.path, &self.path);
        let mut notes = Vec::new();
        let inode = match &file {
            Some(f) => Some(f.metadata()?.ino()),
            None => None,
        };
        // Which decided records to hold back in the live file: those of the
        // checkpointed file when it is still that file; none when the same
        // inode now holds other content (truncated and rewritten).
        let (offset, skip) = match (checkpoint.filter(same), &file) {
            (Some(cp), Some(f)) if cp.file.matches(f)? => {
                (cp.offset.min(f.metadata()?.len()), self.decided_for(cp.file.inode))
            }
            (Some(cp), _) => {
                notes = self.catch_up_rotated(cp, since, emit)?;
                (0, inode.filter(|i| *i != cp.file.inode).and_then(|i| self.decided_for(i)))
            }
            (None, Some(f)) if start_at == StartAt::End => (f.metadata()?.len(), None),
            (None, _) => (0, inode.and_then(|i| self.decided_for(i))),
        };
        if let Some(file) = file {
            self.switch_to(file, &self.path.clone(), offset, skip)?;
        }
        Ok(notes)
    }

    /// Follows `file` from `offset`; `skip`: hold back the records starting
    /// at or before it (decided before a restart).
    fn switch_to(&mut self, file: File, path: &Path, offset: u64, skip: Option<u64>) -> io::Result<()> {
        let id = FileId::of(&file)?;
        let assembler = self.assembler_for(path, id.inode, offset, skip);
        self.skipped += std::mem::replace(&mut self.assembler, assembler).take_skipped();
        self.open = Some(OpenFile { file, id, read_pos: offset });
        self.at_end_since = None;
        Ok(())
    }

    /// Record assembly for a file from `offset` on, its records named by the
    /// file's inode, those through `skip` held back.
    fn assembler_for(&self, path: &Path, inode: u64, offset: u64, skip: Option<u64>) -> Assembler {
        let mut a = Assembler::new(self.name.clone(), path.into(), self.assembly.clone(), offset);
        a.set_inode(inode);
        if let Some(at) = skip {
            a.skip_through(at);
        }
        a
    }

    /// A checkpoint for the file now at the path, at the start of its
    /// furthest record the journal says was decided (see [`skip_decided`]),
    /// for when the checkpoints themselves are lost. `None` when the journal
    /// knows no record of this file.
    ///
    /// [`skip_decided`]: Follower::skip_decided
    pub fn checkpoint_from_journal(&self) -> io::Result<Option<Checkpoint>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(offset) = self.decided_for(file.metadata()?.ino()) else {
            return Ok(None);
        };
        Ok(Some(Checkpoint { path: self.path.clone(), file: FileId::of(&file)?, offset }))
    }

    /// The last record the journal says was decided in the file with this
    /// inode (as it was when the agent stopped).
    fn decided_for(&self, inode: u64) -> Option<u64> {
        self.decided.iter().find(|(i, _)| *i == inode).map(|(_, at)| *at)
    }

    /// Reads what rotation moved away while the agent was down (see `start`).
    fn catch_up_rotated(
        &mut self,
        cp: &Checkpoint,
        since: Option<std::time::SystemTime>,
        emit: &mut dyn FnMut(Record),
    ) -> io::Result<Vec<String>> {
        let rotated = super::rotated::beside(&self.path)?;
        // Prefer the file with the checkpoint's inode (a renamed file), then
        // any whose content starts the same (a copy, a gzip).
        let found = rotated
            .iter()
            .position(|r| r.inode == cp.file.inode && r.stored == super::rotated::Stored::Plain && r.is(&cp.file))
            .or_else(|| rotated.iter().position(|r| r.is(&cp.file)));
        let mut notes = Vec::new();
        let newer: Vec<&super::rotated::Rotated> = match found {
            Some(i) => {
                // The checkpointed content, wherever it is now (a copy or a
                // gzip has another inode): the decisions were made on it.
                let skip = self.decided_for(cp.file.inode);
                self.read_rotated(&rotated[i], cp.offset, skip, emit, &mut notes);
                rotated[i + 1..].iter().collect()
            }
            None => {
                notes.push(format!(
                    "{}: the file read up to byte {} was rotated away or removed while the agent was down and no readable copy of it is next to it; lines written to it after that were not read",
                    self.path.display(),
                    cp.offset
                ));
                rotated.iter().filter(|r| since.is_some_and(|t| r.modified > t)).collect()
            }
        };
        for r in newer {
            let skip = self.decided_for(r.inode);
            self.read_rotated(r, 0, skip, emit, &mut notes);
        }
        for n in &notes {
            tracing::warn!(source = %self.name, "{n}");
        }
        Ok(notes)
    }

    /// Reads one rotated file from `from` to its end through the record
    /// assembly; what cannot be read becomes a note.
    fn read_rotated(
        &mut self,
        r: &super::rotated::Rotated,
        from: u64,
        skip: Option<u64>,
        emit: &mut dyn FnMut(Record),
        notes: &mut Vec<String>,
    ) {
        tracing::info!(source = %self.name, rotated = %r.path.display(), from, "reading a file rotated while the agent was down");
        let result = (|| -> io::Result<()> {
            let mut content = r.open()?;
            io::copy(&mut (&mut content).take(from), &mut io::sink())?;
            let mut assembler = self.assembler_for(&r.path, r.inode, from, skip);
            self.buf.resize(READ_CHUNK, 0);
            loop {
                let n = content.read(&mut self.buf)?;
                if n == 0 {
                    break;
                }
                self.bytes_read += n as u64;
                assembler.push(&self.buf[..n], emit);
            }
            assembler.flush(true, emit);
            self.skipped += assembler.take_skipped();
            Ok(())
        })();
        if let Err(e) = result {
            notes.push(format!("{}: not read: {e}", r.path.display()));
        }
    }

    /// Catches up with the file: reads what was appended, follows a rotation
    /// (finishing the old file first) or a truncation. Stops when `budget`
    /// is spent, so that one source's flood neither delays the others nor a
    /// shutdown; true if there is more to read now.
    pub fn poll(&mut self, budget: Budget, emit: &mut dyn FnMut(Record)) -> io::Result<bool> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let Some(meta) = meta else {
            // Renamed away and not yet recreated: finish what the old file has.
            return self.read_some(budget, emit);
        };
        let Some(open) = &self.open else {
            // A file that appears after start-up is new: read all of it.
            let file = File::open(&self.path)?;
            self.switch_to(file, &self.path.clone(), 0, None)?;
            return self.read_some(budget, emit);
        };
        if meta.ino() != open.id.inode {
            if self.read_some(budget, emit)? {
                return Ok(true); // the old file first, to its end
            }
            self.assembler.flush(true, emit);
            tracing::info!(source = %self.name, path = %self.path.display(), "file rotated; following the new one");
            let file = File::open(&self.path)?;
            self.switch_to(file, &self.path.clone(), 0, None)?;
        } else if meta.len() < open.read_pos || !open.id.matches(&open.file)? {
            self.assembler.flush(false, emit);
            tracing::info!(source = %self.name, path = %self.path.display(), "file truncated; reading it from the start");
            let file = File::open(&self.path)?;
            self.switch_to(file, &self.path.clone(), 0, None)?;
        } else if open.id.fingerprint_len < FINGERPRINT_BYTES && meta.len() > open.id.fingerprint_len as u64 {
            // Young file: widen its fingerprint now that it has more bytes.
            let id = FileId::of(&open.file)?;
            self.open.as_mut().expect("open").id = id;
        }
        self.read_some(budget, emit)
    }

    /// Records of these files (inode, offset of the last decided record)
    /// were decided before the agent stopped: a crash between a decision and
    /// the next checkpoint must not decide them again. Set before `start`.
    pub fn skip_decided(&mut self, decided: Vec<(u64, u64)>) {
        self.decided = decided;
    }

    /// How many records were held back as already decided, since last asked.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped) + self.assembler.take_skipped()
    }

    /// Reads from the open file until its end or until `budget` is spent
    /// (checked between chunks); true if it stopped before the end.
    fn read_some(&mut self, budget: Budget, emit: &mut dyn FnMut(Record)) -> io::Result<bool> {
        let Some(open) = &mut self.open else {
            return Ok(false);
        };
        self.buf.resize(READ_CHUNK, 0);
        let started = Instant::now();
        let mut read = 0u64;
        loop {
            if read >= budget.bytes || started.elapsed() >= budget.time {
                return Ok(true);
            }
            let n = open.file.read_at(&mut self.buf, open.read_pos)?;
            if n == 0 {
                // Quiet starts the first time the end is reached, not at
                // every look that finds nothing new.
                self.at_end_since.get_or_insert_with(Instant::now);
                return Ok(false);
            }
            open.read_pos += n as u64;
            read += n as u64;
            self.bytes_read += n as u64;
            self.at_end_since = None;
            self.assembler.push(&self.buf[..n], emit);
        }
    }

    /// Completes the pending record once the reader has reached the end of
    /// the file and nothing came for long enough (silence means the writer
    /// is done; see [`Follower::quiet_needed`]). Time between two passes
    /// that each stopped at their budget is not quiet. The caller polls a
    /// follower whose record is due first ([`Follower::pending_for`] is
    /// zero), so that bytes written since the last look are read, not cut
    /// off.
    pub fn flush_if_quiet(&mut self, window: RecordWindow, emit: &mut dyn FnMut(Record)) {
        let quiet = self.at_end_since.is_some_and(|t| t.elapsed() >= self.quiet_needed(window));
        if self.assembler.has_pending() && quiet {
            self.assembler.flush(false, emit);
        }
    }

    /// How long the writer must be quiet before the pending record is
    /// complete. A logger writes an event — a message with its whole stack
    /// trace — in one write, so a record that ends with a whole line is
    /// complete after a short settle; a line still being written waits the
    /// full window.
    pub fn quiet_needed(&self, window: RecordWindow) -> Duration {
        match self.assembler.ends_with_whole_line() {
            true => window.settle,
            false => window.flush,
        }
    }

    /// How much longer the pending record may wait, if one does (the whole
    /// window while the reader has not reached the end of the file).
    pub fn pending_for(&self, window: RecordWindow) -> Option<Duration> {
        let quiet_for = self.at_end_since.map_or(Duration::ZERO, |t| t.elapsed());
        self.assembler.has_pending().then(|| self.quiet_needed(window).saturating_sub(quiet_for))
    }

    /// Where to resume after a restart: the start of the first record that
    /// has not been handed out.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let open = self.open.as_ref()?;
        Some(Checkpoint { path: self.path.clone(), file: open.id.clone(), offset: self.assembler.resume_offset() })
    }

    /// Bytes read since the last call (for the metrics).
    pub fn take_bytes_read(&mut self) -> u64 {
        std::mem::take(&mut self.bytes_read)
    }

    /// Bytes in the file not yet read (tail lag).
    pub fn lag_bytes(&self) -> u64 {
        let Some(open) = &self.open else { return 0 };
        open.file.metadata().map(|m| m.len().saturating_sub(open.read_pos)).unwrap_or(0)
    }
}

/// Two paths name the same directory entry once resolved.
fn same_file(a: &Path, b: &Path) -> bool {
    matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(a), Ok(b)) if a == b)
}

#[cfg(test)]
#[path = "tail_tests.rs"]
mod tests;
