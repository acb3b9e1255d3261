//! Rules: Rhai scripts, one per runbook item or family, that turn events
//! into plans.
//!
//! A rule file defines `meta()` (runbook items, sources, signatures,
//! parameters), `plan(ev, ctx)` (returns a plan map or `()`), and optionally
//! `tests()` (log text in, expected plans out; run through the flow by
//! `crate::flow::rule_cases`). The engine is
//! sandboxed: operation, depth and size limits, no `eval`, no modules, no
//! file or process access. A rule that fails to load is reported with
//! `file:line:column` and left out; the others run.

pub mod api;
mod convert;
pub mod history;
mod playbooks;
pub mod statement;

use convert::{event_map, plan_from_dynamic, toml_to_dynamic};
pub use playbooks::Playbook;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, FuncArgs, Position, Scope, AST};

use crate::config::Config;
use crate::matching::{Event, SignatureSpec};
use crate::plan::{PlanSpec, Risk, StepSpec};
pub use api::RuleContext;

/// The pseudo-source probe events come from.
pub const PROBE_SOURCE: &str = "probe";

/// The probe events rules can subscribe to.
pub const PROBES: &[&str] = &[
    "heartbeat_missing",
    "heartbeat_all_missing",
    "heartbeat_not_back",
    "heartbeat_back",
    "reconcile_due",
    "reconcile_equal",
    "reconcile_differs",
    "reconcile_failed",
    "stall_canal_side",
    "stall_broker_down",
    "stall_unexplained",
];

/// A rule problem, located in its file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}: {message}", path.display(), location(*line, *column))]
pub struct RuleError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

fn location(line: usize, column: usize) -> String {
    match (line, column) {
        (0, _) => String::new(),
        (l, 0) => format!(":{l}"),
        (l, c) => format!(":{l}:{c}"),
    }
}

impl RuleError {
    fn at(path: &Path, pos: Position, message: impl Into<String>) -> Self {
        RuleError {
            path: path.to_path_buf(),
            line: pos.line().unwrap_or(0),
            column: pos.position().unwrap_or(0),
            message: message.into(),
        }
    }
}

/// One loaded rule.
#[derive(Clone)]
pub struct Rule {
    /// The file stem, e.g. `k1_unknown_host`.
    pub name: String,
    pub path: PathBuf,
    pub runbook: Vec<String>,
    pub sources: Vec<String>,
    /// Probe events it wants (`heartbeat_missing`, …): findings of the
    /// agent's own watches rather than log lines.
    pub probes: Vec<String>,
    /// Runs only on a record no other rule planned anything for: the
    /// "nobody explained this fatal line" notice (`meta()`'s `fallback: true`).
    pub fallback: bool,
    /// Signature name → pattern.
    pub signatures: BTreeMap<String, String>,
    pub params: rhai::Map,
    pub has_tests: bool,
    ast: AST,
}

/// All rules that loaded, with the engine they run in.
pub struct RuleSet {
    /// Shared by [`RuleSet::only`]'s one-rule sets.
    engine: Arc<Engine>,
    pub rules: Vec<Rule>,
    /// Operator-run procedures, by name.
    pub playbooks: BTreeMap<String, Playbook>,
    /// (signature, source) → rules that want it.
    subscribers: HashMap<(String, String), Vec<usize>>,
}

thread_local! {
    /// When the rule call running on this thread began: the time budget is
    /// counted from here.
    static CALL_STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Builds the sandboxed engine every rule and playbook runs in. A call is
/// bounded by `max_operations` and by `max_time`: an operation count alone
/// lets a loop of expensive operations (large `pad()`s) hold the worker.
pub fn sandboxed_engine(max_operations: u64, max_time: Duration) -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(max_operations)
        .set_max_call_levels(32)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(256 * 1024)
        .set_max_array_size(10_000)
        .set_max_map_size(10_000)
        .set_max_variables(512)
        .set_max_functions(128)
        .set_max_modules(0)
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true);
    e.disable_symbol("eval");
    // Engine::new() resolves `import` from the working directory; no rule
    // may load code from anywhere.
    e.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    e.on_print(|s| tracing::info!(target: "pipemedic::rule", "{s}"));
    e.on_debug(|s, src, pos| tracing::debug!(target: "pipemedic::rule", "{src:?} {pos}: {s}"));
    e.on_progress(move |ops| {
        if ops % 64 != 0 {
            return None;
        }
        let started = CALL_STARTED.with(Cell::get)?;
        (started.elapsed() > max_time).then(|| Dynamic::from(TIME_BUDGET))
    });
    api::register(&mut e);
    e
}

/// What `on_progress` terminates a call with when its time is up.
const TIME_BUDGET: &str = "time budget";

