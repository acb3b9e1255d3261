//! Following one log file with `tail -F` semantics: appends, rename
//! rotation, copy-truncate, a file that appears later, and a restart from a
//! checkpoint. The caller decides *when* to look (inotify events, a slow
//! timer); a [`Follower`] only knows *how* to catch up.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checkpoint::{Checkpoint, FileId, FINGERPRINT_BYTES};
use super::record::{Assembler, Assembly, Record};

const READ_CHUNK: usize = 64 * 1024;

/// Where to start in a file the agent has no checkpoint for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Skip what is already there: old incidents are history, not work.
    End,
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
    last_data: Instant,
    buf: Vec<u8>,
    /// Bytes read since [`Follower::take_bytes_read`] last asked.
    bytes_read: u64,
    /// Records already decided before a restart: (inode, offset of the last
    /// decided record). Records up to there are not handed out again.
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
            last_data: Instant::now(),
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
    /// file it resumes there; if the file was rotated while the agent was
    /// down, the rest of the rotated file (found by inode next to it) is read
    /// first. Without a checkpoint it starts as `start_at` says.
    pub fn start(
        &mut self,
        checkpoint: Option<&Checkpoint>,
        start_at: StartAt,
        emit: &mut dyn FnMut(Record),
    ) -> io::Result<()> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        // The same file however its path was spelled (an older checkpoint may
        // hold a relative one).
        let same = |c: &&Checkpoint| c.path == self.path || same_file(&c.path, &self.path);
        let offset = match checkpoint.filter(same) {
            Some(cp) if cp.file.matches(&file)? => cp.offset.min(len),
            Some(cp) => {
                self.drain_rotated_sibling(cp, emit)?;
                0
            }
            None if start_at == StartAt::End => len,
            None => 0,
        };
        self.switch_to(file, &self.path.clone(), offset)
    }

    fn switch_to(&mut self, file: File, path: &Path, offset: u64) -> io::Result<()> {
        let id = FileId::of(&file)?;
        self.assembler = Assembler::new(self.name.clone(), path.into(), self.assembly.clone(), offset);
        self.assembler.set_inode(id.inode);
        self.open = Some(OpenFile { file, id, read_pos: offset });
        Ok(())
    }

    /// Finishes a file that was rotated away while the agent was down.
    fn drain_rotated_sibling(&mut self, cp: &Checkpoint, emit: &mut dyn FnMut(Record)) -> io::Result<()> {
        let (Some(dir), Some(base)) = (self.path.parent(), self.path.file_name()) else {
            return Ok(());
        };
        let base = base.to_string_lossy();
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(&*base) || entry.path() == self.path {
                continue;
            }
            if entry.metadata().map(|m| m.ino()).ok() != Some(cp.file.inode) {
                continue;
            }
            let file = File::open(entry.path())?;
            if cp.file.matches(&file)? {
                tracing::info!(source = %self.name, rotated = %entry.path().display(), "finishing a file rotated while the agent was down");
                self.switch_to(file, &entry.path(), cp.offset)?;
                self.read_to_end(emit)?;
                self.assembler.flush(true, emit);
                self.open = None;
                return Ok(());
            }
        }
        tracing::warn!(source = %self.name, path = %self.path.display(), "the file was replaced while the agent was down and its old copy was not found next to it; lines written to it after the last checkpoint were not read");
        Ok(())
    }

    /// Catches up with the file: reads what was appended, follows a rotation
    /// (finishing the old file first) or a truncation. Reads at most about
    /// `budget` bytes, so that one source's flood neither delays the others
    /// nor a shutdown; true if there is more to read now.
    pub fn poll(&mut self, budget: u64, emit: &mut dyn FnMut(Record)) -> io::Result<bool> {
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
            self.switch_to(file, &self.path.clone(), 0)?;
            return self.read_some(budget, emit);
        };
        if meta.ino() != open.id.inode {
            if self.read_some(budget, emit)? {
                return Ok(true); // the old file first, to its end
            }
            self.assembler.flush(true, emit);
            tracing::info!(source = %self.name, path = %self.path.display(), "file rotated; following the new one");
            let file = File::open(&self.path)?;
            self.switch_to(file, &self.path.clone(), 0)?;
        } else if meta.len() < open.read_pos || !open.id.matches(&open.file)? {
            self.assembler.flush(false, emit);
            tracing::info!(source = %self.name, path = %self.path.display(), "file truncated; reading it from the start");
            let file = File::open(&self.path)?;
            self.switch_to(file, &self.path.clone(), 0)?;
        } else if open.id.fingerprint_len < FINGERPRINT_BYTES && meta.len() > open.id.fingerprint_len as u64 {
            // Young file: widen its fingerprint now that it has more bytes.
            let id = FileId::of(&open.file)?;
            self.open.as_mut().expect("open").id = id;
        }
        self.read_some(budget, emit)
    }

    /// Records of these files (inode, offset of the last decided record)
    /// were decided before the agent stopped: a crash between a decision and
    /// the next checkpoint must not decide them again.
    pub fn skip_decided(&mut self, decided: Vec<(u64, u64)>) {
        self.decided = decided;
    }

    /// How many records were held back as already decided, since last asked.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    fn read_to_end(&mut self, emit: &mut dyn FnMut(Record)) -> io::Result<()> {
        while self.read_some(u64::MAX, emit)? {}
        Ok(())
    }

    /// Reads up to about `budget` bytes from the open file; true if it
    /// stopped before the end.
    fn read_some(&mut self, budget: u64, emit: &mut dyn FnMut(Record)) -> io::Result<bool> {
        let Some(open) = &mut self.open else {
            return Ok(false);
        };
        let decided = self.decided.iter().find(|(inode, _)| *inode == open.id.inode).map(|(_, at)| *at);
        let skipped = &mut self.skipped;
        let mut emit = |r: Record| match decided {
            Some(at) if r.offset <= at => *skipped += 1,
            _ => emit(r),
        };
        let emit = &mut emit;
        self.buf.resize(READ_CHUNK, 0);
        let mut read = 0u64;
        loop {
            if read >= budget {
                return Ok(true);
            }
            let n = open.file.read_at(&mut self.buf, open.read_pos)?;
            if n == 0 {
                return Ok(false);
            }
            open.read_pos += n as u64;
            read += n as u64;
            self.bytes_read += n as u64;
            self.last_data = Instant::now();
            self.assembler.push(&self.buf[..n], emit);
        }
    }

    /// Completes the pending record once the writer has been quiet for
    /// `quiet` (a stack trace is written at once; silence means it is done).
    pub fn flush_if_quiet(&mut self, quiet: Duration, emit: &mut dyn FnMut(Record)) {
        if self.assembler.has_pending() && self.last_data.elapsed() >= quiet {
            self.assembler.flush(false, emit);
        }
    }

    /// Whether a record is waiting for more input or for quiet.
    pub fn has_pending(&self) -> bool {
        self.assembler.has_pending()
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
mod tests {
    use super::*;
    use crate::config::RecordStart;
    use crate::sources::Interest;
    use std::io::Write;

    fn follower(path: &Path) -> Follower {
        Follower::new(
            "s",
            path.to_path_buf(),
            Assembly { start: RecordStart::Line, max_bytes: 4096, max_lines: 10, interest: Interest::All },
        )
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    fn poll(f: &mut Follower) -> Vec<String> {
        let mut out = Vec::new();
        // A tiny budget: every path through poll() is taken in small steps.
        while f.poll(7, &mut |r| out.push(r.text())).unwrap() {}
        f.flush_if_quiet(Duration::ZERO, &mut |r| out.push(r.text()));
        out
    }

    #[test]
    fn follows_appends_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.log");
        append(&p, "old history\n");
        let mut f = follower(&p);
        f.start(None, StartAt::End, &mut |_| panic!("history is skipped")).unwrap();
        append(&p, "one\n");
        assert_eq!(poll(&mut f), ["one"]);
        append(&p, "two\n");
        std::fs::rename(&p, dir.path().join("server.log.1")).unwrap();
        append(&p, "three\n");
        assert_eq!(poll(&mut f), ["two", "three"]);
        std::fs::write(&p, "").unwrap();
        append(&p, "four\n");
        assert_eq!(poll(&mut f), ["four"]);
    }

    #[test]
    fn file_appearing_later_is_read_from_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("late.log");
        let mut f = follower(&p);
        f.start(None, StartAt::End, &mut |_| {}).unwrap();
        assert!(poll(&mut f).is_empty());
        append(&p, "hello\n");
        assert_eq!(poll(&mut f), ["hello"]);
    }

    #[test]
    fn restart_from_checkpoint_neither_replays_nor_skips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "a\nb\n");
        let mut f = follower(&p);
        f.start(None, StartAt::Beginning, &mut |_| {}).unwrap();
        assert_eq!(poll(&mut f), ["a", "b"]);
        let cp = f.checkpoint().unwrap();
        append(&p, "c\n");
        let mut g = follower(&p);
        let mut seen = Vec::new();
        g.start(Some(&cp), StartAt::End, &mut |r| seen.push(r.text())).unwrap();
        seen.extend(poll(&mut g));
        assert_eq!(seen, ["c"]);
    }

    #[test]
    fn rotation_while_down_finishes_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "first line long enough\n");
        let mut f = follower(&p);
        f.start(None, StartAt::Beginning, &mut |_| {}).unwrap();
        poll(&mut f);
        let cp = f.checkpoint().unwrap();
        append(&p, "written before rotation\n");
        std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
        append(&p, "new file\n");
        let mut g = follower(&p);
        let mut seen = Vec::new();
        g.start(Some(&cp), StartAt::End, &mut |r| seen.push(r.text())).unwrap();
        seen.extend(poll(&mut g));
        assert_eq!(seen, ["written before rotation", "new file"]);
    }
}
