//! The command line: arguments in, validated requests to the library, rendering out.
//! Everything is validated (runbook compiled, parameters typed, run id well-formed) before a
//! run is created; no recovery logic lives here.

mod daemon;
mod decide;
mod demo;
mod doctor;
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

use clap::{Args, Parser, Subcommand};

use crate::clock::{Clock, ScaledClock, SystemClock};
use crate::control::{self, Access, Request, Response, Service};
use crate::engine::ovh_api::OvhAccess;
use crate::engine::{params, Engine, Limits, Outcome, Prompt, RunOptions, Runbook};
use crate::error::Error;
use crate::journal::{Decision, Location, Mode, RunExport, RunId};

/// Disaster-recovery runbooks that survive crashes: durable, resumable, rehearsable.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about, max_term_width = 100)]
pub struct Cli {
    /// Directory of the journal store.
    /// [default: $XDG_DATA_HOME/lifeboat, else ~/.local/share/lifeboat]
    #[arg(long, global = true, env = "LIFEBOAT_DB", value_name = "DIR")]
    db: Option<PathBuf>,

    /// A shared store instead of the embedded one: a PostgreSQL URL
    /// (postgres://user:password@host:5432/lifeboat?sslmode=require). [default: `[store] url`
    /// in the config file, else the embedded store in --db]
    #[arg(long, global = true, env = "LIFEBOAT_STORE", value_name = "URL")]
    store: Option<String>,

