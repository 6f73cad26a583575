//! Email the way production servers want it: Dovecot with `ssl = required` (STARTTLS on the
//! IMAP port, implicit TLS on the IMAPS port) and aiosmtpd requiring STARTTLS then AUTH, or
//! implicit TLS then AUTH, all with a certificate from a throwaway CA made by the test.

use std::time::Duration;

use crate::support::mail::{MailOptions, MailServer, ADDRESS, PASSWORD, USER};
use crate::support::tls::TestCa;
use crate::support::{finish, read_run_id, without_ports, Env, Output};

/// How lifeboat reaches the TLS servers.
#[derive(Clone, Copy)]
enum Via {
    /// SMTP submission with STARTTLS; IMAP with STARTTLS.
    Starttls,
    /// SMTPS and IMAPS: TLS from the first byte.
    Implicit,
}

fn tls_server(ca: &TestCa, expired: bool, no_idle: bool) -> MailServer {
    MailServer::start_with(MailOptions {
        cert: Some(ca.issue(if expired { "expired" } else { "mail" }, expired)),
        no_idle,
    })
}

/// Settings for lifeboat against `mail`'s TLS servers; `trust`: with `ca_file`.
fn env_for(mail: &MailServer, via: Via, trust: bool) -> Env {
    let tls = mail.tls.as_ref().expect("a TLS mail server");
    let (smtp_port, imap_port, mode) = match via {
        Via::Starttls => (tls.submission, mail.imap_port, "starttls"),
        Via::Implicit => (tls.smtps, tls.imaps, "tls"),
    };
    let mut env = Env::new()
        .var("HOME", "/nonexistent")
        .var("LIFEBOAT_SMTP_HOST", "127.0.0.1")
        .var("LIFEBOAT_SMTP_PORT", smtp_port.to_string())
        .var("LIFEBOAT_SMTP_TLS", mode)
        .var("LIFEBOAT_SMTP_USER", USER)
        .var("LIFEBOAT_SMTP_PASSWORD", PASSWORD)
        .var("LIFEBOAT_SMTP_FROM", "lifeboat@example.test")
        .var("LIFEBOAT_IMAP_HOST", "127.0.0.1")
        .var("LIFEBOAT_IMAP_PORT", imap_port.to_string())
        .var("LIFEBOAT_IMAP_TLS", mode)
        .var("LIFEBOAT_IMAP_USER", USER)
        .var("LIFEBOAT_IMAP_PASSWORD", PASSWORD);
    if trust {
        let ca = tls.ca_file.display().to_string();
        env = env
            .var("LIFEBOAT_SMTP_CA_FILE", &ca)
            .var("LIFEBOAT_IMAP_CA_FILE", &ca);
    }
    env
}

#[test]
fn notify_is_delivered_once_over_starttls_and_over_implicit_tls_with_auth() {
    let ca = TestCa::new();
    let mail = tls_server(&ca, false, false);
    for (i, via) in [Via::Starttls, Via::Implicit].into_iter().enumerate() {
        let env = env_for(&mail, via, true);
        let rb = env.runbook(
            "notify.rhai",
            &format!("notify(#{{ to: [\"{ADDRESS}\"], subject: \"relinked {i}\", body: \"over TLS\" }});\n"),
        );
        env.run(&["run", &rb]).expect_code(0);
        let delivered = mail.delivered();
        assert_eq!(delivered.len(), i + 1, "{delivered:?}");
        assert_eq!(
            delivered
                .iter()
                .filter(|m| m.contains(&format!("Subject: relinked {i}")))
                .count(),
            1
        );
    }
}

