//! The war room's reading requests: the runs, one run with its steps, lanes, gates and log (as
//! the page shows them), the same again at each change (server-sent events), reports and
//! exports. Every answer is built from what the control requests `Runs` and `Run` return.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::api::{ask, person, run_id, unexpected, ApiError, ApiErrorBody, ApiResult};
use super::auth::Role;
use super::{Front, Peer};
use crate::control::{Request, Response};
use crate::engine::{open_gates, summarize, LiveInfo};
use crate::journal::{Entry, EventRecord, LeaseInfo, Mode, RunId, RunRecord, RunState, RunView};
use crate::report::{event_lines, EventLine};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_runs, get_run, run_live, runs_live, report, export, link),
    components(schemas(RunRow, RunPage, StepRow, GateRow, EventLine, LinkPage, ToDecide))
)]
pub struct ViewsDoc;

/// How often a live view looks at the store for news.
const LIVE_POLL: Duration = Duration::from_millis(400);

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
pub(super) async fn list_runs(
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

/// A step the run cannot go past without a person: in doubt (it may have acted and nothing
/// can ask), or the step whose failure ended the run.
#[derive(Serialize, ToSchema, PartialEq)]
pub struct ToDecide {
    /// Its position (what the decide request names).
    pub key: String,
    pub name: String,
    pub why: String,
    /// The decisions that make sense here: done, not_done, retry.
    pub choices: Vec<String>,
}

fn to_decide(run: &RunRecord, view: &RunView, events: &[EventRecord]) -> Option<ToDecide> {
    let choices = |c: &[&str]| c.iter().map(|s| s.to_string()).collect();
    let stopped_at = events
        .iter()
        .rev()
        .find(|e| {
            matches!(
                e.event,
                crate::journal::Event::RunPaused { .. } | crate::journal::Event::RunFailed { .. }
            )
        })
        .map_or(0, |e| e.at);
    let decided = |key: &str| {
        view.decisions
            .iter()
            .rev()
            .find(|d| d.key == key && d.at >= stopped_at)
            .map(|d| {
                format!(
                    "decided: {} by {}: {}. The run goes on when it is resumed: `lifeboat resume {}`",
                    d.decision, d.by, d.reason, run.id
                )
            })
    };
    let mut found = match &run.state {
        RunState::Paused {
            reason: crate::journal::PauseReason::StepInDoubt { key, name, why },
        } => Some(ToDecide {
            key: key.clone(),
            name: name.clone(),
            why: why.clone(),
            choices: choices(&["done", "not_done", "retry"]),
        }),
        RunState::Failed {
            step: Some(key), ..
        } => match view.entries.get(key) {
            // Once decided, the step's state is the decision's: `decided` below says it.
            Some(Entry::Step { name, state, .. }) => Some(ToDecide {
                key: key.clone(),
                name: name.clone(),
                why: match state {
                    crate::journal::StepState::Failed { error, .. } => error.clone(),
                    _ => String::new(),
                },
                choices: choices(&["retry"]),
            }),
            _ => None,
        },
        _ => None,
    }?;
    // Decided already: nothing more to choose until the run goes on.
    if let Some(why) = decided(&found.key) {
        found.why = why;
        found.choices.clear();
    }
    Some(found)
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
    /// The step a person must decide before the run can go on, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decide: Option<ToDecide>,
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
        decide: to_decide(run, &view, events),
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
pub(super) async fn get_run(
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
pub(super) async fn run_live(
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
pub(super) async fn runs_live(
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
pub(super) async fn report(
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
pub(super) async fn export(
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

#[derive(Deserialize, utoipa::IntoParams)]
pub struct LinkQuery {
    /// The ticket of an emailed approval link (what follows `#/link/`).
    pub t: String,
}

/// What an emailed approval link opens: its gate, for its recipient.
#[derive(Serialize, ToSchema, PartialEq)]
pub struct LinkPage {
    pub run: RunRow,
    pub gate: GateRow,
    /// The address the link was sent to: who the journal will say acted.
    pub to: String,
    /// Epoch ms.
    pub expires_at: u64,
    /// Its recipient already used it (approved the gate or aborted the run).
    pub spent: bool,
}

/// The ticket of an emailed link, if it holds (a refused one counts as a failed sign-in).
pub(super) fn read_ticket(
    front: &Front,
    peer: std::net::IpAddr,
    signed: &str,
) -> ApiResult<super::link::Ticket> {
    front.auth.check_pace(peer)?;
    super::link::read(&front.auth.signer, signed, front.now_ms() / 1000)
        .inspect_err(|_| {
            front.auth.failed(peer);
            front.metrics.failed_login();
        })
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
}

/// The gate an emailed approval link opens. The ticket is the credential: no sign-in.
#[utoipa::path(get, path = "/api/link", params(LinkQuery),
    responses((status = 200, body = LinkPage), (status = 401, body = ApiErrorBody)))]
pub(super) async fn link(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Query(q): Query<LinkQuery>,
) -> ApiResult<Json<LinkPage>> {
    let ticket = read_ticket(&front, peer.ip(), &q.t)?;
    let Response::Run {
        run,
        events,
        live,
        lease,
    } = ask(
        &front,
        Request::Run {
            id: run_id(&ticket.run)?,
        },
    )
    .await?
    else {
        return Err(ApiError::internal("unexpected answer from the store"));
    };
    let page = page(&run, &events, live.as_ref(), lease.as_ref(), front.now_ms())?;
    let spent = ticket.spent(&events);
    let gate = page
        .gates
        .into_iter()
        .rev()
        .find(|g| g.gate == ticket.gate)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("run {} has no gate {:?}", ticket.run, ticket.gate),
            )
        })?;
    Ok(Json(LinkPage {
        run: page.run,
        gate,
        to: ticket.to.clone(),
        expires_at: ticket.exp * 1000,
        spent,
    }))
}
