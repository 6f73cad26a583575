//! Email against real servers: Dovecot for IMAP, aiosmtpd for SMTP delivering into Dovecot's
//! Maildir. `notify` delivers once; `wait_email` wakes on a matching message, only one that
//! arrived after the wait began, survives a crash and an IMAP restart, and races a check.

use std::time::Duration;

use crate::support::mail::{MailServer, ADDRESS};
use crate::support::{finish, read_run_id, Env};

fn env_for(mail: &MailServer) -> Env {
    mail.env()
        .into_iter()
        .fold(Env::new().var("HOME", "/nonexistent"), |env, (k, v)| {
            env.var(&k, v)
        })
}

#[test]
fn notify_delivers_once_even_when_the_run_is_replayed() {
    let mail = MailServer::start();
    let env = env_for(&mail);
    let rb = env.runbook(
        "notify.rhai",
        &format!("notify(#{{ to: [\"{ADDRESS}\"], subject: \"Datastores relinked\", body: \"3 datastores are back, read-only.\" }});\napprove(\"go\");\n1\n"),
    );
    let out = env.run(&["run", &rb, "--no-wait"]);
    out.expect_code(3);
    let run = out.stdout.trim().to_string();
    env.run(&["approve", &run, "go"]).expect_code(0);
    env.run(&["resume", &run]).expect_code(0);
    let delivered = mail.delivered();
    assert_eq!(delivered.len(), 1, "sent once, not again on replay");
    assert!(
        delivered[0].contains("Subject: Datastores relinked"),
        "{}",
        delivered[0]
    );
    assert!(
        delivered[0].contains("3 datastores are back, read-only."),
        "{}",
        delivered[0]
    );
    assert!(
        delivered[0].contains(&format!("Message-ID: <{run}.0@lifeboat>")),
        "{}",
        delivered[0]
    );
}

const WAIT: &str = r#"
let m = wait_email(#{ from: "ovh", subject: "Datastore (\\S+) restored as (restore-\\d+)", timeout: "2m", poll: "1s" });
#{ via: m.via, datastore: m.captures[1], subject: m.subject }
"#;

#[test]
fn wait_email_wakes_on_the_matching_message_that_arrives_after_it_began() {
    let mail = MailServer::start();
    let env = env_for(&mail);
    // Already in the mailbox before the wait: not the one we wait for.
    mail.send(
        "OVHcloud <noreply@ovhcloud.example>",
        "[OVHcloud] Datastore ssd-001 restored as restore-000001",
        "old",
    );
    let rb = env.runbook("wait.rhai", WAIT);
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    env.wait_for_running_step(&run, "wait for email");
    mail.send(
        "Someone Else <x@example.test>",
        "[OVHcloud] Datastore ssd-007 restored as restore-000007",
        "wrong sender",
    );
    mail.send(
        "OVHcloud <noreply@ovhcloud.example>",
        "[OVHcloud] Datastore ssd-042 restored as restore-000042",
        "the one",
    );
    let out = finish(child);
    out.expect_code(0);
    assert_eq!(out.stdout.lines().next(), Some("{\"datastore\":\"restore-000042\",\"subject\":\"[OVHcloud] Datastore ssd-042 restored as restore-000042\",\"via\":\"email\"}"));
}

#[test]
fn the_email_or_the_check_whichever_comes_first() {
    let mail = MailServer::start();
    let env = env_for(&mail);
    // The check says done at once: no email needed.
    let rb = env.runbook("check-first.rhai", "let m = wait_email(#{ subject: \"restored\", timeout: \"2m\", poll: \"1s\", or_when: || #{ task: \"done\" } });\nm\n");
    let out = env.run(&["run", &rb]);
    out.expect_code(0);
    assert_eq!(
        out.stdout.lines().nth(1),
        Some("{\"value\":{\"task\":\"done\"},\"via\":\"check\"}")
    );
    // The check never succeeds: the email wins.
    let rb = env.runbook("email-first.rhai", "let m = wait_email(#{ subject: \"restored\", timeout: \"2m\", poll: \"1s\", or_when: || false });\nm.via\n");
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    env.wait_for_running_step(&run, "wait for email");
    mail.send(
        "OVHcloud <noreply@ovhcloud.example>",
        "Datastore restored",
        "done",
    );
    let out = finish(child);
    out.expect_code(0);
    assert_eq!(out.stdout.lines().next(), Some("\"email\""));
}

#[test]
fn a_crash_during_the_wait_then_resume_finds_mail_that_came_meanwhile() {
    let mail = MailServer::start();
    let env = env_for(&mail);
    let rb = env.runbook("wait.rhai", WAIT);
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    env.wait_for_running_step(&run, "wait for email");
    child.kill().unwrap();
    finish(child);
    let started = |env: &Env| -> u64 {
        let log = env.run(&["log", &run, "--json"]).stdout;
        log.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["type"] == "value_recorded")
            .unwrap()["value"]["started_at"]
            .as_u64()
            .unwrap()
    };
    let before = started(&env);
    // The confirmation arrives while nothing watches.
    mail.send(
        "OVHcloud <noreply@ovhcloud.example>",
        "[OVHcloud] Datastore ssd-043 restored as restore-000043",
        "while down",
    );
    let out = env.run(&["resume", &run]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("\"datastore\":\"restore-000043\""),
        "{}",
        out.stdout
    );
    assert_eq!(
        started(&env),
        before,
        "the wait keeps its start: the time already spent counts"
    );
}

