//! The way back: `lifeboat undo` runs the compensations of a run's finished steps, newest
//! first, as a run of its own linked to the original; `--plan` sends nothing; irreversible
//! steps are listed with their reason before anything runs.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;

use crate::support::recovery::{fifty_ips, mapping, repo, Recovery, GRA, RBX};
use crate::support::{normalize, Env, Rng};

/// Every IP's route, from the simulator's state.
fn routes(r: &Recovery) -> Vec<(String, Value)> {
    r.t.sim.state()["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| {
            (
                ip["block"].as_str().unwrap().to_string(),
                ip["routed_to"].clone(),
            )
        })
        .collect()
}

/// How many times each IP move reached the simulator, by path and body.
fn moves_sent(r: &Recovery) -> HashMap<String, usize> {
    let mut sent: HashMap<String, usize> = HashMap::new();
    for p in r.posts() {
        let path = p["path"].as_str().unwrap();
        if path.ends_with("/move") {
            *sent.entry(format!("{path} {}", p["body"])).or_default() += 1;
        }
    }
    sent
}

#[test]
fn undo_of_fifty_moves_puts_every_ip_back_once_across_random_kills() {
    for seed in [3u64, 11] {
        // Each move (there and back) lasts 0.5 s of real time.
        let r = Recovery::start(Some(fifty_ips("500s")), 1000.0);
        let before = routes(&r);
        let ips: Vec<String> = (0..50).map(|i| format!("10.9.0.{i}/32")).collect();
        let rb = repo("runbooks/failover-ip-move.rhai");
        let started = Instant::now();
        let out = r.env.run(&[
            "run",
            &rb,
            "-p",
            &format!("ips={}", ips.join(",")),
            "-p",
            &format!("destination={RBX}"),
            "-p",
            "concurrency=25",
            "-p",
            "poll=20ms",
        ]);
        out.expect_code(0);
        let window = started.elapsed().as_millis() as u64;
        let original = out.stdout.lines().next().unwrap().to_string();
        assert!(routes(&r).iter().all(|(_, to)| to == RBX));

        let (result, landed) =
            r.run_with_kills(&["undo", &original], &mut Rng::new(seed), 4, window / 2);
        assert_eq!(result["undone"], 50, "seed {seed}: {result}");
        assert_eq!(result["left"], 0);
        assert_eq!(
            routes(&r),
            before,
            "seed {seed}: every IP is routed where it was before the recovery"
        );
        let sent = moves_sent(&r);
        for (change, n) in &sent {
            assert_eq!(*n, 1, "seed {seed}: {change} was sent {n} times");
        }
        let back = sent
            .keys()
            .filter(|k| k.contains("\"to\":\"ns-src\""))
            .count();
        assert_eq!(back, 50, "seed {seed}: 50 moves back: {sent:?}");
        assert_eq!(sent.len(), 100, "seed {seed}: 50 moves there, 50 back");
        assert!(landed >= 1, "seed {seed}: no kill landed");
    }
}

