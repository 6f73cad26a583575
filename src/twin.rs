//! Twins: a simulator fixture read from a real account, so that a rehearsal runs a runbook end
//! to end against a copy of the account instead of the account. Reading uses GET calls only,
//! and no credential is ever written into the twin.

use std::collections::HashMap;

use serde_json::Value;

use crate::ovh::{escape, Client, Error};
use crate::sim::world::{
    Account, ApiSpec, DatacenterSpec, Durations, FilerSpec, Fixture, IpSpec, PccSpec, ServerSpec,
    Vmac,
};

/// The credentials a twin's simulator accepts: placeholders, never the account's own.
pub const TWIN_APPLICATION_KEY: &str = "twin-application-key";
pub const TWIN_APPLICATION_SECRET: &str = "twin-application-secret";
pub const TWIN_CONSUMER_KEY: &str = "twin-consumer-key";

/// Reads the account's dedicated servers (with their virtual MACs), failover IPs and Private
/// Clouds (datacenters, filers, certifications) and writes them as a fixture.
pub async fn snapshot(client: &Client) -> Result<Fixture, Error> {
    let mut servers = Vec::new();
    // IP (without mask) -> the virtual MACs carrying it.
    let mut vmacs: HashMap<String, Vec<String>> = HashMap::new();
    for name in client.servers().await? {
        let server = client.server(&name).await?;
        let range = server
            .commercial_range
            .clone()
            .unwrap_or_default()
            .to_lowercase();
        let eco = ["rise", "kimsufi", "sys", "eco"]
            .iter()
            .any(|r| range.contains(r));
        let path = format!("/dedicated/server/{}/virtualMac", escape(&name));
        // A server that cannot carry virtual MACs answers an error here.
        let macs: Option<Vec<String>> = client
            .get(&path, &[])
            .await
            .ok()
            .and_then(|v| serde_json::from_value(v).ok());
        for mac in macs.iter().flatten() {
            let addresses: Vec<String> = serde_json::from_value(
                client
                    .get(&format!("{path}/{}/virtualAddress", escape(mac)), &[])
                    .await?,
            )
            .unwrap_or_default();
            for a in addresses {
                vmacs.entry(a).or_default().push(mac.clone());
            }
        }
        servers.push(ServerSpec {
            name: server.name,
            datacenter: server.datacenter,
            range: if eco { "eco".into() } else { "standard".into() },
            vmac: macs.is_some(),
            accepts_failover: true,
            ip: server.ip,
        });
    }
    // A MAC seen on more than one address is a duplicate: OVH refuses to move such blocks.
    let mut mac_uses: HashMap<String, usize> = HashMap::new();
    for list in vmacs.values() {
        for m in list {
            *mac_uses.entry(m.clone()).or_default() += 1;
        }
    }

    let mut ips = Vec::new();
    for block in client.ips().await? {
        let ip = client.ip(&block).await?;
        if ip.kind != "failover" {
            continue;
        }
        let address = block.split('/').next().unwrap_or_default().to_string();
        ips.push(IpSpec {
            block: ip.ip,
            routed_to: ip.routed_to.and_then(|r| r.service_name),
            description: ip.description,
            vmacs: vmacs
                .get(&address)
                .into_iter()
                .flatten()
                .map(|m| Vmac {
                    mac: m.clone(),
                    duplicate: mac_uses.get(m).copied().unwrap_or(0) > 1,
                })
                .collect(),
            fail_move: false,
            move_duration: None,
        });
    }

    let mut pccs = Vec::new();
    for name in client.pccs().await? {
        let pcc = client.pcc(&name).await?;
        let option = |v: Result<crate::ovh::types::OptionStatus, Error>| {
            v.map(|o| o.state.to_string())
                .unwrap_or_else(|_| "disabled".into())
        };
        let hds = option(client.hds(&name).await);
        let pcidss = option(client.pcidss(&name).await);
        let mut datacenters = Vec::new();
        for dc in client.datacenters(&name).await? {
            let d = client.datacenter(&name, dc).await?;
            let mut filers = Vec::new();
            for f in client.filers(&name, dc).await? {
                let filer = client.filer(&name, dc, f).await?;
                let size_gb = filer
                    .size
                    .as_ref()
                    .map(|s| {
                        if s.unit.eq_ignore_ascii_case("TB") {
                            s.value * 1024
                        } else {
                            s.value
                        }
                    })
                    .unwrap_or(0);
                let read_only = filer
                    .profile
                    .as_deref()
                    .is_some_and(|p| p.contains("readonly"));
                filers.push(FilerSpec {
                    id: filer.filer_id,
                    name: filer.name,
                    size_gb,
                    read_only,
                    fail_copy: false,
                });
            }
            datacenters.push(DatacenterSpec {
                id: d.datacenter_id,
                name: d.name,
                filers,
            });
        }
        pccs.push(PccSpec {
            service_name: pcc.service_name,
            location: pcc.location,
            hds,
            pcidss,
            datacenters,
        });
    }

    // Which SBG-recovery calls the account offers, from its API description.
    let api = match client.get("/dedicatedCloud.json", &[]).await {
        Ok(schema) => {
            let paths: Vec<&str> = schema["apis"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["path"].as_str())
                .collect();
            ApiSpec {
                link_filer_from_sbg: paths.iter().any(|p| p.ends_with("/linkFilerFromSbg")),
                copy_filer: paths.iter().any(|p| p.ends_with("/copyFiler")),
            }
        }
        Err(_) => ApiSpec::default(),
    };

    Ok(Fixture {
        account: Account {
            application_key: TWIN_APPLICATION_KEY.into(),
            application_secret: TWIN_APPLICATION_SECRET.into(),
            consumer_key: TWIN_CONSUMER_KEY.into(),
            access_rules: serde_json::from_value(Value::Array(vec![
                serde_json::json!({ "method": "GET", "path": "/*" }),
                serde_json::json!({ "method": "POST", "path": "/*" }),
                serde_json::json!({ "method": "PUT", "path": "/*" }),
                serde_json::json!({ "method": "DELETE", "path": "/*" }),
            ]))
            .unwrap_or_default(),
            email: None,
            oauth2: None,
        },
        durations: Durations::default(),
        servers,
        ips,
        pccs,
        api,
        faults: Vec::new(),
        smtp: None,
    })
}
/// How a twin ended compared with how it started, as a rehearsal there and back reports it:
/// every failover IP's route (what a way back must restore), and which other parts of the
/// account differ (what irreversible steps left behind).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub ips: usize,
    /// IPs routed as at the start.
    pub ips_back: usize,
    /// `IP: now X, was Y`, for each IP that is not.
    pub not_back: Vec<String>,
    /// The other parts of the twin that differ from the start (`pccs`, `servers`...).
    pub other_changes: Vec<String>,
}

