//! `lifeboat undo RUN`: shows the way back of a run (what will be undone, newest first, and
//! what will not, with why), then starts the undo run and follows it like `run` does.

use std::fmt::Write as _;

use crate::engine::undo::{WayBack, WayKind};
use crate::error::Error;
use crate::journal::Location;
use crate::journal::Mode;

use super::{finish, open_engine, output, parse_run_id, run_options};

pub fn run(
    db: &Location,
    config_file: Option<&std::path::Path>,
    run_id: &str,
    args: super::StartArgs,
    limits: crate::engine::Limits,
) -> Result<u8, Error> {
    if args.detach {
        return Err(Error::Usage(
            "undo --detach: an undo runs here (start it on the host that should drive it)".into(),
        ));
    }
    let original = parse_run_id(run_id)?;
    let exec = open_engine(db, config_file, super::clock()?, limits)?;
    // Shown before anything runs: a responder sees what will not come back first.
    let way = exec.engine.way_back(&original)?;
    eprint!("{}", describe(&way));
    let mode = if args.plan { Mode::Plan } else { Mode::Normal };
    let id = exec.engine.create_undo(&original, args.approve, mode)?;
    println!("{id}");
    let outcome = exec
        .engine
        .execute(&id, None, run_options(args.no_wait, vec![]));
    if args.plan {
        let finished = matches!(outcome, Ok(crate::engine::Outcome::Succeeded { .. }));
        eprint!(
            "{}",
            output::plan(&exec.engine.journal().events(&id)?, finished, "undo")
        );
    }
    finish(&id, outcome, args.json)
}

/// The way back, for the terminal.
pub fn describe(way: &WayBack) -> String {
    let mut out = String::new();
    let undos: Vec<_> = way.items.iter().filter(|i| i.is_covered()).collect();
    let left: Vec<_> = way.items.iter().filter(|i| !i.is_covered()).collect();
    let _ = match undos.len() {
        0 => writeln!(
            out,
            "way back of run {} ({}): no finished step declares an undo",
            way.original, way.runbook
        ),
        n => writeln!(
            out,
            "way back of run {} ({}): {n} step{} to undo, newest first:",
            way.original,
            way.runbook,
            if n == 1 { "" } else { "s" }
        ),
    };
    for (i, item) in undos.iter().enumerate() {
        let _ = writeln!(out, "  {:>2}. {}", i + 1, item.step);
    }
    if !left.is_empty() {
        let _ = writeln!(out, "not undone ({}):", left.len());
        for item in left {
            let label = match item.kind {
                WayKind::Irreversible { .. } => "irreversible",
                WayKind::NotDeclared => "no undo",
                WayKind::Unfinished { .. } => "unfinished",
                WayKind::Undo => "undo",
            };
            let why = match &item.kind {
                WayKind::Irreversible { why } => why.clone(),
                _ => item.describe(),
            };
            let _ = writeln!(out, "  {label:<14}{}: {why}", item.step);
        }
    }
    out
}
