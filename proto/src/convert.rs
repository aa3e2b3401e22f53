//! Conversions between the domain model ([`crate::model`]) and the wire ([`crate::pb`]).
//!
//! Domain to wire never fails: `From<&model::X> for pb::X` (or `From<X>` for `Copy`
//! types). Wire to domain is `TryFrom<pb::X> for model::X` and fails with a
//! [`ConvertError`] naming what is wrong: the proxy nacks such a message and keeps its
//! last good table. Endpoint sets travel as [`pb::EndpointSetPart`]; a whole set is one
//! part. Table diffs convert in [`crate::diff`], snapshots in [`crate::snapshot`].
//!
//! Two deliberate losses, both irrelevant to Kubernetes data: durations travel in whole
//! milliseconds (finer precision is truncated, huge values saturate), and IPv6 flow info
//! and scope ids are not sent.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use crate::model::{
    Affinity, AffinityKey, Backend, Endpoint, EndpointAddr, EndpointSet, EndpointSetKey,
    GrpcHealthCheck, LoadBalancer, Policy, Retries, Route, RouteKey, Timeouts, Upgrades, Upstream,
    UpstreamProtocol, Version,
};
use crate::pb;

pub use error::ConvertError;
pub use scope::mode_from_proto;

/// A required message field, or [`ConvertError::MissingField`].
pub(crate) fn required<T>(field: Option<T>, name: &'static str) -> Result<T, ConvertError> {
    field.ok_or(ConvertError::MissingField(name))
}

/// Whole milliseconds, saturating: no real timeout is 584 million years long.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn port(field: &'static str, port: u32) -> Result<NonZeroU16, ConvertError> {
    let narrow = u16::try_from(port).map_err(|_| ConvertError::PortOutOfRange { field, port })?;
    NonZeroU16::new(narrow).ok_or(ConvertError::ZeroPort(field))
}

// === Version ===

impl From<Version> for pb::Version {
    fn from(v: Version) -> Self {
        pb::Version {
            epoch: v.epoch,
            sequence: v.sequence,
        }
    }
}

impl From<pb::Version> for Version {
    fn from(v: pb::Version) -> Self {
        Version {
            epoch: v.epoch,
            sequence: v.sequence,
        }
    }
}

impl pb::ControllerMessage {
    /// The table version this message carries (every controller message has one).
    pub fn table_version(&self) -> Result<Version, ConvertError> {
        required(self.version, "ControllerMessage.version").map(Version::from)
    }
}

impl pb::ProxyMessage {
    /// The first message on a stream. `zone: None` lets the controller look the zone up
    /// from the proxy's Node; `last_applied: None` asks for a snapshot.
    pub fn hello(
        proxy_id: impl Into<String>,
        node: impl Into<String>,
        zone: Option<String>,
        last_applied: Option<Version>,
    ) -> Self {
        let hello = pb::Hello {
            proxy_id: proxy_id.into(),
            node: node.into(),
            zone,
            last_applied: last_applied.map(pb::Version::from),
            digest: None,
            mode: pb::ProxyMode::Unspecified.into(),
            subscriptions: Vec::new(),
        };
        pb::ProxyMessage {
            kind: Some(pb::proxy_message::Kind::Hello(hello)),
        }
    }

    /// The same hello with the digest of the table the proxy serves, so that a
    /// controller of another epoch can answer with a rebase (see [`crate::digest`]).
    /// Other messages are returned unchanged.
    pub fn with_digest(mut self, digest: &crate::digest::TableDigest) -> Self {
        if let Some(pb::proxy_message::Kind::Hello(hello)) = &mut self.kind {
            hello.digest = Some(digest.into());
        }
        self
    }

    /// "I applied `version` and serve it now."
    pub fn ack(version: Version) -> Self {
        let ack = pb::Ack {
            version: Some(version.into()),
        };
        pb::ProxyMessage {
            kind: Some(pb::proxy_message::Kind::Ack(ack)),
        }
    }

    /// "I could not apply `version`; send me a snapshot."
    pub fn nack(version: Version, error: impl Into<String>) -> Self {
        let nack = pb::Nack {
            version: Some(version.into()),
            error: error.into(),
        };
        pb::ProxyMessage {
            kind: Some(pb::proxy_message::Kind::Nack(nack)),
        }
    }
}

// === Keys and addresses ===

impl From<&RouteKey> for pb::RouteKey {
    fn from(k: &RouteKey) -> Self {
        pb::RouteKey {
            namespace: k.namespace.clone(),
            name: k.name.clone(),
        }
    }
}

