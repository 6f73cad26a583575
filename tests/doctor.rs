//! `lifeboat doctor`: the settings tried for real against the simulator, Dovecot and aiosmtpd.

use lifeboat::sim::world::AccessRule;
use lifeboat::sim::Sim;

use crate::support::mail::{MailServer, PASSWORD, USER};
use crate::support::recovery::Recovery;
use crate::support::{without_ports, Env};

/// The settings `lifeboat sim` prints, for the simulator of `r`, and those of `mail`.
fn settings(r: &Recovery, mail: Option<&MailServer>) -> Env {
    let env = Env::new()
        .var("OVH_ENDPOINT", &r.t.base)
        .var("OVH_APPLICATION_KEY", "demo-application-key")
        .var("OVH_APPLICATION_SECRET", "demo-application-secret")
        .var("OVH_CONSUMER_KEY", "demo-consumer-key")
        .var("HOME", "/nonexistent");
    mail.map(MailServer::env)
        .unwrap_or_default()
        .into_iter()
        .fold(env, |env, (k, v)| env.var(&k, v))
}

#[test]
fn doctor_says_everything_works_when_it_does() {
    let r = Recovery::start(None, 1.0);
    let mail = MailServer::start();
    let env = settings(&r, Some(&mail));
    let out = env.run(&["doctor"]);
    out.expect_code(0);
    assert_eq!(
        without_ports(&out.stdout),
        format!("ok   OVH API      http://127.0.0.1:PORT/1.0 answers; its clock is +0s from this machine's (signatures allow for it)
ok   credentials  validated, expires never; the access rules cover what the shipped runbooks call
ok   SMTP         127.0.0.1:PORT (no TLS) accepts a connection; nothing was sent
ok   IMAP         127.0.0.1:PORT (no TLS), mailbox INBOX as {USER}: logged in and opened
everything configured here works
")
    );
    assert!(mail.delivered().is_empty(), "the doctor sends no mail");
    assert!(r.posts().is_empty(), "the doctor changes nothing at OVH");
}

#[test]
fn doctor_names_what_fails_and_never_prints_a_secret() {
    let mut fixture = Sim::demo_fixture();
    // A consumer key that may read IPs but not move them.
    fixture.account.access_rules = vec![
        AccessRule {
            method: "GET".into(),
            path: "/*".into(),
        },
        AccessRule {
            method: "POST".into(),
            path: "/dedicatedCloud/*".into(),
        },
    ];
    let r = Recovery::start(Some(fixture), 1.0);
    let mail = MailServer::start();
    let env = settings(&r, Some(&mail)).var("LIFEBOAT_IMAP_PASSWORD", "not-alices-password");
    let out = env.run(&["doctor"]);
    out.expect_code(1);
    let text = without_ports(&out.stdout);
    assert!(
        text.contains("FAIL credentials  validated, expires never; the access rules lack what the shipped runbooks call: POST /dedicated/server/*/ipMove, POST /ip/*/move (`lifeboat ovh login` requests them)\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "FAIL IMAP         IMAP 127.0.0.1:PORT: login refused for user {USER}"
        )),
        "{text}"
    );
    assert!(text.ends_with("2 checks failed\n"), "{text}");
    for secret in [
        "not-alices-password",
        PASSWORD,
        "demo-application-secret",
        "demo-consumer-key",
    ] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{secret} printed"
        );
    }

    // A wrong application secret: OVH refuses the signature.
    let out = settings(&r, None)
        .var("OVH_APPLICATION_SECRET", "wrong")
        .run(&["doctor"]);
    out.expect_code(1);
    assert!(
        out.stdout.contains("FAIL credentials  ") && out.stdout.contains("Invalid signature"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("wrong"), "{}", out.stdout);
}
