//! The OVH client against the simulator: typed calls, signatures, errors with OVH's query id,
//! retries only where safe, URL-encoding of blocks, task waits, secrets kept out of output.

use std::time::Duration;

use lifeboat::ovh::types::{OptionState, PccTaskState, TaskStatus};
use lifeboat::ovh::{Client, ClientOptions, Error, TaskRef, WaitOptions};
use lifeboat::sim::faults::{Fault, FaultKind};

use crate::support::sim::TestSim;

const SBG1: &str = "ns3001234.ip-51-91-1.eu";
const RBX: &str = "ns5007001.ip-137-74-1.eu";
const GRA: &str = "ns5007002.ip-137-74-2.eu";
const BHS: &str = "ns5009001.ip-142-44-1.net";

fn fast_wait() -> WaitOptions {
    WaitOptions {
        poll: Duration::from_millis(20),
        timeout: Duration::from_secs(20),
    }
}

#[tokio::test]
async fn typed_reads_of_servers_ips_and_pccs() {
    let t = TestSim::start(None, 1.0).await;
    let c = t.client();
    assert_eq!(c.servers().await.unwrap().len(), 5);
    let s = c.server(SBG1).await.unwrap();
    assert_eq!(s.datacenter, "sbg3");
    assert!(c
        .server_ips(SBG1)
        .await
        .unwrap()
        .contains(&"178.32.10.1/32".to_string()));
    let ip = c.ip("178.32.10.8/30").await.unwrap();
    assert_eq!(
        ip.routed_to.unwrap().service_name.as_deref(),
        Some("ns3001235.ip-51-91-2.eu")
    );
    assert_eq!(c.ips().await.unwrap().len(), 5);
    let dests = c.ip_move_destinations("178.32.10.1/32").await.unwrap();
    let names: Vec<_> = dests
        .dedicated_server
        .iter()
        .map(|d| d.service.as_str())
        .collect();
    assert!(
        names.contains(&RBX) && names.contains(&GRA) && !names.contains(&BHS),
        "{names:?}"
    );

    assert_eq!(
        c.pccs().await.unwrap(),
        vec!["pcc-51-91-100-1", "pcc-137-74-200-1"]
    );
    assert_eq!(c.pcc("pcc-51-91-100-1").await.unwrap().location, "sbg1a");
    assert_eq!(c.datacenters("pcc-51-91-100-1").await.unwrap(), vec![1001]);
    assert_eq!(
        c.datacenter("pcc-51-91-100-1", 1001).await.unwrap().name,
        "pcc-sbg-dc"
    );
    assert_eq!(
        c.filers("pcc-51-91-100-1", 1001).await.unwrap(),
        vec![42, 43, 57]
    );
    assert_eq!(
        c.filer("pcc-51-91-100-1", 1001, 42).await.unwrap().name,
        "ssd-042"
    );
    assert_eq!(
        c.hds("pcc-137-74-200-1").await.unwrap().state,
        OptionState::Disabled
    );
    assert_eq!(
        c.pcidss("pcc-137-74-200-1").await.unwrap().state,
        OptionState::Disabled
    );
    // Blocks travel URL-encoded, and the signature covered exactly that URL.
    assert!(
        t.calls()
            .contains(&("GET".into(), "/ip/178.32.10.8%2F30".into(), 200)),
        "{:?}",
        t.calls()
    );
}