#[test]
fn undo_plan_lists_the_way_back_and_sends_nothing_then_undo_moves_the_ips_home() {
    let r = Recovery::start(None, 72_000.0);
    let before = routes(&r);
    let rb = repo("runbooks/failover-ip-move.rhai");
    let m = mapping(&[("178.32.10.1/32", RBX), ("178.32.10.2/32", GRA)]);
    let out = r.env.run(&["run", &rb, "-p", &m, "-p", "poll=20ms"]);
    out.expect_code(0);
    let original = out.stdout.lines().next().unwrap().to_string();
    let posts = r.posts().len();

    let out = r.env.run(&["undo", &original, "--plan"]);
    out.expect_code(0);
    let undo = out.stdout.lines().next().unwrap().to_string();
    assert_eq!(
        r.posts().len(),
        posts,
        "a plan of the way back sends nothing"
    );
    let text = normalize(&out.stderr, &undo).replace(&original, "ORIGINAL");
    let listing = "way back of run ORIGINAL (failover-ip-move): 2 steps to undo, newest first:
   1. move 178.32.10.2/32 -> ns5007002.ip-137-74-2.eu
   2. move 178.32.10.1/32 -> ns5007001.ip-137-74-1.eu
";
    assert!(text.starts_with(listing), "{text}");
    // The two moves back are planned in parallel: in either order.
    let plan = text.split("plan: ").nth(1).expect(&text);
    let mut planned: Vec<&str> = plan.lines().skip(1).take(2).map(|l| &l[6..]).collect();
    planned.sort();
    assert!(
        plan.starts_with("2 changes this undo would make (none was sent):\n"),
        "{text}"
    );
    assert_eq!(
        planned,
        [
            "[move 178.32.10.1/32 -> ns3001234.ip-51-91-1.eu] POST /ip/178.32.10.1%2F32/move {\"to\":\"ns3001234.ip-51-91-1.eu\"}",
            "[move 178.32.10.2/32 -> ns3001234.ip-51-91-1.eu] POST /ip/178.32.10.2%2F32/move {\"to\":\"ns3001234.ip-51-91-1.eu\"}",
        ]
    );
    assert!(
        text.ends_with("run RUN succeeded (way back: 2 of 2 recovered)\n"),
        "{text}"
    );

    // The plan does not count as an undo: the real one runs, and puts both IPs back.
    let out = r.env.run(&["undo", &original]);
    out.expect_code(0);
    let undo = out.stdout.lines().next().unwrap().to_string();
    assert_eq!(routes(&r), before);
    let result: Value = serde_json::from_str(out.stdout.lines().nth(1).unwrap()).unwrap();
    assert_eq!(result["undone"], 2);

    // Linked both ways: status (text and JSON) and reports.
    let status = r.env.run(&["status", &undo]);
    assert!(
        status
            .stdout
            .contains(&format!("undo of:   run {original}\n")),
        "{}",
        status.stdout
    );
    let status = r.env.run(&["status", &original]);
    assert!(
        status.stdout.contains(&format!("undone by: run {undo}\n")),
        "{}",
        status.stdout
    );
    assert_eq!(r.env.status(&original)["undone_by"][0], undo.as_str());
    assert_eq!(r.env.status(&undo)["undo_of"], original.as_str());
    let report = r.env.run(&["report", &original]);
    assert!(report
        .stdout
        .contains(&format!("| undone by | run {undo} |\n")));
    let report = r.env.run(&["report", &undo, "--format", "json"]);
    let report: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(report["undo_of"], original.as_str());
    assert_eq!(
        report["rto"],
        Value::Null,
        "the RTO is the recovery's, not its way back's"
    );

    // Once undone, not again; and an undo is not undone.
    let again = r.env.run(&["undo", &original]);
    again.expect_code(2);
    assert_eq!(
        again.stderr,
        format!("error: run {original} cannot be undone: it was undone already by run {undo}\n")
    );
    let of_undo = r.env.run(&["undo", &undo]);
    of_undo.expect_code(2);
    assert_eq!(
        of_undo.stderr,
        format!("error: run {undo} cannot be undone: it is itself the undo of run {original}: to go forward again, start a new run of its runbook\n")
    );
}

