//! Playbooks: named, parameterised plans a person runs on the host
//! (`playbooks/*.rhai`), loaded and run in the same sandbox as the rules.

use super::*;

/// A named multi-step procedure an operator (or a person answering a
/// finding) runs: `fn meta()` with `runbook`, `description`, `params`, and
/// `fn plan(params)` returning a plan like a rule's.
pub struct Playbook {
    pub name: String,
    pub path: PathBuf,
    pub runbook: Vec<String>,
    pub description: String,
    /// Defaults; `pipemedic playbook run NAME --param k=v` overrides them.
    pub params: rhai::Map,
    ast: AST,
}

impl RuleSet {
    /// Loads every playbook (`*.rhai` in `config.playbook_dirs`, a later
    /// directory replacing the same name) into the set; returns an error for
    /// each that does not load. A missing directory is not an error.
    pub fn load_playbooks(&mut self, config: &Config) -> Vec<RuleError> {
        let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
        for dir in &config.playbook_dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for path in entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "rhai")) {
                files.insert(path.file_stem().unwrap_or_default().to_string_lossy().into_owned(), path);
            }
        }
        let mut errors = Vec::new();
        for (name, path) in files {
            match self.load_playbook(&name, &path) {
                Ok(p) => {
                    self.playbooks.insert(name, p);
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    fn load_playbook(&self, name: &str, path: &Path) -> Result<Playbook, RuleError> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| RuleError::at(path, Position::NONE, format!("reading playbook: {e}")))?;
        let ast = self.engine.compile(&src).map_err(|e| RuleError::at(path, e.position(), e.err_type().to_string()))?;
        let has = |f: &str, n: usize| ast.iter_functions().any(|x| x.name == f && x.params.len() == n);
        if !has("meta", 0) || !has("plan", 1) {
            return Err(RuleError::at(
                path,
                Position::new(1, 1),
                "a playbook must define fn meta() and fn plan(params)",
            ));
        }
        let meta = call::<Dynamic>(&self.engine, &ast, path, "meta", ())?;
        let bad = |m: &str| RuleError::at(path, Position::new(1, 1), format!("meta(): {m}"));
        let meta = meta.try_cast::<rhai::Map>().ok_or_else(|| bad("must return a map"))?;
        let text = |k: &str| meta.get(k).and_then(|d| d.clone().into_string().ok());
        let runbook = meta
            .get("runbook")
            .and_then(|d| d.clone().into_typed_array::<rhai::ImmutableString>().ok())
            .ok_or_else(|| bad("`runbook` must be an array of strings"))?
            .into_iter()
            .map(|s| s.to_string())
            .collect();
        let params = match meta.get("params") {
            None => rhai::Map::new(),
            Some(d) => d.clone().try_cast::<rhai::Map>().ok_or_else(|| bad("`params` must be a map"))?,
        };
        Ok(Playbook {
            name: name.to_string(),
            path: path.to_path_buf(),
            runbook,
            description: text("description").unwrap_or_default(),
            params,
            ast,
        })
    }

    /// Runs a playbook's `plan(params)` with `given` over its defaults; a
    /// parameter it does not declare is refused.
    pub fn run_playbook(&self, pb: &Playbook, given: &BTreeMap<String, String>) -> Result<Vec<PlanSpec>, RuleError> {
        let mut params = pb.params.clone();
        for (k, v) in given {
            if !params.contains_key(k.as_str()) {
                return Err(RuleError::at(
                    &pb.path,
                    Position::NONE,
                    format!("playbook {} has no parameter `{k}`", pb.name),
                ));
            }
            params.insert(k.as_str().into(), v.clone().into());
        }
        let out = call::<Dynamic>(&self.engine, &pb.ast, &pb.path, "plan", (params,))?;
        let bad = |m: String| RuleError::at(&pb.path, Position::NONE, format!("plan() returned {m}"));
        match out {
            d if d.is_unit() => Ok(Vec::new()),
            d if d.is_array() => {
                d.into_array().expect("checked").into_iter().map(|p| plan_from_dynamic(p).map_err(bad)).collect()
            }
            d => plan_from_dynamic(d).map(|p| vec![p]).map_err(bad),
        }
    }
}
