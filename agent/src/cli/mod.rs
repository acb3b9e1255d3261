//! The command line: one function per subcommand, each turning library
//! results into a report for a person and an exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::approval::token::Signer;
use crate::approval::{human_time, ApprovalState, ApprovalStore, Decision};
use crate::config::Config;
use crate::replay::Format;
use crate::rules::RuleSet;

/// Where the packaged agent reads its configuration.
const DEFAULT_CONFIG: &str = "/etc/pipemedic/pipemedic.toml";

/// A self-healing agent for MySQL → Canal → Kafka → consumer → PostgreSQL pipelines.
#[derive(Parser)]
#[command(name = "pipemedic", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon: follow the logs, apply safe fixes, audit everything.
    Run {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Change nothing outside the state directory; report what would be done.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the configuration and that every rule and playbook loads.
    Check {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Also list every signature: source, name and regex, one per line.
        #[arg(long)]
        signatures: bool,
    },
    /// Feed old logs through the rules as SOURCE (dry-run) and print one decision per line.
    Replay {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long, short)]
        source: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Compute each step's preview from live state, as the daemon would.
        #[arg(long)]
        previews: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run every rule's test cases (log text in, expected plans out).
    Test {
        /// Defaults to the embedded example configuration and shipped rules.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List approvals (pending ones; --all for every one).
    Approvals {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        all: bool,
    },
    /// Approve a pending plan as the local root user.
    Approve {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        id: String,
    },
    /// Deny a pending plan as the local root user.
    Deny {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        id: String,
    },
    /// Operator-run procedures from the playbook directories.
    Playbook {
        #[command(subcommand)]
        what: PlaybookCommand,
    },
    /// Kafka's partition leaders (runbook T1) and a group's lag (T2).
    Kafka {
        #[command(subcommand)]
        what: KafkaCommand,
    },
    /// Canal's state: who serves each destination, its cursor, its source's binlogs.
    Canal {
        #[command(subcommand)]
        what: CanalCommand,
    },
    /// One screen: sources' freshness, heartbeats, pending approvals, recent
    /// actions, open circuit breakers (runbook M1–M4's look).
    Status {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The last 24 hours with heartbeats per hour: the daily digest's text.
        #[arg(long)]
        day: bool,
    },
    /// Run the runbook's checks once and print the findings in its order.
    /// Changes nothing.
    Diagnose {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// How much of the end of each log to read, in MiB.
        #[arg(long, default_value_t = 8)]
        tail_mib: u64,
    },
    /// Try it: a scratch pipeline, the daemon in dry-run, incidents from the runbook.
    Demo {
        #[arg(long, default_value = "pipemedic-demo")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum PlaybookCommand {
    /// The loaded playbooks with their parameters.
    List {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Ask the running agent to run a playbook: its plan is previewed from
    /// live state and, if risky, mailed for approval like a rule's.
    Run {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        name: String,
        /// A parameter, `key=value` (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum KafkaCommand {
    /// Partition → leader, replicas, ISR (what `kafka-topics.sh --describe` showed).
    Leaders {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        topic: Option<String>,
    },
    /// Per partition: committed offset, log end, lag, and the total (what ConsumerOffsetChecker showed).
    Lag {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Default: `[kafka] group`.
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        topic: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum CanalCommand {
    /// Each destination: running server, cluster, cursor (journal, position,
    /// time, source) and how far it is behind its source's newest binlog.
    Status {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> ExitCode {
    // A report piped into `head` ends like any Unix tool's when the reader
    // goes: SIGPIPE, not a panic on the broken pipe. The daemon and the
    // commands that talk to it over sockets keep Rust's ignored SIGPIPE.
    if matches!(
        cli.command,
        Command::Check { .. }
            | Command::Replay { .. }
            | Command::Test { .. }
            | Command::Status { .. }
            | Command::Diagnose { .. }
            | Command::Approvals { .. }
            | Command::Canal { .. }
            | Command::Kafka { .. }
            | Command::Playbook { what: PlaybookCommand::List { .. } }
    ) {
        // SAFETY: at start-up, before any other thread exists; SIG_DFL
        // installs no handler code.
        let _ = unsafe {
            nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl)
        };
    }
    let result = match cli.command {
        Command::Run { config, dry_run } => run_daemon(&config, dry_run),
        Command::Check { config, signatures } => check(&config, signatures),
        Command::Replay { config, source, format, previews, files } => {
            replay(&config, &source, format, previews, &files)
        }
        Command::Test { config } => test(config.as_deref()),
        Command::Status { config, day } => status(&config, day),
        Command::Diagnose { config, tail_mib } => Config::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|c| crate::diagnose::diagnose(&c, tail_mib << 20))
            .map(|text| {
                print!("{}", crate::types::terminal_safe(&text));
                ExitCode::SUCCESS
            }),
        Command::Approvals { config, all } => approvals(&config, all),
        Command::Approve { config, id } => decide(&config, &id, Decision::Approve),
        Command::Deny { config, id } => decide(&config, &id, Decision::Deny),
        Command::Canal { what: CanalCommand::Status { config } } => canal_status(&config),
        Command::Playbook { what: PlaybookCommand::List { config } } => playbook_list(&config),
        Command::Kafka { what: KafkaCommand::Leaders { config, topic } } => kafka_leaders(&config, topic.as_deref()),
        Command::Kafka { what: KafkaCommand::Lag { config, group, topic } } => {
            kafka_lag(&config, group.as_deref(), topic.as_deref())
        }
        Command::Playbook { what: PlaybookCommand::Run { config, name, params } } => {
            playbook_run(&config, &name, &params)
        }
        Command::Demo { dir } => crate::demo::run(&dir).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("pipemedic: {e:#}");
        ExitCode::FAILURE
    })
}

fn status(path: &Path, day: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let window = if day { crate::report::DIGEST_WINDOW } else { crate::report::HOUR };
    let report = crate::report::Report::gather(&config, chrono::Utc::now().timestamp_millis(), window);
    print!("{}", crate::types::terminal_safe(&report.render(&config)));
    Ok(ExitCode::SUCCESS)
}

fn run_daemon(path: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(path)?;
    config.dry_run |= dry_run;
    crate::daemon::Daemon::new(config)?.run()?;
    Ok(ExitCode::SUCCESS)
}

fn check(path: &Path, list_signatures: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let (rules, errors) = RuleSet::load(&config);
    if list_signatures {
        for spec in rules.signature_specs() {
            for source in &spec.sources {
                println!("{source}\t{}\t{}", spec.name, spec.pattern);
            }
        }
    }
    for e in &errors {
        eprintln!("{e}");
    }
    let mut rules = rules;
    let playbook_errors = rules.load_playbooks(&config);
    let playbooks = rules.playbooks.len() + playbook_errors.len();
    for e in &playbook_errors {
        eprintln!("{e}");
    }
    let mut problems = errors.len() + playbook_errors.len();
    if let Err(e) = crate::matching::Matcher::new(&rules.signature_specs()) {
        eprintln!("{e}");
        problems += 1;
    }
    for name in config.rules.keys() {
        if !rules.rules.iter().any(|r| &r.name == name)
            && !errors.iter().any(|e| e.path.file_stem().is_some_and(|s| s == name.as_str()))
        {
            eprintln!("{}: [rules.{name}] names no loaded rule (misspelled?)", path.display());
            problems += 1;
        }
    }
    if rules.rules.is_empty() {
        eprintln!("{}: no rule loaded from {}", path.display(), describe_dirs(&config.rule_dirs));
        problems += 1;
    }
    for p in config.host_problems() {
        match config.dry_run {
            true => println!("note (fails check once dry_run is off): {p}"),
            false => {
                eprintln!("{}: {p}", path.display());
                problems += 1;
            }
        }
    }
    for rule in &rules.rules {
        let missing: Vec<&String> =
            rule.sources.iter().filter(|s| config.sources_of_kind(s).next().is_none()).collect();
        if !missing.is_empty() {
            println!(
                "note: {} watches {missing:?}, which this host does not configure; it stays idle for those",
                rule.name
            );
        }
    }
    println!(
        "{}: {} source(s), {} service(s), {} rule(s) loaded, {} failed, {} playbook(s) compiled, {} failed",
        path.display(),
        config.sources.len(),
        config.services.len(),
        rules.rules.len(),
        errors.len(),
        playbooks - playbook_errors.len(),
        playbook_errors.len()
    );
    Ok(if problems == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The rule directories, for a message.
pub fn describe_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn replay(path: &Path, source: &str, format: Format, previews: bool, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let s = crate::replay::replay(config, source, files, format, previews, &mut out)?;
    std::io::Write::flush(&mut out)?;
    eprintln!(
        "replayed {:.1} MiB, {} records, {} events, {} decisions in {:.2} s ({:.0} MiB/s)",
        s.bytes as f64 / 1048576.0,
        s.records,
        s.events,
        s.decisions,
        s.seconds,
        s.bytes as f64 / 1048576.0 / s.seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

fn test(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let scratch;
    let config = match path {
        Some(p) => Config::load(p)?,
        None => {
            scratch = tempfile_dir()?;
            Config::load(&crate::demo::materialize(&scratch.0)?)?
        }
    };
    let (rules, errors) = RuleSet::load(&config);
    for e in &errors {
        println!("FAIL load {e}");
    }
    if rules.rules.is_empty() {
        println!("FAIL no rule loaded from {}", describe_dirs(&config.rule_dirs));
        return Ok(ExitCode::FAILURE);
    }
    let results = crate::rules::testing::run_all(&rules, &config);
    use crate::rules::testing::Verdict;
    let (mut passed, mut skipped, mut failed) = (0, 0, errors.len());
    for r in &results {
        match &r.verdict {
            Verdict::Pass => {
                passed += 1;
                println!("ok   {} / {}", r.rule, r.case);
            }
            Verdict::Skip(why) => {
                skipped += 1;
                println!("skip {} / {}: {why}", r.rule, r.case);
            }
            Verdict::Fail(why) => {
                failed += 1;
                println!("FAIL {} / {}: {why}", r.rule, r.case);
            }
        }
    }
    println!(
        "{passed} passed, {failed} failed{}",
        if skipped > 0 { format!(", {skipped} skipped") } else { String::new() }
    );
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn approvals(path: &Path, all: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let list: Vec<_> = ApprovalStore::read_all(&config.state_dir)
        .into_iter()
        .filter(|a| all || a.state == ApprovalState::Pending)
        .collect();
    if list.is_empty() {
        println!("no {}approvals", if all { "" } else { "pending " });
    }
    for a in list {
        let approved: Vec<&str> = a.approved_by.iter().map(|d| d.who.as_str()).collect();
        println!(
            "{id}  {state:<10} {risk:<9} {runbook:<8} expires {expires}{dry}\n    {summary}\n    asked: {asked}; approved by: {approved}{outcome}",
            id = a.id,
            state = format!("{:?}", a.state).to_lowercase(),
            risk = a.risk.to_string(),
            runbook = a.runbook.join(","),
            expires = human_time(a.expires),
            dry = if a.dry_run { "  DRY RUN" } else { "" },
            summary = a.summary,
            asked = a.approvers_asked.join(", "),
            approved = if approved.is_empty() { "nobody".to_string() } else { approved.join(", ") },
            outcome = a.outcome.map(|o| format!("\n    {o}")).unwrap_or_default(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Decides as the local root user: reading the 0600 approval key proves it.
/// The decision goes through the running agent, like a link's, so the same
/// checks, re-check and audit apply.
fn decide(path: &Path, id: &str, decision: Decision) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let approval =
        config.approval.as_ref().ok_or_else(|| anyhow::anyhow!("{}: no [approval] section", path.display()))?;
    let a = ApprovalStore::read_one(&config.state_dir, id)?
        .ok_or_else(|| anyhow::anyhow!("no approval {id} in {}", config.state_dir.display()))?;
    let signer = Signer::load(&Signer::key_path(&config.state_dir))
        .map_err(|e| anyhow::anyhow!("{e} (approving on the host needs the root user)"))?;
    let user = std::env::var("SUDO_USER").map(|u| format!("root (sudo by {u})")).unwrap_or_else(|_| "root".into());
    let approver = format!("local:{user}@{}", config.host_name());
    let token = signer.sign(&a.id, &a.plan_hash, decision, a.expires, &approver);
    let exp = a.expires.to_string();
    let fields = [
        ("decision", decision.as_str()),
        ("approver", approver.as_str()),
        ("exp", exp.as_str()),
        ("token", token.as_str()),
    ];
    let (status, body) =
        crate::approval::web::request(approval.listen, "POST", &format!("/approvals/{}", a.id), Some(&fields))
            .map_err(|e| anyhow::anyhow!("the agent does not answer at {}: {e}; is it running?", approval.listen))?;
    let text = strip_tags(&body);
    println!("{}", text.trim());
    Ok(if status == 200 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The text of one of the agent's small pages.
fn strip_tags(html: &str) -> String {
    let body = html.split_once("</h2>").map_or(html, |(_, b)| b);
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn playbook_list(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let (mut rules, _) = RuleSet::load(&config);
    let errors = rules.load_playbooks(&config);
    for e in &errors {
        eprintln!("{e}");
    }
    for pb in rules.playbooks.values() {
        let params: Vec<String> = pb.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{} [{}] {}\n    {}\n    params: {}",
            pb.name,
            pb.runbook.join(","),
            pb.path.display(),
            pb.description,
            params.join(" ")
        );
    }
    Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Signs the request with the approval key (reading it proves the local
/// root user) and hands it to the running agent.
fn playbook_run(path: &Path, name: &str, raw: &[String]) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let approval =
        config.approval.as_ref().ok_or_else(|| anyhow::anyhow!("{}: no [approval] section", path.display()))?;
    let mut params = std::collections::BTreeMap::new();
    for p in raw {
        let (k, v) = p.split_once('=').ok_or_else(|| anyhow::anyhow!("--param {p:?}: expected key=value"))?;
        params.insert(k.to_string(), v.to_string());
    }
    let params = serde_json::to_string(&params)?;
    let signer = Signer::load(&Signer::key_path(&config.state_dir))
        .map_err(|e| anyhow::anyhow!("{e} (running a playbook needs the root user)"))?;
    let user = std::env::var("SUDO_USER").map(|u| format!("root (sudo by {u})")).unwrap_or_else(|_| "root".into());
    let requester = format!("local:{user}@{}", config.host_name());
    let expires = (chrono::Utc::now().timestamp_millis() + 60_000).to_string();
    let id = crate::approval::playbook_token_id(name);
    let token = signer.sign(&id, &params, Decision::Approve, expires.parse()?, &requester);
    let fields = [
        ("params", params.as_str()),
        ("requester", requester.as_str()),
        ("exp", expires.as_str()),
        ("token", token.as_str()),
    ];
    let path = format!("/playbooks/{}", crate::approval::url_encode(name));
    let (status, body) = crate::approval::web::request(approval.listen, "POST", &path, Some(&fields))
        .map_err(|e| anyhow::anyhow!("the agent does not answer at {}: {e}; is it running?", approval.listen))?;
    println!("{}", strip_tags(&body).trim());
    Ok(if status == 200 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn kafka_leaders(path: &Path, topic: Option<&str>) -> anyhow::Result<ExitCode> {
    use crate::probes::kafka::{leaders, leaders_from_zookeeper};
    let config = Config::load(path)?;
    let kafka = config.kafka.as_ref().ok_or_else(|| anyhow::anyhow!("{}: no [kafka] section", path.display()))?;
    let (rows, from) = match leaders(kafka, topic) {
        Ok(rows) => (rows, "the brokers' metadata".to_string()),
        Err(e) => {
            let zk_config =
                config.zookeeper.as_ref().ok_or_else(|| anyhow::anyhow!("{e}; and no [zookeeper] to fall back to"))?;
            let zk = crate::zk::Session::connect(zk_config).map_err(|z| anyhow::anyhow!("{e}; ZooKeeper: {z}"))?;
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

fn kafka_lag(path: &Path, group: Option<&str>, topic: Option<&str>) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let kafka = config.kafka.as_ref().ok_or_else(|| anyhow::anyhow!("{}: no [kafka] section", path.display()))?;
    let group = group.or(kafka.group.as_deref()).ok_or_else(|| anyhow::anyhow!("no --group and no [kafka] group"))?;
    let rows = crate::probes::kafka::lag(kafka, group, topic).map_err(|e| anyhow::anyhow!(e))?;
    println!("{:<12} {:<32} {:>5} {:>14} {:>14} {:>10}", "Group", "Topic", "Pid", "Offset", "logSize", "Lag");
    for r in &rows {
        let offset = r.committed.map_or("none".to_string(), |o| o.to_string());
        println!("{group:<12} {:<32} {:>5} {offset:>14} {:>14} {:>10}", r.topic, r.partition, r.log_end, r.lag);
    }
    println!("total lag: {}", rows.iter().map(|r| r.lag).sum::<i64>());
    Ok(ExitCode::SUCCESS)
}

fn canal_status(path: &Path) -> anyhow::Result<ExitCode> {
    use crate::actions::canal::read_destinations;
    use crate::actions::mysql::list_binlogs;
    let config = Config::load(path)?;
    let canal = config.canal.as_ref().ok_or_else(|| anyhow::anyhow!("{}: no [canal] section", path.display()))?;
    let zk_config =
        config.zookeeper.as_ref().ok_or_else(|| anyhow::anyhow!("{}: no [zookeeper] section", path.display()))?;
    let zk = crate::zk::Session::connect(zk_config).map_err(|e| anyhow::anyhow!(e))?;
    for d in read_destinations(&zk, canal).map_err(|e| anyhow::anyhow!(e))? {
        println!("destination {}", d.name);
        println!("  running:  {}", d.running.as_deref().unwrap_or("nobody (no canal server holds it)"));
        println!("  cluster:  {}", if d.cluster.is_empty() { "-".to_string() } else { d.cluster.join(", ") });
        let mysql = &canal.destinations[&d.name].mysql;
        let logs = list_binlogs(mysql, &config.mysql[mysql]);
        match &d.cursor {
            None => println!("  cursor:   none at {}", d.cursor_path),
            Some((Err(e), node)) => {
                println!("  cursor:   {} (version {}) is unreadable: {e}", d.cursor_path, node.version)
            }
            Some((Ok(c), node)) => {
                let at = if c.journal.is_empty() {
                    "timestamp only".to_string()
                } else {
                    format!("{}:{}", c.journal, c.position)
                };
                println!(
                    "  cursor:   {at} at {} from {}:{} (version {})",
                    human_time(c.timestamp),
                    c.address,
                    c.port,
                    node.version
                );
                if let Ok(logs) = &logs {
                    if let Some(newest) = logs.last() {
                        let files_behind = logs.iter().filter(|b| b.name > c.journal).count();
                        let behind = match (c.journal == newest.name, c.journal.is_empty()) {
                            (true, _) => format!(
                                "in the newest binlog, {} bytes before its end",
                                newest.size.saturating_sub(c.position.max(0) as u64)
                            ),
                            (_, true) => "timestamp only: canal searches by time on its next start".to_string(),
                            _ => format!("{files_behind} binlog file(s) behind the newest"),
                        };
                        println!("  behind:   {behind}");
                    }
                    if logs.first().is_some_and(|b| !c.journal.is_empty() && b.name > c.journal) {
                        println!("  WARNING:  the cursor's binlog {} is purged on the source (runbook N4)", c.journal);
                    }
                }
            }
        }
        match logs {
            Ok(logs) => {
                if let (Some(first), Some(last)) = (logs.first(), logs.last()) {
                    println!(
                        "  source:   [mysql.{mysql}] {} binlog(s): {} (created {}) … {} (created {}, {} bytes)",
                        logs.len(),
                        first.name,
                        human_time(first.created_ms),
                        last.name,
                        human_time(last.created_ms),
                        last.size
                    );
                }
            }
            Err(e) => println!("  source:   {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A scratch directory removed on drop.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> anyhow::Result<ScratchDir> {
    let dir = std::env::temp_dir().join(format!("pipemedic-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(ScratchDir(dir))
}
