//! The OVH API's JSON shapes for the calls recoveries make (schemas of June 2024). Fields the
//! API may omit are optional; enums OVH may extend decode unknown values into `Unknown`
//! instead of failing. The simulator serves these same shapes.

use serde::{Deserialize, Serialize};

/// An enum of known string values that keeps any other value as `Unknown(value)`.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value this build does not know (OVH added it later).
            Unknown(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Unknown(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)+
                    other => $name::Unknown(other.to_string()),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::from(s.as_str()))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

open_enum! {
    /// `dedicated.TaskStatusEnum` / `ip.TaskStatusEnum`.
    TaskStatus {
        Init => "init", Todo => "todo", Doing => "doing", Done => "done",
        Cancelled => "cancelled", CustomerError => "customerError", OvhError => "ovhError",
    }
}

open_enum! {
    /// `dedicatedCloud.TaskStateEnum` (note `canceled` with one l).
    PccTaskState {
        Canceled => "canceled", Doing => "doing", Done => "done", Error => "error", Fixing => "fixing",
        ToCancel => "toCancel", ToCreate => "toCreate", Todo => "todo", Unknown_ => "unknown",
        WaitingForChilds => "waitingForChilds", WaitingTodo => "waitingTodo",
    }
}

open_enum! {
    /// `dedicatedCloud.option.StateEnum` (HDS, PCI-DSS, HIPAA).
    OptionState {
        Disabled => "disabled", Disabling => "disabling", Enabled => "enabled", Enabling => "enabling",
        Error => "error", Migrating => "migrating", Unknown_ => "unknown",
    }
}

/// Where a task stands, whatever its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Running,
    Done,
    Failed,
}

impl TaskStatus {
    /// `init|todo|doing` run, `done` succeeds, `cancelled|customerError|ovhError` fail. An
    /// unknown value counts as running (a wait's timeout bounds it).
    pub fn progress(&self) -> Progress {
        match self {
            TaskStatus::Done => Progress::Done,
            TaskStatus::Cancelled | TaskStatus::CustomerError | TaskStatus::OvhError => {
                Progress::Failed
            }
            _ => Progress::Running,
        }
    }
}

impl PccTaskState {
    /// `done` succeeds; `error|canceled` fail; everything else (including `fixing`, an OVH-side
    /// retry, and `unknown`) runs. This classification is ours, not OVH's documentation.
    pub fn progress(&self) -> Progress {
        match self {
            PccTaskState::Done => Progress::Done,
            PccTaskState::Error | PccTaskState::Canceled => Progress::Failed,
            _ => Progress::Running,
        }
    }
}

/// `dedicated.server.Dedicated` (the fields recoveries read).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DedicatedServer {
    pub name: String,
    #[serde(default)]
    pub server_id: i64,
    #[serde(default)]
    pub ip: Option<String>,
    pub datacenter: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub power_state: Option<String>,
    #[serde(default)]
    pub commercial_range: Option<String>,
    #[serde(default)]
    pub reverse: Option<String>,
}

/// `dedicated.server.Task`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTask {
    pub task_id: i64,
    pub function: String,
    pub status: TaskStatus,
    pub start_date: String,
    #[serde(default)]
    pub done_date: Option<String>,
    #[serde(default)]
    pub last_update: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub need_schedule: bool,
}

/// `ip.Ip`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ip {
    pub ip: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub routed_to: Option<RoutedTo>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub campus: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub can_be_terminated: bool,
    #[serde(default)]
    pub is_additional_ip: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutedTo {
    pub service_name: Option<String>,
}

/// `ip.IpTask`. The schema names the target `destination`; terraform maps it as `routedTo`:
/// both are accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpTask {
    pub task_id: i64,
    pub function: String,
    pub status: TaskStatus,
    pub start_date: String,
    #[serde(default)]
    pub done_date: Option<String>,
    #[serde(default)]
    pub last_update: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default, alias = "routedTo")]
    pub destination: Option<RoutedTo>,
}

/// `ip.Destinations` (only `dedicatedServer` matters to us; the rest is kept as JSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destinations {
    #[serde(default)]
    pub dedicated_server: Vec<Destination>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dedicated_cloud: Vec<Destination>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    pub service: String,
    #[serde(default)]
    pub nexthop: Option<Vec<String>>,
}

/// `dedicatedCloud.dedicatedCloud` (the fields recoveries read).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pcc {
    pub service_name: String,
    /// The pccZone, such as `sbg1a` or `rbx2b`.
    pub location: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub generation: Option<String>,
    #[serde(default)]
    pub commercial_range: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub web_interface_url: Option<String>,
}

/// `dedicatedCloud.Datacenter`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Datacenter {
    pub datacenter_id: i64,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub commercial_name: Option<String>,
}

/// `dedicatedCloud.Filer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filer {
    pub filer_id: i64,
    pub name: String,
    #[serde(default)]
    pub size: Option<Size>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub connection_state: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub master: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Size {
    pub unit: String,
    pub value: i64,
}

/// `dedicatedCloud.Task`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PccTask {
    pub task_id: i64,
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub state: PccTaskState,
    #[serde(default)]
    pub progress: i64,
    #[serde(default)]
    pub description: Option<String>,
    pub execution_date: String,
    #[serde(default)]
    pub end_date: Option<String>,
    #[serde(default)]
    pub last_modification_date: Option<String>,
    #[serde(default)]
    pub datacenter_id: Option<i64>,
    #[serde(default)]
    pub filer_id: Option<i64>,
}

/// `dedicatedCloud.FilerDataMigrationTask` (`copyFilerStatus`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilerMigration {
    pub id: i64,
    pub filer_id: i64,
    pub filer_name: String,
    #[serde(default)]
    pub domain: Option<String>,
    pub status: PccTaskState,
    #[serde(default)]
    pub progress: i64,
    #[serde(default)]
    pub transfered: Option<String>,
    #[serde(default)]
    pub creation_date: Option<String>,
    #[serde(default)]
    pub done_date: Option<String>,
}

/// `{state}` of `/dedicatedCloud/{sn}/hds` and `/pcidss`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptionStatus {
    pub state: OptionState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_enum_values_decode() {
        let t: TaskStatus = serde_json::from_str("\"paused\"").unwrap();
        assert_eq!(t, TaskStatus::Unknown("paused".into()));
        assert_eq!(t.progress(), Progress::Running);
        assert_eq!(
            serde_json::to_string(&TaskStatus::CustomerError).unwrap(),
            "\"customerError\""
        );
        assert_eq!(PccTaskState::from("canceled").progress(), Progress::Failed);
        assert_eq!(PccTaskState::from("fixing").progress(), Progress::Running);
    }

    #[test]
    fn ip_task_accepts_both_target_names() {
        let a: IpTask = serde_json::from_str(r#"{"taskId":1,"function":"genericMoveFloatingIp","status":"todo","startDate":"x","destination":{"serviceName":"ns1"}}"#).unwrap();
        let b: IpTask = serde_json::from_str(r#"{"taskId":1,"function":"genericMoveFloatingIp","status":"todo","startDate":"x","routedTo":{"serviceName":"ns1"}}"#).unwrap();
        assert_eq!(a, b);
    }
}
