//! Mail and approvals by mail.

use super::*;

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
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            MailSecurity::Starttls => 587,
            MailSecurity::Tls => 465,
            MailSecurity::Plain => 25,
        })
    }
}
