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
