//! The index: Routes × Services × EndpointSlices in, a [`RouteTable`] and per-Route
//! statuses out. Pure: no client, no `.await`, no I/O; the watchers feed it and the
//! snapshot publisher and the status writer read it.
//!
//! Where to start: [`Index`]'s `apply_*` / `delete_*` (one watch event each) and
//! `replace_*` (a relist, swapped in at `InitDone`). Each returns the [`Changes`] it made,
//! so readers recompute only those. Then:
//! - `routes`: validating a Route; `resolve`: its claims and backends into the table;
//! - `gamma` (and `httproutes`, its calls): HTTPRoutes on a Service, merged into one
//!   synthesized Route per Service, then claimed and resolved as Routes are; `matching`,
//!   `filters`: matches and filters into the model, for both inputs; `policies`: an
//!   HTTPRoute rule's timeouts and retries; `names`: what a valid host and label are;
//! - `hosts`: which Route may claim a host, and who wins a contest;
//! - `endpoints`: Services, EndpointSlices, and building one endpoint set per port;
//! - `backend_tls`, `tls_policies` and `ca`: the TLS each set of a route gets (the
//!   Route's `upstream.tls`, else a BackendTLSPolicy on the Service port), with CA
//!   bundles from ConfigMaps, attached when the route resolves; `tls_policy_status`:
//!   each policy's status;
//! - `status`: conditions and counts as plain data;
//! - `base`: the names all of them share (below each, so none imports another's).
//!
//! Invariants (each one a test in `tests`):
//! - an endpoint set is in the table iff a Route in the table uses it *and* its Service
//!   has that TCP port; it is keyed `namespace/service:port` and shared by its users;
//! - a Route with an invalid spec is out of the table and reports `InvalidSpec`; every
//!   other Route is unaffected;
//! - a Route whose Service or port is missing stays in the table, its set absent;
//! - a Service's namespaced names are served only by Routes of its namespace (others
//!   keep their other hosts); a contested host belongs to the oldest permitted Route;
//! - an EndpointSlice event rebuilds only its Service's endpoint sets;
//! - a route speaks TLS to a set iff its own `upstream.tls` or a BackendTLSPolicy on
//!   the set's Service port applies; a policy's faults are that policy's status only.

mod backend_tls;
mod base;
mod ca;
mod endpoints;
mod filters;
mod gamma;
mod health;
mod hosts;
mod httproutes;
mod implicit;
mod matching;
mod names;
mod opt_in;
mod policies;
mod resolve;
mod routes;
mod status;
#[cfg(test)]
mod tests;
mod tls_policies;
mod tls_policy_status;

use std::{borrow::Borrow, collections::BTreeMap, collections::BTreeSet, sync::Arc};

use fairway_proto::model::{EndpointSetKey, RouteKey, RouteTable};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::crd::{self, EndpointCounts};
use endpoints::{EndpointStore, ServiceRef};
use hosts::HostClaims;
use {resolve::Resolution, routes::RouteEntry};

pub use base::{Changes, DEFAULT_NAMESPACE, SpecError};
pub use endpoints::SERVICE_NAME_LABEL;
pub use gamma::{HttpRouteComputed, ParentStatus};
pub use hosts::DEFAULT_CLUSTER_DOMAIN;
pub use implicit::IMPLICIT_LABEL;
pub use status::{
    ACCEPTED, ComputedStatus, ConditionState, ConditionStatus, RESOLVED_REFS, Reason,
};
pub use tls_policy_status::{AncestorStatus, PolicyComputed};

