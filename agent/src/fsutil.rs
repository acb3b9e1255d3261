//! Files: atomic replacement (every write the agent makes goes through
//! here), backups, and reading the end of a log.
//!
//! The agent runs as root beside directories that service users own (the
//! kafka user owns `config/`, tomcat the consumer's). Whoever owns such a
//! directory can plant a symbolic link, a hard link or a FIFO under any name
//! in it at any time. So every edit works through a handle on the directory
//! and never follows or reuses a name it did not just create itself:
//! the target is read with `O_NOFOLLOW` and must be a regular file with one
//! link; the temporary file is created with `O_CREAT | O_EXCL | O_NOFOLLOW`
//! under a random name, and only that file's descriptor is chmod'ed and
//! chown'ed; the rename happens inside the directory handle.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// The mode of a file the agent creates where none was: only root reads it.
const NEW_FILE_MODE: u32 = 0o600;

/// An open directory and the name of an entry in it: every operation on the
/// entry goes through the handle, so a directory renamed or swapped for a
/// symbolic link after we opened it changes nothing.
struct Entry<'a> {
    dir: OwnedFd,
    name: &'a OsStr,
}

fn entry(path: &Path) -> io::Result<Entry<'_>> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no file", path.display())))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
        .map_err(|e| io::Error::new(e.kind(), format!("opening directory {}: {e}", dir.display())))?;
    Ok(Entry { dir, name })
}

