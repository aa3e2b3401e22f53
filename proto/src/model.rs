//! The domain model shared by controller and proxy: what a route table *is*, free of
//! Kubernetes and of the wire. The controller's index produces a [`RouteTable`]; the
//! discovery protocol moves it (see `convert` and `diff`); the proxy serves from it.
//!
//! Every type derives `Clone, Debug, PartialEq, Eq` so tests compare whole values.
//! Collections are `BTreeMap`s keyed by identity: no duplicates by construction, and a
//! deterministic order for diffs, snapshots and test output.

mod filters;
mod matching;
mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

pub use filters::{Filters, HeaderEdits, PathRewrite, Redirect, UrlRewrite};
pub use matching::{HeaderMatch, Matching, PathKind, QueryParamMatch, StringMatch};
pub use tls::UpstreamTls;

/// A version of the route table: `(epoch, sequence)`.
///
/// The epoch is fresh for every controller process; the sequence counts within it.
/// Versions from different epochs are not comparable: a resume is honoured only within
/// the same epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    pub epoch: u64,
    pub sequence: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.sequence)
    }
}

/// The address of one pod endpoint. Pools, balancers and tables are keyed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointAddr(pub SocketAddr);

/// One or two hasher writes instead of the derived field-by-field walk (variant, each
/// octet array, port, IPv6 flow info and scope): the proxy hashes an endpoint address
/// on every request. Coarser than `Eq` for IPv6 (flow info and scope are left out),
/// which a `Hash` may be: equal addresses still hash equal.
impl std::hash::Hash for EndpointAddr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self.0 {
            SocketAddr::V4(a) => {
                state.write_u64((u64::from(a.ip().to_bits()) << 16) | u64::from(a.port()));
            }
            SocketAddr::V6(a) => {
                state.write_u128(a.ip().to_bits());
                state.write_u16(a.port());
            }
        }
    }
}

impl fmt::Display for EndpointAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies an endpoint set: a Service port, `namespace/name:port`, where `port` is the
/// Service's port number (not the target port). Shared by every Route that uses it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointSetKey {
    pub namespace: String,
    pub service: String,
    pub port: NonZeroU16,
}

impl fmt::Display for EndpointSetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

/// Identifies a Route: `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One pod endpoint with its Kubernetes conditions (EndpointSlice semantics).
///
/// `ready` endpoints take traffic; `serving && terminating` ones take new requests only
/// when no ready endpoint is left (KEP-1669).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: EndpointAddr,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub zone: Option<String>,
    pub node: Option<String>,
    /// The pod name from the slice's `targetRef`, when it names a Pod.
    pub pod: Option<String>,
    /// `hints.forZones`: the zones this endpoint should serve. Empty means no hints.
    pub hints_for_zones: Vec<String>,
    /// `hints.forNodes`: the nodes this endpoint should serve. Empty means no hints.
    pub hints_for_nodes: Vec<String>,
}

impl Endpoint {
    /// A ready, serving endpoint with no topology: the common case, handy in tests.
    pub fn ready(addr: SocketAddr) -> Self {
        Endpoint {
            addr: EndpointAddr(addr),
            ready: true,
            serving: true,
            terminating: false,
            zone: None,
            node: None,
            pod: None,
            hints_for_zones: Vec::new(),
            hints_for_nodes: Vec::new(),
        }
    }
}

/// The upstream protocol for an endpoint set, resolved from the Service port's
/// `appProtocol` (`kubernetes.io/h2c` and `grpc` mean HTTP/2 with prior knowledge).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AppProtocol {
    #[default]
    Http1,
    H2c,
}

/// All endpoints of one Service port, merged across its EndpointSlices and
/// de-duplicated by address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSet {
    pub key: EndpointSetKey,
    /// The raw `appProtocol` of the Service port, when it has one.
    pub app_protocol: Option<String>,
    /// The Service's ClusterIPs, ascending, no duplicates: with the key's port, where a
    /// sidecar's captured connections to this set were dialled. Empty: headless, or not
    /// sent by the controller.
    pub cluster_ips: Vec<IpAddr>,
    pub endpoints: BTreeMap<EndpointAddr, Endpoint>,
}

