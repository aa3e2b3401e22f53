//! The Route custom resource, `fairway.dev/v1alpha1`, kind `Route` (design.md section 3).
//!
//! Start at [`RouteSpec`]: its doc comments become the CRD's OpenAPI descriptions (what
//! `kubectl explain route.spec` prints), and its `#[schemars]` attributes are the
//! validation the apiserver enforces before the controller ever sees an object. What the
//! schema cannot express (or what arrives without an apiserver, through `--static-dir`)
//! is checked again by the index, which reports it as `Accepted=False, InvalidSpec`.
//!
//! [`crd_yaml`] renders the checked-in `crds/fairway.dev_routes.yaml`; the `crdgen`
//! binary prints it and `tests/crdgen.rs` fails when the file is stale.

mod affinity;
mod duration;
mod filters;
mod grpc_status;
mod health;
mod matching;
mod tls;

pub use affinity::{
    AffinitySpec, DEFAULT_BALANCE_FACTOR, MAX_BALANCE_FACTOR, MAX_SPILLOVER_IN_FLIGHT,
    SpilloverSpec,
};
pub use duration::{DurationError, parse_duration};
pub use filters::{
    FilterType, HeaderFieldSpec, HeaderModifierSpec, PathModifierSpec, PathModifierType,
    RequestRedirectSpec, RouteFilterSpec, UrlRewriteSpec,
};
pub use grpc_status::GrpcStatus;
pub use health::{GrpcHealthCheckSpec, HealthCheckSpec, MAX_HEALTH_THRESHOLD};
pub use matching::{PathMatchSpec, PathType, RuleMatchSpec, ValueMatchSpec, ValueType};
pub use tls::{CA_KEY, CaCertificateRef, CaKind, UpstreamTlsSpec};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A duration string: one or more `<number><unit>` terms, units `ms`, `s`, `m`, `h`
/// (`250ms`, `30s`, `1m30s`, `1.5h`). [`parse_duration`] accepts exactly this language.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// A lowercase RFC 1123 DNS subdomain (Kubernetes' own `IsDNS1123Subdomain` regex): no
/// port, scheme, wildcard, space or uppercase.
pub const HOST_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// The longest host name DNS allows, as in Kubernetes' `IsDNS1123Subdomain`.
pub const MAX_HOST_LEN: usize = 253;
/// A Service name: an RFC 1035 DNS label (Kubernetes' `IsDNS1035Label`).
pub const SERVICE_NAME_PATTERN: &str = r"^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// A Service port name: an RFC 1123 DNS label (Kubernetes validates Service port names
/// with `IsDNS1123Label`).
pub const PORT_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// The longest DNS label.
pub const MAX_LABEL_LEN: usize = 63;
/// A path prefix is an absolute path.
pub const PATH_PREFIX_PATTERN: &str = r"^/";
/// Backend weights are relative; a million gives ample resolution while the sum of a
/// rule's weights stays far from `u32::MAX`.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// Retries beyond this are a retry storm, not resilience.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;

/// A Route: which hosts and paths go to which Services, and how the proxy balances,
/// pools and retries for them.
// Clippy reads the `type_ = "string"` of two printcolumns as one attribute given twice.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fairway.dev",
    version = "v1alpha1",
    kind = "Route",
    namespaced,
    status = "RouteStatus",
    shortname = "fwr",
    category = "fairway",
    derive = "PartialEq",
    doc = "A Route sends requests for hosts and path prefixes to Services, a pod per request.",
    printcolumn(name = "Hosts", type_ = "string", json_path = ".spec.hosts"),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.endpoints.ready"
    ),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// Host names this Route serves, matched against Host / :authority with the port
    /// ignored, case-insensitively. Lowercase DNS names. When two Routes claim a host, the
    /// older one keeps it.
    #[schemars(
        length(min = 1),
        inner(length(max = MAX_HOST_LEN), regex(pattern = HOST_PATTERN))
    )]
    pub hosts: Vec<String>,
    /// Path-prefix rules; the longest matching prefix wins.
    #[schemars(length(min = 1))]
    pub rules: Vec<RouteRule>,
    /// How an endpoint is chosen for each request.
    #[serde(default)]
    pub load_balancer: LoadBalancerSpec,
    /// Connections from the proxy to the pods.
    #[serde(default)]
    pub upstream: UpstreamSpec,
    /// Request and connect timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsSpec,
    /// Retries of failed requests.
    #[serde(default)]
    pub retries: RetriesSpec,
    /// Active health checks of the endpoints (gRPC's `grpc.health.v1`). Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
}

