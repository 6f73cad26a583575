//! Schedules: when `lifeboat daemon` starts plans and rehearsals. Declared as `[[schedule]]`
//! entries of lifeboat's config file, in cron syntax (5 fields, or 6 with seconds) and a time
//! zone. This module only answers "which occurrences fell in this interval"; the daemon acts.

use std::path::Path;
use std::str::FromStr;

use chrono::TimeZone;
use croner::Cron;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("schedules in {path}: {message}")]
    Config { path: String, message: String },
}

/// What a scheduled run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleMode {
    /// `run --plan` against the real account.
    Plan,
    /// `rehearse` against a twin.
    Rehearse,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: String,
    #[serde(default = "utc")]
    pub timezone: String,
    pub runbook: String,
    pub mode: ScheduleMode,
    /// The twin fixture, for `rehearse`.
    #[serde(default)]
    pub twin: Option<String>,
    /// Task speed-up for `rehearse`.
    #[serde(default)]
    pub speed: Option<f64>,
    /// Parameters, as on the command line (`name = "value"`).
    #[serde(default)]
    pub params: toml::Table,
    /// Start a run even when the previous run of this runbook is still going.
    #[serde(default)]
    pub allow_overlap: bool,
}

fn utc() -> String {
    "UTC".into()
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub spec: ScheduleSpec,
    cron: Cron,
    tz: chrono_tz::Tz,
}

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    schedule: Vec<ScheduleSpec>,
}

impl Schedule {
    pub fn new(spec: ScheduleSpec) -> Result<Schedule, String> {
        let cron = Cron::from_str(&spec.cron)
            .map_err(|e| format!("schedule {}: cron {:?}: {e}", spec.name, spec.cron))?;
        let tz: chrono_tz::Tz = spec.timezone.parse().map_err(|_| {
            format!(
                "schedule {}: unknown time zone {:?}",
                spec.name, spec.timezone
            )
        })?;
        if spec.mode == ScheduleMode::Rehearse && spec.twin.is_none() {
            return Err(format!(
                "schedule {}: mode rehearse needs a twin",
                spec.name
            ));
        }
        Ok(Schedule { spec, cron, tz })
    }

    /// The occurrences in `(after, upto]` (epoch ms): how many, and the last. Counting stops at
    /// 10,000.
    pub fn due(&self, after: u64, upto: u64) -> (u32, Option<u64>) {
        let Some(mut t) = self.tz.timestamp_millis_opt(after as i64).single() else {
            return (0, None);
        };
        let mut count = 0;
        let mut last = None;
        while count < 10_000 {
            let Ok(next) = self.cron.find_next_occurrence(&t, false) else {
                break;
            };
            let ms = next.timestamp_millis().max(0) as u64;
            if ms > upto {
                break;
            }
            count += 1;
            last = Some(ms);
            t = next;
        }
        (count, last)
    }

    /// Parameters as `name=value` pairs.
    pub fn params(&self) -> Vec<(String, String)> {
        self.spec
            .params
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Array(_) | toml::Value::Table(_) => {
                        serde_json::to_string(v).unwrap_or_default()
                    }
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

/// The `[[schedule]]` entries of the config file (none if it does not exist).
pub fn load(path: Option<&Path>) -> Result<Vec<Schedule>, Error> {
    let Some(path) = path.filter(|p| p.exists()) else {
        return Ok(Vec::new());
    };
    let err = |message: String| Error::Config {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: File = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    file.schedule
        .into_iter()
        .map(|s| Schedule::new(s).map_err(err))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(cron: &str, tz: &str) -> Schedule {
        Schedule::new(ScheduleSpec {
            name: "s".into(),
            cron: cron.into(),
            timezone: tz.into(),
            runbook: "r.rhai".into(),
            mode: ScheduleMode::Plan,
            twin: None,
            speed: None,
            params: Default::default(),
            allow_overlap: false,
        })
        .unwrap()
    }

    #[test]
    fn occurrences_in_an_interval() {
        let s = every("*/15 * * * *", "UTC");
        // 2026-01-01T00:00:00Z .. +1h: 00:15, 00:30, 00:45, 01:00.
        let t0 = 1_767_225_600_000;
        assert_eq!(s.due(t0, t0 + 3_600_000), (4, Some(t0 + 3_600_000)));
        assert_eq!(s.due(t0, t0 + 60_000), (0, None));
    }

    #[test]
    fn time_zones_shift_the_hour() {
        // 03:00 in Paris is 02:00 UTC in winter.
        let s = every("0 3 * * *", "Europe/Paris");
        let t0 = 1_767_225_600_000; // 2026-01-01T00:00Z
        assert_eq!(s.due(t0, t0 + 86_400_000), (1, Some(t0 + 2 * 3_600_000)));
        assert!(Schedule::new(ScheduleSpec {
            timezone: "Mars/Olympus".into(),
            ..every("* * * * *", "UTC").spec
        })
        .is_err());
    }
}
