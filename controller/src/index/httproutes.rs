//! The index's HTTPRoute calls: each one re-synthesizes the groups (`gamma`) of the
//! Services the route was or is attached to, and the group goes through the same
//! claims and resolution as a Route.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use fairway_proto::model::RouteKey;

use super::endpoints::ServiceRef;
use super::gamma::{self, HttpRouteComputed, HttpRouteEntry};
use super::{Changes, Index};
use crate::httproute::HTTPRoute;

impl Index {
    /// Adds or updates an HTTPRoute.
    pub fn apply_http_route(&mut self, route: &HTTPRoute) -> Changes {
        let entry = gamma::parse(route);
        self.set_http_route(entry.key.clone(), Some(entry))
    }

    /// Removes an HTTPRoute; its Services' groups lose its rules.
    pub fn delete_http_route(&mut self, route: &HTTPRoute) -> Changes {
        self.set_http_route(gamma::key_of(route), None)
    }

    /// Replaces every HTTPRoute at once (a relist).
    pub fn replace_http_routes<I>(&mut self, routes: I) -> Changes
    where
        I: IntoIterator,
        I::Item: Borrow<HTTPRoute>,
    {
        let mut services: BTreeSet<ServiceRef> = self.gamma_members.keys().cloned().collect();
        self.http_routes = (routes.into_iter())
            .map(|r| gamma::parse(r.borrow()))
            .map(|e| (e.key.clone(), e))
            .collect();
        self.gamma_members.clear();
        for (key, entry) in &self.http_routes {
            for service in entry.served_services() {
                services.insert(service.clone());
                let members = self.gamma_members.entry(service).or_default();
                members.insert(key.clone());
            }
        }
        let mut changes = Changes::default();
        for service in &services {
            merge(&mut changes, self.regroup(service));
        }
        changes
    }

    /// The computed status of every HTTPRoute with a Service parent. An HTTPRoute
    /// attached only to Gateways is not ours and has none.
    pub fn http_route_statuses(&self) -> BTreeMap<RouteKey, HttpRouteComputed> {
        let group_accepted = |service: &ServiceRef| {
            let resolution = self.resolutions.get(&gamma::group_key(service))?;
            Some(resolution.accepted.clone())
        };
        (self.http_routes.iter())
            .filter(|(_, entry)| !entry.parents.is_empty())
            .map(|(key, entry)| {
                let status = gamma::status(entry, &self.endpoints, group_accepted);
                (key.clone(), status)
            })
            .collect()
    }

    fn set_http_route(&mut self, key: RouteKey, entry: Option<HttpRouteEntry>) -> Changes {
        let old = match &entry {
            Some(entry) => self.http_routes.insert(key.clone(), entry.clone()),
            None => self.http_routes.remove(&key),
        };
        let old_served = old
            .as_ref()
            .map(|e| e.served_services())
            .unwrap_or_default();
        let new_served = entry
            .as_ref()
            .map(|e| e.served_services())
            .unwrap_or_default();
        for service in old_served.difference(&new_served) {
            if let Some(members) = self.gamma_members.get_mut(service) {
                members.remove(&key);
                if members.is_empty() {
                    self.gamma_members.remove(service);
                }
            }
        }
        for service in &new_served {
            let members = self.gamma_members.entry(service.clone()).or_default();
            members.insert(key.clone());
        }
        let mut changes = Changes::default();
        for service in old_served.union(&new_served) {
            merge(&mut changes, self.regroup(service));
        }
        changes
    }

    /// Regroups every Service with members: after a relist of Services, which may have
    /// brought a group's Service (or taken it away).
    pub(super) fn regroup_all(&mut self, changes: &mut Changes) {
        let services: Vec<ServiceRef> = self.gamma_members.keys().cloned().collect();
        for service in &services {
            merge(changes, self.regroup(service));
        }
    }

    /// Re-synthesizes the group of `service` from its members and puts it through the
    /// claims and resolution, or takes it out (no member, or no such Service).
    pub(super) fn regroup(&mut self, service: &ServiceRef) -> Changes {
        let key = gamma::group_key(service);
        let members = self.gamma_members.get(service).into_iter().flatten();
        let entries = members.filter_map(|k| self.http_routes.get(k));
        let group = if self.endpoints.service(service).is_some() {
            gamma::group(service, entries, &self.cluster_domain)
        } else {
            None
        };
        if group.is_none() && !self.routes.contains_key(&key) {
            return Changes::default();
        }
        self.set_route(key, group)
    }
}

fn merge(into: &mut Changes, from: Changes) {
    into.routes.extend(from.routes);
    into.endpoint_sets.extend(from.endpoint_sets);
}