/// Calls a script function under the engine's limits, the time budget
/// counted from now. Any failure, a panic in the engine or a host function
/// included, comes back as an error that names the function; nothing a
/// script does can unwind into the daemon.
fn call<T: Clone + Send + Sync + 'static>(
    engine: &Engine,
    ast: &AST,
    path: &Path,
    function: &str,
    args: impl FuncArgs,
) -> Result<T, RuleError> {
    CALL_STARTED.with(|c| c.set(Some(Instant::now())));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.call_fn_with_options::<T>(CallFnOptions::new().eval_ast(false), &mut Scope::new(), ast, function, args)
    }));
    CALL_STARTED.with(|c| c.set(None));
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RuleError::at(path, e.position(), format!("in {function}(): {}", describe(&e)))),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(RuleError::at(path, Position::NONE, format!("in {function}(): the engine panicked: {what}")))
        }
    }
}

fn describe(e: &EvalAltResult) -> String {
    match e {
        EvalAltResult::ErrorTerminated(v, _) if v.clone().into_string().is_ok_and(|s| s == TIME_BUDGET) => {
            "stopped: the call ran past the time budget ([limits] rule_max_ms)".into()
        }
        EvalAltResult::ErrorTooManyOperations(_) => {
            "stopped: the call ran past the operation budget ([limits] rule_max_operations)".into()
        }
        e => e.to_string(),
    }
}

