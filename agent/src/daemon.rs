//! The daemon: follow every source, take each record through the flow,
//! checkpoint, and stop cleanly on SIGTERM.
//!
//! One thread does the work: it sleeps on a channel fed by inotify (through
//! `notify`) and by the signal handler, and wakes for a slow safety tick.
//! Actions run inline, so while a restart is waiting for a service to come
//! up, reading pauses and the lines wait in their files — nothing is
//! buffered in memory and nothing is lost. There is no busy polling: with
//! quiet logs the thread wakes once per tick.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::{RecursiveMode, Watcher};

use crate::approval::token::Signer;
use crate::approval::web::WebState;
use crate::approval::{ApprovalStore, WorkerRequest};
use crate::audit::{Audit, Entry, Note};
use crate::config::Config;
use crate::flow::{Approvals, Clock, Decision, Flow};
use crate::mail::{Outbox, OutgoingMail};
use crate::report::{digest_due, Report, StatusFile, DIGEST_WINDOW};
use crate::rules::RuleSet;
use crate::runtime::Background;
use crate::sources::{Budget, Checkpoints, Follower, Record, StartAt};
use crate::state::{read_json, write_json_atomic};

/// The day the digest was last sent.
#[derive(serde::Serialize, serde::Deserialize)]
struct DigestState {
    last: chrono::NaiveDate,
}

/// Wakes the worker thread.
pub enum Wake {
    /// Something changed in a watched directory.
    Files(Vec<PathBuf>),
    /// SIGTERM / SIGINT, or a caller asked the daemon to stop.
    Shutdown,
    /// A person decided about an approval, or asked for a playbook run.
    Person(WorkerRequest),
}

/// How often the worker looks at every source even without an inotify event,
/// in case an event was missed or a directory appeared.
const TICK: Duration = Duration::from_secs(5);
/// How often checkpoints are written when nothing urgent happened.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);
/// How much of one source is read in one pass before the others get their
/// turn and a shutdown request is looked at: a flood in one log delays an
/// incident in another, or a SIGTERM, by one pass at most.
const PASS_BUDGET: Budget = Budget { bytes: 1 << 20, time: Duration::from_millis(100) };
/// How much of the audit journal's end is read at start-up to learn which
/// records were decided after the last checkpoint and which plan a crash
/// cut off (far more than a checkpoint interval's worth of entries).
const JOURNAL_TAIL: u64 = 8 << 20;
/// How often `status.json` is written for `pipemedic status`.
const STATUS_EVERY: Duration = Duration::from_secs(60);
/// How long a stopping daemon waits for its background threads (a Kafka
/// metadata call or an SMTP exchange in flight) before it exits without them.
const BACKGROUND_STOP: Duration = Duration::from_secs(5);

/// A configured, not yet running daemon.
pub struct Daemon {
    config: Arc<Config>,
    flow: Flow,
    followers: Vec<Follower>,
    wake_tx: Sender<Wake>,
    wake_rx: Receiver<Wake>,
    /// The approval endpoint to start, if approvals are configured.
    web: Option<(std::net::SocketAddr, Signer)>,
    /// The threads beside the worker (mail, HTTP, Kafka metrics, the
    /// cluster members): stopped and joined when the daemon stops.
    background: Background,
    /// This daemon's hold on its state directory.
    _lock: crate::state::StateLock,
}

