//! What the agent asks the operating system: processes (through `sysinfo`,
//! not by parsing `/proc` by hand), its own costs, the host name, who it runs
//! as, and the room left for its state (through `nix`).

use std::path::Path;

use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

/// Whether `pid` is a live process (a zombie is not).
pub fn is_alive(pid: u32) -> bool {
    let pid = Pid::from_u32(pid);
    let mut sys = System::new();
    sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, ProcessRefreshKind::nothing());
    sys.process(pid).is_some_and(|p| !matches!(p.status(), ProcessStatus::Zombie | ProcessStatus::Dead))
}

/// Live processes whose command line contains `needle`, this one excepted.
pub fn pids_with_cmdline(needle: &str) -> Vec<u32> {
    let mut sys = System::new();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_cmd(UpdateKind::Always),
    );
    let me = std::process::id();
    let mut pids: Vec<u32> = sys
        .processes()
        .iter()
        .filter(|(pid, p)| {
            pid.as_u32() != me
                && !matches!(p.status(), ProcessStatus::Zombie | ProcessStatus::Dead)
                && p.cmd().iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ").contains(needle)
        })
        .map(|(pid, _)| pid.as_u32())
        .collect();
    pids.sort_unstable();
    pids
}

/// This host's name as the kernel has it.
pub fn host_name() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

/// What the agent itself costs, and the room its state has.
#[derive(Debug, Default, Clone)]
pub struct Own {
    pub cpu_ms: u64,
    pub resident_bytes: u64,
    pub open_fds: u64,
    pub state_free_bytes: u64,
}

/// Measures the agent's own process and the state directory's file system.
pub fn own(state_dir: &Path) -> Own {
    let pid = Pid::from_u32(std::process::id());
    let mut sys = System::new();
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory().with_cpu(),
    );
    let mut own = Own::default();
    if let Some(p) = sys.process(pid) {
        own.cpu_ms = p.accumulated_cpu_time();
        own.resident_bytes = p.memory();
        own.open_fds = p.open_files().map_or(0, |n| n as u64);
    }
    if let Ok(fs) = nix::sys::statvfs::statvfs(state_dir) {
        own.state_free_bytes = fs.blocks_available() * fs.fragment_size();
    }
    own
}

/// This host's IPv4 address as a broker on it would advertise it, and how it
/// was found: the host of `advertised.listeners` (or `listeners`,
/// `advertised.host.name`, `host.name`) in the broker's `server.properties`
/// when that is an address of one of this host's interfaces; otherwise the
/// address of the interface the default route leaves by. `None` if neither
/// says. The evidence names the address and the line it came from, never
/// the file's raw text (the kafka user writes that file).
pub fn this_host_address(server_properties: Option<&Path>) -> Option<(std::net::Ipv4Addr, String)> {
    let local: Vec<(String, std::net::Ipv4Addr)> = nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs.filter_map(|a| Some((a.interface_name.clone(), a.address?.as_sockaddr_in()?.ip()))).collect()
        })
        .unwrap_or_default();
    let mut not_here = String::new();
    if let Some(path) = server_properties {
        // The kafka user owns the broker's config directory: bounded,
        // non-blocking, regular files only.
        let text = crate::fsutil::read_foreign(path)
            .map_err(|e| tracing::warn!(path = %path.display(), "reading the broker's properties for this host's address: {e}"))
            .ok();
        let defs = text.as_deref().map(crate::properties::definitions).unwrap_or_default();
        for key in ["advertised.listeners", "listeners", "advertised.host.name", "host.name"] {
            let Some(def) = defs.iter().rev().find(|d| d.key == key) else { continue };
            for listener in def.value.split(',') {
                let host = listener.rsplit("//").next().unwrap_or("").rsplit_once(':').map_or(listener, |(h, _)| h);
                let Ok(ip) = crate::types::parse_host_address(host.trim()) else { continue };
                let at = format!("{key} in {} (line {})", path.display(), def.lines.0 + 1);
                if local.iter().any(|(_, a)| *a == ip) {
                    return Some((ip, format!("{ip} is the address {at} advertises, and an address of this host")));
                }
                not_here = format!(" ({at} names {ip}, which is no address of this host)");
            }
        }
    }
    let iface = default_route_interface()?;
    let ip = local
        .iter()
        .find(|(name, ip)| *name == iface && crate::types::parse_host_address(&ip.to_string()).is_ok())
        .map(|(_, ip)| *ip)?;
    Some((ip, format!("{ip} is the address of {iface}, the interface of this host's default route{not_here}")))
}

/// The interface of the IPv4 default route (the kernel's routing table has
/// no other interface than `/proc/net/route`).
fn default_route_interface() -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|l| {
        let mut f = l.split_whitespace();
        let (iface, dest) = (f.next()?, f.next()?);
        (dest == "00000000").then(|| iface.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_comes_from_the_listeners_when_they_name_one_of_this_host() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.properties");
        // An address of another host is no answer, however it is written:
        // then the default route's interface, and the evidence says why.
        std::fs::write(
            &p,
            "listeners=PLAINTEXT://0.0.0.0:9092\nadvertised.listeners=PLAINTEXT://\\\n  10.98.2.33:9092\n",
        )
        .unwrap();
        let Some((route_ip, why)) = this_host_address(Some(&p)) else {
            return; // a host without a default route has only the first answer
        };
        assert!(why.contains("default route") && why.contains("10.98.2.33, which is no address of this host"), "{why}");
        assert!(!why.contains("PLAINTEXT"), "the evidence quotes no raw value: {why}");
        // This host's own address, on a continued line, is the answer.
        std::fs::write(&p, format!("broker.id=1\nadvertised.listeners=PLAINTEXT://\\\n    {route_ip}:9092\n")).unwrap();
        let (ip, why) = this_host_address(Some(&p)).unwrap();
        assert_eq!(ip, route_ip);
        assert!(why.contains("advertised.listeners") && why.contains("(line 2)"), "{why}");
        // A FIFO in its place is refused at once, not waited on.
        std::fs::remove_file(&p).unwrap();
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let (_, why) = this_host_address(Some(&p)).unwrap();
        assert!(why.contains("default route"), "{why}");
    }
}
