//! The command line: arguments in, validated requests to the library, rendering out.
//! Everything is validated (runbook compiled, parameters typed, run id well-formed) before a
//! run is created; no recovery logic lives here.

mod args;
mod daemon;
mod decide;
mod demo;
mod doctor;
mod executor;
mod output;
mod preflight;
mod rehearse;
mod serve;
mod sim;
mod store;
mod undo;
mod worker;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use args::{
    AfterDecision, Cli, Command, LimitArgs, OvhCommand, StartArgs, StoreCommand, TwinCommand,
};
use executor::{
    client_options, finish, gate_links, new_runtime, open_engine, open_engine_with, run_options,
};

use crate::clock::{Clock, ScaledClock, SystemClock};
use crate::control::{self, Access, Request, Response, Service};
use crate::engine::ovh_api::OvhAccess;
use crate::engine::{params, Engine, Limits, Outcome, Prompt, RunOptions, Runbook};
use crate::error::Error;
use crate::journal::{Decision, Location, Mode, RunExport, RunId};

/// Runs the command line and returns the process exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> u8 {
    quiet_on_closed_stdout();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// `lifeboat log RUN | head`: once the reader has gone, printing fails and Rust's `print!`
/// panics. That is no error of lifeboat's: exit quietly, as a Unix tool killed by SIGPIPE
/// would (141), and keep every other panic as it is.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// `[store] url` of the config file, if it has one.
fn store_url(config_file: Option<&std::path::Path>) -> Result<Option<String>, Error> {
    let default = crate::mail::default_config_path();
    let Some(path) = config_file.or(default.as_deref()).filter(|p| p.exists()) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|source| Error::File {
        path: path.display().to_string(),
        source,
    })?;
    let value: toml::Value =
        toml::from_str(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    match value.get("store").map(|s| s.get("url")) {
        None => Ok(None),
        Some(Some(toml::Value::String(url))) => Ok(Some(url.clone())),
        Some(_) => Err(Error::Usage(format!(
            "{}: [store] needs url = \"postgres://...\"",
            path.display()
        ))),
    }
}

fn data_dir(db: Option<PathBuf>) -> Result<PathBuf, Error> {
    if let Some(db) = db {
        return Ok(db);
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("lifeboat"));
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".local/share/lifeboat"))
        .ok_or_else(|| {
            Error::Usage("no --db given and neither XDG_DATA_HOME nor HOME is set".into())
        })
}

/// The engine clock: the wall clock, or a compressed one (`LIFEBOAT_CLOCK=SCALE[@ANCHOR_MS]`)
/// for tests and rehearsals.
fn clock() -> Result<Arc<dyn Clock>, Error> {
    match std::env::var("LIFEBOAT_CLOCK") {
        Ok(spec) if !spec.is_empty() => ScaledClock::parse(&spec)
            .map(|c| Arc::new(c) as Arc<dyn Clock>)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "LIFEBOAT_CLOCK: expected SCALE or SCALE@ANCHOR_MS, got {spec:?}"
                ))
            }),
        _ => Ok(Arc::new(SystemClock)),
    }
}