impl Daemon {
    /// Loads rules and state. Rules that fail to load are logged and
    /// audited; the daemon runs with the others.
    pub fn new(config: Config) -> anyhow::Result<Daemon> {
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&config.state_dir)
                .with_context(|| format!("creating state directory {}", config.state_dir.display()))?;
        }
        let lock = crate::state::lock(&config.state_dir)?;
        let config = Arc::new(config);
        let audit = Audit::open(&config.state_dir);
        let (mut rules, mut errors) = RuleSet::load(&config);
        errors.extend(rules.load_playbooks(&config));
        for e in &errors {
            audit.emit(&Entry::RuleLoadError(Note::now(config.dry_run, e.to_string())));
        }
        tracing::info!(rules = rules.rules.len(), failed = errors.len(), dry_run = config.dry_run, "rules loaded");
        // Running without a single rule would look healthy and do nothing.
        if rules.rules.is_empty() {
            anyhow::bail!(
                "no rule loaded from {}; see `pipemedic check`",
                crate::rules::describe_dirs(&config.rule_dirs)
            );
        }
        let mut flow = Flow::new(config.clone(), rules, audit.clone(), Clock::Live, config.dry_run)?;
        let mut web = None;
        let mut background = Background::default();
        if let Some(mail) = &config.mail {
            let outbox = Outbox::start(&mut background, mail, &config.state_dir, Arc::new(audit.clone()));
            let approvals = match &config.approval {
                Some(a) => {
                    let signer = Signer::load_or_create(&config.state_dir)?;
                    web = Some((a.listen, signer.clone()));
                    let store = ApprovalStore::load(&config.state_dir);
                    Some(Approvals { config: a.clone(), store, signer })
                }
                None => None,
            };
            flow = flow.with_mail(config.host_name(), outbox, approvals);
        }
        let member = crate::peers::MemberCx {
            sections: Arc::new(config.sections()),
            audit: flow.audit().clone(),
            policy: flow.policy().clone(),
            mail: flow.outbox().map(|o| (o.clone(), config.host_name())),
        };
        crate::peers::kafka::spawn(&mut background, member.clone());
        crate::peers::canal::spawn_member(&mut background, member);
        let followers = config
            .sources
            .iter()
            .map(|(name, s)| Follower::new(name, s.path.clone(), flow.assembly(name, s.record_start)))
            .collect();
        let (wake_tx, wake_rx) = mpsc::channel();
        Ok(Daemon { config, flow, followers, wake_tx, wake_rx, web, background, _lock: lock })
    }

    /// Runs until SIGTERM, SIGINT or [`Wake::Shutdown`]; then writes the
    /// checkpoints and returns.
    pub fn run(mut self) -> anyhow::Result<()> {
        let signals_tx = self.wake_tx.clone();
        let mut signals =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
                .context("installing signal handlers")?;
        let signal_handle = signals.handle();
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "stopping");
                // At once, not through the worker: the worker may be in a
                // plan's wait, which ends on this.
                crate::runtime::stop_requested().trigger();
                let _ = signals_tx.send(Wake::Shutdown);
            }
        });

        let fs_tx = self.wake_tx.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) => {
                let _ = fs_tx.send(Wake::Files(ev.paths));
            }
            Err(e) => tracing::warn!("file watch error: {e}"),
        })
        .context("starting the inotify watcher")?;
        let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
        self.watch_dirs(&mut watcher, &mut watched);
        if let Some((listen, signer)) = self.web.take() {
            let submit_tx = self.wake_tx.clone();
            crate::approval::web::spawn(
                &mut self.background,
                listen,
                WebState {
                    state_dir: self.config.state_dir.clone(),
                    host: self.config.host_name(),
                    signer,
                    audit: self.flow.audit().clone(),
                    submit: std::sync::Arc::new(move |req| {
                        let _ = submit_tx.send(Wake::Person(req));
                    }),
                    metrics: self.flow.metrics().clone(),
                },
            );
        }
        let metrics_config = self.config.metrics.clone().unwrap_or_default();
        if let Some(listen) = metrics_config.listen {
            crate::approval::web::spawn_metrics(&mut self.background, listen, self.flow.metrics().clone());
        }
        if let Some(kafka) = &self.config.kafka {
            let every = Duration::from_secs(metrics_config.kafka_interval_secs.max(5));
            self.flow.metrics().spawn_kafka_collector(
                &mut self.background,
                kafka.clone(),
                self.config.consumer_offset_reset(),
                every,
            );
        }

        let (checkpoints, unreadable) = match Checkpoints::load(&self.config.state_dir) {
            Ok(c) => (c, None),
            Err(e) => (Checkpoints::default(), Some(keep_unreadable_checkpoints(&self.config.state_dir, &e))),
        };
        // What the agent did just before it stopped, read once.
        let journal_tail = crate::audit::tail(&self.config.state_dir, JOURNAL_TAIL);
        let mut decided = crate::audit::decided_records(&journal_tail);
        let flow = &mut self.flow;
        let mut urgent = false;
        // When the checkpoints were last saved: rotated files written after
        // that hold lines the agent has not read.
        let since = std::fs::metadata(Checkpoints::path_in(&self.config.state_dir)).and_then(|m| m.modified()).ok();
        for f in &mut self.followers {
            f.skip_decided(decided.remove(f.name()).unwrap_or_default());
            // Without checkpoints, the journal still knows the furthest
            // record decided in each file: resume there rather than at the
            // end, and say what could not be recovered.
            let recovered = unreadable.as_ref().and_then(|why| {
                let (cp, entry) = position_from_journal(f, why, self.config.dry_run);
                flow.audit().emit(&entry);
                cp
            });
            let cp = checkpoints.sources.get(f.name()).or(recovered.as_ref());
            let mut handle = |r: Record| urgent |= handle(flow, &r);
            match f.start(cp, since, StartAt::End, &mut handle) {
                Ok(notes) => {
                    for note in notes {
                        let note = Note::now(self.config.dry_run, format!("{}: {note}", f.name()));
                        flow.audit().emit(&Entry::LinesMissed(note));
                    }
                }
                Err(e) => tracing::error!(source = f.name(), path = %f.path().display(), "cannot open source yet: {e}"),
            }
        }
        let mut saved = checkpoints;
        save_checkpoints(&self.config.state_dir, &self.followers, &mut saved);
        let sources: Vec<String> =
            self.followers.iter().map(|f| format!("{}={}", f.name(), f.path().display())).collect();
        let note = Note::now(self.config.dry_run, format!("following {}", sources.join(", ")));
        self.flow.audit().emit(&Entry::Started(note));
        self.flow.report_interrupted_plans(&journal_tail);
        self.flow.end_interrupted_approvals();
        drop(journal_tail);

        let window = self.config.limits.record_window();
        let started = chrono::Utc::now().timestamp_millis();
        let mut last_status: Option<Instant> = None;
        let mut digest_sent = self.last_digest();
        let metrics = self.flow.metrics().clone();
        let mut bytes_read = metrics.bytes_read();
        let mut last_save = Instant::now();
        let mut last_tick = Instant::now();
        // Sources that stopped at their pass budget with more to read.
        let mut behind = vec![false; self.followers.len()];
        loop {
            // Sleep until the next thing is due: more to read now, a pending
            // record's quiet time, or the tick.
            let pending = self.followers.iter().filter_map(|f| f.pending_for(window)).min();
            let wait = if behind.contains(&true) {
                Duration::ZERO
            } else {
                pending.unwrap_or(TICK).min(TICK.saturating_sub(last_tick.elapsed()))
            };
            let mut dirty: BTreeSet<PathBuf> = BTreeSet::new();
            let mut all = false;
            let mut decisions = Vec::new();
            match self.wake_rx.recv_timeout(wait) {
                Ok(Wake::Shutdown) => break,
                Ok(Wake::Files(paths)) => dirty.extend(paths),
                Ok(Wake::Person(req)) => decisions.push(req),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Coalesce a burst of events into one pass.
            let mut stop = false;
            while let Ok(w) = self.wake_rx.try_recv() {
                match w {
                    Wake::Shutdown => stop = true,
                    Wake::Files(paths) => dirty.extend(paths),
                    Wake::Person(req) => decisions.push(req),
                }
            }
            for req in decisions {
                match req {
                    WorkerRequest::Decide(req) => self.flow.decide(req),
                    WorkerRequest::Playbook(req) => self.flow.run_playbook(req),
                }
                urgent = true;
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                all = true;
                // Root's decisions left in the state directory, for when the
                // listener is full or down.
                for (req, reply, ballot) in crate::approval::inbox::take(&self.config.state_dir) {
                    crate::approval::inbox::answer_when_replied(ballot, reply);
                    self.flow.decide(req);
                    urgent = true;
                }
                self.watch_dirs(&mut watcher, &mut watched);
                self.flow.tick(chrono::Utc::now().timestamp_millis());
                metrics.own(&crate::system::own(&self.config.state_dir));
                if last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
                    self.write_status(started);
                    last_status = Some(Instant::now());
                }
                self.send_digest_if_due(started, &mut digest_sent);
            }
            let flow = &mut self.flow;
            let touched: Vec<bool> = self
                .followers
                .iter()
                .zip(&behind)
                .map(|(f, behind)| {
                    // A record whose quiet is over is polled first: what was
                    // written since the last look belongs to it, not cut off.
                    let due = f.pending_for(window).is_some_and(|d| d.is_zero());
                    all || *behind || due || dirty.iter().any(|p| p.parent() == f.path().parent() || p == f.path())
                })
                .collect();
            let read = read_pass(&mut self.followers, &touched, &mut behind);
            for (f, records) in self.followers.iter_mut().zip(read) {
                let mut handle = |r: Record| urgent |= handle(flow, &r);
                for r in records {
                    handle(r);
                }
                f.flush_if_quiet(window, &mut handle);
                let skipped = f.take_skipped();
                if skipped > 0 {
                    let detail = format!(
                        "{}: {skipped} record(s) read again after the restart were decided before it; not deciding them again",
                        f.name()
                    );
                    flow.audit().emit(&Entry::NotDecidedAgain(Note::now(self.config.dry_run, detail)));
                }
                let read = f.take_bytes_read();
                if read > 0 {
                    bytes_read.inc_by(f.name(), read);
                }
                if all {
                    metrics.tail_lag(f.name(), f.lag_bytes());
                }
            }
            if urgent || last_save.elapsed() >= CHECKPOINT_EVERY {
                save_checkpoints(&self.config.state_dir, &self.followers, &mut saved);
                last_save = Instant::now();
                urgent = false;
            }
            if stop {
                break;
            }
        }
        self.flow.end_parked_plans();
        save_checkpoints(&self.config.state_dir, &self.followers, &mut saved);
        std::mem::take(&mut self.background).stop(BACKGROUND_STOP);
        self.flow.flush_summaries(true);
        self.write_status(started);
        self.flow.audit().emit(&Entry::Stopped(Note::now(self.config.dry_run, "checkpoints written")));
        signal_handle.close();
        Ok(())
    }

    /// Leaves what only the daemon knows for `pipemedic status`.
    fn write_status(&self, started: i64) {
        let status = StatusFile {
            written: chrono::Utc::now().timestamp_millis(),
            started,
            pid: std::process::id(),
            dry_run: self.config.dry_run,
            beats: self.flow.beats().clone(),
            behind: self.followers.iter().map(|f| (f.name().to_string(), f.lag_bytes())).collect(),
        };
        if let Err(e) = status.save(&self.config.state_dir) {
            tracing::warn!("{e}");
        }
    }

    fn digest_file(&self) -> PathBuf {
        self.config.state_dir.join("digest.json")
    }

    /// The day the digest was last sent, as remembered across restarts.
    fn last_digest(&self) -> Option<chrono::NaiveDate> {
        let last: Option<DigestState> = read_json(&self.digest_file()).unwrap_or_else(|e| {
            tracing::warn!("{e}");
            None
        });
        last.map(|l| l.last)
    }

    /// Mails the day's report once a day at `[digest] at` (local time);
    /// `sent` is the day it last went out.
    fn send_digest_if_due(&self, started: i64, sent: &mut Option<chrono::NaiveDate>) {
        let (Some(digest), Some(outbox)) = (&self.config.digest, self.flow.outbox()) else { return };
        let Ok(at) = digest.time() else { return };
        let now = chrono::Local::now();
        if !digest_due(at, *sent, now.naive_local()) {
            return;
        }
        self.write_status(started);
        let report = Report::gather(&self.config, now.timestamp_millis(), DIGEST_WINDOW);
        let failed: u64 = report.decisions.iter().filter(|((_, d), _)| d == "failed").map(|(_, n)| n).sum();
        let mut flags = Vec::new();
        if !report.pending.is_empty() {
            flags.push(format!("{} pending approval(s)", report.pending.len()));
        }
        if failed > 0 {
            flags.push(format!("{failed} failed"));
        }
        if !report.circuits.is_empty() {
            flags.push(format!("{} open circuit breaker(s)", report.circuits.len()));
        }
        let to = if digest.to.is_empty() {
            self.config.mail.as_ref().map(|m| m.notify.clone()).unwrap_or_default()
        } else {
            digest.to.clone()
        };
        let mail = OutgoingMail {
            id: crate::digest::random_hex(16),
            to,
            subject: format!(
                "[pipemedic] {}: daily digest {}{}",
                self.config.host_name(),
                now.format("%Y-%m-%d"),
                if flags.is_empty() { String::new() } else { format!(" — {}", flags.join(", ")) }
            ),
            text: report.render(&self.config),
            html: None,
            about: "digest".into(),
            attempts: 0,
            next_attempt: 0,
        };
        match outbox.enqueue(&mail) {
            Ok(()) => {
                *sent = Some(now.date_naive());
                if let Err(e) = write_json_atomic(&self.digest_file(), &DigestState { last: now.date_naive() }) {
                    tracing::error!("{e}; after a restart the digest may be sent again");
                }
            }
            Err(e) => tracing::error!("queueing the daily digest: {e}"),
        }
    }

    /// Watches the directory of every source that exists (a missing one is
    /// retried on the next tick).
    fn watch_dirs(&self, watcher: &mut impl Watcher, watched: &mut BTreeSet<PathBuf>) {
        for f in &self.followers {
            let Some(dir) = f.path().parent() else {
                continue;
            };
            if watched.contains(dir) || !dir.is_dir() {
                continue;
            }
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(dir.to_path_buf());
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "cannot watch directory, relying on the {} s tick: {e}", TICK.as_secs())
                }
            }
        }
    }
}

