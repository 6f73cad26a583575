//! Approval links in gate emails: each recipient of a "waits for approval" notification gets a
//! link of their own that opens that gate on the war room's page and lets them approve it, or
//! abort the run, once, until it expires.
//!
//! A link carries a ticket: the run, the gate, the recipient and an expiry, signed with the war
//! room's key (`DIR/web.key`), so any `serve` sharing that key can check it and nothing is kept
//! per link. What the recipient does is journaled as `ADDRESS (emailed link)`; the journal is
//! also what makes a ticket single-use: once that identity approved the gate or aborted the
//! run, the ticket is spent.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::auth::Signer;
use crate::journal::{Event, EventRecord, RunId};

/// How long a link works when `[web] link_lifetime` does not say.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// What a ticket says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub run: String,
    pub gate: String,
    /// The address the link was sent to.
    pub to: String,
    /// Expiry, epoch seconds.
    pub exp: u64,
}

impl Ticket {
    /// Who the journal says acted, for a ticket's recipient.
    pub fn identity(&self) -> String {
        format!("{} (emailed link)", self.to)
    }

    /// Whether its recipient already used it: approved the gate or aborted the run.
    pub fn spent(&self, events: &[EventRecord]) -> bool {
        let me = self.identity();
        events.iter().any(|e| match &e.event {
            Event::GateApproved { gate, by, .. } => gate == &self.gate && by == &me,
            Event::RunAborted { by } => by == &me || by.starts_with(&format!("{me} (")),
            _ => false,
        })
    }
}

/// Why a ticket is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this approval link is not valid (altered, or made with another key)")]
    Invalid,
    #[error("this approval link expired; sign in to the war room instead")]
    Expired,
}

/// Makes and reads tickets.
pub struct Links {
    signer: Signer,
    /// The address people open, without a trailing slash.
    base_url: String,
    lifetime: Duration,
}

impl Links {
    pub fn new(key: Vec<u8>, base_url: &str, lifetime: Duration) -> Links {
        Links {
            signer: Signer::new(key),
            base_url: base_url.trim_end_matches('/').to_string(),
            lifetime,
        }
    }

    /// The link for `to` to decide gate `gate` of `run`, valid from `now_secs`.
    pub fn link(&self, run: &RunId, gate: &str, to: &str, now_secs: u64) -> String {
        let ticket = Ticket {
            run: run.to_string(),
            gate: gate.to_string(),
            to: to.to_string(),
            exp: now_secs + self.lifetime.as_secs(),
        };
        let signed = self
            .signer
            .sign(&serde_json::to_vec(&ticket).unwrap_or_default());
        format!("{}/#/link/{signed}", self.base_url)
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

/// The ticket in `signed`, if `signer` signed it and it has not expired at `now_secs`.
pub fn read(signer: &Signer, signed: &str, now_secs: u64) -> Result<Ticket, LinkError> {
    let payload = signer.verify(signed).ok_or(LinkError::Invalid)?;
    let ticket: Ticket = serde_json::from_slice(&payload).map_err(|_| LinkError::Invalid)?;
    if ticket.exp <= now_secs {
        return Err(LinkError::Expired);
    }
    Ok(ticket)
}

impl crate::mail::GateLinks for Links {
    fn link(&self, run: &RunId, gate: &str, to: &str, now_ms: u64) -> String {
        Links::link(self, run, gate, to, now_ms / 1000)
    }

    fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_read_back_until_it_expires_and_not_when_altered() {
        let links = Links::new(
            b"k".repeat(32),
            "https://war.example/",
            Duration::from_secs(60),
        );
        let run = RunId::parse("20261201-120000-abcd").unwrap();
        let url = links.link(&run, "go", "ops@example.com", 1000);
        let signed = url.strip_prefix("https://war.example/#/link/").unwrap();
        let signer = Signer::new(b"k".repeat(32));
        let ticket = read(&signer, signed, 1059).unwrap();
        assert_eq!(
            (
                ticket.run.as_str(),
                ticket.gate.as_str(),
                ticket.to.as_str()
            ),
            ("20261201-120000-abcd", "go", "ops@example.com")
        );
        assert_eq!(read(&signer, signed, 1060), Err(LinkError::Expired));
        assert_eq!(
            LinkError::Expired.to_string(),
            "this approval link expired; sign in to the war room instead"
        );
        let other = Signer::new(b"x".repeat(32));
        assert_eq!(read(&other, signed, 1001), Err(LinkError::Invalid));
        let (payload, sig) = signed.split_once('.').unwrap();
        let forged = format!("{}A.{sig}", &payload[..payload.len() - 1]);
        assert_eq!(read(&signer, &forged, 1001), Err(LinkError::Invalid));
    }
}
