//! Runbook parameters: their declared types, and turning `-p name=value` strings into typed
//! values before any step runs. A missing, unknown or ill-typed parameter is refused here.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::Error;

/// The types a parameter may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Int,
    Float,
    Bool,
    /// A list of strings: `a,b,c` or a JSON array.
    List,
    /// A JSON object.
    Map,
    /// A duration such as `30s` or `1h 30m`, kept as written.
    Duration,
}

impl ParamType {
    pub fn parse(name: &str) -> Option<ParamType> {
        Some(match name {
            "string" => ParamType::String,
            "int" => ParamType::Int,
            "float" => ParamType::Float,
            "bool" => ParamType::Bool,
            "list" => ParamType::List,
            "map" => ParamType::Map,
            "duration" => ParamType::Duration,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
            ParamType::List => "list",
            ParamType::Map => "map",
            ParamType::Duration => "duration",
        }
    }

    /// Converts a command-line string to a value of this type.
    pub fn from_cli(self, raw: &str) -> Result<Value, String> {
        match self {
            ParamType::String => Ok(Value::String(raw.to_string())),
            ParamType::Int => raw
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("expected an integer, got {raw:?}")),
            ParamType::Float => raw
                .trim()
                .parse::<f64>()
                .map(Value::from)
                .map_err(|_| format!("expected a number, got {raw:?}")),
            ParamType::Bool => match raw.trim() {
                "true" | "yes" | "1" => Ok(Value::Bool(true)),
                "false" | "no" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!("expected true or false, got {raw:?}")),
            },
            ParamType::List => {
                if raw.trim_start().starts_with('[') {
                    let v: Value = serde_json::from_str(raw)
                        .map_err(|e| format!("expected a JSON array: {e}"))?;
                    self.check(&v).map(|_| v)
                } else {
                    Ok(Value::Array(
                        raw.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(|s| Value::String(s.to_string()))
                            .collect(),
                    ))
                }
            }
            ParamType::Map => {
                let v: Value = serde_json::from_str(raw)
                    .map_err(|e| format!("expected a JSON object: {e}"))?;
                self.check(&v).map(|_| v)
            }
            ParamType::Duration => humantime::parse_duration(raw.trim())
                .map(|_| Value::String(raw.trim().to_string()))
                .map_err(|e| format!("expected a duration such as 30s or 1h 30m: {e}")),
        }
    }

    /// Whether a value (a declared default, an imported value) has this type.
    pub fn check(self, v: &Value) -> Result<(), String> {
        let ok = match self {
            ParamType::String => v.is_string(),
            ParamType::Int => v.is_i64(),
            ParamType::Float => v.is_number(),
            ParamType::Bool => v.is_boolean(),
            ParamType::List => v.is_array(),
            ParamType::Map => v.is_object(),
            ParamType::Duration => v
                .as_str()
                .is_some_and(|s| humantime::parse_duration(s).is_ok()),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("expected a {}, got {v}", self.name()))
        }
    }
}

/// A service outside lifeboat that a parameter can turn on (`needs: "imap"`): the run needs
/// its settings only when the parameter is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// SMTP, for `notify`.
    Smtp,
    /// IMAP, for `wait_email`.
    Imap,
}

impl Service {
    pub fn parse(name: &str) -> Option<Service> {
        match name {
            "smtp" => Some(Service::Smtp),
            "imap" => Some(Service::Imap),
            _ => None,
        }
    }

    /// Its name, as in the config file's section: `smtp`, `imap`.
    pub fn name(self) -> &'static str {
        match self {
            Service::Smtp => "smtp",
            Service::Imap => "imap",
        }
    }
}

/// One declared parameter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub ty: ParamType,
    pub help: String,
    pub default: Option<Value>,
    /// Services the run needs only when this parameter is set (true, non-empty, non-zero).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<Service>,
}

/// Builds the run's parameter values: every declared parameter gets the given value or its
/// default; anything else is an error naming the parameter.
pub fn resolve(
    specs: &BTreeMap<String, ParamSpec>,
    given: &[(String, String)],
) -> Result<serde_json::Map<String, Value>, Error> {
    let mut values = serde_json::Map::new();
    for (name, raw) in given {
        let spec = specs.get(name).ok_or_else(|| Error::Param {
            name: name.clone(),
            message: if specs.is_empty() {
                "this runbook declares no parameters".to_string()
            } else {
                format!(
                    "unknown parameter (declared: {})",
                    specs.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            },
        })?;
        let value = spec.ty.from_cli(raw).map_err(|message| Error::Param {
            name: name.clone(),
            message,
        })?;
        values.insert(name.clone(), value);
    }
    for (name, spec) in specs {
        if values.contains_key(name) {
            continue;
        }
        match &spec.default {
            Some(default) => {
                values.insert(name.clone(), default.clone());
            }
            None => {
                return Err(Error::Param {
                    name: name.clone(),
                    message: format!(
                        "missing required {} parameter ({})",
                        spec.ty.name(),
                        spec.help
                    ),
                })
            }
        }
    }
    Ok(values)
}

/// Splits `name=value` from the command line.
pub fn split_assignment(arg: &str) -> Result<(String, String), Error> {
    match arg.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(Error::Param {
            name: arg.to_string(),
            message: "expected name=value".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> BTreeMap<String, ParamSpec> {
        let mut s = BTreeMap::new();
        s.insert(
            "pcc".into(),
            ParamSpec {
                needs: Vec::new(),
                ty: ParamType::String,
                help: "source PCC".into(),
                default: None,
            },
        );
        s.insert(
            "n".into(),
            ParamSpec {
                needs: Vec::new(),
                ty: ParamType::Int,
                help: "count".into(),
                default: Some(3.into()),
            },
        );
        s.insert(
            "ips".into(),
            ParamSpec {
                needs: Vec::new(),
                ty: ParamType::List,
                help: "ips".into(),
                default: Some(Value::Array(vec![])),
            },
        );
        s
    }

    #[test]
    fn values_defaults_and_errors() {
        let v = resolve(
            &specs(),
            &[
                ("pcc".into(), "pcc-1".into()),
                ("ips".into(), "1.2.3.4, 5.6.7.8/30".into()),
            ],
        )
        .unwrap();
        assert_eq!(v["pcc"], "pcc-1");
        assert_eq!(v["n"], 3);
        assert_eq!(v["ips"], serde_json::json!(["1.2.3.4", "5.6.7.8/30"]));

        let missing = resolve(&specs(), &[]).unwrap_err().to_string();
        assert_eq!(
            missing,
            "parameter pcc: missing required string parameter (source PCC)"
        );
        let typed = resolve(
            &specs(),
            &[("pcc".into(), "x".into()), ("n".into(), "many".into())],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(typed, "parameter n: expected an integer, got \"many\"");
        let unknown = resolve(&specs(), &[("pc".into(), "x".into())])
            .unwrap_err()
            .to_string();
        assert_eq!(
            unknown,
            "parameter pc: unknown parameter (declared: ips, n, pcc)"
        );
    }

    #[test]
    fn durations_and_bools() {
        assert_eq!(ParamType::Duration.from_cli("1h 30m").unwrap(), "1h 30m");
        assert!(ParamType::Duration.from_cli("soon").is_err());
        assert_eq!(ParamType::Bool.from_cli("yes").unwrap(), true);
        assert!(ParamType::Map.from_cli("[1]").is_err());
    }
}
