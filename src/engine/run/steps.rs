//! A step's life in a run: answered from the journal, reconciled when it may already have
//! acted (its `check` asked at once), or run attempt by attempt with its retry policy, until
//! it succeeds, fails for good, or is in doubt and waits for a person.

use super::*;

/// What a reconciliation decided for a step that may already have acted.
enum Reconciled {
    /// It is done; here is its result.
    Done(Dynamic),
    /// Run the body (again).
    RunAgain,
}

/// What a step's `check` said when asked whether the step is done.
enum CheckAnswer {
    Done(Dynamic),
    NotDone,
    /// It could not answer (its own calls kept failing): why.
    Unknown(String),
}

/// The first wait before asking a check again, and the longest.
const CHECK_BACKOFF: Duration = Duration::from_millis(200);
const CHECK_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The least time a check is given to answer, whatever the step's patience.
const CHECK_MIN_BUDGET: Duration = Duration::from_secs(30);

impl RunContext {
    /// `step(name, opts, body)`.
    pub(crate) fn step(
        &self,
        ctx: &NativeCallContext,
        name: &str,
        opts: rhai::Map,
        body: FnPtr,
    ) -> ScriptResult<Dynamic> {
        let pos = ctx.call_position();
        let opts = StepOptions::from_map(opts).map_err(|m| script_error(m, pos))?;
        self.step_with(ctx, name, opts, StepBody::Script(body))
    }

    /// A durable step with any body: replayed from the journal, reconciled, or run.
    pub(crate) fn step_with(
        &self,
        ctx: &NativeCallContext,
        name: &str,
        opts: StepOptions,
        body: StepBody<'_>,
    ) -> ScriptResult<Dynamic> {
        let pos = ctx.call_position();
        let key = self.position("step()", pos)?;
        let requested = format!("step {name:?}");
        let entry = self.recorded(
            &key,
            &requested,
            |e| matches!(e, Entry::Step { name: n, .. } if n == name),
            pos,
        )?;
        let mut first_attempt = 1;
        if let (Some(forward), Some(Entry::Step { state, .. })) = (&self.forward, entry) {
            // Replaying the original for its way back: only what it finished counts.
            match state {
                StepState::Succeeded {
                    result, decided, ..
                } => forward.finished(&key, name, &opts, result, decided.as_deref()),
                StepState::Running { effects, .. } | StepState::RetryWait { effects, .. } => {
                    forward.unfinished(&key, name, *effects);
                    return Err(end_of_journal());
                }
                StepState::Failed { .. } => {}
            }
        }
        if let Some(Entry::Step { state, .. }) = entry {
            match state {
                StepState::Succeeded { result, .. } => {
                    self.observer
                        .progress(&self.id, Progress::Replayed { name });
                    return to_dynamic(result, pos);
                }
                StepState::Failed {
                    attempts,
                    error,
                    detail,
                    ..
                } if self.failed_step.as_deref() != Some(key.as_str()) => {
                    // A failure the runbook handled (try/catch) the first time: it sees it again.
                    self.observer
                        .progress(&self.id, Progress::Replayed { name });
                    return Err(failure_value(
                        &failed_message(name, *attempts, error),
                        detail,
                        pos,
                    ));
                }
                StepState::Failed {
                    attempts, effects, ..
                } => {
                    // The failure that ended the run: a resume tries the step again.
                    if *effects {
                        if let Reconciled::Done(v) = self.reconcile(ctx, &key, name, &opts, pos)? {
                            return Ok(v);
                        }
                    }
                    first_attempt = attempts + 1;
                }
                StepState::Running {
                    attempt, effects, ..
                } => {
                    // In flight when the previous process died.
                    if *effects {
                        if let Reconciled::Done(v) = self.reconcile(ctx, &key, name, &opts, pos)? {
                            return Ok(v);
                        }
                    }
                    first_attempt = attempt + 1;
                }
                StepState::RetryWait {
                    attempt, retry_at, ..
                } => {
                    self.wait_until(*retry_at)?;
                    first_attempt = attempt + 1;
                }
            }
        }
        self.attempts(ctx, &key, name, &opts, &body, first_attempt)
    }

    /// Decides what to do with a step found in flight (or failed) past its first effect by a
    /// resume: the operator's `--retry-inflight`, then its `check`, then `idempotent`; if none
    /// can decide, the run pauses with the step in doubt.
    fn reconcile(
        &self,
        ctx: &NativeCallContext,
        key: &str,
        name: &str,
        opts: &StepOptions,
        pos: Position,
    ) -> ScriptResult<Reconciled> {
        if self
            .opts
            .retry_inflight
            .iter()
            .any(|s| s == name || s == key)
        {
            return Ok(Reconciled::RunAgain);
        }
        let why = match &opts.check {
            Some(check) => match self.ask_check(ctx, check, opts, pos)? {
                CheckAnswer::Done(result) => {
                    self.succeed(key, name, &result, true, 0, pos)?;
                    return Ok(Reconciled::Done(result));
                }
                CheckAnswer::NotDone => return Ok(Reconciled::RunAgain),
                CheckAnswer::Unknown(why) => format!(
                    "it was in flight when the previous process stopped, and its check could not answer: {why}"
                ),
            },
            None if opts.idempotent => return Ok(Reconciled::RunAgain),
            None => "it was in flight when the previous process stopped, and it has no `check` to ask".to_string(),
        };
        Err(self.in_doubt(key, name, why))
    }

