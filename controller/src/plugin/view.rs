//! The controller's `/api/v1/status` document as the plugin reads it (owned fields;
//! `admin::status` is the writing side). Unknown fields are ignored, so a newer
//! controller's additions do not break an older plugin.

use serde::Deserialize;

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub version: String,
    pub ready: bool,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub proxies: Vec<Proxy>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub route: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    pub policy: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    pub endpoints: Counts,
    pub skew: Option<f64>,
    #[serde(default)]
    pub requests_per_second: f64,
    #[serde(default)]
    pub proxies_reporting: usize,
    #[serde(default)]
    pub backends: Vec<Backend>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Counts {
    pub ready: u32,
    pub serving: u32,
    pub total: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    pub set: String,
    pub skew: Option<f64>,
    #[serde(default)]
    pub pods: Vec<Pod>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub address: String,
    pub pod: Option<String>,
    pub state: String,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub in_flight: u32,
    pub share: Option<f64>,
    pub expected_share: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Proxy {
    pub id: String,
    pub node: String,
    pub zone: Option<String>,
    #[serde(default)]
    pub connected_at_unix_ms: u64,
    pub applied: Option<String>,
    #[serde(default)]
    pub lag_versions: u64,
}

impl Route {
    /// The condition of `kind`, if listed.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}
