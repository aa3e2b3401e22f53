//! What changed between two route tables, at endpoint granularity, and how to apply it.
//!
//! The controller computes [`diff`]`(last_sent, current)` and sends it as a `Delta`
//! ([`TableDiff::to_message`]); the proxy decodes it ([`TableDiff::from_proto`]), checks
//! the base version, and [`apply`]s it to a copy of its table. Both functions are pure:
//! `apply(old, diff(old, new)) == new` for any two tables (property-tested).
//!
//! Routes change whole (their config is small); endpoint sets change one endpoint at a
//! time, so one pod changing in a 5,000-pod Service costs one endpoint on the wire.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::convert::{ConvertError, required};
use crate::model::{
    Endpoint, EndpointAddr, EndpointSet, EndpointSetKey, Route, RouteKey, RouteTable, Version,
};
use crate::pb;

/// The changes that turn one [`RouteTable`] into another. Every list is in key order,
/// so equal inputs give equal diffs. Applied in field order: routes removed, routes
/// upserted, sets removed, then set changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableDiff {
    /// Routes created or changed, in full.
    pub routes_upserted: Vec<Route>,
    pub routes_removed: Vec<RouteKey>,
    /// Endpoint-level changes, one entry per created or changed set.
    pub sets: Vec<EndpointSetChange>,
    /// Sets that no longer exist.
    pub sets_removed: Vec<EndpointSetKey>,
}

/// Changes to one endpoint set. Applied as: create the set if it is missing, set
/// `app_protocol` if given, remove `remove`, then insert `upsert` (replacing any
/// endpoint with the same address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSetChange {
    pub key: EndpointSetKey,
    /// `Some(new)` when the set is new or its `appProtocol` changed (`Some(None)`: it
    /// now has none); `None`: unchanged.
    pub app_protocol: Option<Option<String>>,
    /// `Some(new)` when the set is new or its Service's ClusterIPs changed (`Some(empty)`:
    /// it now has none); `None`: unchanged.
    pub cluster_ips: Option<Vec<IpAddr>>,
    /// Endpoints created or changed, in full.
    pub upsert: Vec<Endpoint>,
    /// Endpoints gone, by address.
    pub remove: Vec<EndpointAddr>,
}

impl EndpointSetChange {
    /// A change that does nothing but ensure the set exists.
    pub fn new(key: EndpointSetKey) -> Self {
        EndpointSetChange {
            key,
            app_protocol: None,
            cluster_ips: None,
            upsert: Vec::new(),
            remove: Vec::new(),
        }
    }
}

impl TableDiff {
    /// True when the diff lists nothing. [`diff`] returns an empty diff exactly when
    /// the tables are equal; the controller then sends no delta.
    pub fn is_empty(&self) -> bool {
        self.routes_upserted.is_empty()
            && self.routes_removed.is_empty()
            && self.sets.is_empty()
            && self.sets_removed.is_empty()
    }

    /// Number of endpoints upserted or removed, over all sets (for logs and metrics).
    pub fn endpoint_changes(&self) -> usize {
        self.sets
            .iter()
            .map(|s| s.upsert.len() + s.remove.len())
            .sum()
    }

    /// This diff as a wire `Delta` on top of `base`.
    pub fn to_proto(&self, base: Version) -> pb::Delta {
        pb::Delta {
            base: Some(base.into()),
            upsert_routes: self.routes_upserted.iter().map(pb::Route::from).collect(),
            remove_routes: self.routes_removed.iter().map(pb::RouteKey::from).collect(),
            sets: self.sets.iter().map(pb::EndpointSetDelta::from).collect(),
            remove_sets: self
                .sets_removed
                .iter()
                .map(pb::EndpointSetKey::from)
                .collect(),
        }
    }

    /// The controller message for this diff: it takes a proxy serving `base` to
    /// `version`.
    ///
    /// A diff touching most of a big table can exceed the stream's message limit; the
    /// controller should send a snapshot instead when `encoded_len()` of the result is
    /// above [`crate::snapshot::DEFAULT_MAX_CHUNK_BYTES`].
    pub fn to_message(&self, base: Version, version: Version) -> pb::ControllerMessage {
        pb::ControllerMessage {
            version: Some(version.into()),
            kind: Some(pb::controller_message::Kind::Delta(self.to_proto(base))),
        }
    }

    /// A wire `Delta` as `(base, diff)`. The caller must check `base` against the
    /// version it serves before applying (and nack on a mismatch).
    pub fn from_proto(delta: pb::Delta) -> Result<(Version, TableDiff), ConvertError> {
        let base = required(delta.base, "Delta.base")?.into();
        let diff = TableDiff {
            routes_upserted: delta
                .upsert_routes
                .into_iter()
                .map(Route::try_from)
                .collect::<Result<_, _>>()?,
            routes_removed: delta
                .remove_routes
                .into_iter()
                .map(RouteKey::from)
                .collect(),
            sets: delta
                .sets
                .into_iter()
                .map(EndpointSetChange::try_from)
                .collect::<Result<_, _>>()?,
            sets_removed: delta
                .remove_sets
                .into_iter()
                .map(EndpointSetKey::try_from)
                .collect::<Result<_, _>>()?,
        };
        Ok((base, diff))
    }
}

