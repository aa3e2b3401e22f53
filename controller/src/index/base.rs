//! The names the rest of the index builds on: the default namespace, the ways a route
//! can fail (a Route's spec, an HTTPRoute's field Fairway does not serve, or one of their
//! backends), and what one call changed. They sit below `endpoints`, `routes` and
//! `status` so that each of those imports only downwards (no import loop).

use std::collections::BTreeSet;

use fairway_proto::model::{EndpointSetKey, RouteKey};

use crate::crd::{self, DurationError};

/// The namespace of an object that names none (only possible in `--static-dir` files).
pub const DEFAULT_NAMESPACE: &str = "default";

/// A Route spec the index cannot serve. Each variant is the check that failed; the
/// message becomes the `InvalidSpec` condition's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("spec.hosts is empty")]
    NoHosts,
    /// Health checks speak h2c: over TLS to pods they would probe in plaintext.
    #[error("spec.healthCheck is not supported with spec.upstream.tls yet")]
    HealthCheckOverTls,
    #[error("host {0:?} is not a lowercase DNS name (no port, scheme or wildcard)")]
    Host(String),
    #[error("spec.rules is empty")]
    NoRules,
    #[error("pathPrefix {0:?} does not start with \"/\"")]
    PathPrefix(String),
    #[error("pathPrefix {0:?} appears in more than one rule")]
    DuplicatePathPrefix(String),
    #[error("path {0:?} with the same match appears in more than one rule")]
    DuplicateMatch(String),
    #[error("pathPrefix {0:?} and match.path are both set: set one")]
    PathTwice(String),
    /// A `match` block that cannot be served (a regex that does not compile, ...).
    #[error("{0}")]
    Match(String),
    /// `filters` that cannot be served (a rewrite beside a redirect, ...).
    #[error("{0}")]
    Filter(String),
    #[error("rule {0:?} has no backends")]
    NoBackends(String),
    #[error("backend service {0:?} is not a valid Service name")]
    ServiceName(String),
    #[error("backend {service:?} port {port} is neither a port number (1-65535) nor a port name")]
    Port { service: String, port: String },
    #[error("backend {service:?} weight {weight} is above {max}", max = crd::MAX_WEIGHT)]
    Weight { service: String, weight: u32 },
    #[error("{field}: {source}")]
    Duration {
        field: &'static str,
        source: DurationError,
    },
    #[error("spec.upstream.maxConnectionsPerEndpoint must be at least 1")]
    MaxConnections,
    #[error("spec.retries.attempts {0} is above {max}", max = crd::MAX_RETRY_ATTEMPTS)]
    RetryAttempts(u32),
    #[error("spec.retries.budgetPercent {0} is above 100")]
    RetryBudget(u32),
    #[error("spec.retries.httpStatuses lists {0}: a retried status is 400-599")]
    RetryStatus(i32),
    #[error("spec.upstream.upgrades lists h2c, which the proxy never lets through (h2c smuggling)")]
    UpgradeH2c,
    #[error("spec.healthCheck names no check: set spec.healthCheck.grpc")]
    HealthCheckKind,
    #[error("spec.healthCheck.grpc.interval {0:?} is below {min:?}", min = super::health::MIN_INTERVAL)]
    HealthInterval(std::time::Duration),
    #[error(
        "spec.healthCheck.grpc.timeout {timeout:?} must be above 0 and at most the interval ({interval:?})"
    )]
    HealthTimeout {
        timeout: std::time::Duration,
        interval: std::time::Duration,
    },
    #[error("spec.healthCheck.grpc.{field} {value} is outside 1-{max}", max = crd::MAX_HEALTH_THRESHOLD)]
    HealthThreshold { field: &'static str, value: u32 },
    #[error("spec.healthCheck.grpc needs HTTP/2 to the pods, but spec.upstream.protocol is HTTP1")]
    HealthCheckOverHttp1,
    #[error(
        "spec.loadBalancer.affinity sets {0} key sources: set exactly one of header, cookie, sourceIP"
    )]
    AffinityKey(usize),
    #[error(
        "spec.loadBalancer.affinity.balanceFactor {0} is outside 100-{max}",
        max = crd::MAX_BALANCE_FACTOR
    )]
    BalanceFactor(u32),
    #[error(
        "spec.loadBalancer.spillover.maxInFlight {0} is outside 1-{max}",
        max = crd::MAX_SPILLOVER_IN_FLIGHT
    )]
    Spillover(u32),
}

/// Why a backend did not resolve; the message names the Service (and port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RefFailure {
    ServiceNotFound(String),
    PortNotFound(String),
}

impl RefFailure {
    pub(super) fn message(&self) -> &str {
        match self {
            RefFailure::ServiceNotFound(m) | RefFailure::PortNotFound(m) => m,
        }
    }
}

/// What one call changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Routes whose table entry or status may differ (including Routes now gone).
    pub routes: BTreeSet<RouteKey>,
    /// Endpoint sets that were rebuilt, added or removed: look each up in the table.
    pub endpoint_sets: BTreeSet<EndpointSetKey>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.endpoint_sets.is_empty()
    }
}

/// A field Fairway does not serve (or a value it cannot), by its path in the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Unsupported {
    pub field: String,
    pub why: String,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.why)
    }
}

pub(super) fn unsupported(field: String, why: &str) -> Unsupported {
    Unsupported {
        field,
        why: why.to_owned(),
    }
}

/// The first unsupported field of `map` (filters, timeouts, ...).
pub(super) fn other_fields(
    prefix: &str,
    map: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<(), Unsupported> {
    match map.iter().find(|(_, v)| !v.is_null()) {
        Some((name, _)) => Err(unsupported(
            format!("{prefix}.{name}"),
            "not supported by Fairway yet",
        )),
        None => Ok(()),
    }
}
