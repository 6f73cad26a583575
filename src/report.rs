//! Run reports: what a rehearsal (or a real recovery) proves. Built from the journal alone:
//! the runbook, parameters (values of secret-looking names masked), mode, start, end, total
//! duration against the declared RTO, every step with attempts and duration, waiting versus
//! working time, errors, and the changes made or planned.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::clock::{format_duration, format_time};
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
    pub rto: Option<Rto>,
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
fn secret_name(name: &str) -> bool {
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
    for e in events {
        match &e.event {
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
    let rto = run.runbook.rto_secs.map(|secs| {
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
    let state = match &verdict {
        Some(v) if v.is_partial() => "succeeded, partial".to_string(),
        _ => run.state.label().to_string(),
    };
    Ok(Report {
        run: run.id.to_string(),
        runbook: run.runbook.name.clone(),
        path: run.runbook.path.clone(),
        mode: run.mode,
        state,
        outcome: verdict.as_ref().map(Verdict::label),
        verdict,
        outcome_groups: view.outcome.clone(),
        log: view.log.clone(),
        params,
        started: format_time(run.created_at),
        ended: format_time(run.updated_at),
        duration_ms,
        rto,
        waiting_ms,
        working_ms,
        steps,
        changes,
        decisions: view.decisions.clone(),
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

/// A section of a report shown as a table (failed attempts, decisions): plain text cells,
/// escaped by each format.
struct Table {
    title: &'static str,
    columns: [&'static str; 5],
    rows: Vec<[String; 5]>,
}

fn attempts_table(r: &Report) -> Table {
    Table {
        title: "Failed attempts",
        columns: ["when", "step", "attempt", "what happened", "next try"],
        rows: r
            .failed_attempts
            .iter()
            .map(|a| {
                [
                    format_time(a.at),
                    a.step.clone(),
                    a.attempt.to_string(),
                    a.error.clone(),
                    a.retry_at.map(format_time).unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
    }
}

fn decisions_table(r: &Report) -> Table {
    Table {
        title: "Decisions",
        columns: ["when", "step", "decision", "by", "why"],
        rows: r
            .decisions
            .iter()
            .map(|d| {
                [
                    format_time(d.at),
                    d.step.clone(),
                    d.decision.clone(),
                    d.by.clone(),
                    d.reason.clone(),
                ]
            })
            .collect(),
    }
}

/// The outcome tables: one per `outcome()` group, every item with its columns and whether it
/// was recovered, the items not recovered first.
fn outcome_tables(r: &Report) -> Vec<DataTable> {
    r.outcome_groups
        .iter()
        .map(|g| {
            let mut columns = g.columns.clone();
            columns.push("recovered".to_string());
            let (mut rows, mut ok): (Vec<_>, Vec<_>) = (Vec::new(), Vec::new());
            for item in &g.items {
                let mut row: Vec<String> = g
                    .columns
                    .iter()
                    .map(|c| OutcomeGroup::cell(item, c))
                    .collect();
                let recovered = OutcomeGroup::is_recovered(item);
                row.push(if recovered { "yes" } else { "no" }.to_string());
                if recovered {
                    ok.push(row)
                } else {
                    rows.push(row)
                }
            }
            let missed = (0..rows.len() + ok.len()).map(|i| i < rows.len()).collect();
            rows.extend(ok);
            DataTable {
                title: g.title.clone(),
                columns,
                rows,
                missed,
            }
        })
        .collect()
}

/// A table whose columns come from the data (outcome tables, a result's lists of maps).
struct DataTable {
    title: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Rows of things not recovered, shown as such.
    missed: Vec<bool>,
}

impl DataTable {
    fn is_missed(&self, row: usize) -> bool {
        self.missed.get(row).copied().unwrap_or(false)
    }
}

/// A run's result read as tables, for runbooks that declared no outcome: every list of maps
/// (at the top or under a key of a map) as a table, lists of plain values and plain values
/// under `value`.
fn result_tables(result: &Value) -> Vec<DataTable> {
    fn cell(v: &Value) -> String {
        match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    fn table(title: &str, v: &Value) -> Option<DataTable> {
        let Value::Array(items) = v else {
            return None;
        };
        if items.is_empty() {
            return None;
        }
        if items.iter().all(Value::is_object) {
            let mut columns: Vec<String> = Vec::new();
            for item in items {
                for k in item.as_object().into_iter().flat_map(|m| m.keys()) {
                    if !columns.contains(k) {
                        columns.push(k.clone());
                    }
                }
            }
            let rows = items
                .iter()
                .map(|i| columns.iter().map(|c| cell(&i[c.as_str()])).collect())
                .collect();
            Some(DataTable {
                title: title.to_string(),
                columns,
                rows,
                missed: Vec::new(),
            })
        } else {
            Some(DataTable {
                title: title.to_string(),
                columns: vec!["value".to_string()],
                rows: items.iter().map(|i| vec![cell(i)]).collect(),
                missed: Vec::new(),
            })
        }
    }
    match result {
        Value::Object(map) => {
            let mut tables = Vec::new();
            let mut plain = Vec::new();
            for (k, v) in map {
                match v {
                    Value::Array(_) => tables.extend(table(k, v)),
                    Value::Object(inner) => {
                        for (k2, v2) in inner {
                            match v2 {
                                Value::Array(_) => tables.extend(table(&format!("{k}.{k2}"), v2)),
                                other => plain.push(vec![format!("{k}.{k2}"), cell(other)]),
                            }
                        }
                    }
                    other => plain.push(vec![k.clone(), cell(other)]),
                }
            }
            if !plain.is_empty() {
                tables.insert(
                    0,
                    DataTable {
                        title: "values".to_string(),
                        columns: vec!["name".to_string(), "value".to_string()],
                        rows: plain,
                        missed: Vec::new(),
                    },
                );
            }
            tables
        }
        Value::Array(_) => table("result", result).into_iter().collect(),
        Value::Null => Vec::new(),
        other => vec![DataTable {
            title: "result".to_string(),
            columns: vec!["value".to_string()],
            rows: vec![vec![cell(other)]],
            missed: Vec::new(),
        }],
    }
}

/// "Outcome: partial (3 recovered, 1 not recovered)", or planned for a plan.
fn outcome_heading(r: &Report) -> Option<String> {
    let v = r.verdict.as_ref()?;
    let planned = if r.mode == Mode::Plan {
        " (planned: nothing was sent)"
    } else {
        ""
    };
    Some(format!("Outcome: {}{planned} — {}", v.label(), v.summary()))
}

/// A table as a Markdown section; nothing when it has no rows.
fn markdown_table(out: &mut String, table: &Table) {
    if table.rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## {}\n\n| {} |\n|{}",
        table.title,
        table.columns.join(" | "),
        "---|".repeat(table.columns.len())
    );
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

/// A table as an HTML section; empty when it has no rows.
fn html_table(table: &Table) -> String {
    if table.rows.is_empty() {
        return String::new();
    }
    let head: String = table
        .columns
        .iter()
        .map(|c| format!("<th>{c}</th>"))
        .collect();
    let rows: String = table
        .rows
        .iter()
        .map(|row| {
            let cells: String = row
                .iter()
                .map(|c| format!("<td>{}</td>", escape_html(c)))
                .collect();
            format!("<tr>{cells}</tr>")
        })
        .collect();
    format!(
        "<h2>{}</h2>\n<table class=\"steps\"><tr>{head}</tr>{rows}</table>\n",
        table.title
    )
}

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut out = format!("# Run {}: {}\n\n", r.run, r.runbook);
    let mode = match r.mode {
        Mode::Normal => "normal",
        Mode::Plan => "plan (no change sent)",
    };
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| runbook | `{}` |", r.path);
    let _ = writeln!(out, "| mode | {mode} |");
    let _ = writeln!(out, "| state | {} |", r.state);
    let _ = writeln!(out, "| started | {} |", r.started);
    let _ = writeln!(out, "| ended | {} |", r.ended);
    let _ = writeln!(out, "| duration | {} |", format_duration(r.duration_ms));
    if let Some(rto) = &r.rto {
        let verdict = if rto.met && r.outcome == Some("partial") {
            format!(
                "met, {} to spare, for what was recovered: the recovery is partial",
                format_duration(rto.margin_ms.unsigned_abs())
            )
        } else if rto.met {
            format!(
                "met, {} to spare",
                format_duration(rto.margin_ms.unsigned_abs())
            )
        } else {
            format!(
                "**missed by {}**",
                format_duration(rto.margin_ms.unsigned_abs())
            )
        };
        let _ = writeln!(
            out,
            "| RTO | {} ({verdict}) |",
            format_duration(rto.target_ms)
        );
    }
    let _ = writeln!(
        out,
        "| waiting / working | {} / {} |",
        format_duration(r.waiting_ms),
        format_duration(r.working_ms)
    );
    if !r.params.is_empty() {
        let p: Vec<String> = r.params.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
        let _ = writeln!(out, "| parameters | {} |", p.join(" "));
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "| error | {} |", e.replace('|', "\\|"));
    }
    if let Some(heading) = outcome_heading(r) {
        let _ = writeln!(out, "\n## {heading}");
        let shortfall = &r
            .verdict
            .as_ref()
            .map(|v| v.shortfall.clone())
            .unwrap_or_default();
        if !shortfall.is_empty() {
            let _ = writeln!(out, "\nNot recovered:\n");
            for line in shortfall {
                let _ = writeln!(out, "- {}", markdown_escape(line));
            }
        }
        for t in outcome_tables(r) {
            markdown_data_table(&mut out, &format!("### {}", t.title), &t);
        }
    } else if let Some(v) = r.result.as_ref().filter(|v| !v.is_null()) {
        let _ = writeln!(out, "\n## Result");
        for t in result_tables(v) {
            markdown_data_table(&mut out, &format!("### {}", t.title), &t);
        }
    }
    if !r.log.is_empty() {
        let _ = writeln!(out, "\n## Log\n");
        for l in &r.log {
            let warning = if l.warning { "**warning:** " } else { "" };
            let _ = writeln!(
                out,
                "- {} {warning}{}",
                format_time(l.at),
                markdown_escape(&l.message)
            );
        }
    }
    let _ = writeln!(
        out,
        "\n## Steps\n\n| step | state | attempts | duration | |\n|---|---|---|---|---|"
    );
    for s in &r.steps {
        let d = s
            .duration_ms
            .map(format_duration)
            .unwrap_or_else(|| "-".into());
        let note = if s.waiting { "waiting" } else { "" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {d} | {note} |",
            s.name.replace('|', "\\|"),
            s.state,
            s.attempts
        );
    }
    for table in [attempts_table(r), decisions_table(r)] {
        markdown_table(&mut out, &table);
    }
    if !r.changes.is_empty() {
        let _ = writeln!(
            out,
            "\n## Changes {}\n",
            if r.mode == Mode::Plan {
                "planned (not sent)"
            } else {
                "made"
            }
        );
        for c in &r.changes {
            let step = c
                .step
                .as_ref()
                .map(|s| format!("{s}: "))
                .unwrap_or_default();
            let _ = writeln!(out, "- {step}`{}`", c.call);
        }
    }
    out
}

/// Text that Markdown shows as it is: table pipes escaped, no HTML tag let through, one line.
fn markdown_escape(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('\n', " ")
}

fn markdown_data_table(out: &mut String, heading: &str, t: &DataTable) {
    if t.rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{heading}\n\n| {} |\n|{}",
        t.columns.join(" | "),
        "---|".repeat(t.columns.len())
    );
    for (i, row) in t.rows.iter().enumerate() {
        let mut cells: Vec<String> = row.iter().map(|c| markdown_escape(c)).collect();
        if t.is_missed(i) {
            if let Some(last) = cells.last_mut() {
                *last = format!("**{last}**");
            }
        }
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

fn html_data_table(t: &DataTable) -> String {
    if t.rows.is_empty() {
        return String::new();
    }
    let head: String = t
        .columns
        .iter()
        .map(|c| format!("<th>{}</th>", escape_html(c)))
        .collect();
    let rows: String = t
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let cells: String = row
                .iter()
                .map(|c| format!("<td>{}</td>", escape_html(c)))
                .collect();
            if t.is_missed(i) {
                format!("<tr class=\"missed\">{cells}</tr>")
            } else {
                format!("<tr>{cells}</tr>")
            }
        })
        .collect();
    format!(
        "<h3>{}</h3>\n<table class=\"steps outcome\"><tr>{head}</tr>{rows}</table>\n",
        escape_html(&t.title)
    )
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as one self-contained HTML page (no external resource) with a timeline of the
/// steps: each bar starts and ends where the step did, waiting steps drawn apart from working
/// ones.
pub fn html(r: &Report) -> String {
    let total = r.duration_ms.max(1) as f64;
    let mut rows = String::new();
    for s in &r.steps {
        let (Some(offset), Some(duration)) = (s.offset_ms, s.duration_ms) else {
            let _ = writeln!(
                rows,
                "<tr><td>{}</td><td>{}</td><td class=\"lane\"></td><td>-</td></tr>",
                escape_html(&s.name),
                escape_html(&s.state)
            );
            continue;
        };
        let left = 100.0 * offset as f64 / total;
        let width = (100.0 * duration as f64 / total).max(0.3);
        // A short step at the very end keeps its bar inside the lane.
        let left = left.min(100.0 - width);
        let class = if s.waiting {
            "bar waiting"
        } else if s.state == "failed" {
            "bar failed"
        } else {
            "bar"
        };
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}</td><td class=\"lane\"><div class=\"{class}\" style=\"left:{left:.2}%;width:{width:.2}%\" title=\"{}\"></div></td><td>{}</td></tr>",
            escape_html(&s.name),
            escape_html(&s.state),
            format_duration(duration),
            format_duration(duration)
        );
    }
    let rto = match &r.rto {
        Some(rto) if rto.met && r.outcome == Some("partial") => format!(
            "{} — met, {} to spare, for what was recovered: <strong>the recovery is partial</strong>",
            format_duration(rto.target_ms),
            format_duration(rto.margin_ms.unsigned_abs())
        ),
        Some(rto) if rto.met => format!(
            "{} — met, {} to spare",
            format_duration(rto.target_ms),
            format_duration(rto.margin_ms.unsigned_abs())
        ),
        Some(rto) => format!(
            "{} — <strong>missed by {}</strong>",
            format_duration(rto.target_ms),
            format_duration(rto.margin_ms.unsigned_abs())
        ),
        None => "not declared".to_string(),
    };
    let changes: String = r
        .changes
        .iter()
        .map(|c| {
            format!(
                "<li>{}<code>{}</code></li>",
                c.step
                    .as_ref()
                    .map(|s| format!("{}: ", escape_html(s)))
                    .unwrap_or_default(),
                escape_html(&c.call)
            )
        })
        .collect();
    let attempts = html_table(&attempts_table(r));
    let decisions = html_table(&decisions_table(r));
    let mut outcome = String::new();
    if let Some(heading) = outcome_heading(r) {
        let class = if r.outcome == Some("partial") {
            "verdict partial"
        } else {
            "verdict complete"
        };
        let _ = writeln!(
            outcome,
            "<h2 id=\"outcome\" class=\"{class}\">{}</h2>",
            escape_html(&heading)
        );
        let shortfall = r
            .verdict
            .as_ref()
            .map(|v| v.shortfall.as_slice())
            .unwrap_or_default();
        if !shortfall.is_empty() {
            let items: String = shortfall
                .iter()
                .map(|l| format!("<li>{}</li>", escape_html(l)))
                .collect();
            let _ = writeln!(
                outcome,
                "<p>Not recovered:</p><ul class=\"shortfall\">{items}</ul>"
            );
        }
        for t in outcome_tables(r) {
            outcome.push_str(&html_data_table(&t));
        }
    } else if let Some(v) = r.result.as_ref().filter(|v| !v.is_null()) {
        outcome.push_str("<h2>Result</h2>\n");
        for t in result_tables(v) {
            outcome.push_str(&html_data_table(&t));
        }
    }
    let log: String = r
        .log
        .iter()
        .map(|l| {
            format!(
                "<li{}>{} {}</li>",
                if l.warning { " class=\"warning\"" } else { "" },
                format_time(l.at),
                escape_html(&l.message)
            )
        })
        .collect();
    let log = if log.is_empty() {
        String::new()
    } else {
        format!("<h2>Log</h2>\n<ul class=\"log\">{log}</ul>\n")
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lifeboat run {run}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 3px 8px; text-align: left; }}
.steps {{ width: 100%; }} .steps tr:nth-child(even) {{ background: #f4f4f4; }}
.lane {{ position: relative; width: 55%; min-width: 300px; }}
.bar {{ position: absolute; top: 4px; height: 12px; background: #2b6cb0; border-radius: 2px; }}
.bar.waiting {{ background: #a0aec0; }} .bar.failed {{ background: #c53030; }}
.verdict.partial {{ color: #c53030; }} .verdict.complete {{ color: #276749; }}
tr.missed {{ background: #fed7d7 !important; }} .log .warning {{ color: #c53030; }}
</style></head><body>
<h1>Run {run}: {runbook}</h1>
<table>
<tr><th>state</th><td>{state}</td></tr>
<tr><th>started</th><td>{started}</td></tr>
<tr><th>ended</th><td>{ended}</td></tr>
<tr><th>duration</th><td>{duration}</td></tr>
<tr><th>RTO</th><td>{rto}</td></tr>
<tr><th>waiting / working</th><td>{waiting} / {working}</td></tr>
</table>
{outcome}{log}<h2>Timeline</h2>
<table class="steps"><tr><th>step</th><th>state</th><th>timeline</th><th>duration</th></tr>
{rows}</table>
{attempts}{decisions}<h2>Changes</h2>
<ul>{changes}</ul>
</body></html>
"#,
        run = escape_html(&r.run),
        runbook = escape_html(&r.runbook),
        state = escape_html(&r.state),
        started = r.started,
        ended = r.ended,
        duration = format_duration(r.duration_ms),
        waiting = format_duration(r.waiting_ms),
        working = format_duration(r.working_ms),
    )
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
