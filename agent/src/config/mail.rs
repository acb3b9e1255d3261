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

impl ApprovalConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
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

impl MailConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
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
