//! The engine: runs a runbook against the journal.
//!
//! A run is executed by evaluating its runbook from the top, every time: on a first run and on
//! every resume. Each journaled call (`step`, `sleep`, `approve`, `now`, `log`) takes the next
//! position of its lane (see `lane`) and asks the journal what happened there before: a
//! finished step returns its recorded result without running its body, a step found in flight
//! is reconciled, and the first position never reached runs for real. Rhai has no way to
//! suspend and restore an evaluation, so deterministic replay over a journal is the mechanism.
//!
//! The engine owns no terminal and no socket: progress goes to an [`Observer`], time comes
//! from a [`Clock`], and the control API reaches live runs through [`LiveRuns`].

pub mod diagnostics;
pub mod lane;
pub mod mail_api;
pub mod modules;
pub mod ovh_api;
pub mod params;
pub mod run;
pub mod runbook;
pub mod sandbox;
mod script_api;
pub mod step;
pub mod undo;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::clock::{Clock, Millis};
use crate::journal::{
    self, approvers_text, Entry, Event, Journal, Mode, PauseReason, RunId, RunRecord, RunState,
    RunView, RunbookInfo, StepState, Verdict, Vote,
};
pub use runbook::{Declaration, Runbook};
pub use sandbox::Limits;

use diagnostics::{error_location, plain_message};
use run::{is_stop, lock, RunContext};
use runbook::script_scope;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read the runbook: {message}")]
    RunbookUnreadable { path: String, message: String },
    #[error("{path}:{line}:{column}: {message}")]
    Compile {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Declaration {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("parameter {name}: {message}")]
    Param { name: String, message: String },
    #[error(transparent)]
    Journal(#[from] journal::Error),
    #[error("the runbook no longer matches run's journal at position {key}: the journal has {recorded}, the runbook now asks for {requested} ({location}). Resume with the runbook the run started with, or start a new run")]
    Divergence {
        key: String,
        recorded: String,
        requested: String,
        location: String,
    },
    #[error("{}", in_doubt_message(run, key, name, why))]
    InDoubt {
        key: String,
        name: String,
        run: RunId,
        why: String,
    },
    #[error("{location}: {message}")]
    Limit { location: String, message: String },
    #[error("run {id} {reason}")]
    NotResumable { id: RunId, reason: String },
    #[error("run {id} cannot be undone: it {reason}")]
    NotUndoable { id: RunId, reason: String },
    #[error("run {run} paused: its journal cannot be written: {why}. Everything journaled before is kept, and a step that was running is reconciled when the run resumes. To go on: {fix}, then `lifeboat resume {run}`")]
    JournalUnwritable {
        run: RunId,
        why: String,
        fix: String,
    },
    /// Internal: the run paused (approval with --no-wait, step in doubt).
    #[error("the run paused: {0:?}")]
    Paused(PauseReason),
}

/// What a responder reads when a step is in doubt: what happened, and every way on.
pub fn in_doubt_message(run: &RunId, key: &str, name: &str, why: &str) -> String {
    let why = if why.is_empty() {
        "it was in flight when the previous process stopped, and it has no `check` to ask"
    } else {
        why
    };
    format!(
        "step {name:?} (position {key}) may have changed things, and lifeboat cannot tell whether it did: {why}. \
It will not be run again on its own. Find out whether it took effect (OVH's manager, the API), then:
  it took effect:         lifeboat resolve {run} {name:?} --done --reason TEXT [--result JSON]
  it did not:             lifeboat resolve {run} {name:?} --not-done --reason TEXT
  run it again anyway:    lifeboat retry {run} {name:?} [--reason TEXT]
  do not run it:          lifeboat skip {run} {name:?} --result JSON --reason TEXT
  stop the run for good:  lifeboat abort {run}"
    )
}

impl Error {
    /// 2 for bad input (the runbook, a parameter, a run id, the store); 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Journal(e) => e.exit_code(),
            Error::Limit { .. } => 1,
            Error::Paused(_) | Error::InDoubt { .. } | Error::JournalUnwritable { .. } => 3,
            _ => 2,
        }
    }
}

