//! Resolving a validated Route (or an HTTPRoute group) into the `model::Route` the
//! proxies get: the host claims `hosts` decides applied, its backends resolved against
//! Services, and its two conditions.

use std::collections::BTreeSet;

use fairway_proto::model::{self, EndpointSetKey};

use super::base::RefFailure;
use super::endpoints::{EndpointStore, ServiceRef};
use super::hosts::{self, HostClaims};
use super::routes::{BackendConfig, PortRef, RouteEntry};
use super::status::{ConditionState, Reason};

/// What resolving one Route decided: its table entry (if it serves anything), the
/// endpoint sets that entry uses, and the two conditions.
#[derive(Clone, Debug)]
pub(super) struct Resolution {
    pub route: Option<model::Route>,
    pub sets: BTreeSet<EndpointSetKey>,
    pub generation: Option<i64>,
    pub accepted: ConditionState,
    pub resolved_refs: ConditionState,
}

/// Resolves a Route against the current claims and Services.
///
/// A backend whose Service or port is missing still appears when its port is a number:
/// its key is known and the set is simply absent from the table. A *named* port of a
/// missing Service has no key, so that backend is left out of the rule (the condition
/// says why). A Route that lost every host (to other Routes, or to the namespace that
/// owns it) serves nothing and is left out of the table.
pub(super) fn resolve(
    entry: &RouteEntry,
    claims: &HostClaims,
    cluster_domain: &str,
    endpoints: &EndpointStore,
) -> Resolution {
    let key = &entry.claim.key;
    let config = match &entry.config {
        Ok(config) => config,
        Err(error) => {
            return Resolution {
                route: None,
                sets: BTreeSet::new(),
                generation: entry.generation,
                accepted: ConditionState::invalid_spec(error),
                resolved_refs: ConditionState::not_resolved_while_invalid(),
            };
        }
    };

    let (mut hosts, mut denied) = (Vec::new(), Vec::new());
    for host in &config.hosts {
        let owner = hosts::owning_namespace(host, cluster_domain, endpoints);
        match claims.decide(host, &entry.claim, owner) {
            Ok(()) => hosts.push(host.clone()),
            Err(why) => denied.push(why),
        }
    }

    let mut failures = Vec::new();
    let mut rules = Vec::with_capacity(config.rules.len());
    for rule in &config.rules {
        let mut backends = Vec::with_capacity(rule.backends.len());
        let mut unresolved = rule.unresolved.clone();
        for backend in &rule.backends {
            match resolve_backend(&key.namespace, backend, endpoints) {
                Ok(endpoint_set) => backends.push(model::Backend {
                    endpoint_set,
                    weight: backend.weight,
                }),
                Err(failure) => {
                    // Kept with its weight: its share of the split is answered `500`
                    // with the reason, never moved onto the other backends.
                    unresolved.push(model::UnresolvedBackend {
                        service: backend.service.clone(),
                        weight: backend.weight,
                        reason: Reason::from(&failure).as_str().to_owned(),
                        message: failure.message().to_owned(),
                    });
                    if !failures.contains(&failure) {
                        failures.push(failure);
                    }
                }
            }
        }
        rules.push(model::Rule {
            path_prefix: rule.path_prefix.clone(),
            matching: rule.matching.clone(),
            timeouts: rule.timeouts.clone(),
            retries: rule.retries.clone(),
            filters: rule.filters.clone(),
            backends,
            unresolved,
        });
    }

    let route = (!hosts.is_empty()).then(|| model::Route {
        key: key.clone(),
        hosts,
        rules,
        load_balancer: config.load_balancer.clone(),
        upstream: config.upstream.clone(),
        timeouts: config.timeouts.clone(),
        retries: config.retries.clone(),
        health_check: config.health_check.clone(),
    });
    let sets = route
        .iter()
        .flat_map(|r| &r.rules)
        .flat_map(|r| &r.backends);
    Resolution {
        sets: sets.map(|b| b.endpoint_set.clone()).collect(),
        route,
        generation: entry.generation,
        accepted: ConditionState::accepted(&denied),
        resolved_refs: ConditionState::resolved_refs(&failures),
    }
}

pub(super) fn resolve_backend(
    namespace: &str,
    backend: &BackendConfig,
    endpoints: &EndpointStore,
) -> Result<EndpointSetKey, RefFailure> {
    let service = ServiceRef::new(namespace, &backend.service);
    let Some(ports) = endpoints.service(&service) else {
        return Err(RefFailure::ServiceNotFound(format!(
            "service {service} not found"
        )));
    };
    let found = match &backend.port {
        PortRef::Number(n) => ports.by_number(*n),
        PortRef::Name(name) => ports.by_name(name),
    };
    match found {
        Some(port) => Ok(EndpointSetKey {
            namespace: namespace.to_owned(),
            service: backend.service.clone(),
            port: port.port,
        }),
        None => Err(match &backend.port {
            PortRef::Number(n) => {
                RefFailure::PortNotFound(format!("service {service} has no TCP port {n}"))
            }
            PortRef::Name(name) => {
                RefFailure::PortNotFound(format!("service {service} has no TCP port named {name}"))
            }
        }),
    }
}
