//! [`Service`]: the one implementation of every control request, against a journal and the
//! runs live in this process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Error, Request, Response};
use crate::clock::Clock;
use crate::engine::{open_gates, LiveRuns};
use crate::journal::{Decision, Entry, Event, Journal, RunId, RunView, StepState};

/// Answers control requests against a journal and the runs live in this process.
pub struct Service {
    journal: Arc<Journal>,
    live: Arc<LiveRuns>,
    clock: Arc<dyn Clock>,
}

impl Service {
    pub fn new(journal: Arc<Journal>, live: Arc<LiveRuns>, clock: Arc<dyn Clock>) -> Service {
        Service {
            journal,
            live,
            clock,
        }
    }

    pub fn handle(&self, request: Request) -> Result<Response, Error> {
        match request {
            Request::Runs => {
                let runs = self.journal.runs()?;
                let mut leases = HashMap::new();
                if self.journal.is_shared() {
                    for run in runs.iter().filter(|r| !r.state.is_final()) {
                        if let Some(lease) = self.journal.lease(&run.id)? {
                            leases.insert(run.id.clone(), lease);
                        }
                    }
                }
                Ok(Response::Runs {
                    runs,
                    live: self.live.all(),
                    leases,
                })
            }
            Request::Run { id } => Ok(Response::Run {
                run: Box::new(self.journal.run(&id)?),
                events: self.journal.events(&id)?,
                live: self.live.info(&id),
                lease: self.journal.lease(&id)?,
            }),
            Request::Approve {
                id,
                gate,
                by,
                reason,
            } => self.approve(&id, &gate, &by, reason.as_deref()),
            Request::Abort { id, by, reason } => {
                let by = match reason {
                    Some(why) => format!("{by} ({why})"),
                    None => by,
                };
                self.abort(&id, &by)
            }
            Request::Decide {
                id,
                step,
                decision,
                by,
                reason,
            } => self.decide(&id, &step, decision, &by, &reason),
            Request::Export { id } => Ok(Response::Export {
                export: Box::new(self.journal.export(&id)?),
            }),
            Request::Import { export } => {
                self.journal.import(&export)?;
                Ok(Response::Done {
                    message: format!(
                        "imported run {} ({} events)",
                        export.run.id,
                        export.events.len()
                    ),
                })
            }
            Request::Stats => Ok(Response::Stats {
                ovh_calls: crate::ovh::stats::snapshot(),
            }),
            Request::Owner => Ok(Response::Owner {
                pid: std::process::id(),
                runs: self.live.all().into_keys().collect(),
            }),
        }
    }

