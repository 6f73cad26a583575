//! The war room's HTTP JSON API: runs, one run with its steps, gates and log, reports and
//! exports; the actions (approve, abort, decide a step) as control requests; live updates as
//! server-sent events; and the OpenAPI description of all of it (`/openapi.json`), generated
//! from the handlers' annotations below.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::auth::{self, Person, Refusal, Role};
use super::{Front, Peer};
use crate::control::{self, Request, Response};
use crate::engine::{open_gates, summarize, LiveInfo};
use crate::journal::{
    Decision, Entry, EventRecord, LeaseInfo, Mode, RunId, RunRecord, RunState, RunView,
};
use crate::report::{event_lines, EventLine};

/// How often a live view looks at the store for news.
const LIVE_POLL: Duration = Duration::from_millis(400);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lifeboat war room",
        description = "Runs, gates and reports of a lifeboat journal store. Authenticate with `Authorization: Bearer TOKEN` (a `[[web.token]]` of the config file), or sign in at /api/login for a session cookie; requests that change something with a cookie also need the `X-Lifeboat-CSRF` header from /api/me."
    ),
    paths(
        login, logout, me, list_runs, get_run, run_live, runs_live, report, export, approve, abort,
        decide
    ),
    components(schemas(
        RunRow,
        RunPage,
        StepRow,
        GateRow,
        EventLine,
        Me,
        LoginBody,
        ReasonBody,
        DecideBody,
        Done,
        ApiErrorBody,
        Role
    ))
)]
pub struct ApiDoc;

pub fn routes() -> Router<Arc<Front>> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/runs", get(list_runs))
        .route("/api/live", get(runs_live))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/live", get(run_live))
        .route("/api/runs/{id}/report", get(report))
        .route("/api/runs/{id}/export", get(export))
        .route("/api/runs/{id}/gates/{gate}/approve", post(approve))
        .route("/api/runs/{id}/abort", post(abort))
        .route("/api/runs/{id}/steps/{step}/decide", post(decide))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

// ----- errors -----

/// What a refused or failed request answers.
#[derive(Serialize, ToSchema)]
pub struct ApiErrorBody {
    pub error: String,
}

pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::Unauthenticated(why) => ApiError::new(StatusCode::UNAUTHORIZED, why),
            Refusal::Slow(secs) => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "too many failed sign-ins from this address: try again in {secs} s"
                ),
                retry_after: Some(secs),
            },
        }
    }
}

impl From<control::Error> for ApiError {
    fn from(e: control::Error) -> ApiError {
        let status = match &e {
            control::Error::Journal(crate::journal::Error::UnknownRun { .. }) => {
                StatusCode::NOT_FOUND
            }
            control::Error::Refused { exit_code: 2, .. } => StatusCode::CONFLICT,
            control::Error::Journal(crate::journal::Error::Locked { .. })
            | control::Error::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        let mut response = (
            self.status,
            Json(ApiErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

// ----- who is asking -----

fn now_secs(front: &Front) -> u64 {
    front.now_ms() / 1000
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The person making the request, with at least `role`.
pub(crate) fn require(
    front: &Front,
    headers: &HeaderMap,
    peer: SocketAddr,
    role: Role,
) -> ApiResult<Person> {
    person(front, headers, peer, role)
}

fn person(front: &Front, headers: &HeaderMap, peer: SocketAddr, role: Role) -> ApiResult<Person> {
    let person = front.auth.identify(
        peer.ip(),
        header_str(headers, header::AUTHORIZATION),
        header_str(headers, header::COOKIE),
        now_secs(front),
    )?;
    if person.role < role {
        front.metrics.refused();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is a {}: this needs an {}",
                person.name,
                person.role.label(),
                role.label()
            ),
        ));
    }
    Ok(person)
}

/// The person making a state-changing request: an operator at least, and not a forged
/// cross-site request.
fn actor(front: &Front, headers: &HeaderMap, peer: SocketAddr, role: Role) -> ApiResult<Person> {
    let person = person(front, headers, peer, role)?;
    if !auth::csrf_ok(
        &person,
        header_str(headers, auth::CSRF_HEADER),
        header_str(headers, header::ORIGIN),
        header_str(headers, header::HOST),
    ) {
        front.metrics.refused();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "refused: this request did not come from the war room's own page (missing or wrong X-Lifeboat-CSRF, or another Origin)",
        ));
    }
    Ok(person)
}

/// Runs a blocking control request off the async threads.
async fn ask(front: &Arc<Front>, request: Request) -> ApiResult<Response> {
    let front = front.clone();
    tokio::task::spawn_blocking(move || front.call(request))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

fn unexpected(r: Response) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("unexpected answer from the store: {r:?}"),
    )
}

