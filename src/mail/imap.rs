//! Watching an IMAP mailbox for a message: TLS through rustls (or plain on loopback), IDLE
//! where the server offers it and polling otherwise, and a baseline (UIDVALIDITY, UIDNEXT)
//! taken when a wait begins, so that only messages that arrived after it count, even across a
//! crash and a resume.

use std::fmt::Debug;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::matcher::{Criteria, Found};
use super::{Error, ImapConfig, Tls};

/// A byte stream IMAP can run over: plain TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Stream for T {}

type Session = async_imap::Session<Box<dyn Stream>>;

/// Where the mailbox stood when a wait began: messages with a UID at or above `uid_next`
/// arrived after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub uid_validity: u32,
    pub uid_next: u32,
}

/// Reads the greeting and upgrades the connection with STARTTLS (RFC 3501 6.2.1), before the
/// TLS handshake. Byte by byte: nothing the server sends after the tagged OK may be read here.
async fn starttls(tcp: &mut TcpStream) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn line(tcp: &mut TcpStream) -> Result<String, String> {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while out.len() < 8192 {
            let n = tcp.read(&mut byte).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the server closed the connection before STARTTLS".to_string());
            }
            out.push(byte[0]);
            if out.ends_with(b"\r\n") {
                return Ok(String::from_utf8_lossy(&out).trim_end().to_string());
            }
        }
        Err("an over-long line before STARTTLS".to_string())
    }
    let greeting = line(tcp).await?;
    if !greeting.starts_with("* OK") {
        return Err(format!("unexpected greeting {greeting:?}"));
    }
    tcp.write_all(b"S1 STARTTLS\r\n")
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let reply = line(tcp).await?;
        if reply.starts_with("S1 OK") {
            return Ok(());
        }
        if reply.starts_with("S1 ") {
            return Err(format!(
                "the server refused STARTTLS ({reply}); lifeboat never logs in without TLS: use tls = \"tls\" (port 993) if it offers that"
            ));
        }
    }
}

/// A connection to one mailbox, re-established on demand.
pub struct Watcher {
    cfg: ImapConfig,
    session: Option<Session>,
    idle: bool,
}

impl Watcher {
    pub fn new(cfg: ImapConfig) -> Watcher {
        Watcher {
            cfg,
            session: None,
            idle: false,
        }
    }

    fn server(&self) -> String {
        format!("{}:{}", self.cfg.host, self.cfg.port)
    }

    fn lost(&mut self, detail: impl ToString) -> Error {
        self.session = None;
        Error::ImapConnection {
            server: self.server(),
            detail: detail.to_string(),
        }
    }

    async fn connect(&mut self) -> Result<(), Error> {
        if self.session.is_some() {
            return Ok(());
        }
        let server = self.server();
        let conn = |detail: String| Error::ImapConnection {
            server: server.clone(),
            detail,
        };
        let mut tcp = TcpStream::connect((self.cfg.host.as_str(), self.cfg.port))
            .await
            .map_err(|e| conn(e.to_string()))?;
        let tls = |tcp: TcpStream| async {
            let connector = super::tls::connector(&self.cfg.ca).map_err(conn)?;
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.cfg.host.clone())
                .map_err(|e| conn(e.to_string()))?;
            connector.connect(name, tcp).await.map_err(|e| {
                match super::tls::explain(&e.to_string(), "imap") {
                    (detail, true) => Error::ImapCertificate {
                        server: server.clone(),
                        detail,
                    },
                    (detail, false) => conn(format!("TLS: {detail}")),
                }
            })
        };
        let stream: Box<dyn Stream> = match self.cfg.tls {
            Tls::Tls => Box::new(tls(tcp).await?),
            Tls::Starttls => {
                // The greeting and STARTTLS in plain text, then TLS before anything else; a
                // server that does not offer it is refused, never used in plain text.
                starttls(&mut tcp).await.map_err(conn)?;
                Box::new(tls(tcp).await?)
            }
            Tls::None => Box::new(tcp),
        };
        let mut client = async_imap::Client::new(stream);
        if self.cfg.tls != Tls::Starttls {
            client
                .read_response()
                .await
                .map_err(|e| conn(e.to_string()))?
                .ok_or_else(|| conn("no greeting".into()))?;
        }
        let mut session = client
            .login(&self.cfg.user, self.cfg.password.expose())
            .await
            .map_err(|(e, _)| match e {
                async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_) => {
                    Error::ImapAuth {
                        server: server.clone(),
                        user: self.cfg.user.clone(),
                    }
                }
                other => conn(other.to_string()),
            })?;
        self.idle = session
            .capabilities()
            .await
            .map_err(|e| conn(e.to_string()))?
            .has_str("IDLE");
        self.session = Some(session);
        self.select().await.map(drop)
    }

    async fn select(&mut self) -> Result<Baseline, Error> {
        let mailbox = self.cfg.mailbox.clone();
        let server = self.server();
        let session = self.session.as_mut().expect("connected");
        match session.select(&mailbox).await {
            Ok(mb) => Ok(Baseline {
                uid_validity: mb.uid_validity.unwrap_or(0),
                uid_next: mb.uid_next.unwrap_or(1),
            }),
            Err(async_imap::error::Error::No(detail))
            | Err(async_imap::error::Error::Bad(detail)) => {
                self.session = None;
                Err(Error::ImapMailbox {
                    server,
                    mailbox,
                    detail,
                })
            }
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Connects if needed and returns where the mailbox stands now.
    pub async fn baseline(&mut self) -> Result<Baseline, Error> {
        self.connect().await?;
        self.select().await
    }

    /// The first message that arrived after `since` and matches, if any.
    pub async fn find(
        &mut self,
        since: &Baseline,
        criteria: &Criteria,
    ) -> Result<Option<Found>, Error> {
        let now = self.baseline().await?;
        // A recreated mailbox renumbers its messages: then every message counts.
        let first = if now.uid_validity == since.uid_validity {
            since.uid_next
        } else {
            1
        };
        let session = self.session.as_mut().expect("connected");
        let search = session.uid_search(format!("UID {first}:*")).await;
        let mut uids: Vec<u32> = match search {
            Ok(set) => set.into_iter().filter(|u| *u >= first).collect(),
            Err(e) => return Err(self.lost(e)),
        };
        uids.sort_unstable();
        for uid in uids {
            let session = self.session.as_mut().expect("connected");
            let fetched = match session.uid_fetch(uid.to_string(), "BODY.PEEK[]").await {
                Ok(stream) => stream.try_collect::<Vec<_>>().await,
                Err(e) => Err(e),
            };
            let fetched = match fetched {
                Ok(f) => f,
                Err(e) => return Err(self.lost(e)),
            };
            for f in &fetched {
                if let Some(found) = f.body().and_then(|raw| criteria.matches(uid, raw)) {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// Waits up to `limit` for the mailbox to change: IDLE where offered, else a plain wait.
    /// IDLE can wake without news; callers search again either way.
    pub async fn wait(&mut self, limit: Duration) -> Result<(), Error> {
        self.connect().await?;
        if !self.idle {
            tokio::time::sleep(limit).await;
            return Ok(());
        }
        let session = self.session.take().expect("connected");
        let mut idle = session.idle();
        if let Err(e) = idle.init().await {
            return Err(self.lost(e));
        }
        let (wait, _stop) = idle.wait_with_timeout(limit);
        let woke = wait.await;
        if let Err(e) = woke {
            return Err(self.lost(e));
        }
        match idle.done().await {
            Ok(session) => {
                self.session = Some(session);
                Ok(())
            }
            Err(e) => Err(self.lost(e)),
        }
    }
}
