//! `lifeboat daemon`: schedules fire on time (under a compressed clock, not a real minute),
//! missed occurrences are reported, and a run a crashed process left behind is resumed once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::{finish, read_run_id, Env};

fn anchor() -> u128 {
    // A whole minute of real time, so virtual minutes start with the test's clock.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        / 60_000
        * 60_000
}

fn schedule_env(scale: u32) -> (Env, String) {
    let env = Env::new()
        .var("LIFEBOAT_CLOCK", format!("{scale}@{}", anchor()))
        .var("HOME", "/nonexistent");
    let rb = env.runbook(
        "tick.rhai",
        "runbook(#{ name: \"tick\" });\nstep(\"tick\", || 1)\n",
    );
    let config = env.dir.path().join("config.toml");
    std::fs::write(&config, format!("[[schedule]]\nname = \"every-minute\"\ncron = \"* * * * *\"\nrunbook = \"{rb}\"\nmode = \"plan\"\n")).unwrap();
    let env = env.var("LIFEBOAT_CONFIG", config.to_string_lossy());
    (env, rb)
}

fn created_ats(env: &Env) -> Vec<u64> {
    let list: serde_json::Value =
        serde_json::from_str(&env.run(&["status", "--json"]).stdout).unwrap();
    let mut out: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            env.status(r["id"].as_str().unwrap())["created_at"]
                .as_u64()
                .unwrap()
        })
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn a_schedule_fires_at_the_expected_times() {
    // 60x: a minute of engine time is one second, so the scheduler's jitter under load stays
    // well inside the tolerance below.
    let (env, _) = schedule_env(60);
    let mut daemon = env.spawn(&["daemon"]);
    std::thread::sleep(Duration::from_millis(4600));
    daemon.kill().unwrap();
    let out = finish(daemon);
    let fired = created_ats(&env);
    assert!(
        fired.len() >= 3,
        "fired {} times in ~4.6 virtual minutes: {}",
        fired.len(),
        out.stderr
    );
    for t in &fired {
        assert!(
            // Under a 60x clock, 25 s of engine time is about 400 ms of real time: room for
            // a loaded CI machine, and still well before the next occurrence.
            t % 60_000 < 25_000,
            "fired {} ms after the minute: {}",
            t % 60_000,
            out.stderr
        );
    }
    for w in fired.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            (35_000..=85_000).contains(&gap),
            "one run a minute, not {gap} ms apart"
        );
    }
    let list: serde_json::Value =
        serde_json::from_str(&env.run(&["status", "--json"]).stdout).unwrap();
    let first = env.status(list[0]["id"].as_str().unwrap());
    assert_eq!(first["mode"], "plan", "the schedule's mode");
}

