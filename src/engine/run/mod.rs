//! One run being executed by this process: the replay decisions for every journaled call
//! (return the recorded result, reconcile a step found in flight, or run it), retries, durable
//! timers and gates, and the effect barrier.
//!
//! The durability rule, in one place: a record must be on disk before anything it protects can
//! be observed. So a step's start is written but not flushed; the first time its body is about
//! to change something outside lifeboat, [`RunContext::before_effect`] writes a `StepEffect`
//! marker and flushes (the barrier); its success is flushed before the script goes on. A step
//! whose body only computes or reads costs one flush, and a crash before the barrier leaves a
//! step that provably changed nothing, which resume simply runs.

mod gate;
mod outcome;
mod parallel;
mod steps;

pub(crate) use gate::GateOptions;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rhai::{Array, Dynamic, EvalAltResult, FnPtr, NativeCallContext, Position, AST};
use serde_json::Value;

use super::diagnostics::{error_location, plain_message};
use super::lane::{self, Body, NoPosition};
use super::sandbox::Limits;
use super::step::{OnFailure, StepOptions};
use super::{Error, Observer, Progress, RunOptions};
use crate::clock::{Clock, Millis};
use crate::journal::{Entry, Event, Gates, Journal, PauseReason, RunId, RunView, StepState, Vote};

/// Tokens carried by `ErrorTerminated`, which Rhai's `try`/`catch` cannot intercept.
const TOKEN_STOP: &str = "lifeboat:stop";
const TOKEN_TIMEOUT: &str = "lifeboat:timeout";
/// Ends the replay of an original run by `lifeboat undo` where its journal ends.
const TOKEN_END_OF_JOURNAL: &str = "lifeboat:end-of-journal";

pub(crate) type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// A step's body: a closure of the runbook, or one of lifeboat's own (`notify`, `wait_email`).
pub(crate) enum StepBody<'a> {
    Script(FnPtr),
    Native(&'a dyn Fn() -> ScriptResult<Dynamic>),
}

pub struct RunContext {
    pub(crate) id: RunId,
    pub(crate) journal: Arc<Journal>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) limits: Limits,
    pub(crate) path: String,
    /// The journal as it stood when this process took the run: what replay answers from.
    view: RunView,
    ast: OnceLock<Arc<AST>>,
    opts: RunOptions,
    pre_approved: Vec<String>,
    /// The step whose failure ended the previous execution of this run, to be tried again.
    failed_step: Option<String>,
    /// The run's gates and their approvals (from the journal, then as they arrive).
    gates: Mutex<Gates>,
    waiting_gate: Mutex<Option<String>>,
    /// Task waits in progress: step name → how the task last stood, for `status`.
    task_waits: Mutex<std::collections::BTreeMap<String, String>>,
    abort: Mutex<Option<String>>,
    aborting: AtomicBool,
    /// Set when a fatal error or abort means no new work should start, and work under way is
    /// interrupted.
    stopping: AtomicBool,
    /// Set when the run pauses for a person: no new step or wait starts, but calls under way in
    /// other lanes finish (interrupting one would only create another doubt).
    draining: AtomicBool,
    wake: (Mutex<u64>, Condvar),
    fatal: Mutex<Option<Error>>,
    positions: AtomicU64,
    last_step_failure: Mutex<Option<String>>,
    /// Plan mode: changes are recorded, not made; waits are skipped.
    plan: bool,
    /// Set when this context only replays a finished (or stopped) run for `lifeboat undo`:
    /// it writes nothing and waits for nothing (either ends the replay, where the run's journal
    /// ends), and it collects what each finished step declared about its way back.
    pub(crate) forward: Option<Arc<super::undo::Forward>>,
    /// On a shared store: when the store was last read for what people decided elsewhere,
    /// and how many notifications had been heard then.
    polled: Mutex<Option<(Instant, u64)>>,
}

