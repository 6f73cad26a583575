//! The shipped recovery runbooks, end to end, through the real binary against the simulator;
//! the full recovery killed at random moments; and `lifeboat demo`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lifeboat::sim::Sim;
use serde_json::Value;

use crate::support::recovery::{fifty_ips, mapping, repo, Recovery, BHS, GRA, RBX};
use crate::support::{finish, read_run_id, Env, Rng};

fn relink_args<'a>(dest_pcc: &'a str, dest_dc: &'a str) -> Vec<&'a str> {
    vec![
        "-p",
        "source_pcc=pcc-51-91-100-1",
        "-p",
        "source_dc=1001",
        "-p",
        dest_pcc,
        "-p",
        dest_dc,
        "-p",
        "poll=50ms",
    ]
}

#[test]
fn datastore_relink_restores_every_filer() {
    let r = Recovery::start(None, 36_000.0);
    let rb = repo("runbooks/sbg-datastore-relink.rhai");
    let mut args = vec!["run", rb.as_str()];
    args.extend(relink_args("dest_pcc=pcc-137-74-200-1", "dest_dc=2001"));
    let out = r.env.run(&args);
    out.expect_code(0);
    assert_eq!(
        out.stdout.lines().nth(1),
        Some("[\"restore-000042\",\"restore-000043\",\"restore-000057\"]")
    );
    assert!(
        out.stderr
            .contains("read-only: register the VMs, then clone them"),
        "{}",
        out.stderr
    );
    let posts: Vec<String> = r
        .posts()
        .iter()
        .map(|p| format!("{} {}", p["path"].as_str().unwrap(), p["body"]))
        .collect();
    assert_eq!(
        posts,
        vec![
            "/dedicatedCloud/pcc-137-74-200-1/datacenter/2001/linkFilerFromSbg {\"filerId\":42}",
            "/dedicatedCloud/pcc-137-74-200-1/datacenter/2001/linkFilerFromSbg {\"filerId\":43}",
            "/dedicatedCloud/pcc-137-74-200-1/datacenter/2001/linkFilerFromSbg {\"filerId\":57}",
        ]
    );
}

#[test]
fn datastore_relink_uses_copy_filer_where_the_api_offers_only_that() {
    let mut f = Sim::demo_fixture();
    f.api.link_filer_from_sbg = false;
    let r = Recovery::start(Some(f), 36_000.0);
    let rb = repo("runbooks/sbg-datastore-relink.rhai");
    let mut args = vec!["run", rb.as_str(), "-p", "filers=43"];
    args.extend(relink_args("dest_pcc=pcc-137-74-200-1", "dest_dc=2001"));
    r.env.run(&args).expect_code(0);
    let posts = r.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0]["path"],
        "/dedicatedCloud/pcc-137-74-200-1/datacenter/2001/copyFiler"
    );
    assert_eq!(
        posts[0]["body"],
        serde_json::json!({ "filerId": 43, "accept": true })
    );
}

#[test]
fn sbg1a_and_certification_refusals_come_before_any_change() {
    let r = Recovery::start(None, 36_000.0);
    let rb = repo("runbooks/sbg-datastore-relink.rhai");
    let mut args = vec!["run", rb.as_str()];
    args.extend(relink_args("dest_pcc=pcc-51-91-100-1", "dest_dc=1001"));
    let out = r.env.run(&args);
    out.expect_code(1);
    assert!(
        out.stderr.contains(
            "pcc-51-91-100-1 is in sbg1a: the destination Private Cloud must be outside sbg1a"
        ),
        "{}",
        out.stderr
    );
    assert!(r.posts().is_empty(), "no change was sent: {:?}", r.posts());

    let mut f = Sim::demo_fixture();
    f.pccs[0].pcidss = "enabled".into();
    let r = Recovery::start(Some(f), 36_000.0);
    let mut args = vec!["run", rb.as_str()];
    args.extend(relink_args("dest_pcc=pcc-137-74-200-1", "dest_dc=2001"));
    let out = r.env.run(&args);
    out.expect_code(1);
    assert!(out.stderr.contains("pcc-51-91-100-1 has pcidss enabled and pcc-137-74-200-1 does not: the destination needs the same certification"), "{}", out.stderr);
    assert!(r.posts().is_empty());
}

