//! `build`: which environment the consumer's deployed build points at
//! (runbook C6: "the sit build was run on prd"). Read-only; its apply
//! tells a person, like `notify`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Action, ActionError, Cx, Preview, Staged, Step};
use crate::actions::step::StepSpec;
use crate::mail::Outbox;

/// The finding, computed from the deployed properties.
pub fn check(build: Option<&BuildCheck>) -> Result<(String, bool), ActionError> {
    let doing = "checking which environment the consumer's build points at";
    let Some(b) = build else {
        return Err(ActionError::new(doing, "no [consumer_build] section: nothing to compare the deployed build with"));
    };
    let text = crate::fsutil::read_foreign(&b.properties_file)
        .map_err(|e| ActionError::new(doing, format!("reading {}: {e}", b.properties_file.display())))?;
    let url = crate::properties::value(&text, &b.url_key)
        .map(|v| v.trim().to_string())
        .ok_or_else(|| ActionError::new(doing, format!("{} has no {}", b.properties_file.display(), b.url_key)))?;
    let matches = url.contains(&b.expected_url_contains);
    let message = match matches {
        true => format!(
            "The deployed build points at {url}, which is right for this host ({env}). The connection pool failure is not a wrong build: check that the database is up and reachable.",
            env = b.environment
        ),
        false => format!(
            "The deployed build points at {url}, but this host is {env} and expects a URL containing {want:?} ({file}, {key}). The wrong build script was probably run. Fix: stop Tomcat with its shutdown script (never kill -9), rebuild with the {env} profile, deploy, start.",
            env = b.environment,
            want = b.expected_url_contains,
            file = b.properties_file.display(),
            key = b.url_key
        ),
    };
    Ok((message, matches))
}

pub fn preview(build: Option<&BuildCheck>) -> Result<Preview, ActionError> {
    let (message, _) = check(build)?;
    Ok(Preview { text: format!("notify: {message}"), noop: false, guard: Default::default() })
}

pub fn apply(build: Option<&BuildCheck>, mail: Option<&(Outbox, String)>) -> Result<String, ActionError> {
    let (message, _) = check(build)?;
    Ok(super::notify::apply(&message, mail))
}

/// Tell a person which environment the consumer's build points at (runbook C6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckBuild {}

/// `check_build()`.
pub fn spec() -> StepSpec {
    StepSpec::new("check_build", "check consumer build".into(), |_| Ok(Step::CheckBuild(CheckBuild {})))
}

impl Action for CheckBuild {
    fn family(&self) -> &'static str {
        "build"
    }

    fn target(&self) -> String {
        "consumer".into()
    }

    fn preview(&self, cx: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        preview(cx.sections.consumer_build.as_ref())
    }

    fn apply(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        apply(cx.sections.consumer_build.as_ref(), cx.mail)
    }

    fn verify(&self, _: &Cx, _: &Preview) -> Result<String, ActionError> {
        Ok("recorded".into())
    }
}

// `[consumer_build]` in the configuration: what this action checks.

/// Where the consumer's deployed build says its database is, and what this
/// host expects (runbook C6: "the sit build was run on prd").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildCheck {
    /// The deployed properties file holding the JDBC URL.
    pub properties_file: PathBuf,
    /// Its key (`jdbc.url`).
    pub url_key: String,
    /// This host's environment (`prd`).
    pub environment: String,
    /// Text the URL must contain on this host (the environment's database host).
    pub expected_url_contains: String,
}
