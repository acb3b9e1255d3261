//! Outgoing mail: an outbox in the state directory and a sender thread.
//!
//! A mail is first written to `state_dir/outbox/` and only removed once the
//! relay accepted it, so a mail survives an SMTP outage and an agent restart.
//! Failed sends are retried with exponential backoff (from
//! `retry_initial_secs`, doubling, at most 10 minutes); every attempt is in
//! the audit journal. Nothing waits for mail: an approval stays pending
//! until its mail goes out and someone answers it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};
use serde::{Deserialize, Serialize};

use crate::state::{read_json, write_json_atomic, StateError};
use crate::types::Invalid;

const MAX_BACKOFF_SECS: u64 = 600;

/// A mail waiting in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutgoingMail {
    pub id: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// What it is about, for the audit (`approval 3f2a…`, `notify c2_commit_failed`).
    pub about: String,
    pub attempts: u32,
    /// Not before this time (ms).
    pub next_attempt: i64,
}

/// Puts mail in the outbox and wakes the sender. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    dir: PathBuf,
    wake: Sender<()>,
    notify_to: Vec<String>,
    dedup_secs: u64,
    dedup: Arc<Mutex<BTreeMap<String, i64>>>,
    dedup_file: PathBuf,
    journal: Arc<dyn Journal>,
}

/// A mail queued, sent or not sent yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailEntry {
    pub time: String,
    pub mail: String,
    /// What the mail is about (an approval, a notice's key).
    pub about: String,
    pub to: Vec<String>,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_secs: Option<u64>,
}

/// What became of a mail, for whoever keeps the journal (the audit: mail
/// sits below it, so it tells rather than writes).
pub trait Journal: Send + Sync {
    fn queued(&self, mail: MailEntry);
    fn sent(&self, mail: MailEntry);
    fn failed(&self, mail: MailEntry);
}

/// A mail's entry in the journal.
fn mail_entry(mail: &OutgoingMail, error: Option<String>, retry_in_secs: Option<u64>) -> MailEntry {
    MailEntry {
        time: crate::types::now_rfc3339(),
        mail: mail.id.clone(),
        about: mail.about.clone(),
        to: mail.to.clone(),
        subject: mail.subject.clone(),
        error,
        retry_in_secs,
    }
}

impl Outbox {
    /// Starts the sender thread for `config`'s relay; it stops with the
    /// daemon's shutdown (what is queued stays on disk for the next start).
    pub fn start(
        background: &mut crate::runtime::Background,
        config: &MailConfig,
        state_dir: &Path,
        journal: Arc<dyn Journal>,
    ) -> Outbox {
        let dir = state_dir.join("outbox");
        let (wake, rx) = mpsc::channel();
        let dedup_file = state_dir.join("notify-dedup.json");
        let dedup = read_json(&dedup_file).ok().flatten().unwrap_or_default();
        let sender = Sender_ { config: config.clone(), dir: dir.clone(), journal: journal.clone() };
        let waker = wake.clone();
        background.spawn("mail", move |shutdown| {
            shutdown.on_trigger(move || {
                let _ = waker.send(());
            });
            sender.run(rx, &shutdown)
        });
        Outbox {
            dir,
            wake,
            notify_to: config.notify.clone(),
            dedup_secs: config.notify_dedup_secs,
            dedup: Arc::new(Mutex::new(dedup)),
            dedup_file,
            journal,
        }
    }

    /// Queues a mail; it is on disk when this returns.
    /// The subject is made one line and the bodies safe for a terminal here,
    /// whatever log text they carry, so that no mail reader (nor the audit)
    /// receives an escape sequence or a forged header.
    pub fn enqueue(&self, mail: &OutgoingMail) -> Result<(), StateError> {
        let mail = &OutgoingMail {
            subject: subject_line(&mail.subject),
            text: crate::types::terminal_safe(&mail.text),
            html: mail.html.as_deref().map(crate::types::terminal_safe),
            ..mail.clone()
        };
        write_json_atomic(&self.dir.join(format!("{}.json", mail.id)), mail)?;
        self.journal.queued(mail_entry(mail, None, None));
        let _ = self.wake.send(());
        Ok(())
    }

