//! `pipemedic kafka leaders|lag` (runbook T1, T2).

use super::*;

pub(super) fn kafka_leaders(path: &Path, topic: Option<&str>) -> anyhow::Result<ExitCode> {
    use crate::clients::kafka::{leaders, leaders_from_zookeeper};
    let config = Config::load(path)?;
    let kafka = config.kafka.as_ref().ok_or_else(|| anyhow::anyhow!("{}: no [kafka] section", path.display()))?;
    let (rows, from) = match leaders(kafka, topic) {
        Ok(rows) => (rows, "the brokers' metadata".to_string()),
        Err(e) => {
            let zk_config =
                config.zookeeper.as_ref().ok_or_else(|| anyhow::anyhow!("{e}; and no [zookeeper] to fall back to"))?;
            let zk =
                crate::clients::zk::Session::connect(zk_config).map_err(|z| anyhow::anyhow!("{e}; ZooKeeper: {z}"))?;
            let rows = leaders_from_zookeeper(&zk, kafka, topic).map_err(|z| anyhow::anyhow!("{e}; ZooKeeper: {z}"))?;
            (rows, format!("ZooKeeper's partition state ({e})"))
        }
    };
    let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    for r in &rows {
        let leader = if r.leader < 0 { "none".to_string() } else { r.leader.to_string() };
        println!(
            "Topic: {}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}",
            r.topic,
            r.partition,
            ids(&r.replicas),
            ids(&r.isr)
        );
    }
    eprintln!("{} partition(s), from {from}", rows.len());
    Ok(ExitCode::SUCCESS)
}

pub(super) fn kafka_lag(path: &Path, group: Option<&str>, topic: Option<&str>) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let kafka = config.kafka.as_ref().ok_or_else(|| anyhow::anyhow!("{}: no [kafka] section", path.display()))?;
    let group = group.or(kafka.group.as_deref()).ok_or_else(|| anyhow::anyhow!("no --group and no [kafka] group"))?;
    let reset = config.consumer_offset_reset();
    let rows = crate::clients::kafka::lag(kafka, group, topic, reset).map_err(|e| anyhow::anyhow!(e))?;
    println!("{:<12} {:<32} {:>5} {:>14} {:>14} {:>10}", "Group", "Topic", "Pid", "Offset", "logSize", "Lag");
    for r in &rows {
        let offset = r.committed.map_or("none".to_string(), |o| o.to_string());
        println!("{group:<12} {:<32} {:>5} {offset:>14} {:>14} {:>10}", r.topic, r.partition, r.log_end, r.lag);
    }
    println!("total lag: {}", rows.iter().map(|r| r.lag).sum::<i64>());
    // Kafka's own tool prints "-" there and leaves those records out of
    // its lag; say what this one counts.
    let uncommitted: Vec<String> =
        rows.iter().filter(|r| r.committed.is_none()).map(|r| format!("{}-{}", r.topic, r.partition)).collect();
    if !uncommitted.is_empty() {
        let waiting: i64 = rows.iter().filter(|r| r.committed.is_none()).map(|r| r.log_end - r.log_start).sum();
        println!(
            "offset none: group {group} never committed in {} ({waiting} record(s) there); it begins at {}",
            uncommitted.join(", "),
            reset.describe()
        );
    }
    Ok(ExitCode::SUCCESS)
}