/// What a live run reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    Started {
        runbook: &'a str,
        resumed: bool,
    },
    /// A finished step answered from the journal.
    Replayed {
        name: &'a str,
    },
    StepStarted {
        key: &'a str,
        name: &'a str,
        attempt: u32,
    },
    StepSucceeded {
        name: &'a str,
        elapsed_ms: u64,
        reconciled: bool,
    },
    /// A step waiting for an OVH task heard how it stands.
    TaskWait {
        name: &'a str,
        /// OVH's state of the task (`doing`, `todo`...), and its progress when OVH gives one.
        status: &'a str,
        percent: Option<u64>,
        /// Engine-clock time since the wait began, and what is left of its timeout.
        elapsed_ms: u64,
        left_ms: u64,
    },
    StepRetry {
        name: &'a str,
        attempt: u32,
        error: &'a str,
        wait_ms: u64,
    },
    StepFailed {
        name: &'a str,
        attempts: u32,
        error: &'a str,
    },
    /// The step may have changed things and nothing can tell whether it did: the run pauses.
    StepInDoubt {
        name: &'a str,
        why: &'a str,
    },
    Sleeping {
        until: Millis,
        remaining_ms: u64,
    },
    /// The run waits at a gate that needs `needed` different people, `have` of whom approved.
    WaitingApproval {
        gate: &'a str,
        message: &'a str,
        needed: u32,
        have: u32,
    },
    /// `by` approved the gate; it waits for `more` approvals from other people (0: open).
    GateApproved {
        gate: &'a str,
        by: &'a str,
        more: u32,
    },
    Log {
        message: &'a str,
    },
    /// This execution is over; `outcome` is absent when the engine stopped it with an error.
    Finished {
        outcome: Option<&'a Outcome>,
    },
}

/// Receives progress; the CLI prints it, tests may collect it.
pub trait Observer: Send + Sync {
    fn progress(&self, run: &RunId, progress: Progress<'_>);
}

/// An observer that ignores everything.
pub struct Silent;

impl Observer for Silent {
    fn progress(&self, _: &RunId, _: Progress<'_>) {}
}

/// Asks a person at a terminal to open a gate; returns true for yes. Blocking.
pub type Prompt = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// How this process executes a run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// At an unapproved gate, pause (exit 3) instead of waiting.
    pub no_wait: bool,
    /// Steps (by name or position) found in flight that the operator says to run again.
    pub retry_inflight: Vec<String>,
    /// Asks at the terminal when a gate is reached.
    pub prompt: Option<Prompt>,
    /// On a shared store, take the run only if its lease is free now (a worker's claim),
    /// instead of waiting for a dead holder's lease to run out.
    pub claim_only: bool,
}

/// How a run ended (this time).
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The runbook ran to its end; `verdict` says whether it recovered everything it declared.
    Succeeded {
        result: Value,
        verdict: Verdict,
    },
    /// It had succeeded before; nothing ran.
    AlreadySucceeded {
        result: Value,
        verdict: Verdict,
    },
    Failed {
        error: String,
    },
    Aborted {
        by: String,
    },
    Paused(PauseReason),
}

/// The exit code of a run that succeeded with something not recovered (or a warning).
pub const EXIT_PARTIAL: u8 = 4;

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Succeeded { verdict, .. } | Outcome::AlreadySucceeded { verdict, .. } => {
                if verdict.is_partial() {
                    EXIT_PARTIAL
                } else {
                    0
                }
            }
            Outcome::Failed { .. } | Outcome::Aborted { .. } => 1,
            Outcome::Paused(_) => 3,
        }
    }
}

/// What the control API knows about a run executing in this process.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct LiveInfo {
    pub pid: u32,
    pub waiting_gate: Option<String>,
    /// Steps waiting for an OVH task, with how the task last stood.
    #[serde(default)]
    pub task_waits: Vec<String>,
}

