//! `hosts`: ensure a `IP name` line in the hosts file (runbook K1).
//!
//! Idempotent: a name already mapped to the same address is a no-op; a name
//! mapped to a *different* address is left alone and reported, because
//! someone put it there on purpose. Every other line and comment is kept
//! byte for byte; the new line is appended.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{apply_file_edit, read_for_edit, Action, ActionError, Cx, Guard, Preview, Staged, Step};
use crate::actions::step::{Refusal, StepSpec};
use crate::digest::sha256_hex;
use crate::types::{parse_host_address, HostName};

/// What the hosts file says about `host`.
enum Mapping {
    Absent,
    Same,
    Other(String),
}

fn classify(content: &str, host: &HostName, ip: Ipv4Addr) -> Mapping {
    let mut found_other = None;
    for line in content.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(addr) = fields.next() else { continue };
        if fields.any(|name| name.eq_ignore_ascii_case(host.as_str())) {
            if addr.parse::<Ipv4Addr>().ok() == Some(ip) {
                return Mapping::Same;
            }
            found_other.get_or_insert_with(|| addr.to_string());
        }
    }
    found_other.map_or(Mapping::Absent, Mapping::Other)
}

fn entry_line(host: &HostName, ip: Ipv4Addr) -> String {
    format!("{ip}\t{host}\t# added by pipemedic (runbook K1)\n")
}

fn doing(path: &Path, host: &HostName, ip: Ipv4Addr) -> String {
    format!("mapping {host} to {ip} in {}", path.display())
}

pub fn preview(path: &Path, host: &HostName, ip: Ipv4Addr, staged: &Staged) -> Result<Preview, ActionError> {
    let doing = doing(path, host, ip);
    let bytes = staged.read(path, &doing)?;
    let content = String::from_utf8_lossy(&bytes);
    match classify(&content, host, ip) {
        Mapping::Same => Ok(Preview {
            text: format!("{} already maps {host} to {ip}", path.display()),
            noop: true,
            guard: Guard::None,
        }),
        Mapping::Other(addr) => Err(ActionError::new(
            doing,
            format!(
                "{} already maps {host} to {addr}; not adding a conflicting line, a person must decide",
                path.display()
            ),
        )),
        Mapping::Absent => {
            let mut new = bytes.clone();
            if !new.is_empty() && !new.ends_with(b"\n") {
                new.push(b'\n');
            }
            new.extend_from_slice(entry_line(host, ip).as_bytes());
            Ok(Preview {
                text: format!("--- {p}\n+++ {p}\n+{}", entry_line(host, ip).trim_end(), p = path.display()),
                noop: false,
                guard: Guard::FileEdit { path: path.to_path_buf(), sha256: sha256_hex(&bytes), old: bytes, new },
            })
        }
    }
}

pub fn apply(
    path: &Path,
    host: &HostName,
    ip: Ipv4Addr,
    preview: &Preview,
    backups: &Path,
) -> Result<String, ActionError> {
    let backup = apply_file_edit(preview, backups, &doing(path, host, ip))?;
    Ok(format!("added `{ip} {host}` to {} (backup {})", path.display(), backup.display()))
}

pub fn verify(path: &Path, host: &HostName, ip: Ipv4Addr) -> Result<String, ActionError> {
    let doing = format!("verifying {host} -> {ip} in {}", path.display());
    let bytes = read_for_edit(path, &doing)?;
    match classify(&String::from_utf8_lossy(&bytes), host, ip) {
        Mapping::Same => Ok(format!("{} maps {host} to {ip}", path.display())),
        _ => Err(ActionError::new(doing, "the entry is not there")),
    }
}

/// Ensure `ip host` is in the hosts file (runbook K1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostsEntry {
    pub host: HostName,
    pub ip: Ipv4Addr,
}

/// `hosts_entry(host, ip)`: a host name and the IPv4 address to map it to.
pub fn spec(host: &str, ip: &str) -> StepSpec {
    let (host, ip) = (host.to_string(), ip.to_string());
    StepSpec::new("hosts_entry", format!("hosts {host} -> {ip}"), move |_| {
        Ok(Step::Hosts(HostsEntry {
            host: HostName::parse(&host).map_err(Refusal::invalid)?,
            ip: parse_host_address(&ip).map_err(Refusal::invalid)?,
        }))
    })
}

impl Action for HostsEntry {
    fn family(&self) -> &'static str {
        "hosts"
    }

    fn target(&self) -> String {
        self.host.to_string()
    }

    fn changes(&self) -> Option<String> {
        Some("the hosts file".into())
    }

    fn preview(&self, cx: &Cx, staged: &Staged) -> Result<Preview, ActionError> {
        preview(&cx.sections.hosts_file, &self.host, self.ip, staged)
    }

    fn apply(&self, cx: &Cx, preview: &Preview) -> Result<String, ActionError> {
        apply(&cx.sections.hosts_file, &self.host, self.ip, preview, &cx.backups)
    }

    fn verify(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        verify(&cx.sections.hosts_file, &self.host, self.ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> HostName {
        HostName::parse(s).unwrap()
    }

    #[test]
    fn adds_once_and_keeps_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        let original = "127.0.0.1\tlocalhost\n# comment kept\n::1 ip6-localhost";
        std::fs::write(&p, original).unwrap();
        let (h, ip) = (host("ip-10.98.2.33"), "10.98.2.33".parse().unwrap());
        let pv = preview(&p, &h, ip, &Staged::default()).unwrap();
        assert!(!pv.noop);
        assert!(pv.text.contains("+10.98.2.33\tip-10.98.2.33"));
        apply(&p, &h, ip, &pv, &dir.path().join("b")).unwrap();
        let after = std::fs::read_to_string(&p).unwrap();
        assert!(after.starts_with(original));
        assert_eq!(after.matches("ip-10.98.2.33").count(), 1);
        verify(&p, &h, ip).unwrap();
        assert!(preview(&p, &h, ip, &Staged::default()).unwrap().noop, "second time is a no-op");
    }

    #[test]
    fn conflicting_mapping_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        std::fs::write(&p, "10.0.0.1 ip-10.98.2.33\n").unwrap();
        let err = preview(&p, &host("ip-10.98.2.33"), "10.98.2.33".parse().unwrap(), &Staged::default()).unwrap_err();
        assert!(err.to_string().contains("already maps"), "{err}");
    }

    #[test]
    fn apply_refuses_when_file_changed_after_preview() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        std::fs::write(&p, "127.0.0.1 localhost\n").unwrap();
        let (h, ip) = (host("ip-1.2.3.4"), "1.2.3.4".parse().unwrap());
        let pv = preview(&p, &h, ip, &Staged::default()).unwrap();
        std::fs::write(&p, "127.0.0.1 localhost\n10.1.1.1 other\n").unwrap();
        assert!(apply(&p, &h, ip, &pv, &dir.path().join("b")).is_err());
    }
}
