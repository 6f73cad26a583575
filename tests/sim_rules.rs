//! The simulator's rules, each with its OVH-style refusal, and its admin endpoints.

use lifeboat::ovh::Client;
use lifeboat::sim::world::{FilerSpec, IpSpec, ServerSpec, Vmac};
use lifeboat::sim::Sim;

use crate::support::sim::TestSim;

const RBX: &str = "ns5007001.ip-137-74-1.eu";
const SBG2: &str = "ns3001235.ip-51-91-2.eu";

async fn refusal(c: &Client, server: &str, ip: &str) -> String {
    match c.ip_can_be_moved_to(server, ip).await {
        Ok(()) => "allowed".into(),
        Err(e) => e.to_value()["ovh_message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

#[tokio::test]
async fn failover_ip_rules() {
    let mut f = Sim::demo_fixture();
    f.servers.push(ServerSpec {
        name: "eco1".into(),
        datacenter: "rbx7".into(),
        range: "eco".into(),
        vmac: false,
        accepts_failover: false,
        ip: None,
    });
    f.servers.push(ServerSpec {
        name: "novmac".into(),
        datacenter: "gra3".into(),
        range: "standard".into(),
        vmac: false,
        accepts_failover: true,
        ip: None,
    });
    f.ips.push(IpSpec {
        block: "178.32.11.0/32".into(),
        routed_to: Some(SBG2.into()),
        description: None,
        vmacs: vec![Vmac {
            mac: "02:00:00:00:00:09".into(),
            duplicate: true,
        }],
        fail_move: false,
        move_duration: None,
    });
    let t = TestSim::start(Some(f), 1.0).await;
    let c = t.client();
    assert_eq!(refusal(&c, RBX, "178.32.10.1/32").await, "allowed");
    assert_eq!(refusal(&c, "ns5009001.ip-142-44-1.net", "178.32.10.1/32").await, "178.32.10.1/32 cannot be moved from SBG (sbg3) to BHS (bhs6): a failover IP cannot leave its zone");
    assert_eq!(
        refusal(&c, RBX, "178.32.10.9/32").await,
        "178.32.10.9/32 is part of the block 178.32.10.8/30: only whole blocks can be moved"
    );
    assert_eq!(refusal(&c, "novmac", "178.32.10.2/32").await, "178.32.10.2/32 has virtual MACs and novmac does not support virtual MACs: remove them first");
    assert_eq!(refusal(&c, RBX, "178.32.11.0/32").await, "178.32.11.0/32 has a virtual MAC shared with another block: blocks with duplicate virtual MACs cannot be moved");
    assert_eq!(
        refusal(&c, "eco1", "178.32.10.1/32").await,
        "eco1 (eco range) does not accept failover IPs"
    );
    assert_eq!(
        refusal(&c, RBX, "178.32.10.20/32").await,
        format!("178.32.10.20/32 is already routed to {RBX}")
    );
    assert_eq!(
        refusal(&c, "nope", "178.32.10.1/32").await,
        "The requested object (serviceName = nope) does not exist"
    );
    // A refused move changes nothing.
    assert!(c
        .ip_move("ns5009001.ip-142-44-1.net", "178.32.10.1/32")
        .await
        .is_err());
    assert_eq!(
        c.ip("178.32.10.1/32")
            .await
            .unwrap()
            .routed_to
            .unwrap()
            .service_name
            .as_deref(),
        Some("ns3001234.ip-51-91-1.eu")
    );
    // Two moves of one block at once: the second is refused.
    c.ip_move(RBX, "178.32.10.1/32").await.unwrap();
    let e = c
        .ip_move("ns5007002.ip-137-74-2.eu", "178.32.10.1/32")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409));
}

#[tokio::test]
async fn datastore_rules_sbg1a_and_certifications() {
    let mut f = Sim::demo_fixture();
    f.pccs[0].hds = "enabled".into();
    let t = TestSim::start(Some(f), 10_000.0).await;
    let c = t.client();
    let e = c
        .link_filer_from_sbg("pcc-51-91-100-1", 1001, 42)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_value()["ovh_message"],
        "pcc-51-91-100-1 is located in sbg1a: the destination Private Cloud must be outside sbg1a"
    );
    let e = c
        .link_filer_from_sbg("pcc-137-74-200-1", 2001, 42)
        .await
        .unwrap_err();
    assert_eq!(e.to_value()["ovh_message"], "pcc-51-91-100-1 has HDS enabled and pcc-137-74-200-1 does not: the destination must have the same certification");
    let e = c
        .copy_filer("pcc-137-74-200-1", 2001, 42, false)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    let e = c
        .link_filer_from_sbg("pcc-137-74-200-1", 2001, 999)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    // None of the refusals created anything.
    assert!(c.pcc_tasks("pcc-137-74-200-1").await.unwrap().is_empty());
}

