//! `lifeboat store copy --from A --to B`: every run of one store into another (a directory
//! of the embedded store, or a PostgreSQL URL), each kept resumable: its header, every event
//! with its sequence number, its runbook and modules. Runs the destination has already are
//! left alone and counted.

use crate::control::Access;
use crate::error::Error;
use crate::journal::{self, Journal, Location};

pub fn copy(from: &str, to: &str) -> Result<u8, Error> {
    let location = |given: &str| {
        let url = (given.starts_with("postgres://") || given.starts_with("postgresql://"))
            .then_some(given);
        Location::new(std::path::PathBuf::from(given), url)
    };
    let (from, to) = (location(from)?, location(to)?);
    if from == to {
        return Err(Error::Usage("--from and --to are the same store".into()));
    }
    let source = open(&from)?;
    let destination = open(&to)?;
    let (mut copied, mut events, mut skipped) = (0usize, 0usize, Vec::new());
    for run in source.runs()? {
        if destination.run(&run.id).is_ok() {
            skipped.push(run.id.to_string());
            continue;
        }
        let export = source.export(&run.id)?;
        events += export.events.len();
        destination.import(&export)?;
        copied += 1;
    }
    println!(
        "copied {copied} run{} ({events} events) from {} to {}",
        if copied == 1 { "" } else { "s" },
        from.describe(),
        to.describe()
    );
    if !skipped.is_empty() {
        println!(
            "left alone, already in {}: {}",
            to.describe(),
            skipped.join(", ")
        );
    }
    Ok(0)
}

/// A store opened here: the embedded one must not be held by another process (a run going on
/// there would keep writing to what is being copied).
fn open(location: &Location) -> Result<std::sync::Arc<Journal>, Error> {
    match Access::open(location, std::sync::Arc::new(crate::clock::SystemClock))? {
        Access::Local(journal, _) => Ok(journal),
        Access::Remote(_) if matches!(location, Location::Postgres { .. }) => {
            Ok(std::sync::Arc::new(Journal::open_at(location)?))
        }
        Access::Remote(_) => Err(journal::Error::Locked {
            dir: location.dir().to_path_buf(),
        }
        .into()),
    }
}
