//! The simulated account: what the fixture describes, its state as calls change it, and the
//! rules from OVH's guides that decide what a call may do. Tasks move through their states as
//! time passes (durations from the fixture, divided by the speed); their effects (an IP routed
//! elsewhere, a `restore-000xxx` datastore appearing) apply when they end.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A fixture: the account the simulator serves. JSON; see docs/simulator.md.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub account: Account,
    #[serde(default)]
    pub durations: Durations,
    #[serde(default)]
    pub servers: Vec<ServerSpec>,
    #[serde(default)]
    pub ips: Vec<IpSpec>,
    #[serde(default)]
    pub pccs: Vec<PccSpec>,
    /// Which SBG-recovery calls this account's API offers (they came and went in 2021).
    #[serde(default)]
    pub api: ApiSpec,
    #[serde(default)]
    pub faults: Vec<super::faults::Fault>,
    /// Where OVH's confirmation emails are delivered (SMTP, no TLS: a local server); without
    /// it they are only recorded (`/_sim/emails`).
    #[serde(default)]
    pub smtp: Option<SmtpTarget>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub application_key: String,
    pub application_secret: String,
    pub consumer_key: String,
    /// The consumer key's access rules; default: everything.
    #[serde(default = "all_rules")]
    pub access_rules: Vec<AccessRule>,
    /// Where OVH's confirmation emails go.
    #[serde(default)]
    pub email: Option<String>,
    /// An OAuth2 service account (client credentials), if the account has one.
    #[serde(default)]
    pub oauth2: Option<OAuth2Client>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Client {
    pub client_id: String,
    pub client_secret: String,
}

fn all_rules() -> Vec<AccessRule> {
    ["GET", "POST", "PUT", "DELETE"]
        .iter()
        .map(|m| AccessRule {
            method: m.to_string(),
            path: "/*".into(),
        })
        .collect()
}

/// The consumer key's rules are the client's own type: one matching rule for both sides.
pub use crate::ovh::AccessRule;

/// How long tasks take (at speed 1).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Durations {
    #[serde(default = "default_ip_move")]
    pub ip_move: String,
    #[serde(default = "default_filer_copy")]
    pub filer_copy: String,
}