impl RunContext {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: RunId,
        journal: Arc<Journal>,
        clock: Arc<dyn Clock>,
        observer: Arc<dyn Observer>,
        limits: Limits,
        path: String,
        view: RunView,
        opts: RunOptions,
        pre_approved: Vec<String>,
        failed_step: Option<String>,
        plan: bool,
    ) -> RunContext {
        let gates = view.gates.clone();
        RunContext {
            id,
            journal,
            clock,
            observer,
            limits,
            path,
            view,
            ast: OnceLock::new(),
            opts,
            pre_approved,
            failed_step,
            gates: Mutex::new(gates),
            waiting_gate: Mutex::new(None),
            task_waits: Mutex::new(Default::default()),
            abort: Mutex::new(None),
            aborting: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            wake: (Mutex::new(0), Condvar::new()),
            fatal: Mutex::new(None),
            positions: AtomicU64::new(0),
            last_step_failure: Mutex::new(None),
            plan,
            forward: None,
            polled: Mutex::new(None),
        }
    }

    /// Whether this is a plan: nothing may change outside lifeboat.
    pub(crate) fn plan(&self) -> bool {
        self.plan
    }

    /// Plan mode: records the change `call` would have made (never sent).
    pub(crate) fn record_planned(&self, call: &str, body: Value) -> ScriptResult<()> {
        let step = lane::current_body().map(|b| b.name);
        self.record(Event::Planned {
            step,
            call: call.to_string(),
            body,
        })
    }

    /// Reports progress that is not journaled (a task wait's state) to the run's observer.
    pub(crate) fn note_progress(&self, p: super::Progress<'_>) {
        if let super::Progress::TaskWait {
            name,
            status,
            percent,
            elapsed_ms,
            left_ms,
        } = &p
        {
            lock(&self.task_waits).insert(
                name.to_string(),
                super::task_wait_text(status, *percent, *elapsed_ms, *left_ms),
            );
        }
        self.observer.progress(&self.id, p);
    }

    /// Journals a change of the OVH client's pace (not durable: it is information, and a crash
    /// that loses it loses nothing the run depends on).
    pub(crate) fn note_pace(&self, rate: Option<f64>, concurrency: usize, why: String) {
        let _ = self.journal.append(
            &self.id,
            self.clock.now(),
            Event::Paced {
                rate,
                concurrency,
                why,
            },
        );
    }

    pub(crate) fn set_ast(&self, ast: Arc<AST>) {
        let _ = self.ast.set(ast);
    }

    /// The AST closures are called against from outside the script (see `modules::install`).
    pub(crate) fn callable_ast(&self) -> Arc<AST> {
        self.ast.get().cloned().unwrap_or_default()
    }

    // ----- signals from outside (control API, terminal prompt) -----

    /// On a shared store, people act on a run from any host: their approvals and aborts are
    /// in the store, not in this process. Read them (at most every half second) while waiting.
    fn poll_shared(&self) {
        if !self.journal.is_shared() {
            return;
        }
        {
            // At once when another process notified the store (LISTEN/NOTIFY), else at the
            // regular poll (`LIFEBOAT_POLL`, default 500 ms), in case a notification was missed.
            let heard = self.journal.notifications();
            let mut polled = lock(&self.polled);
            if polled.is_some_and(|(at, seen)| seen == heard && at.elapsed() < poll_interval()) {
                return;
            }
            *polled = Some((Instant::now(), heard));
        }
        if let Ok(record) = self.journal.run(&self.id) {
            if let crate::journal::RunState::Aborted { by } = &record.state {
                self.request_abort(by);
                return;
            }
        }
        // Approvals matter only to a run waiting at a gate: the events are read only then.
        if lock(&self.waiting_gate).is_none() {
            return;
        }
        let Ok(events) = self.journal.events(&self.id) else {
            return;
        };
        for e in events.iter().filter(|e| e.seq > self.view.last_seq) {
            if let Event::GateApproved { gate, by, .. } = &e.event {
                self.count_vote(gate, by);
            }
        }
    }

    /// Asks the run to stop for good at its next operation.
    pub(crate) fn request_abort(&self, by: &str) {
        lock(&self.abort).get_or_insert_with(|| by.to_string());
        self.aborting.store(true, Ordering::SeqCst);
        self.stopping.store(true, Ordering::SeqCst);
        self.notify();
    }

    pub(crate) fn waiting_gate(&self) -> Option<String> {
        lock(&self.waiting_gate).clone()
    }

    /// The task waits in progress, as `status` shows them.
    pub(crate) fn task_waits(&self) -> Vec<String> {
        lock(&self.task_waits)
            .iter()
            .map(|(name, how)| format!("{name}: {how}"))
            .collect()
    }

    /// A task wait has ended (whichever way): `status` no longer shows it.
    pub(crate) fn end_task_wait(&self, name: &str) {
        lock(&self.task_waits).remove(name);
    }

    pub(crate) fn abort_requested(&self) -> Option<String> {
        if self.aborting.load(Ordering::SeqCst) {
            lock(&self.abort).clone()
        } else {
            None
        }
    }

    /// Whether the run is being stopped (abort, or a fatal error elsewhere).
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(crate) fn take_fatal(&self) -> Option<Error> {
        lock(&self.fatal).take()
    }

    pub(crate) fn last_step_failure(&self) -> Option<String> {
        lock(&self.last_step_failure).clone()
    }

    fn notify(&self) {
        let (m, cv) = &self.wake;
        *lock(m) += 1;
        cv.notify_all();
    }

    /// Called by Rhai on every operation: stops the script on abort, and a step body past its
    /// timeout. The deadline is read every 1024 operations to keep the check cheap.
    pub(crate) fn on_progress(&self, ops: u64) -> Option<Dynamic> {
        if self.aborting.load(Ordering::Relaxed) {
            return Some(TOKEN_STOP.into());
        }
        if ops % 1024 == 0 {
            if let Some(deadline) = lane::deadline() {
                if Instant::now() >= deadline {
                    return Some(TOKEN_TIMEOUT.into());
                }
            }
        }
        None
    }

    /// Records an error that ends this execution (not catchable by the runbook).
    fn fatal(&self, err: Error) -> Box<EvalAltResult> {
        lock(&self.fatal).get_or_insert(err);
        self.stopping.store(true, Ordering::SeqCst);
        self.notify();
        EvalAltResult::ErrorTerminated(TOKEN_STOP.into(), Position::NONE).into()
    }

    /// Pauses the run for a person (a step in doubt, a gate past its timeout): recorded like a
    /// fatal error, but work already under way in other lanes is let finish.
    fn pause_with(&self, err: Error) -> Box<EvalAltResult> {
        lock(&self.fatal).get_or_insert(err);
        self.draining.store(true, Ordering::SeqCst);
        self.notify();
        EvalAltResult::ErrorTerminated(TOKEN_STOP.into(), Position::NONE).into()
    }

    /// Whether no new work may start (stopping or pausing).
    pub(crate) fn is_winding_down(&self) -> bool {
        self.winding_down()
    }

    fn winding_down(&self) -> bool {
        self.stopping.load(Ordering::SeqCst) || self.draining.load(Ordering::SeqCst)
    }

    fn journal_error(&self, err: crate::journal::Error) -> Box<EvalAltResult> {
        self.fatal(Error::Journal(err))
    }

    fn record(&self, event: Event) -> ScriptResult<()> {
        if self.forward.is_some() {
            return Err(end_of_journal());
        }
        self.journal
            .append(&self.id, self.clock.now(), event)
            .map(drop)
            .map_err(|e| self.journal_error(e))
    }

    fn record_durable(&self, event: Event) -> ScriptResult<()> {
        if self.forward.is_some() {
            return Err(end_of_journal());
        }
        self.journal
            .append_durable(&self.id, self.clock.now(), event)
            .map(drop)
            .map_err(|e| self.journal_error(e))
    }

    /// Takes the next position of the current lane for a journaled call.
    fn position(&self, what: &str, pos: Position) -> ScriptResult<String> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(stop_error());
        }
        let key = lane::next_key().map_err(|e| match e {
            NoPosition::InBody { name } => script_error(
                format!("{what} cannot be called inside the body of step {name:?}; call it between steps"),
                pos,
            ),
            NoPosition::NoLane => script_error(format!("{what} called outside a run"), pos),
        })?;
        let n = self.positions.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.limits.max_steps {
            return Err(self.fatal(Error::Limit {
                location: self.location(pos),
                message: format!(
                    "the run exceeded its limit of {} journaled steps; raise it with --max-steps",
                    self.limits.max_steps
                ),
            }));
        }
        Ok(key)
    }

    fn location(&self, pos: Position) -> String {
        match (pos.line(), pos.position()) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", self.path),
            _ => self.path.clone(),
        }
    }

    /// The entry recorded at `key`, if it is of the kind the runbook now asks for; a different
    /// entry means the runbook and the journal disagree, which is never guessed around.
    fn recorded(
        &self,
        key: &str,
        requested: &str,
        matches: impl Fn(&Entry) -> bool,
        pos: Position,
    ) -> ScriptResult<Option<&Entry>> {
        match self.view.entries.get(key) {
            None => Ok(None),
            Some(entry) if matches(entry) => Ok(Some(entry)),
            Some(entry) => Err(self.fatal(Error::Divergence {
                key: key.to_string(),
                recorded: entry.describe(),
                requested: requested.to_string(),
                location: self.location(pos),
            })),
        }
    }

    // ----- the effect barrier -----

    /// Must be called by every binding that changes something outside lifeboat, before it does.
    /// Inside a step body: journals (once per attempt) that the attempt started acting, and
    /// makes the journal durable, so a crash from here on leaves the step "in doubt" rather than
    /// "never started". Outside a step body it refuses: such a change would be repeated by
    /// every replay.
    pub(crate) fn before_effect(&self, what: &str, pos: Position) -> ScriptResult<()> {
        let body = lane::current_body().ok_or_else(|| {
            script_error(format!("{what} changes things outside lifeboat and must be called inside a step, so that it runs once"), pos)
        })?;
        // A driver that may have lost its run to another process sends nothing.
        self.journal
            .check_lease(&self.id)
            .map_err(|e| self.journal_error(e))?;
        if !body.effects {
            self.record(Event::StepEffect {
                key: body.key.clone(),
                attempt: body.attempt,
                what: what.to_string(),
            })?;
            lane::mark_effects();
        }
        self.journal.sync().map_err(|e| self.journal_error(e))
    }

    // ----- waiting -----

    /// Waits until the engine clock reaches `until`. Ends early, with an error, on abort or
    /// when the running step body passes its timeout.
    fn wait_until(&self, until: Millis) -> ScriptResult<()> {
        if self.forward.is_some() {
            return Err(end_of_journal());
        }
        let (m, cv) = &self.wake;
        loop {
            if self.aborting.load(Ordering::SeqCst) || self.draining.load(Ordering::SeqCst) {
                return Err(stop_error());
            }
            let now = self.clock.now();
            if now >= until {
                return Ok(());
            }
            let mut real = self
                .clock
                .real_duration(until - now)
                .min(Duration::from_millis(250));
            if let Some(deadline) = lane::deadline() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(EvalAltResult::ErrorTerminated(
                        TOKEN_TIMEOUT.into(),
                        Position::NONE,
                    )
                    .into());
                }
                real = real.min(left);
            }
            let guard = lock(m);
            let _ = cv.wait_timeout(guard, real.max(Duration::from_millis(1)));
            self.poll_shared();
        }
    }

    // ----- the script functions -----

    /// `sleep(duration)`: durable between steps (a resume waits only what is left), a plain
    /// wait inside a step body.
    pub(crate) fn sleep(&self, pos: Position, duration: Duration) -> ScriptResult<()> {
        // A plan skips waits.
        let ms = if self.plan {
            0
        } else {
            duration.as_millis() as u64
        };
        if lane::current_body().is_some() {
            return self.wait_until(self.clock.now() + ms);
        }
        let key = self.position("sleep()", pos)?;
        let until = match self.recorded(&key, "sleep", |e| matches!(e, Entry::Sleep { .. }), pos)? {
            Some(Entry::Sleep {
                finished_at: Some(_),
                ..
            }) => return Ok(()),
            Some(Entry::Sleep { until, .. }) => *until,
            _ => {
                let until = self.clock.now() + ms;
                // Durable, so that a crash during the sleep resumes with the time left.
                self.record_durable(Event::SleepStarted {
                    key: key.clone(),
                    until,
                })?;
                until
            }
        };
        self.observer.progress(
            &self.id,
            Progress::Sleeping {
                until,
                remaining_ms: until.saturating_sub(self.clock.now()),
            },
        );
        self.wait_until(until)?;
        self.record(Event::SleepFinished { key })
    }

    /// `now()`: the engine clock, journaled between steps so a replay sees the same value.
    pub(crate) fn now(&self, pos: Position) -> ScriptResult<i64> {
        if lane::current_body().is_some() {
            return Ok(self.clock.now() as i64);
        }
        let value = self.journaled_value(pos, "now", || Ok(self.clock.now().into()))?;
        Ok(value.as_i64().unwrap_or_default())
    }

    /// A value the runbook must see identically on every replay: computed once (durably, as
    /// something may depend on it), then answered from the journal. Takes a position.
    pub(crate) fn journaled_value(
        &self,
        pos: Position,
        name: &str,
        compute: impl FnOnce() -> ScriptResult<Value>,
    ) -> ScriptResult<Value> {
        let key = self.position(&format!("{name}()"), pos)?;
        let requested = format!("{name}()");
        if let Some(Entry::Value { value, .. }) = self.recorded(
            &key,
            &requested,
            |e| matches!(e, Entry::Value { name: n, .. } if n == name),
            pos,
        )? {
            return Ok(value.clone());
        }
        let value = compute()?;
        self.record_durable(Event::ValueRecorded {
            key,
            name: name.to_string(),
            value: value.clone(),
        })?;
        Ok(value)
    }

    /// Runs a future on `runtime` from this (non-runtime) thread, giving up when the run is
    /// stopped or the running step passes its timeout. How blocking bindings wait.
    pub(crate) fn block_on<F: std::future::Future>(
        &self,
        runtime: &tokio::runtime::Handle,
        fut: F,
    ) -> ScriptResult<F::Output> {
        let deadline = lane::deadline();
        let stop = async {
            loop {
                if self.is_stopping() {
                    return stop_error();
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return timeout_error();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        runtime.block_on(async {
            tokio::select! {
                out = fut => Ok(out),
                interrupted = stop => Err(interrupted),
            }
        })
    }

    /// A cancellable wait of `virtual_ms` of engine time (inside a body: bounded by its timeout).
    pub(crate) fn pause(&self, virtual_ms: u64) -> ScriptResult<()> {
        self.wait_until(self.clock.now() + virtual_ms)
    }
}

fn failed_message(name: &str, attempts: u32, error: &str) -> String {
    format!(
        "step {name:?} failed after {attempts} attempt{}: {error}",
        if attempts == 1 { "" } else { "s" }
    )
}

/// How often a driver on a shared store reads it for decisions made elsewhere, besides when
/// notified: `LIFEBOAT_POLL` (a duration), default 500 ms.
fn poll_interval() -> Duration {
    static POLL: OnceLock<Duration> = OnceLock::new();
    *POLL.get_or_init(|| {
        std::env::var("LIFEBOAT_POLL")
            .ok()
            .and_then(|v| humantime::parse_duration(&v).ok())
            .unwrap_or(Duration::from_millis(500))
    })
}

/// A catchable runtime error at `pos`.
pub(crate) fn script_error(message: String, pos: Position) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into(), pos).into()
}

