//! lifeboat's performance figures, each printed beside its target: `cargo bench`.
//!
//! Everything runs the real (release) binary, except the bare sled baseline, which is measured
//! in this process in the same run. Figures are medians of several runs. `--quick` runs each
//! measurement once; `--full-baseline` runs the Python baseline on all 500 IPs (about 9
//! minutes) instead of extrapolating from 50.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use lifeboat::sim::world::{IpSpec, ServerSpec};
use lifeboat::sim::{Options, Sim};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn lifeboat(db: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--db").arg(db).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("LIFEBOAT_") || k.starts_with("OVH_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", "/nonexistent");
    c
}

fn max_rss(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// Runs a command under `/usr/bin/time -f %M` when present, returning (output, peak RSS MiB).
fn with_rss(mut cmd: Command) -> (std::process::Output, Option<f64>) {
    if Path::new("/usr/bin/time").exists() {
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let envs: Vec<_> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
            .collect();
        let mut timed = Command::new("/usr/bin/time");
        timed
            .arg("-f")
            .arg("LIFEBOAT_PEAK_RSS_KB=%M")
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        for (k, v) in envs {
            match v {
                Some(v) => timed.env(k, v),
                None => timed.env_remove(k),
            };
        }
        let out = timed.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let kb = stderr
            .lines()
            .find_map(|l| l.strip_prefix("LIFEBOAT_PEAK_RSS_KB="))
            .and_then(|v| v.trim().parse::<f64>().ok());
        (out, kb.map(|k| k / 1024.0))
    } else {
        (cmd.output().unwrap(), None)
    }
}

fn status_json(db: &Path, run: &str) -> serde_json::Value {
    let out = lifeboat(db)
        .args(["status", run, "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn run_seconds(db: &Path, run: &str) -> f64 {
    let s = status_json(db, run);
    (s["updated_at"].as_u64().unwrap() - s["created_at"].as_u64().unwrap()) as f64 / 1000.0
}

struct Report {
    lines: Vec<String>,
}

impl Report {
    fn line(&mut self, name: &str, value: String, target: String, ok: bool) {
        let l = format!(
            "{:<44} {:>18}   target {:<22} {}",
            name,
            value,
            target,
            if ok { "met" } else { "MISSED" }
        );
        println!("{l}");
        self.lines.push(l);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // cargo bench --list
    }
    let quick = args.iter().any(|a| a == "--quick");
    let full_baseline = args.iter().any(|a| a == "--full-baseline");
    let reps = if quick { 1 } else { 5 };
    let tmp = tempfile::tempdir().unwrap();
    let mut report = Report { lines: Vec::new() };
    println!(
        "lifeboat benchmarks ({} run(s) each, medians; binary {BIN})\n",
        reps
    );

    // 1. Sequential durable steps vs the disk's own limit: appending a record to a file and
    //    fdatasync-ing it, in a loop, on the same disk in the same run. (sled's own
    //    insert + flush is shown too; its flush is no power-loss sync on Linux.)
    let n = 2000;
    let mut raw = Vec::new();
    let mut bare = Vec::new();
    let mut ours = Vec::new();
    let rb = write(
        tmp.path(),
        "seq.rhai",
        &format!("for i in 0..{n} {{ step(`s${{i}}`, || i); }}"),
    );
    for r in 0..reps {
        let record = vec![7u8; 256];
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(tmp.path().join(format!("raw{r}")))
                .unwrap();
            let t = Instant::now();
            for _ in 0..n {
                f.write_all(&record).unwrap();
                f.sync_data().unwrap();
            }
            raw.push(n as f64 / t.elapsed().as_secs_f64());
        }
        let db = sled::Config::new()
            .path(tmp.path().join(format!("bare{r}")))
            .open()
            .unwrap();
        let t = Instant::now();
        for i in 0..n as u64 {
            db.insert(i.to_be_bytes(), record.as_slice()).unwrap();
            db.flush().unwrap();
        }
        bare.push(n as f64 / t.elapsed().as_secs_f64());
        drop(db);
        let store = tmp.path().join(format!("seq{r}"));
        let out = lifeboat(&store).args(["run", &rb]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap()
            .to_string();
        ours.push(n as f64 / run_seconds(&store, &run));
    }
    let (raw, bare, ours) = (median(raw), median(bare), median(ours));
    report.line(
        "raw append (256 B) + fdatasync",
        format!("{raw:.0} /s"),
        "(baseline)".into(),
        true,
    );
    report.line(
        "   sled insert + flush (not a sync)",
        format!("{bare:.0} /s"),
        "(for comparison)".into(),
        true,
    );
    report.line(
        "1. sequential durable steps",
        format!("{ours:.0} steps/s"),
        format!(">= 60% of baseline ({:.0}%)", 100.0 * ours / raw),
        ours >= 0.6 * raw,
    );

    // 2. 64 steps in flight, every completion durable before it is reported.
    let n = 10_000;
    let rb = write(
        tmp.path(),
        "par.rhai",
        &format!("let items = []; for i in 0..{n} {{ items.push(i); }}\nparallel(items, #{{ limit: 64 }}, |i| step(`s${{i}}`, || i)).len()"),
    );
    let mut rates = Vec::new();
    for r in 0..reps {
        let store = tmp.path().join(format!("par{r}"));
        let out = lifeboat(&store)
            .args(["run", &rb, "--max-steps", "200000"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap()
            .to_string();
        rates.push(n as f64 / run_seconds(&store, &run));
    }
    let rate = median(rates);
    report.line(
        "2. concurrent durable steps (64 in flight)",
        format!("{rate:.0} steps/s"),
        ">= 10000 steps/s".into(),
        rate >= 10_000.0,
    );

    // 3 and 5a. Resume after 10,000 finished steps: time to the first new step; peak RSS.
    let rb = write(tmp.path(), "resume.rhai", "for i in 0..10000 { step(`s${i}`, || i); }\napprove(\"go\");\nstep(\"after the gate\", || 1)\n");
    let mut firsts = Vec::new();
    let mut rss_10k = None;
    for r in 0..reps {
        let store = tmp.path().join(format!("resume{r}"));
        let (out, rss) = with_rss({
            let mut c = lifeboat(&store);
            c.args(["run", &rb, "--no-wait"]);
            c
        });
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        rss_10k = max_rss(rss_10k, rss);
        let run = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap()
            .to_string();
        lifeboat(&store)
            .args(["approve", &run, "go"])
            .output()
            .unwrap();
        let t = Instant::now();
        let mut child = lifeboat(&store)
            .args(["resume", &run])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = None;
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            if line.unwrap().contains("→ after the gate") && first.is_none() {
                first = Some(t.elapsed().as_secs_f64());
            }
        }
        child.wait().unwrap();
        firsts.push(first.expect("the new step started"));
    }
    let first = median(firsts);
    report.line(
        "3. resume after 10,000 steps: first new step",
        format!("{:.0} ms", first * 1000.0),
        "<= 500 ms".into(),
        first <= 0.5,
    );

    // 4 and 5b. 500 IPs, 1 s tasks, concurrency 50, against the simulator.
    let mut fixture = Sim::demo_fixture();
    fixture.servers.push(ServerSpec {
        name: "ns-src".into(),
        datacenter: "sbg1".into(),
        range: "standard".into(),
        vmac: true,
        accepts_failover: true,
        ip: None,
    });
    fixture.ips = (0..500)
        .map(|i| IpSpec {
            block: format!("10.{}.{}.1/32", i / 250, i % 250),
            routed_to: Some("ns-src".into()),
            description: None,
            vmacs: vec![],
            fail_move: false,
            move_duration: None,
        })
        .collect();
    fixture.durations.ip_move = "1s".into();
    let ips: Vec<String> = fixture.ips.iter().map(|i| i.block.clone()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut walls = Vec::new();
    let mut rss_500 = None;
    for r in 0..reps.min(3) {
        let sim = Sim::new(fixture.clone(), Options::default()).unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}/1.0", listener.local_addr().unwrap());
        let server = rt.spawn(lifeboat::sim::serve(
            listener,
            Arc::clone(&sim),
            std::future::pending(),
        ));
        let store = tmp.path().join(format!("fanout{r}"));
        let mut cmd = lifeboat(&store);
        cmd.args([
            "run",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/runbooks/failover-ip-move.rhai"
            ),
            "-p",
            &format!("ips={}", ips.join(",")),
            "-p",
            "destination=ns5007001.ip-137-74-1.eu",
            "-p",
            "concurrency=50",
            "-p",
            "poll=100ms",
            "--max-collection-size",
            "100000",
        ])
        .env("OVH_ENDPOINT", &base)
        .env("OVH_APPLICATION_KEY", "demo-application-key")
        .env("OVH_APPLICATION_SECRET", "demo-application-secret")
        .env("OVH_CONSUMER_KEY", "demo-consumer-key");
        let t = Instant::now();
        let (out, rss) = with_rss(cmd);
        let wall = t.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap())
                .unwrap();
        assert_eq!(result["moved"], 500);
        walls.push(wall);
        rss_500 = max_rss(rss_500, rss);
        server.abort();
    }
    let wall = median(walls);
    report.line(
        "4. 500 IPs, 1 s tasks, limit 50 (ideal 10 s)",
        format!("{wall:.1} s"),
        format!("<= 12 s ({:.2}x ideal)", wall / 10.0),
        wall <= 12.0,
    );

    // The same moves as a team would script them: OVH's Python client, one IP after the other.
    let sample = if full_baseline { 500 } else { 50 };
    let sim = Sim::new(fixture.clone(), Options::default()).unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}/1.0", listener.local_addr().unwrap());
    let server = rt.spawn(lifeboat::sim::serve(listener, sim, std::future::pending()));
    let script = r#"
import os, sys, time, ovh, ovh.client
ovh.client.ENDPOINTS["sim"] = os.environ["SIM"]
c = ovh.Client(endpoint="sim", application_key="demo-application-key", application_secret="demo-application-secret", consumer_key="demo-consumer-key")
dest = "ns5007001.ip-137-74-1.eu"
t0 = time.time()
for ip in sys.argv[1:]:
    c.get("/dedicated/server/%s/ipCanBeMovedTo" % dest, ip=ip)
    task = c.post("/dedicated/server/%s/ipMove" % dest, ip=ip)
    while c.get("/dedicated/server/%s/task/%d" % (dest, task["taskId"]))["status"] != "done":
        time.sleep(0.1)
print(time.time() - t0)
"#;
    // The Python with OVH's client: the one ./test installs, else the system's.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    let python = std::env::var("LIFEBOAT_TEST_PYTHON").unwrap_or_else(|_| {
        if venv.exists() {
            venv.to_string_lossy().into_owned()
        } else {
            "python3".to_string()
        }
    });
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(&ips[..sample])
        .env("SIM", &base)
        .output()
        .unwrap();
    server.abort();
    if out.status.success() {
        let seconds: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let total = seconds * 500.0 / sample as f64;
        let how = if sample == 500 {
            "measured".to_string()
        } else {
            format!("{sample} measured, x{}", 500 / sample)
        };
        report.line(
            "   baseline: sequential Python ovh loop",
            format!("{total:.0} s"),
            format!("({how})"),
            true,
        );
        report.line(
            "   lifeboat speed-up over the baseline",
            format!("{:.0}x", total / wall),
            "(report)".into(),
            true,
        );
    } else {
        println!(
            "   baseline skipped: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("python3 -m pip install ovh, or run ./test once")
        );
    }

    match (rss_10k, rss_500) {
        (Some(a), Some(b)) => {
            report.line(
                "5. peak RSS, 10,000-step run",
                format!("{a:.1} MiB"),
                "< 100 MiB".into(),
                a < 100.0,
            );
            report.line(
                "5. peak RSS, 500-IP run",
                format!("{b:.1} MiB"),
                "< 100 MiB".into(),
                b < 100.0,
            );
        }
        _ => println!("5. peak RSS: skipped (needs /usr/bin/time: apt-get install time)"),
    }

    // 6. `lifeboat check` of the biggest shipped runbook, whole process.
    let mut checks = Vec::new();
    for _ in 0..(if quick { 3 } else { 21 }) {
        let t = Instant::now();
        let out = lifeboat(tmp.path())
            .args([
                "check",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/runbooks/sbg-full-recovery.rhai"
                ),
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        checks.push(t.elapsed().as_secs_f64());
    }
    let check = median(checks);
    report.line(
        "6. lifeboat check sbg-full-recovery.rhai",
        format!("{:.1} ms", check * 1000.0),
        "< 50 ms".into(),
        check < 0.05,
    );

    war_room(&mut report, tmp.path(), reps);
    postgres(&mut report, tmp.path(), reps);
}

