//! Injected faults: what a rehearsal or a test wants the API to do wrong. Declared in the
//! fixture or added at run time through `POST /_sim/faults`.

use serde::{Deserialize, Serialize};

// No `deny_unknown_fields`: serde does not support it together with `flatten`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    /// Only requests with this method (any if absent).
    #[serde(default)]
    pub method: Option<String>,
    /// Requests whose path (after `/1.0`, unescaped as sent) starts with this; `*` matches any
    /// run of characters inside one segment.
    pub path: String,
    #[serde(flatten)]
    pub kind: FaultKind,
    /// How many matching requests to affect; every one if absent.
    #[serde(default)]
    pub times: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer after this many milliseconds (real time).
    Latency { ms: u64 },
    /// Answer with this status and an OVH-style error body.
    Status {
        status: u16,
        #[serde(default)]
        message: Option<String>,
    },
    /// Answer 429 with `Retry-After`.
    TooManyRequests { retry_after: u64 },
    /// Close the connection without answering (after the request was received).
    Drop,
    /// The task this request creates (an IP move, a datastore copy) ends in error
    /// (`ovhError`, or `error` for Private Cloud tasks).
    TaskError,
}

impl Fault {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if let Some(m) = &self.method {
            if !m.eq_ignore_ascii_case(method) {
                return false;
            }
        }
        glob_prefix(&self.path, path)
    }
}

/// `pattern` matches a prefix of `path`, `*` standing for any characters but `/`.
fn glob_prefix(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => path.starts_with(pattern),
        Some((head, rest)) => {
            let Some(after) = path.strip_prefix(head) else {
                return false;
            };
            let segment_end = after.find('/').unwrap_or(after.len());
            (0..=segment_end).any(|i| glob_prefix(rest, &after[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_prefix(
            "/dedicated/server/*/ipMove",
            "/dedicated/server/ns1.x/ipMove"
        ));
        assert!(!glob_prefix(
            "/dedicated/server/*/ipMove",
            "/dedicated/server/ns1/task/3"
        ));
        assert!(glob_prefix("/ip", "/ip/1.2.3.4%2F32"));
    }
}
