//! `canal`: canal's positions in ZooKeeper (runbook N3–N6).
//!
//! Canal restarts from `/otter/canal/destinations/<dest>/1001/cursor`, a JSON
//! `LogPosition` whose first key must be the `@type` tag and whose position
//! key is spelled `postion`; timestamps are milliseconds. Canal must be
//! stopped before the cursor is written (a running instance keeps its own
//! position and would overwrite the edit). Every write here is a
//! compare-and-set on the version the preview showed, happens only when no
//! canal server holds the destination (`running` and `cluster/*` gone), and
//! the old content is kept in the result for a person to restore by hand.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Action, ActionError, Cx, Guard, Preview, Staged, Step};
use crate::actions::step::{Refusal, Risk, StepSpec};
use crate::clients::canal::CanalConfig;
use crate::clients::canal::{fallback_secs, read_destinations, read_state, CanalCursor, DestinationState};
use crate::clients::mysql::MysqlSource;
use crate::clients::mysql::{list_binlogs, Binlog};
use crate::clients::zk::ZooKeeperConfig;
use crate::clients::zk::{Node, Session};
use crate::reconcile::since_text;
use crate::types::human_time;
use crate::types::Name;

/// One configured destination's layout (reads only that destination).
fn read_destination(
    zk: &Session,
    canal: &CanalConfig,
    destination: &crate::types::Name,
    doing: &str,
) -> Result<DestinationState, ActionError> {
    let d = canal
        .destinations
        .get(destination.as_str())
        .ok_or_else(|| ActionError::new(doing, format!("{destination} is not under [canal.destinations]")))?;
    read_state(zk, destination.as_str(), d).map_err(|e| ActionError::new(doing, e))
}

/// The family's part of the configuration: `[canal]`, the ZooKeeper canal
/// keeps its positions in, and the MySQL sources its destinations read.
#[derive(Debug, Clone)]
pub struct Section {
    pub canal: CanalConfig,
    pub zookeeper: ZooKeeperConfig,
    pub mysql: BTreeMap<String, MysqlSource>,
    /// This agent's name in canal's HA holds.
    pub host: String,
    /// The `[reconcile.tables]` entries each MySQL source writes: named
    /// with the gap a cursor move leaves, to reconcile after it.
    pub reconcile_tables: BTreeMap<String, Vec<String>>,
}

/// What a cursor move skipped on one source, for the audit: the rows
/// changed in it never reach PostgreSQL (runbook N3: "会有数据丢失").
fn gap(s: &Section, destination: &str, from: &CanalCursor, to: &str, to_ms: Option<i64>) -> String {
    let source = s.canal.destinations.get(destination).map_or("?", |d| d.mysql.as_str());
    let until = to_ms.map_or_else(|| "when canal starts again".to_string(), human_time);
    let tables = s.reconcile_tables.get(source).filter(|t| !t.is_empty());
    let reconcile = match tables {
        Some(t) => {
            let window = match to_ms {
                Some(ms) => format!(" --since '{}' --until '{}'", since_text(from.timestamp), since_text(ms)),
                None => format!(" --since '{}'", since_text(from.timestamp)),
            };
            format!(
                "; tables to reconcile: {} (pipemedic reconcile{}{window}, with a change column)",
                t.join(", "),
                t.iter().map(|t| format!(" --table {t}")).collect::<String>()
            )
        }
        None => "; no [reconcile.tables] entry names this source".into(),
    };
    format!(
        "gap on [mysql.{source}] (destination {destination}): skipped from {}:{} ({}) to {to} ({until}){reconcile}",
        from.journal,
        from.position,
        human_time(from.timestamp)
    )
}

fn setup<'a>(s: &'a Section, doing: &str) -> Result<(&'a CanalConfig, Session), ActionError> {
    let zk = Session::connect(&s.zookeeper).map_err(|e| ActionError::new(doing, e))?;
    Ok((&s.canal, zk))
}

/// The canal section, which every canal step's validation asked for.
fn section<'a>(cx: &Cx<'a>) -> Result<&'a Section, ActionError> {
    cx.sections.canal.as_ref().ok_or_else(|| ActionError::new("writing canal's cursors", "no [canal] section"))
}

mod rewind;