/// Routes, Services and EndpointSlices, and the route table they make.
#[derive(Debug)]
pub struct Index {
    /// The cluster DNS domain: `*.NS.svc.<domain>` names belong to namespace `NS`.
    cluster_domain: String,
    /// Routes, and the synthesized groups of HTTPRoutes (`gamma`), by table key.
    routes: BTreeMap<RouteKey, RouteEntry>,
    /// HTTPRoutes by their own key; their groups live in `routes`.
    http_routes: BTreeMap<RouteKey, gamma::HttpRouteEntry>,
    /// The served HTTPRoutes of each Service, the members of its group.
    gamma_members: BTreeMap<ServiceRef, BTreeSet<RouteKey>>,
    claims: HostClaims,
    /// Which Routes name which Service, so a Service event re-resolves only them.
    routes_by_service: BTreeMap<ServiceRef, BTreeSet<RouteKey>>,
    endpoints: EndpointStore,
    resolutions: BTreeMap<RouteKey, Resolution>,
    /// The table Routes using each endpoint set (present or not).
    users: BTreeMap<EndpointSetKey, BTreeSet<RouteKey>>,
    counts: BTreeMap<EndpointSetKey, EndpointCounts>,
    table: RouteTable,
    /// `--implicit-services`: every Service is served without a Route (`implicit`).
    implicit_all: bool,
    /// The implicit Routes in the table, by Service, each with the set it sends to.
    implicit: BTreeMap<ServiceRef, BTreeMap<RouteKey, EndpointSetKey>>,
    /// Namespaces labelled `fairway.dev/implicit: enabled`: all their Services implicit.
    implicit_namespaces: BTreeSet<String>,
    /// CA bundles for TLS to pods, from ConfigMaps (`ca`).
    cas: ca::CaStore,
    /// Gateway API BackendTLSPolicies: TLS to the pods of Service ports (`tls_policies`).
    tls_policies: tls_policies::Policies,
}

impl Default for Index {
    fn default() -> Self {
        Index::with_cluster_domain(DEFAULT_CLUSTER_DOMAIN)
    }
}

impl Index {
    /// An empty index for the default cluster domain, `cluster.local`.
    pub fn new() -> Self {
        Index::default()
    }

    /// An empty index for a cluster whose DNS domain is `cluster_domain`.
    pub fn with_cluster_domain(cluster_domain: &str) -> Self {
        Index {
            cluster_domain: cluster_domain.trim_end_matches('.').to_ascii_lowercase(),
            routes: BTreeMap::new(),
            http_routes: BTreeMap::new(),
            gamma_members: BTreeMap::new(),
            claims: HostClaims::default(),
            routes_by_service: BTreeMap::new(),
            endpoints: EndpointStore::default(),
            resolutions: BTreeMap::new(),
            users: BTreeMap::new(),
            counts: BTreeMap::new(),
            table: RouteTable::default(),
            implicit_all: false,
            implicit: BTreeMap::new(),
            implicit_namespaces: BTreeSet::new(),
            cas: ca::CaStore::new(),
            tls_policies: tls_policies::Policies::default(),
        }
    }

    /// This index with every Service served without a Route (`--implicit-services`),
    /// not only those labelled `fairway.dev/implicit: enabled`. Set before any object
    /// is applied.
    pub fn with_implicit_services(mut self, all: bool) -> Self {
        self.implicit_all = all;
        self
    }

    /// The current route table: every served Route and the endpoint sets they use.
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// The computed status of one Route, `None` if the index does not hold it (HTTPRoute
    /// groups have no Route object, so none either).
    pub fn status(&self, key: &RouteKey) -> Option<ComputedStatus> {
        if gamma::is_group_key(key) {
            return None;
        }
        self.resolutions.get(key).map(|r| self.computed(r))
    }

    /// The computed status of every Route, valid or not.
    pub fn statuses(&self) -> BTreeMap<RouteKey, ComputedStatus> {
        let all = self
            .resolutions
            .iter()
            .filter(|(k, _)| !gamma::is_group_key(k));
        all.map(|(key, r)| (key.clone(), self.computed(r)))
            .collect()
    }

    /// Adds or updates a Route.
    pub fn apply_route(&mut self, route: &crd::Route) -> Changes {
        let entry = routes::parse(route);
        let key = entry.claim.key.clone();
        self.set_route(key, Some(entry))
    }

    /// Removes a Route; the hosts it held pass to the next-oldest permitted claimant.
    pub fn delete_route(&mut self, route: &crd::Route) -> Changes {
        self.set_route(routes::route_key(route), None)
    }

    /// Adds or updates a Service: re-resolves the Routes naming it, and those claiming
    /// its two-label name `NAME.NS`, and rebuilds its sets.
    pub fn apply_service(&mut self, service: &Service) -> Changes {
        let name = self.endpoints.apply_service(service);
        let mut changes = self.service_changed(&name);
        self.refresh_implicit(&name, &mut changes);
        changes
    }

    pub fn delete_service(&mut self, service: &Service) -> Changes {
        let name = self.endpoints.delete_service(service);
        let mut changes = self.service_changed(&name);
        self.refresh_implicit(&name, &mut changes);
        changes
    }

    /// Adds or updates an EndpointSlice: rebuilds only its Service's endpoint sets.
    pub fn apply_slice(&mut self, slice: &EndpointSlice) -> Changes {
        let services = self.endpoints.apply_slice(slice);
        self.slices_changed(&services)
    }