    fn approve(
        &self,
        id: &RunId,
        gate: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Response, Error> {
        let run = self.journal.run(id)?;
        if run.state.is_final() {
            return Err(refused(
                format!(
                    "run {id} has already {}; there is nothing to approve",
                    run.state.label()
                ),
                2,
            ));
        }
        let view = RunView::from_events(&self.journal.events(id)?)?;
        let open = open_gates(&view);
        if !open.iter().any(|g| g == gate) {
            let open = if open.is_empty() {
                "none".to_string()
            } else {
                open.join(", ")
            };
            return Err(refused(
                format!("run {id} is not waiting at gate {gate:?} (open gates: {open})"),
                2,
            ));
        }
        let (before, needed) = (view.gates.votes(gate), view.gates.needed(gate));
        if before.iter().any(|v| v == by) {
            return Err(refused(
                format!(
                    "{by} has already approved gate {gate:?} of run {id}; it needs {needed} approvals from different people ({} so far: {}): someone else must approve",
                    before.len(),
                    before.join(", ")
                ),
                2,
            ));
        }
        let have = before.len() as u32 + 1;
        let more = needed.saturating_sub(have);
        // A run live in this process counts (and journals) the approval itself.
        let live = self
            .live
            .approve(id, gate, by, reason)
            .map_err(|e| refused(e.to_string(), e.exit_code()))?;
        if live.is_none() {
            self.journal.append_durable(
                id,
                self.clock.now(),
                Event::GateApproved {
                    gate: gate.to_string(),
                    by: by.to_string(),
                    reason: reason.map(str::to_string),
                },
            )?;
            // On a shared store its driver may be waiting on another host: wake it.
            self.journal.notify(id)?;
        }
        let message = if more > 0 {
            let mut who = before.to_vec();
            who.push(by.to_string());
            format!(
                "approved gate {gate:?} of run {id}: {have} of {needed} approvals ({}); it waits for {more} more from someone else",
                who.join(", ")
            )
        } else if live.is_some()
            || self.journal.is_shared()
                && self.journal.lease(id)?.is_some_and(|l| l.expires_in > 0.0)
        {
            // Its driver goes on by itself.
            format!("approved gate {gate:?} of run {id}")
        } else {
            format!("approved gate {gate:?} of run {id}; continue it with `lifeboat resume {id}`")
        };
        Ok(Response::Done { message })
    }

    fn abort(&self, id: &RunId, by: &str) -> Result<Response, Error> {
        let run = self.journal.run(id)?;
        if run.state.is_final() {
            return Err(refused(
                format!(
                    "run {id} has already {}; there is nothing to abort",
                    run.state.label()
                ),
                2,
            ));
        }
        if self.live.abort(id, by) {
            // Wait for the run to record its own end, so the caller sees the final state.
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.live.is_live(id) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            self.journal.append_durable(
                id,
                self.clock.now(),
                Event::RunAborted { by: by.to_string() },
            )?;
            self.journal.notify(id)?;
        }
        Ok(Response::Done {
            message: format!("aborted run {id}; its journal is kept (`lifeboat log {id}`)"),
        })
    }
}

impl Service {
    /// Journals a person's decision about a step, durably. Refused for a finished run, a run
    /// being executed right now (the engine decides there), an unknown or ambiguous step, and
    /// a step already done.
    fn decide(
        &self,
        id: &RunId,
        step: &str,
        decision: Decision,
        by: &str,
        reason: &str,
    ) -> Result<Response, Error> {
        let run = self.journal.run(id)?;
        if run.state.is_final() {
            return Err(refused(
                format!(
                    "run {id} has already {}; there is nothing to decide",
                    run.state.label()
                ),
                2,
            ));
        }
        if self.live.is_live(id) {
            return Err(refused(
                format!("run {id} is being executed right now; decide once it has paused or stopped (`lifeboat status {id}`)"),
                2,
            ));
        }
        let view = RunView::from_events(&self.journal.events(id)?)?;
        let matching: Vec<(&String, &String, &StepState)> = view
            .order
            .iter()
            .filter_map(|k| match view.entries.get(k) {
                Some(Entry::Step { name, state, .. }) if k == step || name == step => {
                    Some((k, name, state))
                }
                _ => None,
            })
            .collect();
        let (key, name, state) = match matching.as_slice() {
            [one] => *one,
            [] => {
                return Err(refused(
                    format!("run {id} has no step {step:?} (`lifeboat status {id}` lists its steps by name and position)"),
                    2,
                ))
            }
            many => {
                let keys: Vec<&str> = many.iter().map(|(k, _, _)| k.as_str()).collect();
                return Err(refused(
                    format!(
                        "run {id} has several steps named {step:?} (positions {}): name one by its position",
                        keys.join(", ")
                    ),
                    2,
                ));
            }
        };
        if let StepState::Succeeded { .. } = state {
            return Err(refused(
                format!(
                    "step {name:?} of run {id} has already succeeded; there is nothing to decide"
                ),
                2,
            ));
        }
        let label = decision.label();
        self.journal.append_durable(
            id,
            self.clock.now(),
            Event::StepDecided {
                key: key.clone(),
                decision,
                by: by.to_string(),
                reason: reason.to_string(),
            },
        )?;
        Ok(Response::Done {
            message: format!(
                "step {name:?} (position {key}) of run {id}: {label} by {by}: {reason}"
            ),
        })
    }
}

pub(super) fn refused(message: String, exit_code: u8) -> Error {
    Error::Refused { message, exit_code }
}
