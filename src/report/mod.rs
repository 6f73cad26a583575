//! Run reports: what a rehearsal (or a real recovery) proves. Built from the journal alone:
//! the runbook, parameters (values of secret-looking names masked), mode, start, end, total
//! duration against the declared RTO, every step with attempts and duration, waiting versus
//! working time, errors, and the changes made or planned. This module builds the [`Report`];
//! `markdown` and `html` render it, from the tables `tables` makes.

mod events;
mod html;
mod markdown;
mod tables;

pub use events::{event_lines, pace_text, pause_text, succeeded_text, EventLine};

pub use html::render as html;
pub use markdown::render as markdown;
pub use markdown::there_and_back;

use serde::Serialize;
use serde_json::Value;

use crate::clock::format_time;
use crate::engine::summarize;
use crate::journal::{
    AttemptRecord, DecisionRecord, Error, Event, EventRecord, LogLine, Mode, OutcomeGroup,
    RunRecord, RunState, RunView, Verdict,
};

#[derive(Debug, Serialize)]
pub struct Report {
    pub run: String,
    pub runbook: String,
    pub path: String,
    pub mode: Mode,
    /// "succeeded", "succeeded, partial", "failed"...
    pub state: String,
    /// For a succeeded run whose runbook declared what it recovered: "complete" or "partial".
    pub outcome: Option<&'static str>,
    /// The counts, and what was left undone (items not recovered, warnings), a line each.
    pub verdict: Option<Verdict>,
    /// The runbook's `outcome()` tables: every item, recovered or not, with its columns.
    pub outcome_groups: Vec<OutcomeGroup>,
    /// The runbook's `log()` and `warn()` lines, in order.
    pub log: Vec<LogLine>,
    pub params: serde_json::Map<String, Value>,
    pub started: String,
    pub ended: String,
    pub duration_ms: u64,
    /// Absent for an undo run: the RTO is the recovery's target, not its way back's.
    pub rto: Option<Rto>,
    /// This run is the undo of that run (`lifeboat undo`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo_of: Option<String>,
    /// The runs that undo this one (set by the caller, who can list the store's runs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undone_by: Vec<String>,
    /// Time spent in waits (sleeps, gates, steps that wait for OVH or an email).
    pub waiting_ms: u64,
    /// Time spent in the other steps.
    pub working_ms: u64,
    pub steps: Vec<ReportStep>,
    pub changes: Vec<Change>,
    /// What people decided about steps the engine could not decide (who, what, why).
    pub decisions: Vec<DecisionRecord>,
    /// Every failed attempt: what OVH answered (with its query id) and when the next try was.
    pub failed_attempts: Vec<AttemptRecord>,
    /// What the runbook returned, if it succeeded.
    pub result: Option<Value>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Rto {
    pub target_ms: u64,
    pub met: bool,
    /// How far under (negative) or over (positive) the target the run ended.
    pub margin_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct ReportStep {
    pub name: String,
    /// When the step first started, counted from the start of the run.
    pub offset_ms: Option<u64>,
    pub kind: String,
    pub state: String,
    pub attempts: u32,
    pub duration_ms: Option<u64>,
    pub waiting: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Change {
    pub step: Option<String>,
    pub call: String,
    /// Recorded by a plan, not sent.
    pub planned: bool,
}

/// Names whose values a report never shows.
pub(crate) fn secret_name(name: &str) -> bool {
    let n = name.to_lowercase();
    ["secret", "password", "token", "key", "credential"]
        .iter()
        .any(|s| n.contains(s))
}

fn is_waiting(kind: &str, name: &str) -> bool {
    kind != "step" || name.starts_with("wait for") || name.starts_with("wait ")
}

/// Wall-clock time spent waiting, and working: waiting is the time during which at least one
/// wait (a sleep, a gate, a step waiting for OVH or an email) was under way; working is the
/// time some other step ran while nothing waited. Parallel branches overlap, so both are
/// unions of intervals, never sums: together they never exceed the run's duration.
fn waiting_and_working(steps: &[ReportStep]) -> (u64, u64) {
    let intervals = |waiting: bool| -> Vec<(u64, u64)> {
        steps
            .iter()
            .filter(|s| s.waiting == waiting)
            .filter_map(|s| Some((s.offset_ms?, s.offset_ms? + s.duration_ms?)))
            .collect()
    };
    let waits = merged(intervals(true));
    let work = merged(intervals(false));
    let waiting: u64 = waits.iter().map(|(a, b)| b - a).sum();
    let overlap: u64 = work
        .iter()
        .flat_map(|&(a, b)| {
            waits
                .iter()
                .map(move |&(c, d)| d.min(b).saturating_sub(c.max(a)))
        })
        .sum();
    let working = work.iter().map(|(a, b)| b - a).sum::<u64>() - overlap;
    (waiting, working)
}

/// The union of intervals `[start, end)`, as sorted disjoint intervals.
fn merged(mut intervals: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    intervals.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in intervals {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

pub fn build(run: &RunRecord, events: &[EventRecord]) -> Result<Report, Error> {
    let view = RunView::from_events(events)?;
    let mut names = std::collections::HashMap::new();
    let mut changes = Vec::new();
    // What people decided: steps (`resolve`, `retry`, `skip`) and gates, who and why. A gate
    // approved in advance (`--approve`) was no decision taken during the run.
    let mut decisions = view.decisions.clone();
    for e in events {
        match &e.event {
            Event::GateApproved { gate, by, reason } if by != "--approve" => {
                decisions.push(DecisionRecord {
                    key: String::new(),
                    step: format!("gate {gate}"),
                    decision: "approved".to_string(),
                    by: by.clone(),
                    reason: reason.clone().unwrap_or_default(),
                    at: e.at,
                })
            }
            Event::StepStarted { key, name, .. } => {
                names.insert(key.clone(), name.clone());
            }
            Event::StepEffect { key, what, .. } => changes.push(Change {
                step: names.get(key).cloned(),
                call: what.clone(),
                planned: false,
            }),
            Event::Planned { step, call, .. } => changes.push(Change {
                step: step.clone(),
                call: call.clone(),
                planned: true,
            }),
            _ => {}
        }
    }
    let steps: Vec<ReportStep> = summarize(&view)
        .into_iter()
        .map(|s| ReportStep {
            offset_ms: s.started_at.map(|t| t.saturating_sub(run.created_at)),
            waiting: is_waiting(s.kind, &s.name),
            name: s.name,
            kind: s.kind.to_string(),
            state: s.state,
            attempts: s.attempts,
            duration_ms: s.duration_ms,
            error: s.error,
        })
        .collect();
    let (waiting_ms, working_ms) = waiting_and_working(&steps);
    let duration_ms = run.updated_at.saturating_sub(run.created_at);
    let rto = run
        .runbook
        .rto_secs
        .filter(|_| run.undo_of.is_none())
        .map(|secs| {
            let target_ms = secs * 1000;
            Rto {
                target_ms,
                met: duration_ms <= target_ms,
                margin_ms: duration_ms as i64 - target_ms as i64,
            }
        });
    let params = run
        .params
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if secret_name(k) {
                    Value::String("***".into())
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    let verdict = match &run.state {
        RunState::Succeeded { verdict, .. } if !verdict.is_undeclared() => Some(verdict.clone()),
        _ => None,
    };
    Ok(Report {
        run: run.id.to_string(),
        runbook: run.runbook.name.clone(),
        path: run.runbook.path.clone(),
        mode: run.mode,
        state: run.state.label().to_string(),
        outcome: verdict.as_ref().map(Verdict::label),
        verdict,
        outcome_groups: view.outcome.clone(),
        log: view.log.clone(),
        params,
        started: format_time(run.created_at),
        ended: format_time(run.updated_at),
        duration_ms,
        rto,
        undo_of: run.undo_of.as_ref().map(ToString::to_string),
        undone_by: Vec::new(),
        waiting_ms,
        working_ms,
        steps,
        changes,
        decisions: {
            decisions.sort_by_key(|d| d.at);
            decisions
        },
        failed_attempts: view.failed_attempts.clone(),
        result: match &run.state {
            RunState::Succeeded { result, .. } => Some(result.clone()),
            _ => None,
        },
        error: match &run.state {
            RunState::Failed { error, .. } => Some(error.clone()),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offset_ms: u64, duration_ms: u64, waiting: bool) -> ReportStep {
        ReportStep {
            name: String::new(),
            offset_ms: Some(offset_ms),
            kind: "step".into(),
            state: "succeeded".into(),
            attempts: 1,
            duration_ms: Some(duration_ms),
            waiting,
            error: None,
        }
    }

    #[test]
    fn parallel_waits_are_counted_once_and_work_during_a_wait_is_waiting() {
        let steps = [
            step(0, 7000, true),     // two waits in parallel branches...
            step(1000, 8000, true),  // ...overlap: 0 to 9000
            step(0, 500, false),     // work while a wait is under way
            step(8000, 2000, false), // 9000 to 10000 works with nothing waiting
        ];
        assert_eq!(waiting_and_working(&steps), (9000, 1000));
        assert_eq!(merged(vec![(5, 6), (0, 2), (1, 3)]), vec![(0, 3), (5, 6)]);
    }
}
