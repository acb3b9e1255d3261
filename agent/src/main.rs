//! `pipemedic`: parse the command line, set up logging, hand off.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PIPEMEDIC_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    pipemedic::cli::run(pipemedic::cli::Cli::parse())
}