#[tokio::test]
async fn restored_datastore_appears_read_only_and_the_email_is_sent() {
    let t = TestSim::start(None, 100_000.0).await;
    let c = t.client();
    let task = c
        .link_filer_from_sbg("pcc-137-74-200-1", 2001, 57)
        .await
        .unwrap();
    assert_eq!(
        c.filers("pcc-137-74-200-1", 2001).await.unwrap(),
        vec![501],
        "nothing before the task ends"
    );
    // Nobody polls: the simulator ends the task on its own and sends the email.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let filers = c.filers("pcc-137-74-200-1", 2001).await.unwrap();
    assert_eq!(filers.len(), 2);
    let restored = c.filer("pcc-137-74-200-1", 2001, filers[1]).await.unwrap();
    assert_eq!(restored.name, "restore-000057");
    assert_eq!(restored.profile.as_deref(), Some("restore-readonly"));
    let emails = t.sim.emails();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0]["to"], "oncall@example.test");
    assert_eq!(
        emails[0]["subject"],
        "[OVHcloud] Datastore hdd-057 restored as restore-000057 on pcc-137-74-200-1"
    );
    // Relinking the same filer again is refused.
    assert_eq!(
        c.link_filer_from_sbg("pcc-137-74-200-1", 2001, 57)
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
    assert_eq!(
        c.pcc_task("pcc-137-74-200-1", task.task_id)
            .await
            .unwrap()
            .progress,
        100
    );
}

#[tokio::test]
async fn endpoints_the_account_does_not_offer_answer_404() {
    let mut f = Sim::demo_fixture();
    f.api.link_filer_from_sbg = false;
    f.pccs[1].datacenters[0].filers.push(FilerSpec {
        id: 777,
        name: "x".into(),
        size_gb: 1,
        read_only: false,
        fail_copy: false,
    });
    let t = TestSim::start(Some(f), 1.0).await;
    let c = t.client();
    let e = c
        .link_filer_from_sbg("pcc-137-74-200-1", 2001, 42)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert!(
        e.to_string().contains(
            "No route for POST /dedicatedCloud/pcc-137-74-200-1/datacenter/2001/linkFilerFromSbg"
        ),
        "{e}"
    );
    c.copy_filer("pcc-137-74-200-1", 2001, 42, true)
        .await
        .unwrap();
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token_not_ovh_credentials() {
    let t = TestSim::start(None, 1.0).await;
    let admin = t.base.replace("/1.0", "/_sim/requests");
    let http = reqwest::Client::new();
    let denied = http
        .get(&admin)
        .header("X-Ovh-Application", "demo-application-key")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    t.client().servers().await.unwrap();
    let log: serde_json::Value = http
        .get(&admin)
        .header("X-Sim-Admin", "admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        log.as_array().unwrap().len(),
        2,
        "/auth/time and the call: {log}"
    );
    let fault = serde_json::json!({ "path": "/ip", "fault": "status", "status": 502, "times": 1 });
    let added = http
        .post(t.base.replace("/1.0", "/_sim/faults"))
        .header("X-Sim-Admin", "admin")
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    let state: serde_json::Value = http
        .get(t.base.replace("/1.0", "/_sim/state"))
        .header("X-Sim-Admin", "admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        state.get("account").is_none(),
        "no credentials in the state dump"
    );
    assert_eq!(state["ips"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn bad_credentials_are_refused_like_ovh() {
    let t = TestSim::start(None, 1.0).await;
    let http = reqwest::Client::new();
    let url = format!("{}/dedicated/server", t.base);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(&url)
        .header("X-Ovh-Application", "other")
        .header("X-Ovh-Consumer", "x")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "INVALID_KEY");
    let r = http
        .get(&url)
        .header("X-Ovh-Application", "demo-application-key")
        .header("X-Ovh-Consumer", "unknown-ck")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "INVALID_CREDENTIAL");
    assert_eq!(body["httpCode"], "403 Forbidden");
    let old = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600)
        .to_string();
    let r = http
        .get(&url)
        .header("X-Ovh-Application", "demo-application-key")
        .header("X-Ovh-Consumer", "demo-consumer-key")
        .header("X-Ovh-Timestamp", old)
        .header("X-Ovh-Signature", "$1$0")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "QUERY_TIME_OUT");
}

#[test]
fn the_documented_fixture_example_loads() {
    let doc = std::fs::read_to_string(format!("{}/docs/simulator.md", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    let start = doc.find("```json\n").unwrap() + "```json\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.json");
    std::fs::write(&path, &doc[start..end]).unwrap();
    let fixture = Sim::load_fixture(path.to_str().unwrap()).unwrap();
    assert_eq!(fixture.pccs.len(), 2);
    assert_eq!(fixture.faults.len(), 1);
    std::fs::write(
        &path,
        doc[start..end].replace("\"durations\"", "\"duration\""),
    )
    .unwrap();
    let err = Sim::load_fixture(path.to_str().unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unknown field `duration`"), "{err}");
}