    /// lifeboat's config file (mail: [smtp], [imap], [notify]).
    /// [default: $XDG_CONFIG_HOME/lifeboat/config.toml, else ~/.config/lifeboat/config.toml]
    #[arg(long, global = true, env = "LIFEBOAT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile and validate a runbook, print its declaration; run nothing.
    Check {
        runbook: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Start a run; prints its run id, then progress.
    Run {
        runbook: String,
        /// A parameter, as name=value (repeatable).
        #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        #[command(flatten)]
        start: StartArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Undo a run: run the `undo` of its finished steps, newest first, as a new run linked
    /// to it. Lists what will be undone and what cannot be (irreversible steps) first.
    Undo {
        run_id: String,
        #[command(flatten)]
        start: StartArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Continue an interrupted, paused or failed run.
    Resume {
        run_id: String,
        /// At a gate that is not yet approved, exit with code 3 instead of waiting.
        #[arg(long)]
        no_wait: bool,
        /// Run this in-flight step again (name or position): you have checked it did not
        /// take effect, or accept that it runs twice (repeatable).
        #[arg(long = "retry-inflight", value_name = "STEP")]
        retry_inflight: Vec<String>,
        /// Continue with an edited runbook instead of the one stored with the run; it must
        /// agree with every step already journaled.
        #[arg(long, value_name = "FILE")]
        runbook: Option<String>,
        /// Print the run's result as JSON on stdout at the end even on a terminal.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List all runs, or show one run's steps.
    Status {
        run_id: Option<String>,
        #[arg(long)]
        json: bool,
        /// Only the orphaned runs: running, but nobody drives them (their process died: on a
        /// shared store, their lease expired past its grace period).
        #[arg(long, conflicts_with = "run_id")]
        orphans: bool,
    },
    /// Show a run's journal, event by event.
    Log {
        run_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve a gate a run waits at (it opens once as many different people as it needs
    /// have approved it).
    Approve {
        run_id: String,
        gate: String,
        /// Why, for the journal and the reports.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Stop a run for good; its journal stays.
    Abort {
        run_id: String,
        /// Why, for the journal and the reports.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Run a step again (one in doubt, or the one that failed), then continue the run.
    Retry {
        run_id: String,
        /// The step's name or position (`lifeboat status RUN` lists both).
        step: String,
        /// Why, for the journal and the reports.
        #[arg(long, default_value = "retried by hand")]
        reason: String,
        #[command(flatten)]
        after: AfterDecision,
    },
    /// Mark a step done by hand, with the value the runbook will see as its result, then
    /// continue the run.
    Skip {
        run_id: String,
        /// The step's name or position.
        step: String,
        /// The step's result as JSON (`null`, `"text"`, `{"task": 12}`).
        #[arg(long, value_name = "JSON")]
        result: String,
        /// Why, for the journal and the reports.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        after: AfterDecision,
    },
    /// Decide a step in doubt: it took effect (--done) or it did not (--not-done, so it runs
    /// again); then continue the run.
    Resolve {
        run_id: String,
        /// The step's name or position.
        step: String,
        /// The step's change happened.
        #[arg(
            long,
            required_unless_present = "not_done",
            conflicts_with = "not_done"
        )]
        done: bool,
        /// The step's change did not happen: run it again.
        #[arg(long)]
        not_done: bool,
        /// With --done: the step's result as JSON, as the runbook will see it [default: null].
        #[arg(long, value_name = "JSON", requires = "done")]
        result: Option<String>,
        /// What you checked, for the journal and the reports.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        after: AfterDecision,
    },
    /// Write a run (header and every event) as JSON, for backup or another machine.
    Export {
        run_id: String,
        /// Write here instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        out: Option<String>,
    },
    /// Add a run exported with `lifeboat export` to the store.
    Import { file: String },
    /// Check that the store is whole: its high-water mark, and every run's header and events.
    /// Exit 0 if it is, 2 if anything is missing or damaged.
    Verify,
    /// Run the SBG recovery end to end against the built-in simulator, in a fresh store.
    Demo,
    /// Try this machine's OVH and mail settings, read-only: OVH's clock and the credentials
    /// and their access rules, the SMTP server (nothing sent), the IMAP mailbox. Exit 0 when
    /// everything configured works, 1 otherwise.
    Doctor,
    /// Stores: `lifeboat store copy --from DIR --to postgres://...` moves every run.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Twins of a real account, for rehearsals.
    Twin {
        #[command(subcommand)]
        command: TwinCommand,
    },
    /// Run a runbook end to end against a twin of the account (a simulator in this process),
    /// then print its report. Gates are approved in advance.
    Rehearse {
        runbook: String,
        /// The twin (from `lifeboat twin snapshot`).
        #[arg(long, value_name = "FILE")]
        twin: String,
        /// OVH's tasks run this many times faster.
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        /// A parameter, as name=value (repeatable).
        #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Then undo it on the same twin (`lifeboat undo`), and report both ways: the time to
        /// recover against the RTO, the time to fail back, and whether every failover IP is
        /// routed as it was before.
        #[arg(long)]
        then_undo: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Drive the runs of a shared store that nobody drives: queued ones (`run --detach`) and
    /// orphaned ones (their driver's lease expired). Any number, on any hosts.
    Worker {
        /// Runs driven at once by this worker.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Hold the store, serve the control API, resume runs left behind, and start the
    /// `[[schedule]]` entries of the config file (plans and rehearsals).
    Daemon {
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// A run's report: steps, timings, RTO met or missed, changes made or planned.
    Report {
        run_id: String,
        /// md, json, or html (one self-contained page with a timeline).
        #[arg(long, default_value = "md")]
        format: String,
    },
    /// OVH credentials.
    Ovh {
        #[command(subcommand)]
        command: OvhCommand,
    },
    /// The war room: a web page and HTTP API over the store (runs live, gates approved by
    /// signed-in people, reports), until stopped. People sign in with `lifeboat token`s.
    Serve(serve::ServeArgs),
    /// Make a war-room token for a person: prints the token (once) and the config lines.
    Token {
        /// The person's name, as the journal will record their actions.
        name: String,
        /// viewer (reads), operator (also approves, aborts, decides steps) or admin (also
        /// exports).
        #[arg(long)]
        role: String,
    },
    /// Serve the OVH API simulator; prints a comment with its base URL, then `export` lines a
    /// shell can paste or `eval`.
    Sim(sim::SimArgs),
}

#[derive(Debug, Subcommand)]
enum TwinCommand {
    /// Read the account's servers, failover IPs and Private Clouds (GET calls only) through the
    /// configured OVH credentials, and write a simulator fixture. No credential is written.
    Snapshot {
        #[arg(long, value_name = "FILE")]
        out: String,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Copy every run of one store into another, each resumable there (its header, events,
    /// runbook and modules); runs the destination has already are left alone. A store is a
    /// directory (the embedded store) or a PostgreSQL URL.
    Copy {
        #[arg(long, value_name = "DIR|URL")]
        from: String,
        #[arg(long, value_name = "DIR|URL")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum OvhCommand {
    /// Request a consumer key with the access rules the shipped runbooks need, and print the
    /// URL where you validate it. Needs OVH_ENDPOINT, OVH_APPLICATION_KEY and
    /// OVH_APPLICATION_SECRET (or ovh.conf).
    Login {
        /// Where OVH sends the browser after validation.
        #[arg(long, value_name = "URL")]
        redirect: Option<String>,
    },
}

/// How `run` and `undo` start a run.
#[derive(Debug, Args)]
struct StartArgs {
    /// At a gate that is not yet approved, exit with code 3 instead of waiting.
    #[arg(long)]
    no_wait: bool,
    /// Approve this gate in advance (repeatable; `all` approves every gate).
    #[arg(long = "approve", value_name = "GATE")]
    approve: Vec<String>,
    /// Plan: make the reads for real, record every change instead of sending it, skip waits,
    /// sleeps and gates, and print the changes the run would make.
    #[arg(long)]
    plan: bool,
    /// Print the run's result as JSON on stdout at the end even on a terminal (it always is
    /// when stdout is a pipe or a file).
    #[arg(long)]
    json: bool,
    /// Queue the run for a worker (`lifeboat worker`, shared store) and print its id: nothing
    /// runs here.
    #[arg(long)]
    detach: bool,
}

/// What `retry`, `skip` and `resolve` do once the decision is journaled.
#[derive(Debug, Args, Clone)]
struct AfterDecision {
    /// Only record the decision; continue later with `lifeboat resume`.
    #[arg(long)]
    no_resume: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Sandbox limits for runbooks.
#[derive(Debug, Args, Clone)]
struct LimitArgs {
    /// Rhai operations per evaluation before the run is stopped (endless loops).
    #[arg(long, env = "LIFEBOAT_MAX_OPERATIONS", default_value_t = Limits::default().max_operations)]
    max_operations: u64,
    /// Journaled steps in one run.
    #[arg(long, env = "LIFEBOAT_MAX_STEPS", default_value_t = Limits::default().max_steps)]
    max_steps: u64,
    /// Bytes in one string.
    #[arg(long, env = "LIFEBOAT_MAX_STRING_SIZE", default_value_t = Limits::default().max_string_size)]
    max_string_size: usize,
    /// Items in one array or map.
    #[arg(long, env = "LIFEBOAT_MAX_COLLECTION_SIZE", default_value_t = Limits::default().max_collection_size)]
    max_collection_size: usize,
    /// Depth of nested function calls.
    #[arg(long, env = "LIFEBOAT_MAX_CALL_DEPTH", default_value_t = Limits::default().max_call_depth)]
    max_call_depth: usize,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_operations: self.max_operations,
            max_steps: self.max_steps,
            max_string_size: self.max_string_size,
            max_collection_size: self.max_collection_size,
            max_call_depth: self.max_call_depth,
        }
    }
}

/// Runs the command line and returns the process exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> u8 {
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

/// Client limits from the environment: `LIFEBOAT_OVH_RATE_LIMIT` (requests per second) and
/// `LIFEBOAT_OVH_CONCURRENCY` (requests in flight).
fn client_options() -> Result<crate::ovh::ClientOptions, String> {
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

/// An engine ready to execute runs, with the async runtime its OVH calls use.
struct Executor {
    engine: Engine,
    _runtime: tokio::runtime::Runtime,
}

/// Opens the store for executing a run, serves the control API for other terminals, and
/// connects the OVH client (from `OVH_*` and ovh.conf; a runbook that calls `ovh` without
/// them fails with the reason).
fn open_engine(
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
fn new_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))
}

/// [`open_engine`] with a given runtime and OVH client (a rehearsal's simulator).
fn open_engine_with(
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

fn run_options(no_wait: bool, retry_inflight: Vec<String>) -> RunOptions {
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
fn finish(
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

/// The war room's approval links for gate emails, when `[web] url` is configured.
fn gate_links(
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