    /// Mails a finding to the notification list, unless the same `key` was
    /// mailed within `notify_dedup_secs`. Returns what happened, for the audit.
    pub fn notify(&self, key: &str, subject: &str, text: &str) -> String {
        if self.notify_to.is_empty() {
            return "no [mail] notify list; logged only".into();
        }
        let now = chrono::Utc::now().timestamp_millis();
        {
            let mut dedup = self.dedup.lock().expect("dedup lock");
            if let Some(last) = dedup.get(key).filter(|t| now - **t < self.dedup_secs as i64 * 1000) {
                return format!("already mailed {} s ago; not mailing again", (now - last) / 1000);
            }
            dedup.retain(|_, t| now - *t < self.dedup_secs as i64 * 1000);
            dedup.insert(key.to_string(), now);
            if let Err(e) = write_json_atomic(&self.dedup_file, &*dedup) {
                tracing::warn!("{e}");
            }
        }
        let mail = OutgoingMail {
            id: crate::digest::random_hex(16),
            to: self.notify_to.clone(),
            subject: subject.to_string(),
            text: text.to_string(),
            html: None,
            about: format!("notify {key}"),
            attempts: 0,
            next_attempt: 0,
        };
        match self.enqueue(&mail) {
            Ok(()) => format!("mailed to {}", self.notify_to.join(", ")),
            Err(e) => format!("could not queue the mail: {e}"),
        }
    }
}

// The thread's side; named so as not to clash with mpsc::Sender.
#[allow(non_camel_case_types)]
struct Sender_ {
    config: MailConfig,
    dir: PathBuf,
    journal: Arc<dyn Journal>,
}

impl Sender_ {
    fn run(self, wake: Receiver<()>, shutdown: &crate::runtime::Shutdown) {
        while !shutdown.is_set() {
            let now = chrono::Utc::now().timestamp_millis();
            let mut next_due = now + 60_000;
            let mut files: Vec<PathBuf> =
                std::fs::read_dir(&self.dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
            files.retain(|p| p.extension().is_some_and(|x| x == "json"));
            files.sort();
            for path in files {
                let mut mail: OutgoingMail = match read_json(&path) {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::error!("{e}; moving it aside");
                        let _ = std::fs::rename(&path, path.with_extension("corrupt"));
                        continue;
                    }
                };
                if mail.next_attempt > now {
                    next_due = next_due.min(mail.next_attempt);
                    continue;
                }
                match self.send(&mail) {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&path);
                        self.journal.sent(mail_entry(&mail, None, None));
                    }
                    Err(e) => {
                        mail.attempts += 1;
                        let delay = (self.config.retry_initial_secs.max(1) << (mail.attempts - 1).min(16))
                            .min(MAX_BACKOFF_SECS);
                        mail.next_attempt = now + delay as i64 * 1000;
                        next_due = next_due.min(mail.next_attempt);
                        self.journal.failed(mail_entry(&mail, Some(e.to_string()), Some(delay)));
                        if let Err(e) = write_json_atomic(&path, &mail) {
                            tracing::error!("{e}");
                        }
                    }
                }
            }
            let wait = Duration::from_millis((next_due - chrono::Utc::now().timestamp_millis()).max(10) as u64);
            match wake.recv_timeout(wait) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn send(&self, mail: &OutgoingMail) -> Result<(), SendError> {
        let c = &self.config;
        let address = |which: &'static str, a: &String| {
            a.parse::<Mailbox>().map_err(|source| SendError::Address { which, address: a.clone(), source })
        };
        let mut builder = Message::builder().from(address("from", &c.from)?).subject(subject_line(&mail.subject));
        for to in &mail.to {
            builder = builder.to(address("to", to)?);
        }
        let message = match &mail.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(mail.text.clone(), html.clone())),
            None => builder.header(ContentType::TEXT_PLAIN).body(mail.text.clone()),
        }?;
        let tls_err = |source| SendError::Tls { server: c.server.clone(), source };
        let builder = match c.security {
            MailSecurity::Plain => SmtpTransport::builder_dangerous(&c.server),
            MailSecurity::Starttls => SmtpTransport::starttls_relay(&c.server).map_err(tls_err)?,
            MailSecurity::Tls => SmtpTransport::relay(&c.server).map_err(tls_err)?,
        };
        let mut builder = builder.port(c.port()).timeout(Some(Duration::from_secs(c.timeout_secs)));
        if let Some(file) = &c.credentials_file {
            builder = builder.credentials(read_credentials(file)?);
        }
        builder
            .build()
            .send(&message)
            .map(|_| ())
            .map_err(|source| SendError::Smtp { relay: format!("{}:{}", c.server, c.port()), source })
    }
}

