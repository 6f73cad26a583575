//! Time, passed in. The engine reads "now" and waits only through a [`Clock`], so tests and
//! rehearsals can compress time: a durable `sleep("10m")` under a 1000x clock takes 0.6 s, and
//! the journal still records ten virtual minutes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as the engine sees them.
pub type Millis = u64;

pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Millis;
    /// How long to really wait for `virtual_ms` of this clock's time to pass.
    fn real_duration(&self, virtual_ms: u64) -> Duration;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        real_now()
    }
    fn real_duration(&self, virtual_ms: u64) -> Duration {
        Duration::from_millis(virtual_ms)
    }
}

fn real_now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Time running `scale` times faster than the wall clock from an `anchor` instant on. Two
/// processes given the same anchor and scale agree on the time, so a run killed and resumed
/// under a scaled clock waits only what remains of its sleeps.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    pub anchor: Millis,
    pub scale: u64,
}

impl ScaledClock {
    /// The anchor when none is given: 2025-01-01T00:00:00Z. Fixed, so that processes agree.
    pub const DEFAULT_ANCHOR: Millis = 1_735_689_600_000;

    /// Parses `SCALE` or `SCALE@ANCHOR_MS`, the form of `LIFEBOAT_CLOCK`.
    pub fn parse(spec: &str) -> Option<ScaledClock> {
        let (scale, anchor) = match spec.split_once('@') {
            Some((s, a)) => (s, a.parse().ok()?),
            None => (spec, Self::DEFAULT_ANCHOR),
        };
        let scale: u64 = scale.trim_start_matches("scale:").parse().ok()?;
        (scale >= 1).then_some(ScaledClock { anchor, scale })
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Millis {
        let real = real_now();
        self.anchor + real.saturating_sub(self.anchor) * self.scale
    }
    fn real_duration(&self, virtual_ms: u64) -> Duration {
        Duration::from_micros(virtual_ms.saturating_mul(1000) / self.scale)
    }
}

/// Formats an epoch-ms time as RFC 3339 with milliseconds, UTC.
pub fn format_time(ms: Millis) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    // humantime refuses years past 9999 (a heavily compressed clock can get there).
    match write!(
        out,
        "{}",
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms))
    ) {
        Ok(()) => out,
        Err(_) => format!("{ms}ms"),
    }
}

/// Formats a duration the way operators read it: `850ms`, `12.3s`, `4m 05s`, `2h 10m`.
pub fn format_duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_clock_spec() {
        let c = ScaledClock::parse("1000@1700000000000").unwrap();
        assert_eq!((c.scale, c.anchor), (1000, 1_700_000_000_000));
        assert_eq!(c.real_duration(600_000), Duration::from_millis(600));
        assert!(ScaledClock::parse("0").is_none());
        assert!(ScaledClock::parse("fast").is_none());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(850), "850ms");
        assert_eq!(format_duration(12_345), "12.3s");
        assert_eq!(format_duration(245_000), "4m 05s");
        assert_eq!(format_duration(7_800_000), "2h 10m");
    }
}
