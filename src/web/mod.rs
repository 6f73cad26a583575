//! The war room: `lifeboat serve`, a web page and an HTTP JSON API over a journal store, for
//! everyone who watches or decides a recovery.
//!
//! This module owns the web front: its settings (`[web]` in the config file), how it reaches
//! the store, its router, and its listener (plain or TLS). It implements no action: approving,
//! aborting and deciding a step go through the same [`control::Service`] requests as the
//! command line, so a gate approved on the page is approved exactly as `lifeboat approve`
//! would, with the person's name in the journal. [`auth`] says who is asking, [`api`] answers
//! the JSON requests (and describes them in OpenAPI), [`page`] serves the page and its assets
//! (in the binary), [`metrics`] the Prometheus text.

pub mod api;
pub mod auth;
pub mod link;
mod metrics;
mod page;
mod views;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::control::{self, Access, Request, Response, Service};
use crate::journal::{Journal, Location};

pub use auth::{Role, TokenEntry};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("the war room's key {}: {source}", path.display())]
    Key {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Control(#[from] control::Error),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config { .. } => 2,
            Error::Control(e) => e.exit_code(),
            _ => 1,
        }
    }
}

/// The `[web]` table of the config file.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Who may sign in: `[[web.token]]` entries.
    pub tokens: Vec<TokenEntry>,
    /// The address people open the war room at (`url = "https://war.example.net"`): with it,
    /// gate emails carry personal approval links ([`link`]).
    pub url: Option<String>,
    /// How long such a link works (`link_lifetime = "1h"`).
    pub link_lifetime: Option<std::time::Duration>,
}

impl Settings {
    /// Reads `[web]` from the config file (`config_file`, else the default one; none there is
    /// no settings). Also returns the file's name, for messages.
    pub fn load(config_file: Option<&Path>) -> Result<(Settings, String), Error> {
        let default = crate::mail::default_config_path();
        let Some(path) = config_file.or(default.as_deref()) else {
            return Ok((Settings::default(), "the config file".into()));
        };
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Settings::parse(&text, &shown)?, shown)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Settings::default(), shown)),
            Err(e) => Err(Error::Config {
                path: shown,
                message: e.to_string(),
            }),
        }
    }

    /// The approval links gate emails carry, when `url` is set; the key is the war room's
    /// (`DIR/web.key`, made if missing), so that `serve` on this store accepts them.
    pub fn links(&self, dir: &Path) -> Result<Option<link::Links>, Error> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        Ok(Some(link::Links::new(
            key(dir)?,
            url,
            self.link_lifetime.unwrap_or(link::DEFAULT_LIFETIME),
        )))
    }

    /// Reads `[web]` from the config file's text. `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Settings, Error> {
        let bad = |message: String| Error::Config {
            path: path.to_string(),
            message,
        };
        let value: toml::Value = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let Some(web) = value.get("web") else {
            return Ok(Settings::default());
        };
        let url = match web.get("url") {
            None => None,
            Some(toml::Value::String(u))
                if u.starts_with("https://") || u.starts_with("http://") =>
            {
                Some(u.trim_end_matches('/').to_string())
            }
            Some(other) => {
                return Err(bad(format!(
                    "[web] url: expected the address people open the war room at, like \"https://war.example.net\", got {other}"
                )))
            }
        };
        let link_lifetime = match web.get("link_lifetime") {
            None => None,
            Some(toml::Value::String(d)) => Some(humantime::parse_duration(d).map_err(|e| {
                bad(format!(
                    "[web] link_lifetime {d:?}: {e} (like \"1h\" or \"30m\")"
                ))
            })?),
            Some(other) => {
                return Err(bad(format!(
                    "[web] link_lifetime: expected a duration like \"1h\", got {other}"
                )))
            }
        };
        let mut tokens: Vec<TokenEntry> = Vec::new();
        let entries = match web.get("token") {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a.clone(),
            Some(_) => {
                return Err(bad(
                    "[web] token: expected [[web.token]] tables (lifeboat token NAME --role ROLE makes one)".into(),
                ))
            }
        };
        for (i, entry) in entries.iter().enumerate() {
            let n = i + 1;
            let field = |name: &str| {
                entry
                    .get(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("[[web.token]] number {n}: needs {name} = \"...\"")))
            };
            let name = field("name")?;
            let role = field("role")?;
            let role = Role::parse(&role).ok_or_else(|| {
                bad(format!(
                    "[[web.token]] {name:?}: role {role:?} is not viewer, operator or admin"
                ))
            })?;
            let sha256 = field("sha256")?.to_ascii_lowercase();
            if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!(
                    "[[web.token]] {name:?}: sha256 must be the 64 hex digits `lifeboat token` printed (the token itself never goes in the file)"
                )));
            }
            if tokens.iter().any(|t| t.name == name) {
                return Err(bad(format!(
                    "[[web.token]] {name:?} appears twice: each person has one name"
                )));
            }
            tokens.push(TokenEntry { name, role, sha256 });
        }
        Ok(Settings {
            tokens,
            url,
            link_lifetime,
        })
    }
}