#[tokio::test]
async fn ip_move_old_api_then_task_wait() {
    let t = TestSim::start(None, 1000.0).await;
    let c = t.client();
    c.ip_can_be_moved_to(RBX, "178.32.10.1/32").await.unwrap();
    let task = c.ip_move(RBX, "178.32.10.1/32").await.unwrap();
    assert_eq!(task.status, TaskStatus::Init);
    let done = c
        .wait_task(
            &TaskRef::Server {
                server: RBX.into(),
                id: task.task_id,
            },
            fast_wait(),
            &|_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(done["status"], "done");
    assert_eq!(
        c.server_task(RBX, task.task_id).await.unwrap().status,
        TaskStatus::Done
    );
    assert_eq!(
        c.ip("178.32.10.1/32")
            .await
            .unwrap()
            .routed_to
            .unwrap()
            .service_name
            .as_deref(),
        Some(RBX)
    );
    assert!(t.calls().contains(&(
        "GET".into(),
        format!("/dedicated/server/{RBX}/ipCanBeMovedTo"),
        200
    )));
    let query = t
        .sim
        .requests()
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("ipCanBeMovedTo"))
        .unwrap()["query"]
        .clone();
    assert_eq!(query, "ip=178.32.10.1%2F32");
}

#[tokio::test]
async fn ip_move_new_api_and_a_refusal_with_the_query_id() {
    let t = TestSim::start(None, 1000.0).await;
    let c = t.client();
    let task = c.ip_move_to("178.32.10.8/30", GRA, None).await.unwrap();
    c.wait_task(
        &TaskRef::Ip {
            ip: "178.32.10.8/30".into(),
            id: task.task_id,
        },
        fast_wait(),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(
        c.ip_task("178.32.10.8/30", task.task_id)
            .await
            .unwrap()
            .destination
            .unwrap()
            .service_name
            .as_deref(),
        Some(GRA)
    );

    let err = c
        .ip_can_be_moved_to(BHS, "178.32.10.30/32")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    let qid = err.query_id().unwrap().to_string();
    assert!(qid.starts_with("SIM."), "{qid}");
    assert_eq!(
        err.to_string(),
        format!("GET /dedicated/server/{BHS}/ipCanBeMovedTo: 400: 178.32.10.30/32 cannot be moved from SBG (sbg4) to BHS (bhs6): a failover IP cannot leave its zone (OVH query id {qid})")
    );
    assert_eq!(err.to_value()["query_id"], qid.as_str());
}

#[tokio::test]
async fn filer_copy_with_link_filer_from_sbg_and_copy_filer() {
    let t = TestSim::start(None, 10_000.0).await;
    let c = t.client();
    let task = c
        .link_filer_from_sbg("pcc-137-74-200-1", 2001, 42)
        .await
        .unwrap();
    assert_eq!(task.name, "linkFilerFromSbg");
    let done = c
        .wait_task(
            &TaskRef::Pcc {
                pcc: "pcc-137-74-200-1".into(),
                id: task.task_id,
            },
            fast_wait(),
            &|_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(done["state"], "done");
    assert_eq!(done["progress"], 100);
    assert_eq!(
        c.pcc_tasks("pcc-137-74-200-1").await.unwrap(),
        vec![task.task_id]
    );

    let copy = c
        .copy_filer("pcc-137-74-200-1", 2001, 43, true)
        .await
        .unwrap();
    assert_eq!(copy.state, PccTaskState::Todo);
    c.wait_task(
        &TaskRef::Pcc {
            pcc: "pcc-137-74-200-1".into(),
            id: copy.task_id,
        },
        fast_wait(),
        &|_, _| {},
    )
    .await
    .unwrap();
    let status = c.copy_filer_status("pcc-137-74-200-1", 2001).await.unwrap();
    assert_eq!(status.len(), 2);
    assert!(status.iter().all(|s| s.status == PccTaskState::Done));
    let ids = c.filers("pcc-137-74-200-1", 2001).await.unwrap();
    let mut names = Vec::new();
    for id in ids {
        names.push(c.filer("pcc-137-74-200-1", 2001, id).await.unwrap().name);
    }
    assert_eq!(names, vec!["ssd-501", "restore-000042", "restore-000043"]);
}

#[tokio::test]
async fn a_task_ending_in_ovh_error_fails_the_wait() {
    let mut fixture = lifeboat::sim::Sim::demo_fixture();
    fixture.ips[0].fail_move = true;
    let t = TestSim::start(Some(fixture), 1000.0).await;
    let c = t.client();
    let task = c.ip_move(RBX, "178.32.10.1/32").await.unwrap();
    let err = c
        .wait_task(
            &TaskRef::Server {
                server: RBX.into(),
                id: task.task_id,
            },
            fast_wait(),
            &|_, _| {},
        )
        .await
        .unwrap_err();
    let qid = err
        .query_id()
        .expect("the failing poll's query id")
        .to_string();
    assert_eq!(
        err.to_string(),
        format!(
            "task /dedicated/server/{RBX}/task/{} ended ovhError: Move 178.32.10.1/32 to {RBX} (OVH query id {qid})",
            task.task_id
        )
    );
}

#[tokio::test]
async fn reads_retry_429_and_5xx_but_a_post_is_not_repeated_on_5xx() {
    let t = TestSim::start(None, 1.0).await;
    let c = t.client();
    t.sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/dedicatedCloud".into(),
        kind: FaultKind::TooManyRequests { retry_after: 0 },
        times: Some(1),
    });
    t.sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/dedicatedCloud".into(),
        kind: FaultKind::Status {
            status: 503,
            message: None,
        },
        times: Some(1),
    });
    assert_eq!(c.pccs().await.unwrap().len(), 2);
    let statuses: Vec<u64> = t
        .calls()
        .iter()
        .filter(|c| c.1 == "/dedicatedCloud")
        .map(|c| c.2)
        .collect();
    assert_eq!(statuses, vec![429, 503, 200]);

    t.sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/dedicated/server/*/ipMove".into(),
        kind: FaultKind::Status {
            status: 500,
            message: Some("Internal Server Error".into()),
        },
        times: Some(1),
    });
    let err = c.ip_move(RBX, "178.32.10.1/32").await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(
        t.calls().iter().filter(|c| c.0 == "POST").count(),
        1,
        "a mutating call is not retried after a 5xx"
    );

    // 429 means OVH did not process it: even a POST is retried.
    t.sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/dedicated/server/*/ipMove".into(),
        kind: FaultKind::TooManyRequests { retry_after: 0 },
        times: Some(1),
    });
    c.ip_move(RBX, "178.32.10.1/32").await.unwrap();
    assert_eq!(
        t.calls()
            .iter()
            .filter(|c| c.0 == "POST")
            .map(|c| c.2)
            .collect::<Vec<_>>(),
        vec![500, 429, 200]
    );
}

