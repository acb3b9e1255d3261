//! The agent's HTTP endpoint for approval links.
//!
//! `GET /approvals/{id}?…` only shows: mail scanners and link previewers
//! fetch links, so opening one must never decide anything. The page repeats
//! the plan and has one button; its `POST` carries the same signed fields
//! and is passed to the daemon's worker, which checks them again and
//! decides. Every refusal (forged, altered, expired, replayed, wrong plan)
//! gets a page saying why and an audit entry.

use crate::types::human_time;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::mail::steps_html;
use super::token::Signer;
use super::{
    check_link, escape_html, ApprovalStore, Ballot, DecideReply, DecideRequest, Decision, PlaybookRequest,
    WorkerRequest,
};
use crate::audit::{ApprovalEntry, Audit, Entry};
use crate::types::now_rfc3339;

/// What the endpoint needs.
#[derive(Clone)]
pub struct WebState {
    pub state_dir: PathBuf,
    pub host: String,
    pub signer: Signer,
    pub audit: Audit,
    /// Hands a decision or a playbook run to the worker.
    pub submit: Arc<dyn Fn(WorkerRequest) + Send + Sync>,
    /// Served at `/metrics` too.
    pub metrics: crate::metrics::Metrics,
}

/// The fields every link and form carries.
#[derive(Debug, Clone, Deserialize)]
pub struct LinkFields {
    pub decision: String,
    pub approver: String,
    pub exp: i64,
    pub token: String,
}

/// Serves the approval endpoint (and `/metrics`) on its own thread.
pub fn spawn(background: &mut crate::runtime::Background, listen: SocketAddr, state: WebState) {
    serve(background, listen, "approval endpoint", move || router(state.clone()));
}

/// Serves only `/metrics`, for a listener apart from the approval links.
pub fn spawn_metrics(
    background: &mut crate::runtime::Background,
    listen: SocketAddr,
    metrics: crate::metrics::Metrics,
) {
    serve(background, listen, "metrics endpoint", move || {
        let m = metrics.clone();
        Router::new().route("/metrics", get(move || async move { exposition(&m) }))
    });
}

