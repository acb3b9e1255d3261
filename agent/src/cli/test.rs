//! `pipemedic test`: the rules' own test cases.

use super::*;

pub(super) fn test(path: Option<&Path>) -> anyhow::Result<ExitCode> {
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
        println!("FAIL no rule loaded from {}", crate::rules::describe_dirs(&config.rule_dirs));
        return Ok(ExitCode::FAILURE);
    }
    let results = crate::flow::rule_cases::run_all(&rules, &config);
    use crate::flow::rule_cases::Verdict;
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
