//! The PostgreSQL store: exactly one driver per run (leases with fencing), a takeover by
//! another process that sends no change twice, and a database restart that a run waits out.
//! These run on PostgreSQL whatever store the rest of the suite uses.

use std::time::{Duration, Instant};

use crate::support::{finish, normalize, read_run_id, Counter, Env};

/// Ten steps, each acting once through the counter, each with a check that finds its effect.
const TEN_STEPS: &str = r#"runbook(#{ name: "ten" });
let total = 0;
for i in 0..10 {
    let name = `s${i}`;
    total += step(name, #{ check: || if test_effect_count(name) > 0 { i } else { false } },
                  || { test_effect(name); i });
}
total
"#;

fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// A driver frozen past its lease (SIGSTOP) is taken over by another process, which finishes
/// the run; woken up (SIGCONT), the old driver's writes are refused by the store, it sends
/// nothing more and exits saying why. Every effect happened exactly once.
#[test]
fn a_frozen_driver_is_taken_over_and_cannot_write_or_send_after() {
    let counter = Counter::start();
    let env = Env::on_postgres().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook("ten.rhai", TEN_STEPS);
    counter.hold("s3");
    let mut first = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut first);
    env.wait_for("s3 to act", || counter.count("s3") > 0);
    signal(&first, "-STOP");

    // While its lease runs, nobody else may drive the run: a resume waits for the lease to run
    // out unrenewed (3 s, then 0.5 s of grace), then takes over.
    let stopped_at = Instant::now();
    let out = env.run(&["resume", &run]);
    let took = stopped_at.elapsed();
    out.expect_code(0);
    assert!(
        took >= Duration::from_millis(2500),
        "taken over after {took:?}, before the lease ran out"
    );
    assert!(
        took <= Duration::from_millis(3500 + 1000 + 1000),
        "takeover took {took:?}: more than lease + grace + 1 s"
    );
    assert!(
        out.stderr
            .contains("  ✓ s3 (reconciled: already done, says its check)"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "45\n");

    // The old driver wakes: its step's answer comes back, and its write of the step's success
    // is refused.
    counter.release("s3");
    signal(&first, "-CONT");
    let out = finish(first);
    out.expect_code(1);
    let stderr = normalize(&out.stderr, &run);
    // Its renewal or its write, whichever came first, found the run taken.
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: run RUN was taken over by another process (")
            && last.ends_with("): this process wrote and sent nothing more, and stopped. The run goes on there (`lifeboat status RUN`)")
            && !stderr.contains("✓ s3"),
        "{stderr}"
    );
    for i in 0..10 {
        assert_eq!(counter.count(&format!("s{i}")), 1, "s{i}");
    }
    let status = env.status(&run);
    assert_eq!(status["status"], "succeeded");
}

/// A driver whose renewals stopped for longer than it may count on its lease (frozen, its
/// database away) asks the database before its next change: nobody took the run over, so its
/// renewal at its own epoch succeeds and it goes on; every effect once.
#[test]
fn a_driver_whose_renewals_stopped_asks_before_its_next_change() {
    let counter = Counter::start();
    let env = Env::on_postgres().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook("ten.rhai", TEN_STEPS);
    counter.hold("s1");
    let first = env.spawn(&["run", &rb]);
    env.wait_for("s1 to act", || counter.count("s1") > 0);
    // Frozen for longer than the safe part of its lease (2/3 of 3 s), not long enough for
    // the lease to expire with its grace; nobody else asked for the run.
    signal(&first, "-STOP");
    std::thread::sleep(Duration::from_millis(2200));
    counter.release("s1");
    signal(&first, "-CONT");
    let out = finish(first);
    out.expect_code(0);
    assert_eq!(out.stdout.lines().last(), Some("45"));
    for i in 0..10 {
        assert_eq!(counter.count(&format!("s{i}")), 1, "s{i}");
    }
}

