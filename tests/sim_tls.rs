//! `lifeboat sim --tls`: OVH's official Node.js client (which speaks only HTTPS and signs
//! `https://` + host + path), OVH's Python client and lifeboat itself, each pointed at the
//! simulator with nothing but the settings it prints.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::support::BIN;

/// A `lifeboat sim --tls` and the settings it printed, also written to `env_file`.
struct TlsSim {
    child: Child,
    dir: tempfile::TempDir,
    printed: Vec<String>,
}

impl TlsSim {
    fn start(extra: &[&str]) -> TlsSim {
        let dir = tempfile::tempdir().unwrap();
        let env_file = dir.path().join("sim.env");
        let ca = dir.path().join("ca.pem");
        let mut child = Command::new(BIN)
            .args(["sim", "--tls", "--speed", "1000", "--env-file"])
            .arg(&env_file)
            .arg("--tls-ca-out")
            .arg(&ca)
            .args(extra)
            .env_remove("LIFEBOAT_SIM_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut printed = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let last = line.starts_with("# (also in ");
            printed.push(line);
            if last {
                break;
            }
        }
        TlsSim {
            child,
            dir,
            printed,
        }
    }

    /// Runs `command` in bash after `source`-ing the printed settings, with none of this
    /// process's OVH, lifeboat or TLS-trust variables.
    fn shell(&self, command: &str) -> std::process::Output {
        let script = format!(
            "source {}\n{command}",
            self.dir.path().join("sim.env").display()
        );
        let mut bash = Command::new("bash");
        bash.arg("-c").arg(&script).env("HOME", self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("OVH_")
                || k.starts_with("LIFEBOAT_")
                || [
                    "SSL_CERT_FILE",
                    "SSL_CERT_DIR",
                    "REQUESTS_CA_BUNDLE",
                    "CURL_CA_BUNDLE",
                    "NODE_EXTRA_CA_CERTS",
                ]
                .contains(&k.as_str())
            {
                bash.env_remove(k);
            }
        }
        bash.output().unwrap()
    }
}