fn os(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Why the agent will not edit this entry, if it will not: only a regular
/// file with a single link is edited. A symbolic link would make the edit
/// land elsewhere (or replace the link and leave its target stale); a hard
/// link's other names would keep the old content.
fn refuse_unless_plain(path: &Path, st: &nix::sys::stat::FileStat) -> io::Result<()> {
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if kind == SFlag::S_IFLNK {
        let to = fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_else(|_| "?".into());
        return Err(io::Error::other(format!(
            "{} is a symbolic link (to {to}); pipemedic reads and edits only regular files: configure the file it points to",
            path.display()
        )));
    }
    if kind != SFlag::S_IFREG {
        return Err(io::Error::other(format!(
            "{} is not a regular file (a FIFO, device or directory); not touching it",
            path.display()
        )));
    }
    if st.st_nlink > 1 {
        return Err(io::Error::other(format!(
            "{} has {} hard links; an edit would leave the other names with the old content, so a person must decide",
            path.display(),
            st.st_nlink
        )));
    }
    Ok(())
}

/// The most the agent reads of a file it edits or a service user owns
/// (properties, pid files, hosts): such files are a few KiB; a bigger one is
/// refused rather than read into memory.
pub const MAX_READ: u64 = 4 << 20;

/// Opens an entry without following a symbolic link in its last component
/// and without blocking on a FIFO, and refuses anything but a regular file
/// (with one link too, when it is to be edited).
fn open_regular(path: &Path, for_edit: bool) -> io::Result<File> {
    let e = entry(path)?;
    let fd = openat(
        e.dir.as_fd(),
        e.name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    let fd = match fd {
        Ok(fd) => fd,
        // O_NOFOLLOW on a symbolic link: say what it is.
        Err(Errno::ELOOP) => {
            let st = fstatat(e.dir.as_fd(), e.name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(os)?;
            refuse_unless_plain(path, &st)?;
            return Err(os(Errno::ELOOP));
        }
        Err(err) => return Err(os(err)),
    };
    let f = File::from(fd);
    let mut st = nix::sys::stat::fstat(f.as_fd()).map_err(os)?;
    if !for_edit {
        st.st_nlink = 1; // other names change nothing for a reader
    }
    refuse_unless_plain(path, &st)?;
    Ok(f)
}

fn read_bounded(mut f: File, path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    (&mut f).take(MAX_READ + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_READ {
        return Err(io::Error::other(format!(
            "{} is larger than {} MiB; a file of this kind is a few KiB, so it is not read",
            path.display(),
            MAX_READ >> 20
        )));
    }
    Ok(bytes)
}

/// Reads a file the agent is about to edit. Refuses anything but a regular
/// file with one link, and never follows a symbolic link in the last
/// component (nor blocks on a planted FIFO, nor reads more than
/// [`MAX_READ`]).
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    read_bounded(open_regular(path, true)?, path)
}

/// Reads a text file that another user owns or could replace (a service's
/// properties or pid file), as [`read_regular`] does for edits but without
/// the one-link rule: the worker never blocks on it, never follows a link
/// planted in its place, and never reads more than [`MAX_READ`].
pub fn read_foreign(path: &Path) -> io::Result<String> {
    let bytes = read_bounded(open_regular(path, false)?, path)?;
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{} is not UTF-8 text", path.display())))
}

/// A name for a temporary file beside `name` that nobody can predict.
fn temp_name(name: &OsStr) -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nonce = (std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), std::time::SystemTime::now());
    let random = std::collections::hash_map::RandomState::new().hash_one(nonce);
    format!(".{}.pipemedic-{random:016x}", name.to_string_lossy())
}

/// Replaces `path` with `contents` atomically: write a temporary file in the
/// same directory, fsync it, rename it over `path`, fsync the directory.
/// A reader sees the old or the new content, never a mix; a crash leaves the
/// old file. The new file keeps the old one's permissions and owner (a new
/// file is 0600). An existing `path` must be a regular file with one link.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let e = entry(path)?;
    let old = match fstatat(e.dir.as_fd(), e.name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => {
            refuse_unless_plain(path, &st)?;
            Some(st)
        }
        Err(Errno::ENOENT) => None,
        Err(err) => return Err(os(err)),
    };
    let mode = old.map_or(NEW_FILE_MODE, |st| st.st_mode & 0o7777);
    // O_EXCL fails on any existing name, a symbolic link included (dangling
    // or not), so nothing planted is ever opened; a clash just draws again.
    let (tmp, fd) = (0..16)
        .find_map(|_| {
            let tmp = temp_name(e.name);
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            match openat(e.dir.as_fd(), tmp.as_str(), flags, Mode::from_bits_truncate(NEW_FILE_MODE)) {
                Err(Errno::EEXIST) => None,
                other => Some(other.map(|fd| (tmp, fd))),
            }
        })
        .unwrap_or(Err(Errno::EEXIST))
        .map_err(|err| {
            io::Error::new(os(err).kind(), format!("creating a temporary file beside {}: {err}", path.display()))
        })?;
    let result = (|| {
        let mut f = File::from(fd);
        f.write_all(contents)?;
        // Only the file we just created is chmod'ed and chown'ed, through its
        // descriptor: nothing else can be reached by these calls.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some(st) = &old {
            // Keeping the owner needs privileges we may not have; a file we
            // could write but not chown keeps our ownership.
            let _ = std::os::unix::fs::fchown(&f, Some(st.st_uid), Some(st.st_gid));
        }
        f.sync_all()?;
        renameat(e.dir.as_fd(), tmp.as_str(), e.dir.as_fd(), e.name).map_err(os)?;
        nix::unistd::fsync(e.dir.as_fd()).map_err(os)
    })();
    if result.is_err() {
        let _ = unlinkat(e.dir.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    result
}

/// Opens a file in the agent's state directory for appending (the audit
/// journal, a service's output), creating it 0600 if it is missing; never
/// through a symbolic link.
pub fn open_append(path: &Path) -> io::Result<File> {
    open_own(path, fs::OpenOptions::new().append(true))
}

/// Opens (creating 0600) a file of the agent's own, with `options` for the
/// access; never through a symbolic link, never blocking on a FIFO, and only
/// a regular file.
pub fn open_own(path: &Path, options: &mut fs::OpenOptions) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = options
        .create(true)
        .mode(NEW_FILE_MODE)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other(format!("{} is not a regular file", path.display())));
    }
    Ok(f)
}

/// Copies the current content of `path` into `backup_dir` under a name that
/// says when and what it was, and returns the backup's path.
pub fn backup(path: &Path, backup_dir: &Path, contents: &[u8]) -> io::Result<PathBuf> {
    fs::create_dir_all(backup_dir)?;
    let flat: String = path
        .to_string_lossy()
        .trim_start_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect();
    let stamp = chrono::Local::now().format("%Y%m%dT%H%M%S%.3f");
    let target = backup_dir.join(format!("{stamp}-{flat}"));
    write_atomic(&target, contents)?;
    Ok(target)
}

