//! `/metrics`: the store and the war room in the Prometheus text format (OpenMetrics), for a
//! Prometheus that scrapes `lifeboat serve`.
//!
//! Each scrape reads the store: runs by state, the durations of finished steps (a histogram;
//! a run's steps are read again only when the run changed), gates waiting and since when, and
//! on a shared store the leases; the OVH calls of the process driving runs on this host (by
//! method, route and answer), asked over the control socket; and the war room's own refusals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::api::ApiError;
use super::auth::Role;
use super::{Front, Peer};
use crate::control::{Request, Response};
use crate::journal::{Entry, RunId, RunView, StepState};

/// Step durations, seconds: from a quick read to a long PCC copy.
const BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 43200.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    route: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GateLabels {
    run: String,
    gate: String,
}

/// What one run contributes, kept until it changes.
#[derive(Clone, Default)]
struct RunFacts {
    updated_at: u64,
    /// Finished steps' durations, seconds.
    durations: Vec<f64>,
    /// Gates waiting for approval, and when each opened (epoch ms).
    waiting: Vec<(String, u64)>,
}

#[derive(Default)]
pub struct Metrics {
    failed_logins: Counter,
    refused: Counter,
    runs: Mutex<HashMap<RunId, RunFacts>>,
}

impl Metrics {
    pub fn failed_login(&self) {
        self.failed_logins.inc();
    }

    pub fn refused(&self) {
        self.refused.inc();
    }
}

pub fn routes() -> Router<Arc<Front>> {
    Router::new().route("/metrics", get(metrics))
}

fn facts(view: &RunView, finished: bool) -> RunFacts {
    let mut f = RunFacts::default();
    for key in &view.order {
        match view.entries.get(key) {
            Some(Entry::Step {
                state: StepState::Succeeded { finished_at, .. },
                first_started_at,
                ..
            }) => f
                .durations
                .push(finished_at.saturating_sub(*first_started_at) as f64 / 1000.0),
            Some(Entry::Gate {
                gate, opened_at, ..
            }) if !finished && !view.gates.is_open(gate) => {
                f.waiting.push((gate.clone(), *opened_at))
            }
            _ => {}
        }
    }
    f
}

/// Reads the store and renders the metrics text (blocking), on one opening of the store.
fn render(front: &Front) -> Result<String, crate::control::Error> {
    front.session(|ask| render_with(front, ask))?
}

fn render_with(
    front: &Front,
    ask: &mut dyn FnMut(Request) -> Result<Response, crate::control::Error>,
) -> Result<String, crate::control::Error> {
    let Response::Runs { runs, leases, .. } = ask(Request::Runs)? else {
        return Ok(String::new());
    };
    let mut cache = front.metrics.runs.lock().unwrap_or_else(|p| p.into_inner());
    cache.retain(|id, _| runs.iter().any(|r| &r.id == id));
    for run in &runs {
        if cache
            .get(&run.id)
            .is_some_and(|f| f.updated_at == run.updated_at)
        {
            continue;
        }
        if let Response::Run { events, .. } = ask(Request::Run { id: run.id.clone() })? {
            let view = RunView::from_events(&events)?;
            let mut f = facts(&view, run.state.is_final());
            f.updated_at = run.updated_at;
            cache.insert(run.id.clone(), f);
        }
    }

    let mut registry = Registry::with_prefix("lifeboat");
    let by_state = Family::<StateLabel, Gauge>::default();
    for state in [
        "queued",
        "running",
        "paused",
        "succeeded",
        "partial",
        "failed",
        "aborted",
    ] {
        by_state
            .get_or_create(&StateLabel {
                state: state.into(),
            })
            .set(0);
    }
    for run in &runs {
        by_state
            .get_or_create(&StateLabel {
                state: run.state.label().into(),
            })
            .inc();
    }
    registry.register("runs", "Runs in the store, by state", by_state);

    let durations = Histogram::new(BUCKETS);
    let waiting = Gauge::<i64>::default();
    let age = Family::<GateLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let now = front.now_ms();
    for (id, f) in cache.iter() {
        for d in &f.durations {
            durations.observe(*d);
        }
        for (gate, opened_at) in &f.waiting {
            waiting.inc();
            age.get_or_create(&GateLabels {
                run: id.to_string(),
                gate: gate.clone(),
            })
            .set(now.saturating_sub(*opened_at) as f64 / 1000.0);
        }
    }
    registry.register_with_unit(
        "step_duration",
        "Durations of finished steps",
        prometheus_client::registry::Unit::Seconds,
        durations,
    );
    registry.register("gates_waiting", "Gates waiting for approval", waiting);
    registry.register_with_unit(
        "gate_waiting",
        "How long each waiting gate has waited",
        prometheus_client::registry::Unit::Seconds,
        age,
    );

    let calls = Family::<CallLabels, Counter>::default();
    if let Ok(Response::Stats { ovh_calls }) = ask(Request::Stats) {
        for c in ovh_calls {
            calls
                .get_or_create(&CallLabels {
                    method: c.method,
                    route: c.route,
                    code: c.code,
                })
                .inc_by(c.count);
        }
    }
    registry.register(
        "ovh_calls",
        "OVH API calls of the process driving runs on this host, by method, route and answer (HTTP status, or transport)",
        calls,
    );

    if !leases.is_empty() {
        let held = Gauge::<i64>::default();
        let expired = Gauge::<i64>::default();
        let takes = Counter::<u64>::default();
        for lease in leases.values() {
            if lease.expires_in > 0.0 {
                held.inc();
            } else {
                expired.inc();
            }
            takes.inc_by(lease.epoch);
        }
        registry.register(
            "leases_held",
            "Unfinished runs whose driver holds a live lease",
            held,
        );
        registry.register(
            "leases_expired",
            "Unfinished runs whose lease expired (orphans, or a driver about to be taken over)",
            expired,
        );
        registry.register(
            "lease_takes",
            "Times the leases of unfinished runs were taken (each start, resume or takeover)",
            takes,
        );
    }

    registry.register(
        "web_failed_logins",
        "Sign-ins with an unknown token",
        front.metrics.failed_logins.clone(),
    );
    registry.register(
        "web_refused",
        "Requests refused for their role or as cross-site",
        front.metrics.refused.clone(),
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).map_err(|e| {
        crate::control::Error::Refused {
            message: e.to_string(),
            exit_code: 1,
        }
    })?;
    Ok(out)
}

async fn metrics(
    State(front): State<Arc<Front>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Result<HttpResponse, ApiError> {
    super::api::person(&front, &headers, peer, Role::Viewer)?;
    let f = front.clone();
    let text = tokio::task::spawn_blocking(move || render(&f))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::from)?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}
