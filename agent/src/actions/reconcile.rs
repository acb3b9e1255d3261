//! `reconcile`: compare the synced tables with the PostgreSQL targets, off
//! the worker (runbook N3/N4/N6 after a canal fix, C1 after a column was
//! added, or on a schedule). Reads only. The step starts the comparison in
//! a thread of its own and returns; the report is kept in
//! `state/reconcile/TABLE.json`, mailed to the notify list, and becomes a
//! `reconcile_differs` / `reconcile_equal` / `reconcile_failed` event for
//! the rules (see `probes::reconciled`), so a repair is proposed through
//! the same policy and approval as any plan.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{Action, ActionError, Cx, Preview, Staged, Step};
use crate::actions::step::{Refusal, StepSpec};
use crate::types::Name;

/// Reconcile one `[reconcile.tables.NAME]` entry, or every one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    pub table: Option<Name>,
}

/// Tables being reconciled now: a second request for one waits for none.
static RUNNING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// `reconcile()`, `reconcile(table)`.
pub fn spec(table: Option<&str>) -> StepSpec {
    let table = table.map(str::to_string);
    let what = table.clone().unwrap_or_else(|| "every table".into());
    StepSpec::new("reconcile", format!("reconcile {what}"), move |_| {
        let table =
            table.as_deref().map(|t| Name::parse("reconcile table", t)).transpose().map_err(Refusal::invalid)?;
        Ok(Step::Reconcile(Reconcile { table }))
    })
}

impl Reconcile {
    /// The configured entries this step compares.
    fn tables(&self, cx: &Cx) -> Vec<String> {
        let configured = &cx.sections.reconcile.config.tables;
        match &self.table {
            Some(t) => configured.contains_key(t.as_str()).then(|| t.to_string()).into_iter().collect(),
            None => configured.keys().cloned().collect(),
        }
    }
}

impl Action for Reconcile {
    fn family(&self) -> &'static str {
        "reconcile"
    }

    fn target(&self) -> String {
        self.table.as_ref().map_or_else(|| "every table".into(), |t| t.to_string())
    }

    fn reads_only(&self) -> bool {
        true
    }

    fn preview(&self, cx: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        let tables = self.tables(cx);
        let text = match (&self.table, tables.is_empty()) {
            (Some(t), true) => format!("{t} is not under [reconcile.tables]; nothing to reconcile"),
            (None, true) => "no [reconcile.tables] are configured; nothing to reconcile".into(),
            (_, false) => format!(
                "reconcile {} against every PostgreSQL target (read-only), in the background; the report is kept in {} and mailed",
                tables.join(", "),
                cx.sections.agent.state_dir.join("reconcile").display()
            ),
        };
        Ok(Preview { text, noop: tables.is_empty(), guard: Default::default() })
    }

    fn apply(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        let mut tables = self.tables(cx);
        {
            let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
            tables.retain(|t| !running.contains(t));
            running.extend(tables.iter().cloned());
        }
        if tables.is_empty() {
            return Ok("already being reconciled; not started again".into());
        }
        let section = cx.sections.reconcile.clone();
        let state_dir = cx.sections.agent.state_dir.clone();
        let mail = cx.mail.cloned();
        let list = tables.join(", ");
        let started = std::thread::Builder::new().name("reconcile".into()).spawn(move || {
            let request = crate::reconcile::Request { tables: tables.clone(), ..Default::default() };
            let outcome = crate::reconcile::run(&section, &request, &mut |_| {});
            let (subject, text) = match &outcome {
                Ok(report) => {
                    if let Err(e) = crate::reconcile::save_reports(&state_dir, report, crate::reconcile::ORIGIN_AGENT) {
                        tracing::error!("keeping the reconcile report in {}: {e}", state_dir.display());
                    }
                    let verdict = match report.exit_code() {
                        0 => "equal",
                        1 => "rows differ",
                        _ => "could not compare",
                    };
                    (format!("reconcile of {}: {verdict}", tables.join(", ")), crate::reconcile::render(report))
                }
                Err(e) => (format!("reconcile of {}: failed", tables.join(", ")), e.clone()),
            };
            tracing::info!("{subject}");
            if let Some((outbox, host)) = mail {
                let said = outbox.notify(
                    &format!("reconcile:{}:{text}", tables.join(",")),
                    &format!("[pipemedic] {host}: {subject}"),
                    &text,
                );
                tracing::info!("reconcile mail: {said}");
            }
            let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
            for t in &tables {
                running.remove(t);
            }
        });
        match started {
            Ok(_) => Ok(format!("reconciling {list} in the background")),
            Err(e) => Err(ActionError::new(format!("reconciling {list}"), format!("starting a thread: {e}"))),
        }
    }

    fn verify(&self, _: &Cx, _: &Preview) -> Result<String, ActionError> {
        Ok("its result comes as a reconcile_equal, reconcile_differs or reconcile_failed event".into())
    }
}
