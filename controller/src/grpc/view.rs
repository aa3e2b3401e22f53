//! One sidecar stream's scope: the destinations it subscribed to and the table it is
//! shown (discovery.proto, "Scope"). Pure: [`Subscriptions::view`] is the scoped table
//! of a version (for a snapshot or a rebase), [`Subscriptions::delta`] the one delta
//! that takes the scoped table the sidecar holds to the scoped table of the latest
//! version, computed from the versions' diffs and the shared [`Scope`]: O(changes and
//! subscriptions), never a walk of the table.
//!
//! The scoped table of a version: every Route users declared, and an implicit Route
//! only when its set is one the subscriptions resolve to; every set a declared Route
//! sends to, and every set the subscriptions resolve to. A destination no Service has
//! is remembered (a Service created a moment ago may not have reached us, and the
//! sidecar sends each destination once): it resolves as soon as one does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fairway_proto::diff::{EndpointSetChange, TableDiff};
use fairway_proto::scope::{MAX_SUBSCRIPTIONS, ServiceDestination};
use fairway_proto::{Endpoint, EndpointAddr, EndpointSet, EndpointSetKey, RouteKey, RouteTable};
use fairway_proto::{Version, model};

use super::scope::{Scope, implicit_route, implicit_set, is_implicit};

/// What a subscription did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscribed {
    /// New: the next plan brings its Service, if any.
    Added,
    /// Already subscribed: nothing changes.
    Known,
    /// [`MAX_SUBSCRIPTIONS`] reached: ignored, the sidecar keeps passing it through.
    Full,
}

/// A sidecar stream's subscriptions, and what they resolved to in the scoped table last
/// planned.
#[derive(Clone, Debug, Default)]
pub struct Subscriptions {
    wanted: BTreeSet<ServiceDestination>,
    /// The sets the subscriptions resolved to in the table last planned; `None`: not
    /// known (a stream that resumed: the sidecar's table came from another stream).
    resolved: Option<BTreeSet<EndpointSetKey>>,
    /// A subscription was added since the last plan.
    added: bool,
}

impl Subscriptions {
    /// The subscriptions a hello lists (at most [`MAX_SUBSCRIPTIONS`]).
    pub fn new(initial: impl IntoIterator<Item = ServiceDestination>) -> Self {
        Subscriptions {
            wanted: initial.into_iter().take(MAX_SUBSCRIPTIONS).collect(),
            resolved: None,
            added: false,
        }
    }

    pub fn subscribe(&mut self, destination: ServiceDestination) -> Subscribed {
        if self.wanted.contains(&destination) {
            Subscribed::Known
        } else if self.wanted.len() >= MAX_SUBSCRIPTIONS {
            Subscribed::Full
        } else {
            self.wanted.insert(destination);
            self.added = true;
            Subscribed::Added
        }
    }

