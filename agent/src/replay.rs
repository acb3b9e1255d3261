//! `pipemedic replay`: feed old logs through the rules, in dry-run, and print
//! one decision per line. Windows ("5 times in 10 minutes") are counted on
//! the logs' own timestamps.
//!
//! Each source's files are read, cut into records and matched on a thread
//! of their own (the scan is the cost; the rules see only the few records
//! that match). The flow then takes the matched records of all sources in
//! the order of their log time, each source's in file order, as the daemon
//! would have seen them: so a replay of four logs decides what the daemon
//! would have, on as many cores as there are sources.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::audit::Audit;
use crate::config::Config;
use crate::flow::{Clock, Flow, Outcome};
use crate::matching::{Match, Matcher};
use crate::rules::RuleSet;
use crate::sources::logtime::parse_log_time;
use crate::sources::{Assembler, Assembly, Record};

/// How decisions are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Totals of a replay, for the closing line and benchmarks.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: usize,
    pub bytes: u64,
    pub records: u64,
    pub events: u64,
    pub decisions: u64,
    pub seconds: f64,
}

/// One file to replay, as the source it is read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub source: String,
    pub path: PathBuf,
}

/// The inputs the command line names: `SOURCE=PATH`, or a path read as
/// `source` when one is given, else as the configured source whose file it
/// is (its name, or a rotation of it: `server.log.1`, `server.log-20261101`).
pub fn inputs(config: &Config, source: Option<&str>, args: &[String]) -> anyhow::Result<Vec<Input>> {
    let known = || config.sources.keys().cloned().collect::<Vec<_>>().join(", ");
    if let Some(s) = source.filter(|s| config.source(s).is_none()) {
        anyhow::bail!("source {s:?} is not configured (known: {})", known());
    }
    args.iter()
        .map(|arg| {
            if let Some((name, path)) = arg.split_once('=').filter(|(name, _)| config.source(name).is_some()) {
                return Ok(Input { source: name.to_string(), path: path.into() });
            }
            let path = PathBuf::from(arg);
            if let Some(s) = source {
                return Ok(Input { source: s.to_string(), path });
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let owners: Vec<&String> = config
                .sources
                .iter()
                .filter(|(_, c)| {
                    c.path.file_name().map(|f| f.to_string_lossy()).is_some_and(|f| is_rotation_of(&name, &f))
                })
                .map(|(n, _)| n)
                .collect();
            match owners.as_slice() {
                [one] => Ok(Input { source: (*one).clone(), path }),
                [] => anyhow::bail!(
                    "{arg}: no configured source has this file name; say which it is with --source or SOURCE={arg} (sources: {})",
                    known()
                ),
                many => anyhow::bail!(
                    "{arg}: the sources {many:?} all have this file name; say which with SOURCE={arg}"
                ),
            }
        })
        .collect()
}

/// Whether file `name` is `configured` or one of its rotations.
fn is_rotation_of(name: &str, configured: &str) -> bool {
    name == configured
        || name.strip_prefix(configured).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('-'))
}

/// A matched record on its way from a source's reader to the flow.
struct Matched {
    record: Record,
    matches: Vec<Match>,
    /// The record's log time, or the last one its file had before it.
    at: i64,
}

/// What a source's reader sends.
enum Sent {
    Record(Box<Matched>),
    /// The totals of one file, when it is done.
    File {
        bytes: u64,
        records: u64,
    },
    Failed(anyhow::Error),
}

/// Matched records a reader may be ahead of the flow by.
const AHEAD: usize = 1024;
/// What each reader reads at once.
const CHUNK: usize = 1 << 20;