/// The key that signs sessions and emailed links: `DIR/web.key` of the data directory, made
/// (readable by this user only) the first time. Several `serve` instances, and the drivers
/// whose emails carry links, must share it: on other hosts, copy the file.
pub fn key(dir: &Path) -> Result<Vec<u8>, Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join("web.key");
    let fail = |source| Error::Key {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(key) if key.len() >= 32 => return Ok(key),
        Ok(_) => {
            return Err(fail(std::io::Error::other(
                "shorter than 32 bytes: remove it and a new one is made",
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut key = vec![0u8; 32];
    getrandom::fill(&mut key).map_err(|e| Error::Random(e.to_string()))?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(&key).map_err(fail)?;
            f.sync_all().map_err(fail)?;
            Ok(key)
        }
        // Another process made it first: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(&path).map_err(fail)
        }
        Err(e) => Err(fail(e)),
    }
}

/// How the war room reaches the store.
enum Reach {
    /// The embedded store allows one process at a time: it is opened for each request and
    /// closed after (a run that starts meanwhile waits a moment), or reached through the
    /// process that holds it (a run, the daemon), which answers for its live runs too.
    Embedded {
        location: Location,
        one_at_a_time: Mutex<()>,
    },
    /// A shared store, open for the server's whole life.
    Shared(Service),
}

/// The war room's state, shared by every request.
pub struct Front {
    reach: Reach,
    clock: Arc<dyn Clock>,
    pub(crate) auth: auth::Auth,
    /// Served over TLS: cookies are `Secure`.
    pub(crate) tls: bool,
    pub(crate) metrics: metrics::Metrics,
}

impl Front {
    pub fn new(
        location: Location,
        clock: Arc<dyn Clock>,
        settings: Settings,
        tls: bool,
    ) -> Result<Front, Error> {
        let key = key(location.dir())?;
        let reach = match &location {
            Location::Dir(_) => Reach::Embedded {
                location,
                one_at_a_time: Mutex::new(()),
            },
            Location::Postgres { .. } => {
                let journal =
                    Arc::new(Journal::open_at(&location).map_err(|e| Error::Control(e.into()))?);
                Reach::Shared(Service::new(journal, Arc::default(), clock.clone()))
            }
        };
        Ok(Front {
            reach,
            auth: auth::Auth::new(settings.tokens.clone(), key),
            clock,
            tls,
            metrics: metrics::Metrics::default(),
        })
    }

    /// Sends a control request to the store (blocking).
    pub fn call(&self, request: Request) -> Result<Response, control::Error> {
        self.session(|ask| ask(request))?
    }

    /// Sends several requests on one opening of the store (blocking): `f` asks them. The
    /// embedded store is opened once for all of them (a scrape of `/metrics` reads every run).
    pub fn session<T>(
        &self,
        f: impl FnOnce(&mut dyn FnMut(Request) -> Result<Response, control::Error>) -> T,
    ) -> Result<T, control::Error> {
        let answer = |response: Response| match response {
            Response::Error { message, exit_code } => {
                Err(control::Error::Refused { message, exit_code })
            }
            other => Ok(other),
        };
        match &self.reach {
            Reach::Shared(service) => Ok(f(&mut |r| answer(service.handle(r)?))),
            Reach::Embedded {
                location,
                one_at_a_time,
            } => {
                let _one = one_at_a_time.lock().unwrap_or_else(|p| p.into_inner());
                let access = Access::open(location, self.clock.clone())?;
                Ok(f(&mut |r| answer(access.call(r)?)))
            }
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now()
    }
}

/// The router: the page, its assets, the API, the OpenAPI description and the metrics.
pub fn router(front: Arc<Front>) -> axum::Router {
    page::routes()
        .merge(api::routes())
        .merge(metrics::routes())
        .with_state(front)
}

/// The address a request came from, on either listener.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, crate::tls::TlsListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Where the war room listens.
pub enum Listener {
    Plain(tokio::net::TcpListener),
    Tls(crate::tls::TlsListener),
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: Listener,
    front: Arc<Front>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(front).into_make_service_with_connect_info::<Peer>();
    match listener {
        Listener::Plain(l) => axum::serve(l, app).with_graceful_shutdown(shutdown).await,
        Listener::Tls(l) => axum::serve(l, app).with_graceful_shutdown(shutdown).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_what_is_wrong() {
        let err = |text: &str| {
            Settings::parse(text, "config.toml")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("[[web.token]]\nname = \"ann\"\nrole = \"boss\"\nsha256 = \"00\"\n"),
            "config.toml: [[web.token]] \"ann\": role \"boss\" is not viewer, operator or admin"
        );
        assert_eq!(
            err("[[web.token]]\nname = \"ann\"\nrole = \"viewer\"\ntoken = \"lbt_x\"\n"),
            "config.toml: [[web.token]] number 1: needs sha256 = \"...\""
        );
        assert_eq!(
            err("[[web.token]]\nname = \"ann\"\nrole = \"viewer\"\nsha256 = \"lbt_secret\"\n"),
            "config.toml: [[web.token]] \"ann\": sha256 must be the 64 hex digits `lifeboat token` printed (the token itself never goes in the file)"
        );
        let ann = format!(
            "[[web.token]]\nname = \"ann\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
            "ab".repeat(32)
        );
        assert_eq!(
            err(&format!("{ann}{ann}")),
            "config.toml: [[web.token]] \"ann\" appears twice: each person has one name"
        );
        assert_eq!(
            err("[web]\nurl = \"war.example.net\"\n"),
            "config.toml: [web] url: expected the address people open the war room at, like \"https://war.example.net\", got \"war.example.net\""
        );
        assert_eq!(
            err("[web]\nlink_lifetime = \"soon\"\n"),
            "config.toml: [web] link_lifetime \"soon\": expected number at 0 (like \"1h\" or \"30m\")"
        );
        let ok = Settings::parse(&ann, "c").unwrap();
        assert_eq!(ok.tokens[0].role, Role::Admin);
    }

    #[test]
    fn a_short_key_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.key"), b"short").unwrap();
        assert_eq!(
            key(dir.path()).unwrap_err().to_string(),
            format!(
                "the war room's key {}: shorter than 32 bytes: remove it and a new one is made",
                dir.path().join("web.key").display()
            )
        );
        // Made once, then read back the same.
        let other = tempfile::tempdir().unwrap();
        let made = key(other.path()).unwrap();
        assert_eq!(made.len(), 32);
        assert_eq!(key(other.path()).unwrap(), made);
    }
}
