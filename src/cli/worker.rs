//! `lifeboat worker`: drives the runs of a shared store that nobody drives. Any number of
//! workers, on any hosts, with the same `--store`: each claims runs that are queued
//! (`lifeboat run --detach`) or orphaned (running, their lease expired past its grace), by
//! taking their lease, and executes them like `resume` would (in-flight steps reconciled).
//! Two workers never drive one run: the lease decides, in the database.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::engine::{Limits, RunOptions};
use crate::error::Error;
use crate::journal::{Location, RunId, RunRecord, RunState};

use super::{open_engine, output};

pub fn run(
    db: &Location,
    config_file: Option<&std::path::Path>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    concurrency: usize,
) -> Result<u8, Error> {
    if !matches!(db, Location::Postgres { .. }) {
        return Err(Error::Usage(
            "lifeboat worker drives the runs of a shared store: give --store postgres://... (or LIFEBOAT_STORE); on the embedded store, `lifeboat daemon` resumes runs left behind".into(),
        ));
    }
    let exec = Arc::new(open_engine(db, config_file, clock, limits)?);
    let journal = exec.engine.journal().clone();
    let grace = journal.lease_settings().grace.as_secs_f64();
    eprintln!(
        "lifeboat worker: store {}, up to {concurrency} run(s) at once",
        db.describe()
    );
    let busy: Arc<Mutex<HashSet<RunId>>> = Arc::default();
    loop {
        for run in journal.runs()? {
            if busy.lock().unwrap_or_else(|p| p.into_inner()).len() >= concurrency {
                break;
            }
            if busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&run.id)
                || !claimable(&run, journal.lease(&run.id)?, grace)
            {
                continue;
            }
            busy.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(run.id.clone());
            let (exec, busy) = (exec.clone(), busy.clone());
            std::thread::spawn(move || {
                let opts = RunOptions {
                    no_wait: false,
                    // Another worker may have claimed it a moment ago: then leave it.
                    claim_only: true,
                    ..Default::default()
                };
                match exec.engine.execute(&run.id, None, opts) {
                    Ok(outcome) => eprint!("{}", output::outcome(&run.id, &outcome)),
                    Err(crate::engine::Error::Journal(crate::journal::Error::Leased {
                        ..
                    })) => {}
                    Err(e) => eprintln!("run {}: {e}", run.id),
                }
                busy.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&run.id);
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether a worker should take `run`: queued, or running with nobody renewing its lease
/// (expired more than the grace period ago, or never taken).
fn claimable(run: &RunRecord, lease: Option<crate::journal::LeaseInfo>, grace: f64) -> bool {
    match run.state {
        RunState::Queued => true,
        RunState::Running { .. } => lease.is_none_or(|l| l.expires_in < -grace),
        _ => false,
    }
}