/// A run that failed half-way: what it finished is undone, newest first; what it never did is
/// not; an irreversible step is listed with its reason and makes the way back partial.
#[test]
fn undo_of_a_run_that_failed_half_way_undoes_what_was_done() {
    let env = Env::new();
    let rb = env.runbook(
        "half.rhai",
        r#"runbook(#{ name: "half" });
let a = step("create a", #{ undo: |r| step(`delete ${r}`, || log(`deleted ${r}`)) }, || "a");
step("read b", || 1);
let made = parallel(["x", "y"], #{ limit: 2 }, |n| {
    step(`create ${n}`, #{ undo: |r| step(`delete ${r}`, || r) }, || n)
});
step("relink", #{ irreversible: "the source is gone" }, || 2);
step("create c", #{ undo: |r| step("delete c", || r) }, || fail("OVH said no"));
step("never", #{ undo: |r| step("undo never", || r) }, || 3);
"#,
    );
    let out = env.run(&["run", &rb]);
    out.expect_code(1);
    let original = out.stdout.lines().next().unwrap().to_string();

    let out = env.run(&["undo", &original]);
    out.expect_code(4);
    let undo = out.stdout.lines().next().unwrap().to_string();
    let text = normalize(&out.stderr, &undo).replace(&original, "ORIGINAL");
    assert!(
        text.starts_with(
            "way back of run ORIGINAL (half): 3 steps to undo, newest first:
   1. create y
   2. create x
   3. create a
not undone (1):
  irreversible  relink: the source is gone
"
        ),
        "{text}"
    );
    // The undo of "create a" ran last: after both branches.
    let a = text.find("  → delete a").expect(&text);
    assert!(text.find("  ✓ delete x").unwrap() < a && text.find("  ✓ delete y").unwrap() < a);
    assert!(text.contains("  · deleted a\n"), "{text}");
    assert!(
        !text.contains("delete c") && !text.contains("undo never"),
        "{text}"
    );
    assert!(
        text.contains("    way back: relink · irreversible: the source is gone\n"),
        "{text}"
    );
    let status = env.status(&undo);
    assert_eq!(status["status"], "succeeded, partial");
    let items = &status["outcome_items"][0]["items"];
    let rows: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {} {}",
                i["step"].as_str().unwrap(),
                i["undo"].as_str().unwrap(),
                i["recovered"]
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "relink irreversible: the source is gone false",
            "create y undone true",
            "create x undone true",
            "create a undone true",
        ]
    );
}

/// A compensation that fails stops the rest of its lane, not its siblings in a parallel; the
/// undo run fails (exit 1) naming it, and a resume tries it again.
#[test]
fn a_failed_undo_stops_its_lane_and_the_undo_run_fails_naming_it() {
    let env = Env::new();
    let rb = env.runbook(
        "fails.rhai",
        r#"runbook(#{ name: "fails" });
step("first", #{ undo: |r| step("undo first", || r) }, || 1);
parallel([1, 2, 3], #{ limit: 3 }, |i| {
    step(`make ${i}`, #{ undo: |r| step(`unmake ${i}`, || if i == 2 { fail("OVH refused") } else { i }) }, || i)
});
"#,
    );
    let out = env.run(&["run", &rb]);
    out.expect_code(0);
    let original = out.stdout.lines().next().unwrap().to_string();
    let out = env.run(&["undo", &original]);
    out.expect_code(1);
    let undo = out.stdout.lines().next().unwrap().to_string();
    assert!(out.stderr.contains("  ✓ unmake 1 ("), "{}", out.stderr);
    assert!(out.stderr.contains("  ✓ unmake 3 ("), "{}", out.stderr);
    assert!(!out.stderr.contains("undo first"), "{}", out.stderr);
    assert!(
        out.stderr.contains("1 of 4 undos failed: make 2: "),
        "{}",
        out.stderr
    );
    let status = env.status(&undo);
    assert_eq!(status["status"], "failed");
    let steps: Vec<String> = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["name"].as_str().unwrap(),
                s["state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(steps.contains(&"unmake 2 failed".to_string()), "{steps:?}");
}

#[test]
fn full_recovery_undo_lists_the_relinks_as_irreversible_and_moves_the_ips_back() {
    let r = Recovery::start(None, 72_000.0);
    let before = routes(&r);
    let rb = repo("runbooks/sbg-full-recovery.rhai");
    let m = mapping(&[("178.32.10.1/32", RBX), ("178.32.10.8/30", GRA)]);
    let out = r.env.run(&[
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
    ]);
    out.expect_code(0);
    let original = out.stdout.lines().next().unwrap().to_string();
    let out = r.env.run(&["undo", &original]);
    // The datastores stay where the relink put them: the way back is partial, and says why.
    out.expect_code(4);
    assert_eq!(routes(&r), before);
    let irreversible = "the restored datastores are read-only copies (restore-NNNNNN) and the source in sbg1a is gone: there is nothing to link back to. By hand, once the VMs run from writable datastores: remove the restore copies with the usual datastore-removal procedure";
    let listed: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("  irreversible  relink filer "))
        .collect();
    assert_eq!(listed.len(), 3, "{}", out.stderr);
    for line in listed {
        assert!(line.ends_with(&format!("): {irreversible}")), "{line}");
    }
    assert!(
        out.stderr.contains("way back: 2 of 5 recovered"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_rehearsal_there_and_back_reports_both_durations_and_the_twin_as_it_started() {
    let r = Recovery::start(None, 1.0);
    let twin = r.env.dir.path().join("twin.json");
    r.env
        .run(&["twin", "snapshot", "--out", twin.to_str().unwrap()])
        .expect_code(0);
    let rb = repo("runbooks/sbg-full-recovery.rhai");
    let m = mapping(&[
        ("178.32.10.1/32", RBX),
        ("178.32.10.2/32", GRA),
        ("178.32.10.30/32", crate::support::recovery::BHS),
    ]);
    let out = r.env.run(&[
        "rehearse",
        &rb,
        "--twin",
        twin.to_str().unwrap(),
        "--speed",
        "36000",
        "--then-undo",
        "-p",
        &m,
        "-p",
        "source_pcc=pcc-51-91-100-1",
        "-p",
        "source_dc=1001",
        "-p",
        "dest_pcc=pcc-137-74-200-1",
        "-p",
        "dest_dc=2001",
        "-p",
        "poll=50ms",
    ]);
    // The recovery is partial (178.32.10.30/32 cannot leave its zone): its code is the
    // rehearsal's.
    out.expect_code(4);
    assert!(
        r.posts().is_empty(),
        "the rehearsal touched the twin, not the account"
    );
    let mut ids = out
        .stdout
        .lines()
        .filter(|l| l.len() == 20 && l.starts_with("20"));
    let (run, undo) = (ids.next().unwrap(), ids.next().unwrap());
    let section = out
        .stdout
        .split("# There and back: sbg-full-recovery on the twin\n\n")
        .nth(1)
        .expect(&out.stdout);
    let lines: Vec<&str> = section.lines().collect();
    assert_eq!(lines[0], "| | run | state | duration | RTO |");
    assert!(
        lines[2].starts_with(&format!("| recovery | `{run}` | succeeded, partial | "))
            && lines[2].ends_with(" | 12h 00m (met) |"),
        "{section}"
    );
    assert!(
        lines[3].starts_with(&format!("| way back | `{undo}` | succeeded, partial | ")),
        "{section}"
    );
    assert_eq!(
        lines[5],
        "Failover IPs after the way back: 5 of 5 routed as before the recovery."
    );
    let irreversible: Vec<&&str> = lines
        .iter()
        .filter(|l| {
            l.starts_with("- relink filer ")
                && l.contains(" · irreversible: the restored datastores are read-only copies")
        })
        .collect();
    assert_eq!(irreversible.len(), 3, "{section}");
    assert_eq!(
        *lines.last().unwrap(),
        "Other parts of the twin that differ from the start (left by what was not undone): pccs."
    );
    // The recovery's report links to its way back, which has no RTO of its own.
    assert!(out
        .stdout
        .contains(&format!("# Run {undo}: sbg-full-recovery\n")));
    assert!(out.stdout.contains(&format!("| undo of | run {run} |\n")));
}

/// A step in flight when the original died may have acted: the way back lists it for a person
/// and undoes what was finished before it.
#[test]
fn a_step_in_flight_when_the_original_died_is_listed_not_undone() {
    let counter = crate::support::Counter::start();
    let env = Env::new().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let rb = env.runbook(
        "inflight.rhai",
        r#"runbook(#{ name: "inflight" });
step("s0", #{ undo: |r| step("undo s0", || test_effect("undo-s0")) }, || test_effect("s0"));
step("s1", #{ undo: |r| step("undo s1", || test_effect("undo-s1")) }, || test_effect("s1"));
"#,
    );
    counter.hold("s1");
    let mut child = env.spawn(&["run", &rb]);
    let original = crate::support::read_run_id(&mut child);
    env.wait_for("s1 to act", || counter.count("s1") > 0);
    child.kill().unwrap();
    crate::support::finish(child);
    counter.release("s1");

    let out = env.run(&["undo", &original]);
    out.expect_code(4);
    let undo = out.stdout.lines().next().unwrap().to_string();
    let text = normalize(&out.stderr, &undo).replace(&original, "ORIGINAL");
    assert!(
        text.starts_with(
            "way back of run ORIGINAL (inflight): 1 step to undo, newest first:
   1. s0
not undone (1):
  unfinished    s1: it was in flight when the original stopped and may have changed things: find out, and undo it by hand
"
        ),
        "{text}"
    );
    assert_eq!(counter.count("undo-s0"), 1);
    assert_eq!(counter.count("undo-s1"), 0);
    // `log` shows the link both ways above the events.
    let log = env.run(&["log", &undo]);
    assert!(
        log.stdout.starts_with(&format!("undo of run {original}\n")),
        "{}",
        log.stdout
    );
    let log = env.run(&["log", &original]);
    assert!(
        log.stdout.starts_with(&format!("undone by run {undo}\n")),
        "{}",
        log.stdout
    );
}
