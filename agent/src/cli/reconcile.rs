//! `pipemedic reconcile`: are the PostgreSQL copies equal to the MySQL
//! sources? Exit 0 equal, 1 rows differ, 2 something could not be compared.

use std::io::{IsTerminal, Write};

use super::*;
use crate::reconcile::{parse_time, render, run, Request};

/// Keys listed per kind in the text report.
const KEYS_SHOWN: usize = 20;

pub(super) struct Args {
    pub tables: Vec<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub recheck_after: Option<u64>,
    pub format: Format,
}

pub(super) fn reconcile(path: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let outcome = (|| -> anyhow::Result<crate::reconcile::Report> {
        let config = Config::load(path)?;
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
                Format::Text => print!("{}", crate::types::terminal_safe(&render(&report, KEYS_SHOWN))),
            }
            Ok(ExitCode::from(report.exit_code()))
        }
        Err(e) => {
            eprintln!("pipemedic reconcile: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}
