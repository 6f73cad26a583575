//! The state of every positional entry of a run (steps, sleeps, gates, recorded values), and the
//! one function that moves a step from state to state. A run's view is a fold of its events
//! through [`StepState::apply`]; resume and `status` both read that view.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::event::{Decision, Event, EventRecord};
use super::run::{GroupTally, Verdict};
use super::Error;

/// Where one step stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StepState {
    /// An attempt is running, or was when the process died. `effects` says whether it had
    /// started to change things outside lifeboat: only then is a crash a doubt.
    Running {
        attempt: u32,
        started_at: u64,
        effects: bool,
    },
    /// An attempt failed and the next one may start at `retry_at`.
    RetryWait {
        attempt: u32,
        error: String,
        retry_at: u64,
        effects: bool,
    },
    /// Done: by its body, by its `check` (`reconciled`), or by a person's decision
    /// (`decided`: the decision's label and who made it).
    Succeeded {
        attempts: u32,
        result: Value,
        finished_at: u64,
        reconciled: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        decided: Option<String>,
    },
    /// Failed for good; the last attempt's `effects` is kept for a later resume's decision.
    Failed {
        attempts: u32,
        error: String,
        detail: Value,
        finished_at: u64,
        effects: bool,
    },
}

impl StepState {
    /// The transition function for steps: every legal move is listed here, everything else is
    /// an [`Error::IllegalTransition`]. `state` is `None` for a step never seen before.
    pub fn apply(state: Option<&StepState>, event: &Event, at: u64) -> Result<StepState, Error> {
        use StepState::*;
        let next = match (state, event) {
            // A first attempt, a retry after a wait, a re-run after a crash, or a new attempt of a
            // step that had failed for good (resume of a failed run).
            (
                None | Some(RetryWait { .. }) | Some(Running { .. }) | Some(Failed { .. }),
                Event::StepStarted { attempt, .. },
            ) => Running {
                attempt: *attempt,
                started_at: at,
                effects: false,
            },
            (
                Some(Running {
                    attempt,
                    started_at,
                    ..
                }),
                Event::StepEffect { attempt: a, .. },
            ) if a == attempt => Running {
                attempt: *attempt,
                started_at: *started_at,
                effects: true,
            },
            (
                Some(
                    Running { attempt, .. }
                    | RetryWait { attempt, .. }
                    | Failed {
                        attempts: attempt, ..
                    },
                ),
                Event::StepSucceeded {
                    result, reconciled, ..
                },
            ) => Succeeded {
                attempts: *attempt,
                result: result.clone(),
                finished_at: at,
                reconciled: *reconciled,
                decided: None,
            },
            // A person's decision about a step that is not done: it is done (with the value the
            // script will see), or it runs again as a fresh attempt that changed nothing so far.
            (
                Some(
                    Running { attempt, .. }
                    | RetryWait { attempt, .. }
                    | Failed {
                        attempts: attempt, ..
                    },
                ),
                Event::StepDecided {
                    decision,
                    by,
                    reason,
                    ..
                },
            ) => match decision {
                Decision::Skip { result } | Decision::Done { result } => Succeeded {
                    attempts: *attempt,
                    result: result.clone(),
                    finished_at: at,
                    reconciled: false,
                    decided: Some(format!("{} by {by}", decision.label())),
                },
                Decision::Retry | Decision::NotDone => RetryWait {
                    attempt: *attempt,
                    error: format!("{} by {by}: {reason}", decision.label()),
                    retry_at: at,
                    effects: false,
                },
            },
            (
                Some(Running {
                    attempt, effects, ..
                }),
                Event::StepFailed {
                    attempt: a,
                    error,
                    detail,
                    retry_at,
                    ..
                },
            ) if a == attempt => match retry_at {
                Some(retry_at) => RetryWait {
                    attempt: *attempt,
                    error: error.clone(),
                    retry_at: *retry_at,
                    effects: *effects,
                },
                None => Failed {
                    attempts: *attempt,
                    error: error.clone(),
                    detail: detail.clone(),
                    finished_at: at,
                    effects: *effects,
                },
            },
            // A step that was in flight at a crash and whose reconciliation failed.
            (
                Some(
                    Running {
                        attempt, effects, ..
                    }
                    | RetryWait {
                        attempt, effects, ..
                    },
                ),
                Event::StepFailed {
                    error,
                    detail,
                    retry_at: None,
                    ..
                },
            ) => Failed {
                attempts: *attempt,
                error: error.clone(),
                detail: detail.clone(),
                finished_at: at,
                effects: *effects,
            },
            (from, event) => {
                return Err(Error::IllegalTransition {
                    from: from.map_or("new", StepState::label).to_string(),
                    event: format!("{event:?}"),
                })
            }
        };
        Ok(next)
    }