use rewind::{apply_rewind, preview_rewind, verify_rewind};

/// The version the preview saw for `path`.
fn previewed_version(preview: &Preview, path: &str, doing: &str) -> Result<i32, ActionError> {
    match &preview.guard {
        Guard::ZkVersions(v) => v.iter().find(|(p, _)| p == path).map(|(_, n)| *n),
        _ => None,
    }
    .ok_or_else(|| ActionError::new(doing, format!("{path} was not in the preview; not writing it")))
}

/// Makes sure no canal server serves any destination, for as long as the
/// returned hold lives: in HA, every other host's canal is held stopped
/// first (this host's was stopped by the plan's step before).
fn hold_unserved<'a>(
    s: &Section,
    zk: &'a Session,
    canal: &CanalConfig,
    doing: &str,
) -> Result<Option<crate::cluster::canal::Hold<'a>>, ActionError> {
    let hold = match canal.ha {
        true => Some(
            crate::cluster::canal::hold(zk, &s.host, Duration::from_secs(canal.stop_wait_secs))
                .map_err(|e| ActionError::new(doing, e))?,
        ),
        false => None,
    };
    wait_unserved(zk, canal, doing)?;
    Ok(hold)
}

/// Waits until no canal server holds any destination.
fn wait_unserved(zk: &Session, canal: &CanalConfig, doing: &str) -> Result<(), ActionError> {
    let deadline = Instant::now() + Duration::from_secs(canal.stop_wait_secs);
    loop {
        let states = read_destinations(zk, canal).map_err(|e| ActionError::new(doing, e))?;
        let served: Vec<String> = states
            .iter()
            .filter(|d| d.served())
            .map(|d| format!("{} (running: {}, cluster: {:?})", d.name, d.running.as_deref().unwrap_or("-"), d.cluster))
            .collect();
        if served.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ActionError::new(
                doing,
                format!(
                    "canal still serves {} after {} s; not writing while it runs",
                    served.join(", "),
                    canal.stop_wait_secs
                ),
            ));
        }
        crate::runtime::pause(Duration::from_millis(200)).map_err(|e| ActionError::new(doing, e))?;
    }
}

/// After a crash the source started a new binlog (runbook N6). If the
/// cursor's source address is the source's own address, point it at the
/// new binlog, position 4; otherwise make it timestamp-only at the new
/// binlog's creation time T1 + fallback + 1 s, so canal resumes right after T1.
pub fn preview_new_binlog(s: &Section, destination: &crate::types::Name) -> Result<Preview, ActionError> {
    let (text, path, version, _) = plan_new_binlog(s, destination)?;
    Ok(Preview { text, noop: false, guard: Guard::ZkVersions(vec![(path, version)]) })
}

fn plan_new_binlog(
    s: &Section,
    destination: &crate::types::Name,
) -> Result<(String, String, i32, CanalCursor), ActionError> {
    let doing = format!("moving {destination}'s cursor past the crash");
    let (canal, zk) = setup(s, &doing)?;
    let dest_config = canal
        .destinations
        .get(destination.as_str())
        .ok_or_else(|| ActionError::new(&doing, format!("{destination} is not under [canal.destinations]")))?;
    let source = &s.mysql[&dest_config.mysql];
    let d = read_destination(&zk, canal, destination, &doing)?;
    let (cursor, node) = match d.cursor {
        Some((Ok(c), n)) => (c, n),
        Some((Err(e), _)) => {
            return Err(ActionError::new(doing, format!("{} is not a cursor canal wrote: {e}", d.cursor_path)))
        }
        None => return Err(ActionError::new(doing, format!("{} does not exist; nothing to move", d.cursor_path))),
    };
    let logs = list_binlogs(&dest_config.mysql, source).map_err(|e| ActionError::new(&doing, e))?;
    let new = logs.iter().find(|b| b.name > cursor.journal && !cursor.journal.is_empty()).ok_or_else(|| {
        ActionError::new(&doing, format!("no binlog newer than {} on the source; nothing to move to", cursor.journal))
    })?;
    let same_source = cursor.is_from(&source.host, source.port);
    let fallback = fallback_secs(canal);
    let (target, why) = match same_source {
        true => (
            cursor.at_binlog_start(new),
            format!(
                "the cursor's source {}:{} is this source: start at {} position 4",
                cursor.address, cursor.port, new.name
            ),
        ),
        false => (
            cursor.at_timestamp(new.created_ms + (fallback + 1) * 1000),
            format!(
                "the cursor's source {}:{} is not {}:{}: timestamp-only at T1 = {} + {fallback} s + 1 s",
                cursor.address,
                cursor.port,
                source.host,
                source.port,
                human_time(new.created_ms)
            ),
        ),
    };
    let text = format!(
        "{path} (version {version}): the binlog created by the restart is {new_name} (T1 = {t1}); {why}.
  before: {before}
  after:  {after}",
        path = d.cursor_path,
        version = node.version,
        new_name = new.name,
        t1 = human_time(new.created_ms),
        before = String::from_utf8_lossy(&node.data),
        after = target.render()
    );
    Ok((text, d.cursor_path, node.version, target))
}

