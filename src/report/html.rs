//! The report as one self-contained HTML page: the outcome first, then the log and a timeline
//! of the steps. No external resource; every text escaped.

use std::fmt::Write as _;

use super::tables::{
    attempts_table, decisions_table, outcome_heading, outcome_tables, result_tables, DataTable,
};
use super::Report;
use crate::clock::{format_duration, format_time};

pub(super) fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as one self-contained HTML page (no external resource) with a timeline of the
/// steps: each bar starts and ends where the step did, waiting steps drawn apart from working
/// ones.
pub fn render(r: &Report) -> String {
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
    let links: String = r
        .undo_of
        .iter()
        .map(|of| {
            format!(
                "<tr><th>undo of</th><td>run {}</td></tr>\n",
                escape_html(of)
            )
        })
        .chain(r.undone_by.iter().map(|by| {
            format!(
                "<tr><th>undone by</th><td>run {}</td></tr>\n",
                escape_html(by)
            )
        }))
        .collect();
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
    let attempts = data_table(&attempts_table(r), 2);
    let decisions = data_table(&decisions_table(r), 2);
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
            outcome.push_str(&data_table(&t, 3));
        }
    } else if let Some(v) = r.result.as_ref().filter(|v| !v.is_null()) {
        outcome.push_str("<h2>Result</h2>\n");
        for t in result_tables(v) {
            outcome.push_str(&data_table(&t, 3));
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
{links}<tr><th>started</th><td>{started}</td></tr>
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

/// A table as a section under a heading of `level`; empty when it has no rows.
fn data_table(t: &DataTable, level: u8) -> String {
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
    let class = if level == 3 { "steps outcome" } else { "steps" };
    format!(
        "<h{level}>{}</h{level}>\n<table class=\"{class}\"><tr>{head}</tr>{rows}</table>\n",
        escape_html(&t.title)
    )
}