impl From<pb::RouteKey> for RouteKey {
    fn from(k: pb::RouteKey) -> Self {
        RouteKey {
            namespace: k.namespace,
            name: k.name,
        }
    }
}

impl From<&EndpointSetKey> for pb::EndpointSetKey {
    fn from(k: &EndpointSetKey) -> Self {
        pb::EndpointSetKey {
            namespace: k.namespace.clone(),
            service: k.service.clone(),
            port: u32::from(k.port.get()),
        }
    }
}

impl TryFrom<pb::EndpointSetKey> for EndpointSetKey {
    type Error = ConvertError;

    fn try_from(k: pb::EndpointSetKey) -> Result<Self, ConvertError> {
        Ok(EndpointSetKey {
            namespace: k.namespace,
            service: k.service,
            port: port("EndpointSetKey.port", k.port)?,
        })
    }
}

impl From<EndpointAddr> for pb::EndpointAddress {
    fn from(EndpointAddr(addr): EndpointAddr) -> Self {
        pb::EndpointAddress {
            ip: ip_to_bytes(addr.ip()),
            port: u32::from(addr.port()),
        }
    }
}

impl TryFrom<pb::EndpointAddress> for EndpointAddr {
    type Error = ConvertError;

    fn try_from(a: pb::EndpointAddress) -> Result<Self, ConvertError> {
        let ip = ip_from_bytes(&a.ip)?;
        let port = port("EndpointAddress.port", a.port)?;
        Ok(EndpointAddr(SocketAddr::new(ip, port.get())))
    }
}

// === Endpoints ===

impl From<&Endpoint> for pb::Endpoint {
    fn from(e: &Endpoint) -> Self {
        pb::Endpoint {
            addr: Some(e.addr.into()),
            ready: e.ready,
            serving: e.serving,
            terminating: e.terminating,
            zone: e.zone.clone(),
            node: e.node.clone(),
            pod: e.pod.clone(),
            hints_for_zones: e.hints_for_zones.clone(),
            hints_for_nodes: e.hints_for_nodes.clone(),
        }
    }
}

impl TryFrom<pb::Endpoint> for Endpoint {
    type Error = ConvertError;

    fn try_from(e: pb::Endpoint) -> Result<Self, ConvertError> {
        Ok(Endpoint {
            addr: required(e.addr, "Endpoint.addr")?.try_into()?,
            ready: e.ready,
            serving: e.serving,
            terminating: e.terminating,
            zone: e.zone,
            node: e.node,
            pod: e.pod,
            hints_for_zones: e.hints_for_zones,
            hints_for_nodes: e.hints_for_nodes,
        })
    }
}

/// A whole set as a single part. Snapshots split big sets; see [`crate::snapshot`].
impl From<&EndpointSet> for pb::EndpointSetPart {
    fn from(s: &EndpointSet) -> Self {
        pb::EndpointSetPart {
            key: Some((&s.key).into()),
            app_protocol: s.app_protocol.clone(),
            endpoints: s.endpoints.values().map(pb::Endpoint::from).collect(),
            cluster_ips: ips_to_proto(&s.cluster_ips),
        }
    }
}

/// One part as a set. An address listed twice keeps its last entry; the snapshot
/// assembler, which merges parts, rejects duplicates instead.
impl TryFrom<pb::EndpointSetPart> for EndpointSet {
    type Error = ConvertError;

    fn try_from(p: pb::EndpointSetPart) -> Result<Self, ConvertError> {
        let mut set = EndpointSet::new(required(p.key, "EndpointSetPart.key")?.try_into()?);
        set.app_protocol = p.app_protocol;
        set.cluster_ips = ips_from_proto(p.cluster_ips)?;
        for e in p.endpoints {
            let e = Endpoint::try_from(e)?;
            set.endpoints.insert(e.addr, e);
        }
        Ok(set)
    }
}

// === Routes ===

impl From<Policy> for pb::Policy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::RoundRobin => pb::Policy::RoundRobin,
            Policy::LeastRequest => pb::Policy::LeastRequest,
            Policy::PeakEwma => pb::Policy::PeakEwma,
            Policy::Prequal => pb::Policy::Prequal,
        }
    }
}

impl From<&Affinity> for pb::Affinity {
    fn from(a: &Affinity) -> Self {
        use pb::affinity::Key;
        pb::Affinity {
            key: Some(match &a.key {
                AffinityKey::Header(name) => Key::Header(name.clone()),
                AffinityKey::Cookie(name) => Key::Cookie(name.clone()),
                AffinityKey::SourceIp => Key::SourceIp(true),
            }),
            balance_factor_percent: a.balance_factor_percent,
        }
    }
}

