//! The war room (`lifeboat serve`): in headless Chromium next to a running recovery, through
//! its API, its metrics read by Prometheus's own parser, and its refusals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use crate::support::{read_run_id, Counter, Env};

/// A person's token, and the config lines that let it in.
fn token(env: &Env, name: &str, role: &str) -> (String, String) {
    let out = env.run(&["token", name, "--role", role]);
    out.expect_code(0);
    let token = out.stdout.trim().to_string();
    assert!(token.starts_with("lbt_"), "{}", out.stdout);
    let lines = out
        .stderr
        .lines()
        .skip_while(|l| !l.starts_with("[[web.token]]"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !lines.contains(&token),
        "the config lines hold only the hash"
    );
    (token, lines + "\n")
}

/// `base` with a config file of its own holding `text` (`LIFEBOAT_CONFIG`).
fn with_config(base: Env, text: &str) -> Env {
    let path = base.dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    base.var("LIFEBOAT_CONFIG", crate::support::path_str(&path))
}

/// Runs a script that prints one JSON value: the value (the script's errors if it failed).
fn json_of(cmd: &mut std::process::Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A served war room: its URL, killed when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(env: &Env, extra: &[&str]) -> Served {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = env.spawn(&args);
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("lifeboat serve: ")
        .unwrap_or_else(|| panic!("serve said {line:?}"))
        .to_string();
    Served { child, url }
}

const RUNBOOK: &str = r#"
runbook(#{
    name: "war-room",
    rto: "30m",
    params: #{
        region: #{ type: "string", help: "where to" },
        api_token: #{ type: "string", help: "a secret" },
    },
});
step("list filers", || ["f1", "f2"]);
step(`<img src=x onerror="window.__pwned=1">`, || { log(`<script>window.__pwned=2</script>`); 1 });
step("copy datastore", || { test_effect("copy"); "copied" });
approve("go", "Move the IPs? <b>two people</b>", #{ approvers: 2 });
step("move ips", || "moved")
"#;

#[test]
fn the_war_room_shows_a_run_live_and_two_people_approve_its_gate_in_a_browser() {
    let counter = Counter::start();
    let base = Env::new().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let mut config = String::new();
    let mut tokens = serde_json::Map::new();
    for (name, role) in [
        ("alice", "operator"),
        ("bob", "admin"),
        ("victor", "viewer"),
    ] {
        let (t, lines) = token(&base, name, role);
        config.push_str(&lines);
        tokens.insert(name.into(), t.into());
    }
    let env = with_config(base, &config);
    let rb = env.runbook("war-room.rhai", RUNBOOK);

    counter.hold("copy");
    let mut run = env.spawn(&[
        "run",
        &rb,
        "-p",
        "region=<i>rbx</i>",
        "-p",
        "api_token=s3cret",
    ]);
    let id = read_run_id(&mut run);
    env.wait_for("the copy step", || counter.count("copy") > 0);
    let served = serve(&env, &[]);

    let shots = std::env::var("LIFEBOAT_WEB_SHOTS").unwrap_or_default();
    let script = env.dir.path().join("war_room.js");
    std::fs::write(&script, include_str!("web/war_room.js")).unwrap();
    let mut node = crate::support::node()
        .arg(&script)
        .env("WAR_ROOM_URL", &served.url)
        .env("WAR_ROOM_RUN", &id)
        .env(
            "WAR_ROOM_TOKENS",
            serde_json::Value::Object(tokens).to_string(),
        )
        .env("WAR_ROOM_SHOTS", &shots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut last = String::new();
    for line in BufReader::new(node.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(name) = line.strip_prefix("release ") {
            counter.release(name);
        }
        last = line;
    }
    let status = node.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut node.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "the browser script failed:\n{err}");
    let got: serde_json::Value = serde_json::from_str(&last).unwrap();
    let expected = serde_json::json!({
        "wrong_token": "unknown token",
        "no_reload": true,
        "gate_message": "Move the IPs? <b>two people</b>",
        "injected_elements": 0,
        "pwned": null,
        "injected_step_shown": ["<img src=x onerror=\"window.__pwned=1\">"],
        "params": ["api_token••••••", "region<i>rbx</i>"],
        "secret_in_page": false,
        "log_has_script_text": true,
        "viewer_buttons": 0,
        "viewer_api": [403, "victor is a viewer: this needs an operator"],
        "cross_site": [403, 403, "refused: this request did not come from the war room's own page (missing or wrong X-Lifeboat-CSRF, or another Origin)"],
        "first_approval": format!("approved gate \"go\" of run {id}: 1 of 2 approvals (alice); it waits for 1 more from someone else"),
        "second_by_alice": format!("alice has already approved gate \"go\" of run {id}; it needs 2 approvals from different people (1 so far: alice): someone else must approve"),
        "phone_overflow": false,
        "alice_sees": "succeeded",
        "alice_same_page": true,
        "list_state": "succeeded",
    });
    assert_eq!(got, expected);

    let out = crate::support::finish(run);
    out.expect_code(0);
    // The terminal of the run said the same: two people, then each approval as it came.
    for line in [
        "  ⏸ waiting for approval at gate \"go\" (2 different people must approve): Move the IPs? <b>two people</b>\n",
        "  ✓ gate \"go\" approved by alice; it waits for 1 more approval from someone else\n",
        "  ✓ gate \"go\" approved by bob\n",
    ] {
        assert!(out.stderr.contains(line), "{line}{}", out.stderr);
    }
    // Who approved, and why, is in the journal.
    let log = env.run(&["log", &id]);
    let approvals: Vec<&str> = log
        .stdout
        .lines()
        .filter(|l| l.contains("approved by"))
        .map(|l| l.split_once("  ").unwrap().1)
        .collect();
    assert_eq!(
        approvals,
        [
            "gate \"go\" approved by alice: copy verified on the PCC",
            "gate \"go\" approved by bob: second pair of eyes",
        ]
    );
    // And in the report, with the other decisions people took.
    let report = env.run(&["report", &id]);
    report.expect_code(0);
    for line in [
        " | gate go | approved | alice | copy verified on the PCC |",
        " | gate go | approved | bob | second pair of eyes |",
    ] {
        assert!(report.stdout.contains(line), "{line}\n{}", report.stdout);
    }
    assert_eq!(counter.count("copy"), 1);
}

#[test]
fn metrics_read_by_prometheus_parser_and_the_api_refuses_what_it_should() {
    let base = Env::new();
    let (alice, lines) = token(&base, "alice", "operator");
    let env = with_config(base, &lines);
    let done = env.runbook(
        "done.rhai",
        "runbook(#{ name: \"done\" });\nstep(\"a\", || 1);\nstep(\"b\", || 2);\n",
    );
    env.run(&["run", &done]).expect_code(0);
    let gated = env.runbook(
        "gated.rhai",
        "runbook(#{ name: \"gated\" });\napprove(\"go\", \"ok?\", #{ approvers: 2 });\n",
    );
    let paused = env.run(&["run", &gated, "--no-wait"]);
    paused.expect_code(3);
    let served = serve(&env, &[]);

    let script = r#"
import json, sys, urllib.request, urllib.error
from prometheus_client.openmetrics.parser import text_string_to_metric_families
url, token = sys.argv[1], sys.argv[2]
def get(path, auth=True, method="GET", body=None, headers=None):
    req = urllib.request.Request(url + path, method=method, data=body, headers=headers or {})
    if auth:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()
status, kind, text = get("metrics")
out = {"status": status, "type": kind}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        if s.name == "lifeboat_runs" and s.value:
            out["runs_" + s.labels["state"]] = int(s.value)
        if s.name == "lifeboat_step_duration_seconds_count":
            out["steps"] = int(s.value)
        if s.name == "lifeboat_gates_waiting":
            out["gates_waiting"] = int(s.value)
        if s.name == "lifeboat_gate_waiting_seconds":
            out["gate_waiting"] = s.labels["gate"]
out["unauthenticated"] = get("metrics", auth=False)[0]
spec = json.loads(get("openapi.json", auth=False)[2])
out["paths"] = sorted(spec["paths"])
out["bad_reason"] = get("api/runs/" + sys.argv[3] + "/gates/go/approve", method="POST",
    body=b'{"reason": "  "}', headers={"Content-Type": "application/json"})[0::2]
out["unknown_run"] = get("api/runs/20990101-000000-0000")[0]
# Five wrong tokens from this address: the sixth attempt, even the right one, must wait.
wrong = [get("api/me", auth=False, headers={"Authorization": "Bearer lbt_wrong"})[0] for _ in range(5)]
req = urllib.request.Request(url + "api/me", headers={"Authorization": "Bearer " + token})
try:
    urllib.request.urlopen(req)
except urllib.error.HTTPError as e:
    out["slowed"] = [wrong, e.code, e.headers.get("Retry-After") is not None, json.loads(e.read())["error"].split(": try again in ")[0]]
print(json.dumps(out, sort_keys=True))
"#;
    let run_id = paused
        .stderr
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("run "))
        .and_then(|l| l.split(':').next())
        .unwrap()
        .to_string();
    let got = json_of(crate::support::python().args(["-c", script, &served.url, &alice, &run_id]));
    assert_eq!(
        got,
        serde_json::json!({
            "status": 200,
            "type": "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "runs_succeeded": 1,
            "runs_paused": 1,
            "steps": 2,
            "gates_waiting": 1,
            "gate_waiting": "go",
            "unauthenticated": 401,
            "paths": [
                "/api/link", "/api/link/abort", "/api/link/approve",
                "/api/live", "/api/login", "/api/logout", "/api/me", "/api/runs",
                "/api/runs/{id}", "/api/runs/{id}/abort", "/api/runs/{id}/export",
                "/api/runs/{id}/gates/{gate}/approve", "/api/runs/{id}/live",
                "/api/runs/{id}/report", "/api/runs/{id}/steps/{step}/decide"
            ],
            "bad_reason": [400, "{\"error\":\"reason: say why (it is journaled with your name)\"}"],
            "unknown_run": 404,
            "slowed": [[401, 401, 401, 401, 401], 429, true, "too many failed sign-ins from this address"],
        })
    );
}

