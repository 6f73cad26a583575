//! The control API: how `status`, `log`, `approve`, `abort`, `export` and `import` reach a
//! journal store, whether or not another lifeboat process holds it.
//!
//! sled allows one process per database. The process that holds the store (a `run`, a
//! `resume`, the demo) serves this API on a Unix socket in the data directory; other commands
//! that find the store locked send their request there. Both paths go through the same
//! [`Service::handle`], so a command behaves the same from any terminal.

mod service;
mod socket;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::LiveInfo;
use crate::journal::{self, Decision, EventRecord, RunExport, RunId, RunRecord};

pub use service::Service;
pub use socket::{drain, serve, Access};

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
