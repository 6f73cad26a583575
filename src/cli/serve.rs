//! `lifeboat serve`: the war room on a store, until stopped (Ctrl-C, SIGTERM); and
//! `lifeboat token`, which makes the tokens people sign in with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use crate::clock::Clock;
use crate::error::Error;
use crate::journal::Location;
use crate::web::{self, Front, Role, Settings};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (another address than loopback lets other machines in:
    /// use TLS, or a reverse proxy that has it).
    #[arg(long, default_value = "127.0.0.1:8750", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub fn serve(
    args: ServeArgs,
    db: &Location,
    config_file: Option<&Path>,
    clock: Arc<dyn Clock>,
) -> Result<u8, Error> {
    let (settings, config) = Settings::load(config_file)?;
    if settings.tokens.is_empty() {
        return Err(Error::Usage(format!(
            "lifeboat serve: nobody could sign in: {config} has no [[web.token]]. Make one with `lifeboat token NAME --role operator` and add the lines it prints"
        )));
    }
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::load(cert, key).map_err(web::Error::from)?),
        _ => None,
    };
    let front = Arc::new(Front::new(db.clone(), clock, settings, identity.is_some())?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let tcp = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|source| web::Error::Listen {
                addr: args.listen,
                source,
            })?;
        let addr = tcp.local_addr().map_err(|source| web::Error::Listen {
            addr: args.listen,
            source,
        })?;
        let (listener, scheme) = match &identity {
            Some(identity) => (
                web::Listener::Tls(crate::tls::TlsListener::new(tcp, identity).map_err(
                    |source| web::Error::Listen {
                        addr: args.listen,
                        source,
                    },
                )?),
                "https",
            ),
            None => (web::Listener::Plain(tcp), "http"),
        };
        // The first line says where: tests and scripts read it.
        println!("lifeboat serve: {scheme}://{addr}/");
        eprintln!(
            "war room on {scheme}://{addr}/ for store {} (Ctrl-C stops it)",
            db.describe()
        );
        web::serve(listener, front, shutdown_signal())
            .await
            .map_err(|e| Error::Usage(format!("lifeboat serve: {e}")))
    })?;
    Ok(0)
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `lifeboat token NAME --role ROLE`: a new token, shown once, and the lines that let it in.
pub fn token(name: &str, role: &str) -> Result<u8, Error> {
    let role = Role::parse(role)
        .ok_or_else(|| Error::Usage(format!("--role {role:?}: viewer, operator or admin")))?;
    if name.trim().is_empty() || name.contains(['"', '\\', '\n']) {
        return Err(Error::Usage(format!(
            "token name {name:?}: give the person's name (it is what the journal records), without quotes"
        )));
    }
    let token = web::auth::new_token().map_err(|e| web::Error::Random(e.to_string()))?;
    println!("{token}");
    eprintln!(
        "The token of {name} ({}) is the line above: give it to them; it is not kept anywhere.\nAdd these lines to the config file of every `lifeboat serve`:\n",
        role.label()
    );
    eprintln!(
        "[[web.token]]\nname = \"{name}\"\nrole = \"{}\"\nsha256 = \"{}\"",
        role.label(),
        web::auth::token_hash(&token)
    );
    Ok(0)
}