    pub fn label(&self) -> &'static str {
        match self {
            StepState::Running { .. } => "running",
            StepState::RetryWait { .. } => "retry-wait",
            StepState::Succeeded { .. } => "succeeded",
            StepState::Failed { .. } => "failed",
        }
    }
}

/// One positional entry of a run, by kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Step {
        name: String,
        #[serde(flatten)]
        state: StepState,
        first_started_at: u64,
    },
    Sleep {
        until: u64,
        started_at: u64,
        finished_at: Option<u64>,
    },
    Gate {
        gate: String,
        message: String,
        opened_at: u64,
        /// How many different people must approve it.
        approvers: u32,
    },
    Value {
        name: String,
        value: Value,
    },
    Log {
        message: String,
    },
    /// `outcome(title, ...)` at this position.
    Outcome {
        title: String,
    },
}

impl Entry {
    /// What the runbook asked for at this position, for divergence messages: `step "x"`.
    pub fn describe(&self) -> String {
        match self {
            Entry::Step { name, .. } => format!("step {name:?}"),
            Entry::Sleep { .. } => "sleep".to_string(),
            Entry::Gate { gate, .. } => format!("approve {gate:?}"),
            Entry::Value { name, .. } => format!("{name}()"),
            Entry::Log { .. } => "log".to_string(),
            Entry::Outcome { title } => format!("outcome({title:?})"),
        }
    }
}

/// A run's gates: how many different people each needs, and who approved it so far. A gate
/// opens once that many people approved it; one person approving twice counts once.
#[derive(Debug, Default, Clone)]
pub struct Gates {
    needed: HashMap<String, u32>,
    votes: HashMap<String, Vec<String>>,
}

/// What an approval did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    /// Counted: the gate has `have` of the `needed` approvals.
    Counted { have: u32, needed: u32 },
    /// This person had already approved the gate: nothing changed.
    Again { have: u32, needed: u32 },
}

impl Gates {
    /// The gate was reached and needs `approvers` different people.
    pub fn opened(&mut self, gate: &str, approvers: u32) {
        self.needed.insert(gate.to_string(), approvers.max(1));
    }

    pub fn vote(&mut self, gate: &str, by: &str) -> Vote {
        let needed = self.needed(gate);
        let votes = self.votes.entry(gate.to_string()).or_default();
        if votes.iter().any(|v| v == by) {
            return Vote::Again {
                have: votes.len() as u32,
                needed,
            };
        }
        votes.push(by.to_string());
        Vote::Counted {
            have: votes.len() as u32,
            needed,
        }
    }

    /// How many different people `gate` needs (1 for a gate not reached yet).
    pub fn needed(&self, gate: &str) -> u32 {
        self.needed.get(gate).copied().unwrap_or(1)
    }

    /// Who approved `gate` so far, in order.
    pub fn votes(&self, gate: &str) -> &[String] {
        self.votes.get(gate).map_or(&[], |v| v.as_slice())
    }

    pub fn is_open(&self, gate: &str) -> bool {
        self.votes(gate).len() as u32 >= self.needed(gate)
    }

    /// Who opened `gate` ("alice, bob"), once it is open.
    pub fn approved_by(&self, gate: &str) -> Option<String> {
        self.is_open(gate).then(|| self.votes(gate).join(", "))
    }

    /// Opens `gate` at once, whoever approved it (plans and gates approved in advance).
    pub fn force_open(&mut self, gate: &str, by: &str) {
        self.vote(gate, by);
        self.needed.insert(gate.to_string(), 1);
    }
}

/// How a gate that needs several people stands: "2 different people must approve; 1 so far".
/// `None` for a gate one person opens.
pub fn approvers_text(needed: u32, have: u32) -> Option<String> {
    (needed > 1).then(|| match have {
        0 => format!("{needed} different people must approve"),
        n => format!("{needed} different people must approve; {n} so far"),
    })
}

