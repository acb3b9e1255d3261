//! The command line: the subcommands, one file each (`run` also has `status`;
//! `approvals` has `approve` and `deny`), each turning library results into a
//! report for a person and an exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::approval::token::Signer;
use crate::approval::{ApprovalState, ApprovalStore, Decision};
use crate::config::Config;
use crate::replay::Format;
use crate::rules::RuleSet;
use crate::types::human_time;

mod approvals;
mod canal;
mod check;
mod kafka;
mod playbook;
mod reconcile;
mod replay;
mod run;
mod test;

use approvals::{approvals, decide};
use canal::canal_status;
use check::check;
use kafka::{kafka_lag, kafka_leaders};
use playbook::{playbook_list, playbook_run};
use replay::replay;
use run::{run_daemon, status};
use test::test;

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
        /// Read every FILE as this source (else: SOURCE=FILE, or the
        /// source whose configured file FILE is, or a rotation of).
        #[arg(long, short)]
        source: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Compute each step's preview from live state, as the daemon would.
        #[arg(long)]
        previews: bool,
        /// The logs, each as FILE or SOURCE=FILE; the sources are read on
        /// cores of their own and decided in log-time order.
        #[arg(required = true)]
        files: Vec<String>,
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
    /// Compare the configured tables of the MySQL sources with their copies
    /// in every PostgreSQL target: rows missing, extra and differing, by key.
    /// Read-only. Exit 0 equal, 1 rows differ, 2 something could not be compared.
    Reconcile {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// A `[reconcile.tables.NAME]` entry (repeatable); default: all.
        #[arg(long = "table", value_name = "NAME")]
        tables: Vec<String>,
        /// Only rows whose change column is at or after this time
        /// (`2026-12-03 14:00`, local, or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only rows whose change column is before this time.
        #[arg(long)]
        until: Option<String>,
        /// Seconds before differing rows are read again (default: `[reconcile] recheck_after_secs`).
        #[arg(long, value_name = "SECS")]
        recheck_after: Option<u64>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Then ask the running agent to repair each table that differs:
        /// a plan mailed for approval like any (upserts: one approver).
        #[arg(long)]
        repair: bool,
        /// With --repair: also delete the rows only the targets have
        /// (data loss: two different approvers).
        #[arg(long, requires = "repair")]
        deletes: bool,
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
            | Command::Reconcile { .. }
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
            replay(&config, source.as_deref(), format, previews, &files)
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
        Command::Reconcile { config, tables, since, until, recheck_after, format, repair, deletes } => {
            reconcile::reconcile(
                &config,
                reconcile::Args { tables, since, until, recheck_after, format, repair, deletes },
            )
        }
        Command::Demo { dir } => crate::demo::run(&dir).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("pipemedic: {e:#}");
        ExitCode::FAILURE
    })
}