fn run_id(id: &str) -> ApiResult<RunId> {
    RunId::parse(id).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no run {id:?}")))
}

// ----- sign-in -----

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    /// A token of `[[web.token]]`.
    pub token: String,
}

/// Who is signed in, and the CSRF token their page sends with each action.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub name: String,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
}

fn session_cookie(front: &Front, value: &str, max_age: u64) -> HeaderValue {
    let secure = if front.tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
        auth::SESSION_COOKIE
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Trades a token for a session cookie.
#[utoipa::path(post, path = "/api/login", request_body = LoginBody,
    responses((status = 200, body = Me), (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody)))]
async fn login(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> ApiResult<HttpResponse> {
    // A login form posted from another site cannot sign a browser in either.
    if let (Some(origin), Some(host)) = (
        header_str(&headers, header::ORIGIN),
        header_str(&headers, header::HOST),
    ) {
        if origin.split_once("://").map(|(_, h)| h) != Some(host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "refused: sign in from the war room's own page",
            ));
        }
    }
    let person = front
        .auth
        .login(peer.ip(), &body.token)
        .inspect_err(|_| front.metrics.failed_login())?;
    let cookie = front
        .auth
        .session_for(&person, now_secs(&front))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let me = front
        .auth
        .session(&cookie, now_secs(&front))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the new session does not verify",
            )
        })?;
    let mut response = Json(Me {
        name: me.name,
        role: me.role,
        csrf: me.csrf,
    })
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&front, &cookie, auth::SESSION_LIFETIME.as_secs()),
    );
    Ok(response)
}

/// Ends the browser's session.
#[utoipa::path(post, path = "/api/logout", responses((status = 204)))]
async fn logout(State(front): State<Arc<Front>>) -> HttpResponse {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&front, "", 0));
    response
}

/// Who is signed in.
#[utoipa::path(get, path = "/api/me", responses((status = 200, body = Me), (status = 401, body = ApiErrorBody)))]
async fn me(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> ApiResult<Json<Me>> {
    let p = person(&front, &headers, peer, Role::Viewer)?;
    Ok(Json(Me {
        name: p.name,
        role: p.role,
        csrf: p.csrf,
    }))
}

// ----- reading runs -----

/// A run in the list.
#[derive(Serialize, ToSchema, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub runbook: String,
    pub path: String,
    /// queued, running, paused, succeeded, partial, failed or aborted.
    pub state: String,
    /// What the state says in words (why it paused, how it failed).
    pub detail: String,
    pub plan: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo_of: Option<String>,
    /// Epoch ms.
    pub created_at: u64,
    pub updated_at: u64,
    /// Time since it started; for a finished run, its whole duration.
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto_secs: Option<u64>,
    /// RTO minus elapsed: negative once the RTO is overrun.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto_left_ms: Option<i64>,
    /// Who drives it right now: a process of the host holding the store, or a lease holder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_gate: Option<String>,
}

fn state_detail(state: &RunState) -> String {
    match state {
        RunState::Queued => "waiting for a worker".into(),
        RunState::Running { pid } => format!("running (process {pid})"),
        RunState::Paused { reason } => crate::report::pause_text(reason),
        RunState::Succeeded { verdict, .. } => crate::report::succeeded_text(verdict),
        RunState::Failed { error, .. } => error.clone(),
        RunState::Aborted { by } => format!("aborted by {by}"),
    }
}

