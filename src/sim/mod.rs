//! `lifeboat sim`: a local twin of the OVH API calls recoveries make.
//!
//! It verifies signatures and timestamps like OVH, enforces the access rules of the consumer
//! key and the rules of OVH's guides (zones, whole blocks, virtual MACs, `sbg1a`,
//! certifications), runs tasks through their states over (scalable) time, records every request,
//! and can be told to misbehave. OVH's paths live under `/1.0`; the simulator's own admin
//! endpoints live under `/_sim` and need the admin token, never OVH credentials.
//!
//! [`serve`] takes its listener and shutdown signal from the caller, so tests run many
//! simulators on port 0 in parallel.

pub mod faults;
mod routes;
pub mod world;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::{json, Value};

use crate::ovh::signature;
use faults::{Fault, FaultKind};
use routes::handle;
use world::{Fixture, Refusal, TaskKind, World};

/// The built-in demo account (the SBG incident, in miniature).
pub const DEMO_FIXTURE: &str = include_str!("demo-fixture.json");

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Time runs this many times faster for tasks (a "six hour" copy takes 6h / speed).
    pub speed: f64,
    /// Token for `/_sim` (header `X-Sim-Admin`).
    pub admin_token: String,
    /// Also append every request to this JSONL file.
    pub request_log: Option<PathBuf>,
    /// Accepted distance between a request's timestamp and the simulator's clock.
    pub timestamp_window: Duration,
    /// Served over HTTPS: signatures are checked against `https://` URLs, as at OVH.
    pub https: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            speed: 1.0,
            admin_token: random_token(),
            request_log: None,
            timestamp_window: Duration::from_secs(300),
            https: false,
        }
    }
}

fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("fixture {path}: {message}")]
    Fixture { path: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running simulator's state.
pub struct Sim {
    world: Mutex<World>,
    started: Instant,
    /// Unix time (seconds) when the simulator started: task dates count from it.
    epoch: f64,
    opts: Options,
    faults: Mutex<Vec<(Fault, u32)>>,
    log: Mutex<Vec<Value>>,
    log_file: Option<Mutex<std::fs::File>>,
    queries: AtomicU64,
    /// Bearer tokens issued by the OAuth2 token endpoint.
    tokens: Mutex<Vec<String>>,
}

impl Sim {
    pub fn new(fixture: Fixture, opts: Options) -> Result<Arc<Sim>, Error> {
        let log_file = match &opts.request_log {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
            None => None,
        };
        let faults = fixture.faults.iter().cloned().map(|f| (f, 0)).collect();
        Ok(Arc::new(Sim {
            world: Mutex::new(World::new(fixture)),
            started: Instant::now(),
            epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            opts,
            faults: Mutex::new(faults),
            log: Mutex::new(Vec::new()),
            log_file,
            queries: AtomicU64::new(0),
            tokens: Mutex::new(Vec::new()),
        }))
    }

    /// Reads a fixture file (JSON).
    pub fn load_fixture(path: &str) -> Result<Fixture, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Fixture {
            path: path.into(),
            message: e.to_string(),
        })?;
        parse_fixture(path, &text)
    }

    pub fn demo_fixture() -> Fixture {
        parse_fixture("demo", DEMO_FIXTURE).expect("the built-in fixture parses")
    }

    pub fn admin_token(&self) -> &str {
        &self.opts.admin_token
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        w.advance(self.now());
        w
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The emails OVH would have sent so far.
    pub fn emails(&self) -> Vec<Value> {
        self.world().emails.clone()
    }

    /// Every task so far: its kind (`ip_move` or `filer_copy`), when it started and when it
    /// ends (seconds since the simulator started).
    pub fn task_spans(&self) -> Vec<(String, f64, f64)> {
        self.world()
            .tasks
            .iter()
            .map(|t| {
                let kind = match t.kind {
                    TaskKind::IpMove { .. } => "ip_move",
                    TaskKind::FilerCopy { .. } => "filer_copy",
                };
                (kind.to_string(), t.created, t.created + t.duration)
            })
            .collect()
    }

    /// Delivers the confirmation emails not yet delivered, over SMTP, if the fixture names a
    /// server. A delivery that fails is tried again on the next tick.
    async fn deliver_emails(&self) {
        let (target, pending) = {
            let w = self.world();
            let Some(target) = w.fixture.smtp.clone() else {
                return;
            };
            let pending: Vec<(usize, Value)> = w
                .emails
                .iter()
                .enumerate()
                .filter(|(_, e)| e["delivered"] == false)
                .map(|(i, e)| (i, e.clone()))
                .collect();
            (target, pending)
        };
        for (i, email) in pending {
            let smtp = crate::mail::SmtpConfig {
                host: target.host.clone(),
                port: target.port,
                tls: crate::mail::Tls::None,
                user: None,
                password: None,
                from: "OVHcloud <noreply@ovhcloud.example>".to_string(),
                ca: Vec::new(),
            };
            let msg = crate::mail::notify::Outgoing {
                to: vec![email["to"].as_str().unwrap_or_default().to_string()],
                subject: email["subject"].as_str().unwrap_or_default().to_string(),
                body: email["body"].as_str().unwrap_or_default().to_string(),
                message_id: None,
            };
            if crate::mail::notify::send(&smtp, &msg).await.is_ok() {
                self.world.lock().unwrap_or_else(|p| p.into_inner()).emails[i]["delivered"] =
                    json!(true);
            }
        }
    }

    /// Removes every fault: the API answers normally again.
    pub fn clear_faults(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn add_fault(&self, fault: Fault) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((fault, 0));
    }

    /// The account as it is now, as a complete fixture (for `--save`): a later simulator
    /// started from it continues from this state.
    pub fn snapshot(&self) -> Fixture {
        let mut fixture = self.world().fixture.clone();
        fixture.faults = self
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(f, _)| f.clone())
            .collect();
        fixture
    }

    /// The account's current state as a fixture (credentials left out).
    pub fn state(&self) -> Value {
        let w = self.world();
        let mut v = serde_json::to_value(&w.fixture).unwrap_or(Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.remove("account");
            obj.remove("faults");
        }
        v
    }

    fn record(&self, mut entry: Value) {
        // When the request arrived (wall clock, ms): the request log shows the pace of clients.
        if let Some(obj) = entry.as_object_mut() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            obj.insert("at_ms".into(), now.into());
        }
        if let Some(file) = &self.log_file {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(f, "{entry}");
        }
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
    }

    /// The faults a request meets: every matching latency, and the first matching answer
    /// (status, 429, drop), each counted against its `times`.
    fn take_fault(&self, method: &str, path: &str) -> Vec<FaultKind> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        let mut answered = false;
        for (fault, used) in faults.iter_mut() {
            if !fault.matches(method, path) || fault.times.is_some_and(|t| *used >= t) {
                continue;
            }
            // Latency and task errors combine with anything; only one fault answers.
            let is_latency = matches!(fault.kind, FaultKind::Latency { .. } | FaultKind::TaskError);
            if !is_latency && answered {
                continue;
            }
            answered |= !is_latency;
            *used += 1;
            out.push(fault.kind.clone());
        }
        out
    }
}