fn parse_run_id(raw: &str) -> Result<RunId, Error> {
    Ok(RunId::parse(raw)?)
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    let config_file = cli.config;
    let store = match cli.store {
        Some(url) => Some(url),
        None => store_url(config_file.as_deref())?,
    };
    let db = Location::new(data_dir(cli.db)?, store.as_deref())?;
    match cli.command {
        Command::Check { runbook, limits } => {
            let rb = Runbook::load(&runbook, &limits.limits())?;
            print!("{}", output::declaration(&rb));
            // What the runbook needs, and whether this machine's settings provide it: the
            // same check `run` makes before it creates a run. The runbook itself is fine, so
            // this is reported, not an error: it may be checked on a machine without them.
            print!("{}", output::needs(&rb.needs));
            match preflight::check(&rb, config_file.as_deref(), None, true) {
                _ if rb.needs == Default::default() => {}
                Ok(notes) if notes.is_empty() => {
                    println!("configuration: what it uses is configured here")
                }
                Ok(notes) => {
                    for note in notes {
                        println!("configuration: {note}");
                    }
                }
                Err(e) => println!("configuration: `lifeboat run` would refuse it here: {e}"),
            }
            Ok(0)
        }
        Command::Run {
            runbook,
            params: raw,
            start:
                StartArgs {
                    no_wait,
                    approve,
                    plan,
                    json,
                    detach,
                },
            limits,
        } => {
            let limits = limits.limits();
            // Validate everything before touching the store.
            let (rb, values) = load_runbook(&runbook, &raw, &limits)?;
            preflight::check(&rb, config_file.as_deref(), Some(&values), true)?;
            let clock = clock()?;
            let exec = open_engine(&db, config_file.as_deref(), clock, limits)?;
            let mode = if plan { Mode::Plan } else { Mode::Normal };
            if detach {
                let id = exec.engine.queue(&rb, values, approve, mode)?;
                println!("{id}");
                eprintln!("queued run {id}: a worker (`lifeboat worker`) drives it; `lifeboat status {id}` follows it");
                return Ok(0);
            }
            let id = exec.engine.create(&rb, values, approve, mode)?;
            println!("{id}");
            let outcome = exec.engine.execute(&id, None, run_options(no_wait, vec![]));
            if plan {
                let finished = matches!(
                    outcome,
                    Ok(Outcome::Succeeded { .. } | Outcome::AlreadySucceeded { .. })
                );
                eprint!(
                    "{}",
                    output::plan(&exec.engine.journal().events(&id)?, finished, "recovery")
                );
            }
            finish(&id, outcome, json)
        }
        Command::Resume {
            run_id,
            no_wait,
            retry_inflight,
            runbook,
            json,
            limits,
        } => {
            let limits = limits.limits();
            let id = parse_run_id(&run_id)?;
            let replacement = runbook.map(|p| Runbook::load(&p, &limits)).transpose()?;
            let exec = open_engine(&db, config_file.as_deref(), clock()?, limits)?;
            let outcome =
                exec.engine
                    .execute(&id, replacement, run_options(no_wait, retry_inflight));
            finish(&id, outcome, json)
        }
        Command::Undo {
            run_id,
            start,
            limits,
        } => undo::run(&db, config_file.as_deref(), &run_id, start, limits.limits()),
        Command::Status {
            run_id,
            json,
            orphans,
        } => {
            let access = Access::open(&db, clock()?)?;
            match run_id {
                None => match access.call(Request::Runs)? {
                    Response::Runs { mut runs, live, .. } => {
                        if orphans {
                            let grace = crate::journal::LeaseSettings::from_env()
                                .map_err(Error::Usage)?
                                .grace
                                .as_secs_f64();
                            let mut kept = Vec::new();
                            for run in runs {
                                if !matches!(run.state, crate::journal::RunState::Running { .. })
                                    || live.contains_key(&run.id)
                                {
                                    continue;
                                }
                                let lease =
                                    match access.call(Request::Run { id: run.id.clone() })? {
                                        Response::Run { lease, .. } => lease,
                                        other => return Err(unexpected(other)),
                                    };
                                if lease.is_none_or(|l| l.expires_in < -grace) {
                                    kept.push(run);
                                }
                            }
                            runs = kept;
                        }
                        print!("{}", output::runs(&runs, &live, json))
                    }
                    other => return Err(unexpected(other)),
                },
                Some(raw) => match access.call(Request::Run {
                    id: parse_run_id(&raw)?,
                })? {
                    Response::Run {
                        run,
                        events,
                        live,
                        lease,
                    } => {
                        let links = output::Links {
                            undone_by: undone_by(&access, &run.id)?,
                            lease,
                        };
                        print!(
                            "{}",
                            output::run_status(&run, &events, live.as_ref(), &links, json)?
                        )
                    }
                    other => return Err(unexpected(other)),
                },
            }
            Ok(0)
        }
        Command::Log { run_id, json } => {
            let access = Access::open(&db, clock()?)?;
            match access.call(Request::Run {
                id: parse_run_id(&run_id)?,
            })? {
                Response::Run { run, events, .. } => {
                    // The links between a run and its way back, above its events (not in the
                    // JSON lines, which are events only).
                    if !json {
                        if let Some(of) = &run.undo_of {
                            println!("undo of run {of}");
                        }
                        for by in undone_by(&access, &run.id)? {
                            println!("undone by run {by}");
                        }
                    }
                    print!("{}", output::events(&events, json))
                }
                other => return Err(unexpected(other)),
            }
            Ok(0)
        }
        Command::Approve {
            run_id,
            gate,
            reason,
        } => {
            let by = operator();
            let reply = Access::open(&db, clock()?)?.call(Request::Approve {
                id: parse_run_id(&run_id)?,
                gate,
                by,
                reason,
            })?;
            done(reply)
        }
        Command::Abort { run_id, reason } => {
            let reply = Access::open(&db, clock()?)?.call(Request::Abort {
                id: parse_run_id(&run_id)?,
                by: operator(),
                reason,
            })?;
            done(reply)
        }
        Command::Retry {
            run_id,
            step,
            reason,
            after,
        } => decide(
            &db,
            config_file.as_deref(),
            &run_id,
            step,
            Decision::Retry,
            reason,
            &after,
        ),
        Command::Skip {
            run_id,
            step,
            result,
            reason,
            after,
        } => {
            let result = decide::result_value(Some(&result))?;
            let decision = Decision::Skip { result };
            decide(
                &db,
                config_file.as_deref(),
                &run_id,
                step,
                decision,
                reason,
                &after,
            )
        }
        Command::Resolve {
            run_id,
            step,
            done,
            not_done: _,
            result,
            reason,
            after,
        } => {
            let decision = if done {
                Decision::Done {
                    result: decide::result_value(result.as_deref())?,
                }
            } else {
                Decision::NotDone
            };
            decide(
                &db,
                config_file.as_deref(),
                &run_id,
                step,
                decision,
                reason,
                &after,
            )
        }
        Command::Export { run_id, out } => {
            match Access::open(&db, clock()?)?.call(Request::Export {
                id: parse_run_id(&run_id)?,
            })? {
                Response::Export { export } => {
                    let json = serde_json::to_string_pretty(&export)
                        .map_err(|e| Error::Usage(e.to_string()))?;
                    match out {
                        Some(path) => std::fs::write(&path, json + "\n")
                            .map_err(|source| Error::File { path, source })?,
                        None => println!("{json}"),
                    }
                }
                other => return Err(unexpected(other)),
            }
            Ok(0)
        }
        Command::Demo => demo::run(),
        Command::Verify => {
            let Location::Dir(dir) = &db else {
                return Err(Error::Usage("`lifeboat verify` checks the embedded store (--db); a PostgreSQL store is checked by PostgreSQL itself".into()));
            };
            let journal = crate::journal::Journal::open(dir)?;
            let checks = journal.verify()?;
            print!("{}", output::verify(dir, &checks));
            Ok(if checks.iter().all(|c| c.problems.is_empty()) {
                0
            } else {
                2
            })
        }
        Command::Worker {
            concurrency,
            limits,
        } => worker::run(
            &db,
            config_file.as_deref(),
            clock()?,
            limits.limits(),
            concurrency.max(1),
        ),
        Command::Daemon { limits } => {
            daemon::run(&db, config_file.as_deref(), clock()?, limits.limits())
        }
        Command::Doctor => doctor::run(config_file.as_deref()),
        Command::Store {
            command: StoreCommand::Copy { from, to },
        } => store::copy(&from, &to),
        Command::Twin {
            command: TwinCommand::Snapshot { out },
        } => twin_snapshot(&out),
        Command::Rehearse {
            runbook,
            twin,
            speed,
            params,
            then_undo,
            limits,
        } => rehearse::run(
            &db,
            config_file.as_deref(),
            rehearse::RehearseArgs {
                runbook,
                twin,
                speed,
                params,
                then_undo,
                limits: limits.limits(),
            },
        ),
        Command::Report { run_id, format } => {
            let id = parse_run_id(&run_id)?;
            let access = Access::open(&db, clock()?)?;
            match access.call(Request::Run { id })? {
                Response::Run { run, events, .. } => {
                    let mut report = crate::report::build(&run, &events)?;
                    report.undone_by = undone_by(&access, &run.id)?
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    match format.as_str() {
                        "md" => print!("{}", crate::report::markdown(&report)),
                        "html" => print!("{}", crate::report::html(&report)),
                        "json" => println!(
                            "{}",
                            serde_json::to_string_pretty(&report)
                                .map_err(|e| Error::Usage(e.to_string()))?
                        ),
                        other => {
                            return Err(Error::Usage(format!(
                                "--format: md or json, not {other:?}"
                            )))
                        }
                    }
                }
                other => return Err(unexpected(other)),
            }
            Ok(0)
        }
        Command::Ovh {
            command: OvhCommand::Login { redirect },
        } => ovh_login(redirect),
        Command::Sim(args) => sim::run(args),
        Command::Serve(args) => serve::serve(args, &db, config_file.as_deref(), clock()?),
        Command::Token { name, role } => serve::token(&name, &role),
        Command::Import { file } => {
            let text = std::fs::read_to_string(&file).map_err(|source| Error::File {
                path: file.clone(),
                source,
            })?;
            let export: RunExport = serde_json::from_str(&text)
                .map_err(|e| Error::Usage(format!("{file}: not a lifeboat run export: {e}")))?;
            done(Access::open(&db, clock()?)?.call(Request::Import {
                export: Box::new(export),
            })?)
        }
    }
}

