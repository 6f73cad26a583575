//! A run's journal in words: one line per event, as `lifeboat log` prints it and the war
//! room shows it.

use std::collections::HashMap;

use serde::Serialize;

use crate::clock::format_time;
use crate::journal::{approvers_text, Decision, Event, EventRecord, PauseReason, Verdict};

/// One event of a run, in words.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EventLine {
    pub seq: u64,
    /// When it happened (epoch ms).
    pub at: u64,
    /// The step (or sleep, gate) position it belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub text: String,
}

/// Every event of `events`, in words, in order.
pub fn event_lines(events: &[EventRecord]) -> Vec<EventLine> {
    let mut out = Vec::with_capacity(events.len());
    let mut names: HashMap<&str, &str> = HashMap::new();
    for record in events {
        if let Event::StepStarted { key, name, .. } = &record.event {
            names.insert(key, name);
        }
        let name = |key: &str| {
            names
                .get(key)
                .map(|n| format!("{n:?}"))
                .unwrap_or_else(|| format!("at {key}"))
        };
        let text = match &record.event {
            Event::RunStarted {
                pid,
                resumed: false,
            } => format!("run started (pid {pid})"),
            Event::RunStarted { pid, resumed: true } => format!("run resumed (pid {pid})"),
            Event::StepStarted { key, name, attempt } => {
                format!("step {key} {name:?} started, attempt {attempt}")
            }
            Event::StepEffect { key, attempt, what } => format!(
                "step {key} {} attempt {attempt} began changing things ({what})",
                name(key)
            ),
            Event::StepSucceeded {
                key,
                result,
                reconciled,
            } => {
                let how = if *reconciled {
                    " (its check said so)"
                } else {
                    ""
                };
                format!(
                    "step {key} {} succeeded{how}: {}",
                    name(key),
                    truncate(&result.to_string(), 200)
                )
            }
            Event::StepFailed {
                key,
                attempt,
                error,
                retry_at: Some(at),
                ..
            } => {
                format!(
                    "step {key} {} attempt {attempt} failed: {error}; retry at {}",
                    name(key),
                    format_time(*at)
                )
            }
            Event::StepFailed {
                key,
                attempt,
                error,
                retry_at: None,
                ..
            } => format!(
                "step {key} {} failed (attempt {attempt}): {error}",
                name(key)
            ),
            Event::StepDecided {
                key,
                decision,
                by,
                reason,
            } => {
                let result = match decision {
                    Decision::Skip { result } | Decision::Done { result } => {
                        format!(" (result {})", truncate(&result.to_string(), 200))
                    }
                    Decision::Retry | Decision::NotDone => String::new(),
                };
                format!(
                    "step {key} {} {} by {by}{result}: {reason}",
                    name(key),
                    decision.label()
                )
            }
            Event::Paced {
                rate,
                concurrency,
                why,
            } => format!("OVH pace: {}: {why}", pace_text(*rate, *concurrency)),
            Event::SleepStarted { key, until } => {
                format!("sleep {key} until {}", format_time(*until))
            }
            Event::SleepFinished { key } => format!("sleep {key} done"),
            Event::GateOpened {
                gate,
                message,
                approvers,
                ..
            } => match approvers_text(*approvers, 0) {
                Some(people) => format!("gate {gate:?} opened ({people}): {message}"),
                None => format!("gate {gate:?} opened: {message}"),
            },
            Event::GateApproved { gate, by, reason } => match reason {
                Some(why) => format!("gate {gate:?} approved by {by}: {why}"),
                None => format!("gate {gate:?} approved by {by}"),
            },
            Event::ValueRecorded { key, name, value } => format!("{name}() at {key} = {value}"),
            Event::Logged {
                message,
                warning: false,
                ..
            } => format!("log: {message}"),
            Event::Logged { message, .. } => format!("warning: {message}"),
            Event::OutcomeDeclared { title, items, .. } => {
                let recovered = items
                    .iter()
                    .filter(|i| crate::journal::OutcomeGroup::is_recovered(i))
                    .count();
                format!(
                    "outcome {title:?}: {recovered} of {} recovered",
                    items.len()
                )
            }
            Event::Planned { step, call, body } => {
                format!(
                    "planned (not sent){}: {call} {body}",
                    step.as_ref()
                        .map(|s| format!(" in step {s:?}"))
                        .unwrap_or_default()
                )
            }
            Event::RunPaused { reason } => format!("run paused: {}", pause_text(reason)),
            Event::RunSucceeded { verdict, .. } => format!("run {}", succeeded_text(verdict)),
            Event::RunFailed { error, .. } => format!("run failed: {error}"),
            Event::RunAborted { by } => format!("run aborted by {by}"),
        };
        out.push(EventLine {
            seq: record.seq,
            at: record.at,
            key: record.event.key().map(str::to_string),
            text,
        });
    }
    out
}

/// A pace of OVH calls, as `status` and `log` print it.
pub fn pace_text(rate: Option<f64>, concurrency: usize) -> String {
    match rate {
        Some(r) => format!("{r:.1} requests/s, {concurrency} at once"),
        None => format!("no rate limit, {concurrency} at once"),
    }
}

pub fn pause_text(reason: &PauseReason) -> String {
    match reason {
        PauseReason::Approval { gate } => format!("waiting for approval at gate {gate:?}"),
        PauseReason::StepInDoubt { name, why, .. } => format!("step {name:?} in doubt: {why}"),
        PauseReason::GateTimeout { gate, after } => {
            format!("nobody approved gate {gate:?} within {after}")
        }
        PauseReason::Stopped { message } => message.clone(),
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// "succeeded", or "succeeded, partial (failover IPs: 4 of 5 recovered)".
pub fn succeeded_text(verdict: &Verdict) -> String {
    if verdict.is_undeclared() {
        verdict.state().to_string()
    } else {
        format!("{} ({})", verdict.state(), verdict.summary())
    }
}
