//! `spec.loadBalancer.affinity`: requests with the same key stick to one endpoint
//! (consistent hashing with bounded loads). Exactly one key source is set; the index
//! checks that, since a structural schema cannot say "one of three". And
//! `spec.loadBalancer.spillover`, the other choice of where a request may go.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An HTTP field name (RFC 9110 token).
pub const HEADER_NAME_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";
/// A cookie name (RFC 6265 token: no separators).
pub const COOKIE_NAME_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";
/// Longest header or cookie name accepted.
pub const MAX_KEY_NAME_LEN: usize = 256;
/// The default bound (Mirrokni, Thorup and Zadimoghaddam's c = 1.25).
pub const DEFAULT_BALANCE_FACTOR: u32 = 125;
/// Above this the bound no longer bounds anything a Route would notice.
pub const MAX_BALANCE_FACTOR: u32 = 1000;

/// Keyed requests go to the same endpoint, on every proxy, while it can take them: the
/// key ranks the endpoints (rendezvous hashing) and a request goes to the first one
/// whose load stays within `balanceFactor` percent of the average. When an endpoint
/// joins, only the keys it now ranks first move to it (about 1/N of them). Requests
/// without the key are balanced by `policy`. Set exactly one of `header`, `cookie`,
/// `sourceIP`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AffinitySpec {
    /// A request header whose first value is the key, e.g. "x-user-id".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_KEY_NAME_LEN), regex(pattern = HEADER_NAME_PATTERN))]
    pub header: Option<String>,
    /// A cookie whose value is the key, e.g. "session". The proxy never sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_KEY_NAME_LEN), regex(pattern = COOKIE_NAME_PATTERN))]
    pub cookie: Option<String>,
    /// The client's IP address is the key.
    #[serde(
        default,
        rename = "sourceIP",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub source_ip: bool,
    /// How far above the average load (requests in flight) an endpoint may go, in
    /// percent, before its keys spill to the next endpoint in their ranking. 100 to
    /// 1000; 125 by default.
    #[serde(default = "default_balance_factor")]
    #[schemars(range(min = 100, max = MAX_BALANCE_FACTOR), extend("format" = "int32"))]
    pub balance_factor: u32,
}

fn default_balance_factor() -> u32 {
    DEFAULT_BALANCE_FACTOR
}

/// Most requests in flight per local endpoint a spill threshold may name.
pub const MAX_SPILLOVER_IN_FLIGHT: u32 = 100_000;

/// When topology hints (a Service's `trafficDistribution`) keep a proxy's requests on
/// its node's or zone's pods, let them spread over every pod once the local ones are
/// busy: at `maxInFlight` requests in flight per local pod (from that proxy) on average,
/// back to local pods below half of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpilloverSpec {
    /// Requests in flight per local pod, on average, that start the spill. 1 to 100000.
    #[schemars(range(min = 1, max = MAX_SPILLOVER_IN_FLIGHT), extend("format" = "int32"))]
    pub max_in_flight: u32,
}
