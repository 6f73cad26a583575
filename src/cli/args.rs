//! The command line's arguments: every command and option, as clap reads them. `cli` turns
//! them into requests to the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::{serve, sim};
use crate::engine::Limits;

/// Disaster-recovery runbooks that survive crashes: durable, resumable, rehearsable.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about, max_term_width = 100)]
pub struct Cli {
    /// Directory of the journal store.
    /// [default: $XDG_DATA_HOME/lifeboat, else ~/.local/share/lifeboat]
    #[arg(long, global = true, env = "LIFEBOAT_DB", value_name = "DIR")]
    pub(super) db: Option<PathBuf>,

    /// A shared store instead of the embedded one: a PostgreSQL URL
    /// (postgres://user:password@host:5432/lifeboat?sslmode=require). [default: `[store] url`
    /// in the config file, else the embedded store in --db]
    #[arg(long, global = true, env = "LIFEBOAT_STORE", value_name = "URL")]
    pub(super) store: Option<String>,

    /// lifeboat's config file (mail: [smtp], [imap], [notify]).
    /// [default: $XDG_CONFIG_HOME/lifeboat/config.toml, else ~/.config/lifeboat/config.toml]
    #[arg(long, global = true, env = "LIFEBOAT_CONFIG", value_name = "FILE")]
    pub(super) config: Option<PathBuf>,

    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
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
pub(super) enum TwinCommand {
    /// Read the account's servers, failover IPs and Private Clouds (GET calls only) through the
    /// configured OVH credentials, and write a simulator fixture. No credential is written.
    Snapshot {
        #[arg(long, value_name = "FILE")]
        out: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum StoreCommand {
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
pub(super) enum OvhCommand {
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
pub(super) struct StartArgs {
    /// At a gate that is not yet approved, exit with code 3 instead of waiting.
    #[arg(long)]
    pub(super) no_wait: bool,
    /// Approve this gate in advance (repeatable; `all` approves every gate).
    #[arg(long = "approve", value_name = "GATE")]
    pub(super) approve: Vec<String>,
    /// Plan: make the reads for real, record every change instead of sending it, skip waits,
    /// sleeps and gates, and print the changes the run would make.
    #[arg(long)]
    pub(super) plan: bool,
    /// Print the run's result as JSON on stdout at the end even on a terminal (it always is
    /// when stdout is a pipe or a file).
    #[arg(long)]
    pub(super) json: bool,
    /// Queue the run for a worker (`lifeboat worker`, shared store) and print its id: nothing
    /// runs here.
    #[arg(long)]
    pub(super) detach: bool,
}

/// What `retry`, `skip` and `resolve` do once the decision is journaled.
#[derive(Debug, Args, Clone)]
pub(super) struct AfterDecision {
    /// Only record the decision; continue later with `lifeboat resume`.
    #[arg(long)]
    pub(super) no_resume: bool,
    #[command(flatten)]
    pub(super) limits: LimitArgs,
}

/// Sandbox limits for runbooks.
#[derive(Debug, Args, Clone)]
pub(super) struct LimitArgs {
    /// Rhai operations per evaluation before the run is stopped (endless loops).
    #[arg(long, env = "LIFEBOAT_MAX_OPERATIONS", default_value_t = Limits::default().max_operations)]
    pub(super) max_operations: u64,
    /// Journaled steps in one run.
    #[arg(long, env = "LIFEBOAT_MAX_STEPS", default_value_t = Limits::default().max_steps)]
    pub(super) max_steps: u64,
    /// Bytes in one string.
    #[arg(long, env = "LIFEBOAT_MAX_STRING_SIZE", default_value_t = Limits::default().max_string_size)]
    pub(super) max_string_size: usize,
    /// Items in one array or map.
    #[arg(long, env = "LIFEBOAT_MAX_COLLECTION_SIZE", default_value_t = Limits::default().max_collection_size)]
    pub(super) max_collection_size: usize,
    /// Depth of nested function calls.
    #[arg(long, env = "LIFEBOAT_MAX_CALL_DEPTH", default_value_t = Limits::default().max_call_depth)]
    pub(super) max_call_depth: usize,
}

impl LimitArgs {
    pub(super) fn limits(&self) -> Limits {
        Limits {
            max_operations: self.max_operations,
            max_steps: self.max_steps,
            max_string_size: self.max_string_size,
            max_collection_size: self.max_collection_size,
            max_call_depth: self.max_call_depth,
        }
    }
}
