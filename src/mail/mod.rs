//! Email: notifying responders over SMTP, and watching an IMAP mailbox for OVH's confirmation
//! email. This module owns the mail configuration, the SMTP sending (lettre), the IMAP watching
//! (async-imap, IDLE where offered) and the matching of parsed messages (mail-parser). The
//! engine decides when; this module only talks to mail servers.
//!
//! Configuration: the `[smtp]`, `[imap]` and `[notify]` sections of lifeboat's config file
//! (`--config`, `LIFEBOAT_CONFIG`, default `$XDG_CONFIG_HOME/lifeboat/config.toml`), each
//! value overridable by `LIFEBOAT_SMTP_*`, `LIFEBOAT_IMAP_*`, `LIFEBOAT_NOTIFY_*`. Passwords
//! are [`Secret`]s: they never reach the journal, logs or errors.

pub mod imap;
pub mod matcher;
pub mod notifier;
pub mod notify;
pub mod tls;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::Secret;

/// Personal approval links for gate notifications (the war room makes them: `web::link`).
pub trait GateLinks: Send + Sync {
    /// The link with which `to` may decide gate `gate` of `run`, made at `now_ms`.
    fn link(&self, run: &crate::journal::RunId, gate: &str, to: &str, now_ms: u64) -> String;
    /// How long a link works.
    fn lifetime(&self) -> std::time::Duration;
}

/// The links a notifier puts in gate emails, and the clock their expiry counts from.
pub type Linking = (
    std::sync::Arc<dyn GateLinks>,
    std::sync::Arc<dyn crate::clock::Clock>,
);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mail configuration {path}: {message}")]
    Config { path: String, message: String },
    #[error("{what} is not configured: set the [{section}] section of the config file or LIFEBOAT_{upper}_HOST (see docs/email.md)", upper = section.to_uppercase())]
    NotConfigured {
        what: &'static str,
        section: &'static str,
    },
    /// `permanent`: trying again cannot help (the login was refused, the certificate is not
    /// acceptable); otherwise the server or the network may recover.
    #[error("SMTP {server}: {detail}")]
    Smtp {
        server: String,
        detail: String,
        permanent: bool,
    },
    #[error("IMAP {server}: login refused for user {user}: check the user and password")]
    ImapAuth { server: String, user: String },
    #[error("IMAP {server}: mailbox {mailbox:?}: {detail}")]
    ImapMailbox {
        server: String,
        mailbox: String,
        detail: String,
    },
    /// The connection failed or dropped: worth reconnecting.
    #[error("IMAP {server}: {detail}")]
    ImapConnection { server: String, detail: String },
    /// The server's certificate is not acceptable: reconnecting would meet the same one.
    #[error("IMAP {server}: TLS: {detail}")]
    ImapCertificate { server: String, detail: String },
    #[error("{0}")]
    Pattern(String),
}

impl Error {
    /// Trying again cannot help: a person must change the settings or the server.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Smtp { permanent, .. } => *permanent,
            Error::ImapConnection { .. } => false,
            Error::Config { .. }
            | Error::NotConfigured { .. }
            | Error::ImapAuth { .. }
            | Error::ImapMailbox { .. }
            | Error::ImapCertificate { .. }
            | Error::Pattern(_) => true,
        }
    }
}

/// How a connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// TLS from the first byte (SMTP 465, IMAP 993).
    Tls,
    /// Plain, upgraded with STARTTLS (SMTP 587); refused if the server does not offer it.
    Starttls,
    /// No encryption: for loopback test servers only.
    None,
}

impl Tls {
    /// How the config file names it.
    pub fn name(self) -> &'static str {
        match self {
            Tls::Tls => "tls",
            Tls::Starttls => "starttls",
            Tls::None => "no TLS",
        }
    }

    fn parse(s: &str) -> Option<Tls> {
        match s.to_ascii_lowercase().as_str() {
            "tls" | "implicit" => Some(Tls::Tls),
            "starttls" => Some(Tls::Starttls),
            "none" | "plain" => Some(Tls::None),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    /// Certificates trusted besides the system's (`ca_file`).
    pub ca: Vec<rustls_pki_types::CertificateDer<'static>>,
}

#[derive(Clone, Debug)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub user: String,
    pub password: Secret,
    pub mailbox: String,
    /// Certificates trusted besides the system's (`ca_file`).
    pub ca: Vec<rustls_pki_types::CertificateDer<'static>>,
}

/// When lifeboat emails responders on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyOn {
    Approval,
    Failure,
    Finish,
}

#[derive(Clone, Debug, Default)]
pub struct NotifyConfig {
    pub to: Vec<String>,
    pub on: Vec<NotifyOn>,
}