/// The value a failed step throws: its structured detail when it has one, else its message.
fn failure_value(message: &str, detail: &Value, pos: Position) -> Box<EvalAltResult> {
    let value = match detail {
        Value::Object(_) => rhai::serde::to_dynamic(detail).unwrap_or_else(|_| message.into()),
        _ => message.into(),
    };
    EvalAltResult::ErrorRuntime(value, pos).into()
}

fn to_dynamic(value: &Value, pos: Position) -> ScriptResult<Dynamic> {
    rhai::serde::to_dynamic(value)
        .map_err(|e| script_error(format!("journaled value cannot be read back: {e}"), pos))
}

pub(crate) fn is_token(err: &EvalAltResult, token: &str) -> bool {
    matches!(err, EvalAltResult::ErrorTerminated(t, _) if t.clone().into_immutable_string().is_ok_and(|s| s == token))
}

/// The error that ends an evaluation being stopped.
pub(crate) fn stop_error() -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(TOKEN_STOP.into(), Position::NONE).into()
}

/// The error that ends the replay of an original run where its journal ends.
pub(crate) fn end_of_journal() -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(TOKEN_END_OF_JOURNAL.into(), Position::NONE).into()
}

/// The error that ends a step body past its timeout.
pub(crate) fn timeout_error() -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(TOKEN_TIMEOUT.into(), Position::NONE).into()
}

/// Whether a failure is a transient API failure (OVH overloaded or unreachable): worth asking
/// again after a pause. The `ovh` object marks those errors `transient: true`.
fn is_transient(err: &EvalAltResult) -> bool {
    match err.unwrap_inner() {
        EvalAltResult::ErrorRuntime(v, _) => v
            .read_lock::<rhai::Map>()
            .and_then(|m| m.get("transient").and_then(|t| t.as_bool().ok()))
            .unwrap_or(false),
        _ => false,
    }
}

pub(crate) fn is_stop(err: &EvalAltResult) -> bool {
    is_token(err, TOKEN_STOP)
}

/// Locks a mutex, recovering from poisoning: every critical section here leaves its data
/// consistent, so a panic elsewhere is no reason to stop a recovery.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