fn decide(
    db: &Location,
    config_file: Option<&std::path::Path>,
    run_id: &str,
    step: String,
    decision: Decision,
    reason: String,
    after: &AfterDecision,
) -> Result<u8, Error> {
    decide::run(decide::DecideArgs {
        db,
        config_file,
        run_id,
        step,
        decision,
        reason,
        no_resume: after.no_resume,
        limits: &after.limits,
    })
}

fn ovh_login(redirect: Option<String>) -> Result<u8, Error> {
    let mut config = crate::ovh::Config::from_environment(&Default::default())
        .map_err(|e| Error::Usage(e.to_string()))?;
    let crate::ovh::Auth::Signed { consumer_key, .. } = &mut config.auth else {
        return Err(Error::Usage("`lifeboat ovh login` is for application keys; OAuth2 service accounts need no consumer key".into()));
    };
    *consumer_key = None;
    let client = crate::ovh::Client::new(config, Default::default())
        .map_err(|e| Error::Usage(e.to_string()))?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
    let rules = crate::ovh::recovery_access_rules();
    let answer = runtime
        .block_on(client.request_consumer_key(&rules, redirect.as_deref()))
        .map_err(|e| Error::Usage(e.to_string()))?;
    let ck = answer["consumerKey"].as_str().unwrap_or_default();
    println!(
        "consumer key: {ck} ({})",
        answer["state"].as_str().unwrap_or("?")
    );
    println!(
        "validate it (log in and approve): {}",
        answer["validationUrl"].as_str().unwrap_or("?")
    );
    println!("then use it: export OVH_CONSUMER_KEY={ck}   (or consumer_key= in ovh.conf)");
    println!("access rules requested:");
    for r in rules {
        println!("  {:6} {}", r.method, r.path);
    }
    Ok(0)
}

