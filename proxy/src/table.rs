//! The live table the request path reads: one immutable [`Table`] per applied version,
//! published through [`TableHandle`] (an `ArcSwap`, so a request never waits on a lock
//! held by discovery, and a `watch` so the pools can follow changes).
//!
//! Balancer state must outlive table versions: in-flight counts, EWMAs, slow-start
//! clocks and ejections belong to the endpoint, not to the version. So [`Table::build`]
//! reuses the previous table's [`BackendState`] for every (route, endpoint set) that
//! survives, and only feeds it the new endpoint set.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use fairway_proto::model::{
    AppProtocol, EndpointAddr, EndpointSet, EndpointSetKey, Route, RouteKey, RouteTable,
    UpstreamProtocol, Version,
};
use rand::RngCore;
use tokio::sync::watch;

use crate::balance::{BalanceConfig, Balancer, EndpointStats, Outcome, Pick};
use crate::router::{Landed, RouteError, Router};

/// Why a request could not be given an endpoint. Variant names double as the
/// `fairway-error` header and metric labels.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No Route claims the host, or no rule matches the path (`404`).
    #[error(transparent)]
    NoRoute(#[from] RouteError),
    /// Every backend of the matched rule has weight 0 (`503`).
    #[error("route {route}: every backend of the matched rule has weight 0")]
    NoBackend { route: RouteKey },
    /// The backend's endpoint set has no endpoint that can take a request (`503`).
    #[error("route {route}: no ready endpoint for {set}")]
    NoEndpoint {
        route: RouteKey,
        set: EndpointSetKey,
    },
    /// The split landed on a backend whose Service or port does not exist (`500`, as
    /// Gateway API answers the share sent to an invalid backendRef).
    #[error("route {route}: {message}")]
    Unresolved {
        route: RouteKey,
        /// The controller's reason: `ServiceNotFound` or `PortNotFound`.
        reason: String,
        message: String,
    },
}

impl ResolveError {
    /// Machine-readable reason for the `fairway-error` header and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            ResolveError::NoRoute(RouteError::UnknownHost(_)) => "UnknownHost",
            ResolveError::NoRoute(RouteError::NoRule { .. }) => "NoRule",
            ResolveError::NoBackend { .. } => "NoBackend",
            ResolveError::NoEndpoint { .. } => "NoEndpoint",
            ResolveError::Unresolved { reason, .. } => match reason.as_str() {
                "ServiceNotFound" => "ServiceNotFound",
                "PortNotFound" => "PortNotFound",
                _ => "BackendNotFound",
            },
        }
    }
}

/// The balancer of one (route, endpoint set) pair, shared across table versions.
#[derive(Debug)]
pub struct BackendState {
    pub route: RouteKey,
    pub set: EndpointSetKey,
    balancer: Mutex<Balancer>,
}

impl BackendState {
    fn lock(&self) -> MutexGuard<'_, Balancer> {
        // A panic while holding the lock cannot leave a balancer half-updated in a way
        // that matters more than dropping traffic would, so keep serving.
        self.balancer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The endpoint for the next request (or upgrade), counted as started. `None`:
    /// answer `503`.
    pub fn pick(&self, kind: Pick, now: Instant, rng: &mut dyn RngCore) -> Option<EndpointAddr> {
        let mut balancer = self.lock();
        let addr = balancer.pick_for(kind, now, rng)?;
        balancer.on_start(addr);
        Some(addr)
    }

    /// An upgraded connection to `addr` opened; call [`upgrade_closed`] when it ends.
    ///
    /// [`upgrade_closed`]: BackendState::upgrade_closed
    pub fn upgrade_opened(&self, addr: EndpointAddr) {
        self.lock().upgrade_opened(addr);
    }

    pub fn upgrade_closed(&self, addr: EndpointAddr) {
        self.lock().upgrade_closed(addr);
    }

    /// Ends a request started by [`BackendState::pick`]. Call exactly once per pick,
    /// also when the client went away ([`Outcome::Cancelled`]), or in-flight leaks.
    pub fn on_end(&self, addr: EndpointAddr, latency: Duration, outcome: Outcome, now: Instant) {
        self.lock().on_end(addr, latency, outcome, now);
    }

    pub fn stats(&self, now: Instant) -> Vec<EndpointStats> {
        self.lock().stats(now)
    }
}

/// Everything the request path needs for one matched request.
#[derive(Clone, Debug)]
pub struct Target {
    pub route: Arc<Route>,
    pub backend: Arc<BackendState>,
    /// The protocol to speak to the picked endpoint.
    pub protocol: AppProtocol,
}

/// One applied version of the route table, ready for the request path.
#[derive(Debug, Default)]
pub struct Table {
    pub version: Option<Version>,
    /// The zone topology hints were applied for (`--zone`, else the controller's word).
    pub zone: Option<String>,
    router: Router,
    /// What a request needs once routed, resolved when the table is built:
    /// `targets[route][rule][backend]`, indexed like [`Router::routes`], each route's
    /// `rules` and each rule's `backends`. The request path indexes, it hashes nothing.
    targets: Vec<Vec<Vec<Target>>>,
    /// Per route, per endpoint set: where the next version finds the balancers to keep.
    backends: HashMap<RouteKey, HashMap<EndpointSetKey, Arc<BackendState>>>,
    /// The domain table this was built from (for `/debug/routes` and resumes).
    pub source: Arc<RouteTable>,
}

