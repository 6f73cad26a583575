//! Step options: what a runbook may say about how a step runs.

use std::time::Duration;

use rhai::{Dynamic, FnPtr, Map};

/// What happens when a step that may have changed something runs out of attempts and nothing
/// can tell whether it did (no `check`, or its check cannot answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// The run pauses (exit 3) with the step in doubt, and a person decides (the default).
    Pause,
    /// The step fails like any other: the script sees the error (and may catch it).
    Fail,
}

/// How long a step keeps retrying transient API failures unless it says otherwise.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(300);

/// `step(name, #{ ... }, || body)` options.
#[derive(Clone, Debug)]
pub struct StepOptions {
    /// Extra attempts after the first failure.
    pub retries: u32,
    /// Wait before the first retry; doubles after each failure up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Longest an attempt may run before it is stopped and counted as failed.
    pub timeout: Option<Duration>,
    /// Running the body twice does no harm (it can be re-run after a crash or a failure).
    pub idempotent: bool,
    /// Answers "is this already done?": `false` or `()` means no; `true` means yes; any other
    /// value means yes and becomes the step's result.
    pub check: Option<FnPtr>,
    /// How long transient API failures (5xx, 408, 429, timeouts, dropped connections) are
    /// retried, counted from the step's first attempt in this process, on top of `retries`.
    pub patience: Duration,
    pub on_failure: OnFailure,
    /// How to undo the step once it succeeded: called by `lifeboat undo` with the step's
    /// result, in a run of its own (where it calls `step()` like any runbook code).
    pub undo: Option<FnPtr>,
    /// The step cannot be undone, and why: `lifeboat undo` lists it and leaves it alone.
    pub irreversible: Option<String>,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            retries: 0,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: None,
            idempotent: false,
            check: None,
            patience: DEFAULT_PATIENCE,
            on_failure: OnFailure::Pause,
            undo: None,
            irreversible: None,
        }
    }
}

impl StepOptions {
    /// Reads an options map; unknown keys and ill-typed values are errors naming the key.
    pub fn from_map(map: Map) -> Result<StepOptions, String> {
        let mut opts = StepOptions::default();
        for (key, value) in map {
            match key.as_str() {
                "retries" => {
                    let n = value
                        .as_int()
                        .map_err(|t| format!("step option retries: expected an integer, got {t}"))?;
                    opts.retries = u32::try_from(n)
                        .map_err(|_| format!("step option retries: {n} is out of range"))?;
                }
                "backoff" => opts.backoff = duration_option("backoff", &value)?,
                "max_backoff" => opts.max_backoff = duration_option("max_backoff", &value)?,
                "timeout" => opts.timeout = Some(duration_option("timeout", &value)?),
                "idempotent" => {
                    opts.idempotent = value
                        .as_bool()
                        .map_err(|t| format!("step option idempotent: expected true or false, got {t}"))?
                }
                "check" => {
                    opts.check = Some(value.try_cast::<FnPtr>().ok_or_else(|| {
                        "step option check: expected a closure such as || is_done()".to_string()
                    })?)
                }
                "patience" => opts.patience = duration_option("patience", &value)?,
                "on_failure" => {
                    opts.on_failure = match value.clone().into_immutable_string().as_deref() {
                        Ok("pause") => OnFailure::Pause,
                        Ok("fail") => OnFailure::Fail,
                        _ => {
                            return Err(format!(
                                "step option on_failure: expected \"pause\" or \"fail\", got {value}"
                            ))
                        }
                    }
                }
                "undo" => {
                    opts.undo = Some(value.try_cast::<FnPtr>().ok_or_else(|| {
                        "step option undo: expected a closure such as |result| move_back(result)"
                            .to_string()
                    })?)
                }
                "irreversible" => {
                    let why = value.into_string().map_err(|t| {
                        format!("step option irreversible: expected the reason as a string, got {t}")
                    })?;
                    if why.trim().is_empty() {
                        return Err("step option irreversible: say why the step cannot be undone".to_string());
                    }
                    opts.irreversible = Some(why);
                }
                other => {
                    return Err(format!(
                        "unknown step option {other:?} (retries, backoff, max_backoff, timeout, idempotent, check, patience, on_failure, undo, irreversible)"
                    ))
                }
            }
        }
        if opts.undo.is_some() && opts.irreversible.is_some() {
            return Err("a step cannot have both undo and irreversible: it either has a way back or says why not".to_string());
        }
        Ok(opts)
    }

    /// The wait before attempt `attempt + 1`, after attempt `attempt` failed.
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }

    /// [`StepOptions::backoff_after`] with full jitter in its upper half (between half and all
    /// of it), so that many steps meeting the same overloaded API do not retry in step.
    pub fn jittered_backoff_after(&self, attempt: u32) -> Duration {
        let base = self.backoff_after(attempt);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let spread = f64::from(nanos % 1000) / 1000.0;
        base.mul_f64(0.5 + spread / 2.0)
    }
}

/// A duration given as `"30s"` / `"1h 30m"` or as a number of seconds.
pub fn duration_option(what: &str, value: &Dynamic) -> Result<Duration, String> {
    if let Ok(secs) = value.as_int() {
        return u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| format!("{what}: a duration cannot be negative"));
    }
    if let Ok(secs) = value.as_float() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{what}: invalid duration {secs}"));
    }
    let text = value
        .clone()
        .into_immutable_string()
        .map_err(|t| format!("{what}: expected a duration such as \"30s\", got {t}"))?;
    humantime::parse_duration(&text).map_err(|e| format!("{what}: {e} in {:?}", text.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let o = StepOptions {
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(10),
            ..Default::default()
        };
        assert_eq!(o.backoff_after(1), Duration::from_secs(2));
        assert_eq!(o.backoff_after(2), Duration::from_secs(4));
        assert_eq!(o.backoff_after(3), Duration::from_secs(8));
        assert_eq!(o.backoff_after(4), Duration::from_secs(10));
    }

    #[test]
    fn options_are_checked() {
        let mut m = Map::new();
        m.insert("retries".into(), Dynamic::from(3_i64));
        m.insert("timeout".into(), Dynamic::from("1m"));
        let o = StepOptions::from_map(m).unwrap();
        assert_eq!((o.retries, o.timeout), (3, Some(Duration::from_secs(60))));
        let mut m = Map::new();
        m.insert("retry".into(), Dynamic::from(3_i64));
        assert!(StepOptions::from_map(m)
            .unwrap_err()
            .contains("unknown step option \"retry\""));
    }
}
