//! What a sidecar's scoped table is made of, following the store's versions: which
//! endpoint sets Routes users declared use (those go to every proxy), which
//! ClusterIP:port leads to which set (to resolve a subscription), and, for the last
//! versions, which sets changed from one to the other (to filter a delta against the
//! version a sidecar holds). Shared by every sidecar stream and advanced once per
//! version from its diff: O(changes), never a walk of the table (except
//! [`Scope::of`], when the history no longer reaches back).
//!
//! An implicit Route (a Service served without one, `index::implicit`) is keyed
//! `NAMESPACE/NAME:PORT` (a `:` no Route's name can hold) and sends to its Service
//! port's set `NAMESPACE/NAME:PORT`; every other Route (a Route, an HTTPRoute, a
//! Service's group of GAMMA HTTPRoutes keyed `service:NAME`) is one users declared.
//! Pure.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use fairway_proto::diff::TableDiff;
use fairway_proto::scope::ServiceDestination;
use fairway_proto::{EndpointSetKey, Route, RouteKey, RouteTable, Version};

/// Set changes kept for filtering deltas from older versions: at most this many
/// versions back (the store's history) and this many changes. A sidecar further behind
/// is filtered as if it might hold anything (correct, only larger).
pub const SCOPE_HISTORY_VERSIONS: u64 = crate::store::HISTORY_VERSIONS as u64;
pub const SCOPE_HISTORY_CHANGES: usize = 100_000;

/// Whether `key` is an implicit Route's (`NAME:PORT`). Other synthesized keys hold a
/// `:` too (a Service's GAMMA HTTPRoutes, `service:NAME`), but never a port after it:
/// a Service name starts with a letter.
pub fn is_implicit(key: &RouteKey) -> bool {
    implicit_set(key).is_some()
}

/// The implicit Route of a Service port's set.
pub fn implicit_route(set: &EndpointSetKey) -> RouteKey {
    RouteKey {
        namespace: set.namespace.clone(),
        name: format!("{}:{}", set.service, set.port),
    }
}

/// The set an implicit Route sends to, from its key alone; `None` for a Route users
/// declared (or a key that does not parse).
pub fn implicit_set(key: &RouteKey) -> Option<EndpointSetKey> {
    let (service, port) = key.name.split_once(':')?;
    Some(EndpointSetKey {
        namespace: key.namespace.clone(),
        service: service.to_owned(),
        port: port.parse().ok()?,
    })
}

fn sets_of(route: &Route) -> Vec<EndpointSetKey> {
    let mut sets: Vec<EndpointSetKey> = (route.rules.iter())
        .flat_map(|rule| rule.backends.iter().map(|b| b.endpoint_set.clone()))
        .collect();
    sets.sort_unstable();
    sets.dedup();
    sets
}

/// The scope facts of one table version (see the module comment).
#[derive(Clone, Debug, Default)]
pub struct Scope {
    version: Version,
    /// The sets of each Route users declared.
    route_sets: HashMap<RouteKey, Vec<EndpointSetKey>>,
    /// How many Routes users declared send to each set (absent: none).
    explicit: HashMap<EndpointSetKey, usize>,
    set_ips: HashMap<EndpointSetKey, Vec<IpAddr>>,
    destinations: HashMap<ServiceDestination, EndpointSetKey>,
    /// `(version, set, explicit before it)`: a set's use by declared Routes changed at
    /// `version`. Oldest first.
    flips: VecDeque<(Version, EndpointSetKey, bool)>,
    /// `flips` is complete for every version after this one.
    flips_since: Version,
    /// The last version at which `destinations` changed.
    destinations_changed: Version,
}

