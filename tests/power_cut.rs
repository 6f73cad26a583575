//! Power cuts, not only SIGKILL: the journal lives on a filesystem that forgets every write not
//! yet synced when the power goes (tests/support/lazyfs.rs). A runbook whose effects are counted
//! outside the process is cut at random moments, the machine "reboots", and the run is resumed:
//! no step reported finished is lost, and no effect happens again unless a person said so. The
//! same filesystem fills up on demand: a full disk pauses the run, and resume finishes it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::lazyfs::PowerFs;
use crate::support::{finish, read_run_id, Counter, Env, Rng};

/// Three kinds of steps, in turn: reconciled by `check`, plain (an effect, no check: in flight
/// at a cut, a person decides), and pure.
const RUNBOOK: &str = r#"
runbook(#{ name: "power-cut" });
let results = [];
for i in 0..150 {
    let name = `s${i}`;
    let r = if i % 3 == 0 {
        step(name, #{ check: || if test_effect_count(name) > 0 { i } else { false } },
             || { test_effect(name); i })
    } else if i % 3 == 1 {
        step(name, || { test_effect(name); i })
    } else {
        step(name, || i)
    };
    results.push(r);
}
results
"#;

/// The steps a process reported finished ("  ✓ s12 (3ms)") before it lost power. Only whole
/// lines count: a process killed while writing one leaves a piece of it.
fn reported_done(stderr: &str) -> Vec<String> {
    let whole = &stderr[..stderr.rfind('\n').map_or(0, |i| i + 1)];
    whole
        .lines()
        .filter_map(|l| l.strip_prefix("  ✓ "))
        .filter(|l| l.ends_with(')'))
        .filter_map(|l| l.split_once(" (").map(|(name, _)| name.to_string()))
        .collect()
}

#[test]
fn power_cuts_lose_no_finished_step_and_repeat_no_effect() {
    let mut cuts = 0;
    for seed in 1..=5u64 {
        let counter = Counter::start();
        let env = Env::embedded().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
        let rb = env.runbook("power.rhai", RUNBOOK);
        std::fs::create_dir(env.db()).unwrap();
        let mut power = PowerFs::mount(&env.db());
        let mut rng = Rng::new(seed);
        let mut run_id = String::new();
        // Plain steps a person allowed to run again (after a cut in flight).
        let mut allowed_again: HashMap<String, i64> = HashMap::new();
        let mut cuts_this_seed = 0;
        let mut uninterrupted_ms = 0u64;
        let final_stdout = loop {
            let mut child = if run_id.is_empty() {
                let mut child = env.spawn(&["run", &rb]);
                run_id = read_run_id(&mut child);
                child
            } else {
                env.spawn(&["resume", &run_id])
            };
            let started = Instant::now();
            let window = if cuts_this_seed < 11 {
                // The whole run takes a few tens of ms here (a barrier is one fdatasync of
                // the write-ahead log): cut early enough that eleven cuts land before it ends.
                Duration::from_millis(3 + rng.below(15))
            } else {
                Duration::from_secs(120)
            };
            while started.elapsed() < window && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = child.kill();
            let out = finish(child);
            if out.code != -1 {
                uninterrupted_ms = started.elapsed().as_millis() as u64;
            }
            match out.code {
                0 => break out.stdout,
                -1 => {
                    cuts += 1;
                    cuts_this_seed += 1;
                    power.cut();
                    // After the reboot, every step the process said was done is still done.
                    let status = env.run(&["status", &run_id, "--json"]);
                    status.expect_code(0);
                    let status: serde_json::Value = serde_json::from_str(&status.stdout)
                        .unwrap_or_else(|e| panic!("{e}: {}", status.stdout));
                    let states: HashMap<String, String> = status["steps"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| {
                            (
                                s["name"].as_str().unwrap().to_string(),
                                s["state"].as_str().unwrap().to_string(),
                            )
                        })
                        .collect();
                    for step in reported_done(&out.stderr) {
                        // "succeeded", or "succeeded (check)" when reconciled.
                        assert!(
                            states.get(&step).is_some_and(|s| s.starts_with("succeeded")),
                            "seed {seed}: step {step} was reported done before the cut, and lost\n{}",
                            out.stderr
                        );
                    }
                }
                3 => {
                    // A plain step was in flight at the cut: the person's call, journaled.
                    let status = env.status(&run_id);
                    let doubtful: Vec<String> = status["steps"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|s| s["state"] == "running")
                        .map(|s| s["name"].as_str().unwrap().to_string())
                        .collect();
                    assert_eq!(doubtful.len(), 1, "seed {seed}: {}", out.stderr);
                    let n: u32 = doubtful[0][1..].parse().unwrap();
                    assert_eq!(
                        n % 3,
                        1,
                        "only plain steps wait for a person: {}",
                        out.stderr
                    );
                    *allowed_again.entry(doubtful[0].clone()).or_default() += 1;
                    env.run(&[
                        "retry",
                        &run_id,
                        &doubtful[0],
                        "--reason",
                        "power-cut test",
                        "--no-resume",
                    ])
                    .expect_code(0);
                }
                code => panic!("seed {seed}: exit {code}\n{}", out.stderr),
            }
        };
        let result: Vec<i64> = serde_json::from_str(final_stdout.lines().last().unwrap()).unwrap();
        assert_eq!(result, (0..150).collect::<Vec<i64>>(), "seed {seed}");
        let counts = counter.counts();
        for i in 0..150 {
            let name = format!("s{i}");
            let n = counts.get(&name).copied().unwrap_or(0);
            match i % 3 {
                0 => assert_eq!(n, 1, "seed {seed}: checked step {name} ran {n} times"),
                1 => {
                    let allowed = 1 + allowed_again.get(&name).copied().unwrap_or(0);
                    assert!(
                        (1..=allowed).contains(&n),
                        "seed {seed}: plain step {name} ran {n} times, {allowed} allowed"
                    );
                }
                _ => assert_eq!(n, 0),
            }
        }
        assert!(power.syncs() > 0, "no sync ever reached the filesystem");
        eprintln!(
            "seed {seed}: {cuts_this_seed} cuts; the last, whole run took {uninterrupted_ms} ms"
        );
    }
    assert!(cuts >= 50, "only {cuts} cuts landed");
}

/// Every barrier of a run is a real `fdatasync` of the store's write-ahead log (and an `fsync`
/// of the store's directory when its entries changed), not sled's flush: seen from outside the
/// process, with strace.
#[test]
fn every_barrier_is_a_real_sync_seen_by_strace() {
    let env = Env::new();
    let rb = env.runbook("twenty.rhai", "for i in 0..20 { step(`s${i}`, || i); }\n");
    let trace = env.dir.path().join("trace");
    let mut cmd = std::process::Command::new("strace");
    cmd.args([
        "-f",
        "-qq",
        "-e",
        "trace=fdatasync,fsync,sync_file_range",
        "-o",
    ])
    .arg(&trace)
    .arg(crate::support::BIN)
    .arg("--db")
    .arg(env.db())
    .args(["run", &rb]);
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{}", crate::support::missing("strace"))
        }
        Err(e) => panic!("strace: {e}"),
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = std::fs::read_to_string(trace).unwrap();
    let count = |call: &str| {
        trace
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|c| c.starts_with(&format!("{call}(")))
            })
            .count()
    };
    // The barriers: the run's start, each of the 20 steps' success, the run's end. The
    // directory is synced when its entries changed (sled's files, the manifest), not at every
    // barrier.
    assert!(
        count("fdatasync") >= 22,
        "{} fdatasync calls:\n{trace}",
        count("fdatasync")
    );
    assert!(
        count("fsync") >= 1,
        "{} fsync calls:\n{trace}",
        count("fsync")
    );
    // sled's own flush (`sync_file_range`) is no barrier: it runs in the background, about
    // once a second, and at checkpoints.
    assert!(
        count("sync_file_range") < 10,
        "{} sync_file_range calls:\n{trace}",
        count("sync_file_range")
    );
}

