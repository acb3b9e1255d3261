//! `pipemedic replay`: old logs through the flow, nothing changed.

use super::*;

pub(super) fn replay(
    path: &Path,
    source: Option<&str>,
    format: Format,
    previews: bool,
    files: &[String],
) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let inputs = crate::replay::inputs(&config, source, files)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let s = crate::replay::replay(config, &inputs, format, previews, &mut out)?;
    std::io::Write::flush(&mut out)?;
    eprintln!(
        "replayed {} file(s), {:.1} MiB, {} records, {} events, {} decisions in {:.2} s ({:.0} MiB/s)",
        s.files,
        s.bytes as f64 / 1048576.0,
        s.records,
        s.events,
        s.decisions,
        s.seconds,
        s.bytes as f64 / 1048576.0 / s.seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
