//! The pace of OVH calls: how many requests per second and how many at once, for every step
//! of every run this client serves.
//!
//! It starts at the configured limits (`LIFEBOAT_OVH_RATE_LIMIT`, `LIFEBOAT_OVH_CONCURRENCY`).
//! When OVH answers "overloaded" (5xx or 429) to [`BURST`] calls within [`WINDOW`], the pace is
//! halved: the rate actually achieved over the window and the concurrency both drop by half
//! (at most once per [`COOL_DOWN`]). Every [`RECOVER_AFTER`] successful answers it grows back by
//! a step (one more call at once, half again the rate), up to the configured limits: the
//! additive-increase, multiplicative-decrease rule TCP uses, so that an API everyone is
//! hammering during an incident gets room to recover, and lifeboat speeds up once it does.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Overload answers within [`WINDOW`] that make lifeboat slow down.
pub const BURST: usize = 3;
/// The window in which overload answers are counted and the achieved rate is measured.
pub const WINDOW: Duration = Duration::from_secs(2);
/// The least time between two slow-downs.
pub const COOL_DOWN: Duration = Duration::from_secs(1);
/// Successful answers in a row that earn a step back toward the configured pace.
pub const RECOVER_AFTER: u32 = 10;
/// The slowest pace lifeboat goes down to, in requests per second.
pub const MIN_RATE: f64 = 0.5;
/// Without a configured rate, a recovering rate above this is lifted altogether.
const UNLIMITED_ABOVE: f64 = 50.0;

/// The pace as it stands, and why: what `status` shows.
#[derive(Clone, Debug, PartialEq)]
pub struct PaceSnapshot {
    /// Requests per second; `None`: no limit.
    pub rate: Option<f64>,
    pub concurrency: usize,
    /// Grows at every change, so a watcher journals each change once.
    pub version: u64,
    pub why: String,
}

struct State {
    rate: Option<f64>,
    concurrency: usize,
    in_flight: usize,
    next_slot: Option<Instant>,
    /// When recent requests were sent, to measure the rate achieved.
    sent: VecDeque<Instant>,
    /// When recent overload answers came.
    overloads: VecDeque<Instant>,
    last_cut: Option<Instant>,
    good: u32,
    version: u64,
    why: String,
    /// The latest changes, oldest first, so that a watcher that looks only after a storm
    /// still sees the slow-downs it went through.
    history: VecDeque<PaceSnapshot>,
}

impl State {
    /// Records a change of pace: a new version, kept in the history.
    fn changed(&mut self) {
        self.version += 1;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        let snapshot = PaceSnapshot {
            rate: self.rate,
            concurrency: self.concurrency,
            version: self.version,
            why: self.why.clone(),
        };
        self.history.push_back(snapshot);
    }
}

/// The shared pace; see the module documentation.
pub struct Pace {
    configured_rate: Option<f64>,
    configured_concurrency: usize,
    state: Mutex<State>,
    freed: tokio::sync::Notify,
}

/// How many past changes [`Pace::changes_since`] can still give.
const HISTORY: usize = 64;

/// A place among the calls in flight; given back when dropped.
pub struct Permit<'a> {
    pace: &'a Pace,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut st = self.pace.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        drop(st);
        self.pace.freed.notify_one();
    }
}

impl Pace {
    pub fn new(rate: Option<f64>, concurrency: usize) -> Pace {
        let rate = rate.filter(|r| *r > 0.0);
        let concurrency = concurrency.max(1);
        Pace {
            configured_rate: rate,
            configured_concurrency: concurrency,
            state: Mutex::new(State {
                rate,
                concurrency,
                in_flight: 0,
                next_slot: None,
                sent: VecDeque::new(),
                overloads: VecDeque::new(),
                last_cut: None,
                good: 0,
                version: 0,
                why: "the configured pace".to_string(),
                history: VecDeque::new(),
            }),
            freed: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> PaceSnapshot {
        let st = self.lock();
        PaceSnapshot {
            rate: st.rate,
            concurrency: st.concurrency,
            version: st.version,
            why: st.why.clone(),
        }
    }

    /// The changes of pace after `version`, oldest first (the latest [`HISTORY`] at most).
    pub fn changes_since(&self, version: u64) -> Vec<PaceSnapshot> {
        let st = self.lock();
        st.history
            .iter()
            .filter(|s| s.version > version)
            .cloned()
            .collect()
    }

    /// Waits for a place among the calls in flight and for this call's slot under the rate.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            // Registered before the check: a place freed in between is not missed (notify_one
            // keeps a permit when nobody waits yet).
            let freed = self.freed.notified();
            let wait = {
                let mut st = self.lock();
                if st.in_flight < st.concurrency {
                    st.in_flight += 1;
                    let now = Instant::now();
                    let slot = match st.rate {
                        Some(rate) => {
                            let slot = st.next_slot.map_or(now, |n| n.max(now));
                            st.next_slot = Some(slot + Duration::from_secs_f64(1.0 / rate));
                            slot
                        }
                        None => now,
                    };
                    st.sent.push_back(slot);
                    while st
                        .sent
                        .front()
                        .is_some_and(|t| now.duration_since(*t) > WINDOW)
                    {
                        st.sent.pop_front();
                    }
                    Some(slot.saturating_duration_since(now))
                } else {
                    None
                }
            };
            match wait {
                Some(wait) => {
                    let permit = Permit { pace: self };
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return permit;
                }
                None => freed.await,
            }
        }
    }