#[tokio::test]
async fn a_dropped_answer_to_a_post_is_an_unknown_outcome() {
    let t = TestSim::start(None, 1000.0).await;
    let c = t.client();
    t.sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/dedicated/server/*/ipMove".into(),
        kind: FaultKind::Drop,
        times: Some(1),
    });
    let err = c.ip_move(RBX, "178.32.10.1/32").await.unwrap_err();
    assert!(
        matches!(err, Error::Transport { sent: true, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with("(the request may have reached OVH: outcome unknown)"),
        "{err}"
    );
    assert_eq!(err.to_value()["outcome_unknown"], true);
    // It did happen: the move went through on OVH's side.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        c.ip("178.32.10.1/32")
            .await
            .unwrap()
            .routed_to
            .unwrap()
            .service_name
            .as_deref(),
        Some(RBX)
    );
    assert_eq!(t.calls().iter().filter(|c| c.0 == "POST").count(), 1);
}

#[tokio::test]
async fn task_polls_ride_out_404_and_500() {
    let t = TestSim::start(None, 1000.0).await;
    let c = t.client();
    let task = c.ip_move(RBX, "178.32.10.1/32").await.unwrap();
    t.sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/dedicated/server/*/task".into(),
        kind: FaultKind::Status {
            status: 404,
            message: Some("task not found".into()),
        },
        times: Some(2),
    });
    let done = c
        .wait_task(
            &TaskRef::Server {
                server: RBX.into(),
                id: task.task_id,
            },
            fast_wait(),
            &|_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(done["status"], "done");
}

