//! The embedded store's write-ahead log: what makes a barrier cost one `fdatasync`.
//!
//! sled 0.34's own flush ends in `sync_file_range`, which is no power-loss sync, so a barrier
//! used to be a sled flush *and* an `fdatasync` of its log: two trips to the disk. Instead,
//! every write to sled is also appended to this log (in memory), and a barrier writes what was
//! appended since the last one to `lifeboat.wal` and `fdatasync`s it: one trip. sled flushes
//! on its own in the background. When the log passes [`CHECKPOINT_BYTES`], a barrier also
//! makes sled itself durable (its flush, then `fdatasync` of its files) and empties the log.
//!
//! When the store opens, the log's records are written into sled again, in order: whatever a
//! power cut took from sled's recent writes, the log brings back up to the last barrier. A
//! record torn by the cut (its checksum fails) and everything after it was never covered by a
//! barrier, and is dropped.
//!
//! A record: length (u32, little-endian) of the payload, its CRC-32, then the payload: the
//! keyspace (one byte), the key's length (u32), the key, the value. A number handed out by
//! the store's id generator is a record too (kind 255, the number as the value): sled's
//! generator is no more durable than its other writes, and a number must never be handed out
//! twice.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::store::Keyspace;

pub const WAL_NAME: &str = "lifeboat.wal";

/// The log's size past which a barrier makes sled durable and empties the log.
pub const CHECKPOINT_BYTES: u64 = 8 << 20;

pub struct Wal {
    path: PathBuf,
    file: Mutex<File>,
    /// Records appended since the last barrier, in order.
    pending: Mutex<Vec<u8>>,
}

/// A record read back from the log.
pub struct Record {
    /// `None`: a number handed out by the id generator (in `value`, big-endian).
    pub space: Option<Keyspace>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

const ID_KIND: u8 = 255;

fn space_byte(space: Keyspace) -> u8 {
    match space {
        Keyspace::Meta => 0,
        Keyspace::Runs => 1,
        Keyspace::Events => 2,
    }
}

fn space_of(byte: u8) -> Option<Keyspace> {
    match byte {
        0 => Some(Keyspace::Meta),
        1 => Some(Keyspace::Runs),
        2 => Some(Keyspace::Events),
        _ => None,
    }
}

impl Wal {
    /// Opens (or creates) the log in `dir` and reads back its whole records.
    pub fn open(dir: &Path) -> std::io::Result<(Wal, Vec<Record>)> {
        let path = dir.join(WAL_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut bytes)?;
        let records = parse(&bytes);
        let wal = Wal {
            path,
            file: Mutex::new(file),
            pending: Mutex::new(Vec::new()),
        };
        Ok((wal, records))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a write to the next barrier's records (memory only).
    pub fn append(&self, space: Keyspace, key: &[u8], value: &[u8]) {
        self.append_kind(space_byte(space), key, value)
    }

    /// Appends a number the id generator handed out.
    pub fn append_id(&self, id: u64) {
        self.append_kind(ID_KIND, b"", &id.to_be_bytes())
    }

    fn append_kind(&self, kind: u8, key: &[u8], value: &[u8]) {
        let mut payload = Vec::with_capacity(5 + key.len() + value.len());
        payload.push(kind);
        payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
        payload.extend_from_slice(key);
        payload.extend_from_slice(value);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        pending.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        pending.extend_from_slice(&payload);
    }

    /// The barrier: everything appended so far is written and synced. Returns the log's size.
    pub fn sync(&self) -> std::io::Result<u64> {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if !batch.is_empty() {
            file.write_all(&batch)?;
        }
        file.sync_data()?;
        file.metadata().map(|m| m.len())
    }

    /// Empties the log, durably: called once everything in it is durable in sled.
    pub fn truncate(&self) -> std::io::Result<()> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.set_len(0)?;
        file.sync_data()
    }
}

/// The whole records of a log, up to the first torn or corrupt one.
fn parse(bytes: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc || payload.len() < 5 {
            break;
        }
        let space = match (payload[0], space_of(payload[0])) {
            (ID_KIND, _) => None,
            (_, Some(space)) => Some(space),
            (_, None) => break,
        };
        let key_len = u32::from_le_bytes(payload[1..5].try_into().unwrap_or_default()) as usize;
        let Some(key) = payload.get(5..5 + key_len) else {
            break;
        };
        records.push(Record {
            space,
            key: key.to_vec(),
            value: payload[5 + key_len..].to_vec(),
        });
        at += 8 + len;
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_up_to_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, old) = Wal::open(dir.path()).unwrap();
        assert!(old.is_empty());
        wal.append(Keyspace::Runs, b"r1", b"{\"a\":1}");
        wal.append(Keyspace::Events, b"r1\0k", b"{}");
        wal.sync().unwrap();
        wal.append(Keyspace::Meta, b"m", b"v");
        // Not synced: a power cut would lose it; here the process simply ends.
        drop(wal);
        // A torn write at the end (a record cut short by the power cut).
        let path = dir.path().join(WAL_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let (_wal, records) = Wal::open(dir.path()).unwrap();
        let keys: Vec<(Option<Keyspace>, Vec<u8>)> =
            records.iter().map(|r| (r.space, r.key.clone())).collect();
        assert_eq!(
            keys,
            [
                (Some(Keyspace::Runs), b"r1".to_vec()),
                (Some(Keyspace::Events), b"r1\0k".to_vec())
            ]
        );
        assert_eq!(records[0].value, b"{\"a\":1}");
    }
}
