//! OVH request signing, shared by the client (to sign) and the simulator (to verify).
//!
//! The signature is `$1$` followed by the lowercase hex SHA-1 (a plain hash, not an HMAC) of
//! `AS+CK+METHOD+FULL_URL+BODY+TIMESTAMP`, where FULL_URL is the exact URL on the wire,
//! query string included, and BODY the exact bytes sent ("" when there is none).

use sha1::{Digest, Sha1};

pub fn sign(
    application_secret: &str,
    consumer_key: &str,
    method: &str,
    url: &str,
    body: &str,
    timestamp: i64,
) -> String {
    let mut hasher = Sha1::new();
    for (i, part) in [
        application_secret,
        consumer_key,
        &method.to_uppercase(),
        url,
        body,
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            hasher.update(b"+");
        }
        hasher.update(part.as_bytes());
    }
    hasher.update(b"+");
    hasher.update(timestamp.to_string().as_bytes());
    let digest = hasher.finalize();
    let mut out = String::with_capacity(43);
    out.push_str("$1$");
    for byte in digest.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sign;

    /// The test vectors of go-ovh's `ovh_test.go` (keys revoked).
    #[test]
    fn official_test_vectors() {
        let (r#as, ck, ts) = (
            "9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk",
            "5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY",
            1457018875,
        );
        let url = "https://eu.api.ovh.com/1.0/auth";
        let body = r#"{"a":"b","c":"d"}"#;
        assert_eq!(
            sign(r#as, ck, "GET", url, "", ts),
            "$1$e9556054b6309771395efa467c22e627407461ad"
        );
        assert_eq!(
            sign(r#as, ck, "POST", url, body, ts),
            "$1$ec2fb5c7a81f64723c77d2e5b609ae6f58a84fc1"
        );
        assert_eq!(
            sign(r#as, ck, "PUT", url, body, ts),
            "$1$8a75a9e7c8e7296c9dbeda6a2a735eb6bd58ec4b"
        );
        assert_eq!(
            sign(r#as, ck, "DELETE", url, "", ts),
            "$1$a1eecd00b3b02b6cf5708b84b9ff42059a950d85"
        );
        assert_eq!(
            sign(r#as, ck, "GET", "https://eu.api.ovh.com/1.0/authTO", "", ts),
            "$1$1f0958be70f095ddaba525778a9ac1dcffac89f3"
        );
    }
}
