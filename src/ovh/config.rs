//! Where the client's endpoint and credentials come from, the way OVH's own SDKs do it:
//! explicit values, then `OVH_*` environment variables, then `ovh.conf` files merged in
//! increasing priority (`/etc/ovh.conf`, `~/.ovh.conf`, `./ovh.conf`), with a `[default]`
//! section naming the endpoint and a section per endpoint holding its keys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::secret::Secret;

/// The named endpoints: name, base URL, OAuth2 token URL (where OAuth2 is offered).
pub const ENDPOINTS: &[(&str, &str, Option<&str>)] = &[
    (
        "ovh-eu",
        "https://eu.api.ovh.com/1.0",
        Some("https://www.ovh.com/auth/oauth2/token"),
    ),
    (
        "ovh-ca",
        "https://ca.api.ovh.com/1.0",
        Some("https://ca.ovh.com/auth/oauth2/token"),
    ),
    (
        "ovh-us",
        "https://api.us.ovhcloud.com/1.0",
        Some("https://us.ovhcloud.com/auth/oauth2/token"),
    ),
    ("kimsufi-eu", "https://eu.api.kimsufi.com/1.0", None),
    ("kimsufi-ca", "https://ca.api.kimsufi.com/1.0", None),
    ("soyoustart-eu", "https://eu.api.soyoustart.com/1.0", None),
    ("soyoustart-ca", "https://ca.api.soyoustart.com/1.0", None),
];

/// How requests are authenticated.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Application key and secret, with a consumer key once one has been validated.
    Signed {
        application_key: String,
        application_secret: Secret,
        consumer_key: Option<Secret>,
    },
    /// OAuth2 client credentials (service accounts): a Bearer token, no signature.
    OAuth2 {
        client_id: String,
        client_secret: Secret,
        token_url: String,
    },
}

/// A resolved client configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The endpoint as configured: a name from [`ENDPOINTS`] or a raw base URL.
    pub endpoint: String,
    /// Base URL, without a trailing slash (`https://eu.api.ovh.com/1.0`).
    pub base_url: String,
    pub auth: Auth,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no OVH endpoint configured: set OVH_ENDPOINT (ovh-eu, ovh-ca, ovh-us, kimsufi-eu, kimsufi-ca, soyoustart-eu, soyoustart-ca, or a base URL such as the simulator's) or `endpoint=` in the [default] section of ovh.conf")]
    NoEndpoint,
    #[error("unknown OVH endpoint {0:?} (known: ovh-eu, ovh-ca, ovh-us, kimsufi-eu, kimsufi-ca, soyoustart-eu, soyoustart-ca, or a base URL)")]
    UnknownEndpoint(String),
    #[error("no OVH credentials for endpoint {0}: set OVH_APPLICATION_KEY and OVH_APPLICATION_SECRET (and OVH_CONSUMER_KEY), or OVH_CLIENT_ID and OVH_CLIENT_SECRET, or the same keys in ovh.conf")]
    NoCredentials(String),
    #[error("OVH credentials: {0}")]
    Invalid(String),
    #[error("{path}:{line}: {message}")]
    File {
        path: String,
        line: usize,
        message: String,
    },
}

/// Values given explicitly (command line), which win over everything else.
#[derive(Default, Clone)]
pub struct Overrides {
    pub endpoint: Option<String>,
    pub application_key: Option<String>,
    pub application_secret: Option<Secret>,
    pub consumer_key: Option<Secret>,
}

impl Config {
    /// Resolves the configuration from the process environment and the standard files.
    pub fn from_environment(overrides: &Overrides) -> Result<Config, ConfigError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let mut files = vec![PathBuf::from("/etc/ovh.conf")];
        if let Some(home) = home {
            files.push(home.join(".ovh.conf"));
        }
        files.push(PathBuf::from("ovh.conf"));
        Config::resolve(
            overrides,
            &|k| std::env::var(k).ok().filter(|v| !v.is_empty()),
            &files,
        )
    }

    /// Resolves from explicit values, an environment lookup and INI files (lowest priority
    /// first). Side effects passed in, so tests control them.
    pub fn resolve(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
        files: &[PathBuf],
    ) -> Result<Config, ConfigError> {
        let mut ini: HashMap<String, HashMap<String, String>> = HashMap::new();
        for path in files {
            if let Ok(text) = std::fs::read_to_string(path) {
                for (section, values) in parse_ini(path, &text)? {
                    ini.entry(section).or_default().extend(values);
                }
            }
        }
        let endpoint = overrides
            .endpoint
            .clone()
            .or_else(|| env("OVH_ENDPOINT"))
            .or_else(|| ini.get("default").and_then(|s| s.get("endpoint")).cloned())
            .ok_or(ConfigError::NoEndpoint)?;
        let (base_url, token_url) = base_url(&endpoint)?;
        let section = ini.get(&endpoint);
        let get = |key: &str| -> Option<String> {
            env(&format!("OVH_{}", key.to_uppercase()))
                .or_else(|| section.and_then(|s| s.get(key)).cloned())
        };
        let application_key = overrides
            .application_key
            .clone()
            .or_else(|| get("application_key"));
        let application_secret = overrides
            .application_secret
            .clone()
            .or_else(|| get("application_secret").map(Secret::new));
        let consumer_key = overrides
            .consumer_key
            .clone()
            .or_else(|| get("consumer_key").map(Secret::new));
        let client_id = get("client_id");
        let client_secret = get("client_secret").map(Secret::new);

        let signed = application_key.is_some() || application_secret.is_some();
        let oauth = client_id.is_some() || client_secret.is_some();
        let auth = match (signed, oauth) {
            (true, true) => return Err(ConfigError::Invalid(
                "both an application key/secret and an OAuth2 client id/secret are set; use one"
                    .into(),
            )),
            (true, false) => match (application_key, application_secret) {
                (Some(application_key), Some(application_secret)) => Auth::Signed {
                    application_key,
                    application_secret,
                    consumer_key,
                },
                _ => {
                    return Err(ConfigError::Invalid(
                        "the application key and the application secret go together".into(),
                    ))
                }
            },
            (false, true) => match (client_id, client_secret) {
                (Some(client_id), Some(client_secret)) => {
                    let token_url = token_url.ok_or_else(|| {
                        ConfigError::Invalid(format!("OAuth2 is offered on ovh-eu, ovh-ca and ovh-us only, not on {endpoint}"))
                    })?;
                    Auth::OAuth2 {
                        client_id,
                        client_secret,
                        token_url,
                    }
                }
                _ => {
                    return Err(ConfigError::Invalid(
                        "the OAuth2 client id and client secret go together".into(),
                    ))
                }
            },
            (false, false) => return Err(ConfigError::NoCredentials(endpoint)),
        };
        Ok(Config {
            endpoint,
            base_url,
            auth,
        })
    }
}