#[tokio::test]
async fn wrong_secret_gets_ovhs_error_and_secrets_stay_out_of_output() {
    let t = TestSim::start(None, 1.0).await;
    let c = Client::new(t.config("not-the-secret"), ClientOptions::default()).unwrap();
    let err = c.servers().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "GET /dedicated/server: 400: Invalid signature [INVALID_SIGNATURE] (OVH query id SIM."
        ),
        "{text}"
    );
    assert!(!text.contains("not-the-secret"));
    let debug = format!("{c:?} {err:?}");
    assert!(
        !debug.contains("not-the-secret") && !debug.contains("demo-consumer-key"),
        "{debug}"
    );
    assert!(!t
        .sim
        .requests()
        .iter()
        .any(|r| r.to_string().contains("not-the-secret")));
}

#[tokio::test]
async fn access_rules_limit_the_consumer_key() {
    let mut fixture = lifeboat::sim::Sim::demo_fixture();
    fixture.account.access_rules = vec![lifeboat::sim::world::AccessRule {
        method: "GET".into(),
        path: "/dedicated/server/*".into(),
    }];
    let t = TestSim::start(Some(fixture), 1.0).await;
    let c = t.client();
    c.server(RBX).await.unwrap();
    let err = c.servers().await.unwrap_err();
    assert!(
        err.to_string().contains("NOT_GRANTED_CALL"),
        "/dedicated/server/* does not cover /dedicated/server: {err}"
    );
    let err = c.ip_move(RBX, "178.32.10.1/32").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("403: This call has not been granted [NOT_GRANTED_CALL]"),
        "{err}"
    );
}

#[tokio::test]
async fn an_injected_task_error_fails_the_task() {
    let t = TestSim::start(None, 1000.0).await;
    let c = t.client();
    t.sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/ip/".into(),
        kind: FaultKind::TaskError,
        times: Some(1),
    });
    let task = c.ip_move_to("178.32.10.1/32", RBX, None).await.unwrap();
    let err = c
        .wait_task(
            &TaskRef::Ip {
                ip: "178.32.10.1/32".into(),
                id: task.task_id,
            },
            fast_wait(),
            &|_, _| {},
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ended ovhError"), "{err}");
    // Used once: the next move goes through.
    let task = c.ip_move_to("178.32.10.1/32", RBX, None).await.unwrap();
    c.wait_task(
        &TaskRef::Ip {
            ip: "178.32.10.1/32".into(),
            id: task.task_id,
        },
        fast_wait(),
        &|_, _| {},
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn oauth2_client_credentials_get_a_bearer_token_once() {
    let mut fixture = lifeboat::sim::Sim::demo_fixture();
    fixture.account.oauth2 = Some(lifeboat::sim::world::OAuth2Client {
        client_id: "svc-lifeboat".into(),
        client_secret: "svc-secret".into(),
    });
    let t = TestSim::start(Some(fixture), 1.0).await;
    let config = |secret: &str| lifeboat::ovh::Config {
        endpoint: t.base.clone(),
        base_url: t.base.clone(),
        auth: lifeboat::ovh::Auth::OAuth2 {
            client_id: "svc-lifeboat".into(),
            client_secret: lifeboat::secret::Secret::new(secret),
            token_url: t.base.replace("/1.0", "/auth/oauth2/token"),
        },
    };
    let c = Client::new(config("svc-secret"), ClientOptions::default()).unwrap();
    assert_eq!(c.servers().await.unwrap().len(), 5);
    assert_eq!(c.pccs().await.unwrap().len(), 2);
    let tokens = t
        .calls()
        .iter()
        .filter(|c| c.1 == "/auth/oauth2/token")
        .count();
    assert_eq!(tokens, 1, "the token is reused until it expires");
    assert!(
        !t.calls().iter().any(|c| c.1 == "/auth/time"),
        "no signature, so no time offset"
    );

    let bad = Client::new(config("wrong"), ClientOptions::default()).unwrap();
    let err = bad.servers().await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert!(
        !format!("{err} {err:?} {bad:?}").contains("wrong"),
        "the client secret never prints"
    );
}
