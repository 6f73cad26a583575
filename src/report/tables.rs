//! The tables a report shows, in every format: failed attempts, decisions, the runbook's
//! outcome tables, and a result read as tables. Plain text cells; each format escapes them.

use serde_json::Value;

use super::Report;
use crate::clock::format_time;
use crate::journal::{Mode, OutcomeGroup};

pub(super) fn attempts_table(r: &Report) -> DataTable {
    DataTable {
        title: "Failed attempts".to_string(),
        columns: ["when", "step", "attempt", "what happened", "next try"]
            .map(String::from)
            .to_vec(),
        missed: Vec::new(),
        rows: r
            .failed_attempts
            .iter()
            .map(|a| {
                vec![
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

pub(super) fn decisions_table(r: &Report) -> DataTable {
    DataTable {
        title: "Decisions".to_string(),
        columns: ["when", "step", "decision", "by", "why"]
            .map(String::from)
            .to_vec(),
        missed: Vec::new(),
        rows: r
            .decisions
            .iter()
            .map(|d| {
                vec![
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
pub(super) fn outcome_tables(r: &Report) -> Vec<DataTable> {
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
pub(super) struct DataTable {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Rows of things not recovered, shown as such.
    pub missed: Vec<bool>,
}

impl DataTable {
    pub fn is_missed(&self, row: usize) -> bool {
        self.missed.get(row).copied().unwrap_or(false)
    }
}

/// A run's result read as tables, for runbooks that declared no outcome: every list of maps
/// (at the top or under a key of a map) as a table, lists of plain values and plain values
/// under `value`.
pub(super) fn result_tables(result: &Value) -> Vec<DataTable> {
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
pub(super) fn outcome_heading(r: &Report) -> Option<String> {
    let v = r.verdict.as_ref()?;
    let planned = if r.mode == Mode::Plan {
        " (planned: nothing was sent)"
    } else {
        ""
    };
    Some(format!("Outcome: {}{planned} — {}", v.label(), v.summary()))
}
