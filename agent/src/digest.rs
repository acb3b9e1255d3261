//! Ids and digests: random hex ids for approvals, plans and mails, and the
//! content hashes that previews bind file edits to. At the bottom: nothing
//! here knows any other module.

use std::io::Read;

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `bytes` random bytes as hex: ids for approvals, plans, mails, holds.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).is_ok();
    if !ok {
        // Unique enough for an id (not a secret): time and pid.
        let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u128 ^ ((std::process::id() as u128) << 64);
        buf.iter_mut().enumerate().for_each(|(i, b)| *b = (t >> ((i % 16) * 8)) as u8);
    }
    hex(&buf)
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}
