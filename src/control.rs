//! The control API: how `status`, `log`, `approve`, `abort`, `export` and `import` reach a
//! journal store, whether or not another lifeboat process holds it.
//!
//! sled allows one process per database. The process that holds the store (a `run`, a
//! `resume`, the demo) serves this API on a Unix socket in the data directory; other commands
//! that find the store locked send their request there. Both paths go through the same
//! [`Service::handle`], so a command behaves the same from any terminal.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::engine::{open_gates, LiveInfo, LiveRuns};
use crate::journal::{
    self, Decision, Entry, Event, EventRecord, Journal, Location, RunExport, RunId, RunRecord,
    RunView, StepState,
};

/// The socket's file name inside the data directory.
pub const SOCKET_NAME: &str = "control.sock";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Journal(#[from] journal::Error),
    #[error("{message}")]
    Refused { message: String, exit_code: u8 },
    #[error("control socket {}: {detail}", path.display())]
    Socket { path: PathBuf, detail: String },
    #[error("the journal store {} is in use by lifeboat process {pid}{}; a second run needs its own --db (or wait for that one to finish)", dir.display(), runs_note(runs))]
    Busy {
        dir: PathBuf,
        pid: u32,
        runs: Vec<RunId>,
    },
}

fn runs_note(runs: &[RunId]) -> String {
    if runs.is_empty() {
        String::new()
    } else {
        format!(
            " (running {})",
            runs.iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Journal(e) => e.exit_code(),
            Error::Refused { exit_code, .. } => *exit_code,
            Error::Socket { .. } => 1,
            Error::Busy { .. } => 2,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Runs,
    Run {
        id: RunId,
    },
    Approve {
        id: RunId,
        gate: String,
        by: String,
        /// Why (the web page asks for it; the command line may give none).
        #[serde(default)]
        reason: Option<String>,
    },
    Abort {
        id: RunId,
        by: String,
        /// Why; journaled with who aborted ("alice (wrong region)").
        #[serde(default)]
        reason: Option<String>,
    },
    /// A person's decision about a step (`lifeboat retry`, `skip`, `resolve`).
    Decide {
        id: RunId,
        /// The step's name or position.
        step: String,
        decision: Decision,
        by: String,
        reason: String,
    },
    Export {
        id: RunId,
    },
    Import {
        export: Box<RunExport>,
    },
    Owner,
    /// What this process counted: its OVH calls (the war room's metrics).
    Stats,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    Runs {
        runs: Vec<RunRecord>,
        live: HashMap<RunId, LiveInfo>,
        /// On a shared store: who holds the lease of each unfinished run.
        #[serde(default)]
        leases: HashMap<RunId, journal::LeaseInfo>,
    },
    Run {
        run: Box<RunRecord>,
        events: Vec<EventRecord>,
        live: Option<LiveInfo>,
        /// On a shared store: who holds the run's lease.
        #[serde(default)]
        lease: Option<journal::LeaseInfo>,
    },
    Done {
        message: String,
    },
    Export {
        export: Box<RunExport>,
    },
    Owner {
        pid: u32,
        runs: Vec<RunId>,
    },
    Stats {
        ovh_calls: Vec<crate::ovh::stats::CallCount>,
    },
    Error {
        message: String,
        exit_code: u8,
    },
}

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
        let counted = if more > 0 {
            let mut who = before.to_vec();
            who.push(by.to_string());
            Some(format!(
                "approved gate {gate:?} of run {id}: {have} of {needed} approvals ({}); it waits for {more} more from someone else",
                who.join(", ")
            ))
        } else {
            None
        };
        let live = self
            .live
            .approve(id, gate, by, reason)
            .map_err(|e| refused(e.to_string(), e.exit_code()))?;
        if let Some(message) = counted {
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
                self.journal.notify(id)?;
            }
            return Ok(Response::Done { message });
        }
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
            if self.journal.is_shared()
                && self.journal.lease(id)?.is_some_and(|l| l.expires_in > 0.0)
            {
                return Ok(Response::Done {
                    message: format!("approved gate {gate:?} of run {id}"),
                });
            }
            return Ok(Response::Done {
                message: format!(
                    "approved gate {gate:?} of run {id}; continue it with `lifeboat resume {id}`"
                ),
            });
        }
        Ok(Response::Done {
            message: format!("approved gate {gate:?} of run {id}"),
        })
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

fn refused(message: String, exit_code: u8) -> Error {
    Error::Refused { message, exit_code }
}

/// Serves the control API on `DIR/control.sock` from a background thread. Only the holder of
/// the store's lock calls this, so a socket file left by a dead process can be replaced.
pub fn serve(location: &Location, service: Arc<Service>) -> Result<(), Error> {
    let path = location.dir().join(SOCKET_NAME);
    // On a shared store, several processes of this machine may drive runs at once: the first
    // serves this machine's socket (it answers for the store, and for its own live runs).
    if matches!(location, Location::Postgres { .. }) {
        if let Ok(Response::Owner { .. }) = call_socket(&path, &Request::Owner) {
            return Ok(());
        }
        std::fs::create_dir_all(location.dir()).map_err(|e| Error::Socket {
            path: path.clone(),
            detail: e.to_string(),
        })?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| Error::Socket {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let service = service.clone();
                std::thread::spawn(move || answer(stream, &service));
            }
        })
        .map_err(|e| Error::Socket {
            path,
            detail: e.to_string(),
        })?;
    Ok(())
}

