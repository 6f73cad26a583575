//! `lifeboat sim`: serves the OVH API simulator (plain HTTP, or HTTPS with `--tls`) and prints
//! the settings that point a shell's clients at it, as lines a POSIX shell can paste or
//! `source`: OVH's variables, and with `--tls` the certificate authority each kind of client
//! reads (lifeboat, OpenSSL-based tools and Python, Node.js).

use std::path::PathBuf;

use clap::Args;

use crate::error::Error;

#[derive(Debug, Args)]
pub(super) struct SimArgs {
    /// The account to simulate (JSON, see docs/simulator.md); the built-in demo account if absent.
    #[arg(long, value_name = "FILE")]
    fixture: Option<String>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Run task durations this many times faster.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Also append every request to this JSONL file.
    #[arg(long, value_name = "FILE")]
    request_log: Option<PathBuf>,
    /// Token for the /_sim admin endpoints (random if absent; printed).
    #[arg(long, env = "LIFEBOAT_SIM_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// On Ctrl-C, write the account as it then is to this fixture file.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Also write the `export` lines to this file (mode 600), for `source FILE`.
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Serve HTTPS, as OVH does: with a certificate for 127.0.0.1 and localhost issued by a
    /// throwaway CA made at start (written to --tls-ca-out), or the one of --tls-cert.
    #[arg(long)]
    tls: bool,
    /// With --tls: serve this certificate chain (PEM) instead of making one.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// With --tls-cert: its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With --tls: where to write the throwaway CA's certificate
    /// [default: lifeboat-sim-PORT-ca.pem in the temporary directory].
    #[arg(long, value_name = "FILE")]
    tls_ca_out: Option<PathBuf>,
}

pub(super) fn run(args: SimArgs) -> Result<u8, Error> {
    use crate::sim::{Options, Sim};
    use crate::tls;
    if !(args.speed > 0.0 && args.speed.is_finite()) {
        return Err(Error::Usage(format!(
            "--speed must be a positive number, not {}",
            args.speed
        )));
    }
    let tls_requested = args.tls || args.tls_cert.is_some();
    if tls_requested && !args.tls {
        return Err(Error::Usage("--tls-cert goes with --tls".into()));
    }
    let demo = args.fixture.is_none();
    let fixture = match &args.fixture {
        Some(path) => Sim::load_fixture(path).map_err(|e| Error::Usage(e.to_string()))?,
        None => Sim::demo_fixture(),
    };
    let account = fixture.account.clone();
    let mut opts = Options {
        speed: args.speed,
        request_log: args.request_log.clone(),
        https: args.tls,
        ..Options::default()
    };
    if let Some(token) = &args.admin_token {
        opts.admin_token = token.clone();
    }
    let sim = Sim::new(fixture, opts).map_err(|e| Error::Usage(e.to_string()))?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
    let listen = args.listen.clone();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| Error::Usage(format!("--listen {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Usage(e.to_string()))?;
        let identity = match (&args.tls_cert, &args.tls_key) {
            _ if !args.tls => None,
            (Some(cert), Some(key)) => {
                Some(tls::load(cert, key).map_err(|e| Error::Usage(e.to_string()))?)
            }
            _ => {
                let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
                let ip = addr.ip().to_string();
                if !addr.ip().is_unspecified() && !names.contains(&ip) {
                    names.push(ip);
                }
                Some(tls::generate(&names).map_err(|e| Error::Usage(e.to_string()))?)
            }
        };
        let scheme = if args.tls { "https" } else { "http" };
        let base = format!("{scheme}://{addr}/1.0");
        let mut settings = vec![("OVH_ENDPOINT", base.clone())];
        if demo {
            settings.push(("OVH_APPLICATION_KEY", account.application_key.clone()));
            settings.push(("OVH_APPLICATION_SECRET", account.application_secret.clone()));
            settings.push(("OVH_CONSUMER_KEY", account.consumer_key.clone()));
        }
        settings.push(("LIFEBOAT_SIM_ADMIN_TOKEN", sim.admin_token().to_string()));
        let mut notes = Vec::new();
        if let Some(ca) = identity.as_ref().and_then(|i| i.ca_pem.as_ref()) {
            let path = args.tls_ca_out.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("lifeboat-sim-{}-ca.pem", addr.port()))
            });
            std::fs::write(&path, ca).map_err(|source| Error::File {
                path: path.display().to_string(),
                source,
            })?;
            let path = path.display().to_string();
            // lifeboat adds it to the system's roots; OpenSSL-based tools and Python's ssl,
            // requests (python-ovh) and curl use it instead of them (for this shell only);
            // Node.js adds it.
            for var in [
                "LIFEBOAT_OVH_CA_FILE",
                "SSL_CERT_FILE",
                "REQUESTS_CA_BUNDLE",
                "CURL_CA_BUNDLE",
                "NODE_EXTRA_CA_CERTS",
            ] {
                settings.push((var, path.clone()));
            }
            notes.push(format!(
                "# HTTPS with a throwaway CA ({path}); SSL_CERT_FILE, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE make this shell's OpenSSL tools, Python and curl trust only it"
            ));
        } else if let Some(cert) = &args.tls_cert {
            notes.push(format!(
                "# HTTPS with {}: point LIFEBOAT_OVH_CA_FILE (and your clients) at the CA that issued it",
                cert.display()
            ));
        }
        let exports: String = settings
            .iter()
            .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
            .collect();
        if let Some(path) = &args.env_file {
            write_private(path, &exports)?;
        }
        let mut out = std::io::stdout().lock();
        use std::io::Write as _;
        let _ = writeln!(out, "# lifeboat sim: the OVH API at {base} (Ctrl-C stops it); paste these lines into your shell:");
        for note in &notes {
            let _ = writeln!(out, "{note}");
        }
        let _ = write!(out, "{exports}");
        if let Some(path) = &args.env_file {
            let _ = writeln!(out, "# (also in {}: source it)", path.display());
        }
        let _ = out.flush();
        drop(out);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let served = match &identity {
            Some(identity) => {
                let listener = tls::TlsListener::new(listener, identity)
                    .map_err(|e| Error::Usage(format!("simulator: {e}")))?;
                crate::sim::serve(listener, sim.clone(), shutdown).await
            }
            None => crate::sim::serve(listener, sim.clone(), shutdown).await,
        };
        served.map_err(|e| Error::Usage(format!("simulator: {e}")))?;
        if let Some(path) = &args.save {
            let json = serde_json::to_string_pretty(&sim.snapshot())
                .map_err(|e| Error::Usage(e.to_string()))?;
            std::fs::write(path, json + "\n").map_err(|source| Error::File {
                path: path.display().to_string(),
                source,
            })?;
            eprintln!("saved the account's state to {}", path.display());
        }
        Ok::<(), Error>(())
    })?;
    Ok(0)
}

/// A value as a POSIX shell reads it back: bare when it is plain, else single-quoted.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

/// Writes a file only its owner can read (it holds credentials).
fn write_private(path: &std::path::Path, text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let file_error = |source| Error::File {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(file_error)?;
    f.write_all(text.as_bytes()).map_err(file_error)
}