fn parse_fixture(path: &str, text: &str) -> Result<Fixture, Error> {
    serde_json::from_str(text).map_err(|e| Error::Fixture {
        path: path.into(),
        message: e.to_string(),
    })
}

/// The simulator's routes: OVH's under `/1.0`, admin under `/_sim`.
pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/1.0/{*rest}", any(ovh))
        .route("/auth/oauth2/token", axum::routing::post(oauth2_token))
        .route("/_sim/{*rest}", any(admin))
        .with_state(sim)
}

/// `https://host:port/path` without `:port`, if it has one.
fn without_port(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once(':').map(|(h, _)| h)?;
    Some(format!("https://{host}{path}"))
}

/// Serves until `shutdown` completes, on any listener: plain TCP, or [`crate::tls::TlsListener`].
/// Tasks also end (and send their emails) when nobody polls.
pub async fn serve<L>(
    listener: L,
    sim: Arc<Sim>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let ticker = {
        let sim = sim.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                sim.deliver_emails().await;
            }
        })
    };
    let result = axum::serve(listener, router(sim))
        .with_graceful_shutdown(shutdown)
        .await;
    ticker.abort();
    result
}

fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

fn error_response(
    status: u16,
    message: &str,
    error_code: Option<&str>,
    query_id: &str,
) -> Response {
    let class = match status {
        400 => "Client::BadRequest",
        401 => "Client::Unauthorized",
        403 => "Client::Forbidden",
        404 => "Client::NotFound",
        409 => "Client::Conflict",
        429 => "Client::TooManyRequests",
        _ => "Server::InternalServerError",
    };
    let mut body = json!({ "message": message, "httpCode": format!("{status} {}", reason(status)), "class": class });
    if let Some(code) = error_code {
        body["errorCode"] = json!(code);
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            ("X-Ovh-QueryID", query_id.to_string()),
            (
                "Content-Type",
                "application/json; charset=utf-8".to_string(),
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

fn ok_response(body: Value, query_id: &str) -> Response {
    (
        StatusCode::OK,
        [
            ("X-Ovh-QueryID", query_id.to_string()),
            (
                "Content-Type",
                "application/json; charset=utf-8".to_string(),
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks a signed request like OVH: application key, consumer key, timestamp, signature, and
/// the consumer key's access rules.
pub(super) fn authenticate(
    sim: &Sim,
    method: &str,
    api_path: &str,
    url: &str,
    headers: &HeaderMap,
    body: &str,
) -> Result<(), Refusal> {
    let w = sim.world.lock().unwrap_or_else(|p| p.into_inner());
    let account = &w.fixture.account;
    let refuse = |status: u16, message: &str, code: &'static str| Refusal {
        status,
        message: message.into(),
        error_code: Some(code),
    };
    if let Some(token) = header(headers, "authorization").and_then(|a| a.strip_prefix("Bearer ")) {
        // OAuth2: a token from the token endpoint instead of a signature.
        let known = sim
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|t| t == token);
        return if known {
            Ok(())
        } else {
            Err(refuse(
                401,
                "The access token is invalid or expired",
                "INVALID_TOKEN",
            ))
        };
    }
    let ak = header(headers, "X-Ovh-Application")
        .ok_or_else(|| refuse(401, "You must login first", "NOT_AUTHENTICATED"))?;
    if ak != account.application_key {
        return Err(refuse(
            403,
            "This application key is invalid",
            "INVALID_KEY",
        ));
    }
    let ck = header(headers, "X-Ovh-Consumer")
        .ok_or_else(|| refuse(401, "You must login first", "NOT_AUTHENTICATED"))?;
    if ck != account.consumer_key {
        return Err(refuse(
            403,
            "This credential does not exist",
            "INVALID_CREDENTIAL",
        ));
    }
    let ts: i64 = header(headers, "X-Ovh-Timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| refuse(400, "Invalid timestamp", "INVALID_SIGNATURE"))?;
    let server_now = (sim.epoch + sim.now()) as i64;
    if (ts - server_now).unsigned_abs() > sim.opts.timestamp_window.as_secs() {
        return Err(refuse(400, "Query out of time", "QUERY_TIME_OUT"));
    }
    let signed_over = |url: &str| {
        signature::sign(
            &account.application_secret,
            &account.consumer_key,
            method,
            url,
            body,
            ts,
        )
    };
    let given = header(headers, "X-Ovh-Signature");
    // OVH listens on 443 only, so clients that sign "https://" + host + path without the
    // port (OVH's Node.js wrapper) agree with OVH; on the simulator's own port they sign a URL
    // without it. Over HTTPS, that URL is accepted too.
    let portless = sim.opts.https.then(|| without_port(url)).flatten();
    let matches = given == Some(signed_over(url).as_str())
        || portless.is_some_and(|u| given == Some(signed_over(&u).as_str()));
    if !matches {
        return Err(refuse(400, "Invalid signature", "INVALID_SIGNATURE"));
    }
    // A consumer key may always read itself (an assumption: OVH's docs do not say which
    // rules /auth/currentCredential needs).
    let reads_itself = method == "GET" && api_path == "/auth/currentCredential";
    if !reads_itself
        && !account
            .access_rules
            .iter()
            .any(|r| r.allows(method, api_path))
    {
        return Err(refuse(
            403,
            "This call has not been granted",
            "NOT_GRANTED_CALL",
        ));
    }
    Ok(())
}

async fn ovh(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query_id = format!(
        "SIM.ws-1.{:08x}.{}",
        sim.epoch as u64,
        sim.queries.fetch_add(1, Ordering::SeqCst) + 1
    );
    let method = method.as_str().to_string();
    let raw_path = uri.path().to_string();
    let api_path = raw_path
        .strip_prefix("/1.0")
        .unwrap_or(&raw_path)
        .to_string();
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let faults = sim.take_fault(&method, &api_path);

    let mut latency = Duration::ZERO;
    let mut forced: Option<Response> = None;
    for fault in &faults {
        match fault {
            FaultKind::Latency { ms } => latency += Duration::from_millis(*ms),
            FaultKind::Status { status, message } => {
                forced.get_or_insert_with(|| {
                    error_response(
                        *status,
                        message
                            .as_deref()
                            .unwrap_or("Internal server error (injected)"),
                        None,
                        &query_id,
                    )
                });
            }
            FaultKind::TooManyRequests { retry_after } => {
                let mut r = error_response(429, "Too many requests", None, &query_id);
                r.headers_mut().insert(
                    "Retry-After",
                    retry_after
                        .to_string()
                        .parse()
                        .expect("digits are a valid header"),
                );
                forced.get_or_insert(r);
            }
            FaultKind::Drop | FaultKind::TaskError => {}
        }
    }
    let fail_task = faults.iter().any(|f| matches!(f, FaultKind::TaskError));
    // The URL as the client signed it: scheme, the Host it addressed, the path and query as sent.
    let host = header(&headers, "host").unwrap_or("localhost").to_string();
    let scheme = if sim.opts.https { "https" } else { "http" };
    let url = format!(
        "{scheme}://{host}{}",
        uri.path_and_query()
            .map_or(raw_path.as_str(), |p| p.as_str())
    );
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let dropped = faults.iter().any(|f| matches!(f, FaultKind::Drop));

    let response = if let Some(r) = forced {
        r
    } else if dropped {
        // Let the request take effect as if OVH had processed it, then lose the answer: the
        // client cannot know whether it happened.
        let _ = handle(
            &sim, &method, &api_path, &uri, &url, &headers, &body_text, fail_task,
        );
        sim.record(json!({ "method": method, "path": api_path, "query": uri.query(), "body": body_json(&body_text), "status": 0, "query_id": query_id, "dropped": true }));
        // Unwinding ends the connection's task without an answer (and without a panic message).
        std::panic::resume_unwind(Box::new("connection dropped by an injected fault"));
    } else {
        match handle(
            &sim, &method, &api_path, &uri, &url, &headers, &body_text, fail_task,
        ) {
            Ok(v) => ok_response(v, &query_id),
            Err(r) => error_response(r.status, &r.message, r.error_code, &query_id),
        }
    };
    sim.record(json!({
        "method": method, "path": api_path, "query": uri.query(), "body": body_json(&body_text),
        "status": response.status().as_u16(), "query_id": query_id,
    }));
    response
}

fn body_json(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
    }
}

/// The OAuth2 client-credentials token endpoint (`POST /auth/oauth2/token`, HTTP Basic).
async fn oauth2_token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = String::from_utf8_lossy(&body);
    let grant_ok = form
        .split('&')
        .any(|kv| kv == "grant_type=client_credentials");
    let client = sim
        .world
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .fixture
        .account
        .oauth2
        .clone();
    let given = header(&headers, "authorization")
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(decode_basic);
    let valid = matches!((&client, &given), (Some(c), Some((id, secret))) if *id == c.client_id && *secret == c.client_secret);
    sim.record(json!({ "method": "POST", "path": "/auth/oauth2/token", "query": null, "body": null, "status": if valid && grant_ok { 200 } else { 401 }, "query_id": null }));
    if !(valid && grant_ok) {
        return (
            StatusCode::UNAUTHORIZED,
            [("Content-Type", "application/json")],
            json!({ "error": "invalid_client" }).to_string(),
        )
            .into_response();
    }
    let token = format!("sim-token-{}", random_token());
    sim.tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(token.clone());
    let answer = json!({ "access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": "all" });
    (
        StatusCode::OK,
        [("Content-Type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}

/// `Basic base64(id:secret)` credentials.
fn decode_basic(b64: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn admin(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if header(&headers, "X-Sim-Admin") != Some(sim.opts.admin_token.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            "the /_sim endpoints need the simulator's admin token in X-Sim-Admin\n",
        )
            .into_response();
    }
    let path = uri.path().trim_start_matches("/_sim/");
    let json_ok = |v: Value| {
        (
            StatusCode::OK,
            [("Content-Type", "application/json")],
            v.to_string(),
        )
            .into_response()
    };
    match (method.as_str(), path) {
        ("GET", "requests") => json_ok(json!(sim.requests())),
        ("DELETE", "requests") => {
            sim.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
            json_ok(json!({ "cleared": true }))
        }
        ("GET", "emails") => json_ok(json!(sim.emails())),
        ("GET", "state") => json_ok(sim.state()),
        ("GET", "faults") => json_ok(json!(sim
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(f, used)| json!({ "fault": f, "used": used }))
            .collect::<Vec<_>>())),
        ("POST", "faults") => match serde_json::from_slice::<Fault>(&body) {
            Ok(fault) => {
                sim.add_fault(fault);
                json_ok(json!({ "added": true }))
            }
            Err(e) => (StatusCode::BAD_REQUEST, format!("bad fault: {e}\n")).into_response(),
        },
        ("DELETE", "faults") => {
            sim.clear_faults();
            json_ok(json!({ "cleared": true }))
        }
        _ => (
            StatusCode::NOT_FOUND,
            "unknown admin endpoint (requests, emails, state, faults)\n",
        )
            .into_response(),
    }
}
