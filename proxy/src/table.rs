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
use fairway_proto::load::{BackendLoad, LoadFigures};
use fairway_proto::model::{
    AffinityKey, AppProtocol, EndpointAddr, EndpointSetKey, Route, RouteKey, RouteTable,
    UpstreamProtocol, Version,
};
use rand::RngCore;
use tokio::sync::watch;

use crate::balance::{Balancer, EndpointStats, LoadReport, Outcome, Pick};
use crate::route::{Landed, RequestView, RouteError, Router};
use crate::tls::PodTls;

/// Reads a request's affinity key from where the Route says it is, as a hash
/// (`balance::key_hash`); `None` when the request has no such key.
pub type KeyOf<'a> = &'a dyn Fn(&AffinityKey) -> Option<u64>;

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

/// Where a routed request goes.
#[derive(Clone, Debug)]
pub enum Resolved {
    /// To this endpoint, counted as in flight.
    Pod(Target, EndpointAddr),
    /// Nowhere: its rule answers with a redirect, and no pod is contacted.
    Redirect { route: Arc<Route>, rule: usize },
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

    /// The endpoint for the next request (or upgrade), counted as started; `key`: its
    /// affinity key's hash, if the Route has affinity and the request a key. `None`:
    /// answer `503`.
    pub fn pick(
        &self,
        kind: Pick,
        key: Option<u64>,
        now: Instant,
        rng: &mut dyn RngCore,
    ) -> Option<EndpointAddr> {
        let mut balancer = self.lock();
        let addr = balancer.pick_keyed(kind, key, now, rng)?;
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

    /// [`on_end`](Self::on_end) for an answered request whose pod sent a load report.
    pub fn on_end_reported(
        &self,
        (addr, latency, outcome): (EndpointAddr, Duration, Outcome),
        report: &LoadReport,
        now: Instant,
    ) {
        let mut balancer = self.lock();
        balancer.on_end(addr, latency, outcome, now);
        balancer.on_report(addr, report, now);
    }

    pub fn stats(&self, now: Instant) -> Vec<EndpointStats> {
        self.lock().stats(now)
    }

    /// The share window's figures ([`Balancer::load`]); `None` before a first request.
    pub fn load(&self, now: Instant) -> Option<BackendLoad> {
        let endpoints = self.lock().load(now)?;
        Some(BackendLoad {
            route: self.route.clone(),
            set: self.set.clone(),
            endpoints,
        })
    }
}

/// One applied version of the route table, ready for the request path.
#[derive(Debug, Default)]
pub struct Table {
    pub version: Option<Version>,
    /// The zone topology hints were applied for (`--zone`, else the controller's word).
    pub zone: Option<String>,
    /// The node node hints were applied for (`--node`).
    node: Option<String>,
    /// Router, targets and balancers: shared with the previous version when only
    /// endpoints changed ([`build`]).
    shape: Arc<Shape>,
    /// The domain table this was built from (for `/debug/routes` and resumes).
    pub source: Arc<RouteTable>,
    /// ClusterIP:port to endpoint set, for captured connections; built on first use.
    services: std::sync::OnceLock<services::ServiceIndex>,
    /// A sidecar's own namespace (`--namespace`): bare hosts resolve there first.
    namespace: Option<Arc<str>>,
}

/// What a table's Routes determine; endpoint changes only feed its balancers.
#[derive(Debug, Default)]
struct Shape {
    router: Router,
    /// What a request needs once routed, resolved when the table is built:
    /// `targets[route][rule][backend]`, indexed like [`Router::routes`], each route's
    /// `rules` and each rule's `backends`. The request path indexes, it hashes nothing.
    targets: Vec<Vec<Vec<Target>>>,
    /// Per route, per endpoint set: where the next version finds the balancers to keep.
    backends: HashMap<RouteKey, HashMap<EndpointSetKey, Arc<BackendState>>>,
    /// Per endpoint set, every balancer fed by it (one per Route using it).
    by_set: HashMap<EndpointSetKey, Vec<Arc<BackendState>>>,
    /// Per (route, set) of a Route with TLS to its pods: what its connections verify.
    tls: HashMap<(RouteKey, EndpointSetKey), Arc<PodTls>>,
}

impl Table {
    /// Builds the table for `source`, reusing `previous`'s balancer state for every
    /// (route, set) pair that survives. `zone` and `node` are this proxy's, for hints.
    /// When only endpoints changed, the cost follows the change ([`build`]).
    pub fn build(
        source: Arc<RouteTable>,
        version: Version,
        previous: &Table,
        (zone, node): (Option<&str>, Option<&str>),
        now: Instant,
    ) -> Table {
        let (zone, node) = (zone.map(str::to_owned), node.map(str::to_owned));
        let shape = build::endpoints_only(&source, previous, (&zone, &node), now)
            .unwrap_or_else(|| Arc::new(build::shape(&source, previous, (&zone, &node), now)));
        Table {
            version: Some(version),
            zone,
            node,
            shape,
            source,
            services: std::sync::OnceLock::new(),
            namespace: None,
        }
    }