pub fn apply_new_binlog(
    s: &Section,
    destination: &crate::types::Name,
    preview: &Preview,
) -> Result<String, ActionError> {
    let doing = format!("moving {destination}'s cursor past the crash");
    let (canal, zk) = setup(s, &doing)?;
    let _hold = hold_unserved(s, &zk, canal, &doing)?;
    let (_, path, _, target) = plan_new_binlog(s, destination)?;
    let expected = previewed_version(preview, &path, &doing)?;
    let old = zk
        .get(&path)
        .map_err(|e| ActionError::new(&doing, e))?
        .map(|n| String::from_utf8_lossy(&n.data).into_owned())
        .unwrap_or_default();
    let version =
        zk.set_if_version(&path, target.render().as_bytes(), expected).map_err(|e| ActionError::new(&doing, e))?;
    let skipped = match CanalCursor::parse(old.as_bytes()) {
        Ok(from) => {
            let to = format!("{}:{}", target.journal, target.position);
            format!("\n{}", gap(s, destination.as_str(), &from, &to, Some(target.timestamp)))
        }
        Err(_) => String::new(),
    };
    Ok(format!("{path}: version {expected} -> {version}; old content, to restore by hand: {old}{skipped}"))
}

/// Deleting a destination's cursor: canal then starts from the newest
/// position of its source, and everything between the cursor and now on
/// that source is never synced (runbook N3's last resort).
pub fn preview_reset(s: &Section, destination: &crate::types::Name) -> Result<Preview, ActionError> {
    let doing = format!("deleting canal's cursor of {destination}");
    let (canal, zk) = setup(s, &doing)?;
    let d = read_destination(&zk, canal, destination, &doing)?;
    let Some((cursor, node)) = &d.cursor else {
        return Ok(Preview {
            text: format!("{} does not exist; nothing to delete", d.cursor_path),
            noop: true,
            guard: Guard::None,
        });
    };
    let since = match cursor {
        Ok(c) => format!("{} ({})", human_time(c.timestamp), c.describe()),
        Err(e) => format!("an unreadable cursor ({e})"),
    };
    let text = format!(
        "DELETE {path} (version {version}).
         THIS LOSES DATA: canal will start from the newest binlog position of {destination}'s source; every change made there from {since} until canal starts again is never synced to Kafka or PostgreSQL.
         Old content, to restore by hand: {old}",
        path = d.cursor_path,
        version = node.version,
        old = String::from_utf8_lossy(&node.data)
    );
    Ok(Preview { text, noop: false, guard: Guard::ZkVersions(vec![(d.cursor_path.clone(), node.version)]) })
}

pub fn apply_reset(s: &Section, destination: &crate::types::Name, preview: &Preview) -> Result<String, ActionError> {
    let doing = format!("deleting canal's cursor of {destination}");
    let (canal, zk) = setup(s, &doing)?;
    let _hold = hold_unserved(s, &zk, canal, &doing)?;
    let d = read_destination(&zk, canal, destination, &doing)?;
    let expected = previewed_version(preview, &d.cursor_path, &doing)?;
    let skipped = match &d.cursor {
        Some((Ok(from), _)) => format!("\n{}", gap(s, destination.as_str(), from, "the newest position", None)),
        _ => String::new(),
    };
    let old = d.cursor.map(|(_, n)| String::from_utf8_lossy(&n.data).into_owned()).unwrap_or_default();
    zk.delete_if_version(&d.cursor_path, expected).map_err(|e| ActionError::new(&doing, e))?;
    Ok(format!("deleted {} (version {expected}); old content, to restore by hand: {old}{skipped}", d.cursor_path))
}

