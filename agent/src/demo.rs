//! The embedded example: a scratch pipeline (logs, stand-in services, a hosts
//! file, consumer properties) that the agent can follow without a real one.
//! `pipemedic demo` runs the daemon on it in dry-run and feeds it incidents
//! from the runbook; `pipemedic test` without `--config` checks the rules
//! against it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;

/// The shipped rules, compiled into the binary so the demo works anywhere.
pub const SHIPPED_RULES: &[(&str, &str)] = &[
    ("c1_schema_drift.rhai", include_str!("../../rules/c1_schema_drift.rhai")),
    ("c2_commit_failed.rhai", include_str!("../../rules/c2_commit_failed.rhai")),
    ("c3_wakeup.rhai", include_str!("../../rules/c3_wakeup.rhai")),
    ("c4_startup_wiring.rhai", include_str!("../../rules/c4_startup_wiring.rhai")),
    ("c5_stall.rhai", include_str!("../../rules/c5_stall.rhai")),
    ("c6_pool_init.rhai", include_str!("../../rules/c6_pool_init.rhai")),
    ("k1_unknown_host.rhai", include_str!("../../rules/k1_unknown_host.rhai")),
    ("k2_broker_id_changed.rhai", include_str!("../../rules/k2_broker_id_changed.rhai")),
    ("k3_too_few_brokers.rhai", include_str!("../../rules/k3_too_few_brokers.rhai")),
    ("m1_heartbeats.rhai", include_str!("../../rules/m1_heartbeats.rhai")),
    ("m2_kafka_shutdown.rhai", include_str!("../../rules/m2_kafka_shutdown.rhai")),
    ("n1_no_alive_canal.rhai", include_str!("../../rules/n1_no_alive_canal.rhai")),
    ("n2_no_route.rhai", include_str!("../../rules/n2_no_route.rhai")),
    ("n3_fake_dead_source.rhai", include_str!("../../rules/n3_fake_dead_source.rhai")),
    ("n3_n4_n6_binlog_position.rhai", include_str!("../../rules/n3_n4_n6_binlog_position.rhai")),
    ("reconcile_after_fixes.rhai", include_str!("../../rules/reconcile_after_fixes.rhai")),
    ("z_unexplained.rhai", include_str!("../../rules/z_unexplained.rhai")),
];

const EXAMPLE_CONFIG: &str = include_str!("../../examples/pipemedic.toml");
const STANDIN: &str = include_str!("../../examples/bin/standin.sh");
const HOSTS: &str = include_str!("../../examples/hosts");
const CONSUMER_PROPERTIES: &str = include_str!("../../examples/consumer.properties");
const SERVER_PROPERTIES: &str = include_str!("../../examples/server.properties");

/// Writes the example pipeline into `dir` and returns its config path. In
/// the repository the example reads `../rules`; here the rules are written
/// next to the config.
pub fn materialize(dir: &Path) -> anyhow::Result<PathBuf> {
    let write = |rel: &str, text: &str| -> anyhow::Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    for (name, text) in SHIPPED_RULES {
        write(&format!("rules/{name}"), text)?;
    }
    std::fs::create_dir_all(dir.join("rules.d"))?;
    write("bin/standin.sh", STANDIN)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("bin/standin.sh"), std::fs::Permissions::from_mode(0o755))?;
    if !dir.join("hosts").exists() {
        write("hosts", HOSTS)?;
    }
    if !dir.join("consumer.properties").exists() {
        write("consumer.properties", CONSUMER_PROPERTIES)?;
    }
    if !dir.join("server.properties").exists() {
        write("server.properties", SERVER_PROPERTIES)?;
    }
    let config_text = EXAMPLE_CONFIG
        .replace("rule_dirs = [\"../rules\", \"rules.d\"]", "rule_dirs = [\"rules\", \"rules.d\"]")
        .replace("playbook_dirs = [\"../playbooks\"]", "playbook_dirs = []");
    write("pipemedic.toml", &config_text)?;
    let config = Config::parse(&config_text, &dir.join("pipemedic.toml"), dir)?;
    for source in config.sources.values() {
        if let Some(parent) = source.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new().create(true).append(true).open(&source.path)?;
    }
    Ok(dir.join("pipemedic.toml"))
}

/// Incidents from the runbook, as the pipeline's logs would show them.
fn incidents() -> Vec<(&'static str, String)> {
    let now = chrono::Local::now();
    let k = now.format("[%Y-%m-%d %H:%M:%S,%3f]").to_string();
    let j = now.format("%Y-%m-%d %H:%M:%S%.3f").to_string();
    let mut commit_failed = String::new();
    for _ in 0..5 {
        commit_failed.push_str(&format!(
            "{j} [pool-2-thread-1] ERROR c.g.datasync.consumer.ConsumerThread - commit failed\n\
             org.apache.kafka.clients.consumer.CommitFailedException: Commit cannot be completed since the group has already rebalanced\n\
             \tat org.apache.kafka.clients.consumer.KafkaConsumer.commitSync(KafkaConsumer.java:1100)\n"
        ));
    }
    vec![
        (
            "kafka_server",
            format!(
                "{k} ERROR [KafkaServer id=1] Fatal error during KafkaServer startup. Prepare to shutdown (kafka.server.KafkaServer)\n\
                 java.net.UnknownHostException: ip-10.98.2.33: ip-10.98.2.33: unknown error\n\
                 \tat java.net.InetAddress.getLocalHost(InetAddress.java:1505)\n\
                 Caused by: java.net.UnknownHostException: ip-10.98.2.33: unknown error\n\
                 \t... 9 more\n"
            ),
        ),
        (
            "consumer_error",
            format!(
                "{j} [pool-2-thread-3] WARN  c.g.datasync.consumer.ConsumerThread - consumer woken up\n\
                 org.apache.kafka.common.errors.WakeupException\n\
                 \tat org.apache.kafka.clients.consumer.KafkaConsumer.poll(KafkaConsumer.java:1000)\n"
            ),
        ),
        ("consumer_error", commit_failed),
    ]
}

/// Runs the daemon on the example in dry-run and feeds it incidents; stops
/// on Ctrl-C.
pub fn run(dir: &Path) -> anyhow::Result<()> {
    let config_path = materialize(dir)?;
    let mut config = Config::load(&config_path)?;
    config.dry_run = true;
    let sources = config.sources.clone();
    let audit = config.state_dir.join("audit.jsonl");
    eprintln!("pipemedic demo: a scratch pipeline in {} (dry-run: nothing outside it changes)", dir.display());
    let daemon = crate::daemon::Daemon::new(config)?;
    let worker = std::thread::spawn(move || daemon.run());
    std::thread::sleep(Duration::from_millis(800));
    for (source, text) in incidents() {
        let path = &sources[source].path;
        eprintln!("\n>>> appending an incident to {source} ({})", path.display());
        std::fs::OpenOptions::new().append(true).open(path)?.write_all(text.as_bytes())?;
        std::thread::sleep(Duration::from_millis(1500));
    }
    eprintln!(
        "\nThe decisions above are also in {audit}.\nAppend your own lines to the logs under {logs} and watch; Ctrl-C stops the agent.",
        audit = audit.display(),
        logs = dir.join("logs").display()
    );
    worker.join().map_err(|_| anyhow::anyhow!("the daemon thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_file_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".rhai"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = SHIPPED_RULES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(on_disk, embedded);
    }
}