impl Table {
    /// Builds the table for `source`, reusing `previous`'s balancer state for every
    /// (route, set) pair that survives. `zone` and `node` are this proxy's, for hints.
    pub fn build(
        source: Arc<RouteTable>,
        version: Version,
        previous: &Table,
        (zone, node): (Option<&str>, Option<&str>),
        now: Instant,
    ) -> Table {
        let empty = |key: &EndpointSetKey| EndpointSet::new(key.clone());
        let router = Router::new(&source);
        let mut backends = HashMap::default();
        let mut targets = Vec::new();
        // In the router's order, so `targets` lines up with `Selected::route_index`.
        for route in router.routes() {
            let config = BalanceConfig::new(
                &route.load_balancer,
                zone.map(str::to_owned),
                node.map(str::to_owned),
            );
            let mut per_set = HashMap::default();
            for rule in &route.rules {
                for backend in &rule.backends {
                    if per_set.contains_key(&backend.endpoint_set) {
                        continue;
                    }
                    let shared_set = source.endpoint_sets.get(&backend.endpoint_set);
                    let set = shared_set.map(|s| &**s);
                    let (state, reused) = match previous.backend(&route.key, &backend.endpoint_set)
                    {
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
                                set: backend.endpoint_set.clone(),
                                balancer: Mutex::new(Balancer::new(config.clone())),
                            }),
                            false,
                        ),
                    };
                    let owned;
                    let set = match set {
                        Some(set) => set,
                        None => {
                            owned = empty(&backend.endpoint_set);
                            &owned
                        }
                    };
                    // A surviving balancer whose set did not change keeps its state as
                    // it is: re-feeding every balancer made one pod's change cost the
                    // whole table (examples/apply.rs).
                    let before = previous.source.endpoint_sets.get(&backend.endpoint_set);
                    let unchanged = reused
                        && match (before, shared_set) {
                            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                            (None, None) => true,
                            _ => false,
                        };
                    if !unchanged {
                        state.lock().update(set, now);
                    }
                    per_set.insert(backend.endpoint_set.clone(), state);
                }
            }
            let shared = Arc::clone(route);
            let per_rule = route
                .rules
                .iter()
                .map(|rule| {
                    rule.backends
                        .iter()
                        .map(|backend| Target {
                            route: Arc::clone(&shared),
                            backend: Arc::clone(&per_set[&backend.endpoint_set]),
                            protocol: protocol(&source, route, &backend.endpoint_set),
                        })
                        .collect()
                })
                .collect();
            targets.push(per_rule);
            backends.insert(route.key.clone(), per_set);
        }
        Table {
            version: Some(version),
            zone: zone.map(str::to_owned),
            router,
            targets,
            backends,
            source,
        }
    }

    /// Routes a request and picks its endpoint: host and path to a rule, a weighted
    /// backend, then the balancer. The returned endpoint is counted as in flight.
    pub fn resolve(
        &self,
        authority: &str,
        path: &str,
        now: Instant,
        rng: &mut dyn RngCore,
    ) -> Result<(Target, EndpointAddr), ResolveError> {
        self.resolve_for(Pick::Request, authority, path, now, rng)
    }

    /// The Route a request for `authority` and `path` matches, without picking.
    pub fn route(&self, authority: &str, path: &str) -> Result<&Route, ResolveError> {
        Ok(self.router.route(authority, path)?.route)
    }

    /// [`resolve`](Self::resolve) for a request or an upgrade (see [`Pick`]).
    pub fn resolve_for(
        &self,
        kind: Pick,
        authority: &str,
        path: &str,
        now: Instant,
        rng: &mut dyn RngCore,
    ) -> Result<(Target, EndpointAddr), ResolveError> {
        let selected = self.router.route(authority, path)?;
        let backend = match selected.pick_backend(rng) {
            Some(Landed::Backend(i)) => i,
            Some(Landed::Unresolved(i)) => {
                let unresolved = &selected.rule.unresolved[i];
                return Err(ResolveError::Unresolved {
                    route: selected.route.key.clone(),
                    reason: unresolved.reason.clone(),
                    message: unresolved.message.clone(),
                });
            }
            None => {
                return Err(ResolveError::NoBackend {
                    route: selected.route.key.clone(),
                });
            }
        };
        let target = &self.targets[selected.route_index][selected.rule_index][backend];
        let addr = target
            .backend
            .pick(kind, now, rng)
            .ok_or_else(|| ResolveError::NoEndpoint {
                route: selected.route.key.clone(),
                set: target.backend.set.clone(),
            })?;
        Ok((target.clone(), addr))
    }

    /// The upstream protocol: the Route's choice, or the set's `appProtocol` for `Auto`.
    pub fn protocol(&self, route: &Route, set: &EndpointSetKey) -> AppProtocol {
        protocol(&self.source, route, set)
    }

    /// Every endpoint address in the table, for the pools (retain, drain, pre-warm).
    pub fn endpoint_addrs(&self) -> BTreeSet<EndpointAddr> {
        self.source
            .endpoint_sets
            .values()
            .flat_map(|set| set.endpoints.keys().copied())
            .collect()
    }

    /// Per (route, set) balancer statistics, for `/debug/routes`.
    pub fn stats(&self, now: Instant) -> BTreeMap<String, Vec<EndpointStats>> {
        self.backends
            .iter()
            .flat_map(|(route, sets)| sets.iter().map(move |(set, state)| (route, set, state)))
            .map(|(route, set, state)| (format!("{route} -> {set}"), state.stats(now)))
            .collect()
    }

    fn backend(&self, route: &RouteKey, set: &EndpointSetKey) -> Option<&Arc<BackendState>> {
        self.backends.get(route)?.get(set)
    }
}

