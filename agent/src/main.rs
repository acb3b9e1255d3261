//! `pipemedic`: parse the command line, set up logging, hand off.

use std::process::ExitCode;

use clap::Parser;
use pipemedic::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon narrates; one-shot commands print their answer and only
    // warn on stderr.
    let default = if matches!(cli.command, Command::Run { .. } | Command::Demo { .. }) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PIPEMEDIC_LOG").unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    pipemedic::cli::run(cli)
}