/// How a task wait stands, as the terminal and `status` say it: "OVH says doing, 40% (2h 10m
/// elapsed, 9h 50m left before its timeout)".
pub fn task_wait_text(status: &str, percent: Option<u64>, elapsed_ms: u64, left_ms: u64) -> String {
    let percent = percent.map(|p| format!(", {p}%")).unwrap_or_default();
    format!(
        "OVH says {status}{percent} ({} elapsed, {} left before its timeout)",
        crate::clock::format_duration(elapsed_ms),
        crate::clock::format_duration(left_ms)
    )
}

/// The runs this process is executing, reachable from the control API.
#[derive(Default)]
pub struct LiveRuns {
    runs: Mutex<HashMap<RunId, Arc<RunContext>>>,
}

impl LiveRuns {
    pub fn info(&self, id: &RunId) -> Option<LiveInfo> {
        lock(&self.runs).get(id).map(|ctx| LiveInfo {
            pid: std::process::id(),
            waiting_gate: ctx.waiting_gate(),
            task_waits: ctx.task_waits(),
        })
    }

    pub fn all(&self) -> HashMap<RunId, LiveInfo> {
        lock(&self.runs)
            .iter()
            .map(|(id, ctx)| {
                (
                    id.clone(),
                    LiveInfo {
                        pid: std::process::id(),
                        waiting_gate: ctx.waiting_gate(),
                        task_waits: ctx.task_waits(),
                    },
                )
            })
            .collect()
    }

    /// Opens a gate of a live run; `false` if the run is not live here.
    /// Counts `by`'s approval of a gate of a run live here; `None` if the run is not live here.
    pub fn approve(
        &self,
        id: &RunId,
        gate: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Option<Vote>, Error> {
        let ctx = lock(&self.runs).get(id).cloned();
        match ctx {
            Some(ctx) => ctx.approve(gate, by, reason).map(Some),
            None => Ok(None),
        }
    }

    /// Asks a live run to stop for good; `false` if the run is not live here.
    pub fn abort(&self, id: &RunId, by: &str) -> bool {
        match lock(&self.runs).get(id) {
            Some(ctx) => {
                ctx.request_abort(by);
                true
            }
            None => false,
        }
    }

    pub fn is_live(&self, id: &RunId) -> bool {
        lock(&self.runs).contains_key(id)
    }
}

/// Runs runbooks durably.
pub struct Engine {
    journal: Arc<Journal>,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn Observer>,
    limits: Limits,
    live: Arc<LiveRuns>,
    ovh: Option<ovh_api::OvhAccess>,
    mail: Option<mail_api::MailAccess>,
}

impl Engine {
    pub fn new(
        journal: Arc<Journal>,
        clock: Arc<dyn Clock>,
        observer: Arc<dyn Observer>,
        limits: Limits,
    ) -> Engine {
        Engine {
            journal,
            clock,
            observer,
            limits,
            live: Arc::default(),
            ovh: None,
            mail: None,
        }
    }

    /// Shares the registry of live runs with other engines of this process (the daemon runs
    /// several engines over one store, and one control API serves them all).
    pub fn with_live(mut self, live: Arc<LiveRuns>) -> Engine {
        self.live = live;
        self
    }

    /// Gives runbooks `notify` and `wait_email`, with this configuration.
    pub fn with_mail(mut self, access: mail_api::MailAccess) -> Engine {
        self.mail = Some(access);
        self
    }

