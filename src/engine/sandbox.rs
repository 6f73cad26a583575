//! The Rhai engine a runbook runs in: a raw engine (no file module resolver, no printing to the
//! terminal) with the standard package and hard limits on operations, depth and data sizes.
//! Runbooks reach the outside world only through the functions `script_api` registers.

use rhai::packages::{Package, StandardPackage};

/// Bounds on what a runbook may consume. Every one is configurable from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Rhai operations per evaluation (the main script, or one parallel branch).
    pub max_operations: u64,
    /// Journaled positions (steps, sleeps, gates...) in one run.
    pub max_steps: u64,
    /// Bytes in one string.
    pub max_string_size: usize,
    /// Items in one array or map (nested collections count their items too).
    pub max_collection_size: usize,
    /// Nested function calls.
    pub max_call_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 50_000_000,
            max_steps: 100_000,
            max_string_size: 1 << 20,
            max_collection_size: 100_000,
            max_call_depth: 64,
        }
    }
}

/// A fresh sandboxed engine with `limits` applied and nothing of lifeboat's registered.
pub fn new_engine(limits: &Limits) -> rhai::Engine {
    let mut engine = rhai::Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());
    engine
        .set_max_operations(limits.max_operations)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_collection_size)
        .set_max_map_size(limits.max_collection_size)
        .set_max_call_levels(limits.max_call_depth)
        .set_max_expr_depths(128, 64)
        .set_strict_variables(true)
        // Code built from strings at run time could not be checked before the run.
        .disable_symbol("eval");
    // Output goes through `log()`, which is journaled; print/debug are dropped rather than
    // written to a terminal the operator may not be watching.
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine
}
