//! The events of a run: the append-only record that `lifeboat log` shows and that resume
//! replays. Every change to a run is one event; everything else (step states, the run's state)
//! is computed from them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::run::Verdict;

/// Why a run stopped without finishing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PauseReason {
    /// Waiting at a human gate; `lifeboat approve RUN GATE` opens it.
    Approval { gate: String },
    /// A step may have changed something and nothing lifeboat can ask says whether it did: it
    /// was in flight when the process died, or its last attempt ended with its outcome unknown,
    /// and it has no `check` that could answer (nor `idempotent: true`). A person decides with
    /// `lifeboat resolve`, `retry` or `skip`. `why` says what happened, for the message.
    StepInDoubt {
        key: String,
        name: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        why: String,
    },
    /// A gate declared with `on_timeout: "pause"` waited `after` without an approval.
    GateTimeout { gate: String, after: String },
    /// The engine stopped the run with an error that a person must address (for instance the
    /// runbook given to resume no longer matches the journal).
    Stopped { message: String },
}

/// What a person decided about a step the engine could not decide on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Run the step again (`lifeboat retry`).
    Retry,
    /// Treat the step as done, with this result for the script (`lifeboat skip`).
    Skip { result: Value },
    /// The step's change did happen (`lifeboat resolve --done`).
    Done { result: Value },
    /// The step's change did not happen; its retry policy applies (`lifeboat resolve --not-done`).
    NotDone,
}

impl Decision {
    /// The command that records it, for `log`, `status` and reports.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Retry => "retry",
            Decision::Skip { .. } => "skip",
            Decision::Done { .. } => "resolved done",
            Decision::NotDone => "resolved not done",
        }
    }
}

/// One thing that happened to a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A process started executing the run (first start or resume).
    RunStarted {
        pid: u32,
        resumed: bool,
    },
    /// An attempt of a step's body began.
    StepStarted {
        key: String,
        name: String,
        attempt: u32,
    },
    /// The attempt is about to make its first change outside lifeboat (a mutating API call, a
    /// notification). Written and flushed before that change leaves the process: it is what
    /// makes a step "in doubt" after a crash.
    StepEffect {
        key: String,
        attempt: u32,
        what: String,
    },
    /// The step is done; `reconciled` when its `check` said so rather than its body.
    StepSucceeded {
        key: String,
        result: Value,
        reconciled: bool,
    },
    /// An attempt failed; `retry_at` says when the next attempt may start, `None` if none will.
    /// `detail` keeps a structured error value (an API error's fields) when the body threw one.
    StepFailed {
        key: String,
        attempt: u32,
        error: String,
        #[serde(default, skip_serializing_if = "Value::is_null")]
        detail: Value,
        retry_at: Option<u64>,
    },
    /// A person decided about a step: who (`user@host`, or a web identity) and why.
    StepDecided {
        key: String,
        #[serde(flatten)]
        decision: Decision,
        by: String,
        reason: String,
    },
    /// lifeboat changed the pace of its OVH calls: `rate` requests per second (none: no limit)
    /// and `concurrency` at once, because of `why` (OVH overloaded, or recovered).
    Paced {
        rate: Option<f64>,
        concurrency: usize,
        why: String,
    },
    /// A durable sleep began and ends at `until` (epoch ms).
    SleepStarted {
        key: String,
        until: u64,
    },
    SleepFinished {
        key: String,
    },
    /// A human gate was reached.
    GateOpened {
        key: String,
        gate: String,
        message: String,
        /// How many different people must approve it (`approvers: 2`); 1 when absent.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        approvers: u32,
    },
    /// A person (or `--approve`) approved a gate. It opens once `approvers` different
    /// people have.
    GateApproved {
        gate: String,
        by: String,
        /// Why, when they gave a reason (the web page asks for one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A value the runbook must see identically on replay (`now()`).
    ValueRecorded {
        key: String,
        name: String,
        value: Value,
    },
    /// A line from `log()`, or from `warn()` (`warning`: something the run left undone, which
    /// makes a succeeded run partial); `key` is `None` when it was logged inside a step body
    /// (the body's own journaling covers it).
    Logged {
        key: Option<String>,
        message: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        warning: bool,
    },
    /// `outcome(title, items)`: what the run recovered, one item per thing it set out to recover
    /// (each a map with `recovered: true|false` and the columns to show). A later declaration
    /// with the same title replaces the earlier one.
    OutcomeDeclared {
        key: Option<String>,
        title: String,
        columns: Vec<String>,
        items: Vec<Value>,
    },
    /// Plan mode: a change the run would have made (not sent), in the step `step`.
    Planned {
        step: Option<String>,
        call: String,
        body: Value,
    },
    RunPaused {
        reason: PauseReason,
    },
    RunSucceeded {
        result: Value,
        /// What the runbook declared it recovered (absent: it declared nothing).
        #[serde(default, skip_serializing_if = "Verdict::is_undeclared")]
        verdict: Verdict,
    },
    /// The run failed; `step` names the step whose failure ended it, if one did.
    RunFailed {
        error: String,
        step: Option<String>,
    },
    RunAborted {
        by: String,
    },
}

impl Event {
    /// The positional key this event belongs to, for step-level events.
    pub fn key(&self) -> Option<&str> {
        match self {
            Event::StepStarted { key, .. }
            | Event::StepEffect { key, .. }
            | Event::StepSucceeded { key, .. }
            | Event::StepFailed { key, .. }
            | Event::StepDecided { key, .. }
            | Event::SleepStarted { key, .. }
            | Event::SleepFinished { key }
            | Event::GateOpened { key, .. }
            | Event::ValueRecorded { key, .. } => Some(key),
            Event::Logged { key, .. } | Event::OutcomeDeclared { key, .. } => key.as_deref(),
            _ => None,
        }
    }

    /// Events that move the run's own state (see `RunState::apply`).
    pub fn is_run_level(&self) -> bool {
        matches!(
            self,
            Event::RunStarted { .. }
                | Event::RunPaused { .. }
                | Event::RunSucceeded { .. }
                | Event::RunFailed { .. }
                | Event::RunAborted { .. }
        )
    }
}

/// An event as stored: its sequence in the store and when it happened (epoch ms, engine clock).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: u64,
    pub at: u64,
    #[serde(flatten)]
    pub event: Event,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}