/// Requests whose path starts with `pathPrefix` go to `backends`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    /// Path prefix to match, starting with "/". The longest matching prefix wins.
    #[serde(default = "default_path_prefix")]
    #[schemars(regex(pattern = PATH_PREFIX_PATTERN))]
    pub path_prefix: String,
    /// An exact or regular-expression path, and conditions on method, headers and
    /// query, in Gateway API's shape and precedence. Absent: `pathPrefix` alone.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<RuleMatchSpec>,
    /// Services that serve this rule, chosen by weight. At least one when given; absent
    /// only beside a redirect (the controller checks that: a CEL rule over every rule's
    /// filters costs more than the apiserver's budget).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1))]
    pub backends: Vec<RouteBackend>,
    /// Header edits both ways, a URL rewrite or a redirect, in Gateway API's shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub filters: Vec<RouteFilterSpec>,
}

/// A weighted Service port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteBackend {
    /// A Service in the Route's namespace.
    #[schemars(length(min = 1, max = MAX_LABEL_LEN), regex(pattern = SERVICE_NAME_PATTERN))]
    pub service: String,
    /// The Service port, by number (the Service's `port`, not its `targetPort`) or by name.
    #[schemars(schema_with = "service_port_schema")]
    pub port: IntOrString,
    /// Relative weight among the rule's backends; 0 drains the backend.
    #[serde(default = "default_weight")]
    #[schemars(range(max = MAX_WEIGHT), extend("format" = "int32"))]
    pub weight: u32,
}

/// How the proxy picks an endpoint per request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// The balancing algorithm.
    #[serde(default)]
    pub policy: Policy,
    /// Ramp-up time for new endpoints, e.g. "30s". Absent (or 0s) means off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub slow_start: Option<String>,
    /// Keyed requests stick to an endpoint (consistent hashing with bounded loads).
    /// Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<AffinitySpec>,
    /// Spread over pods outside the proxy's node or zone when topology hints keep it
    /// local and the local pods are busy. Absent: local pods take everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spillover: Option<SpilloverSpec>,
}

/// A balancing algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Policy {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// The fewer of two random endpoints' in-flight requests.
    LeastRequest,
    /// The lower of two random endpoints' peak-EWMA latency times load (Finagle).
    PeakEwma,
    /// After Google's Prequal: among a pool of recently probed endpoints, the fastest of
    /// those not hot (requests in flight above the usual), else the least loaded. Proxies
    /// older than this value use LeastRequest.
    Prequal,
}

/// The protocol the proxy speaks to the pods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UpstreamProtocol {
    /// From the Service port's appProtocol (kubernetes.io/h2c or grpc mean HTTP/2).
    #[default]
    Auto,
    /// HTTP/1.1.
    #[serde(rename = "HTTP1")]
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    #[serde(rename = "HTTP2")]
    Http2,
}

