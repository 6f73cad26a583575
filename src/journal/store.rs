//! The storage seam: the trait the journal writes through, what a store is (a directory for
//! sled, a URL for PostgreSQL), and the leases that let a shared store be driven by exactly
//! one process per run.
//!
//! The journal never names a backend outside `sled_store` and `postgres_store`: it sees a
//! handful of keyspaces of ordered byte keys and one `flush` that makes everything written so
//! far durable. A store that several processes open at once (PostgreSQL) also hands out
//! **leases**: the right to drive one run, with a fencing epoch that only grows; every write
//! made for a run under a lease is conditional on that epoch, so a driver that lost its lease
//! can write nothing more.

use std::path::PathBuf;
use std::time::Duration;

use super::Error;

/// The separate ordered key spaces the journal uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyspace {
    /// Store-wide facts: the schema version.
    Meta,
    /// One record per run, keyed by run id: the run's header and current state.
    Runs,
    /// The append-only event log, keyed by run id, a separator, then a big-endian sequence.
    Events,
}

/// A stored key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Who holds a run's lease, as a shared store knows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LeaseInfo {
    /// `host pid N id X`.
    pub owner: String,
    pub epoch: u64,
    /// Seconds until it expires (negative: expired that long ago), by the database's clock.
    pub expires_in: f64,
}

/// Ordered key/value storage with an explicit durability point.
pub trait Store: Send + Sync {
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;
    fn put(&self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<(), Error>;
    /// Every pair whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, space: Keyspace, prefix: &[u8]) -> Result<Vec<KeyValue>, Error>;
    /// A number never handed out before by this store, even across restarts.
    fn next_id(&self) -> Result<u64, Error>;
    /// Blocks until everything written before the call is on disk.
    fn flush(&self) -> Result<(), Error>;

    /// Writes `key` = `value` in `space` only if `key` is absent there; whether it wrote.
    /// Atomic among every process of the store: what makes a claim (a schedule's occurrence)
    /// go to one of them.
    fn put_if_absent(&self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<bool, Error>;

    /// Makes [`Store::next_id`] hand out only numbers above `floor` from now on (events
    /// imported from another store keep their sequence numbers: new ones must sort after).
    fn ids_above(&self, floor: u64) -> Result<(), Error> {
        while self.next_id()? <= floor {}
        Ok(())
    }

    /// Whether the store wrote back lost writes when it opened (a write-ahead log replayed
    /// over a database that lost its latest writes): a run's header may then lag behind its
    /// events, and the journal folds them again.
    fn needs_repair(&self) -> bool {
        false
    }

    /// Whether other processes may have this store open at the same time (a shared database):
    /// then runs are driven under leases, and what people decide reaches a driver through the
    /// store itself. A store held by one process (sled's file lock) needs neither.
    fn is_shared(&self) -> bool {
        false
    }

    /// Takes the lease of `run` for `owner`: granted when nobody holds it, when `owner` holds it
    /// already, when its holder let it expire more than `grace` ago, or when its holder is
    /// `dead` (a process of this machine known to have exited). Returns the new fencing
    /// epoch, or the current holder when it is refused.
    fn acquire_lease(
        &self,
        _run: &str,
        _owner: &str,
        _ttl: Duration,
        _grace: Duration,
        _dead: Option<&str>,
    ) -> Result<Result<u64, LeaseInfo>, Error> {
        Ok(Ok(0))
    }

    /// Extends the lease held at `epoch` by `ttl`; false when it is no longer held at that epoch
    /// (another process took the run over).
    fn renew_lease(&self, _run: &str, _epoch: u64, _ttl: Duration) -> Result<bool, Error> {
        Ok(true)
    }

    /// Gives up the lease held at `epoch` (the run stopped): another process may take the run
    /// at once.
    fn release_lease(&self, _run: &str, _epoch: u64) -> Result<(), Error> {
        Ok(())
    }

    /// Tells every process of the store that something was decided about `run` (an approval,
    /// an abort), so that its driver looks now rather than at its next poll.
    fn notify(&self, _run: &str) -> Result<(), Error> {
        Ok(())
    }

    /// How many notifications this process has received from other processes so far: a
    /// driver that sees it move reads the store at once.
    fn notifications(&self) -> u64 {
        0
    }

    /// Who holds the lease of `run`, if anyone ever did.
    fn lease(&self, _run: &str) -> Result<Option<LeaseInfo>, Error> {
        Ok(None)
    }

    /// [`Store::put`] that happens only while `run`'s lease is held at `epoch`; false (nothing
    /// written) when it is not.
    fn put_fenced(
        &self,
        space: Keyspace,
        key: &[u8],
        value: &[u8],
        _run: &str,
        _epoch: u64,
    ) -> Result<bool, Error> {
        self.put(space, key, value).map(|()| true)
    }
}

/// Where a store is.
#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    /// sled in this directory.
    Dir(PathBuf),
    /// A PostgreSQL database (`postgres://user@host:port/db?sslmode=...`); `dir` is still this
    /// machine's data directory (its control socket).
    Postgres { url: String, dir: PathBuf },
}

impl Location {
    /// The store named by `store` (a `postgres://` or `postgresql://` URL), else sled in `dir`.
    pub fn new(dir: PathBuf, store: Option<&str>) -> Result<Location, Error> {
        match store.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(Location::Dir(dir)),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Location::Postgres {
                    url: url.to_string(),
                    dir,
                })
            }
            Some(other) => Err(Error::BadLocation {
                given: redact(other),
            }),
        }
    }

    /// This machine's data directory (the control socket lives there).
    pub fn dir(&self) -> &std::path::Path {
        match self {
            Location::Dir(dir) | Location::Postgres { dir, .. } => dir,
        }
    }

    /// How messages name the store: its directory, or its URL without a password.
    pub fn describe(&self) -> String {
        match self {
            Location::Dir(dir) => dir.display().to_string(),
            Location::Postgres { url, .. } => redact(url),
        }
    }
}

/// A store URL as it may be shown: the password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _password)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_string(),
    };
    // A password may also come as a query parameter.
    let tail = tail
        .split('&')
        .map(|part| match part.split_once("password=") {
            Some((before, _)) => format!("{before}password=***"),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact("postgres://lifeboat:s3cret@db.example:5432/lb?sslmode=require"),
            "postgres://lifeboat:***@db.example:5432/lb?sslmode=require"
        );
        assert_eq!(
            redact("postgres://db.example/lb?user=x&password=s3cret"),
            "postgres://db.example/lb?user=x&password=***"
        );
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
    }
}
