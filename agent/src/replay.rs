//! `pipemedic replay`: feed old logs through the rules as a given source, in
//! dry-run, and print one decision per line. Windows ("5 times in 10
//! minutes") are counted on the logs' own timestamps.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::audit::Audit;
use crate::config::Config;
use crate::flow::{Clock, Flow, Outcome};
use crate::rules::RuleSet;

/// How decisions are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Totals of a replay, for the closing line and benchmarks.
#[derive(Debug, Default)]
pub struct Summary {
    pub bytes: u64,
    pub records: u64,
    pub events: u64,
    pub decisions: u64,
    pub seconds: f64,
}

/// Replays `files` as source `source`.
/// With `previews`, each step's preview is computed from live state (the
/// hosts file, ZooKeeper, the databases) as the daemon would; without, a
/// replay reads nothing but the files given.
pub fn replay(
    mut config: Config,
    source: &str,
    files: &[PathBuf],
    format: Format,
    previews: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Summary> {
    config.dry_run = true;
    let record_start = config
        .source(source)
        .with_context(|| {
            format!("source {source:?} is not configured (known: {:?})", config.sources.keys().collect::<Vec<_>>())
        })?
        .record_start;
    let (rules, errors) = RuleSet::load(&config);
    for e in &errors {
        eprintln!("rule not loaded: {e}");
    }
    if rules.rules.is_empty() {
        anyhow::bail!(
            "no rule loaded from {}: nothing to replay against",
            crate::rules::describe_dirs(&config.rule_dirs)
        );
    }
    let config = Arc::new(config);
    let mut flow = Flow::new(config.clone(), rules, Audit::discard(), Clock::LogTime, true)?;
    if !previews {
        flow = flow.without_previews();
    }
    let mut summary = Summary::default();
    let started = Instant::now();
    let mut write_err = None;
    for path in files {
        let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut sink = |o: Outcome| {
            summary.decisions += 1;
            if let Err(e) = print(&o, format, out) {
                write_err.get_or_insert(e);
            }
        };
        summary.bytes += flow
            .feed(source, path, record_start, &mut file, &mut sink)
            .with_context(|| format!("reading {}", path.display()))?;
        if let Some(e) = write_err.take() {
            return Err(e).context("writing decisions");
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.records = flow.stats.records;
    summary.events = flow.stats.events;
    Ok(summary)
}

fn print(o: &Outcome, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, o)?;
            writeln!(out)
        }
        Format::Text => {
            let steps: Vec<String> = o.steps.iter().map(|s| format!("{} {}", s.action, s.target)).collect();
            let line = format!(
                "{}@{} {} [{}] {:?}: {}{}{}",
                o.source,
                o.offset,
                o.rule,
                o.runbook.join(","),
                o.decision,
                o.summary.as_deref().unwrap_or("no plan"),
                if steps.is_empty() { String::new() } else { format!(" — {}", steps.join("; ")) },
                o.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            );
            writeln!(out, "{}", crate::types::terminal_safe(&line))
        }
    }
}
