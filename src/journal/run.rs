//! Runs: their identifiers, their stored header, and the run-level state machine.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::{Event, PauseReason};
use super::Error;

/// A run identifier: `YYYYMMDD-HHMMSS-xxxx`, sortable by start time, short enough to type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// A fresh id from the wall-clock time and a number unique in this store. The wall clock,
    /// not the engine's: ids say when a run really started, even under a compressed clock.
    pub fn new(unique: u64) -> RunId {
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        // 2026-11-23T12:01:02Z -> 20261123-120102
        let digits: String = stamp.chars().filter(|c| c.is_ascii_digit()).collect();
        // Unique within the store by `unique`; the pid and clock make collisions between stores
        // (exported runs imported elsewhere) unlikely.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
        let mix = (unique + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ nanos.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
            ^ u64::from(std::process::id()).rotate_left(17);
        RunId(format!(
            "{}-{}-{:04x}",
            &digits[..8],
            &digits[8..14],
            (mix >> 48) as u16
        ))
    }

    /// Checks a user-supplied id's shape, so that a typo is "unknown run" and never a key
    /// prefix that matches several runs.
    pub fn parse(s: &str) -> Result<RunId, Error> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(RunId(s.to_string()))
        } else {
            Err(Error::UnknownRun { id: s.to_string() })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the runbook declared about itself, kept with the run for status and reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunbookInfo {
    /// The path the run was started from, as given.
    pub path: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Target recovery time in seconds, if the runbook declared one.
    #[serde(default)]
    pub rto_secs: Option<u64>,
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for a worker (`lifeboat run --detach`): nothing has run yet.
    Queued,
    /// A process (`pid`) is executing it, or was when it died.
    Running {
        pid: u32,
    },
    Paused {
        reason: PauseReason,
    },
    Succeeded {
        result: Value,
        #[serde(default, skip_serializing_if = "Verdict::is_undeclared")]
        verdict: Verdict,
    },
    Failed {
        error: String,
        step: Option<String>,
    },
    Aborted {
        by: String,
    },
}

impl RunState {
    /// Finished for good: nothing to resume.
    pub fn is_final(&self) -> bool {
        matches!(self, RunState::Succeeded { .. } | RunState::Aborted { .. })
    }

    /// The run-level transition function. Step-level events leave the run state alone;
    /// a finished run accepts nothing more.
    pub fn apply(&self, event: &Event) -> Result<RunState, Error> {
        use RunState::*;
        let next = match (self, event) {
            (Succeeded { .. } | Aborted { .. }, e) if e.is_run_level() => {
                return Err(Error::IllegalTransition {
                    from: self.label().to_string(),
                    event: format!("{e:?}"),
                })
            }
            (_, Event::RunStarted { pid, .. }) => Running { pid: *pid },
            (_, Event::RunPaused { reason }) => Paused {
                reason: reason.clone(),
            },
            (_, Event::RunSucceeded { result, verdict }) => Succeeded {
                result: result.clone(),
                verdict: verdict.clone(),
            },
            (_, Event::RunFailed { error, step }) => Failed {
                error: error.clone(),
                step: step.clone(),
            },
            (_, Event::RunAborted { by }) => Aborted { by: by.clone() },
            (state, _) => state.clone(),
        };
        Ok(next)
    }

    pub fn label(&self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running { .. } => "running",
            RunState::Paused { .. } => "paused",
            RunState::Succeeded { verdict, .. } => verdict.state(),
            RunState::Failed { .. } => "failed",
            RunState::Aborted { .. } => "aborted",
        }
    }
}

/// What a succeeded run recovered, as its runbook declared it: items of `outcome()` counted
/// by whether they were recovered, and the `warn()` lines. A run that succeeded with anything
/// not recovered, or with a warning, is *partial*: it must never read as a plain success.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub recovered: usize,
    pub not_recovered: usize,
    pub warnings: usize,
    /// What was left undone, a line each: every item not recovered (`TITLE: its cells`), then
    /// every warning (`warning: message`). Kept with the run's state so that every way a
    /// person learns how a run ended (terminal, status, notifications) can say it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shortfall: Vec<String>,
    /// The counts of each `outcome()` table, in the order declared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupTally>,
}

/// How many things of one `outcome()` table were recovered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTally {
    pub title: String,
    pub recovered: usize,
    pub not_recovered: usize,
}

impl Verdict {
    pub fn is_partial(&self) -> bool {
        self.not_recovered > 0 || self.warnings > 0
    }

    /// The runbook declared no outcome and warned of nothing.
    pub fn is_undeclared(&self) -> bool {
        *self == Verdict::default()
    }

    /// How a succeeded run with this verdict reads everywhere: "succeeded", or "succeeded,
    /// partial" (never a plain success when something was left undone).
    pub fn state(&self) -> &'static str {
        if self.is_partial() {
            "succeeded, partial"
        } else {
            "succeeded"
        }
    }

    /// "complete" or "partial", as `status --json` and reports name it.
    pub fn label(&self) -> &'static str {
        if self.is_partial() {
            "partial"
        } else {
            "complete"
        }
    }

    /// "datastores: 3 of 3 recovered; failover IPs: 4 of 5 recovered; 1 warning".
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .groups
            .iter()
            .map(|g| {
                format!(
                    "{}: {} of {} recovered",
                    g.title,
                    g.recovered,
                    g.recovered + g.not_recovered
                )
            })
            .collect();
        if self.warnings > 0 {
            parts.push(format!(
                "{} warning{}",
                self.warnings,
                if self.warnings == 1 { "" } else { "s" }
            ));
        }
        parts.join("; ")
    }
}

/// How a run treats the outside world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// For real.
    #[default]
    Normal,
    /// Reads for real; every change is recorded, answered with a synthetic result, and not
    /// sent. Waits, sleeps and gates are skipped.
    Plan,
}

/// A module a runbook imports, as stored with its run: replayed from here, never re-read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleFile {
    /// The path as the `import` statement wrote it: what the engine resolves at run time.
    pub import: String,
    /// The file it was read from, for error messages.
    pub file: String,
    pub source: String,
}

/// The stored header of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub runbook: RunbookInfo,
    /// The runbook's source as it was when the run started: resume replays this, not the file.
    pub source: String,
    /// The modules it imports, likewise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleFile>,
    pub params: serde_json::Map<String, Value>,
    /// Gates approved in advance (`--approve GATE`, `--approve all`).
    #[serde(default)]
    pub pre_approved: Vec<String>,
    #[serde(default)]
    pub mode: Mode,
    /// This run is the way back of that one (`lifeboat undo`): it runs the compensations of
    /// the original's finished steps, replaying the original's journal to find them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_of: Option<RunId>,
    pub created_at: u64,
    pub updated_at: u64,
    pub state: RunState,
}