fn default_ip_move() -> String {
    "40s".into()
}
fn default_filer_copy() -> String {
    "6h".into()
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            ip_move: default_ip_move(),
            filer_copy: default_filer_copy(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub name: String,
    /// `dedicated.DatacenterEnum`, such as `sbg3`, `rbx8`, `gra2`, `bhs6`.
    pub datacenter: String,
    /// `standard`, or `eco` (Kimsufi, So you Start, Rise).
    #[serde(default = "standard")]
    pub range: String,
    /// Whether the server can carry virtual MACs.
    #[serde(default = "yes")]
    pub vmac: bool,
    /// Whether this server accepts failover IPs at all (some Eco offers do not).
    #[serde(default = "yes")]
    pub accepts_failover: bool,
    #[serde(default)]
    pub ip: Option<String>,
}

fn standard() -> String {
    "standard".into()
}
fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpSpec {
    /// The block, with its mask: `203.0.113.7/32`.
    pub block: String,
    pub routed_to: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub vmacs: Vec<Vmac>,
    /// Make a move of this block end in `ovhError`.
    #[serde(default)]
    pub fail_move: bool,
    /// Override the move duration for this block.
    #[serde(default)]
    pub move_duration: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Vmac {
    pub mac: String,
    /// Another block carries the same vMAC: OVH refuses to move either.
    #[serde(default)]
    pub duplicate: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PccSpec {
    pub service_name: String,
    /// The pccZone: `sbg1a`, `rbx2b`...
    pub location: String,
    #[serde(default = "disabled")]
    pub hds: String,
    #[serde(default = "disabled")]
    pub pcidss: String,
    #[serde(default)]
    pub datacenters: Vec<DatacenterSpec>,
}

fn disabled() -> String {
    "disabled".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatacenterSpec {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub filers: Vec<FilerSpec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilerSpec {
    pub id: i64,
    pub name: String,
    #[serde(default = "default_size")]
    pub size_gb: i64,
    /// Restored copies are read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Make a copy of this filer end in `error`.
    #[serde(default)]
    pub fail_copy: bool,
}

fn default_size() -> i64 {
    2048
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    #[serde(default = "yes")]
    pub link_filer_from_sbg: bool,
    #[serde(default = "yes")]
    pub copy_filer: bool,
}

impl Default for ApiSpec {
    fn default() -> Self {
        ApiSpec {
            link_filer_from_sbg: true,
            copy_filer: true,
        }
    }
}

/// The failover-IP zone of a datacenter: an IP never leaves its zone (SBG can go to GRA or
/// RBX, not to BHS). Our grouping of OVH's datacenters; see docs/simulator.md.
pub fn zone(datacenter: &str) -> &'static str {
    let dc = datacenter.to_ascii_lowercase();
    let campus = campus(&dc);
    match campus {
        "BHS" | "YYZ" | "YNM" => "ca",
        "HIL" | "VIN" => "us",
        "SGP" | "SYD" => "apac",
        _ => "eu",
    }
}

/// The campus (`ip.CampusEnum`) of a datacenter name.
pub fn campus(datacenter: &str) -> &'static str {
    const CAMPUSES: &[(&str, &str)] = &[
        ("sbg", "SBG"),
        ("rbx", "RBX"),
        ("gra", "GRA"),
        ("bhs", "BHS"),
        ("eri", "ERI"),
        ("lim", "LIM"),
        ("waw", "WAW"),
        ("sgp", "SGP"),
        ("syd", "SYD"),
        ("hil", "HIL"),
        ("vin", "VIN"),
        ("yyz", "YYZ"),
        ("ynm", "YNM"),
        ("lil", "RBX"),
        ("p19", "RBX"),
        ("dc1", "RBX"),
        ("crx", "RBX"),
    ];
    let dc = datacenter.to_ascii_lowercase();
    CAMPUSES
        .iter()
        .find(|(p, _)| dc.starts_with(p))
        .map_or("RBX", |(_, c)| c)
}

/// A refusal: HTTP status, OVH-style message and error code.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub error_code: Option<&'static str>,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
        error_code: None,
    }
}

fn not_found(what: &str) -> Refusal {
    refuse(404, format!("The requested object ({what}) does not exist"))
}

/// A task in flight or done, of any family.
#[derive(Clone, Debug)]
pub struct Task {
    pub id: i64,
    pub kind: TaskKind,
    /// Simulated seconds since the world started.
    pub created: f64,
    pub duration: f64,
    pub fails: bool,
    pub finished: bool,
}

#[derive(Clone, Debug)]
pub enum TaskKind {
    /// An IP move: old API (task under the destination server) or new API (under the IP).
    IpMove {
        block: String,
        to: String,
        via_server_api: bool,
    },
    /// A datastore copy (`linkFilerFromSbg` or `copyFiler`) into `pcc`/`dc`.
    FilerCopy {
        pcc: String,
        dc: i64,
        source_filer: i64,
        source_name: String,
        restored_id: i64,
        api: &'static str,
    },
}

/// The mutable state of the simulated account.
pub struct World {
    pub fixture: Fixture,
    pub tasks: Vec<Task>,
    next_task: i64,
    /// Emails OVH would have sent: (to, subject, body).
    pub emails: Vec<Value>,
}

impl World {
    pub fn new(fixture: Fixture) -> World {
        World {
            fixture,
            tasks: Vec::new(),
            next_task: 1_000_001,
            emails: Vec::new(),
        }
    }

    fn server(&self, name: &str) -> Result<&ServerSpec, Refusal> {
        self.fixture
            .servers
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| not_found(&format!("serviceName = {name}")))
    }

    fn ip_spec(&self, block: &str) -> Result<&IpSpec, Refusal> {
        self.fixture
            .ips
            .iter()
            .find(|i| i.block == block)
            .ok_or_else(|| {
                // A single address inside a larger block: blocks move whole.
                let inside = self
                    .fixture
                    .ips
                    .iter()
                    .find(|i| block_contains(&i.block, block));
                match inside {
                    Some(parent) => refuse(
                        400,
                        format!(
                            "{block} is part of the block {}: only whole blocks can be moved",
                            parent.block
                        ),
                    ),
                    None => not_found(&format!("ip = {block}")),
                }
            })
    }

    fn pcc(&self, name: &str) -> Result<&PccSpec, Refusal> {
        self.fixture
            .pccs
            .iter()
            .find(|p| p.service_name == name)
            .ok_or_else(|| not_found(&format!("serviceName = {name}")))
    }

    fn datacenter(&self, pcc: &str, dc: i64) -> Result<&DatacenterSpec, Refusal> {
        self.pcc(pcc)?
            .datacenters
            .iter()
            .find(|d| d.id == dc)
            .ok_or_else(|| not_found(&format!("datacenterId = {dc}")))
    }

    fn ip_move_in_flight(&self, block: &str) -> bool {
        self.tasks.iter().any(|t| {
            !t.finished && matches!(&t.kind, TaskKind::IpMove { block: b, .. } if b == block)
        })
    }

    // ----- rules -----

    /// Whether `block` may move to server `to`; the reason if not.
    pub fn check_ip_move(&self, block: &str, to: &str) -> Result<(), Refusal> {
        let ip = self.ip_spec(block)?;
        let dest = self.server(to)?;
        if ip.routed_to.as_deref() == Some(to) {
            return Err(refuse(400, format!("{block} is already routed to {to}")));
        }
        if self.ip_move_in_flight(block) {
            return Err(refuse(
                409,
                format!("a move of {block} is already in progress"),
            ));
        }
        if let Some(from) = ip.routed_to.as_deref().and_then(|s| self.server(s).ok()) {
            if zone(&from.datacenter) != zone(&dest.datacenter) {
                return Err(refuse(
                    400,
                    format!(
                        "{block} cannot be moved from {} ({}) to {} ({}): a failover IP cannot leave its zone",
                        campus(&from.datacenter),
                        from.datacenter,
                        campus(&dest.datacenter),
                        dest.datacenter
                    ),
                ));
            }
        }
        if !dest.accepts_failover {
            return Err(refuse(
                400,
                format!("{to} ({} range) does not accept failover IPs", dest.range),
            ));
        }
        if ip.vmacs.iter().any(|v| v.duplicate) {
            return Err(refuse(400, format!("{block} has a virtual MAC shared with another block: blocks with duplicate virtual MACs cannot be moved")));
        }
        if !ip.vmacs.is_empty() && !dest.vmac {
            return Err(refuse(400, format!("{block} has virtual MACs and {to} does not support virtual MACs: remove them first")));
        }
        Ok(())
    }

    /// Starts an IP move; returns the task id. `fail` makes the task end in error.
    #[allow(clippy::too_many_arguments)]
    pub fn start_ip_move(
        &mut self,
        block: &str,
        to: &str,
        via_server_api: bool,
        now: f64,
        speed: f64,
        fail: bool,
    ) -> Result<i64, Refusal> {
        self.check_ip_move(block, to)?;
        let ip = self.ip_spec(block)?;
        let duration = parse_secs(
            ip.move_duration
                .as_deref()
                .unwrap_or(&self.fixture.durations.ip_move),
        ) / speed;
        let fails = ip.fail_move || fail;
        Ok(self.add_task(
            TaskKind::IpMove {
                block: block.to_string(),
                to: to.to_string(),
                via_server_api,
            },
            now,
            duration,
            fails,
        ))
    }

    fn add_task(&mut self, kind: TaskKind, now: f64, duration: f64, fails: bool) -> i64 {
        let id = self.next_task;
        self.next_task += 1;
        self.tasks.push(Task {
            id,
            kind,
            created: now,
            duration,
            fails,
            finished: false,
        });
        id
    }

    /// Starts a datastore copy into `pcc`/`dc` (`linkFilerFromSbg` or `copyFiler`). `fail`
    /// makes the task end in error.
    #[allow(clippy::too_many_arguments)]
    pub fn start_filer_copy(
        &mut self,
        pcc: &str,
        dc: i64,
        filer_id: i64,
        api: &'static str,
        now: f64,
        speed: f64,
        fail: bool,
    ) -> Result<i64, Refusal> {
        let dest = self.pcc(pcc)?.clone();
        self.datacenter(pcc, dc)?;
        if dest.location.eq_ignore_ascii_case("sbg1a") {
            return Err(refuse(400, format!("{pcc} is located in sbg1a: the destination Private Cloud must be outside sbg1a")));
        }
        let (source, filer) = self
            .fixture
            .pccs
            .iter()
            .filter(|p| p.location.eq_ignore_ascii_case("sbg1a"))
            .find_map(|p| {
                p.datacenters
                    .iter()
                    .flat_map(|d| &d.filers)
                    .find(|f| f.id == filer_id)
                    .map(|f| (p.clone(), f.clone()))
            })
            .ok_or_else(|| not_found(&format!("filerId = {filer_id} in sbg1a")))?;
        for (option, src, dst) in [
            ("HDS", &source.hds, &dest.hds),
            ("PCI-DSS", &source.pcidss, &dest.pcidss),
        ] {
            if src == "enabled" && dst != "enabled" {
                return Err(refuse(400, format!("{} has {option} enabled and {pcc} does not: the destination must have the same certification", source.service_name)));
            }
        }
        if self.tasks.iter().any(|t| {
            matches!(&t.kind, TaskKind::FilerCopy { source_filer, .. } if *source_filer == filer_id)
                && (!t.finished || !t.fails)
        }) {
            return Err(refuse(
                409,
                format!("filer {filer_id} is already being restored or was restored"),
            ));
        }
        let duration = parse_secs(&self.fixture.durations.filer_copy) / speed;
        let restored_id = 900_000 + filer_id;
        Ok(self.add_task(
            TaskKind::FilerCopy {
                pcc: pcc.to_string(),
                dc,
                source_filer: filer_id,
                source_name: filer.name.clone(),
                restored_id,
                api,
            },
            now,
            duration,
            filer.fail_copy || fail,
        ))
    }

    // ----- time -----

    /// Ends the tasks whose time has come and applies their effects.
    pub fn advance(&mut self, now: f64) {
        let due: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| {
                !self.tasks[i].finished && now >= self.tasks[i].created + self.tasks[i].duration
            })
            .collect();
        for i in due {
            self.tasks[i].finished = true;
            if self.tasks[i].fails {
                continue;
            }
            match self.tasks[i].kind.clone() {
                TaskKind::IpMove { block, to, .. } => {
                    if let Some(ip) = self.fixture.ips.iter_mut().find(|ip| ip.block == block) {
                        ip.routed_to = Some(to);
                    }
                }
                TaskKind::FilerCopy {
                    pcc,
                    dc,
                    source_filer,
                    source_name,
                    restored_id,
                    ..
                } => {
                    let name = restored_name(&source_name, source_filer);
                    if let Some(d) = self
                        .fixture
                        .pccs
                        .iter_mut()
                        .find(|p| p.service_name == pcc)
                        .and_then(|p| p.datacenters.iter_mut().find(|d| d.id == dc))
                    {
                        d.filers.push(FilerSpec {
                            id: restored_id,
                            name: name.clone(),
                            size_gb: default_size(),
                            read_only: true,
                            fail_copy: false,
                        });
                    }
                    if let Some(to) = self.fixture.account.email.clone() {
                        self.emails.push(json!({
                            "delivered": false,
                            "to": to,
                            "subject": format!("[OVHcloud] Datastore {source_name} restored as {name} on {pcc}"),
                            "body": format!("Hello,\n\nThe replication of datastore {source_name} (filer {source_filer}) is complete.\nIt is now available, read-only, as {name} on all hosts of datacenter {dc} of {pcc}.\nClone your virtual machines to a writable datastore before powering them on.\n\nOVHcloud\n"),
                        }));
                    }
                }
            }
        }
    }

    // ----- views (the JSON OVH answers) -----

    pub fn task_status(&self, task: &Task, now: f64) -> &'static str {
        let fraction = if task.duration <= 0.0 {
            1.0
        } else {
            (now - task.created) / task.duration
        };
        match (&task.kind, task.finished, task.fails) {
            (TaskKind::IpMove { .. }, true, false) => "done",
            (TaskKind::IpMove { .. }, true, true) => "ovhError",
            (TaskKind::IpMove { .. }, false, _) if fraction < 0.1 => "init",
            (TaskKind::IpMove { .. }, false, _) if fraction < 0.3 => "todo",
            (TaskKind::IpMove { .. }, false, _) => "doing",
            (TaskKind::FilerCopy { .. }, true, false) => "done",
            (TaskKind::FilerCopy { .. }, true, true) => "error",
            (TaskKind::FilerCopy { .. }, false, _) if fraction < 0.05 => "todo",
            (TaskKind::FilerCopy { .. }, false, _) => "doing",
        }
    }

    pub fn task_json(&self, task: &Task, now: f64, epoch: f64) -> Value {
        let status = self.task_status(task, now);
        let start = iso(epoch + task.created);
        let done = task
            .finished
            .then(|| iso(epoch + task.created + task.duration));
        match &task.kind {
            TaskKind::IpMove {
                to,
                via_server_api: true,
                block,
            } => json!({
                "taskId": task.id, "function": "genericMoveFloatingIp", "status": status,
                "startDate": start, "doneDate": done, "lastUpdate": iso(epoch + now.min(task.created + task.duration)),
                "comment": format!("Move {block} to {to}"), "needSchedule": false, "note": null,
                "plannedInterventionId": null, "tags": null, "ticketReference": null,
            }),
            TaskKind::IpMove {
                to,
                via_server_api: false,
                block,
            } => json!({
                "taskId": task.id, "function": "genericMoveFloatingIp", "status": status,
                "startDate": start, "doneDate": done, "lastUpdate": iso(epoch + now.min(task.created + task.duration)),
                "comment": format!("Move {block} to {to}"), "destination": { "serviceName": to },
            }),
            TaskKind::FilerCopy {
                dc,
                source_filer,
                api,
                ..
            } => {
                let progress = if task.finished {
                    100
                } else {
                    (((now - task.created) / task.duration.max(1e-9)) * 100.0).clamp(0.0, 99.0)
                        as i64
                };
                json!({
                    "taskId": task.id, "name": api, "type": "generic", "state": status, "progress": progress,
                    "description": format!("Copy of SBG filer {source_filer}"), "executionDate": start, "endDate": done,
                    "lastModificationDate": iso(epoch + now.min(task.created + task.duration)),
                    "datacenterId": dc, "filerId": source_filer, "createdBy": "lifeboat-sim", "createdFrom": "api",
                })
            }
        }
    }

    pub fn ip_json(&self, ip: &IpSpec) -> Value {
        let dc = ip
            .routed_to
            .as_deref()
            .and_then(|s| self.server(s).ok())
            .map(|s| s.datacenter.clone());
        json!({
            "ip": ip.block, "type": "failover", "routedTo": { "serviceName": ip.routed_to },
            "country": "fr", "campus": dc.as_deref().map(campus), "description": ip.description,
            "canBeTerminated": true, "isAdditionalIp": true, "organisationId": null, "version": 4,
        })
    }

    pub fn server_json(&self, s: &ServerSpec, index: usize) -> Value {
        json!({
            "name": s.name, "serverId": 100_000 + index as i64, "ip": s.ip, "datacenter": s.datacenter,
            "region": format!("eu-west-{}", campus(&s.datacenter).to_lowercase()), "state": "ok", "powerState": "poweron",
            "commercialRange": if s.range == "eco" { "rise" } else { "advance" }, "os": "debian12_64",
            "reverse": s.name, "monitoring": true, "noIntervention": false, "professionalUse": false,
            "supportLevel": "pro", "rack": "S123", "linkSpeed": 1000, "bootId": 1, "rootDevice": null, "rescueMail": null,
        })
    }

    pub fn find_task(&self, id: i64, matches: impl Fn(&TaskKind) -> bool) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id && matches(&t.kind))
    }
}

