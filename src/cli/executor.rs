//! How a command gets an engine: the config file's mail and war-room settings, the OVH
//! client, the notifier, the store, and the control socket it then serves; and how a run's end
//! is printed and turned into an exit code.

use std::sync::Arc;

use super::*;

/// Client limits from the environment: `LIFEBOAT_OVH_RATE_LIMIT` (requests per second) and
/// `LIFEBOAT_OVH_CONCURRENCY` (requests in flight).
pub(super) fn client_options() -> Result<crate::ovh::ClientOptions, String> {
    let mut opts = crate::ovh::ClientOptions::default();
    if let Ok(v) = std::env::var("LIFEBOAT_OVH_RATE_LIMIT") {
        let rate: f64 = v.parse().map_err(|_| {
            format!("LIFEBOAT_OVH_RATE_LIMIT: expected requests per second, got {v:?}")
        })?;
        opts.rate_limit = Some(rate);
    }
    if let Some(path) = std::env::var_os("LIFEBOAT_OVH_CA_FILE").filter(|v| !v.is_empty()) {
        let pem = std::fs::read(&path).map_err(|e| {
            format!(
                "LIFEBOAT_OVH_CA_FILE {}: {e}",
                std::path::Path::new(&path).display()
            )
        })?;
        opts.extra_ca_pem = Some(pem);
    }
    if let Ok(v) = std::env::var("LIFEBOAT_OVH_CONCURRENCY") {
        opts.concurrency = v
            .parse()
            .map_err(|_| format!("LIFEBOAT_OVH_CONCURRENCY: expected a number, got {v:?}"))?;
    }
    Ok(opts)
}

/// An engine ready to execute runs, with the async runtime its OVH calls use.
pub(super) struct Executor {
    pub(super) engine: Engine,
    _runtime: tokio::runtime::Runtime,
}

/// Opens the store for executing a run, serves the control API for other terminals, and
/// connects the OVH client (from `OVH_*` and ovh.conf; a runbook that calls `ovh` without
/// them fails with the reason).
pub(super) fn open_engine(
    db: &Location,
    config_file: Option<&std::path::Path>,
    clock: Arc<dyn Clock>,
    limits: Limits,
) -> Result<Executor, Error> {
    let runtime = new_runtime()?;
    let client = crate::ovh::Config::from_environment(&Default::default())
        .map_err(|e| e.to_string())
        .and_then(|config| {
            crate::ovh::Client::new(config, client_options()?)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        });
    open_engine_with(db, config_file, clock, limits, runtime, client)
}

/// The async runtime OVH calls, mail and an in-process simulator run on.
pub(super) fn new_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))
}

/// [`open_engine`] with a given runtime and OVH client (a rehearsal's simulator).
pub(super) fn open_engine_with(
    db: &Location,
    config_file: Option<&std::path::Path>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    runtime: tokio::runtime::Runtime,
    client: Result<Arc<crate::ovh::Client>, String>,
) -> Result<Executor, Error> {
    // A config file that is there but wrong stops everything before the run: better now than
    // at the notification six hours in.
    let default_config = crate::mail::default_config_path();
    let mail = crate::mail::MailConfig::load(config_file.or(default_config.as_deref()), &|k| {
        std::env::var(k).ok().filter(|v| !v.is_empty())
    })
    .map_err(|e| Error::Usage(e.to_string()))?;
    let journal = Access::open_for_run(db)?;
    let observer = crate::mail::notifier::Notifier::wrap(
        Arc::new(output::Progress::new()),
        mail.clone(),
        runtime.handle().clone(),
        gate_links(config_file, db, &clock)?,
    );
    let engine = Engine::new(journal.clone(), clock.clone(), observer, limits)
        .with_ovh(OvhAccess {
            client,
            runtime: runtime.handle().clone(),
        })
        .with_mail(crate::engine::mail_api::MailAccess {
            config: Ok(mail),
            runtime: runtime.handle().clone(),
        });
    let service = Arc::new(Service::new(journal, engine.live(), clock));
    if let Err(e) = control::serve(db, service) {
        eprintln!("warning: {e}; other terminals cannot reach this run until it ends");
    }
    Ok(Executor {
        engine,
        _runtime: runtime,
    })
}

pub(super) fn run_options(no_wait: bool, retry_inflight: Vec<String>) -> RunOptions {
    let prompt: Option<Prompt> = (!no_wait && std::io::stdin().is_terminal()).then(|| {
        Arc::new(|gate: &str, _message: &str| {
            eprintln!("    type yes to approve gate {gate:?} here:");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).is_ok()
                && line.trim().eq_ignore_ascii_case("yes")
        }) as Prompt
    });
    RunOptions {
        no_wait,
        retry_inflight,
        prompt,
        claim_only: false,
    }
}

/// Ends a run's command: the readable outcome on stderr; the result as JSON on stdout when
/// stdout is not a terminal (scripts, pipes) or `json` asks for it.
pub(super) fn finish(
    id: &RunId,
    outcome: Result<Outcome, crate::engine::Error>,
    json: bool,
) -> Result<u8, Error> {
    use std::io::IsTerminal as _;
    control::drain(std::time::Duration::from_secs(2));
    let outcome = outcome?;
    eprint!("{}", output::outcome(id, &outcome));
    let print_json = json || !std::io::stdout().is_terminal();
    match &outcome {
        Outcome::Succeeded { result, .. } | Outcome::AlreadySucceeded { result, .. }
            if print_json && !result.is_null() =>
        {
            println!("{result}")
        }
        _ => {}
    }
    Ok(outcome.exit_code())
}

/// The war room's approval links for gate emails, when `[web] url` is configured.
pub(super) fn gate_links(
    config_file: Option<&std::path::Path>,
    db: &Location,
    clock: &Arc<dyn Clock>,
) -> Result<Option<crate::mail::Linking>, Error> {
    let (settings, _) = crate::web::Settings::load(config_file)?;
    Ok(settings.links(db.dir())?.map(|l| {
        (
            Arc::new(l) as Arc<dyn crate::mail::GateLinks>,
            clock.clone(),
        )
    }))
}