    pub fn delete_slice(&mut self, slice: &EndpointSlice) -> Changes {
        let services = self.endpoints.delete_slice(slice);
        self.slices_changed(&services)
    }

    /// Replaces every Route at once (a relist): Routes absent from `routes` are gone.
    pub fn replace_routes<I>(&mut self, routes: I) -> Changes
    where
        I: IntoIterator,
        I::Item: Borrow<crd::Route>,
    {
        let entries = routes.into_iter().map(|r| routes::parse(r.borrow()));
        // HTTPRoute groups are not Routes: a relist of Routes keeps them.
        self.routes.retain(|key, _| gamma::is_group_key(key));
        self.routes
            .extend(entries.map(|e| (e.claim.key.clone(), e)));
        self.claims = HostClaims::default();
        self.routes_by_service.clear();
        for (key, entry) in &self.routes {
            self.claims.add(&entry.claim, entry.hosts());
            for service in entry.services() {
                self.routes_by_service
                    .entry(service)
                    .or_default()
                    .insert(key.clone());
            }
        }
        self.rebuild()
    }

    /// Replaces every Service at once (a relist), which may bring or end groups.
    pub fn replace_services<I>(&mut self, services: I) -> Changes
    where
        I: IntoIterator,
        I::Item: Borrow<Service>,
    {
        let services: Vec<I::Item> = services.into_iter().collect();
        self.endpoints
            .replace_services(services.iter().map(Borrow::borrow));
        let mut changes = self.rebuild();
        self.regroup_all(&mut changes);
        changes
    }

    /// Replaces every EndpointSlice at once (a relist).
    pub fn replace_slices<I>(&mut self, slices: I) -> Changes
    where
        I: IntoIterator,
        I::Item: Borrow<EndpointSlice>,
    {
        let slices: Vec<I::Item> = slices.into_iter().collect();
        self.endpoints
            .replace_slices(slices.iter().map(Borrow::borrow));
        // Every set in the table is used, so refreshing the used ones covers them all.
        let mut changes = Changes::default();
        let used: Vec<EndpointSetKey> = self.users.keys().cloned().collect();
        for key in &used {
            self.refresh_set(key, &mut changes);
        }
        changes
    }

    fn set_route(&mut self, key: RouteKey, entry: Option<RouteEntry>) -> Changes {
        let old = match &entry {
            Some(entry) => self.routes.insert(key.clone(), entry.clone()),
            None => self.routes.remove(&key),
        };
        let mut touched_hosts = BTreeSet::new();
        for (entry, add) in [(&old, false), (&entry, true)] {
            let Some(entry) = entry else { continue };
            touched_hosts.extend(entry.hosts().iter().cloned());
            if add {
                self.claims.add(&entry.claim, entry.hosts());
            } else {
                self.claims.remove(&entry.claim, entry.hosts());
            }
            for service in entry.services() {
                let names = self.routes_by_service.entry(service.clone()).or_default();
                if add {
                    names.insert(key.clone());
                } else {
                    names.remove(&key);
                    if names.is_empty() {
                        self.routes_by_service.remove(&service);
                    }
                }
            }
        }
        // Any Route contesting a touched host may have won or lost it.
        let mut affected = BTreeSet::from([key]);
        for host in &touched_hosts {
            affected.extend(self.claims.claimants(host).cloned());
        }
        let mut changes = Changes::default();
        self.resolve(affected, &mut changes);
        changes
    }

    fn service_changed(&mut self, service: &ServiceRef) -> Changes {
        let mut changes = Changes::default();
        let mut affected = self
            .routes_by_service
            .get(service)
            .cloned()
            .unwrap_or_default();
        // The Service's two-label name is reserved while it exists: its claimants may
        // have gained or lost it.
        let short_name = format!("{}.{}", service.name, service.namespace);
        affected.extend(self.claims.claimants(&short_name).cloned());
        // A group exists only while its Service does.
        if self.gamma_members.contains_key(service) {
            let group = self.regroup(service);
            affected.remove(&gamma::group_key(service));
            changes.routes.extend(group.routes);
            changes.endpoint_sets.extend(group.endpoint_sets);
        }
        self.resolve(affected, &mut changes);
        self.slices_changed_into(std::slice::from_ref(service), &mut changes);
        changes
    }