    /// Gives runbooks the `ovh` object, backed by this client.
    pub fn with_ovh(mut self, access: ovh_api::OvhAccess) -> Engine {
        self.ovh = Some(access);
        self
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    pub fn live(&self) -> Arc<LiveRuns> {
        self.live.clone()
    }

    /// Records a new run (durably) and returns its id; [`Engine::execute`] runs it.
    pub fn create(
        &self,
        runbook: &Runbook,
        params: serde_json::Map<String, Value>,
        pre_approved: Vec<String>,
        mode: Mode,
    ) -> Result<RunId, Error> {
        let record = self.new_header(runbook, params, pre_approved, mode)?;
        self.journal.create_run(&record)?;
        Ok(record.id)
    }

    /// The header of a new run of `runbook`: a fresh id, created now, to run in this process.
    fn new_header(
        &self,
        runbook: &Runbook,
        params: serde_json::Map<String, Value>,
        pre_approved: Vec<String>,
        mode: Mode,
    ) -> Result<RunRecord, Error> {
        let now = self.clock.now();
        Ok(RunRecord {
            id: RunId::new(self.journal.unique()?),
            runbook: RunbookInfo {
                path: runbook.path.clone(),
                name: runbook.declaration.name.clone(),
                description: runbook.declaration.description.clone(),
                rto_secs: runbook.declaration.rto_secs,
            },
            source: runbook.source.clone(),
            modules: runbook.modules.clone(),
            params,
            pre_approved,
            mode,
            undo_of: None,
            created_at: now,
            updated_at: now,
            state: RunState::Running {
                pid: std::process::id(),
            },
        })
    }

    /// Executes run `id` from its journal: the whole runbook is replayed, finished steps
    /// answer from the journal, and work continues where it stopped. `replacement` swaps in an
    /// edited runbook; it must agree with everything already journaled.
    pub fn execute(
        &self,
        id: &RunId,
        replacement: Option<Runbook>,
        opts: RunOptions,
    ) -> Result<Outcome, Error> {
        let record = self.journal.run(id)?;
        let failed_step = match &record.state {
            RunState::Succeeded { result, verdict } => {
                return Ok(Outcome::AlreadySucceeded {
                    result: result.clone(),
                    verdict: verdict.clone(),
                })
            }
            RunState::Aborted { by } => {
                return Err(Error::NotResumable {
                    id: id.clone(),
                    reason: format!(
                        "was aborted by {by}; its journal is kept, start a new run to recover"
                    ),
                })
            }
            RunState::Failed { step, .. } => step.clone(),
            _ => None,
        };
        let runbook = match replacement {
            Some(rb) => rb,
            None => Runbook::from_stored(
                &record.runbook.path,
                record.source.clone(),
                record.modules.clone(),
                &self.limits,
            )?,
        };
        // On a shared store, this process alone drives the run from here on (until it stops).
        let _lease = if opts.claim_only {
            self.journal.claim_lease(id, &lease_owner())?
        } else {
            self.journal.take_lease(id, &lease_owner())?
        };
        let events = self.journal.events(id)?;
        let view = RunView::from_events(&events)?;
        let resumed = !events.is_empty();

        self.journal.append(
            id,
            self.clock.now(),
            Event::RunStarted {
                pid: std::process::id(),
                resumed,
            },
        )?;
        let ctx = Arc::new(RunContext::new(
            id.clone(),
            self.journal.clone(),
            self.clock.clone(),
            self.observer.clone(),
            self.limits,
            runbook.path.clone(),
            view,
            opts,
            record.pre_approved.clone(),
            failed_step,
            record.mode == Mode::Plan,
        ));
        lock(&self.live.runs).insert(id.clone(), ctx.clone());
        let label = match &record.undo_of {
            Some(of) => format!("{}, the way back of run {of}", runbook.path),
            None => runbook.path.clone(),
        };
        self.observer.progress(
            id,
            Progress::Started {
                runbook: &label,
                resumed,
            },
        );

        let outcome = self.evaluate(&ctx, &runbook, &record).map_err(|e| match e {
            Error::Journal(journal::Error::Unwritable { why, fix, .. }) => {
                Error::JournalUnwritable {
                    run: id.clone(),
                    why,
                    fix,
                }
            }
            e => e,
        });
        self.observer.progress(
            id,
            Progress::Finished {
                outcome: outcome.as_ref().ok(),
            },
        );
        let (outcome, event) = match outcome {
            Ok(outcome) => {
                let event = match &outcome {
                    Outcome::Succeeded { result, verdict }
                    | Outcome::AlreadySucceeded { result, verdict } => Event::RunSucceeded {
                        result: result.clone(),
                        verdict: verdict.clone(),
                    },
                    Outcome::Failed { error } => Event::RunFailed {
                        error: error.clone(),
                        step: ctx.last_step_failure(),
                    },
                    Outcome::Aborted { by } => Event::RunAborted { by: by.clone() },
                    Outcome::Paused(reason) => Event::RunPaused {
                        reason: reason.clone(),
                    },
                };
                (Ok(outcome), event)
            }
            Err(e) => {
                let event = Event::RunPaused {
                    reason: PauseReason::Stopped {
                        message: e.to_string(),
                    },
                };
                (Err(e), event)
            }
        };
        // An abort decided on another host is already in the store.
        let already = matches!(&event, Event::RunAborted { .. })
            && self.journal.run(id).is_ok_and(|r| r.state.is_final());
        let recorded = if already {
            Ok(())
        } else {
            self.journal
                .append_durable(id, self.clock.now(), event)
                .map(drop)
        };
        // Only now leave the live set: the control API then finds the final state on disk.
        lock(&self.live.runs).remove(id);
        // A run that already stopped on an error reports that error, not a second failure to
        // journal it (the same full disk, most often).
        let outcome = outcome?;
        recorded?;
        Ok(outcome)
    }

    /// The sandboxed script engine of one execution, its functions bound to `ctx` (which
    /// also receives the AST its closures are called against).
    fn script_engine(
        &self,
        ctx: &Arc<RunContext>,
        runbook: &Runbook,
    ) -> Result<rhai::Engine, Error> {
        let mut engine = sandbox::new_engine(&self.limits);
        script_api::register(&mut engine, ctx.clone());
        ovh_api::register(&mut engine, ctx.clone(), self.ovh.clone());
        mail_api::register(&mut engine, ctx.clone(), self.mail.clone());
        let callable = modules::install(&mut engine, &runbook.ast, &runbook.modules)?;
        ctx.set_ast(Arc::new(callable));
        Ok(engine)
    }

    /// The variables a runbook starts with: `params` and `ovh`.
    fn script_scope(&self, record: &RunRecord) -> rhai::Scope<'static> {
        let params: rhai::Map = rhai::serde::to_dynamic(&record.params)
            .ok()
            .and_then(|d| d.try_cast::<rhai::Map>())
            .unwrap_or_default();
        let mut scope = script_scope(params);
        scope.push_constant("ovh", ovh_api::OvhHandle);
        scope
    }

