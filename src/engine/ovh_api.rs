//! The `ovh` object runbooks call: generic `get/post/put/delete` and typed helpers for what
//! recoveries do. Every call goes through [`OvhApi::call`], the one place that decides whether
//! a call changes things (then it must run inside a step, behind the effect barrier), waits on
//! the async client, honours abort and step timeouts, and turns OVH's errors into maps the
//! runbook can read (`e.query_id`, `e.ovh_message`, `e.status`).

use std::sync::Arc;

use rhai::{Array, Dynamic, EvalAltResult, Map, NativeCallContext, Position};
use serde_json::{json, Value};

use super::run::{RunContext, ScriptResult};
use super::step::duration_option;
use crate::ovh::{escape, Client, TaskRef, WaitOptions};

/// The OVH client a run may use, and the async runtime its calls run on. The client is absent
/// (with the reason) when no endpoint or credentials are configured; only runbooks that call
/// `ovh` then fail, with that reason.
#[derive(Clone)]
pub struct OvhAccess {
    pub client: Result<Arc<Client>, String>,
    pub runtime: tokio::runtime::Handle,
}

/// The value of `ovh` in a runbook's scope.
#[derive(Clone, Debug)]
pub struct OvhHandle;

pub(super) struct OvhApi {
    ctx: Arc<RunContext>,
    access: Option<OvhAccess>,
    /// The client's pace version last journaled for this run.
    pace_seen: std::sync::atomic::AtomicU64,
}

