//! The report as Markdown: the outcome first, then the log, the steps, failed attempts,
//! decisions and changes.

use std::fmt::Write as _;

use super::tables::{
    attempts_table, decisions_table, outcome_heading, outcome_tables, result_tables, DataTable,
};
use super::Report;
use crate::clock::{format_duration, format_time};
use crate::journal::Mode;

/// The report as Markdown.
pub fn render(r: &Report) -> String {
    let mut out = format!("# Run {}: {}\n\n", r.run, r.runbook);
    let mode = match r.mode {
        Mode::Normal => "normal",
        Mode::Plan => "plan (no change sent)",
    };
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| runbook | `{}` |", r.path);
    let _ = writeln!(out, "| mode | {mode} |");
    let _ = writeln!(out, "| state | {} |", r.state);
    if let Some(of) = &r.undo_of {
        let _ = writeln!(out, "| undo of | run {of} |");
    }
    for by in &r.undone_by {
        let _ = writeln!(out, "| undone by | run {by} |");
    }
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
    for t in [attempts_table(r), decisions_table(r)] {
        markdown_data_table(&mut out, &format!("## {}", t.title), &t);
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

/// A rehearsal there and back (`rehearse --then-undo`): both durations, the recovery's against
/// its RTO, and whether the twin ended as it started for everything reversible.
pub fn there_and_back(recovery: &Report, back: &Report, twin: &crate::twin::Comparison) -> String {
    let mut out = format!("# There and back: {} on the twin\n\n", recovery.runbook);
    let _ = writeln!(
        out,
        "| | run | state | duration | RTO |\n|---|---|---|---|---|"
    );
    let rto = recovery
        .rto
        .as_ref()
        .map_or("not declared".to_string(), |rto| {
            let verdict = if rto.met { "met" } else { "**missed**" };
            format!("{} ({verdict})", format_duration(rto.target_ms))
        });
    let _ = writeln!(
        out,
        "| recovery | `{}` | {} | {} | {rto} |",
        recovery.run,
        recovery.state,
        format_duration(recovery.duration_ms)
    );
    let _ = writeln!(
        out,
        "| way back | `{}` | {} | {} | |",
        back.run,
        back.state,
        format_duration(back.duration_ms)
    );
    out.push('\n');
    if twin.ips_restored() {
        let _ = writeln!(
            out,
            "Failover IPs after the way back: {} of {} routed as before the recovery.",
            twin.ips_back, twin.ips
        );
    } else {
        let _ = writeln!(
            out,
            "**{} of {} failover IPs are not routed as before the recovery:**\n",
            twin.not_back.len(),
            twin.ips
        );
        for line in &twin.not_back {
            let _ = writeln!(out, "- {line}");
        }
    }
    let left = back
        .verdict
        .as_ref()
        .map(|v| v.shortfall.as_slice())
        .unwrap_or_default();
    if !left.is_empty() {
        let _ = writeln!(out, "\nNot undone:\n");
        let title = format!("{}: ", crate::engine::undo::OUTCOME_TITLE);
        for line in left {
            let _ = writeln!(out, "- {}", line.strip_prefix(&title).unwrap_or(line));
        }
    }
    if !twin.other_changes.is_empty() {
        let _ = writeln!(
            out,
            "\nOther parts of the twin that differ from the start (left by what was not undone): {}.",
            twin.other_changes.join(", ")
        );
    }
    out
}
