//! The storage trait the journal writes through, and its sled implementation.
//!
//! The journal never names sled outside this file: it sees a handful of keyspaces of ordered
//! byte keys, and one `flush` that makes everything written so far durable. A shared-database
//! backend (for a runner that must survive the loss of its host) implements [`Store`] and
//! nothing else changes.

use std::path::{Path, PathBuf};

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
}

/// The embedded sled database (pinned to 0.34.7, the last stable release).
pub struct SledStore {
    db: sled::Db,
    runs: sled::Tree,
    events: sled::Tree,
    dir: PathBuf,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`.
    ///
    /// sled takes an exclusive file lock: a second process gets [`Error::Locked`], which callers
    /// turn into a request over the owner's control socket instead of a raw lock error.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let db = sled::Config::new()
            .path(dir)
            // We flush explicitly at every durability point; the background flush only
            // shortens the window for records that are allowed to be lost (log lines).
            .flush_every_ms(Some(1000))
            // sled's default page cache is 1 GiB; a journal needs far less, and a recovery
            // should not compete with the operator's tools for memory.
            .cache_capacity(64 << 20)
            .open()
            .map_err(|e| classify_open_error(dir, e))?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|e| Error::Corrupt {
                dir: dir.to_path_buf(),
                detail: e.to_string(),
            })
        };
        Ok(SledStore {
            runs: tree("runs")?,
            events: tree("events")?,
            db: db.clone(),
            dir: dir.to_path_buf(),
        })
    }

    fn tree(&self, space: Keyspace) -> &sled::Tree {
        match space {
            Keyspace::Meta => &self.db,
            Keyspace::Runs => &self.runs,
            Keyspace::Events => &self.events,
        }
    }

    fn storage_error(&self, e: sled::Error) -> Error {
        Error::Storage {
            dir: self.dir.clone(),
            detail: e.to_string(),
        }
    }
}

fn classify_open_error(dir: &Path, e: sled::Error) -> Error {
    match e {
        // sled reports its file lock as an `Other` I/O error with this text.
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => Error::Locked {
            dir: dir.to_path_buf(),
        },
        other => Error::Corrupt {
            dir: dir.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

impl Store for SledStore {
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.tree(space)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.storage_error(e))
    }

    fn put(&self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.tree(space)
            .insert(key, value)
            .map(drop)
            .map_err(|e| self.storage_error(e))
    }

    fn scan_prefix(&self, space: Keyspace, prefix: &[u8]) -> Result<Vec<KeyValue>, Error> {
        self.tree(space)
            .scan_prefix(prefix)
            .map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| self.storage_error(e))
            })
            .collect()
    }

    fn next_id(&self) -> Result<u64, Error> {
        self.db.generate_id().map_err(|e| self.storage_error(e))
    }

    fn flush(&self) -> Result<(), Error> {
        // One flush covers every tree: they share sled's single log.
        self.db.flush().map(drop).map_err(|e| self.storage_error(e))
    }
}
