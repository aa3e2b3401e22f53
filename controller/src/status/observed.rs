//! What the cluster says about each Route's status (fed by the Route watcher), and the
//! Routes whose status may need a write (fed by every index update).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use fairway_proto::model::RouteKey;
use kube::ResourceExt;
use tokio::sync::Notify;

use crate::crd::{Route, RouteStatus};
use crate::index::DEFAULT_NAMESPACE;

/// A Route as last seen on the watch: enough to compare statuses and to name it in an
/// Event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedRoute {
    pub uid: Option<String>,
    pub status: Option<RouteStatus>,
}

/// Every watched Route's observed status. Comparing against it (rather than only
/// against what this process wrote) keeps a restarted or newly elected writer from
/// rewriting statuses that are already right.
#[derive(Debug, Default)]
pub struct Observed {
    routes: Mutex<HashMap<RouteKey, ObservedRoute>>,
}

impl Observed {
    fn lock(&self) -> MutexGuard<'_, HashMap<RouteKey, ObservedRoute>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, key: &RouteKey) -> Option<ObservedRoute> {
        self.lock().get(key).cloned()
    }

    pub fn apply(&self, route: &Route) {
        self.lock().insert(key_of(route), observed(route));
    }

    pub fn delete(&self, route: &Route) {
        self.lock().remove(&key_of(route));
    }

    /// A relist of every namespace.
    pub fn replace(&self, routes: &[Route]) {
        *self.lock() = routes.iter().map(|r| (key_of(r), observed(r))).collect();
    }
}

fn observed(route: &Route) -> ObservedRoute {
    ObservedRoute {
        uid: route.uid(),
        status: route.status.clone(),
    }
}

/// The index's key for a Route object.
pub fn key_of(route: &Route) -> RouteKey {
    RouteKey {
        namespace: route
            .namespace()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        name: route.name_any(),
    }
}

/// Routes whose status may differ from the last check. A set, so a burst of changes to
/// one Route costs one check; its size is bounded by the number of Routes.
#[derive(Debug, Default)]
pub struct Dirty {
    keys: Mutex<BTreeSet<RouteKey>>,
    notify: Notify,
}

impl Dirty {
    pub fn mark(&self, keys: impl IntoIterator<Item = RouteKey>) {
        let mut set = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let before = set.len();
        set.extend(keys);
        if set.len() != before {
            self.notify.notify_one();
        }
    }

    /// Takes every marked key.
    pub fn take(&self) -> BTreeSet<RouteKey> {
        std::mem::take(&mut *self.keys.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Resolves once a key was marked since the last wake-up (one waiter: the writer).
    pub async fn marked(&self) {
        self.notify.notified().await;
    }
}
