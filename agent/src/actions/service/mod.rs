//! `service`: graceful stop / start / restart of a configured service with
//! its own scripts (runbook T3, T4).
//!
//! The agent never signals a managed process itself, and never escalates to
//! SIGKILL: a stop that does not finish before its deadline is reported as a
//! failure and the start is not attempted. Scripts come from the
//! configuration only and run without a shell; nothing from a log reaches
//! their arguments.

mod config;

pub use config::{ProcessMatch, ServiceConfig, UpCheck};

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Action, ActionError, Cx, Preview, Staged, Step};
use crate::actions::step::{Refusal, ServiceOp, StepSpec};
use crate::types::Name;

/// How often a wait re-checks the process table. Waits are bounded by the
/// service's deadlines and happen only while an action runs.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The service family's part of the configuration.
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// `[services]`, by name.
    pub services: std::collections::BTreeMap<String, ServiceConfig>,
    /// canal's service (`[canal] service`): not started while another
    /// agent holds every canal stopped.
    pub canal: Option<String>,
    /// Where each service's scripts' output is kept (`<state_dir>/services`).
    pub out_dir: PathBuf,
}

impl Section {
    fn service(&self, name: &Name) -> &ServiceConfig {
        // `Step::validate` only lets configured services through.
        &self.services[name.as_str()]
    }
}

/// The pids of the service's running processes.
pub fn running_pids(svc: &ServiceConfig) -> Vec<u32> {
    if let Some(pid_file) = &svc.process.pid_file {
        // The service user writes the pid file: a FIFO or a link there must
        // not stop the worker or lead it elsewhere.
        let pid = crate::fsutil::read_foreign(pid_file).ok().and_then(|s| s.trim().parse::<u32>().ok());
        return pid.filter(|p| crate::system::is_alive(*p)).into_iter().collect();
    }
    match &svc.process.cmdline_contains {
        Some(needle) => crate::system::pids_with_cmdline(needle),
        None => Vec::new(),
    }
}

/// The pid files a service's scripts keep: its process's, and the one its
/// start script refuses to start over.
fn pid_files(svc: &ServiceConfig) -> impl Iterator<Item = &std::path::PathBuf> {
    [&svc.process.pid_file, &svc.stale_pid_file].into_iter().flatten()
}

/// What a service's process table and pid file say about it: `running`;
/// `stopped` (no process, and the pid file its stop script removes is gone:
/// stopped on purpose, canal's `bin/stop.sh` does this); `died` (no process,
/// its pid file left behind: a crash); `down` (no process, and no pid file
/// configured to tell the two apart).
///
/// A stop script removes the pid file only after it has seen the process
/// exit (canal's looks once a second): a pid file left behind is taken for a
/// crash only once it has stayed for [`STOP_SCRIPT_GRACE`], or a person's
/// clean stop would be read as a crash and undone.
pub fn state(svc: &ServiceConfig) -> &'static str {
    if !running_pids(svc).is_empty() {
        return "running";
    }
    let pid_files: Vec<_> = pid_files(svc).collect();
    if pid_files.is_empty() {
        return "down";
    }
    let deadline = std::time::Instant::now() + STOP_SCRIPT_GRACE;
    while pid_files.iter().any(|p| p.exists()) {
        if std::time::Instant::now() >= deadline {
            return if running_pids(svc).is_empty() { "died" } else { "running" };
        }
        // Asked to stop: the agent starts nothing now anyway.
        if crate::runtime::pause(std::time::Duration::from_millis(100)).is_err() {
            return "stopped";
        }
    }
    "stopped"
}

/// How long a stop script may take, after its process exited, to remove
/// the pid file.
const STOP_SCRIPT_GRACE: std::time::Duration = std::time::Duration::from_millis(2500);

fn describe_cmd(argv: &[String]) -> String {
    argv.iter().map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() }).collect::<Vec<_>>().join(" ")
}