/// `None` for an affinity without a key this build knows (a newer key source, or none):
/// such a Route balances every request by its policy, as a proxy without affinity would.
fn affinity(a: pb::Affinity) -> Result<Option<Affinity>, ConvertError> {
    use pb::affinity::Key;
    let key = match a.key {
        Some(Key::Header(name)) => AffinityKey::Header(name.to_ascii_lowercase()),
        Some(Key::Cookie(name)) => AffinityKey::Cookie(name),
        Some(Key::SourceIp(true)) => AffinityKey::SourceIp,
        Some(Key::SourceIp(false)) | None => return Ok(None),
    };
    if a.balance_factor_percent < 100 {
        return Err(ConvertError::BalanceFactor(a.balance_factor_percent));
    }
    Ok(Some(Affinity {
        key,
        balance_factor_percent: a.balance_factor_percent,
    }))
}

/// `preferred` when this build knows it, else `fallback` (see `LoadBalancer` in the
/// proto): a policy newer than this proxy degrades to the one the controller chose for
/// proxies like it, instead of failing the Route.
fn preferred_policy(preferred: i32, fallback: i32) -> Result<Policy, ConvertError> {
    policy(preferred).or_else(|_| policy(fallback))
}

fn policy(raw: i32) -> Result<Policy, ConvertError> {
    match pb::Policy::try_from(raw) {
        Ok(pb::Policy::RoundRobin) => Ok(Policy::RoundRobin),
        Ok(pb::Policy::LeastRequest) => Ok(Policy::LeastRequest),
        Ok(pb::Policy::PeakEwma) => Ok(Policy::PeakEwma),
        Ok(pb::Policy::Prequal) => Ok(Policy::Prequal),
        // UNSPECIFIED means the sender forgot to set it: guessing would hide a bug.
        Ok(pb::Policy::Unspecified) | Err(_) => Err(ConvertError::UnknownPolicy(raw)),
    }
}

impl From<UpstreamProtocol> for pb::UpstreamProtocol {
    fn from(p: UpstreamProtocol) -> Self {
        match p {
            UpstreamProtocol::Auto => pb::UpstreamProtocol::Auto,
            UpstreamProtocol::Http1 => pb::UpstreamProtocol::Http1,
            UpstreamProtocol::Http2 => pb::UpstreamProtocol::Http2,
        }
    }
}

fn upstream_protocol(raw: i32) -> Result<UpstreamProtocol, ConvertError> {
    match pb::UpstreamProtocol::try_from(raw) {
        Ok(pb::UpstreamProtocol::Auto) => Ok(UpstreamProtocol::Auto),
        Ok(pb::UpstreamProtocol::Http1) => Ok(UpstreamProtocol::Http1),
        Ok(pb::UpstreamProtocol::Http2) => Ok(UpstreamProtocol::Http2),
        Ok(pb::UpstreamProtocol::Unspecified) | Err(_) => {
            Err(ConvertError::UnknownUpstreamProtocol(raw))
        }
    }
}

impl From<&Backend> for pb::Backend {
    fn from(b: &Backend) -> Self {
        pb::Backend {
            endpoint_set: Some((&b.endpoint_set).into()),
            weight: b.weight,
        }
    }
}

impl TryFrom<pb::Backend> for Backend {
    type Error = ConvertError;

    fn try_from(b: pb::Backend) -> Result<Self, ConvertError> {
        Ok(Backend {
            endpoint_set: required(b.endpoint_set, "Backend.endpoint_set")?.try_into()?,
            weight: b.weight,
        })
    }
}

impl From<&Timeouts> for pb::Timeouts {
    fn from(t: &Timeouts) -> Self {
        pb::Timeouts {
            request_ms: millis(t.request),
            connect_ms: millis(t.connect),
            per_try_ms: t.per_try.map(millis),
            grpc_maximum_ms: t.grpc_maximum.map(millis),
        }
    }
}

impl From<pb::Timeouts> for Timeouts {
    fn from(t: pb::Timeouts) -> Self {
        Timeouts {
            request: Duration::from_millis(t.request_ms),
            connect: Duration::from_millis(t.connect_ms),
            per_try: t.per_try_ms.map(Duration::from_millis),
            grpc_maximum: t.grpc_maximum_ms.map(Duration::from_millis),
        }
    }
}

