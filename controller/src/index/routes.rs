//! Routes: validating a [`crd::Route`] into a [`RouteConfig`] (which `resolve` then
//! turns into the `model::Route` the proxies get).
//!
//! Validation repeats what the CRD schema checks, because Routes read by `--static-dir`
//! never meet an apiserver, and adds what a schema cannot say (duplicate path prefixes,
//! durations that overflow).

use std::collections::BTreeSet;
use std::num::NonZeroU16;

use fairway_proto::model::{self, RouteKey};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::backend_tls;
use super::base::{DEFAULT_NAMESPACE, SpecError};
use super::endpoints::ServiceRef;
use super::hosts::{Age, Claim};
use super::names::{is_dns_label, is_dns_subdomain, is_dns1035_label};
use crate::crd;

/// A validated Route spec, not yet resolved against Services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RouteConfig {
    /// Lowercase, de-duplicated, in spec order.
    pub hosts: Vec<String>,
    pub rules: Vec<RuleConfig>,
    pub load_balancer: model::LoadBalancer,
    pub upstream: model::Upstream,
    pub timeouts: model::Timeouts,
    pub retries: model::Retries,
    pub health_check: Option<model::GrpcHealthCheck>,
    /// The Route's own `upstream.tls`, without its CA: it applies to every set the
    /// Route sends to (`backend_tls::attach`), before any BackendTLSPolicy.
    pub tls: Option<model::UpstreamTls>,
    /// The ConfigMaps (in the Route's namespace) of `upstream.tls`'s CA, resolved by `ca`.
    pub ca_refs: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RuleConfig {
    /// The path value, read as `matching.path` says (a Route's are prefixes).
    pub path_prefix: String,
    pub matching: model::Matching,
    /// In place of the Route's (an HTTPRoute rule's own); `None` for a Route's rules.
    pub timeouts: Option<model::Timeouts>,
    /// In place of the Route's (an HTTPRoute rule's `retry`); `None` for a Route's rules.
    pub retries: Option<model::Retries>,
    /// Header edits, a rewrite or a redirect.
    pub filters: model::Filters,
    pub backends: Vec<BackendConfig>,
    /// Backends known never to resolve (an HTTPRoute's backendRef of another kind, say):
    /// their share is answered `500` with the reason.
    pub unresolved: Vec<model::UnresolvedBackend>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BackendConfig {
    pub service: String,
    pub port: PortRef,
    pub weight: u32,
}

/// A Service port as a Route names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PortRef {
    Number(NonZeroU16),
    Name(String),
}

/// A Route as the index keeps it.
#[derive(Clone, Debug)]
pub(super) struct RouteEntry {
    pub claim: Claim,
    pub generation: Option<i64>,
    pub config: Result<RouteConfig, SpecError>,
}

impl RouteEntry {
    /// The Services this Route's backends name, in its namespace.
    pub fn services(&self) -> BTreeSet<ServiceRef> {
        let Ok(config) = &self.config else {
            return BTreeSet::new();
        };
        let rules = config.rules.iter();
        rules
            .flat_map(|rule| &rule.backends)
            .map(|backend| ServiceRef::new(&self.claim.key.namespace, &backend.service))
            .collect()
    }

    /// The hosts this Route claims; an invalid Route claims none.
    pub fn hosts(&self) -> &[String] {
        self.config.as_ref().map_or(&[], |c| &c.hosts)
    }
}

/// The identity of a Route object.
pub(super) fn route_key(route: &crd::Route) -> RouteKey {
    RouteKey {
        namespace: (route.metadata.namespace.as_deref())
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_owned(),
        name: route.metadata.name.clone().unwrap_or_default(),
    }
}

/// Reads a Route object: its identity, age and validated spec.
pub(super) fn parse(route: &crd::Route) -> RouteEntry {
    RouteEntry {
        claim: Claim {
            created: Age::of(route.metadata.creation_timestamp.as_ref()),
            key: route_key(route),
        },
        generation: route.metadata.generation,
        config: validate(&route.spec),
    }
}

fn duration(field: &'static str, value: &str) -> Result<std::time::Duration, SpecError> {
    crd::parse_duration(value).map_err(|source| SpecError::Duration { field, source })
}