#[test]
fn a_missed_schedule_is_reported_and_run_once() {
    let (env, _) = schedule_env(60);
    let mut daemon = env.spawn(&["daemon"]);
    std::thread::sleep(Duration::from_millis(1500));
    daemon.kill().unwrap();
    finish(daemon);
    let before = created_ats(&env).len();
    // Down for about four virtual minutes.
    std::thread::sleep(Duration::from_millis(4000));
    let mut daemon = env.spawn(&["daemon"]);
    std::thread::sleep(Duration::from_millis(500));
    daemon.kill().unwrap();
    let out = finish(daemon);
    assert!(
        out.stderr.contains("schedule every-minute: missed "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("(the daemon was not running); running it once now"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("missed ").count(), 1, "{}", out.stderr);
    let missed: u32 = out
        .stderr
        .split("missed ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(missed >= 2, "about four minutes were missed, not {missed}");
    // One catch-up run (and perhaps the next minute's, if the restart straddled it), not one
    // per missed occurrence.
    let added = created_ats(&env).len() - before;
    assert!((1..=2).contains(&added), "{added} runs started on restart");
}

#[test]
fn the_daemon_resumes_a_run_left_behind_exactly_once() {
    let env = Env::new()
        .var("LIFEBOAT_CLOCK", format!("600@{}", anchor()))
        .var("HOME", "/nonexistent");
    let rb = env.runbook(
        "slow.rhai",
        "step(\"a\", || 1);\nsleep(\"10m\");\nstep(\"b\", || 2)\n",
    );
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    finish(child);
    assert_eq!(env.status(&run)["status"], "interrupted");

    let mut daemon = env.spawn(&["daemon"]);
    env.wait_for("the resumed run to finish", || {
        // A daemon that stopped will not finish it: say why at once.
        if let Ok(Some(_)) = daemon.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(daemon.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the daemon stopped:\n{err}");
        }
        // Each `status` holds the store a moment while the daemon is not yet serving it:
        // ask every 200 ms, not in a tight loop.
        std::thread::sleep(Duration::from_millis(200));
        let out = env.run(&["status", &run, "--json"]);
        out.code == 0 && out.stdout.contains("\"status\": \"succeeded\"")
    });
    daemon.kill().unwrap();
    let out = finish(daemon);
    assert!(
        out.stderr.contains(&format!(
            "resuming run {run} (slow), left behind by a stopped process"
        )),
        "{}",
        out.stderr
    );
    // A second daemon finds nothing to resume.
    let mut daemon = env.spawn(&["daemon"]);
    std::thread::sleep(Duration::from_millis(300));
    daemon.kill().unwrap();
    let out = finish(daemon);
    assert!(!out.stderr.contains("resuming run"), "{}", out.stderr);
    let log = env.run(&["log", &run, "--json"]).stdout;
    let resumes = log
        .lines()
        .filter(|l| l.contains("\"type\":\"run_started\"") && l.contains("\"resumed\":true"))
        .count();
    assert_eq!(resumes, 1, "resumed once: {log}");
    let steps = env.status(&run)["steps"].as_array().unwrap().clone();
    assert_eq!(steps.iter().filter(|s| s["name"] == "a").count(), 1);
}

#[test]
fn the_daemon_mails_each_runs_report() {
    let mail = crate::support::mail::MailServer::start();
    let env = Env::new()
        .var("LIFEBOAT_CLOCK", format!("60@{}", anchor()))
        .var("HOME", "/nonexistent");
    let rb = env.runbook(
        "tick.rhai",
        "runbook(#{ name: \"tick\", rto: \"5m\" });\nstep(\"tick\", || 1)\n",
    );
    let config = env.dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[schedule]]\nname = \"every-minute\"\ncron = \"* * * * *\"\nrunbook = \"{rb}\"\nmode = \"plan\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"lifeboat@example.test\"\n\n[notify]\nto = [\"{}\"]\n",
            mail.smtp_port,
            crate::support::mail::ADDRESS
        ),
    )
    .unwrap();
    let env = env.var("LIFEBOAT_CONFIG", config.to_string_lossy());
    let mut daemon = env.spawn(&["daemon"]);
    env.wait_for("a report by email", || {
        mail.delivered().iter().any(|m| m.contains("report of run"))
    });
    daemon.kill().unwrap();
    finish(daemon);
    let report = mail
        .delivered()
        .into_iter()
        .find(|m| m.contains("report of run"))
        .unwrap();
    assert!(report.contains("| RTO | 5m 00s (met, "), "{report}");
    assert!(report.contains("| tick | succeeded | 1 |"), "{report}");
}

/// Two daemons on one shared store, with the same schedule: every occurrence runs once, started
/// by one of them.
#[test]
fn two_daemons_on_a_shared_store_run_each_occurrence_once() {
    let (env, _) = schedule_env(60);
    let url = crate::support::postgres::fresh_database();
    let env = crate::support::postgres::short_leases(env.var("LIFEBOAT_STORE", url));
    let mut daemons = vec![env.spawn(&["daemon"]), env.spawn(&["daemon"])];
    std::thread::sleep(Duration::from_millis(4600));
    for d in &mut daemons {
        d.kill().unwrap();
    }
    let outs: Vec<String> = daemons.into_iter().map(|d| finish(d).stderr).collect();
    let fired = created_ats(&env);
    assert!(fired.len() >= 3, "fired {} times: {outs:?}", fired.len());
    let mut minutes: Vec<u64> = fired.iter().map(|t| t / 60_000).collect();
    minutes.dedup();
    assert_eq!(
        minutes.len(),
        fired.len(),
        "an occurrence ran twice: {fired:?}"
    );
}