pub fn verify_reset(s: &Section, destination: &crate::types::Name) -> Result<String, ActionError> {
    let doing = format!("verifying canal's cursor of {destination} is gone");
    let (canal, zk) = setup(s, &doing)?;
    match read_destination(&zk, canal, destination, &doing)?.cursor {
        None => Ok("the cursor is gone".into()),
        Some(_) => Err(ActionError::new(doing, "it exists again (was canal still running?)")),
    }
}

/// Compare-and-set every canal cursor to a timestamp-only position at
/// which every source still has binlog (runbook N3, N4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewindCursors {}

/// Delete a destination's cursor: canal restarts from the newest position,
/// losing what lies between (runbook N3, last resort).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResetCursor {
    pub destination: Name,
}

/// Move a destination's cursor to the binlog its source started after a
/// crash (runbook N6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewBinlogCursor {
    pub destination: Name,
}

/// `canal_rewind()`.
pub fn rewind_spec() -> StepSpec {
    StepSpec::new("canal_rewind", "canal rewind to common timestamp".into(), |_| {
        Ok(Step::CanalRewind(RewindCursors {}))
    })
}

/// `canal_reset(destination)`: a destination under `[canal.destinations]`.
pub fn reset_spec(destination: &str) -> StepSpec {
    let destination = destination.to_string();
    StepSpec::new("canal_reset", format!("canal reset {destination}"), move |sections| {
        Ok(Step::CanalReset(ResetCursor { destination: canal_destination(&destination, sections.canal.as_ref())? }))
    })
}

/// `canal_new_binlog(destination)`.
pub fn new_binlog_spec(destination: &str) -> StepSpec {
    let destination = destination.to_string();
    StepSpec::new("canal_new_binlog", format!("canal new binlog {destination}"), move |sections| {
        Ok(Step::CanalNewBinlog(NewBinlogCursor {
            destination: canal_destination(&destination, sections.canal.as_ref())?,
        }))
    })
}

fn canal_destination(name: &str, section: Option<&Section>) -> Result<Name, Refusal> {
    let name = Name::parse("destination", name).map_err(Refusal::invalid)?;
    if !section.is_some_and(|s| s.canal.destinations.contains_key(name.as_str())) {
        return Err(Refusal::NotConfigured(format!("destination {name} is not configured under [canal.destinations]")));
    }
    Ok(name)
}

/// What the three cursor steps share: the family, the cursors they change,
/// and that rewriting canal's positions is never safe.
macro_rules! cursor_action {
    ($ty:ty, $risk:expr, $target:expr, { $($body:tt)* }) => {
        impl Action for $ty {
            fn family(&self) -> &'static str {
                "canal"
            }

            fn target(&self) -> String {
                $target(self)
            }

            fn min_risk(&self) -> Risk {
                $risk
            }

            fn changes(&self) -> Option<String> {
                Some("canal cursors".into())
            }

            fn writes_canal_cursors(&self) -> bool {
                true
            }

            $($body)*
        }
    };
}

cursor_action!(RewindCursors, Risk::Dangerous, |_: &RewindCursors| "every cursor".to_string(), {
    fn preview(&self, cx: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        preview_rewind(section(cx)?)
    }

    fn apply(&self, cx: &Cx, preview: &Preview) -> Result<String, ActionError> {
        apply_rewind(section(cx)?, preview)
    }

    fn verify(&self, cx: &Cx, preview: &Preview) -> Result<String, ActionError> {
        verify_rewind(section(cx)?, preview)
    }
});

cursor_action!(ResetCursor, Risk::DataLoss, |s: &ResetCursor| format!("{} cursor", s.destination), {
    fn preview(&self, cx: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        preview_reset(section(cx)?, &self.destination)
    }

    fn apply(&self, cx: &Cx, preview: &Preview) -> Result<String, ActionError> {
        apply_reset(section(cx)?, &self.destination, preview)
    }

    fn verify(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        verify_reset(section(cx)?, &self.destination)
    }
});

