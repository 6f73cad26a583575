//! The OVHcloud API client: signed requests, typed calls for what recoveries use, retries
//! only where they are safe, client-side rate and concurrency limits, and task waiting.
//!
//! Every request goes through [`Client::call`], the one place where a request is built,
//! signed, limited, sent, retried and decoded (plan mode will intercept mutating calls there).
//! Errors keep what a responder must quote to OVH support: the HTTP status, OVH's `message`,
//! `errorCode`, `httpCode`, `class`, and the `X-Ovh-QueryID` header.

// An API error carries every field a responder must quote to OVH; it is built at most once per
// HTTP exchange, so its size costs nothing measurable next to the request.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod pace;
pub mod signature;
pub mod stats;
pub mod types;

use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

pub use config::{Auth, Config};
use types::*;

/// Characters left as they are in a path segment or query value: RFC 3986 unreserved, plus `:`
/// (MAC addresses, IPv6). Everything else, `/` included, is escaped: `1.2.3.4/32` travels as
/// `1.2.3.4%2F32`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// Escapes one path segment or query value.
pub fn escape(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{method} {path}: {status}: {message}{}{}",
        code_note(error_code),
        query_note(query_id)
    )]
    Api {
        method: String,
        path: String,
        status: u16,
        message: String,
        error_code: Option<String>,
        http_code: Option<String>,
        class: Option<String>,
        query_id: Option<String>,
        retry_after: Option<Duration>,
    },
    /// No answer. `sent` means the request may have reached OVH: for a mutating call the
    /// outcome is unknown and it is never retried blindly.
    #[error("{method} {path}: {detail}{}", if *sent { " (the request may have reached OVH: outcome unknown)" } else { "" })]
    Transport {
        method: String,
        path: String,
        detail: String,
        sent: bool,
    },
    #[error("{method} {path}: unexpected answer: {detail}{}", query_note(query_id))]
    Decode {
        method: String,
        path: String,
        detail: String,
        query_id: Option<String>,
    },
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("task {task} ended {status}{}{}", comment.as_ref().map(|c| format!(": {c}")).unwrap_or_default(), query_note(query_id))]
    TaskFailed {
        task: String,
        status: String,
        comment: Option<String>,
        query_id: Option<String>,
    },
    #[error("task {task} still {status} after {}", humantime::format_duration(*waited))]
    TaskTimeout {
        task: String,
        status: String,
        waited: Duration,
    },
}

fn code_note(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!(" [{c}]")).unwrap_or_default()
}

fn query_note(id: &Option<String>) -> String {
    id.as_ref()
        .map(|q| format!(" (OVH query id {q})"))
        .unwrap_or_default()
}

impl Error {
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn query_id(&self) -> Option<&str> {
        match self {
            Error::Api { query_id, .. }
            | Error::Decode { query_id, .. }
            | Error::TaskFailed { query_id, .. } => query_id.as_deref(),
            _ => None,
        }
    }

    /// A failure of the API rather than of the request: OVH overloaded (5xx, 408, 429) or not
    /// reached (a timeout, a dropped connection). Asking again later may succeed; for a change,
    /// only after checking that the first attempt did not take effect.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Error::Transport { .. } => true,
            _ => false,
        }
    }

    /// Whether OVH answered that it is overloaded: what makes the client slow down.
    fn is_overload(&self) -> bool {
        matches!(self, Error::Api { status, .. } if *status >= 500 || *status == 429)
    }

    /// The error as a map for runbooks: `message`, `status`, `error_code`, `query_id`, `call`,
    /// `transient` (see [`Error::is_transient`]).
    pub fn to_value(&self) -> Value {
        let mut v = json!({ "message": self.to_string(), "transient": self.is_transient() });
        match self {
            Error::Api {
                method,
                path,
                status,
                message,
                error_code,
                http_code,
                class,
                query_id,
                ..
            } => {
                v["status"] = json!(status);
                v["ovh_message"] = json!(message);
                v["error_code"] = json!(error_code);
                v["http_code"] = json!(http_code);
                v["class"] = json!(class);
                v["query_id"] = json!(query_id);
                v["call"] = json!(format!("{method} {path}"));
            }
            Error::Transport {
                method, path, sent, ..
            } => {
                v["call"] = json!(format!("{method} {path}"));
                v["outcome_unknown"] = json!(sent);
            }
            _ => {}
        }
        v
    }

    /// Whether sending the same request again is safe and useful.
    fn retryable(&self, read_only: bool) -> bool {
        match self {
            // Too many requests: OVH did not process it.
            Error::Api { status: 429, .. } => true,
            Error::Api { status, .. } => read_only && (*status >= 500 || *status == 408),
            Error::Transport { sent: false, .. } => true,
            Error::Transport { sent: true, .. } => read_only,
            _ => false,
        }
    }
}