pub fn preview(section: &Section, op: ServiceOp, name: &Name) -> Result<Preview, ActionError> {
    let svc = section.service(name);
    let pids = running_pids(svc);
    let state = if pids.is_empty() { "not running".to_string() } else { format!("running (pid {pids:?})") };
    let stop = format!(
        "stop with `{}`, wait up to {} s for it to exit (never SIGKILL)",
        describe_cmd(&svc.stop),
        svc.stop_timeout_secs
    );
    let start =
        format!("start with `{}`, wait up to {} s until it is up", describe_cmd(&svc.start), svc.start_timeout_secs);
    let (text, noop) = match op {
        ServiceOp::Stop if pids.is_empty() => (format!("{name} is {state}; nothing to stop"), true),
        ServiceOp::Start if !pids.is_empty() => (format!("{name} is {state}; nothing to start"), true),
        ServiceOp::Stop => (format!("{name} is {state}; {stop}"), false),
        ServiceOp::Start => (format!("{name} is {state}; {start}"), false),
        ServiceOp::Restart if pids.is_empty() => (format!("{name} is {state}; {start}"), false),
        ServiceOp::Restart => (format!("{name} is {state}; {stop}; then {start}"), false),
    };
    Ok(Preview { text, noop, guard: Default::default() })
}

/// One service's scripts run one at a time in this process: the worker and
/// the K4 member thread may both want the broker, and two start scripts at
/// once would start two brokers (or fight over the pid file).
fn exclusive(name: &Name) -> std::sync::Arc<std::sync::Mutex<()>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    locks.entry(name.to_string()).or_default().clone()
}

/// Stops, starts or restarts `name` with its scripts, as part of `part_of`
/// (a plan, a hold, a leader-first turn: named above the scripts' output).
pub fn apply(section: &Section, op: ServiceOp, name: &Name, part_of: &str) -> Result<String, ActionError> {
    if op != ServiceOp::Stop && section.canal.as_deref() == Some(name.as_str()) {
        if let Some(host) = crate::cluster::canal::held_by() {
            return Err(ActionError::new(
                format!("{op} {name}"),
                format!(
                    "the agent on {host} holds every canal stopped while it writes canal's cursors; \
                     {name} starts again when that hold is released"
                ),
            ));
        }
    }
    let lock = exclusive(name);
    // The state is read again below, after the lock: what the other caller did counts.
    let _turn = lock.lock().unwrap_or_else(|e| e.into_inner());
    let svc = section.service(name);
    let out = ScriptLog { path: section.out_dir.join(format!("{name}.out")), part_of };
    let mut done = Vec::new();
    if matches!(op, ServiceOp::Stop | ServiceOp::Restart) {
        done.push(stop(name, svc, &out)?);
    }
    match op {
        ServiceOp::Start if !running_pids(svc).is_empty() => done.push(format!("{name} is already running")),
        ServiceOp::Start | ServiceOp::Restart => done.push(start(name, svc, &out)?),
        ServiceOp::Stop => {}
    }
    Ok(done.join("; "))
}

/// [`apply`] on a thread of its own, for async code whose ZooKeeper session
/// must keep answering pings during a slow stop or start (the cluster members).
pub async fn apply_off_thread(
    section: &Section,
    op: ServiceOp,
    name: &Name,
    part_of: String,
) -> Result<String, ActionError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (section, thread_name) = (section.clone(), name.clone());
    std::thread::spawn(move || {
        let _ = tx.send(apply(&section, op, &thread_name, &part_of));
    });
    rx.await.unwrap_or_else(|_| Err(ActionError::new(format!("{op} {name}"), "the service thread died")))
}

fn stop(name: &Name, svc: &ServiceConfig, out: &ScriptLog) -> Result<String, ActionError> {
    let doing = format!("stopping {name}");
    let before = running_pids(svc);
    if before.is_empty() {
        return Ok(format!("{name} was not running"));
    }
    let started = Instant::now();
    let mut child = spawn(&svc.stop, svc, out, &doing)?;
    loop {
        if running_pids(svc).is_empty() {
            // Stop scripts clean up after the process is gone (canal's stop.sh
            // removes its pid file, which its startup.sh refuses to start
            // over); let the script finish before anything starts again.
            let finished = wait_exit(&mut child, svc.stop_timeout().saturating_sub(started.elapsed()));
            let took = started.elapsed().as_secs_f64();
            return Ok(match finished {
                true => format!("{name} stopped in {took:.1} s (was pid {before:?})"),
                false => {
                    reap(child);
                    format!("{name} stopped in {took:.1} s (was pid {before:?}); its stop script was still running at the deadline")
                }
            });
        }
        if started.elapsed() >= svc.stop_timeout() {
            reap(child);
            return Err(ActionError::new(
                doing,
                format!(
                    "still running (pid {:?}) {} s after `{}`; not escalating to SIGKILL (runbook T3/T4), not starting it again; a person must look",
                    running_pids(svc),
                    svc.stop_timeout_secs,
                    describe_cmd(&svc.stop)
                ),
            ));
        }
        if let Ok(Some(status)) = child.try_wait() {
            if !status.success() && !running_pids(svc).is_empty() {
                return Err(ActionError::new(
                    doing,
                    format!("`{}` exited with {status}; see {}", describe_cmd(&svc.stop), out.path.display()),
                ));
            }
        }
        crate::runtime::pause(CHECK_EVERY).map_err(|e| ActionError::new(&doing, e))?;
    }
}