    /// Records (durably) a new run for a worker to drive (`lifeboat run --detach`).
    pub fn queue(
        &self,
        runbook: &Runbook,
        params: serde_json::Map<String, Value>,
        pre_approved: Vec<String>,
        mode: Mode,
    ) -> Result<RunId, Error> {
        let record = RunRecord {
            state: RunState::Queued,
            ..self.new_header(runbook, params, pre_approved, mode)?
        };
        self.journal.create_run(&record)?;
        Ok(record.id)
    }

    /// What undoing run `original` would do, in order, before anything runs.
    pub fn way_back(&self, original: &RunId) -> Result<undo::WayBack, Error> {
        let record = self.journal.run(original)?;
        undo::check_undoable(self, &record)?;
        undo::way_back(self, &record)
    }

    /// Records (durably) the undo run of `original`: same runbook, modules and parameters,
    /// linked to it. [`Engine::execute`] runs it.
    pub fn create_undo(
        &self,
        original: &RunId,
        pre_approved: Vec<String>,
        mode: Mode,
    ) -> Result<RunId, Error> {
        let of = self.journal.run(original)?;
        undo::check_undoable(self, &of)?;
        let now = self.clock.now();
        let record = RunRecord {
            id: RunId::new(self.journal.unique()?),
            pre_approved,
            mode,
            undo_of: Some(of.id.clone()),
            created_at: now,
            updated_at: now,
            state: RunState::Running {
                pid: std::process::id(),
            },
            // The original's runbook, modules and parameters: its closures are replayed.
            ..of
        };
        self.journal.create_run(&record)?;
        Ok(record.id)
    }