/// The base URL (and OAuth2 token URL) of an endpoint name or raw URL.
pub fn base_url(endpoint: &str) -> Result<(String, Option<String>), ConfigError> {
    if endpoint.contains('/') {
        return Ok((endpoint.trim_end_matches('/').to_string(), None));
    }
    ENDPOINTS
        .iter()
        .find(|(name, _, _)| *name == endpoint)
        .map(|(_, url, token)| (url.to_string(), token.map(str::to_string)))
        .ok_or_else(|| ConfigError::UnknownEndpoint(endpoint.to_string()))
}

/// A minimal INI reader: `[section]`, `key = value` or `key: value`, `;` and `#` comments.
fn parse_ini(
    path: &Path,
    text: &str,
) -> Result<HashMap<String, HashMap<String, String>>, ConfigError> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .or_else(|| line.split_once(':'))
            .ok_or_else(|| ConfigError::File {
                path: path.display().to_string(),
                line: n + 1,
                message: "expected `key = value` or `[section]`".into(),
            })?;
        if section.is_empty() {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                line: n + 1,
                message: "a key before any [section]".into(),
            });
        }
        out.entry(section.clone())
            .or_default()
            .insert(key.trim().to_lowercase(), value.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn files_merge_with_later_ones_winning_and_env_over_files() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc.conf");
        let local = dir.path().join("local.conf");
        std::fs::write(&etc, "[default]\nendpoint=ovh-eu\n[ovh-eu]\napplication_key=etc-ak\napplication_secret=etc-as\n").unwrap();
        std::fs::write(
            &local,
            "; local\n[ovh-eu]\napplication_key = local-ak\nconsumer_key = ck\n",
        )
        .unwrap();
        let c = Config::resolve(
            &Overrides::default(),
            &no_env,
            &[etc.clone(), local.clone()],
        )
        .unwrap();
        assert_eq!(c.base_url, "https://eu.api.ovh.com/1.0");
        match &c.auth {
            Auth::Signed {
                application_key,
                application_secret,
                consumer_key,
            } => {
                assert_eq!(application_key, "local-ak");
                assert_eq!(application_secret.expose(), "etc-as");
                assert_eq!(consumer_key.as_ref().unwrap().expose(), "ck");
            }
            other => panic!("{other:?}"),
        }
        let env = |k: &str| (k == "OVH_APPLICATION_KEY").then(|| "env-ak".to_string());
        let c = Config::resolve(&Overrides::default(), &env, &[etc, local]).unwrap();
        assert!(
            matches!(c.auth, Auth::Signed { ref application_key, .. } if application_key == "env-ak")
        );
        assert!(
            !format!("{c:?}").contains("etc-as"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn raw_urls_oauth2_and_mistakes() {
        let env = |k: &str| match k {
            "OVH_ENDPOINT" => Some("http://127.0.0.1:8080/1.0/".to_string()),
            "OVH_APPLICATION_KEY" => Some("ak".to_string()),
            _ => None,
        };
        let e = Config::resolve(&Overrides::default(), &env, &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "OVH credentials: the application key and the application secret go together"
        );
        let env = |k: &str| match k {
            "OVH_ENDPOINT" => Some("kimsufi-eu".to_string()),
            "OVH_CLIENT_ID" => Some("id".to_string()),
            "OVH_CLIENT_SECRET" => Some("s".to_string()),
            _ => None,
        };
        let e = Config::resolve(&Overrides::default(), &env, &[])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "OVH credentials: OAuth2 is offered on ovh-eu, ovh-ca and ovh-us only, not on kimsufi-eu");
        assert_eq!(
            base_url("http://127.0.0.1:1/1.0/").unwrap().0,
            "http://127.0.0.1:1/1.0"
        );
        assert!(matches!(
            base_url("ovh-mars"),
            Err(ConfigError::UnknownEndpoint(_))
        ));
        assert!(matches!(
            Config::resolve(&Overrides::default(), &no_env, &[]),
            Err(ConfigError::NoEndpoint)
        ));
    }
}
