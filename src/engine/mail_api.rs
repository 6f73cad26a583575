//! The mail functions runbooks call: `notify(...)` sends a message once, as a durable step;
//! `wait_email(...)` waits for a matching message in an IMAP mailbox (or for an alternative
//! check to succeed, whichever comes first), with the mailbox baseline and the start time
//! journaled so that a resume counts only newer mail and the time already spent.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext, Position};
use serde_json::{json, Value};

use super::ovh_api::error_value;
use super::run::{script_error, RunContext, ScriptResult, StepBody};
use super::step::{duration_option, StepOptions};
use crate::mail::imap::{Baseline, Watcher};
use crate::mail::matcher::Criteria;
use crate::mail::notify::{send, Outgoing};
use crate::mail::{Error as MailError, MailConfig};

/// The mail configuration a run may use (absent, with the reason, when it did not load), and
/// the async runtime mail is sent and watched on.
#[derive(Clone)]
pub struct MailAccess {
    pub config: Result<MailConfig, String>,
    pub runtime: tokio::runtime::Handle,
}

pub(crate) const FUNCTIONS: &[&str] = &["notify", "wait_email"];

/// A mail error as the runbook sees it; `final` when trying again cannot help, so the step
/// fails at once instead of retrying.
fn mail_error(e: &MailError, pos: Position) -> Box<rhai::EvalAltResult> {
    error_value(
        json!({ "message": e.to_string(), "final": e.is_permanent() }),
        pos,
    )
}

