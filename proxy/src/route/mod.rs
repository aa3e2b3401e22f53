//! The router: `(Host / :authority, path)` -> Route and rule, then a weighted backend.
//!
//! [`Router::new`] builds lookup structures once per table version;
//! [`Router::route_request`] is then a hash lookup plus a scan of one route's rules in
//! Gateway API's precedence (for prefix rules alone: longest prefix first). The router
//! never sees endpoints: a backend names an endpoint set, and the balancer for that set
//! picks the pod.
//!
//! Start at [`Router::route_request`]; host normalisation is in `host`, prefix matching
//! (and its segment rule) in `path`, exact and regex paths, method, header and query
//! conditions and the precedence in `matching`, the weighted split in `weight`, what a
//! rule's rewrite or redirect makes of a request in `rewrite`.

mod host;
mod matching;
mod path;
mod rewrite;
#[cfg(test)]
mod tests;
mod weight;

use foldhash::HashMap;
use std::sync::Arc;

use fairway_proto::model::{Route, RouteKey, RouteTable, Rule};
use rand::RngCore;

pub use host::normalize_host;
use matching::Matcher;
pub use matching::{Headers, RequestView};
pub use path::{prefix_matches, request_path};
pub use rewrite::{Origin, location, rewritten_path};
pub use weight::Landed;
use weight::landed;

/// Why a request matched no rule. Variant names double as metric labels; both
/// messages name what was asked for, so a 404 body explains itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No Route claims this host (after port stripping and lowercasing).
    #[error("no route for host {0:?}")]
    UnknownHost(String),
    /// The Route claims the host but none of its rules matches the request.
    #[error("route {route} has no rule matching path {path:?}")]
    NoRule { route: RouteKey, path: String },
}

/// The outcome of routing: the Route and the rule whose prefix won.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selected<'a> {
    /// Shared with the table: a redirect's answer keeps it past the lookup.
    pub route: &'a Arc<Route>,
    pub rule: &'a Rule,
    /// The route's position in [`Router::routes`], so a caller can keep per-route data
    /// in a `Vec` built from that order (the table's resolved targets) instead of a map.
    pub route_index: usize,
    /// The rule's position in `route.rules` (stable, for metrics and `/debug/routes`).
    pub rule_index: usize,
}

impl<'a> Selected<'a> {
    /// Picks one of the rule's backends, weighted, resolved or not; weight-0 backends
    /// are never picked. `None` when every backend has weight 0 (or there are none):
    /// answer `503`.
    pub fn pick_backend(&self, rng: &mut dyn RngCore) -> Option<Landed> {
        landed(self.rule, rng.next_u64())
    }
}

/// Lookup structures for one route table version. Owns a copy of the routes (built
/// once per version, off the request path), so it can live in an `Arc` snapshot on its
/// own: the request path borrows [`Selected`] from it.
#[derive(Clone, Debug, Default)]
pub struct Router {
    entries: Vec<RouteEntry>,
    /// Normalised host -> index into `entries`.
    hosts: HashMap<String, usize>,
    /// Normalised host and port -> index into `entries`, for Route hosts that carry a
    /// port (a Service's implicit Route: `orders.shop:8080`). Looked up only when the
    /// port-less `hosts` has no entry, so an explicit Route's claim of a name wins.
    ported: HashMap<(String, u16), usize>,
}

#[derive(Clone, Debug)]
struct RouteEntry {
    /// Shared with the table it came from: a new version copies a pointer.
    route: Arc<Route>,
    /// Indices into `route.rules` in the order they are tried (`matching::precedence`:
    /// for prefix rules alone, the longest first; equal lengths keep the Route's order).
    rules_by_prefix: Vec<usize>,
    /// Each rule's compiled match, by index into `route.rules`.
    matchers: Vec<Matcher>,
}

