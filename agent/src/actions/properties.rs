//! `properties`: set or lower a key in a Java `.properties` file (runbook C2:
//! `max.poll.records`). Every line that defines the key is rewritten in
//! place, keeping its spacing; all other lines stay byte for byte. A missing
//! key is appended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{apply_file_edit, read_for_edit, Action, ActionError, Cx, Guard, Preview, Staged, Step};
use crate::actions::step::{Refusal, Risk, StepSpec};
use crate::digest::sha256_hex;
use crate::types::{Name, PropertyKey, PropertyValue};

/// The change a step wants.
#[derive(Debug, Clone)]
pub enum Change {
    Set(PropertyValue),
    /// `new = max(floor, current × factor)`; `default` stands for a key the
    /// file does not set (the value the program then uses).
    Lower {
        factor: f64,
        floor: u64,
        default: u64,
    },
}

/// One line defining the key: the text before the value, and the value.
struct Definition<'a> {
    line: usize,
    prefix: &'a str,
    value: &'a str,
}

/// The key's definitions, each on one line (as [`crate::properties`] reads
/// the file). A definition continued over several lines is not edited in
/// place: rewriting its first line would leave the rest as a new line.
fn definitions<'a>(content: &'a str, key: &PropertyKey) -> Result<Vec<Definition<'a>>, String> {
    let lines: Vec<&str> = content.split('\n').collect();
    let mut out = Vec::new();
    for d in crate::properties::definitions(content).into_iter().filter(|d| d.key == key.as_str()) {
        let (first, last) = d.lines;
        if first != last {
            return Err(format!(
                "{key} is continued over lines {} to {} (a trailing backslash); not editing it, a person must",
                first + 1,
                last + 1
            ));
        }
        let body = lines[first].trim_end_matches('\r');
        out.push(Definition { line: first, prefix: &body[..d.value_at], value: body[d.value_at..].trim_end() });
    }
    Ok(out)
}

/// The new file content and a human diff, or `None` if nothing changes.
fn plan_edit(content: &str, key: &PropertyKey, change: &Change) -> Result<Option<(String, String)>, String> {
    let defs = definitions(content, key)?;
    let current = defs.last().map(|d| d.value);
    let new_value = match change {
        Change::Set(v) => v.as_str().to_string(),
        Change::Lower { factor, floor, default } => {
            let now = match current {
                Some(v) => v.parse::<u64>().map_err(|_| format!("{key} is {v:?}, not a whole number"))?,
                None => *default,
            };
            if now <= *floor {
                return Ok(None);
            }
            ((now as f64 * factor).floor() as u64).max(*floor).to_string()
        }
    };
    if defs.iter().all(|d| d.value == new_value) && !defs.is_empty() {
        return Ok(None);
    }
    let mut diff = String::new();
    let mut out = String::with_capacity(content.len() + 64);
    let lines: Vec<&str> = content.split_inclusive('\n').collect();
    for (i, text) in lines.iter().enumerate() {
        match defs.iter().find(|d| d.line == i) {
            Some(d) => {
                let ending = &text[text.trim_end_matches(['\n', '\r']).len()..];
                let new_line = format!("{}{new_value}", d.prefix);
                diff.push_str(&format!("-{}\n+{new_line}\n", text.trim_end_matches(['\n', '\r'])));
                out.push_str(&new_line);
                out.push_str(ending);
            }
            None => out.push_str(text),
        }
    }
    if defs.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{key}={new_value}\n"));
        diff.push_str(&format!("+{key}={new_value}\n"));
    }
    Ok(Some((out, diff)))
}

fn doing(path: &Path, key: &PropertyKey) -> String {
    format!("changing {key} in {}", path.display())
}

