//! What a run recovered: `outcome()` and `warn()`, the partial verdict (exit 4), and how the
//! terminal, `status`, every report format and a browser show it.

use serde_json::Value;

use crate::support::recovery::{mapping, repo, Recovery, BHS, RBX};
use crate::support::{normalize, Env};

/// Query ids differ between simulators: SIM.ws-1.6b0ec613.37 -> QID.
fn without_query_ids(text: &str) -> String {
    regex::Regex::new(r"SIM\.ws-[0-9a-z.-]+\.\d+")
        .unwrap()
        .replace_all(text, "QID")
        .into_owned()
}

/// Two IPs: one moves, one is refused by OVH (it cannot leave its zone).
fn partial_ip_move(r: &Recovery) -> (String, crate::support::Output) {
    let rb = repo("runbooks/failover-ip-move.rhai");
    let m = mapping(&[("178.32.10.1/32", RBX), ("178.32.10.30/32", BHS)]);
    let out = r.env.run(&["run", &rb, "-p", &m, "-p", "poll=20ms"]);
    let run = out.stdout.lines().next().unwrap().to_string();
    (run, out)
}

#[test]
fn a_refused_ip_makes_the_run_partial_everywhere_it_is_reported() {
    let r = Recovery::start(None, 1000.0);
    let (run, out) = partial_ip_move(&r);
    out.expect_code(4);
    let closing = out
        .stderr
        .split_once(&format!("run {run} succeeded"))
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert_eq!(
        without_query_ids(closing).replace(&run, "RUN"),
        ", partial (failover IPs: 1 of 2 recovered)
  not recovered:
    failover IPs: 178.32.10.30/32 · ns5009001.ip-142-44-1.net · refused · 178.32.10.30/32 cannot be moved from SBG (sbg4) to BHS (bhs6): a failover IP cannot leave its zone (OVH query id QID)
  the report says the same: `lifeboat report RUN`
"
    );

    // status: the list, one run, and JSON.
    let list = r.env.run(&["status"]);
    assert!(
        list.stdout.contains("  succeeded, partial  "),
        "{}",
        list.stdout
    );
    let status = r.env.run(&["status", &run]);
    let text = without_query_ids(&normalize(&status.stdout, &run));
    assert!(
        text.contains("state:     succeeded, partial\noutcome:   partial: failover IPs: 1 of 2 recovered\n           failover IPs: 178.32.10.30/32 · ns5009001.ip-142-44-1.net · refused · 178.32.10.30/32 cannot be moved from SBG (sbg4) to BHS (bhs6): a failover IP cannot leave its zone (OVH query id QID)\nstarted:"),
        "{text}"
    );
    let json = r.env.status(&run);
    assert_eq!(json["outcome"], "partial");
    assert_eq!(json["state"]["verdict"]["recovered"], 1);
    assert_eq!(json["state"]["verdict"]["not_recovered"], 1);
    assert_eq!(json["outcome_items"][0]["title"], "failover IPs");

    // Markdown: the outcome first, with the refused IP, its reason and OVH's query id.
    let md = r.env.run(&["report", &run]);
    md.expect_code(0);
    let md = without_query_ids(&md.stdout);
    assert!(md.contains("| state | succeeded, partial |\n"), "{md}");
    assert!(
        md.contains("for what was recovered: the recovery is partial) |\n"),
        "{md}"
    );
    let expected = "
## Outcome: partial — failover IPs: 1 of 2 recovered

Not recovered:

- failover IPs: 178.32.10.30/32 · ns5009001.ip-142-44-1.net · refused · 178.32.10.30/32 cannot be moved from SBG (sbg4) to BHS (bhs6): a failover IP cannot leave its zone (OVH query id QID)

### failover IPs

| ip | destination | outcome | why | recovered |
|---|---|---|---|---|
| 178.32.10.30/32 | ns5009001.ip-142-44-1.net | refused | 178.32.10.30/32 cannot be moved from SBG (sbg4) to BHS (bhs6): a failover IP cannot leave its zone (OVH query id QID) | **no** |
| 178.32.10.1/32 | ns5007001.ip-137-74-1.eu | moved |  | yes |

## Log
";
    assert!(md.contains(expected), "{md}");
    let outcome_at = md.find("## Outcome").unwrap();
    assert!(
        outcome_at < md.find("## Steps").unwrap(),
        "outcome before the timeline"
    );
    assert!(
        md.contains(" refused       178.32.10.30/32 -> ns5009001.ip-142-44-1.net: "),
        "the runbook's log lines, in order: {md}"
    );

    // JSON.
    let json = r.env.run(&["report", &run, "--format", "json"]);
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["state"], "succeeded, partial");
    assert_eq!(report["outcome"], "partial");
    let items = report["outcome_groups"][0]["items"].as_array().unwrap();
    let refused = items.iter().find(|i| i["recovered"] == false).unwrap();
    assert_eq!(refused["ip"], "178.32.10.30/32");
    assert!(refused["why"]
        .as_str()
        .unwrap()
        .contains("a failover IP cannot leave its zone (OVH query id SIM."));
    assert!(report["log"].as_array().unwrap().len() >= 2);

    // HTML: the same, the row not recovered marked.
    let html = r.env.run(&["report", &run, "--format", "html"]).stdout;
    assert!(
        html.contains("<h2 id=\"outcome\" class=\"verdict partial\">Outcome: partial — failover IPs: 1 of 2 recovered</h2>"),
        "{html}"
    );
    assert!(
        html.contains("<tr class=\"missed\"><td>178.32.10.30/32</td><td>ns5009001.ip-142-44-1.net</td><td>refused</td><td>178.32.10.30/32 cannot be moved from SBG (sbg4) to BHS (bhs6): a failover IP cannot leave its zone (OVH query id SIM."),
        "{html}"
    );
}