fn row(run: &RunRecord, live: Option<&LiveInfo>, lease: Option<&LeaseInfo>, now: u64) -> RunRow {
    let end = if run.state.is_final() || matches!(run.state, RunState::Failed { .. }) {
        run.updated_at
    } else {
        now.max(run.updated_at)
    };
    let elapsed_ms = end.saturating_sub(run.created_at);
    let driver = match (live, lease) {
        (Some(l), _) => Some(format!("process {} on the host holding the store", l.pid)),
        (None, Some(l)) if l.expires_in > 0.0 => Some(l.owner.clone()),
        (None, Some(l)) => Some(format!("nobody: the lease of {} expired", l.owner)),
        _ => None,
    };
    let waiting_gate = live
        .and_then(|l| l.waiting_gate.clone())
        .or(match &run.state {
            RunState::Paused {
                reason: crate::journal::PauseReason::Approval { gate },
            } => Some(gate.clone()),
            _ => None,
        });
    RunRow {
        id: run.id.to_string(),
        runbook: run.runbook.name.clone(),
        path: run.runbook.path.clone(),
        state: run.state.label().to_string(),
        detail: state_detail(&run.state),
        plan: run.mode == Mode::Plan,
        undo_of: run.undo_of.as_ref().map(ToString::to_string),
        created_at: run.created_at,
        updated_at: run.updated_at,
        elapsed_ms,
        rto_secs: run.runbook.rto_secs,
        rto_left_ms: run
            .runbook
            .rto_secs
            .map(|rto| rto as i64 * 1000 - elapsed_ms as i64),
        driver,
        waiting_gate,
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct RunFilter {
    /// Only runs in this state (queued, running, paused, succeeded, partial, failed, aborted).
    pub state: Option<String>,
    /// Only runs of this runbook (its declared name).
    pub runbook: Option<String>,
}

async fn rows(front: &Arc<Front>, filter: &RunFilter) -> ApiResult<Vec<RunRow>> {
    let Response::Runs { runs, live, leases } = ask(front, Request::Runs).await? else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected answer",
        ));
    };
    let now = front.now_ms();
    let mut rows: Vec<RunRow> = runs
        .iter()
        .filter(|r| filter.state.as_deref().is_none_or(|s| r.state.label() == s))
        .filter(|r| {
            filter
                .runbook
                .as_deref()
                .is_none_or(|n| r.runbook.name == n)
        })
        .map(|r| row(r, live.get(&r.id), leases.get(&r.id), now))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    Ok(rows)
}

/// The runs of the store, newest first.
#[utoipa::path(get, path = "/api/runs", params(RunFilter),
    responses((status = 200, body = [RunRow]), (status = 401, body = ApiErrorBody)))]
async fn list_runs(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Query(filter): Query<RunFilter>,
) -> ApiResult<Json<Vec<RunRow>>> {
    person(&front, &headers, peer, Role::Viewer)?;
    Ok(Json(rows(&front, &filter).await?))
}