/// Everything known about a run's positions, folded from its events.
#[derive(Debug, Default, Clone)]
pub struct RunView {
    pub entries: HashMap<String, Entry>,
    /// Keys in the order they first appeared.
    pub order: Vec<String>,
    /// The gates reached and who approved them.
    pub gates: Gates,
    /// The highest event sequence seen.
    pub last_seq: u64,
    /// People's decisions about steps, in order.
    pub decisions: Vec<DecisionRecord>,
    /// The last pace lifeboat set for its OVH calls, and why (absent: never changed).
    pub pace: Option<(Option<f64>, usize, String)>,
    /// Every failed attempt of every step, in order: what it met (OVH's answer and query id)
    /// and when the next try was due.
    pub failed_attempts: Vec<AttemptRecord>,
    /// Every `log()` and `warn()` line, in order.
    pub log: Vec<LogLine>,
    /// What the runbook declared it recovered, one group per `outcome()` title, in the order
    /// first declared.
    pub outcome: Vec<OutcomeGroup>,
}

/// A line the runbook logged, as reports list them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogLine {
    pub at: u64,
    pub message: String,
    /// From `warn()`: something left undone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
}

/// One `outcome(title, items)` declaration: a table of the things a run set out to recover.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutcomeGroup {
    pub title: String,
    /// The item fields to show, in order (`recovered` is shown apart).
    pub columns: Vec<String>,
    /// Maps, each with `recovered: true|false`.
    pub items: Vec<Value>,
}

impl OutcomeGroup {
    pub fn is_recovered(item: &Value) -> bool {
        item.get("recovered").and_then(Value::as_bool) == Some(true)
    }

    pub fn not_recovered(&self) -> impl Iterator<Item = &Value> {
        self.items.iter().filter(|i| !Self::is_recovered(i))
    }

    /// An item's cell for `column`: strings as they are, nothing for null, other values as JSON.
    pub fn cell(item: &Value, column: &str) -> String {
        match item.get(column) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    }

    /// An item in one line: its non-empty cells, joined by " · ".
    pub fn line(&self, item: &Value) -> String {
        self.columns
            .iter()
            .map(|c| Self::cell(item, c))
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

/// One failed attempt of a step, as `status` and reports list them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub key: String,
    pub step: String,
    pub attempt: u32,
    pub error: String,
    pub at: u64,
    /// When the next attempt was due; absent: the step gave up (or paused).
    pub retry_at: Option<u64>,
}

/// A person's decision about a step, as `log`, `status` and reports show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecisionRecord {
    pub key: String,
    pub step: String,
    pub decision: String,
    pub by: String,
    pub reason: String,
    pub at: u64,
}

impl RunView {
    /// What the run recovered, as far as its runbook declared it.
    pub fn verdict(&self) -> Verdict {
        let items = || self.outcome.iter().flat_map(|g| g.items.iter());
        let recovered = items().filter(|i| OutcomeGroup::is_recovered(i)).count();
        let mut shortfall: Vec<String> = self
            .outcome
            .iter()
            .flat_map(|g| {
                g.not_recovered()
                    .map(move |item| format!("{}: {}", g.title, g.line(item)))
            })
            .collect();
        let warnings: Vec<&LogLine> = self.log.iter().filter(|l| l.warning).collect();
        shortfall.extend(warnings.iter().map(|l| format!("warning: {}", l.message)));
        let groups = self
            .outcome
            .iter()
            .map(|g| {
                let missed = g.not_recovered().count();
                GroupTally {
                    title: g.title.clone(),
                    recovered: g.items.len() - missed,
                    not_recovered: missed,
                }
            })
            .collect();
        Verdict {
            recovered,
            not_recovered: items().count() - recovered,
            warnings: warnings.len(),
            shortfall,
            groups,
        }
    }

    pub fn from_events(events: &[EventRecord]) -> Result<RunView, Error> {
        let mut view = RunView::default();
        for record in events {
            view.apply(record)?;
        }
        Ok(view)
    }