/// Section 9: the war room (`lifeboat serve`) over a store of 300 runs, one of them 2,000
/// steps long: how long its answers take, as curl sees them over loopback.
fn war_room(report: &mut Report, tmp: &Path, reps: usize) {
    let store = tmp.join("war");
    let small = write(tmp, "small.rhai", "for i in 0..20 { step(`s${i}`, || i); }");
    let big = write(tmp, "big.rhai", "for i in 0..2000 { step(`s${i}`, || i); }");
    for _ in 0..299 {
        assert!(lifeboat(&store)
            .args(["run", &small])
            .output()
            .unwrap()
            .status
            .success());
    }
    let out = lifeboat(&store).args(["run", &big]).output().unwrap();
    assert!(out.status.success());
    let big_run = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let token = lifeboat(&store)
        .args(["token", "bench", "--role", "viewer"])
        .output()
        .unwrap();
    let config = tmp.join("war.toml");
    let lines = String::from_utf8_lossy(&token.stderr);
    let lines = &lines[lines.find("[[web.token]]").unwrap()..];
    std::fs::write(&config, lines).unwrap();
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let mut serve = lifeboat(&store)
        .env("LIFEBOAT_CONFIG", &config)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    let url = first
        .trim()
        .strip_prefix("lifeboat serve: ")
        .unwrap()
        .to_string();
    let time = |path: &str| -> f64 {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}"])
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("{url}{path}"))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (code, secs) = text.split_once(' ').unwrap();
        assert_eq!(code, "200", "{path}");
        secs.parse().unwrap()
    };
    let first_metrics = time("metrics");
    let n = 10 * reps;
    let list = median((0..n).map(|_| time("api/runs")).collect());
    let page = median(
        (0..n)
            .map(|_| time(&format!("api/runs/{big_run}")))
            .collect(),
    );
    let metrics = median((0..n).map(|_| time("metrics")).collect());
    let _ = serve.kill();
    let _ = serve.wait();
    report.line(
        "9. war room: /api/runs, 300 runs",
        format!("{:.1} ms", list * 1000.0),
        "< 100 ms".into(),
        list < 0.1,
    );
    report.line(
        "9. war room: a 2,000-step run's page",
        format!("{:.1} ms", page * 1000.0),
        "< 100 ms".into(),
        page < 0.1,
    );
    report.line(
        "9. war room: /metrics, first / later",
        format!("{:.0} / {:.1} ms", first_metrics * 1000.0, metrics * 1000.0),
        "later < 100 ms".into(),
        metrics < 0.1,
    );
}

