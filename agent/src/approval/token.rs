//! Approval tokens: HMAC-SHA256 over what a link decides, with a key that
//! never leaves the host.
//!
//! A token binds the approval id, the hash of the exact plan and previews
//! that were mailed, the decision (approve or deny), the expiry and the
//! approver it was sent to. Changing any of them, or using one approval's
//! token on another, fails verification; comparison is constant-time.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Decision;
use crate::digest::hex;

const KEY_BYTES: usize = 32;

/// Signs and verifies approval tokens.
#[derive(Clone)]
pub struct Signer {
    key: [u8; KEY_BYTES],
}

// The key never appears in logs or panics.
impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

/// The key file could not be read or created.
#[derive(Debug, thiserror::Error)]
#[error("approval key {path}: {message}")]
pub struct KeyError {
    pub path: PathBuf,
    pub message: String,
}

impl Signer {
    /// Where the key lives in the state directory.
    pub fn key_path(state_dir: &Path) -> PathBuf {
        state_dir.join("approval.key")
    }

    /// Loads the key, creating it (mode 0600, from the kernel's random
    /// source) on first start. A key readable by others is refused.
    pub fn load_or_create(state_dir: &Path) -> Result<Signer, KeyError> {
        let path = Self::key_path(state_dir);
        let err = |message: String| KeyError { path: path.clone(), message };
        match std::fs::metadata(&path) {
            Ok(meta) => {
                if meta.mode() & 0o077 != 0 {
                    return Err(err(format!(
                        "mode {:o} lets others read it; chmod 600 it (or delete it to make a new one, which voids every link already mailed)",
                        meta.mode() & 0o777
                    )));
                }
                Self::load(&path)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_BYTES];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut key))
                    .map_err(|e| err(format!("reading /dev/urandom: {e}")))?;
                std::fs::create_dir_all(state_dir).map_err(|e| err(e.to_string()))?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| err(format!("creating: {e}")))?;
                f.write_all(hex(&key).as_bytes()).and_then(|()| f.sync_all()).map_err(|e| err(e.to_string()))?;
                Ok(Signer { key })
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Loads an existing key (the CLI; it never creates one).
    pub fn load(path: &Path) -> Result<Signer, KeyError> {
        let err = |message: String| KeyError { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let bytes =
            unhex(text.trim()).filter(|b| b.len() == KEY_BYTES).ok_or_else(|| err("not a 64-digit hex key".into()))?;
        let mut key = [0u8; KEY_BYTES];
        key.copy_from_slice(&bytes);
        Ok(Signer { key })
    }

    fn mac(&self, id: &str, plan_hash: &str, decision: Decision, expires: i64, approver: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        // Length-prefixed fields, so no two field lists serialise alike.
        for field in [id, plan_hash, decision.as_str(), &expires.to_string(), approver] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac
    }

    /// The hex token for one link.
    pub fn sign(&self, id: &str, plan_hash: &str, decision: Decision, expires: i64, approver: &str) -> String {
        hex(&self.mac(id, plan_hash, decision, expires, approver).finalize().into_bytes())
    }

    /// Whether `token` is the token for these fields (constant-time).
    pub fn verify(
        &self,
        id: &str,
        plan_hash: &str,
        decision: Decision,
        expires: i64,
        approver: &str,
        token: &str,
    ) -> bool {
        match unhex(token) {
            Some(bytes) => self.mac(id, plan_hash, decision, expires, approver).verify_slice(&bytes).is_ok(),
            None => false,
        }
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let s = Signer::load_or_create(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(Signer::key_path(dir.path())).unwrap().mode() & 0o777, 0o600);
        let t = s.sign("id1", "hash", Decision::Approve, 100, "a@x");
        assert!(s.verify("id1", "hash", Decision::Approve, 100, "a@x", &t));
        assert!(!s.verify("id2", "hash", Decision::Approve, 100, "a@x", &t));
        assert!(!s.verify("id1", "hash2", Decision::Approve, 100, "a@x", &t));
        assert!(!s.verify("id1", "hash", Decision::Deny, 100, "a@x", &t));
        assert!(!s.verify("id1", "hash", Decision::Approve, 101, "a@x", &t));
        assert!(!s.verify("id1", "hash", Decision::Approve, 100, "b@x", &t));
        assert!(!s.verify("id1", "hash", Decision::Approve, 100, "a@x", "zz"));
        let again = Signer::load_or_create(dir.path()).unwrap();
        assert!(again.verify("id1", "hash", Decision::Approve, 100, "a@x", &t), "the key persists");
    }

    #[test]
    fn readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        Signer::load_or_create(dir.path()).unwrap();
        std::fs::set_permissions(Signer::key_path(dir.path()), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Signer::load_or_create(dir.path()).unwrap_err().to_string().contains("chmod 600"));
    }
}
