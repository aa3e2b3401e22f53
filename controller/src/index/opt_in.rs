//! Which Services are served without a Route (issue 17, design.md 9): every one with
//! `--implicit-services`, one labelled `fairway.dev/implicit: enabled`, and every
//! Service of a Namespace so labelled; and the index's implicit Routes kept in step as
//! Services, their ports and the Namespaces' labels change. The Routes themselves are
//! `implicit`'s, purely.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fairway_proto::model::{EndpointSetKey, RouteKey};

use super::endpoints::ServiceRef;
use super::{Changes, Index, implicit};

impl Index {
    /// Opts a Namespace's Services in (`enabled`: it carries the label) or out.
    pub fn set_namespace_opt_in(&mut self, namespace: &str, enabled: bool) -> Changes {
        let changed = if enabled {
            self.implicit_namespaces.insert(namespace.to_owned())
        } else {
            self.implicit_namespaces.remove(namespace)
        };
        let mut changes = Changes::default();
        if changed {
            self.refresh_namespace(namespace, &mut changes);
        }
        changes
    }

    /// Every opted-in Namespace at once (a relist): those that left or joined change.
    pub fn replace_namespace_opt_ins(&mut self, namespaces: BTreeSet<String>) -> Changes {
        let old = std::mem::replace(&mut self.implicit_namespaces, namespaces);
        let mut changes = Changes::default();
        let moved: Vec<String> = old
            .symmetric_difference(&self.implicit_namespaces)
            .cloned()
            .collect();
        for namespace in &moved {
            self.refresh_namespace(namespace, &mut changes);
        }
        changes
    }

    fn refresh_namespace(&mut self, namespace: &str, changes: &mut Changes) {
        let services: Vec<ServiceRef> = self
            .endpoints
            .service_refs()
            .filter(|s| s.namespace == namespace)
            .cloned()
            .collect();
        for service in &services {
            self.refresh_implicit(service, changes);
        }
    }

    /// Puts `service`'s implicit Routes in the table as its facts now say (none when it
    /// is gone or not implicit), and their endpoint sets with them.
    pub(super) fn refresh_implicit(&mut self, service: &ServiceRef, changes: &mut Changes) {
        let routes = match self.endpoints.service(service) {
            Some(facts)
                if self.implicit_all
                    || facts.implicit
                    || self.implicit_namespaces.contains(&service.namespace) =>
            {
                let mut routes = implicit::routes(service, facts, &self.cluster_domain);
                // An implicit Route has no TLS of its own: a BackendTLSPolicy's applies.
                let sources = self.tls_sources();
                for route in &mut routes {
                    let sets = route.rules.iter().flat_map(|r| &r.backends);
                    let sets: Vec<_> = sets.map(|b| b.endpoint_set.clone()).collect();
                    for set in sets {
                        if let Some(tls) = sources.policy_tls(&set) {
                            route.upstream.tls.insert(set, tls);
                        }
                    }
                }
                routes
            }
            _ => Vec::new(),
        };
        let old = self.implicit.remove(service).unwrap_or_default();
        // An implicit Route has one rule with one backend: its Service port's set.
        let new: BTreeMap<RouteKey, EndpointSetKey> = routes
            .iter()
            .filter_map(|r| {
                let set = &r.rules.first()?.backends.first()?.endpoint_set;
                Some((r.key.clone(), set.clone()))
            })
            .collect();
        let mut transitioned = BTreeSet::new();
        for (key, set) in old.iter().filter(|(key, _)| !new.contains_key(*key)) {
            self.table.routes.remove(key);
            changes.routes.insert(key.clone());
            if let Some(users) = self.users.get_mut(set) {
                users.remove(key);
                if users.is_empty() {
                    self.users.remove(set);
                    transitioned.insert(set.clone());
                }
            }
        }
        for route in routes {
            let key = route.key.clone();
            if let Some(set) = new.get(&key) {
                let users = self.users.entry(set.clone()).or_default();
                if users.is_empty() {
                    transitioned.insert(set.clone());
                }
                users.insert(key.clone());
            }
            self.table.routes.insert(key.clone(), Arc::new(route));
            changes.routes.insert(key);
        }
        if !new.is_empty() {
            self.implicit.insert(service.clone(), new);
        }
        for set in &transitioned {
            self.refresh_set(set, changes);
        }
    }
}