/// Section 7: the same durable steps on the PostgreSQL store (the server of
/// `LIFEBOAT_TEST_POSTGRES`, as `./test` starts it, over loopback); section 8: a takeover of a
/// frozen driver.
fn postgres(report: &mut Report, tmp: &Path, reps: usize) {
    let server = std::env::var("LIFEBOAT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://lifeboat@127.0.0.1:55432/postgres".to_string());
    let Ok(mut admin) = postgres::Client::connect(&server, postgres::NoTls) else {
        println!("7. PostgreSQL store: skipped (no server at {server}; ./test starts one)");
        return;
    };
    let mut fresh = |name: &str| {
        let db = format!("lifeboat_bench_{name}_{}", std::process::id());
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        let (head, _) = server.rsplit_once('/').unwrap();
        format!("{head}/{db}?sslmode=disable")
    };
    let on = |url: &str, dir: &Path| {
        let mut c = lifeboat(dir);
        c.env("LIFEBOAT_STORE", url);
        c
    };
    let seconds = |url: &str, dir: &Path, run: &str| {
        let out = on(url, dir)
            .args(["status", run, "--json"])
            .output()
            .unwrap();
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (s["updated_at"].as_u64().unwrap() - s["created_at"].as_u64().unwrap()) as f64 / 1000.0
    };
    let started = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    let (n_seq, n_par) = (2000, 10_000);
    let seq = write(
        tmp,
        "pg-seq.rhai",
        &format!("for i in 0..{n_seq} {{ step(`s${{i}}`, || i); }}"),
    );
    let par = write(
        tmp,
        "pg-par.rhai",
        &format!("let items = []; for i in 0..{n_par} {{ items.push(i); }}\nparallel(items, #{{ limit: 64 }}, |i| step(`s${{i}}`, || i)).len()"),
    );
    let (mut seqs, mut pars) = (Vec::new(), Vec::new());
    for r in 0..reps {
        let url = fresh(&format!("seq{r}"));
        let run = started(&on(&url, tmp).args(["run", &seq]).output().unwrap());
        seqs.push(n_seq as f64 / seconds(&url, tmp, &run));
        let url = fresh(&format!("par{r}"));
        let out = on(&url, tmp)
            .args(["run", &par, "--max-steps", "200000"])
            .output()
            .unwrap();
        let run = started(&out);
        pars.push(n_par as f64 / seconds(&url, tmp, &run));
    }
    let (seq, par) = (median(seqs), median(pars));
    report.line(
        "7. PostgreSQL: sequential durable steps",
        format!("{seq:.0} steps/s"),
        "(report)".into(),
        true,
    );
    report.line(
        "7. PostgreSQL: concurrent durable steps (64)",
        format!("{par:.0} steps/s"),
        "(report)".into(),
        true,
    );

    // 8. Takeover: a driver frozen (SIGSTOP) in the middle of a run; another process resumes
    //    it; the time from the freeze to the next step finishing there. Lease 3 s, grace 0.5 s.
    let slow = write(
        tmp,
        "pg-slow.rhai",
        "for i in 0..100 { step(`s${i}`, || i); sleep(\"20ms\"); }",
    );
    let mut takeovers = Vec::new();
    for r in 0..reps {
        let url = fresh(&format!("take{r}"));
        let lease = |mut c: Command| {
            c.env("LIFEBOAT_LEASE", "3s")
                .env("LIFEBOAT_LEASE_GRACE", "500ms");
            c
        };
        let mut first = lease(on(&url, tmp))
            .args(["run", &slow])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(first.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let run = line.trim().to_string();
        std::thread::sleep(std::time::Duration::from_millis(300));
        Command::new("kill")
            .args(["-STOP", &first.id().to_string()])
            .status()
            .unwrap();
        let frozen = Instant::now();
        let mut second = lease(on(&url, tmp))
            .args(["resume", &run])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first step the new driver finishes.
        let mut err = std::io::BufReader::new(second.stderr.take().unwrap());
        let mut l = String::new();
        while std::io::BufRead::read_line(&mut err, &mut l).unwrap() > 0 {
            if l.starts_with("  ✓ s") {
                break;
            }
            l.clear();
        }
        takeovers.push(frozen.elapsed().as_secs_f64());
        let _ = second.wait();
        let _ = first.kill();
        Command::new("kill")
            .args(["-CONT", &first.id().to_string()])
            .status()
            .unwrap();
        let _ = first.wait();
    }
    let takeover = median(takeovers);
    report.line(
        "8. takeover of a frozen driver (lease 3 s + grace 0.5 s)",
        format!("{takeover:.2} s"),
        "<= lease + grace + 1 s (4.5 s)".into(),
        takeover <= 4.5,
    );
}
