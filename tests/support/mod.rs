//! Test environment: a temporary store, runbooks written on the fly, the real binary, and a
//! counter service that counts step-body side effects outside the process under test.

#![allow(dead_code)]

pub mod lazyfs;
pub mod mail;
pub mod postgres;
pub mod recovery;
pub mod sim;
pub mod tls;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A scratch directory with a store in it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
}

impl Env {
    /// A scratch store: sled in the directory, or (when the suite runs on PostgreSQL) a fresh
    /// database, the directory then holding only what a data directory does besides.
    pub fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
            vars: Vec::new(),
        };
        if postgres::stores_on_postgres() {
            postgres::short_leases(env.var("LIFEBOAT_STORE", postgres::fresh_database()))
        } else {
            env
        }
    }

    /// The embedded store whatever the suite runs on: for what only sled has (its files,
    /// `verify`, its lock).
    pub fn embedded() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            vars: Vec::new(),
        }
    }

    /// A store on the PostgreSQL server of the tests, whatever the suite runs on.
    pub fn on_postgres() -> Env {
        postgres::short_leases(Env::embedded().var("LIFEBOAT_STORE", postgres::fresh_database()))
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    pub fn var(mut self, k: &str, v: impl Into<String>) -> Env {
        self.vars.push((k.to_string(), v.into()));
        self
    }

    /// Writes a runbook into the scratch directory and returns its path.
    pub fn runbook(&self, name: &str, source: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, source).unwrap();
        path.to_string_lossy().into_owned()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--db").arg(self.db()).args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("LIFEBOAT_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `status RUN --json`, parsed.
    pub fn status(&self, run: &str) -> serde_json::Value {
        let out = self.run(&["status", run, "--json"]);
        out.expect_code(0);
        serde_json::from_str(&out.stdout).unwrap()
    }

    /// Waits until run `run` shows a running step whose name starts with `prefix`.
    #[track_caller]
    pub fn wait_for_running_step(&self, run: &str, prefix: &str) {
        self.wait_for(prefix, || {
            let out = self.run(&["status", run, "--json"]);
            out.code == 0
                && serde_json::from_str::<serde_json::Value>(&out.stdout).is_ok_and(|s| {
                    s["steps"].as_array().is_some_and(|steps| {
                        steps.iter().any(|st| {
                            st["state"] == "running"
                                && st["name"].as_str().unwrap_or("").starts_with(prefix)
                        })
                    })
                })
        });
    }

    /// Polls until `f` holds, for at most 20 s.
    #[track_caller]
    pub fn wait_for(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reads a spawned child's output once it has exited.
pub fn finish(child: Child) -> Output {
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The first line a `run` prints on stdout: its id.
pub fn read_run_id(child: &mut Child) -> String {
    let stdout = child.stdout.as_mut().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    use std::io::Read;
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

/// Text with the loopback ports of the test's servers replaced by PORT.
pub fn without_ports(text: &str) -> String {
    regex::Regex::new(r"127\.0\.0\.1:\d+")
        .unwrap()
        .replace_all(text, "127.0.0.1:PORT")
        .into_owned()
}

/// Replaces what changes from run to run (run ids, timestamps, durations) with placeholders.
pub fn normalize(text: &str, run: &str) -> String {
    let out = text.replace(run, "RUN");
    let time = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z").unwrap();
    let duration = regex::Regex::new(r"\(\d+(\.\d+)?(ms|s)\)").unwrap();
    let out = time.replace_all(&out, "TIME");
    duration.replace_all(&out, "(DURATION)").into_owned()
}

/// A counter service on loopback: `hit NAME` counts and answers the new count, `get NAME`
/// answers the count. Step bodies reach it through the test-only `test_effect` binding.
pub struct Counter {
    pub addr: String,
    counts: Arc<Mutex<HashMap<String, i64>>>,
    /// Effects whose answer is held back (the step body waits) until released.
    held: Arc<(Mutex<std::collections::HashSet<String>>, std::sync::Condvar)>,
}

impl Counter {
    pub fn start() -> Counter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let counts: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
        let held: Arc<(Mutex<std::collections::HashSet<String>>, std::sync::Condvar)> =
            Arc::default();
        let shared = counts.clone();
        let shared_held = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counts = shared.clone();
                let held = shared_held.clone();
                std::thread::spawn(move || {
                    let mut line = String::new();
                    let mut writer = stream.try_clone().unwrap();
                    if BufReader::new(stream).read_line(&mut line).is_err() {
                        return;
                    }
                    let mut counts = counts.lock().unwrap();
                    let reply = match line.trim().split_once(' ') {
                        Some(("hit", name)) => {
                            let n = counts.entry(name.to_string()).or_default();
                            *n += 1;
                            *n
                        }
                        Some(("get", name)) => counts.get(name).copied().unwrap_or(0),
                        _ => -1,
                    };
                    drop(counts);
                    if let Some(("hit", name)) = line.trim().split_once(' ') {
                        let (set, cv) = &*held;
                        let mut set = set.lock().unwrap();
                        while set.contains(name) {
                            set = cv.wait(set).unwrap();
                        }
                    }
                    let _ = writer.write_all(format!("{reply}\n").as_bytes());
                });
            }
        });
        Counter { addr, counts, held }
    }

    /// From now on, the effect `name` happens but its step body waits until [`Counter::release`].
    pub fn hold(&self, name: &str) {
        self.held.0.lock().unwrap().insert(name.to_string());
    }

    pub fn release(&self, name: &str) {
        self.held.0.lock().unwrap().remove(name);
        self.held.1.notify_all();
    }

    /// Counts `name` once, as a step's `test_effect(name)` would (the world changed).
    pub fn hit(&self, name: &str) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default() += 1;
    }

    pub fn count(&self, name: &str) -> i64 {
        self.counts.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    pub fn counts(&self) -> HashMap<String, i64> {
        self.counts.lock().unwrap().clone()
    }
}

