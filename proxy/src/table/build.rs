//! Building a [`Table`]'s [`Shape`] for a new version, at the cost of the change.
//!
//! Most versions change endpoints only (a rollout, a scale-up). Then the Routes are the
//! same `Arc`s as in the previous version, the router and targets are kept as they are
//! (shared), and only the balancers of the endpoint sets that changed are fed: the
//! model shares unchanged sets, so finding them is a pointer comparison per set. Any
//! change to a Route, to the proxy's locality, or to a set's `appProtocol` (which
//! targets resolve into a protocol) builds the whole shape, reusing every surviving
//! balancer's state ([`shape`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use fairway_proto::model::{EndpointSet, EndpointSetKey, Route, RouteKey, RouteTable};
use foldhash::HashMap;

use super::{BackendState, Shape, Table, Target, protocol};
use crate::balance::{BalanceConfig, Balancer};
use crate::route::Router;
use crate::tls::{Alpn, PodTls};

/// The proxy's zone and node, as topology hints use them.
type Locality<'a> = (&'a Option<String>, &'a Option<String>);

/// `previous`'s shape, with the balancers of changed sets fed, when only endpoints
/// changed; `None` when the whole shape must be built.
pub(super) fn endpoints_only(
    source: &RouteTable,
    previous: &Table,
    (zone, node): Locality<'_>,
    now: Instant,
) -> Option<Arc<Shape>> {
    let before = &previous.source;
    let same_routes = previous.version.is_some()
        && (&previous.zone, &previous.node) == (zone, node)
        && before.routes.len() == source.routes.len()
        && (before.routes.values().zip(source.routes.values())).all(|(a, b)| Arc::ptr_eq(a, b));
    if !same_routes {
        return None;
    }
    let mut changed: Vec<(&EndpointSetKey, Option<&EndpointSet>)> = Vec::new();
    let (old_sets, new_sets) = (&before.endpoint_sets, &source.endpoint_sets);
    type Pair<'a> = (
        &'a EndpointSetKey,
        Option<&'a Arc<EndpointSet>>,
        &'a Arc<EndpointSet>,
    );
    let pairs: Box<dyn Iterator<Item = Pair<'_>>> = if old_sets.len() == new_sets.len() {
        // The common case, endpoints changed inside sets: walk both in order, a pointer
        // comparison per set (the same Arc is the same key); look up the rest.
        Box::new(old_sets.values().zip(new_sets).map(|(old, (key, set))| {
            let old = if Arc::ptr_eq(old, set) {
                Some(old)
            } else {
                old_sets.get(key)
            };
            (key, old, set)
        }))
    } else {
        Box::new(
            new_sets
                .iter()
                .map(|(key, set)| (key, old_sets.get(key), set)),
        )
    };
    for (key, old, set) in pairs {
        match old {
            Some(old) if Arc::ptr_eq(old, set) => {}
            Some(old) if old.app_protocol != set.app_protocol => return None,
            _ => changed.push((key, Some(&**set))),
        }
    }
    if old_sets.len() != new_sets.len() || !changed.is_empty() {
        for key in old_sets.keys() {
            if !new_sets.contains_key(key) {
                changed.push((key, None));
            }
        }
    }
    let shape = Arc::clone(&previous.shape);
    for (key, set) in changed {
        let Some(states) = shape.by_set.get(key) else {
            continue; // no Route uses it
        };
        let empty;
        let set = match set {
            Some(set) => set,
            None => {
                empty = EndpointSet::new(key.clone());
                &empty
            }
        };
        for state in states {
            state.lock().update(set, now);
        }
    }
    Some(shape)
}

/// The whole shape for `source`, reusing `previous`'s balancer state for every (route,
/// set) pair that survives; a surviving balancer whose set did not change is not fed.
pub(super) fn shape(
    source: &RouteTable,
    previous: &Table,
    (zone, node): Locality<'_>,
    now: Instant,
) -> Shape {
    let router = Router::new(source);
    let mut backends = HashMap::default();
    let mut by_set: HashMap<EndpointSetKey, Vec<Arc<BackendState>>> = HashMap::default();
    let mut targets = Vec::new();
    let mut tls = HashMap::default();
    // In the router's order, so `targets` lines up with `Selected::route_index`.
    for route in router.routes() {
        let config = BalanceConfig::new(&route.load_balancer, zone.clone(), node.clone());
        let mut per_set = HashMap::default();
        for rule in &route.rules {
            for backend in &rule.backends {
                let key = &backend.endpoint_set;
                if per_set.contains_key(key) {
                    continue;
                }
                let (state, reused) = match previous.backend(&route.key, key) {
                    Some(state) => {
                        let mut balancer = state.lock();
                        if balancer.config() != &config {
                            balancer.set_config(config.clone(), now);
                        }
                        drop(balancer);
                        (Arc::clone(state), true)
                    }
                    None => (
                        Arc::new(BackendState {
                            route: route.key.clone(),
                            set: key.clone(),
                            balancer: Mutex::new(Balancer::new(config.clone())),
                        }),
                        false,
                    ),
                };
                let now_set = source.endpoint_sets.get(key);
                let unchanged = reused
                    && match (previous.source.endpoint_sets.get(key), now_set) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                        (None, None) => true,
                        _ => false,
                    };
                if !unchanged {
                    let empty;
                    let set = match now_set {
                        Some(set) => &**set,
                        None => {
                            empty = EndpointSet::new(key.clone());
                            &empty
                        }
                    };
                    state.lock().update(set, now);
                }
                by_set
                    .entry(key.clone())
                    .or_default()
                    .push(Arc::clone(&state));
                per_set.insert(key.clone(), state);
            }
        }
        let per_rule = route
            .rules
            .iter()
            .enumerate()
            .map(|(rule_index, rule)| {
                rule.backends
                    .iter()
                    .map(|backend| Target {
                        rule_index,
                        route: Arc::clone(route),
                        backend: Arc::clone(&per_set[&backend.endpoint_set]),
                        protocol: protocol(source, route, &backend.endpoint_set),
                        tls: pod_tls(source, route, &backend.endpoint_set, &mut tls),
                        rule_timeouts: rule.timeouts.clone().map(Arc::new),
                        rule_filters: (!rule.filters.is_empty())
                            .then(|| Arc::new(rule.filters.clone())),
                    })
                    .collect()
            })
            .collect();
        targets.push(per_rule);
        backends.insert(route.key.clone(), per_set);
    }
    Shape {
        router,
        targets,
        backends,
        by_set,
        tls,
    }
}

/// The TLS of `route`'s connections to `set`, built once per (route, set) and shape.
fn pod_tls(
    source: &RouteTable,
    route: &Route,
    set: &EndpointSetKey,
    built: &mut HashMap<(RouteKey, EndpointSetKey), Arc<PodTls>>,
) -> Option<Arc<PodTls>> {
    let tls = route.upstream.tls.get(set)?;
    let key = (route.key.clone(), set.clone());
    let alpn = Alpn::new(route.upstream.protocol, protocol(source, route, set));
    let made = built.entry(key).or_insert_with(|| {
        let made = PodTls::new(tls, set, alpn);
        if let Err(error) = made.client() {
            tracing::warn!(route = %route.key, %set, %error, "TLS to the pods: every connection will be refused");
        }
        Arc::new(made)
    });
    Some(Arc::clone(made))
}