/// Runs one record through the pipeline; true if the world may have changed
/// (so the checkpoint must be written now, before anything else happens).
/// One pass of reading: each touched follower's next `PASS_BUDGET`, and the
/// records it completed, in the followers' order. Where several logs have a
/// backlog (the catch-up after a restart, a flood in two logs) each is read
/// on a core of its own, as `replay` reads its sources: the scan is the
/// cost, and the records that come out of it are few. `behind` says, for
/// each, whether it stopped at its budget.
fn read_pass(followers: &mut [Follower], touched: &[bool], behind: &mut [bool]) -> Vec<Vec<Record>> {
    let poll = |f: &mut Follower| -> (Vec<Record>, bool) {
        let mut records = Vec::new();
        let more = f.poll(PASS_BUDGET, &mut |r| records.push(r)).unwrap_or_else(|e| {
            tracing::warn!(source = f.name(), path = %f.path().display(), "reading source: {e}");
            false
        });
        (records, more)
    };
    let backlogs = touched.iter().zip(behind.iter()).filter(|(t, b)| **t && **b).count();
    let done: Vec<Option<(Vec<Record>, bool)>> = if backlogs >= 2 {
        std::thread::scope(|scope| {
            let running: Vec<_> =
                followers.iter_mut().zip(touched).map(|(f, t)| t.then(|| scope.spawn(|| poll(f)))).collect();
            running.into_iter().map(|h| h.map(|h| h.join().expect("a follower's read does not panic"))).collect()
        })
    } else {
        followers.iter_mut().zip(touched).map(|(f, t)| t.then(|| poll(f))).collect()
    };
    done.into_iter()
        .zip(behind.iter_mut())
        .map(|(d, behind)| match d {
            Some((records, more)) => {
                *behind = more;
                records
            }
            None => Vec::new(),
        })
        .collect()
}

