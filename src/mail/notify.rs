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
        permanent: true,
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
        .map_err(|e| explain(cfg, &e))
}

/// The transport for `cfg`: TLS as configured (the system's roots and `ca_file`), with its
/// credentials offered as AUTH PLAIN or LOGIN.
fn transport(cfg: &SmtpConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    use lettre::transport::smtp::authentication::Mechanism;
    use lettre::transport::smtp::client::{Certificate, Tls as SmtpTls, TlsParameters};
    let params = || -> Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(cfg.host.clone());
        for der in &cfg.ca {
            builder = builder.add_root_certificate(
                Certificate::from_der(der.to_vec()).map_err(|e| e.to_string())?,
            );
        }
        builder.build_rustls().map_err(|e| e.to_string())
    };
    let tls = match cfg.tls {
        Tls::Tls => SmtpTls::Wrapper(params()?),
        Tls::Starttls => SmtpTls::Required(params()?),
        Tls::None => SmtpTls::None,
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
        .tls(tls)
        .port(cfg.port)
        .timeout(Some(Duration::from_secs(60)));
    if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
        transport = transport
            .credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    Ok(transport.build())
}

/// lettre's error as a responder reads it: a refused login names the user and the mechanisms,
/// a certificate problem says what to do; both are permanent, as is any 5xx answer.
fn explain(cfg: &SmtpConfig, e: &lettre::transport::smtp::Error) -> Error {
    let text = e.to_string();
    let code = e.status().map(|c| c.to_string());
    let (detail, permanent) = match (&cfg.user, code.as_deref()) {
        (Some(user), Some("535" | "534" | "530" | "454")) => (
            format!("authentication as {user} refused (AUTH PLAIN or LOGIN): {text}; check [smtp] user and password"),
            true,
        ),
        _ if e.is_tls() || text.contains("certificate") => super::tls::explain(&text, "smtp"),
        _ => (text, e.is_permanent()),
    };
    Error::Smtp {
        server: format!("{}:{}", cfg.host, cfg.port),
        detail,
        permanent,
    }
}

/// Connects to the server in `cfg` as sending would (TLS, authentication) and sends nothing:
/// `lifeboat doctor`.
pub async fn check(cfg: &SmtpConfig) -> Result<(), Error> {
    let err = |detail: String| Error::Smtp {
        server: format!("{}:{}", cfg.host, cfg.port),
        detail,
        permanent: true,
    };
    match transport(cfg).map_err(err)?.test_connection().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(err("the server did not answer NOOP".to_string())),
        Err(e) => Err(explain(cfg, &e)),
    }
}