    fn evaluate(
        &self,
        ctx: &Arc<RunContext>,
        runbook: &Runbook,
        record: &RunRecord,
    ) -> Result<Outcome, Error> {
        let engine = self.script_engine(ctx, runbook)?;
        let mut scope = self.script_scope(record);
        let _lane = lane::enter(String::new());
        let result = match &record.undo_of {
            None => engine.eval_ast_with_scope::<rhai::Dynamic>(&mut scope, &runbook.ast),
            Some(original) => undo::execute(self, ctx, &engine, original)?,
        };

        if let Some(by) = ctx.abort_requested() {
            return Ok(Outcome::Aborted { by });
        }
        match result {
            Ok(value) => {
                let result: Value = rhai::serde::from_dynamic(&value).unwrap_or(Value::Null);
                // Declarations made in earlier executions are in the journal, not in memory:
                // the verdict is the journal's.
                let verdict = RunView::from_events(&self.journal.events(&record.id)?)?.verdict();
                Ok(Outcome::Succeeded { result, verdict })
            }
            Err(e) if is_stop(&e) => match ctx.take_fatal() {
                Some(Error::Paused(reason)) => Ok(Outcome::Paused(reason)),
                Some(Error::InDoubt { key, name, why, .. }) => {
                    Ok(Outcome::Paused(PauseReason::StepInDoubt { key, name, why }))
                }
                Some(Error::Limit { location, message }) => Ok(Outcome::Failed {
                    error: format!("{location}: {message}"),
                }),
                Some(other) => Err(other),
                None => Ok(Outcome::Failed {
                    error: "the run was stopped".to_string(),
                }),
            },
            Err(e) => Ok(Outcome::Failed {
                error: describe_failure(&runbook.path, &e, &self.limits),
            }),
        }
    }
}

/// Who drives a run under a lease: this host, this process, and a random id (a process id can
/// be reused after a reboot).
fn lease_owner() -> String {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown-host".to_string());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{host} pid {} id {:08x}",
        std::process::id(),
        nanos ^ std::process::id().rotate_left(16)
    )
}

/// The message for an error that ended a run, with its runbook position and, for limits, what
/// to raise.
fn describe_failure(path: &str, err: &rhai::EvalAltResult, limits: &Limits) -> String {
    use rhai::EvalAltResult as E;
    let location = error_location(path, err);
    let message = match err.unwrap_inner() {
        E::ErrorTooManyOperations(_) => format!(
            "the runbook exceeded its limit of {} operations (an endless loop?); raise it with --max-operations",
            limits.max_operations
        ),
        E::ErrorDataTooLarge(what, _) => format!(
            "{what} exceeded its size limit (strings {} bytes, arrays and maps {} items); raise it with --max-string-size or --max-collection-size",
            limits.max_string_size, limits.max_collection_size
        ),
        E::ErrorStackOverflow(_) => format!("calls nested deeper than {}; raise it with --max-call-depth", limits.max_call_depth),
        _ => plain_message(err),
    };
    format!("{location}: {message}")
}

/// One line per step of a run, for `status`: built from the journal's view.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepSummary {
    pub key: String,
    pub kind: &'static str,
    pub name: String,
    pub state: String,
    pub attempts: u32,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// The steps, sleeps and gates of a run in the order they were first reached.