fn string_list(v: &Dynamic) -> Vec<String> {
    match v.clone().try_cast::<Array>() {
        Some(items) => items.iter().map(|i| i.to_string()).collect(),
        None => v
            .to_string()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

fn text(opts: &Map, key: &str) -> Option<String> {
    opts.get(key)
        .filter(|v| !v.is_unit())
        .map(|v| v.to_string())
}

pub(super) fn register(
    engine: &mut rhai::Engine,
    ctx: Arc<RunContext>,
    access: Option<MailAccess>,
) {
    let access = Arc::new(access);

    let (c, a) = (ctx.clone(), access.clone());
    engine.register_fn(
        "notify",
        move |call: NativeCallContext, opts: Map| -> ScriptResult<Dynamic> {
            let pos = call.call_position();
            let config = config(&a, pos)?;
            for k in opts.keys() {
                if !["to", "subject", "body"].contains(&k.as_str()) {
                    return Err(script_error(
                        format!("unknown notify option {k:?} (to, subject, body)"),
                        pos,
                    ));
                }
            }
            let subject = text(&opts, "subject")
                .ok_or_else(|| script_error("notify: subject is required".into(), pos))?;
            let body = text(&opts, "body").unwrap_or_default();
            let to = opts
                .get("to")
                .map(string_list)
                .unwrap_or_else(|| config.notify.to.clone());
            if to.is_empty() {
                return Err(script_error(
                    "notify: no recipient (give `to`, or configure [notify] to)".into(),
                    pos,
                ));
            }
            let name = format!("notify: {subject}");
            if c.plan() {
                c.record_planned("notify", json!({ "to": to, "subject": subject }))?;
                return rhai::serde::to_dynamic(
                    json!({ "to": to, "subject": subject, "planned": true }),
                );
            }
            let run = c.id.to_string();
            let send_once = || -> ScriptResult<Dynamic> {
                let smtp = config.smtp.clone().ok_or_else(|| {
                    mail_error(
                        &MailError::NotConfigured {
                            what: "SMTP",
                            section: "smtp",
                        },
                        pos,
                    )
                })?;
                let key = super::lane::current_body()
                    .map(|b| b.key)
                    .unwrap_or_default();
                // The same Message-ID on every attempt: a message sent again after a crash is
                // recognisably the same one.
                let message_id = format!("<{run}.{key}@lifeboat>");
                c.before_effect("notify", pos)?;
                let msg = Outgoing {
                    to: to.clone(),
                    subject: subject.clone(),
                    body: body.clone(),
                    message_id: Some(message_id.clone()),
                };
                c.block_on(&runtime(&a), send(&smtp, &msg))?
                    .map_err(|e| mail_error(&e, pos))?;
                rhai::serde::to_dynamic(
                    json!({ "to": to, "subject": subject, "message_id": message_id }),
                )
            };
            // Idempotent: a crash between the server's acceptance and the journal sends it again,
            // with the same Message-ID; never sending it is the worse failure for a responder.
            let opts = StepOptions {
                idempotent: true,
                retries: 2,
                backoff: Duration::from_secs(5),
                ..StepOptions::default()
            };
            c.step_with(&call, &name, opts, StepBody::Native(&send_once))
        },
    );

    let (c, a) = (ctx, access);
    engine.register_fn("wait_email", move |call: NativeCallContext, opts: Map| -> ScriptResult<Dynamic> {
        let pos = call.call_position();
        let config = config(&a, pos)?;
        let mut timeout = Duration::from_secs(12 * 3600);
        let mut poll = Duration::from_secs(60);
        let mut or_when: Option<FnPtr> = None;
        for (k, v) in &opts {
            match k.as_str() {
                "from" | "subject" | "body" => {}
                "timeout" => timeout = duration_option("wait_email timeout", v).map_err(|m| script_error(m, pos))?,
                "poll" => poll = duration_option("wait_email poll", v).map_err(|m| script_error(m, pos))?,
                "or_when" => {
                    or_when = Some(v.clone().try_cast::<FnPtr>().ok_or_else(|| script_error("wait_email or_when: expected a closure".into(), pos))?)
                }
                other => return Err(script_error(format!("unknown wait_email option {other:?} (from, subject, body, timeout, poll, or_when)"), pos)),
            }
        }
        if c.plan() {
            // A plan skips waits.
            return rhai::serde::to_dynamic(json!({ "via": "plan", "captures": [], "subject": "", "text": "" }));
        }
        let subject = text(&opts, "subject");
        let criteria = Criteria::new(text(&opts, "from"), subject.as_deref(), text(&opts, "body").as_deref()).map_err(|e| mail_error(&e, pos))?;
        let imap = config.imap.clone().ok_or_else(|| mail_error(&MailError::NotConfigured { what: "IMAP", section: "imap" }, pos))?;
        let rt = runtime(&a);

        // Where the mailbox stood when the wait began, and when that was: journaled once.
        let start = c.journaled_value(pos, "wait_email", || {
            let mut watcher = Watcher::new(imap.clone());
            let baseline = c.block_on(&rt, watcher.baseline())?.map_err(|e| mail_error(&e, pos))?;
            Ok(json!({ "started_at": c.clock.now(), "baseline": baseline }))
        })?;
        let started_at = start["started_at"].as_u64().unwrap_or_default();
        let baseline: Baseline = serde_json::from_value(start["baseline"].clone()).map_err(|e| script_error(e.to_string(), pos))?;
        let deadline = started_at + timeout.as_millis() as u64;

        let name = match (&subject, text(&opts, "from")) {
            (Some(s), _) => format!("wait for email: {s}"),
            (None, Some(f)) => format!("wait for email from {f}"),
            (None, None) => "wait for email".to_string(),
        };
        let wait = || -> ScriptResult<Dynamic> {
            let mut watcher = Watcher::new(imap.clone());
            let mut retry = Duration::from_secs(1);
            let mut reported_outage = false;
            loop {
                match c.block_on(&rt, watcher.find(&baseline, &criteria))? {
                    Ok(Some(found)) => {
                        let mut v = serde_json::to_value(&found).unwrap_or(Value::Null);
                        v["via"] = json!("email");
                        return rhai::serde::to_dynamic(v);
                    }
                    Ok(None) => {
                        retry = Duration::from_secs(1);
                        reported_outage = false;
                    }
                    Err(e @ MailError::ImapConnection { .. }) => {
                        // A lost connection never ends the wait: retry with backoff.
                        if !reported_outage {
                            c.observer.progress(&c.id, super::Progress::Log { message: &format!("{e}; reconnecting") });
                            reported_outage = true;
                        }
                        c.pause(retry.as_millis() as u64)?;
                        retry = (retry * 2).min(Duration::from_secs(30));
                        continue;
                    }
                    Err(e) => return Err(mail_error(&e, pos)),
                }
                if let Some(check) = &or_when {
                    let answer: Dynamic = check.call_within_context(&call, ())?;
                    if !(answer.is_unit() || answer.as_bool() == Ok(false)) {
                        let value: Value = rhai::serde::from_dynamic(&answer).unwrap_or(Value::Null);
                        return rhai::serde::to_dynamic(json!({ "via": "check", "value": value }));
                    }
                }
                let now = c.clock.now();
                if now >= deadline {
                    return Err(script_error(format!("no matching email within {}", humantime::format_duration(timeout)), pos));
                }
                let slice = c.clock.real_duration(poll.as_millis().min(u128::from(deadline - now)) as u64);
                if c.block_on(&rt, watcher.wait(slice))?.is_err() {
                    // Lost during IDLE: the next search reconnects.
                    continue;
                }
            }
        };
        let opts = StepOptions { idempotent: true, ..StepOptions::default() };
        c.step_with(&call, &name, opts, StepBody::Native(&wait))
    });
}

fn config(access: &Option<MailAccess>, pos: Position) -> ScriptResult<MailConfig> {
    match access {
        Some(MailAccess { config: Ok(c), .. }) => Ok(c.clone()),
        Some(MailAccess {
            config: Err(reason),
            ..
        }) => Err(error_value(json!({ "message": reason }), pos)),
        None => Err(error_value(
            json!({ "message": "this run has no mail configuration" }),
            pos,
        )),
    }
}

fn runtime(access: &Option<MailAccess>) -> tokio::runtime::Handle {
    access
        .as_ref()
        .map(|a| a.runtime.clone())
        .expect("checked by config()")
}
