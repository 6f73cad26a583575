//! `parallel(items, opts, |item| ...)`: branches of a run side by side, each in a lane of its
//! own, at most `limit` at once.

use super::*;

impl RunContext {
    /// `parallel(items, opts, |item| ...)`: runs the closure for every item, at most `limit` at
    /// once, each in a lane of its own, and returns their results in item order. A branch that
    /// fails does not stop the others; once all are done, the failures are thrown together.
    pub(crate) fn parallel(
        &self,
        ctx: &NativeCallContext,
        items: Array,
        opts: rhai::Map,
        f: FnPtr,
    ) -> ScriptResult<Array> {
        let pos = ctx.call_position();
        let base = self.position("parallel()", pos)?;
        let mut limit = 8usize;
        for (k, v) in opts {
            match k.as_str() {
                "limit" => {
                    limit = v
                        .as_int()
                        .ok()
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| {
                            script_error(
                                "parallel option limit: expected a positive integer".to_string(),
                                pos,
                            )
                        })?
                }
                other => {
                    return Err(script_error(
                        format!("unknown parallel option {other:?} (limit)"),
                        pos,
                    ))
                }
            }
        }
        if let Some(forward) = &self.forward {
            forward.parallel(&base, limit);
        }
        let ast =
            self.ast.get().cloned().ok_or_else(|| {
                script_error("parallel() called before the run started".into(), pos)
            })?;
        let engine = ctx.engine();
        let n = items.len();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Mutex<Option<ScriptResult<Dynamic>>>> =
            (0..n).map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..limit.min(n) {
                let (next, results, items, f, ast, base) =
                    (&next, &results, &items, &f, &ast, &base);
                std::thread::Builder::new()
                    .stack_size(8 << 20)
                    .spawn_scoped(scope, move || loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n || self.winding_down() {
                            break;
                        }
                        let _lane = lane::enter(format!("{base}.{i}"));
                        let r = f.call::<Dynamic>(engine, ast, (items[i].clone(),));
                        *lock(&results[i]) = Some(r);
                    })
                    .expect("spawning a parallel branch thread");
            }
        });
        let mut out = Array::with_capacity(n);
        let mut failures = Vec::new();
        for (i, slot) in results.into_iter().enumerate() {
            match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
                Some(Ok(v)) => out.push(v),
                Some(Err(e)) if !e.is_catchable() => return Err(e),
                Some(Err(e)) => {
                    failures.push(format!("[{i}] {}", plain_message(&e)));
                    out.push(Dynamic::UNIT);
                }
                // Not started because the run is stopping.
                None => {
                    return Err(
                        EvalAltResult::ErrorTerminated(TOKEN_STOP.into(), Position::NONE).into(),
                    )
                }
            }
        }
        if failures.is_empty() {
            Ok(out)
        } else {
            Err(script_error(
                format!(
                    "{} of {n} parallel branches failed: {}",
                    failures.len(),
                    failures.join("; ")
                ),
                pos,
            ))
        }
    }
}