impl OvhApi {
    /// Sends one call. `path` is a string used as is, or an array of segments, each escaped
    /// (`["ip", "1.2.3.4/32", "move"]` is `/ip/1.2.3.4%2F32/move`).
    fn call(
        &self,
        pos: Position,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> ScriptResult<Value> {
        let what = format!("ovh {method} {path}");
        if method != "GET" && self.ctx.plan() {
            // A plan never sends a change: it records it and answers with a result the
            // runbook can go on with (a task that is already done).
            self.ctx.record_planned(
                &format!("{method} {path}"),
                body.cloned().unwrap_or(Value::Null),
            )?;
            return Ok(planned_task());
        }
        if method != "GET" {
            // Changes something at OVH: must be inside a step, journaled before it leaves.
            self.ctx.before_effect(&what, pos)?;
        }
        let access = self.access.as_ref().ok_or_else(|| {
            error_value(
                json!({ "message": format!("{what}: this run has no OVH client") }),
                pos,
            )
        })?;
        let client = access.client.as_ref().map_err(|reason| {
            error_value(json!({ "message": format!("{what}: {reason}") }), pos)
        })?;
        let fut = client.call(method, path, query, body);
        let answer = self.block_on(access, pos, fut);
        self.journal_pace(client);
        answer
    }

    /// Journals the client's pace when it changed since this run last saw it, so that `status`
    /// and `log` show when and why lifeboat slowed down or sped up.
    fn journal_pace(&self, client: &Client) {
        use std::sync::atomic::Ordering;
        let seen = self.pace_seen.load(Ordering::SeqCst);
        let changes = client.pace_changes_since(seen);
        let Some(last) = changes.last() else {
            return;
        };
        if self
            .pace_seen
            .compare_exchange(seen, last.version, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            for change in changes {
                self.ctx
                    .note_pace(change.rate, change.concurrency, change.why);
            }
        }
    }

    /// Waits for an async client call, giving up on abort or at the step's timeout.
    fn block_on<T>(
        &self,
        access: &OvhAccess,
        pos: Position,
        fut: impl std::future::Future<Output = Result<T, crate::ovh::Error>>,
    ) -> ScriptResult<T> {
        self.ctx
            .block_on(&access.runtime, fut)?
            .map_err(|e| error_value(e.to_value(), pos))
    }

    fn wait(&self, pos: Position, task: TaskRef, opts: Map) -> ScriptResult<Value> {
        let mut wait = WaitOptions::default();
        for (k, v) in opts {
            match k.as_str() {
                "poll" => {
                    wait.poll =
                        duration_option("poll", &v).map_err(|m| super::run::script_error(m, pos))?
                }
                "timeout" => {
                    wait.timeout = duration_option("timeout", &v)
                        .map_err(|m| super::run::script_error(m, pos))?
                }
                other => {
                    return Err(super::run::script_error(
                        format!("unknown wait option {other:?} (poll, timeout)"),
                        pos,
                    ))
                }
            }
        }
        // The wait's budget as the run counts it, for progress lines.
        let timeout_ms = wait.timeout.as_millis() as u64;
        // Poll and timeout are engine-clock durations: a compressed clock polls faster.
        wait.poll = self.ctx.clock.real_duration(wait.poll.as_millis() as u64);
        wait.timeout = self
            .ctx
            .clock
            .real_duration(wait.timeout.as_millis() as u64);
        if self.ctx.plan() {
            // A plan skips waits (and its tasks were never created).
            return Ok(planned_task());
        }
        let access = self.access.as_ref().ok_or_else(|| {
            error_value(
                json!({ "message": "ovh wait: this run has no OVH client" }),
                pos,
            )
        })?;
        let client = access.client.as_ref().map_err(|reason| {
            error_value(json!({ "message": format!("ovh wait: {reason}") }), pos)
        })?;
        let started = self.ctx.clock.now();
        let name = super::lane::current_body()
            .map(|b| b.name)
            .unwrap_or_else(|| "ovh wait".to_string());
        let ctx = self.ctx.clone();
        let waiting = name.clone();
        let on_poll = move |status: &str, percent: Option<u64>| {
            let elapsed_ms = ctx.clock.now().saturating_sub(started);
            ctx.note_progress(super::Progress::TaskWait {
                name: &name,
                status,
                percent,
                elapsed_ms,
                left_ms: timeout_ms.saturating_sub(elapsed_ms),
            });
        };
        let answer = self.block_on(access, pos, client.wait_task(&task, wait, &on_poll));
        self.ctx.end_task_wait(&waiting);
        answer
    }
}

/// What a planned change answers: a task that is already done, in both task shapes.
fn planned_task() -> Value {
    json!({ "taskId": 0, "status": "done", "state": "done", "progress": 100, "function": "planned", "name": "planned", "planned": true })
}

pub(super) fn error_value(v: Value, pos: Position) -> Box<EvalAltResult> {
    let d = rhai::serde::to_dynamic(&v).unwrap_or_else(|_| v.to_string().into());
    EvalAltResult::ErrorRuntime(d, pos).into()
}

fn to_dyn(v: Value) -> ScriptResult<Dynamic> {
    rhai::serde::to_dynamic(&v)
}

fn from_dyn(d: &Dynamic, pos: Position) -> ScriptResult<Value> {
    rhai::serde::from_dynamic(d)
        .map_err(|e| super::run::script_error(format!("cannot send this value to OVH: {e}"), pos))
}

/// A path from a string (as is) or an array of segments (each escaped).
fn path_of(p: &Dynamic, pos: Position) -> ScriptResult<String> {
    if let Ok(s) = p.clone().into_immutable_string() {
        return Ok(s.to_string());
    }
    if let Some(parts) = p.clone().try_cast::<Array>() {
        let mut out = String::new();
        for part in parts {
            out.push('/');
            out.push_str(&escape(&part.to_string()));
        }
        return Ok(out);
    }
    Err(super::run::script_error(
        "an OVH path is a string or an array of segments".into(),
        pos,
    ))
}

fn query_of(q: Map) -> Vec<(String, String)> {
    q.into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `ovh` methods and functions registered here, for `check` (see `script_api::FUNCTIONS`).
pub(crate) const METHODS: &[&str] = &[
    "get",
    "post",
    "put",
    "delete",
    "can_move",
    "ip_move",
    "ip_move_to",
    "ip",
    "server",
    "server_tasks",
    "pcc",
    "pcc_option",
    "filers",
    "filer",
    "link_filer_from_sbg",
    "copy_filer",
    "pcc_tasks",
    "pcc_task",
    "wait_server_task",
    "wait_ip_task",
    "wait_pcc_task",
    "url_escape",
];

pub(super) fn register(engine: &mut rhai::Engine, ctx: Arc<RunContext>, access: Option<OvhAccess>) {
    let api = Arc::new(OvhApi {
        ctx,
        access,
        pace_seen: Default::default(),
    });
    engine.register_type_with_name::<OvhHandle>("Ovh");

    macro_rules! method {
        ($name:literal, |$api:ident, $pos:ident $(, $arg:ident : $ty:ty)*| $body:expr) => {{
            let a = api.clone();
            engine.register_fn($name, move |call: NativeCallContext, _: &mut OvhHandle $(, $arg: $ty)*| -> ScriptResult<Dynamic> {
                let $api = &a;
                let $pos = call.call_position();
                $body
            });
        }};
    }

    // Generic calls.
    method!("get", |api, pos, path: Dynamic| to_dyn(api.call(
        pos,
        "GET",
        &path_of(&path, pos)?,
        &[],
        None
    )?));
    method!("get", |api, pos, path: Dynamic, query: Map| {
        let q = query_of(query);
        let q: Vec<(&str, String)> = q.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        to_dyn(api.call(pos, "GET", &path_of(&path, pos)?, &q, None)?)
    });
    method!("post", |api, pos, path: Dynamic, body: Dynamic| to_dyn(
        api.call(
            pos,
            "POST",
            &path_of(&path, pos)?,
            &[],
            Some(&from_dyn(&body, pos)?)
        )?
    ));
    method!("post", |api, pos, path: Dynamic| to_dyn(api.call(
        pos,
        "POST",
        &path_of(&path, pos)?,
        &[],
        Some(&json!({}))
    )?));
    method!("put", |api, pos, path: Dynamic, body: Dynamic| to_dyn(
        api.call(
            pos,
            "PUT",
            &path_of(&path, pos)?,
            &[],
            Some(&from_dyn(&body, pos)?)
        )?
    ));
    method!("delete", |api, pos, path: Dynamic| to_dyn(api.call(
        pos,
        "DELETE",
        &path_of(&path, pos)?,
        &[],
        None
    )?));

    // Failover IPs.
    method!("can_move", |api, pos, server: &str, ip: &str| {
        // A probe: OVH's refusal is an answer here, not an error.
        let path = format!("/dedicated/server/{}/ipCanBeMovedTo", escape(server));
        match api.call(pos, "GET", &path, &[("ip", ip.to_string())], None) {
            Ok(_) => to_dyn(json!({ "allowed": true })),
            Err(e) => match e.as_ref() {
                EvalAltResult::ErrorRuntime(v, _) if v.is_map() => {
                    let v: Value = rhai::serde::from_dynamic(v).unwrap_or_default();
                    match v["status"].as_u64() {
                        Some(400 | 404 | 409) => to_dyn(json!({
                            "allowed": false, "reason": v["ovh_message"], "query_id": v["query_id"], "status": v["status"],
                        })),
                        _ => Err(e),
                    }
                }
                _ => Err(e),
            },
        }
    });
    method!("ip_move", |api, pos, server: &str, ip: &str| {
        to_dyn(api.call(
            pos,
            "POST",
            &format!("/dedicated/server/{}/ipMove", escape(server)),
            &[],
            Some(&json!({ "ip": ip })),
        )?)
    });
    method!("ip_move_to", |api, pos, ip: &str, to: &str| {
        to_dyn(api.call(
            pos,
            "POST",
            &format!("/ip/{}/move", escape(ip)),
            &[],
            Some(&json!({ "to": to })),
        )?)
    });
    method!("ip", |api, pos, ip: &str| to_dyn(api.call(
        pos,
        "GET",
        &format!("/ip/{}", escape(ip)),
        &[],
        None
    )?));
    method!("server", |api, pos, name: &str| to_dyn(api.call(
        pos,
        "GET",
        &format!("/dedicated/server/{}", escape(name)),
        &[],
        None
    )?));
    method!("server_tasks", |api, pos, server: &str| to_dyn(api.call(
        pos,
        "GET",
        &format!("/dedicated/server/{}/task", escape(server)),
        &[],
        None
    )?));

    // Private Cloud.
    method!("pcc", |api, pos, pcc: &str| to_dyn(api.call(
        pos,
        "GET",
        &format!("/dedicatedCloud/{}", escape(pcc)),
        &[],
        None
    )?));
    method!("pcc_option", |api, pos, pcc: &str, option: &str| {
        to_dyn(api.call(
            pos,
            "GET",
            &format!("/dedicatedCloud/{}/{}", escape(pcc), escape(option)),
            &[],
            None,
        )?)
    });
    method!("filers", |api, pos, pcc: &str, dc: i64| {
        to_dyn(api.call(
            pos,
            "GET",
            &format!("/dedicatedCloud/{}/datacenter/{dc}/filer", escape(pcc)),
            &[],
            None,
        )?)
    });
    method!("filer", |api, pos, pcc: &str, dc: i64, filer: i64| {
        to_dyn(api.call(
            pos,
            "GET",
            &format!(
                "/dedicatedCloud/{}/datacenter/{dc}/filer/{filer}",
                escape(pcc)
            ),
            &[],
            None,
        )?)
    });
    method!(
        "link_filer_from_sbg",
        |api, pos, pcc: &str, dc: i64, filer: i64| {
            let path = format!(
                "/dedicatedCloud/{}/datacenter/{dc}/linkFilerFromSbg",
                escape(pcc)
            );
            to_dyn(api.call(pos, "POST", &path, &[], Some(&json!({ "filerId": filer })))?)
        }
    );
    method!("copy_filer", |api, pos, pcc: &str, dc: i64, filer: i64| {
        let path = format!("/dedicatedCloud/{}/datacenter/{dc}/copyFiler", escape(pcc));
        to_dyn(api.call(
            pos,
            "POST",
            &path,
            &[],
            Some(&json!({ "filerId": filer, "accept": true })),
        )?)
    });
    method!("pcc_tasks", |api, pos, pcc: &str| to_dyn(api.call(
        pos,
        "GET",
        &format!("/dedicatedCloud/{}/task", escape(pcc)),
        &[],
        None
    )?));
    method!("pcc_task", |api, pos, pcc: &str, id: i64| to_dyn(
        api.call(
            pos,
            "GET",
            &format!("/dedicatedCloud/{}/task/{id}", escape(pcc)),
            &[],
            None
        )?
    ));

    // Task waits.
    method!(
        "wait_server_task",
        |api, pos, server: &str, id: i64| to_dyn(api.wait(
            pos,
            TaskRef::Server {
                server: server.into(),
                id
            },
            Map::new()
        )?)
    );
    method!(
        "wait_server_task",
        |api, pos, server: &str, id: i64, opts: Map| to_dyn(api.wait(
            pos,
            TaskRef::Server {
                server: server.into(),
                id
            },
            opts
        )?)
    );
    method!("wait_ip_task", |api, pos, ip: &str, id: i64| to_dyn(
        api.wait(pos, TaskRef::Ip { ip: ip.into(), id }, Map::new())?
    ));
    method!("wait_ip_task", |api, pos, ip: &str, id: i64, opts: Map| {
        to_dyn(api.wait(pos, TaskRef::Ip { ip: ip.into(), id }, opts)?)
    });
    method!("wait_pcc_task", |api, pos, pcc: &str, id: i64| to_dyn(
        api.wait(
            pos,
            TaskRef::Pcc {
                pcc: pcc.into(),
                id
            },
            Map::new()
        )?
    ));
    method!("wait_pcc_task", |api,
                              pos,
                              pcc: &str,
                              id: i64,
                              opts: Map| {
        to_dyn(api.wait(
            pos,
            TaskRef::Pcc {
                pcc: pcc.into(),
                id,
            },
            opts,
        )?)
    });

    engine.register_fn("url_escape", |s: &str| escape(s));
}