impl From<&EndpointSetChange> for pb::EndpointSetDelta {
    fn from(c: &EndpointSetChange) -> Self {
        pb::EndpointSetDelta {
            key: Some((&c.key).into()),
            app_protocol: c.app_protocol.as_ref().map(|value| pb::AppProtocol {
                value: value.clone(),
            }),
            cluster_ips: c.cluster_ips.as_ref().map(|ips| pb::ClusterIps {
                ips: crate::convert::ips_to_proto(ips),
            }),
            upsert: c.upsert.iter().map(pb::Endpoint::from).collect(),
            remove: c
                .remove
                .iter()
                .map(|&a| pb::EndpointAddress::from(a))
                .collect(),
        }
    }
}

impl TryFrom<pb::EndpointSetDelta> for EndpointSetChange {
    type Error = ConvertError;

    fn try_from(d: pb::EndpointSetDelta) -> Result<Self, ConvertError> {
        Ok(EndpointSetChange {
            key: required(d.key, "EndpointSetDelta.key")?.try_into()?,
            app_protocol: d.app_protocol.map(|p| p.value),
            cluster_ips: d
                .cluster_ips
                .map(|c| crate::convert::ips_from_proto(c.ips))
                .transpose()?,
            upsert: d
                .upsert
                .into_iter()
                .map(Endpoint::try_from)
                .collect::<Result<_, _>>()?,
            remove: d
                .remove
                .into_iter()
                .map(EndpointAddr::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The changes that turn `old` into `new`: routes that differ in any field, and, per
/// endpoint set, only the endpoints that were added, changed or removed. Pure; an empty
/// result means the tables are equal.
pub fn diff(old: &RouteTable, new: &RouteTable) -> TableDiff {
    TableDiff {
        routes_upserted: new
            .routes
            .iter()
            .filter(|&(key, route)| old.routes.get(key) != Some(route))
            .map(|(_, route)| Route::clone(route))
            .collect(),
        routes_removed: removed_keys(&old.routes, &new.routes),
        sets: new
            .endpoint_sets
            .values()
            .filter_map(|set| diff_set(old.endpoint_sets.get(&set.key).map(|s| &**s), set))
            .collect(),
        sets_removed: removed_keys(&old.endpoint_sets, &new.endpoint_sets),
    }
}

fn removed_keys<K: Ord + Clone, V>(old: &BTreeMap<K, V>, new: &BTreeMap<K, V>) -> Vec<K> {
    old.keys()
        .filter(|k| !new.contains_key(k))
        .cloned()
        .collect()
}

/// The change for one set, or `None` when it is unchanged. A new set always yields a
/// change (carrying its `app_protocol`), even when empty, so that it gets created.
fn diff_set(old: Option<&EndpointSet>, new: &EndpointSet) -> Option<EndpointSetChange> {
    let Some(old) = old else {
        return Some(EndpointSetChange {
            key: new.key.clone(),
            app_protocol: Some(new.app_protocol.clone()),
            cluster_ips: Some(new.cluster_ips.clone()),
            upsert: new.endpoints.values().cloned().collect(),
            remove: Vec::new(),
        });
    };
    let change = EndpointSetChange {
        key: new.key.clone(),
        app_protocol: (old.app_protocol != new.app_protocol).then(|| new.app_protocol.clone()),
        cluster_ips: (old.cluster_ips != new.cluster_ips).then(|| new.cluster_ips.clone()),
        upsert: new
            .endpoints
            .iter()
            .filter(|&(addr, ep)| old.endpoints.get(addr) != Some(ep))
            .map(|(_, ep)| ep.clone())
            .collect(),
        remove: removed_keys(&old.endpoints, &new.endpoints),
    };
    let unchanged = change.app_protocol.is_none()
        && change.cluster_ips.is_none()
        && change.upsert.is_empty()
        && change.remove.is_empty();
    (!unchanged).then_some(change)
}

/// Applies `d` to `table` in place. Never fails: removing something absent is a no-op,
/// and a change to a missing set creates it. Whether `d` was meant for this table is
/// the caller's check (the delta's `base` version).
pub fn apply(table: &mut RouteTable, d: &TableDiff) {
    for key in &d.routes_removed {
        table.routes.remove(key);
    }
    for route in &d.routes_upserted {
        table
            .routes
            .insert(route.key.clone(), Arc::new(route.clone()));
    }
    for key in &d.sets_removed {
        table.endpoint_sets.remove(key);
    }
    for change in &d.sets {
        // Copy-on-write: a set still shared with an older table is copied first.
        let set = Arc::make_mut(
            table
                .endpoint_sets
                .entry(change.key.clone())
                .or_insert_with(|| Arc::new(EndpointSet::new(change.key.clone()))),
        );
        if let Some(app_protocol) = &change.app_protocol {
            set.app_protocol.clone_from(app_protocol);
        }
        if let Some(cluster_ips) = &change.cluster_ips {
            set.cluster_ips.clone_from(cluster_ips);
        }
        for addr in &change.remove {
            set.endpoints.remove(addr);
        }
        for ep in &change.upsert {
            // Keyed by address: an upsert replaces, so an address is never listed twice.
            set.endpoints.insert(ep.addr, ep.clone());
        }
    }
}

#[cfg(test)]
mod tests;