impl RuleSet {
    /// Loads every `*.rhai` file in `config.rule_dirs`; a file in a later
    /// directory replaces one of the same name in an earlier directory.
    /// Returns the rules that loaded and an error for each that did not.
    pub fn load(config: &Config) -> (RuleSet, Vec<RuleError>) {
        let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut errors = Vec::new();
        for dir in &config.rule_dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != &config.rule_dirs[0] => continue,
                Err(e) => {
                    errors.push(RuleError::at(dir, Position::NONE, format!("reading rule directory: {e}")));
                    continue;
                }
            };
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths.into_iter().filter(|p| p.extension().is_some_and(|x| x == "rhai")) {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                files.insert(stem, path);
            }
        }
        let engine = Arc::new(sandboxed_engine(config.limits.rule_max_operations, config.limits.rule_max_time()));
        let mut set = RuleSet { engine, rules: Vec::new(), playbooks: BTreeMap::new(), subscribers: HashMap::new() };
        let mut patterns: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
        for (name, path) in files {
            match set.load_one(&name, &path, config, &mut patterns) {
                Ok(rule) => set.rules.push(rule),
                Err(e) => errors.push(e),
            }
        }
        set.index_subscribers();
        (set, errors)
    }

    /// A set of `rule` alone, in the same engine: what a rule test feeds
    /// through the flow, so that only this rule reacts.
    pub fn only(&self, rule: &Rule) -> RuleSet {
        let mut set = RuleSet {
            engine: self.engine.clone(),
            rules: vec![rule.clone()],
            playbooks: BTreeMap::new(),
            subscribers: HashMap::new(),
        };
        set.index_subscribers();
        set
    }

    fn index_subscribers(&mut self) {
        self.subscribers.clear();
        for (i, rule) in self.rules.iter().enumerate() {
            for sig in rule.signatures.keys() {
                for source in &rule.sources {
                    self.subscribers.entry((sig.clone(), source.clone())).or_default().push(i);
                }
            }
            for probe in &rule.probes {
                self.subscribers.entry((probe.clone(), PROBE_SOURCE.to_string())).or_default().push(i);
            }
        }
    }

    fn load_one(
        &self,
        name: &str,
        path: &Path,
        config: &Config,
        patterns: &mut BTreeMap<String, (String, PathBuf)>,
    ) -> Result<Rule, RuleError> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| RuleError::at(path, Position::NONE, format!("reading rule: {e}")))?;
        crate::types::Name::parse("rule name", name).map_err(|e| RuleError::at(path, Position::NONE, e.to_string()))?;
        let ast = self.engine.compile(&src).map_err(|e| RuleError::at(path, e.position(), e.err_type().to_string()))?;
        let functions: BTreeSet<(String, usize)> =
            ast.iter_functions().map(|f| (f.name.to_string(), f.params.len())).collect();
        for (f, arity) in [("meta", 0), ("plan", 2)] {
            if !functions.contains(&(f.to_string(), arity)) {
                return Err(RuleError::at(
                    path,
                    Position::new(1, 1),
                    format!("a rule must define fn {f}() with {arity} parameter(s)"),
                ));
            }
        }
        let meta = call::<Dynamic>(&self.engine, &ast, path, "meta", ())?;
        let bad = |m: String| RuleError::at(path, Position::new(1, 1), format!("meta(): {m}"));
        let meta = meta.try_cast::<rhai::Map>().ok_or_else(|| bad("must return a map".into()))?;
        for key in meta.keys() {
            if !["runbook", "sources", "signatures", "params", "probes", "fallback"].contains(&key.as_str()) {
                return Err(bad(format!(
                    "unknown key `{key}` (expected runbook, sources, signatures, probes, params, fallback)"
                )));
            }
        }
        let strings = |key: &str| -> Result<Vec<String>, RuleError> {
            let v = meta.get(key).cloned().ok_or_else(|| bad(format!("`{key}` is missing")))?;
            let arr = v.into_array().map_err(|t| bad(format!("`{key}` must be an array of strings, not {t}")))?;
            arr.into_iter()
                .map(|d| d.into_string().map_err(|t| bad(format!("`{key}` holds a {t}, not a string"))))
                .collect()
        };
        let runbook = strings("runbook")?;
        let fallback = match meta.get("fallback") {
            None => false,
            Some(d) => d.as_bool().map_err(|t| bad(format!("`fallback` must be true or false, not {t}")))?,
        };
        let probes = if meta.contains_key("probes") { strings("probes")? } else { Vec::new() };
        for p in &probes {
            if !PROBES.contains(&p.as_str()) {
                return Err(bad(format!("unknown probe `{p}` (known: {})", PROBES.join(", "))));
            }
        }
        let sources = if meta.contains_key("sources") || probes.is_empty() { strings("sources")? } else { Vec::new() };
        if runbook.is_empty() || (sources.is_empty() && probes.is_empty()) {
            return Err(bad("`runbook` and `sources` (or `probes`) must not be empty".into()));
        }
        let sig_map = match meta.get("signatures") {
            None if !probes.is_empty() => rhai::Map::new(),
            other => other
                .cloned()
                .and_then(|d| d.try_cast::<rhai::Map>())
                .ok_or_else(|| bad("`signatures` must be a map of name → regex".into()))?,
        };
        let mut signatures = BTreeMap::new();
        for (sig, pattern) in sig_map {
            let pattern =
                pattern.into_string().map_err(|t| bad(format!("signature `{sig}` must be a string, not {t}")))?;
            crate::types::Name::parse("signature name", &sig).map_err(|e| bad(e.to_string()))?;
            crate::matching::check_pattern(&pattern).map_err(|e| bad(format!("signature `{sig}`: {e}")))?;
            if let Some((other, other_path)) = patterns.get(sig.as_str()) {
                if *other != pattern {
                    return Err(bad(format!(
                        "signature `{sig}` is already declared with another pattern in {}",
                        other_path.display()
                    )));
                }
            }
            patterns.insert(sig.to_string(), (pattern.clone(), path.to_path_buf()));
            signatures.insert(sig.to_string(), pattern);
        }
        let mut params = match meta.get("params") {
            None => rhai::Map::new(),
            Some(d) => d.clone().try_cast::<rhai::Map>().ok_or_else(|| bad("`params` must be a map".into()))?,
        };
        if let Some(overrides) = config.rules.get(name) {
            for (key, value) in overrides {
                if !params.contains_key(key.as_str()) {
                    return Err(bad(format!(
                        "[rules.{name}] in the config sets `{key}`, which this rule does not have"
                    )));
                }
                params.insert(key.as_str().into(), toml_to_dynamic(value));
            }
        }
        Ok(Rule {
            name: name.to_string(),
            path: path.to_path_buf(),
            runbook,
            sources,
            probes,
            fallback,
            signatures,
            params,
            has_tests: functions.contains(&("tests".to_string(), 0)),
            ast,
        })
    }

    /// Every signature, with the sources of the rules that declare it.
    pub fn signature_specs(&self) -> Vec<SignatureSpec> {
        let mut specs: BTreeMap<&str, SignatureSpec> = BTreeMap::new();
        for rule in &self.rules {
            for (name, pattern) in &rule.signatures {
                let spec = specs.entry(name).or_insert_with(|| SignatureSpec {
                    name: name.clone(),
                    pattern: pattern.clone(),
                    sources: BTreeSet::new(),
                });
                spec.sources.extend(rule.sources.iter().cloned());
            }
        }
        specs.into_values().collect()
    }

    /// The rules that want `signature` on `source`.
    pub fn subscribers(&self, signature: &str, source: &str) -> &[usize] {
        self.subscribers.get(&(signature.to_string(), source.to_string())).map_or(&[], Vec::as_slice)
    }

    /// Runs a rule's `plan(ev, ctx)`, which returns a plan, an array of
    /// plans (each decided on its own: a notification now and a risky fix
    /// for approval, say), or `()`. Empty: the rule saw nothing to do.
    pub fn run(&self, rule: &Rule, event: &Event, ctx: RuleContext) -> Result<Vec<PlanSpec>, RuleError> {
        let ev = event_map(event);
        let out = call::<Dynamic>(&self.engine, &rule.ast, &rule.path, "plan", (ev, ctx))?;
        let bad = |m: String| RuleError::at(&rule.path, Position::NONE, format!("plan() returned {m}"));
        if out.is_unit() {
            return Ok(Vec::new());
        }
        if out.is_array() {
            let plans = out.into_array().expect("checked");
            return plans.into_iter().filter(|p| !p.is_unit()).map(|p| plan_from_dynamic(p).map_err(bad)).collect();
        }
        plan_from_dynamic(out).map(|p| vec![p]).map_err(bad)
    }

    /// Calls a rule's `tests()`.
    pub fn test_cases(&self, rule: &Rule) -> Result<rhai::Array, RuleError> {
        call::<rhai::Array>(&self.engine, &rule.ast, &rule.path, "tests", ())
    }
}

/// The rule directories, for a message.
pub fn describe_dirs(dirs: &[std::path::PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}