#[test]
fn token_prints_the_token_once_and_the_lines_for_the_config_file() {
    use sha2::Digest as _;
    let env = Env::new();
    let out = env.run(&["token", "ann", "--role", "admin"]);
    out.expect_code(0);
    let token = out.stdout.trim();
    let hash: String = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        out.stderr,
        format!("The token of ann (admin) is the line above: give it to them; it is not kept anywhere.\nAdd these lines to the config file of every `lifeboat serve`:\n\n[[web.token]]\nname = \"ann\"\nrole = \"admin\"\nsha256 = \"{hash}\"\n")
    );
    let out = env.run(&["token", "ann", "--role", "root"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "error: --role \"root\": viewer, operator or admin\n"
    );
    let out = env.run(&["token", "a\"b", "--role", "viewer"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "error: token name \"a\\\"b\": give the person's name (it is what the journal records), without quotes\n"
    );
}

#[test]
fn serve_needs_tokens_and_says_how_to_make_one() {
    let env = Env::new();
    let config = env.dir.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let env = env.var("LIFEBOAT_CONFIG", crate::support::path_str(&config));
    let out = env.run(&["serve", "--listen", "127.0.0.1:0"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!("error: lifeboat serve: nobody could sign in: {} has no [[web.token]]. Make one with `lifeboat token NAME --role operator` and add the lines it prints\n", config.display())
    );
    std::fs::write(
        &config,
        "[[web.token]]\nname = \"ann\"\nrole = \"root\"\nsha256 = \"00\"\n",
    )
    .unwrap();
    let out = env.run(&["serve"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!(
            "error: {}: [[web.token]] \"ann\": role \"root\" is not viewer, operator or admin\n",
            config.display()
        )
    );
}

/// `--tls-cert/--tls-key`: HTTPS with the certificate given, and sessions whose cookie is
/// `Secure`; plain HTTP on that port gets no answer.
#[test]
fn the_war_room_serves_https_with_a_secure_session_cookie() {
    let base = Env::new();
    let (alice, lines) = token(&base, "alice", "operator");
    let dir = base.dir.path().to_path_buf();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let env = with_config(base, &lines);
    let cert_path = crate::support::path_str(&dir.join("cert.pem"));
    let key_path = crate::support::path_str(&dir.join("key.pem"));
    let served = serve(&env, &["--tls-cert", &cert_path, "--tls-key", &key_path]);
    assert!(
        served.url.starts_with("https://127.0.0.1:"),
        "{}",
        served.url
    );

    let script = r#"
import json, ssl, sys, urllib.request
url, token, ca = sys.argv[1], sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=ca)
req = urllib.request.Request(url + "api/login", method="POST",
    data=json.dumps({"token": token}).encode(), headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, context=context) as r:
    cookie = r.headers["Set-Cookie"]
    me = json.load(r)
attrs = sorted(a.strip().split("=")[0] for a in cookie.split(";")[1:])
plain = url.replace("https://", "http://")
try:
    urllib.request.urlopen(plain + "api/me", timeout=5)
    answered = True
except Exception:
    answered = False
print(json.dumps({"name": me["name"], "role": me["role"], "cookie": attrs, "plain_answered": answered}))
"#;
    let got =
        json_of(crate::support::python().args(["-c", script, &served.url, &alice, &cert_path]));
    assert_eq!(
        got,
        serde_json::json!({
            "name": "alice",
            "role": "operator",
            "cookie": ["HttpOnly", "Max-Age", "Path", "SameSite", "Secure"],
            "plain_answered": false,
        })
    );
}

/// With `[web] url`, each recipient of a gate email gets a link of their own; it opens the
/// gate on the page, approves it once as that person, and is spent after.
#[test]
fn gate_emails_carry_personal_links_that_approve_once() {
    let mail = crate::support::mail::MailServer::start();
    let base = mail
        .env()
        .into_iter()
        .fold(Env::new().var("HOME", "/nonexistent"), |env, (k, v)| {
            env.var(&k, v)
        })
        .var("LIFEBOAT_NOTIFY_TO", "ops@example.com, cio@example.com")
        .var("LIFEBOAT_NOTIFY_ON", "approval");
    let (_, lines) = token(&base, "alice", "operator");
    let env = with_config(
        base,
        &format!("[web]\nurl = \"https://war.example.net/\"\nlink_lifetime = \"2h\"\n\n{lines}"),
    );
    let rb = env.runbook(
        "gate.rhai",
        "step(\"relink\", || 1);\napprove(\"move-ips\", \"Datastores are back. Move the IPs?\");\nstep(\"move\", || 2)\n",
    );
    let paused = env.run(&["run", &rb, "--no-wait"]);
    paused.expect_code(3);
    let run = paused.stdout.lines().next().unwrap().to_string();

    // One email each, to that person only, with a link of their own.
    let mut links = std::collections::BTreeMap::new();
    for m in mail.delivered() {
        let parsed = mail_parser::MessageParser::default()
            .parse(m.as_bytes())
            .unwrap();
        let to: Vec<String> = parsed
            .to()
            .unwrap()
            .iter()
            .filter_map(|a| a.address().map(str::to_string))
            .collect();
        let body = parsed.body_text(0).unwrap().into_owned();
        assert!(
            body.contains(&format!("Or open the war room at this link, which is yours alone ({}): it lets you approve gate move-ips or abort the run, once, for the next 2h 00m:", to[0])),
            "{body}"
        );
        let link = body
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("https://war.example.net/#/link/"))
            .unwrap()
            .to_string();
        assert_eq!(to.len(), 1, "{to:?}");
        links.insert(to[0].clone(), link);
    }
    assert_eq!(
        links.keys().collect::<Vec<_>>(),
        ["cio@example.com", "ops@example.com"]
    );
    let ticket = |who: &str| links[who].rsplit_once("/#/link/").unwrap().1.to_string();

    let served = serve(&env, &[]);
    // ops approves on the page the link opens, without signing in.
    let script = r##"
const { chromium } = require("playwright-core");
(async () => {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
  const page = await browser.newPage();
  const out = {};
  await page.goto(process.argv[2] + "#/link/" + process.argv[3]);
  await page.waitForSelector('[data-gate="move-ips"]');
  out.before = await page.textContent("#link-state");
  await page.click('[data-gate="move-ips"] .approve');
  await page.fill("#reason", "on my phone");
  await page.click("#confirm-ok");
  await page.waitForSelector("#flash:not([hidden])");
  out.flash = await page.textContent("#flash");
  await page.waitForFunction(() => document.querySelector("#link-state").textContent.startsWith("You used"));
  out.after = await page.textContent("#link-state");
  out.buttons = await page.locator('[data-gate="move-ips"] button').count();
  await page.goto(process.argv[2] + "#/link/" + process.argv[3].slice(0, -2) + "xx");
  await page.waitForSelector("#link-error");
  out.forged = await page.textContent("#link-error");
  await browser.close();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"##;
    let path = env.dir.path().join("link.js");
    std::fs::write(&path, script).unwrap();
    let got = json_of(
        crate::support::node()
            .arg(&path)
            .arg(&served.url)
            .arg(ticket("ops@example.com")),
    );
    assert_eq!(
        got,
        serde_json::json!({
            "before": "1 person must approve.",
            "flash": format!("approved gate \"move-ips\" of run {run}; continue it with `lifeboat resume {run}`"),
            "after": "You used this link already. 1 of 1 approvals: ops@example.com (emailed link).",
            "buttons": 0,
            "forged": "this approval link is not valid (altered, or made with another key)",
        })
    );

    // The spent link, and the other one now that the gate is open, do nothing more.
    let post = r#"
import json, sys, urllib.request, urllib.error
url = sys.argv[1]
def post(what, ticket):
    req = urllib.request.Request(url + "api/link/" + what, method="POST",
        data=json.dumps({"ticket": ticket, "reason": "again"}).encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return [r.status, json.load(r)["message"]]
    except urllib.error.HTTPError as e:
        return [e.code, json.load(e)["error"]]
print(json.dumps([post("approve", sys.argv[2]), post("abort", sys.argv[2]), post("approve", sys.argv[3])]))
"#;
    let answers = json_of(crate::support::python().args([
        "-c",
        post,
        &served.url,
        &ticket("ops@example.com"),
        &ticket("cio@example.com"),
    ]));
    let used = format!("this link was used already (ops@example.com acted on run {run} at gate \"move-ips\"); it works once");
    assert_eq!(
        answers,
        serde_json::json!([
            [409, used],
            [409, used],
            [
                409,
                format!("run {run} is not waiting at gate \"move-ips\" (open gates: none)")
            ],
        ])
    );
    env.run(&["resume", &run]).expect_code(0);
    let log = env.run(&["log", &run]);
    assert!(
        log.stdout.contains(
            "gate \"move-ips\" approved by ops@example.com (emailed link): on my phone\n"
        ),
        "{}",
        log.stdout
    );
}

/// A step in doubt and a failed step, decided on the page by an operator; the runs then go on
/// when resumed, as the decisions say.
#[test]
fn an_operator_decides_a_step_in_doubt_and_a_failed_step_on_the_page() {
    let counter = Counter::start();
    let base = Env::new().var("LIFEBOAT_TEST_COUNTER", &counter.addr);
    let (alice, lines) = token(&base, "alice", "operator");
    let env = with_config(base, &lines);

    // In doubt: killed while its change was in flight, no check to ask.
    let doubt = env.runbook(
        "doubt.rhai",
        "step(\"before\", || 1);\nstep(\"move\", || { test_effect(\"move\"); sleep(\"30s\"); \"moved\" });\nstep(\"after\", || 2)\n",
    );
    let mut child = env.spawn(&["run", &doubt]);
    let in_doubt = read_run_id(&mut child);
    env.wait_for("the move", || counter.count("move") > 0);
    child.kill().unwrap();
    crate::support::finish(child);
    env.run(&["resume", &in_doubt]).expect_code(3);
    // Failed: refused until someone fixes the zone.
    let refused = env.runbook(
        "refused.rhai",
        "step(\"zone\", || { if test_effect_count(\"zone fixed\") == 0 { fail(\"zone refused\") } \"ok\" })\n",
    );
    let failed = env.run(&["run", &refused]);
    failed.expect_code(1);
    let failed_run = failed.stdout.lines().next().unwrap().to_string();

    let served = serve(&env, &[]);
    let script = r##"
const { chromium } = require("playwright-core");
const [url, token, doubt, failed] = process.argv.slice(2);
(async () => {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
  const page = await browser.newPage();
  const out = {};
  await page.goto(url);
  await page.fill("#token", token);
  await page.click("#login button[type=submit]");
  await page.waitForSelector(`[data-run="${doubt}"]`);
  for (const [name, run, choice, reason] of [["doubt", doubt, "done", "moved in OVH's manager"], ["failed", failed, "retry", "zone fixed"]]) {
    await page.goto(`${url}#/run/${run}`);
    await page.waitForSelector("#decide");
    out[name + "_why"] = await page.textContent("#decide .message");
    out[name + "_choices"] = await page.$$eval("#decide button", (bs) => bs.map((b) => b.getAttribute("data-decision")));
    await page.click(`#decide [data-decision="${choice}"]`);
    await page.fill("#reason", reason);
    await page.click("#confirm-ok");
    await page.waitForSelector("#flash:not([hidden])");
    out[name + "_flash"] = await page.textContent("#flash");
    await page.waitForFunction(() => document.querySelectorAll("#decide button").length === 0);
    out[name + "_after"] = await page.textContent("#decide .message");
  }
  await browser.close();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"##;
    let path = env.dir.path().join("decide.js");
    std::fs::write(&path, script).unwrap();
    let got = json_of(crate::support::node().arg(&path).args([
        &served.url,
        &alice,
        &in_doubt,
        &failed_run,
    ]));
    let resume = |run: &str| format!("The run goes on when it is resumed: `lifeboat resume {run}`");
    assert_eq!(
        got,
        serde_json::json!({
            "doubt_why": "it was in flight when the previous process stopped, and it has no `check` to ask",
            "doubt_choices": ["done", "not_done", "retry"],
            "doubt_flash": format!("step \"move\" (position 1) of run {in_doubt}: resolved done by alice: moved in OVH's manager; the run goes on when it is resumed: `lifeboat resume {in_doubt}`"),
            "doubt_after": format!("decided: resolved done by alice: moved in OVH's manager. {}", resume(&in_doubt)),
            "failed_why": format!("zone refused (at {refused}:1:{})", std::fs::read_to_string(&refused).unwrap().find("fail(").unwrap() + 1),
            "failed_choices": ["retry"],
            "failed_flash": format!("step \"zone\" (position 0) of run {failed_run}: retry by alice: zone fixed; the run goes on when it is resumed: `lifeboat resume {failed_run}`"),
            "failed_after": format!("decided: retry by alice: zone fixed. {}", resume(&failed_run)),
        })
    );
    env.run(&["resume", &in_doubt]).expect_code(0);
    assert_eq!(
        counter.count("move"),
        1,
        "a change resolved done is not made again"
    );
    counter.hit("zone fixed");
    env.run(&["resume", &failed_run]).expect_code(0);
    assert_eq!(env.status(&failed_run)["steps"][0]["attempts"], 2);
}

/// On the shared store, `serve` instances side by side (here two, sharing the data directory's
/// key as instances behind one address would): a session made by one is good at the other,
/// and an approval through either reaches the run.
#[test]
fn two_war_rooms_on_postgres_share_sessions_and_act_on_the_same_runs() {
    let base = Env::on_postgres();
    let (alice, lines) = token(&base, "alice", "operator");
    let env = with_config(base, &lines);
    let rb = env.runbook(
        "gate.rhai",
        "approve(\"go\", \"ok?\");\nstep(\"after\", || 1)\n",
    );
    let paused = env.run(&["run", &rb, "--no-wait"]);
    paused.expect_code(3);
    let run = paused.stdout.lines().next().unwrap().to_string();
    let a = serve(&env, &[]);
    let b = serve(&env, &[]);
    let script = r#"
import json, sys, urllib.request
a, b, token, run = sys.argv[1:5]
def call(url, path, body=None, headers=None):
    req = urllib.request.Request(url + path, method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
        headers=dict({"Content-Type": "application/json"}, **(headers or {})))
    with urllib.request.urlopen(req) as r:
        return r.headers, json.load(r)
headers, me = call(a, "api/login", {"token": token})
cookie = headers["Set-Cookie"].split(";")[0]
_, at_b = call(b, "api/me", headers={"Cookie": cookie})
_, done = call(b, "api/runs/" + run + "/gates/go/approve", {"reason": "from b"},
    {"Cookie": cookie, "X-Lifeboat-CSRF": me["csrf"], "Origin": b.rstrip("/")})
_, seen_at_a = call(a, "api/runs/" + run, headers={"Cookie": cookie})
print(json.dumps({"at_b": at_b["name"], "done": done["message"], "gate_at_a": seen_at_a["gates"][0]["approved_by"]}))
"#;
    let got = json_of(crate::support::python().args(["-c", script, &a.url, &b.url, &alice, &run]));
    assert_eq!(
        got,
        serde_json::json!({
            "at_b": "alice",
            "done": format!("approved gate \"go\" of run {run}; continue it with `lifeboat resume {run}`"),
            "gate_at_a": ["alice"],
        })
    );
    env.run(&["resume", &run]).expect_code(0);
}