impl Scope {
    /// The scope of `table` at `version`, from scratch: O(table).
    pub fn of(table: &RouteTable, version: Version) -> Self {
        let mut scope = Scope {
            version,
            flips_since: version,
            destinations_changed: version,
            ..Scope::default()
        };
        for route in table.routes.values() {
            scope.put_route(route, None);
        }
        for set in table.endpoint_sets.values() {
            scope.put_ips(&set.key, &set.cluster_ips);
        }
        scope.flips.clear();
        scope
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Moves to `version` by its diff from the current version.
    pub fn advance(&mut self, version: Version, diff: &TableDiff) {
        for key in &diff.routes_removed {
            self.remove_route(key, version);
        }
        for route in &diff.routes_upserted {
            self.put_route(route, Some(version));
        }
        for key in &diff.sets_removed {
            self.put_ips(key, &[]);
            self.destinations_changed = version;
        }
        for change in &diff.sets {
            if let Some(ips) = &change.cluster_ips {
                self.put_ips(&change.key, ips);
                self.destinations_changed = version;
            }
        }
        self.version = version;
        let too_old = |v: Version| {
            v.epoch != version.epoch || v.sequence + SCOPE_HISTORY_VERSIONS < version.sequence
        };
        while let Some(&(v, _, _)) = self.flips.front() {
            if !too_old(v) && self.flips.len() <= SCOPE_HISTORY_CHANGES {
                break;
            }
            self.flips.pop_front();
            self.flips_since = v;
        }
    }

    fn remove_route(&mut self, key: &RouteKey, at: Version) {
        if let Some(old) = self.route_sets.remove(key) {
            for set in old {
                self.count(&set, -1, Some(at));
            }
        }
    }

    fn put_route(&mut self, route: &Route, at: Option<Version>) {
        if is_implicit(&route.key) {
            return;
        }
        let new = sets_of(route);
        for set in &new {
            self.count(set, 1, at);
        }
        if let Some(old) = self.route_sets.insert(route.key.clone(), new) {
            for set in old {
                self.count(&set, -1, at);
            }
        }
    }

    fn count(&mut self, set: &EndpointSetKey, by: isize, at: Option<Version>) {
        let before = self.explicit.get(set).copied().unwrap_or(0);
        let after = before.saturating_add_signed(by);
        if after == 0 {
            self.explicit.remove(set);
        } else {
            self.explicit.insert(set.clone(), after);
        }
        if let Some(at) = at
            && (before == 0) != (after == 0)
        {
            self.flips.push_back((at, set.clone(), before > 0));
        }
    }

    fn put_ips(&mut self, set: &EndpointSetKey, ips: &[IpAddr]) {
        if let Some(old) = self.set_ips.remove(set) {
            for ip in old {
                let dest = ServiceDestination::new((ip, set.port.get()).into());
                if self.destinations.get(&dest) == Some(set) {
                    self.destinations.remove(&dest);
                }
            }
        }
        if ips.is_empty() {
            return;
        }
        for &ip in ips {
            let dest = ServiceDestination::new((ip, set.port.get()).into());
            self.destinations.insert(dest, set.clone());
        }
        self.set_ips.insert(set.clone(), ips.to_vec());
    }

    /// Whether a Route users declared sends to `set` now.
    pub fn is_explicit(&self, set: &EndpointSetKey) -> bool {
        self.explicit.contains_key(set)
    }

    /// Whether one did at version `at` (at or before this scope's version); `None` when
    /// that is too far back to tell.
    pub fn was_explicit(&self, set: &EndpointSetKey, at: Version) -> Option<bool> {
        if at == self.version {
            return Some(self.is_explicit(set));
        }
        if at.epoch != self.version.epoch || at < self.flips_since || at > self.version {
            return None;
        }
        let first_after = (self.flips.iter()).find(|(v, s, _)| *v > at && s == set);
        Some(first_after.map_or_else(|| self.is_explicit(set), |&(_, _, before)| before))
    }

    /// The sets whose use by declared Routes changed after version `from` (at or
    /// before this scope's version); `None` when that is too far back to tell.
    pub fn flipped_after(&self, from: Version) -> Option<impl Iterator<Item = &EndpointSetKey>> {
        let known = from == self.version
            || (from.epoch == self.version.epoch
                && from >= self.flips_since
                && from < self.version);
        known.then(|| {
            (self.flips.iter())
                .filter(move |(v, _, _)| *v > from)
                .map(|(_, set, _)| set)
        })
    }

    /// The set a captured connection to `dest` is for, if a Service has that ClusterIP
    /// and port now.
    pub fn resolve(&self, dest: &ServiceDestination) -> Option<&EndpointSetKey> {
        self.destinations.get(dest)
    }

    /// The last version at which any resolution may have changed.
    pub fn destinations_changed(&self) -> Version {
        self.destinations_changed
    }
}

#[cfg(test)]
#[path = "scope/tests.rs"]
mod tests;