/// One access rule of a consumer key: a method and a path, `*` matching anything.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AccessRule {
    pub method: String,
    pub path: String,
}

impl AccessRule {
    /// Whether this rule lets `method` reach `path`, as OVH matches them: `*` in a rule's path
    /// matches any run of characters (`/dedicated/server/*` covers every path below the
    /// servers; `/ip/*/move` the moves of every IP). A needed path written with `*` (`/ip/*/move`)
    /// is covered by a rule whose `*` covers it.
    pub fn allows(&self, method: &str, path: &str) -> bool {
        fn glob(pattern: &[u8], text: &[u8]) -> bool {
            match pattern.split_first() {
                None => text.is_empty(),
                Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
                Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
            }
        }
        self.method.eq_ignore_ascii_case(method) && glob(self.path.as_bytes(), path.as_bytes())
    }
}

/// The access rules the shipped runbooks need: reads of servers, IPs and Private Clouds, the
/// IP moves, and the SBG datastore relink calls. Nothing else.
pub fn recovery_access_rules() -> Vec<AccessRule> {
    [
        ("GET", "/dedicated/server"),
        ("GET", "/dedicated/server/*"),
        ("POST", "/dedicated/server/*/ipMove"),
        ("GET", "/ip"),
        ("GET", "/ip/*"),
        ("POST", "/ip/*/move"),
        ("GET", "/dedicatedCloud"),
        ("GET", "/dedicatedCloud/*"),
        ("POST", "/dedicatedCloud/*/datacenter/*/linkFilerFromSbg"),
        ("POST", "/dedicatedCloud/*/datacenter/*/copyFiler"),
    ]
    .iter()
    .map(|(m, p)| AccessRule {
        method: m.to_string(),
        path: p.to_string(),
    })
    .collect()
}

/// Client behaviour: timeouts, retries and limits.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Per request (OVH's SDKs use 180 s).
    pub timeout: Duration,
    /// Further attempts for a retryable failure.
    pub retries: usize,
    /// First retry delay; doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Requests per second, client side (none by default).
    pub rate_limit: Option<f64>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Certificates (PEM) to trust besides the system's: a private CA, `lifeboat sim --tls`.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// How long task polls keep retrying 404 and 500 (OVH sometimes answers those for tasks
    /// that exist).
    pub task_poll_grace: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(180),
            retries: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            rate_limit: None,
            concurrency: 16,
            extra_ca_pem: None,
            task_poll_grace: Duration::from_secs(300),
        }
    }
}

/// A task to wait for.
#[derive(Clone, Debug)]
pub enum TaskRef {
    /// `/dedicated/server/{server}/task/{id}`.
    Server { server: String, id: i64 },
    /// `/ip/{ip}/task/{id}`.
    Ip { ip: String, id: i64 },
    /// `/dedicatedCloud/{pcc}/task/{id}`.
    Pcc { pcc: String, id: i64 },
}