/// Why a mail was not sent (it is tried again).
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{which} {address:?}: {source}")]
    Address { which: &'static str, address: String, source: lettre::address::AddressError },
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("setting up TLS to {server}: {source}")]
    Tls { server: String, source: lettre::transport::smtp::Error },
    #[error("reading SMTP credentials {}: {source}", path.display())]
    ReadCredentials { path: PathBuf, source: std::io::Error },
    #[error("SMTP credentials {}: expected the user on line 1 and the password on line 2", .0.display())]
    BadCredentials(PathBuf),
    #[error("{relay}: {source}")]
    Smtp { relay: String, source: lettre::transport::smtp::Error },
}

/// `user` on the first line, `password` on the second.
fn read_credentials(path: &Path) -> Result<Credentials, SendError> {
    let text = crate::fsutil::read_foreign(path)
        .map_err(|source| SendError::ReadCredentials { path: path.to_path_buf(), source })?;
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(user), Some(pass)) if !user.is_empty() => Ok(Credentials::new(user.to_string(), pass.to_string())),
        _ => Err(SendError::BadCredentials(path.to_path_buf())),
    }
}

/// A subject as it may be sent: one line, no control characters, at most
/// 200 characters (applied again when sending, for mail queued by an older
/// version or edited on disk).
fn subject_line(subject: &str) -> String {
    crate::types::one_line(subject, 200)
}

// `[mail]` in the configuration: the SMTP relay and the notification list.

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MailSecurity {
    /// STARTTLS on the submission port (587).
    #[default]
    Starttls,
    /// TLS from the first byte (465).
    Tls,
    /// No encryption: only for a relay on this host's loopback.
    Plain,
}

/// The SMTP relay and the notification list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    pub server: String,
    /// Default: 587 for starttls, 465 for tls, 25 for plain.
    pub port: Option<u16>,
    #[serde(default)]
    pub security: MailSecurity,
    /// The sender, `pipemedic <pipemedic@host.example>`.
    pub from: String,
    /// A file with the SMTP user on the first line and the password on the
    /// second (kept out of the config so the config can be shared).
    pub credentials_file: Option<PathBuf>,
    /// Who receives `notify` findings.
    #[serde(default)]
    pub notify: Vec<String>,
    /// The same finding is mailed at most once in this time.
    #[serde(default = "default_dedup")]
    pub notify_dedup_secs: u64,
    /// First retry delay after a failed send; doubles up to 10 minutes.
    #[serde(default = "default_retry")]
    pub retry_initial_secs: u64,
    #[serde(default = "default_mail_timeout")]
    pub timeout_secs: u64,
}

fn default_dedup() -> u64 {
    3600
}

fn default_retry() -> u64 {
    15
}

fn default_mail_timeout() -> u64 {
    20
}

impl MailConfig {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        self.from.parse::<lettre::message::Mailbox>().map_err(|e| format!("[mail] from {:?}: {e}", self.from))?;
        for who in &self.notify {
            who.parse::<lettre::message::Mailbox>().map_err(|e| format!("[mail] notify {who:?}: {e}"))?;
        }
        let loopback =
            self.server == "localhost" || self.server.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if self.security == MailSecurity::Plain && !loopback {
            return Err(format!(
                "[mail] security = \"plain\" sends credentials and approval links in clear text; it is only allowed for a relay on loopback, not {:?}",
                self.server
            )
            .into());
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            MailSecurity::Starttls => 587,
            MailSecurity::Tls => 465,
            MailSecurity::Plain => 25,
        })
    }
}