/// The end of a file: at most `max` bytes, starting at a whole line.
pub struct Tail {
    pub bytes: Vec<u8>,
    /// The file was longer than `max` (what came before was not read).
    pub cut: bool,
    pub modified: Option<std::time::SystemTime>,
}

/// Reads the last `max` bytes of `path`; if that cuts a line, from the next
/// line on (a line's end is no line to match).
pub fn read_tail(path: &Path, max: u64) -> io::Result<Tail> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    let cut = meta.len() > max;
    f.seek(SeekFrom::Start(meta.len().saturating_sub(max)))?;
    let mut bytes = Vec::new();
    f.take(max).read_to_end(&mut bytes)?;
    if cut {
        let start = memchr::memchr(b'\n', &bytes).map_or(bytes.len(), |i| i + 1);
        bytes.drain(..start);
    }
    Ok(Tail { bytes, cut, modified: meta.modified().ok() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_starts_at_a_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, "first line\nsecond line\nthird\n").unwrap();
        let t = read_tail(&path, 16).unwrap();
        assert!(t.cut);
        assert_eq!(t.bytes, b"third\n", "the cut \"line\\n\" of the second line is dropped");
        let whole = read_tail(&path, 1 << 20).unwrap();
        assert!(!whole.cut);
        assert_eq!(whole.bytes.len(), 29);
    }

    #[test]
    fn replaces_content_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        fs::write(&p, "old\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&p, b"new\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new\n");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
    }

    #[test]
    fn a_symlinked_target_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, "root only\n").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("consumer.properties");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let read = read_regular(&link).unwrap_err().to_string();
        assert!(read.contains("is a symbolic link"), "{read}");
        let write = write_atomic(&link, b"max.poll.records=1\n").unwrap_err().to_string();
        assert!(write.contains("is a symbolic link"), "{write}");
        assert_eq!(fs::read_to_string(&secret).unwrap(), "root only\n");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is left as it was");
    }

    #[test]
    fn hard_links_fifos_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        fs::write(&shared, "x=1\n").unwrap();
        fs::hard_link(&shared, dir.path().join("other-name")).unwrap();
        assert!(read_regular(&shared).unwrap_err().to_string().contains("2 hard links"));
        assert!(write_atomic(&shared, b"x=2\n").is_err());
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        // Opening a FIFO without a writer would block; it must not.
        assert!(read_regular(&fifo).unwrap_err().to_string().contains("not a regular file"));
        assert!(write_atomic(dir.path(), b"").is_err(), "a directory is no file to replace");
    }

    #[test]
    fn planted_names_beside_the_target_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep\n").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        let target = dir.path().join("server.properties");
        fs::write(&target, "a=1\n").unwrap();
        // The names earlier versions used, and a few random-looking ones.
        for name in [
            format!(".server.properties.pipemedic-tmp-{}", std::process::id()),
            ".server.properties.pipemedic-0".into(),
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        for _ in 0..50 {
            write_atomic(&target, b"a=2\n").unwrap();
        }
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep\n");
        assert_eq!(fs::metadata(&victim).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&target).unwrap(), "a=2\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4, "no temporary file left behind");
    }

    #[test]
    fn temp_names_are_not_predictable() {
        let a = temp_name(OsStr::new("hosts"));
        let b = temp_name(OsStr::new("hosts"));
        assert_ne!(a, b);
        assert!(a.starts_with(".hosts.pipemedic-") && !a.contains(&std::process::id().to_string()));
    }

    #[test]
    fn a_new_file_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"{}").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let log = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&p, &log).unwrap();
        assert!(open_append(&log).is_err(), "an append never follows a planted link");
    }

    #[test]
    fn backup_keeps_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let b = backup(Path::new("/etc/hosts"), &dir.path().join("backups"), b"old").unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"old");
        assert!(b.file_name().unwrap().to_string_lossy().ends_with("etc_hosts"));
    }
}
