//! `pg_repair`: write into the PostgreSQL targets the rows the last
//! reconcile found missing or differing, and with `deletes` remove the rows
//! the targets have that the sources do not (runbook N3/N4/N6: the rows a
//! fix that skipped binlog lost). The keys are those of the report
//! `pipemedic reconcile` saved; see `reconcile::repair` for how each batch
//! is written and kept.

use serde::{Deserialize, Serialize};

use super::{Action, ActionError, Cx, Guard, Preview, Staged, Step};
use crate::actions::step::{Refusal, Risk, StepSpec};
use crate::types::Name;

/// Repair one `[reconcile.tables.NAME]` entry in every target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repair {
    pub table: Name,
    /// Also delete the rows only the target has: data loss, two approvers.
    pub deletes: bool,
    /// The SHA-256 of the report to repair from (its snapshot); `None`:
    /// the table's last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// `pg_repair(table)`, `pg_repair(table, deletes)`, `pg_repair(table,
/// deletes, report)`: `report` the SHA-256 a `reconcile_differs` event or
/// `pipemedic reconcile --repair` names.
pub fn spec(table: &str, deletes: bool, report: Option<&str>) -> StepSpec {
    let table = table.to_string();
    let report = report.filter(|r| !r.is_empty()).map(str::to_string);
    let what = if deletes { "upsert and delete" } else { "upsert" };
    StepSpec::new("pg_repair", format!("postgres repair {table} ({what})"), move |sections| {
        let name = Name::parse("reconcile table", &table).map_err(Refusal::invalid)?;
        if !sections.reconcile.config.tables.contains_key(name.as_str()) {
            return Err(Refusal::NotConfigured(format!("{name} is not configured under [reconcile.tables]")));
        }
        if let Some(r) = &report {
            if r.len() != 64 || !r.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Refusal::invalid(format!("{r:?} is not a report's SHA-256")));
            }
        }
        Ok(Step::PgRepair(Repair { table: name, deletes, report: report.clone() }))
    })
}

fn doing(r: &Repair) -> String {
    format!("repairing {} in the PostgreSQL targets", r.table)
}

impl Action for Repair {
    fn family(&self) -> &'static str {
        "postgres"
    }

    fn target(&self) -> String {
        format!("{} rows", self.table)
    }

    fn min_risk(&self) -> Risk {
        if self.deletes {
            Risk::DataLoss
        } else {
            Risk::Dangerous
        }
    }

    fn changes(&self) -> Option<String> {
        Some(format!("postgres rows of {}", self.table))
    }

    fn preview(&self, cx: &Cx, _: &Staged) -> Result<Preview, ActionError> {
        let s = &cx.sections;
        let p = crate::reconcile::prepare_repair(
            &s.reconcile,
            &s.agent.state_dir,
            self.table.as_str(),
            self.report.as_deref(),
            self.deletes,
            s.reconcile.config.repair_max_age_secs,
        )
        .map_err(|e| ActionError::new(doing(self), e))?;
        Ok(Preview { text: p.text, noop: p.noop, guard: Guard::Digest(p.sha256) })
    }

    fn apply(&self, cx: &Cx, preview: &Preview) -> Result<String, ActionError> {
        let Guard::Digest(sha256) = &preview.guard else {
            return Err(ActionError::new(doing(self), "the preview holds no report; nothing written"));
        };
        let s = &cx.sections;
        crate::reconcile::apply_repair(
            &s.reconcile,
            &s.agent.state_dir,
            &cx.backups,
            self.table.as_str(),
            self.report.as_deref(),
            self.deletes,
            sha256,
        )
        .map_err(|e| ActionError::new(doing(self), e))
    }

    fn verify(&self, cx: &Cx, _: &Preview) -> Result<String, ActionError> {
        let s = &cx.sections;
        crate::reconcile::verify_repair(
            &s.reconcile,
            &s.agent.state_dir,
            self.table.as_str(),
            self.report.as_deref(),
            self.deletes,
        )
        .map_err(|e| ActionError::new(format!("verifying the repair of {}", self.table), e))
    }
}
