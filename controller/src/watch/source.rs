//! One watcher's events into index calls. A relist is buffered from `Init` to
//! `InitDone` and swapped in under one index update, so readers never see half a list.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher::watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::backendtlspolicy::BackendTLSPolicy;
use crate::crd::{Route, RouteSpec};
use crate::httproute::HTTPRoute;
use crate::index::{Changes, Index};
use crate::state::IndexHandle;
use crate::status::{Dirty, Observed};

/// Where one watcher looks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    All,
    Namespace(String),
}

/// The watcher settings every source uses: kube-runtime's defaults (bookmarks on, paged
/// lists) plus an optional label selector.
pub(super) fn watcher_config(labels: Option<&str>) -> watcher::Config {
    let config = watcher::Config::default();
    debug_assert!(
        config.bookmarks,
        "watch bookmarks spare relists after reconnects"
    );
    match labels {
        Some(labels) => config.labels(labels),
        None => config,
    }
}

/// Counts the watchers that still owe their first full listing; the last one marks the
/// index synced.
#[derive(Debug)]
pub(super) struct SyncBarrier {
    index: Arc<IndexHandle>,
    remaining: AtomicUsize,
}

impl SyncBarrier {
    pub(super) fn new(index: Arc<IndexHandle>, watchers: usize) -> Arc<Self> {
        Arc::new(SyncBarrier {
            index,
            remaining: AtomicUsize::new(watchers),
        })
    }

    /// Called once per watcher, at its first `InitDone` (or for a kind the cluster does
    /// not serve, at once).
    pub(super) fn listed(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            tracing::info!("every source listed: the index is synced");
            self.index.mark_synced();
        }
    }
}

/// Where sources write: the index, the Routes' observed status, and the set of Routes
/// whose status may have changed.
#[derive(Clone, Debug)]
pub(super) struct Sink {
    index: Arc<IndexHandle>,
    observed: Arc<Observed>,
    dirty: Arc<Dirty>,
    barrier: Arc<SyncBarrier>,
}

impl Sink {
    pub(super) fn new(
        index: Arc<IndexHandle>,
        observed: Arc<Observed>,
        barrier: Arc<SyncBarrier>,
    ) -> Self {
        Sink {
            index,
            observed,
            dirty: Arc::new(Dirty::default()),
            barrier,
        }
    }

    pub(super) fn dirty(&self) -> Arc<Dirty> {
        self.dirty.clone()
    }

    pub(super) fn barrier(&self) -> &SyncBarrier {
        &self.barrier
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut Index) -> Changes) {
        let changes = self.index.update(f);
        self.dirty.mark(changes.routes);
    }
}

/// A namespaced kind the index takes.
pub(super) trait Kind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// For logs and errors.
    const NAME: &'static str;
    fn apply(index: &mut Index, object: &Self) -> Changes;
    fn delete(index: &mut Index, object: &Self) -> Changes;
    /// A relist of every namespace.
    fn replace(index: &mut Index, objects: &[Self]) -> Changes;
    /// An object with only this metadata, enough to delete it from the index.
    fn stub(metadata: ObjectMeta) -> Self;
    /// Hooks for kinds whose status the controller writes.
    fn observe_apply(_observed: &Observed, _object: &Self) {}
    fn observe_delete(_observed: &Observed, _object: &Self) {}
    fn observe_replace(_observed: &Observed, _objects: &[Self]) {}
}

impl Kind for Route {
    const NAME: &'static str = "Route";
    fn apply(index: &mut Index, object: &Self) -> Changes {
        index.apply_route(object)
    }
    fn delete(index: &mut Index, object: &Self) -> Changes {
        index.delete_route(object)
    }
    fn replace(index: &mut Index, objects: &[Self]) -> Changes {
        index.replace_routes(objects)
    }
    fn stub(metadata: ObjectMeta) -> Self {
        let spec = RouteSpec {
            hosts: Vec::new(),
            rules: Vec::new(),
            load_balancer: Default::default(),
            upstream: Default::default(),
            timeouts: Default::default(),
            retries: Default::default(),
            health_check: None,
        };
        Route {
            metadata,
            spec,
            status: None,
        }
    }
    fn observe_apply(observed: &Observed, object: &Self) {
        observed.apply(object);
    }
    fn observe_delete(observed: &Observed, object: &Self) {
        observed.delete(object);
    }
    fn observe_replace(observed: &Observed, objects: &[Self]) {
        observed.replace(objects);
    }
}

impl Kind for HTTPRoute {
    const NAME: &'static str = "HTTPRoute";
    fn apply(index: &mut Index, object: &Self) -> Changes {
        index.apply_http_route(object)
    }
    fn delete(index: &mut Index, object: &Self) -> Changes {
        index.delete_http_route(object)
    }
    fn replace(index: &mut Index, objects: &[Self]) -> Changes {
        index.replace_http_routes(objects)
    }
    fn stub(metadata: ObjectMeta) -> Self {
        HTTPRoute {
            metadata,
            ..HTTPRoute::default()
        }
    }
}

impl Kind for BackendTLSPolicy {
    const NAME: &'static str = "BackendTLSPolicy";
    fn apply(index: &mut Index, object: &Self) -> Changes {
        index.apply_backend_tls_policy(object)
    }
    fn delete(index: &mut Index, object: &Self) -> Changes {
        index.delete_backend_tls_policy(object)
    }
    fn replace(index: &mut Index, objects: &[Self]) -> Changes {
        index.replace_backend_tls_policies(objects)
    }
    fn stub(metadata: ObjectMeta) -> Self {
        BackendTLSPolicy {
            metadata,
            ..BackendTLSPolicy::default()
        }
    }
}

