//! `spec.healthCheck`: active health checks of a Route's endpoints. Only gRPC's
//! standard `grpc.health.v1.Health/Check` for now; the `grpc` key leaves room for
//! others beside it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DURATION_PATTERN;

/// Thresholds beyond this keep a broken pod in rotation (or a healthy one out) for
/// minutes at the shortest interval: a typo, not a policy.
pub const MAX_HEALTH_THRESHOLD: u32 = 100;

/// Active health checks of every endpoint of the Route's backends. Absent: none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckSpec {
    /// gRPC's standard health check (`grpc.health.v1.Health/Check`) over HTTP/2
    /// (h2c). Required: the only kind there is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcHealthCheckSpec>,
}

/// `grpc.health.v1.Health/Check`, asked of each endpoint: failing or `NOT_SERVING`
/// `unhealthyThreshold` times in a row takes it out of rotation, `SERVING`
/// `healthyThreshold` times in a row brings it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrpcHealthCheckSpec {
    /// The `service` asked about; "" (the default) asks about the whole server.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub service: String,
    /// Time from one probe's end to the next probe of the same endpoint (jittered by
    /// up to 10%). At least 100ms.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: String,
    /// A probe without an answer within this long fails. At most `interval`.
    #[serde(default = "default_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: String,
    /// Failed probes in a row that take an endpoint out.
    #[serde(default = "default_unhealthy_threshold")]
    #[schemars(range(min = 1, max = MAX_HEALTH_THRESHOLD), extend("format" = "int32"))]
    pub unhealthy_threshold: u32,
    /// Passed probes in a row that bring an endpoint back.
    #[serde(default = "default_healthy_threshold")]
    #[schemars(range(min = 1, max = MAX_HEALTH_THRESHOLD), extend("format" = "int32"))]
    pub healthy_threshold: u32,
}

impl Default for GrpcHealthCheckSpec {
    fn default() -> Self {
        GrpcHealthCheckSpec {
            service: String::new(),
            interval: default_interval(),
            timeout: default_timeout(),
            unhealthy_threshold: default_unhealthy_threshold(),
            healthy_threshold: default_healthy_threshold(),
        }
    }
}

fn default_interval() -> String {
    "5s".to_owned()
}
fn default_timeout() -> String {
    "1s".to_owned()
}
fn default_unhealthy_threshold() -> u32 {
    fairway_proto::model::DEFAULT_UNHEALTHY_THRESHOLD
}
fn default_healthy_threshold() -> u32 {
    fairway_proto::model::DEFAULT_HEALTHY_THRESHOLD
}
