//! Leases: how a shared store is driven by exactly one process per run. A driver takes a
//! run's lease (with a fencing epoch), renews it every third of its length from a thread of its
//! own, checks it on its monotonic clock before every change it sends, and writes the run's
//! records only under its epoch (`put_for`); another process takes the run over once the
//! lease expired past its grace period, or at once when its holder was a process of this
//! machine that exited. On a store one process holds (sled), all of this is nothing.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::store::{Keyspace, LeaseInfo};
use super::{lock, Error, Journal, RunId};

/// How long a run's lease lasts and how long after its expiry another process may take the
/// run over (`LIFEBOAT_LEASE`, `LIFEBOAT_LEASE_GRACE`; shared stores only).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeaseSettings {
    pub ttl: Duration,
    pub grace: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            ttl: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        }
    }
}

impl LeaseSettings {
    /// The settings from `LIFEBOAT_LEASE` and `LIFEBOAT_LEASE_GRACE` (durations such as
    /// `15s`), else the defaults.
    pub fn from_env() -> Result<LeaseSettings, String> {
        let mut s = LeaseSettings::default();
        for (var, slot) in [
            ("LIFEBOAT_LEASE", &mut s.ttl),
            ("LIFEBOAT_LEASE_GRACE", &mut s.grace),
        ] {
            if let Some(v) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
                *slot = humantime::parse_duration(&v)
                    .map_err(|e| format!("{var}={v:?}: {e} (a duration such as 15s)"))?;
            }
        }
        if s.ttl < Duration::from_millis(300) {
            return Err(format!(
                "LIFEBOAT_LEASE: {} is too short for renewals every third of it",
                humantime::format_duration(s.ttl)
            ));
        }
        Ok(s)
    }

    /// How long after a renewal was sent the driver still counts on its lease: two thirds of
    /// it, so that a driver frozen past that point stops before anything can take over.
    fn safe_for(&self) -> Duration {
        self.ttl * 2 / 3
    }
}

/// A lease this process holds on a run.
pub(super) struct Held {
    pub(super) epoch: u64,
    /// When the last renewal that succeeded was sent (this machine's monotonic clock).
    pub(super) renewed: Instant,
    /// Set when the lease was lost: what happened.
    pub(super) lost: Option<String>,
}

impl Journal {
    /// Whether other processes may write this store at the same time (see [`Store::is_shared`]).
    pub fn is_shared(&self) -> bool {
        self.store.is_shared()
    }

    pub fn lease_settings(&self) -> LeaseSettings {
        self.leases
    }

    /// Takes the lease of run `id` for this process (`owner` names it), so that it alone
    /// drives the run; renewed every third of its length until the returned guard drops.
    ///
    /// A lease held by another process is waited for while it runs out unrenewed (its holder
    /// died: the run is taken over once it expired and the grace period passed); a lease that
    /// is renewed meanwhile has a live holder, and [`Error::Leased`] says who. On a store held
    /// by one process, there is nothing to take.
    pub fn take_lease(self: &Arc<Self>, id: &RunId, owner: &str) -> Result<LeaseGuard, Error> {
        if !self.is_shared() {
            return Ok(LeaseGuard { journal: None });
        }
        // The holder's expiry as first seen (epoch, when on this machine's clock).
        let mut first: Option<(u64, Instant)> = None;
        let mut dead: Option<String> = None;
        let (sent, epoch) = loop {
            let sent = Instant::now();
            let holder = match self.store.acquire_lease(
                id.as_str(),
                owner,
                self.leases.ttl,
                self.leases.grace,
                dead.as_deref(),
            )? {
                Ok(epoch) => break (sent, epoch),
                Err(holder) => holder,
            };
            // A holder of this machine that exited sends nothing more: no need to wait for its
            // lease (a frozen one still exists, and is waited for).
            if dead.is_none() && exited_here(&holder.owner) {
                dead = Some(holder.owner);
                continue;
            }
            let expiry = sent + Duration::from_secs_f64(holder.expires_in.max(0.0));
            let renewed = first.is_some_and(|(epoch, at)| {
                holder.epoch != epoch || expiry > at + Duration::from_millis(200)
            });
            if renewed {
                return Err(Error::Leased {
                    run: id.to_string(),
                    owner: holder.owner,
                    left: format!("{:.1}s more, and is being renewed", holder.expires_in),
                    grace: humantime::format_duration(self.leases.grace).to_string(),
                });
            }
            first.get_or_insert((holder.epoch, expiry));
            // Unrenewed so far: wait for it to run out and the grace period to pass, looking
            // again every second.
            let until = expiry + self.leases.grace + Duration::from_millis(50);
            let wait = until.saturating_duration_since(Instant::now());
            std::thread::sleep(wait.clamp(Duration::from_millis(50), Duration::from_secs(1)));
        };
        Ok(self.hold(id, epoch, sent))
    }

