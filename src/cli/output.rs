//! Everything the command line shows: progress lines, summaries, tables, JSON. Progress goes
//! to standard error; answers (a run id, a result, a table) go to standard output.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::clock::{format_duration, format_time};
use crate::engine::{self, summarize, LiveInfo, Outcome, Runbook};
use crate::error::Error;
use crate::journal::{Event, EventRecord, PauseReason, RunId, RunRecord, RunState, RunView};
use crate::report::{pace_text, succeeded_text};

/// What `lifeboat check` prints.
pub fn declaration(rb: &Runbook) -> String {
    let d = &rb.declaration;
    let mut out = format!("{}: ok\nname: {}\n", rb.path, d.name);
    if !d.description.is_empty() {
        let _ = writeln!(out, "description: {}", d.description);
    }
    if let Some(rto) = d.rto_secs {
        let _ = writeln!(
            out,
            "rto: {}",
            humantime::format_duration(std::time::Duration::from_secs(rto))
        );
    }
    if d.params.is_empty() {
        out.push_str("parameters: none\n");
    } else {
        out.push_str("parameters:\n");
        let width = d.params.keys().map(String::len).max().unwrap_or(0);
        for (name, spec) in &d.params {
            let default = match &spec.default {
                Some(v) => format!("default {v}"),
                None => "required".to_string(),
            };
            let needs: Vec<String> = spec
                .needs
                .iter()
                .map(|s| format!(" (needs [{}])", s.name()))
                .collect();
            let _ = writeln!(
                out,
                "  {name:width$}  {:8}  {default:<16}  {}{}",
                spec.ty.name(),
                spec.help,
                needs.concat()
            );
        }
    }
    out
}

/// Prints progress lines as a run goes. Replayed steps are counted and shown as one line; a
/// task wait prints a line when the task's state or progress changes, and at least every
/// [`WAIT_LINE_EVERY`] while nothing does.
pub struct Progress {
    replayed: Mutex<u64>,
    /// Per waiting step: the state and progress last printed, and when.
    waits: Mutex<std::collections::HashMap<String, LastWaitLine>>,
}

/// A task wait's last progress line: OVH's state, its percentage, when it was printed.
type LastWaitLine = (String, Option<u64>, std::time::Instant);

/// The longest silence during a task wait.
pub const WAIT_LINE_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

impl Progress {
    pub fn new() -> Progress {
        Progress {
            replayed: Mutex::new(0),
            waits: Mutex::new(Default::default()),
        }
    }

    fn flush_replayed(&self) {
        let mut n = self.replayed.lock().unwrap_or_else(|p| p.into_inner());
        if *n > 0 {
            eprintln!(
                "  ↺ {} finished step{} answered from the journal",
                *n,
                if *n == 1 { "" } else { "s" }
            );
            *n = 0;
        }
    }
}

