//! Secrets (the OVH application secret and consumer key, OAuth2 client secrets, mail
//! passwords): the only way credentials travel through lifeboat. `Debug` and `Display` print
//! `***`, and there is no `Serialize`, so a secret cannot reach the journal, a log line, a
//! report or an error message by accident.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that needs it (signing, authenticating).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk");
    }
}