impl Comparison {
    /// Compares two simulator states (`Sim::state`).
    pub fn of(before: &Value, after: &Value) -> Comparison {
        let routes = |state: &Value| -> Vec<(String, String)> {
            state["ips"]
                .as_array()
                .map(|ips| {
                    ips.iter()
                        .map(|ip| {
                            let to = ip["routed_to"].as_str().unwrap_or("nowhere").to_string();
                            (ip["block"].as_str().unwrap_or_default().to_string(), to)
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let after_routes: HashMap<String, String> = routes(after).into_iter().collect();
        let start = routes(before);
        let not_back: Vec<String> = start
            .iter()
            .filter_map(|(ip, was)| {
                let now = after_routes.get(ip).map_or("gone", String::as_str);
                (now != was).then(|| format!("{ip}: now {now}, was {was}"))
            })
            .collect();
        let other_changes = match (before.as_object(), after.as_object()) {
            (Some(b), Some(a)) => b
                .keys()
                .chain(a.keys().filter(|k| !b.contains_key(*k)))
                .filter(|k| *k != "ips" && b.get(*k) != a.get(*k))
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        Comparison {
            ips: start.len(),
            ips_back: start.len() - not_back.len(),
            not_back,
            other_changes,
        }
    }

    /// Whether everything a way back can restore (the IP routes) is as it was.
    pub fn ips_restored(&self) -> bool {
        self.not_back.is_empty()
    }
}
