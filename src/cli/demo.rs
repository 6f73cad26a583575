//! `lifeboat demo`: the SBG recovery, end to end, with nothing to configure. The simulator
//! serves the built-in account (a PCC in sbg1a, a PCC in rbx, failover IPs on SBG servers) in
//! this process, with time running 3600 times faster for OVH's tasks, and the shipped
//! `sbg-full-recovery` runbook runs against it in a fresh temporary store.

use std::sync::Arc;

use serde_json::json;

use crate::clock::{format_duration, Clock, SystemClock};
use crate::engine::ovh_api::OvhAccess;
use crate::engine::{Engine, Limits, Outcome, RunOptions, Runbook};
use crate::error::Error;
use crate::ovh::{config::Auth, Client, ClientOptions, Config};
use crate::secret::Secret;
use crate::sim::{Options, Sim};

const RUNBOOK_PATH: &str = "runbooks/sbg-full-recovery.rhai";
const RUNBOOK: &str = include_str!("../../runbooks/sbg-full-recovery.rhai");
/// The modules it imports, embedded likewise: the demo reads no file.
const MODULES: &[(&str, &str, &str)] = &[
    (
        "lib/pcc-relink",
        "runbooks/lib/pcc-relink.rhai",
        include_str!("../../runbooks/lib/pcc-relink.rhai"),
    ),
    (
        "lib/ovh-ip",
        "runbooks/lib/ovh-ip.rhai",
        include_str!("../../runbooks/lib/ovh-ip.rhai"),
    ),
];
/// OVH's tasks run this many times faster in the demo: a six-hour copy takes six seconds.
const SPEED: f64 = 3600.0;

/// Starts the simulator on `fixture` in `runtime` on a free loopback port, and a client that
/// holds the fixture's own credentials.
pub(super) fn start_sim(
    runtime: &tokio::runtime::Runtime,
    fixture: crate::sim::world::Fixture,
    speed: f64,
) -> Result<(Arc<Sim>, Arc<Client>), Error> {
    if !(speed > 0.0 && speed.is_finite()) {
        return Err(Error::Usage(format!(
            "--speed must be a positive number, not {speed}"
        )));
    }
    let account = fixture.account.clone();
    let sim = Sim::new(
        fixture,
        Options {
            speed,
            ..Options::default()
        },
    )
    .map_err(|e| Error::Usage(e.to_string()))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| Error::Usage(format!("cannot listen on 127.0.0.1: {e}")))?;
    let base = format!(
        "http://{}/1.0",
        listener
            .local_addr()
            .map_err(|e| Error::Usage(e.to_string()))?
    );
    runtime.spawn(crate::sim::serve(
        listener,
        sim.clone(),
        std::future::pending(),
    ));
    let config = Config {
        endpoint: base.clone(),
        base_url: base,
        auth: Auth::Signed {
            application_key: account.application_key,
            application_secret: Secret::new(account.application_secret),
            consumer_key: Some(Secret::new(account.consumer_key)),
        },
    };
    let client =
        Client::new(config, ClientOptions::default()).map_err(|e| Error::Usage(e.to_string()))?;
    Ok((sim, Arc::new(client)))
}

pub fn run() -> Result<u8, Error> {
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
    let (sim, client) = start_sim(&runtime, Sim::demo_fixture(), SPEED)?;
    let base = client.config().base_url.clone();

    let store = std::env::temp_dir().join(format!(
        "lifeboat-demo-{}-{}",
        std::process::id(),
        SystemClock.now()
    ));
    let journal = Arc::new(crate::journal::Journal::open(&store)?);
    let client: Result<Arc<Client>, String> = Ok(client);
    let engine = Engine::new(
        journal,
        Arc::new(SystemClock),
        Arc::new(super::output::Progress::new()),
        Limits::default(),
    )
    .with_ovh(OvhAccess {
        client,
        runtime: runtime.handle().clone(),
    });

    let modules = MODULES
        .iter()
        .map(|(import, file, source)| crate::journal::ModuleFile {
            import: import.to_string(),
            file: file.to_string(),
            source: source.to_string(),
        })
        .collect();
    let runbook = Runbook::from_stored(
        RUNBOOK_PATH,
        RUNBOOK.to_string(),
        modules,
        &Limits::default(),
    )?;
    // Given as an operator would on the command line; the runbook's defaults fill the rest.
    let mapping = json!({
        "178.32.10.1/32": "ns5007001.ip-137-74-1.eu",
        "178.32.10.2/32": "ns5007002.ip-137-74-2.eu",
        "178.32.10.8/30": "ns5007001.ip-137-74-1.eu",
        "178.32.10.20/32": "ns5007001.ip-137-74-1.eu",
        "178.32.10.30/32": "ns5009001.ip-142-44-1.net",
    });
    let given: Vec<(String, String)> = [
        ("source_pcc", "pcc-51-91-100-1".to_string()),
        ("source_dc", "1001".to_string()),
        ("dest_pcc", "pcc-137-74-200-1".to_string()),
        ("dest_dc", "2001".to_string()),
        ("poll", "1s".to_string()),
        ("mapping", mapping.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let params = crate::engine::params::resolve(&runbook.declaration.params, &given)?;

    eprintln!("lifeboat demo: the SBG fire, replayed against a simulated OVH account ({base})");
    eprintln!("  a PCC in sbg1a with 3 datastores, a PCC in rbx, 5 failover IPs on SBG servers;");
    eprintln!("  OVH's tasks run {SPEED}x faster (a six-hour copy takes six seconds).");
    eprintln!();
    let id = engine.create(
        &runbook,
        params,
        vec!["all".to_string()],
        crate::journal::Mode::Normal,
    )?;
    let outcome = engine.execute(&id, None, RunOptions::default())?;
    eprint!("{}", super::output::outcome(&id, &outcome));
    if let Outcome::Succeeded { result, .. } = &outcome {
        eprintln!();
        eprintln!("datastores restored (read-only): {}", result["datastores"]);
        let ips = &result["ips"];
        eprintln!(
            "failover IPs: {} moved, {} already there, {} refused, {} failed",
            ips["moved"], ips["already_there"], ips["refused"], ips["failed"]
        );
        let calls = sim.requests();
        let changes = calls.iter().filter(|r| r["method"] != "GET").count();
        eprintln!(
            "OVH API: {} calls, {} of them changes; emails OVH sent: {}",
            calls.len(),
            changes,
            sim.emails().len()
        );
    }
    eprintln!(
        "took {} (wall clock)",
        format_duration(started.elapsed().as_millis() as u64)
    );
    eprintln!(
        "the run's journal: lifeboat --db {} status {id}   (or log {id})",
        store.display()
    );
    println!("{id}");
    // The demo's account has one IP that OVH refuses to move, to show a partial recovery: that
    // is the demo working as meant, so it exits 0; `lifeboat run` of the same would exit 4.
    Ok(match &outcome {
        Outcome::Succeeded { .. } => 0,
        other => other.exit_code(),
    })
}