/// A step, sleep or gate of a run, in the order the run reached them.
#[derive(Serialize, ToSchema, PartialEq)]
pub struct StepRow {
    /// Its position ("3", "4.2.1" in a parallel branch).
    pub key: String,
    /// The lane it ran in: its position without the last part ("" for the main lane).
    pub lane: String,
    /// step, sleep or gate.
    pub kind: String,
    pub name: String,
    /// running, retry-wait, succeeded, failed, in-doubt, waiting...
    pub state: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A gate the run reached.
#[derive(Serialize, ToSchema, PartialEq)]
pub struct GateRow {
    pub key: String,
    pub gate: String,
    pub message: String,
    /// How many different people must approve it.
    pub approvers: u32,
    /// Who approved it so far.
    pub approved_by: Vec<String>,
    /// Open gates wait for approval; closed ones were approved.
    pub waiting: bool,
    pub opened_at: u64,
}

/// One run: its row, parameters (secret-looking values masked), steps, gates and log.
#[derive(Serialize, ToSchema, PartialEq)]
pub struct RunPage {
    pub run: RunRow,
    #[schema(value_type = Object)]
    pub params: serde_json::Map<String, Value>,
    pub steps: Vec<StepRow>,
    pub gates: Vec<GateRow>,
    pub log: Vec<EventLine>,
    /// OVH tasks it waits for right now, in words.
    pub task_waits: Vec<String>,
    pub last_seq: u64,
}

fn page(
    run: &RunRecord,
    events: &[EventRecord],
    live: Option<&LiveInfo>,
    lease: Option<&LeaseInfo>,
    now: u64,
) -> ApiResult<RunPage> {
    let view = RunView::from_events(events)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let waiting = open_gates(&view);
    let steps = summarize(&view)
        .into_iter()
        .map(|s| StepRow {
            lane: s
                .key
                .rsplit_once('.')
                .map(|(l, _)| l.to_string())
                .unwrap_or_default(),
            key: s.key,
            kind: s.kind.to_string(),
            name: s.name,
            state: s.state,
            attempts: s.attempts,
            started_at: s.started_at,
            finished_at: s.finished_at,
            duration_ms: s.duration_ms,
            error: s.error,
        })
        .collect();
    let gates = view
        .order
        .iter()
        .filter_map(|k| match view.entries.get(k) {
            Some(Entry::Gate {
                gate,
                message,
                opened_at,
                approvers,
            }) => Some(GateRow {
                key: k.clone(),
                gate: gate.clone(),
                message: message.clone(),
                approvers: *approvers,
                approved_by: view.gates.votes(gate).to_vec(),
                waiting: waiting.contains(gate) && !run.state.is_final(),
                opened_at: *opened_at,
            }),
            _ => None,
        })
        .collect();
    let params = run
        .params
        .iter()
        .map(|(k, v)| {
            let v = if crate::report::secret_name(k) {
                Value::String("••••••".into())
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    Ok(RunPage {
        run: row(run, live, lease, now),
        params,
        steps,
        gates,
        log: event_lines(events),
        task_waits: live.map(|l| l.task_waits.clone()).unwrap_or_default(),
        last_seq: view.last_seq,
    })
}

async fn run_page(front: &Arc<Front>, id: RunId) -> ApiResult<RunPage> {
    match ask(front, Request::Run { id }).await? {
        Response::Run {
            run,
            events,
            live,
            lease,
        } => page(&run, &events, live.as_ref(), lease.as_ref(), front.now_ms()),
        other => Err(unexpected(other)),
    }
}

/// One run with its steps, gates and log.
#[utoipa::path(get, path = "/api/runs/{id}", params(("id" = String, Path, description = "run id")),
    responses((status = 200, body = RunPage), (status = 404, body = ApiErrorBody)))]
async fn get_run(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<RunPage>> {
    person(&front, &headers, peer, Role::Viewer)?;
    Ok(Json(run_page(&front, run_id(&id)?).await?))
}

/// A stream of server-sent events that sends `fetch()` at once and again whenever its answer
/// changes (looked at every [`LIVE_POLL`]); an error ends the stream with an `error` event.
fn live_stream<T, F, Fut>(
    event: &'static str,
    fetch: F,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>>
where
    T: Serialize + PartialEq + Send + 'static,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ApiResult<T>> + Send,
{
    let stream = futures_util::stream::unfold(
        (fetch, None::<T>, true, false),
        move |(fetch, last, first, ended)| async move {
            if ended {
                return None;
            }
            let mut first = first;
            loop {
                if !first {
                    tokio::time::sleep(LIVE_POLL).await;
                }
                first = false;
                match fetch().await {
                    Ok(now) if last.as_ref() == Some(&now) => continue,
                    Ok(now) => {
                        let data = serde_json::to_string(&now).unwrap_or_default();
                        let e = SseEvent::default().event(event).data(data);
                        return Some((Ok(e), (fetch, Some(now), false, false)));
                    }
                    Err(e) => {
                        let e = SseEvent::default().event("error").data(e.message);
                        return Some((Ok(e), (fetch, last, false, true)));
                    }
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The run, again each time it changes (server-sent events named `run`, data a [`RunPage`]).
#[utoipa::path(get, path = "/api/runs/{id}/live", params(("id" = String, Path, description = "run id")),
    responses((status = 200, content_type = "text/event-stream", description = "`run` events, each a RunPage")))]
async fn run_live(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    person(&front, &headers, peer, Role::Viewer)?;
    let id = run_id(&id)?;
    Ok(live_stream("run", move || {
        let (front, id) = (front.clone(), id.clone());
        async move { run_page(&front, id).await }
    }))
}

/// The list of runs, again each time it changes (events named `runs`, data a list of RunRow).
#[utoipa::path(get, path = "/api/live",
    responses((status = 200, content_type = "text/event-stream", description = "`runs` events, each a list of RunRow")))]
async fn runs_live(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    person(&front, &headers, peer, Role::Viewer)?;
    Ok(live_stream("runs", move || {
        let front = front.clone();
        async move {
            let filter = RunFilter {
                state: None,
                runbook: None,
            };
            rows(&front, &filter).await
        }
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ReportFormat {
    /// md, json or html.
    pub format: Option<String>,
}

/// The run's report, as `lifeboat report` writes it (md, json or html), as a download.
#[utoipa::path(get, path = "/api/runs/{id}/report", params(("id" = String, Path, description = "run id"), ReportFormat),
    responses((status = 200, description = "the report"), (status = 404, body = ApiErrorBody)))]
async fn report(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ReportFormat>,
) -> ApiResult<HttpResponse> {
    person(&front, &headers, peer, Role::Viewer)?;
    let id = run_id(&id)?;
    let Response::Run { run, events, .. } = ask(&front, Request::Run { id: id.clone() }).await?
    else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected answer",
        ));
    };
    let Response::Runs { runs, .. } = ask(&front, Request::Runs).await? else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected answer",
        ));
    };
    let mut report = crate::report::build(&run, &events)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    report.undone_by = runs
        .iter()
        .filter(|r| r.undo_of.as_ref() == Some(&id) && r.mode != Mode::Plan)
        .map(|r| r.id.to_string())
        .collect();
    let (body, kind, ext) = match q.format.as_deref().unwrap_or("md") {
        "md" => (
            crate::report::markdown(&report),
            "text/markdown; charset=utf-8",
            "md",
        ),
        "html" => (
            crate::report::html(&report),
            "text/html; charset=utf-8",
            "html",
        ),
        "json" => (
            serde_json::to_string_pretty(&report).unwrap_or_default(),
            "application/json",
            "json",
        ),
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("format: md, json or html, not {other:?}"),
            ))
        }
    };
    Ok(download(body, kind, &format!("lifeboat-report-{id}.{ext}")))
}

