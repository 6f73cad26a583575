//! Preflight: before a run is created, whether this machine's settings provide what the
//! runbook will use. Offline: nothing is contacted. A runbook that uses `ovh` needs OVH's
//! endpoint and credentials; one that calls `notify` needs `[smtp]`, one that calls
//! `wait_email` needs `[imap]`: always, or only with the parameters that declare it
//! (`needs: "imap"` on `confirmation_email`), so that a recovery that waits for OVH's email
//! only when asked is not refused on a machine without a mailbox.

use serde_json::{Map, Value};

use crate::engine::params::Service;
use crate::engine::Runbook;
use crate::error::Error;

/// Checks `rb`'s needs against the settings. `values`: the run's parameters (`None` for
/// `lifeboat check`, which says under which parameters a setting is needed). `ovh`: check OVH's
/// settings too (a rehearsal's twin answers for OVH). A setting that is needed and missing is an
/// error (exit 2, nothing started); one needed only under parameters not given is a note.
pub(super) fn check(
    rb: &Runbook,
    config_file: Option<&std::path::Path>,
    values: Option<&Map<String, Value>>,
    ovh: bool,
) -> Result<Vec<String>, Error> {
    let mut notes = Vec::new();
    let path = &rb.path;
    if ovh && rb.needs.ovh {
        crate::ovh::Config::from_environment(&Default::default()).map_err(|e| {
            Error::Usage(format!(
                "{path} uses the OVH API, and {e} (read from the OVH_* environment variables, then ./ovh.conf, ~/.ovh.conf, /etc/ovh.conf); nothing was started"
            ))
        })?;
    }
    if !(rb.needs.smtp || rb.needs.imap) {
        return Ok(notes);
    }
    let default_config = crate::mail::default_config_path();
    let file = config_file.or(default_config.as_deref());
    // A config file that is there but wrong is an error now, as for any run.
    let mail =
        crate::mail::MailConfig::load(file, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .map_err(|e| Error::Usage(e.to_string()))?;
    let file_name = file
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "the config file".to_string());
    for (service, used, configured, call) in [
        (Service::Smtp, rb.needs.smtp, mail.smtp.is_some(), "notify"),
        (
            Service::Imap,
            rb.needs.imap,
            mail.imap.is_some(),
            "wait_email",
        ),
    ] {
        if !used || configured {
            continue;
        }
        let (section, upper) = (service.name(), service.name().to_uppercase());
        let missing = format!(
            "{upper} is not configured here (the [{section}] section of {file_name}, or LIFEBOAT_{upper}_HOST and the other LIFEBOAT_{upper}_* variables: docs/email.md)"
        );
        // The parameters under which the runbook needs it; none: it always does.
        let gates: Vec<&String> = rb
            .declaration
            .params
            .iter()
            .filter(|(_, spec)| spec.needs.contains(&service))
            .map(|(name, _)| name)
            .collect();
        if gates.is_empty() {
            return Err(Error::Usage(format!(
                "{path} calls {call}, and {missing}; nothing was started"
            )));
        }
        let wanted: Vec<String> = match values {
            Some(values) => gates
                .iter()
                .filter(|g| values.get(g.as_str()).is_some_and(is_set))
                .map(|g| format!("-p {g}={}", plain(&values[g.as_str()])))
                .collect(),
            None => Vec::new(),
        };
        if !wanted.is_empty() {
            return Err(Error::Usage(format!(
                "{path} calls {call} with {}, and {missing}; nothing was started. Configure {upper}, or run without {}",
                wanted.join(" "),
                wanted.join(" ")
            )));
        }
        let gates: Vec<String> = gates.iter().map(|g| format!("-p {g}")).collect();
        notes.push(format!(
            "it calls {call} only with {}, and {missing}; with {} `lifeboat run` refuses it here",
            gates.join(" or "),
            if gates.len() == 1 {
                "it"
            } else {
                "one of them"
            }
        ));
    }
    Ok(notes)
}

/// Whether a parameter's value turns on what it gates: true, a non-empty string, list or map,
/// a number other than zero.
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
    }
}

/// A parameter's value as it would be typed after `-p name=`.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