impl From<&Route> for pb::Route {
    fn from(r: &Route) -> Self {
        let lb = &r.load_balancer;
        let up = &r.upstream;
        let (rules, match_rules, tls_rules) = tls::wire_rules(r);
        pb::Route {
            key: Some((&r.key).into()),
            hosts: r.hosts.clone(),
            rules,
            match_rules,
            tls_rules,
            load_balancer: Some(pb::LoadBalancer {
                policy: pb::Policy::from(lb.policy.fallback()).into(),
                // Absent (0) unless it differs: Routes of the first three policies encode
                // byte for byte as before, so their digests do not change.
                preferred_policy: if lb.policy == lb.policy.fallback() {
                    pb::Policy::Unspecified.into()
                } else {
                    pb::Policy::from(lb.policy).into()
                },
                slow_start_ms: lb.slow_start.map(millis),
                affinity: lb.affinity.as_ref().map(pb::Affinity::from),
                spillover_in_flight: lb.spillover_in_flight,
            }),
            upstream: Some(pb::Upstream {
                protocol: pb::UpstreamProtocol::from(up.protocol).into(),
                max_connections_per_endpoint: up.max_connections_per_endpoint,
                idle_timeout_ms: millis(up.idle_timeout),
                max_connection_age_ms: up.max_connection_age.map(millis),
                max_requests_per_connection: up.max_requests_per_connection,
                upgrade_protocols: up.upgrades.protocols.clone(),
                upgrade_idle_timeout_ms: millis(up.upgrades.idle_timeout),
                max_upgrade_lifetime_ms: up.upgrades.max_lifetime.map(millis),
                drain_timeout_ms: millis(up.drain_timeout),
                set_tls: tls::set_tls(&up.tls),
            }),
            timeouts: Some(pb::Timeouts::from(&r.timeouts)),
            retries: Some(pb::Retries::from(&r.retries)),
            grpc_health_check: r.health_check.as_ref().map(|h| pb::GrpcHealthCheck {
                service: h.service.clone(),
                interval_ms: millis(h.interval),
                timeout_ms: millis(h.timeout),
                unhealthy_threshold: h.unhealthy_threshold,
                healthy_threshold: h.healthy_threshold,
            }),
        }
    }
}

impl TryFrom<pb::Route> for Route {
    type Error = ConvertError;

    fn try_from(r: pb::Route) -> Result<Self, ConvertError> {
        let lb = required(r.load_balancer, "Route.load_balancer")?;
        let up = required(r.upstream, "Route.upstream")?;
        let timeouts = required(r.timeouts, "Route.timeouts")?;
        let retries = required(r.retries, "Route.retries")?;
        Ok(Route {
            key: required(r.key, "Route.key")?.into(),
            hosts: r.hosts,
            rules: tls::rules_from_wire(
                !up.set_tls.is_empty(),
                r.rules,
                r.match_rules,
                r.tls_rules,
            )?,
            load_balancer: LoadBalancer {
                policy: preferred_policy(lb.preferred_policy, lb.policy)?,
                slow_start: lb.slow_start_ms.map(Duration::from_millis),
                affinity: lb.affinity.map(affinity).transpose()?.flatten(),
                // 0 would spill at once, which is no locality: read as never.
                spillover_in_flight: lb.spillover_in_flight.filter(|&n| n > 0),
            },
            upstream: Upstream {
                protocol: upstream_protocol(up.protocol)?,
                max_connections_per_endpoint: up.max_connections_per_endpoint,
                idle_timeout: Duration::from_millis(up.idle_timeout_ms),
                max_connection_age: up.max_connection_age_ms.map(Duration::from_millis),
                max_requests_per_connection: up.max_requests_per_connection,
                upgrades: Upgrades {
                    protocols: up.upgrade_protocols,
                    idle_timeout: Duration::from_millis(up.upgrade_idle_timeout_ms),
                    max_lifetime: up.max_upgrade_lifetime_ms.map(Duration::from_millis),
                },
                drain_timeout: Duration::from_millis(up.drain_timeout_ms),
                tls: tls::set_tls_from_wire(up.set_tls)?,
            },
            timeouts: Timeouts::from(timeouts),
            retries: Retries::from(retries),
            health_check: r.grpc_health_check.map(|h| GrpcHealthCheck {
                service: h.service,
                interval: Duration::from_millis(h.interval_ms),
                timeout: Duration::from_millis(h.timeout_ms),
                unhealthy_threshold: h.unhealthy_threshold,
                healthy_threshold: h.healthy_threshold,
            }),
        })
    }
}

mod ip;

use ip::ip_from_bytes;
pub(crate) use ip::{ip_to_bytes, ips_from_proto, ips_to_proto};

#[cfg(test)]
mod compat;
#[cfg(test)]
mod tests;

mod error;
mod filters;
mod retries;
mod rule;
mod scope;
mod tls;
