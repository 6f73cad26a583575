//! `lifeboat verify`: reads every run of a store back and checks that it is whole. Opening the
//! store already compared it with its high-water mark (see `store.rs`); this goes through
//! each run: its header decodes, its events decode and follow one another in sequence, every
//! step moves only through legal transitions, and the header's state is the one its events
//! lead to.

use serde::Serialize;

use super::{event_prefix, Error, EventRecord, Journal, Keyspace, RunRecord, RunState, RunView};

/// What `verify` found about one run.
#[derive(Debug, Serialize)]
pub struct RunCheck {
    pub id: String,
    pub events: usize,
    /// Empty when the run is whole.
    pub problems: Vec<String>,
}

impl Journal {
    /// Checks every run of the store; see the module documentation.
    pub fn verify(&self) -> Result<Vec<RunCheck>, Error> {
        let mut out = Vec::new();
        for (key, raw) in self.store.scan_prefix(Keyspace::Runs, b"")? {
            let id = String::from_utf8_lossy(&key).into_owned();
            let mut check = RunCheck {
                id,
                events: 0,
                problems: Vec::new(),
            };
            let record: RunRecord = match serde_json::from_slice(&raw) {
                Ok(r) => r,
                Err(e) => {
                    check
                        .problems
                        .push(format!("its header cannot be decoded: {e}"));
                    out.push(check);
                    continue;
                }
            };
            let mut events = Vec::new();
            for (k, v) in self
                .store
                .scan_prefix(Keyspace::Events, &event_prefix(&record.id))?
            {
                let seq = k
                    .len()
                    .checked_sub(8)
                    .and_then(|at| <[u8; 8]>::try_from(&k[at..]).ok())
                    .map(u64::from_be_bytes);
                match serde_json::from_slice::<EventRecord>(&v) {
                    Ok(e) if Some(e.seq) == seq => events.push(e),
                    Ok(e) => check.problems.push(format!(
                        "event {} is stored under another sequence ({seq:?})",
                        e.seq
                    )),
                    Err(e) => check.problems.push(format!(
                        "an event (sequence {seq:?}) cannot be decoded: {e}"
                    )),
                }
            }
            check.events = events.len();
            // No event at all is a run whose process died before its start was synced: whole.
            if !events.is_empty()
                && !matches!(
                    events[0].event,
                    super::Event::RunStarted { resumed: false, .. }
                )
            {
                check.problems.push(format!(
                    "its first event (sequence {}) is not the run's start: earlier events are missing",
                    events[0].seq
                ));
            }
            if let Err(e) = RunView::from_events(&events) {
                check
                    .problems
                    .push(format!("its events do not replay: {e}"));
            }
            let mut state = RunState::Running { pid: 0 };
            for e in events.iter().filter(|e| e.event.is_run_level()) {
                state = match state.apply(&e.event) {
                    Ok(s) => s,
                    Err(err) => {
                        check.problems.push(format!("event {}: {err}", e.seq));
                        break;
                    }
                };
            }
            if state.label() != record.state.label() {
                check.problems.push(format!(
                    "its header says {} but its events lead to {}",
                    record.state.label(),
                    state.label()
                ));
            }
            out.push(check);
        }
        Ok(out)
    }
}