    /// Pauses the run with step `key` in doubt.
    fn in_doubt(&self, key: &str, name: &str, why: String) -> Box<EvalAltResult> {
        self.observer.progress(
            &self.id,
            Progress::StepInDoubt {
                name,
                why: why.as_str(),
            },
        );
        self.pause_with(Error::InDoubt {
            key: key.to_string(),
            name: name.to_string(),
            run: self.id.clone(),
            why,
        })
    }

    /// Asks a step's `check` whether the step is done. A check whose own API calls fail
    /// transiently (OVH overloaded, a dropped connection) is asked again with a short backoff,
    /// for the step's patience (at least [`CHECK_MIN_BUDGET`]); any other failure, or running
    /// out of time, is [`CheckAnswer::Unknown`].
    fn ask_check(
        &self,
        ctx: &NativeCallContext,
        check: &FnPtr,
        opts: &StepOptions,
        pos: Position,
    ) -> ScriptResult<CheckAnswer> {
        let budget = opts.patience.max(CHECK_MIN_BUDGET);
        let deadline = self.clock.now() + budget.as_millis() as u64;
        let mut wait = CHECK_BACKOFF;
        loop {
            let err = match self.run_check(ctx, check, pos) {
                Ok(Some(result)) => return Ok(CheckAnswer::Done(result)),
                Ok(None) => return Ok(CheckAnswer::NotDone),
                Err(e) if !e.is_catchable() => return Err(e),
                Err(e) => e,
            };
            let why = plain_message(&err);
            if !is_transient(&err) || self.clock.now() + wait.as_millis() as u64 > deadline {
                return Ok(CheckAnswer::Unknown(why));
            }
            self.wait_until(self.clock.now() + wait.as_millis() as u64)?;
            wait = (wait * 2).min(CHECK_MAX_BACKOFF);
        }
    }

    /// Runs a step's `check` once: `Some(result)` if it says the step is done.
    fn run_check(
        &self,
        ctx: &NativeCallContext,
        check: &FnPtr,
        _pos: Position,
    ) -> ScriptResult<Option<Dynamic>> {
        let answer: Dynamic = check.call_within_context(ctx, ())?;
        if answer.is_unit() || answer.as_bool() == Ok(false) {
            Ok(None)
        } else if answer.as_bool() == Ok(true) {
            Ok(Some(Dynamic::UNIT))
        } else {
            Ok(Some(answer))
        }
    }

    fn succeed(
        &self,
        key: &str,
        name: &str,
        result: &Dynamic,
        reconciled: bool,
        started: Millis,
        pos: Position,
    ) -> ScriptResult<()> {
        let json: Value = rhai::serde::from_dynamic(result).map_err(|e| {
            script_error(
                format!(
                    "the result of step {name:?} cannot be journaled: {}",
                    plain_message(&e)
                ),
                pos,
            )
        })?;
        // Durable before the script sees the result: "done" is never reported before it is true.
        self.record_durable(Event::StepSucceeded {
            key: key.to_string(),
            result: json,
            reconciled,
        })?;
        let elapsed = if started == 0 {
            0
        } else {
            self.clock.now().saturating_sub(started)
        };
        self.observer.progress(
            &self.id,
            Progress::StepSucceeded {
                name,
                elapsed_ms: elapsed,
                reconciled,
            },
        );
        Ok(())
    }

