//! Approval of dangerous plans by a person.
//!
//! A plan riskier than `safe` is stored as an [`Approval`] in the state
//! directory and mailed to each approver with links of their own (see
//! [`mail`]). A link leads to a page on the agent's HTTP endpoint ([`web`]);
//! opening it changes nothing, the button on it (a POST) decides. Tokens are
//! HMAC-signed ([`token`]). When enough approvers said yes before the
//! expiry, the agent re-computes every preview from live state and applies
//! the plan only if nothing it depended on changed; otherwise the approval
//! is superseded and, if the problem is still there, a new one is asked for.

pub mod inbox;
pub(crate) mod lifecycle;
pub(crate) mod mail;
pub(crate) mod token;
pub mod web;

pub use lifecycle::{Ballot, Ending};

use crate::types::human_time;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::matching::Event;
use crate::plan::{Risk, Step};
use crate::state::{read_json, write_json_atomic, StateError};
use crate::types::Invalid;

/// What a link or the CLI decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "approve" => Some(Decision::Approve),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

pub use crate::audit::ApprovalState;

/// One step as it was mailed: the typed step, its preview and what the
/// preview depended on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedStep {
    pub step: Step,
    pub action: String,
    pub target: String,
    pub preview: String,
    pub noop: bool,
    /// Hash of the state the preview read (a file's content), if any.
    pub depends_on: Option<String>,
}

/// Who decided, when and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decider {
    pub who: String,
    pub at: String,
    /// `link` (the mailed page) or `cli` (a local root user).
    pub via: String,
}

/// A plan waiting for (or past) a person's decision.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub state: ApprovalState,
    pub created: String,
    /// Expiry, ms since the epoch.
    pub expires: i64,
    pub host: String,
    pub rule: String,
    pub runbook: Vec<String>,
    pub summary: String,
    pub risk: Risk,
    pub steps: Vec<PlannedStep>,
    /// Hash of everything the approver was shown; tokens are bound to it.
    pub plan_hash: String,
    pub event: Event,
    pub dry_run: bool,
    pub approvers_asked: Vec<String>,
    pub approved_by: Vec<Decider>,
    pub denied_by: Option<Decider>,
    /// What happened after the decision, for a person.
    pub outcome: Option<String>,
    /// The approval that replaced this one after a re-check.
    pub superseded_by: Option<String>,
}

impl Approval {
    /// How many distinct approvers this plan needs.
    pub fn approvals_needed(&self) -> usize {
        if self.risk >= Risk::DataLoss {
            2
        } else {
            1
        }
    }

    /// The hash of a plan as shown: rule, risk, steps, previews and what
    /// they depended on, and whether it is a dry run.
    pub fn compute_plan_hash(rule: &str, risk: Risk, steps: &[PlannedStep], dry_run: bool) -> String {
        let shown = serde_json::to_vec(&(rule, risk, steps, dry_run)).expect("plans serialise");
        crate::digest::sha256_hex(&shown)
    }
}

/// The approvals in `state_dir/approvals/`, one JSON file each.
pub struct ApprovalStore {
    dir: PathBuf,
    approvals: BTreeMap<String, Approval>,
}

impl ApprovalStore {
    pub fn dir_in(state_dir: &Path) -> PathBuf {
        state_dir.join("approvals")
    }