impl Kind for Service {
    const NAME: &'static str = "Service";
    fn apply(index: &mut Index, object: &Self) -> Changes {
        index.apply_service(object)
    }
    fn delete(index: &mut Index, object: &Self) -> Changes {
        index.delete_service(object)
    }
    fn replace(index: &mut Index, objects: &[Self]) -> Changes {
        index.replace_services(objects)
    }
    fn stub(metadata: ObjectMeta) -> Self {
        Service {
            metadata,
            ..Service::default()
        }
    }
}

impl Kind for EndpointSlice {
    const NAME: &'static str = "EndpointSlice";
    fn apply(index: &mut Index, object: &Self) -> Changes {
        index.apply_slice(object)
    }
    fn delete(index: &mut Index, object: &Self) -> Changes {
        index.delete_slice(object)
    }
    fn replace(index: &mut Index, objects: &[Self]) -> Changes {
        index.replace_slices(objects)
    }
    fn stub(metadata: ObjectMeta) -> Self {
        EndpointSlice {
            metadata,
            ..EndpointSlice::default()
        }
    }
}

/// Watches one kind in one scope until the stream ends (it does not: errors are retried
/// with backoff). Returns the kind's name.
pub(super) async fn run<K: Kind>(
    client: Client,
    scope: Scope,
    config: watcher::Config,
    sink: Sink,
) -> &'static str {
    run_counted::<K>(client, scope, config, sink, false).await
}

/// [`run`] for a watcher started after the sync barrier already counted its kind
/// (`counted`: HTTPRoutes whose CRD came after the controller started), so its first
/// listing does not count again.
pub(super) async fn run_counted<K: Kind>(
    client: Client,
    scope: Scope,
    config: watcher::Config,
    sink: Sink,
    counted: bool,
) -> &'static str {
    let api: Api<K> = match &scope {
        Scope::All => Api::all(client),
        Scope::Namespace(namespace) => Api::namespaced(client, namespace),
    };
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut state = SourceState::<K>::new(scope);
    state.listed = counted;
    while let Some(event) = events.next().await {
        match event {
            // Managed fields are bulky and never read.
            Ok(event) => state.handle(&sink, event.modify(|o| o.managed_fields_mut().clear())),
            Err(error) => {
                tracing::warn!(kind = K::NAME, scope = ?state.scope, %error, "watch failed; retrying with backoff");
            }
        }
    }
    K::NAME
}

/// One watcher's memory: the relist in progress and, for a namespace scope, the names
/// it holds in the index (to delete those a relist no longer lists).
struct SourceState<K> {
    scope: Scope,
    relist: Vec<K>,
    names: BTreeSet<String>,
    listed: bool,
}

impl<K: Kind> SourceState<K> {
    fn new(scope: Scope) -> Self {
        SourceState {
            scope,
            relist: Vec::new(),
            names: BTreeSet::new(),
            listed: false,
        }
    }

    fn handle(&mut self, sink: &Sink, event: Event<K>) {
        match event {
            Event::Init => self.relist.clear(),
            Event::InitApply(object) => self.relist.push(object),
            Event::InitDone => {
                let objects = std::mem::take(&mut self.relist);
                tracing::info!(kind = K::NAME, scope = ?self.scope, count = objects.len(), "listed");
                self.replace(sink, objects);
                if !self.listed {
                    self.listed = true;
                    sink.barrier.listed();
                }
            }
            Event::Apply(object) => {
                K::observe_apply(&sink.observed, &object);
                if let Scope::Namespace(_) = self.scope {
                    self.names.insert(object.name_any());
                }
                sink.update(|index| K::apply(index, &object));
            }
            Event::Delete(object) => {
                K::observe_delete(&sink.observed, &object);
                self.names.remove(&object.name_any());
                sink.update(|index| K::delete(index, &object));
            }
        }
    }

    fn replace(&mut self, sink: &Sink, objects: Vec<K>) {
        let namespace = match &self.scope {
            Scope::All => {
                K::observe_replace(&sink.observed, &objects);
                sink.update(|index| K::replace(index, &objects));
                return;
            }
            Scope::Namespace(namespace) => namespace.clone(),
        };
        let listed: BTreeSet<String> = objects.iter().map(|o| o.name_any()).collect();
        // The index only replaces whole kinds, and other namespaces' watchers own the
        // rest of this kind: delete what this namespace lost, apply what it lists, in
        // one update so readers see the relist at once.
        let gone: Vec<K> = (self.names.difference(&listed))
            .map(|name| {
                K::stub(ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    ..ObjectMeta::default()
                })
            })
            .collect();
        for object in &gone {
            K::observe_delete(&sink.observed, object);
        }
        for object in &objects {
            K::observe_apply(&sink.observed, object);
        }
        sink.update(|index| {
            let mut changes = Changes::default();
            for object in &gone {
                merge(&mut changes, K::delete(index, object));
            }
            for object in &objects {
                merge(&mut changes, K::apply(index, object));
            }
            changes
        });
        self.names = listed;
    }
}

fn merge(into: &mut Changes, from: Changes) {
    into.routes.extend(from.routes);
    into.endpoint_sets.extend(from.endpoint_sets);
}