/// `restore-000xxx`, xxx being the source datastore's number.
fn restored_name(source: &str, id: i64) -> String {
    let digits: String = source.chars().filter(char::is_ascii_digit).collect();
    let number = if digits.is_empty() {
        id.to_string()
    } else {
        digits
    };
    format!("restore-{number:0>6}")
}

fn block_contains(block: &str, ip: &str) -> bool {
    let parse = |s: &str| -> Option<(u32, u32)> {
        let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
        let a: std::net::Ipv4Addr = addr.parse().ok()?;
        Some((u32::from(a), len.parse().ok()?))
    };
    match (parse(block), parse(ip)) {
        (Some((b, bl)), Some((i, il))) if bl < 32 && il >= bl => {
            let mask = if bl == 0 { 0 } else { u32::MAX << (32 - bl) };
            b & mask == i & mask
        }
        _ => false,
    }
}

pub fn parse_secs(text: &str) -> f64 {
    humantime::parse_duration(text)
        .unwrap_or(Duration::from_secs(40))
        .as_secs_f64()
}

/// RFC 3339 with seconds, from epoch seconds.
pub fn iso(epoch_secs: f64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs_f64(epoch_secs.max(0.0));
    let mut s = String::new();
    use std::fmt::Write;
    match write!(s, "{}", humantime::format_rfc3339_seconds(t)) {
        Ok(()) => s.replace('Z', "+00:00"),
        Err(_) => "9999-12-31T23:59:59+00:00".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_blocks() {
        assert_eq!(zone("sbg3"), zone("gra2"));
        assert_eq!(zone("sbg3"), zone("rbx8"));
        assert_ne!(zone("sbg3"), zone("bhs6"));
        assert!(block_contains("203.0.113.0/29", "203.0.113.3/32"));
        assert!(!block_contains("203.0.113.0/29", "203.0.113.9/32"));
        assert_eq!(restored_name("ssd-042", 1), "restore-000042");
    }

    #[test]
    fn access_rules_match_like_ovh() {
        let r = AccessRule {
            method: "GET".into(),
            path: "/dedicated/server/*".into(),
        };
        assert!(r.allows("GET", "/dedicated/server/ns1/ips"));
        assert!(!r.allows("GET", "/dedicated/server"));
        let m = AccessRule {
            method: "POST".into(),
            path: "/ip/*/move".into(),
        };
        assert!(m.allows("POST", "/ip/1.2.3.4%2F32/move"));
        assert!(!m.allows("POST", "/ip/1.2.3.4%2F32/park"));
        assert!(!r.allows("POST", "/dedicated/server/ns1/ipMove"));
        assert!(!r.allows("GET", "/ip"));
    }
}
