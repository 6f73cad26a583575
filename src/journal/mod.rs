//! The journal: the durable truth of every run, and the only module that touches storage.
//!
//! A run is a header ([`RunRecord`]: runbook source, parameters, state) plus an append-only list
//! of [`Event`]s. Appending is cheap and not durable by itself; [`Journal::sync`] makes every
//! append made so far durable. Concurrent callers of `sync` share one flush (group commit), so
//! sixty-four steps finishing together cost a couple of fsyncs, not sixty-four.
//!
//! The engine decides *when* durability is needed (before a side effect leaves the process,
//! before a step is reported done); the journal makes it cheap. Storage sits behind [`Store`].

mod event;
mod lease;
mod postgres_store;
mod run;
mod sled_store;
mod step_state;
mod store;
mod verify;
mod wal;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use serde::{Deserialize, Serialize};

pub use event::{Decision, Event, EventRecord, PauseReason};
use lease::Held;
pub use lease::{LeaseGuard, LeaseSettings};
pub use postgres_store::PostgresStore;
pub use run::{GroupTally, Mode, ModuleFile, RunId, RunRecord, RunState, RunbookInfo, Verdict};
pub use sled_store::{SledStore, MANIFEST_NAME};
pub use step_state::{
    approvers_text, AttemptRecord, DecisionRecord, Entry, Gates, LogLine, OutcomeGroup, RunView,
    StepState, Vote,
};
pub use store::{redact, Keyspace, LeaseInfo, Location, Store};
pub use verify::RunCheck;

/// The layout version this build writes. A store with a higher version is refused, so an old
/// lifeboat never misreads a newer journal.
pub const SCHEMA_VERSION: u32 = 1;
const SCHEMA_KEY: &[u8] = b"schema_version";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the journal store {} is in use by another lifeboat process", dir.display())]
    Locked { dir: PathBuf },
    #[error("the journal store {} could not be opened: {detail}{held}. It may be damaged (for instance by an unclean stop). Move it aside (mv {dir} {dir}.damaged), then restore runs you exported with `lifeboat import`", dir.display(), dir = dir.display())]
    Corrupt {
        dir: PathBuf,
        detail: String,
        /// What its high-water mark says it held, when one was kept: "; when last synced it
        /// held 2 runs".
        held: String,
    },
    #[error("--db {}: this is a file, not a directory; the journal store is a directory (give a new or existing directory)", path.display())]
    NotADirectory { path: PathBuf },
    #[error("the journal store {} has lost data that was synced to disk: {detail}. Its files were truncated, replaced or corrupted (a failing disk, an old backup restored over it, a copy taken while lifeboat ran). Nothing was changed. Keep it for investigation (mv {dir} {dir}.damaged; `lifeboat verify --db {dir}.damaged` lists what it still holds) and restore the runs you exported with `lifeboat import`", dir.display(), dir = dir.display())]
    Damaged { dir: PathBuf, detail: String },
    #[error("the journal store {} was written by a newer lifeboat (schema {found}, this build reads up to {SCHEMA_VERSION}); use that version", dir.display())]
    NewerSchema { dir: PathBuf, found: u32 },
    #[error("--store {given}: not a store lifeboat knows; give a postgres:// URL (or nothing, for the embedded store in --db)")]
    BadLocation { given: String },
    #[error("the PostgreSQL store {store}: {detail}")]
    Database { store: String, detail: String },
    #[error("the PostgreSQL store {store} has schema version {found}, from a newer lifeboat (this build knows up to {known}); use that version")]
    NewerDatabase {
        store: String,
        found: i32,
        known: i32,
    },
    #[error("run {run} is being driven by {owner} (its lease runs {left}); it can be taken over only once that lease has expired and its grace period ({grace}) passed: `lifeboat status {run}` shows the lease")]
    Leased {
        run: String,
        owner: String,
        left: String,
        grace: String,
    },
    #[error("run {run} was taken over by another process ({detail}): this process wrote and sent nothing more, and stopped. The run goes on there (`lifeboat status {run}`)")]
    Deposed { run: String, detail: String },
    #[error("storage error in {}: {detail}", dir.display())]
    Storage { dir: PathBuf, detail: String },
    /// The store's disk refuses writes: full, read-only, or not ours. Nothing already written
    /// is lost; the operation can be tried again once that is fixed.
    #[error("the journal store {} cannot be written: {why}. Nothing recorded before is lost; {fix}, then try again", dir.display())]
    Unwritable {
        dir: PathBuf,
        why: String,
        fix: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unknown run id {id:?} (`lifeboat status` lists the runs)")]
    UnknownRun { id: String },
    #[error("run {id} already exists in this store")]
    RunExists { id: String },
    #[error("journal record could not be decoded: {0}")]
    Decode(String),
    #[error("illegal transition from {from} on {event}")]
    IllegalTransition { from: String, event: String },
}