fn start(name: &Name, svc: &ServiceConfig, out: &ScriptLog) -> Result<String, ActionError> {
    let doing = format!("starting {name}");
    let mut notes = Vec::new();
    // After a crash the pid file stays and some start scripts refuse to
    // start over it; remove it, but only when no process of the service runs.
    if running_pids(svc).is_empty() {
        for pid_file in pid_files(svc) {
            if pid_file.exists() {
                std::fs::remove_file(pid_file).map_err(|e| {
                    ActionError::new(&doing, format!("removing the stale pid file {}: {e}", pid_file.display()))
                })?;
                notes.push(format!("removed the stale pid file {}", pid_file.display()));
            }
        }
    }
    let log_offset = svc.up.log_file.as_ref().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let started = Instant::now();
    let mut child = spawn(&svc.start, svc, out, &doing)?;
    let mut script_ok = None;
    loop {
        if script_ok.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                script_ok = Some(status.success());
                if !status.success() {
                    return Err(ActionError::new(
                        doing,
                        format!("`{}` exited with {status}; see {}", describe_cmd(&svc.start), out.path.display()),
                    ));
                }
            }
        }
        match up_state(svc, log_offset) {
            Ok(()) => {
                if script_ok.is_none() {
                    reap(child);
                }
                notes.push(format!("{name} is up after {:.1} s", started.elapsed().as_secs_f64()));
                return Ok(notes.join("; "));
            }
            Err(why) if started.elapsed() >= svc.start_timeout() => {
                if script_ok.is_none() {
                    reap(child);
                }
                return Err(ActionError::new(doing, format!("not up {} s after start: {why}", svc.start_timeout_secs)));
            }
            Err(_) => crate::runtime::pause(CHECK_EVERY).map_err(|e| ActionError::new(&doing, e))?,
        }
    }
}

/// `Ok` if the service looks up: its process runs, and its port and log
/// line (when configured) are there. Otherwise says what is missing.
fn up_state(svc: &ServiceConfig, log_offset: Option<u64>) -> Result<(), String> {
    if running_pids(svc).is_empty() {
        return Err("no process found".into());
    }
    if let Some(addr) = svc.up.tcp {
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).map_err(|e| format!("{addr} refuses: {e}"))?;
    }
    if let (Some(file), Some(pattern)) = (&svc.up.log_file, &svc.up.log_pattern) {
        let re = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
        let mut f = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let from = log_offset.filter(|o| *o <= len).unwrap_or(0);
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(from)).map_err(|e| e.to_string())?;
        let mut text = Vec::new();
        f.take(8 << 20).read_to_end(&mut text).map_err(|e| e.to_string())?;
        if !re.is_match(&String::from_utf8_lossy(&text)) {
            return Err(format!("{pattern:?} not yet in {}", file.display()));
        }
    }
    Ok(())
}

pub fn verify(section: &Section, op: ServiceOp, name: &Name) -> Result<String, ActionError> {
    let svc = section.service(name);
    let pids = running_pids(svc);
    match op {
        ServiceOp::Stop if pids.is_empty() => Ok(format!("{name} is not running")),
        ServiceOp::Stop => {
            Err(ActionError::new(format!("verifying {name} stopped"), format!("pid {pids:?} still running")))
        }
        _ => up_state(svc, None)
            .map(|()| format!("{name} runs (pid {pids:?})"))
            .map_err(|why| ActionError::new(format!("verifying {name} is up"), why)),
    }
}

/// Runs a script without a shell, detached from the agent's process group so
/// the agent's own signals do not reach the service it starts.
/// Where a service's scripts write (`<state_dir>/services/<name>.out`),
/// and what they run for.
struct ScriptLog<'a> {
    path: PathBuf,
    part_of: &'a str,
}