    /// Starts holding a lease just taken at `epoch` (its request sent at `sent`): renewed
    /// from a thread of its own until the guard drops.
    fn hold(self: &Arc<Self>, id: &RunId, epoch: u64, sent: Instant) -> LeaseGuard {
        lock(&self.held).insert(
            id.clone(),
            Held {
                epoch,
                renewed: sent,
                lost: None,
            },
        );
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let renewer = {
            let (journal, id, stop) = (Arc::clone(self), id.clone(), stop.clone());
            std::thread::spawn(move || journal.renew_until(&id, epoch, &stop))
        };
        LeaseGuard {
            journal: Some((Arc::clone(self), id.clone(), epoch, stop, Some(renewer))),
        }
    }

    /// [`Journal::take_lease`] without waiting: refused at once while anyone holds the lease
    /// (a worker claiming a run another worker just took).
    pub fn claim_lease(self: &Arc<Self>, id: &RunId, owner: &str) -> Result<LeaseGuard, Error> {
        if !self.is_shared() {
            return Ok(LeaseGuard { journal: None });
        }
        let (ttl, grace) = (self.leases.ttl, self.leases.grace);
        let sent = Instant::now();
        let mut answer = self
            .store
            .acquire_lease(id.as_str(), owner, ttl, grace, None)?;
        // A holder of this machine that exited is no claim on the run.
        if let Err(holder) = &answer {
            if exited_here(&holder.owner) {
                let dead = holder.owner.clone();
                answer = self
                    .store
                    .acquire_lease(id.as_str(), owner, ttl, grace, Some(&dead))?;
            }
        }
        match answer {
            Ok(epoch) => Ok(self.hold(id, epoch, sent)),
            Err(holder) => Err(Error::Leased {
                run: id.to_string(),
                owner: holder.owner,
                left: format!("{:.1}s more", holder.expires_in),
                grace: humantime::format_duration(self.leases.grace).to_string(),
            }),
        }
    }

    /// The renewal loop of a held lease: every third of its length, until `stop`.
    fn renew_until(&self, id: &RunId, epoch: u64, stop: &(Mutex<bool>, Condvar)) {
        let every = self.leases.ttl / 3;
        loop {
            {
                let (m, cv) = stop;
                let stopped = lock(m);
                let (stopped, _) = cv
                    .wait_timeout_while(stopped, every, |s| !*s)
                    .unwrap_or_else(|p| p.into_inner());
                if *stopped {
                    return;
                }
            }
            let sent = Instant::now();
            match self.store.renew_lease(id.as_str(), epoch, self.leases.ttl) {
                Ok(true) => {
                    if let Some(h) = lock(&self.held).get_mut(id) {
                        h.renewed = sent;
                    }
                }
                Ok(false) => {
                    self.lose(id, "another process took its lease over".to_string());
                    return;
                }
                // The database is unreachable: keep trying; the driver stops on its own clock
                // if the lease runs out meanwhile (see `check_lease`).
                Err(_) => {}
            }
        }
    }

    fn lose(&self, id: &RunId, why: String) {
        if let Some(h) = lock(&self.held).get_mut(id) {
            h.lost.get_or_insert(why);
        }
    }

