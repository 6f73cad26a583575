//! The control socket, `DIR/control.sock`: the process that holds a store serves it, and
//! [`Access`] reaches a store locally or through that process.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Error, Request, Response, Service, SOCKET_NAME};
use crate::clock::Clock;
use crate::journal::{self, Journal, Location};

/// Serves the control API on `DIR/control.sock` from a background thread. Only the holder of
/// the store's lock calls this, so a socket file left by a dead process can be replaced.
pub fn serve(location: &Location, service: Arc<Service>) -> Result<(), Error> {
    let path = location.dir().join(SOCKET_NAME);
    // On a shared store, several processes of this machine may drive runs at once: the first
    // serves this machine's socket (it answers for the store, and for its own live runs).
    if matches!(location, Location::Postgres { .. }) {
        if let Ok(Response::Owner { .. }) = call_socket(&path, &Request::Owner) {
            return Ok(());
        }
        std::fs::create_dir_all(location.dir()).map_err(|e| Error::Socket {
            path: path.clone(),
            detail: e.to_string(),
        })?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| Error::Socket {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let service = service.clone();
                std::thread::spawn(move || answer(stream, &service));
            }
        })
        .map_err(|e| Error::Socket {
            path,
            detail: e.to_string(),
        })?;
    Ok(())
}

/// Connections being answered right now, so the process does not exit in the middle of one.
static ANSWERING: AtomicUsize = AtomicUsize::new(0);

/// Waits (up to `limit`) for requests being answered to finish: called before a serving
/// process exits, so that an `abort` from another terminal gets its reply.
pub fn drain(limit: Duration) {
    let deadline = Instant::now() + limit;
    while ANSWERING.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn answer(stream: UnixStream, service: &Service) {
    ANSWERING.fetch_add(1, Ordering::SeqCst);
    answer_one(stream, service);
    ANSWERING.fetch_sub(1, Ordering::SeqCst);
}

fn answer_one(stream: UnixStream, service: &Service) {
    let mut line = String::new();
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    if BufReader::new(stream).read_line(&mut line).is_err() {
        return;
    }
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => service.handle(request).unwrap_or_else(|e| Response::Error {
            message: e.to_string(),
            exit_code: e.exit_code(),
        }),
        Err(e) => Response::Error {
            message: format!("bad control request: {e}"),
            exit_code: 2,
        },
    };
    if let Ok(mut bytes) = serde_json::to_vec(&response) {
        bytes.push(b'\n');
        let _ = writer.write_all(&bytes);
    }
}

/// A way to a journal store: opened here, or through the process that holds it.
pub enum Access {
    /// Opened here; events this process records are stamped with `clock`.
    Local(Arc<Journal>, Arc<dyn Clock>),
    Remote(PathBuf),
}

impl Access {
    /// Opens the store in `dir`, or finds the process that holds it. A store held by a process
    /// that does not answer (a short `status` in another terminal, the war room reading it) is
    /// retried for a few seconds before giving up with [`journal::Error::Locked`].
    pub fn open(location: &Location, clock: Arc<dyn Clock>) -> Result<Access, Error> {
        Access::open_within(location, clock, Duration::from_secs(5))
    }

    fn open_within(
        location: &Location,
        clock: Arc<dyn Clock>,
        patience: Duration,
    ) -> Result<Access, Error> {
        let dir = match location {
            Location::Dir(dir) => dir,
            // Every process reaches a shared store; one that drives runs on this machine also
            // knows how they stand right now (task waits), so it is asked when it answers.
            Location::Postgres { dir, .. } => {
                let socket = dir.join(SOCKET_NAME);
                if let Ok(Response::Owner { .. }) = call_socket(&socket, &Request::Owner) {
                    return Ok(Access::Remote(socket));
                }
                return Ok(Access::Local(Arc::new(Journal::open_at(location)?), clock));
            }
        };
        let socket = dir.join(SOCKET_NAME);
        let deadline = Instant::now() + patience;
        loop {
            match Journal::open(dir) {
                Ok(journal) => return Ok(Access::Local(Arc::new(journal), clock)),
                Err(journal::Error::Locked { .. }) => {
                    if let Ok(Response::Owner { .. }) = call_socket(&socket, &Request::Owner) {
                        return Ok(Access::Remote(socket));
                    }
                    if Instant::now() >= deadline {
                        return Err(journal::Error::Locked {
                            dir: dir.to_path_buf(),
                        }
                        .into());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Opens the store for executing runs, which needs the store itself.
    pub fn open_for_run(location: &Location) -> Result<Arc<Journal>, Error> {
        if let Location::Postgres { .. } = location {
            // Shared: every driver opens it; leases keep them off one another's runs.
            return Ok(Arc::new(Journal::open_at(location)?));
        }
        let dir = location.dir();
        // A run, a resume or a daemon about to start waits longer for readers that hold the
        // store a moment at a time (many `status` calls, a busy war room) than a reader does.
        match Access::open_within(
            location,
            Arc::new(crate::clock::SystemClock),
            Duration::from_secs(30),
        )? {
            Access::Local(journal, _) => Ok(journal),
            Access::Remote(socket) => match call_socket(&socket, &Request::Owner)? {
                Response::Owner { pid, runs } => Err(Error::Busy {
                    dir: dir.to_path_buf(),
                    pid,
                    runs,
                }),
                _ => Err(journal::Error::Locked {
                    dir: dir.to_path_buf(),
                }
                .into()),
            },
        }
    }

    /// Sends a request, locally or to the owner.
    pub fn call(&self, request: Request) -> Result<Response, Error> {
        let response = match self {
            Access::Local(journal, clock) => {
                Service::new(journal.clone(), Arc::default(), clock.clone()).handle(request)?
            }
            Access::Remote(socket) => call_socket(socket, &request)?,
        };
        match response {
            Response::Error { message, exit_code } => Err(Error::Refused { message, exit_code }),
            other => Ok(other),
        }
    }
}

fn call_socket(path: &Path, request: &Request) -> Result<Response, Error> {
    let err = |detail: String| Error::Socket {
        path: path.to_path_buf(),
        detail,
    };
    let mut stream = UnixStream::connect(path).map_err(|e| err(e.to_string()))?;
    // A process that holds the socket but does not answer (stopped, frozen) must not hang
    // the caller: "who are you" is answered at once by a live owner; other requests may wait
    // for a run to record its end.
    let patience = match request {
        Request::Owner => Duration::from_secs(2),
        _ => Duration::from_secs(60),
    };
    stream
        .set_read_timeout(Some(patience))
        .map_err(|e| err(e.to_string()))?;
    let mut bytes = serde_json::to_vec(request).map_err(|e| err(e.to_string()))?;
    bytes.push(b'\n');
    stream.write_all(&bytes).map_err(|e| err(e.to_string()))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&line).map_err(|e| err(format!("unreadable answer: {e}")))
}
