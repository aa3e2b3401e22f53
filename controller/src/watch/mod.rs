//! Kubernetes sources: kube-runtime watchers for Routes, HTTPRoutes and
//! BackendTLSPolicies (where the cluster serves them, `httproutes`), Services, EndpointSlices, ConfigMaps (CA bundles for TLS
//! to pods, `configmaps`), opted-in Namespaces and Nodes feeding the [`IndexHandle`] (and
//! [`NodeZones`]), then the status writer.
//!
//! Where to start: [`run_sources`]. Each kind has one watcher per watched namespace (or
//! one for all namespaces); `source` turns its events into index calls: a relist
//! (`Init`, `InitApply`..., `InitDone`) is buffered and swapped in at `InitDone`, an
//! `Apply`/`Delete` is one `apply_*`/`delete_*`. Watch errors are retried with
//! kube-runtime's default backoff, so an apiserver outage only delays updates.

mod configmaps;
pub mod httproutes;
mod namespaces;
mod nodes;
pub mod pods;
mod source;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backendtlspolicy::{self, BackendTLSPolicy};
use crate::crd::Route;
use crate::httproute::HTTPRoute;
use crate::index::SERVICE_NAME_LABEL;
use crate::state::{IndexHandle, NodeZones};
use crate::status::{self, Observed, StatusConfig, StatusError};
use crate::store::Published;
use source::{Scope, Sink, SyncBarrier};

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct WatchConfig {
    /// Namespaces to watch Routes, Services and EndpointSlices in; empty means all.
    pub namespaces: Vec<String>,
    /// A label selector limiting the Routes watched (Services and slices are not
    /// filtered: a selected Route may use any Service of its namespace).
    pub selector: Option<String>,
    /// Who writes Route status (leader election); defaults from `POD_NAMESPACE` and
    /// `POD_NAME`. Build a `WatchConfig` with `..WatchConfig::default()` to keep it.
    pub status: StatusConfig,
    /// Warning Events on pods the injector missed or whose capture failed (`pods`),
    /// recorded by the status writer's leader; `None`: off.
    pub pod_events: Option<crate::inject::events::PodEvents>,
}

/// Why the sources stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A watcher stream ended; kube-runtime's watchers retry forever, so this is a bug.
    #[error("the {0} watcher ended")]
    WatcherEnded(&'static str),
    /// A source task panicked or was cancelled.
    #[error("a watch task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("status writer: {0}")]
    Status(#[from] StatusError),
}

/// Watches the API and keeps `index` and `zones` current; marks the index synced once
/// Routes, Services and EndpointSlices (not Nodes: zones are optional) have each
/// delivered their first full listing in every watched namespace. Also runs the status
/// writer, which follows `published`.
///
/// Runs until a task fails; watch errors (apiserver down, 410 Gone, RBAC) are logged and
/// retried with backoff, never returned. Returns `Ok` when `stop` turns true, once the
/// status Lease is released, or when `published` closes (the store is gone).
pub async fn run_sources(
    client: Client,
    index: Arc<IndexHandle>,
    zones: Arc<NodeZones>,
    config: WatchConfig,
    published: watch::Receiver<Arc<Published>>,
    stop: watch::Receiver<bool>,
) -> Result<(), WatchError> {
    let observed = Arc::new(Observed::default());
    let scopes: Vec<Scope> = if config.namespaces.is_empty() {
        vec![Scope::All]
    } else {
        config
            .namespaces
            .iter()
            .cloned()
            .map(Scope::Namespace)
            .collect()
    };
    // Six kinds in every scope must finish their first listing (HTTPRoutes and
    // BackendTLSPolicies count as listed at once where the cluster does not serve them;
    // ConfigMaps and policies among them: a TLS backend published before its CA or its
    // policy would refuse, or speak plaintext, for a moment), and the opted-in
    // Namespaces once: a proxy's first table already serves their Services.
    let barrier = SyncBarrier::new(index.clone(), 6 * scopes.len() + 1);
    let sink = Sink::new(index.clone(), observed.clone(), barrier);

    let mut tasks = JoinSet::new();
    for scope in &scopes {
        let routes = source::watcher_config(config.selector.as_deref());
        tasks.spawn(source::run::<Route>(
            client.clone(),
            scope.clone(),
            routes,
            sink.clone(),
        ));
        let services = source::watcher_config(None);
        tasks.spawn(source::run::<Service>(
            client.clone(),
            scope.clone(),
            services,
            sink.clone(),
        ));
        // Only slices a Service owns; mirrored or custom slices are not ours to read.
        let slices = source::watcher_config(Some(SERVICE_NAME_LABEL));
        tasks.spawn(source::run::<EndpointSlice>(
            client.clone(),
            scope.clone(),
            slices,
            sink.clone(),
        ));
        let config_maps = source::watcher_config(None);
        tasks.spawn(source::run::<ConfigMap>(
            client.clone(),
            scope.clone(),
            config_maps,
            sink.clone(),
        ));
    }
    tasks.spawn(httproutes::run::<HTTPRoute>(
        client.clone(),
        scopes.clone(),
        sink.clone(),
        "httproutes",
    ));
    tasks.spawn(httproutes::run::<BackendTLSPolicy>(
        client.clone(),
        scopes.clone(),
        sink.clone(),
        backendtlspolicy::PLURAL,
    ));
    tasks.spawn(namespaces::run(client.clone(), sink.clone()));
    tasks.spawn(nodes::run(client.clone(), zones));
    let (leader, leading) = watch::channel(false);
    if let Some(injector) = config.pod_events {
        let recorder = status::recorder(client.clone(), &config.status.identity);
        tasks.spawn(pods::run(client.clone(), injector, recorder, leading));
    }

    let writer = status::run(
        client,
        index,
        observed,
        sink.dirty(),
        config.status,
        published,
        stop,
        leader,
    );
    tokio::select! {
        result = writer => result.map_err(WatchError::from),
        Some(joined) = tasks.join_next() => Err(joined.map_or_else(WatchError::from, WatchError::WatcherEnded)),
    }
}
