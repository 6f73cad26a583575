//! The PostgreSQL server of the tests: every test that uses it gets a database of its own.
//!
//! `LIFEBOAT_TEST_POSTGRES` is the server's URL (`./test` starts a throwaway cluster and sets
//! it; default `postgres://lifeboat@127.0.0.1:55432/postgres`). With `LIFEBOAT_TEST_STORE=postgres`
//! every [`super::Env`] runs its commands on a fresh database of that server instead of the
//! embedded store: `./test` runs the suite both ways. A server that cannot be reached fails
//! the test, saying how to start one.

use std::sync::atomic::{AtomicU64, Ordering};

pub const DEFAULT_URL: &str = "postgres://lifeboat@127.0.0.1:55432/postgres";

/// The server's URL.
pub fn server() -> String {
    std::env::var("LIFEBOAT_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// Whether this run of the suite puts every store on PostgreSQL.
pub fn stores_on_postgres() -> bool {
    std::env::var("LIFEBOAT_TEST_STORE").is_ok_and(|s| s == "postgres")
}

/// A new, empty database on the test server; its URL.
pub fn fresh_database() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let base = server();
    let name = format!(
        "lifeboat_test_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    // A test may be restarting the server: give it a few seconds, connection and statements.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let create = || -> Result<(), postgres::Error> {
        let mut client = postgres::Client::connect(&base, postgres::NoTls)?;
        // One statement each: neither may run inside a transaction block.
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))?;
        client.batch_execute(&format!("CREATE DATABASE {name}"))
    };
    loop {
        match create() {
            Ok(()) => break,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(200))
            }
            Err(e) => panic!(
                "the PostgreSQL server of the tests is not reachable at {base}: {e}. Run the tests with ./test (it starts one), or set LIFEBOAT_TEST_POSTGRES to a server where this user may create databases"
            ),
        }
    }
    let (head, _) = base.rsplit_once('/').expect("a URL ending in /DATABASE");
    format!("{head}/{name}?sslmode=disable")
}

/// Leases short enough that a takeover in a test takes seconds, long enough that a loaded
/// machine renews them in time (every second).
pub fn short_leases(env: super::Env) -> super::Env {
    env.var("LIFEBOAT_LEASE", "3s")
        .var("LIFEBOAT_LEASE_GRACE", "500ms")
}

/// Restarts the test server (`pg_ctl restart`, as `./test` says how), for the tests of a
/// database that goes away in the middle of a run.
pub fn restart_server() {
    let ctl = std::env::var("LIFEBOAT_TEST_PG_CTL").expect(
        "LIFEBOAT_TEST_PG_CTL (how to run pg_ctl for the test server) is set by ./test: run the tests with it",
    );
    let user = std::env::var("LIFEBOAT_TEST_PG_USER").unwrap_or_else(|_| "postgres".into());
    let mut words = ctl.split_whitespace();
    let program = words.next().unwrap();
    let mut cmd = if user == "postgres" && whoami_is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        std::process::Command::new(program)
    };
    // The server outlives pg_ctl: it must not inherit a pipe the test would wait on.
    let status = cmd
        .args(words)
        .args(["restart", "-m", "fast", "-w"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctl restart failed: {ctl}");
}

fn whoami_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
