//! The files rotation leaves next to a log: `server.log.1`, `server.log.2.gz`,
//! `server.log-20261125`, Kafka's `server.log.2026-11-25-10`. After the agent
//! was stopped, every one of them written after its checkpoint may hold
//! lines it has not read.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::checkpoint::FileId;

/// How a rotated file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Plain,
    Gzip,
    /// Compressed in a format the agent does not read (named).
    Unreadable(&'static str),
}

/// A file rotation made from a log.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub path: PathBuf,
    pub stored: Stored,
    pub modified: SystemTime,
    pub inode: u64,
}

impl Rotated {
    /// The file's content, decompressed.
    pub fn open(&self) -> io::Result<Box<dyn Read>> {
        let file = File::open(&self.path)?;
        Ok(match self.stored {
            Stored::Plain => Box::new(file),
            Stored::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file))),
            Stored::Unreadable(how) => {
                return Err(io::Error::other(format!("compressed with {how}, which the agent cannot read")))
            }
        })
    }

    /// Whether this is the file `id` names: its content starts with the
    /// bytes `id` fingerprinted (whatever its inode: a copy or a compressed
    /// copy has another).
    pub fn is(&self, id: &FileId) -> bool {
        let Ok(mut content) = self.open() else { return false };
        let mut head = Vec::with_capacity(id.fingerprint_len);
        if content.by_ref().take(id.fingerprint_len as u64).read_to_end(&mut head).is_err() {
            return false;
        }
        id.starts(&head)
    }
}

/// The rotated files next to `log`, oldest first (by their names where
/// those say it, else by when they were last written). Anything else next to it (`server.log.lck`, `server.log.bak`)
/// is not one.
pub fn beside(log: &Path) -> io::Result<Vec<Rotated>> {
    let (Some(dir), Some(base)) = (log.parent(), log.file_name()) else { return Ok(Vec::new()) };
    let base = base.to_string_lossy();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(suffix) = name.strip_prefix(&*base) else { continue };
        let Some(stored) = rotation_suffix(suffix) else { continue };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        out.push(Rotated {
            path: entry.path(),
            stored,
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            inode: meta.ino(),
        });
    }
    // The names say the order: `.2` is older than `.1` (logrotate renumbers
    // on every rotation), dated names sort by date. Modification times do
    // not always (a copy or a compression that does not keep the time has
    // the time it was made); they decide only between names that say
    // nothing, and between a numbered and a dated name.
    let tag = |r: &Rotated| {
        let name = r.path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        name[base.len()..].trim_start_matches(['.', '-']).split('.').next().unwrap_or("").to_string()
    };
    let number = |tag: &str| tag.parse::<u64>().ok().filter(|n| *n < 10_000);
    let numbered = out.iter().filter(|r| number(&tag(r)).is_some()).count();
    if numbered == out.len() {
        out.sort_by_cached_key(|r| std::cmp::Reverse(number(&tag(r))));
    } else if numbered == 0 {
        out.sort_by_cached_key(|r| (tag(r), r.modified));
    } else {
        out.sort_by_cached_key(|r| (r.modified, std::cmp::Reverse(number(&tag(r))), tag(r)));
    }
    Ok(out)
}

/// How a file whose name is the log's plus `suffix` is stored, if the
/// suffix is one rotation makes: `.N`, `-DATE`, `.DATE-HH`, each optionally
/// compressed.
fn rotation_suffix(suffix: &str) -> Option<Stored> {
    let (rest, stored) = [
        (".gz", Stored::Gzip),
        (".bz2", Stored::Unreadable("bzip2")),
        (".xz", Stored::Unreadable("xz")),
        (".zst", Stored::Unreadable("zstd")),
        (".lz4", Stored::Unreadable("lz4")),
    ]
    .iter()
    .find_map(|(ext, how)| suffix.strip_suffix(ext).map(|r| (r, *how)))
    .unwrap_or((suffix, Stored::Plain));
    let tag = rest.strip_prefix('.').or_else(|| rest.strip_prefix('-'))?;
    let plausible = !tag.is_empty()
        && tag.bytes().any(|b| b.is_ascii_digit())
        && tag.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
    plausible.then_some(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_names() {
        for (suffix, want) in [
            (".1", Some(Stored::Plain)),
            (".2.gz", Some(Stored::Gzip)),
            ("-20261125", Some(Stored::Plain)),
            (".2026-11-25-10", Some(Stored::Plain)),
            (".3.xz", Some(Stored::Unreadable("xz"))),
            (".lck", None),
            (".bak", None),
            ("", None),
            ("x.1", None),
        ] {
            assert_eq!(rotation_suffix(suffix), want, "{suffix}");
        }
    }

    #[test]
    fn numbered_and_dated_names_say_the_order_whatever_the_times() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        // Made newest first, so that modification times say the opposite.
        for name in ["server.log.1", "server.log.2.gz", "server.log.3"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
        let names = |v: Vec<Rotated>| -> Vec<String> {
            v.iter().map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned()).collect()
        };
        assert_eq!(names(beside(&log).unwrap()), ["server.log.3", "server.log.2.gz", "server.log.1"]);
        let dated = tempfile::tempdir().unwrap();
        for name in ["server.log.2026-11-25-11", "server.log.2026-11-25-10"] {
            std::fs::write(dated.path().join(name), "x").unwrap();
        }
        assert_eq!(
            names(beside(&dated.path().join("server.log")).unwrap()),
            ["server.log.2026-11-25-10", "server.log.2026-11-25-11"]
        );
    }
}
