//! The shared store: PostgreSQL (`--store postgres://...`), which several processes on several
//! hosts open at once, and which users run with a standby or as a managed service.
//!
//! Tables (created by the migrations below, applied when the store opens): `lifeboat_meta`,
//! `lifeboat_runs` (one JSON record per run), `lifeboat_events` (one JSON record per event,
//! keyed by run and sequence), `lifeboat_leases` (who drives each run, until when, at which
//! epoch) and the sequence `lifeboat_ids`.
//!
//! Durability follows the journal's rule: a write is cheap and not durable by itself, a flush
//! makes every write before it durable. Writes commit with `synchronous_commit = off` (visible
//! at once, in the WAL, not yet waited for); a flush is one synchronous commit, which
//! PostgreSQL makes durable only once the WAL up to it (every earlier commit of every session)
//! is on disk. A write that a crash of the server may have lost (committed but not flushed)
//! is kept by this process until a flush covers it, and written again (idempotently) when a
//! connection is re-established, so a server restart loses nothing that was written here.
//!
//! Every operation that meets a broken connection reconnects and tries again, for up to
//! [`RECONNECT_FOR`]: a run waits for its database rather than failing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::Json;
use postgres::{Client, Row};
use serde_json::Value;

use super::store::{redact, KeyValue, Keyspace, LeaseInfo, Store};
use super::Error;

/// How long an operation keeps reconnecting to a database that went away.
const RECONNECT_FOR: Duration = Duration::from_secs(120);

/// The schema this build knows, as numbered migrations applied in order.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE lifeboat_meta (key text PRIMARY KEY, value bytea NOT NULL);
     CREATE TABLE lifeboat_runs (id text PRIMARY KEY, record jsonb NOT NULL);
     CREATE TABLE lifeboat_events (
         run_id text NOT NULL,
         seq bigint NOT NULL,
         record jsonb NOT NULL,
         PRIMARY KEY (run_id, seq));
     CREATE TABLE lifeboat_leases (
         run_id text PRIMARY KEY,
         owner text NOT NULL,
         epoch bigint NOT NULL,
         expires_at timestamptz NOT NULL);
     CREATE SEQUENCE lifeboat_ids;
     CREATE TABLE lifeboat_flush (id integer PRIMARY KEY, n bigint NOT NULL);
     INSERT INTO lifeboat_flush VALUES (1, 0);",
)];

/// The newest schema version of [`MIGRATIONS`].
pub const KNOWN_SCHEMA: i32 = 1;

/// A write not yet covered by a flush: what a reconnection writes again.
#[derive(Clone)]
enum Pending {
    Put(Keyspace, Vec<u8>, Vec<u8>),
}