    /// Loads every approval; an unreadable file is reported and skipped.
    pub fn load(state_dir: &Path) -> ApprovalStore {
        let dir = Self::dir_in(state_dir);
        let mut approvals = BTreeMap::new();
        for path in std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()) {
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match read_json::<Approval>(&path) {
                Ok(Some(a)) => {
                    approvals.insert(a.id.clone(), a);
                }
                Ok(None) => {}
                Err(e) => tracing::error!("skipping approval: {e}"),
            }
        }
        ApprovalStore { dir, approvals }
    }

    /// Reads one approval straight from disk (the HTTP listener and the CLI,
    /// which do not own the store).
    pub fn read_one(state_dir: &Path, id: &str) -> Result<Option<Approval>, StateError> {
        if !is_id(id) {
            return Ok(None);
        }
        read_json(&Self::dir_in(state_dir).join(format!("{id}.json")))
    }

    /// Every approval on disk, newest first.
    pub fn read_all(state_dir: &Path) -> Vec<Approval> {
        let mut all: Vec<Approval> = Self::load(state_dir).approvals.into_values().collect();
        all.sort_by(|a, b| b.created.cmp(&a.created));
        all
    }

    pub fn get(&self, id: &str) -> Option<&Approval> {
        self.approvals.get(id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Approval> {
        self.approvals.values()
    }

    /// Saves (and remembers) an approval.
    pub fn save(&mut self, approval: Approval) -> Result<(), StateError> {
        write_json_atomic(&self.dir.join(format!("{}.json", approval.id)), &approval)?;
        self.approvals.insert(approval.id.clone(), approval);
        Ok(())
    }

    /// The pending approval for the same plan, if one was already asked for.
    pub fn pending_for(&self, rule: &str, plan_hash: &str) -> Option<&Approval> {
        self.approvals
            .values()
            .find(|a| a.state == ApprovalState::Pending && a.rule == rule && a.plan_hash == plan_hash)
    }

    pub fn pending(&self) -> usize {
        self.approvals.values().filter(|a| a.state == ApprovalState::Pending).count()
    }

    /// Pending approvals past their expiry at `now` (ms).
    pub fn expired(&self, now: i64) -> Vec<String> {
        self.approvals
            .values()
            .filter(|a| a.state == ApprovalState::Pending && a.expires <= now)
            .map(|a| a.id.clone())
            .collect()
    }
}

/// Approval ids are 32 hex digits; anything else never touches the disk.
pub fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Escapes text for HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A decision on its way from a link or the CLI to the daemon's worker,
/// which owns the approvals and is the only one that changes them.
pub struct DecideRequest {
    pub id: String,
    pub ballot: Ballot,
    pub reply: std::sync::mpsc::Sender<DecideReply>,
}

/// A playbook run asked for on the host (`pipemedic playbook run`), signed
/// with the approval key like the CLI's decisions.
pub struct PlaybookRequest {
    pub name: String,
    /// The parameters as JSON (what the token signs).
    pub params: String,
    pub expires: i64,
    pub requester: String,
    pub token: String,
    pub reply: std::sync::mpsc::Sender<DecideReply>,
}

/// What the HTTP listener hands to the worker.
pub enum WorkerRequest {
    Decide(DecideRequest),
    Playbook(PlaybookRequest),
}

/// The token fields of a playbook run: its own id space, so a playbook
/// token can never pass as an approval's.
pub fn playbook_token_id(name: &str) -> String {
    format!("playbook:{name}")
}

/// The worker's answer, shown to the person who decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideReply {
    Accepted(String),
    Refused(String),
}

/// Why a link (or the CLI's signed decision) is refused, in words for the
/// person holding it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefused {
    #[error("this link is not valid for this approval (it was altered, or belongs to another plan)")]
    Forged,
    #[error("this link was not issued to an approver of this plan")]
    NotAnApprover,
    #[error("this approval was already decided: it is {}; a link works once", format!("{:?}", .0).to_lowercase())]
    AlreadyDecided(ApprovalState),
    #[error("this approval expired at {}; nothing was or will be applied", human_time(*.0))]
    Expired(i64),
    #[error("you already approved this plan; it needs a second, different approver")]
    AlreadyApproved,
}

/// Checks a link's fields against an approval: the token, the expiry it
/// names, and that the approval still waits for this decision.
pub fn check_link(
    a: &Approval,
    signer: &token::Signer,
    decision: Decision,
    approver: &str,
    expires: i64,
    token: &str,
    now: i64,
) -> Result<(), LinkRefused> {
    if expires != a.expires || !signer.verify(&a.id, &a.plan_hash, decision, expires, approver, token) {
        return Err(LinkRefused::Forged);
    }
    if !a.approvers_asked.iter().any(|x| x == approver) && !approver.starts_with("local:") {
        return Err(LinkRefused::NotAnApprover);
    }
    if a.state != ApprovalState::Pending {
        return Err(LinkRefused::AlreadyDecided(a.state));
    }
    if now >= a.expires {
        return Err(LinkRefused::Expired(a.expires));
    }
    if decision == Decision::Approve && a.approved_by.iter().any(|d| d.who == approver) {
        return Err(LinkRefused::AlreadyApproved);
    }
    Ok(())
}

/// The link for one approver and decision.
pub fn link(public_url: &str, a: &Approval, signer: &token::Signer, approver: &str, decision: Decision) -> String {
    let token = signer.sign(&a.id, &a.plan_hash, decision, a.expires, approver);
    format!(
        "{}/approvals/{}?decision={}&approver={}&exp={}&token={}",
        public_url.trim_end_matches('/'),
        a.id,
        decision.as_str(),
        url_encode(approver),
        a.expires,
        token
    )
}

// `[approval]` in the configuration: who approves, and where the links point.

/// Who approves dangerous plans, and where the links point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Where the agent's HTTP endpoint listens (`127.0.0.1:8470`).
    pub listen: SocketAddr,
    /// The base URL approvers reach that endpoint at (`https://host.example:8470`).
    pub public_url: String,
    /// Each gets a mail with links of their own. A data-loss plan needs two
    /// different ones to approve.
    pub approvers: Vec<String>,
    /// How long a request stays valid.
    #[serde(default = "default_expiry")]
    pub expiry_secs: u64,
}

fn default_expiry() -> u64 {
    3600
}

impl ApprovalConfig {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        if self.approvers.is_empty() {
            return Err("[approval] approvers is empty: nobody could approve".into());
        }
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return Err(
                format!("[approval] public_url {:?} must start with http:// or https://", self.public_url).into()
            );
        }
        for who in &self.approvers {
            who.parse::<lettre::message::Mailbox>().map_err(|e| format!("[approval] approver {who:?}: {e}"))?;
        }
        Ok(())
    }
}
