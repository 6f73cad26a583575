//! Which email a wait is for: parse a raw message with a real MIME parser (multipart,
//! quoted-printable, encoded headers) and test it against the criteria.

use mail_parser::MessageParser;
use regex::Regex;
use serde::Serialize;

use super::Error;

/// What a message must look like. Every given criterion must hold.
#[derive(Clone, Debug)]
pub struct Criteria {
    /// Found in the From address or name, case-insensitively.
    pub from: Option<String>,
    pub subject: Option<Regex>,
    pub body: Option<Regex>,
}

/// A matching message, as the runbook sees it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Found {
    pub uid: u32,
    pub from: String,
    pub subject: String,
    pub date: Option<String>,
    pub text: String,
    /// Capture groups of the subject pattern, then of the body pattern (`restore-(\d+)`...).
    pub captures: Vec<String>,
}

impl Criteria {
    pub fn new(
        from: Option<String>,
        subject: Option<&str>,
        body: Option<&str>,
    ) -> Result<Criteria, Error> {
        let compile = |what: &str, p: &str| {
            Regex::new(p).map_err(|e| Error::Pattern(format!("wait_email {what}: {e}")))
        };
        Ok(Criteria {
            from,
            subject: subject.map(|p| compile("subject", p)).transpose()?,
            body: body.map(|p| compile("body", p)).transpose()?,
        })
    }

    /// The message, if it matches.
    pub fn matches(&self, uid: u32, raw: &[u8]) -> Option<Found> {
        let msg = MessageParser::default().parse(raw)?;
        let from_addr = msg.from().and_then(|a| a.first());
        let from = match from_addr {
            Some(a) => match (a.name(), a.address()) {
                (Some(n), Some(ad)) => format!("{n} <{ad}>"),
                (None, Some(ad)) => ad.to_string(),
                (Some(n), None) => n.to_string(),
                (None, None) => String::new(),
            },
            None => String::new(),
        };
        let subject = msg.subject().unwrap_or_default().to_string();
        let text = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
        if let Some(want) = &self.from {
            if !from.to_lowercase().contains(&want.to_lowercase()) {
                return None;
            }
        }
        let mut captures = Vec::new();
        for (re, hay) in [(&self.subject, &subject), (&self.body, &text)] {
            if let Some(re) = re {
                let caps = re.captures(hay)?;
                captures.extend(
                    caps.iter()
                        .skip(1)
                        .map(|m| m.map_or(String::new(), |m| m.as_str().to_string())),
                );
            }
        }
        Some(Found {
            uid,
            from,
            subject,
            date: msg.date().map(|d| d.to_rfc3339()),
            text,
            captures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTIPART: &[u8] = b"From: =?UTF-8?Q?OVHcloud_Support?= <support@ovh.example>\r\n\
To: oncall@example.test\r\n\
Subject: =?UTF-8?B?W09WSGNsb3VkXSBEYXRhc3RvcmUgc3NkLTA0MiByZXN0b3JlZA==?=\r\n\
Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
The datastore is available as restore-=\r\n\
000042, read-only.\r\n\
--b1\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>html</p>\r\n\
--b1--\r\n";

    #[test]
    fn parses_encoded_headers_multipart_and_quoted_printable() {
        let c = Criteria::new(
            Some("ovh".into()),
            Some(r"Datastore (\S+) restored"),
            Some(r"(restore-\d+)"),
        )
        .unwrap();
        let found = c.matches(7, MULTIPART).unwrap();
        assert_eq!(found.subject, "[OVHcloud] Datastore ssd-042 restored");
        assert_eq!(found.from, "OVHcloud Support <support@ovh.example>");
        assert_eq!(found.captures, vec!["ssd-042", "restore-000042"]);
        assert!(Criteria::new(Some("someone-else".into()), None, None)
            .unwrap()
            .matches(7, MULTIPART)
            .is_none());
        assert!(Criteria::new(None, Some("unrelated"), None)
            .unwrap()
            .matches(7, MULTIPART)
            .is_none());
        assert!(Criteria::new(None, Some("("), None).is_err());
    }
}