/// Replays `inputs`. With `previews`, each step's preview is computed from
/// live state (the hosts file, ZooKeeper, the databases) as the daemon
/// would; without, a replay reads nothing but the files given.
pub fn replay(
    mut config: Config,
    inputs: &[Input],
    format: Format,
    previews: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Summary> {
    config.dry_run = true;
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
    // Each source's files, in the order given.
    let mut by_source: BTreeMap<&str, Vec<&Path>> = BTreeMap::new();
    for i in inputs {
        config.source(&i.source).with_context(|| format!("source {:?} is not configured", i.source))?;
        by_source.entry(&i.source).or_default().push(&i.path);
    }
    let config = Arc::new(config);
    let mut flow = Flow::new(config.clone(), rules, Audit::discard(), Clock::LogTime, true)?;
    if !previews {
        flow = flow.without_previews();
    }
    let matcher = flow.matcher();
    let stop = AtomicBool::new(false);
    let mut summary = Summary { files: inputs.len(), ..Summary::default() };
    let started = Instant::now();
    let result = std::thread::scope(|scope| {
        let streams: Vec<Receiver<Sent>> = by_source
            .iter()
            .map(|(source, files)| {
                let (tx, rx) = sync_channel(AHEAD);
                let assembly = flow.assembly(source, config.source(source).expect("checked above").record_start);
                let (matcher, stop) = (&matcher, &stop);
                scope.spawn(move || read_source(source, files, assembly, matcher, stop, &mut |r| tx.send(r).is_ok()));
                rx
            })
            .collect();
        let mut decisions = 0;
        let merged = merge(streams, &mut summary, &mut |m: Matched| {
            for o in flow.handle_matched(&m.record, &m.matches) {
                decisions += 1;
                print(&o, format, out).context("writing decisions")?;
            }
            Ok(())
        });
        summary.decisions = decisions;
        // A failure ends the readers at their next chunk, not their file's end.
        stop.store(true, Ordering::Relaxed);
        merged
    });
    result?;
    summary.events = flow.stats.events;
    summary.seconds = started.elapsed().as_secs_f64();
    // What the flow holds is freed by the exit; dropping it piece by piece
    // was a tenth of a short replay.
    std::mem::forget(flow);
    Ok(summary)
}

/// Reads `files` of `source` in order through record assembly and the
/// matcher; each matched record, and each file's totals, go to `send` (false:
/// nobody listens any more).
fn read_source(
    source: &str,
    files: &[&Path],
    assembly: Assembly,
    matcher: &Matcher,
    stop: &AtomicBool,
    send: &mut dyn FnMut(Sent) -> bool,
) {
    let mut buf = vec![0u8; CHUNK];
    let mut at = i64::MIN;
    for path in files {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                send(Sent::Failed(anyhow::Error::new(e).context(format!("opening {}", path.display()))));
                return;
            }
        };
        let mut assembler = Assembler::new(source.into(), (*path).into(), assembly.clone(), 0);
        let (mut records, mut listening) = (0u64, true);
        let mut emit = |record: Record| {
            records += 1;
            let mut matches = Vec::new();
            matcher.matches(&record, &mut matches);
            if let Some(t) = parse_log_time(&record.bytes) {
                at = t;
            }
            if !matches.is_empty() && listening {
                listening = send(Sent::Record(Box::new(Matched { record, matches, at })));
            }
        };
        let stopped = || stop.load(Ordering::Relaxed);
        let bytes = match assembler.read_to_end(&mut file, &mut buf, &stopped, &mut emit) {
            Ok(_) if stopped() => return,
            Ok(bytes) => bytes,
            Err(e) => {
                send(Sent::Failed(anyhow::Error::new(e).context(format!("reading {}", path.display()))));
                return;
            }
        };
        if !send(Sent::File { bytes, records }) {
            return;
        }
    }
}

/// Hands the matched records of all `streams` to `take` in log-time order
/// (each stream's own order kept; a tie goes to the stream named first).
fn merge(
    streams: Vec<Receiver<Sent>>,
    summary: &mut Summary,
    take: &mut dyn FnMut(Matched) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // Each stream's next record; None once it is done.
    let mut heads: Vec<Option<Box<Matched>>> = Vec::with_capacity(streams.len());
    let next = |i: usize, summary: &mut Summary| -> anyhow::Result<Option<Box<Matched>>> {
        loop {
            match streams[i].recv() {
                Ok(Sent::Record(m)) => return Ok(Some(m)),
                Ok(Sent::File { bytes, records }) => {
                    summary.bytes += bytes;
                    summary.records += records;
                }
                Ok(Sent::Failed(e)) => return Err(e),
                Err(_) => return Ok(None),
            }
        }
    };
    for i in 0..streams.len() {
        heads.push(next(i, summary)?);
    }
    while let Some(i) =
        (0..heads.len()).filter(|&i| heads[i].is_some()).min_by_key(|&i| heads[i].as_ref().map(|m| m.at))
    {
        let m = heads[i].take().expect("chosen among the present");
        take(*m)?;
        heads[i] = next(i, summary)?;
    }
    Ok(())
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
