//! `pipemedic check`: the configuration, rules and playbooks load.

use super::*;

pub(super) fn check(path: &Path, list_signatures: bool) -> anyhow::Result<ExitCode> {
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
    let mut rules = rules;
    let playbook_errors = rules.load_playbooks(&config);
    let playbooks = rules.playbooks.len() + playbook_errors.len();
    for e in &playbook_errors {
        eprintln!("{e}");
    }
    let mut problems = errors.len() + playbook_errors.len();
    match crate::matching::Matcher::new(&crate::flow::signature_specs(&config, &rules)) {
        Err(e) => {
            eprintln!("{e}");
            problems += 1;
        }
        Ok(matcher) => {
            for e in matcher.compile_all() {
                eprintln!("{e}");
                problems += 1;
            }
            if list_signatures {
                for source in config.sources.keys() {
                    if let Some((how, literals)) = matcher.scanned(source).map(|s| s.describe()) {
                        let shown: Vec<String> = literals.iter().map(|l| format!("\"{}\"", l.escape_ascii())).collect();
                        println!("# {source} is scanned ({how}) for {}", shown.join(" "));
                    }
                }
            }
            for s in matcher.slow() {
                println!("note: signature {} makes {:?} slow to scan: {}", s.name, s.sources, s.why);
            }
        }
    }
    for name in config.rules.keys() {
        if !rules.rules.iter().any(|r| &r.name == name)
            && !errors.iter().any(|e| e.path.file_stem().is_some_and(|s| s == name.as_str()))
        {
            eprintln!("{}: [rules.{name}] names no loaded rule (misspelled?)", path.display());
            problems += 1;
        }
    }
    if rules.rules.is_empty() {
        eprintln!("{}: no rule loaded from {}", path.display(), crate::rules::describe_dirs(&config.rule_dirs));
        problems += 1;
    }
    for p in config.host_problems() {
        match config.dry_run {
            true => println!("note (fails check once dry_run is off): {p}"),
            false => {
                eprintln!("{}: {p}", path.display());
                problems += 1;
            }
        }
    }
    for rule in &rules.rules {
        let missing: Vec<&String> =
            rule.sources.iter().filter(|s| config.sources_of_kind(s).next().is_none()).collect();
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
