//! `lifeboat retry`, `skip` and `resolve`: a person decides about a step the engine could not
//! decide on its own (a step in doubt, a step that failed), and the run continues.
//!
//! The decision is journaled (who, why) through the control API, so it is recorded the same
//! way from any terminal. When this process could open the store itself (nobody else holds it),
//! it then continues the run in the foreground, exactly as `lifeboat resume` would.

use std::path::Path;

use serde_json::Value;

use super::{clock, finish, open_engine, parse_run_id, run_options, LimitArgs};
use crate::control::{Access, Request, Response};
use crate::error::Error;
use crate::journal::Decision;

/// What to record, and whether to continue the run afterwards.
pub(super) struct DecideArgs<'a> {
    pub db: &'a crate::journal::Location,
    pub config_file: Option<&'a Path>,
    pub run_id: &'a str,
    pub step: String,
    pub decision: Decision,
    pub reason: String,
    pub no_resume: bool,
    pub limits: &'a LimitArgs,
}

/// Parses `--result JSON`.
pub(super) fn result_value(raw: Option<&str>) -> Result<Value, Error> {
    match raw {
        None => Ok(Value::Null),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            Error::Usage(format!(
                "--result: not JSON ({e}): {text:?}; a string needs quotes, as in --result '\"moved\"'"
            ))
        }),
    }
}

pub(super) fn run(args: DecideArgs<'_>) -> Result<u8, Error> {
    let id = parse_run_id(args.run_id)?;
    let access = Access::open(args.db, clock()?)?;
    let reply = access.call(Request::Decide {
        id: id.clone(),
        step: args.step,
        decision: args.decision,
        by: super::operator(),
        reason: args.reason,
    })?;
    let Response::Done { message } = reply else {
        return Err(super::unexpected(reply));
    };
    eprintln!("{message}");
    let here = matches!(access, Access::Local(..));
    // The store must be closed before the engine opens it again (sled locks it per open).
    drop(access);
    if args.no_resume {
        eprintln!("continue it with `lifeboat resume {id}`");
        return Ok(0);
    }
    if !here {
        eprintln!("another lifeboat process holds this store; continue the run there with `lifeboat resume {id}` once it is free");
        return Ok(0);
    }
    let exec = open_engine(args.db, args.config_file, clock()?, args.limits.limits())?;
    let outcome = exec
        .engine
        .execute(&id, None, run_options(false, Vec::new()));
    finish(&id, outcome, false)
}