/// The upstream protocol for `set` in `route`: the Route's choice, or the set's
/// `appProtocol` for `Auto`.
fn protocol(source: &RouteTable, route: &Route, set: &EndpointSetKey) -> AppProtocol {
    match route.upstream.protocol {
        UpstreamProtocol::Http1 => AppProtocol::Http1,
        UpstreamProtocol::Http2 => AppProtocol::H2c,
        UpstreamProtocol::Auto => source
            .endpoint_sets
            .get(set)
            .map(|set| set.protocol())
            .unwrap_or_default(),
    }
}

/// The published table: one writer (discovery), many readers (requests, pools, admin).
#[derive(Debug)]
pub struct TableHandle {
    current: ArcSwap<Table>,
    changes: watch::Sender<Arc<Table>>,
}

impl Default for TableHandle {
    fn default() -> Self {
        let empty = Arc::new(Table::default());
        TableHandle {
            current: ArcSwap::new(Arc::clone(&empty)),
            changes: watch::Sender::new(empty),
        }
    }
}

impl TableHandle {
    /// The table to serve this request from. Lock-free.
    pub fn load(&self) -> Arc<Table> {
        self.current.load_full()
    }

    /// Publishes a new table to the request path and to subscribers.
    pub fn store(&self, table: Arc<Table>) {
        self.current.store(Arc::clone(&table));
        self.changes.send_replace(table);
    }

    /// Follows every published table (the pools use it to drain and pre-warm).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Table>> {
        self.changes.subscribe()
    }

    /// Whether a first table has been applied (`/ready`).
    pub fn is_ready(&self) -> bool {
        self.current.load().version.is_some()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;
    use crate::discovery::testing;

    /// One route `shop/orders` (host `orders.shop`) over one set with `endpoints`.
    fn table(endpoints: &[&str]) -> Arc<RouteTable> {
        Arc::new(testing::table(endpoints))
    }

    const V1: Version = Version {
        epoch: 1,
        sequence: 1,
    };

    #[test]
    fn resolve_routes_and_picks_and_errors_name_the_reason() {
        let now = Instant::now();
        let mut rng = SmallRng::seed_from_u64(7);
        let t = Table::build(
            table(&["127.0.0.11:8080"]),
            V1,
            &Table::default(),
            (None, None),
            now,
        );
        let (target, addr) = t
            .resolve("Orders.Shop:4140", "/x", now, &mut rng)
            .expect("routed");
        assert_eq!(addr.to_string(), "127.0.0.11:8080");
        assert_eq!(target.protocol, AppProtocol::Http1);

        let err = t
            .resolve("nope", "/", now, &mut rng)
            .expect_err("unknown host");
        assert_eq!(err.reason(), "UnknownHost");

        let empty = Table::build(table(&[]), V1, &t, (None, None), now);
        let err = empty
            .resolve("orders.shop", "/", now, &mut rng)
            .expect_err("no endpoints");
        assert_eq!(err.reason(), "NoEndpoint");
    }

    #[test]
    fn balancer_state_survives_a_new_version() {
        let now = Instant::now();
        let mut rng = SmallRng::seed_from_u64(7);
        let first = Table::build(
            table(&["127.0.0.11:8080"]),
            V1,
            &Table::default(),
            (None, None),
            now,
        );
        let (target, _) = first
            .resolve("orders.shop", "/", now, &mut rng)
            .expect("routed");
        let second = Table::build(
            table(&["127.0.0.11:8080", "127.0.0.12:8080"]),
            V1,
            &first,
            (None, None),
            now,
        );
        let (again, _) = second
            .resolve("orders.shop", "/", now, &mut rng)
            .expect("routed");
        assert!(
            Arc::ptr_eq(&target.backend, &again.backend),
            "the balancer of a surviving (route, set) must be reused, not rebuilt"
        );
        let in_flight: u32 = again.backend.stats(now).iter().map(|s| s.in_flight).sum();
        assert_eq!(in_flight, 2, "in-flight counts carry over across versions");
    }
}
