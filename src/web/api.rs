//! The war room's HTTP JSON API: its routes, who is asking, sign-in, the actions (approve,
//! abort, decide a step, each a control request), and the OpenAPI description of all of it
//! (`/openapi.json`), generated from the handlers' annotations here and in [`super::views`],
//! which answers the reading requests (runs, a run, live views, reports, exports).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::auth::{self, Person, Refusal, Role};
use super::{views, Front, Peer};
use crate::control::{self, Request, Response};
use crate::journal::{Decision, RunId};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lifeboat war room",
        description = "Runs, gates and reports of a lifeboat journal store. Authenticate with `Authorization: Bearer TOKEN` (a `[[web.token]]` of the config file), or sign in at /api/login for a session cookie; requests that change something with a cookie also need the `X-Lifeboat-CSRF` header from /api/me."
    ),
    paths(login, logout, me, approve, abort, decide, link_approve, link_abort),
    components(schemas(
        Me,
        LoginBody,
        ReasonBody,
        DecideBody,
        LinkBody,
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
        .route("/api/runs", get(views::list_runs))
        .route("/api/live", get(views::runs_live))
        .route("/api/runs/{id}", get(views::get_run))
        .route("/api/runs/{id}/live", get(views::run_live))
        .route("/api/runs/{id}/report", get(views::report))
        .route("/api/runs/{id}/export", get(views::export))
        .route("/api/runs/{id}/gates/{gate}/approve", post(approve))
        .route("/api/runs/{id}/abort", post(abort))
        .route("/api/runs/{id}/steps/{step}/decide", post(decide))
        .route("/api/link", get(views::link))
        .route("/api/link/approve", post(link_approve))
        .route("/api/link/abort", post(link_abort))
}

/// The whole API's description: these requests and the reading ones of [`views`].
pub fn description() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(views::ViewsDoc::openapi());
    doc
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(description())
}

// ----- errors -----

/// What a refused or failed request answers.
#[derive(Serialize, ToSchema)]
pub struct ApiErrorBody {
    pub error: String,
}

pub struct ApiError {
    status: StatusCode,
    pub(super) message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
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

pub(super) type ApiResult<T> = Result<T, ApiError>;

// ----- who is asking -----

fn now_secs(front: &Front) -> u64 {
    front.now_ms() / 1000
}

pub(super) fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn from_own_page(headers: &HeaderMap) -> bool {
    auth::same_origin(
        header_str(headers, header::ORIGIN),
        header_str(headers, header::HOST),
    )
}

/// The person making the request, with at least `role`.
pub(super) fn person(
    front: &Front,
    headers: &HeaderMap,
    peer: SocketAddr,
    role: Role,
) -> ApiResult<Person> {
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
pub(super) async fn ask(front: &Arc<Front>, request: Request) -> ApiResult<Response> {
    let front = front.clone();
    tokio::task::spawn_blocking(move || front.call(request))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

pub(super) fn unexpected(r: Response) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("unexpected answer from the store: {r:?}"),
    )
}

pub(super) fn run_id(id: &str) -> ApiResult<RunId> {
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
    if !from_own_page(&headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "refused: sign in from the war room's own page",
        ));
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
    let id = run_id(&id)?;
    let request = Request::Decide {
        id: id.clone(),
        step,
        decision,
        by: p.name,
        reason: reason_of(&body.reason)?,
    };
    // The war room drives no run: whoever does goes on with it.
    let Json(done) = act(&front, request).await?;
    Ok(Json(Done {
        message: format!(
            "{}; the run goes on when it is resumed: `lifeboat resume {id}`",
            done.message
        ),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct LinkBody {
    /// The ticket of the emailed link.
    pub ticket: String,
    pub reason: String,
}

/// The ticket's recipient, if the ticket holds and is not spent; a request from another site
/// is refused as for sessions.
async fn link_actor(
    front: &Arc<Front>,
    headers: &HeaderMap,
    peer: SocketAddr,
    ticket: &str,
) -> ApiResult<super::link::Ticket> {
    if !from_own_page(headers) {
        front.metrics.refused();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "refused: use the link from the war room's own page",
        ));
    }
    let ticket = views::read_ticket(front, peer.ip(), ticket)?;
    let Response::Run { events, .. } = ask(
        front,
        Request::Run {
            id: run_id(&ticket.run)?,
        },
    )
    .await?
    else {
        return Err(ApiError::internal("unexpected answer from the store"));
    };
    if ticket.spent(&events) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "this link was used already ({} acted on run {} at gate {:?}); it works once",
                ticket.to, ticket.run, ticket.gate
            ),
        ));
    }
    Ok(ticket)
}

/// Approves the gate of an emailed link, as its recipient (`ADDRESS (emailed link)`).
#[utoipa::path(post, path = "/api/link/approve", request_body = LinkBody,
    responses((status = 200, body = Done), (status = 401, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
async fn link_approve(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Json(body): Json<LinkBody>,
) -> ApiResult<Json<Done>> {
    let reason = reason_of(&body.reason)?;
    let ticket = link_actor(&front, &headers, peer, &body.ticket).await?;
    let request = Request::Approve {
        id: run_id(&ticket.run)?,
        by: ticket.identity(),
        gate: ticket.gate,
        reason: Some(reason),
    };
    act(&front, request).await
}

/// Aborts the run of an emailed link, as its recipient.
#[utoipa::path(post, path = "/api/link/abort", request_body = LinkBody,
    responses((status = 200, body = Done), (status = 401, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
async fn link_abort(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Json(body): Json<LinkBody>,
) -> ApiResult<Json<Done>> {
    let reason = reason_of(&body.reason)?;
    let ticket = link_actor(&front, &headers, peer, &body.ticket).await?;
    let request = Request::Abort {
        id: run_id(&ticket.run)?,
        by: ticket.identity(),
        reason: Some(reason),
    };
    act(&front, request).await
}
