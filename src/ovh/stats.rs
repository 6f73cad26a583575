//! How many calls this process made to the OVH API, by method, route and answer: what the war
//! room's `/metrics` shows (`lifeboat_ovh_calls_total`), asked of the process that drives runs.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Calls that got the same kind of answer on the same route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCount {
    pub method: String,
    /// The path with its parameters as `{}`: `/ip/{}/move`.
    pub route: String,
    /// The HTTP status, or `transport` when no answer came.
    pub code: String,
    pub count: u64,
}

static CALLS: Mutex<BTreeMap<(String, String, String), u64>> = Mutex::new(BTreeMap::new());

/// `path` with each parameter (a segment with a digit, a dot or an escape) as `{}`, so that
/// one route is one series whatever the IP or service it names.
pub fn route(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    path.split('/')
        .map(|seg| {
            if seg
                .bytes()
                .any(|b| b.is_ascii_digit() || b == b'.' || b == b'%')
            {
                "{}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

pub fn record(method: &str, path: &str, code: &str) {
    let mut calls = CALLS.lock().unwrap_or_else(|p| p.into_inner());
    *calls
        .entry((method.to_string(), route(path), code.to_string()))
        .or_default() += 1;
}

/// Every count so far, by method, route and code.
pub fn snapshot() -> Vec<CallCount> {
    CALLS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|((method, route, code), count)| CallCount {
            method: method.clone(),
            route: route.clone(),
            code: code.clone(),
            count: *count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_route_hides_its_parameters() {
        assert_eq!(super::route("/ip/1.2.3.4%2F32/move"), "/ip/{}/move");
        assert_eq!(
            super::route("/dedicatedCloud/pcc-145-239-1-2/filer/1234/checkGlobalCompatible?x=1"),
            "/dedicatedCloud/{}/filer/{}/checkGlobalCompatible"
        );
        assert_eq!(super::route("/dedicated/server"), "/dedicated/server");
    }
}