/// Connections from the proxy to each pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSpec {
    /// Upstream protocol: Auto, HTTP1 or HTTP2.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Connection pool cap per pod ip:port.
    #[serde(default = "default_max_connections_per_endpoint")]
    #[schemars(range(min = 1, max = i32::MAX), extend("format" = "int32"))]
    pub max_connections_per_endpoint: u32,
    /// How long an idle pooled connection is kept.
    #[serde(default = "default_idle_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub idle_timeout: String,
    /// Close connections older than this; 0s means unlimited.
    #[serde(default = "default_max_connection_age")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub max_connection_age: String,
    /// Close a connection after this many requests; 0 means unlimited.
    #[serde(default)]
    #[schemars(range(max = i32::MAX), extend("format" = "int32"))]
    pub max_requests_per_connection: u32,
    /// HTTP/1.1 Upgrade protocols let through to the pods (e.g. websocket); others are
    /// forwarded without the upgrade. h2c is never let through.
    #[serde(default = "default_upgrades")]
    #[schemars(inner(regex(pattern = UPGRADE_TOKEN_PATTERN)), length(max = 16))]
    pub upgrades: Vec<String>,
    /// Close an upgraded connection (e.g. a WebSocket) after this long with no byte
    /// either way; 0s means never.
    #[serde(default = "default_upgrade_idle_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub upgrade_idle_timeout: String,
    /// Close upgraded connections older than this; 0s means unlimited.
    #[serde(default = "default_max_upgrade_lifetime")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub max_upgrade_lifetime: String,
    /// How long upgraded connections and streamed responses (gRPC streams, server-sent
    /// events) from a pod that turned terminating or left may run on before the proxy
    /// ends them (clients reconnect or retry, and land on another pod).
    #[serde(default = "default_drain_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub drain_timeout: String,
    /// TLS to the pods, verified against a CA and a hostname. Absent: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTlsSpec>,
}

/// An HTTP `Upgrade` protocol name (an RFC 9110 token, without a version).
pub const UPGRADE_TOKEN_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$";

impl Default for UpstreamSpec {
    fn default() -> Self {
        UpstreamSpec {
            protocol: UpstreamProtocol::Auto,
            max_connections_per_endpoint: default_max_connections_per_endpoint(),
            idle_timeout: default_idle_timeout(),
            max_connection_age: default_max_connection_age(),
            max_requests_per_connection: 0,
            upgrades: default_upgrades(),
            upgrade_idle_timeout: default_upgrade_idle_timeout(),
            max_upgrade_lifetime: default_max_upgrade_lifetime(),
            drain_timeout: default_drain_timeout(),
            tls: None,
        }
    }
}

/// Timeouts, as duration strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutsSpec {
    /// From the request until response headers, all tries together (streams that have
    /// started are not cut).
    #[serde(default = "default_request_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub request: String,
    /// To open one upstream connection.
    #[serde(default = "default_connect_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub connect: String,
    /// Until response headers, each try on its own: a pod that accepts and never
    /// answers costs one try, and the request is retried elsewhere if it may be.
    /// Unset: only `request` limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub per_try: Option<String>,
    /// gRPC calls (`content-type: application/grpc`) wait for response headers as long
    /// as their `grpc-timeout` allows, not `request`; this caps that wait. Unset or
    /// `0s`: the client's deadline alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub grpc_maximum: Option<String>,
}

impl Default for TimeoutsSpec {
    fn default() -> Self {
        TimeoutsSpec {
            request: default_request_timeout(),
            connect: default_connect_timeout(),
            per_try: None,
            grpc_maximum: None,
        }
    }
}

/// Retries of failed requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetriesSpec {
    /// Retries after the first try.
    #[serde(default = "default_retry_attempts")]
    #[schemars(range(max = MAX_RETRY_ATTEMPTS), extend("format" = "int32"))]
    pub attempts: u32,
    /// Retries allowed, as a percentage of requests.
    #[serde(default = "default_retry_budget_percent")]
    #[schemars(range(max = 100), extend("format" = "int32"))]
    pub budget_percent: u32,
    /// gRPC statuses after which a gRPC call is tried again on another pod, when the
    /// pod ended it before any response message (within `attempts` and the budget,
    /// honouring `grpc-retry-pushback-ms`). `[]`: none.
    #[serde(default = "default_grpc_retry_statuses")]
    pub grpc_statuses: Vec<GrpcStatus>,
    /// HTTP statuses (400-599) after which an idempotent request is tried again on
    /// another pod. `[]`: none.
    #[serde(default = "default_http_retry_statuses")]
    #[schemars(inner(range(min = 400, max = 599)))]
    pub http_statuses: Vec<i32>,
    /// The least wait before each retry. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub backoff: Option<String>,
}