    /// This table for a sidecar in `namespace`: a bare host (`orders`) resolves to
    /// `orders.NAMESPACE`'s Route first, as cluster DNS would resolve it.
    pub fn in_namespace(mut self, namespace: Option<&str>) -> Table {
        self.namespace = namespace.map(Arc::from);
        self
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
        let request = RequestView {
            method: None,
            path_and_query: path,
            headers: &(),
        };
        match self.resolve_for(Pick::Request, authority, &request, &|_| None, now, rng)? {
            Resolved::Pod(target, addr) => Ok((target, addr)),
            Resolved::Redirect { route, .. } => Err(ResolveError::NoBackend {
                route: route.key.clone(),
            }),
        }
    }

    /// The Route a request for `authority` matches, without picking.
    pub fn route(
        &self,
        authority: &str,
        request: &RequestView<'_>,
    ) -> Result<&Route, ResolveError> {
        let namespace = self.namespace.as_deref();
        let router = &self.shape.router;
        Ok(&**router.route_request(authority, request, namespace)?.route)
    }

    /// [`resolve`](Self::resolve) for a request or an upgrade (see [`Pick`]); `key_of`
    /// reads the request's affinity key, asked only when the Route has affinity.
    pub fn resolve_for(
        &self,
        kind: Pick,
        authority: &str,
        request: &RequestView<'_>,
        key_of: KeyOf<'_>,
        now: Instant,
        rng: &mut dyn RngCore,
    ) -> Result<Resolved, ResolveError> {
        let namespace = self.namespace.as_deref();
        let selected = (self.shape.router).route_request(authority, request, namespace)?;
        if selected.rule.filters.redirect.is_some() {
            return Ok(Resolved::Redirect {
                route: Arc::clone(selected.route),
                rule: selected.rule_index,
            });
        }
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
        let target = &self.shape.targets[selected.route_index][selected.rule_index][backend];
        let affinity = selected.route.load_balancer.affinity.as_ref();
        let key = affinity.and_then(|a| key_of(&a.key));
        let addr =
            target
                .backend
                .pick(kind, key, now, rng)
                .ok_or_else(|| ResolveError::NoEndpoint {
                    route: selected.route.key.clone(),
                    set: target.backend.set.clone(),
                })?;
        Ok(Resolved::Pod(target.clone(), addr))
    }

    /// The upstream protocol: the Route's choice, or the set's `appProtocol` for `Auto`.
    pub fn protocol(&self, route: &Route, set: &EndpointSetKey) -> AppProtocol {
        protocol(&self.source, route, set)
    }

    /// The TLS of `route`'s connections to the pods of `set`; `None`: plaintext.
    pub fn tls(&self, route: &RouteKey, set: &EndpointSetKey) -> Option<Arc<PodTls>> {
        let key = (route.clone(), set.clone());
        self.shape.tls.get(&key).cloned()
    }

    /// The controller's figures of the other proxies' requests in flight, handed to
    /// every balancer over each set they name.
    pub fn take_figures(&self, figures: &LoadFigures, now: Instant) {
        for (set, endpoints) in &figures.sets {
            for backend in self.shape.by_set.get(set).into_iter().flatten() {
                backend.lock().set_others(endpoints, now);
            }
        }
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
        self.shape
            .backends
            .iter()
            .flat_map(|(route, sets)| sets.iter().map(move |(set, state)| (route, set, state)))
            .map(|(route, set, state)| (format!("{route} -> {set}"), state.stats(now)))
            .collect()
    }

    /// Per (route, set) share-window figures of every balancer that picked a request
    /// yet, ordered by route then set.
    pub fn load(&self, now: Instant) -> Vec<BackendLoad> {
        let mut loads: Vec<BackendLoad> = self
            .shape
            .backends
            .values()
            .flat_map(|sets| sets.values())
            .filter_map(|state| state.load(now))
            .collect();
        loads.sort_by(|a, b| (&a.route, &a.set).cmp(&(&b.route, &b.set)));
        loads
    }

    fn backend(&self, route: &RouteKey, set: &EndpointSetKey) -> Option<&Arc<BackendState>> {
        self.shape.backends.get(route)?.get(set)
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
    /// A sidecar's asks for more (implicit Services by destination).
    wanted: Wanted,
}

impl Default for TableHandle {
    fn default() -> Self {
        let empty = Arc::new(Table::default());
        TableHandle {
            current: ArcSwap::new(Arc::clone(&empty)),
            changes: watch::Sender::new(empty),
            wanted: Wanted::default(),
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

    /// What a sidecar asked the controller to add to its table: the captured path adds
    /// to it, the discovery client sends it.
    pub fn wanted(&self) -> &Wanted {
        &self.wanted
    }

    /// Whether a first table has been applied (`/ready`).
    pub fn is_ready(&self) -> bool {
        self.current.load().version.is_some()
    }
}

mod build;
mod health;
mod services;
mod target;
mod wanted;

pub use target::Target;
pub use wanted::{SUBSCRIBE_WAIT, Want, Wanted};

pub use health::ProbeKey;

#[cfg(test)]
mod tests;
