//! `kafka`: the steps of moving Kafka's `log.dir` (runbook K5): wait until
//! the consumer has consumed everything, and move the directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Action, ActionError, Cx, Preview, Staged, Step};
use crate::actions::step::{Refusal, Risk, StepSpec};
use crate::clients::kafka::lag;
use crate::clients::kafka::KafkaConfig;
use crate::clients::kafka::Reset;
use crate::types::excerpt;

/// The family's part of the configuration.
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// `[kafka]`, if configured.
    pub kafka: Option<KafkaConfig>,
    /// The consumer's properties (`[properties_files] consumer`), read at
    /// each look for where the group begins in a partition it never
    /// committed in.
    pub consumer_properties: Option<PathBuf>,
    /// The broker's `server.properties` (`[properties_files] kafka_server`).
    pub server_properties: Option<PathBuf>,
}

fn kafka<'a>(s: &'a Section, doing: &str) -> Result<(&'a KafkaConfig, String), ActionError> {
    let k = s.kafka.as_ref().ok_or_else(|| ActionError::new(doing, "no [kafka] section"))?;
    let group = k.group.clone().ok_or_else(|| ActionError::new(doing, "no [kafka] group"))?;
    Ok((k, group))
}

fn total_lag(s: &Section, k: &KafkaConfig, group: &str) -> Result<(i64, usize), crate::clients::kafka::KafkaError> {
    let rows = lag(k, group, None, Reset::of_consumer(s.consumer_properties.as_deref()))?;
    Ok((rows.iter().map(|r| r.lag).sum(), rows.len()))
}

pub fn preview_drained(s: &Section) -> Result<Preview, ActionError> {
    let doing = "reading the consumer's lag";
    let (k, group) = kafka(s, doing)?;
    // The lag itself moves every second; the preview (which an approval's
    // re-check compares) states the condition, having checked it can be read.
    let (_, partitions) = total_lag(s, k, &group).map_err(|e| ActionError::new(doing, e))?;
    Ok(Preview {
        text: format!(
            "wait until group {group} has consumed all {partitions} partitions (lag 0 everywhere), checking each second, for at most {} s",
            k.drain_timeout_secs
        ),
        noop: false,
        guard: Default::default(),
    })
}

/// Waits until the lag is zero everywhere; fails at the deadline.
pub fn apply_drained(s: &Section) -> Result<String, ActionError> {
    let doing = "waiting for the consumer to drain Kafka";
    let (k, group) = kafka(s, doing)?;
    let started = Instant::now();
    loop {
        let (total, partitions) = total_lag(s, k, &group).map_err(|e| ActionError::new(doing, e))?;
        if total == 0 {
            return Ok(format!(
                "group {group} has consumed all {partitions} partitions after {:.0} s",
                started.elapsed().as_secs_f64()
            ));
        }
        if started.elapsed() >= Duration::from_secs(k.drain_timeout_secs) {
            return Err(ActionError::new(
                doing,
                format!("lag is still {total} after {} s; not moving anything", k.drain_timeout_secs),
            ));
        }
        crate::runtime::pause(Duration::from_secs(1)).map_err(|e| ActionError::new(doing, e))?;
    }
}

/// `log.dirs` (or `log.dir`) in the broker's `server.properties`.
fn current_log_dir(s: &Section, doing: &str) -> Result<PathBuf, ActionError> {
    let path = s.server_properties.as_ref().ok_or_else(|| {
        ActionError::new(doing, "no [properties_files] kafka_server (the broker's server.properties)")
    })?;
    let text = crate::fsutil::read_foreign(path)
        .map_err(|e| ActionError::new(doing, format!("reading {}: {e}", path.display())))?;
    let value = ["log.dirs", "log.dir"].iter().find_map(|key| crate::properties::value(&text, key));
    let value = value.map(|v| v.trim().to_string());
    let value = value.ok_or_else(|| ActionError::new(doing, format!("{} sets no log.dirs", path.display())))?;
    if value.contains(',') {
        return Err(ActionError::new(
            doing,
            format!("log.dirs lists several directories ({value}); move them by hand"),
        ));
    }
    Ok(PathBuf::from(value))
}

