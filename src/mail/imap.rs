//! Watching an IMAP mailbox for a message: TLS through rustls (or plain on loopback), IDLE
//! where the server offers it and polling otherwise, and a baseline (UIDVALIDITY, UIDNEXT)
//! taken when a wait begins, so that only messages that arrived after it count, even across a
//! crash and a resume.

use std::fmt::Debug;
use std::sync::Arc;
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
        let tcp = TcpStream::connect((self.cfg.host.as_str(), self.cfg.port))
            .await
            .map_err(|e| conn(e.to_string()))?;
        let stream: Box<dyn Stream> = match self.cfg.tls {
            Tls::Tls => {
                use rustls_platform_verifier::ConfigVerifierExt;
                let config = tokio_rustls::rustls::ClientConfig::with_platform_verifier()
                    .map_err(|e| conn(e.to_string()))?;
                let name =
                    tokio_rustls::rustls::pki_types::ServerName::try_from(self.cfg.host.clone())
                        .map_err(|e| conn(e.to_string()))?;
                Box::new(
                    tokio_rustls::TlsConnector::from(Arc::new(config))
                        .connect(name, tcp)
                        .await
                        .map_err(|e| conn(format!("TLS: {e}")))?,
                )
            }
            Tls::None | Tls::Starttls => Box::new(tcp),
        };
        let mut client = async_imap::Client::new(stream);
        client
            .read_response()
            .await
            .map_err(|e| conn(e.to_string()))?
            .ok_or_else(|| conn("no greeting".into()))?;
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