impl TaskRef {
    fn path(&self) -> String {
        match self {
            TaskRef::Server { server, id } => {
                format!("/dedicated/server/{}/task/{id}", escape(server))
            }
            TaskRef::Ip { ip, id } => format!("/ip/{}/task/{id}", escape(ip)),
            TaskRef::Pcc { pcc, id } => format!("/dedicatedCloud/{}/task/{id}", escape(pcc)),
        }
    }
}

/// How a task wait polls.
#[derive(Clone, Copy, Debug)]
pub struct WaitOptions {
    pub poll: Duration,
    pub timeout: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            poll: Duration::from_secs(10),
            timeout: Duration::from_secs(3600),
        }
    }
}

/// The OVH API client. Cheap to share (`Arc`); every method is safe to call concurrently.
pub struct Client {
    http: reqwest::Client,
    config: Config,
    opts: ClientOptions,
    /// Server time minus local time, from `GET /auth/time`, measured once.
    time_delta: tokio::sync::OnceCell<i64>,
    oauth_token: tokio::sync::Mutex<Option<(String, Instant)>>,
    pace: pace::Pace,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(config: Config, opts: ClientOptions) -> Result<Client, Error> {
        let setup = |detail: String| Error::Transport {
            method: "-".into(),
            path: "-".into(),
            detail,
            sent: false,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(opts.timeout)
            .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &opts.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| setup(format!("the extra CA certificates: {e}")))?;
            if certs.is_empty() {
                return Err(setup(
                    "the extra CA file holds no PEM certificate".to_string(),
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| setup(e.to_string()))?;
        Ok(Client {
            http,
            pace: pace::Pace::new(opts.rate_limit, opts.concurrency),
            config,
            opts,
            time_delta: tokio::sync::OnceCell::new(),
            oauth_token: tokio::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        // Paths under /v1 or /v2 address the API root, not /1.0.
        let base = if path.starts_with("/v1/") || path.starts_with("/v2/") {
            self.config.base_url.trim_end_matches("/1.0")
        } else {
            &self.config.base_url
        };
        let mut url = format!("{base}{path}");
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&escape(k));
            url.push('=');
            url.push_str(&escape(v));
        }
        url
    }

    /// Sends one API call, with retries where safe. `path` starts with `/` and has its
    /// parameters escaped ([`escape`]).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        self.call_with_id(method, path, query, body)
            .await
            .map(|(v, _)| v)
    }

    /// [`Client::call`], also returning the answer's `X-Ovh-QueryID`.
    pub async fn call_with_id(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(Value, Option<String>), Error> {
        let read_only = method == "GET";
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.opts.backoff)
            .with_max_delay(self.opts.max_backoff)
            .with_max_times(self.opts.retries)
            .with_jitter();
        (|| self.send_once(method, path, query, body))
            .retry(backoff)
            .when(|e: &Error| e.retryable(read_only))
            .adjust(|e: &Error, d| match e {
                Error::Api {
                    retry_after: Some(after),
                    ..
                } => Some(*after),
                _ => d,
            })
            .await
    }

    /// The pace of this client's calls (lowered while OVH is overloaded).
    pub fn pace(&self) -> pace::PaceSnapshot {
        self.pace.snapshot()
    }

    /// The changes of pace after `version`, oldest first.
    pub fn pace_changes_since(&self, version: u64) -> Vec<pace::PaceSnapshot> {
        self.pace.changes_since(version)
    }

    async fn send_once(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(Value, Option<String>), Error> {
        let _permit = self.pace.acquire().await;
        let url_text = self.url(path, query);
        let url = reqwest::Url::parse(&url_text).map_err(|e| Error::Transport {
            method: method.into(),
            path: path.into(),
            detail: format!("invalid URL {url_text}: {e}"),
            sent: false,
        })?;
        let body_text = match body {
            Some(v) => serde_json::to_string(v).unwrap_or_default(),
            None => String::new(),
        };
        let http_method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| Error::Transport {
                method: method.into(),
                path: path.into(),
                detail: e.to_string(),
                sent: false,
            })?;
        let mut request = self
            .http
            .request(http_method, url.clone())
            .header("Accept", "application/json");
        if body.is_some() {
            request = request
                .header("Content-Type", "application/json")
                .body(body_text.clone());
        }
        request = match &self.config.auth {
            Auth::Signed {
                application_key,
                application_secret,
                consumer_key,
            } => {
                request = request.header("X-Ovh-Application", application_key);
                match consumer_key {
                    Some(ck) => {
                        let ts = chrono_now() + self.time_delta(application_key).await?;
                        // Sign the URL exactly as it goes on the wire.
                        let sig = signature::sign(
                            application_secret.expose(),
                            ck.expose(),
                            method,
                            url.as_str(),
                            &body_text,
                            ts,
                        );
                        request
                            .header("X-Ovh-Consumer", ck.expose())
                            .header("X-Ovh-Timestamp", ts.to_string())
                            .header("X-Ovh-Signature", sig)
                    }
                    None => request,
                }
            }
            Auth::OAuth2 { .. } => request.bearer_auth(self.oauth_token().await?),
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                stats::record(method, path, "transport");
                return Err(transport_error(method, path, &e, !e.is_connect()));
            }
        };
        stats::record(method, path, response.status().as_str());
        let answer = decode(method, path, response).await;
        self.pace.observe(match &answer {
            Err(e) if e.is_overload() => e.status(),
            _ => None,
        });
        answer
    }

