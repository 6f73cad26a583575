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

/// What a reconciliation decided for a step that may already have acted.
enum Reconciled {
    /// It is done; here is its result.
    Done(Dynamic),
    /// Run the body (again).
    RunAgain,
}

/// `approve(gate, message, #{ timeout, on_timeout })`: how long a gate waits for a person.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GateTimeout {
    pub after: Duration,
    pub on_timeout: OnGateTimeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnGateTimeout {
    /// The run pauses (exit 3); approving and resuming continues it.
    Pause,
    /// The run is aborted.
    Abort,
}

/// `approve(gate, message, #{ approvers, timeout, on_timeout })`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GateOptions {
    pub timeout: Option<GateTimeout>,
    /// How many different people must approve.
    pub approvers: u32,
}

/// The most approvers a gate may ask for.
const MAX_APPROVERS: i64 = 20;

impl Default for GateOptions {
    fn default() -> Self {
        GateOptions {
            timeout: None,
            approvers: 1,
        }
    }
}

impl GateOptions {
    /// Reads `#{ approvers: 2, timeout: "2h", on_timeout: "pause" | "abort" }`.
    pub(crate) fn from_map(map: rhai::Map) -> Result<GateOptions, String> {
        let mut after = None;
        let mut on_timeout = OnGateTimeout::Pause;
        let mut approvers = 1;
        for (k, v) in map {
            match k.as_str() {
                "approvers" => {
                    approvers = match v.as_int() {
                        Ok(n) if (1..=MAX_APPROVERS).contains(&n) => n as u32,
                        _ => {
                            return Err(format!(
                                "approve option approvers: expected a whole number of people from 1 to {MAX_APPROVERS}, got {v}"
                            ))
                        }
                    }
                }
                "timeout" => {
                    after = Some(super::step::duration_option("approve option timeout", &v)?)
                }
                "on_timeout" => {
                    on_timeout = match v.clone().into_immutable_string().as_deref() {
                        Ok("pause") => OnGateTimeout::Pause,
                        Ok("abort") => OnGateTimeout::Abort,
                        _ => {
                            return Err(format!(
                            "approve option on_timeout: expected \"pause\" or \"abort\", got {v}"
                        ))
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown approve option {other:?} (approvers, timeout, on_timeout)"
                    ))
                }
            }
        }
        Ok(GateOptions {
            timeout: after.map(|after| GateTimeout { after, on_timeout }),
            approvers,
        })
    }
}

/// What a step's `check` said when asked whether the step is done.
enum CheckAnswer {
    Done(Dynamic),
    NotDone,
    /// It could not answer (its own calls kept failing): why.
    Unknown(String),
}