pub fn summarize(view: &RunView) -> Vec<StepSummary> {
    let mut out = Vec::new();
    for key in &view.order {
        let Some(entry) = view.entries.get(key) else {
            continue;
        };
        let summary = match entry {
            Entry::Step {
                name,
                state,
                first_started_at,
            } => {
                let (label, attempts, finished, error, result) = match state {
                    StepState::Running { attempt, .. } => ("running", *attempt, None, None, None),
                    StepState::RetryWait { attempt, error, .. } => {
                        ("retry-wait", *attempt, None, Some(error.clone()), None)
                    }
                    StepState::Succeeded {
                        attempts,
                        result,
                        finished_at,
                        reconciled,
                        decided,
                    } => (
                        match decided {
                            Some(d) => d.as_str(),
                            None if *reconciled => "succeeded (check)",
                            None => "succeeded",
                        },
                        *attempts,
                        Some(*finished_at),
                        None,
                        Some(result.clone()),
                    ),
                    StepState::Failed {
                        attempts,
                        error,
                        finished_at,
                        ..
                    } => (
                        "failed",
                        *attempts,
                        Some(*finished_at),
                        Some(error.clone()),
                        None,
                    ),
                };
                StepSummary {
                    key: key.clone(),
                    kind: "step",
                    name: name.clone(),
                    state: label.to_string(),
                    attempts,
                    started_at: Some(*first_started_at),
                    finished_at: finished,
                    duration_ms: finished.map(|f| f.saturating_sub(*first_started_at)),
                    error,
                    result,
                }
            }
            Entry::Sleep {
                until,
                started_at,
                finished_at,
            } => StepSummary {
                key: key.clone(),
                kind: "sleep",
                name: format!(
                    "sleep {}",
                    crate::clock::format_duration(until.saturating_sub(*started_at))
                ),
                state: if finished_at.is_some() {
                    "done"
                } else {
                    "waiting"
                }
                .to_string(),
                attempts: 0,
                started_at: Some(*started_at),
                finished_at: *finished_at,
                duration_ms: finished_at.map(|f| f.saturating_sub(*started_at)),
                error: None,
                result: None,
            },
            Entry::Gate {
                gate, opened_at, ..
            } => {
                let state = match view.gates.approved_by(gate) {
                    Some(by) => format!("approved by {by}"),
                    None => match view.gates.votes(gate) {
                        [] => match approvers_text(view.gates.needed(gate), 0) {
                            Some(people) => format!("waiting: {people}"),
                            None => "waiting".to_string(),
                        },
                        some => format!(
                            "waiting: {} of {} approvals ({})",
                            some.len(),
                            view.gates.needed(gate),
                            some.join(", ")
                        ),
                    },
                };
                StepSummary {
                    key: key.clone(),
                    kind: "gate",
                    name: format!("approve {gate}"),
                    state,
                    attempts: 0,
                    started_at: Some(*opened_at),
                    finished_at: None,
                    duration_ms: None,
                    error: None,
                    result: None,
                }
            }
            Entry::Value { .. } | Entry::Log { .. } | Entry::Outcome { .. } => continue,
        };
        out.push(summary);
    }
    out
}

/// The gates of a run that are open and not yet approved.
pub fn open_gates(view: &RunView) -> Vec<String> {
    view.order
        .iter()
        .filter_map(|k| match view.entries.get(k) {
            Some(Entry::Gate { gate, .. }) if !view.gates.is_open(gate) => Some(gate.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check` knows exactly the functions a run registers: the lists in `script_api` and
    /// `ovh_api` cannot drift from the registrations.
    #[test]
    fn check_knows_every_registered_function() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(dir.path()).unwrap());
        let ctx = Arc::new(RunContext::new(
            RunId::parse("r").unwrap(),
            journal,
            Arc::new(crate::clock::SystemClock),
            Arc::new(Silent),
            Limits::default(),
            "rb.rhai".into(),
            RunView::default(),
            RunOptions::default(),
            vec![],
            None,
            false,
        ));
        let mut engine = rhai::Engine::new_raw();
        script_api::register(&mut engine, ctx.clone());
        ovh_api::register(&mut engine, ctx.clone(), None);
        mail_api::register(&mut engine, ctx, None);
        let mut registered: Vec<String> = engine
            .gen_fn_signatures(false)
            .iter()
            .filter_map(|s| s.split('(').next().map(str::to_string))
            .collect();
        registered.sort();
        registered.dedup();
        let mut listed: Vec<String> = script_api::FUNCTIONS
            .iter()
            .chain(ovh_api::METHODS)
            .chain(mail_api::FUNCTIONS)
            .map(|s| s.to_string())
            .collect();
        listed.sort();
        listed.dedup();
        assert_eq!(registered, listed);
    }
}