/// A second driver of a run whose driver is alive is refused, naming it.
#[test]
fn a_live_driver_keeps_its_run() {
    let counter = Counter::start();
    let env = Env::on_postgres().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook("ten.rhai", TEN_STEPS);
    counter.hold("s2");
    let mut first = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut first);
    env.wait_for("s2 to act", || counter.count("s2") > 0);
    let out = env.run(&["resume", &run]);
    out.expect_code(2);
    let stderr = normalize(&out.stderr, &run);
    assert!(
        stderr.starts_with("error: run RUN is being driven by ")
            && stderr.contains(" pid ")
            && stderr.contains("and is being renewed); it can be taken over only once that lease has expired and its grace period (DURATION) passed"),
        "{stderr}"
    );
    counter.release("s2");
    finish(first).expect_code(0);
    for i in 0..10 {
        assert_eq!(counter.count(&format!("s{i}")), 1, "s{i}");
    }
}

/// The database restarts in the middle of a run (a failover, maintenance): the run waits for
/// it and goes on; nothing journaled is lost and no step runs twice.
#[test]
fn a_database_restart_in_the_middle_of_a_run_is_waited_out() {
    let counter = Counter::start();
    let env = Env::on_postgres().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook("ten.rhai", TEN_STEPS);
    counter.hold("s4");
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    env.wait_for("s4 to act", || counter.count("s4") > 0);
    crate::support::postgres::restart_server();
    counter.release("s4");
    let out = finish(child);
    out.expect_code(0);
    assert_eq!(out.stdout.lines().last(), Some("45"));
    for i in 0..10 {
        assert_eq!(counter.count(&format!("s{i}")), 1, "s{i}");
    }
    let status = env.status(&run);
    assert_eq!(status["steps"].as_array().unwrap().len(), 10);
}

/// `store copy` moves every run of the embedded store into PostgreSQL, each resumable there:
/// a run paused at a gate is approved and finished on the shared store; a finished one reports
/// the same; a second copy leaves them alone.
#[test]
fn store_copy_moves_runs_to_postgres_and_they_resume_there() {
    let embedded = Env::embedded();
    let rb = embedded.runbook(
        "gate.rhai",
        "let a = step(\"before\", || 1);\napprove(\"go\");\nstep(\"after\", || a + 1)\n",
    );
    let done = embedded.runbook("done.rhai", "step(\"only\", || 7)\n");
    let paused = embedded.run(&["run", &rb, "--no-wait"]);
    paused.expect_code(3);
    let paused = paused.stdout.lines().next().unwrap().to_string();
    let finished = embedded.run(&["run", &done]);
    finished.expect_code(0);
    let finished = finished.stdout.lines().next().unwrap().to_string();
    let report = embedded
        .run(&["report", &finished, "--format", "json"])
        .stdout;

    let url = crate::support::postgres::fresh_database();
    let db = embedded.db().display().to_string();
    let out = embedded.run(&["store", "copy", "--from", &db, "--to", &url]);
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        // The paused run: start, step started and done, gate opened, pause; the other: start,
        // step started and done, success.
        format!("copied 2 runs (9 events) from {db} to {url}\n")
    );
    let shared = Env::embedded().var("LIFEBOAT_STORE", &url);
    assert_eq!(
        shared
            .run(&["report", &finished, "--format", "json"])
            .stdout,
        report
    );
    shared.run(&["approve", &paused, "go"]).expect_code(0);
    let out = shared.run(&["resume", &paused]);
    out.expect_code(0);
    assert_eq!(out.stdout, "2\n");
    assert!(
        out.stderr
            .contains("  ↺ 1 finished step answered from the journal"),
        "{}",
        out.stderr
    );

    let again = embedded.run(&["store", "copy", "--from", &db, "--to", &url]);
    again.expect_code(0);
    let mut ids = [paused.as_str(), finished.as_str()];
    ids.sort();
    assert_eq!(
        again.stdout,
        format!(
            "copied 0 runs (0 events) from {db} to {url}\nleft alone, already in {url}: {}\n",
            ids.join(", ")
        )
    );
}

