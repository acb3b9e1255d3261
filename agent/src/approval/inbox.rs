//! Decisions from the host's root user that do not need the HTTP listener:
//! a signed ballot left in `<state_dir>/inbox/`, taken by the worker on its
//! tick and answered beside it. The listener can be full (a client holding
//! every connection) or not listening at all; the state directory is root's
//! alone (the daemon refuses one that anybody else can write), and the
//! ballot carries the same signature a link's form does, so it passes the
//! same checks, re-check and audit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{DecideReply, DecideRequest, Decision};
use crate::approval::lifecycle::Ballot;
use crate::state::{read_json, write_json_atomic, StateError};

/// At most this many ballots are taken per tick (the rest wait).
const MAX_PER_TICK: usize = 16;

/// A signed decision, as `pipemedic approve` leaves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalBallot {
    pub id: String,
    pub decision: String,
    pub approver: String,
    pub exp: i64,
    pub token: String,
}

/// The worker's answer to one ballot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub accepted: bool,
    pub message: String,
}

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("inbox")
}

/// Leaves `ballot` for the worker; returns the ballot's path (its answer
/// will be beside it, see [`wait_answer`]).
pub fn submit(state_dir: &Path, ballot: &LocalBallot) -> Result<PathBuf, StateError> {
    let name = format!("{}.{}", ballot.id, crate::digest::random_hex(8));
    let path = dir(state_dir).join(format!("{name}.json"));
    write_json_atomic(&path, ballot)?;
    Ok(path)
}

fn answer_path(ballot: &Path) -> PathBuf {
    ballot.with_extension("answer")
}

fn taken_path(ballot: &Path) -> PathBuf {
    ballot.with_extension("taken")
}

/// Waits up to `within` for the worker's answer to the ballot at `path`.
/// If none came, the ballot is withdrawn unless the worker has already
/// taken it (then it is waited for a little longer, never counted twice).
pub fn wait_answer(path: &Path, within: Duration) -> Option<Answer> {
    let answer = answer_path(path);
    let mut deadline = Instant::now() + within;
    let mut taken = false;
    loop {
        if let Ok(Some(a)) = read_json::<Answer>(&answer) {
            let _ = std::fs::remove_file(&answer);
            let _ = std::fs::remove_file(taken_path(path));
            return Some(a);
        }
        if Instant::now() >= deadline {
            if taken || std::fs::remove_file(path).is_ok() {
                return None;
            }
            // Taken: the worker is deciding it now; its answer follows.
            taken = true;
            deadline = Instant::now() + Duration::from_secs(60);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ballots waiting, each claimed (renamed) before it is read so that a
/// withdrawal and a decision cannot both happen; a file that is not a
/// readable ballot is answered as refused.
pub fn take(state_dir: &Path) -> Vec<(DecideRequest, std::sync::mpsc::Receiver<DecideReply>, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir(state_dir)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten().take(MAX_PER_TICK * 4) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") || out.len() >= MAX_PER_TICK {
            continue;
        }
        let taken = taken_path(&path);
        if std::fs::rename(&path, &taken).is_err() {
            continue;
        }
        let ballot = crate::fsutil::read_regular(&taken)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<LocalBallot>(&b).map_err(|e| e.to_string()));
        let ballot = match ballot {
            Ok(b) => b,
            Err(e) => {
                answer(&path, Answer { accepted: false, message: format!("not a readable ballot: {e}") });
                continue;
            }
        };
        let Some(decision) = Decision::parse(&ballot.decision) else {
            answer(&path, Answer { accepted: false, message: "the ballot names no valid decision".into() });
            continue;
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let req = DecideRequest {
            id: ballot.id,
            ballot: Ballot {
                decision,
                approver: ballot.approver,
                expires: ballot.exp,
                token: ballot.token,
                via: "cli",
            },
            reply: tx,
        };
        out.push((req, rx, path));
    }
    out
}

/// Writes the answer to the ballot that was at `ballot`.
pub fn answer(ballot: &Path, answer: Answer) {
    if let Err(e) = write_json_atomic(&answer_path(ballot), &answer) {
        tracing::warn!("answering a ballot from the command line: {e}");
    }
}

/// Answers a ballot from the worker's reply, off the worker: the reply is
/// sent before an approved plan is applied, and the plan may take minutes.
pub fn answer_when_replied(ballot: PathBuf, reply: std::sync::mpsc::Receiver<DecideReply>) {
    std::thread::spawn(move || {
        let a = match reply.recv_timeout(Duration::from_secs(600)) {
            Ok(DecideReply::Accepted(m)) => Answer { accepted: true, message: m },
            Ok(DecideReply::Refused(why)) => Answer { accepted: false, message: format!("Refused: {why}") },
            Err(_) => Answer { accepted: false, message: "the agent dropped the decision unanswered".into() },
        };
        answer(&ballot, a);
    });
}