/// The HTML report's outcome table, as a browser shows it: the verdict heading and the row of
/// the IP not recovered are there in the rendered page and drawn in their colours.
#[test]
fn a_browser_shows_the_outcome_table_with_the_ip_not_recovered() {
    let r = Recovery::start(None, 1000.0);
    let (run, out) = partial_ip_move(&r);
    out.expect_code(4);
    let html = r.env.run(&["report", &run, "--format", "html"]).stdout;
    let page = r.env.dir.path().join("report.html");
    std::fs::write(&page, html).unwrap();
    let dom = crate::support::chromium(&page, &["--dump-dom".to_string()]);
    assert!(
        dom.contains("Outcome: partial — failover IPs: 1 of 2 recovered"),
        "{dom}"
    );
    let row =
        regex::Regex::new(r#"<tr class="missed"><td>178\.32\.10\.30/32</td>.*?</tr>"#).unwrap();
    assert!(row.is_match(&dom), "{dom}");
    let shot = r.env.dir.path().join("report.png");
    crate::support::chromium(&page, &[format!("--screenshot={}", shot.display())]);
    let missed_row = crate::support::pixels_of(&shot, [0xfe, 0xd7, 0xd7]);
    let partial_red = crate::support::pixels_of(&shot, [0xc5, 0x30, 0x30]);
    assert!(
        missed_row > 2000,
        "the refused IP's row is drawn: {missed_row} pixels"
    );
    assert!(
        partial_red > 100,
        "the partial verdict is drawn red: {partial_red} pixels"
    );
}

#[test]
fn outcome_and_warn_survive_a_pause_and_are_declared_once() {
    let env = Env::new();
    let rb = env.runbook(
        "partial.rhai",
        r#"runbook(#{ name: "partial" });
let copies = step("copy", || [#{ name: "a", recovered: true }, #{ name: "b", recovered: false, why: "source gone" }]);
outcome("copies", copies, ["name", "why"]);
approve("go", "continue?");
warn("DNS was not switched: do it by hand");
step("last", || 1)
"#,
    );
    let out = env.run(&["run", &rb, "--no-wait"]);
    out.expect_code(3);
    let run = out.stdout.trim().to_string();
    env.run(&["approve", &run, "go"]).expect_code(0);
    let resumed = env.run(&["resume", &run]);
    resumed.expect_code(4);
    assert!(
        normalize(&resumed.stderr, &run).ends_with(
            "  · warning: DNS was not switched: do it by hand\n  → last\n  ✓ last (DURATION)\nrun RUN succeeded, partial (copies: 1 of 2 recovered; 1 warning)\n  not recovered:\n    copies: b · source gone\n    warning: DNS was not switched: do it by hand\n  the report says the same: `lifeboat report RUN`\n"
        ),
        "{}",
        resumed.stderr
    );
    let log = env.run(&["log", &run]).stdout;
    assert_eq!(
        log.matches("outcome \"copies\": 1 of 2 recovered").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("warning: DNS was not switched").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("run succeeded, partial (copies: 1 of 2 recovered; 1 warning)"),
        "{log}"
    );
    // Asked again, the run says the same, with the same exit code.
    let again = env.run(&["resume", &run]);
    again.expect_code(4);
    assert!(
        again
            .stderr
            .contains("succeeded, partial (copies: 1 of 2 recovered; 1 warning) (it had already ended; nothing ran)"),
        "{}",
        again.stderr
    );
}

#[test]
fn a_complete_outcome_exits_0_and_says_what_was_recovered() {
    let env = Env::new();
    let rb = env.runbook(
        "complete.rhai",
        "outcome(\"things\", [#{ name: \"a\", recovered: true }, #{ name: \"b\", recovered: true }]);\n",
    );
    let out = env.run(&["run", &rb]);
    out.expect_code(0);
    let run = out.stdout.trim();
    assert!(
        out.stderr
            .ends_with(&format!("run {run} succeeded (things: 2 of 2 recovered)\n")),
        "{}",
        out.stderr
    );
    let report = env.run(&["report", run]).stdout;
    assert!(
        report.contains("| state | succeeded |\n")
            && report.contains("\n## Outcome: complete — things: 2 of 2 recovered\n"),
        "{report}"
    );
}

#[test]
fn an_outcome_item_without_recovered_is_an_error_at_its_call() {
    let env = Env::new();
    let rb = env.runbook(
        "bad.rhai",
        "let x = 1;\noutcome(\"ips\", [#{ ip: \"1.2.3.4\" }]);\n",
    );
    let out = env.run(&["run", &rb]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "failed: {rb}:2:1: outcome(\"ips\"): item 0 has no `recovered: true` or `recovered: false`\n"
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn markup_in_outcome_items_and_log_lines_is_inert_in_reports() {
    let env = Env::new();
    let rb = env.runbook(
        "inject.rhai",
        "log(\"<img src=x onerror=alert(1)>\");\noutcome(\"x\", [#{ name: \"<script>alert(1)</script>\", recovered: false }]);\n",
    );
    let out = env.run(&["run", &rb]);
    out.expect_code(4);
    let run = out.stdout.trim();
    let html = env.run(&["report", run, "--format", "html"]).stdout;
    assert!(
        !html.contains("<script>alert") && !html.contains("<img src=x"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    let md = env.run(&["report", run]).stdout;
    assert!(!md.contains("<script>") && !md.contains("<img"), "{md}");
}