/// The first wait before asking a check again, and the longest.
const CHECK_BACKOFF: Duration = Duration::from_millis(200);
const CHECK_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The least time a check is given to answer, whatever the step's patience.
const CHECK_MIN_BUDGET: Duration = Duration::from_secs(30);

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

    /// Counts `by`'s approval of `gate`: journaled durably, then the waiting script is woken
    /// (it goes on once as many different people as the gate needs have approved). A person
    /// who already approved it is not counted again, and nothing is journaled.
    pub(crate) fn approve(
        &self,
        gate: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Vote, Error> {
        let needed = lock(&self.gates).needed(gate);
        let have = lock(&self.gates).votes(gate).len() as u32;
        if lock(&self.gates).votes(gate).iter().any(|v| v == by) {
            return Ok(Vote::Again { have, needed });
        }
        self.journal.append_durable(
            &self.id,
            self.clock.now(),
            Event::GateApproved {
                gate: gate.to_string(),
                by: by.to_string(),
                reason: reason.map(str::to_string),
            },
        )?;
        Ok(self.count_vote(gate, by))
    }

    /// Counts an approval that is in the journal already, and tells the terminal.
    fn count_vote(&self, gate: &str, by: &str) -> Vote {
        let vote = lock(&self.gates).vote(gate, by);
        if let Vote::Counted { have, needed } = vote {
            self.observer.progress(
                &self.id,
                Progress::GateApproved {
                    gate,
                    by,
                    more: needed.saturating_sub(have),
                },
            );
            self.notify();
        }
        vote
    }

    fn gate_is_open(&self, gate: &str) -> bool {
        lock(&self.gates).is_open(gate)
    }

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

    /// `step(name, opts, body)`.
    pub(crate) fn step(
        &self,
        ctx: &NativeCallContext,
        name: &str,
        opts: rhai::Map,
        body: FnPtr,
    ) -> ScriptResult<Dynamic> {
        let pos = ctx.call_position();
        let opts = StepOptions::from_map(opts).map_err(|m| script_error(m, pos))?;
        self.step_with(ctx, name, opts, StepBody::Script(body))
    }

    /// A durable step with any body: replayed from the journal, reconciled, or run.
    pub(crate) fn step_with(
        &self,
        ctx: &NativeCallContext,
        name: &str,
        opts: StepOptions,
        body: StepBody<'_>,
    ) -> ScriptResult<Dynamic> {
        let pos = ctx.call_position();
        let key = self.position("step()", pos)?;
        let requested = format!("step {name:?}");
        let entry = self.recorded(
            &key,
            &requested,
            |e| matches!(e, Entry::Step { name: n, .. } if n == name),
            pos,
        )?;
        let mut first_attempt = 1;
        if let (Some(forward), Some(Entry::Step { state, .. })) = (&self.forward, entry) {
            // Replaying the original for its way back: only what it finished counts.
            match state {
                StepState::Succeeded {
                    result, decided, ..
                } => forward.finished(&key, name, &opts, result, decided.as_deref()),
                StepState::Running { effects, .. } | StepState::RetryWait { effects, .. } => {
                    forward.unfinished(&key, name, *effects);
                    return Err(end_of_journal());
                }
                StepState::Failed { .. } => {}
            }
        }
        if let Some(Entry::Step { state, .. }) = entry {
            match state {
                StepState::Succeeded { result, .. } => {
                    self.observer
                        .progress(&self.id, Progress::Replayed { name });
                    return to_dynamic(result, pos);
                }
                StepState::Failed {
                    attempts,
                    error,
                    detail,
                    ..
                } if self.failed_step.as_deref() != Some(key.as_str()) => {
                    // A failure the runbook handled (try/catch) the first time: it sees it again.
                    self.observer
                        .progress(&self.id, Progress::Replayed { name });
                    return Err(failure_value(
                        &failed_message(name, *attempts, error),
                        detail,
                        pos,
                    ));
                }
                StepState::Failed {
                    attempts, effects, ..
                } => {
                    // The failure that ended the run: a resume tries the step again.
                    if *effects {
                        if let Reconciled::Done(v) = self.reconcile(ctx, &key, name, &opts, pos)? {
                            return Ok(v);
                        }
                    }
                    first_attempt = attempts + 1;
                }
                StepState::Running {
                    attempt, effects, ..
                } => {
                    // In flight when the previous process died.
                    if *effects {
                        if let Reconciled::Done(v) = self.reconcile(ctx, &key, name, &opts, pos)? {
                            return Ok(v);
                        }
                    }
                    first_attempt = attempt + 1;
                }
                StepState::RetryWait {
                    attempt, retry_at, ..
                } => {
                    self.wait_until(*retry_at)?;
                    first_attempt = attempt + 1;
                }
            }
        }
        self.attempts(ctx, &key, name, &opts, &body, first_attempt)
    }

    /// Decides what to do with a step found in flight (or failed) past its first effect by a
    /// resume: the operator's `--retry-inflight`, then its `check`, then `idempotent`; if none
    /// can decide, the run pauses with the step in doubt.
    fn reconcile(
        &self,
        ctx: &NativeCallContext,
        key: &str,
        name: &str,
        opts: &StepOptions,
        pos: Position,
    ) -> ScriptResult<Reconciled> {
        if self
            .opts
            .retry_inflight
            .iter()
            .any(|s| s == name || s == key)
        {
            return Ok(Reconciled::RunAgain);
        }
        let why = match &opts.check {
            Some(check) => match self.ask_check(ctx, check, opts, pos)? {
                CheckAnswer::Done(result) => {
                    self.succeed(key, name, &result, true, 0, pos)?;
                    return Ok(Reconciled::Done(result));
                }
                CheckAnswer::NotDone => return Ok(Reconciled::RunAgain),
                CheckAnswer::Unknown(why) => format!(
                    "it was in flight when the previous process stopped, and its check could not answer: {why}"
                ),
            },
            None if opts.idempotent => return Ok(Reconciled::RunAgain),
            None => "it was in flight when the previous process stopped, and it has no `check` to ask".to_string(),
        };
        Err(self.in_doubt(key, name, why))
    }

    /// Pauses the run with step `key` in doubt.
    fn in_doubt(&self, key: &str, name: &str, why: String) -> Box<EvalAltResult> {
        self.observer.progress(
            &self.id,
            Progress::StepInDoubt {
                name,
                why: why.as_str(),
            },
        );
        self.pause_with(Error::InDoubt {
            key: key.to_string(),
            name: name.to_string(),
            run: self.id.clone(),
            why,
        })
    }

    /// Asks a step's `check` whether the step is done. A check whose own API calls fail
    /// transiently (OVH overloaded, a dropped connection) is asked again with a short backoff,
    /// for the step's patience (at least [`CHECK_MIN_BUDGET`]); any other failure, or running
    /// out of time, is [`CheckAnswer::Unknown`].
    fn ask_check(
        &self,
        ctx: &NativeCallContext,
        check: &FnPtr,
        opts: &StepOptions,
        pos: Position,
    ) -> ScriptResult<CheckAnswer> {
        let budget = opts.patience.max(CHECK_MIN_BUDGET);
        let deadline = self.clock.now() + budget.as_millis() as u64;
        let mut wait = CHECK_BACKOFF;
        loop {
            let err = match self.run_check(ctx, check, pos) {
                Ok(Some(result)) => return Ok(CheckAnswer::Done(result)),
                Ok(None) => return Ok(CheckAnswer::NotDone),
                Err(e) if !e.is_catchable() => return Err(e),
                Err(e) => e,
            };
            let why = plain_message(&err);
            if !is_transient(&err) || self.clock.now() + wait.as_millis() as u64 > deadline {
                return Ok(CheckAnswer::Unknown(why));
            }
            self.wait_until(self.clock.now() + wait.as_millis() as u64)?;
            wait = (wait * 2).min(CHECK_MAX_BACKOFF);
        }
    }

    /// Runs a step's `check` once: `Some(result)` if it says the step is done.
    fn run_check(
        &self,
        ctx: &NativeCallContext,
        check: &FnPtr,
        _pos: Position,
    ) -> ScriptResult<Option<Dynamic>> {
        let answer: Dynamic = check.call_within_context(ctx, ())?;
        if answer.is_unit() || answer.as_bool() == Ok(false) {
            Ok(None)
        } else if answer.as_bool() == Ok(true) {
            Ok(Some(Dynamic::UNIT))
        } else {
            Ok(Some(answer))
        }
    }

    fn succeed(
        &self,
        key: &str,
        name: &str,
        result: &Dynamic,
        reconciled: bool,
        started: Millis,
        pos: Position,
    ) -> ScriptResult<()> {
        let json: Value = rhai::serde::from_dynamic(result).map_err(|e| {
            script_error(
                format!(
                    "the result of step {name:?} cannot be journaled: {}",
                    plain_message(&e)
                ),
                pos,
            )
        })?;
        // Durable before the script sees the result: "done" is never reported before it is true.
        self.record_durable(Event::StepSucceeded {
            key: key.to_string(),
            result: json,
            reconciled,
        })?;
        let elapsed = if started == 0 {
            0
        } else {
            self.clock.now().saturating_sub(started)
        };
        self.observer.progress(
            &self.id,
            Progress::StepSucceeded {
                name,
                elapsed_ms: elapsed,
                reconciled,
            },
        );
        Ok(())
    }

    fn attempts(
        &self,
        ctx: &NativeCallContext,
        key: &str,
        name: &str,
        opts: &StepOptions,
        body: &StepBody<'_>,
        first: u32,
    ) -> ScriptResult<Dynamic> {
        let pos = ctx.call_position();
        let last = first + opts.retries;
        // Transient API failures are retried until here, on top of `retries`.
        let patience_ends = self.clock.now() + opts.patience.as_millis() as u64;
        let mut attempt = first;
        loop {
            let started = self.clock.now();
            self.record(Event::StepStarted {
                key: key.to_string(),
                name: name.to_string(),
                attempt,
            })?;
            self.observer
                .progress(&self.id, Progress::StepStarted { key, name, attempt });
            let deadline = opts
                .timeout
                .map(|t| Instant::now() + self.clock.real_duration(t.as_millis() as u64));
            lane::begin_body(Body {
                key: key.to_string(),
                name: name.to_string(),
                attempt,
                effects: false,
                deadline,
            });
            let outcome: ScriptResult<Dynamic> = match body {
                StepBody::Script(f) => f.call_within_context(ctx, ()),
                StepBody::Native(f) => f(),
            };
            let ended = lane::end_body();
            let effects = ended.as_ref().is_some_and(|b| b.effects);

            let (mut error, detail) = match outcome {
                Ok(value) => {
                    self.succeed(key, name, &value, false, started, pos)?;
                    return Ok(value);
                }
                Err(e)
                    if is_token(&e, TOKEN_TIMEOUT)
                        && deadline.is_some_and(|d| Instant::now() >= d) =>
                {
                    let t = opts.timeout.unwrap_or_default();
                    (
                        format!("timed out after {}", humantime::format_duration(t)),
                        Value::Null,
                    )
                }
                Err(e) if is_stop(&e) => return Err(e),
                Err(e) if !e.is_catchable() => {
                    // A sandbox limit: the step failed for good, and so does the run.
                    let error = format!(
                        "{} (at {})",
                        plain_message(&e),
                        error_location(&self.path, &e)
                    );
                    self.fail_for_good(key, name, attempt, &error, &Value::Null)?;
                    return Err(e);
                }
                Err(e) => {
                    let detail = match e.unwrap_inner() {
                        EvalAltResult::ErrorRuntime(v, _) if v.is_map() => {
                            rhai::serde::from_dynamic(v).unwrap_or(Value::Null)
                        }
                        _ => Value::Null,
                    };
                    (
                        format!(
                            "{} (at {})",
                            plain_message(&e),
                            error_location(&self.path, &e)
                        ),
                        detail,
                    )
                }
            };

            let transient = detail.get("transient") == Some(&Value::Bool(true));
            if effects {
                // The attempt got past the barrier, so it may have changed things: ask at once
                // whether it did, rather than reporting as failed a change that happened.
                let unknown = match &opts.check {
                    Some(check) => match self.ask_check(ctx, check, opts, pos)? {
                        CheckAnswer::Done(result) => {
                            self.succeed(key, name, &result, true, started, pos)?;
                            return Ok(result);
                        }
                        // It changed nothing: an ordinary failed attempt.
                        CheckAnswer::NotDone => None,
                        CheckAnswer::Unknown(why) => Some(format!(
                            "its attempt {attempt} ended with: {error}, and its check could not answer: {why}"
                        )),
                    },
                    None if opts.idempotent => None,
                    None => Some(format!(
                        "its attempt {attempt} ended with: {error}, and it has no `check` to ask"
                    )),
                };
                if let Some(why) = unknown {
                    if opts.on_failure == OnFailure::Pause {
                        return Err(self.in_doubt(key, name, why));
                    }
                    error = format!("{error}; it may have changed things (its attempt had started, and nothing can tell whether it took effect): check by hand before running it again");
                    self.fail_for_good(key, name, attempt, &error, &detail)?;
                    return Err(failure_value(
                        &failed_message(name, attempt, &error),
                        &detail,
                        pos,
                    ));
                }
            }
            let patient = transient && self.clock.now() < patience_ends;
            // A failure that says trying again cannot help (`final: true`: a refused login, an
            // unacceptable certificate) takes no further attempt.
            let final_failure = detail.get("final") == Some(&Value::Bool(true));
            if (attempt < last || patient) && !final_failure {
                let wait = if attempt < last {
                    opts.backoff_after(attempt)
                } else {
                    opts.jittered_backoff_after(attempt - opts.retries)
                };
                let retry_at = self.clock.now() + wait.as_millis() as u64;
                self.record(Event::StepFailed {
                    key: key.to_string(),
                    attempt,
                    error: error.clone(),
                    detail: detail.clone(),
                    retry_at: Some(retry_at),
                })?;
                self.observer.progress(
                    &self.id,
                    Progress::StepRetry {
                        name,
                        attempt,
                        error: &error,
                        wait_ms: wait.as_millis() as u64,
                    },
                );
                self.wait_until(retry_at)?;
                attempt += 1;
                continue;
            }
            self.fail_for_good(key, name, attempt, &error, &detail)?;
            return Err(failure_value(
                &failed_message(name, attempt, &error),
                &detail,
                pos,
            ));
        }
    }

    /// Records that a step failed with no attempt left, durably, before the script sees it.
    fn fail_for_good(
        &self,
        key: &str,
        name: &str,
        attempt: u32,
        error: &str,
        detail: &Value,
    ) -> ScriptResult<()> {
        self.record_durable(Event::StepFailed {
            key: key.to_string(),
            attempt,
            error: error.to_string(),
            detail: detail.clone(),
            retry_at: None,
        })?;
        self.observer.progress(
            &self.id,
            Progress::StepFailed {
                name,
                attempts: attempt,
                error,
            },
        );
        *lock(&self.last_step_failure) = Some(key.to_string());
        Ok(())
    }

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

    /// `approve(gate, message)`: waits for a person.
    pub(crate) fn gate(
        self: &Arc<Self>,
        pos: Position,
        gate: &str,
        message: &str,
        options: GateOptions,
    ) -> ScriptResult<()> {
        let GateOptions { timeout, approvers } = options;
        let key = self.position("approve()", pos)?;
        let requested = format!("approve {gate:?}");
        let opened_at = match self.recorded(
            &key,
            &requested,
            |e| matches!(e, Entry::Gate { gate: g, .. } if g == gate),
            pos,
        )? {
            Some(Entry::Gate { opened_at, .. }) => *opened_at,
            _ => {
                let now = self.clock.now();
                self.record_durable(Event::GateOpened {
                    key: key.clone(),
                    gate: gate.to_string(),
                    message: message.to_string(),
                    approvers,
                })?;
                lock(&self.gates).opened(gate, approvers);
                now
            }
        };
        // The timeout counts from when the gate first opened, across resumes.
        let expires = timeout.map(|t| (opened_at + t.after.as_millis() as u64, t));
        if self.gate_is_open(gate) {
            return Ok(());
        }
        // A plan does not stop at gates: it is there to show what lies past them. A gate
        // approved in advance (`--approve`: rehearsals, the demo, scheduled runs) opens
        // whatever its `approvers`: whoever started the run decided for all of them.
        if self.plan || self.pre_approved.iter().any(|g| g == gate || g == "all") {
            self.approve(gate, "--approve", None)
                .map_err(|e| self.fatal(e))?;
            lock(&self.gates).force_open(gate, "--approve");
            return Ok(());
        }
        if self.forward.is_some() {
            return Err(end_of_journal());
        }
        if self.opts.no_wait {
            return Err(self.fatal(Error::Paused(PauseReason::Approval {
                gate: gate.to_string(),
            })));
        }
        *lock(&self.waiting_gate) = Some(gate.to_string());
        self.observer
            .progress(&self.id, Progress::WaitingApproval { gate, message });
        if let Some(prompt) = self.opts.prompt.clone() {
            let (gate, message) = (gate.to_string(), message.to_string());
            let me = Arc::clone(self);
            std::thread::spawn(move || {
                if prompt(&gate, &message) {
                    let _ = me.approve(&gate, "terminal", None);
                }
            });
        }
        let (m, cv) = &self.wake;
        let mut seen = lock(m);
        let expired = loop {
            if self.aborting.load(Ordering::SeqCst)
                || self.winding_down() && lock(&self.fatal).is_some()
            {
                break None;
            }
            if self.gate_is_open(gate) {
                break None;
            }
            if let Some((at, t)) = &expires {
                if self.clock.now() >= *at {
                    break Some(t);
                }
            }
            seen = cv
                .wait_timeout(seen, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
            // Approvals from other hosts notify this same condition variable: not while
            // holding it.
            drop(seen);
            self.poll_shared();
            seen = lock(m);
        };
        // Pausing and aborting wake every waiter through `wake`: not while holding it.
        drop(seen);
        *lock(&self.waiting_gate) = None;
        if self.gate_is_open(gate) {
            return Ok(());
        }
        let Some(t) = expired else {
            return Err(stop_error());
        };
        let after = crate::clock::format_duration(t.after.as_millis() as u64);
        Err(match t.on_timeout {
            OnGateTimeout::Pause => self.pause_with(Error::Paused(PauseReason::GateTimeout {
                gate: gate.to_string(),
                after,
            })),
            OnGateTimeout::Abort => {
                self.request_abort(&format!("the timeout of gate {gate:?} ({after})"));
                stop_error()
            }
        })
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

    /// `log(message)`, and `warn(message)` (`warning`): journaled and shown once, never again
    /// on replay. A warning says something was left undone: the run, if it succeeds, is
    /// partial.
    pub(crate) fn log(&self, pos: Position, message: String, warning: bool) -> ScriptResult<()> {
        let shown = if warning {
            format!("warning: {message}")
        } else {
            message.clone()
        };
        let key = match lane::current_body() {
            Some(_) => None,
            None => {
                let key = self.position("log()", pos)?;
                if self
                    .recorded(&key, "log", |e| matches!(e, Entry::Log { .. }), pos)?
                    .is_some()
                {
                    return Ok(());
                }
                Some(key)
            }
        };
        self.record(Event::Logged {
            key,
            message,
            warning,
        })?;
        self.observer
            .progress(&self.id, Progress::Log { message: &shown });
        Ok(())
    }

    /// `outcome(title, items[, columns])`: declares what the run recovered. Every item is a map
    /// with `recovered: true|false`; `columns` names the fields to show, in order (default: the
    /// first item's fields, `recovered` apart). Journaled like `log`, so that reports read it
    /// from the journal and a replay does not declare it twice.
    pub(crate) fn outcome(
        &self,
        pos: Position,
        title: String,
        items: Array,
        columns: Option<Array>,
    ) -> ScriptResult<()> {
        let fail = |m: String| script_error(format!("outcome({title:?}): {m}"), pos);
        let mut values = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Some(map) = item.read_lock::<rhai::Map>() else {
                return Err(fail(format!(
                    "item {i} is {}, not a map like #{{ recovered: true, ... }}",
                    item.type_name()
                )));
            };
            if !map.get("recovered").is_some_and(|r| r.is_bool()) {
                return Err(fail(format!(
                    "item {i} has no `recovered: true` or `recovered: false`"
                )));
            }
            let value: Value = rhai::serde::from_dynamic(item)
                .map_err(|e| fail(format!("item {i} cannot be journaled: {e}")))?;
            values.push(value);
        }
        let columns: Vec<String> = match columns {
            Some(cols) => cols
                .into_iter()
                .map(|c| {
                    c.into_string()
                        .map_err(|t| fail(format!("a column name is {t}, not a string")))
                })
                .collect::<Result<_, _>>()?,
            None => values
                .first()
                .and_then(Value::as_object)
                .map(|m| m.keys().filter(|k| *k != "recovered").cloned().collect())
                .unwrap_or_default(),
        };
        let key = match lane::current_body() {
            Some(_) => None,
            None => {
                let key = self.position("outcome()", pos)?;
                let requested = format!("outcome({title:?})");
                if self
                    .recorded(
                        &key,
                        &requested,
                        |e| matches!(e, Entry::Outcome { .. }),
                        pos,
                    )?
                    .is_some()
                {
                    return Ok(());
                }
                Some(key)
            }
        };
        self.record(Event::OutcomeDeclared {
            key,
            title,
            columns,
            items: values,
        })
    }

    /// An outcome table declared by the engine itself (an undo run's way back), between steps.
    pub(crate) fn declare_outcome(
        &self,
        title: &str,
        columns: Vec<String>,
        items: Vec<Value>,
    ) -> Result<(), Error> {
        self.journal
            .append_durable(
                &self.id,
                self.clock.now(),
                Event::OutcomeDeclared {
                    key: None,
                    title: title.to_string(),
                    columns,
                    items,
                },
            )
            .map(drop)
            .map_err(Error::Journal)
    }

    /// `parallel(items, opts, |item| ...)`: runs the closure for every item, at most `limit` at
    /// once, each in a lane of its own, and returns their results in item order. A branch that
    /// fails does not stop the others; once all are done, the failures are thrown together.
    pub(crate) fn parallel(
        &self,
        ctx: &NativeCallContext,
        items: Array,
        opts: rhai::Map,
        f: FnPtr,
    ) -> ScriptResult<Array> {
        let pos = ctx.call_position();
        let base = self.position("parallel()", pos)?;
        let mut limit = 8usize;
        for (k, v) in opts {
            match k.as_str() {
                "limit" => {
                    limit = v
                        .as_int()
                        .ok()
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| {
                            script_error(
                                "parallel option limit: expected a positive integer".to_string(),
                                pos,
                            )
                        })?
                }
                other => {
                    return Err(script_error(
                        format!("unknown parallel option {other:?} (limit)"),
                        pos,
                    ))
                }
            }
        }
        if let Some(forward) = &self.forward {
            forward.parallel(&base, limit);
        }
        let ast =
            self.ast.get().cloned().ok_or_else(|| {
                script_error("parallel() called before the run started".into(), pos)
            })?;
        let engine = ctx.engine();
        let n = items.len();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Mutex<Option<ScriptResult<Dynamic>>>> =
            (0..n).map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..limit.min(n) {
                let (next, results, items, f, ast, base) =
                    (&next, &results, &items, &f, &ast, &base);
                std::thread::Builder::new()
                    .stack_size(8 << 20)
                    .spawn_scoped(scope, move || loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n || self.winding_down() {
                            break;
                        }
                        let _lane = lane::enter(format!("{base}.{i}"));
                        let r = f.call::<Dynamic>(engine, ast, (items[i].clone(),));
                        *lock(&results[i]) = Some(r);
                    })
                    .expect("spawning a parallel branch thread");
            }
        });
        let mut out = Array::with_capacity(n);
        let mut failures = Vec::new();
        for (i, slot) in results.into_iter().enumerate() {
            match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
                Some(Ok(v)) => out.push(v),
                Some(Err(e)) if !e.is_catchable() => return Err(e),
                Some(Err(e)) => {
                    failures.push(format!("[{i}] {}", plain_message(&e)));
                    out.push(Dynamic::UNIT);
                }
                // Not started because the run is stopping.
                None => {
                    return Err(
                        EvalAltResult::ErrorTerminated(TOKEN_STOP.into(), Position::NONE).into(),
                    )
                }
            }
        }
        if failures.is_empty() {
            Ok(out)
        } else {
            Err(script_error(
                format!(
                    "{} of {n} parallel branches failed: {}",
                    failures.len(),
                    failures.join("; ")
                ),
                pos,
            ))
        }
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