impl engine::Observer for Progress {
    fn progress(&self, run: &RunId, p: engine::Progress<'_>) {
        use engine::Progress as P;
        if let P::Replayed { .. } = p {
            *self.replayed.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            return;
        }
        self.flush_replayed();
        match p {
            P::Started {
                runbook,
                resumed: false,
            } => eprintln!("run {run}: {runbook}"),
            P::Started {
                runbook,
                resumed: true,
            } => eprintln!("resuming run {run}: {runbook}"),
            P::Replayed { .. } => {}
            P::StepStarted {
                name, attempt: 1, ..
            } => eprintln!("  → {name}"),
            P::StepStarted { name, attempt, .. } => eprintln!("  → {name} (attempt {attempt})"),
            P::StepSucceeded {
                name,
                reconciled: true,
                ..
            } => eprintln!("  ✓ {name} (reconciled: already done, says its check)"),
            P::StepSucceeded {
                name, elapsed_ms, ..
            } => eprintln!("  ✓ {name} ({})", format_duration(elapsed_ms)),
            P::StepRetry {
                name,
                attempt,
                error,
                wait_ms,
            } => {
                eprintln!(
                    "  ↻ {name}: attempt {attempt} failed: {error}; retrying in {}",
                    format_duration(wait_ms)
                )
            }
            P::StepFailed {
                name,
                attempts,
                error,
            } => eprintln!("  ✗ {name}: failed after {attempts} attempt(s): {error}"),
            P::StepInDoubt { name, why } => eprintln!("  ? {name}: in doubt: {why}"),
            P::TaskWait {
                name,
                status,
                percent,
                elapsed_ms,
                left_ms,
            } => {
                let mut waits = self.waits.lock().unwrap_or_else(|p| p.into_inner());
                let now = std::time::Instant::now();
                let due = match waits.get(name) {
                    Some((s, pc, at)) => {
                        s != status || *pc != percent || now.duration_since(*at) >= WAIT_LINE_EVERY
                    }
                    None => true,
                };
                if due {
                    waits.insert(name.to_string(), (status.to_string(), percent, now));
                    eprintln!(
                        "  … {name}: {}",
                        engine::task_wait_text(status, percent, elapsed_ms, left_ms)
                    );
                }
            }
            P::Sleeping {
                until,
                remaining_ms,
            } => {
                eprintln!(
                    "  ⏲ sleeping {} (until {})",
                    format_duration(remaining_ms),
                    format_time(until)
                )
            }
            P::WaitingApproval {
                gate,
                message,
                needed,
                have,
            } => {
                let message = if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                };
                let people = crate::journal::approvers_text(needed, have)
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default();
                eprintln!("  ⏸ waiting for approval at gate {gate:?}{people}{message}");
                eprintln!("    approve from any terminal: lifeboat approve {run} {gate}");
            }
            P::GateApproved { gate, by, more: 0 } => {
                eprintln!("  ✓ gate {gate:?} approved by {by}")
            }
            P::GateApproved { gate, by, more } => eprintln!(
                "  ✓ gate {gate:?} approved by {by}; it waits for {more} more approval{} from someone else",
                if more == 1 { "" } else { "s" }
            ),
            P::Log { message } => eprintln!("  · {message}"),
            P::Finished { .. } => {}
        }
    }
}

/// The closing lines of `run` / `resume`: for a partial run, what it left undone.
pub fn outcome(id: &RunId, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Succeeded { verdict, .. } | Outcome::AlreadySucceeded { verdict, .. }
            if verdict.is_partial() =>
        {
            let again = if matches!(outcome, Outcome::AlreadySucceeded { .. }) {
                " (it had already ended; nothing ran)"
            } else {
                ""
            };
            let mut out = format!("run {id} {}{again}\n  not recovered:\n", succeeded_text(verdict));
            for line in &verdict.shortfall {
                let _ = writeln!(out, "    {line}");
            }
            let _ = writeln!(out, "  the report says the same: `lifeboat report {id}`");
            out
        }
        Outcome::Succeeded { verdict, .. } => format!("run {id} {}\n", succeeded_text(verdict)),
        Outcome::AlreadySucceeded { .. } => format!("run {id} had already succeeded; nothing to do\n"),
        Outcome::Failed { error } => format!(
            "run {id} failed: {error}\n  its journal is kept: `lifeboat log {id}`; after fixing the cause, `lifeboat resume {id}`\n"
        ),
        Outcome::Aborted { by } => format!("run {id} aborted by {by}\n"),
        Outcome::Paused(PauseReason::Approval { gate }) => format!(
            "run {id} is waiting for approval at gate {gate:?}\n  `lifeboat approve {id} {gate}`, then `lifeboat resume {id}`\n"
        ),
        Outcome::Paused(PauseReason::StepInDoubt { key, name, why }) => format!(
            "run {id} paused: {}\n",
            engine::in_doubt_message(id, key, name, why)
        ),
        Outcome::Paused(PauseReason::GateTimeout { gate, after }) => format!(
            "run {id} paused: nobody approved gate {gate:?} within {after}\n  `lifeboat approve {id} {gate}`, then `lifeboat resume {id}`; or `lifeboat abort {id}`\n"
        ),
        Outcome::Paused(PauseReason::Stopped { message }) => format!("run {id} stopped: {message}\n"),
    }
}

