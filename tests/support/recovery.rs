//! The simulator in this process, and a store whose runs reach it: how the shipped runbooks
//! are driven end to end.

use serde_json::Value;

use lifeboat::sim::world::{Fixture, IpSpec, ServerSpec};
use lifeboat::sim::Sim;

use super::sim::TestSim;
use super::{finish, read_run_id, Env, Rng};

pub const RBX: &str = "ns5007001.ip-137-74-1.eu";
pub const GRA: &str = "ns5007002.ip-137-74-2.eu";
pub const BHS: &str = "ns5009001.ip-142-44-1.net";

pub fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// A simulator in this process (its runtime kept alive) and a store whose runs reach it.
pub struct Recovery {
    pub runtime: tokio::runtime::Runtime,
    pub t: TestSim,
    pub env: Env,
}

impl Recovery {
    /// Runs `args` (a `run` command) to its end (exit 0, or 4 for a partial recovery), killing it with SIGKILL `kills` times at a
    /// random moment within `window_ms` of each start and resuming it each time. Returns the
    /// run's final result (the last line of stdout) and how many kills landed before a process
    /// ended on its own.
    pub fn run_with_kills(
        &self,
        args: &[&str],
        rng: &mut Rng,
        kills: u32,
        window_ms: u64,
    ) -> (Value, u32) {
        let mut run_id = String::new();
        let mut landed = 0;
        loop {
            let mut child = if run_id.is_empty() {
                let mut child = self.env.spawn(args);
                run_id = read_run_id(&mut child);
                child
            } else {
                self.env.spawn(&["resume", &run_id])
            };
            let deadline = std::time::Instant::now()
                + if landed < kills {
                    std::time::Duration::from_millis(5 + rng.below(window_ms))
                } else {
                    std::time::Duration::from_secs(60)
                };
            while std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let _ = child.kill();
            let out = finish(child);
            match out.code {
                // Succeeded, complete or partial (the caller checks the result).
                0 | 4 => {
                    let result = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
                    return (result, landed);
                }
                -1 => landed += 1,
                code => panic!("exit {code}: {}", out.stderr),
            }
        }
    }

    pub fn start(fixture: Option<Fixture>, speed: f64) -> Recovery {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let t = rt.block_on(TestSim::start(fixture, speed));
        let env = Env::new()
            .var("OVH_ENDPOINT", &t.base)
            .var("OVH_APPLICATION_KEY", "demo-application-key")
            .var("OVH_APPLICATION_SECRET", "demo-application-secret")
            .var("OVH_CONSUMER_KEY", "demo-consumer-key")
            .var("HOME", "/nonexistent");
        Recovery {
            runtime: rt,
            t,
            env,
        }
    }

    pub fn posts(&self) -> Vec<Value> {
        self.t
            .sim
            .requests()
            .into_iter()
            .filter(|r| r["method"] != "GET")
            .collect()
    }
}

pub fn mapping(pairs: &[(&str, &str)]) -> String {
    let m: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(ip, s)| (ip.to_string(), Value::from(*s)))
        .collect();
    format!("mapping={}", Value::Object(m))
}

/// The demo account plus fifty IPs on one SBG server, each move lasting `move_duration` of
/// simulated time.
pub fn fifty_ips(move_duration: &str) -> Fixture {
    let mut f = Sim::demo_fixture();
    f.servers.push(ServerSpec {
        name: "ns-src".into(),
        datacenter: "sbg1".into(),
        range: "standard".into(),
        vmac: true,
        accepts_failover: true,
        ip: None,
    });
    f.ips = (0..50)
        .map(|i| IpSpec {
            block: format!("10.9.0.{i}/32"),
            routed_to: Some("ns-src".into()),
            description: None,
            vmacs: vec![],
            fail_move: false,
            move_duration: None,
        })
        .collect();
    f.durations.ip_move = move_duration.into();
    f
}