/// Compiles a runbook and types its `-p name=value` parameters: everything a run needs, checked
/// before the store is touched.
fn load_runbook(
    path: &str,
    raw: &[String],
    limits: &Limits,
) -> Result<(Runbook, serde_json::Map<String, serde_json::Value>), Error> {
    let rb = Runbook::load(path, limits)?;
    let given = raw
        .iter()
        .map(|a| params::split_assignment(a))
        .collect::<Result<Vec<_>, _>>()?;
    let values = params::resolve(&rb.declaration.params, &given)?;
    Ok((rb, values))
}

fn twin_snapshot(out: &str) -> Result<u8, Error> {
    let config = crate::ovh::Config::from_environment(&Default::default())
        .map_err(|e| Error::Usage(e.to_string()))?;
    let client = crate::ovh::Client::new(config, client_options().map_err(Error::Usage)?)
        .map_err(|e| Error::Usage(e.to_string()))?;
    let runtime = new_runtime()?;
    let fixture = runtime
        .block_on(crate::twin::snapshot(&client))
        .map_err(|e| Error::Usage(e.to_string()))?;
    let json = serde_json::to_string_pretty(&fixture).map_err(|e| Error::Usage(e.to_string()))?;
    std::fs::write(out, json + "\n").map_err(|source| Error::File {
        path: out.to_string(),
        source,
    })?;
    eprintln!(
        "twin written to {out}: {} servers, {} failover IPs, {} Private Clouds (credentials are placeholders, never the account's)",
        fixture.servers.len(),
        fixture.ips.len(),
        fixture.pccs.len()
    );
    Ok(0)
}

/// The runs that undo run `id` (`lifeboat undo`; plans of it changed nothing), oldest first.
fn undone_by(access: &Access, id: &RunId) -> Result<Vec<RunId>, Error> {
    match access.call(Request::Runs)? {
        Response::Runs { runs, .. } => Ok(runs
            .into_iter()
            .filter(|r| r.undo_of.as_ref() == Some(id) && r.mode != Mode::Plan)
            .map(|r| r.id)
            .collect()),
        other => Err(unexpected(other)),
    }
}

fn done(reply: Response) -> Result<u8, Error> {
    match reply {
        Response::Done { message } => {
            println!("{message}");
            Ok(0)
        }
        other => Err(unexpected(other)),
    }
}

fn unexpected(reply: Response) -> Error {
    Error::Usage(format!("unexpected answer from the control API: {reply:?}"))
}

/// Who is acting, for the journal: `user@host` (the login name and this machine's name).
fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "operator".to_string());
    match hostname::get() {
        Ok(host) if !host.is_empty() => format!("{user}@{}", host.to_string_lossy()),
        _ => user,
    }
}
