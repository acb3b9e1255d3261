//! Where each source was read up to, kept in the state directory so that a
//! restart neither replays nor skips lines.
//!
//! A file is identified by its inode plus a fingerprint of its first bytes:
//! the inode alone is reused after deletion, and the first bytes alone are the
//! same in two files that start with the same header.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::{read_json, write_json_atomic, StateError};

/// How many leading bytes identify a file.
pub const FINGERPRINT_BYTES: usize = 256;

/// The identity of a log file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub inode: u64,
    /// Hex SHA-256 of the first `fingerprint_len` bytes.
    pub fingerprint: String,
    pub fingerprint_len: usize,
}

impl FileId {
    /// Reads the identity of an open file. A file shorter than
    /// [`FINGERPRINT_BYTES`] is fingerprinted over what it has.
    pub fn of(file: &File) -> io::Result<FileId> {
        use std::os::unix::fs::MetadataExt;
        let inode = file.metadata()?.ino();
        let (fingerprint, fingerprint_len) = fingerprint(file, FINGERPRINT_BYTES)?;
        Ok(FileId { inode, fingerprint, fingerprint_len })
    }

    /// Whether `file` is (still) this file: same inode and the same first
    /// bytes. A file that was truncated and rewritten fails the second test.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        if file.metadata()?.ino() != self.inode {
            return Ok(false);
        }
        let (fp, len) = fingerprint(file, self.fingerprint_len)?;
        Ok(len == self.fingerprint_len && fp == self.fingerprint)
    }
}

impl FileId {
    /// Whether content beginning with `head` is this file's (same first
    /// bytes; the inode is not compared: a copy has its own).
    pub fn starts(&self, head: &[u8]) -> bool {
        head.len() >= self.fingerprint_len && hex(&Sha256::digest(&head[..self.fingerprint_len])) == self.fingerprint
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn fingerprint(file: &File, len: usize) -> io::Result<(String, usize)> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok((hex(&Sha256::digest(&buf[..got])), got))
}

/// One source's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub file: FileId,
    pub offset: u64,
}

/// All sources' positions, by source name.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    pub sources: BTreeMap<String, Checkpoint>,
}

impl Checkpoints {
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join("checkpoints.json")
    }

    /// Loads the checkpoints; a missing file means a first start.
    pub fn load(state_dir: &Path) -> Result<Checkpoints, StateError> {
        Ok(read_json(&Self::path_in(state_dir))?.unwrap_or_default())
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), StateError> {
        write_json_atomic(&Self::path_in(state_dir), self)
    }
}