impl Error {
    /// An I/O failure of the store's disk, as [`Error::Unwritable`] when the disk refuses
    /// writes (full, read-only, permissions), else as `other`.
    pub(crate) fn from_io(
        dir: &std::path::Path,
        io: std::io::Error,
        other: impl FnOnce(std::io::Error) -> Error,
    ) -> Error {
        use std::io::ErrorKind;
        let d = dir.display();
        let (why, fix) = match (io.kind(), io.raw_os_error()) {
            (ErrorKind::StorageFull, _) | (_, Some(28)) => (
                "the disk is full (No space left on device)".to_string(),
                format!("free space on the disk that holds {d}"),
            ),
            (_, Some(122)) => (
                "the disk quota is exceeded".to_string(),
                format!("free space or raise the quota of the disk that holds {d}"),
            ),
            (ErrorKind::ReadOnlyFilesystem, _) | (_, Some(30)) => (
                "its filesystem is read-only".to_string(),
                format!("remount the filesystem that holds {d} read-write"),
            ),
            (ErrorKind::PermissionDenied, _) => (
                format!("lifeboat may not write there ({io})"),
                format!("give this user write access to {d}"),
            ),
            _ => return other(io),
        };
        Error::Unwritable {
            dir: dir.to_path_buf(),
            why,
            fix,
        }
    }

    /// 2 when the store or the run asked for is the problem (bad input), 1 for I/O trouble.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Locked { .. }
            | Error::NotADirectory { .. }
            | Error::Damaged { .. }
            | Error::Corrupt { .. }
            | Error::NewerSchema { .. }
            | Error::UnknownRun { .. }
            | Error::RunExists { .. }
            | Error::BadLocation { .. }
            | Error::NewerDatabase { .. }
            | Error::Leased { .. } => 2,
            Error::Database { .. } | Error::Deposed { .. } => 1,
            Error::Storage { .. }
            | Error::Unwritable { .. }
            | Error::Io { .. }
            | Error::Decode(_)
            | Error::IllegalTransition { .. } => 1,
        }
    }
}

/// A run in portable form (`lifeboat export` / `import`).
#[derive(Debug, Serialize, Deserialize)]
pub struct RunExport {
    pub format: String,
    pub schema_version: u32,
    pub run: RunRecord,
    pub events: Vec<EventRecord>,
}

const EXPORT_FORMAT: &str = "lifeboat-run";

/// Group-commit bookkeeping: how many appends have completed, and how many are known durable.
struct Durability {
    /// Appends completed so far (a ticket is handed out after the write finishes).
    written: AtomicU64,
    state: Mutex<FlushState>,
    flushed_cv: Condvar,
}

struct FlushState {
    durable: u64,
    flushing: bool,
}

/// Durable storage of runs and their events.
pub struct Journal {
    store: Box<dyn Store>,
    dir: PathBuf,
    durability: Durability,
    /// Serialises read-modify-write of run headers.
    header_lock: Mutex<()>,
    /// The runs this process drives under a lease (shared stores), by run id.
    held: Mutex<HashMap<RunId, Held>>,
    leases: LeaseSettings,
}

impl Journal {
    /// Opens the sled store in `dir` and checks its schema version.
    pub fn open(dir: &Path) -> Result<Journal, Error> {
        let store = SledStore::open(dir)?;
        Journal::with_store(Box::new(store), dir)
    }

