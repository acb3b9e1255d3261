//! Files: atomic replacement (every write the agent makes goes through
//! here), backups, and reading the end of a log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents` atomically: write a temporary file in the
/// same directory, fsync it, rename it over `path`, fsync the directory.
/// A reader sees the old or the new content, never a mix; a crash leaves the
/// old file. The new file keeps the old one's permissions and owner.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(".{}.pipemedic-tmp-{}", name.to_string_lossy(), std::process::id()));
    let old = fs::metadata(path).ok();
    let mode = old.as_ref().map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(contents)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some(m) = &old {
            // Keeping the owner needs privileges we may not have; a file we
            // could write but not chown keeps our ownership.
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
    use std::io::{Read, Seek, SeekFrom};
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
    fn backup_keeps_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let b = backup(Path::new("/etc/hosts"), &dir.path().join("backups"), b"old").unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"old");
        assert!(b.file_name().unwrap().to_string_lossy().ends_with("etc_hosts"));
    }
}