impl EndpointSet {
    pub fn new(key: EndpointSetKey) -> Self {
        EndpointSet {
            key,
            app_protocol: None,
            cluster_ips: Vec::new(),
            endpoints: BTreeMap::new(),
        }
    }

    /// The protocol the proxy speaks upstream when the Route says `Auto`.
    pub fn protocol(&self) -> AppProtocol {
        match self.app_protocol.as_deref() {
            Some("kubernetes.io/h2c" | "grpc" | "h2c") => AppProtocol::H2c,
            _ => AppProtocol::Http1,
        }
    }
}

/// How a Route picks an endpoint per request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    #[default]
    RoundRobin,
    LeastRequest,
    PeakEwma,
    /// Hot-cold lexicographic picks over a pool of recent probe answers (after Google's
    /// Prequal). On the wire in `preferred_policy`, with [`Policy::fallback`] in `policy`.
    Prequal,
}

impl Policy {
    /// What a proxy that does not know this policy uses instead: itself for the first
    /// three, least request (requests in flight, Prequal's first signal) for Prequal.
    pub fn fallback(self) -> Policy {
        match self {
            Policy::Prequal => Policy::LeastRequest,
            other => other,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadBalancer {
    pub policy: Policy,
    /// Ramp for new endpoints; `None` = off.
    pub slow_start: Option<Duration>,
    /// Keyed requests stick to an endpoint; `None` = off.
    pub affinity: Option<Affinity>,
    /// Local endpoints (by topology hints) averaging this many requests in flight
    /// spill requests over the whole tier, until below half of it; `None` = never.
    pub spillover_in_flight: Option<u32>,
}

/// Consistent hashing with bounded loads: what keys a request, and how far above the
/// average load an endpoint may go before its keys spill to the next one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Affinity {
    pub key: AffinityKey,
    /// At least 100: an endpoint takes a keyed request while its load stays within
    /// this percentage of the average (plus one).
    pub balance_factor_percent: u32,
}

/// Where a request's affinity key comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AffinityKey {
    /// A request header's first value; the name in lowercase.
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The client's address.
    SourceIp,
}

impl Affinity {
    /// The bound a Route gets when it does not set one (Mirrokni et al.'s c = 1.25).
    pub const DEFAULT_BALANCE_FACTOR_PERCENT: u32 = 125;
}

/// The upstream protocol a Route asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// From the endpoint set's `appProtocol`.
    #[default]
    Auto,
    Http1,
    Http2,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub protocol: UpstreamProtocol,
    pub max_connections_per_endpoint: u32,
    pub idle_timeout: Duration,
    /// `None` = unlimited.
    pub max_connection_age: Option<Duration>,
    /// `0` = unlimited.
    pub max_requests_per_connection: u32,
    /// HTTP upgrades (WebSocket) the Route lets through, and their limits.
    pub upgrades: Upgrades,
    /// How long a pod's long-lived connections (upgraded ones, streams) may run on once
    /// it turns terminating or leaves, before the proxy closes them.
    pub drain_timeout: Duration,
    /// TLS to the pods, per endpoint set the Route sends to (from a Route's
    /// `upstream.tls` or a Gateway API `BackendTLSPolicy` on the set's Service port); a
    /// set absent here is spoken to in plaintext.
    pub tls: BTreeMap<EndpointSetKey, UpstreamTls>,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            protocol: UpstreamProtocol::Auto,
            max_connections_per_endpoint: 256,
            idle_timeout: Duration::from_secs(90),
            max_connection_age: None,
            max_requests_per_connection: 0,
            upgrades: Upgrades::default(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            tls: BTreeMap::new(),
        }
    }
}