    /// Opens the store at `location`: sled in a directory, or a PostgreSQL database.
    pub fn open_at(location: &Location) -> Result<Journal, Error> {
        match location {
            Location::Dir(dir) => Journal::open(dir),
            Location::Postgres { url, dir } => {
                let store = PostgresStore::open(url)?;
                let mut journal = Journal::with_store(Box::new(store), dir)?;
                journal.leases = LeaseSettings::from_env().map_err(|detail| Error::Database {
                    store: redact(url),
                    detail,
                })?;
                Ok(journal)
            }
        }
    }

    pub fn with_store(store: Box<dyn Store>, dir: &Path) -> Result<Journal, Error> {
        match store.get(Keyspace::Meta, SCHEMA_KEY)? {
            None => {
                store.put(
                    Keyspace::Meta,
                    SCHEMA_KEY,
                    SCHEMA_VERSION.to_string().as_bytes(),
                )?;
                store.flush()?;
            }
            Some(raw) => {
                let found: u32 = std::str::from_utf8(&raw)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Error::Corrupt {
                        dir: dir.to_path_buf(),
                        detail: "unreadable schema version".into(),
                        held: String::new(),
                    })?;
                if found > SCHEMA_VERSION {
                    return Err(Error::NewerSchema {
                        dir: dir.to_path_buf(),
                        found,
                    });
                }
            }
        }
        let repair = store.needs_repair();
        let journal = Journal {
            store,
            dir: dir.to_path_buf(),
            durability: Durability {
                written: AtomicU64::new(0),
                state: Mutex::new(FlushState {
                    durable: 0,
                    flushing: false,
                }),
                flushed_cv: Condvar::new(),
            },
            header_lock: Mutex::new(()),
            held: Mutex::default(),
            leases: LeaseSettings::default(),
        };
        if repair {
            journal.repair_headers()?;
        }
        Ok(journal)
    }

    /// Makes every run's header state the fold of its run-level events again (after a replay
    /// of the write-ahead log, a header may be older or newer than the events that survived).
    fn repair_headers(&self) -> Result<(), Error> {
        for mut record in self.runs()? {
            let events = self.events(&record.id)?;
            let Some(last) = events.last() else { continue };
            let mut state = RunState::Running { pid: 0 };
            for e in events.iter().filter(|e| e.event.is_run_level()) {
                match state.apply(&e.event) {
                    Ok(next) => state = next,
                    // `lifeboat verify` names such a run; nothing to guess here.
                    Err(_) => break,
                }
            }
            if state != record.state {
                record.state = state;
                record.updated_at = record.updated_at.max(last.at);
                self.put_run(&record)?;
            }
        }
        self.sync()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A number never used before in this store (run ids, event sequences).
    pub fn unique(&self) -> Result<u64, Error> {
        self.store.next_id()
    }

    /// A store-wide value (the daemon's schedule state).
    pub fn meta(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(self
            .store
            .get(Keyspace::Meta, key.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Claims the store-wide `key` for `by`, durably: true for the one caller (of every
    /// process of the store) that claimed it first.
    pub fn claim(&self, key: &str, by: &str) -> Result<bool, Error> {
        let won = self
            .store
            .put_if_absent(Keyspace::Meta, key.as_bytes(), by.as_bytes())?;
        if won {
            self.durability.written.fetch_add(1, Ordering::AcqRel);
            self.sync()?;
        }
        Ok(won)
    }

    /// Sets a store-wide value, durably.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), Error> {
        self.store
            .put(Keyspace::Meta, key.as_bytes(), value.as_bytes())?;
        self.durability.written.fetch_add(1, Ordering::AcqRel);
        self.sync()
    }

    /// Stores a new run's header, durably.
    pub fn create_run(&self, record: &RunRecord) -> Result<(), Error> {
        let _guard = self.header_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self
            .store
            .get(Keyspace::Runs, record.id.as_str().as_bytes())?
            .is_some()
        {
            return Err(Error::RunExists {
                id: record.id.to_string(),
            });
        }
        self.put_run(record)?;
        self.sync()
    }

    fn put_run(&self, record: &RunRecord) -> Result<(), Error> {
        let bytes = serde_json::to_vec(record).map_err(|e| Error::Decode(e.to_string()))?;
        self.put_for(
            &record.id,
            Keyspace::Runs,
            record.id.as_str().as_bytes(),
            &bytes,
        )?;
        self.durability.written.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    pub fn run(&self, id: &RunId) -> Result<RunRecord, Error> {
        let raw = self
            .store
            .get(Keyspace::Runs, id.as_str().as_bytes())?
            .ok_or_else(|| Error::UnknownRun { id: id.to_string() })?;
        serde_json::from_slice(&raw).map_err(|e| Error::Decode(e.to_string()))
    }

    /// All runs, oldest first (run ids sort by start time).
    pub fn runs(&self) -> Result<Vec<RunRecord>, Error> {
        self.store
            .scan_prefix(Keyspace::Runs, b"")?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| Error::Decode(e.to_string())))
            .collect()
    }

    /// Appends one event at time `at` (epoch ms). Not durable until [`Journal::sync`]. Run-level
    /// events also move the run header through [`RunState::apply`].
    pub fn append(&self, id: &RunId, at: u64, event: Event) -> Result<EventRecord, Error> {
        let seq = self.store.next_id()?;
        let record = EventRecord { seq, at, event };
        let bytes = serde_json::to_vec(&record).map_err(|e| Error::Decode(e.to_string()))?;
        self.put_for(id, Keyspace::Events, &event_key(id, seq), &bytes)?;
        if record.event.is_run_level() {
            let _guard = self.header_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut header = self.run(id)?;
            header.state = header.state.apply(&record.event)?;
            header.updated_at = at;
            self.put_run(&header)?;
        }
        // The ticket is taken after the write has completed: a flush that starts after this
        // point is guaranteed to cover it.
        self.durability.written.fetch_add(1, Ordering::AcqRel);
        Ok(record)
    }

    /// Appends and makes durable before returning.
    pub fn append_durable(&self, id: &RunId, at: u64, event: Event) -> Result<EventRecord, Error> {
        let record = self.append(id, at, event)?;
        self.sync()?;
        Ok(record)
    }

    /// Blocks until every append completed before this call is on disk. Concurrent callers
    /// share flushes: one leader flushes, the others wait for a flush that covers them.
    pub fn sync(&self) -> Result<(), Error> {
        let target = self.durability.written.load(Ordering::Acquire);
        let d = &self.durability;
        let mut state = d.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if state.durable >= target {
                return Ok(());
            }
            if state.flushing {
                state = d.flushed_cv.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state.flushing = true;
            // Everything counted here has completed its write, so this flush covers it.
            let covered = d.written.load(Ordering::Acquire);
            drop(state);
            let result = self.store.flush();
            state = d.state.lock().unwrap_or_else(|p| p.into_inner());
            state.flushing = false;
            if result.is_ok() {
                state.durable = state.durable.max(covered);
            }
            d.flushed_cv.notify_all();
            result?;
        }
    }

    /// A run's events in order.
    pub fn events(&self, id: &RunId) -> Result<Vec<EventRecord>, Error> {
        self.run(id)?;
        self.store
            .scan_prefix(Keyspace::Events, &event_prefix(id))?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| Error::Decode(e.to_string())))
            .collect()
    }

    pub fn export(&self, id: &RunId) -> Result<RunExport, Error> {
        Ok(RunExport {
            format: EXPORT_FORMAT.to_string(),
            schema_version: SCHEMA_VERSION,
            run: self.run(id)?,
            events: self.events(id)?,
        })
    }

    /// Adds an exported run to this store, durably. Refuses an id that exists already.
    pub fn import(&self, export: &RunExport) -> Result<(), Error> {
        if export.format != EXPORT_FORMAT {
            return Err(Error::Decode(format!(
                "not a lifeboat run export (format {:?})",
                export.format
            )));
        }
        if export.schema_version > SCHEMA_VERSION {
            return Err(Error::NewerSchema {
                dir: self.dir.clone(),
                found: export.schema_version,
            });
        }
        self.create_run(&export.run)?;
        if let Some(last) = export.events.iter().map(|r| r.seq).max() {
            self.store.ids_above(last)?;
        }
        for record in &export.events {
            let bytes = serde_json::to_vec(record).map_err(|e| Error::Decode(e.to_string()))?;
            self.store.put(
                Keyspace::Events,
                &event_key(&export.run.id, record.seq),
                &bytes,
            )?;
            self.durability.written.fetch_add(1, Ordering::AcqRel);
        }
        self.sync()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn event_prefix(id: &RunId) -> Vec<u8> {
    let mut key = id.as_str().as_bytes().to_vec();
    key.push(0);
    key
}

fn event_key(id: &RunId, seq: u64) -> Vec<u8> {
    let mut key = event_prefix(id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &RunId) -> RunRecord {
        RunRecord {
            id: id.clone(),
            runbook: RunbookInfo {
                path: "x.rhai".into(),
                name: "x".into(),
                description: String::new(),
                rto_secs: None,
            },
            source: "1".into(),
            modules: Vec::new(),
            params: Default::default(),
            pre_approved: vec![],
            mode: Mode::Normal,
            undo_of: None,
            created_at: 1,
            updated_at: 1,
            state: RunState::Running { pid: 1 },
        }
    }

    #[test]
    fn events_survive_reopen_in_order_and_move_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let id = RunId::parse("r1").unwrap();
        {
            let j = Journal::open(dir.path()).unwrap();
            j.create_run(&record(&id)).unwrap();
            for i in 0..300u32 {
                j.append(
                    &id,
                    2,
                    Event::Logged {
                        key: Some(i.to_string()),
                        message: format!("m{i}"),
                        warning: false,
                    },
                )
                .unwrap();
            }
            j.append_durable(
                &id,
                3,
                Event::RunSucceeded {
                    result: serde_json::json!(7),
                    verdict: Default::default(),
                },
            )
            .unwrap();
        }
        let j = reopen(dir.path()).unwrap();
        let events = j.events(&id).unwrap();
        assert_eq!(events.len(), 301);
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(
            events[299].event,
            Event::Logged {
                key: Some("299".into()),
                message: "m299".into(),
                warning: false,
            }
        );
        assert_eq!(
            j.run(&id).unwrap().state,
            RunState::Succeeded {
                result: serde_json::json!(7),
                verdict: Default::default(),
            }
        );
        // A finished run accepts no further run-level event.
        assert!(j
            .append(&id, 4, Event::RunAborted { by: "x".into() })
            .is_err());
    }

    #[test]
    fn second_open_is_a_lock_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let _j = Journal::open(dir.path()).unwrap();
        assert!(matches!(
            Journal::open(dir.path()),
            Err(Error::Locked { .. })
        ));
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.put(Keyspace::Meta, SCHEMA_KEY, b"99").unwrap();
            store.flush().unwrap();
        }
        assert!(matches!(
            reopen(dir.path()),
            Err(Error::NewerSchema { found: 99, .. })
        ));
    }

    /// Opens a store this process had open a moment ago: sled's background flusher may hold
    /// its file lock for a little while after the store is dropped.
    fn reopen(dir: &Path) -> Result<Journal, Error> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            match Journal::open(dir) {
                Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other,
            }
        }
    }

    #[test]
    fn concurrent_durable_appends_all_become_durable() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let id = RunId::parse("r").unwrap();
        j.create_run(&record(&id)).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let j = &j;
                let id = &id;
                s.spawn(move || {
                    for i in 0..50 {
                        j.append_durable(
                            id,
                            1,
                            Event::Logged {
                                key: Some(format!("{t}.{i}")),
                                message: String::new(),
                                warning: false,
                            },
                        )
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(j.events(&id).unwrap().len(), 400);
        let st = j.durability.state.lock().unwrap();
        assert!(st.durable >= j.durability.written.load(Ordering::Acquire));
    }
}