/// At most this many connections are served at once; more are closed at
/// once. An approval link is one person's click: dozens is a lot.
const MAX_CONNECTIONS: usize = 64;
/// A client has this long to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer than this, idle or not (no keep-alive to hog).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `app` on `listen` on its own thread; a failed bind is logged and
/// retried every 30 s (the rest of the agent keeps working). Connections are
/// capped, headers and whole connections time out: idle or slow clients
/// cannot take the agent's file descriptors (the worker needs them to fix
/// things and to write checkpoints).
fn serve(
    background: &mut crate::runtime::Background,
    listen: SocketAddr,
    what: &'static str,
    app: impl Fn() -> Router + Send + 'static,
) {
    // The first bind happens here, before the daemon says it has started:
    // whoever waits for "started" can connect at once.
    let bound = std::net::TcpListener::bind(listen).and_then(|l| l.set_nonblocking(true).map(|()| l));
    background.spawn_async("http", async move {
        let mut bound = Some(bound);
        loop {
            let listener = match bound.take() {
                Some(first) => first.and_then(tokio::net::TcpListener::from_std),
                None => tokio::net::TcpListener::bind(listen).await,
            };
            match listener {
                Ok(listener) => {
                    tracing::info!(%listen, "{what} listening");
                    accept(listener, app()).await;
                }
                Err(e) => tracing::error!(%listen, "cannot listen for the {what}, retrying in 30 s: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
}

/// One client address holds at most this many of the connections: a client
/// that opens them all (and holds them, slowly) leaves room for the others.
const MAX_PER_CLIENT: usize = 8;

/// What a connection turned away is told, written without waiting.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n";

/// Open connections per client address; a connection's [`ClientSlot`] gives
/// its place back when it ends.
#[derive(Clone, Default)]
struct PerClient(Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>);

struct ClientSlot(PerClient, std::net::IpAddr);

impl PerClient {
    fn take(&self, ip: std::net::IpAddr) -> Option<ClientSlot> {
        let mut open = self.0.lock().expect("per-client lock");
        let n = open.entry(ip).or_default();
        if *n >= MAX_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ClientSlot(self.clone(), ip))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.0 .0.lock().expect("per-client lock");
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

async fn accept(listener: tokio::net::TcpListener, app: Router) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_client = PerClient::default();
    let mut turned_away: u64 = 0;
    loop {
        let (stream, client) = match listener.accept().await {
            Ok((stream, peer)) => (stream, peer.ip()),
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = per_client.take(client).map(|c| (c, slots.clone().try_acquire_owned()));
        let Some((client_slot, Ok(slot))) = slot else {
            turned_away += 1;
            if turned_away.is_power_of_two() {
                tracing::warn!(
                    %client,
                    "{turned_away} connection(s) turned away: {MAX_PER_CLIENT} open from this client or {MAX_CONNECTIONS} in all"
                );
            }
            let _ = stream.try_write(BUSY);
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(slot);
            drop(client_slot);
        });
    }
}

fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/approvals/{id}", get(show).post(decide))
        .route("/playbooks/{name}", axum::routing::post(run_playbook))
        .with_state(state)
}

async fn metrics(State(s): State<WebState>) -> Response {
    exposition(&s.metrics)
}

fn exposition(m: &crate::metrics::Metrics) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.encode()).into_response()
}

async fn index(State(s): State<WebState>) -> Html<String> {
    let pending =
        ApprovalStore::read_all(&s.state_dir).into_iter().filter(|a| a.state == super::ApprovalState::Pending).count();
    page(&s.host, "pipemedic", &format!("<p>{pending} approval(s) pending on {}.</p>", escape_html(&s.host)))
}

/// The answer to a link whose fields are missing or malformed (journaled
/// like every refusal).
fn malformed(s: &WebState, id: &str, why: String) -> Response {
    let none = LinkFields { decision: String::new(), approver: String::new(), exp: 0, token: String::new() };
    refuse(s, id, &none, &format!("malformed request: {why}"), StatusCode::BAD_REQUEST, "link")
}

async fn show(
    State(s): State<WebState>,
    UrlPath(id): UrlPath<String>,
    f: Result<Query<LinkFields>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let f = match f {
        Ok(Query(f)) => f,
        Err(e) => return malformed(&s, &id, e.body_text()),
    };
    let approval = match ApprovalStore::read_one(&s.state_dir, &id) {
        Ok(Some(a)) => a,
        _ => return refuse(&s, &id, &f, "no such approval on this host", StatusCode::NOT_FOUND, "link"),
    };
    let Some(decision) = Decision::parse(&f.decision) else {
        return refuse(&s, &id, &f, "the link names no valid decision", StatusCode::BAD_REQUEST, "link");
    };
    let now = chrono::Utc::now().timestamp_millis();
    if let Err(why) = check_link(&approval, &s.signer, decision, &f.approver, f.exp, &f.token, now) {
        return refuse(&s, &id, &f, &why.to_string(), StatusCode::FORBIDDEN, "link");
    }
    let (verb, colour) = match decision {
        Decision::Approve => ("Approve", "#2a7"),
        Decision::Deny => ("Deny", "#c33"),
    };
    let body = format!(
        "{banner}<p style=\"font-size:1.2em\"><b>{summary}</b></p>\
         <table><tr><td>Runbook</td><td>{runbook}</td></tr><tr><td>Risk</td><td><b>{risk}</b></td></tr>\
         <tr><td>Expires</td><td>{expires}</td></tr><tr><td>You</td><td>{approver}</td></tr>\
         <tr><td>Approved so far</td><td>{so_far}</td></tr></table>{steps}\
         <h3>What triggered it</h3><pre>{record}</pre>\
         <form method=\"post\" action=\"/approvals/{id}\">\
         <input type=\"hidden\" name=\"decision\" value=\"{decision}\"><input type=\"hidden\" name=\"approver\" value=\"{approver}\">\
         <input type=\"hidden\" name=\"exp\" value=\"{exp}\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <button id=\"decide\" type=\"submit\" style=\"font-size:1.2em;padding:8px 24px;background:{colour};color:#fff;border:0\">{verb} this plan</button></form>",
        banner = if approval.dry_run {
            "<p style=\"background:#fd0;padding:8px\"><b>DRY RUN</b>: this agent changes nothing; approving applies nothing.</p>"
        } else {
            ""
        },
        summary = escape_html(&approval.summary),
        runbook = escape_html(&approval.runbook.join(", ")),
        risk = approval.risk,
        expires = escape_html(&human_time(approval.expires)),
        approver = escape_html(&f.approver),
        so_far = match approval.approved_by.len() {
            0 => "nobody".to_string(),
            _ => escape_html(&approval.approved_by.iter().map(|d| d.who.as_str()).collect::<Vec<_>>().join(", ")),
        },
        steps = steps_html(&approval),
        record = escape_html(&approval.event.text.lines().take(40).collect::<Vec<_>>().join("\n")),
        id = escape_html(&approval.id),
        decision = decision.as_str(),
        exp = f.exp,
        token = escape_html(&f.token),
    );
    page(&s.host, &format!("{verb}: {}", approval.summary), &body).into_response()
}

async fn decide(
    State(s): State<WebState>,
    UrlPath(id): UrlPath<String>,
    f: Result<Form<LinkFields>, axum::extract::rejection::FormRejection>,
) -> Response {
    let f = match f {
        Ok(Form(f)) => f,
        Err(e) => return malformed(&s, &id, e.body_text()),
    };
    if !matches!(ApprovalStore::read_one(&s.state_dir, &id), Ok(Some(_))) {
        return refuse(&s, &id, &f, "no such approval on this host", StatusCode::NOT_FOUND, "link");
    }
    let Some(decision) = Decision::parse(&f.decision) else {
        return refuse(&s, &id, &f, "the form names no valid decision", StatusCode::BAD_REQUEST, "link");
    };
    let via = if f.approver.starts_with("local:") { "cli" } else { "link" };
    let (tx, rx) = std::sync::mpsc::channel();
    (s.submit)(WorkerRequest::Decide(DecideRequest {
        id: id.clone(),
        ballot: Ballot { decision, approver: f.approver.clone(), expires: f.exp, token: f.token.clone(), via },
        reply: tx,
    }));
    answer(&s, rx).await
}

/// The fields of a playbook run.
#[derive(Debug, Clone, Deserialize)]
pub struct PlaybookFields {
    pub params: String,
    pub requester: String,
    pub exp: i64,
    pub token: String,
}

async fn run_playbook(
    State(s): State<WebState>,
    UrlPath(name): UrlPath<String>,
    Form(f): Form<PlaybookFields>,
) -> Response {
    let (tx, rx) = std::sync::mpsc::channel();
    (s.submit)(WorkerRequest::Playbook(PlaybookRequest {
        name,
        params: f.params,
        expires: f.exp,
        requester: f.requester,
        token: f.token,
        reply: tx,
    }));
    answer(&s, rx).await
}

/// Waits for the worker's answer and renders it.
async fn answer(s: &WebState, rx: std::sync::mpsc::Receiver<DecideReply>) -> Response {
    let reply = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60))).await;
    match reply {
        Ok(Ok(DecideReply::Accepted(message))) => {
            page(&s.host, "Recorded", &format!("<p><b>{}</b></p>", escape_html(&message))).into_response()
        }
        // The worker audits its own refusals.
        Ok(Ok(DecideReply::Refused(why))) => (
            StatusCode::FORBIDDEN,
            page(&s.host, "Refused", &format!("<p><b>Refused:</b> {}</p><p>Nothing was changed.</p>", escape_html(&why))),
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            page(
                &s.host,
                "Busy",
                "<p>The agent is busy applying another plan; your decision is queued and will be recorded. Check the audit journal or run <code>pipemedic approvals</code> on the host.</p>",
            ),
        )
            .into_response(),
    }
}