/// The `Upgrade` protocol a Route allows unless it says otherwise.
pub const DEFAULT_UPGRADE_PROTOCOL: &str = "websocket";
/// An upgraded connection quiet this long closes: WebSockets idle for minutes between
/// messages (and ping every 20-60 s), so this is far above HTTP's idle timeout.
pub const DEFAULT_UPGRADE_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Below Kubernetes' default 30 s termination grace, with room for the pod's own exit.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP/1.1 upgrades (RFC 9110 section 7.8) through a Route: once the pod answers `101`,
/// the proxy copies bytes both ways.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrades {
    /// The `Upgrade` tokens let through, lowercase (e.g. `websocket`); empty: none. A
    /// request for another protocol is forwarded without its upgrade.
    pub protocols: Vec<String>,
    /// No byte either way for this long closes the upgraded connection; zero: never.
    pub idle_timeout: Duration,
    /// `None` = unlimited.
    pub max_lifetime: Option<Duration>,
}

impl Default for Upgrades {
    fn default() -> Self {
        Upgrades {
            protocols: vec![DEFAULT_UPGRADE_PROTOCOL.to_owned()],
            idle_timeout: DEFAULT_UPGRADE_IDLE_TIMEOUT,
            max_lifetime: None,
        }
    }
}

impl Upgrades {
    /// Whether `token` (an `Upgrade` protocol, any case, version suffix included) may
    /// pass.
    pub fn allows(&self, token: &str) -> bool {
        let name = token.split('/').next().unwrap_or(token);
        self.protocols.iter().any(|p| p.eq_ignore_ascii_case(name))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Until response headers, all tries together.
    pub request: Duration,
    pub connect: Duration,
    /// Until response headers, each try (a pod that accepts and never answers costs one
    /// try, not the whole request). `None`: only `request` limits.
    pub per_try: Option<Duration>,
    /// The longest a gRPC call may wait for response headers, whatever its
    /// `grpc-timeout` asks. gRPC calls are bounded by their `grpc-timeout`, not by
    /// `request`. `None`: the client's deadline alone.
    pub grpc_maximum: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            request: Duration::from_secs(15),
            connect: Duration::from_secs(2),
            per_try: None,
            grpc_maximum: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retries {
    /// Retries after the first try.
    pub attempts: u32,
    /// Retries allowed as a percentage of requests.
    pub budget_percent: u32,
    /// gRPC status codes (wire numbers, ascending, no duplicates) after which a gRPC
    /// call is tried again on another pod, when the pod ended it before any response
    /// message (a trailers-only response). Empty: no gRPC status is retried.
    pub grpc_statuses: Vec<u32>,
    /// HTTP statuses (ascending, no duplicates) after which an idempotent request is
    /// tried again on another pod. Empty: no status is retried.
    pub http_statuses: Vec<u16>,
    /// The least wait before each retry; zero: none.
    pub backoff: Duration,
}

/// The statuses that say "this pod could not do it", not "the request is wrong".
pub const DEFAULT_HTTP_RETRY_STATUSES: [u16; 3] = [502, 503, 504];

/// `UNAVAILABLE`: what gRPC's own retry policies retry by default.
pub const DEFAULT_GRPC_RETRY_STATUSES: [u32; 1] = [14];

impl Default for Retries {
    fn default() -> Self {
        Retries {
            attempts: 2,
            budget_percent: 20,
            grpc_statuses: DEFAULT_GRPC_RETRY_STATUSES.to_vec(),
            http_statuses: DEFAULT_HTTP_RETRY_STATUSES.to_vec(),
            backoff: Duration::ZERO,
        }
    }
}

/// A weighted reference from a rule to an endpoint set. Weight 0 drains the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub endpoint_set: EndpointSetKey,
    pub weight: u32,
}

/// Requests whose path matches (and, with [`Matching`] conditions, whose method,
/// headers and query match) go to `backends`. Precedence between rules is Gateway
/// API's: an exact path, then a regular expression, then the longest prefix; then a
/// method condition, more header conditions, more query conditions; then rule order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The path to match, read as [`Matching::path`] says (a prefix by default).
    pub path_prefix: String,
    /// How `path_prefix` matches, and the other conditions; the default is a plain
    /// path prefix with no condition, which every proxy release understands.
    pub matching: Matching,
    /// The timeouts of requests this rule takes, in place of the Route's (an
    /// HTTPRoute's per-rule `timeouts`); `None`: the Route's.
    pub timeouts: Option<Timeouts>,
    /// The retries of requests this rule takes, in place of the Route's (an
    /// HTTPRoute's per-rule `retry`); `None`: the Route's.
    pub retries: Option<Retries>,
    /// What the rule does to requests besides choosing their pod (header edits, a
    /// rewrite), or instead of it (a redirect); empty: nothing.
    pub filters: Filters,
    pub backends: Vec<Backend>,
    /// Backends whose Service or port does not resolve: they keep their share of the
    /// split, and requests that land on it are answered `500` with the reason (as
    /// Gateway API answers for an invalid backendRef), never moved to the others.
    pub unresolved: Vec<UnresolvedBackend>,
}