/// A disk that fills up mid-run: the run stops with a clear error and nothing lost, and
/// resumes to the end once there is space again.
#[test]
fn a_full_disk_stops_the_run_without_losing_it_and_resume_finishes_it() {
    let counter = Counter::start();
    let env = Env::embedded().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook(
        "full.rhai",
        r#"
let total = 0;
for i in 0..30 {
    let name = `s${i}`;
    total += step(name, #{ check: || if test_effect_count(name) > 0 { i } else { false } },
                  || { test_effect(name); i });
}
total
"#,
    );
    std::fs::create_dir(env.db()).unwrap();
    let power = PowerFs::mount(&env.db());
    counter.hold("s10");
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    env.wait_for("step 10", || counter.count("s10") > 0);
    // Step s10 has acted; the disk fills before it can journal its success.
    power.set_full(true);
    counter.release("s10");
    let out = finish(child);
    out.expect_code(3);
    let db = env.db().display().to_string();
    assert_eq!(
        crate::support::normalize(&out.stderr, &run)
            .lines()
            .last()
            .unwrap(),
        format!("error: run RUN paused: its journal cannot be written: the disk is full (No space left on device). \
Everything journaled before is kept, and a step that was running is reconciled when the run resumes. \
To go on: free space on the disk that holds {db}, then `lifeboat resume RUN`")
    );
    // Reading the store needs a little writing too (sled's recovery): a clear error, exit 1.
    let status = env.run(&["status", &run]);
    status.expect_code(1);
    assert_eq!(
        status.stderr,
        format!("error: the journal store {db} cannot be written: the disk is full (No space left on device). \
Nothing recorded before is lost; free space on the disk that holds {db}, then try again\n")
    );
    // Space is back: the run goes on from where it stopped, s10 reconciled by its check.
    power.set_full(false);
    let resumed = env.run(&["resume", &run]);
    resumed.expect_code(0);
    assert!(
        resumed
            .stderr
            .contains("  ↺ 10 finished steps answered from the journal\n")
            && resumed
                .stderr
                .contains("  ✓ s10 (reconciled: already done, says its check)\n"),
        "{}",
        resumed.stderr
    );
    assert_eq!(resumed.stdout.trim(), "435");
    for i in 0..30 {
        assert_eq!(counter.count(&format!("s{i}")), 1, "s{i}");
    }
}
