//! `pipemedic reconcile`: are the PostgreSQL copies equal to the MySQL
//! sources? Exit 0 equal, 1 rows differ, 2 something could not be compared.

use std::io::{IsTerminal, Write};

use super::*;
use crate::reconcile::{parse_time, render, run, Request};

pub(super) struct Args {
    pub tables: Vec<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub recheck_after: Option<u64>,
    pub format: Format,
    /// Ask the running agent for a repair of each table that differs.
    pub repair: bool,
    /// ... deleting the rows only the targets have (data loss).
    pub deletes: bool,
}

pub(super) fn reconcile(path: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pipemedic reconcile: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let outcome = (|| -> anyhow::Result<crate::reconcile::Report> {
        let request = Request {
            tables: args.tables,
            since: args.since.as_deref().map(parse_time).transpose().map_err(anyhow::Error::msg)?,
            until: args.until.as_deref().map(parse_time).transpose().map_err(anyhow::Error::msg)?,
            recheck_after: args.recheck_after.map(std::time::Duration::from_secs),
        };
        // A progress line on a terminal only, rewritten in place.
        let terminal = std::io::stderr().is_terminal();
        let mut progress = |what: &str| {
            if terminal {
                let line = crate::types::one_line(what, 100);
                let _ = write!(std::io::stderr(), "\r\x1b[K{line}");
            }
        };
        let report = run(&config.reconcile_section(), &request, &mut progress).map_err(anyhow::Error::msg);
        if terminal {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
        report
    })();
    match outcome {
        Ok(report) => {
            match args.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Text => print!("{}", crate::types::terminal_safe(&render(&report))),
            }
            // Kept for a repair (its preview lists exactly these keys).
            let saved =
                match crate::reconcile::save_reports(&config.state_dir, &report, crate::reconcile::ORIGIN_COMMAND) {
                    Ok(saved) => saved,
                    Err(e) => {
                        eprintln!("pipemedic reconcile: keeping the report in {}: {e}", config.state_dir.display());
                        if args.repair {
                            return Ok(ExitCode::from(2));
                        }
                        Vec::new()
                    }
                };
            if args.repair {
                return ask_for_repairs(path, &config, &report, &saved, args.deletes);
            }
            Ok(ExitCode::from(report.exit_code()))
        }
        Err(e) => {
            eprintln!("pipemedic reconcile: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Asks the running agent for a repair of every table that differs: the
/// `reconcile-repair` playbook, decided and approved like any plan.
fn ask_for_repairs(
    path: &Path,
    config: &Config,
    report: &crate::reconcile::Report,
    saved: &[(String, String)],
    deletes: bool,
) -> anyhow::Result<ExitCode> {
    if report.exit_code() == 2 {
        eprintln!("pipemedic reconcile: not asking for a repair: a table could not be compared");
        return Ok(ExitCode::from(2));
    }
    let mut tables: Vec<&str> = report.tables.iter().filter(|t| !t.equal()).map(|t| t.table.as_str()).collect();
    tables.dedup();
    if tables.is_empty() {
        eprintln!("pipemedic reconcile: every table is equal; nothing to repair");
        return Ok(ExitCode::SUCCESS);
    }
    let mut code = 1;
    for table in tables {
        let sha = saved.iter().find(|(t, _)| t == table).map_or("", |(_, s)| s.as_str());
        let params = [("table", table), ("deletes", if deletes { "yes" } else { "no" }), ("report", sha)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match super::playbook::ask_agent(path, config, "reconcile-repair", &params) {
            Ok((true, said)) => eprintln!("repair of {table}: {said}"),
            Ok((false, said)) => {
                eprintln!("repair of {table}: refused: {said}");
                code = 2;
            }
            Err(e) => {
                eprintln!("repair of {table}: {e:#}");
                code = 2;
            }
        }
    }
    Ok(ExitCode::from(code))
}
