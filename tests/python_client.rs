//! OVH's official Python client (`pip install ovh`), unchanged, against `lifeboat sim`: proof
//! that our signature check and JSON shapes are OVH's, not a mirror of our own client.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::BIN;

pub const SCRIPT: &str = r#"
import os, sys, time
import ovh, ovh.client
base = os.environ["SIM_URL"]
# The client accepts only named endpoints: register the simulator's URL under a name.
ovh.client.ENDPOINTS["lifeboat-sim"] = base
c = ovh.Client(endpoint="lifeboat-sim", application_key="demo-application-key",
               application_secret="demo-application-secret", consumer_key="demo-consumer-key")
rbx = "ns5007001.ip-137-74-1.eu"
print("servers", len(c.get("/dedicated/server")))
print("filers", c.get("/dedicatedCloud/pcc-51-91-100-1/datacenter/1001/filer"))
print("can", c.get("/dedicated/server/%s/ipCanBeMovedTo" % rbx, ip="178.32.10.1/32"))
task = c.post("/dedicated/server/%s/ipMove" % rbx, ip="178.32.10.1/32")
print("task", task["function"], task["status"])
for _ in range(200):
    t = c.get("/dedicated/server/%s/task/%d" % (rbx, task["taskId"]))
    if t["status"] == "done":
        break
    time.sleep(0.02)
print("polled", t["status"])
print("routed", c.get("/ip/178.32.10.1%2F32")["routedTo"]["serviceName"])
try:
    c.get("/dedicated/server/ns5009001.ip-142-44-1.net/ipCanBeMovedTo", ip="178.32.10.30/32")
except ovh.exceptions.BadParametersError as e:
    print("refused", str(e).splitlines()[0].strip())
bad = ovh.Client(endpoint="lifeboat-sim", application_key="demo-application-key",
                 application_secret="wrong-secret", consumer_key="demo-consumer-key")
try:
    bad.get("/dedicated/server")
except ovh.exceptions.APIError as e:
    print("wrong secret", type(e).__name__, str(e).splitlines()[0].strip(), "query id" if e.query_id else "no query id")
"#;

/// What [`SCRIPT`] prints against the demo account.
pub const EXPECTED: &str = "servers 5\nfilers [42, 43, 57]\ncan None\ntask genericMoveFloatingIp init\npolled done\nrouted ns5007001.ip-137-74-1.eu\n\
refused 178.32.10.30/32 cannot be moved from SBG (sbg4) to BHS (bhs6): a failover IP cannot leave its zone\n\
wrong secret BadParametersError Invalid signature query id\n";

/// The base URL in the simulator's first line: "# lifeboat sim: the OVH API at URL (...".
pub fn sim_url(first_line: &str) -> String {
    first_line
        .strip_prefix("# lifeboat sim: the OVH API at ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected first line: {first_line}"))
        .to_string()
}

#[test]
fn official_python_client_works_against_the_simulator() {
    let mut sim = Command::new(BIN)
        .args(["sim", "--speed", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    let url = sim_url(&lines.next().unwrap().unwrap());
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/1.0"),
        "{url}"
    );
    assert_eq!(
        lines.next().unwrap().unwrap(),
        format!("export OVH_ENDPOINT={url}")
    );
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "export OVH_APPLICATION_KEY=demo-application-key"
    );

    let out = crate::support::python()
        .arg("-c")
        .arg(SCRIPT)
        .env("SIM_URL", &url)
        .output()
        .expect("python3 runs");
    let _ = sim.kill();
    let _ = sim.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'ovh'"),
        "{}",
        crate::support::missing("OVH's Python client (ovh)")
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), EXPECTED);
}

#[test]
fn the_simulator_saves_its_state_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("after.json");
    let mut sim = Command::new(BIN)
        .args([
            "sim",
            "--speed",
            "1000",
            "--save",
            saved.to_str().unwrap(),
            "--admin-token",
            "t",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = sim_url(
        &BufReader::new(sim.stdout.take().unwrap())
            .lines()
            .next()
            .unwrap()
            .unwrap(),
    );
    let state = |sim_url: &str| -> serde_json::Value {
        let admin = sim_url.replace("/1.0", "/_sim/state");
        let out = crate::support::python()
            .args(["-c", "import sys,urllib.request; r=urllib.request.Request(sys.argv[1], headers={'X-Sim-Admin':'t'}); print(urllib.request.urlopen(r).read().decode())", &admin])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = state(&url);
    Command::new("kill")
        .args(["-INT", &sim.id().to_string()])
        .status()
        .unwrap();
    assert!(sim.wait().unwrap().success());
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(
        fixture["account"]["application_key"],
        "demo-application-key"
    );
    assert_eq!(fixture["ips"], before["ips"]);
    // The saved file is a fixture a new simulator starts from.
    let mut again = Command::new(BIN)
        .args(["sim", "--fixture", saved.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = BufReader::new(again.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    assert!(sim_url(&line).ends_with("/1.0"), "{line}");
    let _ = again.kill();
    let _ = again.wait();
}

/// A newcomer's first contact: the lines `lifeboat sim` prints, pasted into bash as they are,
/// let a plan run in that shell; `--env-file` writes the same lines for `source`.
#[test]
fn the_lines_the_simulator_prints_work_when_pasted_into_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("sim.env");
    let mut sim = Command::new(BIN)
        .args(["sim", "--env-file", env_file.to_str().unwrap()])
        .env_remove("LIFEBOAT_SIM_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let last = line.starts_with("# (also in ");
        printed.push(line);
        if last {
            break;
        }
    }
    let pasted = printed.join("\n");
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        printed[1..printed.len() - 1].join("\n") + "\n",
        "the env file holds the export lines"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let runbook = format!(
        "{}/runbooks/failover-ip-move.rhai",
        env!("CARGO_MANIFEST_DIR")
    );
    for setup in [pasted, format!("source {}", env_file.display())] {
        let script = format!(
            "{setup}\nexec {BIN} --db {} run {runbook} --plan -p ips=178.32.10.1/32 -p destination=ns5007001.ip-137-74-1.eu",
            dir.path().join("db").display()
        );
        let mut bash = Command::new("bash");
        bash.arg("-c").arg(&script).env("HOME", dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("OVH_") || k.starts_with("LIFEBOAT_") {
                bash.env_remove(k);
            }
        }
        let out = bash.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{script}\n{stderr}");
        assert!(
            stderr.contains("would move    178.32.10.1/32 -> ns5007001.ip-137-74-1.eu"),
            "{stderr}"
        );
    }
    let _ = sim.kill();
    let _ = sim.wait();
}