pub struct PostgresStore {
    url: String,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// A few connections, so that concurrent steps do not queue behind one another (and
    /// their commits share the server's WAL flushes).
    clients: Vec<Mutex<Option<Client>>>,
    /// Writes since the last flush, in the order they completed.
    pending: Mutex<Vec<Pending>>,
    /// Notifications received on [`CHANNEL`] (see `listen`).
    heard: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The `LISTEN`/`NOTIFY` channel of decisions about runs (the payload is the run's id).
const CHANNEL: &str = "lifeboat_runs";

impl PostgresStore {
    /// Connects, applies the migrations this build knows (refusing a newer schema).
    pub fn open(url: &str) -> Result<PostgresStore, Error> {
        let config = crate::mail::tls::client_config(&[]).map_err(|detail| Error::Database {
            store: redact(url),
            detail,
        })?;
        let store = PostgresStore {
            url: url.to_string(),
            tls: tokio_postgres_rustls::MakeRustlsConnect::new((*config).clone()),
            clients: (0..4).map(|_| Mutex::new(None)).collect(),
            pending: Mutex::default(),
            heard: Default::default(),
        };
        if let Err(found) = store.with_client(migrate)? {
            return Err(Error::NewerDatabase {
                store: redact(url),
                found,
                known: KNOWN_SCHEMA,
            });
        }
        store.listen();
        Ok(store)
    }

    /// Listens on [`CHANNEL`] from a connection of its own, in a thread, counting what it
    /// hears; reconnects when the connection breaks. Drivers compare the count (see
    /// `Store::notifications`) instead of waiting for their next poll.
    fn listen(&self) {
        let (url, tls, heard) = (self.url.clone(), self.tls.clone(), self.heard.clone());
        let spawned = std::thread::Builder::new()
            .name("listen".into())
            .spawn(move || loop {
                if let Ok(mut client) = Client::connect(&url, tls.clone()) {
                    if client.batch_execute(&format!("LISTEN {CHANNEL}")).is_ok() {
                        // Whatever happened while not listening: look now.
                        heard.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let mut notes = client.notifications();
                        let mut it = notes.blocking_iter();
                        while let Ok(Some(_)) = it.next() {
                            heard.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            });
        // Without it, drivers still read the store at their regular poll.
        drop(spawned);
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Database {
            store: redact(&self.url),
            detail: e.to_string(),
        }
    }

    fn connect(&self) -> Result<Client, postgres::Error> {
        let mut client = Client::connect(&self.url, self.tls.clone())?;
        // Commits do not wait for the WAL flush; `flush` does (see the module's comment).
        client.batch_execute("SET synchronous_commit = off")?;
        Ok(client)
    }

    /// Runs `f` on a connection, (re)connecting as needed. A connection that broke is
    /// replaced, the writes not yet flushed are written again on the new one, and `f` is
    /// tried again, for up to [`RECONNECT_FOR`].
    fn with_client<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + RECONNECT_FOR;
        // Any free connection, else wait for the first.
        let slot = self
            .clients
            .iter()
            .find_map(|m| m.try_lock().ok())
            .unwrap_or_else(|| self.clients[0].lock().unwrap_or_else(|p| p.into_inner()));
        let mut slot = slot;
        let mut wait = Duration::from_millis(100);
        loop {
            if slot.as_ref().is_none_or(Client::is_closed) {
                match self.connect() {
                    Ok(mut client) => {
                        let replay = self
                            .pending
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .clone();
                        let replayed = replay.iter().try_for_each(|p| match p {
                            Pending::Put(space, key, value) => {
                                put(&mut client, *space, key, value).map(drop)
                            }
                        });
                        match replayed {
                            Ok(()) => *slot = Some(client),
                            Err(e) if Instant::now() < deadline && is_connection(&e) => {}
                            Err(e) => return Err(self.error(e)),
                        }
                    }
                    Err(e) if Instant::now() < deadline && is_connection(&e) => {}
                    Err(e) => return Err(self.error(describe(&e))),
                }
                if slot.is_none() {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
            let client = slot.as_mut().expect("connected above");
            match f(client) {
                Ok(v) => return Ok(v),
                Err(e) if is_connection(&e) && Instant::now() < deadline => {
                    *slot = None;
                }
                Err(e) => return Err(self.error(describe(&e))),
            }
        }
    }
}

/// Whether an error is the connection's (the server went away), not the statement's.
fn is_connection(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_none() && e.as_db_error().is_none()
        || e.code().is_some_and(|c| {
            // admin_shutdown, crash_shutdown, cannot_connect_now, connection exceptions.
            let c = c.code();
            c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"
        })
}

/// An error with the server's message, when it sent one.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Applies the migrations this build knows; `Ok(Err(version))` when the database's schema is
/// newer than this build's.
fn migrate(c: &mut Client) -> Result<Result<(), i32>, postgres::Error> {
    let mut tx = c.transaction()?;
    // One migrator at a time, whichever process opens the store first.
    tx.execute("SELECT pg_advisory_xact_lock(7420155)", &[])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS lifeboat_schema (version integer NOT NULL)")?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM lifeboat_schema", &[])?
        .get(0);
    if current > KNOWN_SCHEMA {
        tx.rollback()?;
        return Ok(Err(current));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql)?;
        tx.execute("INSERT INTO lifeboat_schema VALUES ($1)", &[version])?;
    }
    tx.commit()?;
    Ok(Ok(()))
}

fn run_and_seq(key: &[u8]) -> (String, i64) {
    let sep = key.iter().position(|b| *b == 0).unwrap_or(key.len());
    let run = String::from_utf8_lossy(&key[..sep]).into_owned();
    let mut seq = [0u8; 8];
    let tail = key.get(sep + 1..).unwrap_or_default();
    let n = tail.len().min(8);
    seq[8 - n..].copy_from_slice(&tail[..n]);
    (run, u64::from_be_bytes(seq) as i64)
}

fn event_key(run: &str, seq: i64) -> Vec<u8> {
    let mut key = run.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&(seq as u64).to_be_bytes());
    key
}

fn json(value: &[u8]) -> Json<Value> {
    Json(serde_json::from_slice(value).unwrap_or(Value::Null))
}

fn bytes_of(row: &Row, column: usize) -> Vec<u8> {
    let Json(value): Json<Value> = row.get(column);
    serde_json::to_vec(&value).unwrap_or_default()
}

/// One idempotent write (so that writing it again after a reconnection changes nothing).
fn put(c: &mut Client, space: Keyspace, key: &[u8], value: &[u8]) -> Result<u64, postgres::Error> {
    match space {
        Keyspace::Meta => c.execute(
            "INSERT INTO lifeboat_meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&String::from_utf8_lossy(key).as_ref(), &value],
        ),
        Keyspace::Runs => c.execute(
            "INSERT INTO lifeboat_runs (id, record) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET record = excluded.record",
            &[&String::from_utf8_lossy(key).as_ref(), &json(value)],
        ),
        Keyspace::Events => {
            let (run, seq) = run_and_seq(key);
            c.execute(
                "INSERT INTO lifeboat_events (run_id, seq, record) VALUES ($1, $2, $3)
                 ON CONFLICT (run_id, seq) DO NOTHING",
                &[&run, &seq, &json(value)],
            )
        }
    }
}

impl Store for PostgresStore {
    fn get(&self, space: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let k = String::from_utf8_lossy(key).into_owned();
        self.with_client(|c| {
            Ok(match space {
                Keyspace::Meta => c
                    .query_opt("SELECT value FROM lifeboat_meta WHERE key = $1", &[&k])?
                    .map(|r| r.get::<_, Vec<u8>>(0)),
                Keyspace::Runs => c
                    .query_opt("SELECT record FROM lifeboat_runs WHERE id = $1", &[&k])?
                    .map(|r| bytes_of(&r, 0)),
                Keyspace::Events => {
                    let (run, seq) = run_and_seq(key);
                    c.query_opt(
                        "SELECT record FROM lifeboat_events WHERE run_id = $1 AND seq = $2",
                        &[&run, &seq],
                    )?
                    .map(|r| bytes_of(&r, 0))
                }
            })
        })
    }

    fn put(&self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.with_client(|c| put(c, space, key, value))?;
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Pending::Put(space, key.to_vec(), value.to_vec()));
        Ok(())
    }

    fn put_if_absent(&self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<bool, Error> {
        if space != Keyspace::Meta {
            return Err(self.error("put_if_absent is for store-wide values"));
        }
        let k = String::from_utf8_lossy(key).into_owned();
        self.with_client(|c| {
            // Synchronous: a claim another process may act on must not be lost.
            let mut tx = c.transaction()?;
            tx.batch_execute("SET LOCAL synchronous_commit = on")?;
            let n = tx.execute(
                "INSERT INTO lifeboat_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&k, &value],
            )?;
            tx.commit()?;
            Ok(n == 1)
        })
    }

    fn scan_prefix(&self, space: Keyspace, prefix: &[u8]) -> Result<Vec<KeyValue>, Error> {
        let p = String::from_utf8_lossy(prefix).into_owned();
        self.with_client(|c| {
            Ok(match space {
                Keyspace::Meta => c
                    .query(
                        "SELECT key, value FROM lifeboat_meta WHERE starts_with(key, $1) ORDER BY key",
                        &[&p],
                    )?
                    .iter()
                    .map(|r| (r.get::<_, String>(0).into_bytes(), r.get::<_, Vec<u8>>(1)))
                    .collect(),
                Keyspace::Runs => c
                    .query(
                        "SELECT id, record FROM lifeboat_runs WHERE starts_with(id, $1) ORDER BY id COLLATE \"C\"",
                        &[&p],
                    )?
                    .iter()
                    .map(|r| (r.get::<_, String>(0).into_bytes(), bytes_of(r, 1)))
                    .collect(),
                // Event prefixes are a run id and its separator, or nothing (every event).
                Keyspace::Events => {
                    let run = p.trim_end_matches('\0').to_string();
                    let rows = if prefix.is_empty() {
                        c.query(
                            "SELECT run_id, seq, record FROM lifeboat_events ORDER BY run_id COLLATE \"C\", seq",
                            &[],
                        )?
                    } else {
                        c.query(
                            "SELECT run_id, seq, record FROM lifeboat_events WHERE run_id = $1 ORDER BY seq",
                            &[&run],
                        )?
                    };
                    rows.iter()
                        .map(|r| (event_key(&r.get::<_, String>(0), r.get(1)), bytes_of(r, 2)))
                        .collect()
                }
            })
        })
    }

    fn next_id(&self) -> Result<u64, Error> {
        self.with_client(|c| {
            let id: i64 = c.query_one("SELECT nextval('lifeboat_ids')", &[])?.get(0);
            Ok(id as u64)
        })
    }

    fn ids_above(&self, floor: u64) -> Result<(), Error> {
        let floor = floor as i64;
        self.with_client(|c| {
            c.execute(
                "SELECT setval('lifeboat_ids', greatest($1, (SELECT last_value FROM lifeboat_ids)))",
                &[&floor],
            )
            .map(drop)
        })
    }

    fn flush(&self) -> Result<(), Error> {
        // Everything written before this point is covered by the synchronous commit below.
        let covered = self.pending.lock().unwrap_or_else(|p| p.into_inner()).len();
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            tx.batch_execute("SET LOCAL synchronous_commit = on")?;
            tx.execute("UPDATE lifeboat_flush SET n = n + 1 WHERE id = 1", &[])?;
            tx.commit()
        })?;
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..covered);
        Ok(())
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn notify(&self, run: &str) -> Result<(), Error> {
        self.with_client(|c| {
            c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &run])
                .map(drop)
        })
    }

    fn notifications(&self) -> u64 {
        self.heard.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn acquire_lease(
        &self,
        run: &str,
        owner: &str,
        ttl: Duration,
        grace: Duration,
        dead: Option<&str>,
    ) -> Result<Result<u64, LeaseInfo>, Error> {
        let (ttl, grace) = (ttl.as_secs_f64(), grace.as_secs_f64());
        let dead = dead.unwrap_or("");
        self.with_client(|c| {
            // Synchronous: a lease is what stops two drivers; it must not be lost.
            let mut tx = c.transaction()?;
            tx.batch_execute("SET LOCAL synchronous_commit = on")?;
            let granted = tx.query_opt(
                "INSERT INTO lifeboat_leases (run_id, owner, epoch, expires_at)
                 VALUES ($1, $2, 1, now() + make_interval(secs => $3))
                 ON CONFLICT (run_id) DO UPDATE
                     SET owner = excluded.owner, epoch = lifeboat_leases.epoch + 1,
                         expires_at = excluded.expires_at
                     WHERE lifeboat_leases.owner = excluded.owner
                        OR lifeboat_leases.owner = $5
                        OR lifeboat_leases.expires_at + make_interval(secs => $4) < now()
                 RETURNING epoch",
                &[&run, &owner, &ttl, &grace, &dead],
            )?;
            let answer = match granted {
                Some(row) => Ok(row.get::<_, i64>(0) as u64),
                None => Err(lease_info(&mut tx, run)?.expect("a lease row refused the insert")),
            };
            tx.commit()?;
            Ok(answer)
        })
    }

    fn renew_lease(&self, run: &str, epoch: u64, ttl: Duration) -> Result<bool, Error> {
        let (epoch, ttl) = (epoch as i64, ttl.as_secs_f64());
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            tx.batch_execute("SET LOCAL synchronous_commit = on")?;
            let n = tx.execute(
                "UPDATE lifeboat_leases SET expires_at = now() + make_interval(secs => $3)
                 WHERE run_id = $1 AND epoch = $2",
                &[&run, &epoch, &ttl],
            )?;
            tx.commit()?;
            Ok(n == 1)
        })
    }

    fn release_lease(&self, run: &str, epoch: u64) -> Result<(), Error> {
        let epoch = epoch as i64;
        self.with_client(|c| {
            c.execute(
                "UPDATE lifeboat_leases SET expires_at = now() - interval '1 day'
                 WHERE run_id = $1 AND epoch = $2",
                &[&run, &epoch],
            )
            .map(drop)
        })
    }

    fn lease(&self, run: &str) -> Result<Option<LeaseInfo>, Error> {
        self.with_client(|c| {
            let mut tx = c.transaction()?;
            let info = lease_info(&mut tx, run)?;
            tx.commit()?;
            Ok(info)
        })
    }

    fn put_fenced(
        &self,
        space: Keyspace,
        key: &[u8],
        value: &[u8],
        run: &str,
        epoch: u64,
    ) -> Result<bool, Error> {
        let epoch = epoch as i64;
        // The write and the epoch check are one statement: no takeover can fall between them.
        let written = self.with_client(|c| {
            let fence = "EXISTS (SELECT 1 FROM lifeboat_leases WHERE run_id = $1 AND epoch = $2)";
            let n = match space {
                Keyspace::Events => {
                    let (run_id, seq) = run_and_seq(key);
                    debug_assert_eq!(run_id, run);
                    c.execute(
                        &format!(
                            "INSERT INTO lifeboat_events (run_id, seq, record)
                             SELECT $1, $3, $4 WHERE {fence}
                             ON CONFLICT (run_id, seq) DO NOTHING"
                        ),
                        &[&run, &epoch, &seq, &json(value)],
                    )?
                }
                Keyspace::Runs => c.execute(
                    &format!("UPDATE lifeboat_runs SET record = $3 WHERE id = $1 AND {fence}"),
                    &[&run, &epoch, &json(value)],
                )?,
                Keyspace::Meta => return put(c, space, key, value),
            };
            if n == 1 {
                return Ok(1);
            }
            // Nothing written: refused by the fence, or already there (a write repeated after
            // a reconnection). Only the fence counts as a refusal.
            let held: bool = c
                .query_one(&format!("SELECT {fence}"), &[&run, &epoch])?
                .get(0);
            Ok(u64::from(held))
        })?;
        if written == 1 {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Pending::Put(space, key.to_vec(), value.to_vec()));
        }
        Ok(written == 1)
    }
}

fn lease_info(
    tx: &mut postgres::Transaction<'_>,
    run: &str,
) -> Result<Option<LeaseInfo>, postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT owner, epoch, extract(epoch FROM expires_at - now())::float8
             FROM lifeboat_leases WHERE run_id = $1",
            &[&run],
        )?
        .map(|r| LeaseInfo {
            owner: r.get(0),
            epoch: r.get::<_, i64>(1) as u64,
            expires_in: r.get::<_, Option<f64>>(2).unwrap_or(f64::NEG_INFINITY),
        }))
}