impl Default for RetriesSpec {
    fn default() -> Self {
        RetriesSpec {
            attempts: default_retry_attempts(),
            budget_percent: default_retry_budget_percent(),
            grpc_statuses: default_grpc_retry_statuses(),
            http_statuses: default_http_retry_statuses(),
            backoff: None,
        }
    }
}

/// What the controller observed for a Route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted and ResolvedRefs, in the standard metav1.Condition shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Endpoint counts over the Route's resolved backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<EndpointCounts>,
}

/// Endpoint counts, as in EndpointSlice conditions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointCounts {
    /// Endpoints that take traffic.
    #[schemars(extend("format" = "int32"))]
    pub ready: u32,
    /// Endpoints that can serve, ready or terminating.
    #[schemars(extend("format" = "int32"))]
    pub serving: u32,
    /// All endpoints listed for the backends, whatever their conditions.
    #[schemars(extend("format" = "int32"))]
    pub total: u32,
}

fn default_path_prefix() -> String {
    "/".to_owned()
}
fn default_weight() -> u32 {
    1
}
fn default_max_connections_per_endpoint() -> u32 {
    256
}
fn default_idle_timeout() -> String {
    "90s".to_owned()
}
fn default_max_connection_age() -> String {
    "0s".to_owned()
}
fn default_upgrades() -> Vec<String> {
    vec![fairway_proto::model::DEFAULT_UPGRADE_PROTOCOL.to_owned()]
}
fn default_upgrade_idle_timeout() -> String {
    "1h".to_owned()
}
fn default_max_upgrade_lifetime() -> String {
    "0s".to_owned()
}
fn default_drain_timeout() -> String {
    "30s".to_owned()
}
fn default_request_timeout() -> String {
    "15s".to_owned()
}
fn default_connect_timeout() -> String {
    "2s".to_owned()
}
fn default_grpc_retry_statuses() -> Vec<GrpcStatus> {
    vec![GrpcStatus::Unavailable]
}
fn default_http_retry_statuses() -> Vec<i32> {
    fairway_proto::model::DEFAULT_HTTP_RETRY_STATUSES
        .map(i32::from)
        .to_vec()
}
fn default_retry_attempts() -> u32 {
    2
}
fn default_retry_budget_percent() -> u32 {
    20
}

/// Int-or-string with the port range and the name pattern side by side: OpenAPI applies
/// `minimum`/`maximum` only to numbers and `maxLength`/`pattern` only to strings. (No
/// `anyOf` of the two types: kube's structural rewriter would hoist the types out of it.)
fn service_port_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "minimum": 1,
        "maximum": 65535,
        "maxLength": MAX_LABEL_LEN,
        "pattern": PORT_NAME_PATTERN,
    })
}

/// The CustomResourceDefinition to install.
pub fn crd() -> CustomResourceDefinition {
    Route::crd()
}

/// The first line of the checked-in CRD file.
pub const CRD_HEADER: &str = "# Generated by \
    `cargo run -p fairway-controller --bin crdgen > crds/fairway.dev_routes.yaml`: \
    do not edit.\n";

/// Rendering the CRD as YAML failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("converting the CRD to JSON")]
    ToJson(#[source] serde_json::Error),
    #[error("serializing the CRD as YAML")]
    ToYaml(#[source] serde_saphyr::SerializeError),
}

/// The CRD as the YAML document checked in at `crds/fairway.dev_routes.yaml`, header
/// comment included. Map keys are sorted, so the output does not depend on struct field
/// order or on whether some crate in the build enables `serde_json/preserve_order`.
pub fn crd_yaml() -> Result<String, RenderError> {
    let value = serde_json::to_value(crd()).map_err(RenderError::ToJson)?;
    let body = serde_saphyr::to_string(&sorted(value)).map_err(RenderError::ToYaml)?;
    Ok(format!("{CRD_HEADER}{body}"))
}

/// Rebuilds every object with its keys inserted in sorted order.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