    pub fn apply(&mut self, record: &EventRecord) -> Result<(), Error> {
        self.last_seq = self.last_seq.max(record.seq);
        let at = record.at;
        match &record.event {
            Event::GateApproved { gate, by, .. } => {
                self.gates.vote(gate, by);
            }
            Event::StepStarted { key, name, .. } => {
                let prev = match self.entries.get(key) {
                    Some(Entry::Step {
                        state,
                        first_started_at,
                        ..
                    }) => Some((state.clone(), *first_started_at)),
                    Some(other) => {
                        return Err(Error::IllegalTransition {
                            from: other.describe(),
                            event: format!("{:?}", record.event),
                        })
                    }
                    None => None,
                };
                let state = StepState::apply(prev.as_ref().map(|p| &p.0), &record.event, at)?;
                let first_started_at = prev.map_or(at, |p| p.1);
                self.insert(
                    key,
                    Entry::Step {
                        name: name.clone(),
                        state,
                        first_started_at,
                    },
                );
            }
            Event::StepEffect { key, .. }
            | Event::StepSucceeded { key, .. }
            | Event::StepFailed { key, .. }
            | Event::StepDecided { key, .. } => match self.entries.get_mut(key) {
                Some(Entry::Step { state, name, .. }) => {
                    *state = StepState::apply(Some(state), &record.event, at)?;
                    if let Event::StepFailed {
                        attempt,
                        error,
                        retry_at,
                        ..
                    } = &record.event
                    {
                        self.failed_attempts.push(AttemptRecord {
                            key: key.clone(),
                            step: name.clone(),
                            attempt: *attempt,
                            error: error.clone(),
                            at,
                            retry_at: *retry_at,
                        });
                    }
                    if let Event::StepDecided {
                        decision,
                        by,
                        reason,
                        ..
                    } = &record.event
                    {
                        self.decisions.push(DecisionRecord {
                            key: key.clone(),
                            step: name.clone(),
                            decision: decision.label().to_string(),
                            by: by.clone(),
                            reason: reason.clone(),
                            at,
                        });
                    }
                }
                _ => {
                    return Err(Error::IllegalTransition {
                        from: "new".to_string(),
                        event: format!("{:?}", record.event),
                    })
                }
            },
            Event::SleepStarted { key, until } => self.insert(
                key,
                Entry::Sleep {
                    until: *until,
                    started_at: at,
                    finished_at: None,
                },
            ),
            Event::SleepFinished { key } => {
                if let Some(Entry::Sleep { finished_at, .. }) = self.entries.get_mut(key) {
                    *finished_at = Some(at);
                }
            }
            Event::GateOpened {
                key,
                gate,
                message,
                approvers,
            } => {
                self.gates.opened(gate, *approvers);
                self.insert(
                    key,
                    Entry::Gate {
                        gate: gate.clone(),
                        message: message.clone(),
                        opened_at: at,
                        approvers: *approvers,
                    },
                )
            }
            Event::ValueRecorded { key, name, value } => self.insert(
                key,
                Entry::Value {
                    name: name.clone(),
                    value: value.clone(),
                },
            ),
            Event::Logged {
                key,
                message,
                warning,
            } => {
                if let Some(key) = key {
                    self.insert(
                        key,
                        Entry::Log {
                            message: message.clone(),
                        },
                    );
                }
                self.log.push(LogLine {
                    at,
                    message: message.clone(),
                    warning: *warning,
                });
            }
            Event::OutcomeDeclared {
                key,
                title,
                columns,
                items,
            } => {
                if let Some(key) = key {
                    self.insert(
                        key,
                        Entry::Outcome {
                            title: title.clone(),
                        },
                    );
                }
                let group = OutcomeGroup {
                    title: title.clone(),
                    columns: columns.clone(),
                    items: items.clone(),
                };
                match self.outcome.iter_mut().find(|g| g.title == *title) {
                    Some(old) => *old = group,
                    None => self.outcome.push(group),
                }
            }
            Event::Paced {
                rate,
                concurrency,
                why,
            } => self.pace = Some((*rate, *concurrency, why.clone())),
            Event::RunStarted { .. }
            | Event::Planned { .. }
            | Event::RunPaused { .. }
            | Event::RunSucceeded { .. }
            | Event::RunFailed { .. }
            | Event::RunAborted { .. } => {}
        }
        Ok(())
    }