impl Router {
    /// Indexes every host of every route. Hosts are normalised like request hosts
    /// ([`normalize_host`]). If two Routes claim one host (the controller should have
    /// resolved that), the first in table order (by namespace/name) keeps it.
    pub fn new(table: &RouteTable) -> Self {
        let mut router = Router::default();
        for route in table.routes.values() {
            let rules_by_prefix = matching::precedence(&route.rules);
            let matchers = route.rules.iter().map(Matcher::compile).collect();
            let index = router.entries.len();
            router.entries.push(RouteEntry {
                route: Arc::clone(route),
                rules_by_prefix,
                matchers,
            });
            for host in &route.hosts {
                let name = normalize_host(host).into_owned();
                match host::port_of(host) {
                    Some(port) => router.ported.entry((name, port)).or_insert(index),
                    None => router.hosts.entry(name).or_insert(index),
                };
            }
        }
        router
    }

    /// Routes a request by its `Host` / `:authority` (port, case and a trailing dot
    /// ignored; `[::1]:80` works) and its path (query ignored). The longest matching
    /// `path_prefix` wins; see `path` for the segment rule. A rule with a condition on
    /// method, headers or query never matches here: use [`Router::route_request`].
    pub fn route(&self, authority_or_host: &str, path: &str) -> Result<Selected<'_>, RouteError> {
        let request = RequestView {
            method: None,
            path_and_query: path,
            headers: &(),
        };
        self.route_request(authority_or_host, &request, None)
    }

    /// Routes a request by its host and the first rule, in Gateway API's precedence
    /// (`matching::precedence`), whose path and conditions all match it. For a client in
    /// `namespace` (a sidecar's pod), a bare host (`orders`, no dot) is looked up as
    /// `orders.NAMESPACE` first, as cluster DNS resolves it there, then as itself.
    pub fn route_request(
        &self,
        authority_or_host: &str,
        request: &RequestView<'_>,
        namespace: Option<&str>,
    ) -> Result<Selected<'_>, RouteError> {
        let host = normalize_host(authority_or_host);
        let in_namespace = namespace
            .filter(|_| !host.contains('.') && !host.contains(':') && !host.is_empty())
            .and_then(|ns| {
                let qualified = format!("{host}.{ns}");
                self.lookup(&qualified, authority_or_host)
            });
        let found = in_namespace.or_else(|| self.lookup(&host, authority_or_host));
        let Some(index) = found else {
            return Err(RouteError::UnknownHost(host.into_owned()));
        };
        self.select(index, request)
    }

    /// The entry for normalised `host`: a port-less claim first, then one with the
    /// authority's port.
    fn lookup(&self, host: &str, authority_or_host: &str) -> Option<usize> {
        let found = self.hosts.get(host).or_else(|| {
            // Rare (implicit Routes only): the map is empty unless the controller serves
            // Services without a Route, and a name with an explicit Route never gets here.
            if self.ported.is_empty() {
                return None;
            }
            let port = host::port_of(authority_or_host)?;
            self.ported.get(&(host.to_owned(), port))
        });
        found.copied()
    }

    fn select(&self, index: usize, request: &RequestView<'_>) -> Result<Selected<'_>, RouteError> {
        let entry = &self.entries[index];
        let route = &entry.route;
        let path = matching::path_of(request.path_and_query);
        entry
            .rules_by_prefix
            .iter()
            .copied()
            .find(|&i| entry.matchers[i].matches(&route.rules[i], path, request))
            .map(|rule_index| Selected {
                route,
                rule: &route.rules[rule_index],
                route_index: index,
                rule_index,
            })
            .ok_or_else(|| RouteError::NoRule {
                route: route.key.clone(),
                path: path.to_owned(),
            })
    }

    /// The routes this router serves, in table order.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.entries.iter().map(|e| &e.route)
    }

    /// How many distinct hosts are routable (with a port or without).
    pub fn host_count(&self) -> usize {
        self.hosts.len() + self.ported.len()
    }
}