impl Drop for TlsSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_simulator_prints_https_settings_and_the_ca_for_each_client() {
    let sim = TlsSim::start(&[]);
    let ca = sim.dir.path().join("ca.pem").display().to_string();
    let url = crate::python_client::sim_url(&sim.printed[0]);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert_eq!(
        sim.printed[1],
        format!("# HTTPS with a throwaway CA ({ca}); SSL_CERT_FILE, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE make this shell's OpenSSL tools, Python and curl trust only it")
    );
    let exports: Vec<&str> = sim
        .printed
        .iter()
        .filter(|l| l.starts_with("export "))
        .map(String::as_str)
        .collect();
    for var in [
        "LIFEBOAT_OVH_CA_FILE",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
    ] {
        assert!(
            exports.contains(&format!("export {var}={ca}").as_str()),
            "{exports:?}"
        );
    }
    assert!(std::fs::read_to_string(&ca)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));

    // lifeboat, unchanged but for the printed settings: a plan over HTTPS.
    let runbook = format!(
        "{}/runbooks/failover-ip-move.rhai",
        env!("CARGO_MANIFEST_DIR")
    );
    let db = sim.dir.path().join("db");
    let out = sim.shell(&format!(
        "exec {BIN} --db {} run {runbook} --plan -p ips=178.32.10.1/32 -p destination=ns5007001.ip-137-74-1.eu",
        db.display()
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("would move    178.32.10.1/32 -> ns5007001.ip-137-74-1.eu"),
        "{stderr}"
    );

    // Without the CA, lifeboat refuses the certificate instead of talking to an unknown host.
    let out = sim.shell(&format!(
        "unset LIFEBOAT_OVH_CA_FILE SSL_CERT_FILE\nexec {BIN} doctor"
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("FAIL OVH API      https://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.to_lowercase().contains("certificate"), "{stdout}");

    // A CA file that cannot be read: said, before anything is sent.
    let out = sim.shell(&format!(
        "export LIFEBOAT_OVH_CA_FILE=/nonexistent/ca.pem\nexec {BIN} doctor"
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("FAIL OVH API      LIFEBOAT_OVH_CA_FILE /nonexistent/ca.pem: No such file or directory (os error 2)\n"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_official_python_client_works_against_sim_tls() {
    let sim = TlsSim::start(&[]);
    let python = crate::support::python()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let script = sim.dir.path().join("client.py");
    std::fs::write(&script, crate::python_client::SCRIPT).unwrap();
    let out = sim.shell(&format!(
        "SIM_URL=$OVH_ENDPOINT exec {python} {}",
        script.display()
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        crate::python_client::EXPECTED
    );
}

/// The Node.js client has no endpoint URL setting: it takes host, port and base path, opens
/// HTTPS only, and signs `https://` + host + path (without the port). The script reads them
/// from OVH_ENDPOINT; NODE_EXTRA_CA_CERTS makes Node trust the simulator's CA.
const NODE_SCRIPT: &str = r#"
const url = new URL(process.env.OVH_ENDPOINT);
const client = (secret) => require("ovh")({
  host: url.hostname, port: Number(url.port), basePath: url.pathname,
  appKey: process.env.OVH_APPLICATION_KEY, appSecret: secret,
  consumerKey: process.env.OVH_CONSUMER_KEY,
});
const ovh = client(process.env.OVH_APPLICATION_SECRET);
const rbx = "ns5007001.ip-137-74-1.eu";
const refusal = (label, e) => console.log(label, e.error, e.message);
(async () => {
  const servers = await ovh.requestPromised("GET", "/dedicated/server");
  console.log("servers", servers.length);
  console.log("can", await ovh.requestPromised("GET", `/dedicated/server/${rbx}/ipCanBeMovedTo`, { ip: "178.32.10.1/32" }));
  const task = await ovh.requestPromised("POST", `/dedicated/server/${rbx}/ipMove`, { ip: "178.32.10.1/32" });
  console.log("task", task.function, task.status);
  await ovh.requestPromised("GET", "/dedicated/server/ns5009001.ip-142-44-1.net/ipCanBeMovedTo", { ip: "178.32.10.30/32" })
    .then(() => console.log("not refused"), (e) => refusal("refused", e));
  await client("wrong-secret").requestPromised("GET", "/dedicated/server")
    .then(() => console.log("wrong secret accepted"), (e) => refusal("wrong secret", e));
  await ovh.requestPromised("GET", "/ip")
    .then((ips) => console.log("ips", ips.length), (e) => refusal("ips", e));
})().catch((e) => { console.error("unexpected", e); process.exit(1); });
"#;

#[test]
fn the_official_node_client_works_against_sim_tls() {
    let node = crate::support::node();
    let modules = node
        .get_envs()
        .find(|(k, _)| *k == "NODE_PATH")
        .and_then(|(_, v)| v)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let sim = TlsSim::start(&[]);
    assert_eq!(
        run_node(&sim, &modules, ""),
        "servers 5\ncan null\ntask genericMoveFloatingIp init\n\
refused 400 178.32.10.30/32 cannot be moved from SBG (sbg4) to BHS (bhs6): a failover IP cannot leave its zone\n\
wrong secret 400 Invalid signature\nips 5\n"
    );
    drop(sim);

    // A consumer key whose access rules do not cover /ip: refused, as OVH does.
    let mut fixture = serde_json::to_value(lifeboat::sim::Sim::demo_fixture()).unwrap();
    fixture["account"]["access_rules"] = serde_json::json!([{ "method": "GET", "path": "/dedicated/*" }, { "method": "POST", "path": "/dedicated/*" }]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restricted.json");
    std::fs::write(&path, fixture.to_string()).unwrap();
    let restricted = TlsSim::start(&["--fixture", path.to_str().unwrap()]);
    // A fixture's credentials are not printed: the script gets the demo account's.
    let out = run_node(
        &restricted,
        &modules,
        "export OVH_APPLICATION_KEY=demo-application-key OVH_APPLICATION_SECRET=demo-application-secret OVH_CONSUMER_KEY=demo-consumer-key",
    );
    assert!(
        out.ends_with("ips 403 This call has not been granted\n"),
        "{out}"
    );
}

/// Runs [`NODE_SCRIPT`] in a shell with the simulator's settings, after `prelude`.
fn run_node(sim: &TlsSim, modules: &str, prelude: &str) -> String {
    let script = sim.dir.path().join("client.js");
    std::fs::write(&script, NODE_SCRIPT).unwrap();
    let out = sim.shell(&format!(
        "{prelude}\nNODE_PATH={modules} exec node {}",
        script.display()
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
