//! The OVH API calls the simulator answers, one match arm per route, over the account in
//! [`World`]: its servers, failover IPs, Private Clouds and their tasks, with the rules of
//! OVH's guides. Unauthenticated calls first; everything else only after [`authenticate`].

use axum::http::{HeaderMap, Uri};
use serde_json::{json, Value};

use super::world::{self, Refusal, TaskKind, World};
use super::{authenticate, header, Sim};

pub(super) fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

pub(super) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode_segment(k) == name).then(|| decode_segment(v))
    })
}

pub(super) fn no_route(method: &str, path: &str) -> Refusal {
    Refusal {
        status: 404,
        message: format!("No route for {method} {path}"),
        error_code: None,
    }
}

fn body_field(body: &str, field: &str) -> Result<Value, Refusal> {
    let v: Value = serde_json::from_str(body).map_err(|_| Refusal {
        status: 400,
        message: "Invalid JSON body".into(),
        error_code: None,
    })?;
    v.get(field)
        .cloned()
        .filter(|v| !v.is_null())
        .ok_or_else(|| Refusal {
            status: 400,
            message: format!("Missing parameter {field}"),
            error_code: None,
        })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn handle(
    sim: &Sim,
    method: &str,
    api_path: &str,
    uri: &Uri,
    url: &str,
    headers: &HeaderMap,
    body: &str,
    fail_task: bool,
) -> Result<Value, Refusal> {
    let segs: Vec<String> = api_path
        .trim_matches('/')
        .split('/')
        .map(decode_segment)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    // Unauthenticated calls.
    match (method, s.as_slice()) {
        ("GET", ["auth", "time"]) => return Ok(json!((sim.epoch + sim.now()) as i64)),
        ("GET", ["dedicatedCloud.json"]) => {
            return Ok(schema(
                &sim.world
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .fixture
                    .api,
            ))
        }
        ("POST", ["auth", "credential"]) => {
            let w = sim.world.lock().unwrap_or_else(|p| p.into_inner());
            if header(headers, "X-Ovh-Application")
                != Some(w.fixture.account.application_key.as_str())
            {
                return Err(Refusal {
                    status: 403,
                    message: "This application key is invalid".into(),
                    error_code: Some("INVALID_KEY"),
                });
            }
            // The simulated account has one consumer key; the rules asked for are logged.
            return Ok(json!({
                "consumerKey": w.fixture.account.consumer_key, "state": "pendingValidation",
                "validationUrl": format!("{}/auth/validate", url.split("/1.0").next().unwrap_or("")),
            }));
        }
        _ => {}
    }
    authenticate(sim, method, api_path, url, headers, body)?;
    let now = sim.now();
    let speed = sim.opts.speed;
    let mut w = sim.world();
    let epoch = sim.epoch;
    match (method, s.as_slice()) {
        ("GET", ["auth", "currentCredential"]) => {
            let rules: Vec<Value> = w.fixture.account.access_rules.iter().map(|r| json!({ "method": r.method, "path": r.path })).collect();
            Ok(json!({ "credentialId": 1, "applicationId": 1, "status": "validated", "rules": rules, "expiration": null, "allowedIPs": null, "ovhSupport": false }))
        }
        ("GET", ["dedicated", "server"]) => Ok(json!(w.fixture.servers.iter().map(|s| &s.name).collect::<Vec<_>>())),
        ("GET", ["dedicated", "server", name]) => {
            let (i, server) = w.fixture.servers.iter().enumerate().find(|(_, s)| s.name == *name).ok_or_else(|| missing(&format!("serviceName = {name}")))?;
            Ok(w.server_json(server, i))
        }
        ("GET", ["dedicated", "server", name, "ips"]) => {
            let server = w.fixture.servers.iter().find(|s| s.name == *name).ok_or_else(|| missing(&format!("serviceName = {name}")))?;
            let mut ips: Vec<String> = server.ip.iter().map(|ip| format!("{ip}/32")).collect();
            ips.extend(w.fixture.ips.iter().filter(|i| i.routed_to.as_deref() == Some(*name)).map(|i| i.block.clone()));
            Ok(json!(ips))
        }
        ("GET", ["dedicated", "server", name, "virtualMac"]) => {
            let server = w.fixture.servers.iter().find(|s| s.name == *name).ok_or_else(|| missing(&format!("serviceName = {name}")))?;
            if !server.vmac {
                return Err(Refusal { status: 400, message: format!("{name} does not support virtual MACs"), error_code: None });
            }
            let mut macs: Vec<&str> = w.fixture.ips.iter().filter(|i| i.routed_to.as_deref() == Some(*name)).flat_map(|i| i.vmacs.iter().map(|v| v.mac.as_str())).collect();
            macs.sort_unstable();
            macs.dedup();
            Ok(json!(macs))
        }
        ("GET", ["dedicated", "server", name, "virtualMac", mac]) => Ok(json!({ "macAddress": mac, "type": "ovh" })).and_then(|v| {
            let known = w.fixture.ips.iter().any(|i| i.routed_to.as_deref() == Some(*name) && i.vmacs.iter().any(|m| m.mac == *mac));
            if known { Ok(v) } else { Err(missing(&format!("macAddress = {mac}"))) }
        }),
        ("GET", ["dedicated", "server", name, "virtualMac", mac, "virtualAddress"]) => Ok(json!(w
            .fixture
            .ips
            .iter()
            .filter(|i| i.routed_to.as_deref() == Some(*name) && i.vmacs.iter().any(|m| m.mac == *mac))
            .map(|i| i.block.split('/').next().unwrap_or_default().to_string())
            .collect::<Vec<_>>())),
        ("GET", ["dedicated", "server", name, "ipCanBeMovedTo"]) => {
            let ip = query_param(uri, "ip").ok_or_else(|| Refusal { status: 400, message: "Missing parameter ip".into(), error_code: None })?;
            w.check_ip_move(&ip, name).map(|_| Value::Null)
        }
        ("POST", ["dedicated", "server", name, "ipMove"]) => {
            let ip = body_field(body, "ip")?;
            let ip = ip.as_str().unwrap_or_default().to_string();
            let id = w.start_ip_move(&ip, name, true, now, speed, fail_task)?;
            let task = w.find_task(id, |_| true).cloned().expect("just created");
            Ok(w.task_json(&task, now, epoch))
        }
        ("GET", ["dedicated", "server", name, "task"]) => Ok(json!(w
            .tasks
            .iter()
            .filter(|t| matches!(&t.kind, TaskKind::IpMove { to, via_server_api: true, .. } if to == name))
            .map(|t| t.id)
            .collect::<Vec<_>>())),
        ("GET", ["dedicated", "server", name, "task", id]) => {
            let id: i64 = id.parse().map_err(|_| missing(&format!("taskId = {id}")))?;
            let task = w.find_task(id, |k| matches!(k, TaskKind::IpMove { to, via_server_api: true, .. } if to == name)).cloned().ok_or_else(|| missing(&format!("taskId = {id}")))?;
            Ok(w.task_json(&task, now, epoch))
        }
        ("GET", ["ip"]) => {
            let routed = query_param(uri, "routedTo.serviceName");
            Ok(json!(w.fixture.ips.iter().filter(|i| routed.is_none() || i.routed_to == routed).map(|i| &i.block).collect::<Vec<_>>()))
        }
        ("GET", ["ip", ip]) => {
            let spec = w.fixture.ips.iter().find(|i| i.block == *ip).ok_or_else(|| missing(&format!("ip = {ip}")))?;
            Ok(w.ip_json(spec))
        }
        ("GET", ["ip", ip, "move"]) => {
            let targets: Vec<Value> = w
                .fixture
                .servers
                .iter()
                .filter(|s| w.check_ip_move(ip, &s.name).is_ok())
                .map(|s| json!({ "service": s.name, "nexthop": null }))
                .collect();
            Ok(json!({ "dedicatedServer": targets }))
        }
        ("POST", ["ip", ip, "move"]) => {
            let to = body_field(body, "to")?;
            let id = w.start_ip_move(ip, to.as_str().unwrap_or_default(), false, now, speed, fail_task)?;
            let task = w.find_task(id, |_| true).cloned().expect("just created");
            Ok(w.task_json(&task, now, epoch))
        }
        ("GET", ["ip", ip, "task"]) => Ok(json!(w
            .tasks
            .iter()
            .filter(|t| matches!(&t.kind, TaskKind::IpMove { block, via_server_api: false, .. } if block == ip))
            .map(|t| t.id)
            .collect::<Vec<_>>())),
        ("GET", ["ip", ip, "task", id]) => {
            let id: i64 = id.parse().map_err(|_| missing(&format!("taskId = {id}")))?;
            let task = w.find_task(id, |k| matches!(k, TaskKind::IpMove { block, via_server_api: false, .. } if block == ip)).cloned().ok_or_else(|| missing(&format!("taskId = {id}")))?;
            Ok(w.task_json(&task, now, epoch))
        }
        ("GET", ["dedicatedCloud"]) => Ok(json!(w.fixture.pccs.iter().map(|p| &p.service_name).collect::<Vec<_>>())),
        ("GET", ["dedicatedCloud", pcc]) => {
            let p = pcc_spec(&w, pcc)?;
            Ok(json!({
                "serviceName": p.service_name, "location": p.location, "state": "delivered", "generation": "2.0",
                "commercialRange": "2018v2", "description": null, "productReference": "EPCC", "managementInterface": "vmwareVsphere",
                "webInterfaceUrl": format!("https://{}.ovh.com/ui", p.service_name), "version": { "major": "7.0" }, "billingType": "monthly",
            }))
        }
        ("GET", ["dedicatedCloud", pcc, "datacenter"]) => Ok(json!(pcc_spec(&w, pcc)?.datacenters.iter().map(|d| d.id).collect::<Vec<_>>())),
        ("GET", ["dedicatedCloud", pcc, "datacenter", dc]) => {
            let d = dc_spec(&w, pcc, dc)?;
            Ok(json!({ "datacenterId": d.id, "name": d.name, "description": null, "commercialName": "sddc-2018", "commercialRangeName": "2018v2", "version": "7.0", "isRemovable": false }))
        }
        ("GET", ["dedicatedCloud", pcc, "datacenter", dc, "filer"]) => Ok(json!(dc_spec(&w, pcc, dc)?.filers.iter().map(|f| f.id).collect::<Vec<_>>())),
        ("GET", ["dedicatedCloud", pcc, "datacenter", dc, "filer", id]) => {
            let f = dc_spec(&w, pcc, dc)?.filers.iter().find(|f| f.id.to_string() == *id).ok_or_else(|| missing(&format!("filerId = {id}")))?;
            Ok(json!({
                "filerId": f.id, "name": f.name, "resourceName": f.name, "profile": if f.read_only { "restore-readonly" } else { "2t-ssd" },
                "fullProfile": "2T SSD", "size": { "unit": "GB", "value": f.size_gb }, "state": "delivered", "connectionState": "online",
                "master": "storage-1", "slave": null, "activeNode": "master", "isManagedByOvh": false, "billingType": "monthly",
            }))
        }
        ("POST", ["dedicatedCloud", pcc, "datacenter", dc, api @ ("linkFilerFromSbg" | "copyFiler")]) => {
            let offered = if *api == "linkFilerFromSbg" { w.fixture.api.link_filer_from_sbg } else { w.fixture.api.copy_filer };
            if !offered {
                return Err(no_route(method, api_path));
            }
            let dc: i64 = dc.parse().map_err(|_| missing(&format!("datacenterId = {dc}")))?;
            let filer = body_field(body, "filerId")?.as_i64().ok_or_else(|| Refusal { status: 400, message: "filerId must be an integer".into(), error_code: None })?;
            if *api == "copyFiler" && body_field(body, "accept")?.as_bool() != Some(true) {
                return Err(Refusal { status: 400, message: "You must accept that the data is copied through a shared intermediary server (accept: true)".into(), error_code: None });
            }
            let name: &'static str = if *api == "copyFiler" { "copyFiler" } else { "linkFilerFromSbg" };
            let id = w.start_filer_copy(pcc, dc, filer, name, now, speed, fail_task)?;
            let task = w.find_task(id, |_| true).cloned().expect("just created");
            Ok(w.task_json(&task, now, epoch))
        }
        ("GET", ["dedicatedCloud", pcc, "datacenter", dc, "copyFilerStatus"]) => {
            if !w.fixture.api.copy_filer {
                return Err(no_route(method, api_path));
            }
            dc_spec(&w, pcc, dc)?;
            let list: Vec<Value> = w
                .tasks
                .iter()
                .filter(|t| matches!(&t.kind, TaskKind::FilerCopy { pcc: p, dc: d, .. } if p == pcc && d.to_string() == *dc))
                .map(|t| {
                    let TaskKind::FilerCopy { source_filer, source_name, .. } = &t.kind else { unreachable!("filtered above") };
                    let task = w.task_json(t, now, epoch);
                    json!({
                        "id": t.id, "filerId": source_filer, "filerName": source_name, "domain": pcc, "status": task["state"],
                        "progress": task["progress"], "transfered": format!("{}", task["progress"].as_i64().unwrap_or(0) * 20_000_000_000), "creationDate": task["executionDate"], "doneDate": task["endDate"],
                    })
                })
                .collect();
            Ok(json!(list))
        }
        ("GET", ["dedicatedCloud", pcc, "task"]) => {
            pcc_spec(&w, pcc)?;
            Ok(json!(w.tasks.iter().filter(|t| matches!(&t.kind, TaskKind::FilerCopy { pcc: p, .. } if p == pcc)).map(|t| t.id).collect::<Vec<_>>()))
        }
        ("GET", ["dedicatedCloud", pcc, "task", id]) => {
            let id: i64 = id.parse().map_err(|_| missing(&format!("taskId = {id}")))?;
            let task = w.find_task(id, |k| matches!(k, TaskKind::FilerCopy { pcc: p, .. } if p == pcc)).cloned().ok_or_else(|| missing(&format!("taskId = {id}")))?;
            Ok(w.task_json(&task, now, epoch))
        }
        ("GET", ["dedicatedCloud", pcc, option @ ("hds" | "pcidss")]) => {
            let p = pcc_spec(&w, pcc)?;
            Ok(json!({ "state": if *option == "hds" { &p.hds } else { &p.pcidss } }))
        }
        _ => Err(no_route(method, api_path)),
    }
}

/// The API description (`/dedicatedCloud.json`), listing the operations this account offers,
/// so that runbooks can probe for the SBG-recovery calls instead of assuming them.
fn schema(api: &world::ApiSpec) -> Value {
    let mut apis = vec![
        ("/dedicatedCloud", "GET"),
        ("/dedicatedCloud/{serviceName}", "GET"),
        ("/dedicatedCloud/{serviceName}/datacenter", "GET"),
        (
            "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}",
            "GET",
        ),
        (
            "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}/filer",
            "GET",
        ),
        (
            "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}/filer/{filerId}",
            "GET",
        ),
        ("/dedicatedCloud/{serviceName}/task", "GET"),
        ("/dedicatedCloud/{serviceName}/task/{taskId}", "GET"),
        ("/dedicatedCloud/{serviceName}/hds", "GET"),
        ("/dedicatedCloud/{serviceName}/pcidss", "GET"),
    ];
    if api.link_filer_from_sbg {
        apis.push((
            "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}/linkFilerFromSbg",
            "POST",
        ));
    }
    if api.copy_filer {
        apis.push((
            "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}/copyFiler",
            "POST",
        ));
        apis.push((
            "/dedicatedCloud/{serviceName}/datacenter/{datacenterId}/copyFilerStatus",
            "GET",
        ));
    }
    json!({
        "apiVersion": "1.0",
        "resourcePath": "/dedicatedCloud",
        "apis": apis.iter().map(|(path, method)| json!({
            "path": path,
            "operations": [{ "httpMethod": method, "apiStatus": { "value": "PRODUCTION" } }],
        })).collect::<Vec<_>>(),
    })
}

pub(super) fn missing(what: &str) -> Refusal {
    Refusal {
        status: 404,
        message: format!("The requested object ({what}) does not exist"),
        error_code: None,
    }
}

fn pcc_spec<'a>(w: &'a World, pcc: &str) -> Result<&'a world::PccSpec, Refusal> {
    w.fixture
        .pccs
        .iter()
        .find(|p| p.service_name == pcc)
        .ok_or_else(|| missing(&format!("serviceName = {pcc}")))
}

fn dc_spec<'a>(w: &'a World, pcc: &str, dc: &str) -> Result<&'a world::DatacenterSpec, Refusal> {
    pcc_spec(w, pcc)?
        .datacenters
        .iter()
        .find(|d| d.id.to_string() == dc)
        .ok_or_else(|| missing(&format!("datacenterId = {dc}")))
}