cursor_action!(NewBinlogCursor, Risk::Dangerous, |s: &NewBinlogCursor| format!("{} cursor", s.destination), {
    fn preview(&self, cx: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        preview_new_binlog(section(cx)?, &self.destination)
    }

    fn apply(&self, cx: &Cx, preview: &Preview) -> Result<String, ActionError> {
        apply_new_binlog(section(cx)?, &self.destination, preview)
    }

    fn verify(&self, _: &Cx, _: &Preview) -> Result<String, ActionError> {
        Ok("written with compare-and-set".into())
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    // Verbatim from canal issue #921 (with the author's markdown removed).
    const REAL: &str = r#"{"@type":"com.alibaba.otter.canal.protocol.position.LogPosition","identity":{"slaveId":-1,"sourceAddress":{"address":"10.35.165.15","port":3306}},"postion":{"gtid":"","included":false,"journalName":"mysql-bin.000023","position":43893,"serverId":1,"timestamp":1536312619000}}"#;

    #[test]
    fn a_cursor_canal_wrote_round_trips_byte_for_byte() {
        let c = CanalCursor::parse(REAL.as_bytes()).unwrap();
        assert_eq!(c.journal, "mysql-bin.000023");
        assert_eq!(c.render(), REAL);
    }

    #[test]
    fn timestamp_only_cursor_has_the_exact_shape_from_the_facts_sheet() {
        let c = CanalCursor::parse(REAL.as_bytes()).unwrap().at_timestamp(1732460061000);
        assert_eq!(
            c.render(),
            r#"{"@type":"com.alibaba.otter.canal.protocol.position.LogPosition","identity":{"slaveId":-1,"sourceAddress":{"address":"10.35.165.15","port":3306}},"postion":{"gtid":"","included":false,"journalName":"","position":0,"serverId":1,"timestamp":1732460061000}}"#
        );
    }

    #[test]
    fn cursors_canal_could_not_read_are_refused() {
        assert!(CanalCursor::parse(br#"{"identity":{},"postion":{}}"#).unwrap_err().0.contains("@type"));
        let no_position = REAL.replace(r#""position":43893,"#, "");
        assert!(CanalCursor::parse(no_position.as_bytes()).is_err());
        // The old format without gtid and serverId still reads, and renders without serverId.
        let old = r#"{"@type":"com.alibaba.otter.canal.protocol.position.LogPosition","identity":{"slaveId":-1,"sourceAddress":{"address":"10.20.144.15","port":3306}},"postion":{"included":false,"journalName":"mysql-bin.002253","position":2574756,"timestamp":1363688722000}}"#;
        let c = CanalCursor::parse(old.as_bytes()).unwrap();
        assert!(!c.render().contains("serverId"));
    }

    #[test]
    fn a_moved_cursor_starts_a_binlog_at_position_4() {
        let b = |n: &str, t| Binlog { name: n.into(), size: 1, created_ms: t };
        let logs = [b("mysql-bin.000001", 1000), b("mysql-bin.000002", 5000)];
        let c = CanalCursor::parse(REAL.as_bytes()).unwrap().at_binlog_start(&logs[1]);
        assert_eq!(
            c.render(),
            r#"{"@type":"com.alibaba.otter.canal.protocol.position.LogPosition","identity":{"slaveId":-1,"sourceAddress":{"address":"10.35.165.15","port":3306}},"postion":{"gtid":"","included":false,"journalName":"mysql-bin.000002","position":4,"serverId":1,"timestamp":5000}}"#
        );
    }

    #[test]
    fn a_cursor_is_from_its_source_by_resolved_address_and_port() {
        let mut c = CanalCursor::parse(REAL.as_bytes()).unwrap();
        c.address = "localhost".into();
        c.port = 20548;
        assert!(c.is_from("127.0.0.1", 20548), "canal 1.1.4 writes localhost for 127.0.0.1");
        assert!(!c.is_from("127.0.0.1", 3306));
        c.address = "10.35.165.15".into();
        assert!(!c.is_from("127.0.0.1", 20548));
    }
}
