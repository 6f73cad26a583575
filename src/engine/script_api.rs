//! The functions a runbook can call. Each is a thin adapter from Rhai's calling convention to
//! a `RunContext` method; the semantics live there. This is the sandbox's only door: a
//! function not registered here does not exist for a runbook.

use std::sync::Arc;

use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext};

use super::run::{script_error, GateOptions, RunContext, ScriptResult};
use super::step::duration_option;

/// The functions registered here, for `check`'s unknown-function test (kept honest by a test
/// that compares them with what is registered).
pub(crate) const FUNCTIONS: &[&str] = &[
    "runbook",
    "step",
    "sleep",
    "approve",
    "log",
    "warn",
    "outcome",
    "fail",
    "now",
    "format_time",
    "duration_ms",
    "timestamp",
    "parallel",
    #[cfg(feature = "test-hooks")]
    "test_effect",
    #[cfg(feature = "test-hooks")]
    "test_effect_count",
];

pub(super) fn register(engine: &mut rhai::Engine, ctx: Arc<RunContext>) {
    let c = ctx.clone();
    engine.on_progress(move |ops| c.on_progress(ops));

    // The declaration was read before the run; at run time it does nothing.
    engine.register_fn("runbook", |_: Map| {});

    let c = ctx.clone();
    engine.register_fn(
        "step",
        move |call: NativeCallContext, name: &str, body: FnPtr| -> ScriptResult<Dynamic> {
            c.step(&call, name, Map::new(), body)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "step",
        move |call: NativeCallContext,
              name: &str,
              opts: Map,
              body: FnPtr|
              -> ScriptResult<Dynamic> { c.step(&call, name, opts, body) },
    );

    let c = ctx.clone();
    engine.register_fn(
        "sleep",
        move |call: NativeCallContext, d: Dynamic| -> ScriptResult<()> {
            let pos = call.call_position();
            let d = duration_option("sleep", &d).map_err(|m| script_error(m, pos))?;
            c.sleep(pos, d)
        },
    );

    let c = ctx.clone();
    engine.register_fn(
        "approve",
        move |call: NativeCallContext, gate: &str, message: &str| -> ScriptResult<()> {
            c.gate(call.call_position(), gate, message, GateOptions::default())
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "approve",
        move |call: NativeCallContext, gate: &str, message: &str, opts: Map| -> ScriptResult<()> {
            let pos = call.call_position();
            let options = GateOptions::from_map(opts).map_err(|m| script_error(m, pos))?;
            c.gate(pos, gate, message, options)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "approve",
        move |call: NativeCallContext, gate: &str| -> ScriptResult<()> {
            c.gate(call.call_position(), gate, "", GateOptions::default())
        },
    );

    let c = ctx.clone();
    engine.register_fn(
        "log",
        move |call: NativeCallContext, message: Dynamic| -> ScriptResult<()> {
            c.log(call.call_position(), message.to_string(), false)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "warn",
        move |call: NativeCallContext, message: Dynamic| -> ScriptResult<()> {
            c.log(call.call_position(), message.to_string(), true)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "outcome",
        move |call: NativeCallContext, title: &str, items: Array| -> ScriptResult<()> {
            c.outcome(call.call_position(), title.to_string(), items, None)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "outcome",
        move |call: NativeCallContext,
              title: &str,
              items: Array,
              columns: Array|
              -> ScriptResult<()> {
            c.outcome(
                call.call_position(),
                title.to_string(),
                items,
                Some(columns),
            )
        },
    );

    engine.register_fn(
        "fail",
        |call: NativeCallContext, message: Dynamic| -> ScriptResult<()> {
            Err(script_error(message.to_string(), call.call_position()))
        },
    );

    let c = ctx.clone();
    engine.register_fn("now", move |call: NativeCallContext| -> ScriptResult<i64> {
        c.now(call.call_position())
    });
    engine.register_fn("format_time", |ms: i64| {
        crate::clock::format_time(ms.max(0) as u64)
    });
    engine.register_fn(
        "duration_ms",
        |call: NativeCallContext, d: Dynamic| -> ScriptResult<i64> {
            duration_option("duration_ms", &d)
                .map(|d| d.as_millis() as i64)
                .map_err(|m| script_error(m, call.call_position()))
        },
    );
    // The standard `timestamp()` reads the machine's clock, which a replay would not see again.
    engine.register_fn("timestamp", |call: NativeCallContext| -> ScriptResult<()> {
        Err(script_error(
            "timestamp() is not available in runbooks: use now(), which is journaled".to_string(),
            call.call_position(),
        ))
    });

    let c = ctx.clone();
    engine.register_fn(
        "parallel",
        move |call: NativeCallContext, items: Array, f: FnPtr| -> ScriptResult<Array> {
            c.parallel(&call, items, Map::new(), f)
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "parallel",
        move |call: NativeCallContext, items: Array, opts: Map, f: FnPtr| -> ScriptResult<Array> {
            c.parallel(&call, items, opts, f)
        },
    );

    #[cfg(feature = "test-hooks")]
    test_hooks::register(engine, ctx);
}

/// Bindings that exist only in test builds: a counter service on loopback (address in
/// `LIFEBOAT_TEST_COUNTER`) that counts step-body executions outside the process under test,
/// so crash tests can count honestly.
#[cfg(feature = "test-hooks")]
mod test_hooks {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;
    use std::sync::Arc;

    use rhai::NativeCallContext;

    use super::super::run::{script_error, RunContext, ScriptResult};

    fn ask(line: &str) -> Result<i64, String> {
        let addr = std::env::var("LIFEBOAT_TEST_COUNTER")
            .map_err(|_| "LIFEBOAT_TEST_COUNTER is not set".to_string())?;
        let mut stream = TcpStream::connect(&addr).map_err(|e| format!("counter {addr}: {e}"))?;
        stream
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        BufReader::new(stream)
            .read_line(&mut reply)
            .map_err(|e| e.to_string())?;
        reply
            .trim()
            .parse()
            .map_err(|_| format!("counter answered {reply:?}"))
    }

    pub(super) fn register(engine: &mut rhai::Engine, ctx: Arc<RunContext>) {
        let c = ctx.clone();
        // A side effect: counted by the service, announced through the barrier first.
        engine.register_fn(
            "test_effect",
            move |call: NativeCallContext, name: &str| -> ScriptResult<i64> {
                let pos = call.call_position();
                c.before_effect("test_effect", pos)?;
                ask(&format!("hit {name}")).map_err(|m| script_error(m, pos))
            },
        );
        // A read: how many times `name` was hit.
        engine.register_fn(
            "test_effect_count",
            |call: NativeCallContext, name: &str| -> ScriptResult<i64> {
                ask(&format!("get {name}")).map_err(|m| script_error(m, call.call_position()))
            },
        );
    }
}
