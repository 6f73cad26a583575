//! Step options: what a runbook may say about how a step runs.

use std::time::Duration;

use rhai::{Dynamic, FnPtr, Map};

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
                other => {
                    return Err(format!(
                        "unknown step option {other:?} (retries, backoff, max_backoff, timeout, idempotent, check)"
                    ))
                }
            }
        }
        Ok(opts)
    }

    /// The wait before attempt `attempt + 1`, after attempt `attempt` failed.
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
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