fn handle(flow: &mut Flow, record: &Record) -> bool {
    flow.handle(record).iter().any(|o| matches!(o.decision, Decision::Applied | Decision::Failed))
}

/// Where `f` resumes when the checkpoints were unreadable (`why`): the
/// furthest record the journal says was decided in its file, if it knows
/// one; and the entry that says so, or says what is not read.
fn position_from_journal(
    f: &Follower,
    why: &str,
    dry_run: bool,
) -> (Option<crate::sources::checkpoint::Checkpoint>, Entry) {
    let (name, path) = (f.name(), f.path().display());
    match f.checkpoint_from_journal() {
        Ok(Some(cp)) => {
            let detail = format!(
                "{name}: {why}; resumed {path} at byte {}, the furthest record the journal says was decided (what was read but not decided after it is read again)",
                cp.offset
            );
            (Some(cp), Entry::StateRecovered(Note::now(dry_run, detail)))
        }
        Ok(None) => {
            let detail = format!(
                "{name}: {why}, and the journal has no decided record of {path}; starting at its end: what it holds now is not read"
            );
            (None, Entry::LinesMissed(Note::now(dry_run, detail)))
        }
        Err(e) => {
            let detail = format!("{name}: {why}; reading {path} failed: {e}; starting at its end");
            (None, Entry::LinesMissed(Note::now(dry_run, detail)))
        }
    }
}

/// Moves an unreadable `checkpoints.json` aside (for whoever looks into why)
/// before new checkpoints replace it; returns what happened, for the audit.
fn keep_unreadable_checkpoints(state_dir: &Path, error: &crate::state::StateError) -> String {
    let path = Checkpoints::path_in(state_dir);
    let kept = state_dir.join(format!("checkpoints.json.unreadable-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")));
    let moved = match std::fs::rename(&path, &kept) {
        Ok(()) => format!("kept as {}", kept.display()),
        Err(e) => format!("could not be kept aside: {e}"),
    };
    tracing::error!("{error}; rebuilding the sources' positions from the audit journal");
    format!("{} was unreadable ({error}; {moved})", path.display())
}

fn save_checkpoints(state_dir: &Path, followers: &[Follower], saved: &mut Checkpoints) {
    let mut now = saved.clone();
    for f in followers {
        if let Some(cp) = f.checkpoint() {
            now.sources.insert(f.name().to_string(), cp);
        }
    }
    if now != *saved {
        match now.save(state_dir) {
            Ok(()) => *saved = now,
            Err(e) => tracing::error!("{e}; will retry"),
        }
    }
}