/// Checks a spec and converts it to domain types. Hosts are lowercased first: Host
/// matching is case-insensitive, so `Orders.Shop` in a static file means `orders.shop`.
fn validate(spec: &crd::RouteSpec) -> Result<RouteConfig, SpecError> {
    if spec.hosts.is_empty() {
        return Err(SpecError::NoHosts);
    }
    let mut hosts: Vec<String> = Vec::with_capacity(spec.hosts.len());
    for host in &spec.hosts {
        let host = host.to_ascii_lowercase();
        if !is_dns_subdomain(&host) {
            return Err(SpecError::Host(host));
        }
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    if spec.rules.is_empty() {
        return Err(SpecError::NoRules);
    }
    let mut rules: Vec<RuleConfig> = Vec::with_capacity(spec.rules.len());
    for (i, rule) in spec.rules.iter().enumerate() {
        let prefix = &rule.path_prefix;
        if !prefix.starts_with('/') {
            return Err(SpecError::PathPrefix(prefix.clone()));
        }
        let (path, matching) = match &rule.matches {
            None => (prefix.clone(), model::Matching::default()),
            Some(m) => super::matching::route_rule(i, prefix, m)?,
        };
        let same = |r: &RuleConfig| r.path_prefix == path && r.matching == matching;
        if rules.iter().any(same) {
            return Err(match matching.is_prefix_only() {
                true => SpecError::DuplicatePathPrefix(path),
                false => SpecError::DuplicateMatch(path),
            });
        }
        let matches = [(path, matching)];
        let shape = super::filters::RuleShape {
            matches: &matches,
            backends: rule.backends.len(),
        };
        let filters = super::filters::route_rule(i, &rule.filters, &shape)?;
        let [(path, matching)] = matches;
        if rule.backends.is_empty() && filters.redirect.is_none() {
            return Err(SpecError::NoBackends(path));
        }
        let backends = rule.backends.iter().map(validate_backend);
        rules.push(RuleConfig {
            path_prefix: path,
            matching,
            timeouts: None,
            retries: None,
            filters,
            backends: backends.collect::<Result<_, _>>()?,
            unresolved: Vec::new(),
        });
    }

    let lb = &spec.load_balancer;
    let slow_start = match &lb.slow_start {
        Some(s) => Some(duration("spec.loadBalancer.slowStart", s)?).filter(|d| !d.is_zero()),
        None => None,
    };
    let up = &spec.upstream;
    if up.max_connections_per_endpoint == 0 {
        return Err(SpecError::MaxConnections);
    }
    let max_age = duration("spec.upstream.maxConnectionAge", &up.max_connection_age)?;
    let lifetime = duration("spec.upstream.maxUpgradeLifetime", &up.max_upgrade_lifetime)?;
    let mut upgrade_protocols: Vec<String> = Vec::new();
    for protocol in &up.upgrades {
        let protocol = protocol.to_ascii_lowercase();
        // h2c over an upgrade would let a client speak HTTP/2 past the proxy's routing
        // to whatever pod it reached first (h2c smuggling).
        if protocol == "h2c" {
            return Err(SpecError::UpgradeH2c);
        }
        if !upgrade_protocols.contains(&protocol) {
            upgrade_protocols.push(protocol);
        }
    }
    let retries = &spec.retries;
    if retries.attempts > crd::MAX_RETRY_ATTEMPTS {
        return Err(SpecError::RetryAttempts(retries.attempts));
    }
    if retries.budget_percent > 100 {
        return Err(SpecError::RetryBudget(retries.budget_percent));
    }
    let protocol = match up.protocol {
        crd::UpstreamProtocol::Auto => model::UpstreamProtocol::Auto,
        crd::UpstreamProtocol::Http1 => model::UpstreamProtocol::Http1,
        crd::UpstreamProtocol::Http2 => model::UpstreamProtocol::Http2,
    };
    let health_check = super::health::validate(spec.health_check.as_ref(), protocol)?;
    let (tls, ca_refs) = backend_tls::validate(up.tls.as_ref(), health_check.is_some())?;
    Ok(RouteConfig {
        tls,
        ca_refs,
        hosts,
        rules,
        load_balancer: model::LoadBalancer {
            policy: match lb.policy {
                crd::Policy::RoundRobin => model::Policy::RoundRobin,
                crd::Policy::LeastRequest => model::Policy::LeastRequest,
                crd::Policy::PeakEwma => model::Policy::PeakEwma,
                crd::Policy::Prequal => model::Policy::Prequal,
            },
            slow_start,
            affinity: lb.affinity.as_ref().map(affinity).transpose()?,
            spillover_in_flight: match &lb.spillover {
                Some(s) if !(1..=crd::MAX_SPILLOVER_IN_FLIGHT).contains(&s.max_in_flight) => {
                    return Err(SpecError::Spillover(s.max_in_flight));
                }
                spillover => spillover.as_ref().map(|s| s.max_in_flight),
            },
        },
        upstream: model::Upstream {
            protocol,
            max_connections_per_endpoint: up.max_connections_per_endpoint,
            idle_timeout: duration("spec.upstream.idleTimeout", &up.idle_timeout)?,
            // 0s means unlimited, as in the CRD.
            max_connection_age: Some(max_age).filter(|d| !d.is_zero()),
            max_requests_per_connection: up.max_requests_per_connection,
            upgrades: model::Upgrades {
                protocols: upgrade_protocols,
                idle_timeout: duration(
                    "spec.upstream.upgradeIdleTimeout",
                    &up.upgrade_idle_timeout,
                )?,
                max_lifetime: Some(lifetime).filter(|d| !d.is_zero()),
            },
            drain_timeout: duration("spec.upstream.drainTimeout", &up.drain_timeout)?,
            // Per set, filled when the Route resolves (`backend_tls::attach`).
            tls: Default::default(),
        },
        timeouts: model::Timeouts {
            request: duration("spec.timeouts.request", &spec.timeouts.request)?,
            connect: duration("spec.timeouts.connect", &spec.timeouts.connect)?,
            // 0s means unset, as for the other optional durations.
            per_try: match &spec.timeouts.per_try {
                Some(per_try) => {
                    Some(duration("spec.timeouts.perTry", per_try)?).filter(|d| !d.is_zero())
                }
                None => None,
            },
            grpc_maximum: match &spec.timeouts.grpc_maximum {
                Some(max) => {
                    Some(duration("spec.timeouts.grpcMaximum", max)?).filter(|d| !d.is_zero())
                }
                None => None,
            },
        },
        retries: model::Retries {
            attempts: retries.attempts,
            budget_percent: retries.budget_percent,
            grpc_statuses: {
                let mut codes: Vec<u32> = retries.grpc_statuses.iter().map(|s| s.code()).collect();
                codes.sort_unstable();
                codes.dedup();
                codes
            },
            http_statuses: http_retry_statuses(&retries.http_statuses)?,
            backoff: match &retries.backoff {
                Some(backoff) => duration("spec.retries.backoff", backoff)?,
                None => std::time::Duration::ZERO,
            },
        },
        health_check,
    })
}

/// The hosts-less, rules-less config of a Route that sets no policy: what an
/// HTTPRoute's group gets, so both inputs share one set of defaults.
pub(super) fn default_config() -> RouteConfig {
    let spec = crd::RouteSpec {
        hosts: vec!["default".to_owned()],
        rules: vec![crd::RouteRule {
            path_prefix: "/".to_owned(),
            matches: None,
            filters: Vec::new(),
            backends: vec![crd::RouteBackend {
                service: "default".to_owned(),
                port: IntOrString::Int(80),
                weight: 1,
            }],
        }],
        load_balancer: Default::default(),
        upstream: Default::default(),
        timeouts: Default::default(),
        retries: Default::default(),
        health_check: None,
    };
    let mut config = validate(&spec).expect("the CRD's defaults are a valid Route");
    config.hosts.clear();
    config.rules.clear();
    config
}

/// One key source, and a bound the proxy can meet (the schema checks both; objects
/// from `--static-dir` arrive without it).
fn affinity(spec: &crd::AffinitySpec) -> Result<model::Affinity, SpecError> {
    let mut keys = Vec::new();
    if let Some(name) = spec.header.as_ref().filter(|n| !n.is_empty()) {
        keys.push(model::AffinityKey::Header(name.to_ascii_lowercase()));
    }
    if let Some(name) = spec.cookie.as_ref().filter(|n| !n.is_empty()) {
        keys.push(model::AffinityKey::Cookie(name.clone()));
    }
    if spec.source_ip {
        keys.push(model::AffinityKey::SourceIp);
    }
    if keys.len() != 1 {
        return Err(SpecError::AffinityKey(keys.len()));
    }
    if !(100..=crd::MAX_BALANCE_FACTOR).contains(&spec.balance_factor) {
        return Err(SpecError::BalanceFactor(spec.balance_factor));
    }
    Ok(model::Affinity {
        key: keys.remove(0),
        balance_factor_percent: spec.balance_factor,
    })
}

/// Each 400-599, ascending, once.
fn http_retry_statuses(listed: &[i32]) -> Result<Vec<u16>, SpecError> {
    let mut codes = (listed.iter())
        .map(|&c| {
            u16::try_from(c)
                .ok()
                .filter(|c| (400..=599).contains(c))
                .ok_or(SpecError::RetryStatus(c))
        })
        .collect::<Result<Vec<_>, _>>()?;
    codes.sort_unstable();
    codes.dedup();
    Ok(codes)
}

fn validate_backend(backend: &crd::RouteBackend) -> Result<BackendConfig, SpecError> {
    let service = &backend.service;
    if !is_dns1035_label(service) {
        return Err(SpecError::ServiceName(service.clone()));
    }
    let bad_port = |port: String| SpecError::Port {
        service: service.clone(),
        port,
    };
    let port = match &backend.port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .and_then(NonZeroU16::new)
            .map(PortRef::Number)
            .ok_or_else(|| bad_port(n.to_string()))?,
        // A string is always a name, as in Kubernetes (`"8080"` is a port *named* 8080).
        IntOrString::String(name) if is_dns_label(name) => PortRef::Name(name.clone()),
        IntOrString::String(name) => return Err(bad_port(format!("{name:?}"))),
    };
    if backend.weight > crd::MAX_WEIGHT {
        return Err(SpecError::Weight {
            service: service.clone(),
            weight: backend.weight,
        });
    }
    Ok(BackendConfig {
        service: service.clone(),
        port,
        weight: backend.weight,
    })
}