#[test]
fn an_imap_restart_during_the_wait_does_not_end_it() {
    let mail = MailServer::start();
    let env = env_for(&mail);
    let rb = env.runbook("wait.rhai", WAIT);
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    env.wait_for_running_step(&run, "wait for email");
    mail.stop_imap();
    std::thread::sleep(Duration::from_millis(1500));
    mail.start_imap();
    mail.send(
        "OVHcloud <noreply@ovhcloud.example>",
        "[OVHcloud] Datastore ssd-057 restored as restore-000057",
        "after the restart",
    );
    let out = finish(child);
    out.expect_code(0);
    assert!(
        out.stdout.contains("\"datastore\":\"restore-000057\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("reconnecting"),
        "the outage was reported: {}",
        out.stderr
    );
}

#[test]
fn wrong_imap_credentials_are_a_clear_error_at_once() {
    let mail = MailServer::start();
    let env = env_for(&mail).var("LIFEBOAT_IMAP_PASSWORD", "not-the-password");
    let rb = env.runbook("wait.rhai", WAIT);
    let started = std::time::Instant::now();
    let out = env.run(&["run", &rb]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "IMAP 127.0.0.1:{}: login refused for user alice: check the user and password",
            mail.imap_port
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not-the-password"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "not retried until the timeout"
    );
}

#[test]
fn ovhs_confirmation_email_from_the_simulator_wakes_the_relink() {
    let mail = MailServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut fixture = lifeboat::sim::Sim::demo_fixture();
    fixture.account.email = Some(ADDRESS.to_string());
    fixture.smtp = Some(lifeboat::sim::world::SmtpTarget {
        host: "127.0.0.1".into(),
        port: mail.smtp_port,
    });
    let t = rt.block_on(crate::support::sim::TestSim::start(Some(fixture), 36_000.0));
    let env = env_for(&mail)
        .var("OVH_ENDPOINT", &t.base)
        .var("OVH_APPLICATION_KEY", "demo-application-key")
        .var("OVH_APPLICATION_SECRET", "demo-application-secret")
        .var("OVH_CONSUMER_KEY", "demo-consumer-key");
    let rb = format!(
        "{}/runbooks/sbg-datastore-relink.rhai",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = env.run(&[
        "run",
        &rb,
        "-p",
        "source_pcc=pcc-51-91-100-1",
        "-p",
        "source_dc=1001",
        "-p",
        "dest_pcc=pcc-137-74-200-1",
        "-p",
        "dest_dc=2001",
        "-p",
        "filers=42",
        "-p",
        "confirmation_email=true",
        "-p",
        "poll=1h",
    ]);
    out.expect_code(0);
    // Polling every hour would not have finished: the email did.
    assert!(
        out.stderr
            .contains("  · filer 42: OVH's confirmation email arrived (restore-000042)\n"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout.lines().nth(1), Some("[\"restore-000042\"]"));
    assert_eq!(mail.delivered().len(), 1);
}

#[test]
fn built_in_notifications_tell_responders_when_a_run_needs_them_and_when_it_ends() {
    let mail = MailServer::start();
    let env = env_for(&mail)
        .var("LIFEBOAT_NOTIFY_TO", ADDRESS)
        .var("LIFEBOAT_NOTIFY_ON", "approval,failure,finish");
    let rb = env.runbook("gate.rhai", "step(\"relink\", || 1);\napprove(\"move-ips\", \"Datastores are back. Move the IPs?\");\nstep(\"move\", || fail(\"zone refused\"));\n");
    let out = env.run(&["run", &rb, "--no-wait"]);
    out.expect_code(3);
    let run = out.stdout.trim().to_string();
    env.run(&["approve", &run, "move-ips"]).expect_code(0);
    env.run(&["resume", &run]).expect_code(1);
    let mut subjects: Vec<String> = mail
        .delivered()
        .iter()
        .filter_map(|m| {
            mail_parser::MessageParser::default()
                .parse(m.as_bytes())
                .and_then(|p| p.subject().map(str::to_string))
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        vec![
            format!("[lifeboat] run {run} failed"),
            format!("[lifeboat] run {run} waits for approval at gate move-ips"),
            format!("[lifeboat] run {run}: step \"move\" failed"),
        ]
    );
    let approval = mail
        .delivered()
        .into_iter()
        .find(|m| m.contains("waits for approval"))
        .unwrap();
    assert!(
        approval.contains(&format!("lifeboat approve {run} move-ips")),
        "{approval}"
    );
}

#[test]
fn the_finish_notification_of_a_partial_recovery_says_what_was_not_recovered() {
    let mail = MailServer::start();
    let env = env_for(&mail)
        .var("LIFEBOAT_NOTIFY_TO", ADDRESS)
        .var("LIFEBOAT_NOTIFY_ON", "finish");
    let rb = env.runbook(
        "partial.rhai",
        "outcome(\"failover IPs\", [#{ ip: \"1.2.3.4/32\", recovered: true }, #{ ip: \"5.6.7.8/32\", why: \"refused by OVH\", recovered: false }], [\"ip\", \"why\"]);\n",
    );
    let out = env.run(&["run", &rb]);
    out.expect_code(4);
    let run = out.stdout.trim().to_string();
    let delivered = mail.delivered();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let message = mail_parser::MessageParser::default()
        .parse(delivered[0].as_bytes())
        .unwrap();
    assert_eq!(
        message.subject(),
        Some(format!("[lifeboat] run {run} succeeded, partial").as_str())
    );
    let body = message.body_text(0).unwrap();
    assert!(
        body.contains("Not everything was recovered (failover IPs: 1 of 2 recovered):\n\n  failover IPs: 5.6.7.8/32 · refused by OVH\n"),
        "{body}"
    );
}

/// A gate that needs two people says so in its email, and counts who approved so far.
#[test]
fn the_email_of_a_two_person_gate_says_how_many_must_approve() {
    let mail = MailServer::start();
    let env = env_for(&mail)
        .var("LIFEBOAT_NOTIFY_TO", ADDRESS)
        .var("LIFEBOAT_NOTIFY_ON", "approval");
    let rb = env.runbook(
        "two.rhai",
        "approve(\"move-ips\", \"Datastores are back.\", #{ approvers: 2 });\n",
    );
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    env.wait_for("the gate email", || !mail.delivered().is_empty());
    env.run(&["abort", &run]).expect_code(0);
    finish(child);
    let parsed = mail_parser::MessageParser::default()
        .parse(mail.delivered()[0].as_bytes())
        .unwrap()
        .body_text(0)
        .unwrap()
        .into_owned();
    assert!(
        parsed.starts_with(&format!(
            "Datastores are back.\n\n2 different people must approve.\n\nTo approve, from any terminal on the machine running it:\n\n    lifeboat approve {run} move-ips\n"
        )),
        "{parsed}"
    );
}