    fn slices_changed(&mut self, services: &BTreeSet<ServiceRef>) -> Changes {
        let services: Vec<ServiceRef> = services.iter().cloned().collect();
        let mut changes = Changes::default();
        self.slices_changed_into(&services, &mut changes);
        changes
    }

    /// Rebuilds the used endpoint sets of these Services.
    fn slices_changed_into(&mut self, services: &[ServiceRef], changes: &mut Changes) {
        for service in services {
            let keys: Vec<EndpointSetKey> = self
                .users
                .range(service.set_range())
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                self.refresh_set(&key, changes);
            }
        }
    }

    /// Re-resolves Routes, then rebuilds the endpoint sets that gained their first user
    /// or lost their last.
    fn resolve(&mut self, keys: BTreeSet<RouteKey>, changes: &mut Changes) {
        let mut transitioned = BTreeSet::new();
        for key in keys {
            let new = (self.routes.get(&key)).map(|entry| {
                let domain = &self.cluster_domain;
                let resolved = resolve::resolve(entry, &self.claims, domain, &self.endpoints);
                backend_tls::attach(resolved, entry, &self.tls_sources())
            });
            let old = match new {
                Some(new) => self.resolutions.insert(key.clone(), new),
                None => self.resolutions.remove(&key),
            };
            let old_sets = old.map(|r| r.sets).unwrap_or_default();
            let new_res = self.resolutions.get(&key);
            let new_sets = new_res.map(|r| r.sets.clone()).unwrap_or_default();
            for set in old_sets.difference(&new_sets) {
                if let Some(users) = self.users.get_mut(set) {
                    users.remove(&key);
                    if users.is_empty() {
                        self.users.remove(set);
                        transitioned.insert(set.clone());
                    }
                }
            }
            for set in new_sets.difference(&old_sets) {
                let users = self.users.entry(set.clone()).or_default();
                if users.is_empty() {
                    transitioned.insert(set.clone());
                }
                users.insert(key.clone());
            }
            match new_res.and_then(|r| r.route.clone()) {
                Some(route) => self.table.routes.insert(key.clone(), Arc::new(route)),
                None => self.table.routes.remove(&key),
            };
            changes.routes.insert(key);
        }
        for set in &transitioned {
            self.refresh_set(set, changes);
        }
    }

    /// Puts an endpoint set in the table, rebuilt, if it is used and resolvable, or takes
    /// it out. Its users' counts change with it.
    fn refresh_set(&mut self, key: &EndpointSetKey, changes: &mut Changes) {
        let built = match self.users.get(key) {
            Some(users) => {
                changes.routes.extend(users.iter().cloned());
                self.endpoints.build(key)
            }
            None => None,
        };
        match built {
            Some((set, counts)) => {
                self.table.endpoint_sets.insert(key.clone(), set.into());
                self.counts.insert(key.clone(), counts);
            }
            None => {
                self.table.endpoint_sets.remove(key);
                self.counts.remove(key);
            }
        }
        changes.endpoint_sets.insert(key.clone());
    }

    /// Recomputes everything derived from the stored objects (after a relist).
    fn rebuild(&mut self) -> Changes {
        let mut changes = Changes::default();
        changes.routes.extend(self.resolutions.keys().cloned());
        changes
            .endpoint_sets
            .extend(self.table.endpoint_sets.keys().cloned());
        self.resolutions.clear();
        self.users.clear();
        self.counts.clear();
        self.table = RouteTable::default();
        let keys: BTreeSet<RouteKey> = self.routes.keys().cloned().collect();
        self.resolve(keys, &mut changes);
        changes
            .routes
            .extend(self.implicit.values().flat_map(|r| r.keys().cloned()));
        self.implicit.clear();
        let services: Vec<ServiceRef> = self.endpoints.service_refs().cloned().collect();
        for service in &services {
            self.refresh_implicit(service, &mut changes);
        }
        changes
    }

    fn computed(&self, resolution: &Resolution) -> ComputedStatus {
        let mut endpoints = EndpointCounts::default();
        for counts in resolution.sets.iter().filter_map(|k| self.counts.get(k)) {
            endpoints.ready = endpoints.ready.saturating_add(counts.ready);
            endpoints.serving = endpoints.serving.saturating_add(counts.serving);
            endpoints.total = endpoints.total.saturating_add(counts.total);
        }
        ComputedStatus {
            observed_generation: resolution.generation,
            accepted: resolution.accepted.clone(),
            resolved_refs: resolution.resolved_refs.clone(),
            endpoints,
        }
    }
}