/// How a run's state reads in a table, taking into account whether its process is alive.
fn state_label(run: &RunRecord, live: Option<&LiveInfo>) -> String {
    match (&run.state, live) {
        (
            _,
            Some(LiveInfo {
                waiting_gate: Some(gate),
                ..
            }),
        ) => format!("waiting for approval ({gate})"),
        (_, Some(info)) => format!("running (pid {})", info.pid),
        (RunState::Running { .. }, None) => "interrupted".to_string(),
        (
            RunState::Paused {
                reason: PauseReason::Approval { gate },
            },
            None,
        ) => format!("paused at gate {gate}"),
        (
            RunState::Paused {
                reason: PauseReason::StepInDoubt { name, .. },
            },
            None,
        ) => format!("paused: step {name:?} in doubt"),
        (
            RunState::Paused {
                reason: PauseReason::GateTimeout { gate, .. },
            },
            None,
        ) => format!("paused at gate {gate} (timed out)"),
        (RunState::Paused { .. }, None) => "stopped".to_string(),
        (state, None) => state.label().to_string(),
    }
}

fn run_duration(run: &RunRecord) -> u64 {
    run.updated_at.saturating_sub(run.created_at)
}

/// `lifeboat status`.
pub fn runs(runs: &[RunRecord], live: &HashMap<RunId, LiveInfo>, as_json: bool) -> String {
    if as_json {
        let list: Vec<Value> = runs
            .iter()
            .map(|r| {
                json!({
                    "id": r.id, "runbook": r.runbook.name, "path": r.runbook.path,
                    "state": state_label(r, live.get(&r.id)), "created_at": format_time(r.created_at),
                    "updated_at": format_time(r.updated_at),
                })
            })
            .collect();
        return format!("{}\n", Value::Array(list));
    }
    if runs.is_empty() {
        return "no runs\n".to_string();
    }
    let rows: Vec<[String; 5]> = runs
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                r.runbook.name.clone(),
                state_label(r, live.get(&r.id)),
                format_time(r.created_at),
                format_duration(run_duration(r)),
            ]
        })
        .collect();
    table(&["RUN", "RUNBOOK", "STATE", "STARTED", "DURATION"], &rows)
}