    /// Whether this process may still act for run `id`: its lease is held and, by this
    /// machine's monotonic clock, was renewed recently enough that nobody can have taken it.
    /// Asked before every change sent outside lifeboat.
    pub fn check_lease(&self, id: &RunId) -> Result<(), Error> {
        let stale = {
            let held = lock(&self.held);
            let Some(h) = held.get(id) else {
                return Ok(());
            };
            if let Some(why) = &h.lost {
                return Err(Error::Deposed {
                    run: id.to_string(),
                    detail: why.clone(),
                });
            }
            (h.renewed.elapsed() >= self.leases.safe_for()).then_some((h.epoch, h.renewed))
        };
        let Some((epoch, renewed)) = stale else {
            return Ok(());
        };
        // Renewals stopped for a while (this process froze, or the database was away): only
        // the database can say whether the run is still ours. A renewal at our epoch succeeds
        // only if nobody took the run over meanwhile.
        let sent = Instant::now();
        match self.store.renew_lease(id.as_str(), epoch, self.leases.ttl) {
            Ok(true) => {
                if let Some(h) = lock(&self.held).get_mut(id) {
                    h.renewed = sent;
                }
                Ok(())
            }
            answer => {
                let why = match answer {
                    Ok(_) => "another process took its lease over".to_string(),
                    Err(e) => format!(
                        "its lease was last renewed {:.1}s ago and cannot be renewed now: {e}",
                        renewed.elapsed().as_secs_f64()
                    ),
                };
                self.lose(id, why.clone());
                Err(Error::Deposed {
                    run: id.to_string(),
                    detail: why,
                })
            }
        }
    }

    /// The fencing epoch this process holds for run `id`, if it drives it under a lease.
    fn fence(&self, id: &RunId) -> Result<Option<u64>, Error> {
        match lock(&self.held).get(id) {
            None => Ok(None),
            Some(Held {
                lost: Some(why), ..
            }) => Err(Error::Deposed {
                run: id.to_string(),
                detail: why.clone(),
            }),
            Some(h) => Ok(Some(h.epoch)),
        }
    }

    /// A write of run `id`'s data, fenced by its lease when this process holds one.
    pub(super) fn put_for(
        &self,
        id: &RunId,
        space: Keyspace,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), Error> {
        match self.fence(id)? {
            None => self.store.put(space, key, value),
            Some(epoch) => {
                if self
                    .store
                    .put_fenced(space, key, value, id.as_str(), epoch)?
                {
                    Ok(())
                } else {
                    let why = "its lease was taken over: the store refused its write".to_string();
                    self.lose(id, why.clone());
                    Err(Error::Deposed {
                        run: id.to_string(),
                        detail: why,
                    })
                }
            }
        }
    }

    /// Wakes the driver of run `id`, wherever it runs (a shared store's notification).
    pub fn notify(&self, id: &RunId) -> Result<(), Error> {
        self.store.notify(id.as_str())
    }

    /// How many notifications this process has heard (see [`Store::notifications`]).
    pub fn notifications(&self) -> u64 {
        self.store.notifications()
    }

    /// Who holds run `id`'s lease, on a shared store.
    pub fn lease(&self, id: &RunId) -> Result<Option<LeaseInfo>, Error> {
        self.store.lease(id.as_str())
    }
}

/// Holds a run's lease while it lives (renewing it), and gives it up when dropped.
pub struct LeaseGuard {
    #[allow(clippy::type_complexity)]
    journal: Option<(
        Arc<Journal>,
        RunId,
        u64,
        Arc<(Mutex<bool>, Condvar)>,
        Option<std::thread::JoinHandle<()>>,
    )>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some((journal, id, epoch, stop, renewer)) = self.journal.as_mut() else {
            return;
        };
        *lock(&stop.0) = true;
        stop.1.notify_all();
        if let Some(r) = renewer.take() {
            let _ = r.join();
        }
        let lost = lock(&journal.held)
            .remove(id)
            .is_some_and(|h| h.lost.is_some());
        if !lost {
            // Let another process take the run at once (it stopped here); if this fails the
            // lease simply expires.
            let _ = journal.store.release_lease(id.as_str(), *epoch);
        }
    }
}

/// Whether a lease owner (`HOST pid N id X`) is a process of this machine that has exited.
fn exited_here(owner: &str) -> bool {
    let mut words = owner.split(' ');
    let (Some(host), Some("pid"), Some(pid)) = (words.next(), words.next(), words.next()) else {
        return false;
    };
    let this = hostname::get().map(|h| h.to_string_lossy().into_owned());
    pid.parse::<u32>().is_ok()
        && this.is_ok_and(|h| h == host)
        && !Path::new(&format!("/proc/{pid}")).exists()
}