    pub fn len(&self) -> usize {
        self.wanted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// A subscription was added since the last plan: the scoped table may have grown
    /// without a new version.
    pub fn added(&self) -> bool {
        self.added
    }

    fn resolve(&self, scope: &Scope) -> BTreeSet<EndpointSetKey> {
        (self.wanted.iter())
            .filter_map(|d| scope.resolve(d).cloned())
            .collect()
    }

    /// The scoped table of `table`, whose scope is `scope` (the same version).
    pub fn view(&mut self, scope: &Scope, table: &RouteTable) -> RouteTable {
        let resolved = self.resolve(scope);
        let view = RouteTable {
            routes: (table.routes.iter())
                .filter(|(key, _)| route_in(key, &resolved))
                .map(|(k, r)| (k.clone(), Arc::clone(r)))
                .collect(),
            endpoint_sets: (table.endpoint_sets.iter())
                .filter(|(key, _)| scope.is_explicit(key) || resolved.contains(*key))
                .map(|(k, s)| (k.clone(), Arc::clone(s)))
                .collect(),
        };
        self.resolved = Some(resolved);
        self.added = false;
        view
    }

    /// The delta that takes the scoped table of `from` (the version last planned) to
    /// the scoped table of `latest` (whose scope is `scope`), given the diffs from
    /// `from` to `latest` in order. Empty when nothing the sidecar holds changed: it is
    /// sent anyway, so the sidecar follows every version. `None` when `from` is too far
    /// back for the scope to tell what the sidecar holds: send a snapshot.
    pub fn delta(
        &mut self,
        scope: &Scope,
        from: Version,
        diffs: &[Arc<TableDiff>],
        latest: &RouteTable,
    ) -> Option<TableDiff> {
        let now = self.resolve(scope);
        let then = self.resolved.as_ref();
        // Sets whose subscription changed. Unknown before: every one subscribed now,
        // and every one that changed since (a set it resolved to then, and not now,
        // lost its ClusterIP or went: the diffs name it).
        let moved: BTreeSet<EndpointSetKey> = match then {
            Some(then) => then.symmetric_difference(&now).cloned().collect(),
            None => {
                let changed = diffs
                    .iter()
                    .flat_map(|d| (d.sets.iter().map(|c| &c.key)).chain(&d.sets_removed));
                now.iter().chain(changed).cloned().collect()
            }
        };
        let mut out = TableDiff::default();

        let mut routes: BTreeSet<&RouteKey> = BTreeSet::new();
        for d in diffs {
            routes.extend(d.routes_upserted.iter().map(|r| &r.key));
            routes.extend(&d.routes_removed);
        }
        let implicit_moved: Vec<RouteKey> = moved.iter().map(implicit_route).collect();
        routes.extend(&implicit_moved);
        for key in routes {
            let was_in = match implicit_set(key).filter(|_| is_implicit(key)) {
                None => Some(true),
                Some(set) => then.map(|then| then.contains(&set)),
            };
            match latest.routes.get(key).filter(|_| route_in(key, &now)) {
                Some(route) => out.routes_upserted.push(model::Route::clone(route)),
                None if was_in != Some(false) => out.routes_removed.push(key.clone()),
                None => {}
            }
        }

        let mut sets: BTreeMap<&EndpointSetKey, Vec<&EndpointSetChange>> = BTreeMap::new();
        let mut removed: BTreeSet<&EndpointSetKey> = BTreeSet::new();
        for d in diffs {
            for change in &d.sets {
                sets.entry(&change.key).or_default().push(change);
            }
            for key in &d.sets_removed {
                sets.entry(key).or_default();
                removed.insert(key);
            }
        }
        let flipped = scope.flipped_after(from)?;
        for key in moved.iter().chain(flipped) {
            sets.entry(key).or_default();
        }
        for (key, changes) in sets {
            let explicit_then = scope.was_explicit(key, from)?;
            let was_in = match then {
                _ if explicit_then => Some(true),
                Some(then) => Some(then.contains(key)),
                None => None,
            };
            let is_in = scope.is_explicit(key) || now.contains(key);
            match latest.endpoint_sets.get(key).filter(|_| is_in) {
                Some(_) if was_in == Some(true) && !removed.contains(key) => {
                    let change = compose(key, &changes);
                    if !is_noop(&change) {
                        out.sets.push(change);
                    }
                }
                Some(set) => {
                    if was_in != Some(false) {
                        out.sets_removed.push(key.clone());
                    }
                    out.sets.push(whole(set));
                }
                None if was_in != Some(false) => out.sets_removed.push(key.clone()),
                None => {}
            }
        }
        self.resolved = Some(now);
        self.added = false;
        Some(out)
    }
}

/// Whether a Route is in the scoped table, given the sets the subscriptions resolve to.
fn route_in(key: &RouteKey, resolved: &BTreeSet<EndpointSetKey>) -> bool {
    !is_implicit(key) || implicit_set(key).is_some_and(|set| resolved.contains(&set))
}

/// The changes of one set over several versions as one change (the set was not
/// removed in between): the last `app_protocol` and ClusterIPs given, and each
/// endpoint's last state.
fn compose(key: &EndpointSetKey, changes: &[&EndpointSetChange]) -> EndpointSetChange {
    let mut out = EndpointSetChange::new(key.clone());
    let mut endpoints: BTreeMap<EndpointAddr, Option<&Endpoint>> = BTreeMap::new();
    for change in changes {
        if change.app_protocol.is_some() {
            out.app_protocol.clone_from(&change.app_protocol);
        }
        if change.cluster_ips.is_some() {
            out.cluster_ips.clone_from(&change.cluster_ips);
        }
        for addr in &change.remove {
            endpoints.insert(*addr, None);
        }
        for endpoint in &change.upsert {
            endpoints.insert(endpoint.addr, Some(endpoint));
        }
    }
    for (addr, endpoint) in endpoints {
        match endpoint {
            Some(endpoint) => out.upsert.push(endpoint.clone()),
            None => out.remove.push(addr),
        }
    }
    out
}

fn is_noop(change: &EndpointSetChange) -> bool {
    change.app_protocol.is_none()
        && change.cluster_ips.is_none()
        && change.upsert.is_empty()
        && change.remove.is_empty()
}

/// A set in full, as a change that creates it (after a removal: replaces it).
fn whole(set: &EndpointSet) -> EndpointSetChange {
    EndpointSetChange {
        key: set.key.clone(),
        app_protocol: Some(set.app_protocol.clone()),
        cluster_ips: Some(set.cluster_ips.clone()),
        upsert: set.endpoints.values().cloned().collect(),
        remove: Vec::new(),
    }
}

#[cfg(test)]
#[path = "view/tests.rs"]
mod tests;
