//! A full disk under the state directory: the agent keeps running, does not
//! act when it cannot record what it does, and loses no audit entry once
//! space is back. The state directory is a tiny tmpfs (the tests run as
//! root, as CI does).

mod common;

use std::process::Command;

use common::{k1_incident, wakeup_incident, Host, Options, HOSTS};

struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(path: std::path::PathBuf, size: &str) -> Mount {
        std::fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(path)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_state_disk_stops_actions_and_loses_no_audit_entry() {
    let mut host = Host::new(Options::default());
    let _mount = Mount::tmpfs(host.path("state"), "512k");
    host.start_service("kafka", "logs/server.log");
    host.start_agent();

    // Fill the state file system to the last byte.
    let filler = host.path("state/filler");
    let chunk = vec![0u8; 4096];
    let mut f = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    while std::io::Write::write_all(&mut f, &chunk[..1]).is_ok() {}
    drop(f);

    host.append("logs/server.log", &k1_incident("ip-10.98.2.33"));
    // Keep the agent busy until an audit write hits the full disk (a write
    // can still land in the journal's last, partly used page).
    let mut wakeups = 0;
    while !host.stderr().contains("writing the audit journal failed") {
        assert!(wakeups < 50, "no audit write failed on a full disk");
        host.append("logs/error.log", &wakeup_incident());
        wakeups += 1;
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    assert_eq!(host.read("hosts"), HOSTS, "nothing is changed when the change cannot be recorded");
    assert_eq!(host.starts("kafka"), 1, "no restart");

    // Space comes back: the agent is still running and the held entries are written.
    std::fs::remove_file(&filler).unwrap();
    host.append("logs/error.log", &wakeup_incident());
    host.wait_decision("c3_wakeup", wakeups + 1);
    assert_eq!(host.decisions("c3_wakeup").len(), wakeups + 1, "every decision is in the journal, once");
    let k1 = host.decisions("k1_unknown_host");
    assert_eq!(k1[0]["decision"], "failed");
    let reason = k1[0]["reason"].as_str().unwrap();
    assert!(reason.contains("policy history cannot be saved") && reason.contains("trying again at"), "{:#}", k1[0]);

    // The failure was the disk's, not the fix's: with space back, the fix is
    // tried again without a new log line (retries come 5 s, then 30 s after
    // a failure; the deadline leaves room for both).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !host.decisions("k1_unknown_host").iter().any(|d| d["decision"] == "applied") {
        assert!(
            std::time::Instant::now() < deadline,
            "the fix was not retried: {:#?}",
            host.decisions("k1_unknown_host")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let applied = host.decisions("k1_unknown_host").into_iter().find(|d| d["decision"] == "applied").unwrap();
    assert!(
        applied["reason"].as_str().unwrap_or("").contains("after a transient failure") || applied["reason"].is_null(),
        "{applied:#}"
    );
    assert!(host.read("hosts").contains("ip-10.98.2.33"));
    assert_eq!(host.starts("kafka"), 2, "restarted once, by the retry");
    host.stop_agent();
}