    fn insert(&mut self, key: &str, entry: Entry) {
        if self.entries.insert(key.to_string(), entry).is_none() {
            self.order.push(key.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(attempt: u32) -> Event {
        Event::StepStarted {
            key: "0".into(),
            name: "s".into(),
            attempt,
        }
    }
    fn effect(attempt: u32) -> Event {
        Event::StepEffect {
            key: "0".into(),
            attempt,
            what: "POST /x".into(),
        }
    }
    fn failed(attempt: u32, retry: bool) -> Event {
        Event::StepFailed {
            key: "0".into(),
            attempt,
            error: "boom".into(),
            detail: Value::Null,
            retry_at: retry.then_some(5),
        }
    }
    fn succeeded() -> Event {
        Event::StepSucceeded {
            key: "0".into(),
            result: Value::Null,
            reconciled: false,
        }
    }

    /// Every (state, event) pair: which are legal and where they lead.
    #[test]
    fn transition_table() {
        let running = StepState::Running {
            attempt: 1,
            started_at: 0,
            effects: false,
        };
        let retry = StepState::RetryWait {
            attempt: 1,
            error: "e".into(),
            retry_at: 5,
            effects: false,
        };
        let done = StepState::Succeeded {
            attempts: 1,
            result: Value::Null,
            finished_at: 0,
            reconciled: false,
            decided: None,
        };
        let failed_for_good = StepState::Failed {
            attempts: 1,
            error: "e".into(),
            detail: Value::Null,
            finished_at: 0,
            effects: true,
        };
        let decided = |decision: Decision| Event::StepDecided {
            key: "0".into(),
            decision,
            by: "ana@host".into(),
            reason: "checked in the manager".into(),
        };
        let skip = || {
            decided(Decision::Skip {
                result: Value::Null,
            })
        };
        let table: Vec<(Option<&StepState>, Event, Option<&str>)> = vec![
            (None, skip(), None),
            (Some(&running), skip(), Some("succeeded")),
            (
                Some(&running),
                decided(Decision::NotDone),
                Some("retry-wait"),
            ),
            (Some(&running), decided(Decision::Retry), Some("retry-wait")),
            (
                Some(&retry),
                decided(Decision::Done {
                    result: Value::Null,
                }),
                Some("succeeded"),
            ),
            (
                Some(&failed_for_good),
                decided(Decision::Retry),
                Some("retry-wait"),
            ),
            (Some(&failed_for_good), skip(), Some("succeeded")),
            (Some(&done), skip(), None),
            (Some(&done), decided(Decision::Retry), None),
            (None, started(1), Some("running")),
            (None, effect(1), None),
            (None, succeeded(), None),
            (None, failed(1, false), None),
            (Some(&running), started(2), Some("running")),
            (Some(&running), effect(1), Some("running")),
            (Some(&running), effect(2), None),
            (Some(&running), succeeded(), Some("succeeded")),
            (Some(&running), failed(1, true), Some("retry-wait")),
            (Some(&running), failed(1, false), Some("failed")),
            (Some(&retry), started(2), Some("running")),
            (Some(&retry), effect(1), None),
            (Some(&retry), succeeded(), Some("succeeded")),
            (Some(&retry), failed(1, true), None),
            (Some(&done), started(2), None),
            (Some(&done), effect(1), None),
            (Some(&done), succeeded(), None),
            (Some(&done), failed(1, false), None),
            (Some(&failed_for_good), started(2), Some("running")),
            (Some(&failed_for_good), effect(1), None),
            (Some(&failed_for_good), succeeded(), Some("succeeded")),
            (Some(&failed_for_good), failed(1, false), None),
        ];
        for (from, event, expected) in table {
            let got = StepState::apply(from, &event, 1).ok();
            assert_eq!(
                got.as_ref().map(StepState::label),
                expected,
                "from {from:?} on {event:?}"
            );
        }
    }

    #[test]
    fn effect_marks_the_running_attempt() {
        let s = StepState::apply(None, &started(1), 1).unwrap();
        let s = StepState::apply(Some(&s), &effect(1), 2).unwrap();
        assert_eq!(
            s,
            StepState::Running {
                attempt: 1,
                started_at: 1,
                effects: true
            }
        );
        let s = StepState::apply(Some(&s), &failed(1, false), 3).unwrap();
        assert!(matches!(s, StepState::Failed { effects: true, .. }));
    }
}
