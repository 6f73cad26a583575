//! Sending mail over SMTP (lettre, rustls): implicit TLS, STARTTLS (required, never a silent
//! fall back to plain text), or plain for loopback test servers.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Error, SmtpConfig, Tls};

/// One message to send.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
    /// A stable Message-ID, so that a message sent again after a crash is recognisably the same.
    pub message_id: Option<String>,
}

/// Sends `msg` through the server in `cfg`.
pub async fn send(cfg: &SmtpConfig, msg: &Outgoing) -> Result<(), Error> {
    let server = format!("{}:{}", cfg.host, cfg.port);
    let err = |detail: String| Error::Smtp {
        server: server.clone(),
        detail,
    };
    if msg.to.is_empty() {
        return Err(err("no recipient".into()));
    }
    let mut builder = Message::builder()
        .from(
            cfg.from
                .parse()
                .map_err(|e| err(format!("from address {:?}: {e}", cfg.from)))?,
        )
        .subject(msg.subject.clone());
    for to in &msg.to {
        builder = builder.to(to
            .parse()
            .map_err(|e| err(format!("recipient {to:?}: {e}")))?);
    }
    if let Some(id) = &msg.message_id {
        builder = builder.message_id(Some(id.clone()));
    }
    let email = builder
        .header(ContentType::TEXT_PLAIN)
        .body(msg.body.clone())
        .map_err(|e| err(e.to_string()))?;
    transport(cfg)
        .map_err(&err)?
        .send(email)
        .await
        .map(drop)
        .map_err(|e| err(e.to_string()))
}

/// The transport for `cfg`: TLS as configured, with its credentials.
fn transport(cfg: &SmtpConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let mut transport = match cfg.tls {
        Tls::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host).map_err(|e| e.to_string())?
        }
        Tls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
            .map_err(|e| e.to_string())?,
        Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
    }
    .port(cfg.port)
    .timeout(Some(Duration::from_secs(60)));
    if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
        transport = transport.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    Ok(transport.build())
}

/// Connects to the server in `cfg` as sending would (TLS, authentication) and sends nothing:
/// `lifeboat doctor`.
pub async fn check(cfg: &SmtpConfig) -> Result<(), Error> {
    let err = |detail: String| Error::Smtp {
        server: format!("{}:{}", cfg.host, cfg.port),
        detail,
    };
    match transport(cfg).map_err(err)?.test_connection().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(err("the server did not answer NOOP".to_string())),
        Err(e) => Err(err(e.to_string())),
    }
}