/// At most this many refusals a minute are journaled one by one; the rest
/// are counted, and the count is journaled with the next one that is. Each
/// field is an escaped excerpt: a stranger's requests must not fill the
/// journal (300 refused GETs of 64 KB each wrote 18 MB before).
const REFUSALS_PER_MINUTE: u32 = 30;

static REFUSALS: std::sync::Mutex<(i64, u32, u64)> = std::sync::Mutex::new((0, 0, 0));

fn refuse(s: &WebState, id: &str, f: &LinkFields, why: &str, status: StatusCode, via: &str) -> Response {
    let excerpt = crate::types::shown;
    let now = chrono::Utc::now().timestamp_millis();
    let unrecorded = {
        let mut r = REFUSALS.lock().expect("refusal counter");
        if now - r.0 >= 60_000 {
            *r = (now, 0, r.2);
        }
        r.1 += 1;
        if r.1 > REFUSALS_PER_MINUTE {
            r.2 += 1;
            None
        } else {
            Some(std::mem::take(&mut r.2))
        }
    };
    if let Some(unrecorded) = unrecorded {
        let reason = match unrecorded {
            0 => excerpt(why),
            n => format!(
                "{} ({n} earlier refusal(s) past {REFUSALS_PER_MINUTE} a minute were not journaled one by one)",
                excerpt(why)
            ),
        };
        s.audit.emit(&Entry::ApprovalRefused(ApprovalEntry {
            time: now_rfc3339(),
            approval: excerpt(id),
            approver: Some(excerpt(&f.approver)),
            decision: Some(excerpt(&f.decision)),
            reason: Some(reason),
            via: Some(via.into()),
            ..Default::default()
        }));
    }
    let body = format!("<p><b>Refused:</b> {}</p><p>Nothing was changed.</p>", escape_html(why));
    (status, page(&s.host, "Refused", &body)).into_response()
}

fn page(host: &str, title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\">\
         <title>{t}</title></head><body style=\"font-family:sans-serif;max-width:60em;margin:2em auto\">\
         <p><small>pipemedic on {h}</small></p><h2>{t}</h2>{body}</body></html>",
        t = escape_html(title),
        h = escape_html(host)
    ))
}

/// A minimal HTTP/1.1 client for the CLI (and tests): sends one request to
/// the agent's own listener and returns the status and body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    form: Option<&[(&str, &str)]>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = form
        .map(|fields| {
            fields
                .iter()
                .map(|(k, v)| format!("{}={}", super::url_encode(k), super::url_encode(v)))
                .collect::<Vec<_>>()
                .join("&")
        })
        .unwrap_or_default();
    let mut req = format!("{method} {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if form.is_some() {
        req.push_str(&format!("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}