fn download(body: String, kind: &'static str, file: &str) -> HttpResponse {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// The run's whole journal, as `lifeboat export` writes it (admins only).
#[utoipa::path(get, path = "/api/runs/{id}/export", params(("id" = String, Path, description = "run id")),
    responses((status = 200, description = "the export, JSON"), (status = 403, body = ApiErrorBody)))]
async fn export(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<HttpResponse> {
    person(&front, &headers, peer, Role::Admin)?;
    let id = run_id(&id)?;
    match ask(&front, Request::Export { id: id.clone() }).await? {
        Response::Export { export } => Ok(download(
            serde_json::to_string_pretty(&export).unwrap_or_default(),
            "application/json",
            &format!("lifeboat-run-{id}.json"),
        )),
        other => Err(unexpected(other)),
    }
}

// ----- actions -----

#[derive(Deserialize, ToSchema)]
pub struct ReasonBody {
    /// Why: journaled with the person's name.
    pub reason: String,
}

/// What an action did, in words.
#[derive(Serialize, ToSchema)]
pub struct Done {
    pub message: String,
}

fn reason_of(reason: &str) -> ApiResult<String> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "reason: say why (it is journaled with your name)",
        ));
    }
    Ok(reason.chars().take(500).collect())
}

async fn act(front: &Arc<Front>, request: Request) -> ApiResult<Json<Done>> {
    match ask(front, request).await? {
        Response::Done { message } => Ok(Json(Done { message })),
        other => Err(unexpected(other)),
    }
}

/// Approves a gate as the signed-in person (operators and admins).
#[utoipa::path(post, path = "/api/runs/{id}/gates/{gate}/approve", request_body = ReasonBody,
    params(("id" = String, Path, description = "run id"), ("gate" = String, Path, description = "gate name")),
    responses((status = 200, body = Done), (status = 403, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
async fn approve(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path((id, gate)): Path<(String, String)>,
    Json(body): Json<ReasonBody>,
) -> ApiResult<Json<Done>> {
    let p = actor(&front, &headers, peer, Role::Operator)?;
    let request = Request::Approve {
        id: run_id(&id)?,
        gate,
        by: p.name,
        reason: Some(reason_of(&body.reason)?),
    };
    act(&front, request).await
}

/// Stops a run for good (operators and admins); its journal stays.
#[utoipa::path(post, path = "/api/runs/{id}/abort", request_body = ReasonBody,
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, body = Done), (status = 403, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
async fn abort(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<ReasonBody>,
) -> ApiResult<Json<Done>> {
    let p = actor(&front, &headers, peer, Role::Operator)?;
    let request = Request::Abort {
        id: run_id(&id)?,
        by: p.name,
        reason: Some(reason_of(&body.reason)?),
    };
    act(&front, request).await
}

#[derive(Deserialize, ToSchema)]
pub struct DecideBody {
    /// retry, skip (with `result`), done (it took effect; `result` optional) or not_done.
    pub decision: String,
    /// The step's result as the runbook will see it (skip, done).
    #[schema(value_type = Object)]
    pub result: Option<Value>,
    pub reason: String,
}

/// Decides a step of a stopped run, as `lifeboat retry/skip/resolve --no-resume` would; the
/// run goes on when it is resumed.
#[utoipa::path(post, path = "/api/runs/{id}/steps/{step}/decide", request_body = DecideBody,
    params(("id" = String, Path, description = "run id"), ("step" = String, Path, description = "step name or position")),
    responses((status = 200, body = Done), (status = 403, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
async fn decide(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path((id, step)): Path<(String, String)>,
    Json(body): Json<DecideBody>,
) -> ApiResult<Json<Done>> {
    let p = actor(&front, &headers, peer, Role::Operator)?;
    let result = body.result.unwrap_or(Value::Null);
    let decision = match body.decision.as_str() {
        "retry" => Decision::Retry,
        "skip" => Decision::Skip { result },
        "done" => Decision::Done { result },
        "not_done" => Decision::NotDone,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("decision: retry, skip, done or not_done, not {other:?}"),
            ))
        }
    };
    let request = Request::Decide {
        id: run_id(&id)?,
        step,
        decision,
        by: p.name,
        reason: reason_of(&body.reason)?,
    };
    act(&front, request).await
}
