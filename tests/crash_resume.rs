//! A 200-step runbook killed with SIGKILL at random moments and resumed until done: every step
//! body's side effect happens exactly once, except where the step was in flight at a kill and
//! was allowed to run again; and the result equals an uninterrupted run's.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::support::{finish, read_run_id, Counter, Env, Rng};

/// Four kinds of steps, in turn: idempotent, reconciled by `check`, pure (no effect), and plain
/// (an effect, no check: a crash in flight needs the operator's `--retry-inflight`).
const RUNBOOK: &str = r#"
runbook(#{ name: "crash-200" });
let results = [];
for i in 0..200 {
    let name = `s${i}`;
    let kind = i % 4;
    let r = if kind == 0 {
        step(name, #{ idempotent: true }, || { test_effect(name); i * 2 })
    } else if kind == 1 {
        step(name, #{ check: || if test_effect_count(name) > 0 { i * 2 } else { false } },
             || { test_effect(name); i * 2 })
    } else if kind == 2 {
        step(name, || i * 2)
    } else {
        step(name, || { test_effect(name); i * 2 })
    };
    results.push(r);
}
results
"#;

fn kind(step: &str) -> u32 {
    step[1..].parse::<u32>().unwrap() % 4
}

/// Steps the journal shows in flight (started, never finished).
fn in_flight(env: &Env, run: &str) -> Vec<String> {
    env.status(run)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "running")
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn two_hundred_steps_survive_random_kills() {
    // The reference: one uninterrupted run.
    let reference_counter = Counter::start();
    let reference = Env::new().var("LIFEBOAT_TEST_COUNTER", &reference_counter.addr);
    let rb = reference.runbook("crash.rhai", RUNBOOK);
    let started = Instant::now();
    let out = reference.run(&["run", &rb]);
    out.expect_code(0);
    let uninterrupted = Duration::max(started.elapsed(), Duration::from_millis(50));
    let expected_result: serde_json::Value =
        serde_json::from_str(out.stdout.lines().nth(1).unwrap()).unwrap();
    assert!(reference_counter.counts().values().all(|&n| n == 1));
    assert_eq!(reference_counter.counts().len(), 150);

    let mut total_kills = 0;
    let mut total_in_flight = 0;
    for seed in 1..=8u64 {
        let counter = Counter::start();
        let env = Env::new().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
        let rb = env.runbook("crash.rhai", RUNBOOK);
        let mut rng = Rng::new(seed);
        // Each entry: a step in flight at a kill, and whether resume may run it again.
        let mut allowed_twice: HashMap<String, i64> = HashMap::new();
        let mut run_id = String::new();
        let mut retry_inflight: Vec<String> = Vec::new();
        let mut kills_this_seed = 0;
        let final_stdout;
        loop {
            let mut args: Vec<String> = if run_id.is_empty() {
                vec!["run".into(), rb.clone()]
            } else {
                vec!["resume".into(), run_id.clone()]
            };
            for step in retry_inflight.drain(..) {
                args.push("--retry-inflight".into());
                args.push(step);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut child = env.spawn(&args);
            if run_id.is_empty() {
                run_id = read_run_id(&mut child);
            }
            // Kill early enough that most attempts are cut short, then, after a dozen kills,
            // let the run finish.
            let window = (uninterrupted.as_millis() as u64 / 3).max(10);
            let deadline = if kills_this_seed < 12 {
                Instant::now() + Duration::from_millis(5 + rng.below(window))
            } else {
                Instant::now() + Duration::from_secs(60)
            };
            let mut exited = None;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().unwrap() {
                    exited = Some(status);
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if exited.is_none() {
                let _ = child.kill(); // SIGKILL
            }
            let out = finish(child);
            match out.code {
                0 => {
                    final_stdout = out.stdout;
                    break;
                }
                3 => {
                    // A plain step was in flight with its effect possibly done: the operator's call.
                    let doubtful = in_flight(&env, &run_id);
                    assert_eq!(doubtful.len(), 1, "{}", out.stderr);
                    assert_eq!(
                        kind(&doubtful[0]),
                        3,
                        "only plain steps need the operator: {}",
                        out.stderr
                    );
                    assert!(
                        out.stderr.contains(&format!("step {:?}", doubtful[0])),
                        "{}",
                        out.stderr
                    );
                    assert!(
                        out.stderr
                            .contains(&format!("lifeboat retry {run_id} {:?}", doubtful[0])),
                        "{}",
                        out.stderr
                    );
                    *allowed_twice.entry(doubtful[0].clone()).or_default() += 1;
                    // The operator's two ways on: the decision command, or resume's option.
                    if seed % 2 == 0 {
                        env.run(&[
                            "retry",
                            &run_id,
                            &doubtful[0],
                            "--reason",
                            "the crash test says so",
                            "--no-resume",
                        ])
                        .expect_code(0);
                    } else {
                        retry_inflight.push(doubtful[0].clone());
                    }
                }
                -1 => {
                    total_kills += 1;
                    kills_this_seed += 1;
                    for step in in_flight(&env, &run_id) {
                        total_in_flight += 1;
                        // Idempotent steps may run again; checked ones must not (their check
                        // answers); plain ones wait for the operator (code 3 above).
                        if kind(&step) == 0 {
                            *allowed_twice.entry(step).or_default() += 1;
                        }
                    }
                }
                code => panic!("unexpected exit {code}: {}", out.stderr),
            }
        }

        let result: serde_json::Value =
            serde_json::from_str(final_stdout.lines().last().unwrap()).unwrap();
        assert_eq!(
            result, expected_result,
            "seed {seed}: final results differ from an uninterrupted run"
        );
        let counts = counter.counts();
        let effectful: HashSet<String> = (0..200)
            .filter(|i| i % 4 != 2)
            .map(|i| format!("s{i}"))
            .collect();
        assert_eq!(
            counts.keys().cloned().collect::<HashSet<_>>(),
            effectful,
            "seed {seed}"
        );
        for (step, n) in &counts {
            let extra = n - 1;
            let allowed = allowed_twice.get(step).copied().unwrap_or(0);
            assert!(
                extra <= allowed,
                "seed {seed}: step {step} ran {n} times but was allowed {allowed} extra run(s)"
            );
        }
    }
    // The test is only meaningful if kills actually landed mid-run.
    assert!(total_kills >= 16, "only {total_kills} kills landed");
    eprintln!("{total_kills} kills, {total_in_flight} steps found in flight");
}