#[test]
fn ip_moves_skip_refuse_and_move() {
    let r = Recovery::start(None, 1000.0);
    let rb = repo("runbooks/failover-ip-move.rhai");
    let m = mapping(&[
        ("178.32.10.1/32", RBX),
        ("178.32.10.8/30", GRA),
        ("178.32.10.20/32", RBX),
        ("178.32.10.30/32", BHS),
    ]);
    let out = r.env.run(&["run", &rb, "-p", &m, "-p", "poll=20ms"]);
    out.expect_code(4);
    let result: Value = serde_json::from_str(out.stdout.lines().nth(1).unwrap()).unwrap();
    assert_eq!(
        (
            result["moved"].as_i64(),
            result["already_there"].as_i64(),
            result["refused"].as_i64(),
            result["failed"].as_i64()
        ),
        (Some(2), Some(1), Some(1), Some(0))
    );
    let refused = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["outcome"] == "refused")
        .unwrap();
    assert!(refused["why"].as_str().unwrap().starts_with("178.32.10.30/32 cannot be moved from SBG (sbg4) to BHS (bhs6): a failover IP cannot leave its zone (OVH query id SIM."), "{refused}");
    assert!(
        out.stderr
            .contains("  · refused       178.32.10.30/32 -> ns5009001.ip-142-44-1.net: "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("  · already there 178.32.10.20/32 -> ns5007001.ip-137-74-1.eu\n"),
        "{}",
        out.stderr
    );
    let moved: Vec<String> = r
        .posts()
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect();
    let mut moved_sorted = moved.clone();
    moved_sorted.sort();
    assert_eq!(
        moved_sorted,
        vec!["/ip/178.32.10.1%2F32/move", "/ip/178.32.10.8%2F30/move"],
        "refused and already-there IPs are never sent"
    );
    let state = r.t.sim.state();
    let routed: HashMap<&str, &str> = state["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["block"].as_str().unwrap(),
                i["routed_to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(routed["178.32.10.1/32"], RBX);
    assert_eq!(routed["178.32.10.8/30"], GRA);
    assert_eq!(routed["178.32.10.30/32"], "ns3001235.ip-51-91-2.eu");
}

#[test]
fn a_task_ending_in_ovh_error_fails_that_ip_with_the_query_id() {
    let mut f = Sim::demo_fixture();
    f.ips[0].fail_move = true;
    let r = Recovery::start(Some(f), 1000.0);
    let rb = repo("runbooks/failover-ip-move.rhai");
    let m = mapping(&[("178.32.10.1/32", RBX), ("178.32.10.8/30", RBX)]);
    let out = r.env.run(&["run", &rb, "-p", &m, "-p", "poll=20ms"]);
    out.expect_code(4);
    let result: Value = serde_json::from_str(out.stdout.lines().nth(1).unwrap()).unwrap();
    let failed = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["ip"] == "178.32.10.1/32")
        .unwrap();
    assert_eq!(failed["outcome"], "failed");
    let why = failed["why"].as_str().unwrap();
    assert!(
        why.contains("ended ovhError") && why.contains("(OVH query id SIM."),
        "{why}"
    );
    assert_eq!(result["moved"], 1);
    assert!(
        out.stderr.contains(
            "  ✗ wait for 178.32.10.1/32 -> ns5007001.ip-137-74-1.eu: failed after 1 attempt(s): "
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn fifty_ips_move_concurrently() {
    let f = fifty_ips("400s"); // 0.4 s at speed 1000
    let r = Recovery::start(Some(f), 1000.0);
    let rb = repo("runbooks/failover-ip-move.rhai");
    let ips: Vec<String> = (0..50).map(|i| format!("10.9.0.{i}/32")).collect();
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
    let result: Value = serde_json::from_str(out.stdout.lines().nth(1).unwrap()).unwrap();
    assert_eq!(result["moved"], 50);
    // How many of OVH's tasks ran at the same moment: close to the limit, not one at a time.
    let spans = r.t.sim.task_spans();
    let most = spans
        .iter()
        .map(|(_, start, _)| {
            spans
                .iter()
                .filter(|(_, s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap();
    assert!(most >= 20, "at most {most} moves were in flight together");
    assert!(most <= 25, "the concurrency limit was exceeded: {most}");
}

#[test]
fn full_recovery_killed_at_random_moments_sends_each_change_once() {
    let rb = repo("runbooks/sbg-full-recovery.rhai");
    let m = mapping(&[
        ("178.32.10.1/32", RBX),
        ("178.32.10.2/32", GRA),
        ("178.32.10.8/30", RBX),
        ("178.32.10.20/32", RBX),
        ("178.32.10.30/32", BHS),
    ]);
    let params = [
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
        m.as_str(),
    ];

    // The reference: an uninterrupted run.
    let reference = Recovery::start(None, 72_000.0);
    let mut args = vec!["run", rb.as_str(), "--approve", "all"];
    args.extend_from_slice(&params);
    let started = Instant::now();
    let out = reference.env.run(&args);
    // One IP of the demo account is refused by OVH: a partial recovery.
    out.expect_code(4);
    let window = started.elapsed().as_millis() as u64;
    let expected_result: Value = serde_json::from_str(out.stdout.lines().nth(1).unwrap()).unwrap();
    let expected_state = reference.t.sim.state();

    let mut kills = 0;
    for seed in 1..=5u64 {
        let r = Recovery::start(None, 72_000.0);
        let (result, landed) = r.run_with_kills(&args, &mut Rng::new(seed), 8, window / 2);
        kills += landed;
        // Refusal reasons carry query ids, which differ between simulators.
        let strip = |v: &Value| {
            let mut v = v.clone();
            for ip in v["ips"]["ips"].as_array_mut().unwrap() {
                ip["why"] = Value::from(
                    ip["why"]
                        .as_str()
                        .unwrap()
                        .split(" (OVH query id")
                        .next()
                        .unwrap(),
                );
            }
            v
        };
        assert_eq!(strip(&result), strip(&expected_result), "seed {seed}");
        assert_eq!(
            r.t.sim.state(),
            expected_state,
            "seed {seed}: the account ends as after an uninterrupted run"
        );
        let mut changes: HashMap<String, usize> = HashMap::new();
        for p in r.posts() {
            *changes
                .entry(format!("{} {}", p["path"].as_str().unwrap(), p["body"]))
                .or_default() += 1;
        }
        for (change, n) in &changes {
            assert_eq!(*n, 1, "seed {seed}: {change} was sent {n} times");
        }
        assert_eq!(
            changes.len(),
            6,
            "seed {seed}: 3 relinks and 3 moves: {changes:?}"
        );
    }
    assert!(kills >= 10, "only {kills} kills landed");
}

#[test]
fn the_demo_runs_with_nothing_configured() {
    let env = Env::new().var("HOME", "/nonexistent");
    let out = env.run(&["demo"]);
    out.expect_code(0);
    let run = out.stdout.trim();
    assert!(
        out.stderr.contains(&format!("run {run} succeeded, partial (datastores: 3 of 3 recovered; failover IPs: 4 of 5 recovered)\n  not recovered:\n    failover IPs: 178.32.10.30/32 · ns5009001.ip-142-44-1.net · refused · 178.32.10.30/32 cannot be moved from SBG (sbg4) to BHS (bhs6): a failover IP cannot leave its zone (OVH query id SIM.")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("datastores restored (read-only): [\"restore-000042\",\"restore-000043\",\"restore-000057\"]\n"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("failover IPs: 3 moved, 1 already there, 1 refused, 0 failed\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("emails OVH sent: 3\n"),
        "{}",
        out.stderr
    );
    // The copy's wait shows OVH's progress as it moves: the task's state, its percentage,
    // the time waited and what is left of the wait's budget (12h in the demo).
    let progress: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("  … wait for the copy of filer 42: OVH says "))
        .collect();
    assert!(progress.len() >= 3, "{}", out.stderr);
    let shape = regex::Regex::new(
        r"^  … wait for the copy of filer 42: OVH says (todo|doing), \d+% \(\d+(\.\d+)?(ms|s) elapsed, 1[12]h [0-5]\dm left before its timeout\)$",
    )
    .unwrap();
    for line in &progress {
        assert!(shape.is_match(line), "{line}");
    }
    assert!(
        progress.iter().any(|l| l.contains("OVH says doing, ")),
        "{progress:?}"
    );
    let journal = out
        .stderr
        .lines()
        .find(|l| l.starts_with("the run's journal: lifeboat --db "))
        .unwrap();
    let db = journal
        .trim_start_matches("the run's journal: lifeboat --db ")
        .split(' ')
        .next()
        .unwrap();
    let status = std::process::Command::new(crate::support::BIN)
        .args(["--db", db, "status", run])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("state:     succeeded, partial\n"));
    // The demo's report says the same, in every format: the refused IP, OVH's reason and query
    // id, and the partial verdict.
    let report = |format: &str| {
        let out = std::process::Command::new(crate::support::BIN)
            .args(["--db", db, "report", run, "--format", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let md = report("md");
    assert!(
        md.contains("\n## Outcome: partial — datastores: 3 of 3 recovered; failover IPs: 4 of 5 recovered\n")
            && md.contains("| 178.32.10.30/32 | ns5009001.ip-142-44-1.net | refused | 178.32.10.30/32 cannot be moved from SBG (sbg4) to BHS (bhs6): a failover IP cannot leave its zone (OVH query id SIM."),
        "{md}"
    );
    let json: Value = serde_json::from_str(&report("json")).unwrap();
    assert_eq!(json["outcome"], "partial");
    assert_eq!(json["verdict"]["not_recovered"], 1);
    let html = report("html");
    assert!(
        html.contains("<tr class=\"missed\"><td>178.32.10.30/32</td>")
            && html.contains("a failover IP cannot leave its zone (OVH query id SIM."),
        "{html}"
    );
    let _ = std::fs::remove_dir_all(db);
}

#[test]
fn ovh_login_requests_a_consumer_key_with_the_recovery_rules() {
    let r = Recovery::start(None, 1.0);
    let env = Env::new()
        .var("OVH_ENDPOINT", &r.t.base)
        .var("OVH_APPLICATION_KEY", "demo-application-key")
        .var("OVH_APPLICATION_SECRET", "demo-application-secret")
        .var("HOME", "/nonexistent");
    let out = env.run(&["ovh", "login"]);
    out.expect_code(0);
    let base = r.t.base.trim_end_matches("/1.0");
    assert!(out.stdout.starts_with(&format!("consumer key: demo-consumer-key (pendingValidation)\nvalidate it (log in and approve): {base}/auth/validate\n")), "{}", out.stdout);
    assert!(
        out.stdout.contains("  POST   /ip/*/move\n"),
        "{}",
        out.stdout
    );
    let request =
        r.t.sim
            .requests()
            .into_iter()
            .find(|q| q["path"] == "/auth/credential")
            .unwrap();
    let rules = request["body"]["accessRules"].as_array().unwrap();
    assert!(rules.contains(&serde_json::json!({ "method": "POST", "path": "/dedicatedCloud/*/datacenter/*/linkFilerFromSbg" })));
    assert!(
        !rules.iter().any(|r| r["method"] == "DELETE"),
        "no more than the runbooks need"
    );
    // The rules granted are enough for the shipped runbooks: run one with a key limited to them.
    let mut f = Sim::demo_fixture();
    f.account.access_rules = lifeboat::ovh::recovery_access_rules()
        .into_iter()
        .map(|r| lifeboat::sim::world::AccessRule {
            method: r.method,
            path: r.path,
        })
        .collect();
    let limited = Recovery::start(Some(f), 36_000.0);
    let rb = repo("runbooks/sbg-full-recovery.rhai");
    let m = mapping(&[("178.32.10.1/32", RBX)]);
    let mut args = vec!["run", rb.as_str(), "--approve", "all", "-p", m.as_str()];
    args.extend(relink_args("dest_pcc=pcc-137-74-200-1", "dest_dc=2001"));
    limited.env.run(&args).expect_code(0);
    assert!(limited.t.sim.requests().iter().all(|q| q["status"] != 403));
}

#[test]
fn plan_mode_makes_the_reads_and_sends_no_change() {
    let r = Recovery::start(None, 36_000.0);
    let rb = repo("runbooks/sbg-full-recovery.rhai");
    let m = mapping(&[
        ("178.32.10.1/32", RBX),
        ("178.32.10.20/32", RBX),
        ("178.32.10.30/32", BHS),
    ]);
    let mut args = vec!["run", rb.as_str(), "--plan", "-p", m.as_str()];
    args.extend(relink_args("dest_pcc=pcc-137-74-200-1", "dest_dc=2001"));
    let out = r.env.run(&args);
    // 178.32.10.30/32 would be refused: the plan says the recovery would be partial.
    out.expect_code(4);
    assert!(
        r.posts().is_empty(),
        "a plan sends no change: {:?}",
        r.posts()
    );
    assert!(
        r.t.sim
            .requests()
            .iter()
            .any(|q| q["path"].as_str().unwrap().ends_with("/ipCanBeMovedTo")),
        "the checks are made for real"
    );
    assert!(
        out.stderr
            .contains("plan: 4 changes this recovery would make (none was sent):\n"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("   1. [relink filer 42 (ssd-042)] POST /dedicatedCloud/pcc-137-74-200-1/datacenter/2001/linkFilerFromSbg {\"filerId\":42}\n"), "{}", out.stderr);
    assert!(out.stderr.contains("   4. [move 178.32.10.1/32 -> ns5007001.ip-137-74-1.eu] POST /ip/178.32.10.1%2F32/move {\"to\":\"ns5007001.ip-137-74-1.eu\"}\n"), "{}", out.stderr);
    let result: Value = serde_json::from_str(out.stdout.lines().nth(1).unwrap()).unwrap();
    assert_eq!(result["ips"]["would_move"], 1);
    assert_eq!(
        result["ips"]["refused"], 1,
        "the refusal is found by the real check"
    );
    assert_eq!(result["ips"]["already_there"], 1);
    // Nothing changed at OVH.
    assert_eq!(r.t.sim.state(), Recovery::start(None, 1.0).t.sim.state());
}

#[test]
fn a_twin_is_read_with_gets_only_and_holds_no_secret() {
    let r = Recovery::start(None, 1.0);
    let twin = r.env.dir.path().join("twin.json");
    let out = r
        .env
        .run(&["twin", "snapshot", "--out", twin.to_str().unwrap()]);
    out.expect_code(0);
    assert!(
        out.stderr
            .contains("5 servers, 5 failover IPs, 2 Private Clouds"),
        "{}",
        out.stderr
    );
    assert!(
        r.t.sim.requests().iter().all(|q| q["method"] == "GET"),
        "only reads"
    );
    let text = std::fs::read_to_string(&twin).unwrap();
    for secret in [
        "demo-application-secret",
        "demo-consumer-key",
        "demo-application-key",
    ] {
        assert!(!text.contains(secret), "the twin holds {secret}");
    }
    // The twin is the account: same servers, routing, virtual MACs, Private Clouds and filers.
    let twin: Value = serde_json::from_str(&text).unwrap();
    let source = r.t.sim.state();
    let routes = |v: &Value| -> Vec<(String, String, usize)> {
        let mut x: Vec<_> = v["ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["block"].as_str().unwrap().to_string(),
                    i["routed_to"].as_str().unwrap().to_string(),
                    i["vmacs"].as_array().unwrap().len(),
                )
            })
            .collect();
        x.sort();
        x
    };
    assert_eq!(routes(&twin), routes(&source));
    let filers = |v: &Value| -> Vec<(String, String, Vec<i64>)> {
        v["pccs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["service_name"].as_str().unwrap().to_string(),
                    p["location"].as_str().unwrap().to_string(),
                    p["datacenters"][0]["filers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| f["id"].as_i64().unwrap())
                        .collect(),
                )
            })
            .collect()
    };
    assert_eq!(filers(&twin), filers(&source));
}

#[test]
fn a_rehearsal_on_a_twin_completes_and_reports_every_step() {
    let r = Recovery::start(None, 1.0);
    let twin = r.env.dir.path().join("twin.json");
    r.env
        .run(&["twin", "snapshot", "--out", twin.to_str().unwrap()])
        .expect_code(0);
    let rb = repo("runbooks/sbg-full-recovery.rhai");
    let m = mapping(&[("178.32.10.1/32", RBX), ("178.32.10.30/32", BHS)]);
    let mut args = vec![
        "rehearse",
        rb.as_str(),
        "--twin",
        twin.to_str().unwrap(),
        "--speed",
        "36000",
        "-p",
        m.as_str(),
    ];
    args.extend(relink_args("dest_pcc=pcc-137-74-200-1", "dest_dc=2001"));
    let out = r.env.run(&args);
    // 178.32.10.30/32 cannot leave its zone: the rehearsal proves a partial recovery.
    out.expect_code(4);
    assert!(
        r.posts().is_empty(),
        "the rehearsal touched the twin, not the account"
    );
    assert!(
        out.stdout.contains("| state | succeeded, partial |\n")
            && out.stdout.contains("\n## Outcome: partial — datastores: 3 of 3 recovered; failover IPs: 1 of 2 recovered\n\nNot recovered:\n\n- failover IPs: 178.32.10.30/32 · ns5009001.ip-142-44-1.net · refused · 178.32.10.30/32 cannot be moved from SBG (sbg4) to BHS (bhs6): a failover IP cannot leave its zone (OVH query id SIM."),
        "{}",
        out.stdout
    );
    let run = out.stdout.lines().next().unwrap().to_string();
    assert!(
        out.stdout
            .contains(&format!("# Run {run}: sbg-full-recovery\n")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("| RTO | 12h 00m (met, "),
        "{}",
        out.stdout
    );
    for step in [
        "list source filers",
        "check the destination",
        "relink filer 42 (ssd-042)",
        "wait for the copy of filer 57",
        "approve move-ips",
        "move 178.32.10.1/32 -> ns5007001.ip-137-74-1.eu",
    ] {
        assert!(
            out.stdout.contains(&format!("| {step} |")),
            "report lacks {step}: {}",
            out.stdout
        );
    }
    let json = r.env.run(&["report", &run, "--format", "json"]);
    json.expect_code(0);
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["state"], "succeeded, partial");
    assert_eq!(report["outcome"], "partial");
    assert!(report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "step")
        .all(|s| s["duration_ms"].is_u64()));
    assert_eq!(
        report["changes"].as_array().unwrap().len(),
        4,
        "3 relinks and 1 move were made (on the twin)"
    );
    assert!(report["waiting_ms"].as_u64().unwrap() > 0);
    let html = r.env.run(&["report", &run, "--format", "html"]);
    html.expect_code(0);
    let page = html.stdout;
    let steps_with_duration = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["duration_ms"].is_u64())
        .count();
    assert_eq!(
        page.matches("<div class=\"bar").count(),
        steps_with_duration,
        "one timeline bar per timed step"
    );
    assert!(
        page.contains("<h1>Run ") && page.contains("met, "),
        "{page}"
    );
    assert!(
        !page.contains("src=") && !page.contains("href="),
        "self-contained: no external resource"
    );
}

/// Renders the HTML report in headless Chromium (Debian's `chromium`, which `.ci/run` installs)
/// and checks the screenshot shows the timeline: bars in the working and the waiting colours.
#[test]
fn the_html_report_renders_a_timeline_in_a_browser() {
    let r = Recovery::start(None, 36_000.0);
    let rb = repo("runbooks/sbg-datastore-relink.rhai");
    let mut args = vec!["run", rb.as_str()];
    args.extend(relink_args("dest_pcc=pcc-137-74-200-1", "dest_dc=2001"));
    let out = r.env.run(&args);
    out.expect_code(0);
    let run = out.stdout.lines().next().unwrap().to_string();
    let html = r.env.run(&["report", &run, "--format", "html"]);
    html.expect_code(0);
    let dir = r.env.dir.path();
    let page = dir.join("report.html");
    std::fs::write(&page, &html.stdout).unwrap();
    let shot = dir.join("report.png");
    crate::support::chromium(&page, &[format!("--screenshot={}", shot.display())]);
    let count = |rgb: [u8; 3]| crate::support::pixels_of(&shot, rgb);
    let working = count([0x2b, 0x6c, 0xb0]);
    let waiting = count([0xa0, 0xae, 0xc0]);
    assert!(working > 20, "working bars drawn: {working} pixels");
    assert!(waiting > 200, "waiting bars drawn: {waiting} pixels");
}

#[test]
fn a_plan_that_fails_never_reads_as_nothing_to_change() {
    let r = Recovery::start(None, 36_000.0);
    // OVH refuses the IP checks outright (not a refusal of the move: an access problem).
    r.t.sim.add_fault(lifeboat::sim::faults::Fault {
        method: Some("GET".into()),
        path: "/dedicated/server/*/ipCanBeMovedTo".into(),
        kind: lifeboat::sim::faults::FaultKind::Status {
            status: 403,
            message: Some("This call has not been granted".into()),
        },
        times: None,
    });
    let rb = repo("runbooks/sbg-full-recovery.rhai");
    let m = mapping(&[("178.32.10.1/32", RBX)]);
    let mut args = vec!["run", rb.as_str(), "--plan", "-p", m.as_str()];
    args.extend(relink_args("dest_pcc=pcc-137-74-200-1", "dest_dc=2001"));
    let out = r.env.run(&args);
    out.expect_code(1);
    assert!(
        out.stderr.contains("plan: the plan did not finish (why follows), so the recovery may change more; the 3 changes it had found before it stopped (none was sent):\n"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("would change nothing"),
        "{}",
        out.stderr
    );

    // Failing before it found anything: it says it cannot tell.
    let env = crate::support::Env::new();
    let early = env.runbook("early.rhai", "step(\"read\", || fail(\"no answer\"))\n");
    let out = env.run(&["run", &early, "--plan"]);
    out.expect_code(1);
    assert!(out.stderr.contains("\nplan: the plan did not finish (why follows), so it cannot tell what the recovery would change; it had found no change before it stopped\nrun "), "{}", out.stderr);
}

#[test]
fn status_shows_a_running_task_wait() {
    // At this speed the demo account's datastore copies take a few seconds.
    let r = Recovery::start(None, 3600.0);
    let rb = repo("runbooks/sbg-datastore-relink.rhai");
    let mut args = vec!["run", rb.as_str()];
    args.extend(relink_args("dest_pcc=pcc-137-74-200-1", "dest_dc=2001"));
    let mut child = r.env.spawn(&args);
    let run = read_run_id(&mut child);
    let shape = regex::Regex::new(
        r"(?m)^waiting:   wait for the copy of filer \d+: OVH says (todo|doing), \d+% \(.+ elapsed, .+ left before its timeout\)$",
    )
    .unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !shape.is_match(&seen) {
        assert!(
            Instant::now() < deadline,
            "status never showed the wait:\n{seen}"
        );
        seen = r.env.run(&["status", &run]).stdout;
        std::thread::sleep(Duration::from_millis(50));
    }
    let json = r.env.status(&run);
    let _ = finish(child);
    assert!(seen.contains("state:     running (pid "), "{seen}");
    assert!(json["task_waits"].is_array(), "{json}");
    // Once the run has ended, nothing is waiting.
    let after = r.env.run(&["status", &run]);
    assert!(!after.stdout.contains("waiting:"), "{}", after.stdout);
}