/// The line above a script's output. What it was part of can name a host
/// another agent wrote into ZooKeeper: control characters are escaped, so
/// it stays one line and cannot fake another.
fn script_header(doing: &str, part_of: &str, argv: &[String]) -> String {
    let part_of = crate::types::shown(part_of);
    format!("--- {} pipemedic: {doing}, part of {part_of}: `{}`\n", crate::types::now_rfc3339(), describe_cmd(argv))
}

/// Runs a service script, its output appended to the script log under a
/// line that says when, what and for which plan.
fn spawn(argv: &[String], svc: &ServiceConfig, out: &ScriptLog, doing: &str) -> Result<Child, ActionError> {
    let path = &out.path;
    let failed = |what: String| ActionError::new(doing, what);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| failed(format!("creating {}: {e}", dir.display())))?;
    }
    let mut log = crate::fsutil::open_append(path).map_err(|e| failed(format!("opening {}: {e}", path.display())))?;
    log.write_all(script_header(doing, out.part_of, argv).as_bytes())
        .map_err(|e| failed(format!("writing {}: {e}", path.display())))?;
    let err = log.try_clone().map_err(|e| failed(e.to_string()))?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(log).stderr(err).process_group(0);
    if let Some(dir) = &svc.workdir {
        cmd.current_dir(dir);
    }
    cmd.spawn().map_err(|e| failed(format!("running `{}`: {e}", describe_cmd(argv))))
}

/// Waits up to `limit` for a script to exit; true if it did.
fn wait_exit(child: &mut Child, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Err(_) => return true,
            Ok(None) if Instant::now() >= until => return false,
            Ok(None) if crate::runtime::pause(CHECK_EVERY).is_err() => return false,
            Ok(None) => {}
        }
    }
}

/// Waits for a script in the background so it does not linger as a zombie.
fn reap(mut child: Child) {
    std::thread::spawn(move || {
        let _ = child.wait();
    });
}

/// Stop, start or restart a configured service with its own scripts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStep {
    pub op: ServiceOp,
    pub service: Name,
}

/// `service_restart(name)` and its kin: a service under `[services]`.
pub fn spec(op: ServiceOp, service: &str) -> StepSpec {
    let service = service.to_string();
    StepSpec::new("service", format!("{op} {service}"), move |sections| {
        let name = Name::parse("service name", &service).map_err(Refusal::invalid)?;
        if !sections.service.services.contains_key(name.as_str()) {
            return Err(Refusal::NotConfigured(format!("service {name} is not configured under [services]")));
        }
        Ok(Step::Service(ServiceStep { op, service: name }))
    })
}

impl Action for ServiceStep {
    fn family(&self) -> &'static str {
        "service"
    }

    fn target(&self) -> String {
        format!("{} {}", self.op, self.service)
    }

    fn changes(&self) -> Option<String> {
        Some(format!("service {}", self.service))
    }

    /// A restart and a stop of one service share a key.
    fn limit_key(&self) -> String {
        format!("service:{}", self.service)
    }

    /// A service step's preview only reports the moment (running, which
    /// pid): canal stopping or a standby taking over between the mail and
    /// the answer does not change what the plan does; and it was computed
    /// before the plan's earlier steps ran (a start after a stop in the same
    /// plan looked like a no-op), so the step decides again when it runs.
    fn preview_binds(&self) -> bool {
        false
    }

    fn preview(&self, cx: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        preview(&cx.sections.service, self.op, &self.service)
    }

    fn apply(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        apply(&cx.sections.service, self.op, &self.service, cx.part_of)
    }

    fn verify(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        verify(&cx.sections.service, self.op, &self.service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_header_is_one_line_whatever_it_was_part_of() {
        let argv = vec!["bin/startup.sh".to_string()];
        let forged = "the hold of every canal by the agent on a\n--- 2026 pipemedic: starting canal, part of plan x";
        let header = script_header("starting canal", forged, &argv);
        assert_eq!(header.matches('\n').count(), 1, "{header}");
        assert!(header.ends_with(": `bin/startup.sh`\n"), "{header}");
        assert!(header.starts_with("--- ") && header.contains("pipemedic: starting canal, part of "), "{header}");
    }
}