/// A backend the controller could not resolve to an endpoint set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnresolvedBackend {
    /// The Service as the Route names it (in the Route's namespace).
    pub service: String,
    pub weight: u32,
    /// Machine-readable: `ServiceNotFound` or `PortNotFound`.
    pub reason: String,
    /// For people: `service shop/orders not found`.
    pub message: String,
}

/// A Route as the proxy needs it: hosts (lowercase, no port), rules and policies.
/// Endpoints are not here: backends refer to endpoint sets by key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub key: RouteKey,
    pub hosts: Vec<String>,
    pub rules: Vec<Rule>,
    pub load_balancer: LoadBalancer,
    pub upstream: Upstream,
    pub timeouts: Timeouts,
    pub retries: Retries,
    /// Active gRPC health checks of the endpoints; `None`: none.
    pub health_check: Option<GrpcHealthCheck>,
}

/// `grpc.health.v1.Health/Check` asked of every endpoint of a Route's backends. An
/// endpoint that fails `unhealthy_threshold` probes in a row (no answer, an error, or
/// `NOT_SERVING`) takes no new requests until it passes `healthy_threshold` in a row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GrpcHealthCheck {
    /// The `service` asked about; empty: the whole server.
    pub service: String,
    /// From one probe's end to the next probe's start (the proxy adds jitter).
    pub interval: Duration,
    /// A probe unanswered this long fails.
    pub timeout: Duration,
    /// At least 1.
    pub unhealthy_threshold: u32,
    /// At least 1.
    pub healthy_threshold: u32,
}

/// Kubernetes' own probe defaults (`periodSeconds: 10` is slower than a balancer
/// should notice; Envoy's examples use 5 s).
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Kubernetes' gRPC probe default (`timeoutSeconds: 1`).
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Two misses in a row: one lost probe is noise.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 2;
/// One pass brings an endpoint back, as a Kubernetes readiness probe does.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 1;

impl Default for GrpcHealthCheck {
    fn default() -> Self {
        GrpcHealthCheck {
            service: String::new(),
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
        }
    }
}

/// The whole table: routes and the endpoint sets they refer to. A route may refer to a
/// set that is absent (its Service is missing): that backend simply has no endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// Shared (`Arc`): a new version copies pointers, not Routes, and a consumer can
    /// tell an unchanged value by `Arc::ptr_eq`. Change one with `Arc::make_mut`.
    pub routes: BTreeMap<RouteKey, Arc<Route>>,
    /// Shared as `routes` are.
    pub endpoint_sets: BTreeMap<EndpointSetKey, Arc<EndpointSet>>,
}

impl RouteTable {
    pub fn endpoint_count(&self) -> usize {
        self.endpoint_sets.values().map(|s| s.endpoints.len()).sum()
    }
}
