//! The agent runs as root and edits files in directories that service users
//! own (tomcat owns the consumer's `consumer.properties`). Whoever owns such a
//! directory can plant links in it. An edit must never write through, chmod
//! or chown anything but the file the agent itself just created, and a target
//! that is itself a link is refused, not silently replaced.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{commit_failed_incident, Host, Options, PROPERTIES};

/// `nobody`: the service user who owns the consumer's directory.
const USER: u32 = 65534;
const SECRET: &str = "root:only-root-may-read-this\n";

/// The consumer's properties in a directory owned by the service user, and a
/// root-only file elsewhere that an attacker would like root to overwrite.
fn host() -> Host {
    assert_eq!(nix::unistd::geteuid().as_raw(), 0, "this test needs root (as CI runs it): it plays a service user");
    let host = Host::new(Options::default());
    let dir = host.path("tomcat");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("consumer.properties"), PROPERTIES).unwrap();
    std::fs::set_permissions(dir.join("consumer.properties"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(dir.join("consumer.properties"), Some(USER), Some(USER)).unwrap();
    std::os::unix::fs::chown(&dir, Some(USER), Some(USER)).unwrap();
    std::fs::write(host.path("secret"), SECRET).unwrap();
    std::fs::set_permissions(host.path("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    host.edit_config("consumer = \"consumer.properties\"", "consumer = \"tomcat/consumer.properties\"");
    host
}

fn assert_secret_untouched(host: &Host) {
    let meta = std::fs::symlink_metadata(host.path("secret")).unwrap();
    assert_eq!(std::fs::read_to_string(host.path("secret")).unwrap(), SECRET);
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o600, 0, 0), "mode and owner of the secret kept");
}

fn five_commit_failures(host: &Host) -> serde_json::Value {
    for _ in 0..5 {
        host.append("logs/error.log", &commit_failed_incident());
    }
    host.wait_decision("c2_commit_failed", 5)
}

#[test]
fn links_planted_where_the_temporary_file_goes_are_never_followed() {
    let mut host = host();
    host.start_service("consumer", "logs/info.log");
    host.start_agent();
    let dir = host.path("tomcat");
    // The names a temporary file had before (predictable from the pid), and
    // a spread of others, all pointing at the secret.
    let mut names = vec![format!(".consumer.properties.pipemedic-tmp-{}", host.agent_pid())];
    names.extend((0..64).map(|i| format!(".consumer.properties.pipemedic-{i:016x}")));
    for name in &names {
        std::os::unix::fs::symlink(host.path("secret"), dir.join(name)).unwrap();
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &dir.join(name),
            Some(USER.into()),
            Some(USER.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }

    let d = five_commit_failures(&host);
    assert_eq!(d["decision"], "applied", "{d:#}");
    assert_secret_untouched(&host);
    let props = dir.join("consumer.properties");
    assert_eq!(std::fs::read_to_string(&props).unwrap(), PROPERTIES.replace("=500", "=250"));
    let meta = std::fs::symlink_metadata(&props).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o640, USER, USER), "the edited file keeps its owner");
    for name in &names {
        assert!(std::fs::symlink_metadata(dir.join(name)).unwrap().file_type().is_symlink(), "{name} left alone");
    }
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !names.contains(n) && n != "consumer.properties")
        .collect();
    assert!(left.is_empty(), "no temporary file left: {left:?}");
    host.stop_agent();
}

#[test]
fn a_target_that_is_a_symlink_is_refused_and_nothing_changes() {
    let mut host = host();
    host.start_service("consumer", "logs/info.log");
    let props = host.path("tomcat/consumer.properties");
    std::fs::remove_file(&props).unwrap();
    std::os::unix::fs::symlink(host.path("secret"), &props).unwrap();
    host.start_agent();

    let d = five_commit_failures(&host);
    assert_eq!(d["decision"], "failed", "{d:#}");
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains("is a symbolic link") && reason.contains(&host.path("secret").display().to_string()),
        "{reason}"
    );
    assert_secret_untouched(&host);
    assert!(std::fs::symlink_metadata(&props).unwrap().file_type().is_symlink(), "the link is not replaced");
    assert_eq!(host.starts("consumer"), 1, "no restart after a refused edit");
    assert!(!Path::new(&host.path("state/backups")).exists(), "nothing was backed up: nothing was written");
    host.stop_agent();
}