    fn attempts(
        &self,
        ctx: &NativeCallContext,
        key: &str,
        name: &str,
        opts: &StepOptions,
        body: &StepBody<'_>,
        first: u32,
    ) -> ScriptResult<Dynamic> {
        let pos = ctx.call_position();
        let last = first + opts.retries;
        // Transient API failures are retried until here, on top of `retries`.
        let patience_ends = self.clock.now() + opts.patience.as_millis() as u64;
        let mut attempt = first;
        loop {
            let started = self.clock.now();
            self.record(Event::StepStarted {
                key: key.to_string(),
                name: name.to_string(),
                attempt,
            })?;
            self.observer
                .progress(&self.id, Progress::StepStarted { key, name, attempt });
            let deadline = opts
                .timeout
                .map(|t| Instant::now() + self.clock.real_duration(t.as_millis() as u64));
            lane::begin_body(Body {
                key: key.to_string(),
                name: name.to_string(),
                attempt,
                effects: false,
                deadline,
            });
            let outcome: ScriptResult<Dynamic> = match body {
                StepBody::Script(f) => f.call_within_context(ctx, ()),
                StepBody::Native(f) => f(),
            };
            let ended = lane::end_body();
            let effects = ended.as_ref().is_some_and(|b| b.effects);

            let (mut error, detail) = match outcome {
                Ok(value) => {
                    self.succeed(key, name, &value, false, started, pos)?;
                    return Ok(value);
                }
                Err(e)
                    if is_token(&e, TOKEN_TIMEOUT)
                        && deadline.is_some_and(|d| Instant::now() >= d) =>
                {
                    let t = opts.timeout.unwrap_or_default();
                    (
                        format!("timed out after {}", humantime::format_duration(t)),
                        Value::Null,
                    )
                }
                Err(e) if is_stop(&e) => return Err(e),
                Err(e) if !e.is_catchable() => {
                    // A sandbox limit: the step failed for good, and so does the run.
                    let error = format!(
                        "{} (at {})",
                        plain_message(&e),
                        error_location(&self.path, &e)
                    );
                    self.fail_for_good(key, name, attempt, &error, &Value::Null)?;
                    return Err(e);
                }
                Err(e) => {
                    let detail = match e.unwrap_inner() {
                        EvalAltResult::ErrorRuntime(v, _) if v.is_map() => {
                            rhai::serde::from_dynamic(v).unwrap_or(Value::Null)
                        }
                        _ => Value::Null,
                    };
                    (
                        format!(
                            "{} (at {})",
                            plain_message(&e),
                            error_location(&self.path, &e)
                        ),
                        detail,
                    )
                }
            };

            let transient = detail.get("transient") == Some(&Value::Bool(true));
            if effects {
                // The attempt got past the barrier, so it may have changed things: ask at once
                // whether it did, rather than reporting as failed a change that happened.
                let unknown = match &opts.check {
                    Some(check) => match self.ask_check(ctx, check, opts, pos)? {
                        CheckAnswer::Done(result) => {
                            self.succeed(key, name, &result, true, started, pos)?;
                            return Ok(result);
                        }
                        // It changed nothing: an ordinary failed attempt.
                        CheckAnswer::NotDone => None,
                        CheckAnswer::Unknown(why) => Some(format!(
                            "its attempt {attempt} ended with: {error}, and its check could not answer: {why}"
                        )),
                    },
                    None if opts.idempotent => None,
                    None => Some(format!(
                        "its attempt {attempt} ended with: {error}, and it has no `check` to ask"
                    )),
                };
                if let Some(why) = unknown {
                    if opts.on_failure == OnFailure::Pause {
                        return Err(self.in_doubt(key, name, why));
                    }
                    error = format!("{error}; it may have changed things (its attempt had started, and nothing can tell whether it took effect): check by hand before running it again");
                    self.fail_for_good(key, name, attempt, &error, &detail)?;
                    return Err(failure_value(
                        &failed_message(name, attempt, &error),
                        &detail,
                        pos,
                    ));
                }
            }
            let patient = transient && self.clock.now() < patience_ends;
            // A failure that says trying again cannot help (`final: true`: a refused login, an
            // unacceptable certificate) takes no further attempt.
            let final_failure = detail.get("final") == Some(&Value::Bool(true));
            if (attempt < last || patient) && !final_failure {
                let wait = if attempt < last {
                    opts.backoff_after(attempt)
                } else {
                    opts.jittered_backoff_after(attempt - opts.retries)
                };
                let retry_at = self.clock.now() + wait.as_millis() as u64;
                self.record(Event::StepFailed {
                    key: key.to_string(),
                    attempt,
                    error: error.clone(),
                    detail: detail.clone(),
                    retry_at: Some(retry_at),
                })?;
                self.observer.progress(
                    &self.id,
                    Progress::StepRetry {
                        name,
                        attempt,
                        error: &error,
                        wait_ms: wait.as_millis() as u64,
                    },
                );
                self.wait_until(retry_at)?;
                attempt += 1;
                continue;
            }
            self.fail_for_good(key, name, attempt, &error, &detail)?;
            return Err(failure_value(
                &failed_message(name, attempt, &error),
                &detail,
                pos,
            ));
        }
    }

    /// Records that a step failed with no attempt left, durably, before the script sees it.
    fn fail_for_good(
        &self,
        key: &str,
        name: &str,
        attempt: u32,
        error: &str,
        detail: &Value,
    ) -> ScriptResult<()> {
        self.record_durable(Event::StepFailed {
            key: key.to_string(),
            attempt,
            error: error.to_string(),
            detail: detail.clone(),
            retry_at: None,
        })?;
        self.observer.progress(
            &self.id,
            Progress::StepFailed {
                name,
                attempts: attempt,
                error,
            },
        );
        *lock(&self.last_step_failure) = Some(key.to_string());
        Ok(())
    }
}
