//! Who is asking, and what they may do: the war room's tokens, sessions, CSRF protection and
//! the brake on failed logins.
//!
//! People authenticate with tokens defined in the config file (`[[web.token]]`), each with a
//! name and a role, stored as their SHA-256 (a token is 32 random bytes: nothing to
//! brute-force, so a slow hash buys nothing). A browser trades its token once for a session
//! cookie (`HttpOnly`, `SameSite=Strict`, `Secure` over TLS) signed with the server's key; a
//! script sends the token itself (`Authorization: Bearer`). A request that changes something
//! with a cookie must also carry the session's CSRF token in `X-Lifeboat-CSRF` and, when the
//! browser says where it comes from (`Origin`), come from this server: a page elsewhere
//! cannot make a logged-in browser act.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// What a person may do. Each role may do what the ones before it may.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads runs, logs and reports.
    Viewer,
    /// Also approves gates, aborts runs, retries, skips and resolves steps.
    Operator,
    /// Also exports runs (their full journal).
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// One `[[web.token]]` of the config file.
#[derive(Clone, Debug)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the token, hex.
    pub sha256: String,
}

/// A person the server knows: from their token or their session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub role: Role,
    /// The session's CSRF token, for a browser session; `None` for a bearer token.
    pub csrf: Option<String>,
}

/// How long a browser session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Failed logins from one address within [`FAILURE_WINDOW`] before it must wait.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses with failures kept before old ones are pruned.
const MAX_REMEMBERED: usize = 10_000;

pub const SESSION_COOKIE: &str = "lifeboat_session";
pub const CSRF_HEADER: &str = "x-lifeboat-csrf";

/// A new token: `lbt_` and 32 random bytes, URL-safe.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "lbt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The SHA-256 of a token, hex: what the config file keeps.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a session cookie says, signed.
#[derive(Serialize, Deserialize)]
struct Session {
    name: String,
    role: Role,
    /// Expiry, epoch seconds.
    exp: u64,
    /// Random: makes each session's CSRF token its own.
    nonce: String,
}

/// Signs and checks what the war room hands out (session cookies, emailed links) with its key.
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    pub fn new(key: Vec<u8>) -> Signer {
        Signer { key }
    }

    fn mac(&self, what: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(what);
        mac.finalize().into_bytes().to_vec()
    }

    /// `payload.signature`, both URL-safe base64.
    pub fn sign(&self, payload: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}", b64.encode(payload), b64.encode(self.mac(payload)))
    }

    /// The payload of something [`Signer::sign`] made, if its signature holds.
    pub fn verify(&self, signed: &str) -> Option<Vec<u8>> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (payload, signature) = signed.split_once('.')?;
        let payload = b64.decode(payload).ok()?;
        let signature = b64.decode(signature).ok()?;
        same(&self.mac(&payload), &signature).then_some(payload)
    }
}

/// The server's authentication state.
pub struct Auth {
    tokens: Vec<TokenEntry>,
    pub(crate) signer: Signer,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials, or wrong ones: 401.
    Unauthenticated(&'static str),
    /// Too many failed logins from this address: 429, retry after that many seconds.
    Slow(u64),
}

impl Auth {
    pub fn new(tokens: Vec<TokenEntry>, key: Vec<u8>) -> Auth {
        Auth {
            tokens,
            signer: Signer::new(key),
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    pub fn sign(&self, payload: &[u8]) -> String {
        self.signer.sign(payload)
    }

    pub fn verify(&self, signed: &str) -> Option<Vec<u8>> {
        self.signer.verify(signed)
    }

    /// Whether `peer` must wait before trying again, and how long (seconds).
    pub fn check_pace(&self, peer: IpAddr) -> Result<(), Refusal> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let recent = failures.entry(peer).or_default();
        recent.retain(|t| t.elapsed() < FAILURE_WINDOW);
        if recent.len() >= MAX_FAILURES {
            let oldest = recent.iter().min().copied().unwrap_or_else(Instant::now);
            let wait = FAILURE_WINDOW.saturating_sub(oldest.elapsed()).as_secs() + 1;
            return Err(Refusal::Slow(wait));
        }
        Ok(())
    }

    /// Counts a failed attempt from `peer` (a wrong token, a forged link).
    pub fn failed(&self, peer: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Addresses whose failures are all older than the window are forgotten, so that many
        // addresses failing (a scan) cannot grow this without bound.
        if failures.len() >= MAX_REMEMBERED {
            failures.retain(|_, times| times.iter().any(|t| t.elapsed() < FAILURE_WINDOW));
        }
        let times = failures.entry(peer).or_default();
        times.retain(|t| t.elapsed() < FAILURE_WINDOW);
        times.push(Instant::now());
    }

    /// The person a token belongs to; counts a wrong token against `peer`.
    pub fn login(&self, peer: IpAddr, token: &str) -> Result<Person, Refusal> {
        self.check_pace(peer)?;
        let hash = token_hash(token.trim());
        match self
            .tokens
            .iter()
            .find(|t| same(t.sha256.as_bytes(), hash.as_bytes()))
        {
            Some(t) => Ok(Person {
                name: t.name.clone(),
                role: t.role,
                csrf: None,
            }),
            None => {
                self.failed(peer);
                Err(Refusal::Unauthenticated("unknown token"))
            }
        }
    }

    /// A session cookie's value for `person`, valid for [`SESSION_LIFETIME`] from `now_secs`.
    pub fn session_for(&self, person: &Person, now_secs: u64) -> Result<String, getrandom::Error> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)?;
        let session = Session {
            name: person.name.clone(),
            role: person.role,
            exp: now_secs + SESSION_LIFETIME.as_secs(),
            nonce: hex(&nonce),
        };
        Ok(self.sign(&serde_json::to_vec(&session).unwrap_or_default()))
    }

