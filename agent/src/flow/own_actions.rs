//! The agent does not react to its own actions: where the logs grew while
//! it stopped or started a service, a plan that would act on that service
//! again is recorded as `own-action`.

use super::*;

/// The bytes the sources' files grew by while the agent itself stopped or
/// started services: lines in there were caused by the agent.
#[derive(Debug, Clone)]
pub(super) struct OwnWindow {
    file: std::path::PathBuf,
    from: u64,
    to: u64,
    pub(super) services: Vec<String>,
    pub(super) what: String,
}

/// How many windows are remembered (the oldest go first).
const OWN_WINDOWS: usize = 64;

impl Flow {
    /// Each source file's size now.
    pub(super) fn source_sizes(&self) -> Vec<(std::path::PathBuf, u64)> {
        self.config
            .sources
            .values()
            .filter_map(|s| std::fs::metadata(&s.path).ok().map(|m| (s.path.clone(), m.len())))
            .collect()
    }

    /// Remembers what the logs gained while the plan's service steps ran.
    pub(super) fn remember_own_window(
        &mut self,
        before: Vec<(std::path::PathBuf, u64)>,
        services: Vec<String>,
        plan: &Plan,
    ) {
        for (file, to) in self.source_sizes() {
            let from = before.iter().find(|(f, _)| *f == file).map_or(0, |(_, n)| *n);
            if to > from {
                if self.own.len() == OWN_WINDOWS {
                    self.own.pop_front();
                }
                let what = format!("{}: {}", plan.rule, plan.summary);
                self.own.push_back(OwnWindow { file, from, to, services: services.clone(), what });
            }
        }
    }

    /// The window of the agent's own action that `event`'s record lies in,
    /// if the plan would act on a service that window was about.
    pub(super) fn own_window(&self, event: &Event, plan: &Plan) -> Option<&OwnWindow> {
        let touches = |w: &OwnWindow| {
            plan.steps
                .iter()
                .any(|s| matches!(s, Step::Service(s) if w.services.iter().any(|x| x == s.service.as_str())))
        };
        self.own.iter().find(|w| *w.file == *event.file && (w.from..w.to).contains(&event.offset) && touches(w))
    }
}