/// Two workers on one store: a run queued with `run --detach` is driven by one of them; that
/// worker is killed right after a step's effect; the other takes the orphaned run over once its
/// lease expired past its grace, reconciles the step in flight, and finishes. Every effect once.
#[test]
fn two_workers_finish_a_run_whose_worker_was_killed() {
    let counter = Counter::start();
    let env = Env::on_postgres().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook("ten.rhai", TEN_STEPS);
    let out = env.run(&["run", &rb, "--detach"]);
    out.expect_code(0);
    let run = out.stdout.trim().to_string();
    assert_eq!(
        out.stderr,
        format!("queued run {run}: a worker (`lifeboat worker`) drives it; `lifeboat status {run}` follows it\n")
    );
    assert_eq!(env.status(&run)["status"], "queued");
    counter.hold("s3");
    let mut workers = vec![env.spawn(&["worker"]), env.spawn(&["worker"])];
    env.wait_for("s3 to act", || counter.count("s3") > 0);
    let owner = env.status(&run)["lease"]["owner"]
        .as_str()
        .unwrap()
        .to_string();
    let driving = workers
        .iter()
        .position(|w| owner.contains(&format!(" pid {} ", w.id())))
        .unwrap_or_else(|| panic!("the run is driven by {owner}, neither worker"));
    let mut killed = workers.remove(driving);
    killed.kill().unwrap();
    killed.wait().unwrap();
    counter.release("s3");
    env.wait_for("the other worker to finish the run", || {
        env.status(&run)["status"] == "succeeded"
    });
    let status = env.status(&run);
    assert_eq!(status["state"]["result"], 45);
    for i in 0..10 {
        assert_eq!(counter.count(&format!("s{i}")), 1, "s{i}");
    }
    // While it waited, the run was orphaned, and said so.
    let mut other = workers.remove(0);
    other.kill().unwrap();
    let out = finish(other);
    assert!(
        out.stderr.contains(&format!("run {run} succeeded")),
        "{}",
        out.stderr
    );
}

/// `status --orphans` lists the running runs nobody drives, and only those.
#[test]
fn status_lists_orphaned_runs() {
    let counter = Counter::start();
    let env = Env::on_postgres().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook("ten.rhai", TEN_STEPS);
    let done = env.run(&["run", &rb]);
    done.expect_code(0);
    counter.hold("s10");
    let rb2 = env.runbook("two.rhai", "step(\"a\", || test_effect(\"s10\"))\n");
    let mut child = env.spawn(&["run", &rb2]);
    let run = read_run_id(&mut child);
    env.wait_for("the step to act", || counter.count("s10") > 0);
    assert_eq!(env.run(&["status", "--orphans"]).stdout, "no runs\n");
    child.kill().unwrap();
    child.wait().unwrap();
    counter.release("s10");
    // Its lease runs out (3 s) and then its grace (0.5 s).
    std::thread::sleep(Duration::from_millis(3700));
    let out = env.run(&["status", "--orphans"]);
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(lines[1].starts_with(&run), "{}", out.stdout);
}

/// An approval given from another host (another data directory: no control socket between
/// them) reaches a driver waiting at the gate through the database's notification, not its
/// regular poll (set to a minute here).
#[test]
fn an_approval_from_another_host_wakes_the_waiting_driver() {
    let driver = Env::on_postgres().var("LIFEBOAT_POLL", "60s");
    let url = driver
        .vars
        .iter()
        .find(|(k, _)| k == "LIFEBOAT_STORE")
        .unwrap()
        .1
        .clone();
    let rb = driver.runbook(
        "gate.rhai",
        "step(\"before\", || 1);\napprove(\"go\", \"move the IPs?\");\nstep(\"after\", || 2)\n",
    );
    let mut child = driver.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    driver.wait_for("the gate", || {
        driver.status(&run)["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["kind"] == "gate"))
    });
    std::thread::sleep(Duration::from_millis(300));
    let elsewhere = Env::embedded().var("LIFEBOAT_STORE", url);
    let out = elsewhere.run(&["approve", &run, "go"]);
    out.expect_code(0);
    assert_eq!(out.stdout, format!("approved gate \"go\" of run {run}\n"));
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the driver did not wake up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = finish(child);
    out.expect_code(0);
    assert!(out.stderr.contains("  ✓ after"), "{}", out.stderr);
}
