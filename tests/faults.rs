//! Truth under faults: lost answers reconciled at once, an overloaded API pushed through
//! patiently, a person deciding what the engine cannot, gates that time out, and stores that
//! lost data refused rather than shown empty.

use std::collections::HashMap;
use std::time::Duration;

use lifeboat::sim::faults::{Fault, FaultKind};
use serde_json::Value;

use crate::support::recovery::{fifty_ips, mapping, repo, Recovery, GRA, RBX};
use crate::support::{finish, normalize, read_run_id, Counter, Env, Rng};

/// The full recovery of three IPs that all move and the three SBG filers, every gate
/// approved: the command line.
fn full_recovery() -> Vec<String> {
    let rb = repo("runbooks/sbg-full-recovery.rhai");
    let m = three_moves();
    [
        "run",
        &rb,
        "--approve",
        "all",
        "-p",
        "source_pcc=pcc-51-91-100-1",
        "-p",
        "source_dc=1001",
        "-p",
        "dest_pcc=pcc-137-74-200-1",
        "-p",
        "dest_dc=2001",
        "-p",
        "poll=20ms",
        "-p",
        &m,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn three_moves() -> String {
    mapping(&[
        ("178.32.10.1/32", RBX),
        ("178.32.10.2/32", GRA),
        ("178.32.10.8/30", RBX),
    ])
}

/// How many times each change reached the simulator (answered or not), by path and body.
fn changes_sent(r: &Recovery) -> HashMap<String, usize> {
    let mut changes: HashMap<String, usize> = HashMap::new();
    for p in r.posts() {
        *changes
            .entry(format!("{} {}", p["path"].as_str().unwrap(), p["body"]))
            .or_default() += 1;
    }
    changes
}

/// How many times each change was accepted (answered 200) by the simulator.
fn changes_accepted(r: &Recovery) -> HashMap<String, usize> {
    let mut changes: HashMap<String, usize> = HashMap::new();
    for p in r.posts().iter().filter(|p| p["status"] == 200) {
        *changes
            .entry(format!("{} {}", p["path"].as_str().unwrap(), p["body"]))
            .or_default() += 1;
    }
    changes
}

fn fault(method: &str, path: &str, kind: FaultKind, times: Option<u32>) -> Fault {
    Fault {
        method: Some(method.to_string()),
        path: path.to_string(),
        kind,
        times,
    }
}

fn every_ip_moved(result: &Value) {
    let ips = result["ips"]["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 3, "{result}");
    for ip in ips {
        assert_eq!(ip["outcome"], "moved", "{result}");
    }
    assert_eq!(result["ips"]["failed"], 0);
    assert_eq!(
        result["datastores"].as_array().unwrap().len(),
        3,
        "{result}"
    );
}

#[test]
fn lost_answers_on_every_change_are_reconciled_and_the_recovery_succeeds() {
    let r = Recovery::start(None, 72_000.0);
    // OVH applies every change, and the answer never arrives.
    r.t.sim.add_fault(fault("POST", "/", FaultKind::Drop, None));
    let args = full_recovery();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = r.env.run(&args);
    out.expect_code(0);
    let result: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    every_ip_moved(&result);
    // Each change reached OVH once; its check found it done, nothing was sent again.
    let changes = changes_sent(&r);
    assert_eq!(changes.len(), 6, "3 relinks and 3 moves: {changes:?}");
    for (change, n) in &changes {
        assert_eq!(*n, 1, "{change} was sent {n} times\n{}", out.stderr);
    }
    assert!(
        r.posts().iter().all(|p| p["dropped"] == true),
        "every answer was lost"
    );
    assert!(
        out.stderr.contains(&format!(
            "  ✓ move 178.32.10.1/32 -> {RBX} (reconciled: already done, says its check)\n"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("  ✓ relink filer 42 (ssd-042) (reconciled: already done, says its check)\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn lost_answers_and_random_kills_still_send_each_change_once() {
    let args = full_recovery();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut kills = 0;
    for seed in 1..=5u64 {
        let r = Recovery::start(None, 72_000.0);
        r.t.sim.add_fault(fault("POST", "/", FaultKind::Drop, None));
        // The whole recovery takes about 300 ms here: kill within it, six times.
        let (result, landed) = r.run_with_kills(&args, &mut Rng::new(seed), 6, 150);
        kills += landed;
        every_ip_moved(&result);
        for (change, n) in &changes_sent(&r) {
            assert_eq!(*n, 1, "seed {seed}: {change} was sent {n} times");
        }
    }
    assert!(kills >= 12, "only {kills} kills landed");
}

#[test]
fn bursts_of_503_on_changes_are_retried_after_the_check_and_everything_is_recovered() {
    let r = Recovery::start(None, 72_000.0);
    let busy = || FaultKind::Status {
        status: 503,
        message: Some("The API is overloaded".into()),
    };
    r.t.sim
        .add_fault(fault("POST", "/ip/*/move", busy(), Some(5)));
    r.t.sim.add_fault(fault(
        "POST",
        "/dedicatedCloud/*/datacenter/*/linkFilerFromSbg",
        busy(),
        Some(3),
    ));
    let args = full_recovery();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = r.env.run(&args);
    out.expect_code(0);
    let result: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    every_ip_moved(&result);
    let refused = r.posts().iter().filter(|p| p["status"] == 503).count();
    assert_eq!(refused, 8, "every injected 503 was met");
    let accepted = changes_accepted(&r);
    assert_eq!(accepted.len(), 6, "{accepted:?}");
    for (change, n) in &accepted {
        assert_eq!(*n, 1, "{change} was accepted {n} times");
    }
    // The terminal says which attempt failed, how OVH answered (with its query id), and when
    // the next try is.
    let retry = out
        .stderr
        .lines()
        .find(|l| {
            l.starts_with("  ↻ relink filer 42 (ssd-042): attempt 1 failed: POST /dedicatedCloud/")
        })
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(
        retry.contains(": 503: The API is overloaded (OVH query id ")
            && retry.contains("; retrying in "),
        "{retry}"
    );
    // `status` and the reports list each failed attempt the same way, with the next try.
    let run = out.stdout.lines().next().unwrap();
    let status = r.env.run(&["status", run]);
    let listed = status
        .stdout
        .lines()
        .filter(|l| {
            l.contains(" attempt ") && l.contains(": 503: The API is overloaded (OVH query id ")
        })
        .collect::<Vec<_>>();
    assert_eq!(listed.len(), 8, "{}", status.stdout);
    assert!(
        status.stdout.contains("\nfailed attempts:\n"),
        "{}",
        status.stdout
    );
    assert!(
        listed.iter().all(|l| l.contains("; next try ")),
        "{listed:?}"
    );
    let json = r.env.status(run);
    assert_eq!(json["failed_attempts"].as_array().unwrap().len(), 8);
    assert!(json["failed_attempts"][0]["retry_at"].is_u64());
    let md = r.env.run(&["report", run, "--format", "md"]);
    md.expect_code(0);
    assert!(
        md.stdout.contains("\n## Failed attempts\n"),
        "{}",
        md.stdout
    );
    assert_eq!(
        md.stdout
            .lines()
            .filter(
                |l| l.starts_with("| ") && l.contains("503: The API is overloaded (OVH query id ")
            )
            .count(),
        8,
        "{}",
        md.stdout
    );
}

#[test]
fn a_refusal_is_final_and_not_retried() {
    let r = Recovery::start(None, 1000.0);
    r.t.sim.add_fault(fault(
        "POST",
        "/ip/178.32.10.2%2F32/move",
        FaultKind::Status {
            status: 400,
            message: Some("This IP is locked".into()),
        },
        None,
    ));
    let rb = repo("runbooks/failover-ip-move.rhai");
    let m = mapping(&[("178.32.10.1/32", RBX), ("178.32.10.2/32", GRA)]);
    let out = r.env.run(&["run", &rb, "-p", &m, "-p", "poll=20ms"]);
    out.expect_code(4);
    let result: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["moved"], 1, "{result}");
    assert_eq!(result["failed"], 1, "{result}");
    let failed = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["outcome"] == "failed")
        .unwrap();
    let why = failed["why"].as_str().unwrap();
    assert!(
        why.contains("400: This IP is locked (OVH query id "),
        "the refusal carries OVH's message and query id: {why}"
    );
    let sent = r
        .posts()
        .iter()
        .filter(|p| {
            p["path"] == "/ip/178.32.10.2%2F32/move" || p["path"] == "/ip/178.32.10.2/32/move"
        })
        .count();
    assert_eq!(sent, 1, "a 400 is not retried");
}

#[test]
fn a_503_storm_slows_lifeboat_down_and_the_run_completes_after_it() {
    let r = Recovery::start(Some(fifty_ips("2000s")), 1000.0);
    let rb = repo("runbooks/failover-ip-move.rhai");
    let ips: Vec<String> = (0..50).map(|i| format!("10.9.0.{i}/32")).collect();
    let mut child = r.env.spawn(&[
        "run",
        &rb,
        "-p",
        &format!("ips={}", ips.join(",")),
        "-p",
        &format!("destination={RBX}"),
        "-p",
        "concurrency=25",
        "-p",
        "poll=50ms",
    ]);
    let run = read_run_id(&mut child);
    // Let the moves get going, then OVH answers 503 to everything for three seconds.
    r.env.wait_for("the first moves", || r.posts().len() >= 10);
    let storm_start = now_ms();
    r.t.sim.add_fault(Fault {
        method: None,
        path: "/".into(),
        kind: FaultKind::Status {
            status: 503,
            message: None,
        },
        times: None,
    });
    std::thread::sleep(Duration::from_secs(3));
    r.t.sim.clear_faults();
    let storm_end = now_ms();
    let out = finish(child);
    out.expect_code(0);
    let result: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["moved"], 50, "{result}");
    for (change, n) in &changes_accepted(&r) {
        assert_eq!(*n, 1, "{change} was accepted {n} times");
    }
    // The request rate during the storm's first second and during its last.
    let in_window = |from: u64, to: u64| {
        r.t.sim
            .requests()
            .iter()
            .filter(|q| {
                let at = q["at_ms"].as_u64().unwrap();
                at >= from && at < to
            })
            .count()
    };
    let first = in_window(storm_start, storm_start + 1000);
    let last = in_window(storm_end - 1000, storm_end);
    assert!(
        last * 2 <= first,
        "lifeboat did not slow down: {first} requests in the storm's first second, {last} in its last"
    );
    let log = r.env.run(&["log", &run]);
    assert!(
        log.stdout
            .contains(" (overloaded) to 3 calls within 2s: slowing down\n"),
        "{}",
        log.stdout
    );
    let status = r.env.status(&run);
    assert!(status["pace"]["why"].is_string(), "{status}");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A step with an effect and no check, whose attempt fails after acting: in doubt.
const IN_DOUBT: &str = r#"
runbook(#{ name: "doubt" });
let paid = step("pay", || { test_effect("pay"); fail("the bank did not answer") });
let n = test_effect_count("pay");
step("after", || `paid: ${paid}, effects: ${n}`)
"#;

#[test]
fn a_person_resolves_a_step_in_doubt_and_the_run_continues() {
    let counter = Counter::start();
    let env = Env::new()
        .var("LIFEBOAT_TEST_COUNTER", &counter.addr)
        .var("USER", "ana");
    let rb = env.runbook("doubt.rhai", IN_DOUBT);
    let out = env.run(&["run", &rb]);
    out.expect_code(3);
    let run = out.stdout.trim().to_string();

    // Not yet: a typo in the step's name, then the decision.
    let typo = env.run(&["resolve", &run, "pya", "--done", "--reason", "x"]);
    typo.expect_code(2);
    assert_eq!(
        normalize(&typo.stderr, &run),
        "error: run RUN has no step \"pya\" (`lifeboat status RUN` lists its steps by name and position)\n"
    );
    let out = env.run(&[
        "resolve",
        &run,
        "pay",
        "--done",
        "--result",
        "\"by hand\"",
        "--reason",
        "the bank's statement shows it",
    ]);
    out.expect_code(0);
    let host = hostname();
    assert_eq!(
        normalize(&out.stderr, &run),
        format!("step \"pay\" (position 0) of run RUN: resolved done by ana@{host}: the bank's statement shows it\nresuming run RUN: {rb}\n  ↺ 1 finished step answered from the journal\n  → after\n  ✓ after (DURATION)\nrun RUN succeeded\n")
    );
    assert_eq!(out.stdout, "\"paid: by hand, effects: 1\"\n");
    assert_eq!(
        counter.count("pay"),
        1,
        "resolving did not run the step again"
    );

    let log = env.run(&["log", &run]);
    assert!(log.stdout.contains(&format!(
        "  step 0 \"pay\" resolved done by ana@{host} (result \"by hand\"): the bank's statement shows it\n"
    )), "{}", log.stdout);
    let status = env.status(&run);
    assert_eq!(
        status["steps"][0]["state"],
        format!("resolved done by ana@{host}")
    );
    assert_eq!(
        status["decisions"][0]["reason"],
        "the bank's statement shows it"
    );
    let report = env.run(&["report", &run, "--format", "md"]);
    assert!(
        report
            .stdout
            .contains(&format!("resolved done by ana@{host}")),
        "{}",
        report.stdout
    );
}

#[test]
fn retry_and_skip_continue_a_paused_run() {
    let counter = Counter::start();
    let env = Env::new()
        .var("LIFEBOAT_TEST_COUNTER", &counter.addr)
        .var("USER", "ana");
    let rb = env.runbook("doubt.rhai", IN_DOUBT);
    let run = env.run(&["run", &rb]).stdout.trim().to_string();
    // Run it again: it acts again, fails again, and pauses again.
    let out = env.run(&["retry", &run, "pay", "--reason", "the bank was down"]);
    out.expect_code(3);
    assert_eq!(counter.count("pay"), 2);
    // Do not run it: the script goes on with the value given.
    let out = env.run(&[
        "skip",
        &run,
        "0",
        "--result",
        "\"skipped\"",
        "--reason",
        "paid by phone",
    ]);
    out.expect_code(0);
    assert_eq!(out.stdout, "\"paid: skipped, effects: 2\"\n");
    assert_eq!(counter.count("pay"), 2);
    let decisions = &env.status(&run)["decisions"];
    assert_eq!(decisions[0]["decision"], "retry");
    assert_eq!(decisions[1]["decision"], "skip");
    assert_eq!(decisions[1]["reason"], "paid by phone");
    // A finished run takes no more decisions.
    let out = env.run(&["retry", &run, "pay"]);
    out.expect_code(2);
    assert_eq!(
        normalize(&out.stderr, &run),
        "error: run RUN has already succeeded; there is nothing to decide\n"
    );
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_gate_past_its_timeout_pauses_or_aborts() {
    let env = Env::new();
    let pause = env.runbook(
        "pause.rhai",
        "approve(\"go\", \"go on?\", #{ timeout: \"300ms\", on_timeout: \"pause\" });\nstep(\"after\", || 1)\n",
    );
    let out = env.run(&["run", &pause]);
    out.expect_code(3);
    let run = out.stdout.trim().to_string();
    assert!(
        normalize(&out.stderr, &run).ends_with("run RUN paused: nobody approved gate \"go\" within 300ms\n  `lifeboat approve RUN go`, then `lifeboat resume RUN`; or `lifeboat abort RUN`\n"),
        "{}",
        out.stderr
    );
    env.run(&["approve", &run, "go"]).expect_code(0);
    env.run(&["resume", &run]).expect_code(0);

    let abort = env.runbook(
        "abort.rhai",
        "approve(\"go\", \"go on?\", #{ timeout: \"300ms\", on_timeout: \"abort\" });\nstep(\"after\", || 1)\n",
    );
    let out = env.run(&["run", &abort]);
    out.expect_code(1);
    let run = out.stdout.trim().to_string();
    assert!(
        normalize(&out.stderr, &run)
            .ends_with("run RUN aborted by the timeout of gate \"go\" (DURATION)\n"),
        "{:?}",
        normalize(&out.stderr, &run)
    );
}

#[test]
fn a_store_that_lost_synced_data_is_refused_and_verify_says_so() {
    let env = Env::embedded();
    let rb = env.runbook("two.rhai", "step(\"a\", || 1);\nstep(\"b\", || 2)\n");
    env.run(&["run", &rb]).expect_code(0);
    env.run(&["run", &rb]).expect_code(0);
    let ok = env.run(&["verify"]);
    ok.expect_code(0);
    let db = env.db();
    let db_text = db.display().to_string();
    assert!(
        ok.stdout.starts_with(&format!(
            "store {db_text}: 2 runs, 12 events, high-water mark consistent\n"
        )),
        "{}",
        ok.stdout
    );
    // A copy whose log lost its tail while sled's snapshot remains: sled itself refuses it,
    // and the message says what the store held.
    let copy = env.dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&db).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(copy.join("db"))
        .unwrap()
        .set_len(100)
        .unwrap();
    let out = std::process::Command::new(crate::support::BIN)
        .arg("--db")
        .arg(&copy)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "could not be opened: Read corrupted data at file offset None; when last synced it held 2 runs. "
        ),
        "{stderr}"
    );

    // The disk lost sled's log and its snapshot: sled would open it as a new, empty store.
    // The high-water mark says otherwise.
    std::fs::File::create(db.join("db")).unwrap();
    for entry in std::fs::read_dir(&db).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snap.")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    for args in [&["status"][..], &["verify"][..]] {
        let out = env.run(args);
        out.expect_code(2);
        assert!(
            out.stderr.starts_with(&format!(
                "error: the journal store {db_text} has lost data that was synced to disk: when last synced it held 2 runs; it now opens with 0 runs. Its files were truncated, "
            )),
            "{}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
    // A regular file given as the store.
    let file = env.dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = std::process::Command::new(crate::support::BIN)
        .arg("--db")
        .arg(&file)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: --db {}: this is a file, not a directory; the journal store is a directory (give a new or existing directory)\n", file.display())
    );
}

/// sled 0.34 picks the highest-named `snap.*` file when it opens, including a snapshot it was
/// still writing when its process was killed (`snap.N.generating`), and then refuses the store
/// as corrupt. lifeboat removes such leftovers first: a kill at the wrong moment must not cost
/// the journal.
#[test]
fn a_snapshot_left_half_written_by_a_kill_does_not_make_the_store_unreadable() {
    let env = Env::embedded();
    let rb = env.runbook("one.rhai", "step(\"a\", || 1)\n");
    let out = env.run(&["run", &rb]);
    out.expect_code(0);
    let run = out.stdout.lines().next().unwrap().to_string();
    let leftover = env.db().join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&leftover, b"half a snapshot, cut by SIGKILL").unwrap();
    let status = env.run(&["status", &run]);
    status.expect_code(0);
    assert!(
        status.stdout.contains("state:     succeeded"),
        "{}",
        status.stdout
    );
    assert!(!leftover.exists());
}
