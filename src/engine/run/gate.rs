//! Gates in a run: `approve(gate, message, #{ approvers, timeout, on_timeout })` waits for as
//! many different people as the gate needs, from this terminal, the control socket, the war
//! room or (on a shared store) another host; each approval is journaled with who gave it.

use super::*;

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
                    after = Some(crate::engine::step::duration_option("approve option timeout", &v)?)
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

impl RunContext {
    /// Counts `by`'s approval of `gate`: journaled durably, then the waiting script is woken
    /// (it goes on once as many different people as the gate needs have approved). A person
    /// who already approved it is not counted again, and nothing is journaled.
    pub(crate) fn approve(
        &self,
        gate: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Vote, Error> {
        {
            let gates = lock(&self.gates);
            if gates.votes(gate).iter().any(|v| v == by) {
                return Ok(Vote::Again {
                    have: gates.votes(gate).len() as u32,
                    needed: gates.needed(gate),
                });
            }
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
    pub(super) fn count_vote(&self, gate: &str, by: &str) -> Vote {
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
        let (needed, have) = {
            let gates = lock(&self.gates);
            (gates.needed(gate), gates.votes(gate).len() as u32)
        };
        self.observer.progress(
            &self.id,
            Progress::WaitingApproval {
                gate,
                message,
                needed,
                have,
            },
        );
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
}
