//! `pipemedic replay`: old logs through the flow, nothing changed.

use super::*;

pub(super) fn replay(
    path: &Path,
    source: &str,
    format: Format,
    previews: bool,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
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