pub fn preview(path: &Path, key: &PropertyKey, change: &Change, staged: &Staged) -> Result<Preview, ActionError> {
    let doing = doing(path, key);
    let bytes = staged.read(path, &doing)?;
    let content = std::str::from_utf8(&bytes).map_err(|e| ActionError::new(&doing, format!("not UTF-8 text: {e}")))?;
    match plan_edit(content, key, change).map_err(|m| ActionError::new(&doing, m))? {
        None => {
            Ok(Preview { text: format!("{key} in {} needs no change", path.display()), noop: true, guard: Guard::None })
        }
        Some((new, diff)) => Ok(Preview {
            text: format!("--- {p}\n+++ {p}\n{}", diff.trim_end(), p = path.display()),
            noop: false,
            guard: Guard::FileEdit {
                path: path.to_path_buf(),
                sha256: sha256_hex(&bytes),
                old: bytes,
                new: new.into_bytes(),
            },
        }),
    }
}

pub fn apply(path: &Path, key: &PropertyKey, preview: &Preview, backups: &Path) -> Result<String, ActionError> {
    let backup = apply_file_edit(preview, backups, &doing(path, key))?;
    Ok(format!("{} updated (backup {})", path.display(), backup.display()))
}

/// Checks that the key now has the value the preview planned.
pub fn verify(path: &Path, key: &PropertyKey, preview: &Preview) -> Result<String, ActionError> {
    let doing = format!("verifying {key} in {}", path.display());
    let Guard::FileEdit { new, .. } = &preview.guard else {
        return Ok("no change was needed".into());
    };
    let planned = String::from_utf8_lossy(new);
    let want = crate::properties::value(&planned, key.as_str());
    let bytes = read_for_edit(path, &doing)?;
    let content = String::from_utf8_lossy(&bytes);
    let have = crate::properties::value(&content, key.as_str());
    match (have, want) {
        (Some(h), Some(w)) if h == w => Ok(format!("{key} is {w}")),
        (h, w) => Err(ActionError::new(doing, format!("{key} is {h:?}, expected {w:?}"))),
    }
}

/// Set a key in a configured `.properties` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertySet {
    pub file: Name,
    pub key: PropertyKey,
    pub value: PropertyValue,
}

/// Lower a numeric key by a factor, never below a floor (runbook C2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyLower {
    pub file: Name,
    pub key: PropertyKey,
    pub factor: f64,
    pub floor: u64,
    pub default: u64,
}

/// `property_set(file, key, value)`: a file under `[properties_files]`.
pub fn set_spec(file: &str, key: &str, value: &str) -> StepSpec {
    let (file, key, value) = (file.to_string(), key.to_string(), value.to_string());
    StepSpec::new("property_set", format!("property {file} {key} = {value}"), move |sections| {
        Ok(Step::PropertySet(PropertySet {
            file: properties_file(&file, &sections.properties_files)?,
            key: PropertyKey::parse(&key).map_err(Refusal::invalid)?,
            value: PropertyValue::parse(&value).map_err(Refusal::invalid)?,
        }))
    })
}

/// `property_lower(file, key, factor, floor, default)`.
pub fn lower_spec(file: &str, key: &str, factor: f64, floor: i64, default: i64) -> StepSpec {
    let (file, key) = (file.to_string(), key.to_string());
    let shown = format!("property {file} {key} lower x{factor} floor {floor} default {default}");
    StepSpec::new("property_lower", shown, move |sections| {
        if !(factor > 0.0 && factor < 1.0) {
            return Err(Refusal::Invalid(format!("lowering factor {factor} must be between 0 and 1")));
        }
        if floor < 1 || default < 1 {
            return Err(Refusal::Invalid(format!("floor {floor} and default {default} must be at least 1")));
        }
        Ok(Step::PropertyLower(PropertyLower {
            file: properties_file(&file, &sections.properties_files)?,
            key: PropertyKey::parse(&key).map_err(Refusal::invalid)?,
            factor,
            floor: floor as u64,
            default: default as u64,
        }))
    })
}

fn properties_file(name: &str, files: &BTreeMap<String, PathBuf>) -> Result<Name, Refusal> {
    let name = Name::parse("properties file name", name).map_err(Refusal::invalid)?;
    if !files.contains_key(name.as_str()) {
        return Err(Refusal::NotConfigured(format!(
            "properties file {name} is not configured under [properties_files]"
        )));
    }
    Ok(name)
}