const WAIT: &str = r#"
let m = wait_email(#{ from: "ovh", subject: "Datastore (\\S+) restored as (restore-\\d+)", timeout: "2m", poll: "1s" });
#{ via: m.via, datastore: m.captures[1] }
"#;

/// Runs [`WAIT`] in `env`; once its wait is under way, does `meanwhile`, then delivers OVH's
/// email for `datastore` (restored as `restored`), and returns how the run ended.
fn wait_for_mail(
    env: &Env,
    meanwhile: impl FnOnce(),
    datastore: &str,
    restored: &str,
    mail: &MailServer,
) -> Output {
    let rb = env.runbook("wait.rhai", WAIT);
    let mut child = env.spawn(&["run", &rb]);
    let run = read_run_id(&mut child);
    env.wait_for_running_step(&run, "wait for email");
    meanwhile();
    mail.send(
        "OVHcloud <noreply@ovhcloud.example>",
        &format!("[OVHcloud] Datastore {datastore} restored as {restored}"),
        "the copy is done",
    );
    finish(child)
}

#[test]
fn wait_email_over_imaps_survives_a_restart_and_over_starttls_wakes() {
    let ca = TestCa::new();
    let mail = tls_server(&ca, false, false);

    let env = env_for(&mail, Via::Implicit, true);
    let restart = || {
        mail.stop_imap();
        std::thread::sleep(Duration::from_millis(1500));
        mail.start_imap();
    };
    let out = wait_for_mail(&env, restart, "ssd-057", "restore-000057", &mail);
    out.expect_code(0);
    assert!(
        out.stdout.contains("\"datastore\":\"restore-000057\""),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("reconnecting"), "{}", out.stderr);

    let env = env_for(&mail, Via::Starttls, true);
    let out = wait_for_mail(&env, || {}, "ssd-042", "restore-000042", &mail);
    out.expect_code(0);
    assert!(
        out.stdout.contains("\"datastore\":\"restore-000042\""),
        "{}",
        out.stdout
    );
}

#[test]
fn wrong_passwords_are_clear_errors_and_never_written_anywhere() {
    let ca = TestCa::new();
    let mail = tls_server(&ca, false, false);
    let wrong = "wrong-Pa55word-never-printed";
    let env = env_for(&mail, Via::Starttls, true)
        .var("LIFEBOAT_SMTP_PASSWORD", wrong)
        .var("LIFEBOAT_IMAP_PASSWORD", wrong);
    let doctor = env.run(&["doctor"]);
    doctor.expect_code(1);
    let text = without_ports(&doctor.stdout);
    assert!(
        text.contains("FAIL SMTP         SMTP 127.0.0.1:PORT: authentication as alice refused (AUTH PLAIN or LOGIN): permanent error (535): "),
        "{text}"
    );
    assert!(
        text.contains("FAIL IMAP         IMAP 127.0.0.1:PORT: login refused for user alice: check the user and password\n"),
        "{text}"
    );

    let rb = env.runbook(
        "notify.rhai",
        &format!("notify(#{{ to: [\"{ADDRESS}\"], subject: \"x\", body: \"y\" }});\n"),
    );
    let out = env.run(&["run", &rb]);
    out.expect_code(1);
    // At once: a refused login is not tried again.
    assert!(
        without_ports(&out.stderr).contains("  ✗ notify: x: failed after 1 attempt(s): SMTP 127.0.0.1:PORT: authentication as alice refused (AUTH PLAIN or LOGIN): permanent error (535): "),
        "{}",
        out.stderr
    );
    assert!(mail.delivered().is_empty());
    let run = out.stdout.lines().next().unwrap().to_string();
    let log = env.run(&["log", &run, "--json"]);
    let export = env.run(&["export", &run]);
    for (what, text) in [
        ("doctor", format!("{}{}", doctor.stdout, doctor.stderr)),
        ("run", format!("{}{}", out.stdout, out.stderr)),
        ("log", log.stdout),
        ("export", export.stdout),
    ] {
        assert!(!text.contains(wrong), "the password is in {what}: {text}");
    }
    // Nor in any byte of the store.
    for entry in walk(&env.db()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(wrong.len()).any(|w| w == wrong.as_bytes()),
            "the password is in {}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn an_untrusted_or_expired_certificate_is_refused_with_what_to_do() {
    let ca = TestCa::new();
    let mail = tls_server(&ca, false, false);
    let out = env_for(&mail, Via::Implicit, false).run(&["doctor"]);
    out.expect_code(1);
    let text = without_ports(&out.stdout);
    assert!(
        text.contains(
            "FAIL SMTP         SMTP 127.0.0.1:PORT: the server's certificate is not trusted ("
        ) && text.contains(
            "set ca_file in [smtp] (or LIFEBOAT_SMTP_CA_FILE) to that CA's certificate (PEM)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "FAIL IMAP         IMAP 127.0.0.1:PORT: TLS: the server's certificate is not trusted ("
        ) && text.contains(
            "set ca_file in [imap] (or LIFEBOAT_IMAP_CA_FILE) to that CA's certificate (PEM)\n"
        ),
        "{text}"
    );
    // A wait against it ends at once with the same words, instead of reconnecting until its
    // timeout.
    let env = env_for(&mail, Via::Implicit, false);
    let rb = env.runbook("wait.rhai", WAIT);
    let started = std::time::Instant::now();
    let out = env.run(&["run", &rb]);
    out.expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it took {:?}",
        started.elapsed()
    );
    assert!(
        without_ports(&out.stderr)
            .contains("IMAP 127.0.0.1:PORT: TLS: the server's certificate is not trusted ("),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("reconnecting"), "{}", out.stderr);
    drop(mail);

    // The same CA trusted, but the certificate has expired: refused all the same.
    let expired = tls_server(&ca, true, false);
    let out = env_for(&expired, Via::Starttls, true).run(&["doctor"]);
    out.expect_code(1);
    let text = without_ports(&out.stdout);
    assert!(
        text.contains(
            "FAIL SMTP         SMTP 127.0.0.1:PORT: the server's certificate has expired ("
        ) && text.contains(
            "FAIL IMAP         IMAP 127.0.0.1:PORT: TLS: the server's certificate has expired ("
        ),
        "{text}"
    );
    assert!(expired.delivered().is_empty());
}

#[test]
fn without_idle_the_wait_polls_and_still_wakes_on_the_email() {
    let ca = TestCa::new();
    let mail = tls_server(&ca, false, true);
    // The server really does not offer IDLE.
    let tls = mail.tls.as_ref().unwrap();
    let caps = crate::support::python()
        .args([
            "-c",
            "import imaplib, ssl, sys\nc = imaplib.IMAP4_SSL('127.0.0.1', int(sys.argv[1]), ssl_context=ssl.create_default_context(cafile=sys.argv[2]))\nc.login(sys.argv[3], sys.argv[4])\nprint(' '.join(c.capabilities))",
            &tls.imaps.to_string(),
            tls.ca_file.to_str().unwrap(),
            USER,
            PASSWORD,
        ])
        .output()
        .unwrap();
    let caps = String::from_utf8_lossy(&caps.stdout).into_owned();
    assert!(
        caps.contains("IMAP4REV1") && !caps.contains("IDLE"),
        "{caps}"
    );

    let env = env_for(&mail, Via::Implicit, true);
    let out = wait_for_mail(&env, || {}, "ssd-043", "restore-000043", &mail);
    out.expect_code(0);
    assert!(
        out.stdout
            .contains("\"datastore\":\"restore-000043\",\"via\":\"email\""),
        "{}",
        out.stdout
    );
}

#[test]
fn a_certificate_for_another_name_a_server_without_starttls_and_a_bad_ca_file_are_refused() {
    let ca = TestCa::new();
    let other = MailServer::start_with(MailOptions {
        cert: Some(ca.issue_for("other", &["mail.other.example"], false)),
        no_idle: false,
    });
    let out = env_for(&other, Via::Implicit, true).run(&["doctor"]);
    out.expect_code(1);
    let text = without_ports(&out.stdout);
    assert!(
        text.contains("FAIL IMAP         IMAP 127.0.0.1:PORT: TLS: the server's certificate is not for this host name (")
            && text.contains("connect by the name the certificate carries\n"),
        "{text}"
    );
    drop(other);

    // A plain server offers no STARTTLS: refused before any password is sent.
    let plain = MailServer::start();
    let out = Env::new()
        .var("HOME", "/nonexistent")
        .var("LIFEBOAT_IMAP_HOST", "127.0.0.1")
        .var("LIFEBOAT_IMAP_PORT", plain.imap_port.to_string())
        .var("LIFEBOAT_IMAP_TLS", "starttls")
        .var("LIFEBOAT_IMAP_USER", USER)
        .var("LIFEBOAT_IMAP_PASSWORD", PASSWORD)
        .run(&["doctor"]);
    out.expect_code(1);
    let text = without_ports(&out.stdout);
    assert!(
        text.contains("FAIL IMAP         IMAP 127.0.0.1:PORT: the server refused STARTTLS (S1 ")
            && text.contains("); lifeboat never logs in without TLS: use tls = \"tls\" (port 993) if it offers that\n"),
        "{text}"
    );

    // A CA file that is not there stops everything before anything is tried.
    let out = Env::new()
        .var("HOME", "/nonexistent")
        .var("LIFEBOAT_SMTP_HOST", "127.0.0.1")
        .var("LIFEBOAT_SMTP_CA_FILE", "/nonexistent/ca.pem")
        .run(&["doctor"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "error: mail configuration environment: smtp ca_file /nonexistent/ca.pem: No such file or directory (os error 2)\n"
    );
}
