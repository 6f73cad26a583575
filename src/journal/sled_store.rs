//! The embedded store: sled, in a directory of this machine, held by one process at a time
//! (its file lock), made durable on power loss by syncs of our own after sled's flush.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::store::{KeyValue, Keyspace, Store};
use super::wal::{Wal, CHECKPOINT_BYTES, WAL_NAME};
use super::Error;

/// The high-water mark kept beside sled's files: how many runs the store held and how far its
/// sequence had gone, the last time both were known to be on stable storage. A store that opens
/// with less has lost synced data (a truncated or replaced file), which is refused rather than
/// shown as an empty store.
pub const MANIFEST_NAME: &str = "lifeboat.manifest";

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Manifest {
    runs: u64,
    max_seq: u64,
}

/// The embedded sled database (pinned to 0.34.7, the last stable release).
///
/// sled's own flush ends in `sync_file_range` on Linux, which survives the death of the
/// process but not a power cut: it flushes neither the device's write cache nor the file's
/// metadata. So a barrier ([`Store::flush`]) does not rely on it: every write is also kept in
/// the store's write-ahead log (`wal`), and a barrier is one write and `fdatasync` of that
/// log. sled itself is made durable (its flush, `fdatasync` of its log file and, when their
/// entries changed, an `fsync` of the store's directory and of sled's `blobs` directory, where
/// sled creates and renames snapshot and blob files) at checkpoints, when the log has grown,
/// and the log is emptied then.
pub struct SledStore {
    db: sled::Db,
    runs: sled::Tree,
    events: sled::Tree,
    dir: PathBuf,
    /// sled's log file, kept open to sync it; the store's directory and sled's `blobs`.
    log_file: File,
    dirs: Vec<SyncedDir>,
    /// Runs stored, and the highest sequence handed out, as this process knows them.
    runs_count: AtomicU64,
    max_seq: AtomicU64,
    /// What the manifest on disk says.
    manifest: Mutex<Manifest>,
    wal: Wal,
    /// Serialises checkpoints with the barriers that may start one.
    checkpoint: Mutex<()>,
    /// Opening wrote back writes that sled had lost (the process died, or the power).
    replayed: bool,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`.
    ///
    /// sled takes an exclusive file lock: a second process gets [`Error::Locked`], which callers
    /// turn into a request over the owner's control socket instead of a raw lock error.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        let io = |path: &Path| io_error(dir, path);
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        if created {
            // The new directory's own entry must survive a power cut too.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)
                    .and_then(|f| f.sync_all())
                    .map_err(io(parent))?;
            }
        }
        let manifest_path = dir.join(MANIFEST_NAME);
        let recorded = match std::fs::read(&manifest_path) {
            Ok(bytes) => {
                serde_json::from_slice::<Manifest>(&bytes).map_err(|e| Error::Damaged {
                    dir: dir.to_path_buf(),
                    detail: format!("its {MANIFEST_NAME} is unreadable ({e})"),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(io(&manifest_path)(e)),
        };
        remove_unfinished_snapshots(dir).map_err(io(dir))?;
        let db = sled::Config::new()
            .path(dir)
            // We flush explicitly at every durability point; the background flush only
            // shortens the window for records that are allowed to be lost (log lines).
            .flush_every_ms(Some(1000))
            // sled's default page cache is 1 GiB; a journal needs far less, and a recovery
            // should not compete with the operator's tools for memory.
            .cache_capacity(64 << 20)
            .open()
            .map_err(|e| classify_open_error(dir, e, &recorded))?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| classify_open_error(dir, e, &recorded))
        };
        let runs = tree("runs")?;
        let events = tree("events")?;
        // What the last barriers made durable, whatever a power cut took from sled since.
        let (wal, replay) = Wal::open(dir).map_err(io(&dir.join(WAL_NAME)))?;
        let replayed = !replay.is_empty();
        let mut top = 0u64;
        for r in &replay {
            let t = match r.space {
                // A number handed out: never again.
                None => {
                    top = top.max(u64::from_be_bytes(
                        r.value.as_slice().try_into().unwrap_or_default(),
                    ));
                    continue;
                }
                Some(Keyspace::Meta) => &*db,
                Some(Keyspace::Runs) => &runs,
                Some(Keyspace::Events) => &events,
            };
            t.insert(r.key.as_slice(), r.value.as_slice())
                .map_err(|e| classify_open_error(dir, e, &recorded))?;
        }
        ids_past(&db, top).map_err(|e| classify_open_error(dir, e, &recorded))?;
        let log_path = dir.join("db");
        let log_file = File::open(&log_path).map_err(io(&log_path))?;
        // sled created its files: their names are made durable at the first barrier, before
        // anything relies on them.
        let mut dirs = vec![SyncedDir::open(dir).map_err(io(dir))?];
        let blobs = dir.join("blobs");
        if blobs.is_dir() {
            dirs.push(SyncedDir::open(&blobs).map_err(io(&blobs))?);
        }

        let found = Manifest {
            runs: runs.len() as u64,
            max_seq: db
                .generate_id()
                .map_err(|e| classify_open_error(dir, e, &recorded))?,
        };
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        let lost = if found.runs < recorded.runs {
            Some(format!(
                "when last synced it held {} run{}; it now opens with {} run{}",
                recorded.runs,
                plural(recorded.runs),
                found.runs,
                plural(found.runs)
            ))
        } else if found.max_seq < recorded.max_seq {
            Some(format!(
                "when last synced its event sequence had reached {}; it now opens at {}, so recent events are missing",
                recorded.max_seq, found.max_seq
            ))
        } else {
            None
        };
        if let Some(detail) = lost {
            return Err(Error::Damaged {
                dir: dir.to_path_buf(),
                detail,
            });
        }
        let store = SledStore {
            runs,
            events,
            db: db.clone(),
            dir: dir.to_path_buf(),
            log_file,
            dirs,
            runs_count: AtomicU64::new(found.runs),
            max_seq: AtomicU64::new(found.max_seq),
            manifest: Mutex::new(recorded),
            wal,
            checkpoint: Mutex::new(()),
            replayed,
        };
        if replayed {
            // The replayed writes are in sled now: make it durable, and start an empty log.
            store.make_sled_durable()?;
            store.wal.truncate().map_err(io(store.wal.path()))?;
        }
        // The mark moves forward when the store holds more runs than it says (a crash between
        // a run's creation and the mark's update) or a replay happened. Reading the id counter
        // above always moves `max_seq` past the mark: that alone is no reason to sync, and a
        // reader (`status`, the war room) opening the store writes nothing of ours.
        if replayed || found.runs > recorded.runs {
            store.flush()?;
        }
        Ok(store)
    }

    /// sled's own durability point: its flush, `fdatasync` of its log, and its directories.
    fn make_sled_durable(&self) -> Result<(), Error> {
        self.db.flush().map_err(|e| self.storage_error(e))?;
        let io = |path: &Path| io_error(&self.dir, path);
        self.log_file
            .sync_data()
            .map_err(io(&self.dir.join("db")))?;
        self.sync_dirs()
    }

    /// Writes the high-water mark (atomically: a new file, synced, renamed over the old one,
    /// then the directory synced). Called only after the data it describes is durable.
    fn write_manifest(&self, mark: Manifest) -> Result<(), Error> {
        let path = self.dir.join(MANIFEST_NAME);
        let tmp = self.dir.join(format!("{MANIFEST_NAME}.tmp"));
        let bytes = serde_json::to_vec(&mark).map_err(|e| Error::Decode(e.to_string()))?;
        let io = |path: &Path| io_error(&self.dir, path);
        {
            use std::io::Write;
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_data().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.sync_dirs()
    }

    /// Makes the directories' entries durable, syncing those whose entries changed.
    fn sync_dirs(&self) -> Result<(), Error> {
        for d in &self.dirs {
            d.sync().map_err(io_error(&self.dir, &d.path))?;
        }
        Ok(())
    }

    fn tree(&self, space: Keyspace) -> &sled::Tree {
        match space {
            Keyspace::Meta => &self.db,
            Keyspace::Runs => &self.runs,
            Keyspace::Events => &self.events,
        }
    }

    fn storage_error(&self, e: sled::Error) -> Error {
        sled_error(&self.dir, e)
    }
}

/// Draws ids from sled's generator until one is above `floor`; returns that one.
fn ids_past(db: &sled::Db, floor: u64) -> sled::Result<u64> {
    loop {
        let id = db.generate_id()?;
        if id > floor {
            return Ok(id);
        }
    }
}

/// Removes the snapshots sled was writing when its process died (`snap.*.generating`).
///
/// sled 0.34 writes a snapshot to `snap.N.generating`, syncs it, then renames it `snap.N`; but
/// when it opens, it takes the highest-named `snap.*` file, and a leftover `.generating` file
/// (a process killed mid-write) sorts after its finished peers: sled then refuses the whole
/// store as corrupt. Such a file is never needed (its content was never renamed into use), so
/// it is removed before sled looks.
fn remove_unfinished_snapshots(dir: &Path) -> std::io::Result<()> {
    let mut removed = false;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(dir.join(&*name))?;
            removed = true;
        }
    }
    if removed {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A directory whose entries (names and the inodes they point to) must reach stable storage.
/// `fsync` of a directory costs as much as a data sync; most barriers create, rename or
/// remove nothing, so its listing is compared with the one last synced (a `getdents`, no
/// disk access) and it is synced only when something changed. A file renamed over another
/// keeps the name but changes the inode, so it counts as a change.
struct SyncedDir {
    path: PathBuf,
    file: File,
    synced: Mutex<Vec<(std::ffi::OsString, u64)>>,
}

impl SyncedDir {
    /// Nothing is taken as synced yet: the first barrier syncs the directory (whatever sled
    /// created while opening), and a process that only reads never does.
    fn open(path: &Path) -> std::io::Result<SyncedDir> {
        Ok(SyncedDir {
            path: path.to_path_buf(),
            file: File::open(path)?,
            synced: Mutex::new(Vec::new()),
        })
    }

    fn listing(&self) -> std::io::Result<Vec<(std::ffi::OsString, u64)>> {
        use std::os::unix::fs::DirEntryExt;
        let mut entries = std::fs::read_dir(&self.path)?
            .map(|e| e.map(|e| (e.file_name(), e.ino())))
            .collect::<std::io::Result<Vec<_>>>()?;
        entries.sort();
        Ok(entries)
    }

    fn sync(&self) -> std::io::Result<()> {
        // Listed before the sync: whatever the listing shows, the sync covers.
        let now = self.listing()?;
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced != now {
            self.file.sync_all()?;
            *synced = now;
        }
        Ok(())
    }
}

/// An I/O failure on `path`, a file of the store `dir` (or `dir` itself).
fn io_error(dir: &Path, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let (dir, path) = (dir.to_path_buf(), path.to_path_buf());
    move |source| Error::from_io(&dir, source, |source| Error::Io { path, source })
}

/// A sled failure after the store opened: a disk that refuses writes, or a storage error.
fn sled_error(dir: &Path, e: sled::Error) -> Error {
    let other = Error::Storage {
        dir: dir.to_path_buf(),
        detail: e.to_string(),
    };
    match e {
        sled::Error::Io(io) => Error::from_io(dir, io, |_| other),
        _ => other,
    }
}

fn classify_open_error(dir: &Path, e: sled::Error, recorded: &Manifest) -> Error {
    match e {
        // sled reports its file lock as an `Other` I/O error with this text.
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => Error::Locked {
            dir: dir.to_path_buf(),
        },
        // A disk that refuses writes is no damage: say what it is.
        sled::Error::Io(io) => Error::from_io(dir, io, |io| corrupt(dir, io.to_string(), recorded)),
        other => corrupt(dir, other.to_string(), recorded),
    }
}

/// A store sled cannot read, with what its high-water mark says it held.
fn corrupt(dir: &Path, detail: String, recorded: &Manifest) -> Error {
    let held = if recorded.runs > 0 {
        format!(
            "; when last synced it held {} run{}",
            recorded.runs,
            if recorded.runs == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    Error::Corrupt {
        dir: dir.to_path_buf(),
        // sled's own text ends with an empty backtrace: keep what is useful.
        detail: detail.trim_end_matches(" backtrace ()").to_string(),
        held,
    }
}

impl Store for SledStore {
    fn needs_repair(&self) -> bool {
        self.replayed
    }

    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.tree(space)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.storage_error(e))
    }

    fn put(&self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<(), Error> {
        let old = self
            .tree(space)
            .insert(key, value)
            .map_err(|e| self.storage_error(e))?;
        // After sled's insert: a checkpoint's flush that starts after this record reached
        // the log covers the insert too.
        self.wal.append(space, key, value);
        if space == Keyspace::Runs && old.is_none() {
            self.runs_count.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn put_if_absent(&self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<bool, Error> {
        let swapped = self
            .tree(space)
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))
            .map_err(|e| self.storage_error(e))?;
        if swapped.is_ok() {
            self.wal.append(space, key, value);
        }
        Ok(swapped.is_ok())
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

    fn ids_above(&self, floor: u64) -> Result<(), Error> {
        let last = ids_past(&self.db, floor).map_err(|e| self.storage_error(e))?;
        self.max_seq.fetch_max(last, Ordering::SeqCst);
        // One record for the whole jump: the replay of the log moves past it again.
        self.wal.append_id(last);
        Ok(())
    }

    fn next_id(&self) -> Result<u64, Error> {
        let id = self.db.generate_id().map_err(|e| self.storage_error(e))?;
        self.wal.append_id(id);
        self.max_seq.fetch_max(id, Ordering::SeqCst);
        Ok(id)
    }

    fn flush(&self) -> Result<(), Error> {
        // Read before the flush, so that the mark never claims more than the flush covered.
        let mark = Manifest {
            runs: self.runs_count.load(Ordering::SeqCst),
            max_seq: self.max_seq.load(Ordering::SeqCst),
        };
        // The barrier: the log's new records, written and synced.
        let io = |path: &Path| io_error(&self.dir, path);
        let size = self.wal.sync().map_err(io(self.wal.path()))?;
        self.sync_dirs()?;
        if size >= CHECKPOINT_BYTES {
            // Everything in the log was inserted into sled before it was appended: sled's
            // durable flush covers it, and the log can start again.
            let _one = self.checkpoint.lock().unwrap_or_else(|p| p.into_inner());
            self.make_sled_durable()?;
            self.wal.truncate().map_err(io(self.wal.path()))?;
        }
        // The mark moves when a run was added: losing a whole run is what it must catch, and
        // rewriting it at every barrier would double the cost of a step.
        let mut written = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        if mark.runs > written.runs || (written.runs == 0 && mark.max_seq > written.max_seq) {
            self.write_manifest(mark)?;
            *written = mark;
        }
        Ok(())
    }
}