/// Where a configured properties file is (validation made sure it is).
fn file_path<'a>(cx: &Cx<'a>, file: &Name) -> &'a Path {
    &cx.sections.properties_files[file.as_str()]
}

/// The two property steps differ only in their change and their risk.
macro_rules! property_action {
    ($ty:ty, $risk:expr, $change:expr) => {
        impl Action for $ty {
            fn family(&self) -> &'static str {
                "properties"
            }

            fn target(&self) -> String {
                format!("{}:{}", self.file, self.key)
            }

            fn min_risk(&self) -> Risk {
                $risk
            }

            fn changes(&self) -> Option<String> {
                Some(format!("properties {}", self.file))
            }

            fn preview(&self, cx: &Cx, staged: &Staged) -> Result<Preview, ActionError> {
                preview(file_path(cx, &self.file), &self.key, &$change(self), staged)
            }

            fn apply(&self, cx: &Cx, preview: &Preview) -> Result<String, ActionError> {
                apply(file_path(cx, &self.file), &self.key, preview, &cx.backups)
            }

            fn verify(&self, cx: &Cx, preview: &Preview) -> Result<String, ActionError> {
                verify(file_path(cx, &self.file), &self.key, preview)
            }
        }
    };
}

// Setting an arbitrary value (a Kafka server property, say) can break a
// service; lowering a number within a floor cannot.
property_action!(PropertySet, Risk::Dangerous, |s: &PropertySet| Change::Set(s.value.clone()));
property_action!(PropertyLower, Risk::Safe, |s: &PropertyLower| Change::Lower {
    factor: s.factor,
    floor: s.floor,
    default: s.default
});

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PropertyKey {
        PropertyKey::parse("max.poll.records").unwrap()
    }

    #[test]
    fn lowers_in_place_keeping_other_lines() {
        let text = "# consumer\nbootstrap.servers=a:9092\nmax.poll.records = 500\nmax.poll.records.extra=1\n";
        let (new, diff) =
            plan_edit(text, &key(), &Change::Lower { factor: 0.5, floor: 50, default: 500 }).unwrap().unwrap();
        assert_eq!(new, "# consumer\nbootstrap.servers=a:9092\nmax.poll.records = 250\nmax.poll.records.extra=1\n");
        assert!(diff.contains("-max.poll.records = 500"));
    }

    #[test]
    fn floor_and_missing_key() {
        let lower = Change::Lower { factor: 0.5, floor: 50, default: 500 };
        assert!(plan_edit("max.poll.records=50\n", &key(), &lower).unwrap().is_none());
        assert_eq!(plan_edit("max.poll.records=80\n", &key(), &lower).unwrap().unwrap().0, "max.poll.records=50\n");
        assert_eq!(plan_edit("a=1", &key(), &lower).unwrap().unwrap().0, "a=1\nmax.poll.records=250\n");
        assert!(plan_edit("max.poll.records=lots\n", &key(), &lower).is_err());
    }

    #[test]
    fn a_definition_continued_over_lines_is_read_as_java_reads_it_and_not_edited() {
        let lower = Change::Lower { factor: 0.5, floor: 50, default: 500 };
        let err = plan_edit("max.poll.records=5\\\n  00\n", &key(), &lower).unwrap_err();
        assert!(err.contains("continued over lines 1 to 2"), "{err}");
        // A line that continues another is no definition of its own.
        let text = "note=see \\\nmax.poll.records=9\nmax.poll.records=400\n";
        assert_eq!(
            plan_edit(text, &key(), &lower).unwrap().unwrap().0,
            "note=see \\\nmax.poll.records=9\nmax.poll.records=200\n"
        );
    }

    #[test]
    fn preview_apply_verify_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("consumer.properties");
        std::fs::write(&p, "max.poll.records: 400\n").unwrap();
        let pv =
            preview(&p, &key(), &Change::Lower { factor: 0.5, floor: 50, default: 500 }, &Staged::default()).unwrap();
        apply(&p, &key(), &pv, &dir.path().join("b")).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "max.poll.records: 200\n");
        verify(&p, &key(), &pv).unwrap();
    }
}