/// A small deterministic generator for kill delays (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// The Python that has the test suite's packages (`ovh`, `aiosmtpd`): the one `./test` puts in
/// `target/test-venv` (it exports `LIFEBOAT_TEST_PYTHON`), else `python3`.
pub fn python() -> Command {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    let program = match std::env::var("LIFEBOAT_TEST_PYTHON") {
        Ok(p) => PathBuf::from(p),
        Err(_) if venv.exists() => venv,
        Err(_) => PathBuf::from("python3"),
    };
    Command::new(program)
}

/// Node.js with OVH's official client (`npm ovh`) on its module path: the one `./test` installs
/// in `target/test-node` (it exports `LIFEBOAT_TEST_NODE_MODULES`).
pub fn node() -> Command {
    let modules = std::env::var("LIFEBOAT_TEST_NODE_MODULES").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-node/node_modules"),
        PathBuf::from,
    );
    assert!(
        modules.join("ovh/package.json").exists(),
        "{}",
        missing("OVH's Node.js client (npm ovh)")
    );
    let mut node = Command::new("node");
    node.env("NODE_PATH", modules);
    node
}

/// What a test says when a program it drives is missing: the one command that installs it.
pub fn missing(program: &str) -> String {
    format!("{program} is not installed: run ./test (from the repository root), which installs what the tests need")
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs Debian's headless Chromium (which `./test` installs) on a local page with `args`
/// (`--screenshot=FILE`, `--dump-dom`...), with the flags this machine's closed network needs;
/// returns what it printed on stdout.
pub fn chromium(page: &Path, args: &[String]) -> String {
    let profile = page.with_extension("chromium-profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", missing("chromium")));
    assert!(
        out.status.success(),
        "chromium failed on {}",
        page.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PNG screenshot's pixels that are within 8 of `rgb` on every channel.
pub fn pixels_of(shot: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| {
            p[0].abs_diff(rgb[0]) < 8 && p[1].abs_diff(rgb[1]) < 8 && p[2].abs_diff(rgb[2]) < 8
        })
        .count()
}