    /// Records how OVH answered a call: `Some(status)` when it said it is overloaded.
    pub fn observe(&self, overloaded: Option<u16>) {
        let now = Instant::now();
        let mut st = self.lock();
        match overloaded {
            Some(status) => {
                st.good = 0;
                st.overloads.push_back(now);
                while st
                    .overloads
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > WINDOW)
                {
                    st.overloads.pop_front();
                }
                let cooled = st
                    .last_cut
                    .is_none_or(|t| now.duration_since(t) >= COOL_DOWN);
                if st.overloads.len() >= BURST && cooled {
                    let achieved = st.sent.len() as f64 / WINDOW.as_secs_f64();
                    let current = st.rate.map_or(achieved, |r| r.min(achieved.max(MIN_RATE)));
                    st.rate = Some((current / 2.0).max(MIN_RATE));
                    st.concurrency = (st.concurrency / 2).max(1);
                    st.why = format!(
                        "OVH answered {status} (overloaded) to {} calls within {}s: slowing down",
                        st.overloads.len(),
                        WINDOW.as_secs()
                    );
                    st.overloads.clear();
                    st.last_cut = Some(now);
                    st.changed();
                }
            }
            None => {
                let degraded = st.rate != self.configured_rate
                    || st.concurrency != self.configured_concurrency;
                if !degraded {
                    return;
                }
                st.good += 1;
                if st.good < RECOVER_AFTER {
                    return;
                }
                st.good = 0;
                st.concurrency = (st.concurrency + 1).min(self.configured_concurrency);
                st.rate = match (st.rate, self.configured_rate) {
                    (Some(r), Some(limit)) => Some((r * 1.5).min(limit)),
                    (Some(r), None) if r * 1.5 > UNLIMITED_ABOVE => None,
                    (Some(r), None) => Some(r * 1.5),
                    (None, limit) => limit,
                };
                st.why = if st.rate == self.configured_rate
                    && st.concurrency == self.configured_concurrency
                {
                    "OVH answers normally again: back to the configured pace".to_string()
                } else {
                    "OVH answers again: speeding up".to_string()
                };
                st.changed();
                drop(st);
                self.freed.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_halves_the_pace_and_successes_bring_it_back() {
        let pace = Pace::new(Some(20.0), 8);
        pace.observe(Some(503));
        pace.observe(Some(503));
        assert_eq!(pace.snapshot().version, 0, "two overloads are not a burst");
        pace.observe(Some(503));
        let s = pace.snapshot();
        assert_eq!((s.concurrency, s.version), (4, 1));
        // Nothing was sent, so the achieved rate is the floor.
        assert_eq!(s.rate, Some(MIN_RATE));
        assert!(s
            .why
            .starts_with("OVH answered 503 (overloaded) to 3 calls"));
        // Within the cool-down, another burst changes nothing.
        for _ in 0..3 {
            pace.observe(Some(503));
        }
        assert_eq!(pace.snapshot().version, 1);
        for _ in 0..RECOVER_AFTER * 40 {
            pace.observe(None);
        }
        let s = pace.snapshot();
        assert_eq!((s.rate, s.concurrency), (Some(20.0), 8));
        assert_eq!(
            s.why,
            "OVH answers normally again: back to the configured pace"
        );
    }

    #[test]
    fn without_a_configured_rate_recovery_lifts_the_limit() {
        let pace = Pace::new(None, 16);
        for _ in 0..3 {
            pace.observe(Some(500));
        }
        assert_eq!(pace.snapshot().concurrency, 8);
        for _ in 0..RECOVER_AFTER * 60 {
            pace.observe(None);
        }
        let s = pace.snapshot();
        assert_eq!((s.rate, s.concurrency), (None, 16));
    }

    #[test]
    fn a_watcher_that_looks_late_still_sees_every_change() {
        let pace = Pace::new(None, 4);
        for _ in 0..3 {
            pace.observe(Some(503));
        }
        for _ in 0..RECOVER_AFTER {
            pace.observe(None);
        }
        let changes = pace.changes_since(0);
        let whys: Vec<&str> = changes.iter().map(|c| c.why.as_str()).collect();
        assert_eq!(
            whys,
            [
                "OVH answered 503 (overloaded) to 3 calls within 2s: slowing down",
                "OVH answers again: speeding up"
            ]
        );
        assert_eq!(changes[0].concurrency, 2);
        assert_eq!(changes[1].concurrency, 3);
        assert!(pace.changes_since(changes[1].version).is_empty());
    }

    #[tokio::test]
    async fn concurrency_is_enforced() {
        let pace = Pace::new(None, 2);
        let a = pace.acquire().await;
        let _b = pace.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(50), pace.acquire()).await;
        assert!(third.is_err(), "a third call waits");
        drop(a);
        let third = tokio::time::timeout(Duration::from_millis(500), pace.acquire()).await;
        assert!(third.is_ok(), "a freed place is taken");
    }
}
