//! The rewind (runbook N3, N4): every cursor to the newest time at which
//! every source still has binlog.

use super::*;
use crate::clients::mysql::MysqlError;

/// Every source's binlogs, by destination.
fn binlogs_by_destination(s: &Section, canal: &CanalConfig) -> Result<BTreeMap<String, Vec<Binlog>>, MysqlError> {
    let mut out = BTreeMap::new();
    for (name, d) in &canal.destinations {
        let logs = list_binlogs(&d.mysql, &s.mysql[&d.mysql])?;
        if logs.is_empty() {
            return Err(MysqlError::NoBinlogs(d.mysql.clone()));
        }
        out.insert(name.clone(), logs);
    }
    Ok(out)
}

/// The newest time at which every source still has binlog: the latest of
/// the sources' oldest binlog creation times (ms).
pub fn common_timestamp(binlogs: &BTreeMap<String, Vec<Binlog>>) -> Option<i64> {
    binlogs.values().filter_map(|logs| logs.first().map(|b| b.created_ms)).max()
}

/// What the rewind will write to each cursor, and the text that shows it.
struct Rewind {
    text: String,
    writes: Vec<(String, Node, CanalCursor)>,
    /// What each write skips on its source (see `gap`).
    gaps: Vec<String>,
}

fn plan_rewind(s: &Section, doing: &str) -> Result<Rewind, ActionError> {
    let (canal, zk) = setup(s, doing)?;
    let binlogs = binlogs_by_destination(s, canal).map_err(|e| ActionError::new(doing, e))?;
    let common = common_timestamp(&binlogs).ok_or_else(|| ActionError::new(doing, "no binlogs"))?;
    let mut text = format!(
        "Every source still has binlog from {} on (the latest of the sources' oldest binlogs).\n\
         A cursor whose binlog still exists is kept. A cursor whose binlog is gone moves to the start (position 4) \
         of its source's oldest binlog: a position every canal version reads (canal up to 1.1.4 cannot start from \
         a timestamp-only cursor). The writes wait until no canal server serves any destination.",
        human_time(common),
    );
    let mut writes = Vec::new();
    let mut gaps = Vec::new();
    for d in read_destinations(&zk, canal).map_err(|e| ActionError::new(doing, e))? {
        let logs = &binlogs[&d.name];
        text.push_str(&format!(
            "\n\n[{}] {}\n  binlogs: {} … {} (oldest created {})",
            d.name,
            d.cursor_path,
            logs[0].name,
            logs[logs.len() - 1].name,
            human_time(logs[0].created_ms)
        ));
        match d.cursor {
            None => text.push_str("\n  no cursor: canal starts from its instance.properties position; left alone"),
            Some((Err(e), node)) => {
                return Err(ActionError::new(
                    doing,
                    format!(
                        "{} (version {}) is not a cursor canal wrote: {e}; a person must look",
                        d.cursor_path, node.version
                    ),
                ));
            }
            Some((Ok(cursor), _)) if logs.iter().any(|b| b.name == cursor.journal) => {
                // Its binlog is still there: canal resumes exactly where it
                // was; moving it would only replay (and a replay from a
                // binlog's start can meet events canal cannot decode: the
                // lab's canal 1.1.4 stopped for good on MariaDB's CREATE USER).
                // Not its position or version: canal moves them on with
                // every acknowledged batch, and the preview a person
                // approves must stay the same while they read it.
                text.push_str(&format!(
                    "\n  kept: its binlog {} still exists, canal resumes where it is",
                    cursor.journal
                ));
            }
            Some((Ok(cursor), node)) => {
                // Its binlog is gone: the start of the oldest one left loses
                // the least.
                let new = cursor.at_binlog_start(&logs[0]);
                text.push_str(&format!(
                    "\n  version {}: {}\n  -> {}\n  before: {}\n  after:  {}",
                    node.version,
                    cursor.describe(),
                    new.describe(),
                    String::from_utf8_lossy(&node.data),
                    new.render()
                ));
                if cursor.timestamp < logs[0].created_ms {
                    let to = format!("{}:{}", new.journal, new.position);
                    gaps.push(gap(s, &d.name, &cursor, &to, Some(logs[0].created_ms)));
                    text.push_str(&format!(
                        "\n  DATA LOSS on this source: its binlog from {} to {} is gone; those changes are never synced",
                        human_time(cursor.timestamp),
                        human_time(logs[0].created_ms)
                    ));
                }
                writes.push((d.cursor_path.clone(), node, new));
            }
        }
    }
    Ok(Rewind { text, writes, gaps })
}

pub fn preview_rewind(s: &Section) -> Result<Preview, ActionError> {
    let plan = plan_rewind(s, "computing the common rewind timestamp")?;
    let noop = plan.writes.is_empty();
    let versions = plan.writes.iter().map(|(path, node, _)| (path.clone(), node.version)).collect();
    Ok(Preview { text: plan.text, noop, guard: Guard::ZkVersions(versions) })
}

pub fn apply_rewind(s: &Section, preview: &Preview) -> Result<String, ActionError> {
    let doing = "rewinding canal's cursors to the common time";
    let (canal, zk) = setup(s, doing)?;
    let _hold = hold_unserved(s, &zk, canal, doing)?;
    let plan = plan_rewind(s, doing)?;
    let mut done = Vec::new();
    for (path, old, new) in &plan.writes {
        let expected = previewed_version(preview, path, doing)?;
        let version = zk
            .set_if_version(path, new.render().as_bytes(), expected)
            .map_err(|e| ActionError::new(doing, format!("{e}; written so far: {}", done.join("; "))))?;
        done.push(format!(
            "{path}: version {} -> {version}; old content, to restore by hand: {}",
            old.version,
            String::from_utf8_lossy(&old.data)
        ));
    }
    done.extend(plan.gaps);
    Ok(done.join("\n"))
}

pub fn verify_rewind(s: &Section, preview: &Preview) -> Result<String, ActionError> {
    let doing = "verifying canal's cursors";
    let (_, zk) = setup(s, doing)?;
    let written = match &preview.guard {
        Guard::ZkVersions(v) => v.clone(),
        _ => Vec::new(),
    };
    let mut ok = Vec::new();
    for (path, previewed) in written {
        let node = zk.get(&path).map_err(|e| ActionError::new(doing, e))?;
        let node = node.ok_or_else(|| ActionError::new(doing, format!("{path} is gone")))?;
        let cursor = CanalCursor::parse(&node.data).map_err(|e| ActionError::new(doing, format!("{path}: {e}")))?;
        // The write made it previewed + 1; canal's own acknowledgements
        // (a standby started once the hold went) move it on from there.
        if node.version > previewed + 1 {
            ok.push(format!("{path}: canal has moved on from it (version {}: {})", node.version, cursor.describe()));
        } else if node.version == previewed + 1 && preview.text.contains(&cursor.render()) {
            ok.push(format!("{path}: {}", cursor.describe()));
        } else {
            return Err(ActionError::new(
                doing,
                format!("{path} is now {} (version {}), not what was written", cursor.render(), node.version),
            ));
        }
    }
    Ok(ok.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_timestamp_is_the_latest_oldest_binlog() {
        let b = |t| vec![Binlog { name: "mysql-bin.000001".into(), size: 1, created_ms: t }];
        let all: BTreeMap<String, Vec<Binlog>> = [("a".to_string(), b(1000)), ("b".to_string(), b(5000))].into();
        assert_eq!(common_timestamp(&all), Some(5000));
    }
}