/// Everything mail-related lifeboat was configured with.
#[derive(Clone, Debug, Default)]
pub struct MailConfig {
    pub smtp: Option<SmtpConfig>,
    pub imap: Option<ImapConfig>,
    pub notify: NotifyConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSection {
    host: Option<String>,
    port: Option<u16>,
    tls: Option<String>,
    user: Option<String>,
    password: Option<String>,
    from: Option<String>,
    mailbox: Option<String>,
    ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifySection {
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    on: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    smtp: Option<FileSection>,
    #[serde(default)]
    imap: Option<FileSection>,
    #[serde(default)]
    notify: Option<NotifySection>,
}

/// The config file lifeboat reads when none is named.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("lifeboat/config.toml"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/lifeboat/config.toml"))
}

impl MailConfig {
    /// Reads `file` (if it exists) and the environment (`env` looks a variable up).
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<MailConfig, Error> {
        let parsed: ConfigFile = match file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                toml::from_str(&text).map_err(|e| Error::Config {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            _ => ConfigFile::default(),
        };
        // Where the settings came from: the file when there is one, else the environment.
        let origin = file
            .filter(|p| p.exists())
            .map_or("environment".to_string(), |p| p.display().to_string());
        let bad = |message: String| Error::Config {
            path: origin.clone(),
            message,
        };

        let section = |name: &str,
                       file: Option<FileSection>|
         -> Result<Option<(FileSection, String)>, Error> {
            let mut s = file.unwrap_or_default();
            let upper = name.to_uppercase();
            let var = |k: &str| env(&format!("LIFEBOAT_{upper}_{k}"));
            s.host = var("HOST").or(s.host);
            s.port = match var("PORT") {
                Some(p) => Some(p.parse().map_err(|_| {
                    bad(format!("LIFEBOAT_{upper}_PORT: not a port number: {p:?}"))
                })?),
                None => s.port,
            };
            s.tls = var("TLS").or(s.tls);
            s.user = var("USER").or(s.user);
            s.password = var("PASSWORD").or(s.password);
            s.from = var("FROM").or(s.from);
            s.mailbox = var("MAILBOX").or(s.mailbox);
            s.ca_file = var("CA_FILE").or(s.ca_file);
            Ok(s.host.clone().map(|h| (s, h)))
        };

        let ca = |section: &str, file: &Option<String>| match file {
            Some(f) => tls::read_ca(Path::new(f)).map_err(|m| bad(format!("{section} {m}"))),
            None => Ok(Vec::new()),
        };
        let smtp = match section("smtp", parsed.smtp)? {
            None => None,
            Some((s, host)) => {
                let tls = tls_of(s.tls.as_deref(), Tls::Starttls)
                    .ok_or_else(|| bad("smtp tls: expected tls, starttls or none".into()))?;
                Some(SmtpConfig {
                    port: s.port.unwrap_or(match tls {
                        Tls::Tls => 465,
                        Tls::Starttls => 587,
                        Tls::None => 25,
                    }),
                    host,
                    tls,
                    user: s.user,
                    password: s.password.map(Secret::new),
                    from: s.from.unwrap_or_else(|| "lifeboat@localhost".to_string()),
                    ca: ca("smtp", &s.ca_file)?,
                })
            }
        };
        let imap = match section("imap", parsed.imap)? {
            None => None,
            Some((s, host)) => {
                let tls = tls_of(s.tls.as_deref(), Tls::Tls)
                    .ok_or_else(|| bad("imap tls: expected tls, starttls or none".into()))?;
                Some(ImapConfig {
                    ca: ca("imap", &s.ca_file)?,
                    port: s.port.unwrap_or(if tls == Tls::Tls { 993 } else { 143 }),
                    user: s.user.ok_or_else(|| bad("imap: user is required".into()))?,
                    password: Secret::new(s.password.ok_or_else(|| {
                        bad("imap: password is required (LIFEBOAT_IMAP_PASSWORD)".into())
                    })?),
                    mailbox: s.mailbox.unwrap_or_else(|| "INBOX".to_string()),
                    host,
                    tls,
                })
            }
        };
        let file_notify = parsed.notify.unwrap_or_default();
        let to = env("LIFEBOAT_NOTIFY_TO")
            .map(|v| split_list(&v))
            .unwrap_or(file_notify.to);
        let on_names = env("LIFEBOAT_NOTIFY_ON")
            .map(|v| split_list(&v))
            .unwrap_or(file_notify.on);
        let on = on_names
            .iter()
            .map(|n| match n.as_str() {
                "approval" => Ok(NotifyOn::Approval),
                "failure" => Ok(NotifyOn::Failure),
                "finish" => Ok(NotifyOn::Finish),
                other => Err(bad(format!(
                    "notify on: unknown event {other:?} (approval, failure, finish)"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MailConfig {
            smtp,
            imap,
            notify: NotifyConfig { to, on },
        })
    }
}

fn tls_of(v: Option<&str>, default: Tls) -> Option<Tls> {
    match v {
        None => Some(default),
        Some(s) => Tls::parse(s),
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[smtp]\nhost = \"smtp.example.com\"\nuser = \"lb\"\npassword = \"file-pw\"\n[imap]\nhost = \"imap.example.com\"\nuser = \"ops\"\npassword = \"imap-pw\"\n[notify]\nto = [\"oncall@example.com\"]\non = [\"approval\", \"finish\"]\n").unwrap();
        let env = |k: &str| (k == "LIFEBOAT_SMTP_PASSWORD").then(|| "env-pw".to_string());
        let c = MailConfig::load(Some(&path), &env).unwrap();
        let smtp = c.smtp.unwrap();
        assert_eq!((smtp.port, smtp.tls), (587, Tls::Starttls));
        assert_eq!(smtp.password.unwrap().expose(), "env-pw");
        let imap = c.imap.unwrap();
        assert_eq!(
            (imap.port, imap.tls, imap.mailbox.as_str()),
            (993, Tls::Tls, "INBOX")
        );
        assert_eq!(c.notify.on, vec![NotifyOn::Approval, NotifyOn::Finish]);
        assert!(!format!("{imap:?}").contains("imap-pw"));
    }

    #[test]
    fn mistakes_are_named() {
        let env = |k: &str| match k {
            "LIFEBOAT_IMAP_HOST" => Some("127.0.0.1".to_string()),
            "LIFEBOAT_IMAP_USER" => Some("alice".to_string()),
            _ => None,
        };
        let e = MailConfig::load(None, &env).unwrap_err().to_string();
        assert_eq!(
            e,
            "mail configuration environment: imap: password is required (LIFEBOAT_IMAP_PASSWORD)"
        );
    }
}
