//! The audit journal: one JSON object per line, appended to
//! `<state_dir>/audit.jsonl`, for every fired rule, plan, preview and
//! decision. It is what a person reads to learn what the agent did and why.
//!
//! A failed write (full disk, read-only state dir) never stops the agent: the
//! entry is kept in a bounded backlog, retried on the next write, and the
//! failure goes to the agent's log.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub mod entry;

pub use crate::mail::MailEntry;
pub use entry::{ApprovalEntry, ApprovalState, Entry, Note, PlanEntry};

const MAX_BACKLOG: usize = 10_000;

/// Where audit entries go. Cheap to clone: the daemon's worker, its HTTP
/// listener and its mail sender write to the same journal.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Mutex<Journal>>,
}

struct Journal {
    path: Option<PathBuf>,
    file: Option<File>,
    backlog: VecDeque<String>,
    failed_writes: u64,
}

impl Audit {
    /// The journal in `state_dir`.
    pub fn open(state_dir: &Path) -> Audit {
        Audit::with_path(Some(state_dir.join("audit.jsonl")))
    }

    /// A journal that keeps nothing (replay and rule tests print instead).
    pub fn discard() -> Audit {
        Audit::with_path(None)
    }

    fn with_path(path: Option<PathBuf>) -> Audit {
        let journal = Journal { path, file: None, backlog: VecDeque::new(), failed_writes: 0 };
        Audit { inner: Arc::new(Mutex::new(journal)) }
    }

    /// Entries that could not be written at the first try.
    pub fn failed_writes(&self) -> u64 {
        self.inner.lock().expect("audit lock").failed_writes
    }

    /// Journals one entry and logs it ([`Entry::log`]): whatever the agent
    /// journals, its log says too.
    pub fn emit(&self, entry: &Entry) {
        entry.log();
        let mut j = self.inner.lock().expect("audit lock");
        let Some(path) = j.path.clone() else { return };
        let mut line = serde_json::to_string(entry).expect("audit entries serialise");
        line.push('\n');
        j.backlog.push_back(line);
        if let Err(e) = j.flush_backlog(&path) {
            j.failed_writes += 1;
            j.file = None;
            tracing::error!(path = %path.display(), backlog = j.backlog.len(), "writing the audit journal failed, will retry: {e}");
            while j.backlog.len() > MAX_BACKLOG {
                j.backlog.pop_front();
            }
        }
    }
}

impl Journal {
    fn flush_backlog(&mut self, path: &Path) -> std::io::Result<()> {
        if self.file.is_none() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = crate::fsutil::open_own(path, std::fs::OpenOptions::new().read(true).append(true))?;
            terminate_torn_line(&mut file, path)?;
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        while let Some(line) = self.backlog.front() {
            // A write cut short by a full disk would leave half a line;
            // cut it off so the journal stays one JSON object per line and
            // the retry writes the whole entry.
            let before = file.metadata()?.len();
            if let Err(e) = file.write_all(line.as_bytes()) {
                let _ = file.set_len(before);
                return Err(e);
            }
            self.backlog.pop_front();
        }
        file.sync_data()
    }
}

/// A crash or a full disk in the middle of a write can leave the journal's
/// last line without its end; the next entry would then be glued to it and
/// both be unreadable. The torn bytes are kept (a reader skips what does not
/// parse) and the line is ended before anything new is written.
fn terminate_torn_line(file: &mut File, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut last = [0u8];
    if len == 0 || (file.read_exact_at(&mut last, len - 1).is_ok() && last[0] == b'\n') {
        return Ok(());
    }
    tracing::warn!(path = %path.display(), "the audit journal's last line was cut off (a crash or a full disk); ending it so the next entry stays readable");
    file.write_all(b"\n")
}

/// The journal's last `max` bytes (whole lines), or nothing: what a
/// restarting agent reads to learn what it did just before it stopped.
pub fn tail(state_dir: &Path, max: u64) -> Vec<u8> {
    crate::fsutil::read_tail(&state_dir.join("audit.jsonl"), max).map(|t| t.bytes).unwrap_or_default()
}

/// Per source, the records the journal's `tail` says were decided: (inode,
/// offset of the furthest decided record) for each file, so that records
/// decided after the last checkpoint are not decided again.
pub fn decided_records(tail: &[u8]) -> std::collections::HashMap<String, Vec<(u64, u64)>> {
    let mut out: std::collections::HashMap<String, Vec<(u64, u64)>> = Default::default();
    for entry in Entry::read(tail) {
        // A plan that was started counts as decided even if the agent died
        // before the decision was written: it is reported, never re-run.
        let (source, inode, offset) = match entry {
            Entry::Decision(o) | Entry::DecisionSummary(o) => (o.source, o.inode, o.offset),
            Entry::PlanStarted(PlanEntry { source: Some(s), inode: Some(i), offset: Some(o), .. }) => (s, i, o),
            _ => continue,
        };
        if inode == 0 {
            continue;
        }
        let files = out.entry(source).or_default();
        match files.iter_mut().find(|(i, _)| *i == inode) {
            Some((_, at)) => *at = (*at).max(offset),
            None => files.push((inode, offset)),
        }
    }
    out
}

/// The journal records what the mail sender did with each mail.
impl crate::mail::Journal for Audit {
    fn queued(&self, mail: MailEntry) {
        self.emit(&Entry::MailQueued(mail));
    }
    fn sent(&self, mail: MailEntry) {
        self.emit(&Entry::MailSent(mail));
    }
    fn failed(&self, mail: MailEntry) {
        self.emit(&Entry::MailFailed(mail));
    }
}
