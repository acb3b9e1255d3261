//! The command line: one function per subcommand, each turning library
//! results into a report for a person and an exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::replay::Format;
use crate::rules::RuleSet;

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
        #[arg(long, short)]
        config: PathBuf,
        /// Change nothing outside the state directory; report what would be done.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the configuration and that every rule and playbook loads.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Also list every signature: source, name and regex, one per line.
        #[arg(long)]
        signatures: bool,
    },
    /// Feed old logs through the rules as SOURCE (dry-run) and print one decision per line.
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, short)]
        source: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run every rule's test cases (log text in, expected plans out).
    Test {
        /// Defaults to the embedded example configuration and shipped rules.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Try it: a scratch pipeline, the daemon in dry-run, incidents from the runbook.
    Demo {
        #[arg(long, default_value = "pipemedic-demo")]
        dir: PathBuf,
    },
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run { config, dry_run } => run_daemon(&config, dry_run),
        Command::Check { config, signatures } => check(&config, signatures),
        Command::Replay { config, source, format, files } => replay(&config, &source, format, &files),
        Command::Test { config } => test(config.as_deref()),
        Command::Demo { dir } => crate::demo::run(&dir).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("pipemedic: {e:#}");
        ExitCode::FAILURE
    })
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
    let (playbooks, playbook_errors) = rules.check_playbooks(&config);
    for e in &playbook_errors {
        eprintln!("{e}");
    }
    let mut problems = errors.len() + playbook_errors.len();
    if let Err(e) = crate::matching::Matcher::new(&rules.signature_specs()) {
        eprintln!("{e}");
        problems += 1;
    }
    for rule in &rules.rules {
        let missing: Vec<&String> = rule.sources.iter().filter(|s| config.source(s).is_none()).collect();
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

fn replay(path: &Path, source: &str, format: Format, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let s = crate::replay::replay(config, source, files, format, &mut out)?;
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
    let results = crate::rules::testing::run_all(&rules, &config);
    let failed = results.iter().filter(|r| r.failure.is_some()).count() + errors.len();
    for r in &results {
        match &r.failure {
            None => println!("ok   {} / {}", r.rule, r.case),
            Some(why) => println!("FAIL {} / {}: {why}", r.rule, r.case),
        }
    }
    println!("{} passed, {} failed", results.len() - (failed - errors.len()), failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
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
