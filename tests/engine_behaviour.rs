//! The engine's contract, through the real binary: replay, reconciliation of steps in flight,
//! durable sleeps, gates from another terminal, abort, retries, timeouts, export/import.

use std::time::Duration;

use crate::support::{finish, normalize, read_run_id, Counter, Env};

/// A step whose body makes its effect, then waits long enough to be killed in flight.
fn in_flight_runbook(options: &str) -> String {
    format!(
        r#"
step("before", || 1);
let r = step("move", {options}, || {{ test_effect("move"); sleep("30s"); "moved" }});
step("after", || 2);
r
"#
    )
}

/// Starts `runbook`, waits until the counter saw `effect`, kills the process; returns the run id.
fn kill_after_effect(env: &Env, counter: &Counter, runbook: &str, effect: &str) -> String {
    let mut child = env.spawn(&["run", runbook]);
    let run = read_run_id(&mut child);
    env.wait_for("the effect", || counter.count(effect) > 0);
    child.kill().unwrap();
    finish(child);
    run
}

#[test]
fn in_flight_step_without_check_waits_for_the_operator() {
    let counter = Counter::start();
    let env = Env::new().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook("inflight.rhai", &in_flight_runbook("#{}"));
    let run = kill_after_effect(&env, &counter, &rb, "move");

    let out = env.run(&["resume", &run]);
    out.expect_code(3);
    assert_eq!(
        normalize(&out.stderr, &run),
        format!("resuming run RUN: {rb}\n  ↺ 1 finished step answered from the journal\n  ? move: in doubt: it was in flight when the previous process stopped, and it has no `check` to ask\n\
run RUN paused: step \"move\" (position 1) may have changed things, and lifeboat cannot tell whether it did: \
it was in flight when the previous process stopped, and it has no `check` to ask. It will not be run again on its own. \
Find out whether it took effect (OVH's manager, the API), then:
  it took effect:         lifeboat resolve RUN \"move\" --done --reason TEXT [--result JSON]
  it did not:             lifeboat resolve RUN \"move\" --not-done --reason TEXT
  run it again anyway:    lifeboat retry RUN \"move\" [--reason TEXT]
  do not run it:          lifeboat skip RUN \"move\" --result JSON --reason TEXT
  stop the run for good:  lifeboat abort RUN\n")
    );
    assert_eq!(counter.count("move"), 1, "not run again on its own");

    // The operator takes responsibility: the body runs a second time. Shorten its wait first
    // by resuming with an edited runbook that agrees with the journal.
    let quick = env.runbook(
        "inflight-quick.rhai",
        &in_flight_runbook("#{}").replace("30s", "10ms"),
    );
    let out = env.run(&[
        "resume",
        &run,
        "--retry-inflight",
        "move",
        "--runbook",
        &quick,
    ]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "\"moved\"");
    assert_eq!(counter.count("move"), 2);
}

#[test]
fn in_flight_step_with_check_is_reconciled_not_repeated() {
    let counter = Counter::start();
    let env = Env::new().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook(
        "inflight.rhai",
        &in_flight_runbook(r#"#{ check: || if test_effect_count("move") > 0 { "moved (checked)" } else { false } }"#),
    );
    let run = kill_after_effect(&env, &counter, &rb, "move");

    let out = env.run(&["resume", &run]);
    out.expect_code(0);
    assert!(
        out.stderr
            .contains("  ✓ move (reconciled: already done, says its check)\n"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout.trim(), "\"moved (checked)\"");
    assert_eq!(
        counter.count("move"),
        1,
        "the check answered; the body did not run again"
    );
    let steps = &env.status(&run)["steps"];
    assert_eq!(steps[1]["state"], "succeeded (check)");
    assert_eq!(steps[2]["name"], "after");
}

#[test]
fn in_flight_step_whose_check_says_not_done_runs_again() {
    let counter = Counter::start();
    let env = Env::new().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let slow = in_flight_runbook("#{ check: || false }");
    let rb = env.runbook("inflight.rhai", &slow);
    let run = kill_after_effect(&env, &counter, &rb, "move");
    let quick = env.runbook("quick.rhai", &slow.replace("30s", "10ms"));
    env.run(&["resume", &run, "--runbook", &quick])
        .expect_code(0);
    assert_eq!(counter.count("move"), 2);
}

#[test]
fn a_step_killed_before_any_effect_just_runs() {
    // The body waits before acting: a kill then leaves nothing in doubt.
    let counter = Counter::start();
    let env = Env::new().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let src = r#"let r = step("slow", || { sleep("30s"); test_effect("slow"); 5 }); r"#;
    let rb = env.runbook("slow.rhai", src);
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    finish(child);
    let quick = env.runbook("quick.rhai", &src.replace("30s", "1ms"));
    let out = env.run(&["resume", &run, "--runbook", &quick]);
    out.expect_code(0);
    assert_eq!(counter.count("slow"), 1);
}

#[test]
fn divergence_on_replay_names_both_steps() {
    let env = Env::new();
    let rb = env.runbook(
        "a.rhai",
        "step(\"list filers\", || 1);\napprove(\"go\", \"continue?\");\nstep(\"link\", || 2);\n",
    );
    let out = env.run(&["run", &rb, "--no-wait"]);
    out.expect_code(3);
    let run = out.stdout.trim().to_string();
    let edited = env.runbook("b.rhai", "step(\"list datastores\", || 1);\napprove(\"go\", \"continue?\");\nstep(\"link\", || 2);\n");
    let out = env.run(&["resume", &run, "--runbook", &edited]);
    out.expect_code(2);
    assert_eq!(
        normalize(&out.stderr, &run),
        format!("resuming run RUN: {edited}\nerror: the runbook no longer matches run's journal at position 0: the journal has step \"list filers\", the runbook now asks for step \"list datastores\" ({edited}:1:1). Resume with the runbook the run started with, or start a new run\n")
    );
    // Nothing was lost: the run resumes with its own runbook once approved.
    env.run(&["approve", &run, "go"]).expect_code(0);
    let out = env.run(&["resume", &run]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "2");
}

#[test]
fn durable_sleep_resumes_with_the_time_left() {
    // Time runs 1000x: "10m" is 0.6 s of real time.
    let anchor = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let env = Env::new().var("LIFEBOAT_CLOCK", format!("1000@{anchor}"));
    let rb = env.runbook(
        "sleep.rhai",
        "step(\"a\", || 1);\nsleep(\"10m\");\nstep(\"b\", || 2)\n",
    );
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    std::thread::sleep(Duration::from_millis(250));
    child.kill().unwrap();
    finish(child);
    let before = &env.status(&run)["steps"];
    assert_eq!(before[1]["kind"], "sleep");
    assert_eq!(before[1]["state"], "waiting");

    let out = env.run(&["resume", &run]);
    out.expect_code(0);
    let log = env.run(&["log", &run, "--json"]).stdout;
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let starts: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "sleep_started")
        .collect();
    assert_eq!(starts.len(), 1, "the sleep was not restarted");
    let until = starts[0]["until"].as_u64().unwrap();
    let started = starts[0]["at"].as_u64().unwrap();
    assert_eq!(until - started, 600_000);
    let finished = events
        .iter()
        .find(|e| e["type"] == "sleep_finished")
        .unwrap()["at"]
        .as_u64()
        .unwrap();
    assert!(finished >= until, "woke at {finished}, before {until}");
    // The resumed process waited only the rest: it woke less than a (virtual) minute late.
    assert!(
        finished - until < 60_000,
        "woke {} ms late",
        finished - until
    );
}

#[test]
fn approve_from_a_second_terminal_while_the_run_waits() {
    let env = Env::new();
    let rb = env.runbook(
        "gate.rhai",
        "step(\"a\", || 1);\napprove(\"move-ips\", \"move the IPs now?\");\nstep(\"b\", || 2)\n",
    );
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    env.wait_for("the gate", || {
        let out = env.run(&["status"]);
        out.code == 0 && out.stdout.contains("waiting for approval (move-ips)")
    });
    // While the run holds the store, other commands go through its control socket.
    let log = env.run(&["log", &run]);
    log.expect_code(0);
    assert!(log
        .stdout
        .contains("gate \"move-ips\" opened: move the IPs now?"));
    let wrong = env.run(&["approve", &run, "move-dns"]);
    wrong.expect_code(2);
    assert_eq!(
        wrong.stderr,
        format!("error: run {run} is not waiting at gate \"move-dns\" (open gates: move-ips)\n")
    );

    let ok = env.run(&["approve", &run, "move-ips"]);
    ok.expect_code(0);
    assert_eq!(
        ok.stdout,
        format!("approved gate \"move-ips\" of run {run}\n")
    );
    let out = finish(child);
    out.expect_code(0);
    assert!(
        out.stderr
            .contains("  ⏸ waiting for approval at gate \"move-ips\": move the IPs now?\n"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(&format!(
        "    approve from any terminal: lifeboat approve {run} move-ips\n"
    )));
    assert!(out.stderr.contains("  ✓ gate \"move-ips\" approved by "));
    let steps = &env.status(&run)["steps"];
    assert!(steps[1]["state"]
        .as_str()
        .unwrap()
        .starts_with("approved by "));
}

#[test]
fn no_wait_pauses_with_code_3_then_approve_and_resume() {
    let env = Env::new();
    let rb = env.runbook(
        "gate.rhai",
        "step(\"a\", || 1);\napprove(\"go\", \"ok?\");\nstep(\"b\", || 2)\n",
    );
    let out = env.run(&["run", &rb, "--no-wait"]);
    out.expect_code(3);
    let run = out.stdout.trim().to_string();
    assert_eq!(
        normalize(&out.stderr, &run),
        format!("run RUN: {rb}\n  → a\n  ✓ a (DURATION)\nrun RUN is waiting for approval at gate \"go\"\n  `lifeboat approve RUN go`, then `lifeboat resume RUN`\n")
    );
    let status = env.run(&["status"]);
    assert!(
        status.stdout.contains("paused at gate go"),
        "{}",
        status.stdout
    );
    let ok = env.run(&["approve", &run, "go"]);
    ok.expect_code(0);
    assert_eq!(
        ok.stdout,
        format!("approved gate \"go\" of run {run}; continue it with `lifeboat resume {run}`\n")
    );
    let out = env.run(&["resume", &run]);
    out.expect_code(0);
    assert_eq!(out.stdout, "2\n");
    // A finished run is not run again.
    let again = env.run(&["resume", &run]);
    again.expect_code(0);
    assert_eq!(
        normalize(&again.stderr, &run),
        "run RUN had already succeeded; nothing to do\n"
    );
}

#[test]
fn abort_stops_a_live_run_for_good_and_keeps_its_journal() {
    let env = Env::new();
    let rb = env.runbook(
        "gate.rhai",
        "step(\"a\", || 1);\napprove(\"go\", \"ok?\");\nstep(\"b\", || 2)\n",
    );
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    env.wait_for("the gate", || {
        env.run(&["status"]).stdout.contains("waiting for approval")
    });
    let out = env.run(&["abort", &run]);
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        format!("aborted run {run}; its journal is kept (`lifeboat log {run}`)\n")
    );
    let out = finish(child);
    out.expect_code(1);
    assert!(
        out.stderr.ends_with(&format!(
            "run {run} aborted by {}\n",
            std::env::var("USER").unwrap_or_else(|_| "operator".into())
        )) || out.stderr.contains(" aborted by "),
        "{}",
        out.stderr
    );
    assert_eq!(env.status(&run)["state"]["state"], "aborted");
    let resume = env.run(&["resume", &run]);
    resume.expect_code(2);
    assert!(
        resume
            .stderr
            .contains(&format!("error: run {run} was aborted by ")),
        "{}",
        resume.stderr
    );
    assert!(env
        .run(&["log", &run])
        .stdout
        .contains("step 0 \"a\" succeeded: 1"));
}

#[test]
fn abort_of_a_paused_run_needs_no_live_process() {
    let env = Env::new();
    let rb = env.runbook("gate.rhai", "approve(\"go\", \"ok?\");\n");
    let run = env
        .run(&["run", &rb, "--no-wait"])
        .stdout
        .trim()
        .to_string();
    env.run(&["abort", &run]).expect_code(0);
    assert_eq!(env.status(&run)["state"]["state"], "aborted");
    let again = env.run(&["abort", &run]);
    again.expect_code(2);
    assert_eq!(
        again.stderr,
        format!("error: run {run} has already aborted; there is nothing to abort\n")
    );
}

#[test]
fn retries_with_backoff_until_the_body_succeeds() {
    let counter = Counter::start();
    let env = Env::new().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook(
        "flaky.rhai",
        r#"step("flaky", #{ retries: 3, backoff: "20ms", idempotent: true }, || {
    let n = test_effect("flaky");
    if n < 3 { fail(`not yet (${n})`) }
    n
})"#,
    );
    let out = env.run(&["run", &rb]);
    out.expect_code(0);
    let run = out.stdout.lines().next().unwrap().to_string();
    assert_eq!(out.stdout.lines().nth(1), Some("3"));
    assert!(
        out.stderr
            .contains("  ↻ flaky: attempt 1 failed: not yet (1) (at "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("; retrying in 20ms\n"),
        "{}",
        out.stderr
    );
    let step = &env.status(&run)["steps"][0];
    assert_eq!(step["attempts"], 3);
    assert_eq!(step["state"], "succeeded");
}

#[test]
fn a_failed_step_that_may_have_acted_pauses_for_a_person() {
    let counter = Counter::start();
    let env = Env::new().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook("acted.rhai", "step(\"move\", #{ retries: 3, backoff: \"1ms\" }, || { test_effect(\"move\"); fail(\"lost the answer\") })\n");
    let out = env.run(&["run", &rb]);
    out.expect_code(3);
    assert_eq!(counter.count("move"), 1, "not repeated");
    let run = out.stdout.trim();
    assert_eq!(
        normalize(&out.stderr, run),
        format!("run RUN: {rb}\n  → move\n  ? move: in doubt: its attempt 1 ended with: lost the answer (at {rb}:1:73), and it has no `check` to ask\n\
run RUN paused: step \"move\" (position 0) may have changed things, and lifeboat cannot tell whether it did: \
its attempt 1 ended with: lost the answer (at {rb}:1:73), and it has no `check` to ask. It will not be run again on its own. \
Find out whether it took effect (OVH's manager, the API), then:
  it took effect:         lifeboat resolve RUN \"move\" --done --reason TEXT [--result JSON]
  it did not:             lifeboat resolve RUN \"move\" --not-done --reason TEXT
  run it again anyway:    lifeboat retry RUN \"move\" [--reason TEXT]
  do not run it:          lifeboat skip RUN \"move\" --result JSON --reason TEXT
  stop the run for good:  lifeboat abort RUN\n")
    );
    assert_eq!(env.status(run)["status"], "paused: step \"move\" in doubt");
}

#[test]
fn on_failure_fail_lets_the_script_see_a_failure_that_may_have_acted() {
    let counter = Counter::start();
    let env = Env::new().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook("acted.rhai", "step(\"move\", #{ retries: 3, backoff: \"1ms\", on_failure: \"fail\" }, || { test_effect(\"move\"); fail(\"lost the answer\") })\n");
    let out = env.run(&["run", &rb]);
    out.expect_code(1);
    assert_eq!(counter.count("move"), 1, "not repeated");
    let run = out.stdout.trim();
    assert_eq!(
        normalize(&out.stderr, run),
        format!("run RUN: {rb}\n  → move\n  ✗ move: failed after 1 attempt(s): lost the answer (at {rb}:1:93); it may have changed things (its attempt had started, and nothing can tell whether it took effect): check by hand before running it again\n\
run RUN failed: {rb}:1:1: step \"move\" failed after 1 attempt: lost the answer (at {rb}:1:93); it may have changed things (its attempt had started, and nothing can tell whether it took effect): check by hand before running it again\n  its journal is kept: `lifeboat log RUN`; after fixing the cause, `lifeboat resume RUN`\n")
    );
}

#[test]
fn a_step_past_its_timeout_fails_and_retries() {
    let env = Env::new();
    let rb = env.runbook("timeout.rhai", "step(\"spin\", #{ timeout: \"100ms\", retries: 1, backoff: \"1ms\" }, || { let x = 0; loop { x += 1; } })\n");
    let out = env.run(&["run", &rb]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("  ↻ spin: attempt 1 failed: timed out after 100ms; retrying in 1ms\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("step \"spin\" failed after 2 attempts: timed out after 100ms"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_failed_run_resumes_at_the_failed_step() {
    let env = Env::new();
    let src =
        "step(\"one\", || 1);\nstep(\"two\", || fail(\"disk full\"));\nstep(\"three\", || 3)\n";
    let rb = env.runbook("fail.rhai", src);
    let out = env.run(&["run", &rb]);
    out.expect_code(1);
    let run = out.stdout.trim().to_string();
    assert_eq!(env.status(&run)["state"]["step"], "1");
    // The cause is fixed (here: the runbook, which is allowed as it still agrees).
    let fixed = env.runbook("fixed.rhai", &src.replace("fail(\"disk full\")", "2"));
    let out = env.run(&["resume", &run, "--runbook", &fixed]);
    out.expect_code(0);
    assert_eq!(out.stdout, "3\n");
    let steps = &env.status(&run)["steps"];
    assert_eq!(steps[0]["attempts"], 1);
    assert_eq!(steps[1]["attempts"], 2);
}

#[test]
fn try_catch_sees_the_same_failure_on_replay() {
    let env = Env::new();
    let rb = env.runbook(
        "catch.rhai",
        "let r = \"\";\ntry { step(\"bad\", || fail(\"nope\")); } catch (e) { r = `caught: ${e}`; }\napprove(\"go\");\nr\n",
    );
    let out = env.run(&["run", &rb, "--no-wait"]);
    out.expect_code(3);
    let run = out.stdout.trim().to_string();
    env.run(&["approve", &run, "go"]).expect_code(0);
    let out = env.run(&["resume", &run]);
    out.expect_code(0);
    assert_eq!(
        out.stdout.trim(),
        format!("\"caught: step \\\"bad\\\" failed after 1 attempt: nope (at {rb}:2:22)\"")
    );
}

#[test]
fn parallel_branches_are_durable_steps_each() {
    let counter = Counter::start();
    let env = Env::new().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook(
        "par.rhai",
        r#"let ips = [];
for i in 0..40 { ips.push(`10.0.0.${i}`); }
let moved = parallel(ips, #{ limit: 8 }, |ip| {
    step(`move ${ip}`, #{ idempotent: true }, || { test_effect(ip); ip })
});
approve("done");
moved.len()
"#,
    );
    let out = env.run(&["run", &rb, "--no-wait"]);
    out.expect_code(3);
    let run = out.stdout.trim().to_string();
    assert_eq!(counter.counts().len(), 40);
    env.run(&["approve", &run, "done"]).expect_code(0);
    let out = env.run(&["resume", &run]);
    out.expect_code(0);
    assert_eq!(out.stdout, "40\n");
    assert!(
        out.stderr
            .contains("↺ 40 finished steps answered from the journal"),
        "{}",
        out.stderr
    );
    assert!(
        counter.counts().values().all(|&n| n == 1),
        "replay ran no body again"
    );
    let steps = env.status(&run)["steps"].as_array().unwrap().clone();
    assert!(
        steps.iter().any(|s| s["key"] == "0.39.0"),
        "branch positions are stable"
    );
}

#[test]
fn export_and_import_move_a_run_between_stores() {
    let env = Env::new();
    let rb = env.runbook(
        "e.rhai",
        "step(\"a\", || 1);\napprove(\"go\");\nstep(\"b\", || 2)\n",
    );
    let run = env
        .run(&["run", &rb, "--no-wait"])
        .stdout
        .trim()
        .to_string();
    let file = env.dir.path().join("run.json");
    env.run(&["export", &run, "--out", file.to_str().unwrap()])
        .expect_code(0);

    let other = Env::new();
    let out = other.run(&["import", file.to_str().unwrap()]);
    out.expect_code(0);
    assert!(
        out.stdout.starts_with(&format!("imported run {run} (")),
        "{}",
        out.stdout
    );
    other.run(&["approve", &run, "go"]).expect_code(0);
    let out = other.run(&["resume", &run]);
    out.expect_code(0);
    assert_eq!(out.stdout, "2\n");
    let again = other.run(&["import", file.to_str().unwrap()]);
    again.expect_code(2);
    assert_eq!(
        again.stderr,
        format!("error: run {run} already exists in this store\n")
    );
}

#[test]
fn status_and_log_show_steps_attempts_and_timings() {
    let env = Env::new();
    let rb = env.runbook("s.rhai", "runbook(#{ name: \"demo\", rto: \"1h\" });\nstep(\"a\", || 1);\nlog(\"hello\");\nstep(\"b\", || #{ x: 2 })\n");
    let out = env.run(&["run", &rb]);
    out.expect_code(0);
    let run = out.stdout.lines().next().unwrap().to_string();
    let status = env.run(&["status", &run]);
    let text = normalize(&status.stdout, &run);
    let text = regex::Regex::new(r"\b\d+ms\b")
        .unwrap()
        .replace_all(&text, "Nms");
    assert_eq!(
        text,
        format!("run:       RUN\nrunbook:   demo ({rb})\nstate:     succeeded\nstarted:   TIME\nduration:  Nms\nrto:       1h 00m\n\nPOS  STEP  STATE      ATTEMPTS  DURATION\n0    a     succeeded  1         Nms\n2    b     succeeded  1         Nms\n")
    );
    let log = normalize(&env.run(&["log", &run]).stdout, &run);
    let pid = regex::Regex::new(r"pid \d+").unwrap();
    assert_eq!(
        pid.replace_all(&log, "pid N"),
        "TIME  run started (pid N)\nTIME  step 0 \"a\" started, attempt 1\nTIME  step 0 \"a\" succeeded: 1\nTIME  log: hello\nTIME  step 2 \"b\" started, attempt 1\nTIME  step 2 \"b\" succeeded: {\"x\":2}\nTIME  run succeeded\n"
    );
}

/// A journal recorded from a real run killed with SIGKILL while a step was in flight (schema
/// version 1; see tests/fixtures/journals/). A change to the event encoding that breaks resuming
/// runs already on disk fails here.
#[test]
fn a_journal_recorded_from_a_real_crash_still_resumes() {
    let fixture = format!(
        "{}/tests/fixtures/journals/killed-in-flight.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    let run = recorded["run"]["id"].as_str().unwrap().to_string();
    let now_recorded = recorded["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "value_recorded")
        .unwrap()["value"]
        .clone();

    let env = Env::new().var("LIFEBOAT_CLOCK", "1000");
    env.run(&["import", &fixture]).expect_code(0);
    let status = env.status(&run);
    assert_eq!(status["steps"][1]["name"], "copy");
    assert_eq!(status["steps"][1]["state"], "running");

    let out = env.run(&["resume", &run, "--no-wait"]);
    out.expect_code(3);
    assert!(
        out.stderr
            .contains("  ↺ 1 finished step answered from the journal\n  → copy (attempt 2)\n"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("listing done"),
        "the log line is not repeated: {}",
        out.stderr
    );
    env.run(&["approve", &run, "finish"]).expect_code(0);
    let out = env.run(&["resume", &run]);
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        "{\"copied\":\"copied 2 to rbx\",\"listed\":[\"a\",\"b\"],\"started_is_number\":true}\n"
    );
    let events = env.run(&["log", &run, "--json"]).stdout;
    let nows: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == "value_recorded")
        .map(|e| e["value"].clone())
        .collect();
    assert_eq!(
        nows,
        vec![now_recorded],
        "now() answered from the journal, not recorded again"
    );
}

/// Parallel waits overlap: the report's waiting and working times are wall-clock time, so
/// together they never exceed the run's duration.
#[test]
fn waiting_and_working_never_add_up_to_more_than_the_run() {
    let env = Env::new();
    let rb = env.runbook(
        "parallel-waits.rhai",
        "parallel([1, 2, 3, 4], #{ limit: 4 }, |i| { sleep(\"300ms\"); step(`s${i}`, || i) })\n",
    );
    let out = env.run(&["run", &rb]);
    out.expect_code(0);
    let run = out.stdout.lines().next().unwrap();
    let report = env.run(&["report", run, "--format", "json"]);
    report.expect_code(0);
    let r: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let (waiting, working, duration) = (
        r["waiting_ms"].as_u64().unwrap(),
        r["working_ms"].as_u64().unwrap(),
        r["duration_ms"].as_u64().unwrap(),
    );
    assert!(waiting >= 250, "{r}");
    assert!(
        waiting < 4 * 250,
        "four parallel sleeps are not summed: {r}"
    );
    assert!(waiting + working <= duration, "{r}");
}

/// `approvers: 2`: two different people, each journaled with why; one person twice counts
/// once. A live run goes on at the second approval; a paused one once resumed.
#[test]
fn a_two_person_gate_opens_only_for_two_different_people() {
    let env = Env::new();
    let rb = env.runbook(
        "two.rhai",
        "step(\"relink\", || 1);\napprove(\"move-ips\", \"check the relink\", #{ approvers: 2 });\nstep(\"move\", || 2)\n",
    );
    let paused = env.run(&["run", &rb, "--no-wait"]);
    paused.expect_code(3);
    let run = paused.stdout.lines().next().unwrap().to_string();
    let as_user = |user: &str, args: &[&str]| {
        let mut cmd = env.command(args);
        cmd.env("USER", user);
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let host = hostname();
    assert_eq!(
        env.status(&run)["steps"][1]["state"],
        "waiting: 2 different people must approve"
    );
    let first = as_user(
        "ann",
        &["approve", &run, "move-ips", "--reason", "relink verified"],
    );
    assert_eq!(
        first,
        (
            0,
            format!("approved gate \"move-ips\" of run {run}: 1 of 2 approvals (ann@{host}); it waits for 1 more from someone else\n"),
            String::new()
        )
    );
    let again = as_user("ann", &["approve", &run, "move-ips"]);
    assert_eq!(
        again,
        (
            2,
            String::new(),
            format!("error: ann@{host} has already approved gate \"move-ips\" of run {run}; it needs 2 approvals from different people (1 so far: ann@{host}): someone else must approve\n")
        )
    );
    // Still waiting: resume pauses at the same gate.
    env.run(&["resume", &run, "--no-wait"]).expect_code(3);
    let status = env.status(&run);
    assert_eq!(
        status["steps"][1]["state"],
        format!("waiting: 1 of 2 approvals (ann@{host})")
    );
    let second = as_user("ben", &["approve", &run, "move-ips"]);
    assert_eq!(second.0, 0, "{second:?}");
    assert_eq!(
        second.1,
        format!(
            "approved gate \"move-ips\" of run {run}; continue it with `lifeboat resume {run}`\n"
        )
    );
    env.run(&["resume", &run]).expect_code(0);
    let log = env.run(&["log", &run]);
    let lines: Vec<&str> = log
        .stdout
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .filter(|l| l.starts_with("gate"))
        .collect();
    assert_eq!(
        lines,
        [
            "gate \"move-ips\" opened (2 different people must approve): check the relink",
            &format!("gate \"move-ips\" approved by ann@{host}: relink verified"),
            &format!("gate \"move-ips\" approved by ben@{host}"),
        ]
    );

    // A number of people that makes no sense is refused where it is written.
    let bad = env.runbook("bad.rhai", "approve(\"go\", \"?\", #{ approvers: 0 });\n");
    let out = env.run(&["run", &bad]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "{bad}:1:1: approve option approvers: expected a whole number of people from 1 to 20, got 0"
        )),
        "{}",
        out.stderr
    );
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}