    async fn time_delta(&self, application_key: &str) -> Result<i64, Error> {
        self.time_delta
            .get_or_try_init(|| async {
                let path = "/auth/time";
                let response = self
                    .http
                    .get(self.url(path, &[]))
                    .header("X-Ovh-Application", application_key)
                    .send()
                    .await
                    .map_err(|e| transport_error("GET", path, &e, false))?;
                let server: i64 = serde_json::from_value(decode("GET", path, response).await?.0)
                    .map_err(|e| Error::Decode {
                        method: "GET".into(),
                        path: path.into(),
                        detail: e.to_string(),
                        query_id: None,
                    })?;
                Ok(server - chrono_now())
            })
            .await
            .copied()
    }

    async fn oauth_token(&self) -> Result<String, Error> {
        let Auth::OAuth2 {
            client_id,
            client_secret,
            token_url,
        } = &self.config.auth
        else {
            unreachable!("only called for OAuth2")
        };
        let mut cached = self.oauth_token.lock().await;
        if let Some((token, expires)) = cached.as_ref() {
            if Instant::now() + Duration::from_secs(30) < *expires {
                return Ok(token.clone());
            }
        }
        let response = self
            .http
            .post(token_url)
            .basic_auth(client_id, Some(client_secret.expose()))
            .form(&[("grant_type", "client_credentials"), ("scope", "all")])
            .send()
            .await
            .map_err(|e| transport_error("POST", token_url, &e, false))?;
        let (v, _) = decode("POST", token_url, response).await?;
        let token = v["access_token"].as_str().ok_or_else(|| Error::Decode {
            method: "POST".into(),
            path: token_url.clone(),
            detail: "no access_token in the token response".into(),
            query_id: None,
        })?;
        let lifetime = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(3600));
        *cached = Some((token.to_string(), Instant::now() + lifetime));
        Ok(token.to_string())
    }

    /// Asks OVH for a new consumer key with these access rules (`POST /auth/credential`, signed
    /// with the application key only). The key works once the user opens `validationUrl`.
    pub async fn request_consumer_key(
        &self,
        rules: &[AccessRule],
        redirection: Option<&str>,
    ) -> Result<Value, Error> {
        let mut body = json!({ "accessRules": rules });
        if let Some(r) = redirection {
            body["redirection"] = json!(r);
        }
        self.call("POST", "/auth/credential", &[], Some(&body))
            .await
    }

    // ----- generic calls -----

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, Error> {
        self.call("GET", path, query, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, Error> {
        self.call("POST", path, &[], Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, Error> {
        self.call("PUT", path, &[], Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, Error> {
        self.call("DELETE", path, &[], None).await
    }

    async fn typed<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, Error> {
        let v = self.call(method, path, query, body).await?;
        serde_json::from_value(v).map_err(|e| Error::Decode {
            method: method.into(),
            path: path.into(),
            detail: e.to_string(),
            query_id: None,
        })
    }

    /// A typed read.
    async fn read<T: DeserializeOwned>(&self, path: impl AsRef<str>) -> Result<T, Error> {
        self.typed("GET", path.as_ref(), &[], None).await
    }

    // ----- dedicated servers and failover IPs -----

    pub async fn servers(&self) -> Result<Vec<String>, Error> {
        self.read("/dedicated/server").await
    }

    pub async fn server(&self, name: &str) -> Result<DedicatedServer, Error> {
        self.read(format!("/dedicated/server/{}", escape(name)))
            .await
    }

    pub async fn server_ips(&self, name: &str) -> Result<Vec<String>, Error> {
        self.read(format!("/dedicated/server/{}/ips", escape(name)))
            .await
    }

    /// `Ok(())` when `ip` may move to `server`; OVH's refusal otherwise.
    pub async fn ip_can_be_moved_to(&self, server: &str, ip: &str) -> Result<(), Error> {
        self.call(
            "GET",
            &format!("/dedicated/server/{}/ipCanBeMovedTo", escape(server)),
            &[("ip", ip.to_string())],
            None,
        )
        .await
        .map(drop)
    }

    /// Moves `ip` to `server` (old API, keyed on the destination server).
    pub async fn ip_move(&self, server: &str, ip: &str) -> Result<ServerTask, Error> {
        self.typed(
            "POST",
            &format!("/dedicated/server/{}/ipMove", escape(server)),
            &[],
            Some(&json!({ "ip": ip })),
        )
        .await
    }

    pub async fn server_task(&self, server: &str, id: i64) -> Result<ServerTask, Error> {
        self.typed(
            "GET",
            &TaskRef::Server {
                server: server.into(),
                id,
            }
            .path(),
            &[],
            None,
        )
        .await
    }

    pub async fn ips(&self) -> Result<Vec<String>, Error> {
        self.read("/ip").await
    }

    pub async fn ip(&self, ip: &str) -> Result<Ip, Error> {
        self.read(format!("/ip/{}", escape(ip))).await
    }

    pub async fn ip_move_destinations(&self, ip: &str) -> Result<Destinations, Error> {
        self.read(format!("/ip/{}/move", escape(ip))).await
    }

    /// Moves `ip` to the service `to` (new API).
    pub async fn ip_move_to(
        &self,
        ip: &str,
        to: &str,
        nexthop: Option<&str>,
    ) -> Result<IpTask, Error> {
        let mut body = json!({ "to": to });
        if let Some(nexthop) = nexthop {
            body["nexthop"] = json!(nexthop);
        }
        self.typed(
            "POST",
            &format!("/ip/{}/move", escape(ip)),
            &[],
            Some(&body),
        )
        .await
    }

    pub async fn ip_task(&self, ip: &str, id: i64) -> Result<IpTask, Error> {
        self.typed("GET", &TaskRef::Ip { ip: ip.into(), id }.path(), &[], None)
            .await
    }

    // ----- Private Cloud -----

    pub async fn pccs(&self) -> Result<Vec<String>, Error> {
        self.read("/dedicatedCloud").await
    }

    pub async fn pcc(&self, pcc: &str) -> Result<Pcc, Error> {
        self.read(format!("/dedicatedCloud/{}", escape(pcc))).await
    }

    pub async fn datacenters(&self, pcc: &str) -> Result<Vec<i64>, Error> {
        self.read(format!("/dedicatedCloud/{}/datacenter", escape(pcc)))
            .await
    }

    pub async fn datacenter(&self, pcc: &str, dc: i64) -> Result<Datacenter, Error> {
        self.read(format!("/dedicatedCloud/{}/datacenter/{dc}", escape(pcc)))
            .await
    }

    pub async fn filers(&self, pcc: &str, dc: i64) -> Result<Vec<i64>, Error> {
        self.read(format!(
            "/dedicatedCloud/{}/datacenter/{dc}/filer",
            escape(pcc)
        ))
        .await
    }

    pub async fn filer(&self, pcc: &str, dc: i64, filer: i64) -> Result<Filer, Error> {
        self.read(format!(
            "/dedicatedCloud/{}/datacenter/{dc}/filer/{filer}",
            escape(pcc)
        ))
        .await
    }

    /// `linkFilerFromSbg` on the destination PCC and datacenter (March 2021 procedure).
    pub async fn link_filer_from_sbg(
        &self,
        pcc: &str,
        dc: i64,
        filer: i64,
    ) -> Result<PccTask, Error> {
        let path = format!(
            "/dedicatedCloud/{}/datacenter/{dc}/linkFilerFromSbg",
            escape(pcc)
        );
        self.typed("POST", &path, &[], Some(&json!({ "filerId": filer })))
            .await
    }

    /// `copyFiler`, the successor of `linkFilerFromSbg` (April 2021).
    pub async fn copy_filer(
        &self,
        pcc: &str,
        dc: i64,
        filer: i64,
        accept: bool,
    ) -> Result<PccTask, Error> {
        let path = format!("/dedicatedCloud/{}/datacenter/{dc}/copyFiler", escape(pcc));
        self.typed(
            "POST",
            &path,
            &[],
            Some(&json!({ "filerId": filer, "accept": accept })),
        )
        .await
    }

    pub async fn copy_filer_status(
        &self,
        pcc: &str,
        dc: i64,
    ) -> Result<Vec<FilerMigration>, Error> {
        self.read(format!(
            "/dedicatedCloud/{}/datacenter/{dc}/copyFilerStatus",
            escape(pcc)
        ))
        .await
    }

    pub async fn pcc_task(&self, pcc: &str, id: i64) -> Result<PccTask, Error> {
        self.typed(
            "GET",
            &TaskRef::Pcc {
                pcc: pcc.into(),
                id,
            }
            .path(),
            &[],
            None,
        )
        .await
    }

    pub async fn pcc_tasks(&self, pcc: &str) -> Result<Vec<i64>, Error> {
        self.read(format!("/dedicatedCloud/{}/task", escape(pcc)))
            .await
    }

    pub async fn hds(&self, pcc: &str) -> Result<OptionStatus, Error> {
        self.read(format!("/dedicatedCloud/{}/hds", escape(pcc)))
            .await
    }

    pub async fn pcidss(&self, pcc: &str) -> Result<OptionStatus, Error> {
        self.read(format!("/dedicatedCloud/{}/pcidss", escape(pcc)))
            .await
    }

    // ----- tasks -----

    /// Polls a task until it succeeds, fails, or `opts.timeout` passes. 404 and 500 answers
    /// are retried for `task_poll_grace` (OVH answers those for tasks that exist).
    /// Polls `task` until it ends; `on_poll` hears each answer of a task still running (its
    /// state and, when OVH gives one, its `progress` in percent), for progress lines.
    pub async fn wait_task(
        &self,
        task: &TaskRef,
        opts: WaitOptions,
        on_poll: &(dyn Fn(&str, Option<u64>) + Send + Sync),
    ) -> Result<Value, Error> {
        let started = Instant::now();
        let mut transient_since: Option<Instant> = None;
        loop {
            let polled = self.call_with_id("GET", &task.path(), &[], None).await;
            match polled {
                Ok((v, query_id)) => {
                    transient_since = None;
                    let (progress, status) = match task {
                        TaskRef::Pcc { .. } => {
                            let s = PccTaskState::from(v["state"].as_str().unwrap_or("unknown"));
                            (s.progress(), s.to_string())
                        }
                        _ => {
                            let s = TaskStatus::from(v["status"].as_str().unwrap_or("unknown"));
                            (s.progress(), s.to_string())
                        }
                    };
                    match progress {
                        Progress::Done => return Ok(v),
                        Progress::Failed => {
                            return Err(Error::TaskFailed {
                                task: task.path(),
                                status,
                                comment: v["comment"]
                                    .as_str()
                                    .or(v["description"].as_str())
                                    .map(str::to_string),
                                query_id,
                            })
                        }
                        Progress::Running if started.elapsed() >= opts.timeout => {
                            return Err(Error::TaskTimeout {
                                task: task.path(),
                                status,
                                waited: started.elapsed(),
                            })
                        }
                        Progress::Running => on_poll(&status, v["progress"].as_u64()),
                    }
                }
                Err(e) if matches!(e.status(), Some(404 | 500)) => {
                    let since = *transient_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.opts.task_poll_grace {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(opts.poll).await;
        }
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A request that got no (complete) answer; `sent` when it may have reached OVH.
fn transport_error(method: &str, path: &str, e: &reqwest::Error, sent: bool) -> Error {
    Error::Transport {
        method: method.into(),
        path: path.into(),
        detail: transport_detail(e),
        sent,
    }
}

fn transport_detail(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn decode(
    method: &str,
    path: &str,
    response: reqwest::Response,
) -> Result<(Value, Option<String>), Error> {
    let status = response.status();
    let query_id = response
        .headers()
        .get("x-ovh-queryid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response
        .text()
        .await
        .map_err(|e| transport_error(method, path, &e, true))?;
    if status.is_success() {
        if text.trim().is_empty() {
            return Ok((Value::Null, query_id));
        }
        return match serde_json::from_str(&text) {
            Ok(v) => Ok((v, query_id)),
            Err(e) => Err(Error::Decode {
                method: method.into(),
                path: path.into(),
                detail: e.to_string(),
                query_id,
            }),
        };
    }
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let message = field("message").unwrap_or_else(|| {
        // Not JSON (an HTML error page): keep the start of it.
        let t: String = text.chars().take(300).collect();
        if t.trim().is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            t
        }
    });
    Err(Error::Api {
        method: method.into(),
        path: path.into(),
        status: status.as_u16(),
        message,
        error_code: field("errorCode"),
        http_code: field("httpCode"),
        class: field("class"),
        query_id,
        retry_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_escaped() {
        assert_eq!(escape("1.2.3.4/32"), "1.2.3.4%2F32");
        assert_eq!(escape("ns1.ip-1-2-3.eu"), "ns1.ip-1-2-3.eu");
        assert_eq!(escape("2001:db8::/64"), "2001:db8::%2F64");
        assert_eq!(escape("a b&c"), "a%20b%26c");
    }

    #[test]
    fn errors_quote_the_query_id() {
        let e = Error::Api {
            method: "POST".into(),
            path: "/dedicated/server/ns1/ipMove".into(),
            status: 400,
            message: "Invalid signature".into(),
            error_code: Some("INVALID_SIGNATURE".into()),
            http_code: Some("400 Bad Request".into()),
            class: None,
            query_id: Some("EU.ext-1.abc".into()),
            retry_after: None,
        };
        assert_eq!(e.to_string(), "POST /dedicated/server/ns1/ipMove: 400: Invalid signature [INVALID_SIGNATURE] (OVH query id EU.ext-1.abc)");
        assert_eq!(e.to_value()["query_id"], "EU.ext-1.abc");
    }
}
