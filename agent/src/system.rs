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
/// when that is an address; otherwise the address of the interface the
/// default route leaves by. `None` if neither says.
pub fn this_host_address(server_properties: Option<&Path>) -> Option<(std::net::Ipv4Addr, String)> {
    if let Some(path) = server_properties {
        if let Ok(text) = std::fs::read_to_string(path) {
            for key in ["advertised.listeners", "listeners", "advertised.host.name", "host.name"] {
                let key = crate::types::PropertyKey::parse(key).expect("a valid key");
                let Some(value) = crate::actions::properties::value(&text, &key) else { continue };
                for listener in value.split(',') {
                    let host = listener.rsplit("//").next().unwrap_or("").rsplit_once(':').map_or(listener, |(h, _)| h);
                    if let Ok(ip) = crate::types::parse_host_address(host.trim()) {
                        return Some((ip, format!("{key} in {} says {}", path.display(), value.trim())));
                    }
                }
            }
        }
    }
    let iface = default_route_interface()?;
    let ip = nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        (a.interface_name == iface)
            .then(|| a.address.and_then(|s| s.as_sockaddr_in().map(|sin| sin.ip())))
            .flatten()
            .filter(|ip| crate::types::parse_host_address(&ip.to_string()).is_ok())
    })?;
    Some((ip, format!("{ip} is the address of {iface}, the interface of this host's default route")))
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
    fn the_address_comes_from_the_listeners_when_they_name_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.properties");
        std::fs::write(
            &p,
            "broker.id=1\nlisteners=PLAINTEXT://0.0.0.0:9092\nadvertised.listeners=PLAINTEXT://10.98.2.33:9092\n",
        )
        .unwrap();
        let (ip, why) = this_host_address(Some(&p)).unwrap();
        assert_eq!(ip.to_string(), "10.98.2.33");
        assert!(why.contains("advertised.listeners"), "{why}");
        // 0.0.0.0 and names are no answer: then the default route's interface.
        std::fs::write(&p, "listeners=PLAINTEXT://0.0.0.0:9092\nadvertised.listeners=PLAINTEXT://kafka-1:9092\n")
            .unwrap();
        if let Some((ip, why)) = this_host_address(Some(&p)) {
            assert!(why.contains("default route") && !ip.is_loopback(), "{why}");
        }
    }
}