/// `lifeboat status RUN_ID`.
pub fn run_status(
    run: &RunRecord,
    events: &[EventRecord],
    live: Option<&LiveInfo>,
    links: &Links,
    as_json: bool,
) -> Result<String, Error> {
    let undone_by = &links.undone_by;
    let view = RunView::from_events(events)?;
    let steps = summarize(&view);
    if as_json {
        let value = json!({
            "id": run.id,
            "runbook": run.runbook,
            "params": run.params,
            "mode": run.mode,
            "undo_of": run.undo_of,
            "undone_by": undone_by,
            "lease": links.lease,
            "state": run.state,
            "status": state_label(run, live),
            "outcome": match &run.state {
                RunState::Succeeded { verdict, .. } => Some(verdict.label()),
                _ => None,
            },
            "outcome_items": view.outcome,
            "created_at": run.created_at,
            "updated_at": run.updated_at,
            "steps": steps,
            "decisions": view.decisions,
            "failed_attempts": view.failed_attempts,
            "task_waits": live.map(|l| l.task_waits.clone()).unwrap_or_default(),
            "pace": view.pace.as_ref().map(|(rate, concurrency, why)| json!({ "rate": rate, "concurrency": concurrency, "why": why })),
        });
        return Ok(format!("{value:#}\n"));
    }
    let mut out = String::new();
    let _ = writeln!(out, "run:       {}", run.id);
    let _ = writeln!(
        out,
        "runbook:   {} ({})",
        run.runbook.name, run.runbook.path
    );
    let _ = writeln!(out, "state:     {}", state_label(run, live));
    for wait in live.map(|l| l.task_waits.as_slice()).unwrap_or_default() {
        let _ = writeln!(out, "waiting:   {wait}");
    }
    if run.mode == crate::journal::Mode::Plan {
        let _ = writeln!(out, "mode:      plan (no change was sent)");
    }
    if let Some(of) = &run.undo_of {
        let _ = writeln!(out, "undo of:   run {of}");
    }
    for by in undone_by {
        let _ = writeln!(out, "undone by: run {by}");
    }
    // Who drives a running run on a shared store (a stopped run's lease is released).
    if let Some(lease) = links
        .lease
        .as_ref()
        .filter(|_| matches!(run.state, RunState::Running { .. }))
    {
        let when = if lease.expires_in >= 0.0 {
            format!("held for {:.1}s more", lease.expires_in)
        } else {
            format!(
                "expired {:.1}s ago: orphaned, nobody drives it (`lifeboat resume {}` takes it over)",
                -lease.expires_in,
                run.id
            )
        };
        let _ = writeln!(
            out,
            "lease:     {} (epoch {}), {when}",
            lease.owner, lease.epoch
        );
    }
    match &run.state {
        RunState::Failed { error, .. } => {
            let _ = writeln!(out, "error:     {error}");
        }
        RunState::Succeeded { verdict, .. } if !verdict.is_undeclared() => {
            let _ = writeln!(out, "outcome:   {}: {}", verdict.label(), verdict.summary());
            for line in &verdict.shortfall {
                let _ = writeln!(out, "           {line}");
            }
        }
        RunState::Paused {
            reason: PauseReason::Stopped { message },
        } => {
            let _ = writeln!(out, "stopped:   {message}");
        }
        RunState::Paused {
            reason: PauseReason::StepInDoubt { key, name, why },
        } if live.is_none() => {
            let _ = writeln!(
                out,
                "in doubt:  {}",
                engine::in_doubt_message(&run.id, key, name, why).replace('\n', "\n           ")
            );
        }
        _ => {}
    }
    let _ = writeln!(out, "started:   {}", format_time(run.created_at));
    let _ = writeln!(out, "duration:  {}", format_duration(run_duration(run)));
    if let Some(rto) = run.runbook.rto_secs {
        let _ = writeln!(out, "rto:       {}", format_duration(rto * 1000));
    }
    if !run.params.is_empty() {
        let params: Vec<String> = run.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "params:    {}", params.join(" "));
    }
    out.push('\n');
    if steps.is_empty() {
        out.push_str("no steps yet\n");
        return Ok(out);
    }
    let rows: Vec<[String; 5]> = steps
        .iter()
        .map(|s| {
            [
                s.key.clone(),
                s.name.clone(),
                s.state.clone(),
                if s.kind == "step" {
                    s.attempts.to_string()
                } else {
                    "-".to_string()
                },
                s.duration_ms
                    .map(format_duration)
                    .unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    out.push_str(&table(
        &["POS", "STEP", "STATE", "ATTEMPTS", "DURATION"],
        &rows,
    ));
    if !view.failed_attempts.is_empty() {
        out.push_str("\nfailed attempts:\n");
        for a in &view.failed_attempts {
            let next = match a.retry_at {
                Some(at) => format!("; next try {}", format_time(at)),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "  {}  step {} {:?} attempt {}: {}{next}",
                format_time(a.at),
                a.key,
                a.step,
                a.attempt,
                a.error
            );
        }
    }
    if !view.decisions.is_empty() {
        out.push_str("\ndecisions:\n");
        for d in &view.decisions {
            let _ = writeln!(
                out,
                "  {}  step {} {:?}: {} by {}: {}",
                format_time(d.at),
                d.key,
                d.step,
                d.decision,
                d.by,
                d.reason
            );
        }
    }
    if let Some((rate, concurrency, why)) = &view.pace {
        let _ = writeln!(
            out,
            "\nOVH pace:  {} ({why})",
            pace_text(*rate, *concurrency)
        );
    }
    Ok(out)
}

/// `lifeboat check`: what a runbook reaches outside lifeboat.
pub fn needs(needs: &crate::engine::runbook::Needs) -> String {
    let mut uses = Vec::new();
    if needs.ovh {
        uses.push("the OVH API (ovh)");
    }
    if needs.smtp {
        uses.push("SMTP (notify)");
    }
    if needs.imap {
        uses.push("IMAP (wait_email)");
    }
    if uses.is_empty() {
        "uses: nothing outside lifeboat\n".to_string()
    } else {
        format!("uses: {}\n", uses.join(", "))
    }
}

/// The closing list of a plan: every change the recovery would make, in order, by step.
/// `finished`: the plan ran to its end; a plan that failed or stopped never reads as "nothing
/// to change", only as what it had found before it stopped.
/// The changes a plan recorded; `what` names what was planned ("recovery", "undo").
pub fn plan(events: &[EventRecord], finished: bool, what: &str) -> String {
    let planned: Vec<(&Option<String>, &str, &Value)> = events
        .iter()
        .filter_map(|r| match &r.event {
            Event::Planned { step, call, body } => Some((step, call.as_str(), body)),
            _ => None,
        })
        .collect();
    let n = planned.len();
    let s = if n == 1 { "" } else { "s" };
    let mut out = match (finished, n) {
        (true, 0) => return format!("plan: this {what} would change nothing\n"),
        (true, _) => format!("plan: {n} change{s} this {what} would make (none was sent):\n"),
        (false, 0) => {
            return format!("plan: the plan did not finish (why follows), so it cannot tell what the {what} would change; it had found no change before it stopped\n")
        }
        (false, _) => format!(
            "plan: the plan did not finish (why follows), so the {what} may change more; the {n} change{s} it had found before it stopped (none was sent):\n"
        ),
    };
    for (i, (step, call, body)) in planned.iter().enumerate() {
        let body = if body.is_null() {
            String::new()
        } else {
            format!(" {body}")
        };
        let step = step.as_ref().map(|s| format!("[{s}] ")).unwrap_or_default();
        let _ = writeln!(out, "  {:>2}. {step}{call}{body}", i + 1);
    }
    out
}

/// What `status RUN` shows besides the run itself: the runs that undo it, and its lease on a
/// shared store.
pub struct Links {
    pub undone_by: Vec<RunId>,
    pub lease: Option<crate::journal::LeaseInfo>,
}

/// `lifeboat log RUN_ID`.
pub fn events(events: &[EventRecord], as_json: bool) -> String {
    let mut out = String::new();
    if as_json {
        for record in events {
            let _ = writeln!(out, "{}", serde_json::to_string(record).unwrap_or_default());
        }
        return out;
    }
    for line in crate::report::event_lines(events) {
        let _ = writeln!(out, "{}  {}", format_time(line.at), line.text);
    }
    out
}

fn table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                s.push_str(cell);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `lifeboat verify`: the store, then one line per run (and one per problem).
pub fn verify(dir: &std::path::Path, checks: &[crate::journal::RunCheck]) -> String {
    let events: usize = checks.iter().map(|c| c.events).sum();
    let bad = checks.iter().filter(|c| !c.problems.is_empty()).count();
    let mut out = format!(
        "store {}: {} run{}, {events} events, high-water mark consistent\n",
        dir.display(),
        checks.len(),
        if checks.len() == 1 { "" } else { "s" }
    );
    for c in checks {
        if c.problems.is_empty() {
            let _ = writeln!(out, "  {}  ok ({} events)", c.id, c.events);
        } else {
            let _ = writeln!(out, "  {}  DAMAGED ({} events)", c.id, c.events);
            for p in &c.problems {
                let _ = writeln!(out, "      {p}");
            }
        }
    }
    if bad > 0 {
        let _ = writeln!(
            out,
            "{bad} run{} damaged: export the others (`lifeboat export RUN`) and keep this store for investigation",
            if bad == 1 { "" } else { "s" }
        );
    }
    out
}
