//! `lifeboat doctor`: tries this machine's settings for real, read-only, and says what works.
//! OVH: the endpoint's clock (`GET /auth/time`), then the credentials (`GET
//! /auth/currentCredential`: validated, when they expire, and whether their access rules cover
//! what the shipped runbooks call). Mail: a connection to the SMTP server as sending would make
//! it (TLS, authentication; nothing is sent) and a login to the IMAP mailbox. Nothing is
//! changed anywhere. Exit 0 when everything configured works, 1 otherwise; what is not
//! configured is said, not counted as a failure.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use crate::error::Error;
use crate::ovh::AccessRule;

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// One line of the report: a label, and what was found.
struct Finding {
    what: &'static str,
    ok: Option<bool>,
    text: String,
}

impl Finding {
    fn ok(what: &'static str, text: String) -> Finding {
        Finding {
            what,
            ok: Some(true),
            text,
        }
    }
    fn failed(what: &'static str, text: String) -> Finding {
        Finding {
            what,
            ok: Some(false),
            text,
        }
    }
    fn absent(what: &'static str, text: String) -> Finding {
        Finding {
            what,
            ok: None,
            text,
        }
    }
}

pub(super) fn run(config_file: Option<&std::path::Path>) -> Result<u8, Error> {
    let runtime = super::new_runtime()?;
    let mut findings = Vec::new();
    runtime.block_on(async {
        ovh(&mut findings).await;
        mail(config_file, &mut findings).await
    })?;
    let mut out = String::new();
    for f in &findings {
        let mark = match f.ok {
            Some(true) => "ok  ",
            Some(false) => "FAIL",
            None => "--  ",
        };
        let _ = writeln!(out, "{mark} {:12} {}", f.what, f.text);
    }
    let failed = findings.iter().filter(|f| f.ok == Some(false)).count();
    if failed == 0 {
        let _ = writeln!(out, "everything configured here works");
    } else {
        let _ = writeln!(
            out,
            "{failed} check{} failed",
            if failed == 1 { "" } else { "s" }
        );
    }
    print!("{out}");
    Ok(if failed == 0 { 0 } else { 1 })
}

async fn timed<T, E: std::fmt::Display>(
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
    }
}

async fn ovh(findings: &mut Vec<Finding>) {
    let config = match crate::ovh::Config::from_environment(&Default::default()) {
        Ok(config) => config,
        Err(e) => {
            findings.push(Finding::absent("OVH API", e.to_string()));
            return;
        }
    };
    let base = config.base_url.clone();
    let client = match super::client_options()
        .and_then(|opts| crate::ovh::Client::new(config, opts).map_err(|e| e.to_string()))
    {
        Ok(client) => client,
        Err(e) => {
            findings.push(Finding::failed("OVH API", e));
            return;
        }
    };
    match timed(client.get("/auth/time", &[])).await {
        Ok(v) => {
            let local = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let skew = v.as_i64().map(|t| t - local).unwrap_or(0);
            findings.push(Finding::ok(
                "OVH API",
                format!("{base} answers; its clock is {skew:+}s from this machine's (signatures allow for it)"),
            ));
        }
        Err(e) => {
            findings.push(Finding::failed("OVH API", format!("{base}: {e}")));
            return;
        }
    }
    match timed(client.get("/auth/currentCredential", &[])).await {
        Ok(v) => findings.push(credential(&v)),
        Err(e) => findings.push(Finding::failed("credentials", e)),
    }
}

/// What `GET /auth/currentCredential` says: its state, expiry, and the rules the shipped
/// runbooks need that it lacks.
fn credential(v: &Value) -> Finding {
    let status = v["status"].as_str().unwrap_or("unknown");
    let expires = v["expiration"].as_str().unwrap_or("never");
    let rules: Vec<AccessRule> = serde_json::from_value(v["rules"].clone()).unwrap_or_default();
    if status != "validated" {
        return Finding::failed(
            "credentials",
            format!("the consumer key is {status}, not validated: `lifeboat ovh login` prints the URL that validates one"),
        );
    }
    let covers = |need: &AccessRule| rules.iter().any(|r| r.allows(&need.method, &need.path));
    let missing: Vec<String> = crate::ovh::recovery_access_rules()
        .iter()
        .filter(|need| !covers(need))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    if missing.is_empty() {
        Finding::ok(
            "credentials",
            format!("validated, expires {expires}; the access rules cover what the shipped runbooks call"),
        )
    } else {
        Finding::failed(
            "credentials",
            format!(
                "validated, expires {expires}; the access rules lack what the shipped runbooks call: {} (`lifeboat ovh login` requests them)",
                missing.join(", ")
            ),
        )
    }
}

async fn mail(
    config_file: Option<&std::path::Path>,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    let default_config = crate::mail::default_config_path();
    let file = config_file.or(default_config.as_deref());
    let mail =
        crate::mail::MailConfig::load(file, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .map_err(|e| Error::Usage(e.to_string()))?;
    match &mail.smtp {
        None => findings.push(Finding::absent(
            "SMTP",
            "not configured (notify and notifications need [smtp]: docs/email.md)".to_string(),
        )),
        Some(smtp) => {
            let how = format!(
                "{}:{} ({}{})",
                smtp.host,
                smtp.port,
                smtp.tls.name(),
                smtp.user
                    .as_ref()
                    .map(|u| format!(", authenticated as {u}"))
                    .unwrap_or_default()
            );
            findings.push(match timed(crate::mail::notify::check(smtp)).await {
                Ok(()) => Finding::ok(
                    "SMTP",
                    format!("{how} accepts a connection; nothing was sent"),
                ),
                Err(e) => Finding::failed("SMTP", e),
            });
        }
    }
    match &mail.imap {
        None => findings.push(Finding::absent(
            "IMAP",
            "not configured (wait_email needs [imap]: docs/email.md)".to_string(),
        )),
        Some(imap) => {
            let how = format!(
                "{}:{} ({}), mailbox {} as {}",
                imap.host,
                imap.port,
                imap.tls.name(),
                imap.mailbox,
                imap.user
            );
            let mut watcher = crate::mail::imap::Watcher::new(imap.clone());
            findings.push(match timed(watcher.baseline()).await {
                Ok(_) => Finding::ok("IMAP", format!("{how}: logged in and opened")),
                Err(e) => Finding::failed("IMAP", e),
            });
        }
    }
    Ok(())
}