/// Connections being answered right now, so the process does not exit in the middle of one.
static ANSWERING: AtomicUsize = AtomicUsize::new(0);

/// Waits (up to `limit`) for requests being answered to finish: called before a serving
/// process exits, so that an `abort` from another terminal gets its reply.
pub fn drain(limit: Duration) {
    let deadline = Instant::now() + limit;
    while ANSWERING.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn answer(stream: UnixStream, service: &Service) {
    ANSWERING.fetch_add(1, Ordering::SeqCst);
    answer_one(stream, service);
    ANSWERING.fetch_sub(1, Ordering::SeqCst);
}

fn answer_one(stream: UnixStream, service: &Service) {
    let mut line = String::new();
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    if BufReader::new(stream).read_line(&mut line).is_err() {
        return;
    }
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => service.handle(request).unwrap_or_else(|e| Response::Error {
            message: e.to_string(),
            exit_code: e.exit_code(),
        }),
        Err(e) => Response::Error {
            message: format!("bad control request: {e}"),
            exit_code: 2,
        },
    };
    if let Ok(mut bytes) = serde_json::to_vec(&response) {
        bytes.push(b'\n');
        let _ = writer.write_all(&bytes);
    }
}

/// A way to a journal store: opened here, or through the process that holds it.
pub enum Access {
    /// Opened here; events this process records are stamped with `clock`.
    Local(Arc<Journal>, Arc<dyn Clock>),
    Remote(PathBuf),
}

impl Access {
    /// Opens the store in `dir`, or finds the process that holds it. A store held by a process
    /// that does not answer (a short `status` in another terminal) is retried for a few
    /// seconds before giving up with [`journal::Error::Locked`].
    pub fn open(location: &Location, clock: Arc<dyn Clock>) -> Result<Access, Error> {
        let dir = match location {
            Location::Dir(dir) => dir,
            // Every process reaches a shared store; one that drives runs on this machine also
            // knows how they stand right now (task waits), so it is asked when it answers.
            Location::Postgres { dir, .. } => {
                let socket = dir.join(SOCKET_NAME);
                if let Ok(Response::Owner { .. }) = call_socket(&socket, &Request::Owner) {
                    return Ok(Access::Remote(socket));
                }
                return Ok(Access::Local(Arc::new(Journal::open_at(location)?), clock));
            }
        };
        let socket = dir.join(SOCKET_NAME);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Journal::open(dir) {
                Ok(journal) => return Ok(Access::Local(Arc::new(journal), clock)),
                Err(journal::Error::Locked { .. }) => {
                    if let Ok(Response::Owner { .. }) = call_socket(&socket, &Request::Owner) {
                        return Ok(Access::Remote(socket));
                    }
                    if Instant::now() >= deadline {
                        return Err(journal::Error::Locked {
                            dir: dir.to_path_buf(),
                        }
                        .into());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Opens the store for executing runs, which needs the store itself.
    pub fn open_for_run(location: &Location) -> Result<Arc<Journal>, Error> {
        if let Location::Postgres { .. } = location {
            // Shared: every driver opens it; leases keep them off one another's runs.
            return Ok(Arc::new(Journal::open_at(location)?));
        }
        let dir = location.dir();
        match Access::open(location, Arc::new(crate::clock::SystemClock))? {
            Access::Local(journal, _) => Ok(journal),
            Access::Remote(socket) => match call_socket(&socket, &Request::Owner)? {
                Response::Owner { pid, runs } => Err(Error::Busy {
                    dir: dir.to_path_buf(),
                    pid,
                    runs,
                }),
                _ => Err(journal::Error::Locked {
                    dir: dir.to_path_buf(),
                }
                .into()),
            },
        }
    }

    /// Sends a request, locally or to the owner.
    pub fn call(&self, request: Request) -> Result<Response, Error> {
        let response = match self {
            Access::Local(journal, clock) => {
                Service::new(journal.clone(), Arc::default(), clock.clone()).handle(request)?
            }
            Access::Remote(socket) => call_socket(socket, &request)?,
        };
        match response {
            Response::Error { message, exit_code } => Err(Error::Refused { message, exit_code }),
            other => Ok(other),
        }
    }
}

fn call_socket(path: &Path, request: &Request) -> Result<Response, Error> {
    let err = |detail: String| Error::Socket {
        path: path.to_path_buf(),
        detail,
    };
    let mut stream = UnixStream::connect(path).map_err(|e| err(e.to_string()))?;
    // A process that holds the socket but does not answer (stopped, frozen) must not hang
    // the caller: "who are you" is answered at once by a live owner; other requests may wait
    // for a run to record its end.
    let patience = match request {
        Request::Owner => Duration::from_secs(2),
        _ => Duration::from_secs(60),
    };
    stream
        .set_read_timeout(Some(patience))
        .map_err(|e| err(e.to_string()))?;
    let mut bytes = serde_json::to_vec(request).map_err(|e| err(e.to_string()))?;
    bytes.push(b'\n');
    stream.write_all(&bytes).map_err(|e| err(e.to_string()))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&line).map_err(|e| err(format!("unreadable answer: {e}")))
}
