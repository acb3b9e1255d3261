//! The agent's state directory: small JSON documents replaced atomically.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::fsutil::write_atomic;

/// A state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading state file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("state file {path} is corrupt: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("writing state file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Reads a JSON state file; `None` if it does not exist yet.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path: path.to_path_buf(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Read { path: path.to_path_buf(), source }),
    }
}

/// Writes a JSON state file atomically, creating the state directory if needed.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).expect("state types serialise");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Write { path: path.to_path_buf(), source })?;
    }
    write_atomic(path, &bytes).map_err(|source| StateError::Write { path: path.to_path_buf(), source })
}

/// The lock that makes one daemon the only one on its state directory: two
/// daemons on one configuration would apply every fix twice. Held for the
/// life of the value; the kernel drops it when the process dies, however.
pub struct StateLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

/// Takes the state directory's lock, or says which process holds it. Also
/// refuses a state directory that someone else could write into (it holds
/// the approval key and the files the agent replaces as root).
pub fn lock(state_dir: &Path) -> anyhow::Result<StateLock> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(state_dir)
        .map_err(|e| anyhow::anyhow!("reading state directory {}: {e}", state_dir.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        anyhow::bail!(
            "state directory {} must be a directory owned by uid {me} that nobody else can write (it is {}, uid {}, mode {:o})",
            state_dir.display(),
            if meta.file_type().is_symlink() { "a symbolic link" } else if meta.is_dir() { "a directory" } else { "not a directory" },
            meta.uid(),
            meta.mode() & 0o7777
        );
    }
    let path = state_dir.join("lock");
    let file = crate::fsutil::open_own(&path, std::fs::OpenOptions::new().read(true).write(true))
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    let mut file = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.rewind().and_then(|()| file.read_to_string(&mut pid));
            anyhow::bail!(
                "another pipemedic (pid {}) already runs on state directory {}; one daemon per state directory",
                pid.trim(),
                state_dir.display()
            );
        }
        Err((_, e)) => anyhow::bail!("locking {}: {e}", path.display()),
    };
    // Who holds it, for the message above (best effort).
    let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(*file, "{}", std::process::id()));
    Ok(StateLock { _file: file })
}
