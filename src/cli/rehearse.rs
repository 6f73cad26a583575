//! `lifeboat rehearse`: a runbook end to end against a twin of the account (the simulator on
//! a fixture, inside this process), its report, and with `--then-undo` the way back too: the
//! undo run on the same twin, both durations, and whether the twin ended as it started for
//! everything that can be undone.

use crate::error::Error;
use crate::journal::Location;
use crate::journal::{Mode, RunId};
use crate::twin::Comparison;

use super::{demo, finish, load_runbook, new_runtime, open_engine_with, preflight, run_options};

pub struct RehearseArgs {
    pub runbook: String,
    pub twin: String,
    pub speed: f64,
    pub params: Vec<String>,
    pub then_undo: bool,
    pub limits: crate::engine::Limits,
}

pub fn run(
    db: &Location,
    config_file: Option<&std::path::Path>,
    args: RehearseArgs,
) -> Result<u8, Error> {
    let (rb, values) = load_runbook(&args.runbook, &args.params, &args.limits)?;
    // The twin answers for OVH; mail is this machine's.
    preflight::check(&rb, config_file, Some(&values), false)?;
    let fixture =
        crate::sim::Sim::load_fixture(&args.twin).map_err(|e| Error::Usage(e.to_string()))?;
    let runtime = new_runtime()?;
    let (sim, client) = demo::start_sim(&runtime, fixture, args.speed)?;
    let start = sim.state();
    let exec = open_engine_with(
        db,
        config_file,
        super::clock()?,
        args.limits,
        runtime,
        Ok(client),
    )?;
    let engine = &exec.engine;
    let all = vec!["all".to_string()];
    let id = engine.create(&rb, values, all.clone(), Mode::Normal)?;
    println!("{id}");
    let outcome = engine.execute(&id, None, run_options(true, vec![]));
    let code = finish(&id, outcome, false)?;
    let recovery = report(engine, &id)?;
    print!("{}", crate::report::markdown(&recovery));
    if !args.then_undo {
        return Ok(code);
    }

    eprint!("{}", super::undo::describe(&engine.way_back(&id)?));
    let undo = engine.create_undo(&id, all, Mode::Normal)?;
    println!("{undo}");
    let outcome = engine.execute(&undo, None, run_options(true, vec![]));
    let undo_code = finish(&undo, outcome, false)?;
    let mut recovery = recovery;
    recovery.undone_by = vec![undo.to_string()];
    let back = report(engine, &undo)?;
    let twin = Comparison::of(&start, &sim.state());
    print!("\n{}", crate::report::markdown(&back));
    print!(
        "\n{}",
        crate::report::there_and_back(&recovery, &back, &twin)
    );
    // A way back that leaves an IP elsewhere failed the rehearsal, whatever the runs say.
    Ok(match (code, undo_code) {
        _ if !twin.ips_restored() => 1,
        (0, c) => c,
        (c, _) => c,
    })
}

fn report(engine: &crate::engine::Engine, id: &RunId) -> Result<crate::report::Report, Error> {
    let journal = engine.journal();
    Ok(crate::report::build(
        &journal.run(id)?,
        &journal.events(id)?,
    )?)
}
