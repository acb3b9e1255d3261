//! `pipemedic run`: the daemon, and `pipemedic status`: what it did lately.

use super::*;

pub(super) fn status(path: &Path, day: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let window = if day { crate::report::DIGEST_WINDOW } else { crate::report::HOUR };
    let report = crate::report::Report::gather(&config, chrono::Utc::now().timestamp_millis(), window);
    print!("{}", crate::types::terminal_safe(&report.render(&config)));
    Ok(ExitCode::SUCCESS)
}

pub(super) fn run_daemon(path: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(path)?;
    config.dry_run |= dry_run;
    crate::daemon::Daemon::new(config)?.run()?;
    Ok(ExitCode::SUCCESS)
}