    /// The person a session cookie names, if it is signed by this server, not expired, and
    /// its token is still in the config with the same role (removing a token ends its
    /// sessions).
    pub fn session(&self, cookie: &str, now_secs: u64) -> Option<Person> {
        let payload = self.verify(cookie)?;
        let session: Session = serde_json::from_slice(&payload).ok()?;
        if session.exp <= now_secs {
            return None;
        }
        self.tokens
            .iter()
            .find(|t| t.name == session.name && t.role == session.role)?;
        Some(Person {
            csrf: Some(self.csrf(cookie)),
            name: session.name,
            role: session.role,
        })
    }

    /// The CSRF token of a session: derived from its cookie, so nothing is kept per session.
    fn csrf(&self, cookie: &str) -> String {
        hex(&self.signer.mac(format!("csrf:{cookie}").as_bytes())[..16])
    }

    /// Authenticates a request from its headers: a bearer token, else the session cookie.
    pub fn identify(
        &self,
        peer: IpAddr,
        authorization: Option<&str>,
        cookies: Option<&str>,
        now_secs: u64,
    ) -> Result<Person, Refusal> {
        if let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
            return self.login(peer, token);
        }
        let cookie = cookies
            .into_iter()
            .flat_map(|c| c.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value);
        match cookie {
            Some(cookie) => self
                .session(cookie, now_secs)
                .ok_or(Refusal::Unauthenticated(
                    "session expired or unknown: sign in again",
                )),
            None => Err(Refusal::Unauthenticated("sign in with your token")),
        }
    }
}

/// Whether a state-changing request from `person` may go on: bearer tokens always (a browser
/// never sends one by itself); a session only with its CSRF token, and from this server's own
/// origin when the browser names one.
pub fn csrf_ok(
    person: &Person,
    header: Option<&str>,
    origin: Option<&str>,
    host: Option<&str>,
) -> bool {
    let Some(expected) = &person.csrf else {
        return true;
    };
    same_origin(origin, host) && header.is_some_and(|h| same(h.as_bytes(), expected.as_bytes()))
}

/// Whether a request comes from this server's own pages, as far as the browser says: its
/// `Origin` (when it sends one) names the host the request was sent to.
pub fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    match (origin, host) {
        (Some(origin), Some(host)) => {
            origin
                .split_once("://")
                .map(|(_, rest)| rest)
                .unwrap_or(origin)
                == host
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> (Auth, String) {
        let token = new_token().unwrap();
        let auth = Auth::new(
            vec![TokenEntry {
                name: "alice".into(),
                role: Role::Operator,
                sha256: token_hash(&token),
            }],
            b"key".to_vec(),
        );
        (auth, token)
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_session_names_its_person_until_it_expires() {
        let (auth, token) = auth();
        let alice = auth.login(PEER, &token).unwrap();
        let cookie = auth.session_for(&alice, 1000).unwrap();
        let seen = auth.session(&cookie, 1001).unwrap();
        assert_eq!((seen.name.as_str(), seen.role), ("alice", Role::Operator));
        assert!(auth
            .session(&cookie, 1000 + SESSION_LIFETIME.as_secs())
            .is_none());
        // A forged or altered cookie is nobody.
        let (payload, _) = cookie.split_once('.').unwrap();
        assert!(auth.session(&format!("{payload}.AAAA"), 1001).is_none());
        let other = Auth::new(auth.tokens.clone(), b"other key".to_vec());
        assert!(other.session(&cookie, 1001).is_none());
    }

    #[test]
    fn five_failed_logins_make_an_address_wait() {
        let (auth, token) = auth();
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                auth.login(PEER, "lbt_wrong"),
                Err(Refusal::Unauthenticated("unknown token"))
            );
        }
        // Even the right token waits now: guessing gains nothing.
        assert!(matches!(auth.login(PEER, &token), Err(Refusal::Slow(s)) if s > 0 && s <= 61));
        let elsewhere: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(auth.login(elsewhere, &token).is_ok());
    }

    #[test]
    fn csrf_needs_the_session_token_and_the_same_origin() {
        let (auth, token) = auth();
        let cookie = auth
            .session_for(&auth.login(PEER, &token).unwrap(), 0)
            .unwrap();
        let person = auth.session(&cookie, 1).unwrap();
        let csrf = person.csrf.clone().unwrap();
        let host = Some("127.0.0.1:8750");
        assert!(csrf_ok(
            &person,
            Some(&csrf),
            Some("http://127.0.0.1:8750"),
            host
        ));
        assert!(csrf_ok(&person, Some(&csrf), None, host));
        assert!(!csrf_ok(&person, None, None, host));
        assert!(!csrf_ok(&person, Some("0000"), None, host));
        assert!(!csrf_ok(
            &person,
            Some(&csrf),
            Some("https://evil.example"),
            host
        ));
        // A bearer token needs none of it.
        let bearer = auth.login(PEER, &token).unwrap();
        assert!(csrf_ok(&bearer, None, Some("https://evil.example"), host));
    }
}