fn check_target(from: &Path, to: &Path, doing: &str) -> Result<(), ActionError> {
    use std::os::unix::fs::MetadataExt;
    let from_meta = std::fs::metadata(from).map_err(|e| ActionError::new(doing, format!("{}: {e}", from.display())))?;
    if to.exists() {
        return Err(ActionError::new(doing, format!("{} exists already; not moving onto it", to.display())));
    }
    let parent = to.parent().ok_or_else(|| ActionError::new(doing, "the target has no parent directory"))?;
    let parent_meta =
        std::fs::metadata(parent).map_err(|e| ActionError::new(doing, format!("{}: {e}", parent.display())))?;
    if parent_meta.dev() != from_meta.dev() {
        return Err(ActionError::new(
            doing,
            format!("{} is on another file system than {}: a rename cannot move it, and a copy of Kafka's data is for a person to do", to.display(), from.display()),
        ));
    }
    Ok(())
}

pub fn preview_move(s: &Section, to: &Path) -> Result<Preview, ActionError> {
    let doing = format!("moving Kafka's log.dir to {}", to.display());
    let from = current_log_dir(s, &doing)?;
    if from == to {
        return Ok(Preview {
            text: format!("log.dir is {} already", to.display()),
            noop: true,
            guard: Default::default(),
        });
    }
    check_target(&from, to, &doing)?;
    Ok(Preview {
        text: format!("rename {} -> {} (same file system)", from.display(), to.display()),
        noop: false,
        guard: Default::default(),
    })
}

pub fn apply_move(s: &Section, to: &Path) -> Result<String, ActionError> {
    let doing = format!("moving Kafka's log.dir to {}", to.display());
    let from = current_log_dir(s, &doing)?;
    check_target(&from, to, &doing)?;
    std::fs::rename(&from, to).map_err(|e| ActionError::new(&doing, format!("renaming {}: {e}", from.display())))?;
    Ok(format!("moved {} to {}", from.display(), to.display()))
}

pub fn verify_move(to: &Path) -> Result<String, ActionError> {
    match to.is_dir() {
        true => Ok(format!("{} is there", to.display())),
        false => Err(ActionError::new(format!("verifying {}", to.display()), "it is not a directory")),
    }
}

/// Wait until the consumer group has consumed every partition (runbook K5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitDrained {}

/// Rename Kafka's log.dir to a new place on the same file system (runbook K5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveLogDir {
    pub to: PathBuf,
}

/// `kafka_wait_drained()`.
pub fn drained_spec() -> StepSpec {
    StepSpec::new("kafka_wait_drained", "kafka wait drained".into(), |_| Ok(Step::KafkaWaitDrained(WaitDrained {})))
}

/// `kafka_move_log_dir(to)`: an absolute, plain directory path.
pub fn move_spec(to: &str) -> StepSpec {
    let to = to.to_string();
    StepSpec::new("kafka_move_log_dir", format!("kafka move log.dir to {to}"), move |_| {
        let path = PathBuf::from(&to);
        let plain =
            path.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
        if !path.is_absolute() || !plain || to.chars().any(char::is_control) || path.parent().is_none() {
            return Err(Refusal::Invalid(format!("{} is not an absolute, plain directory path", excerpt(&to))));
        }
        Ok(Step::KafkaMoveLogDir(MoveLogDir { to: path }))
    })
}

impl Action for WaitDrained {
    fn family(&self) -> &'static str {
        "kafka"
    }

    fn target(&self) -> String {
        "consumer lag".into()
    }

    fn preview(&self, cx: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        preview_drained(&cx.sections.kafka)
    }

    fn apply(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        apply_drained(&cx.sections.kafka)
    }

    fn verify(&self, _: &Cx, _: &Preview) -> Result<String, ActionError> {
        Ok("recorded".into())
    }
}

impl Action for MoveLogDir {
    fn family(&self) -> &'static str {
        "kafka"
    }

    fn target(&self) -> String {
        format!("log.dir -> {}", self.to.display())
    }

    fn min_risk(&self) -> Risk {
        Risk::Dangerous
    }

    fn changes(&self) -> Option<String> {
        Some("kafka log.dir".into())
    }

    fn preview(&self, cx: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        preview_move(&cx.sections.kafka, &self.to)
    }

    fn apply(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        apply_move(&cx.sections.kafka, &self.to)
    }

    fn verify(&self, _: &Cx, _: &Preview) -> Result<String, ActionError> {
        verify_move(&self.to)
    }
}
